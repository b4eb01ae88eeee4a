//! The one error type of `mandate-spec`.

/// Why a piece of Mandate vocabulary (a grant, a key, a duration, a token's
/// content) could not be read or encoded.
///
/// Every variant carries a message written for the person who typed the input;
/// the CLI prints it as is.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// A grant, pattern or constraint is malformed. Fix the text it quotes.
    #[error("invalid grant: {0}")]
    Grant(String),
    /// A public or private key could not be parsed, or is not Ed25519.
    /// Keys are written `ed25519/<64 hex digits>`.
    #[error("invalid key: {0}")]
    Key(String),
    /// A duration such as `30s`, `10m`, `1h` or `7d` could not be parsed.
    #[error("invalid duration: {0}")]
    Duration(String),
    /// A request (action, resource, parameter) is malformed.
    #[error("invalid request: {0}")]
    Request(String),
    /// The token is not a well-formed Mandate token: its blocks do not follow
    /// the vocabulary of the specification (section "Token layout").
    #[error("not a Mandate token: {0}")]
    Token(String),
    /// Biscuit itself refused the input (bad base64, bad signature, …).
    #[error("biscuit: {0}")]
    Biscuit(String),
}

impl From<biscuit_auth::error::Token> for SpecError {
    fn from(e: biscuit_auth::error::Token) -> Self {
        SpecError::Biscuit(e.to_string())
    }
}

impl From<biscuit_auth::error::Format> for SpecError {
    fn from(e: biscuit_auth::error::Format) -> Self {
        SpecError::Biscuit(e.to_string())
    }
}
