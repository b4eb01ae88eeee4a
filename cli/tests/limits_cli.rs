//! Usage limits at the command line and over HTTP (SPEC §18.4): `mandate
//! verify --usage-db` counts in a RocksDB store across invocations and
//! exits 4 with `limit_exceeded` (the issue's scenario: a `send_email
//! 10/1h` token delegated to two sub-agents, one with `5/1h`); without a
//! store it denies `limit_unavailable`. `mandate verifierd --usage-db`
//! keeps its counters across a SIGKILL. The middleware answers 429 with
//! `Retry-After`; the gateway (`usage_db`) too, on a REST route and on an
//! MCP route (JSON-RPC code -32094), and forwards nothing it denied.
//! Tokens are built with the libraries (the CLI's `--limit` is tested with
//! `issue`).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use biscuit_auth::KeyPair;
use common::procs::{free_port, http_client, Proc};
use common::{mandate, Run};
use http_body_util::BodyExt;
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Grant};
use mandate_verifier::http::{MandateLayer, MapError};
use mandate_verifier::usage::UsageStore;
use mandate_verifier::{CacheOptions, RootKeys, Verifier};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

fn mint(issuer: &Issuer, agent: &KeyPair, grant: Grant) -> Vec<u8> {
    issuer
        .mint(&MintRequest {
            principal: "user:alice".into(),
            agent: "orchestrator".into(),
            agent_key: agent.public(),
            grant,
            ttl: Duration::from_secs(3 * 3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap()
        .token
}

fn delegate_to(token: &[u8], holder: &KeyPair, name: &str, grant: Grant) -> Vec<u8> {
    delegate(
        token,
        holder,
        &Delegation {
            agent: name.into(),
            agent_key: KeyPair::new().public(),
            grant,
            ttl: None,
            purpose: None,
        },
    )
    .unwrap()
    .token
}

fn mail_grant(limit: Option<&str>) -> Grant {
    let g = Grant::parse(&["send_email:/api/mail/*"], &[] as &[&str]).unwrap();
    match limit {
        Some(l) => g.with_limit(l).unwrap(),
        None => g,
    }
}

fn root_key(issuer: &Issuer) -> String {
    issuer.keys().public_keys()[0].1.to_string()
}

/// The start of the current hour, as Unix seconds.
fn this_hour() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now / 3600 * 3600
}

fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `mandate verify` of send_email at `at` with the token in `file`.
fn verify(dir: &Path, key: &str, file: &str, at: &str, usage: bool, json: bool) -> Run {
    let mut args = vec![
        "verify",
        "--public-key",
        key,
        "--action",
        "send_email",
        "--resource",
        "/api/mail/outbox",
        "--time",
        at,
    ];
    if usage {
        args.extend(["--usage-db", "usage"]);
    }
    if json {
        args.push("--json");
    }
    args.push(file);
    mandate(dir, &args)
}

#[test]
fn mandate_verify_counts_in_the_usage_db_and_exits_4_when_a_limit_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issuer = Issuer::new(KeyPair::new());
    let key = root_key(&issuer);
    let orchestrator = KeyPair::new();
    let root = mint(&issuer, &orchestrator, mail_grant(Some("send_email 10/1h")));
    let drafter = delegate_to(
        &root,
        &orchestrator,
        "drafter",
        mail_grant(Some("send_email 5/1h")),
    );
    let notifier = delegate_to(&root, &orchestrator, "notifier", mail_grant(None));
    std::fs::write(d.join("drafter.tok"), token_to_text(&drafter)).unwrap();
    std::fs::write(d.join("notifier.tok"), token_to_text(&notifier)).unwrap();
    let hour = this_hour();
    let at = rfc3339(hour + 600);

    // Without a usage store: denied, to fail closed (exit 1).
    let r = verify(d, &key, "drafter.tok", &at, false, true);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["denial"]["kind"], "limit_unavailable");
    assert!(j["denial"]["reason"]
        .as_str()
        .unwrap()
        .contains("keeps no usage counters"));

    for i in 0..5 {
        let r = verify(d, &key, "drafter.tok", &at, true, false);
        assert_eq!(r.code, 0, "drafter send {i}: {}", r.stderr);
    }
    // The drafter's 6th: its own limit, hop 1.
    let r = verify(d, &key, "drafter.tok", &at, true, false);
    assert_eq!(r.code, 4, "{} {}", r.stdout, r.stderr);
    for w in [
        "denied:",
        "hop 1",
        "drafter",
        "send_email 5/1h",
        "5 of 5 used",
    ] {
        assert!(r.stderr.contains(w), "{w:?} not in {}", r.stderr);
    }
    for i in 0..5 {
        let r = verify(d, &key, "notifier.tok", &at, true, false);
        assert_eq!(r.code, 0, "notifier send {i}: {}", r.stderr);
    }
    // The 11th: the root's limit, hop 0, with the decision as JSON.
    let r = verify(d, &key, "notifier.tok", &at, true, true);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["decision"], "deny");
    let denial = &j["denial"];
    assert_eq!(denial["kind"], "limit_exceeded");
    assert_eq!(denial["hop"], 0);
    assert_eq!(denial["agent"], "orchestrator");
    let reason = denial["reason"].as_str().unwrap();
    assert!(reason.contains("send_email 10/1h"), "{reason}");
    assert!(reason.contains("10 of 10 used in the window"), "{reason}");
    assert_eq!(
        denial["limit"],
        json!({
            "limit": "send_email 10/1h",
            "kind": "count",
            "hop": 0,
            "used": 10,
            "max": 10,
            "cost": 1,
            "window_end": rfc3339(hour + 3600),
            "retry_after": 3000,
        })
    );
    // The next hour: room again.
    let r = verify(d, &key, "notifier.tok", &rfc3339(hour + 3600), true, false);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn the_middleware_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(KeyPair::new());
    let (id, key) = issuer.keys().public_keys()[0];
    let agent = KeyPair::new();
    let token = mint(&issuer, &agent, mail_grant(Some("send_email 2/1h")));
    let store = Arc::new(UsageStore::open(dir.path().join("usage")).unwrap());
    let verifier = Verifier::new(RootKeys::new().with(id, key))
        .with_cache(CacheOptions::default())
        .with_usage(store);
    // Requests dated 100 s into the hour (the mapping sets the time).
    let hour = this_hour();
    let at = UNIX_EPOCH + Duration::from_secs(hour + 100);
    let map = move |parts: &http::request::Parts| -> Result<mandate_spec::Request, MapError> {
        Ok(mandate_spec::Request::new("send_email", parts.uri.path()).at(at))
    };
    let app = Router::new()
        .route("/api/mail/{box}", post(|| async { "sent" }))
        .layer(MandateLayer::new(verifier, map));
    let send = |app: Router| {
        let req = http::Request::post("/api/mail/outbox")
            .header("authorization", format!("Bearer {}", token_to_text(&token)))
            .body(Body::empty())
            .unwrap();
        async move { app.oneshot(req).await.unwrap() }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..2 {
            assert_eq!(send(app.clone()).await.status(), 200);
        }
        let resp = send(app.clone()).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "3500");
        assert!(
            resp.headers().get("www-authenticate").is_none(),
            "the token is fine: no challenge"
        );
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["denial"]["kind"], "limit_exceeded");
        assert_eq!(body["denial"]["limit"]["retry_after"], 3500);
        assert!(body["reason"]
            .as_str()
            .unwrap()
            .contains("usage limit \"send_email 2/1h\" (count) exceeded: 2 of 2 used"));
    });
}

