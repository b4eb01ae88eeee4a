//! Mandate's own checks decided in Rust, as biscuit-auth's Datalog decides
//! them.
//!
//! Almost every check a Mandate token carries is written by Mandate's
//! encoder: the canonical grant check of a block (§4.1), the holder check
//! (§15) and the limits guard (§18.2). Such a check is read back into its
//! grant when the token is loaded, and kept only if encoding that grant
//! again writes **the very same check** (`grant_checks`): its Datalog is then
//! known exactly, and each request is decided by walking the grant in the
//! order biscuit-auth evaluates the query, with no world, symbol table or
//! fact conversion (most of a cached request's cost otherwise).
//!
//! Exactness is the point, not an approximation of it:
//! - predicates first (a missing parameter, another action, resource or
//!   `=` value matches nothing), then the expressions in the order the
//!   encoder writes them, stopping at the first false one;
//! - an expression biscuit-auth cannot evaluate (an integer comparison on a
//!   string parameter, `starts_with` on an integer) aborts the whole
//!   authorization in biscuit-auth (§5.3): here it denies;
//! - the queries of a check in order, the first match passes it.
//!
//! What biscuit-auth would see beside the request must not change the
//! answer: a token whose blocks define a request predicate (the chain
//! refuses them, §2; checked again here), or a verifier fact named like a
//! request predicate, is never decided here. Any other check (approval
//! rules, raw Datalog) leaves the whole token to the Datalog paths. The
//! caller acts on an allow only; a denial is decided again by biscuit-auth
//! for its explanation. `proptest_narrowing` compares cached (this path)
//! and uncached verifiers on random grants and requests, type errors
//! included.

use biscuit_auth::builder::{Check, Fact, Rule, Term};
use biscuit_auth::PublicKey;
use mandate_spec::{
    decode_check, grant_checks, is_holder_check, is_limits_check, resource_parent, vocab,
    Alternative, BlockContent, Constraint, Grant, Request, ResourcePattern, Value,
};
use std::collections::HashMap;
use std::time::SystemTime;

/// A token's checks, each known to be exactly what Mandate's encoder writes.
pub(super) struct Native {
    checks: Vec<NativeCheck>,
}

enum NativeCheck {
    /// The canonical check of a grant and an expiry (§4.1): passes when a
    /// query matches; an expiry-only check when `alternatives` is empty.
    Grant {
        expires: Option<i64>,
        alternatives: Vec<Alternative>,
    },
    /// `check if holder($holder)` (§15).
    Holder,
    /// `check if limits_enforced(1)` (§18.2).
    LimitsEnforced,
}

/// The request predicates: facts only the verifier supplies.
const REQUEST_PREDICATES: [&str; 4] =
    [vocab::OPERATION, vocab::RESOURCE, vocab::PARAM, vocab::TIME];

impl Native {
    /// The blocks' checks when every one of them is Mandate's own (and no
    /// block defines a reserved predicate); else `None`.
    pub(super) fn load(blocks: &[BlockContent]) -> Option<Native> {
        // The chain refuses all of these already (§2, §6); without them a
        // block's facts never meet a check's query here.
        let reserved = |f: &Fact| vocab::RESERVED.contains(&f.predicate.name.as_str());
        if blocks.iter().any(|b| {
            b.facts.iter().any(reserved) || !b.rule_heads.is_empty() || !b.scopes.is_empty()
        }) {
            return None;
        }
        let mut checks = Vec::new();
        for block in blocks {
            for check in &block.checks {
                let native = if is_holder_check(check) {
                    NativeCheck::Holder
                } else if is_limits_check(check) {
                    NativeCheck::LimitsEnforced
                } else {
                    let decoded = decode_check(check)?;
                    if decoded.alternatives.iter().any(|a| a.approval.is_some()) {
                        return None;
                    }
                    let grant = Grant {
                        alternatives: decoded.alternatives,
                        ..Grant::default()
                    };
                    // The same check again, or it is not the encoder's.
                    let at = decoded.expires.map(SystemTime::from);
                    match grant_checks(&grant, at).ok()?.as_slice() {
                        [again] if same_check(again, check) => {}
                        _ => return None,
                    }
                    NativeCheck::Grant {
                        expires: decoded.expires.map(|e| e.unix_timestamp()),
                        alternatives: grant.alternatives,
                    }
                };
                checks.push(native);
            }
        }
        Some(Native { checks })
    }

