//! Datalog run limits: a backstop behind the cost bound.

use std::time::Duration;

/// Datalog run limits applied to every authorization: a backstop.
///
/// What a decision can cost is bounded by the token's structure before any
/// Datalog runs (SPEC §6 rule 1c: at most [`mandate_spec::MAX_BLOCKS`]
/// blocks, no rules, and a cost bound over every check query under
/// [`mandate_spec::MAX_COST`]); the worst token that passes is decided in a
/// few milliseconds (`cargo bench -p mandate-tests --bench worst_case`). These
/// limits therefore never decide anything on a healthy verifier: the time
/// limit is set far above the worst case, so that a busy machine (every core
/// saturated) never turns a legitimate request into a spurious denial.
/// biscuit-auth's own default (1 ms) did exactly that under load. A limit
/// hit is a denial ([`DenialKind::Evaluation`]), never an allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most facts the evaluation may derive to. Token blocks carry no rules,
    /// so nothing is derived; the token's own facts are bounded by its size.
    /// Default 1 000.
    pub max_facts: u64,
    /// Most rule-application rounds. Default 100.
    pub max_iterations: u64,
    /// Most wall-clock time for the Datalog run. Default 1 s: a backstop
    /// against a bug in the cost bound, hundreds of times the worst case.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_facts: 1_000,
            max_iterations: 100,
            max_time: Duration::from_secs(1),
        }
    }
}
