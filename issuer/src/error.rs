//! The one error type of `mandate-issuer`.

use std::time::Duration;

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The request's grant, principal, agent id or key is malformed: fix the
    /// field the message names.
    #[error(transparent)]
    Spec(#[from] mandate_spec::SpecError),
    /// The time-to-live is zero or longer than a year.
    #[error("ttl {0:?} must be positive and at most one year")]
    Ttl(Duration),
    /// The key set is not usable (e.g. the current key id is missing).
    #[error("root keys: {0}")]
    Keys(String),
    /// Biscuit refused to build the token (should not happen with valid input).
    #[error("biscuit: {0}")]
    Biscuit(String),
}
