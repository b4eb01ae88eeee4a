//! Human approval and holder binding through the HTTP middleware (axum
//! `oneshot`): a payment above the approval threshold is answered 403
//! `needs_approval` with what to sign; with the approval attached it passes
//! once, and its replay is denied; a token requiring proof of possession is
//! answered 401 without the `Mandate-Proof` header, with a proof for another
//! body, or with a replayed one, and passes with a fresh one. A proof covers
//! the whole request: a proof for `/transfer?amount=5` is refused on
//! `/transfer?amount=500` (and on reordered, re-encoded or repeated query
//! parameters), a proof for another audience is refused whatever the `Host`
//! header says, and a layer without a configured audience refuses proofs.
#![allow(clippy::unwrap_used, missing_docs)]

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use biscuit_auth::KeyPair;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mandate_attenuate::{approve, attach_approval};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Audience, Grant, HolderProof, ProofSubject};
use mandate_verifier::http::{MandateLayer, Route, RouteMap};
use mandate_verifier::{replay::ReplayGuard, RootKeys, Verifier};
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
        .layer(MandateLayer::new(verifier, mapping).audience(HERE));
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

/// The origin the test APIs serve.
const HERE: &str = "https://api.example.com";

fn here() -> Audience {
    Audience::parse(HERE).unwrap()
}

