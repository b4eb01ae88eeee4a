//! The verifier's metrics, emitted through the [`metrics`] facade: every
//! embedder gets them by installing a recorder (e.g.
//! `metrics-exporter-prometheus`, as the `mandate` servers do, rendering on
//! their own `GET /metrics`). Without a recorder they cost a few
//! nanoseconds and go nowhere. Call [`describe`] after installing one for
//! the help texts.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `mandate_decisions_total` | counter | `outcome` = allow, deny, needs_approval; `kind` = the denial kind (`""` when allowed) | every decision made (and recorded) by a [`crate::Verifier`] |
//! | `mandate_decision_duration_seconds` | histogram | | time to decide a request with a token, parse to decision |
//! | `mandate_verification_cache_hits_total` | counter | | decisions whose token verification came from the cache |
//! | `mandate_verification_cache_misses_total` | counter | | decisions that verified every signature |
//! | `mandate_revocation_entries` | gauge | | entries in the revocation store (RocksDB's estimate), after each write |
//! | `mandate_revocation_entries_written_total` | counter | `source` = local, feed | revocation entries written to the store |
//! | `mandate_feed_position` | gauge | | last revocation feed sequence applied |
//! | `mandate_feed_stale` | gauge | | 1 while the feed is stale (the verifier denies), else 0 |
//! | `mandate_feed_silent_seconds` | gauge | | time since the feed last answered |
//! | `mandate_feed_behind_seconds` | gauge | | time since the list was last current: every entry published before then is applied (at least the silent time; more while a backlog is read) |
//! | `mandate_feed_lag_seconds` | histogram | | publish (the stream's timestamp) to applied, per entry |
//! | `mandate_feed_interruptions_total` | counter | | times the feed connection failed or broke |
//! | `mandate_feed_entries_rejected_total` | counter | `reason` = malformed, unsigned, unknown_key, bad_signature | feed messages skipped, not applied: not an entry signed by a trusted revocation key |
//! | `mandate_audit_queue_depth` | gauge | | decisions queued for the audit writer |
//! | `mandate_audit_write_duration_seconds` | histogram | | time to sign and write one batch of audit records |
//! | `mandate_audit_records_written_total` | counter | | audit records written |
//! | `mandate_audit_write_errors_total` | counter | | failed audit batch writes (retried) |
//! | `mandate_cold_decisions_waiting` | gauge | | cold decisions waiting for a thread ([`crate::http::ColdDecisions`]) |
//! | `mandate_cold_decisions_running` | gauge | | cold decisions running |
//! | `mandate_limit_denials_total` | counter | `reason` = exceeded, unavailable, unmeterable | requests denied by a usage limit (SPEC §18.4): no room left (`limit_exceeded`), no usable counters (`limit_unavailable`), a budget that cannot meter the request or a request costing more than a whole window (`not_allowed`) |
//! | `mandate_limit_refunds_total` | counter | `outcome` = refunded, failed | charges given back for requests then denied by their approvals |
//!
//! Durations are in seconds. The hot path (a cached decision) pays one
//! counter, one histogram sample and one cache counter.

use crate::{Decision, Outcome};
use std::time::Duration;

