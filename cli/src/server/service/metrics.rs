//! The service's own metrics, through the `metrics` facade (the embedded
//! verifier emits the decision, cache, revocation-store, feed and audit
//! metrics of `mandate_verifier::metrics`). They are rendered on
//! `GET /metrics` by whatever recorder the embedder installed and handed to
//! [`crate::Service::with_metrics`] (`mandate serve`: Prometheus text).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mandate_tokens_minted_total` | counter | |
//! | `mandate_revocations_total` | counter | `target` = block, token, agent |
//! | `mandate_issuer_decisions_total` | counter | `source` = authorize, admin; `outcome` = allow, deny, needs_approval; `kind` = the denial kind |
//! | `mandate_http_responses_total` | counter | `status` |
//! | `mandate_mint_duration_seconds` | histogram | |
//! | `mandate_authorize_duration_seconds` | histogram | |
//!
//! `mandate_issuer_decisions_total` was `mandate_decisions_total` before
//! the verifier library emitted that name itself (every decision of every
//! embedder, without `source`).

use mandate_verifier::{revocation::Target, Decision};
use std::time::Duration;

const MINTED: &str = "mandate_tokens_minted_total";
const REVOCATIONS: &str = "mandate_revocations_total";
const DECISIONS: &str = "mandate_issuer_decisions_total";
const RESPONSES: &str = "mandate_http_responses_total";
const MINT_DURATION: &str = "mandate_mint_duration_seconds";
const AUTHORIZE_DURATION: &str = "mandate_authorize_duration_seconds";

/// Registers the help texts of the service's metrics with the installed
/// recorder, and the counters at zero (so a scrape shows them before the
/// first mint or revocation).
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(MINTED, "Root tokens minted.");
    describe_counter!(
        REVOCATIONS,
        "Revocation entries acknowledged, by target kind."
    );
    describe_counter!(
        DECISIONS,
        "Decisions of the issuer service, by source, outcome and denial kind."
    );
    describe_counter!(RESPONSES, "HTTP responses, by status code.");
    describe_histogram!(
        MINT_DURATION,
        Unit::Seconds,
        "Time to mint and record a root token."
    );
    describe_histogram!(
        AUTHORIZE_DURATION,
        Unit::Seconds,
        "Time to decide a POST /v1/authorize request."
    );
    metrics::counter!(MINTED).increment(0);
    for target in ["block", "token", "agent"] {
        metrics::counter!(REVOCATIONS, "target" => target).increment(0);
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

/// The service's metrics (no state: the recorder holds it).
#[derive(Debug, Default)]
pub(crate) struct Metrics;

impl Metrics {
    pub(crate) fn minted(&self, d: Duration) {
        metrics::counter!(MINTED).increment(1);
        metrics::histogram!(MINT_DURATION).record(d.as_secs_f64());
    }

    pub(crate) fn revoked(&self, target: &Target) {
        let target = match target {
            Target::Block(_) => "block",
            Target::Token(_) => "token",
            Target::Agent(_) => "agent",
        };
        metrics::counter!(REVOCATIONS, "target" => target).increment(1);
    }

    pub(crate) fn decided(&self, source: Source, decision: &Decision, d: Duration) {
        let source = match source {
            Source::Authorize => {
                metrics::histogram!(AUTHORIZE_DURATION).record(d.as_secs_f64());
                "authorize"
            }
            Source::Admin => "admin",
        };
        let (outcome, kind) = mandate_verifier::metrics::labels(decision);
        metrics::counter!(DECISIONS, "source" => source, "outcome" => outcome, "kind" => kind)
            .increment(1);
    }

    pub(crate) fn responded(&self, status: u16) {
        metrics::counter!(RESPONSES, "status" => status.to_string()).increment(1);
    }
}
