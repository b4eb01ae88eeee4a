//! Reading each kind of block into the chain's parts: the root's facts, a
//! delegation hop, a narrowing (first-party) block, an approval block.

use super::rules::{
    check_content, check_reserved, depth_err, err, facts_named, one_string, single,
};
use super::{Approval, BlockContent, ChainError, Hop, Narrowing, Signer};
use crate::datalog::{decode_check, is_holder_check, is_limits_check};
use crate::grant::Grant;
use crate::grant::Limit;
use crate::keys::public_key_from_bytes;
use crate::vocab;
use biscuit_auth::builder::{Check, Term};
use biscuit_auth::format::schema::public_key::Algorithm;
use biscuit_auth::PublicKey;
use time::OffsetDateTime;

/// The facts only the root states (§3.1).
pub(super) struct RootFacts {
    pub(super) token_id: String,
    pub(super) principal: String,
    pub(super) issued_at: OffsetDateTime,
    pub(super) max_depth: Option<u32>,
}

impl RootFacts {
    /// Reads and checks the root block (block 0, signed by the root key).
    pub(super) fn read(root: &BlockContent) -> Result<RootFacts, ChainError> {
        check_reserved(root, 0)?;
        check_content(
            root,
            0,
            &[
                vocab::TOKEN,
                vocab::PRINCIPAL,
                vocab::ISSUED_AT,
                vocab::MAX_DEPTH,
                vocab::AGENT,
                vocab::PURPOSE,
                vocab::APPROVER,
                vocab::LIMIT,
                vocab::BUDGET,
            ],
        )?;
        if root.external_key.is_some() {
            return Err(err(0, 0, "the root block cannot be a third-party block"));
        }
        let token_id = one_string(root, vocab::TOKEN, 0)?;
        let principal = one_string(root, vocab::PRINCIPAL, 0)?;
        let issued_at = match single(root, vocab::ISSUED_AT, 0)?.map(|t| t.as_slice()) {
            Some([Term::Date(d)]) => i64::try_from(*d)
                .ok()
                .and_then(|d| OffsetDateTime::from_unix_timestamp(d).ok())
                .ok_or_else(|| err(0, 0, "issued_at out of range"))?,
            _ => return Err(err(0, 0, "the root needs one issued_at(date) fact")),
        };
        let max_depth = match single(root, vocab::MAX_DEPTH, 0)?.map(|t| t.as_slice()) {
            None => None,
            Some([Term::Integer(n)]) if (0..=u32::MAX as i64).contains(n) => Some(*n as u32),
            Some(_) => return Err(err(0, 0, "max_depth must be one non-negative integer")),
        };
        Ok(RootFacts {
            token_id,
            principal,
            issued_at,
            max_depth,
        })
    }
}

/// A first-party block appended by the holder of hop `current`: it narrows
/// that hop and names no delegate.
pub(super) fn narrowing_from_block(
    block: &BlockContent,
    current: usize,
) -> Result<Narrowing, ChainError> {
    check_reserved(block, current)?;
    // Agent facts get their own, more specific error below.
    check_content(block, current, &[vocab::AGENT])?;
    if !facts_named(block, vocab::AGENT).is_empty() {
        return Err(err(
            block.index,
            current,
            "a first-party block cannot name a delegate (agent fact); \
             delegation hops are third-party blocks signed by the holder",
        ));
    }
    if block.checks.iter().any(is_limits_check) {
        return Err(err(
            block.index,
            current,
            "a first-party block cannot carry limits (§18): only the root and \
             delegation hops do",
        ));
    }
    let (expires_at, grant) = grant_of(block);
    Ok(Narrowing {
        block: block.index,
        expires_at,
        grant,
        revocation_id: hex::encode(&block.revocation_id),
    })
}

/// The third-party block at `blocks[position]`, signed by `signer`: a
/// delegation hop by `holder`, within the root's `max_depth`.
pub(super) fn delegation_from_block(
    blocks: &[BlockContent],
    position: usize,
    signer: &PublicKey,
    holder: &Hop,
    max_depth: Option<u32>,
) -> Result<Hop, ChainError> {
    let block = &blocks[position];
    let hop_no = holder.hop + 1;
    check_reserved(block, hop_no)?;
    // Root facts in a hop get their own, more specific error below.
    check_content(
        block,
        hop_no,
        &[
            vocab::AGENT,
            vocab::PURPOSE,
            vocab::APPROVER,
            vocab::LIMIT,
            vocab::BUDGET,
            vocab::TOKEN,
            vocab::PRINCIPAL,
            vocab::ISSUED_AT,
            vocab::MAX_DEPTH,
        ],
    )?;
    if *signer != holder.agent_public_key {
        return Err(err(
            block.index,
            hop_no,
            &format!(
                "signed by {signer}, but hop {} delegated to agent {:?} with key {}",
                holder.hop, holder.agent, holder.agent_key
            ),
        ));
    }
    if let Some(max) = max_depth {
        if hop_no > max as usize {
            return Err(depth_err(
                block.index,
                hop_no,
                &format!("delegation depth {hop_no} exceeds the root's max_depth {max}"),
            ));
        }
    }
    for name in [
        vocab::TOKEN,
        vocab::PRINCIPAL,
        vocab::ISSUED_AT,
        vocab::MAX_DEPTH,
    ] {
        if !facts_named(block, name).is_empty() {
            return Err(err(
                block.index,
                hop_no,
                &format!("a delegation hop cannot state {name}(…); only the root does"),
            ));
        }
    }
    let signed_by = Signer::Agent {
        agent: holder.agent.clone(),
        key: holder.agent_key.clone(),
    };
    hop_from_block(block, hop_no, signed_by, next_signer(blocks, position))
}

