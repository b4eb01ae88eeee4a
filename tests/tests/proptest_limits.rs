//! Property tests of usage limits (SPEC §18): limits only narrow.
//!
//! A random delegation tree (root and up to 5 hops, each delegated from an
//! earlier one), each hop with random counts and budgets (random maxima and
//! windows, or none), and a random sequence of requests from random hops at
//! non-decreasing pinned times, decided by a verifier counting in a real
//! RocksDB [`UsageStore`]. Checked:
//!
//! - what any hop's subtree was allowed, per window, never exceeds that
//!   hop's limit — so never more than any ancestor allows either, whatever
//!   its other descendants spent;
//! - a child never allows what its parent denies: asked right after its
//!   parent was refused for a limit, the child is refused too;
//! - every decision is the reference model's: all the path's limits with
//!   room are charged together, else the first without room (root first)
//!   denies `limit_exceeded` and nothing is charged; a request costing more
//!   than a whole window is `not_allowed` at that limit's hop.
#![allow(clippy::unwrap_used)]

use mandate_spec::{Grant, Limit, Request};
use mandate_tests::{grant, Family};
use mandate_verifier::usage::UsageStore;
use mandate_verifier::{CacheOptions, Decision, DenialKind, Verifier};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

const WINDOWS: [u64; 3] = [60, 600, 3600];

/// The limits one hop sets: a count on `send`, a count on `pay`, a budget
/// on `pay amount`, each optional.
#[derive(Debug, Clone)]
struct HopLimits(Vec<Limit>);

fn window() -> impl Strategy<Value = u64> {
    proptest::sample::select(&WINDOWS[..])
}

fn hop_limits() -> impl Strategy<Value = HopLimits> {
    (
        proptest::option::of((1u64..=6, window())),
        proptest::option::of((1u64..=6, window())),
        proptest::option::of((1u64..=40, window())),
    )
        .prop_map(|(send, pay, budget)| {
            let mut limits = Vec::new();
            if let Some((n, w)) = send {
                limits.push(Limit::parse_count(&format!("send {n}/{w}s")).unwrap());
            }
            if let Some((n, w)) = pay {
                limits.push(Limit::parse_count(&format!("pay {n}/{w}s")).unwrap());
            }
            if let Some((n, w)) = budget {
                limits.push(Limit::parse_budget(&format!("pay amount {n}/{w}s")).unwrap());
            }
            HopLimits(limits)
        })
}

/// A tree: hop 0 is the root; hop i > 0 is delegated from `parents[i - 1]`
/// (an earlier hop).
#[derive(Debug, Clone)]
struct Tree {
    parents: Vec<usize>,
    limits: Vec<HopLimits>,
}

fn tree() -> impl Strategy<Value = Tree> {
    (1usize..=5)
        .prop_flat_map(|n| {
            let parents: Vec<_> = (1..=n).map(|i| 0..i).collect();
            (parents, proptest::collection::vec(hop_limits(), n + 1))
        })
        .prop_map(|(parents, limits)| Tree { parents, limits })
}

/// One request: by which hop's holder, `send` or `pay` (with `amount`),
/// how many seconds after the previous one, and whether the hop's parent
/// asks the same first.
#[derive(Debug, Clone)]
struct Step {
    hop: usize,
    pay: Option<u64>,
    later: u64,
    parent_first: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            0usize..6,
            proptest::option::of(0u64..=20),
            prop_oneof![3 => Just(0u64), 1 => 1u64..400],
            any::<bool>(),
        )
            .prop_map(|(hop, pay, later, parent_first)| Step {
                hop,
                pay,
                later,
                parent_first,
            }),
        1..40,
    )
}

/// What the reference model decides (hops by their number in the chain:
/// 0 = root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Allow,
    Exceeded(usize),
    NotAllowed(usize),
}

/// The reference: counters by (hop, limit index) holding (window, used).
#[derive(Default)]
struct Model {
    counters: HashMap<(usize, usize), (i64, u64)>,
}

impl Model {
    fn decide(&mut self, tree: &Tree, path: &[usize], request: &Request, unix: i64) -> Expected {
        // (tree hop, limit index, units, max, window, chain hop number)
        let mut charges = Vec::new();
        for (depth, &hop) in path.iter().enumerate() {
            for (i, l) in tree.limits[hop].0.iter().enumerate() {
                if !l.actions.contains(&request.action) {
                    continue;
                }
                let units = match &l.param {
                    None => 1,
                    Some(p) => match request.params.get(p) {
                        Some(mandate_spec::Value::Int(v)) => *v as u64,
                        _ => unreachable!("pay always carries amount"),
                    },
                };
                charges.push((hop, i, units, l.max, l.window_secs, depth));
            }
        }
        if let Some(c) = charges.iter().find(|c| c.2 > c.3) {
            return Expected::NotAllowed(c.5);
        }
        for &(hop, i, units, max, w, depth) in &charges {
            let window = unix.div_euclid(w as i64);
            let used = match self.counters.get(&(hop, i)) {
                Some(&(cw, used)) if cw == window => used,
                _ => 0,
            };
            if used + units > max {
                return Expected::Exceeded(depth);
            }
        }
        for (hop, i, units, _, w, _) in charges {
            let window = unix.div_euclid(w as i64);
            let entry = self.counters.entry((hop, i)).or_insert((window, 0));
            if entry.0 != window {
                *entry = (window, 0);
            }
            entry.1 += units;
        }
        Expected::Allow
    }
}

