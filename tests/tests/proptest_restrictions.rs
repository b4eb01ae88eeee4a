//! Property tests of live restrictions (SPEC §19): a restriction only
//! narrows.
//!
//! Random chains (a root and up to two delegations with random grants),
//! random restrictions (1 to 3, each with 1 to 3 `deny`, `where`,
//! `require-approval` and `limit` rules) on random targets — a hop's block
//! or agent key (some deeper than the token decided on), the family, the
//! principal, or something else — and random requests (random, or aimed at
//! the grants), decided at one instant by a verifier without restrictions
//! and by the same verifier with them (with or without the verification
//! cache, with or without a usage meter). Checked, for every request:
//!
//! - the verifier with restrictions never allows what the one without
//!   denies;
//! - a `deny` rule (or a `where` rule) in effect that matches the request
//!   always denies it, `restricted`, naming the first such restriction (in
//!   chain order, the principal's last), its rule and the hop its target
//!   reaches; the Rust reference (`RestrictionRule::denies`) agrees with an
//!   independent model of the §19.2 table (conditions fail closed);
//! - otherwise a Datalog denial is the same denial; an allowed request
//!   needs the restrictions' approvals (`needs_approval`), then their
//!   limits: `limit_unavailable` without a meter, else charged together
//!   (`limit_exceeded` when one has no room);
//! - the decision lists exactly the restrictions in effect.
#![allow(clippy::unwrap_used)]

use mandate_spec::{
    Alternative, Constraint, Grant, IntCmp, Request, ResourcePattern, Restriction,
    RestrictionEntry, RestrictionRule, RestrictionTarget, Value,
};
use mandate_tests::{Family, PRINCIPAL};
use mandate_verifier::revocation::RevocationStore;
use mandate_verifier::usage::UsageStore;
use mandate_verifier::{CacheOptions, Decision, DenialKind, Outcome};
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;
use time::OffsetDateTime;

// ---- generators (as in proptest_narrowing.rs) ------------------------------------

const ACTIONS: [&str; 4] = ["read", "list", "write", "delete"];
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

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-2i64..=2).prop_map(Value::Int),
        select(&STRINGS[..]).prop_map(Value::from),
    ]
}

/// An integer bound (the only condition an approval rule takes, §14.1).
fn int_bound() -> impl Strategy<Value = Constraint> {
    (
        select(&INT_PARAMS[..]),
        select(vec![IntCmp::Le, IntCmp::Lt, IntCmp::Ge, IntCmp::Gt]),
        -3i64..=3,
    )
        .prop_map(|(p, cmp, bound)| Constraint::Int {
            param: p.into(),
            cmp,
            bound,
        })
}

fn constraint() -> impl Strategy<Value = Constraint> {
    prop_oneof![
        3 => (
            select(&INT_PARAMS[..]),
            select(vec![IntCmp::Le, IntCmp::Lt, IntCmp::Ge, IntCmp::Gt]),
            -3i64..=3,
        )
            .prop_map(|(p, cmp, bound)| Constraint::Int { param: p.into(), cmp, bound }),
        1 => (select(vec!["s", "n"]), value())
            .prop_map(|(p, value)| Constraint::Equals { param: p.into(), value }),
        1 => select(&STRINGS[..])
            .prop_map(|s| Constraint::StartsWith { param: "s".into(), prefix: s.into() }),
        1 => select(&STRINGS[..])
            .prop_map(|s| Constraint::EndsWith { param: "s".into(), suffix: s.into() }),
        1 => (select(vec!["s", "n"]), prop_oneof![
            prop::collection::btree_set((-2i64..=2).prop_map(Value::Int), 1..=3),
            prop::collection::btree_set(select(&STRINGS[..]).prop_map(Value::from), 1..=3),
        ])
            .prop_map(|(p, values)| Constraint::OneOf { param: p.into(), values }),
    ]
}

fn actions() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(select(&ACTIONS[..]).prop_map(String::from), 1..=3)
}

