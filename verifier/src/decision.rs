//! What the verifier answers: allow or deny, why, and the delegation chain.

use mandate_spec::{Chain, Request};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The outcome of one authorization, ready for an HTTP body, a CLI message or
/// an audit record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Decision {
    /// `allow` or `deny`.
    pub decision: Outcome,
    /// Why the request was denied (absent when allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    /// The request as the verifier saw it.
    pub request: Request,
    /// The delegation chain, when the token could be read far enough
    /// (shared: a cached token's chain is not copied per request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<Arc<Chain>>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every check of every hop passed.
    Allow,
    /// Something failed; see [`Denial`].
    Deny,
}

/// Why a request was denied, structured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Denial {
    /// The class of failure.
    pub kind: DenialKind,
    /// The hop responsible, when one is (0 = root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<usize>,
    /// The token block responsible, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
    /// The agent of that hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The reason in words: which hop, which constraint, what the request had.
    pub reason: String,
}

/// Classes of denial. New classes may be added (revocation, approval, …).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenialKind {
    /// The request itself is malformed (bad action name, non-canonical
    /// resource, reserved parameter).
    InvalidRequest,
    /// No token was presented (HTTP: no `Authorization: Bearer`).
    MissingToken,
    /// The token does not decode (not a token, truncated, too large).
    MalformedToken,
    /// A signature does not verify (forged or altered block, wrong root key).
    BadSignature,
    /// The token names a root key id this verifier does not know.
    UnknownRootKey,
    /// The blocks do not form a valid Mandate chain (a hop signed by the wrong
    /// agent key, a first-party block naming a delegate, missing root facts).
    BrokenChain,
    /// More delegation hops than the root's `max_depth`.
    DepthExceeded,
    /// A hop (or the root) has expired.
    Expired,
    /// A block, the token family or an agent key in the chain is on the
    /// revocation list.
    Revoked,
    /// The revocation list could not be consulted (missing, corrupt, I/O
    /// error); denied to fail closed.
    RevocationUnavailable,
    /// A hop's grant does not allow the request.
    NotAllowed,
    /// Datalog evaluation failed or exceeded its limits; denied to fail closed.
    Evaluation,
}

impl Decision {
    /// True when the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.decision == Outcome::Allow
    }

    pub(crate) fn allow(request: Request, chain: Arc<Chain>) -> Decision {
        Decision {
            decision: Outcome::Allow,
            denial: None,
            request,
            chain: Some(chain),
        }
    }

    pub(crate) fn deny(request: Request, chain: Option<Arc<Chain>>, denial: Denial) -> Decision {
        Decision {
            decision: Outcome::Deny,
            denial: Some(denial),
            request,
            chain,
        }
    }
}

impl Denial {
    /// A denial of `kind` naming no hop.
    pub fn new(kind: DenialKind, reason: impl Into<String>) -> Denial {
        Denial {
            kind,
            hop: None,
            block: None,
            agent: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.denial {
            None => write!(f, "allowed")?,
            Some(d) => write!(f, "denied: {}", d.reason)?,
        }
        if let Some(chain) = &self.chain {
            write!(f, " (chain: {chain})")?;
        }
        Ok(())
    }
}