/// A third-party block whose only content is `approval(…)` facts.
pub(super) fn is_approval_block(block: &BlockContent) -> bool {
    !block.facts.is_empty()
        && block
            .facts
            .iter()
            .all(|f| f.predicate.name == vocab::APPROVAL)
}

/// Reads an approval block: exactly one `approval(digest, expiry)` fact,
/// no checks, no rules, no scopes.
pub(super) fn approval_from_block(
    block: &BlockContent,
    approver: &PublicKey,
    hop: usize,
) -> Result<Approval, ChainError> {
    if !block.checks.is_empty() || !block.rule_heads.is_empty() || !block.scopes.is_empty() {
        return Err(err(
            block.index,
            hop,
            "an approval block holds one approval(digest, expiry) fact and nothing else",
        ));
    }
    let (digest, expires) = match block.facts.as_slice() {
        [f] => match f.predicate.terms.as_slice() {
            [Term::Bytes(d), Term::Date(e)] if d.len() == 32 => (d, *e),
            _ => {
                return Err(err(
                    block.index,
                    hop,
                    "approval(digest, expiry) needs a 32-byte digest and a date",
                ))
            }
        },
        _ => {
            return Err(err(
                block.index,
                hop,
                "an approval block holds exactly one approval(…) fact",
            ))
        }
    };
    let expires_at = i64::try_from(expires)
        .ok()
        .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok())
        .ok_or_else(|| err(block.index, hop, "approval expiry out of range"))?;
    Ok(Approval {
        block: block.index,
        approver_key: approver.to_string(),
        digest: hex::encode(digest),
        expires_at,
        revocation_id: hex::encode(&block.revocation_id),
        approver_signature: hex::encode(block.external_signature.as_deref().unwrap_or_default()),
    })
}

/// The key that signed the first delegation hop after `blocks[position]`.
pub(super) fn next_signer(blocks: &[BlockContent], position: usize) -> Option<&PublicKey> {
    blocks
        .get(position + 1..)?
        .iter()
        .find_map(|b| b.external_key.as_ref())
}

/// `next_signer` is the key that signed the next delegation hop, if any: when
/// the agent key has the same bytes it is already a decoded, valid Ed25519
/// key, and decoding it again (a point decompression) is skipped.
pub(super) fn hop_from_block(
    block: &BlockContent,
    hop: usize,
    signed_by: Signer,
    next_signer: Option<&PublicKey>,
) -> Result<Hop, ChainError> {
    let (agent, agent_key) = match single(block, vocab::AGENT, hop)?.map(|t| t.as_slice()) {
        Some([Term::Str(id), Term::Bytes(key)]) => {
            crate::grant::validate_name("agent id", id)
                .map_err(|e| err(block.index, hop, &e.to_string()))?;
            let key = match next_signer {
                Some(signer)
                    if signer.algorithm() == Algorithm::Ed25519 && signer.to_bytes() == *key =>
                {
                    *signer
                }
                _ => {
                    public_key_from_bytes(key).map_err(|e| err(block.index, hop, &e.to_string()))?
                }
            };
            (id.clone(), key)
        }
        _ => {
            return Err(err(
                block.index,
                hop,
                "a hop needs exactly one agent(id, key_bytes) fact naming who it delegates to",
            ))
        }
    };
    let purpose = match single(block, vocab::PURPOSE, hop)?.map(|t| t.as_slice()) {
        None => None,
        Some([Term::Str(p)]) => Some(p.clone()),
        Some(_) => return Err(err(block.index, hop, "purpose must be one string")),
    };
    let (expires_at, mut grant) = grant_of(block);
    grant.limits = limits_of(block, hop)?;
    Ok(Hop {
        hop,
        block: block.index,
        agent,
        agent_key: agent_key.to_string(),
        agent_public_key: agent_key,
        signed_by,
        purpose,
        expires_at,
        grant,
        revocation_id: hex::encode(&block.revocation_id),
        narrowing: Vec::new(),
    })
}

