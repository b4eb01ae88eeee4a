//! Why a request is denied, in words: revocation, an unreadable token, a
//! broken chain, a failed check.

use crate::cache::Verified;
use crate::decision::{Denial, DenialKind, LimitDenial, LimitKind};
use crate::explain;
use crate::revocation::{Revocation, RevocationList};
use crate::usage::ChainLimit;
use biscuit_auth::error::{FailedCheck, Format, Logic, Token};
use mandate_spec::{Chain, ChainError, ChainErrorKind, Request};

/// The denial for the first of the token's revocation targets the list
/// revokes, if any; a list that cannot answer denies (fail closed).
pub(super) fn revocation_denial(list: &dyn RevocationList, v: &Verified) -> Option<Denial> {
    let (index, entry) = match list.first_revoked(&v.targets) {
        Ok(None) => return None,
        Ok(Some(hit)) => hit,
        Err(e) => {
            return Some(Denial::new(
                DenialKind::RevocationUnavailable,
                format!("revocation list unavailable ({e}); denied to fail closed"),
            ))
        }
    };
    let chain = &*v.chain;
    let revoked = Revoked::of(chain, v.blocks, index, &revocation_words(&entry));
    Some(Denial {
        kind: DenialKind::Revoked,
        hop: revoked.hop,
        block: revoked.block,
        agent: revoked
            .hop
            .and_then(|h| chain.hops.get(h))
            .map(|h| h.agent.clone()),
        reason: revoked.what,
        limit: None,
        restriction: None,
    })
}

/// When, by whom and why an entry revokes: "revoked at … by …: …".
fn revocation_words(entry: &Revocation) -> String {
    let when = entry
        .revoked_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!("revoked at {when} by {:?}: {:?}", entry.by, entry.reason)
}

/// What a revoked target is in the chain: the hop and block it stops, and
/// the denial's reason.
struct Revoked {
    hop: Option<usize>,
    block: Option<usize>,
    what: String,
}

impl Revoked {
    /// The target at `index` of the token's revocation targets (in the
    /// order of [`crate::revocation::revocation_targets`]: each of the
    /// `blocks` block ids, the token family, each hop's agent key, each
    /// approval's signer key), revoked as `why` says.
    fn of(chain: &Chain, blocks: usize, index: usize, why: &str) -> Revoked {
        if index < blocks {
            Revoked::block(chain, index, why)
        } else if index == blocks {
            Revoked {
                hop: Some(0),
                block: Some(0),
                what: format!(
                    "token family {} is {why}",
                    mandate_spec::display::word(&chain.token_id)
                ),
            }
        } else if let Some(h) = chain.hops.get(index - blocks - 1) {
            let hop_no = h.hop;
            Revoked {
                hop: Some(hop_no),
                block: Some(h.block),
                what: format!(
                    "agent {} (key {}) at hop {hop_no} is {why}",
                    mandate_spec::display::quoted(&h.agent),
                    h.agent_key
                ),
            }
        } else {
            Revoked::approver(chain, index - blocks - 1 - chain.hops.len(), why)
        }
    }

    /// Block `index`'s revocation id: the hop it opens (revoking a root
    /// kills every token derived from it), a first-party block within a
    /// hop, or a block no hop holds.
    fn block(chain: &Chain, index: usize, why: &str) -> Revoked {
        let hop = chain.hop_of_block(index);
        let what = match hop {
            Some(h) if h.block == index => {
                let who = explain::describe_hop(chain, h, "");
                let dead = if h.hop == 0 {
                    "; every token derived from it is dead"
                } else {
                    ""
                };
                format!("{who} is {why}{dead}")
            }
            Some(h) => format!(
                "{} is {why}",
                explain::describe_hop(chain, h, &format!(", first-party block {index}"))
            ),
            None => format!("block {index} is {why}"),
        };
        Revoked {
            hop: hop.map(|h| h.hop),
            block: Some(index),
            what,
        }
    }

    /// The signer key of the `n`th approval block.
    fn approver(chain: &Chain, n: usize, why: &str) -> Revoked {
        let (key, block) = chain.approvals.get(n).map_or_else(
            || ("?".to_string(), 0),
            |a| (a.approver_key.clone(), a.block),
        );
        Revoked {
            hop: None,
            block: Some(block),
            what: format!("the approver key {key} of approval block {block} is {why}"),
        }
    }
}

pub(super) fn parse_denial(e: &Token) -> Denial {
    match e {
        Token::Format(Format::Signature(_)) | Token::Format(Format::SealedSignature) => Denial::new(
            DenialKind::BadSignature,
            "a signature does not verify: the token was altered, forged, or signed by another root key",
        ),
        Token::Format(Format::UnknownPublicKey) => Denial::new(
            DenialKind::UnknownRootKey,
            "the token names a root key id this verifier does not trust",
        ),
        Token::Format(f) => Denial::new(
            DenialKind::MalformedToken,
            format!("not a valid token: {f} ({f:?})"),
        ),
        other => Denial::new(DenialKind::MalformedToken, format!("not a valid token: {other}")),
    }
}

pub(super) fn chain_denial(e: ChainError) -> Denial {
    let kind = match e.kind {
        ChainErrorKind::DepthExceeded => DenialKind::DepthExceeded,
        _ => DenialKind::BrokenChain,
    };
    Denial {
        kind,
        hop: Some(e.hop),
        block: Some(e.block),
        agent: None,
        reason: e.to_string(),
        limit: None,
        restriction: None,
    }
}

