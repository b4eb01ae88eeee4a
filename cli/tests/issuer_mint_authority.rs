//! Minting authority (SERVICE.md S2): everything a minted token carries is
//! decided on, one admin request per minted alternative × action, so an
//! admin token narrowed on a field cannot mint beyond it; grants reaching the
//! service's own resources need `mint-admin`; revocations, approvals and the
//! decisions page decide on every field of their effect too.
//!
//! Who reaches it: a narrow admin token holder (a support desk's token, or a
//! delegate of it). What the decision sees: the parameters built from the
//! grant the service is about to sign (`mint_decision.rs`), never text
//! re-parsed elsewhere; the minted token is decoded here and compared.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "issuer_common/mod.rs"]
mod common;

use axum::http::{Method, StatusCode};
use axum::Router;
use biscuit_auth::KeyPair;
use common::{admin_token, call, write_key, Env, Svc};
use mandate_server::{ApproverFile, Service};
use mandate_spec::{
    decode_blocks, format_public_key, token_from_text, Chain, Constraint, IntCmp, ResourcePattern,
};
use serde_json::{json, Value};

async fn mint(router: &Router, admin: &str, body: Value) -> (StatusCode, Value) {
    call(router, Method::POST, "/v1/tokens", Some(admin), Some(body)).await
}

fn chain_of(minted: &Value) -> Chain {
    let bytes = token_from_text(minted["token"].as_str().unwrap()).unwrap();
    Chain::from_blocks(&decode_blocks(&bytes).unwrap(), None).unwrap()
}

