//! The cost bound of a token (SPEC §6 rule 1c), attacked as a delegating
//! agent would: it holds its own key and a token, and appends the most
//! expensive block the spec lets it, to stall the verifier.
//!
//! Threat-model answers (THREATS.md):
//! 1. Positions: a delegating agent or any bearer (narrowing blocks); the
//!    crafted-input sender (any bytes as a token).
//! 2. The bound is computed from the same decoded blocks Datalog runs on,
//!    before any Datalog runs (the block count before any signature).
//! 4. The most expensive accepted input: `benches/worst_case.rs` times the
//!    largest accepted token of every hostile shape (figures in
//!    verifier/BENCHMARKS.md); these tests check each is decided without
//!    reaching a run limit, and that canonical tokens are never refused.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::builder::BlockBuilder;
use mandate_spec::{decode_blocks, Chain, Grant, MAX_BLOCKS, MAX_COST};
use mandate_tests::hostile::{corpus, worst_request};
use mandate_tests::{
    append_first_party, append_hop, assert_denied, customers_family, customers_grant,
    datalog_block, grant, hop_block_for, in_an_hour, read_customer, root_keys_of, Agent, Family,
};
use mandate_verifier::{DenialKind, Limits, Verifier};
use proptest::prelude::*;
use std::fmt::Write;

/// A hop from the family's holder to a new agent with `extra` Datalog.
fn hostile_hop(f: &Family, extra: &str) -> Vec<u8> {
    let block: BlockBuilder =
        hop_block_for(&Agent::new("agent-2"), &customers_grant(), in_an_hour())
            .code(extra)
            .unwrap();
    append_hop(f.token(), &f.holder().key, block)
}

fn defaults(f: &Family) -> Verifier {
    Verifier::new(root_keys_of(&f.issuer))
}

#[test]
fn a_hop_joining_many_approver_facts_is_refused_before_datalog_runs() {
    // Regression (issue 12): within the old rules (vocabulary facts only,
    // at most 16 predicates per query), a hop with 200 `approver` facts and
    // one 16-predicate join made a single authorization enumerate 200^16
    // combinations: `mandate verify` ran for minutes, and two such requests
    // stopped the gateway answering anyone.
    let f = customers_family(1);
    let mut src = String::new();
    for i in 0..200 {
        let _ = writeln!(src, "approver(\"a{i}\", hex:{:064x});", i + 1);
    }
    let body: Vec<String> = (0..16).map(|i| format!("approver($a{i}, $k{i})")).collect();
    let _ = write!(src, "check if {}, $a0 == \"never\";", body.join(", "));
    let token = hostile_hop(&f, &src);
    assert_denied(
        &defaults(&f).authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(2),
        &["could cost more than", "§6 rule 1c"],
    );
}

#[test]
fn checks_trusting_previous_blocks_are_refused() {
    // §4.3 said MUST NOT; now the verifier enforces it: `trusting previous`
    // makes every earlier block's facts visible (and joinable).
    let f = customers_family(2);
    let token = hostile_hop(
        &f,
        "check if agent($a, $k), agent($b, $j) trusting previous;",
    );
    assert_denied(
        &defaults(&f).authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(3),
        &["trusting previous"],
    );
}

#[test]
fn expressions_whose_cost_is_not_bounded_by_their_size_are_refused() {
    let f = customers_family(1);
    for (src, why) in [
        (
            "check if param(\"rows\", $r), [1, 2, 3].any($x -> [1, 2, 3].any($y -> $x == $y));",
            "a closure per element",
        ),
        (
            "check if param(\"rows\", $r), [1, 2, 3].all($x -> $x > 0);",
            "a closure per element",
        ),
        (
            "check if param(\"p\", $p), $p.matches(\"(a+)+$\");",
            ".matches()",
        ),
    ] {
        let token = hostile_hop(&f, src);
        assert_denied(
            &defaults(&f).authorize(&token, &read_customer(1)),
            DenialKind::BrokenChain,
            Some(2),
            &[why, "not bounded by its size"],
        );
    }
    // The lazy boolean operators are closures without parameters: allowed.
    let token = hostile_hop(&f, "check if param(\"rows\", $r), $r >= 0 && $r <= 100;");
    mandate_tests::assert_allowed(&defaults(&f).authorize(&token, &read_customer(1)));
}

#[test]
fn block_level_scopes_are_refused() {
    let f = customers_family(1);
    let block = hop_block_for(&Agent::new("agent-2"), &customers_grant(), in_an_hour())
        .scope(biscuit_auth::builder::Scope::Previous);
    let token = append_hop(f.token(), &f.holder().key, block);
    assert_denied(
        &defaults(&f).authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(2),
        &["scope annotations"],
    );
}

#[test]
fn approver_facts_must_name_a_key() {
    // Approver facts are the one fact a hop may repeat: their shape is
    // fixed, so they cannot carry large values into joins.
    let f = customers_family(1);
    let token = hostile_hop(&f, "approver({1, 2, 3}, \"not a key\");");
    assert_denied(
        &defaults(&f).authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(2),
        &["approver(name, 32-byte key)"],
    );
}

