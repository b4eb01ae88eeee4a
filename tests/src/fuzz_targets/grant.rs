//! Grants as people write them: the grant, constraint, pattern, approval
//! rule, duration, key and value parsers, and what a parsed grant becomes in
//! a token.

use super::{
    assert_same_decision, check_decision, fixed_requests, parse_request_line, request_time,
    ring_key, ring_verifier, text, T0,
};
use crate::{delegation, mint_request, Agent};
use mandate_attenuate::delegate_at;
use mandate_issuer::Issuer;
use mandate_spec::{
    decode_blocks, format_private_key, format_public_key, parse_duration, parse_private_key,
    parse_public_key, Alternative, Chain, Constraint, Grant, IntCmp, Request, ResourcePattern,
    Value,
};
use mandate_verifier::DenialKind;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

/// Most `allow`, `where`, `approval` and `datalog` lines used (each).
const MAX_LINES: usize = 8;

/// Lines `allow: ACTION[,ACTION…]:PATTERN`, `where: CONSTRAINT`,
/// `approval: RULE`, `datalog: CHECK`, `holder`, `request: ACTION RESOURCE
/// [NAME=VALUE]…`, and the single-parser lines `duration:`, `pattern:`,
/// `constraint:`, `key:`, `value:`.
///
/// Properties: every parser's output prints back to text it parses to the
/// same value, where the printed form is a parse form (alternatives,
/// patterns, integer and time bounds, integer sets, durations, keys, values,
/// unless a value had to be shown quoted); a grant minted into
/// a token decodes back to the same grant; the verifier's Datalog decision
/// on the token equals the grant's Rust semantics; delegating the same grant
/// once more changes no decision.
pub fn grant_text(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let mut allow = Vec::new();
    let mut where_ = Vec::new();
    let mut approvals = Vec::new();
    let mut datalog = Vec::new();
    let mut requests = Vec::new();
    let mut holder = false;
    for line in s.lines() {
        if line.trim() == "holder" {
            holder = true;
            continue;
        }
        let Some((label, rest)) = line.split_once(':') else {
            continue;
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match label.trim() {
            "allow" => allow.push(rest),
            "where" => where_.push(rest),
            "approval" => approvals.push(rest),
            "datalog" => datalog.push(rest.to_string()),
            "request" => requests.extend(parse_request_line(rest)),
            "duration" => duration_round_trip(rest),
            "pattern" => pattern_round_trip(rest),
            "constraint" => constraint_round_trip(rest),
            "key" => key_round_trip(rest),
            "value" => value_round_trip(rest),
            _ => {}
        }
    }
    allow.truncate(MAX_LINES);
    where_.truncate(MAX_LINES);
    approvals.truncate(MAX_LINES);
    datalog.truncate(MAX_LINES);
    requests.truncate(MAX_LINES);
    for a in &allow {
        if let Ok(alt) = Alternative::parse(a) {
            let printed = alt.to_string();
            if quoted(&printed) {
                continue;
            }
            assert_eq!(
                Alternative::parse(&printed).ok(),
                Some(alt.clone()),
                "an alternative prints as {alt}, which parses to another"
            );
        }
    }
    let Ok(mut grant) = Grant::parse(&allow, &where_) else {
        return;
    };
    for rule in &approvals {
        match grant.clone().with_approval(rule) {
            Ok(g) => grant = g,
            Err(_) => return,
        }
    }
    grant.datalog = datalog;
    grant.holder_bound = holder;
    let _ = grant.to_string();
    if grant.validate().is_err() {
        return;
    }
    in_a_token(&grant, &requests);
}

/// Mints `grant` into a root token, reads it back, decides `requests` with
/// it, and delegates it once more.
fn in_a_token(grant: &Grant, requests: &[Request]) {
    let issued = UNIX_EPOCH + Duration::from_secs(T0);
    let agent = Agent {
        id: "agent-1".into(),
        key: ring_key(1),
    };
    let mut mint = mint_request(&agent, grant.clone());
    mint.purpose = None;
    let Ok(minted) = issuer().mint_at(&mint, issued) else {
        return;
    };
    let canonical = grant.datalog.is_empty();
    let chain = decode_blocks(&minted.token)
        .map_err(|e| e.to_string())
        .and_then(|b| Chain::from_blocks(&b, Some(0)).map_err(|e| e.to_string()));
    let chain = match chain {
        Ok(c) => c,
        // Raw Datalog may break a chain rule the issuer does not know.
        Err(_) if !canonical => return,
        Err(e) => panic!("the issuer minted {grant} into a token that is no chain: {e}"),
    };
    if canonical {
        assert_eq!(
            normalized(&chain.hops[0].grant),
            normalized(grant),
            "minted {grant}, the token reads back {}",
            chain.hops[0].grant
        );
    }
    let next = Agent {
        id: "agent-2".into(),
        key: ring_key(2),
    };
    let child = delegate_at(
        &minted.token,
        &agent.key,
        &delegation(&next, grant.clone()),
        issued,
    )
    .ok();
    let verifier = verifier();
    for request in fixed_requests().iter().chain(requests) {
        let decision = verifier.authorize(&minted.token, request);
        check_decision(&minted.token, request, &decision);
        if canonical && !grant.holder_bound && request.validate().is_ok() {
            let expected = rust_allows(grant, request);
            let evaluation = decision
                .denial
                .as_ref()
                .is_some_and(|d| d.kind == DenialKind::Evaluation);
            if !evaluation {
                assert_eq!(
                    decision.is_allowed(),
                    expected,
                    "{grant} on {request:?}: Datalog {decision:?}, Rust semantics {expected}"
                );
            }
        }
        if let Some(child) = &child {
            let again = verifier.authorize(&child.token, request);
            check_decision(&child.token, request, &again);
            assert_same_decision(&decision, &again, "delegating the same grant changed it");
        }
    }
}

/// `grant` with each alternative's constraints in one order and time bounds
/// in UTC: the encoding writes `PARAM=VALUE` into the query's predicates,
/// ahead of the other constraints, and Biscuit dates have no offset, so
/// order and offset are all a decoded grant may change.
fn normalized(grant: &Grant) -> Grant {
    let utc = |at: &time::OffsetDateTime| at.to_offset(time::UtcOffset::UTC);
    let mut g = grant.clone();
    for alt in &mut g.alternatives {
        for c in &mut alt.constraints {
            match c {
                Constraint::NotBefore { at } | Constraint::NotAfter { at } => *at = utc(at),
                _ => {}
            }
        }
        alt.constraints.sort_by_key(|c| format!("{c:?}"));
    }
    g
}

/// The grant's Rust semantics, approvals included: some alternative allows
/// the request and either needs no approval or the request fails one of
/// the rule's conditions (its negation holds: the parameter is there, an
/// integer, on the other side of the bound).
fn rust_allows(grant: &Grant, request: &Request) -> bool {
    grant.alternatives.iter().any(|a| {
        a.allows(request)
            && match &a.approval {
                None => true,
                Some(rule) => rule.when.iter().any(|c| match c {
                    Constraint::Int { param, cmp, bound } => Constraint::Int {
                        param: param.clone(),
                        cmp: cmp.negated(),
                        bound: *bound,
                    }
                    .holds(request),
                    _ => false,
                }),
            }
    })
}

fn issuer() -> &'static Issuer {
    static I: OnceLock<Issuer> = OnceLock::new();
    I.get_or_init(|| Issuer::new(ring_key(0)))
}

