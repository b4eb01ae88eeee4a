//! The added cost per request of an approval block and of a proof of
//! possession, against the same request without them, in one criterion run
//! (2-hop-free root tokens, cache on, a real RocksDB replay record).
//!
//! - `plain_warm`: a payment of 150 with a token without approval rules or
//!   holder binding, cache hit — the baseline for `proof_warm`;
//! - `proof_warm`: the same token requiring proof of possession, each
//!   request with a fresh proof (Ed25519 verification + nonce record);
//! - `plain_cold` / `approval_cold`: a token seen for the first time (an
//!   approved token is used once, so it is never a cache hit), without and
//!   with an approval block for the request (one more signature to verify,
//!   the scoped Datalog, and the synced record of the used approval).
//!
//! Run with: `cargo bench -p mandate-verifier --bench approval`

#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mandate_attenuate::{approve, attach_approval};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, HolderProof, ProofSubject, Request};
use mandate_verifier::{replay::ReplayGuard, CacheOptions, Presented, RootKeys, Verifier};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn token(issuer: &Issuer, agent: &KeyPair, grant: Grant) -> Vec<u8> {
    issuer
        .mint(&MintRequest {
            principal: "org:acme".into(),
            agent: "payments-agent".into(),
            agent_key: agent.public(),
            grant,
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap()
        .token
}

fn bench(c: &mut Criterion) {
    let (issuer, agent, finance) = (Issuer::new(KeyPair::new()), KeyPair::new(), KeyPair::new());
    let base = Grant::parse(&["pay:/api/payments"], &["amount<=1000"]).unwrap();
    let plain = token(&issuer, &agent, base.clone());
    let mut bound = base.clone();
    bound.holder_bound = true;
    let bound = token(&issuer, &agent, bound);
    let ruled = token(
        &issuer,
        &agent,
        base.with_approval(&format!(
            "pay when amount>100 by finance={}",
            finance.public()
        ))
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (id, key) = issuer.keys().public_keys()[0];
    let guard = Arc::new(ReplayGuard::open(dir.path().join("replay")).unwrap());
    let cold = Verifier::new(RootKeys::new().with(id, key)).with_replay_guard(guard);
    let warm = cold.clone().with_cache(CacheOptions::default());
    let req = Request::new("pay", "/api/payments").param("amount", 150);
    let body = br#"{"amount": 150}"#;
    let audience = mandate_spec::Audience::parse("https://pay.example.com").unwrap();
    let proof = |token: &[u8]| {
        let p = HolderProof::sign(
            &agent,
            &ProofSubject {
                method: "POST",
                audience: &audience,
                target: "/api/payments",
                body_digest: ProofSubject::digest(body),
                token,
            },
            SystemTime::now(),
        )
        .unwrap();
        Presented::new("POST", body, Some(p)).at(Some(audience.clone()), "/api/payments")
    };
    // Approved tokens, each usable once: distinct approval blocks (expiry
    // one second apart) for the same request.
    let tpr = biscuit_auth::UnverifiedBiscuit::from(&ruled)
        .unwrap()
        .third_party_request()
        .unwrap()
        .serialize_base64()
        .unwrap();
    let mut n = 0u64;
    let mut approved = || {
        n += 1;
        let block = approve(
            &tpr,
            &req,
            SystemTime::now() + Duration::from_secs(600 + n),
            &finance,
        )
        .unwrap();
        attach_approval(&ruled, &block).unwrap().token
    };
    assert!(warm.authorize(&plain, &req).is_allowed());
    assert!(warm
        .authorize_presented(&bound, &req, &proof(&bound))
        .is_allowed());
    assert!(cold.authorize(&approved(), &req).is_allowed());
    assert!(cold.authorize(&ruled, &req).needs_approval());

    let mut group = c.benchmark_group("approval");
    group.bench_function("plain_warm", |b| b.iter(|| warm.authorize(&plain, &req)));
    group.bench_function("proof_warm", |b| {
        b.iter_batched(
            || proof(&bound),
            |p| warm.authorize_presented(&bound, &req, &p),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("plain_cold", |b| b.iter(|| cold.authorize(&plain, &req)));
    group.bench_function("approval_cold", |b| {
        b.iter_batched(
            &mut approved,
            |t| cold.authorize(&t, &req),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
