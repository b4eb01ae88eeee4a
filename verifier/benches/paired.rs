//! Mandate's overhead over raw biscuit-auth as a paired ratio, robust to a
//! noisy machine: per depth, many short rounds each time one
//! `Verifier::authorize` call and one raw biscuit-auth call on the same token
//! bytes back to back (alternating which goes first). Reported: the median of
//! the per-round ratios, and the ratio of the two sides' 10th percentiles
//! (the calls no other process interrupted). Criterion's `authorize` bench
//! measures each function over seconds, one after the other, so a burst of
//! load from other processes can land on one side only; this cannot.
//!
//! Run with: `cargo bench -p mandate-verifier --bench paired`

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use mandate_verifier::{RootKeys, Verifier};
use std::hint::black_box;
use std::time::Instant;

const DEPTHS: [usize; 4] = [1, 2, 4, 8];
const ROUNDS: usize = 2_000;

fn main() {
    let chain = common::chain(8);
    let verifier = Verifier::new(RootKeys::new().with(chain.root_key_id, chain.root_key));
    let request = common::allowed_request();
    println!("# Paired ratio, Mandate / raw biscuit-auth ({ROUNDS} rounds of one call each)\n");
    println!(
        "| depth | mandate p10 | raw p10 | ratio of p10s | mandate median | raw median | \
         ratio median | ratio p25–p75 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for depth in DEPTHS {
        let token = &chain.tokens[depth];
        let mandate = || {
            let start = Instant::now();
            black_box(verifier.authorize(black_box(token), black_box(&request)));
            start.elapsed().as_secs_f64() * 1e6
        };
        let raw = || {
            let start = Instant::now();
            black_box(common::raw_biscuit(
                black_box(token),
                chain.root_key,
                black_box(&request),
                verifier.limits(),
            ));
            start.elapsed().as_secs_f64() * 1e6
        };
        assert!(verifier.authorize(token, &request).is_allowed());
        for _ in 0..100 {
            mandate();
            raw();
        }
        let (mut m, mut r, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (tm, tr) = if round % 2 == 0 {
                let tm = mandate();
                (tm, raw())
            } else {
                let tr = raw();
                (mandate(), tr)
            };
            m.push(tm);
            r.push(tr);
            ratios.push(tm / tr);
        }
        let (m10, r10) = (quantile(&mut m, 0.1), quantile(&mut r, 0.1));
        println!(
            "| {depth} | {m10:.1} µs | {r10:.1} µs | {:.3}× | {:.1} µs | {:.1} µs | {:.3}× | \
             {:.3}–{:.3}× |",
            m10 / r10,
            quantile(&mut m, 0.5),
            quantile(&mut r, 0.5),
            quantile(&mut ratios, 0.5),
            quantile(&mut ratios, 0.25),
            quantile(&mut ratios, 0.75),
        );
    }
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}
