//! A holder never gets more than it was given: widening, expiry and depth.
//!
//! Children granting more actions, wider patterns, looser bounds, later
//! expiries or extra facts; wider narrowing blocks; expired roots and hops;
//! hops beyond the root's `max_depth`. A request the parent denies stays
//! denied, and the reason names the hop that denies.
#![allow(clippy::unwrap_used)]

use biscuit_auth::KeyPair;
use mandate_attenuate::{delegate, delegate_at, narrow, AttenuateError};
use mandate_issuer::Issuer;
use mandate_spec::{Grant, Request};
use mandate_tests::{
    append_hop, assert_allowed, assert_denied, customers_family, customers_grant, delegation,
    grant, hop_block_for, in_an_hour, read_customer, secs, Agent, Family, ROOT_TTL,
};
use mandate_verifier::{Decision, DenialKind};
use std::time::SystemTime;

// ---- widening attempts -------------------------------------------------------

/// Delegates `child` from a root holding [`customers_grant`], checks the child
/// token still denies `request` exactly as the root does, and returns the
/// child's decision.
fn child_cannot_widen(child: Grant, request: &Request, needles: &[&str]) -> Decision {
    let mut f = Family::mint(customers_grant());
    f.delegate(child);
    let parent = f.authorize_at_depth(0, request);
    assert_denied(&parent, DenialKind::NotAllowed, Some(0), needles);
    let d = f.authorize(request);
    let denial = assert_denied(
        &d,
        DenialKind::NotAllowed,
        Some(0),
        &[
            &["hop 0 (root token for \"user:alice\", agent \"agent-0\")"],
            needles,
        ]
        .concat(),
    );
    assert_eq!(denial.block, Some(0));
    assert_eq!(denial.agent.as_deref(), Some("agent-0"));
    assert!(
        !denial.reason.contains("also denied by"),
        "{}",
        denial.reason
    );
    d
}

#[test]
fn a_child_granting_more_actions_does_not_widen() {
    let child = grant(&["read,list,delete:/api/customers/*"], &["rows<=100"]);
    child_cannot_widen(
        child,
        &Request::new("delete", "/api/customers/42").param("rows", 1),
        &["action \"delete\" is not allowed"],
    );
}

#[test]
fn a_child_with_a_wider_pattern_does_not_widen() {
    for pattern in [
        "read:/api/**",
        "read:/**",
        "read:/api/admin/*",
        "read:/api/admin/1",
    ] {
        child_cannot_widen(
            grant(&[pattern], &[]),
            &Request::new("read", "/api/admin/1").param("rows", 1),
            &["resource \"/api/admin/1\" is not directly under /api/customers/*"],
        );
    }
    // One level deeper than `/*` allows.
    child_cannot_widen(
        grant(&["read:/api/customers/**"], &[]),
        &Request::new("read", "/api/customers/42/orders").param("rows", 1),
        &["resource \"/api/customers/42/orders\" is not directly under"],
    );
}

#[test]
fn a_child_with_a_looser_bound_does_not_widen() {
    child_cannot_widen(
        grant(&["read:/api/customers/*"], &["rows<=1000"]),
        &read_customer(500),
        &["parameter rows=500 violates rows<=100"],
    );
    // Dropping the constraint altogether does not lift it either.
    child_cannot_widen(
        grant(&["read:/api/customers/*"], &[]),
        &read_customer(101),
        &["parameter rows=101 violates rows<=100"],
    );
}

#[test]
fn a_child_with_extra_facts_does_not_widen() {
    let f = customers_family(0);
    let request = Request::new("delete", "/api/customers/42").param("rows", 1);
    let block = hop_block_for(
        &Agent::new("agent-1"),
        &grant(&["delete:/api/customers/*"], &[]),
        in_an_hour(),
    )
    .code("allowed(\"delete\"); role(\"admin\"); right(\"/api/customers/42\", \"delete\");")
    .unwrap();
    let token = append_hop(f.token(), &f.holder().key, block);
    let d = f.verifier.authorize(&token, &request);
    // Extra facts never widen; since the security review they are refused
    // outright (a hop may state only agent and purpose facts, §6).
    assert_denied(
        &d,
        DenialKind::BrokenChain,
        Some(1),
        &["fact allowed(…) is not allowed in this block"],
    );
}

