//! Revocation propagation across processes on loopback: a real nats-server
//! with JetStream, the issuer service (`mandate serve --nats`) and three
//! `mandate verifierd` processes. Prints
//! - latency from the issuer service's `200` answer to `POST /v1/revocations`
//!   until all three verifiers deny the revoked token, p50/p99/max over N
//!   revocations (default 200), one at a time;
//! - sustained revocations per second: C clients (default 8) posting
//!   revocations back to back to the service, each answered only after the
//!   local synced write and JetStream's acknowledgement, then how long until
//!   every verifier has applied them all.
//!
//! Run with: `cargo bench -p mandate --bench propagation`
//! (`MANDATE_PROPAGATION_N` sets N, `MANDATE_PROPAGATION_CLIENTS` sets C;
//! under `cargo test` it runs N = 10 and a burst of 100.)
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/common/procs.rs"]
mod procs;

use biscuit_auth::KeyPair;
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{format_private_key, Grant};
use procs::{http, Nats, Proc};
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn revoke(issuer: &str, admin: &str, id: &str) {
    let body = serde_json::json!({"revocation_id": id, "reason": "bench"}).to_string();
    let (status, answer) = http(issuer, "POST", "/v1/revocations", &body, Some(admin));
    assert_eq!(status, 200, "{answer}");
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = env_or("MANDATE_PROPAGATION_N", if bench { 200 } else { 10 });
    let clients = env_or("MANDATE_PROPAGATION_CLIENTS", 8);
    let burst = if bench { 5_000 } else { 100 };
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let url = nats.url();

    let root = KeyPair::new();
    let agent = KeyPair::new();
    let key_file = dir.path().join("root.key");
    std::fs::write(&key_file, format_private_key(&root)).unwrap();
    let issuer = Issuer::new(KeyPair::from(&root.private()));
    let mint = |principal: &str, allow: &str| {
        issuer
            .mint(&MintRequest {
                principal: principal.into(),
                agent: "agent".into(),
                agent_key: agent.public(),
                grant: Grant::parse(&[allow], &[] as &[&str]).unwrap(),
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
    };
    let admin = mint("ops:bench", "revoke:/v1/revocations").to_base64();
    let service = Proc::serve(&key_file, &dir.path().join("issuer"), &url);
    let verifiers: Vec<Proc> = (0..3)
        .map(|i| {
            Proc::verifierd(
                &root.public().to_string(),
                &dir.path().join(format!("v{i}")),
                &url,
                &[],
            )
        })
        .collect();
    let tokens: Vec<(String, String)> = (0..n)
        .map(|_| {
            let m = mint("user:bench", "read:/api/customers/*");
            (m.revocation_ids[0].clone(), m.to_base64())
        })
        .collect();
    for v in &verifiers {
        let deadline = Instant::now() + Duration::from_secs(10);
        while v.authorize(&tokens[0].1).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "verifier {} never allowed",
                v.addr
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // 1. Latency: one revocation at a time, from the service's answer until
    //    all three verifiers deny.
    let mut latencies = Vec::with_capacity(n);
    for (id, token) in &tokens {
        revoke(&service.addr, &admin, id);
        let answered = Instant::now();
        for v in &verifiers {
            while v.authorize(token).0 != 403 {
                assert!(
                    answered.elapsed() < Duration::from_secs(10),
                    "revocation never arrived"
                );
            }
        }
        latencies.push(answered.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "# Revocation propagation: mandate serve -> NATS JetStream -> 3 mandate verifierd (loopback)\n"
    );
    println!(
        "latency from the revoke response (HTTP 200) to all 3 verifiers denying, over {n} \
         revocations: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );

    // 2. Throughput: `clients` threads post revocations back to back, then
    //    wait until every verifier has applied the last one.
    let before = verifiers[0].feed_position();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..clients {
            let (addr, admin) = (&service.addr, &admin);
            scope.spawn(move || {
                for i in (c..burst).step_by(clients) {
                    let mut id = [0x5au8; 64];
                    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    revoke(addr, admin, &hex::encode(id));
                }
            });
        }
    });
    let acknowledged = started.elapsed().as_secs_f64();
    let want = before + burst as u64;
    for v in &verifiers {
        while v.feed_position() < want {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let applied = started.elapsed().as_secs_f64();
    println!(
        "sustained: {burst} revocations acknowledged by the service in {acknowledged:.2} s \
         ({:.0}/s, {clients} clients); all 3 verifiers had applied them after {applied:.2} s \
         ({:.0}/s end to end)",
        burst as f64 / acknowledged,
        burst as f64 / applied
    );
}
