//! What the fleet's usage counters (SPEC §18.5, `FleetUsage`) add to a
//! decision, against a local nats-server started here (JetStream on a
//! temporary directory, loopback), measured in the same run as a warm
//! authorize of a token without limits. Prints figures; no timing harness.
//!
//! Per decision (one thread, warm verification cache; rows interleaved in
//! blocks so machine noise hits them alike):
//! - no limits: the baseline;
//! - exact: the token's limit charged in the bucket (compare-and-set);
//! - leased: charged from a lease of up to 1 000 units (a round trip per
//!   refill only).
//!
//! Throughput: three verifiers (each its own `Verifier` and `FleetUsage`
//! on one bucket, as three processes would be), 4 threads each, 1 s runs
//! interleaved over 3 rounds (medians):
//! decisions per second without limits, exact and leased, all threads on
//! one token (one hot counter) or each on its own.
//!
//! Run with: `cargo bench -p mandate-verifier --features feed --bench
//! usage_fleet` (`MANDATE_BENCH_DECISIONS=N` decisions per row, default
//! 4000).
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use mandate_verifier::feed::FeedConfig;
use mandate_verifier::usage::bucket::{FleetUsage, LeaseConfig, UsageBucketConfig};
use mandate_verifier::{CacheOptions, RootKeys, Verifier};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn decisions() -> usize {
    std::env::var("MANDATE_BENCH_DECISIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Prints a row and returns (p50, p99).
fn row(name: &str, mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&us, 0.50), percentile(&us, 0.99));
    println!(
        "{name:<40} n={:<6} p50 {:>8.1} µs  p90 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
        us.len(),
        p50,
        percentile(&us, 0.90),
        p99,
        us[us.len() - 1]
    );
    (p50, p99)
}

fn time_each(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn mint(issuer: &Issuer, limit: Option<&str>) -> Vec<u8> {
    let mut grant = Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap();
    if let Some(l) = limit {
        grant = grant.with_limit(l).unwrap();
    }
    issuer
        .mint(&MintRequest {
            principal: "user:alice".into(),
            agent: "agent".into(),
            agent_key: KeyPair::new().public(),
            grant,
            ttl: Duration::from_secs(86_400),
            purpose: None,
            max_depth: None,
        })
        .unwrap()
        .token
}

fn main() {
    let n = decisions();
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
    // The fleet key the meters share (SPEC §18.5): fresh per run.
    let key_file = dir.path().join("usage.key");
    {
        use sha2::{Digest, Sha256};
        let seed = format!("{:?} {:?} {port}", std::process::id(), Instant::now());
        std::fs::write(&key_file, hex::encode(Sha256::digest(seed.as_bytes()))).unwrap();
    }

    let issuer = Issuer::new(KeyPair::new());
    let (id, key) = issuer.keys().public_keys()[0];
    let plain = mint(&issuer, None);
    // Never full within a run: every decision is allowed and charged.
    let limited = mint(&issuer, Some("read 1000000000000/366d"));
    let meter = |lease: Option<u64>| {
        let mut cfg = UsageBucketConfig::new("BENCH_USAGE");
        cfg.key_file = Some(key_file.clone());
        cfg.lease = lease.map(|slice| {
            let mut l = LeaseConfig::new(slice);
            l.fleet_size = 3;
            l
        });
        let m = Arc::new(FleetUsage::new(FeedConfig::new(url.clone()), cfg).unwrap());
        m.connect().unwrap();
        m
    };
    let verifier = |lease: Option<u64>| {
        Verifier::new(RootKeys::new().with(id, key))
            .with_cache(CacheOptions::default())
            .with_usage(meter(lease))
    };
    let (exact, leased) = (verifier(None), verifier(Some(1000)));
    let request = Request::new("read", "/api/customers/42");
    let decide = |v: &Verifier, token: &[u8]| {
        let d = v.authorize(token, &request);
        assert!(d.is_allowed(), "{:?}", d.denial);
    };
    // Warm-up: caches, connections, the counter's first write.
    for _ in 0..500 {
        decide(&exact, &plain);
        decide(&exact, &limited);
        decide(&leased, &limited);
    }

    println!(
        "usage limits across a fleet: {n} decisions per row, nats-server at {url} (loopback), \
         {} cores",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let (mut base, mut ex, mut le) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        base.extend(time_each(n / 10, || decide(&exact, &plain)));
        ex.extend(time_each(n / 10, || decide(&exact, &limited)));
        le.extend(time_each(n / 10, || decide(&leased, &limited)));
    }
    let b = row("warm authorize, no limits", base);
    let e = row("warm authorize + exact charge", ex);
    let l = row("warm authorize + leased charge", le);
    println!(
        "added per decision: exact p50 {:.1} µs p99 {:.1} µs; leased p50 {:.1} µs p99 {:.1} µs",
        e.0 - b.0,
        e.1 - b.1,
        l.0 - b.0,
        l.1 - b.1
    );

    // Three verifiers, four threads each, 1 s per run, 3 rounds with the
    // rows interleaved (median kept): `tokens[t]` is thread t's token (one
    // shared counter when they are all the same).
    let many: Vec<Vec<u8>> = (0..12)
        .map(|_| mint(&issuer, Some("read 1000000000000/366d")))
        .collect();
    // (name, the threads' tokens, the lease slice)
    type Row<'a> = (&'a str, Vec<Vec<u8>>, Option<u64>);
    let rows: Vec<Row<'_>> = vec![
        ("no limits", vec![plain.clone()], None),
        (
            "exact, one counter shared by all",
            vec![limited.clone()],
            None,
        ),
        ("exact, a counter per thread", many.clone(), None),
        (
            "leased, one counter shared by all",
            vec![limited.clone()],
            Some(1000),
        ),
        ("leased, a counter per thread", many, Some(1000)),
    ];
    let fleets: Vec<Vec<Verifier>> = rows
        .iter()
        .map(|(_, tokens, lease)| {
            let fleet: Vec<Verifier> = (0..3).map(|_| verifier(*lease)).collect();
            for v in &fleet {
                for t in tokens {
                    for _ in 0..20 {
                        decide(v, t);
                    }
                }
            }
            fleet
        })
        .collect();
    let run = |fleet: &[Verifier], tokens: &[Vec<u8>]| {
        let length = Duration::from_secs(1);
        let started = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..12)
                .map(|t| {
                    let (v, token) = (&fleet[t % 3], &tokens[t % tokens.len()]);
                    s.spawn(move || {
                        let mut done = 0u64;
                        while started.elapsed() < length {
                            decide(v, token);
                            done += 1;
                        }
                        done
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        total as f64 / started.elapsed().as_secs_f64()
    };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for round in 0..3 {
        for k in 0..rows.len() {
            let i = (k + round) % rows.len();
            rates[i].push(run(&fleets[i], &rows[i].1));
        }
    }
    let medians: Vec<f64> = rates
        .iter_mut()
        .map(|r| {
            r.sort_by(|a, b| a.total_cmp(b));
            r[r.len() / 2]
        })
        .collect();
    println!("throughput, 3 verifiers × 4 threads (median of 3 interleaved 1 s runs):");
    for (i, (name, _, _)) in rows.iter().enumerate() {
        println!(
            "  {name:<36} {:>9.0} decisions/s  {:>6.1} % of no limits",
            medians[i],
            100.0 * medians[i] / medians[0]
        );
    }
    let _ = nats.kill();
    let _ = nats.wait();
}