#[test]
fn a_child_with_a_later_expiry_does_not_widen() {
    let f = customers_family(0);
    // `delegate` clamps a longer ttl to the chain's expiry…
    let clamped = delegate(
        f.token(),
        &f.holder().key,
        &mandate_attenuate::Delegation {
            ttl: Some(secs(10 * 3600)),
            ..delegation(&Agent::new("agent-1"), customers_grant())
        },
    )
    .unwrap();
    assert_eq!(
        clamped.chain.hops[1].expires_at,
        clamped.chain.hops[0].expires_at
    );
    // …and a hop built by hand with a later expiry is still bound by the root's.
    let later = SystemTime::now() + ROOT_TTL * 10;
    let token = append_hop(
        f.token(),
        &f.holder().key,
        hop_block_for(&Agent::new("agent-1"), &customers_grant(), later),
    );
    assert_allowed(&f.verifier.authorize(&token, &read_customer(1)));
    let after_root = read_customer(1).at(SystemTime::now() + ROOT_TTL + secs(600));
    let denial = assert_denied(
        &f.verifier.authorize(&token, &after_root),
        DenialKind::Expired,
        Some(0),
        &["hop 0 (root token", "expired at"],
    );
    assert!(
        !denial.reason.contains("also denied by"),
        "{}",
        denial.reason
    );
}

#[test]
fn a_narrowing_block_cannot_widen() {
    let f = customers_family(1);
    let wider = narrow(
        f.token(),
        &grant(&["read,list,delete:/**"], &[]),
        Some(secs(10 * 3600)),
    )
    .unwrap();
    let delete = Request::new("delete", "/api/customers/42").param("rows", 1);
    assert_denied(
        &f.verifier.authorize(&wider.token, &delete),
        DenialKind::NotAllowed,
        Some(0),
        &["hop 0 (root token", "action \"delete\" is not allowed"],
    );
}

#[test]
fn a_deeper_hop_cannot_undo_a_middle_hop() {
    let mut f = Family::mint(customers_grant());
    f.delegate(grant(&["read:/api/customers/*"], &["rows<=10"]));
    f.delegate(grant(&["read,list:/api/customers/*"], &["rows<=100"]));
    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    assert_allowed(&f.authorize_at_depth(0, &list));
    assert_denied(
        &f.authorize(&list),
        DenialKind::NotAllowed,
        Some(1),
        &[
            "hop 1 (agent \"agent-1\", delegated by \"agent-0\")",
            "action \"list\" is not allowed",
        ],
    );
    assert_denied(
        &f.authorize(&read_customer(50)),
        DenialKind::NotAllowed,
        Some(1),
        &[
            "hop 1 (agent \"agent-1\"",
            "parameter rows=50 violates rows<=10",
        ],
    );
}

// ---- expiry ------------------------------------------------------------------

#[test]
fn an_expired_root_is_denied_as_expired() {
    let two_hours_ago = SystemTime::now() - secs(2 * 3600);
    let f = Family::mint_by(
        Issuer::new(KeyPair::new()),
        customers_grant(),
        |_| {},
        two_hours_ago,
    );
    let d = f.authorize(&read_customer(1));
    let denial = assert_denied(
        &d,
        DenialKind::Expired,
        Some(0),
        &[
            "hop 0 (root token for \"user:alice\", agent \"agent-0\")",
            "expired at",
        ],
    );
    assert_eq!(denial.agent.as_deref(), Some("agent-0"));
    // Nothing can be delegated from it.
    let err = delegate(
        f.token(),
        &f.holder().key,
        &delegation(&Agent::new("agent-1"), customers_grant()),
    )
    .unwrap_err();
    assert!(matches!(err, AttenuateError::Expired), "{err}");
}

#[test]
fn a_request_after_the_root_expiry_is_denied() {
    let f = customers_family(2);
    let later = read_customer(1).at(SystemTime::now() + ROOT_TTL + secs(60));
    assert_denied(
        &f.authorize(&later),
        DenialKind::Expired,
        Some(0),
        &["hop 0 (root token", "expired at"],
    );
}

#[test]
fn an_expired_hop_is_denied_naming_that_hop() {
    let mut f = customers_family(1);
    f.delegate_with(
        grant(&["read:/api/customers/*"], &[]),
        |d| d.ttl = Some(secs(60)),
        SystemTime::now(),
    );
    let in_ten_minutes = read_customer(1).at(SystemTime::now() + secs(600));
    // Hop 1 (and the root) still allow it; hop 2 has expired.
    assert_allowed(&f.authorize_at_depth(1, &in_ten_minutes));
    let denial = assert_denied(
        &f.authorize(&in_ten_minutes),
        DenialKind::Expired,
        Some(2),
        &[
            "hop 2 (agent \"agent-2\", delegated by \"agent-1\")",
            "expired at",
        ],
    );
    assert_eq!(denial.block, Some(2));
    assert_eq!(denial.agent.as_deref(), Some("agent-2"));
}

