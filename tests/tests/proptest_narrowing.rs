//! Property tests: a child token never allows a request its parent denies.
//!
//! Random grants, child grants (often the parent's, widened) and requests;
//! the verifier's decision must also agree with the Rust reference semantics
//! (`Alternative::allows`) and with Biscuit's evaluation order, which denies a
//! mistyped parameter (§5.3). A verifier with the verification cache (whose
//! cached tokens are decided natively, without Datalog, when all their
//! checks are Mandate's own) must decide every request exactly as one
//! without it (biscuit-auth's authorizer). Time windows and request times
//! around them are drawn too. `PROPTEST_CASES` sets the number of cases.
#![allow(clippy::unwrap_used)]

use mandate_spec::{
    resource_parent, Alternative, Constraint, Grant, IntCmp, Request, ResourcePattern, Value,
};
use mandate_tests::{grant, Family};
use mandate_verifier::{CacheOptions, Decision, DenialKind, Verifier};
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};
use time::OffsetDateTime;

const ACTIONS: [&str; 4] = ["read", "list", "write", "delete"];
/// Request resources: paths at several depths, directories, near-misses.
const RESOURCES: [&str; 10] = [
    "/",
    "/api/",
    "/api/a",
    "/api/a/",
    "/api/a/1",
    "/api/a/2",
    "/api/a/1/x",
    "/api/b/1",
    "/api/ab",
    "/api/ab/1",
];
/// Directories for `/*` and `/**` patterns.
const DIRS: [&str; 5] = ["/", "/api/", "/api/a/", "/api/a/1/", "/api/b/"];
const INT_PARAMS: [&str; 2] = ["n", "m"];
const STRINGS: [&str; 5] = ["a", "ab", "b", "ba", "abc"];

fn pattern() -> impl Strategy<Value = ResourcePattern> {
    prop_oneof![
        select(&RESOURCES[..]).prop_map(|r| ResourcePattern::Exact(r.into())),
        select(&DIRS[..]).prop_map(|d| ResourcePattern::Children(d.into())),
        select(&DIRS[..]).prop_map(|d| ResourcePattern::Descendants(d.into())),
    ]
}

fn int_cmp() -> impl Strategy<Value = IntCmp> {
    select(vec![IntCmp::Le, IntCmp::Lt, IntCmp::Ge, IntCmp::Gt])
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-2i64..=2).prop_map(Value::Int),
        select(&STRINGS[..]).prop_map(Value::from),
    ]
}

fn constraint() -> impl Strategy<Value = Constraint> {
    prop_oneof![
        // Integer bounds on `n` and `m`.
        3 => (select(&INT_PARAMS[..]), int_cmp(), -3i64..=3).prop_map(|(p, cmp, bound)| {
            Constraint::Int { param: p.into(), cmp, bound }
        }),
        // Constraints on the string parameter `s` (and typed `=`/`in` on `n`).
        1 => (select(vec!["s", "n"]), value())
            .prop_map(|(p, value)| Constraint::Equals { param: p.into(), value }),
        1 => select(&STRINGS[..])
            .prop_map(|s| Constraint::StartsWith { param: "s".into(), prefix: s.into() }),
        1 => select(&STRINGS[..])
            .prop_map(|s| Constraint::EndsWith { param: "s".into(), suffix: s.into() }),
        // `in` sets are all integers or all strings (Biscuit sets are homogeneous).
        1 => (select(vec!["s", "n"]), prop_oneof![
            prop::collection::btree_set((-2i64..=2).prop_map(Value::Int), 1..=3),
            prop::collection::btree_set(select(&STRINGS[..]).prop_map(Value::from), 1..=3),
        ])
            .prop_map(|(p, values)| Constraint::OneOf { param: p.into(), values }),
        // Time windows around the requests' times.
        1 => (any::<bool>(), select(&TIME_OFFSETS[..])).prop_map(|(before, offset)| {
            let at = OffsetDateTime::from_unix_timestamp(base_time() + offset).unwrap();
            if before { Constraint::NotBefore { at } } else { Constraint::NotAfter { at } }
        }),
    ]
}

/// 64 cases, or `PROPTEST_CASES` (an explicit count would override it).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Seconds from [`base_time`] of time constraints and of request times.
const TIME_OFFSETS: [i64; 5] = [-60, -1, 0, 1, 60];

/// Now in whole seconds (Biscuit dates are whole seconds), fixed for the
/// run: tokens minted now stay valid for every request time drawn.
fn base_time() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| OffsetDateTime::now_utc().unix_timestamp())
}

fn actions() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(select(&ACTIONS[..]).prop_map(String::from), 1..=3)
}