fn alternative() -> impl Strategy<Value = Alternative> {
    (
        actions(),
        pattern(),
        prop::collection::vec(constraint(), 0..=2),
    )
        .prop_map(|(actions, resource, constraints)| Alternative {
            actions,
            resource,
            constraints,
            approval: None,
        })
}

fn grant() -> impl Strategy<Value = Grant> {
    prop::collection::vec(alternative(), 1..=3).prop_map(|alternatives| Grant {
        alternatives,
        ..Grant::default()
    })
}

fn param(int: bool) -> impl Strategy<Value = Option<Value>> {
    let typed: BoxedStrategy<Value> = if int {
        (-4i64..=4).prop_map(Value::Int).boxed()
    } else {
        select(&STRINGS[..]).prop_map(Value::from).boxed()
    };
    let other: BoxedStrategy<Value> = if int {
        select(vec!["1", "a"]).prop_map(Value::from).boxed()
    } else {
        (0i64..=1).prop_map(Value::Int).boxed()
    };
    prop_oneof![
        4 => typed.prop_map(Some),
        1 => other.prop_map(Some),
        1 => Just(None),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        select(&ACTIONS[..]),
        select(&RESOURCES[..]),
        param(true),
        param(true),
        param(false),
    )
        .prop_map(|(action, resource, n, m, s)| {
            let mut req = Request::new(action, resource);
            for (name, v) in [("n", n), ("m", m), ("s", s)] {
                if let Some(v) = v {
                    req = req.param(name, v);
                }
            }
            req
        })
}

/// A request aimed at one alternative of `grant` (its action, a resource
/// its pattern matches), parameters as in [`request`].
fn request_for(grant: &Grant) -> BoxedStrategy<Request> {
    let alternatives = grant.alternatives.clone();
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

/// What a restriction targets, relative to the generated chain.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// Hop k's block (k may be deeper than the token decided on).
    Block(usize),
    /// Hop k's agent key.
    Agent(usize),
    Family,
    Principal,
    /// A block, family and principal of nobody.
    Elsewhere(u8),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => (0usize..3).prop_map(Pick::Block),
        2 => (0usize..3).prop_map(Pick::Agent),
        1 => Just(Pick::Family),
        1 => Just(Pick::Principal),
        1 => (0u8..3).prop_map(Pick::Elsewhere),
    ]
}

/// The approver every generated approval rule names (its key is fixed: no
/// approval is ever attached, only asked for).
const ALICE: &str = "ed25519/1111111111111111111111111111111111111111111111111111111111111111";