pub(super) fn datalog_denial(e: &Token, chain: &Chain, request: &Request) -> Denial {
    match e {
        Token::FailedLogic(Logic::Unauthorized { checks, .. })
        | Token::FailedLogic(Logic::NoMatchingPolicy { checks }) => {
            // The earliest failing block is the most authoritative reason;
            // later failing hops are named after it.
            let mut failed: Vec<_> = checks
                .iter()
                .filter_map(|c| match c {
                    FailedCheck::Block(b) => Some(b),
                    FailedCheck::Authorizer(_) => None,
                })
                .collect();
            failed.sort_by_key(|b| (b.block_id, b.check_id));
            failed.dedup_by_key(|b| b.block_id);
            let mut explained = failed
                .iter()
                .map(|b| explain::failed_check(chain, b.block_id as usize, &b.rule, request));
            match explained.next() {
                Some(mut first) => {
                    let others: Vec<String> = explained.map(|d| d.reason).collect();
                    if !others.is_empty() {
                        first.reason =
                            format!("{}; also denied by {}", first.reason, others.join("; "));
                    }
                    first
                }
                None => Denial::new(DenialKind::NotAllowed, e.to_string()),
            }
        }
        Token::RunLimit(limit) => Denial::new(
            DenialKind::Evaluation,
            format!("Datalog evaluation stopped at a run limit ({limit}); denied"),
        ),
        Token::Execution(expr) => Denial::new(
            DenialKind::Evaluation,
            format!(
                "a check could not be evaluated ({expr}), e.g. a string parameter compared \
                 with an integer bound; denied"
            ),
        ),
        other => Denial::new(
            DenialKind::Evaluation,
            format!("authorization failed: {other}"),
        ),
    }
}

/// The hop that set `limit`, in words, with its block.
fn limit_hop(chain: &Chain, limit: &ChainLimit) -> String {
    let hop = match chain.hops.get(limit.hop) {
        Some(h) => explain::describe_hop(chain, h, &format!(", block {}", limit.block)),
        None => format!("hop {} (block {})", limit.hop, limit.block),
    };
    match &limit.restriction {
        Some(id) => format!("live restriction {id} on {hop}"),
        None => hop,
    }
}

/// A request that `limit` (a budget) cannot meter, or that costs more than
/// its whole allowance: `not_allowed`, naming the hop that set it.
pub(super) fn unmeterable(chain: &Chain, limit: &ChainLimit, why: &str) -> Denial {
    Denial {
        kind: DenialKind::NotAllowed,
        hop: Some(limit.hop),
        block: Some(limit.block),
        agent: Some(limit.agent.clone()),
        reason: format!("{}: {why}", limit_hop(chain, limit)),
        limit: None,
        restriction: None,
    }
}

/// `limit` has no room for a request costing `cost` at `unix`: `used` of
/// its maximum are spent in the window ending at `window_end`.
pub(super) fn limit_exceeded(
    chain: &Chain,
    limit: &ChainLimit,
    cost: u64,
    used: u64,
    window_end: i64,
    unix: i64,
) -> Denial {
    let l = &limit.limit;
    let end = rfc3339(window_end);
    let retry_after = window_end.saturating_sub(unix).max(1) as u64;
    let cost_words = match l.param.as_deref() {
        None => String::new(),
        Some(p) => format!(" and this request's {p} is {cost}"),
    };
    Denial {
        kind: DenialKind::LimitExceeded,
        hop: Some(limit.hop),
        block: Some(limit.block),
        agent: Some(limit.agent.clone()),
        reason: format!(
            "{}: usage limit {} ({}) exceeded: {used} of {} used in the window{cost_words}; \
             it frees up at {end} (retry after {retry_after} s)",
            limit_hop(chain, limit),
            mandate_spec::display::quoted(&l.to_string()),
            l.kind(),
            l.max,
        ),
        limit: Some(Box::new(LimitDenial {
            limit: l.to_string(),
            kind: if l.param.is_some() {
                LimitKind::Budget
            } else {
                LimitKind::Count
            },
            hop: limit.hop,
            used,
            max: l.max,
            cost,
            window_end: end,
            retry_after,
        })),
        restriction: None,
    }
}

/// Unix seconds as RFC 3339 (the number itself past year 9999).
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// A live restriction's rule denies `request` (SPEC §19.5): `restricted`,
/// naming the hop it reaches the chain through, the restriction (who made
/// it, when, why) and the rule.
pub(super) fn restricted(
    chain: &Chain,
    blocks: usize,
    e: &crate::restriction::InEffect,
    rule: &mandate_spec::RestrictionRule,
    request: &mandate_spec::Request,
) -> Denial {
    let r = &e.restriction;
    let hop = crate::restriction::hop_of(chain, blocks, e);
    let h = chain.hops.get(hop);
    let at = rfc3339(r.restricted_at.unix_timestamp());
    let rule_text = rule.to_string();
    Denial {
        kind: DenialKind::Restricted,
        hop: Some(hop),
        block: h.map(|h| h.block),
        agent: h.map(|h| h.agent.clone()),
        reason: format!(
            "{}: {} {} is denied by {} (rule {}, on {})",
            h.map_or_else(
                || format!("hop {hop}"),
                |h| explain::describe_hop(chain, h, "")
            ),
            mandate_spec::display::word(&request.action),
            mandate_spec::display::word(&request.resource),
            crate::approval::restriction_words(r),
            mandate_spec::display::quoted(&rule_text),
            r.target,
        ),
        limit: None,
        restriction: Some(Box::new(crate::decision::RestrictionDenial {
            id: r.id.clone(),
            rule: rule_text,
            target: r.target.to_string(),
            by: r.by.clone(),
            restricted_at: at,
            reason: r.reason.clone(),
        })),
    }
}
