//! Usage limits in the token (SPEC §18.1–18.2): what a hop writes, what a
//! verifier reads back, and the blocks it refuses. Enforcement is tested
//! with the verifier (`verifier/tests/usage*.rs`, `cli/tests/limits*.rs`).
#![allow(clippy::unwrap_used)]

use biscuit_auth::{builder::BlockBuilder, AuthorizerBuilder, Biscuit};
use mandate_attenuate::{narrow, read_chain};
use mandate_spec::{Grant, Limit};
use mandate_tests::{
    append_first_party, append_hop, customers_grant, datalog_block, grant, hop_block_for,
    in_an_hour, Agent, Family,
};

fn limited(grant: Grant, limits: &[&str], budgets: &[&str]) -> Grant {
    let g = limits.iter().fold(grant, |g, l| g.with_limit(l).unwrap());
    budgets.iter().fold(g, |g, b| g.with_budget(b).unwrap())
}

#[test]
fn limits_set_at_mint_and_at_a_hop_are_read_back_per_hop() {
    let mut family = Family::mint(limited(
        grant(&["send_email,read:/api/mail/**", "pay:/api/payments"], &[]),
        &["send_email 10/1h"],
        &["pay amount 5000/1d"],
    ));
    family.delegate(limited(
        grant(&["send_email:/api/mail/**"], &[]),
        &["send_email 5/1h"],
        &[],
    ));
    family.delegate(grant(&["send_email:/api/mail/**"], &[]));
    let chain = read_chain(family.token()).unwrap();
    let texts = |hop: usize| -> Vec<String> {
        chain.hops[hop]
            .grant
            .limits
            .iter()
            .map(Limit::to_string)
            .collect()
    };
    assert_eq!(texts(0), ["send_email 10/1h", "pay amount 5000/1d"]);
    assert_eq!(texts(1), ["send_email 5/1h"]);
    assert!(texts(2).is_empty());
    // The guard check is read with the facts, never shown as raw Datalog.
    assert!(chain.hops.iter().all(|h| h.grant.datalog.is_empty()));
    // Counter names: per hop block, so two hops' equal limits never share.
    let same = Limit::parse_count("send_email 10/1h").unwrap();
    assert_ne!(
        same.counter_key(&chain.hops[0].revocation_id),
        same.counter_key(&chain.hops[1].revocation_id)
    );
    assert!(chain.hops[0]
        .grant
        .to_string()
        .contains("limits: send_email 10/1h, pay amount 5000/1d"));
}

#[test]
fn the_block_carries_the_facts_and_the_guard_as_the_spec_writes_them() {
    let family = Family::mint(limited(
        customers_grant(),
        &["read 3/1h"],
        &["read rows 100/1d"],
    ));
    let biscuit = Biscuit::from(family.token(), family.issuer.keys().public_keys()[0].1).unwrap();
    let source = biscuit.print_block_source(0).unwrap();
    assert!(source.contains("limit({\"read\"}, 3, 3600);"), "{source}");
    assert!(
        source.contains("budget({\"read\"}, \"rows\", 100, 86400);"),
        "{source}"
    );
    assert!(source.contains("check if limits_enforced(1);"), "{source}");
}

#[test]
fn a_plain_biscuit_authorizer_that_does_not_know_limits_denies() {
    let family = Family::mint(limited(customers_grant(), &["read 3/1h"], &[]));
    let biscuit = Biscuit::from(family.token(), family.issuer.keys().public_keys()[0].1).unwrap();
    let request = "operation(\"read\"); resource(\"/api/customers/1\"); \
                   resource(\"/api/customers/\", \"1\"); param(\"rows\", 1); time(2026-01-01T00:00:00Z); allow if true;";
    let mut without = AuthorizerBuilder::new()
        .code(request)
        .unwrap()
        .build(&biscuit)
        .unwrap();
    assert!(
        without.authorize().is_err(),
        "ignoring the limit must fail closed"
    );
    let mut with = AuthorizerBuilder::new()
        .code(format!("{request} limits_enforced(1);"))
        .unwrap()
        .build(&biscuit)
        .unwrap();
    with.authorize().unwrap();
}

#[test]
fn a_narrowing_block_cannot_carry_limits() {
    let family = Family::mint(customers_grant());
    let err = narrow(
        family.token(),
        &customers_grant().with_limit("read 1/1h").unwrap(),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("limits are set by a delegation hop"),
        "{err}"
    );
    // Built by hand, a verifier refuses it.
    for source in [
        "limit({\"read\"}, 1, 3600); check if limits_enforced(1);",
        "check if limits_enforced(1);",
    ] {
        let token = append_first_party(family.token(), datalog_block(source));
        let e = read_chain(&token).unwrap_err().to_string();
        assert!(e.contains("block 1"), "{source}: {e}");
    }
}

#[test]
fn malformed_or_unguarded_limit_facts_break_the_chain() {
    let family = Family::mint(customers_grant());
    let agent = Agent::new("sub");
    let cases: [(&str, &str); 7] = [
        (
            "limit({\"read\"}, 3, 3600);",
            "without check if limits_enforced(1)",
        ),
        ("check if limits_enforced(1);", "without any limit"),
        (
            "limit({\"read\"}, 0, 3600); check if limits_enforced(1);",
            "positive integers",
        ),
        (
            "limit({\"read\"}, 3, -1); check if limits_enforced(1);",
            "positive integers",
        ),
        (
            "limit(\"read\", 3, 3600); check if limits_enforced(1);",
            "positive integers",
        ),
        (
            "budget({\"pay\"}, 5, 3600, 1); check if limits_enforced(1);",
            "positive integers",
        ),
        (
            "limit({\"read\"}, 3, 99999999999); check if limits_enforced(1);",
            "366d",
        ),
    ];
    for (source, needle) in cases {
        let block: BlockBuilder =
            hop_block_for(&agent, &Grant::default(), in_an_hour()).merge(datalog_block(source));
        let token = append_hop(family.token(), &family.holder().key, block);
        let e = read_chain(&token).unwrap_err().to_string();
        assert!(e.contains(needle), "{source}: {e}");
    }
}

#[test]
fn a_block_cannot_supply_limits_enforced_itself() {
    let family = Family::mint(customers_grant());
    let block = hop_block_for(&Agent::new("sub"), &Grant::default(), in_an_hour())
        .merge(datalog_block("limits_enforced(1);"));
    let token = append_hop(family.token(), &family.holder().key, block);
    let e = read_chain(&token).unwrap_err().to_string();
    assert!(e.contains("only the verifier may supply"), "{e}");
}