fn proof(key: &KeyPair, token: &[u8], body: &str) -> String {
    HolderProof::sign(
        key,
        &ProofSubject {
            method: "POST",
            audience: &here(),
            target: "/api/payments",
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
            audience: &here(),
            target: "/api/payments",
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
    let (status, d) = send(&a.app, pay(&a.token, body, Some("v=2;t=1".into()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(d["denial"]["kind"], "proof_invalid");
    // A version 1 proof (no v=2: method and path only) is refused, saying so.
    let v1 = proof(&a.agent, &a.token, body).replacen("v=2;", "", 1);
    let (status, d) = send(&a.app, pay(&a.token, body, Some(v1))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(d["denial"]["kind"], "proof_invalid");
    assert!(d["reason"].as_str().unwrap().contains("version 1"), "{d}");
}

/// An API whose transfers are decided on query parameters
/// (`POST /transfer?amount=N&to=NAME`, amount ≤ 1000), holder-bound, behind
/// a layer serving `audience` (none: not configured).
struct Transfers {
    app: Router,
    agent: KeyPair,
    token: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn transfers(audience: Option<&str>) -> Transfers {
    let (issuer, agent) = (Issuer::new(KeyPair::new()), KeyPair::new());
    let mut grant = Grant::parse(&["transfer:/transfer"], &["amount<=1000"]).unwrap();
    grant.holder_bound = true;
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
    let verifier = Verifier::new(RootKeys::new().with(id, key)).with_replay_guard(Arc::new(
        ReplayGuard::open(dir.path().join("replay")).unwrap(),
    ));
    let mapping = RouteMap::new().route("POST", "/transfer", Route::new().action("transfer"));
    let mut layer = MandateLayer::new(verifier, mapping);
    if let Some(a) = audience {
        layer = layer.audience(a);
    }
    let app = Router::new()
        .route("/transfer", post(|| async { "sent" }))
        .layer(layer);
    Transfers {
        app,
        agent,
        token,
        _dir: dir,
    }
}

impl Transfers {
    /// A proof by the holder for `POST <audience><target>`, empty body.
    fn proof(&self, audience: &str, target: &str) -> String {
        HolderProof::sign(
            &self.agent,
            &ProofSubject {
                method: "POST",
                audience: &Audience::parse(audience).unwrap(),
                target,
                body_digest: ProofSubject::digest(b""),
                token: &self.token,
            },
            SystemTime::now(),
        )
        .unwrap()
        .to_header()
    }

    /// `POST uri` with the token, the proof and a `Host` header.
    fn request(&self, uri: &str, proof: &str, host: &str) -> Request<Body> {
        Request::post(uri)
            .header("host", host)
            .header(
                "authorization",
                format!("Bearer {}", token_to_text(&self.token)),
            )
            .header("mandate-proof", proof)
            .body(Body::empty())
            .unwrap()
    }
}

#[tokio::test]
async fn a_proof_for_one_query_is_refused_with_another() {
    let t = transfers(Some(HERE));
    let for_five = t.proof(HERE, "/transfer?amount=5");
    // The attack: the holder's proof for 5, replayed by a thief with 500
    // (which the grant allows: only the proof refuses it).
    let (status, d) = send(
        &t.app,
        t.request("/transfer?amount=500", &for_five, "api.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{d}");
    assert_eq!(d["denial"]["kind"], "proof_invalid");
    let why = d["reason"].as_str().unwrap();
    assert!(
        why.contains("not signed by the final holder") && why.contains("/transfer?amount=500"),
        "{why}"
    );
    assert_eq!(d["request"]["params"]["amount"], 500);
    // The request it was made for passes.
    let (status, d) = send(
        &t.app,
        t.request("/transfer?amount=5", &for_five, "api.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    // Nothing but the exact bytes signed: reordered, re-encoded, or with a
    // parameter added, the same parameters are another request.
    let signed = t.proof(HERE, "/transfer?amount=5&to=bob");
    for other in [
        "/transfer?to=bob&amount=5",
        "/transfer?amount=%35&to=bob",
        "/transfer?amount=5&to=bob&memo=x",
        "/transfer?amount=5&to=bob&",
        "/transfer?amount=5",
    ] {
        let (status, d) = send(&t.app, t.request(other, &signed, "api.example.com")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{other}: {d}");
        assert_eq!(d["denial"]["kind"], "proof_invalid", "{other}");
    }
    // A repeated parameter is refused by the mapping (two values would let
    // either satisfy a check), even with a proof over exactly those bytes.
    let target = "/transfer?amount=5&amount=500";
    let (status, d) = send(
        &t.app,
        t.request(target, &t.proof(HERE, target), "api.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{d}");
    assert!(
        d["error"].as_str().unwrap().contains("more than once"),
        "{d}"
    );
}

#[tokio::test]
async fn a_proof_for_another_audience_is_refused_whatever_the_host_header() {
    let t = transfers(Some("https://api.example.com:443/"));
    let elsewhere = t.proof("https://staging.example.com", "/transfer?amount=5");
    // The Host header (chosen by the sender) says staging: not believed.
    for (uri, host) in [
        ("/transfer?amount=5", "staging.example.com"),
        (
            "https://staging.example.com/transfer?amount=5",
            "staging.example.com",
        ),
        ("/transfer?amount=5", "api.example.com"),
    ] {
        let (status, d) = send(&t.app, t.request(uri, &elsewhere, host)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {host}: {d}");
        assert_eq!(d["denial"]["kind"], "proof_invalid");
        assert!(
            d["reason"]
                .as_str()
                .unwrap()
                .contains("audience (https://api.example.com)"),
            "{d}"
        );
    }
    // Made for this audience (default port written or not): accepted.
    for made_for in ["https://api.example.com", "https://API.example.com:443"] {
        let p = t.proof(made_for, "/transfer?amount=5");
        let (status, d) = send(
            &t.app,
            t.request("/transfer?amount=5", &p, "staging.example.com"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{made_for}: {d}");
    }
    // Another port is another audience.
    let p = t.proof("https://api.example.com:8443", "/transfer?amount=5");
    let (status, _) = send(
        &t.app,
        t.request("/transfer?amount=5", &p, "api.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_layer_without_an_audience_refuses_proofs_saying_why() {
    let t = transfers(None);
    let p = t.proof(HERE, "/transfer?amount=5");
    let (status, d) = send(
        &t.app,
        t.request("/transfer?amount=5", &p, "api.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{d}");
    assert_eq!(d["denial"]["kind"], "proof_invalid");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("no configured audience"),
        "{d}"
    );
}

#[tokio::test]
async fn a_nested_service_checks_the_target_as_the_client_sent_it() {
    let t = transfers(Some(HERE));
    let app = Router::new().nest("/v1", t.app.clone());
    let sent = t.proof(HERE, "/v1/transfer?amount=5");
    let (status, d) = send(&app, t.request("/v1/transfer?amount=5", &sent, "x")).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    // A proof over the path the nested service sees is not what was sent.
    let inner = t.proof(HERE, "/transfer?amount=5");
    let (status, _) = send(&app, t.request("/v1/transfer?amount=5", &inner, "x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn the_audience_is_in_the_policy_hash() {
    let key = KeyPair::new();
    let layer = |a: Option<&str>| {
        let l = MandateLayer::new(
            Verifier::new(RootKeys::single(key.public())),
            RouteMap::new(),
        );
        match a {
            Some(a) => l.audience(a),
            None => l,
        }
        .verifier()
        .policy_hash()
        .to_string()
    };
    let (none, a, b) = (
        layer(None),
        layer(Some("https://a.example")),
        layer(Some("https://b.example")),
    );
    assert!(none != a && a != b && none != b);
    assert_eq!(a, layer(Some("https://A.example:443")));
}
