//! A request carries each parameter name at most once (SPEC §5.1): every
//! HTTP entry point that reads parameters as a JSON object refuses one that
//! gives a name twice, naming it, rather than deciding on the last value (a
//! verifier supplying both facts would allow: checks are existential). The
//! CLI's `--param` is tested in cli.rs, the gateway in gateway.rs.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "issuer_common/mod.rs"]
mod issuer_common;

use axum::http::{Method, StatusCode};
use biscuit_auth::KeyPair;
use common::procs::{http, Proc};
use common::Scenario;
use issuer_common::{call_raw, Svc};
use serde_json::Value;

/// `{"rows":1,"rows":1000}` on `POST /v1/authorize` of `mandate verifierd`:
/// 400 naming the parameter, not a decision on rows=1000.
#[test]
fn verifierd_refuses_a_parameter_given_twice() {
    let s = Scenario::new();
    let v = Proc::start([
        "verifierd",
        "--data-dir",
        s.path("v").to_str().unwrap(),
        "--public-key",
        &s.issuer_pub,
        "--listen",
        "127.0.0.1:0",
    ]);
    let token = s.read("sub.tok");
    let body = |params: &str| {
        format!(
            r#"{{"token":"{}","action":"read","resource":"/api/customers/42","params":{params}}}"#,
            token.trim()
        )
    };
    for dup in [r#"{"rows":1,"rows":1000}"#, r#"{"rows":1000,"rows":1}"#] {
        let (status, answer) = http(&v.addr, "POST", "/v1/authorize", &body(dup), None);
        assert_eq!(status, 400, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("parameter rows given twice"), "{answer}");
    }
    let (status, answer) = http(
        &v.addr,
        "POST",
        "/v1/authorize",
        &body(r#"{"rows":1}"#),
        None,
    );
    assert_eq!(status, 200, "{answer}");
}

async fn post_raw(svc: &Svc, uri: &str, auth: Option<&str>, body: &str) -> (StatusCode, Value) {
    let (status, _, bytes) = call_raw(
        &svc.router,
        Method::POST,
        uri,
        auth,
        Some(body.as_bytes()),
        true,
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The issuer service's `POST /v1/authorize` and `POST /v1/approvals` read
/// the same parameter object: a name given twice is a 400 naming it.
#[tokio::test]
async fn issuer_service_refuses_a_parameter_given_twice() {
    let svc = Svc::new();
    let minted = svc.mint("user:alice", "a", &KeyPair::new()).await;
    let token = minted["token"].as_str().unwrap();
    let authorize = |params: &str| {
        format!(
            r#"{{"token":"{token}","action":"read","resource":"/api/customers/42","params":{params}}}"#
        )
    };
    let (status, answer) = post_raw(
        &svc,
        "/v1/authorize",
        None,
        &authorize(r#"{"rows":1,"rows":1000}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer.to_string().contains("parameter rows given twice"),
        "{answer}"
    );
    let (status, answer) = post_raw(&svc, "/v1/authorize", None, &authorize(r#"{"rows":1}"#)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let (status, answer) = post_raw(
        &svc,
        "/v1/approvals",
        Some(token),
        r#"{"action":"read","resource":"/api/customers/42","params":{"rows":1,"rows":1000}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer.to_string().contains("parameter rows given twice"),
        "{answer}"
    );
}