/// An upstream counting what reaches it.
fn upstream() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let (a, b) = (hits.clone(), hits.clone());
    let app = Router::new()
        .route(
            "/crm/customers/{id}",
            get(move || {
                a.fetch_add(1, Ordering::SeqCst);
                async { "customer" }
            }),
        )
        .route(
            "/mcp",
            post(move |body: String| {
                b.fetch_add(1, Ordering::SeqCst);
                let msg: Value = serde_json::from_str(&body).unwrap();
                async move {
                    axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"ok": true}}))
                }
            }),
        );
    let port = free_port();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                axum::serve(listener, app).await.unwrap();
            });
    });
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    (format!("http://127.0.0.1:{port}"), hits)
}

#[test]
fn the_gateway_answers_429_with_retry_after_and_forwards_nothing_denied() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issuer = Issuer::new(KeyPair::new());
    let agent = KeyPair::new();
    // A 366-day window: no window ends while the test runs (the gateway
    // dates requests by its clock).
    let crm = mint(
        &issuer,
        &agent,
        Grant::parse(&["read:/crm/customers/*"], &[] as &[&str])
            .unwrap()
            .with_limit("read 2/366d")
            .unwrap(),
    );
    let mcp = mint(
        &issuer,
        &agent,
        Grant::parse(&["send_email:/mcp"], &[] as &[&str])
            .unwrap()
            .with_limit("send_email 1/366d")
            .unwrap(),
    );
    let (upstream, hits) = upstream();
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            r#"listen = "127.0.0.1:0"
public_key = "{key}"
usage_db = "usage"