fn alternative() -> impl Strategy<Value = Alternative> {
    (
        actions(),
        pattern(),
        prop::collection::vec(constraint(), 0..=3),
    )
        .prop_map(|(actions, resource, constraints)| Alternative {
            actions,
            resource,
            constraints,
            approval: None,
        })
}

fn grant_of(alternatives: impl Strategy<Value = Vec<Alternative>>) -> impl Strategy<Value = Grant> {
    alternatives.prop_map(|alternatives| Grant {
        alternatives,
        ..Grant::default()
    })
}

/// A child alternative made from a parent one by trying to widen it: more
/// actions, another pattern, looser bounds, fewer constraints.
fn widened(parent: Alternative) -> impl Strategy<Value = Alternative> {
    (
        prop::option::of(select(&ACTIONS[..])),
        prop::option::of(pattern()),
        0usize..=2,
        -2i64..=3,
    )
        .prop_map(move |(extra_action, new_pattern, dropped, loosen)| {
            let mut alt = parent.clone();
            if let Some(a) = extra_action {
                alt.actions.insert(a.into());
            }
            if let Some(p) = new_pattern {
                alt.resource = p;
            }
            let keep = alt.constraints.len().saturating_sub(dropped);
            alt.constraints.truncate(keep);
            for c in &mut alt.constraints {
                if let Constraint::Int { cmp, bound, .. } = c {
                    *bound += match cmp {
                        IntCmp::Le | IntCmp::Lt => loosen,
                        IntCmp::Ge | IntCmp::Gt => -loosen,
                    };
                }
            }
            alt
        })
}

/// A root grant and a child grant: random, or the root's alternatives widened.
fn parent_and_child() -> impl Strategy<Value = (Grant, Grant)> {
    grant_of(prop::collection::vec(alternative(), 1..=3)).prop_flat_map(|parent| {
        let widen: Vec<_> = parent
            .alternatives
            .iter()
            .map(|a| widened(a.clone()))
            .collect();
        let child = prop_oneof![
            grant_of(prop::collection::vec(alternative(), 0..=3)),
            (widen, prop::option::of(alternative())).prop_map(|(mut alts, extra)| {
                alts.extend(extra);
                Grant {
                    alternatives: alts,
                    ..Grant::default()
                }
            }),
        ];
        (Just(parent), child)
    })
}

/// A parameter value the request may carry: often an integer, sometimes a
/// string where an integer is expected, sometimes missing.
fn int_param() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => (-4i64..=4).prop_map(|i| Some(Value::Int(i))),
        1 => select(vec!["1", "a"]).prop_map(|s| Some(Value::from(s))),
        1 => Just(None),
    ]
}

fn str_param() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => select(&STRINGS[..]).prop_map(|s| Some(Value::from(s))),
        1 => (0i64..=1).prop_map(|i| Some(Value::Int(i))),
        1 => Just(None),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        select(&ACTIONS[..]),
        select(&RESOURCES[..]),
        int_param(),
        int_param(),
        str_param(),
        select(&TIME_OFFSETS[..]),
    )
        .prop_map(|(action, resource, n, m, s, offset)| {
            let at = UNIX_EPOCH + Duration::from_secs((base_time() + offset) as u64);
            let mut req = Request::new(action, resource).at(at);
            for (name, v) in [("n", n), ("m", m), ("s", s)] {
                if let Some(v) = v {
                    req = req.param(name, v);
                }
            }
            req
        })
}

/// A request aimed at one alternative of `grant`: one of its actions, a
/// resource its pattern matches, parameters drawn as in [`request`] (so the
/// constraints hold only sometimes). Random grants rarely allow a random
/// request; these exercise the allowed side.
fn request_for(grant: &Grant) -> BoxedStrategy<Request> {
    let alternatives = grant.alternatives.clone();
    if alternatives.is_empty() {
        return request().boxed();
    }
    (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        request(),
    )
        .prop_map(move |(alt, action, deeper, random)| {
            let alt = alt.get(&alternatives);
            let actions: Vec<&String> = alt.actions.iter().collect();
            let resource = match &alt.resource {
                ResourcePattern::Exact(r) => r.clone(),
                ResourcePattern::Children(d) => format!("{d}1"),
                ResourcePattern::Descendants(d) if deeper => format!("{d}1/x"),
                ResourcePattern::Descendants(d) => d.clone(),
            };
            Request {
                action: action.get(&actions).to_string(),
                resource,
                ..random
            }
        })
        .boxed()
}

/// Requests for a parent and a child: random, or aimed at either grant.
fn requests_for(parent: &Grant, child: &Grant, n: usize) -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec(
        prop_oneof![request(), request_for(parent), request_for(child)],
        n,
    )
}

