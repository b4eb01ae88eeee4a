//! The issuer service's endpoints through its router: minting, the admin
//! token's 401/403 answers, JSON and size errors, keys, health, metrics, and
//! one round trip over a real socket.
#![allow(clippy::unwrap_used)]

#[path = "issuer_common/mod.rs"]
mod common;

use axum::http::{header, Method, StatusCode};
use biscuit_auth::KeyPair;
use common::{admin_token, call_raw, mint_body, Svc};
use mandate_server::MAX_BODY_BYTES;
use serde_json::{json, Value};

#[tokio::test]
async fn mint_returns_a_token_the_embedded_verifier_allows() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let minted = svc.mint("user:alice", "support-agent", &agent).await;
    let token = minted["token"].as_str().unwrap();
    assert_eq!(minted["root_key_id"], 0);
    assert_eq!(minted["revocation_ids"].as_array().unwrap().len(), 1);
    assert_eq!(minted["token_id"].as_str().unwrap().len(), 36);
    let expires = minted["expires_at"].as_str().unwrap();
    assert!(
        expires.ends_with('Z') && !expires.contains('.'),
        "whole seconds: {expires}"
    );

    let (status, decision) = svc.read_42(token).await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["decision"], "allow");
    assert_eq!(decision["chain"]["principal"], "user:alice");
    assert_eq!(decision["chain"]["hops"][0]["agent"], "support-agent");
    assert_eq!(decision["chain"]["max_depth"], 2);
    assert_eq!(
        decision["chain"]["hops"][0]["purpose"],
        "answer support tickets"
    );

    // The grant is the one asked for: delete is not in it.
    let (status, decision) =
        common::authorize(&svc.router, token, "delete", "/api/customers/42").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(decision["denial"]["kind"], "not_allowed");
    assert!(decision["denial"]["reason"]
        .as_str()
        .unwrap()
        .contains("action \"delete\" is not allowed"));
}