#[test]
fn a_hop_made_in_the_past_expires_with_its_ttl() {
    let now = SystemTime::now();
    let mut f = Family::mint_by(
        Issuer::new(KeyPair::new()),
        customers_grant(),
        |r| r.ttl = secs(3 * 3600),
        now - secs(2 * 3600),
    );
    // Delegated 2 hours ago for 10 minutes.
    f.delegate_with(
        grant(&["read:/api/customers/*"], &[]),
        |d| d.ttl = Some(secs(600)),
        now - secs(2 * 3600) + secs(60),
    );
    assert_allowed(&f.authorize_at_depth(0, &read_customer(1)));
    assert_denied(
        &f.authorize(&read_customer(1)),
        DenialKind::Expired,
        Some(1),
        &["hop 1 (agent \"agent-1\"", "expired at"],
    );
    // The chain has expired for its holder too.
    let err = delegate_at(
        f.token(),
        &f.holder().key,
        &delegation(&Agent::new("agent-2"), customers_grant()),
        now,
    )
    .unwrap_err();
    assert!(matches!(err, AttenuateError::Expired), "{err}");
}

#[test]
fn an_expired_narrowing_block_is_denied_naming_its_hop_and_block() {
    let f = customers_family(1);
    let narrowed = narrow(f.token(), &grant(&[], &[]), Some(secs(60))).unwrap();
    assert_allowed(&f.verifier.authorize(&narrowed.token, &read_customer(1)));
    let later = read_customer(1).at(SystemTime::now() + secs(600));
    let denial = assert_denied(
        &f.verifier.authorize(&narrowed.token, &later),
        DenialKind::Expired,
        Some(1),
        &[
            "hop 1 (agent \"agent-1\"",
            "first-party block 2",
            "expired at",
        ],
    );
    assert_eq!(denial.block, Some(2));
}

#[test]
fn expiry_is_inclusive_to_the_second() {
    let minted_at = SystemTime::UNIX_EPOCH + secs(4_000_000_000);
    let f = Family::mint_by(
        Issuer::new(KeyPair::new()),
        customers_grant(),
        |_| {},
        minted_at,
    );
    let expiry = minted_at + ROOT_TTL;
    assert_allowed(&f.authorize(&read_customer(1).at(minted_at)));
    assert_allowed(&f.authorize(&read_customer(1).at(expiry)));
    assert_denied(
        &f.authorize(&read_customer(1).at(expiry + secs(1))),
        DenialKind::Expired,
        Some(0),
        &["expired at 2096-10-02T08:06:40Z (request time 2096-10-02T08:06:41Z)"],
    );
}

#[test]
fn a_request_outside_a_time_window_is_not_allowed() {
    let f = Family::mint(grant(
        &["read:/api/reports/*"],
        &["time>=2020-01-01T00:00:00Z", "time<=2020-12-31T23:59:59Z"],
    ));
    // Minted now, the window is already over; the token itself has not expired.
    let d = f.authorize(&Request::new("read", "/api/reports/q3"));
    assert_denied(
        &d,
        DenialKind::NotAllowed,
        Some(0),
        &["request time", "is outside time<=2020-12-31T23:59:59Z"],
    );
}

// ---- depth -------------------------------------------------------------------

#[test]
fn a_hop_beyond_max_depth_is_denied() {
    let mut f = Family::mint_with(customers_grant(), |r| r.max_depth = Some(1));
    f.delegate(grant(&["read:/api/customers/*"], &[]));
    assert_allowed(&f.authorize(&read_customer(1)));
    let err = delegate(
        f.token(),
        &f.holder().key,
        &delegation(&Agent::new("agent-2"), customers_grant()),
    )
    .unwrap_err();
    assert!(
        matches!(err, AttenuateError::DepthExceeded { max: 1 }),
        "{err}"
    );
    // Built by hand, signed by the legitimate holder.
    let token = append_hop(
        f.token(),
        &f.holder().key,
        hop_block_for(&Agent::new("agent-2"), &customers_grant(), in_an_hour()),
    );
    let denial = assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::DepthExceeded,
        Some(2),
        &["delegation depth 2 exceeds the root's max_depth 1"],
    );
    assert_eq!(denial.block, Some(2));
}

