//! Repeat authorization of the same 2-hop token through the verification
//! cache, against raw biscuit-auth's authorize on an already-parsed token
//! (the same request facts, policy and run limits) and against Mandate's
//! cold path (parse, every signature, chain), all in one criterion run.
//!
//! Criterion group `cache/depth_2`: `mandate_warm` (cache hit: hash,
//! revocation lookup in a real RocksDB store, Datalog), `raw_biscuit_parsed`
//! (AuthorizerBuilder on a parsed `Biscuit`, authorize), `mandate_cold`
//! (no cache), and `mandate_warm_audited` (cache hit plus a record queued to
//! the signed audit log).
//!
//! Run with: `cargo bench -p mandate-verifier --bench cache`

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use biscuit_auth::{Biscuit, KeyPair};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mandate_verifier::{
    audit::{AuditLog, AuditOptions},
    revocation::RevocationStore,
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

    let mut group = c.benchmark_group("cache/depth_2");
    group.bench_function("raw_biscuit_parsed", |b| {
        b.iter(|| raw(black_box(&biscuit)))
    });
    group.bench_function("mandate_warm", |b| {
        b.iter(|| warm.authorize(black_box(token), black_box(&request)))
    });
    group.bench_function("mandate_warm_audited", |b| {
        b.iter(|| audited.authorize(black_box(token), black_box(&request)))
    });
    group.bench_function("mandate_cold", |b| {
        b.iter(|| cold.authorize(black_box(token), black_box(&request)))
    });
    group.finish();
    audit.flush().unwrap();
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