#[tokio::test]
async fn mint_refuses_bad_json_and_invalid_fields_with_400() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let (status, _, body) = call_raw(
        &svc.router,
        Method::POST,
        "/v1/tokens",
        Some(&svc.admin),
        Some(b"{\"principal\": "),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");

    let good = mint_body("user:alice", "a", &agent);
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("principal");
                b
            },
            "missing field `principal`",
        ),
        (
            {
                let mut b = good.clone();
                b["private_key"] = json!("x");
                b
            },
            "unknown field `private_key`",
        ),
        (
            {
                let mut b = good.clone();
                b["allow"] = json!(["read"]);
                b
            },
            "invalid grant",
        ),
        (
            {
                let mut b = good.clone();
                b["allow"] = json!([]);
                b
            },
            "at least one ACTIONS:PATTERN",
        ),
        (
            {
                let mut b = good.clone();
                b["where"] = json!(["rows<=lots"]);
                b
            },
            "invalid grant",
        ),
        (
            {
                let mut b = good.clone();
                b["agent_key"] = json!("ed25519/abc");
                b
            },
            "agent_key",
        ),
        (
            {
                let mut b = good.clone();
                b["ttl"] = json!("forever");
                b
            },
            "ttl",
        ),
        (
            {
                let mut b = good.clone();
                b["ttl"] = json!("3650d");
                b
            },
            "at most one year",
        ),
        (
            {
                let mut b = good.clone();
                b["principal"] = json!("user\"alice");
                b
            },
            "principal",
        ),
    ];
    for (body, expect) in cases {
        let (status, answer) = svc
            .call(Method::POST, "/v1/tokens", Some(&svc.admin), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expect}: {answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(expect), "expected {expect:?} in {msg:?}");
    }

    // Not declared as JSON.
    let req = axum::http::Request::post("/v1/tokens")
        .header(header::AUTHORIZATION, format!("Bearer {}", svc.admin))
        .body(axum::body::Body::from(good.to_string()))
        .unwrap();
    let res = tower::ServiceExt::oneshot(svc.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn every_post_endpoint_refuses_malformed_json_with_400() {
    let svc = Svc::new();
    for uri in ["/v1/tokens", "/v1/revocations", "/v1/authorize"] {
        for body in [&b"{"[..], b"[1, 2]", b"\"text\"", b"{\"reason\": 1}", b""] {
            let (status, _, answer) = call_raw(
                &svc.router,
                Method::POST,
                uri,
                Some(&svc.admin),
                Some(body),
                true,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{uri} {}",
                String::from_utf8_lossy(body)
            );
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            assert!(answer["error"].is_string(), "{answer}");
        }
    }
}

#[tokio::test]
async fn missing_or_unreadable_admin_token_is_401() {
    let svc = Svc::new();
    let body = mint_body("user:alice", "a", &KeyPair::new());
    let (status, headers, bytes) = call_raw(
        &svc.router,
        Method::POST,
        "/v1/tokens",
        None,
        Some(body.to_string().as_bytes()),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("missing admin token"));

    // Not base64, not a token, or signed by a root key the service does not have.
    let foreign = admin_token(&KeyPair::new(), 0, &["mint,revoke:/v1/*"], &[]);
    let unknown_id = admin_token(&svc.root, 7, &["mint,revoke:/v1/*"], &[]);
    for (token, expect) in [
        ("%%%", "unreadable"),
        ("aGVsbG8=", "not a valid token"),
        (foreign.as_str(), "signature does not verify"),
        (unknown_id.as_str(), "root key id"),
    ] {
        let (status, answer) = svc
            .call(Method::POST, "/v1/tokens", Some(token), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(expect), "expected {expect:?} in {msg:?}");
    }

    // Another scheme.
    let req = axum::http::Request::post("/v1/revocations")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let res = tower::ServiceExt::oneshot(svc.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_token_without_the_action_is_403_with_the_verifiers_reason() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let revoke_only = admin_token(&svc.root, 0, &["revoke:/v1/revocations"], &[]);
    let (status, answer) = svc
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&revoke_only),
            Some(mint_body("user:alice", "a", &agent)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let msg = answer["error"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "admin token does not allow mint on /v1/tokens for alternative 1 of 1 \
             (`list,read:/api/customers/* where rows<=100`), action \"list\": "
        ),
        "{msg}"
    );
    assert!(msg.contains("action \"mint\" is not allowed"), "{msg}");
    assert_eq!(answer["denial"]["kind"], "not_allowed");
    assert_eq!(answer["denial"]["agent"], "admin-cli");

    // And the other way round.
    let mint_only = admin_token(&svc.root, 0, &["mint:/v1/tokens"], &[]);
    let (status, answer) = svc
        .call(
            Method::POST,
            "/v1/revocations",
            Some(&mint_only),
            Some(json!({ "principal": "user:alice", "reason": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("action \"revoke\" is not allowed"));
}

#[tokio::test]
async fn admin_token_constraints_narrow_what_it_may_mint() {
    let svc = Svc::new();
    let agent = KeyPair::new();
    let support_desk = admin_token(
        &svc.root,
        0,
        &["mint:/v1/tokens"],
        &["principal starts-with team:support:", "ttl_seconds<=3600"],
    );
    let (status, answer) = svc
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&support_desk),
            Some(mint_body("team:support:bob", "a", &agent)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let (status, answer) = svc
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&support_desk),
            Some(mint_body("user:alice", "a", &agent)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        answer["error"].as_str().unwrap().contains("principal"),
        "{answer}"
    );

    let mut long = mint_body("team:support:bob", "a", &agent);
    long["ttl"] = json!("2h");
    let (status, answer) = svc
        .call(Method::POST, "/v1/tokens", Some(&support_desk), Some(long))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("ttl_seconds=7200"),
        "{answer}"
    );
}

#[tokio::test]
async fn oversized_bodies_are_413_json() {
    let svc = Svc::new();
    let big = format!("{{\"principal\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES + 1));
    // With a Content-Length (refused before the body is read), and without
    // one (refused while reading it).
    for declared in [true, false] {
        for uri in ["/v1/tokens", "/v1/revocations", "/v1/authorize"] {
            let (status, headers, body) = call_raw(
                &svc.router,
                Method::POST,
                uri,
                Some(&svc.admin),
                Some(big.as_bytes()),
                declared,
            )
            .await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri} {declared}");
            assert!(headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"));
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"], "request body larger than 65536 bytes");
        }
    }
}

#[tokio::test]
async fn authorize_answers_decisions_and_refuses_bad_requests() {
    let svc = Svc::new();
    let (status, decision) = common::authorize(&svc.router, "garbage", "read", "/x").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(decision["denial"]["kind"], "malformed_token");

    let minted = svc.mint("user:alice", "a", &KeyPair::new()).await;
    let token = minted["token"].as_str().unwrap();
    let (status, decision) =
        common::authorize(&svc.router, token, "read", "/api/customers/../admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(decision["denial"]["kind"], "invalid_request");

    // A string where the grant bounds an integer: denied, not an error.
    let (status, decision) = svc
        .call(
            Method::POST,
            "/v1/authorize",
            None,
            Some(
                json!({ "token": token, "action": "read", "resource": "/api/customers/1",
                         "params": { "rows": "ten" } }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{decision}");

    // The caller cannot choose the request time.
    let (status, answer) = svc
        .call(
            Method::POST,
            "/v1/authorize",
            None,
            Some(
                json!({ "token": token, "action": "read", "resource": "/api/customers/1",
                         "time": 0 }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("unknown field `time`"));
}

#[tokio::test]
async fn keys_health_and_unknown_routes() {
    let svc = Svc::new();
    let (status, keys) = svc.call(Method::GET, "/v1/keys", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys,
        json!([{ "id": 0, "public_key": svc.root.public().to_string(), "current": true }])
    );

    let (status, health) = svc.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (status, health),
        (StatusCode::OK, json!({ "status": "ok" }))
    );

    let (status, answer) = svc.call(Method::GET, "/v1/nothing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "no such route");

    let (status, headers, body) =
        call_raw(&svc.router, Method::GET, "/v1/tokens", None, None, false).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "method not allowed on this route");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
}

/// The process's one metrics recorder (the facade's recorder is global:
/// the other tests of this binary count in it too, so counts are compared
/// as "at least"; `cli/tests/servers.rs` checks exact moves in a process
/// of its own).
fn recorder() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.001, 1.0])
            .unwrap()
            .install_recorder()
            .unwrap();
        mandate_server::describe_metrics();
        handle
    })
}

/// The sum of the samples of `name` whose labels include each of `labels`
/// (`key="value"`).
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_mints_revocations_and_decisions() {
    let handle = recorder().clone();
    let env = common::Env::new();
    let root = KeyPair::new();
    let config = env.config(&[(0, &root)], 0);
    let router = mandate_server::Service::open(&config)
        .unwrap()
        .with_metrics(std::sync::Arc::new(move || handle.render()))
        .into_router();
    let admin = admin_token(&root, 0, &["mint,revoke:/v1/*"], &[]);
    let svc = Svc {
        env,
        root,
        router,
        admin,
    };
    let scrape = || async {
        let (status, headers, body) =
            call_raw(&svc.router, Method::GET, "/metrics", None, None, false).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        String::from_utf8(body).unwrap()
    };
    let before = scrape().await;
    let minted = svc.mint("user:alice", "a", &KeyPair::new()).await;
    let token = minted["token"].as_str().unwrap();
    svc.read_42(token).await;
    common::authorize(&svc.router, token, "delete", "/api/customers/42").await;
    let (status, _) = svc
        .revoke(json!({ "token_id": minted["token_id"], "reason": "done" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    svc.read_42(token).await;
    let after = scrape().await;

    let authorize = r#"source="authorize""#;
    for (name, labels, at_least) in [
        ("mandate_tokens_minted_total", &[][..], 1.0),
        ("mandate_revocations_total", &[r#"target="token""#][..], 1.0),
        (
            "mandate_issuer_decisions_total",
            &[authorize, r#"outcome="allow""#][..],
            1.0,
        ),
        (
            "mandate_issuer_decisions_total",
            &[authorize, r#"kind="not_allowed""#][..],
            1.0,
        ),
        (
            "mandate_issuer_decisions_total",
            &[authorize, r#"kind="revoked""#][..],
            1.0,
        ),
        // One per minted alternative × action (list, read), one revocation.
        (
            "mandate_issuer_decisions_total",
            &[r#"source="admin""#, r#"outcome="allow""#][..],
            3.0,
        ),
        (
            "mandate_http_responses_total",
            &[r#"status="201""#][..],
            1.0,
        ),
        ("mandate_mint_duration_seconds_count", &[][..], 1.0),
        ("mandate_authorize_duration_seconds_count", &[][..], 3.0),
        // The embedded verifier's own, from the library.
        ("mandate_decisions_total", &[r#"outcome="allow""#][..], 4.0),
        ("mandate_decision_duration_seconds_count", &[][..], 6.0),
    ] {
        let moved = sample(&after, name, labels) - sample(&before, name, labels);
        assert!(
            moved >= at_least,
            "{name}{labels:?} moved by {moved}, expected at least {at_least}, in\n{after}"
        );
    }
    for family in ["mandate_tokens_minted_total", "mandate_revocations_total"] {
        assert!(
            after.contains(&format!("# TYPE {family} counter")),
            "{after}"
        );
    }
}

#[tokio::test]
async fn without_a_recorder_metrics_is_404() {
    let svc = Svc::new();
    let (status, body) = svc.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// What crosses a socket: HTTP/1.1 framing, the listener, graceful shutdown.
#[tokio::test]
async fn serves_over_a_real_socket() {
    let env = common::Env::new();
    let root = KeyPair::new();
    let service = mandate_server::Service::open(&env.config(&[(0, &root)], 0)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service.serve(listener, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    async fn answer(r: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
    let post = |path: &str, auth: Option<&str>, body: &Value| {
        let r = client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        answer(match auth {
            Some(t) => r.bearer_auth(t),
            None => r,
        })
    };

    let admin = admin_token(&root, 0, &["mint,revoke:/v1/*"], &[]);
    let agent = KeyPair::new();
    let (status, minted) = post(
        "/v1/tokens",
        Some(&admin),
        &mint_body("user:alice", "support", &agent),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let check = json!({ "token": minted["token"], "action": "read",
                        "resource": "/api/customers/42", "params": { "rows": 1 } });
    let (status, decision) = post("/v1/authorize", None, &check).await;
    assert_eq!((status, &decision["decision"]), (200, &json!("allow")));

    let (status, _) = post(
        "/v1/revocations",
        Some(&admin),
        &json!({ "token_id": minted["token_id"], "reason": "socket test" }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, decision) = post("/v1/authorize", None, &check).await;
    assert_eq!(
        (status, &decision["denial"]["kind"]),
        (403, &json!("revoked"))
    );

    let (status, health) = answer(client.get(format!("http://{addr}/healthz"))).await;
    assert_eq!((status, health), (200, json!({ "status": "ok" })));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
