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
    /// For `needs_approval`: what must be approved, by whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalNeeded>,
    /// The ids of the live restrictions (SPEC §19) in effect for the chain
    /// when the request was decided; empty when none was (or the chain was
    /// not read that far).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<String>,
}

/// What a `needs_approval` decision asks for: an approval block signed by
/// one of `approvers` naming `digest`, appended to the token (§14).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApprovalNeeded {
    /// Who must approve (all of them, when several hops ask).
    pub approvers: Vec<Approver>,
    /// The request's digest (hex): what the approval must name.
    pub digest: String,
    /// A suggested end of the approval's validity (short).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    /// The token's third-party block request (base64), which the approver
    /// signs the approval block against: it binds the approval to this token.
    pub third_party_request: String,
}

/// An approver an approval rule names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approver {
    /// Its name (e.g. `finance`).
    pub name: String,
    /// Its key, `ed25519/<hex>`.
    pub key: String,
    /// The hop whose rule asks for it.
    pub hop: usize,
}

/// Allow, deny, or needs approval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every check of every hop passed.
    Allow,
    /// Something failed; see [`Denial`].
    Deny,
    /// Allowed by every grant, but an approval rule asks for an approval not
    /// attached yet; see [`Decision::approval`].
    NeedsApproval,
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
    /// For `limit_exceeded`: which usage limit, its usage and when it frees
    /// up (SPEC §18.4). Boxed: most denials have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Box<LimitDenial>>,
    /// For `restricted`: the live restriction that denies, who made it,
    /// when and why (SPEC §19.5). Boxed: most denials have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<Box<RestrictionDenial>>,
}

/// The live restriction a `restricted` denial names (SPEC §19.5).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestrictionDenial {
    /// The restriction's id.
    pub id: String,
    /// The rule that denies, in its textual form (e.g. `deny send:/api/slack/**`).
    pub rule: String,
    /// What the restriction targets (e.g. `revocation id …`, `principal "user:alice"`).
    pub target: String,
    /// Who made it.
    pub by: String,
    /// When (RFC 3339).
    pub restricted_at: String,
    /// Why, in their words.
    pub reason: String,
}

/// The usage limit a `limit_exceeded` denial names (SPEC §18.4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitDenial {
    /// The limit's canonical text, e.g. `send_email 10/1h`.
    pub limit: String,
    /// A count or a budget.
    pub kind: LimitKind,
    /// The hop that set it (0 = root).
    pub hop: usize,
    /// Units used in the window the request fell in.
    pub used: u64,
    /// The limit's maximum per window.
    pub max: u64,
    /// What the request would have added (1 for a count).
    pub cost: u64,
    /// When that window ends and the limit frees up (RFC 3339).
    pub window_end: String,
    /// Seconds from the request's time to `window_end` (HTTP `Retry-After`).
    pub retry_after: u64,
}

/// Whether a limit counts requests or sums a parameter (SPEC §18.1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Each matching request counts 1.
    Count,
    /// Each matching request counts its integer parameter.
    Budget,
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
    /// An approval rule asks for an approval the token does not carry yet
    /// (the outcome is `needs_approval`).
    NeedsApproval,
    /// The attached approval names another request (other action, resource
    /// or parameters).
    ApprovalMismatch,
    /// The attached approval has expired.
    ApprovalExpired,
    /// The attached approval is signed by a key the rule does not name.
    ApprovalWrongApprover,
    /// The attached approval was already used: approvals are single-use.
    ApprovalReplayed,
    /// The token requires proof of possession and the request carries none.
    ProofMissing,
    /// The proof of possession is stale, replayed, malformed, or not signed
    /// by the final holder's key.
    ProofInvalid,
    /// The record of used approvals and nonces is missing or cannot be
    /// read; denied to fail closed.
    ReplayRecordUnavailable,
    /// A usage limit on the path has no room left in its window (SPEC
    /// §18.4); [`Denial::limit`] says which, the usage and when it frees up.
    LimitExceeded,
    /// The chain sets usage limits and this verifier cannot count them (no
    /// usage store, or it cannot be read or written); denied to fail closed.
    LimitUnavailable,
    /// A live restriction on the chain (SPEC §19) denies the request;
    /// [`Denial::restriction`] names it.
    Restricted,
}

impl DenialKind {
    /// The kind's name as in a decision's JSON (`not_allowed`, …): the
    /// label of the decision metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialKind::InvalidRequest => "invalid_request",
            DenialKind::MissingToken => "missing_token",
            DenialKind::MalformedToken => "malformed_token",
            DenialKind::BadSignature => "bad_signature",
            DenialKind::UnknownRootKey => "unknown_root_key",
            DenialKind::BrokenChain => "broken_chain",
            DenialKind::DepthExceeded => "depth_exceeded",
            DenialKind::Expired => "expired",
            DenialKind::Revoked => "revoked",
            DenialKind::RevocationUnavailable => "revocation_unavailable",
            DenialKind::NotAllowed => "not_allowed",
            DenialKind::Evaluation => "evaluation",
            DenialKind::NeedsApproval => "needs_approval",
            DenialKind::ApprovalMismatch => "approval_mismatch",
            DenialKind::ApprovalExpired => "approval_expired",
            DenialKind::ApprovalWrongApprover => "approval_wrong_approver",
            DenialKind::ApprovalReplayed => "approval_replayed",
            DenialKind::ProofMissing => "proof_missing",
            DenialKind::ProofInvalid => "proof_invalid",
            DenialKind::ReplayRecordUnavailable => "replay_record_unavailable",
            DenialKind::LimitExceeded => "limit_exceeded",
            DenialKind::LimitUnavailable => "limit_unavailable",
            DenialKind::Restricted => "restricted",
        }
    }
}

impl Decision {
    /// True when the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.decision == Outcome::Allow
    }

    /// True when the only thing missing is an approval.
    pub fn needs_approval(&self) -> bool {
        self.decision == Outcome::NeedsApproval
    }

    pub(crate) fn allow(request: Request, chain: Arc<Chain>) -> Decision {
        Decision {
            decision: Outcome::Allow,
            denial: None,
            request,
            chain: Some(chain),
            approval: None,
            restrictions: Vec::new(),
        }
    }

    pub(crate) fn deny(request: Request, chain: Option<Arc<Chain>>, denial: Denial) -> Decision {
        Decision {
            decision: Outcome::Deny,
            denial: Some(denial),
            request,
            chain,
            approval: None,
            restrictions: Vec::new(),
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
            limit: None,
            restriction: None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.denial, self.decision) {
            (None, _) => write!(f, "allowed")?,
            (Some(d), Outcome::NeedsApproval) => write!(f, "needs approval: {}", d.reason)?,
            (Some(d), _) => write!(f, "denied: {}", d.reason)?,
        }
        if let Some(chain) = &self.chain {
            write!(f, " (chain: {chain})")?;
        }
        Ok(())
    }
}
