//! The revocation check at 0, 100k, 1M and 10M revoked ids, and what it adds
//! to one 2-hop authorization, measured in the same run.
//!
//! The stores are built once (outside any measured loop) under
//! `$MANDATE_BENCH_DIR` (default `$HOME/.cache/mandate/bench-stores`) and
//! reused by later runs; the 10M store takes a few minutes to build and
//! about 1 GB of disk. Set `MANDATE_BENCH_SIZES=0,100000` to run fewer sizes.
//!
//! Run with: `cargo bench -p mandate-verifier --bench revocation`
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use criterion::{criterion_group, criterion_main, Criterion};
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use mandate_verifier::{
    revocation::{revocation_targets, Revocation, RevocationStore, Target},
    RootKeys, Verifier,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const DEFAULT_SIZES: [u64; 4] = [0, 100_000, 1_000_000, 10_000_000];

fn sizes() -> Vec<u64> {
    match std::env::var("MANDATE_BENCH_SIZES") {
        Ok(s) => s.split(',').map(|n| n.trim().parse().unwrap()).collect(),
        // `cargo test` runs benches once as a smoke test: keep it small.
        Err(_) if !std::env::args().any(|a| a == "--bench") => vec![0, 1_000],
        Err(_) => DEFAULT_SIZES.to_vec(),
    }
}

fn bench_dir() -> PathBuf {
    match std::env::var_os("MANDATE_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/mandate/bench-stores")
        }
    }
}

/// splitmix64: a seeded stream of random-looking ids, no extra dependency.
struct Ids(u64);

impl Ids {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> Vec<u8> {
        (0..8).flat_map(|_| self.next_u64().to_le_bytes()).collect()
    }
}

/// Opens (building once if needed) a store holding `n` revoked block ids.
fn store_with(n: u64) -> (RevocationStore, PathBuf) {
    let path = bench_dir().join(format!("revoked-{n}"));
    let marker = path.join("MANDATE_BENCH_COMPLETE");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let started = Instant::now();
        let store = RevocationStore::open(&path).unwrap();
        let mut ids = Ids(n);
        let now = OffsetDateTime::now_utc();
        store
            .bulk_load((0..n).map(|_| Revocation {
                target: Target::Block(ids.id()),
                revoked_at: now,
                reason: "bench".into(),
                by: "bench".into(),
                expires_at: None,
                note: None,
            }))
            .unwrap();
        drop(store);
        std::fs::write(&marker, b"").unwrap();
        eprintln!(
            "built {n} entries in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    (RevocationStore::open_existing(&path).unwrap(), path)
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A 2-hop token (root → agent-1 → agent-2), its verifier keys and a request it allows.
fn two_hop() -> (Vec<u8>, RootKeys, Request) {
    let issuer = Issuer::new(KeyPair::new());
    let agents: Vec<KeyPair> = (0..3).map(|_| KeyPair::new()).collect();
    let mut token = issuer
        .mint(&MintRequest {
            principal: "user:alice".into(),
            agent: "agent-0".into(),
            agent_key: agents[0].public(),
            grant: Grant::parse(&["read,list:/api/customers/*"], &["rows<=100"]).unwrap(),
            ttl: Duration::from_secs(86_400),
            purpose: None,
            max_depth: None,
        })
        .unwrap()
        .token;
    for i in 1..3 {
        token = delegate(
            &token,
            &agents[i - 1],
            &Delegation {
                agent: format!("agent-{i}"),
                agent_key: agents[i].public(),
                grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
                ttl: None,
                purpose: None,
            },
        )
        .unwrap()
        .token;
    }
    let (id, key) = issuer.keys().public_keys()[0];
    let req = Request::new("read", "/api/customers/42").param("rows", 10);
    (token, RootKeys::new().with(id, key), req)
}

fn revocation(c: &mut Criterion) {
    let (token, keys, req) = two_hop();
    let plain = Verifier::new(keys.clone());
    assert!(plain.authorize(&token, &req).is_allowed());
    // The exact targets the verifier looks up for this token.
    let chain = mandate_attenuate::read_chain(&token).unwrap();
    let targets = revocation_targets(
        biscuit_auth::UnverifiedBiscuit::from(&token)
            .unwrap()
            .revocation_identifiers(),
        &chain,
    );

    let mut group = c.benchmark_group("revocation");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(4));
    group.bench_function("authorize_2hop/no_store", |b| {
        b.iter(|| plain.authorize(&token, &req))
    });
    for n in sizes() {
        let (store, path) = store_with(n);
        let store = Arc::new(store);
        let verifier = Verifier::new(keys.clone()).with_revocations(store.clone());
        assert!(verifier.authorize(&token, &req).is_allowed());
        group.bench_function(format!("check/{n}"), |b| {
            b.iter(|| store.first_revoked(&targets).unwrap())
        });
        group.bench_function(format!("authorize_2hop/{n}"), |b| {
            b.iter(|| verifier.authorize(&token, &req))
        });
        println!(
            "store {n}: {:.1} MiB on disk, process RSS {:.1} MiB, estimated entries {}",
            dir_size(&path) as f64 / (1 << 20) as f64,
            rss_kib() as f64 / 1024.0,
            store.estimated_len()
        );
    }
    group.finish();
}

criterion_group!(benches, revocation);
criterion_main!(benches);
