//! Latency of the gateway's hold path without the person (SPEC §17, held
//! for approval): real processes on loopback — `mandate serve` with the
//! finance approver, `mandate gateway` holding `/api` in front of a small
//! payments API (tests/common/hold.rs). For each of N payments that need
//! approval (amounts 101, 102, …: each a request of its own), the bench
//! sends it through the gateway, watches the issuer service's queue until
//! it is filed, approves it at once over HTTP (the "click"), and waits for
//! the held call's answer (the upstream's 200). Prints p50/p99/max of
//! - filed: from sending the payment until the bench sees it pending at
//!   the service (the gateway's first decision and its filing; the bench
//!   polls the queue every millisecond);
//! - click to answer: from the approve call until the held call answers
//!   (the service signs and stores the approval, the gateway's wait wakes,
//!   attaches it, the verifier decides again and spends it, the upstream
//!   answers);
//! - the sum of both: the hold path excluding the person;
//! - for comparison, a payment of 50 that needs no approval.
//!
//! Run with: `cargo bench -p mandate --bench hold`
//! (`MANDATE_HOLD_N` sets N, default 50; under `cargo test` N = 5.)
#![allow(clippy::unwrap_used, missing_docs, dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/hold.rs"]
mod hold;

use hold::HoldGateway;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   (n={})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
        ms.len()
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("MANDATE_HOLD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 50 } else { 5 })
        .min(899);
    let g = Arc::new(HoldGateway::start());
    // Warm up: the token's verification cached at the gateway and the service.
    assert_eq!(g.pay("/api", 50).0, 200);
    let (mut filed, mut answered, mut total, mut direct) = (vec![], vec![], vec![], vec![]);
    let mut known = HashSet::new();
    for i in 0..n {
        let started = Instant::now();
        assert_eq!(g.pay("/api", 50).0, 200);
        direct.push(started.elapsed().as_secs_f64() * 1e3);

        let amount = 101 + i as i64;
        let sent = Instant::now();
        let call = {
            let g = g.clone();
            std::thread::spawn(move || {
                let answer = g.pay("/api", amount);
                (answer, Instant::now())
            })
        };
        let id = loop {
            if let Some(id) = g.p.pending().difference(&known).next().cloned() {
                break id;
            }
            assert!(sent.elapsed() < Duration::from_secs(30), "never filed");
            std::thread::sleep(Duration::from_millis(1));
        };
        let seen = Instant::now();
        known.insert(id.clone());
        let click = Instant::now();
        g.p.approve(&id);
        let ((status, _, body), done) = call.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let f = (seen - sent).as_secs_f64() * 1e3;
        let a = (done - click).as_secs_f64() * 1e3;
        filed.push(f);
        answered.push(a);
        total.push(f + a);
    }
    println!("gateway hold path, {n} payments held and approved at once (loopback):");
    report("filed", filed);
    report("click to answer", answered);
    report("hold path (no human)", total);
    report("no approval needed", direct);
    assert_eq!(
        g.seen.hits(),
        1 + 2 * n,
        "every payment reached the upstream once"
    );
}
