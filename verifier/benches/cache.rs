//! Repeat authorization of the same 2-hop token through the verification
//! cache, against raw biscuit-auth's authorize on an already-parsed token
//! (the same request facts, policy and run limits) and against Mandate's
//! cold path (parse, every signature, chain), all in one criterion run.
//!
//! Criterion group `cache/depth_2`: `mandate_warm` (cache hit: hash,
//! revocation lookup in a real RocksDB store, the checks decided natively),
//! `mandate_warm_datalog` (the same chain with an always-true raw Datalog
//! check on its hops, so decided on the loaded Datalog world), `raw_biscuit_parsed`
//! (AuthorizerBuilder on a parsed `Biscuit`, authorize), `mandate_cold`
//! (no cache), `mandate_warm_audited` (cache hit plus a record queued to
//! the signed audit log), and `mandate_warm_limit` /
//! `mandate_warm_limit_synced`: the same 2-hop chain with one usage limit
//! at its root (`read` at most 2^63-1 per 366 days: never reached),
//! counted in a `UsageStore` on a temp dir (write-ahead log, and fsynced
//! per charge): the added cost of a local limit check (SPEC §18.5).
//!
//! Run with: `cargo bench -p mandate-verifier --bench cache`

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use biscuit_auth::{Biscuit, KeyPair};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mandate_verifier::{
    audit::{AuditLog, AuditOptions},
    revocation::RevocationStore,
    usage::{UsageOptions, UsageStore},
    CacheOptions, RootKeys, Verifier,
};
use std::sync::Arc;
use std::time::Duration;

fn cache(c: &mut Criterion) {
    let chain = common::chain(2);
    let token = &chain.tokens[2];
    let request = common::allowed_request();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RevocationStore::open(dir.path().join("revocations")).unwrap());
    let keys = RootKeys::new().with(chain.root_key_id, chain.root_key);
    let cold = Verifier::new(keys.clone()).with_revocations(store.clone());
    let warm = cold.clone().with_cache(CacheOptions::default());
    let audit = AuditLog::open(
        dir.path().join("audit"),
        &KeyPair::new(),
        AuditOptions::default(),
    )
    .unwrap();
    let audited = warm.clone().with_audit(audit.clone());
    for v in [&cold, &warm, &audited] {
        assert!(v.authorize(token, &request).is_allowed());
    }
    let biscuit = Biscuit::from(token, chain.root_key).unwrap();
    let limits = cold.limits();
    let raw = |b: &Biscuit| common::raw_authorize(b, &request, limits).0;
    assert!(raw(&biscuit));
    // The same chain shape with one limit at the root, never reached.
    let limited = common::chain_of(
        2,
        mandate_spec::Grant::parse(&[common::GRANT], &[] as &[&str])
            .unwrap()
            .with_limit("read 9223372036854775807/366d")
            .unwrap(),
        &mandate_spec::Grant::parse(&[common::GRANT], &[] as &[&str]).unwrap(),
    );
    let limited_token = &limited.tokens[2];
    let limited_keys = RootKeys::new().with(limited.root_key_id, limited.root_key);
    let counted = |dir: &str, sync: bool| {
        let usage = UsageStore::open_with(dir, UsageOptions { sync }).unwrap();
        Verifier::new(limited_keys.clone())
            .with_revocations(store.clone())
            .with_cache(CacheOptions::default())
            .with_usage(Arc::new(usage))
    };
    let wal_dir = dir.path().join("usage");
    let synced_dir = dir.path().join("usage-synced");
    let limit_wal = counted(wal_dir.to_str().unwrap(), false);
    let limit_synced = counted(synced_dir.to_str().unwrap(), true);
    for v in [&limit_wal, &limit_synced] {
        assert!(v.authorize(limited_token, &request).is_allowed());
    }

    // The same chain with an always-true raw Datalog check on its hops:
    // not Mandate's own checks, so decided on the loaded Datalog world
    // (the baseline of the native path, SPEC §7.1).
    let mut with_datalog = mandate_spec::Grant::parse(&[common::GRANT], &[] as &[&str]).unwrap();
    with_datalog.datalog.push("check if time($t)".into());
    let datalog = common::chain_of(
        2,
        mandate_spec::Grant::parse(&[common::GRANT], &[] as &[&str]).unwrap(),
        &with_datalog,
    );
    let datalog_token = &datalog.tokens[2];
    let datalog_warm = Verifier::new(RootKeys::new().with(datalog.root_key_id, datalog.root_key))
        .with_revocations(store.clone())
        .with_cache(CacheOptions::default());
    assert!(datalog_warm.authorize(datalog_token, &request).is_allowed());

    let mut group = c.benchmark_group("cache/depth_2");
    group.bench_function("raw_biscuit_parsed", |b| {
        b.iter(|| raw(black_box(&biscuit)))
    });
    group.bench_function("mandate_warm", |b| {
        b.iter(|| warm.authorize(black_box(token), black_box(&request)))
    });
    group.bench_function("mandate_warm_datalog", |b| {
        b.iter(|| datalog_warm.authorize(black_box(datalog_token), black_box(&request)))
    });
    group.bench_function("mandate_warm_audited", |b| {
        b.iter(|| audited.authorize(black_box(token), black_box(&request)))
    });
    group.bench_function("mandate_warm_limit", |b| {
        b.iter(|| limit_wal.authorize(black_box(limited_token), black_box(&request)))
    });
    group.bench_function("mandate_warm_limit_synced", |b| {
        b.iter(|| limit_synced.authorize(black_box(limited_token), black_box(&request)))
    });
    group.bench_function("mandate_cold", |b| {
        b.iter(|| cold.authorize(black_box(token), black_box(&request)))
    });
    group.finish();
    audit.flush().unwrap();
    paired_limit_cost(&warm, token, &limit_wal, limited_token, &request);
}

/// The added cost of the local limit check, robust to a busy machine:
/// rounds of 5 000 warm decisions without and with the limit, alternating,
/// and the median over 30 rounds of each and of their difference.
fn paired_limit_cost(
    plain: &Verifier,
    token: &[u8],
    limited: &Verifier,
    limited_token: &[u8],
    request: &mandate_spec::Request,
) {
    const N: u32 = 5_000;
    let per = |v: &Verifier, t: &[u8]| {
        let start = std::time::Instant::now();
        for _ in 0..N {
            black_box(v.authorize(black_box(t), black_box(request)));
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
    };
    let (mut a, mut b, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..30 {
        // Alternate which goes first, so drift favours neither.
        let (x, y) = if round % 2 == 0 {
            let x = per(plain, token);
            (x, per(limited, limited_token))
        } else {
            let y = per(limited, limited_token);
            (per(plain, token), y)
        };
        a.push(x);
        b.push(y);
        diff.push(y - x);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "cache/depth_2 paired (30 rounds of {N}): warm {:.2} µs, warm with one local limit \
         {:.2} µs, added {:.2} µs per decision (median of the differences)",
        median(&mut a),
        median(&mut b),
        median(&mut diff)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = cache
}
criterion_main!(benches);