fn rule() -> impl Strategy<Value = RestrictionRule> {
    prop_oneof![
        3 => (actions(), pattern(), prop::collection::vec(constraint(), 0..=2))
            .prop_map(|(actions, resource, when)| RestrictionRule::Deny { actions, resource, when }),
        2 => (
            prop::option::of((actions(), pattern())),
            prop::collection::vec(constraint(), 1..=2),
        )
            .prop_map(|(scope, constraints)| RestrictionRule::Only {
                actions: scope.as_ref().map(|s| s.0.clone()),
                resource: scope.map(|s| s.1),
                constraints,
            }),
        1 => (actions(), prop::collection::vec(int_bound(), 0..=1)).prop_map(|(actions, when)| {
            let text = actions.iter().cloned().collect::<Vec<_>>().join(",");
            let mut rule =
                RestrictionRule::parse_require_approval(&format!("{text} by alice={ALICE}"))
                    .unwrap();
            if let RestrictionRule::RequireApproval { approval, .. } = &mut rule {
                approval.when = when;
            }
            rule
        }),
        2 => (actions(), 1u64..=2).prop_map(|(actions, n)| {
            let text = actions.iter().cloned().collect::<Vec<_>>().join(",");
            RestrictionRule::parse_limit(&format!("{text} {n}/1h")).unwrap()
        }),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    target: Pick,
    rules: Vec<RestrictionRule>,
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec(
        (pick(), prop::collection::vec(rule(), 1..=3)).prop_map(|(target, mut rules)| {
            // A limit given twice is refused (§18.1): keep the first.
            let mut seen = Vec::new();
            rules.retain(|r| match r.limit() {
                Some(l) if seen.contains(l) => false,
                Some(l) => {
                    seen.push(l.clone());
                    true
                }
                None => true,
            });
            Spec { target, rules }
        }),
        1..=3,
    )
}

/// The chain's grants, the restrictions, and requests: (depth of the
/// token used, request).
type Case = (Vec<Grant>, Vec<Spec>, Vec<(usize, Request)>, bool, bool);

/// Each hop's grant: random, or its parent's again (so that requests
/// aimed at it pass every hop and reach the restrictions' approvals and
/// limits).
fn grants() -> impl Strategy<Value = Vec<Grant>> {
    (
        grant(),
        prop::collection::vec(prop::option::weighted(0.5, grant()), 0..=2),
    )
        .prop_map(|(root, hops)| {
            let mut grants = vec![root];
            for g in hops {
                let g = g.unwrap_or_else(|| grants.last().unwrap().clone());
                grants.push(g);
            }
            grants
        })
}

fn case() -> impl Strategy<Value = Case> {
    grants().prop_flat_map(|grants| {
        let depth = grants.len() - 1;
        let req = prop_oneof![
            1 => request(),
            2 => request_for(&grants[0]),
            2 => request_for(&grants[depth]),
        ];
        (
            Just(grants),
            specs(),
            prop::collection::vec((0..=depth, req), 8),
            any::<bool>(),
            any::<bool>(),
        )
    })
}

// ---- the model ---------------------------------------------------------------------

/// §19.2: a condition can be evaluated on a request when it carries the
/// parameter with the condition's type (a time condition always).
fn evaluable(c: &Constraint, req: &Request) -> bool {
    let int = |p: &str| matches!(req.params.get(p), Some(Value::Int(_)));
    let text = |p: &str| matches!(req.params.get(p), Some(Value::Str(_)));
    match c {
        Constraint::Int { param, .. } => int(param),
        Constraint::StartsWith { param, .. } | Constraint::EndsWith { param, .. } => text(param),
        Constraint::Equals { param, value } => match value {
            Value::Int(_) => int(param),
            _ => text(param),
        },
        Constraint::OneOf { param, values } => match values.iter().next() {
            Some(Value::Int(_)) => int(param),
            Some(_) => text(param),
            None => req.params.contains_key(param),
        },
        _ => true,
    }
}

/// A condition clearly exempts a request: evaluable, and false.
fn exempts(c: &Constraint, req: &Request) -> bool {
    evaluable(c, req) && !c.holds(req)
}

fn model_denies(rule: &RestrictionRule, req: &Request) -> bool {
    match rule {
        RestrictionRule::Deny {
            actions,
            resource,
            when,
        } => {
            actions.contains(&req.action)
                && resource.matches(&req.resource)
                && !when.iter().any(|c| exempts(c, req))
        }
        RestrictionRule::Only {
            actions,
            resource,
            constraints,
        } => {
            actions.as_ref().is_none_or(|a| a.contains(&req.action))
                && resource.as_ref().is_none_or(|r| r.matches(&req.resource))
                && constraints.iter().any(|c| !c.holds(req))
        }
        _ => false,
    }
}

fn model_needs_approval(rule: &RestrictionRule, req: &Request) -> bool {
    match rule {
        RestrictionRule::RequireApproval { actions, approval } => {
            actions.contains(&req.action) && !approval.when.iter().any(|c| exempts(c, req))
        }
        _ => false,
    }
}

/// A restriction written for a case, and where it stands in the lookup
/// order for a token of depth `d` (`None`: it does not reach it).
struct Made {
    restriction: Restriction,
    pick: Pick,
}

impl Made {
    /// (lookup rank, the hop it reaches) for a token with `depth` hops
    /// below the root: blocks first, then the family, the agent keys, the
    /// principal.
    fn reaches(&self, depth: usize) -> Option<(usize, usize)> {
        match self.pick {
            Pick::Block(k) if k <= depth => Some((k, k)),
            Pick::Family => Some((depth + 1, 0)),
            Pick::Agent(k) if k <= depth => Some((depth + 2 + k, k)),
            Pick::Principal => Some((usize::MAX, 0)),
            _ => None,
        }
    }
}

fn make(family: &Family, specs: &[Spec]) -> Vec<Made> {
    let deepest = family.delegations.last().map_or_else(
        || mandate_attenuate::read_chain(family.token()).unwrap(),
        |d| d.chain.clone(),
    );
    specs
        .iter()
        .map(|s| {
            let target = match s.target {
                Pick::Block(k) if k < deepest.hops.len() => {
                    RestrictionTarget::Block(deepest.hops[k].revocation_id.clone())
                }
                Pick::Agent(k) if k < family.agents.len() => {
                    RestrictionTarget::Agent(hex::encode(family.agents[k].key.public().to_bytes()))
                }
                Pick::Family => RestrictionTarget::Token(deepest.token_id.clone()),
                Pick::Principal => RestrictionTarget::Principal(PRINCIPAL.into()),
                // A hop the chain does not have, or nobody's.
                Pick::Block(k) | Pick::Agent(k) => {
                    RestrictionTarget::Block(hex::encode([0xb0 + k as u8; 64]))
                }
                Pick::Elsewhere(0) => RestrictionTarget::Block(hex::encode([0xee; 64])),
                Pick::Elsewhere(1) => RestrictionTarget::Token("someone-else".into()),
                Pick::Elsewhere(_) => RestrictionTarget::Principal("user:mallory".into()),
            };
            Made {
                restriction: Restriction {
                    id: uuid::Uuid::new_v4().to_string(),
                    target,
                    rules: s.rules.clone(),
                    restricted_at: OffsetDateTime::now_utc(),
                    by: "ops".into(),
                    reason: "property".into(),
                    expires_at: None,
                    note: None,
                },
                pick: s.target,
            }
        })
        .collect()
}

/// Limit counters of the model: (restriction index, rule index) → used.
type Counters = HashMap<(usize, usize), u64>;

/// Checks one decision of the restricted verifier against the plain one
/// and the model; charges the model's counters as the verifier did.
fn check(
    made: &[Made],
    depth: usize,
    req: &Request,
    plain: &Decision,
    restricted: &Decision,
    metered: bool,
    counters: &mut Counters,
) -> Result<(), TestCaseError> {
    prop_assert!(
        !restricted.is_allowed() || plain.is_allowed(),
        "restrictions allowed {:?}, which is denied without them: {:?}",
        req,
        plain.denial
    );
    let mut in_effect: Vec<(usize, usize, usize)> = made
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.reaches(depth).map(|(rank, hop)| (rank, i, hop)))
        .collect();
    in_effect.sort();
    let listed: BTreeSet<&String> = restricted.restrictions.iter().collect();
    let expected: BTreeSet<&String> = in_effect
        .iter()
        .map(|(_, i, _)| &made[*i].restriction.id)
        .collect();
    prop_assert_eq!(
        listed,
        expected,
        "the decision lists the restrictions in effect"
    );

    // The reference agrees with the model, for every rule.
    for m in made {
        for rule in &m.restriction.rules {
            prop_assert_eq!(
                rule.denies(req),
                model_denies(rule, req),
                "{} on {:?}",
                rule,
                req
            );
            prop_assert_eq!(
                rule.approval_needed(req).is_some(),
                model_needs_approval(rule, req),
                "{} on {:?}",
                rule,
                req
            );
        }
    }

    // 1. The first denying rule, in lookup order.
    let first = in_effect.iter().find_map(|&(_, i, hop)| {
        let r = &made[i].restriction;
        r.rules
            .iter()
            .find(|rule| model_denies(rule, req))
            .map(|rule| (r, rule, hop))
    });
    if let Some((r, rule, hop)) = first {
        let denial = restricted.denial.as_ref();
        prop_assert!(
            denial.is_some(),
            "a matching rule {} did not deny {:?}",
            rule,
            req
        );
        let denial = denial.unwrap();
        prop_assert_eq!(denial.kind, DenialKind::Restricted, "{:?}", denial);
        prop_assert_eq!(denial.hop, Some(hop), "{:?}", denial);
        let named = denial.restriction.as_ref().unwrap();
        prop_assert_eq!(&named.id, &r.id);
        prop_assert_eq!(&named.rule, &rule.to_string());
        prop_assert!(denial.reason.contains(&r.id), "{}", denial.reason);
        return Ok(());
    }
    // 2. Datalog's denial stands as it is.
    if !plain.is_allowed() {
        let (p, d) = (plain.denial.as_ref(), restricted.denial.as_ref());
        prop_assert_eq!(p.map(|d| d.kind), d.map(|d| d.kind));
        prop_assert_eq!(p.map(|d| d.hop), d.map(|d| d.hop));
        prop_assert_eq!(plain.decision, restricted.decision);
        return Ok(());
    }
    // 3. The restrictions' approvals.
    let needs = in_effect.iter().any(|&(_, i, _)| {
        made[i]
            .restriction
            .rules
            .iter()
            .any(|rule| model_needs_approval(rule, req))
    });
    if needs {
        prop_assert_eq!(
            restricted.decision,
            Outcome::NeedsApproval,
            "{:?}",
            restricted.denial
        );
        let asked = restricted.approval.as_ref().unwrap();
        prop_assert_eq!(asked.approvers.len(), 1);
        prop_assert_eq!(&asked.approvers[0].key, ALICE);
        return Ok(());
    }
    // 4. Their limits, all or nothing.
    let limits: Vec<(usize, usize, u64)> = in_effect
        .iter()
        .flat_map(|&(_, i, _)| {
            made[i]
                .restriction
                .rules
                .iter()
                .enumerate()
                .filter_map(move |(j, rule)| rule.limit().map(|l| (i, j, l)))
        })
        // A restriction's limit needs a meter only for the requests it
        // meters (§19.2).
        .filter(|(_, _, l)| l.actions.contains(&req.action))
        .map(|(i, j, l)| (i, j, l.max))
        .collect();
    if !limits.is_empty() && !metered {
        let kind = restricted.denial.as_ref().map(|d| d.kind);
        prop_assert_eq!(kind, Some(DenialKind::LimitUnavailable));
        return Ok(());
    }
    let full = limits
        .iter()
        .find(|(i, j, max)| counters.get(&(*i, *j)).copied().unwrap_or(0) + 1 > *max);
    if full.is_some() {
        let denial = restricted.denial.as_ref();
        prop_assert!(denial.is_some(), "a full limit allowed {:?}", req);
        let denial = denial.unwrap();
        prop_assert_eq!(denial.kind, DenialKind::LimitExceeded, "{:?}", denial);
        prop_assert!(
            denial.reason.contains("live restriction"),
            "{}",
            denial.reason
        );
        return Ok(());
    }
    for (i, j, _) in limits {
        *counters.entry((i, j)).or_default() += 1;
    }
    prop_assert!(restricted.is_allowed(), "denied: {:?}", restricted.denial);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_restriction_never_widens_and_a_matching_deny_always_denies(
        (grants, specs, requests, cached, metered) in case(),
    ) {
        let mut family = Family::mint(grants[0].clone());
        for g in &grants[1..] {
            family.delegate(g.clone());
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RevocationStore::open(dir.path().join("revocations")).unwrap());
        let made = make(&family, &specs);
        for m in &made {
            store.restrict(&RestrictionEntry::Restrict(m.restriction.clone())).unwrap();
        }
        let mut restricted = family.verifier.clone().with_revocations(store.clone());
        if cached {
            restricted = restricted.with_cache(CacheOptions::default());
        }
        if metered {
            let usage = Arc::new(UsageStore::open(dir.path().join("usage")).unwrap());
            restricted = restricted.with_usage(usage);
        }
        // One instant: one window for every limit.
        let at = SystemTime::now();
        let mut counters = Counters::new();
        for (depth, req) in &requests {
            let req = req.clone().at(at);
            let plain = family.authorize_at_depth(*depth, &req);
            let d = restricted.authorize(&family.tokens[*depth], &req);
            check(&made, *depth, &req, &plain, &d, metered, &mut counters)?;
        }
    }
}