/// `mandate_decisions_total`.
pub const DECISIONS: &str = "mandate_decisions_total";
/// `mandate_decision_duration_seconds`.
pub const DECISION_DURATION: &str = "mandate_decision_duration_seconds";
/// `mandate_verification_cache_hits_total`.
pub const CACHE_HITS: &str = "mandate_verification_cache_hits_total";
/// `mandate_verification_cache_misses_total`.
pub const CACHE_MISSES: &str = "mandate_verification_cache_misses_total";
/// `mandate_revocation_entries`.
pub const REVOCATION_ENTRIES: &str = "mandate_revocation_entries";
/// `mandate_revocation_entries_written_total`.
pub const REVOCATION_WRITTEN: &str = "mandate_revocation_entries_written_total";
/// `mandate_restrictions_in_effect`.
pub const RESTRICTIONS_IN_EFFECT: &str = "mandate_restrictions_in_effect";
/// `mandate_restriction_entries_written_total`.
pub const RESTRICTION_WRITTEN: &str = "mandate_restriction_entries_written_total";
/// `mandate_feed_position`.
pub const FEED_POSITION: &str = "mandate_feed_position";
/// `mandate_feed_stale`.
pub const FEED_STALE: &str = "mandate_feed_stale";
/// `mandate_feed_silent_seconds`.
pub const FEED_SILENT: &str = "mandate_feed_silent_seconds";
/// `mandate_feed_behind_seconds`.
pub const FEED_BEHIND: &str = "mandate_feed_behind_seconds";
/// `mandate_feed_lag_seconds`.
pub const FEED_LAG: &str = "mandate_feed_lag_seconds";
/// `mandate_feed_interruptions_total`.
pub const FEED_INTERRUPTIONS: &str = "mandate_feed_interruptions_total";
/// `mandate_feed_entries_rejected_total`.
pub const FEED_REJECTED: &str = "mandate_feed_entries_rejected_total";
/// `mandate_audit_queue_depth`.
pub const AUDIT_QUEUE: &str = "mandate_audit_queue_depth";
/// `mandate_audit_write_duration_seconds`.
pub const AUDIT_WRITE_DURATION: &str = "mandate_audit_write_duration_seconds";
/// `mandate_audit_records_written_total`.
pub const AUDIT_WRITTEN: &str = "mandate_audit_records_written_total";
/// `mandate_audit_write_errors_total`.
pub const AUDIT_ERRORS: &str = "mandate_audit_write_errors_total";
/// `mandate_audit_publish_errors_total`.
pub const AUDIT_PUBLISH_ERRORS: &str = "mandate_audit_publish_errors_total";
/// `mandate_audit_published_seq`.
pub const AUDIT_PUBLISHED: &str = "mandate_audit_published_seq";
/// `mandate_audit_stream_forged_total`: messages on a log's own subjects
/// of the audit stream that its key did not sign (by `kind`).
pub const AUDIT_STREAM_FORGED: &str = "mandate_audit_stream_forged_total";
/// `mandate_cold_decisions_waiting`.
pub const COLD_WAITING: &str = "mandate_cold_decisions_waiting";
/// `mandate_cold_decisions_running`.
pub const COLD_RUNNING: &str = "mandate_cold_decisions_running";
/// `mandate_limit_denials_total`.
pub const LIMIT_DENIALS: &str = "mandate_limit_denials_total";
/// `mandate_limit_refunds_total`.
pub const LIMIT_REFUNDS: &str = "mandate_limit_refunds_total";

/// Registers the help text and unit of every metric above with the
/// installed recorder (call once, after installing it).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(DECISIONS, "Decisions, by outcome and denial kind.");
    describe_histogram!(
        DECISION_DURATION,
        Unit::Seconds,
        "Time to decide a request with a token."
    );
    describe_counter!(
        CACHE_HITS,
        "Decisions whose token verification came from the cache."
    );
    describe_counter!(
        CACHE_MISSES,
        "Decisions that verified every signature of the token."
    );
    describe_gauge!(
        REVOCATION_ENTRIES,
        "Entries in the revocation store (estimate)."
    );
    describe_counter!(
        REVOCATION_WRITTEN,
        "Revocation entries written to the store, by source."
    );
    describe_gauge!(
        RESTRICTIONS_IN_EFFECT,
        "Live restrictions in effect (not lifted) in the store."
    );
    describe_counter!(
        RESTRICTION_WRITTEN,
        "Restrictions and lifts written to the store, by source."
    );
    describe_gauge!(FEED_POSITION, "Last revocation feed sequence applied.");
    describe_gauge!(FEED_STALE, "1 while the revocation feed is stale, else 0.");
    describe_gauge!(
        FEED_SILENT,
        Unit::Seconds,
        "Time since the revocation feed last answered."
    );
    describe_gauge!(
        FEED_BEHIND,
        Unit::Seconds,
        "Time since every revocation feed entry published before it was applied."
    );
    describe_histogram!(
        FEED_LAG,
        Unit::Seconds,
        "Time from publication to application of a feed entry."
    );
    describe_counter!(
        FEED_INTERRUPTIONS,
        "Times the revocation feed connection failed or broke."
    );
    describe_counter!(
        FEED_REJECTED,
        "Feed messages skipped (not an entry signed by a trusted revocation key), by reason."
    );
    describe_gauge!(AUDIT_QUEUE, "Decisions queued for the audit writer.");
    describe_histogram!(
        AUDIT_WRITE_DURATION,
        Unit::Seconds,
        "Time to sign and write one batch of audit records."
    );
    describe_counter!(AUDIT_WRITTEN, "Audit records written.");
    describe_counter!(AUDIT_ERRORS, "Failed audit batch writes (retried).");
    describe_counter!(
        AUDIT_PUBLISH_ERRORS,
        "Failed rounds of publishing audit checkpoints to the audit stream (retried)."
    );
    describe_gauge!(
        AUDIT_PUBLISHED,
        "The last audit record covered by a checkpoint published to the audit stream."
    );
    describe_counter!(
        AUDIT_STREAM_FORGED,
        "Messages on this log's audit stream subjects not signed by its key (set aside), by kind."
    );
    describe_gauge!(COLD_WAITING, "Cold decisions waiting for a thread.");
    describe_gauge!(COLD_RUNNING, "Cold decisions running.");
    describe_counter!(
        LIMIT_DENIALS,
        "Requests denied by a usage limit, by reason (exceeded, unavailable, unmeterable)."
    );
    describe_counter!(
        LIMIT_REFUNDS,
        "Usage charges given back for requests then denied, by outcome (refunded, failed)."
    );
    // At zero from the start, so a rate over them works from the first
    // scrape.
    metrics::counter!(CACHE_HITS).increment(0);
    metrics::counter!(CACHE_MISSES).increment(0);
}

