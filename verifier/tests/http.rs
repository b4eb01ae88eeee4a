//! The tower/axum middleware through real HTTP: axum `oneshot` for routing,
//! plus a socket test. Allow (the handler sees the decision and chain), each
//! denial kind with its status and reason (401 missing, unreadable or forged
//! token, expired, revoked (RFC 6750 invalid_token); 403 not allowed,
//! narrowed by a hop; 503 when the
//! revocation list cannot be read), the mapping (default, overrides, body
//! fields, typed query parameters, refusals), the verification cache across
//! a revocation, and an audit record for every decision.
#![allow(clippy::unwrap_used, missing_docs)]

use axum::body::Body;
use axum::extract::Json;
use axum::routing::{get, post};
use axum::Router;
use biscuit_auth::KeyPair;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Grant};
use mandate_verifier::http::{Authorized, MandateLayer, Route, RouteMap};
use mandate_verifier::{
    audit::{parse_export, read_audit_log, verify_entries, AuditLog, AuditOptions},
    revocation::{Revocation, RevocationStore, Target},
    CacheOptions, RootKeys, Verifier, VerifierError,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use tower::ServiceExt;

struct Setup {
    issuer: Issuer,
    support: KeyPair,
    sub: KeyPair,
    _dir: tempfile::TempDir,
    store: Arc<RevocationStore>,
    audit: AuditLog,
    audit_key: KeyPair,
    handled: Arc<AtomicUsize>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RevocationStore::open(dir.path().join("revocations")).unwrap());
        let audit_key = KeyPair::new();
        let audit = AuditLog::open(
            dir.path().join("audit"),
            &audit_key,
            AuditOptions::default(),
        )
        .unwrap();
        Setup {
            issuer: Issuer::new(KeyPair::new()),
            support: KeyPair::new(),
            sub: KeyPair::new(),
            _dir: dir,
            store,
            audit,
            audit_key,
            handled: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn keys(&self) -> RootKeys {
        let (id, key) = self.issuer.keys().public_keys()[0];
        RootKeys::new().with(id, key)
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(self.keys())
            .with_revocations(self.store.clone())
            .with_cache(CacheOptions::default())
            .with_audit(self.audit.clone())
    }

    /// The support agent's root token: read and list customers (at most 100
    /// rows), pay up to 100.
    fn root_at(&self, now: SystemTime) -> Vec<u8> {
        self.issuer
            .mint_at(
                &MintRequest {
                    principal: "user:alice".into(),
                    agent: "support-agent".into(),
                    agent_key: self.support.public(),
                    grant: Grant::parse(
                        &["read,list:/api/customers/*", "pay:/api/payments"],
                        &[] as &[&str],
                    )
                    .unwrap(),
                    ttl: Duration::from_secs(3600),
                    purpose: Some("answer support tickets".into()),
                    max_depth: Some(3),
                },
                now,
            )
            .unwrap()
            .token
    }

    fn root(&self) -> Vec<u8> {
        self.root_at(SystemTime::now())
    }

    /// Hop 1 to the sub-agent with `allow` and `wh` constraints.
    fn sub_token(&self, allow: &[&str], wh: &[&str]) -> Vec<u8> {
        delegate(
            &self.root(),
            &self.support,
            &Delegation {
                agent: "sub-agent".into(),
                agent_key: self.sub.public(),
                grant: Grant::parse(allow, wh).unwrap(),
                ttl: Some(Duration::from_secs(600)),
                purpose: Some("look up customer 42".into()),
            },
        )
        .unwrap()
        .token
    }

    fn mapping() -> RouteMap {
        RouteMap::new()
            .route(
                "GET",
                "/api/customers",
                Route::new().action("list").resource("/api/customers/*"),
            )
            .route(
                "POST",
                "/api/payments",
                Route::new()
                    .action("pay")
                    .body_param("amount", "amount")
                    .body_param("currency", "currency"),
            )
            .max_body_bytes(1024)
    }

    fn app(&self, verifier: Verifier) -> Router {
        let handled = self.handled.clone();
        let handled2 = self.handled.clone();
        let handled3 = self.handled.clone();
        Router::new()
            .route(
                "/api/customers/{id}",
                get(move |auth: Authorized| async move {
                    handled.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({
                        "principal": auth.principal(),
                        "agent": auth.agent(),
                        "hops": auth.decision().chain.as_ref().unwrap().hops.len(),
                    }))
                })
                .delete(move || async move {
                    handled2.fetch_add(1, Ordering::SeqCst);
                    "deleted"
                }),
            )
            .route("/api/customers", get(|| async { "[]" }))
            .route(
                "/api/payments",
                post(
                    move |_auth: Authorized, Json(body): Json<Value>| async move {
                        handled3.fetch_add(1, Ordering::SeqCst);
                        // The body reaches the handler intact after the
                        // middleware read its fields.
                        axum::Json(json!({ "paid": body["amount"] }))
                    },
                ),
            )
            .layer(MandateLayer::new(verifier, Setup::mapping()))
    }
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

fn get_with(uri: &str, token: Option<&[u8]>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {}", token_to_text(t)));
    }
    b.body(Body::empty()).unwrap()
}

