//! Human approval and holder binding through the HTTP middleware (axum
//! `oneshot`): a payment above the approval threshold is answered 403
//! `needs_approval` with what to sign; with the approval attached it passes
//! once, and its replay is denied; a token requiring proof of possession is
//! answered 401 without the `Mandate-Proof` header, with a proof for another
//! body, or with a replayed one, and passes with a fresh one.
#![allow(clippy::unwrap_used, missing_docs)]

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use biscuit_auth::KeyPair;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mandate_attenuate::{approve, attach_approval};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Grant, HolderProof, ProofSubject};
use mandate_verifier::http::{MandateLayer, Route, RouteMap};
use mandate_verifier::{ReplayGuard, RootKeys, Verifier};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tower::ServiceExt;

struct Api {
    app: Router,
    agent: KeyPair,
    finance: KeyPair,
    token: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn api(holder_bound: bool) -> Api {
    let (issuer, agent, finance) = (Issuer::new(KeyPair::new()), KeyPair::new(), KeyPair::new());
    let mut grant = Grant::parse(&["pay:/api/payments"], &["amount<=1000"])
        .unwrap()
        .with_approval(&format!(
            "pay when amount>100 by finance={}",
            finance.public()
        ))
        .unwrap();
    grant.holder_bound = holder_bound;
    let token = issuer
        .mint(&MintRequest {
            principal: "org:acme".into(),
            agent: "payments-agent".into(),
            agent_key: agent.public(),
            grant,
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let (id, key) = issuer.keys().public_keys()[0];
    let verifier = Verifier::new(RootKeys::new().with(id, key))
        .with_cache(mandate_verifier::CacheOptions::default())
        .with_replay_guard(Arc::new(
            ReplayGuard::open(dir.path().join("replay")).unwrap(),
        ));
    let mapping = RouteMap::new().route(
        "POST",
        "/api/payments",
        Route::new().action("pay").body_param("amount", "amount"),
    );
    let app = Router::new()
        .route("/api/payments", post(|| async { "paid" }))
        .layer(MandateLayer::new(verifier, mapping));
    Api {
        app,
        agent,
        finance,
        token,
        _dir: dir,
    }
}

fn pay(token: &[u8], body: &str, proof: Option<String>) -> Request<Body> {
    let mut b = Request::post("/api/payments")
        .header("authorization", format!("Bearer {}", token_to_text(token)))
        .header("content-type", "application/json");
    if let Some(p) = proof {
        b = b.header("mandate-proof", p);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn proof(key: &KeyPair, token: &[u8], body: &str) -> String {
    HolderProof::sign(
        key,
        &ProofSubject {
            method: "POST",
            resource: "/api/payments",
            body_digest: ProofSubject::digest(body.as_bytes()),
            token,
        },
        SystemTime::now(),
    )
    .unwrap()
    .to_header()
}

#[tokio::test]
async fn a_payment_above_the_threshold_needs_approval_then_passes_once() {
    let a = api(false);
    let body = r#"{"amount": 150}"#;
    assert_eq!(
        send(&a.app, pay(&a.token, r#"{"amount": 50}"#, None))
            .await
            .0,
        StatusCode::OK
    );
    let (status, asked) = send(&a.app, pay(&a.token, body, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(asked["decision"], "needs_approval");
    assert_eq!(asked["denial"]["kind"], "needs_approval");
    assert_eq!(asked["approval"]["approvers"][0]["name"], "finance");
    assert!(asked["reason"]
        .as_str()
        .unwrap()
        .contains("needs an approval by finance"));

    // The approver signs what the body shows; the agent attaches it.
    let request: mandate_spec::Request = serde_json::from_value(asked["request"].clone()).unwrap();
    let block = approve(
        asked["approval"]["third_party_request"].as_str().unwrap(),
        &request,
        SystemTime::now() + Duration::from_secs(300),
        &a.finance,
    )
    .unwrap();
    let approved = attach_approval(&a.token, &block).unwrap().token;
    assert_eq!(
        send(&a.app, pay(&approved, body, None)).await.0,
        StatusCode::OK
    );
    let (status, again) = send(&a.app, pay(&approved, body, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(again["denial"]["kind"], "approval_replayed");
    // For other parameters: not this approval.
    let (_, other) = send(&a.app, pay(&approved, r#"{"amount": 151}"#, None)).await;
    assert_eq!(other["denial"]["kind"], "approval_mismatch");
    // Expired (valid until a moment already past).
    let stale = approve(
        asked["approval"]["third_party_request"].as_str().unwrap(),
        &request,
        SystemTime::now() - Duration::from_secs(5),
        &a.finance,
    )
    .unwrap();
    let stale = attach_approval(&a.token, &stale).unwrap().token;
    let (status, d) = send(&a.app, pay(&stale, body, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(d["denial"]["kind"], "approval_expired");
    // Signed by another key.
    let forged = approve(
        asked["approval"]["third_party_request"].as_str().unwrap(),
        &request,
        SystemTime::now() + Duration::from_secs(60),
        &KeyPair::new(),
    )
    .unwrap();
    let forged = attach_approval(&a.token, &forged).unwrap().token;
    let (_, d) = send(&a.app, pay(&forged, body, None)).await;
    assert_eq!(d["denial"]["kind"], "approval_wrong_approver");
}

#[tokio::test]
async fn holder_binding_over_http() {
    let a = api(true);
    let body = r#"{"amount": 50}"#;
    let (status, d) = send(&a.app, pay(&a.token, body, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(d["denial"]["kind"], "proof_missing");
    let p = proof(&a.agent, &a.token, body);
    assert_eq!(
        send(&a.app, pay(&a.token, body, Some(p.clone()))).await.0,
        StatusCode::OK
    );
    let (status, d) = send(&a.app, pay(&a.token, body, Some(p))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(d["reason"].as_str().unwrap().contains("replayed"));
    // Signed over another body than the one sent.
    let p = proof(&a.agent, &a.token, r#"{"amount": 5}"#);
    let (status, d) = send(&a.app, pay(&a.token, body, Some(p))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(d["reason"]
        .as_str()
        .unwrap()
        .contains("not signed by the final holder"));
    // Stale.
    let old = HolderProof::sign(
        &a.agent,
        &ProofSubject {
            method: "POST",
            resource: "/api/payments",
            body_digest: ProofSubject::digest(body.as_bytes()),
            token: &a.token,
        },
        SystemTime::now() - Duration::from_secs(600),
    )
    .unwrap()
    .to_header();
    let (status, d) = send(&a.app, pay(&a.token, body, Some(old))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(d["reason"].as_str().unwrap().contains("stale"));
    // Another key than the holder's.
    let thief = proof(&KeyPair::new(), &a.token, body);
    let (status, _) = send(&a.app, pay(&a.token, body, Some(thief))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Not a proof.
    let (status, d) = send(&a.app, pay(&a.token, body, Some("t=1".into()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(d["denial"]["kind"], "proof_invalid");
}