[[routes]]
prefix = "/crm/"
upstream = "{upstream}"

[[routes]]
prefix = "/mcp"
upstream = "{upstream}"
mode = "mcp"
"#,
            key = root_key(&issuer)
        ),
    )
    .unwrap();
    let gateway = Proc::start([
        "gateway",
        "--config",
        d.join("gateway.toml").to_str().unwrap(),
    ]);
    let call = |method: &str, path: &str, token: &[u8], body: &str| {
        http_client()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("http://{}{path}", gateway.addr),
            )
            .header("content-type", "application/json")
            .bearer_auth(token_to_text(token))
            .body(body.to_string())
            .send()
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(call("GET", "/crm/customers/42", &crm, "").status(), 200);
    }
    let resp = call("GET", "/crm/customers/42", &crm, "");
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert_eq!(body["denial"]["kind"], "limit_exceeded");
    assert_eq!(body["denial"]["limit"]["limit"], "read 2/366d");
    assert_eq!(body["denial"]["limit"]["retry_after"], retry);
    assert!((1..=366 * 86_400).contains(&retry), "{retry}");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "the denied call never left");

    let tool = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "send_email", "arguments": {"to": "bob"}}})
    .to_string();
    assert_eq!(call("POST", "/mcp", &mcp, &tool).status(), 200);
    let resp = call("POST", "/mcp", &mcp, &tool);
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32094);
    assert_eq!(body["error"]["data"]["denial"]["kind"], "limit_exceeded");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("send_email 1/366d"));
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[test]
fn verifierd_counts_in_its_usage_db_and_the_counters_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issuer = Issuer::new(KeyPair::new());
    let token = token_to_text(&mint(
        &issuer,
        &KeyPair::new(),
        Grant::parse(&["send_email:/api/mail/*"], &[] as &[&str])
            .unwrap()
            .with_limit("send_email 2/366d")
            .unwrap(),
    ));
    let key = root_key(&issuer);
    let data = d.join("data");
    let usage = d.join("usage");
    let mut verifierd = Proc::start([
        "verifierd",
        "--data-dir",
        data.to_str().unwrap(),
        "--public-key",
        &key,
        "--listen",
        "127.0.0.1:0",
        "--usage-db",
        usage.to_str().unwrap(),
    ]);
    let send = |v: &Proc| v.authorize_as(&token, "send_email", "/api/mail/outbox");
    assert_eq!(send(&verifierd).0, 200);
    // Killed (SIGKILL) after one charge: the write-ahead log kept it.
    verifierd.restart();
    assert_eq!(send(&verifierd).0, 200);
    let (status, body) = send(&verifierd);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["denial"]["kind"], "limit_exceeded");
    assert_eq!(body["denial"]["limit"]["used"], 2);
    assert!(body["denial"]["reason"]
        .as_str()
        .unwrap()
        .contains("send_email 2/366d"));
}
