//! Shared harness for the service tests: root keys written to files, a
//! service opened from a real configuration in a temporary data directory,
//! admin tokens, and one-call HTTP requests through the router.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use biscuit_auth::KeyPair;
use mandate_issuer::{Issuer, MintRequest, SigningKeys};
use mandate_server::{RootKeyFile, Service, ServiceConfig};
use mandate_spec::{format_public_key, Grant};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tower::ServiceExt;

/// A copy of a key pair (biscuit's `KeyPair` is not `Clone`).
pub fn copy(key: &KeyPair) -> KeyPair {
    KeyPair::from(&key.private())
}

/// A temporary place for key files and the data directory.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `key` to `root-ID.key` (mode 0600) and returns its entry.
    pub fn key_file(&self, id: u32, key: &KeyPair) -> RootKeyFile {
        let path = self.dir.path().join(format!("root-{id}.key"));
        write_key(&path, key);
        RootKeyFile { id, file: path }
    }

    /// A configuration with these keys, `current` signing.
    pub fn config(&self, keys: &[(u32, &KeyPair)], current: u32) -> ServiceConfig {
        ServiceConfig {
            data_dir: Some(self.data_dir()),
            root_keys: keys.iter().map(|(id, k)| self.key_file(*id, k)).collect(),
            current_key_id: Some(current),
            ..ServiceConfig::default()
        }
    }

    /// The service's router for this configuration.
    pub fn router(&self, keys: &[(u32, &KeyPair)], current: u32) -> Router {
        Service::open(&self.config(keys, current))
            .unwrap()
            .into_router()
    }
}

pub fn write_key(path: &Path, key: &KeyPair) {
    std::fs::write(path, mandate_spec::format_private_key(key)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A service with one root key (id 0) and an admin token allowed to mint and
/// revoke, as `mandate issue --allow 'mint,revoke:/v1/*'` makes it.
pub struct Svc {
    pub env: Env,
    pub root: KeyPair,
    pub router: Router,
    pub admin: String,
}

impl Svc {
    pub fn new() -> Svc {
        let env = Env::new();
        let root = KeyPair::new();
        let router = env.router(&[(0, &root)], 0);
        let admin = admin_token(&root, 0, &["mint,revoke:/v1/*"], &[]);
        Svc {
            env,
            root,
            router,
            admin,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(&self.router, method, uri, auth, body).await
    }

    /// Mints through the API for `principal`, agent `agent` holding `agent_key`.
    pub async fn mint(&self, principal: &str, agent: &str, agent_key: &KeyPair) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/tokens",
                Some(&self.admin),
                Some(mint_body(principal, agent, agent_key)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn revoke(&self, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/v1/revocations",
            Some(&self.admin),
            Some(body),
        )
        .await
    }

    /// `POST /v1/authorize` for a read of customer 42 with rows=10.
    pub async fn read_42(&self, token: &str) -> (StatusCode, Value) {
        authorize(&self.router, token, "read", "/api/customers/42").await
    }
}

pub fn mint_body(principal: &str, agent: &str, agent_key: &KeyPair) -> Value {
    json!({
        "principal": principal,
        "agent": agent,
        "agent_key": format_public_key(&agent_key.public()),
        "allow": ["read,list:/api/customers/*"],
        "where": ["rows<=100"],
        "ttl": "1h",
        "purpose": "answer support tickets",
        "max_depth": 2,
    })
}

pub async fn authorize(
    router: &Router,
    token: &str,
    action: &str,
    resource: &str,
) -> (StatusCode, Value) {
    call(
        router,
        Method::POST,
        "/v1/authorize",
        None,
        Some(json!({ "token": token, "action": action, "resource": resource, "params": { "rows": 10 } })),
    )
    .await
}

/// An admin token minted offline with `root` (key id `id`), principal
/// `ops:admin`, agent `admin-cli`.
pub fn admin_token(root: &KeyPair, id: u32, allow: &[&str], where_: &[&str]) -> String {
    let issuer = Issuer::with_keys(SigningKeys::new(id, copy(root)));
    issuer
        .mint(&MintRequest {
            principal: "ops:admin".into(),
            agent: "admin-cli".into(),
            agent_key: KeyPair::new().public(),
            grant: Grant::parse(allow, where_).unwrap(),
            ttl: Duration::from_secs(3600),
            purpose: Some("operate the issuer".into()),
            max_depth: None,
        })
        .unwrap()
        .to_base64()
}

/// One request through the router; the body parsed as JSON (or `null`).
pub async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|b| b.to_string());
    let (status, _, bytes) = call_raw(
        router,
        method,
        uri,
        auth,
        body.as_deref().map(str::as_bytes),
        true,
    )
    .await;
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, json)
}

/// One request through the router, raw: status, headers and body bytes.
/// `content_length` sets the header (else the body has no declared length).
pub async fn call_raw(
    router: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Option<&[u8]>,
    content_length: bool,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            if content_length {
                req = req.header(header::CONTENT_LENGTH, b.len());
            }
            req.body(Body::from(b.to_vec())).unwrap()
        }
        None => req.body(Body::empty()).unwrap(),
    };
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}
