//! Root key rotation across restarts (`GET /v1/keys`, which key signs, which
//! still verify), durability of revocations and the registry across a
//! restart, and bad configurations refused at start.
#![allow(clippy::unwrap_used)]

#[path = "issuer_common/mod.rs"]
mod common;

use axum::http::{Method, StatusCode};
use biscuit_auth::KeyPair;
use common::{admin_token, authorize, call, mint_body, Env};
use mandate_server::{RootKeyFile, Service, ServiceConfig};
use serde_json::{json, Value};

async fn mint(router: &axum::Router, admin: &str, principal: &str) -> Value {
    let (status, minted) = call(
        router,
        Method::POST,
        "/v1/tokens",
        Some(admin),
        Some(mint_body(principal, "a", &KeyPair::new())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    minted
}

async fn read(router: &axum::Router, minted: &Value) -> (StatusCode, Value) {
    authorize(
        router,
        minted["token"].as_str().unwrap(),
        "read",
        "/api/customers/42",
    )
    .await
}

#[tokio::test]
async fn rotation_new_key_signs_old_key_verifies_until_retired() {
    let env = Env::new();
    let (k0, k1) = (KeyPair::new(), KeyPair::new());
    let admin0 = admin_token(&k0, 0, &["mint,revoke:/v1/*"], &[]);

    // Day 1: key 0 alone.
    let router = env.router(&[(0, &k0)], 0);
    let (_, keys) = call(&router, Method::GET, "/v1/keys", None, None).await;
    assert_eq!(
        keys,
        json!([{ "id": 0, "public_key": k0.public().to_string(), "current": true }])
    );
    let old = mint(&router, &admin0, "user:alice").await;
    assert_eq!(old["root_key_id"], 0);
    let revoked = mint(&router, &admin0, "user:bob").await;
    let (status, _) = call(
        &router,
        Method::POST,
        "/v1/revocations",
        Some(&admin0),
        Some(json!({ "token_id": revoked["token_id"], "reason": "before the restart" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    drop(router);

    // Rotation: key 1 added and made current; key 0 still verifies.
    let router = env.router(&[(0, &k0), (1, &k1)], 1);
    let (_, keys) = call(&router, Method::GET, "/v1/keys", None, None).await;
    assert_eq!(
        keys,
        json!([
            { "id": 0, "public_key": k0.public().to_string(), "current": false },
            { "id": 1, "public_key": k1.public().to_string(), "current": true },
        ])
    );
    let new = mint(&router, &admin0, "user:alice").await;
    assert_eq!(new["root_key_id"], 1);
    assert_eq!(read(&router, &old).await.0, StatusCode::OK);
    assert_eq!(read(&router, &new).await.0, StatusCode::OK);
    // The revocation and the registry survived the restart.
    let (status, decision) = read(&router, &revoked).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(decision["denial"]["reason"]
        .as_str()
        .unwrap()
        .contains("before the restart"));
    let (status, answer) = call(
        &router,
        Method::POST,
        "/v1/revocations",
        Some(&admin0),
        Some(json!({ "principal": "user:alice", "reason": "both keys" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["revoked"].as_array().unwrap().len(), 2);
    drop(router);

    // Key 0 retired: what it signed no longer verifies, including admin0.
    let router = env.router(&[(1, &k1)], 1);
    let (_, keys) = call(&router, Method::GET, "/v1/keys", None, None).await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let (status, decision) = read(&router, &old).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(decision["denial"]["kind"], "unknown_root_key");
    let (status, answer) = call(
        &router,
        Method::POST,
        "/v1/tokens",
        Some(&admin0),
        Some(mint_body("user:carol", "a", &KeyPair::new())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let admin1 = admin_token(&k1, 1, &["mint:/v1/tokens"], &[]);
    assert_eq!(mint(&router, &admin1, "user:carol").await["root_key_id"], 1);
}

fn open_err(config: &ServiceConfig) -> String {
    let e = Service::open(config).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn bad_configurations_are_refused_with_one_line() {
    let env = Env::new();
    let k = KeyPair::new();
    let good = env.config(&[(0, &k)], 0);

    let mut c = good.clone();
    c.data_dir = None;
    assert!(open_err(&c).contains("no data directory"));

    let mut c = good.clone();
    c.root_keys.clear();
    assert!(open_err(&c).contains("no root key"));

    let mut c = good.clone();
    c.current_key_id = Some(9);
    assert!(open_err(&c).contains("current_key_id 9 is not among the root keys (0)"));

    let mut c = good.clone();
    c.root_keys.push(c.root_keys[0].clone());
    assert!(open_err(&c).contains("root key id 0 is given twice"));

    let mut c = good.clone();
    c.root_keys[0].file = env.dir.path().join("missing.key");
    let e = open_err(&c);
    assert!(e.starts_with("root key 0 ("), "{e}");
    assert!(e.contains("missing.key"), "{e}");

    let garbage = env.dir.path().join("garbage.key");
    std::fs::write(&garbage, "ed25519/not-a-private-key").unwrap();
    let mut c = good.clone();
    c.root_keys = vec![RootKeyFile {
        id: 0,
        file: garbage,
    }];
    let e = open_err(&c);
    assert!(e.contains("ed25519-private/"), "{e}");

    let file_as_dir = env.dir.path().join("a-file");
    std::fs::write(&file_as_dir, "").unwrap();
    let mut c = good.clone();
    c.data_dir = Some(file_as_dir);
    assert!(open_err(&c).contains("cannot create data directory"));

    // Two services on one data directory: the second is refused.
    let _first = Service::open(&good).unwrap();
    let e = open_err(&good);
    assert!(e.contains("lock"), "{e}");
}

#[test]
fn config_file_paths_are_relative_to_the_file() {
    let env = Env::new();
    let k = KeyPair::new();
    common::write_key(&env.dir.path().join("root.key"), &k);
    let path = env.dir.path().join("mandate.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\n[[root_keys]]\nid = 3\nfile = \"root.key\"\n",
    )
    .unwrap();
    let config = ServiceConfig::read(&path).unwrap();
    assert_eq!(config.data_dir, Some(env.dir.path().join("data")));
    assert_eq!(config.root_keys[0].file, env.dir.path().join("root.key"));
    let service = Service::open(&config).unwrap();
    assert_eq!(service.keys().current().0, 3);

    std::fs::write(&path, "listen = 8080\n").unwrap();
    let e = ServiceConfig::read(&path).unwrap_err().to_string();
    assert!(e.contains("mandate.toml: line 1"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}