// ---- the reference semantics -------------------------------------------------

/// Rust reference semantics of one hop: a grant with no alternative adds no
/// restriction of its own; otherwise some alternative must allow.
fn reference_allows(grant: &Grant, req: &Request) -> bool {
    grant.alternatives.is_empty() || grant.alternatives.iter().any(|a| a.allows(req))
}

/// An expression Biscuit cannot evaluate (an integer comparison on a string,
/// `starts_with` on an integer): it aborts the whole authorization.
#[derive(Debug, PartialEq, Eq)]
struct TypeError;

/// How Biscuit evaluates the canonical query of one alternative (§4.1):
/// body predicates first (a missing parameter or an `=` mismatch simply
/// matches nothing), then the expressions in order, stopping at the first
/// false one — or at the first one that cannot be evaluated.
fn query_model(alt: &Alternative, req: &Request) -> Result<bool, TypeError> {
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
    // Expressions: the expiry (always true here), the action set, the prefix…
    if !single_action && !alt.actions.contains(&req.action) {
        return Ok(false);
    }
    if let ResourcePattern::Descendants(d) = &alt.resource {
        if !req.resource.starts_with(d.as_str()) {
            return Ok(false);
        }
    }
    // …then the constraints in order.
    for c in &alt.constraints {
        let v = c.param().and_then(|p| req.params.get(p));
        let holds = match (c, v) {
            (Constraint::Equals { .. }, _) => true,
            (Constraint::Int { .. }, Some(Value::Int(_))) => c.holds(req),
            (Constraint::StartsWith { .. } | Constraint::EndsWith { .. }, Some(Value::Str(_))) => {
                c.holds(req)
            }
            (Constraint::OneOf { .. }, _) => c.holds(req),
            (
                Constraint::Int { .. }
                | Constraint::StartsWith { .. }
                | Constraint::EndsWith { .. },
                _,
            ) => return Err(TypeError),
            _ => c.holds(req),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One hop's check: its queries in order, the first match wins, the first
/// evaluation error aborts.
fn hop_model(grant: &Grant, req: &Request) -> Result<bool, TypeError> {
    if grant.alternatives.is_empty() {
        return Ok(true);
    }
    for alt in &grant.alternatives {
        if query_model(alt, req)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What the verifier must answer for a chain of hops with these grants.
fn expect(grants: &[&Grant], decision: &Decision) -> Result<(), TestCaseError> {
    let req = &decision.request;
    let mut results = Vec::new();
    for g in grants {
        let r = hop_model(g, req);
        // Whenever Datalog completes, it agrees with the Rust reference.
        if let Ok(allowed) = r {
            prop_assert_eq!(allowed, reference_allows(g, req), "grant {}", g);
        }
        results.push(r);
    }
    if results.iter().any(|r| r.is_err()) {
        // §5.3: a mistyped parameter denies, fail closed, naming no hop.
        let denial = decision.denial.as_ref();
        prop_assert!(denial.is_some(), "mistyped request allowed");
        let denial = denial.unwrap();
        prop_assert_eq!(denial.kind, DenialKind::Evaluation, "{:?}", denial);
        prop_assert_eq!(denial.hop, None);
    } else if let Some(first) = results.iter().position(|r| *r == Ok(false)) {
        let denial = decision.denial.as_ref();
        prop_assert!(denial.is_some(), "allowed, but hop {} denies", first);
        let denial = denial.unwrap();
        prop_assert_eq!(denial.kind, DenialKind::NotAllowed, "{:?}", denial);
        prop_assert_eq!(denial.hop, Some(first), "{:?}", denial);
        let who = format!("hop {first} (");
        prop_assert!(denial.reason.starts_with(&who), "{}", denial.reason);
    } else {
        prop_assert!(decision.is_allowed(), "denied: {:?}", decision.denial);
        // Allowed means every hop allows in the reference semantics too.
        for g in grants {
            prop_assert!(reference_allows(g, req));
        }
    }
    Ok(())
}

/// Constraints are a conjunction: compare decoded grants as sets.
fn normalised(grant: &Grant) -> Vec<(String, Vec<String>)> {
    grant
        .alternatives
        .iter()
        .map(|a| {
            let plain = Alternative {
                constraints: Vec::new(),
                ..a.clone()
            };
            let mut cs: Vec<String> = a.constraints.iter().map(|c| c.to_string()).collect();
            cs.sort();
            (plain.to_string(), cs)
        })
        .collect()
}

/// The cached verifier decides `req` at `depth` exactly as `uncached` did,
/// on a cache miss and on a hit.
fn cached_agrees(
    cached: &Verifier,
    family: &Family,
    depth: usize,
    req: &Request,
    uncached: &Decision,
) -> Result<(), TestCaseError> {
    for _ in 0..2 {
        let d = cached.authorize(&family.tokens[depth], req);
        prop_assert_eq!(
            d.is_allowed(),
            uncached.is_allowed(),
            "cached verifier disagrees on {:?} at depth {}: {:?} vs {:?}",
            req,
            depth,
            d.denial,
            uncached.denial
        );
        prop_assert_eq!(&d.denial, &uncached.denial);
    }
    Ok(())
}

proptest! {
    // Each case mints, delegates and verifies a dozen times: a verification
    // is ~25 ms in an unoptimized build (Ed25519), well under 1 ms in release.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_child_never_allows_what_its_parent_denies(
        (parent, child, requests) in parent_and_child().prop_flat_map(|(p, c)| {
            let requests = requests_for(&p, &c, 6);
            (Just(p), Just(c), requests)
        }),
    ) {
        let mut family = Family::mint(parent.clone());
        family.delegate(child.clone());
        let chain = &family.delegations[0].chain;
        // The grants the chain shows are the grants given.
        prop_assert_eq!(normalised(&chain.hops[0].grant), normalised(&parent));
        prop_assert_eq!(normalised(&chain.hops[1].grant), normalised(&child));

        let cached = family.verifier.clone().with_cache(CacheOptions::default());
        for req in &requests {
            let by_parent = family.authorize_at_depth(0, req);
            let by_child = family.authorize_at_depth(1, req);
            cached_agrees(&cached, &family, 0, req, &by_parent)?;
            cached_agrees(&cached, &family, 1, req, &by_child)?;
            prop_assert!(
                !by_child.is_allowed() || by_parent.is_allowed(),
                "child allows {:?} which the parent denies: {:?}",
                req,
                by_parent.denial
            );
            expect(&[&parent], &by_parent)?;
            expect(&[&parent, &child], &by_child)?;
        }
    }

    #[test]
    fn every_hop_of_a_deeper_chain_only_narrows(
        (grants, requests) in prop::collection::vec(
            grant_of(prop::collection::vec(alternative(), 1..=2)), 3)
            .prop_flat_map(|g| {
                let requests = requests_for(&g[0], &g[2], 4);
                (Just(g), requests)
            }),
    ) {
        let mut family = Family::mint(grants[0].clone());
        family.delegate(grants[1].clone());
        family.delegate(grants[2].clone());
        let cached = family.verifier.clone().with_cache(CacheOptions::default());
        for req in &requests {
            let decisions: Vec<Decision> =
                (0..=2).map(|d| family.authorize_at_depth(d, req)).collect();
            for (d, decision) in decisions.iter().enumerate() {
                cached_agrees(&cached, &family, d, req, decision)?;
            }
            for d in 1..=2 {
                prop_assert!(
                    !decisions[d].is_allowed() || decisions[d - 1].is_allowed(),
                    "depth {} allows {:?}, depth {} denies: {:?}",
                    d, req, d - 1, decisions[d - 1].denial
                );
            }
            expect(&[&grants[0]], &decisions[0])?;
            expect(&[&grants[0], &grants[1]], &decisions[1])?;
            expect(&[&grants[0], &grants[1], &grants[2]], &decisions[2])?;
        }
    }
}

/// Regression guard for the model itself: the documented §5.3 case where
/// Datalog denies although a later alternative would allow in Rust.
#[test]
fn a_type_error_in_an_earlier_alternative_denies_even_if_a_later_one_allows() {
    let g = grant(&["read:/api/a/*", "read:/api/**"], &["n<=3"]);
    let g = Grant {
        alternatives: vec![
            g.alternatives[0].clone(),
            Alternative {
                constraints: Vec::new(),
                ..g.alternatives[1].clone()
            },
        ],
        ..Grant::default()
    };
    let req = Request::new("read", "/api/a/1").param("n", "1");
    assert!(reference_allows(&g, &req), "the second alternative allows");
    assert_eq!(hop_model(&g, &req), Err(TypeError));
    let family = Family::mint(g.clone());
    let d = family.authorize(&req);
    assert_eq!(d.denial.unwrap().kind, DenialKind::Evaluation);
    // With the alternatives the other way round, the match comes first.
    let swapped = Grant {
        alternatives: g.alternatives.iter().rev().cloned().collect(),
        ..Grant::default()
    };
    assert_eq!(hop_model(&swapped, &req), Ok(true));
    mandate_tests::assert_allowed(&Family::mint(swapped).authorize(&req));
}