/// A verifier with a cache: each token's signatures are checked once for
/// all its requests (`token_bytes` checks that caching changes nothing).
fn verifier() -> &'static mandate_verifier::Verifier {
    static V: OnceLock<mandate_verifier::Verifier> = OnceLock::new();
    V.get_or_init(|| {
        ring_verifier().with_cache(mandate_verifier::CacheOptions {
            max_entries: 64,
            ttl: Duration::from_secs(3600),
        })
    })
}

/// Whether printed text quotes a value: token-derived text that could be
/// read as structure is shown quoted and escaped (`mandate_spec::display`),
/// and that form is for people, not a parse form.
fn quoted(printed: &str) -> bool {
    printed.contains('"')
}

fn duration_round_trip(text: &str) {
    if let Ok(d) = parse_duration(text) {
        assert!(d.as_secs() > 0, "{text:?} parsed to zero");
        let again = parse_duration(&format!("{}s", d.as_secs()));
        assert_eq!(again.ok(), Some(d), "{text:?} → {d:?} does not parse back");
    }
}

fn pattern_round_trip(text: &str) {
    let Ok(p) = ResourcePattern::parse(text) else {
        return;
    };
    if !quoted(&p.to_string()) {
        assert_eq!(
            ResourcePattern::parse(&p.to_string()).ok(),
            Some(p.clone()),
            "pattern {text:?} prints as {p}, which parses to another"
        );
    }
    // A pattern matches what a request for it names, and `/*` never
    // reaches further than `/**` on the same directory.
    let r = request_time();
    for resource in [text, "/api/customers/42", "/api/customers/", "/"] {
        let m = p.matches(resource);
        if let ResourcePattern::Children(d) = &p {
            if m {
                assert!(
                    ResourcePattern::Descendants(d.clone()).matches(resource),
                    "{p} matches {resource:?} but {d}** does not"
                );
            }
        }
        let _ = Request::new("read", resource).at(r).validate();
    }
}

fn constraint_round_trip(text: &str) {
    let Ok(c) = Constraint::parse(text) else {
        return;
    };
    // The forms whose printed text is also their parse form.
    let reparses = match &c {
        Constraint::Int { .. } | Constraint::NotBefore { .. } | Constraint::NotAfter { .. } => true,
        Constraint::Equals { value, .. } => matches!(value, Value::Int(_)),
        Constraint::OneOf { values, .. } => values.iter().all(|v| matches!(v, Value::Int(_))),
        Constraint::StartsWith { .. } | Constraint::EndsWith { .. } => false,
    };
    if reparses && !quoted(&c.to_string()) {
        assert_eq!(
            Constraint::parse(&c.to_string()).ok(),
            Some(c.clone()),
            "constraint {text:?} prints as {c}, which parses to another"
        );
    }
    if let Constraint::Int { cmp, .. } = &c {
        assert_eq!(cmp.negated().negated(), *cmp);
        assert_ne!(cmp.negated(), *cmp);
        let _ = IntCmp::negated(*cmp);
    }
}

fn key_round_trip(text: &str) {
    if let Ok(k) = parse_public_key(text) {
        let printed = format_public_key(&k);
        assert_eq!(
            parse_public_key(&printed).ok(),
            Some(k),
            "key {text:?} prints as {printed}, which parses to another"
        );
    }
    if let Ok(k) = parse_private_key(text) {
        let printed = format_private_key(&k);
        let again = parse_private_key(&printed).map(|k| k.public());
        assert_eq!(
            again.ok(),
            Some(k.public()),
            "a private key does not print back"
        );
    }
}

fn value_round_trip(text: &str) {
    match Value::infer(text) {
        Value::Int(i) => assert_eq!(i.to_string(), text, "{text:?} typed as {i}"),
        Value::Str(s) => assert_eq!(s, text),
    }
}
