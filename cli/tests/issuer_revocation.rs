//! `POST /v1/revocations`: each selector, followed by the embedded verifier
//! denying; request errors; a revoked admin token; a pluggable sink.
#![allow(clippy::unwrap_used)]

#[path = "issuer_common/mod.rs"]
mod common;

use axum::http::{Method, StatusCode};
use biscuit_auth::KeyPair;
use common::{authorize, mint_body, Svc};
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::SigningKeys;
use mandate_server::{Registry, Service, ServiceError};
use mandate_spec::Grant;
use mandate_verifier::revocation::{Revocation, RevocationStore, Target};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

fn token_of(minted: &Value) -> &str {
    minted["token"].as_str().unwrap()
}

/// A child of `parent` (held by `holder`) delegated to a fresh agent.
fn child_of(parent: &str, holder: &KeyPair, agent: &str) -> (String, String) {
    let bytes = mandate_spec::token_from_text(parent).unwrap();
    let child = delegate(
        &bytes,
        holder,
        &Delegation {
            agent: agent.into(),
            agent_key: KeyPair::new().public(),
            grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
            ttl: None,
            purpose: None,
        },
    )
    .unwrap();
    (child.to_base64(), child.revocation_id)
}

#[tokio::test]
async fn by_revocation_id_kills_that_hop_and_below_not_its_parent() {
    let svc = Svc::new();
    let support = KeyPair::new();
    let minted = svc.mint("user:alice", "support", &support).await;
    let (child, child_id) = child_of(token_of(&minted), &support, "sub");
    assert_eq!(svc.read_42(&child).await.0, StatusCode::OK);

    let (status, answer) = svc
        .revoke(json!({ "revocation_id": child_id, "reason": "task finished", "by": "alice" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let entry = &answer["revoked"][0];
    assert_eq!(
        entry["target"],
        json!({ "kind": "block", "value": child_id })
    );
    assert_eq!(entry["reason"], "task finished");
    assert_eq!(entry["by"], "alice");

    let (status, decision) = svc.read_42(&child).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(decision["denial"]["kind"], "revoked");
    assert_eq!(decision["denial"]["hop"], 1);
    assert!(decision["denial"]["reason"]
        .as_str()
        .unwrap()
        .contains("\"task finished\""));
    assert_eq!(svc.read_42(token_of(&minted)).await.0, StatusCode::OK);

    // The root's id: the registry knows it, so the entry carries the
    // token's expiry (prunable) and says what it was.
    let root_id = minted["revocation_ids"][0].clone();
    let (status, answer) = svc
        .revoke(json!({ "revocation_id": root_id, "reason": "compromised" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let entry = &answer["revoked"][0];
    assert_eq!(entry["expires_at"], minted["expires_at"]);
    assert!(entry["note"]
        .as_str()
        .unwrap()
        .contains("root block of token"));
    assert_eq!(entry["by"], "ops:admin via admin-cli");
    assert_eq!(
        svc.read_42(token_of(&minted)).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn by_token_id_kills_the_family() {
    let svc = Svc::new();
    let support = KeyPair::new();
    let minted = svc.mint("user:alice", "support", &support).await;
    let (child, _) = child_of(token_of(&minted), &support, "sub");
    let (status, answer) = svc
        .revoke(json!({ "token_id": minted["token_id"], "reason": "done" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["revoked"][0]["target"]["kind"], "token");
    assert!(answer["revoked"][0]["note"]
        .as_str()
        .unwrap()
        .contains("\"user:alice\""));
    for token in [token_of(&minted), child.as_str()] {
        let (status, decision) = svc.read_42(token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(decision["denial"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("token family"));
    }
}

#[tokio::test]
async fn by_agent_key_kills_every_chain_through_that_agent() {
    let svc = Svc::new();
    let support = KeyPair::new();
    let other = KeyPair::new();
    let a = svc.mint("user:alice", "support", &support).await;
    let b = svc.mint("user:bob", "support", &support).await;
    let c = svc.mint("user:carol", "other", &other).await;
    let (status, answer) = svc
        .revoke(json!({ "agent_key": support.public().to_string(), "reason": "key leaked" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["revoked"][0]["target"]["kind"], "agent");
    for t in [&a, &b] {
        let (status, decision) = svc.read_42(token_of(t)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(decision["denial"]["reason"]
            .as_str()
            .unwrap()
            .contains("agent \"support\""));
    }
    assert_eq!(svc.read_42(token_of(&c)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn by_principal_kills_every_live_token_of_that_principal() {
    let svc = Svc::new();
    let key = KeyPair::new();
    let bob1 = svc.mint("user:bob", "a", &key).await;
    let bob2 = svc.mint("user:bob", "b", &key).await;
    let bobby = svc.mint("user:bobby", "a", &key).await;
    let (status, answer) = svc
        .revoke(json!({ "principal": "user:bob", "reason": "left the company" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut revoked: Vec<_> = answer["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"]["value"].clone())
        .collect();
    revoked.sort_by_key(|v| v.to_string());
    let mut expected = vec![bob1["token_id"].clone(), bob2["token_id"].clone()];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(revoked, expected);
    for t in [&bob1, &bob2] {
        assert_eq!(svc.read_42(token_of(t)).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(svc.read_42(token_of(&bobby)).await.0, StatusCode::OK);

    let (status, answer) = svc
        .revoke(json!({ "principal": "user:nobody", "reason": "x" }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains("no live token"));
}

#[tokio::test]
async fn revocation_requests_need_one_selector_and_a_reason() {
    let svc = Svc::new();
    let key = KeyPair::new().public().to_string();
    for (body, expect) in [
        (json!({ "reason": "x" }), "exactly one of"),
        (
            json!({ "principal": "user:a", "agent_key": key, "reason": "x" }),
            "exactly one of",
        ),
        (json!({ "principal": "user:a" }), "missing field `reason`"),
        (json!({ "principal": "user:a", "reason": "  " }), "reason"),
        (
            json!({ "revocation_id": "abc", "reason": "x" }),
            "revocation_id",
        ),
        (
            json!({ "revocation_id": "ab".repeat(32), "reason": "x" }),
            "64 bytes",
        ),
        (json!({ "token_id": "not-a-uuid", "reason": "x" }), "UUID"),
        (
            json!({ "agent_key": "ed25519/00", "reason": "x" }),
            "agent_key",
        ),
        (
            json!({ "principal": "user:a", "reason": "x", "hop": 1 }),
            "unknown field `hop`",
        ),
    ] {
        let (status, answer) = svc.revoke(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(expect), "expected {expect:?} in {msg:?}");
    }
    // Without an admin token, nothing is revealed about the registry.
    let (status, _) = svc
        .call(
            Method::POST,
            "/v1/revocations",
            None,
            Some(json!({ "principal": "user:a", "reason": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_revoked_admin_token_is_refused_with_the_reason() {
    let svc = Svc::new();
    let admin_bytes = mandate_spec::token_from_text(&svc.admin).unwrap();
    let admin_chain = mandate_attenuate::read_chain(&admin_bytes).unwrap();
    let (status, _) = svc
        .revoke(json!({ "token_id": admin_chain.token_id, "reason": "rotated out" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = svc
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&svc.admin),
            Some(mint_body("user:alice", "a", &KeyPair::new())),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["denial"]["kind"], "revoked");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("\"rotated out\""));
}

#[tokio::test]
async fn an_internal_failure_is_500_without_its_details() {
    let env = common::Env::new();
    let root = KeyPair::new();
    let data = env.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let store = Arc::new(RevocationStore::open(data.join("revocations")).unwrap());
    let registry = Registry::open(data.join("registry")).unwrap();
    let broken = |_: &[Revocation]| -> Result<(), ServiceError> {
        Err(ServiceError::Registry {
            path: "/secret/path".into(),
            detail: "disk on fire".into(),
        })
    };
    let router = Service::new(SigningKeys::new(0, common::copy(&root)), store, registry)
        .with_sink(broken)
        .into_router();
    let admin = common::admin_token(&root, 0, &["revoke:/v1/revocations"], &[]);
    let (status, answer) = common::call(
        &router,
        Method::POST,
        "/v1/revocations",
        Some(&admin),
        Some(json!({ "agent_key": KeyPair::new().public().to_string(), "reason": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer,
        json!({ "error": "internal error (logged by the service)" })
    );
}

#[tokio::test]
async fn revocations_go_through_the_configured_sink_and_its_failure_is_503() {
    let env = common::Env::new();
    let root = KeyPair::new();
    let data = env.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let store = Arc::new(RevocationStore::open(data.join("revocations")).unwrap());
    let registry = Registry::open(data.join("registry")).unwrap();
    let seen: Arc<Mutex<Vec<Revocation>>> = Arc::default();
    let fail = Arc::new(Mutex::new(false));
    let sink = {
        let (store, seen, fail) = (store.clone(), seen.clone(), fail.clone());
        move |entries: &[Revocation]| -> Result<(), ServiceError> {
            if *fail.lock().unwrap() {
                return Err(ServiceError::Sink("feed unreachable".into()));
            }
            seen.lock().unwrap().extend_from_slice(entries);
            store.revoke(entries)?;
            Ok(())
        }
    };
    let router = Service::new(SigningKeys::new(0, common::copy(&root)), store, registry)
        .with_sink(sink)
        .into_router();
    let admin = common::admin_token(&root, 0, &["mint,revoke:/v1/*"], &[]);
    let agent = KeyPair::new();
    let (_, minted) = common::call(
        &router,
        Method::POST,
        "/v1/tokens",
        Some(&admin),
        Some(mint_body("user:alice", "a", &agent)),
    )
    .await;
    let token = token_of(&minted).to_string();

    *fail.lock().unwrap() = true;
    let (status, answer) = common::call(
        &router,
        Method::POST,
        "/v1/revocations",
        Some(&admin),
        Some(json!({ "token_id": minted["token_id"], "reason": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !answer["error"].as_str().unwrap().contains("feed"),
        "internals hidden"
    );
    let (status, _) = authorize(&router, &token, "read", "/api/customers/42").await;
    assert_eq!(status, StatusCode::OK, "not acknowledged, not revoked");

    *fail.lock().unwrap() = false;
    let (status, _) = common::call(
        &router,
        Method::POST,
        "/v1/revocations",
        Some(&admin),
        Some(json!({ "token_id": minted["token_id"], "reason": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].target,
        Target::Token(minted["token_id"].as_str().unwrap().into())
    );
    let (status, _) = authorize(&router, &token, "read", "/api/customers/42").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
