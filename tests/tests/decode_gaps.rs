//! Issue 15 items 8 and 9 (SPEC §4.4): what a reader shows of a block must
//! never allow more than the block's checks. A check binding a parameter
//! without constraining it is not a grant; two grant-shaped checks in one
//! block are a conjunction, never a union of alternatives.
#![allow(clippy::unwrap_used, missing_docs)]

use mandate_attenuate::narrow;
use mandate_spec::{effective_capabilities, Grant, Request};
use mandate_tests::{assert_allowed, assert_denied, customers_grant, grant, Family};
use mandate_verifier::DenialKind;

/// The chain a reader decodes from `token`.
fn chain_of(token: &[u8]) -> mandate_spec::Chain {
    let blocks = mandate_spec::decode_blocks(token).unwrap();
    mandate_spec::Chain::from_blocks(&blocks, Some(0)).unwrap()
}

/// A narrowing block carrying `checks` as raw Datalog (and no grant).
fn narrowed(f: &Family, checks: &[&str]) -> Vec<u8> {
    let g = Grant {
        datalog: checks.iter().map(|c| c.to_string()).collect(),
        ..Grant::default()
    };
    narrow(f.token(), &g, None).unwrap().token
}

#[test]
fn a_parameter_bound_but_not_constrained_is_shown_as_datalog() {
    let f = Family::mint(customers_grant());
    let check = r#"check if time($time), operation("read"), resource("/api/customers/42"), param("rows", $p)"#;
    let token = narrowed(&f, &[check]);
    let chain = chain_of(&token);
    let hop = &chain.hops[0];
    let n = &hop.narrowing[0];
    // Not decoded as `read:/api/customers/42` (which would say a request
    // without rows is allowed): kept as its Datalog.
    assert!(n.grant.alternatives.is_empty(), "{:?}", n.grant);
    assert_eq!(n.grant.datalog.len(), 1, "{:?}", n.grant);
    assert!(n.grant.datalog[0].contains("param(\"rows\", $p)"));
    // And the decision agrees with what is shown: rows is required.
    let read = Request::new("read", "/api/customers/42");
    assert_denied(
        &f.verifier.authorize(&token, &read),
        DenialKind::NotAllowed,
        Some(0),
        &[],
    );
    assert_allowed(&f.verifier.authorize(&token, &read.clone().param("rows", 5)));
}

#[test]
fn two_grant_shaped_checks_in_one_block_are_not_a_union() {
    let f = Family::mint(grant(&["read:/api/**"], &[]));
    let wide = r#"check if time($time), operation("read"), resource($r), $r.starts_with("/api/")"#;
    let narrow_one = r#"check if time($time), operation("read"), resource("/api/c/42")"#;
    let token = narrowed(&f, &[wide, narrow_one]);
    let chain = chain_of(&token);
    let n = &chain.hops[0].narrowing[0];
    // The first is read as the block's grant, the second kept as Datalog:
    // never `read:/api/** OR read:/api/c/42`.
    assert_eq!(n.grant.alternatives.len(), 1, "{:?}", n.grant);
    assert_eq!(n.grant.datalog.len(), 1, "{:?}", n.grant);
    let cap = effective_capabilities(&chain).pop().unwrap();
    let words = cap.describe();
    assert!(!words.contains(" OR "), "{words}");
    assert!(words.contains("and Datalog"), "{words}");
    // The decisions: only /api/c/42 passes both checks.
    assert_allowed(
        &f.verifier
            .authorize(&token, &Request::new("read", "/api/c/42")),
    );
    assert_denied(
        &f.verifier
            .authorize(&token, &Request::new("read", "/api/c/43")),
        DenialKind::NotAllowed,
        Some(0),
        &[],
    );
}
