//! Turning a failed Biscuit check into a reason in words: which hop, which
//! constraint, and what the request had.

use crate::decision::{Denial, DenialKind};
use mandate_spec::display::{quoted, word};
use mandate_spec::{Alternative, Chain, Grant, Hop, Request, ResourcePattern};
use time::OffsetDateTime;

/// Explains why the check `check_rule` of block `block` failed.
pub(crate) fn failed_check(chain: &Chain, block: usize, check_rule: &str, req: &Request) -> Denial {
    let Some(hop) = chain.hop_of_block(block) else {
        return Denial::new(
            DenialKind::NotAllowed,
            format!("block {block}: check failed: {}", quoted(check_rule)),
        );
    };
    let (grant, expires, what) = if hop.block == block {
        (&hop.grant, hop.expires_at, String::new())
    } else {
        match hop.narrowing.iter().find(|n| n.block == block) {
            Some(n) => (
                &n.grant,
                n.expires_at,
                format!(", first-party block {block}"),
            ),
            None => (&hop.grant, hop.expires_at, String::new()),
        }
    };
    let who = describe_hop(chain, hop, &what);
    let now = req.time_unix();
    let (kind, why) = match expires {
        Some(e) if now > e.unix_timestamp() => (
            DenialKind::Expired,
            format!("expired at {} (request time {})", rfc(e), rfc_unix(now)),
        ),
        _ => (
            DenialKind::NotAllowed,
            explain_grant(grant, req, check_rule),
        ),
    };
    Denial {
        kind,
        hop: Some(hop.hop),
        block: Some(block),
        agent: Some(hop.agent.clone()),
        reason: format!("{who}: {why}"),
        limit: None,
        restriction: None,
    }
}

/// The first hop (or first-party narrowing block) of `chain` whose expiry
/// is before `req`'s time, as an `expired` denial naming it: what a
/// token-only check ([`crate::Check::Token`]) asks of time, since it runs no
/// grant (whose checks carry the same expiries).
pub(crate) fn expiry_denial(chain: &Chain, req: &Request) -> Option<Denial> {
    let now = req.time_unix();
    chain.hops.iter().find_map(|hop| {
        let own = hop.expires_at.map(|e| (e, hop.block, String::new()));
        let narrowing = hop.narrowing.iter().filter_map(|n| {
            n.expires_at
                .map(|e| (e, n.block, format!(", first-party block {}", n.block)))
        });
        let (e, block, what) = own
            .into_iter()
            .chain(narrowing)
            .find(|(e, _, _)| now > e.unix_timestamp())?;
        Some(Denial {
            kind: DenialKind::Expired,
            hop: Some(hop.hop),
            block: Some(block),
            agent: Some(hop.agent.clone()),
            reason: format!(
                "{}: expired at {} (request time {})",
                describe_hop(chain, hop, &what),
                rfc(e),
                rfc_unix(now)
            ),
            limit: None,
            restriction: None,
        })
    })
}

/// The first hop (or first-party narrowing block) none of whose
/// alternatives is valid at `req`'s time by its own time constraints
/// (`time>=…`, `time<=…`), as a `not_allowed` denial naming it: the rest
/// of what a token-only check ([`crate::Check::Token`]) asks of time.
pub(crate) fn time_window_denial(chain: &Chain, req: &Request) -> Option<Denial> {
    let valid_now = |grant: &Grant| {
        grant.alternatives.is_empty()
            || grant.alternatives.iter().any(|a| {
                a.constraints
                    .iter()
                    .filter(|c| c.param().is_none())
                    .all(|c| c.holds(req))
            })
    };
    chain.hops.iter().find_map(|hop| {
        let narrowing = hop.narrowing.iter().map(|n| {
            (
                &n.grant,
                n.block,
                format!(", first-party block {}", n.block),
            )
        });
        let (_, block, what) = std::iter::once((&hop.grant, hop.block, String::new()))
            .chain(narrowing)
            .find(|(g, _, _)| !valid_now(g))?;
        Some(Denial {
            kind: DenialKind::NotAllowed,
            hop: Some(hop.hop),
            block: Some(block),
            agent: Some(hop.agent.clone()),
            reason: format!(
                "{}: no alternative of its grant is valid at the request time ({})",
                describe_hop(chain, hop, &what),
                rfc_unix(req.time_unix())
            ),
            limit: None,
            restriction: None,
        })
    })
}

/// How every denial names a hop: `hop 0 (root token for "user:alice",
/// agent "support")` or `hop 2 (agent "b", delegated by "a")`; `extra` is
/// appended inside the parentheses (e.g. `, first-party block 3`). Every
/// token-derived string in a reason is quoted and escaped
/// ([`mandate_spec::display`]).
pub(crate) fn describe_hop(chain: &Chain, hop: &Hop, extra: &str) -> String {
    match hop.hop {
        0 => format!(
            "hop 0 (root token for {}, agent {}{extra})",
            quoted(&chain.principal),
            quoted(&hop.agent)
        ),
        n => {
            let by = chain.hops.get(n - 1).map_or("?", |h| h.agent.as_str());
            format!(
                "hop {n} (agent {}, delegated by {}{extra})",
                quoted(&hop.agent),
                quoted(by)
            )
        }
    }
}

fn explain_grant(grant: &Grant, req: &Request, check_rule: &str) -> String {
    if grant.alternatives.is_empty() {
        return format!("Datalog check failed: {}", quoted(check_rule));
    }
    let reasons: Vec<String> = grant
        .alternatives
        .iter()
        .filter_map(|alt| why_not(alt, req).map(|w| format!("{w} (allows {alt})")))
        .collect();
    match reasons.len() {
        // The alternatives allow it in Rust, yet Datalog failed: a raw check
        // or a type mismatch. Show the check.
        0 => format!("check failed: {}", quoted(check_rule)),
        1 => reasons.into_iter().next().unwrap_or_default(),
        _ => format!("no alternative allows the request: {}", reasons.join("; ")),
    }
}

/// The first condition of `alt` the request fails, in words.
fn why_not(alt: &Alternative, req: &Request) -> Option<String> {
    if !alt.actions.contains(&req.action) {
        return Some(format!("action {} is not allowed", quoted(&req.action)));
    }
    if !alt.resource.matches(&req.resource) {
        let how = match &alt.resource {
            ResourcePattern::Exact(_) => "is not",
            ResourcePattern::Children(_) => "is not directly under",
            ResourcePattern::Descendants(_) => "is not under",
        };
        return Some(format!(
            "resource {} {how} {}",
            quoted(&req.resource),
            alt.resource
        ));
    }
    for c in &alt.constraints {
        if c.holds(req) {
            continue;
        }
        return Some(match c.param() {
            Some(p) => match req.params.get(p) {
                None => format!("parameter {} is missing, and {c} requires it", word(p)),
                Some(v) => format!("parameter {}={v} violates {c}", word(p)),
            },
            None => format!("request time {} is outside {c}", rfc_unix(req.time_unix())),
        });
    }
    None
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn rfc_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(rfc)
        .unwrap_or_else(|_| secs.to_string())
}
