//! The one error type of `mandate-attenuate`.

/// Why a hop could not be appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttenuateError {
    /// The delegation's grant, agent id or key is malformed.
    #[error(transparent)]
    Spec(#[from] mandate_spec::SpecError),
    /// The token's blocks do not form a valid chain; it cannot be extended.
    #[error("the token's chain is invalid: {0}")]
    Chain(#[from] mandate_spec::ChainError),
    /// The signing key is not the one the chain delegated to: only the
    /// current holder can delegate. Use the holder agent's key.
    #[error("this key ({given}) does not hold the token: it was delegated to agent {holder_agent:?} with key {holder_key}")]
    NotHolder {
        /// The agent that holds the token.
        holder_agent: String,
        /// Its key.
        holder_key: String,
        /// The key that was given.
        given: String,
    },
    /// The root's `max_depth` forbids another hop.
    #[error("the root allows at most {max} delegation hops; this token has used them all")]
    DepthExceeded {
        /// The root's limit.
        max: u32,
    },
    /// The chain has already expired: nothing can be delegated from it.
    #[error("the token has expired; ask the issuer for a new one")]
    Expired,
    /// `narrow` was called with no grant and no ttl.
    #[error("nothing to narrow: give a grant or a ttl")]
    NothingToNarrow,
    /// Biscuit refused the token or the block (not a token, truncated, …).
    #[error("biscuit: {0}")]
    Biscuit(String),
}