/// The label values of `decision`: (outcome, denial kind).
pub fn labels(decision: &Decision) -> (&'static str, &'static str) {
    match (decision.decision, &decision.denial) {
        (Outcome::Allow, _) => ("allow", ""),
        (Outcome::NeedsApproval, _) => ("needs_approval", "needs_approval"),
        (Outcome::Deny, d) => ("deny", d.as_ref().map_or("", |d| d.kind.as_str())),
    }
}

/// A decision made; `took` when a token was read. The labels are
/// `&'static str` (no allocation per decision).
pub(crate) fn decided(decision: &Decision, took: Option<Duration>) {
    let (outcome, kind) = labels(decision);
    metrics::counter!(DECISIONS, "outcome" => outcome, "kind" => kind).increment(1);
    if let Some(t) = took {
        metrics::histogram!(DECISION_DURATION).record(t.as_secs_f64());
    }
}

/// Why a usage limit denied a request (the `reason` label of
/// [`LIMIT_DENIALS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitDenial {
    /// No room left: `limit_exceeded`.
    Exceeded,
    /// No meter, or it failed: `limit_unavailable`.
    Unavailable,
    /// A budget that cannot meter the request, or a cost over a whole
    /// window: `not_allowed`.
    Unmeterable,
}

/// A request denied by a usage limit.
pub(crate) fn limit_denied(why: LimitDenial) {
    let reason = match why {
        LimitDenial::Exceeded => "exceeded",
        LimitDenial::Unavailable => "unavailable",
        LimitDenial::Unmeterable => "unmeterable",
    };
    metrics::counter!(LIMIT_DENIALS, "reason" => reason).increment(1);
}

/// A charge given back (`ok`) or not.
pub(crate) fn limit_refunded(ok: bool) {
    let outcome = if ok { "refunded" } else { "failed" };
    metrics::counter!(LIMIT_REFUNDS, "outcome" => outcome).increment(1);
}

/// A verification-cache lookup for a decision.
pub(crate) fn cache_lookup(hit: bool) {
    if hit {
        metrics::counter!(CACHE_HITS).increment(1);
    } else {
        metrics::counter!(CACHE_MISSES).increment(1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::DenialKind;

    /// The label is the kind's name in a decision's JSON, for every kind.
    #[test]
    fn kind_labels_are_the_serialized_names() {
        use DenialKind::*;
        for k in [
            InvalidRequest,
            MissingToken,
            MalformedToken,
            BadSignature,
            UnknownRootKey,
            BrokenChain,
            DepthExceeded,
            Expired,
            Revoked,
            RevocationUnavailable,
            NotAllowed,
            Evaluation,
            NeedsApproval,
            ApprovalMismatch,
            ApprovalExpired,
            ApprovalWrongApprover,
            ApprovalReplayed,
            ProofMissing,
            ProofInvalid,
            ReplayRecordUnavailable,
            LimitExceeded,
            LimitUnavailable,
        ] {
            assert_eq!(
                serde_json::to_value(k).unwrap().as_str().unwrap(),
                k.as_str()
            );
        }
    }
}
