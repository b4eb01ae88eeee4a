//! The latency of one spend (SPEC §14.4, §15): the local RocksDB
//! `ReplayGuard` against the fleet's JetStream key-value bucket
//! (`FleetSingleUse`: create-if-absent in the bucket, then the local
//! record), measured in the same run against a local nats-server (started
//! here, JetStream on a temporary directory). Prints p50/p90/p99/max; no
//! timing harness.
//!
//! - approval: a synced spend (the local write fsynced), unique keys;
//! - nonce: an unsynced local spend; in the bucket when nonces are too;
//! - replayed: a key this verifier already holds (answered from the local
//!   cache, no round trip);
//! - 8 threads: the fleet spend with 8 concurrent callers (per-spend
//!   latency as each caller sees it).
//!
//! Run with: `cargo bench -p mandate-verifier --features feed --bench spend`
//! (`MANDATE_BENCH_SPENDS=N` spends per row, default 2000).
#![allow(clippy::unwrap_used, missing_docs)]

use mandate_verifier::feed::FeedConfig;
use mandate_verifier::replay::{ReplayGuard, SingleUse};
use mandate_verifier::spend_bucket::{FleetSingleUse, SpendBucketConfig};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

fn spends() -> usize {
    std::env::var("MANDATE_BENCH_SPENDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn row(name: &str, mut us: Vec<f64>) {
    us.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    println!(
        "{name:<44} n={:<6} p50 {:>8.1} µs  p90 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
        us.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        us[us.len() - 1]
    );
}

fn time_each(n: usize, mut f: impl FnMut(usize)) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn main() {
    let n = spends();
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nats = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server must be installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let until = OffsetDateTime::now_utc() + time::Duration::minutes(10);
    // A proof nonce matters for the clock-skew window (default 60 s).
    let nonce_until = OffsetDateTime::now_utc() + time::Duration::seconds(60);
    let key = |tag: &str, i: usize| format!("{tag}{i:08}").into_bytes();

    let local = ReplayGuard::open(dir.path().join("local")).unwrap();
    let fleet = |name: &str, nonces: bool| {
        let mut cfg = SpendBucketConfig::new("BENCH_SPENT");
        cfg.nonces = nonces;
        let guard = Arc::new(ReplayGuard::open(dir.path().join(name)).unwrap());
        let f = FleetSingleUse::new(guard, FeedConfig::new(url.clone()), cfg).unwrap();
        f.connect().unwrap();
        f
    };
    let fleet_a = fleet("fleet-a", true);

    // Warm-up: first writes, connection, bucket lookups.
    for i in 0..200 {
        local
            .use_once(&key("approval-signature:warm", i), until, true)
            .unwrap();
        fleet_a
            .use_once(&key("approval-signature:warmf", i), until, true)
            .unwrap();
    }

    println!("spend latency, {n} spends per row, nats-server at {url} (loopback)");
    // Interleaved in blocks so machine noise hits both alike.
    let (mut l, mut f) = (Vec::new(), Vec::new());
    for block in 0..10 {
        let base = block * n / 10;
        let m = n / 10;
        l.extend(time_each(m, |i| {
            local
                .use_once(&key("approval-signature:l", base + i), until, true)
                .unwrap();
        }));
        f.extend(time_each(m, |i| {
            fleet_a
                .use_once(&key("approval-signature:f", base + i), until, true)
                .unwrap();
        }));
    }
    row("approval, local ReplayGuard (synced)", l);
    row("approval, fleet bucket + local (synced)", f);
    row(
        "nonce, local ReplayGuard (unsynced)",
        time_each(n, |i| {
            local
                .use_once(&key("nonce:l", i), nonce_until, false)
                .unwrap();
        }),
    );
    row(
        "nonce, fleet bucket + local (unsynced)",
        time_each(n, |i| {
            fleet_a
                .use_once(&key("nonce:f", i), nonce_until, false)
                .unwrap();
        }),
    );
    row(
        "replayed at the same verifier (local cache)",
        time_each(n, |i| {
            fleet_a
                .use_once(&key("approval-signature:f", i), until, true)
                .unwrap();
        }),
    );
    let fleet_b = fleet("fleet-b", true);
    row(
        "replayed at another verifier (bucket refuses)",
        time_each(n, |i| {
            fleet_b
                .use_once(&key("approval-signature:f", i), until, true)
                .unwrap();
        }),
    );
    let fleet_c = Arc::new(fleet("fleet-c", true));
    let per = n / 8;
    let all: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let fc = fleet_c.clone();
                s.spawn(move || {
                    time_each(per, |i| {
                        fc.use_once(&key("approval-signature:c", t * per + i), until, true)
                            .unwrap();
                    })
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    row("approval, fleet bucket, 8 threads", all);
    let _ = nats.kill();
    let _ = nats.wait();
}
