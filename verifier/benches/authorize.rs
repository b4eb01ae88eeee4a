//! Authorization latency by delegation depth: Mandate's
//! `Verifier::authorize` against raw biscuit-auth on the very same token
//! bytes, with the same request facts, policy and run limits. Both are cold:
//! every iteration parses the token and verifies every signature.
//!
//! Criterion reports, per depth N in 1, 2, 4, 8, the group
//! `authorize/depth_N` with the functions `mandate` and `raw_biscuit`.
//! Results are written up in `verifier/BENCHMARKS.md`.
//!
//! Run with: `cargo bench -p mandate-verifier --bench authorize`

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mandate_verifier::{RootKeys, Verifier};
use std::time::Duration;

const DEPTHS: [usize; 4] = [1, 2, 4, 8];

fn authorize(c: &mut Criterion) {
    let chain = common::chain(*DEPTHS.iter().max().unwrap());
    let verifier = Verifier::new(RootKeys::new().with(chain.root_key_id, chain.root_key));
    let request = common::allowed_request();
    for depth in DEPTHS {
        let token = &chain.tokens[depth];
        // Both sides must allow, or the bench measures a denial path.
        let decision = verifier.authorize(token, &request);
        assert!(decision.is_allowed(), "depth {depth}: {decision}");
        assert_eq!(decision.chain.as_ref().unwrap().depth(), depth);
        assert!(common::raw_biscuit(token, chain.root_key, &request, verifier.limits()).0);

        let mut group = c.benchmark_group(format!("authorize/depth_{depth}"));
        group.bench_function("mandate", |b| {
            b.iter(|| verifier.authorize(black_box(token), black_box(&request)))
        });
        group.bench_function("raw_biscuit", |b| {
            b.iter(|| {
                common::raw_biscuit(
                    black_box(token),
                    chain.root_key,
                    black_box(&request),
                    verifier.limits(),
                )
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Modest sampling: the whole bench runs in about a minute on 2 cores.
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = authorize
}
criterion_main!(benches);