fn error_of(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

/// A mint for the support team, within every narrowing of `support_admin`.
fn support_body(agent: &KeyPair) -> Value {
    json!({
        "principal": "team:support:bob", "agent": "support-agent",
        "agent_key": format_public_key(&agent.public()),
        "allow": ["read,list:/api/support/tickets/*"], "where": ["rows<=100"],
        "ttl": "1h", "max_depth": 2, "require_proof": true,
    })
}

/// The support desk's admin token, narrowed on every kind of field.
fn support_admin(root: &KeyPair) -> String {
    admin_token(
        root,
        0,
        &["mint:/v1/tokens"],
        &[
            "principal starts-with team:support:",
            "ttl_seconds<=3600",
            "max_depth<=2",
            "require_proof=1",
            "grant_action in read|list",
            "grant_resource starts-with /api/support/",
            "max.rows<=100",
        ],
    )
}

/// The attack confirmed on main: an admin token narrowed the way SERVICE.md
/// S2 used to recommend (principal and TTL only) minted a full admin grant
/// on the service's own endpoints, and any grant at all elsewhere.
#[tokio::test]
async fn narrowed_admin_token_minted_any_grant_and_admin_tokens() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let old_style = admin_token(
        &svc.root,
        0,
        &["mint:/v1/tokens"],
        &["principal starts-with team:support:", "ttl_seconds<=3600"],
    );
    // A full admin grant for a support principal: decided as mint-admin.
    let mut escalate = support_body(&agent);
    escalate["allow"] = json!([
        "mint,mint-admin,revoke,approve,review:/v1/**",
        "review:/ui/**"
    ]);
    escalate["where"] = json!([]);
    escalate["require_proof"] = json!(false);
    let (status, answer) = mint(&svc.router, &old_style, escalate).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let msg = error_of(&answer);
    assert!(
        msg.starts_with(
            "admin token does not allow mint-admin on /v1/tokens for alternative 1 of 2"
        ),
        "{msg}"
    );
    assert!(msg.contains("reaches the service's own resources"), "{msg}");
    assert!(
        msg.contains("action \"mint-admin\" is not allowed"),
        "{msg}"
    );
    assert_eq!(answer["denial"]["kind"], "not_allowed");

    // Everything under the root reaches the service too.
    let mut everything = support_body(&agent);
    everything["allow"] = json!(["read,write,delete:/**"]);
    let (status, answer) = mint(&svc.router, &old_style, everything).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(error_of(&answer).contains("mint-admin"), "{answer}");

    // The token S2 now recommends is narrowed on the grant as well: the
    // same holder cannot mint delete on all customers.
    let support = support_admin(&svc.root);
    let mut wide = support_body(&agent);
    wide["allow"] = json!(["read,list:/api/customers/**"]);
    let (status, answer) = mint(&svc.router, &support, wide).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let msg = error_of(&answer);
    assert!(
        msg.contains("for alternative 1 of 1 (`list,read:/api/customers/** where rows<=100`), action \"list\""),
        "{msg}"
    );
    assert!(
        msg.contains(
            "parameter grant_resource=\"/api/customers/**\" violates grant_resource starts-with \"/api/support/\""
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn support_admin_mints_within_its_narrowing_and_what_it_minted_is_what_was_decided() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let support = support_admin(&svc.root);
    let (status, minted) = mint(&svc.router, &support, support_body(&agent)).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let chain = chain_of(&minted);
    assert_eq!(chain.principal, "team:support:bob");
    assert_eq!(chain.max_depth, Some(2));
    let grant = &chain.hops[0].grant;
    assert!(grant.holder_bound);
    assert_eq!(grant.alternatives.len(), 1);
    let alt = &grant.alternatives[0];
    assert_eq!(
        alt.resource,
        ResourcePattern::Children("/api/support/tickets/".into())
    );
    assert_eq!(
        alt.constraints,
        vec![Constraint::Int {
            param: "rows".into(),
            cmp: IntCmp::Le,
            bound: 100
        }]
    );

    // Tighter than the admin's bounds, in other forms: still within.
    for (allow, where_) in [
        (json!(["read:/api/support/**"]), json!(["rows<50"])),
        (json!(["list:/api/support/x"]), json!(["rows=7"])),
        (
            json!(["read:/api/support/*"]),
            json!(["rows in 1|2|3", "region=eu"]),
        ),
    ] {
        let mut body = support_body(&agent);
        body["allow"] = allow.clone();
        body["where"] = where_;
        let (status, answer) = mint(&svc.router, &support, body).await;
        assert_eq!(status, StatusCode::CREATED, "{allow}: {answer}");
    }
}

#[tokio::test]
async fn support_admin_cannot_mint_beyond_any_field() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let support = support_admin(&svc.root);
    let good = support_body(&agent);
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "an action",
            with("allow", json!(["read,delete:/api/support/tickets/*"])),
            "parameter grant_action=\"delete\" violates grant_action in ",
        ),
        (
            "a pattern",
            with("allow", json!(["read:/api/billing/*"])),
            "parameter grant_resource=\"/api/billing/*\" violates",
        ),
        (
            "a prefix without its boundary",
            with("allow", json!(["read:/api/supportX/*"])),
            "parameter grant_resource=\"/api/supportX/*\" violates",
        ),
        (
            "a missing constraint",
            with("where", json!([])),
            "parameter max.rows is missing, and max.rows<=100 requires it",
        ),
        (
            "a looser bound",
            with("where", json!(["rows<=500"])),
            "parameter max.rows=500 violates max.rows<=100",
        ),
        (
            "a lower bound only",
            with("where", json!(["rows>=1"])),
            "parameter max.rows is missing",
        ),
        (
            "no holder binding",
            with("require_proof", json!(false)),
            "parameter require_proof=0 violates require_proof=1",
        ),
        (
            "a longer ttl",
            with("ttl", json!("2h")),
            "parameter ttl_seconds=7200 violates ttl_seconds<=3600",
        ),
        (
            "a deeper chain",
            with("max_depth", json!(5)),
            "parameter max_depth=5 violates max_depth<=2",
        ),
        (
            "an unlimited depth",
            without("max_depth"),
            "parameter max_depth is missing",
        ),
        (
            "another principal",
            with("principal", json!("user:alice")),
            "parameter principal=\"user:alice\" violates",
        ),
    ];
    for (what, body, expect) in cases {
        let (status, answer) = mint(&svc.router, &support, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {answer}");
        let msg = error_of(&answer);
        assert!(
            msg.starts_with("admin token does not allow mint on /v1/tokens for alternative "),
            "{what}: {msg}"
        );
        assert!(
            msg.contains(expect),
            "{what}: expected {expect:?} in {msg:?}"
        );
        assert_eq!(answer["denial"]["kind"], "not_allowed", "{what}");
    }

    // One good alternative does not carry a bad one: the refusal names it.
    let (status, answer) = mint(
        &svc.router,
        &support,
        with(
            "allow",
            json!(["read:/api/support/tickets/*", "read:/api/hr/**"]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let msg = error_of(&answer);
    assert!(
        msg.contains("for alternative 2 of 2 (`read:/api/hr/** where rows<=100`), action \"read\""),
        "{msg}"
    );
}

#[tokio::test]
async fn approval_rules_are_decided_on_their_key_and_conditions() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let finance = KeyPair::new();
    let other = KeyPair::new();
    let finance_key = format_public_key(&finance.public());
    let payments_admin = admin_token(
        &svc.root,
        0,
        &["mint:/v1/tokens"],
        &[
            &format!("approval_key={finance_key}"),
            "approval_when in amount>100|amount>50",
        ],
    );
    let body = |rules: Vec<String>| {
        json!({
            "principal": "org:acme", "agent": "payments-agent",
            "agent_key": format_public_key(&agent.public()),
            "allow": ["pay:/api/payments"], "where": ["amount<=1000"],
            "approval": rules, "ttl": "1h",
        })
    };
    let (status, minted) = mint(
        &svc.router,
        &payments_admin,
        body(vec![format!(
            "pay when amount>100 by finance={finance_key}"
        )]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let alt = &chain_of(&minted).hops[0].grant.alternatives[0];
    assert_eq!(alt.approval.as_ref().unwrap().key, finance_key);

    for (what, rules, expect) in [
        ("no rule", vec![], "parameter approval_key is missing"),
        (
            "another approver",
            vec![format!("pay when amount>100 by finance={}", other.public())],
            "parameter approval_key=",
        ),
        (
            "a laxer condition",
            vec![format!("pay when amount>5000 by finance={finance_key}")],
            "parameter approval_when=\"amount>5000\" violates",
        ),
    ] {
        let (status, answer) = mint(&svc.router, &payments_admin, body(rules)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {answer}");
        let msg = error_of(&answer);
        assert!(
            msg.contains(expect),
            "{what}: expected {expect:?} in {msg:?}"
        );
    }
}

#[tokio::test]
async fn service_resources_need_mint_admin() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let body = |allow: &str| {
        json!({
            "principal": "ops:carol", "agent": "carol-cli",
            "agent_key": format_public_key(&agent.public()),
            "allow": [allow], "ttl": "1h",
        })
    };
    // The plain admin token (mint,revoke:/v1/*) mints anything but the
    // service's own resources.
    for allow in [
        "mint:/v1/tokens",
        "revoke:/v1/**",
        "review:/ui/decisions",
        "read:/**",
        "approve:/v1/approvals/*",
    ] {
        let (status, answer) = mint(&svc.router, &svc.admin, body(allow)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{allow}: {answer}");
        let msg = error_of(&answer);
        assert!(
            msg.contains("admin token does not allow mint-admin"),
            "{allow}: {msg}"
        );
        assert!(
            msg.contains("action \"mint-admin\" is not allowed"),
            "{allow}: {msg}"
        );
    }
    for allow in ["read:/*", "read:/api/**", "read:/v1", "read:/api/v1/**"] {
        let (status, answer) = mint(&svc.router, &svc.admin, body(allow)).await;
        assert_eq!(status, StatusCode::CREATED, "{allow}: {answer}");
    }

    // Only a token naming mint-admin mints admin tokens (the bootstrap
    // token of SERVICE.md S2), and what it mints works as an admin token.
    let bootstrap = admin_token(&svc.root, 0, &["mint,mint-admin,revoke:/v1/*"], &[]);
    let (status, minted) = mint(&svc.router, &bootstrap, body("mint,revoke:/v1/*")).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let sub_admin = minted["token"].as_str().unwrap();
    let (status, answer) = mint(&svc.router, sub_admin, body("read:/api/**")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = mint(&svc.router, sub_admin, body("mint:/v1/tokens")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // A mint-admin token narrowed on the minted grant's own constraints
    // hands out only admin tokens as narrow as itself.
    let team_admins = admin_token(
        &svc.root,
        0,
        &["mint-admin:/v1/tokens"],
        &["prefix.principal starts-with team:support:"],
    );
    let mut narrow = body("mint:/v1/tokens");
    narrow["where"] = json!(["principal starts-with team:support:x:"]);
    let (status, answer) = mint(&svc.router, &team_admins, narrow).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = mint(&svc.router, &team_admins, body("mint:/v1/tokens")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        error_of(&answer).contains("parameter prefix.principal is missing"),
        "{answer}"
    );
}

#[tokio::test]
async fn too_many_alternatives_is_400_before_any_decision() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let actions: Vec<String> = (0..129).map(|i| format!("a{i}")).collect();
    let body = json!({
        "principal": "user:alice", "agent": "a",
        "agent_key": format_public_key(&agent.public()),
        "allow": [format!("{}:/api/x", actions.join(","))], "ttl": "1h",
    });
    let (status, answer) = mint(&svc.router, &svc.admin, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        error_of(&answer).contains("at most 128, this grant has 129"),
        "{answer}"
    );
}

#[tokio::test]
async fn revocations_are_decided_on_the_target_reason_and_author() {
    let svc = Svc::new();
    let minted = svc.mint("user:alice", "a", &KeyPair::new()).await;
    let token_id = minted["token_id"].as_str().unwrap();
    let one_family = admin_token(
        &svc.root,
        0,
        &["revoke:/v1/revocations"],
        &[&format!("token_id={token_id}"), "reason starts-with INC-"],
    );
    let revoke = |body: Value| {
        let router = svc.router.clone();
        let admin = one_family.clone();
        async move {
            call(
                &router,
                Method::POST,
                "/v1/revocations",
                Some(&admin),
                Some(body),
            )
            .await
        }
    };
    let other = "00000000-0000-4000-8000-000000000000";
    let (status, answer) = revoke(json!({ "token_id": other, "reason": "INC-1" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(error_of(&answer).contains(&format!("parameter token_id=\"{other}\" violates")));
    let (status, answer) = revoke(json!({ "principal": "user:alice", "reason": "INC-1" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        error_of(&answer).contains("parameter token_id is missing"),
        "{answer}"
    );
    let (status, answer) = revoke(json!({ "token_id": token_id, "reason": "because" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(error_of(&answer).contains("parameter reason=\"because\" violates"));

    // `by` is decided on when given: an admin token fixing it cannot sign
    // for someone else.
    let signed = admin_token(&svc.root, 0, &["revoke:/v1/revocations"], &["by=ops:carol"]);
    let (status, answer) = call(
        &svc.router,
        Method::POST,
        "/v1/revocations",
        Some(&signed),
        Some(json!({ "token_id": token_id, "reason": "x", "by": "ops:mallory" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(error_of(&answer).contains("parameter by=\"ops:mallory\" violates"));

    let (status, answer) = revoke(json!({ "token_id": token_id, "reason": "INC-7" })).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["revoked"][0]["reason"], "INC-7");
}

#[tokio::test]
async fn approvals_are_decided_on_the_request_approved() {
    let env = Env::new();
    let root = KeyPair::new();
    let finance = KeyPair::new();
    let finance_file = env.dir.path().join("finance.key");
    write_key(&finance_file, &finance);
    let mut config = env.config(&[(0, &root)], 0);
    config.approvers = vec![ApproverFile {
        name: "finance".into(),
        file: finance_file,
        ..Default::default()
    }];
    let router = Service::open(&config).unwrap().into_router();
    let minter = admin_token(&root, 0, &["mint:/v1/tokens"], &[]);
    let agent = KeyPair::new();
    let (status, minted) = mint(
        &router,
        &minter,
        json!({
            "principal": "org:acme", "agent": "payments-agent",
            "agent_key": format_public_key(&agent.public()),
            "allow": ["pay:/api/payments"], "where": ["amount<=1000"],
            "approval": [format!("pay when amount>100 by finance={}", finance.public())],
            "ttl": "1h",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let submit = |amount: i64| {
        let router = router.clone();
        let token = token.to_string();
        async move {
            let (status, record) = call(
                &router,
                Method::POST,
                "/v1/approvals",
                Some(&token),
                Some(json!({ "action": "pay", "resource": "/api/payments",
                             "params": { "amount": amount } })),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{record}");
            record["id"].as_str().unwrap().to_string()
        }
    };
    // A finance approver for small payments of acme, for at most an hour.
    let small = admin_token(
        &root,
        0,
        &["approve:/v1/approvals"],
        &[
            "approver=finance",
            "principal=org:acme",
            "request_action=pay",
            "request.amount<=500",
            "valid_seconds<=3600",
        ],
    );
    let big = submit(700).await;
    let (status, answer) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{big}/approve"),
        Some(&small),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        error_of(&answer).contains("parameter request.amount=700 violates request.amount<=500"),
        "{answer}"
    );
    let (status, answer) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{big}/deny"),
        Some(&small),
        Some(json!({ "reason": "too much" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    let ok = submit(300).await;
    let (status, answer) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{ok}/approve"),
        Some(&small),
        Some(json!({ "valid": "2h" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        error_of(&answer).contains("parameter valid_seconds=7200 violates"),
        "{answer}"
    );
    let (status, answer) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{ok}/approve"),
        Some(&small),
        Some(json!({ "valid": "10m" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "approved");
}

#[tokio::test]
async fn the_decisions_page_is_decided_on_its_filters() {
    let env = Env::new();
    let root = KeyPair::new();
    let audit_file = env.dir.path().join("audit.key");
    write_key(&audit_file, &KeyPair::new());
    let mut config = env.config(&[(0, &root)], 0);
    config.audit_key = Some(audit_file);
    let router = Service::open(&config).unwrap().into_router();
    let alice_only = admin_token(
        &root,
        0,
        &["review:/ui/decisions"],
        &["principal=user:alice"],
    );
    for (uri, expect) in [
        ("/ui/decisions", StatusCode::FORBIDDEN),
        ("/ui/decisions?principal=user:bob", StatusCode::FORBIDDEN),
        ("/ui/decisions?principal=user:alice", StatusCode::OK),
    ] {
        let (status, _, body) =
            common::call_raw(&router, Method::GET, uri, Some(&alice_only), None, false).await;
        assert_eq!(status, expect, "{uri}: {}", String::from_utf8_lossy(&body));
        if expect == StatusCode::FORBIDDEN {
            assert!(
                String::from_utf8_lossy(&body).contains("parameter principal"),
                "{uri}"
            );
        }
    }
}
