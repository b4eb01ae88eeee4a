//! A webhook receiver on loopback for the notification tests: records
//! every request, answers scripted statuses, and checks a notification's
//! `Mandate-Signature` as a receiver does.
//!
//! Included by path (`#[path = "common/webhook.rs"] mod webhook;`) next to
//! `mod common;`.
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use crate::common::procs::wait_until;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

/// A webhook receiver on loopback: records every request and answers each
/// path's scripted statuses in turn, then 200.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
}

impl Receiver {
    pub fn start(script: &[(&str, &[u16])]) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script: Arc<Mutex<HashMap<String, Vec<u16>>>> = Arc::new(Mutex::new(
            script
                .iter()
                .map(|(p, s)| (p.to_string(), s.to_vec()))
                .collect(),
        ));
        let (tx, rx) = std::sync::mpsc::channel();
        let seen = got.clone();
        let scripted = script.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(
                    move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
                        let (seen, script) = (seen.clone(), script.clone());
                        async move {
                            let path = uri.path().to_string();
                            let status = {
                                let mut s = script.lock().unwrap();
                                match s.get_mut(&path) {
                                    Some(left) if !left.is_empty() => left.remove(0),
                                    _ => 200,
                                }
                            };
                            seen.lock().unwrap().push(Got {
                                path,
                                headers,
                                body: body.to_vec(),
                                status,
                            });
                            StatusCode::from_u16(status).unwrap()
                        }
                    },
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        Receiver {
            addr: rx.recv().unwrap(),
            got,
            script: scripted,
        }
    }

    /// From now on `path` answers `statuses` in turn, then 200.
    pub fn script(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.to_string(), statuses.to_vec());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What `path` got so far.
    pub fn at(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got `n` requests; those.
    pub fn wait_for(&self, path: &str, n: usize) -> Vec<Got> {
        wait_until(
            &format!("{n} notification(s) at {path}"),
            Duration::from_secs(30),
            || self.at(path).len() >= n,
        );
        self.at(path)
    }
}

/// Checks `Mandate-Signature` as a receiver does: `t=<unix>,v1=<hex>`, the
/// HMAC-SHA256 with `secret` over `"<t>.<body>"`, compared in constant
/// time, `t` within five minutes of now. The body as JSON.
pub fn verified(got: &Got, secret: &[u8]) -> Value {
    let header = got
        .headers
        .get("mandate-signature")
        .unwrap_or_else(|| panic!("no signature: {got:?}"))
        .to_str()
        .unwrap();
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => v1 = Some(hex::decode(v).unwrap()),
            _ => {}
        }
    }
    let (t, v1) = (t.unwrap(), v1.unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at: u64 = t.parse().unwrap();
    assert!(now.abs_diff(at) <= 300, "signed at {at}, now {now}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&got.body);
    mac.verify_slice(&v1)
        .unwrap_or_else(|_| panic!("signature does not verify: {header}"));
    // Another secret does not verify it.
    let mut other = Hmac::<sha2::Sha256>::new_from_slice(b"another secret, 16+ bytes").unwrap();
    other.update(t.as_bytes());
    other.update(b".");
    other.update(&got.body);
    assert!(other.verify_slice(&v1).is_err());
    assert_eq!(got.headers["content-type"], "application/json");
    serde_json::from_slice(&got.body).unwrap()
}