#[test]
fn a_token_with_too_many_blocks_is_refused_before_its_signatures_are_checked() {
    let f = customers_family(0);
    let mut token = f.token().to_vec();
    for _ in 0..MAX_BLOCKS {
        token = append_first_party(&token, datalog_block("check if time($t);"));
    }
    let d = defaults(&f).authorize(&token, &read_customer(1));
    assert_denied(
        &d,
        DenialKind::MalformedToken,
        None,
        &[&format!("at most {MAX_BLOCKS} are allowed")],
    );
    // One fewer is fine.
    let mut token = f.token().to_vec();
    for _ in 0..MAX_BLOCKS - 1 {
        token = append_first_party(&token, datalog_block("check if time($t);"));
    }
    mandate_tests::assert_allowed(&defaults(&f).authorize(&token, &read_customer(1)));
}

#[test]
fn every_hostile_shape_is_refused_or_decided_within_the_default_limits() {
    // The largest token of each hostile shape the verifier accepts is
    // decided (allowed or denied for what it says) by a verifier with the
    // default limits: no decision comes from a run limit, whatever the
    // machine is doing, because the bound keeps the work small. (How long
    // each takes is measured by `benches/worst_case.rs`, not asserted.)
    let f = customers_family(1);
    let v = defaults(&f);
    let structural = |t: &[u8]| {
        matches!(
            v.authorize(t, &worst_request()).denial.map(|d| d.kind),
            Some(DenialKind::BrokenChain | DenialKind::MalformedToken)
        )
    };
    let items = corpus(&f, &|t| !structural(t));
    assert!(items.len() >= 10);
    for h in items {
        let d = v.authorize(&h.token, &h.request);
        if let Some(denial) = &d.denial {
            assert!(
                !denial.reason.contains("run limit"),
                "{}: {}",
                h.name,
                denial.reason
            );
        }
        if !h.name.contains("refused") {
            let blocks = decode_blocks(&h.token).unwrap();
            let cost = mandate_spec::cost_bound(&blocks).unwrap();
            assert!(cost <= MAX_COST, "{}: {cost}", h.name);
            assert!(Chain::from_blocks(&blocks, None).is_ok(), "{}", h.name);
        }
    }
}

fn alternative() -> impl Strategy<Value = (String, Vec<String>)> {
    let actions = prop::sample::subsequence(vec!["read", "list", "write", "pay"], 1..=3);
    let pattern = prop_oneof![
        Just("/api/customers/*".to_string()),
        Just("/api/**".to_string()),
        Just("/api/customers/42".to_string()),
    ];
    let constraint = prop_oneof![
        (0i64..1000).prop_map(|n| format!("rows<={n}")),
        (0i64..1000).prop_map(|n| format!("amount>{n}")),
        Just("currency=EUR".to_string()),
        Just("to ends-with @company.com".to_string()),
        Just("kind in a|b|c|d|e|f|g|h".to_string()),
    ];
    (
        actions.prop_map(|a| a.join(",")),
        pattern,
        prop::collection::vec(constraint, 0..4),
    )
        .prop_map(|(a, p, c)| (format!("{a}:{p}"), c))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Canonical tokens are never refused by the bound: a chain of up to 15
    /// hops, each with up to three alternatives of up to three constraints.
    #[test]
    fn canonical_chains_stay_within_the_bound(
        hops in prop::collection::vec(prop::collection::vec(alternative(), 1..=3), 0..=15),
    ) {
        let mut f = Family::mint(grant(&["read,list,write,pay:/api/**"], &[]));
        for alts in &hops {
            let allow: Vec<&str> = alts.iter().map(|(a, _)| a.as_str()).collect();
            let mut g = Grant::parse(&allow, &[] as &[&str]).unwrap();
            for (alt, (_, cs)) in g.alternatives.iter_mut().zip(alts) {
                for c in cs {
                    alt.constraints.push(mandate_spec::Constraint::parse(c).unwrap());
                }
            }
            f.delegate(g);
        }
        let blocks = decode_blocks(f.token()).unwrap();
        let cost = mandate_spec::cost_bound(&blocks);
        prop_assert!(cost.is_some_and(|c| c <= MAX_COST), "{:?}", cost);
        let d = Verifier::new(root_keys_of(&f.issuer))
            .with_limits(Limits::default())
            .authorize(f.token(), &read_customer(1));
        let kind = d.denial.map(|d| d.kind);
        prop_assert!(
            !matches!(kind, Some(DenialKind::BrokenChain | DenialKind::MalformedToken)),
            "{:?}", kind
        );
    }
}

#[test]
fn a_token_cannot_fill_the_symbol_table_beyond_its_limit() {
    // Red team (issue 12): biscuit-auth finds strings in its symbol table by
    // scanning it, and an expression's `+` or `.type()` interns its result;
    // thousands of never-evaluated literals made every such operation (and
    // loading a third-party block) scan thousands of entries: 106–190 ms per
    // decision of a token the old bound priced at 3–4 ms. Symbols are now
    // limited per token and counted in the bound.
    let f = customers_family(1);
    let lits: Vec<String> = (0..mandate_spec::MAX_SYMBOLS + 10)
        .map(|i| format!("\"s{i:05}\""))
        .collect();
    let src = format!(
        "check if no_such_fact($z), ({}).length() == 0;",
        lits.join(" + ")
    );
    let token = hostile_hop(&f, &src);
    assert_denied(
        &defaults(&f).authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(2),
        &["symbols (strings); at most"],
    );
}
