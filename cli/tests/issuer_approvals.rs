//! Approvals at the issuer service, through the router: an agent submits a
//! payment that needs approval with its own token; a reviewer lists the
//! queue with the chain; a finance approver approves (the service signs
//! with the finance key it holds); the agent fetches the approval block,
//! attaches it and is allowed once. Refusals: a request that needs no
//! approval (409), a denied one (403), an admin token narrowed to another
//! approver (403), deciding twice (409), listing without `review` (403).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "issuer_common/mod.rs"]
mod common;

use axum::http::{Method, StatusCode};
use biscuit_auth::KeyPair;
use common::{admin_token, call, write_key, Env};
use mandate_server::{ApproverFile, Service};
use mandate_spec::{format_public_key, token_from_text, token_to_text};
use mandate_verifier::{replay::ReplayGuard, RootKeys, Verifier};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn an_agent_asks_a_person_approves_the_agent_pays_once() {
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
    let (status, minted) = call(
        &router,
        Method::POST,
        "/v1/tokens",
        Some(&minter),
        Some(json!({
            "principal": "org:acme", "agent": "payments-agent",
            "agent_key": format_public_key(&agent.public()),
            "allow": ["pay:/api/payments"], "where": ["amount<=1000"],
            "approval": [format!("pay when amount>100 by finance={}", finance.public())],
            "ttl": "1h",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    let pay = |amount: i64| json!({ "action": "pay", "resource": "/api/payments", "params": { "amount": amount } });

    // Needs no approval / cannot be approved.
    let (status, body) = call(
        &router,
        Method::POST,
        "/v1/approvals",
        Some(&token),
        Some(pay(50)),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = call(
        &router,
        Method::POST,
        "/v1/approvals",
        Some(&token),
        Some(pay(5000)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The agent submits a payment of 150.
    let (status, asked) = call(
        &router,
        Method::POST,
        "/v1/approvals",
        Some(&token),
        Some(pay(150)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    assert_eq!(asked["status"], "pending");
    let id = asked["id"].as_str().unwrap().to_string();

    // A reviewer sees it, with its chain.
    let reviewer = admin_token(&root, 0, &["review:/v1/approvals"], &[]);
    let (status, queue) = call(
        &router,
        Method::GET,
        "/v1/approvals?status=pending",
        Some(&reviewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue.as_array().unwrap().len(), 1);
    assert_eq!(queue[0]["chain"]["principal"], "org:acme");
    assert_eq!(queue[0]["chain"]["hops"][0]["agent"], "payments-agent");
    assert_eq!(queue[0]["request"]["params"]["amount"], 150);
    let (status, _) = call(&router, Method::GET, "/v1/approvals", Some(&minter), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "listing needs `review`");

    // An approver admin token narrowed to another approver cannot approve.
    let legal = admin_token(&root, 0, &["approve:/v1/approvals"], &["approver=legal"]);
    let (status, _) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{id}/approve"),
        Some(&legal),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Finance's can.
    let approver = admin_token(&root, 0, &["approve:/v1/approvals"], &["approver=finance"]);
    let (status, done) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{id}/approve"),
        Some(&approver),
        Some(json!({"valid": "5m"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "approved");
    let (status, _) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{id}/deny"),
        Some(&approver),
        Some(json!({"reason": "late"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "decided once");

    // The agent fetches the block and attaches it; a verifier allows once.
    let (status, fetched) = call(
        &router,
        Method::GET,
        &format!("/v1/approvals/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let block = fetched["approval_block"].as_str().unwrap();
    let approved =
        mandate_attenuate::attach_approval(&token_from_text(&token).unwrap(), block).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let verifier = Verifier::new(RootKeys::single(root.public()))
        .with_replay_guard(Arc::new(ReplayGuard::open(dir.path()).unwrap()));
    let request: mandate_spec::Request =
        serde_json::from_value(fetched["request"].clone()).unwrap();
    assert!(verifier.authorize(&approved.token, &request).is_allowed());
    assert!(!verifier.authorize(&approved.token, &request).is_allowed());
    let _ = token_to_text(&approved.token);

    // A second request, denied by a person.
    let (_, asked) = call(
        &router,
        Method::POST,
        "/v1/approvals",
        Some(&token),
        Some(pay(200)),
    )
    .await;
    let id = asked["id"].as_str().unwrap();
    let (status, denied) = call(
        &router,
        Method::POST,
        &format!("/v1/approvals/{id}/deny"),
        Some(&approver),
        Some(json!({"reason": "not this supplier"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["denied_because"], "not this supplier");
    assert!(denied.get("approval_block").is_none());
    let (status, _) = call(&router, Method::GET, "/v1/approvals/no-such-id", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
