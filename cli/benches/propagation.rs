//! Revocation and live-restriction propagation across processes on
//! loopback: a real nats-server with JetStream, the issuer service
//! (`mandate serve --nats`) and three `mandate verifierd` processes. Prints
//! - latency from the issuer service's `200` answer to `POST /v1/revocations`
//!   until all three verifiers deny the revoked token (`revoked`), and from
//!   its `200` to `POST /v1/restrictions` (`deny` on the action the verifiers
//!   are probed with, on the token's root block) until all three deny it
//!   (`restricted`): p50/p99/max over N of each (default 200), one at a
//!   time, revocations and restrictions alternating. Each token is first
//!   allowed by every verifier, so it is in each one's verification cache
//!   when its revocation or restriction arrives;
//! - sustained revocations per second: C clients (default 8) posting
//!   revocations back to back to the service, each answered only after the
//!   local synced write and JetStream's acknowledgement, then how long until
//!   every verifier has applied them all.
//!
//! Run with: `cargo bench -p mandate --bench propagation`
//! (`MANDATE_PROPAGATION_N` sets N, `MANDATE_PROPAGATION_CLIENTS` sets C,
//! `MANDATE_PROPAGATION_BURST` the number of sustained revocations, default
//! 5 000; under `cargo test` it runs N = 10 and a burst of 100.)
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

/// Restricts the token whose root block is `id`: `deny` on what the
/// verifiers are probed with (reading customer 42).
fn restrict(issuer: &str, admin: &str, id: &str) {
    let body = serde_json::json!({
        "revocation_id": id,
        "deny": [DENIED],
        "reason": "bench",
    })
    .to_string();
    let (status, answer) = http(issuer, "POST", "/v1/restrictions", &body, Some(admin));
    assert_eq!(status, 200, "{answer}");
}

/// The probed action, denied (`Proc::authorize` reads `/api/customers/42`).
const DENIED: &str = "read:/api/customers/**";

/// Milliseconds from `posted`'s answer until every verifier denies `token`
/// with `kind`; each verifier allows (and so caches) the token first.
fn propagation(verifiers: &[Proc], token: &str, kind: &str, posted: impl FnOnce()) -> f64 {
    for v in verifiers {
        let (status, d) = v.authorize(token);
        assert_eq!(
            status, 200,
            "verifier {} before the {kind} entry: {d}",
            v.addr
        );
    }
    posted();
    let answered = Instant::now();
    for v in verifiers {
        loop {
            let (status, d) = v.authorize(token);
            if status == 403 {
                assert_eq!(d["denial"]["kind"], kind, "{d}");
                break;
            }
            assert!(
                answered.elapsed() < Duration::from_secs(10),
                "the {kind} entry never arrived at {}: {status} {d}",
                v.addr
            );
        }
    }
    answered.elapsed().as_secs_f64() * 1e3
}

fn summary(what: &str, latencies: &mut [f64]) -> String {
    latencies.sort_by(f64::total_cmp);
    format!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {})",
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = env_or("MANDATE_PROPAGATION_N", if bench { 200 } else { 10 });
    let clients = env_or("MANDATE_PROPAGATION_CLIENTS", 8);
    let burst = env_or("MANDATE_PROPAGATION_BURST", if bench { 5_000 } else { 100 });
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let url = nats.url();

    let root = KeyPair::new();
    let agent = KeyPair::new();
    let key_file = dir.path().join("root.key");
    std::fs::write(&key_file, format_private_key(&root)).unwrap();
    let issuer = Issuer::new(KeyPair::from(&root.private()));
    let mint = |principal: &str, allow: &[&str]| {
        issuer
            .mint(&MintRequest {
                principal: principal.into(),
                agent: "agent".into(),
                agent_key: agent.public(),
                grant: Grant::parse(allow, &[] as &[&str]).unwrap(),
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
    };
    let admin = mint(
        "ops:bench",
        &["revoke:/v1/revocations", "restrict:/v1/restrictions"],
    )
    .to_base64();
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
    // Per round: one token to revoke, one to restrict.
    let tokens: Vec<[(String, String); 2]> = (0..n)
        .map(|_| {
            [(); 2].map(|()| {
                let m = mint("user:bench", &["read:/api/customers/*"]);
                (m.revocation_ids[0].clone(), m.to_base64())
            })
        })
        .collect();
    for v in &verifiers {
        let deadline = Instant::now() + Duration::from_secs(10);
        while v.authorize(&tokens[0][0].1).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "verifier {} never allowed",
                v.addr
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // 1. Latency: one entry at a time, a revocation then a restriction (the
    //    next round the other way round), from the service's answer until
    //    all three verifiers deny.
    let (mut revoked, mut restricted) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (round, [to_revoke, to_restrict]) in tokens.iter().enumerate() {
        let mut revocation = || {
            revoked.push(propagation(&verifiers, &to_revoke.1, "revoked", || {
                revoke(&service.addr, &admin, &to_revoke.0)
            }))
        };
        let mut restriction = || {
            restricted.push(propagation(
                &verifiers,
                &to_restrict.1,
                "restricted",
                || restrict(&service.addr, &admin, &to_restrict.0),
            ))
        };
        if round % 2 == 0 {
            revocation();
            restriction();
        } else {
            restriction();
            revocation();
        }
    }
    println!("# Propagation: mandate serve -> NATS JetStream -> 3 mandate verifierd (loopback)\n");
    println!(
        "latency from the service's HTTP 200 to all 3 verifiers denying a token each had cached"
    );
    println!(
        "- {}",
        summary("revocation (POST /v1/revocations, `revoked`)", &mut revoked)
    );
    println!(
        "- {}",
        summary(
            &format!("restriction (POST /v1/restrictions, `deny {DENIED}`, `restricted`)"),
            &mut restricted
        )
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
