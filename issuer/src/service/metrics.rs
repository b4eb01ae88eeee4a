//! The service's metrics, in Prometheus text format (`GET /metrics`).
//!
//! A handful of counters and two latency histograms, kept with atomics (and a
//! mutex for the few labelled counters): no metrics framework needed.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mandate_tokens_minted_total` | counter | |
//! | `mandate_revocations_total` | counter | `target` = block, token, agent |
//! | `mandate_decisions_total` | counter | `source` = authorize, admin; `outcome` = allow, deny; `kind` = the denial kind |
//! | `mandate_http_responses_total` | counter | `status` |
//! | `mandate_mint_duration_seconds` | histogram | |
//! | `mandate_authorize_duration_seconds` | histogram | |

use mandate_verifier::{Decision, Target};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (+Inf is implicit).
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram: per-bucket counts (not cumulative), count and sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Where a decision was made.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// `POST /v1/authorize`, the embedded verifier.
    Authorize,
    /// An admin token checked for minting or revoking.
    Admin,
}

/// Every metric of one service.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    mints: AtomicU64,
    revocations: [AtomicU64; 3],
    decisions: Mutex<BTreeMap<(&'static str, &'static str, String), u64>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    pub(crate) mint_latency: Histogram,
    pub(crate) authorize_latency: Histogram,
}

impl Metrics {
    pub(crate) fn minted(&self, d: Duration) {
        self.mints.fetch_add(1, Relaxed);
        self.mint_latency.observe(d);
    }

    pub(crate) fn revoked(&self, target: &Target) {
        let i = match target {
            Target::Block(_) => 0,
            Target::Token(_) => 1,
            Target::Agent(_) => 2,
        };
        self.revocations[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn decided(&self, source: Source, decision: &Decision, d: Duration) {
        let source = match source {
            Source::Authorize => {
                self.authorize_latency.observe(d);
                "authorize"
            }
            Source::Admin => "admin",
        };
        let (outcome, kind) = match &decision.denial {
            None => ("allow", String::new()),
            Some(denial) => (
                "deny",
                serde_json::to_value(denial.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            ),
        };
        if let Ok(mut m) = self.decisions.lock() {
            *m.entry((source, outcome, kind)).or_default() += 1;
        }
    }

    pub(crate) fn responded(&self, status: u16) {
        if let Ok(mut m) = self.responses.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP mandate_tokens_minted_total Root tokens minted.\n\
             # TYPE mandate_tokens_minted_total counter\n\
             mandate_tokens_minted_total {}",
            self.mints.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP mandate_revocations_total Revocation entries acknowledged, by target kind.\n\
             # TYPE mandate_revocations_total counter"
        );
        for (target, n) in ["block", "token", "agent"].iter().zip(&self.revocations) {
            let _ = writeln!(
                out,
                "mandate_revocations_total{{target=\"{target}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mandate_decisions_total Authorization decisions, by source and outcome.\n\
             # TYPE mandate_decisions_total counter"
        );
        if let Ok(m) = self.decisions.lock() {
            for ((source, outcome, kind), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "mandate_decisions_total{{source=\"{source}\",outcome=\"{outcome}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mandate_http_responses_total HTTP responses, by status code.\n\
             # TYPE mandate_http_responses_total counter"
        );
        if let Ok(m) = self.responses.lock() {
            for (status, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "mandate_http_responses_total{{status=\"{status}\"}} {n}"
                );
            }
        }
        self.mint_latency.render(
            &mut out,
            "mandate_mint_duration_seconds",
            "Time to mint and record a root token.",
        );
        self.authorize_latency.render(
            &mut out,
            "mandate_authorize_duration_seconds",
            "Time to decide a POST /v1/authorize request.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}