/// The grant a block's checks express: canonical checks decoded, any other
/// check kept as its Datalog text.
pub(super) fn grant_of(block: &BlockContent) -> (Option<OffsetDateTime>, Grant) {
    let mut grant = Grant::default();
    let mut expires_at: Option<OffsetDateTime> = None;
    for check in &block.checks {
        if is_holder_check(check) {
            grant.holder_bound = true;
            continue;
        }
        // The guard of the block's limits (§18.2), read with its facts.
        if is_limits_check(check) {
            continue;
        }
        match decode_check(check) {
            // Checks are conjunctive and a grant is one disjunction of
            // alternatives: only the block's first check with alternatives
            // is read as its grant (§4.1 writes one); another is shown as
            // Datalog, never joined to it as more alternatives (§4.4).
            Some(d) if d.alternatives.is_empty() || grant.alternatives.is_empty() => {
                if let Some(e) = d.expires {
                    expires_at = Some(expires_at.map_or(e, |x| x.min(e)));
                }
                grant.alternatives.extend(d.alternatives);
            }
            _ => grant.datalog.push(print_check(check)),
        }
    }
    // Approval rules carry the approver's key; the block's approver facts
    // give the name people know it by.
    for alt in &mut grant.alternatives {
        if let Some(rule) = alt.approval.as_mut() {
            rule.approver = approver_name(block, &rule.key)
                .unwrap_or_else(|| format!("key {}", &rule.key[..rule.key.len().min(20)]));
        }
    }
    (expires_at, grant)
}

/// The block's `limit(…)` and `budget(…)` facts (§18.2), each well formed,
/// and the `limits_enforced` check that MUST come with them (and only with
/// them).
fn limits_of(block: &BlockContent, hop: usize) -> Result<Vec<Limit>, ChainError> {
    let bad = |why: &str| err(block.index, hop, why);
    let actions_of = |t: &Term| -> Option<std::collections::BTreeSet<String>> {
        match t {
            Term::Set(items) => items
                .iter()
                .map(|i| match i {
                    Term::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    };
    let positive = |t: &Term| match t {
        Term::Integer(n) if *n >= 1 => Some(*n as u64),
        _ => None,
    };
    let mut limits = Vec::new();
    for f in &block.facts {
        let terms = f.predicate.terms.as_slice();
        let limit = match (f.predicate.name.as_str(), terms) {
            (vocab::LIMIT, [a, m, w]) => (|| {
                Some(Limit {
                    actions: actions_of(a)?,
                    param: None,
                    max: positive(m)?,
                    window_secs: positive(w)?,
                })
            })(),
            (vocab::BUDGET, [a, Term::Str(p), m, w]) => (|| {
                Some(Limit {
                    actions: actions_of(a)?,
                    param: Some(p.clone()),
                    max: positive(m)?,
                    window_secs: positive(w)?,
                })
            })(),
            (vocab::LIMIT | vocab::BUDGET, _) => None,
            _ => continue,
        };
        let limit = limit.ok_or_else(|| {
            bad(
                "limit(…) must be limit({actions}, max, window_seconds) and budget(…) \
                 budget({actions}, \"param\", max, window_seconds), with positive integers",
            )
        })?;
        limits.push(limit);
    }
    crate::grant::validate_limits(&limits).map_err(|e| bad(&e.to_string()))?;
    let guarded = block.checks.iter().any(is_limits_check);
    if guarded == limits.is_empty() {
        return Err(bad(if guarded {
            "check if limits_enforced(1) without any limit(…) or budget(…) fact"
        } else {
            "limit(…) or budget(…) facts without check if limits_enforced(1): a verifier \
             that does not know limits would ignore them"
        }));
    }
    Ok(limits)
}

pub(super) fn approver_name(block: &BlockContent, key: &str) -> Option<String> {
    let key = crate::parse_public_key(key).ok()?.to_bytes();
    facts_named(block, vocab::APPROVER)
        .into_iter()
        .find_map(|terms| match terms.as_slice() {
            [Term::Str(name), Term::Bytes(k)] if *k == key => Some(name.clone()),
            _ => None,
        })
}

/// A check's Datalog text. Biscuit's printer panics on an expression that is
/// not well-formed RPN (a token can carry one), so the stack is checked first.
pub(super) fn print_check(check: &Check) -> String {
    use biscuit_auth::builder::Op;
    fn well_formed(ops: &[Op]) -> bool {
        let mut depth: usize = 0;
        for op in ops {
            match op {
                Op::Value(_) => depth += 1,
                Op::Unary(_) if depth >= 1 => {}
                Op::Binary(_) if depth >= 2 => depth -= 1,
                Op::Closure(_, body) if well_formed(body) => depth += 1,
                _ => return false,
            }
        }
        depth == 1
    }
    let ok = check
        .queries
        .iter()
        .all(|q| q.expressions.iter().all(|e| well_formed(&e.ops)));
    if ok {
        check.to_string()
    } else {
        "(a check with a malformed expression: it can never pass)".into()
    }
}
