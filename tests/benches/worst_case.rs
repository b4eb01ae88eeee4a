//! The worst-case bench (issue 12): how long the most expensive token the
//! verifier accepts takes to decide, shape by shape, against a canonical
//! 2-hop token measured in the same run.
//!
//! Each hostile shape (`mandate_tests::hostile`) is grown until the verifier
//! refuses its structure or the token reaches 64 KiB; the largest accepted
//! one is decided cold (signatures, chain, cost bound, Datalog) `RUNS` times
//! with the worst request the limits allow (64 parameters of 4096 bytes).
//! Printed: p50, p99 and max in microseconds, and the token's size and cost
//! bound. The aim: max ≤ 5 ms on this machine.
//!
//! Run with: `cargo bench -p mandate-tests --bench worst_case`
//! (under `cargo test --benches` it runs each shape a few times only).
#![allow(clippy::unwrap_used, missing_docs)]

use cpu_time::ThreadTime;
use mandate_spec::{decode_blocks, Chain};
use mandate_tests::hostile::{corpus, worst_request};
use mandate_tests::{customers_family, root_keys_of};
use mandate_verifier::{CacheOptions, DenialKind, Limits, Verifier};
use std::time::{Duration, Instant};

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    // An argument that is not a flag keeps only the shapes naming it.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let runs = if quick { 3 } else { 300 };
    let family = customers_family(1);
    // A limit no hostile token should come near: the cost is bounded by
    // structure; here we measure it.
    let limits = Limits {
        max_time: Duration::from_secs(30),
        ..Limits::default()
    };
    let verifier = Verifier::new(root_keys_of(&family.issuer)).with_limits(limits);
    let accepted = |t: &[u8]| {
        let d = verifier.authorize(t, &worst_request());
        !matches!(
            d.denial.as_ref().map(|d| d.kind),
            Some(DenialKind::BrokenChain | DenialKind::MalformedToken)
        )
    };
    let started = Instant::now();
    let items = corpus(&family, &accepted);
    println!(
        "worst case: {} shapes generated in {:.1} s; {runs} cold decisions each",
        items.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<52} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6}  outcome",
        "shape (cold wall: p50 p99 max; cold CPU: p50 max; cached CPU: p50 max)",
        "bytes",
        "cost",
        "p50",
        "p99",
        "max",
        "cpu50",
        "cpumax",
        "c50",
        "cmax"
    );
    let baseline = customers_family(2);
    let mut all = Vec::new();
    let mut all_cpu = Vec::new();
    let mut rows = vec![(
        "baseline: canonical 2-hop token".to_string(),
        baseline.token().to_vec(),
        mandate_tests::read_customer(5),
        Verifier::new(root_keys_of(&baseline.issuer)).with_limits(limits),
    )];
    for h in items {
        rows.push((h.name, h.token, h.request, verifier.clone()));
    }
    for (i, (name, token, request, v)) in rows.iter().enumerate() {
        if filter
            .as_ref()
            .is_some_and(|f| i > 0 && !name.contains(f.as_str()))
        {
            continue;
        }
        let cost = decode_blocks(token)
            .ok()
            .and_then(|b| Chain::from_blocks(&b, None).ok().map(|_| b))
            .and_then(|b| mandate_spec::cost_bound(&b));
        let mut times = Vec::with_capacity(runs);
        let mut cpu = Vec::with_capacity(runs);
        let mut outcome = String::new();
        for _ in 0..runs {
            let c = ThreadTime::now();
            let t = Instant::now();
            let d = v.authorize(token, request);
            times.push(t.elapsed());
            cpu.push(c.elapsed());
            outcome = match &d.denial {
                None => "allow".into(),
                Some(x) => format!("{:?}", x.kind),
            };
        }
        // The same token once its verification is cached (a server's repeat
        // requests): every request still runs the Datalog, and a denial
        // runs it again in biscuit-auth's own authorizer.
        let cached_verifier = v.clone().with_cache(CacheOptions::default());
        let _ = cached_verifier.authorize(token, request);
        let mut cached = Vec::with_capacity(runs);
        for _ in 0..runs {
            let c = ThreadTime::now();
            let _ = cached_verifier.authorize(token, request);
            cached.push(c.elapsed());
        }
        times.sort();
        cpu.sort();
        cached.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let p = |v: &[Duration], q: f64| us(v[((v.len() - 1) as f64 * q) as usize]);
        println!(
            "{:<52} {:>6} {:>7} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>6.0} {:>6.0} {:>6.0}  {outcome}",
            name,
            token.len(),
            cost.map_or("-".into(), |c| c.to_string()),
            p(&times, 0.5),
            p(&times, 0.99),
            p(&times, 1.0),
            p(&cpu, 0.5),
            p(&cpu, 1.0),
            p(&cached, 0.5),
            p(&cached, 1.0),
        );
        if i > 0 {
            all.extend(times);
            all_cpu.extend(cpu);
            all_cpu.extend(cached);
        }
    }
    all.sort();
    all_cpu.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p = |v: &[Duration], q: f64| us(v[((v.len() - 1) as f64 * q) as usize]);
    println!(
        "all hostile shapes, cold wall: p99 {:.0} µs, max {:.0} µs; thread CPU (cold and \
         cached): p99 {:.0} µs, max {:.0} µs (aim: max ≤ 5000 µs)",
        p(&all, 0.99),
        p(&all, 1.0),
        p(&all_cpu, 0.99),
        p(&all_cpu, 1.0),
    );
}