#[test]
fn max_depth_0_forbids_any_delegation() {
    let f = Family::mint_with(customers_grant(), |r| r.max_depth = Some(0));
    assert_allowed(&f.authorize(&read_customer(1)));
    let token = append_hop(
        f.token(),
        &f.holder().key,
        hop_block_for(&Agent::new("agent-1"), &customers_grant(), in_an_hour()),
    );
    assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::DepthExceeded,
        Some(1),
        &["delegation depth 1 exceeds the root's max_depth 0"],
    );
}

#[test]
fn narrowing_blocks_do_not_count_towards_max_depth() {
    let f = Family::mint_with(customers_grant(), |r| r.max_depth = Some(1));
    let narrowed = narrow(f.token(), &grant(&["read:/api/customers/*"], &[]), None).unwrap();
    let child = delegate(
        &narrowed.token,
        &f.holder().key,
        &delegation(&Agent::new("agent-1"), grant(&[], &[])),
    )
    .unwrap();
    assert_eq!(child.chain.depth(), 1);
    assert_allowed(&f.verifier.authorize(&child.token, &read_customer(1)));
}

/// Issue 15 item 7 (SPEC §6, "Which rule a denial reports"): a hop past
/// `max_depth` that also restates `principal` breaks rules 8 and 9; rule 8
/// is checked first, so the denial is `depth_exceeded`, at that hop and
/// block, whatever else the block breaks.
#[test]
fn a_block_breaking_several_rules_reports_the_first_in_the_specs_order() {
    let f = Family::mint_with(customers_grant(), |r| r.max_depth = Some(0));
    let block = hop_block_for(&Agent::new("agent-1"), &customers_grant(), in_an_hour())
        .fact(biscuit_auth::builder::fact(
            mandate_spec::vocab::PRINCIPAL,
            &[biscuit_auth::builder::string("user:mallory")],
        ))
        .unwrap();
    let token = append_hop(f.token(), &f.holder().key, block);
    let denial = assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::DepthExceeded,
        Some(1),
        &["delegation depth 1 exceeds the root's max_depth 0"],
    );
    assert_eq!(denial.block, Some(1));
    // Within max_depth, the same block breaks rule 9 only.
    let f = Family::mint_with(customers_grant(), |r| r.max_depth = Some(1));
    let block = hop_block_for(&Agent::new("agent-1"), &customers_grant(), in_an_hour())
        .fact(biscuit_auth::builder::fact(
            mandate_spec::vocab::PRINCIPAL,
            &[biscuit_auth::builder::string("user:mallory")],
        ))
        .unwrap();
    let token = append_hop(f.token(), &f.holder().key, block);
    assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(1),
        &["a delegation hop cannot state principal(…); only the root does"],
    );
}

/// Issue 15 item 6 (SPEC §6, "Approval blocks are not hops"): an approval
/// block does not advance the hop number; what it breaks is reported with
/// the hop current when it was appended and its own block index.
#[test]
fn an_approval_block_is_reported_with_the_hop_before_it() {
    let approval = || {
        // Two approval facts: an approval block holds exactly one.
        let fact = |d: u8| {
            biscuit_auth::builder::fact(
                mandate_spec::vocab::APPROVAL,
                &[
                    biscuit_auth::builder::bytes(&[d; 32]),
                    biscuit_auth::builder::date(&in_an_hour()),
                ],
            )
        };
        biscuit_auth::builder::BlockBuilder::new()
            .fact(fact(1))
            .unwrap()
            .fact(fact(2))
            .unwrap()
    };
    let approver = KeyPair::new();
    // Root (block 0), approval (block 1): hop 0, block 1.
    let f = Family::mint(customers_grant());
    let token = mandate_tests::append_hop(f.token(), &approver, approval());
    let denial = assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(0),
        &["an approval block holds exactly one approval(…) fact"],
    );
    assert_eq!(denial.block, Some(1));
    // Root (0), hop 1 (1), approval (2): hop 1, block 2.
    let mut f = Family::mint(customers_grant());
    f.delegate(grant(&["read:/api/customers/*"], &[]));
    let token = mandate_tests::append_hop(f.token(), &approver, approval());
    let denial = assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(1),
        &["an approval block holds exactly one approval(…) fact"],
    );
    assert_eq!(denial.block, Some(2));
}