fn method_with(method: &str, uri: &str, token: &[u8]) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", token_to_text(token)))
        .body(Body::empty())
        .unwrap()
}

fn pay(token: &[u8], body: &str, content_type: &str) -> Request<Body> {
    Request::post("/api/payments")
        .header("authorization", format!("Bearer {}", token_to_text(token)))
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn kind(body: &Value) -> &str {
    body["denial"]["kind"].as_str().unwrap_or("")
}

#[tokio::test]
async fn an_allowed_request_reaches_the_handler_with_the_decision_and_chain() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    let token = s.sub_token(&["read:/api/customers/*"], &[]);
    let (status, body) = send(&app, get_with("/api/customers/42", Some(&token))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["principal"], "user:alice");
    assert_eq!(body["agent"], "sub-agent");
    assert_eq!(body["hops"], 2);
    assert_eq!(s.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_denied_request_is_answered_403_with_the_reason_and_chain_and_never_reaches_the_handler()
{
    let s = Setup::new();
    let app = s.app(s.verifier());
    let token = s.sub_token(&["read:/api/customers/*"], &[]);
    let (status, body) = send(&app, method_with("DELETE", "/api/customers/42", &token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["decision"], "deny");
    assert_eq!(kind(&body), "not_allowed");
    assert_eq!(body["denial"]["hop"], 0, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("\"delete\""), "{reason}");
    assert_eq!(body["request"]["action"], "delete");
    assert_eq!(body["chain"]["principal"], "user:alice");
    let hops = body["chain"]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[1]["agent"], "sub-agent");
    assert_eq!(hops[1]["signed_by"]["agent"], "support-agent");
    assert_eq!(s.handled.load(Ordering::SeqCst), 0);

    // The hop narrowed `list` away although the root allows it.
    let (status, body) = send(&app, get_with("/api/customers", Some(&token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["denial"]["hop"], 1, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("\"list\""));
}

#[tokio::test]
async fn no_unreadable_or_forged_token_is_401() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    let (status, body) = send(&app, get_with("/api/customers/42", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&body), "missing_token");
    assert!(body["reason"].as_str().unwrap().contains("Bearer"));

    let garbage = Request::get("/api/customers/42")
        .header("authorization", "Bearer not-a-token!!")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(garbage).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    // A token from another issuer with the same key id.
    let other = Setup::new();
    let (status, body) = send(&app, get_with("/api/customers/42", Some(&other.root()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&body), "bad_signature");
    assert_eq!(s.handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_expired_token_is_401_expired() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    let old = s.root_at(SystemTime::now() - Duration::from_secs(7200));
    let (status, body) = send(&app, get_with("/api/customers/42", Some(&old))).await;
    // RFC 6750 §3.1: an expired token is invalid_token, 401.
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&body), "expired", "{body}");
}

#[tokio::test]
async fn the_cache_keeps_a_token_until_a_revocation_prunes_it() {
    let s = Setup::new();
    let verifier = s.verifier();
    let app = s.app(verifier.clone());
    let token = s.sub_token(&["read:/api/customers/*"], &[]);
    for _ in 0..3 {
        assert_eq!(
            send(&app, get_with("/api/customers/42", Some(&token)))
                .await
                .0,
            StatusCode::OK
        );
    }
    assert_eq!(verifier.cached_tokens(), 1, "one token, verified once");

    // Revoke hop 1 (its block's revocation id) in the store the verifier reads.
    let chain = mandate_attenuate::read_chain(&token).unwrap();
    s.store
        .revoke(&[Revocation {
            target: Target::Block(hex::decode(&chain.hops[1].revocation_id).unwrap()),
            revoked_at: OffsetDateTime::now_utc(),
            reason: "task done".into(),
            by: "security".into(),
            expires_at: None,
            note: None,
        }])
        .unwrap();
    assert_eq!(
        verifier.cached_tokens(),
        0,
        "the revocation pruned the cache"
    );
    let (status, body) = send(&app, get_with("/api/customers/42", Some(&token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked: invalid_token");
    assert_eq!(kind(&body), "revoked");
    assert_eq!(body["denial"]["hop"], 1);
    assert!(body["reason"].as_str().unwrap().contains("task done"));
    // The parent token still works.
    assert_eq!(
        send(&app, get_with("/api/customers/42", Some(&s.root())))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unreadable_revocation_list_is_503_not_an_allow() {
    let s = Setup::new();
    let broken = |_: &[Target]| -> Result<Option<(usize, Revocation)>, VerifierError> {
        Err(VerifierError::Stale {
            detail: "no word from the revocation feed for 12.0 s (limit 10.0 s)".into(),
        })
    };
    let app = s.app(Verifier::new(s.keys()).with_revocations(broken));
    let (status, body) = send(&app, get_with("/api/customers/42", Some(&s.root()))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(kind(&body), "revocation_unavailable");
    assert!(body["reason"].as_str().unwrap().contains("stale"));
    assert_eq!(s.handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn query_parameters_are_typed_and_checked() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    let token = s.sub_token(&["read:/api/customers/*"], &["rows<=100"]);
    let ok = send(&app, get_with("/api/customers/42?rows=100", Some(&token))).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    let (status, body) = send(&app, get_with("/api/customers/42?rows=500", Some(&token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("rows") && reason.contains("500"),
        "{reason}"
    );
    // Missing: a constraint on an absent parameter denies.
    let (status, _) = send(&app, get_with("/api/customers/42", Some(&token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Given twice: refused before authorization.
    let (status, body) = send(
        &app,
        get_with("/api/customers/42?rows=1&rows=1000", Some(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("more than once"));
    // Regression (issue 12 red team): `;` splits parameters for some
    // servers and not for this parser: `rows=1;rows=1000` was decided as
    // one string value. Refused before authorization.
    let (status, body) = send(
        &app,
        get_with("/api/customers/42?rows=1;rows=1000", Some(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("';'"), "{body}");
    // `time` is the verifier's.
    let (status, body) = send(&app, get_with("/api/customers/42?time=1", Some(&token))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(kind(&body), "invalid_request");
}

#[tokio::test]
async fn a_non_canonical_path_is_refused_not_normalized() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    let token = s.root();
    for path in ["/api/customers/%2e%2e/admin", "/api/customers//42"] {
        let (status, body) = send(&app, get_with(path, Some(&token))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(kind(&body), "invalid_request");
    }
}

#[tokio::test]
async fn route_overrides_map_actions_resources_and_body_fields() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    // The list route: action `list` on the collection.
    let token = s.sub_token(&["list:/api/customers/*"], &[]);
    let (status, _) = send(&app, get_with("/api/customers", Some(&token))).await;
    assert_eq!(status, StatusCode::OK);

    // Payments: `amount` and `currency` come from the JSON body.
    let token = s.sub_token(
        &["pay:/api/payments"],
        &["amount<=100", "currency in EUR|USD"],
    );
    let (status, body) = send(
        &app,
        pay(
            &token,
            r#"{"amount": 80, "currency": "EUR"}"#,
            "application/json",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["paid"], 80);
    let (status, body) = send(
        &app,
        pay(
            &token,
            r#"{"amount": 150, "currency": "EUR"}"#,
            "application/json",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("amount") && reason.contains("150"),
        "{reason}"
    );
    assert_eq!(body["request"]["params"]["amount"], 150);
    let (status, _) = send(
        &app,
        pay(
            &token,
            r#"{"amount": 80, "currency": "GBP"}"#,
            "application/json",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Refusals before authorization.
    let (status, body) = send(&app, pay(&token, "amount=80", "application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = send(&app, pay(&token, r#"{"amount": 80.5}"#, "application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&app, pay(&token, r#"{"amount": 80}"#, "text/plain")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Regression (issue 12 red team): a key given twice was decided on the
    // last value, while a server keeping the first would pay 5000.
    for dup in [
        r#"{"amount": 5000, "amount": 80, "currency": "EUR"}"#,
        r#"{"amount": 80, "currency": "EUR", "memo": {"to": "a", "to": "b"}}"#,
    ] {
        let (status, body) = send(&app, pay(&token, dup, "application/json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains("twice"), "{body}");
    }
    let big = format!(r#"{{"amount": 80, "memo": "{}"}}"#, "x".repeat(2000));
    let (status, body) = send(&app, pay(&token, &big, "application/json")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // A body without Content-Length (streamed) is bounded too.
    let chunks = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 100]))),
    );
    let streamed = Request::post("/api/payments")
        .header("authorization", format!("Bearer {}", token_to_text(&token)))
        .header("content-type", "application/json")
        .body(Body::from_stream(chunks))
        .unwrap();
    assert_eq!(send(&app, streamed).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_handler_outside_the_middleware_refuses_to_run() {
    let app: Router =
        Router::new().route("/x", get(|_auth: Authorized| async { "should not happen" }));
    let resp = app
        .oneshot(Request::get("/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn every_decision_is_an_audit_record_signed_and_chained() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    let token = s.sub_token(&["read:/api/customers/*"], &[]);
    send(&app, get_with("/api/customers/42", Some(&token))).await;
    send(&app, method_with("DELETE", "/api/customers/42", &token)).await;
    send(&app, get_with("/api/customers/42", None)).await;
    let written = s.audit.flush().unwrap();
    assert_eq!(written, 3);
    let log = read_audit_log(s.audit.path()).unwrap();
    let key = s.audit_key.public();
    let summary = verify_entries(&log, &key).unwrap();
    assert_eq!(summary.records, 3);
    assert_eq!(summary.covered_through, Some(3));
    let entries = &log.entries;
    let records: Vec<_> = entries
        .iter()
        .map(|(_, e)| e.as_ref().unwrap().record.clone())
        .collect();
    assert_eq!(
        records.iter().map(|r| r.decision).collect::<Vec<_>>(),
        [
            mandate_verifier::Outcome::Allow,
            mandate_verifier::Outcome::Deny,
            mandate_verifier::Outcome::Deny
        ]
    );
    let chain = records[0].chain.as_ref().unwrap();
    assert_eq!(chain.principal, "user:alice");
    assert_eq!(chain.hops[1].agent, "sub-agent");
    assert_eq!(chain.hops[1].signed_by, "support-agent");
    assert_eq!(chain.hops[1].agent_key, s.sub.public().to_string());
    assert_eq!(records[1].request.action, "delete");
    assert_eq!(
        records[2].denial.as_ref().unwrap().kind,
        mandate_verifier::DenialKind::MissingToken
    );
    assert!(records.iter().all(|r| r.revocation_position == Some(0)));
    // The policy hash covers the mapping: the same verifier without the
    // middleware has another.
    assert_ne!(records[0].policy_hash, s.verifier().policy_hash());
    assert_eq!(records[0].policy_hash, records[1].policy_hash);
    // The export format is the stored lines: records, then checkpoints.
    let export: String = entries
        .iter()
        .map(|(_, e)| serde_json::to_string(e.as_ref().unwrap()).unwrap() + "\n")
        .chain(
            log.checkpoints
                .iter()
                .map(|(_, c)| serde_json::to_string(c.as_ref().unwrap()).unwrap() + "\n"),
        )
        .collect();
    assert_eq!(
        verify_entries(&parse_export(&export), &key)
            .unwrap()
            .records,
        3
    );
}

#[tokio::test]
async fn over_a_socket() {
    let s = Setup::new();
    let app = s.app(s.verifier());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let token = token_to_text(&s.sub_token(&["read:/api/customers/*"], &[]));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |method: http::Method| {
        client
            .request(method, format!("http://{addr}/api/customers/42"))
            .bearer_auth(&token)
            .send()
    };
    let ok = call(http::Method::GET).await.unwrap();
    assert_eq!(ok.status(), 200);
    let ok = ok.text().await.unwrap();
    assert!(ok.contains("\"agent\":\"sub-agent\""), "{ok}");
    let denied = call(http::Method::DELETE).await.unwrap();
    assert_eq!(denied.status(), 403);
    let content_type = denied.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let denied = denied.text().await.unwrap();
    assert!(denied.contains("\"kind\":\"not_allowed\""), "{denied}");
}

/// An audit sink that takes decisions but never makes them durable (a full
/// or failing disk): `durable` answers with the write's error.
struct NeverDurable;

impl mandate_verifier::audit::AuditSink for NeverDurable {
    fn record(&self, _event: mandate_verifier::audit::AuditEvent) {}

    fn durable(&self) -> mandate_verifier::audit::AuditDurable {
        mandate_verifier::audit::AuditDurable::ready(Err(VerifierError::Store {
            path: "audit".into(),
            detail: "No space left on device".into(),
        }))
    }
}

#[tokio::test]
async fn an_allow_whose_record_is_not_durable_is_answered_503_not_served() {
    // Regression (issue 16 part 3): the middleware answered as soon as it
    // had queued the record; a decision whose record the log could not make
    // durable was acted on. Health said ok (the failure is the write's).
    let s = Setup::new();
    let verifier = Verifier::new(s.keys())
        .with_revocations(s.store.clone())
        .with_audit(NeverDurable);
    assert!(verifier.audit_health().is_ok());
    let app = s.app(verifier);
    let token = s.sub_token(&["read:/api/customers/*"], &[]);
    let (status, body) = send(&app, get_with("/api/customers/42", Some(&token))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.to_string().contains("audit log unavailable")
            && body.to_string().contains("No space left on device"),
        "{body}"
    );
    assert_eq!(s.handled.load(Ordering::SeqCst), 0, "not acted on");
}