    /// Whether every check passes for `request` with the verifier's `extra`
    /// facts: exactly biscuit-auth's answer (an evaluation error is a
    /// denial there too). `None` when this path cannot tell (a verifier
    /// fact named like a request predicate, a time before 1970).
    pub(super) fn allows(&self, request: &Request, extra: &[Fact]) -> Option<bool> {
        if extra
            .iter()
            .any(|f| REQUEST_PREDICATES.contains(&f.predicate.name.as_str()))
            || request.time < SystemTime::UNIX_EPOCH
        {
            return None;
        }
        let now = request.time_unix();
        let has = |name: &str, terms: Option<&[Term]>| {
            extra.iter().any(|f| {
                f.predicate.name == name
                    && match terms {
                        Some(t) => f.predicate.terms.as_slice() == t,
                        None => f.predicate.terms.len() == 1,
                    }
            })
        };
        for check in &self.checks {
            let passed = match check {
                NativeCheck::Holder => has(vocab::HOLDER, None),
                NativeCheck::LimitsEnforced => {
                    has(vocab::LIMITS_ENFORCED, Some(&[Term::Integer(1)]))
                }
                NativeCheck::Grant {
                    expires,
                    alternatives,
                } if alternatives.is_empty() => expires.is_none_or(|e| now <= e),
                NativeCheck::Grant {
                    expires,
                    alternatives,
                } => {
                    // The first query that matches, or that cannot be
                    // evaluated (which aborts the authorization in
                    // biscuit-auth), decides.
                    match alternatives
                        .iter()
                        .map(|alt| query(alt, *expires, request, now))
                        .find(|r| !matches!(r, Ok(false)))
                    {
                        Some(Ok(true)) => true,
                        Some(Err(TypeError)) => return Some(false),
                        _ => false,
                    }
                }
            };
            if !passed {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// Whether two checks are the same Datalog: the same kind and queries
/// (head, body, expressions, scopes), with no parameter left to bind in
/// either (the builder records an empty parameter map where a decoded
/// block has none: the same check).
fn same_check(a: &Check, b: &Check) -> bool {
    let unbound =
        |m: &Option<HashMap<String, Option<Term>>>| m.as_ref().is_some_and(|m| !m.is_empty());
    let unbound_scopes =
        |m: &Option<HashMap<String, Option<PublicKey>>>| m.as_ref().is_some_and(|m| !m.is_empty());
    let same_rule = |x: &Rule, y: &Rule| {
        x.head == y.head
            && x.body == y.body
            && x.expressions == y.expressions
            && x.scopes == y.scopes
            && ![x, y]
                .iter()
                .any(|r| unbound(&r.parameters) || unbound_scopes(&r.scope_parameters))
    };
    a.kind == b.kind
        && a.queries.len() == b.queries.len()
        && a.queries
            .iter()
            .zip(&b.queries)
            .all(|(x, y)| same_rule(x, y))
}

/// An expression biscuit-auth cannot evaluate on the request's types.
struct TypeError;

/// One canonical query (§4.1), in biscuit-auth's order: the body predicates
/// (each matches at most one request fact), then the expressions as the
/// encoder writes them: expiry, action set, resource prefix, constraints.
fn query(
    alt: &Alternative,
    expires: Option<i64>,
    req: &Request,
    now: i64,
) -> Result<bool, TypeError> {
    let single_action = alt.actions.len() == 1;
    if single_action && !alt.actions.contains(&req.action) {
        return Ok(false);
    }
    match &alt.resource {
        ResourcePattern::Exact(r) if *r != req.resource => return Ok(false),
        ResourcePattern::Children(d) if resource_parent(&req.resource) != Some(d.as_str()) => {
            return Ok(false)
        }
        _ => {}
    }
    for c in &alt.constraints {
        let Some(name) = c.param() else { continue };
        match (req.params.get(name), c) {
            (None, _) => return Ok(false),
            (Some(v), Constraint::Equals { value, .. }) if v != value => return Ok(false),
            _ => {}
        }
    }
    if expires.is_some_and(|e| now > e) {
        return Ok(false);
    }
    if !single_action && !alt.actions.contains(&req.action) {
        return Ok(false);
    }
    if let ResourcePattern::Descendants(d) = &alt.resource {
        if !req.resource.starts_with(d.as_str()) {
            return Ok(false);
        }
    }
    for c in &alt.constraints {
        let value = c.param().and_then(|p| req.params.get(p));
        let holds = match (c, value) {
            // A literal in the predicate, matched above.
            (Constraint::Equals { .. }, _) => true,
            (Constraint::Int { .. }, Some(Value::Int(_))) => c.holds(req),
            (Constraint::StartsWith { .. } | Constraint::EndsWith { .. }, Some(Value::Str(_))) => {
                c.holds(req)
            }
            (
                Constraint::Int { .. }
                | Constraint::StartsWith { .. }
                | Constraint::EndsWith { .. },
                _,
            ) => return Err(TypeError),
            // Set membership never fails on a type; time bounds compare dates.
            (
                Constraint::OneOf { .. }
                | Constraint::NotBefore { .. }
                | Constraint::NotAfter { .. },
                _,
            ) => c.holds(req),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}