fn observed(d: &Decision) -> Expected {
    match &d.denial {
        None => Expected::Allow,
        Some(x) if x.kind == DenialKind::LimitExceeded => Expected::Exceeded(x.hop.unwrap()),
        Some(x) if x.kind == DenialKind::NotAllowed => Expected::NotAllowed(x.hop.unwrap()),
        Some(x) => panic!("unexpected denial {:?}: {}", x.kind, x.reason),
    }
}

fn base_grant() -> Grant {
    grant(&["send,pay:/api/x"], &[])
}

fn with_limits(mut g: Grant, limits: &HopLimits) -> Grant {
    g.limits = limits.0.clone();
    g
}

/// The hops from the root to `hop`.
fn path(tree: &Tree, hop: usize) -> Vec<usize> {
    let mut out = vec![hop];
    let mut h = hop;
    while h > 0 {
        h = tree.parents[h - 1];
        out.push(h);
    }
    out.reverse();
    out
}

/// An allowed request: by which hop, its action, its cost, its time.
struct Allowed {
    hop: usize,
    request: Request,
    unix: i64,
}

fn check(tree: &Tree, steps: &[Step]) -> Result<(), TestCaseError> {
    // The root token lives 6 hours; requests start at its issuance and move
    // forward at most 40 × 400 s.
    let family = Family::mint_with(with_limits(base_grant(), &tree.limits[0]), |m| {
        m.ttl = Duration::from_secs(6 * 3600);
    });
    // tokens[i] and its holder's key for hop i of the tree.
    let mut tokens = vec![family.tokens[0].clone()];
    let mut keys = vec![family.agents[0].key.private()];
    for (i, &parent) in tree.parents.iter().enumerate() {
        let hop = i + 1;
        let next = biscuit_auth::KeyPair::new();
        let holder = biscuit_auth::KeyPair::from(&keys[parent]);
        let out = mandate_attenuate::delegate(
            &tokens[parent],
            &holder,
            &mandate_attenuate::Delegation {
                agent: format!("hop-{hop}"),
                agent_key: next.public(),
                grant: with_limits(base_grant(), &tree.limits[hop]),
                ttl: None,
                purpose: None,
            },
        )
        .unwrap();
        tokens.push(out.token);
        keys.push(next.private());
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(UsageStore::open(dir.path()).unwrap());
    let verifier: Verifier = family
        .verifier
        .clone()
        .with_cache(CacheOptions::default())
        .with_usage(store);
    // Requests start when the token was issued (one dated before would be
    // metered in the issuance window, SPEC §18.3; the clamp below keeps the
    // model exact should a step ever go back).
    let issued = mandate_attenuate::read_chain(&tokens[0])
        .unwrap()
        .issued_at
        .unix_timestamp();
    let mut unix = issued;
    let mut model = Model::default();
    let mut allowed: Vec<Allowed> = Vec::new();
    let hops = tokens.len();
    for step in steps {
        unix += step.later as i64;
        let hop = step.hop % hops;
        let request = match step.pay {
            None => Request::new("send", "/api/x"),
            Some(amount) => Request::new("pay", "/api/x").param("amount", amount as i64),
        }
        .at(UNIX_EPOCH + Duration::from_secs(unix as u64));
        let mut ask = |hop: usize| -> Expected {
            let d = verifier.authorize(&tokens[hop], &request);
            let got = observed(&d);
            let want = model.decide(tree, &path(tree, hop), &request, unix.max(issued));
            if got == Expected::Allow {
                allowed.push(Allowed {
                    hop,
                    request: request.clone(),
                    unix: unix.max(issued),
                });
            }
            assert_eq!(got, want, "hop {hop}, {request:?}: {d}");
            got
        };
        if step.parent_first && hop > 0 {
            let parent = tree.parents[hop - 1];
            let by_parent = ask(parent);
            let by_child = ask(hop);
            if matches!(by_parent, Expected::Exceeded(_)) {
                prop_assert_ne!(
                    by_child,
                    Expected::Allow,
                    "hop {} allowed what its parent {} was just denied",
                    hop,
                    parent
                );
            }
        } else {
            ask(hop);
        }
    }
    // Per hop, per limit, per window: what its subtree was allowed.
    for (hop, limits) in tree.limits.iter().enumerate() {
        for l in &limits.0 {
            let mut spent: HashMap<i64, u64> = HashMap::new();
            for a in allowed.iter().filter(|a| path(tree, a.hop).contains(&hop)) {
                let units = match l.meter(&a.request) {
                    mandate_spec::Metered::Units(u) => u,
                    _ => continue,
                };
                *spent
                    .entry(a.unix.div_euclid(l.window_secs as i64))
                    .or_default() += units;
            }
            for (window, units) in spent {
                prop_assert!(
                    units <= l.max,
                    "hop {}'s subtree spent {} against {} in window {}",
                    hop,
                    units,
                    l,
                    window
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn limits_only_narrow(tree in tree(), steps in steps()) {
        check(&tree, &steps)?;
    }
}
