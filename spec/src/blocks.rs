//! Building the blocks of the specification's token layout (§3): the root
//! block minted by the issuer and the delegation block of a hop.

use crate::datalog::grant_checks;
use crate::grant::{validate_name, Grant, MAX_VALUE_LEN};
use crate::{vocab, SpecError};
use biscuit_auth::builder::{bytes, date, fact, int, set, string, BlockBuilder, Term};
use biscuit_auth::{BiscuitBuilder, PublicKey};
use std::time::SystemTime;

/// Who a hop hands the token to, why, and what it allows.
#[derive(Debug, Clone)]
pub struct HopContent<'a> {
    /// The next agent's id (letters, digits, `_ . : -`).
    pub agent: &'a str,
    /// The next agent's Ed25519 public key.
    pub agent_key: &'a PublicKey,
    /// Optional purpose text.
    pub purpose: Option<&'a str>,
    /// What the hop allows.
    pub grant: &'a Grant,
    /// When the hop stops working.
    pub expires: SystemTime,
}

/// What only the root states: token id, principal, issue time, depth limit.
#[derive(Debug, Clone)]
pub struct RootContent<'a> {
    /// UUID v4 of the token family.
    pub token_id: &'a str,
    /// Who the chain acts for, e.g. `user:alice`.
    pub principal: &'a str,
    /// When the token is minted.
    pub issued_at: SystemTime,
    /// Most delegation hops allowed, if limited.
    pub max_depth: Option<u32>,
}

/// The authority block of a root token.
pub fn root_block(
    root: &RootContent<'_>,
    hop: &HopContent<'_>,
) -> Result<BiscuitBuilder, SpecError> {
    validate_name("principal", root.principal)?;
    if hop.grant.alternatives.is_empty() {
        return Err(SpecError::Grant(
            "a root token needs at least one --allow alternative".into(),
        ));
    }
    let mut b = BiscuitBuilder::new()
        .fact(fact(vocab::TOKEN, &[string(root.token_id)]))?
        .fact(fact(vocab::PRINCIPAL, &[string(root.principal)]))?
        .fact(fact(vocab::ISSUED_AT, &[date(&root.issued_at)]))?;
    if let Some(d) = root.max_depth {
        b = b.fact(fact(vocab::MAX_DEPTH, &[int(d.into())]))?;
    }
    b = b.merge(hop_block(hop)?);
    Ok(b)
}

/// The block of a hop: `agent(id, key)`, optional `purpose`, and the grant's
/// checks with the expiry merged in.
pub fn hop_block(hop: &HopContent<'_>) -> Result<BlockBuilder, SpecError> {
    validate_name("agent id", hop.agent)?;
    if hop.agent_key.algorithm() != biscuit_auth::format::schema::public_key::Algorithm::Ed25519 {
        return Err(SpecError::Key("agent keys must be Ed25519".into()));
    }
    let mut b = BlockBuilder::new().fact(fact(
        vocab::AGENT,
        &[string(hop.agent), bytes(&hop.agent_key.to_bytes())],
    ))?;
    if let Some(p) = hop.purpose {
        if p.len() > MAX_VALUE_LEN {
            return Err(SpecError::Grant(format!(
                "purpose longer than {MAX_VALUE_LEN} bytes"
            )));
        }
        b = b.fact(fact(vocab::PURPOSE, &[string(p)]))?;
    }
    b = with_approver_names(b, hop.grant)?;
    b = with_limits(b, hop.grant)?;
    for check in grant_checks(hop.grant, Some(hop.expires))? {
        b = b.check(check)?;
    }
    Ok(b)
}

/// One `approver(name, key)` fact per distinct approver key of the grant's
/// approval rules.
fn with_approver_names(mut b: BlockBuilder, grant: &Grant) -> Result<BlockBuilder, SpecError> {
    let mut seen = std::collections::BTreeSet::new();
    for rule in grant
        .alternatives
        .iter()
        .filter_map(|a| a.approval.as_ref())
    {
        if seen.insert(rule.key.clone()) {
            let key = crate::parse_public_key(&rule.key)?;
            b = b.fact(fact(
                vocab::APPROVER,
                &[string(&rule.approver), bytes(&key.to_bytes())],
            ))?;
        }
    }
    Ok(b)
}

/// The grant's limits as `limit(…)` / `budget(…)` facts (§18.2); the
/// `limits_enforced` check that goes with them is one of the grant's checks.
fn with_limits(mut b: BlockBuilder, grant: &Grant) -> Result<BlockBuilder, SpecError> {
    crate::grant::validate_limits(&grant.limits)?;
    for l in &grant.limits {
        let actions = set(l.actions.iter().map(|a| string(a)).collect());
        // Both bounds are at most i64::MAX (validated).
        let (max, window) = (int(l.max as i64), int(l.window_secs as i64));
        let terms: Vec<Term> = match &l.param {
            None => vec![actions, max, window],
            Some(p) => vec![actions, string(p), max, window],
        };
        let name = if l.param.is_some() {
            vocab::BUDGET
        } else {
            vocab::LIMIT
        };
        b = b.fact(fact(name, &terms))?;
    }
    Ok(b)
}

/// A first-party narrowing block: only checks, no agent, no limits (a
/// limit belongs to a hop: its counter is named after the hop's block).
pub fn narrowing_block(
    grant: &Grant,
    expires: Option<SystemTime>,
) -> Result<BlockBuilder, SpecError> {
    if !grant.limits.is_empty() {
        return Err(SpecError::Grant(
            "limits are set by a delegation hop (or the root), not by a narrowing block: \
             delegate to an agent with the limits instead"
                .into(),
        ));
    }
    let mut b = BlockBuilder::new();
    for check in grant_checks(grant, expires)? {
        b = b.check(check)?;
    }
    Ok(b)
}
