//! Revocation (specification §9): what a revocation targets, the list a
//! verifier consults on every authorization ([`RevocationList`]), and the
//! embedded RocksDB list ([`RevocationStore`], feature `rocksdb`, on by
//! default), which the NATS feed ([`crate::feed`]) keeps current across a
//! fleet. An embedder with its own revocation list implements
//! [`RevocationList`] (a closure will do) and need not build RocksDB.

#[cfg(feature = "rocksdb")]
mod store;

#[cfg(feature = "rocksdb")]
pub use store::{RevocationStore, StoreOptions};

pub use crate::restriction::{InEffect, RestrictionIndex};

use crate::error::VerifierError;
use mandate_spec::Chain;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;

/// What a revocation applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// A block's revocation id (hex in JSON): one hop and everything below it.
    Block(#[serde(with = "hex_bytes")] Vec<u8>),
    /// A root token id: the whole token family.
    Token(String),
    /// An agent's Ed25519 public key, 32 bytes (hex in JSON).
    Agent(#[serde(with = "hex_bytes")] Vec<u8>),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Block(b) => write!(f, "revocation id {}", hex::encode(b)),
            Target::Token(t) => write!(f, "token family {t}"),
            Target::Agent(k) => write!(f, "agent key ed25519/{}", hex::encode(k)),
        }
    }
}

/// One entry of the revocation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    pub target: Target,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Why, in the revoker's words.
    pub reason: String,
    /// Who revoked it (an operator, a service).
    pub by: String,
    /// When the revoked thing expires anyway; after that the entry can be
    /// pruned. `None` keeps the entry forever (agent keys, unknown ids).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// What the target was, for people (e.g. `hop 2 (agent "research") of token …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What is stored for one restriction id (SPEC §19): the restriction, and
/// its lift once lifted (a lift received before its restriction is kept
/// alone, so the restriction never applies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestrictionRecord {
    /// The restriction, when it was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<mandate_spec::Restriction>,
    /// Its lift, when lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted: Option<mandate_spec::Lift>,
}

/// What recording a restriction entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestrictionApplied {
    /// A new restriction is in effect.
    Added,
    /// A restriction in effect was lifted.
    Lifted,
    /// A lift of an id not seen yet was kept: that restriction will never
    /// apply.
    LiftRecorded,
    /// Nothing changed: the id was already known (a restriction received
    /// again, or one already lifted).
    Unchanged,
}

/// Called with the entries of each revocation a list takes in.
pub type RevocationObserver = Arc<dyn Fn(&[Revocation]) + Send + Sync>;

/// A revocation list the verifier consults: given targets in order, the
/// first one revoked. Implemented by [`RevocationStore`], by `Arc`s of any
/// list, and by closures (for tests or a custom store).
pub trait RevocationList: Send + Sync {
    /// The first revoked target among `targets`, with its index.
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError>;

    /// Where the list stands in the revocation feed (the last stream
    /// sequence applied), for audit records; `None` when it does not know.
    fn position(&self) -> Option<u64> {
        None
    }

    /// Asks to be told of every revocation the list takes in from now on
    /// (the verification cache prunes itself with it). Returns false when
    /// the list cannot tell (the default).
    fn subscribe(&self, _observer: RevocationObserver) -> bool {
        false
    }

    /// The live restrictions (SPEC §19) that apply to a chain whose
    /// revocation targets are `targets` (hops' agent keys at `agents`) and
    /// whose principal is `principal`. An error denies the request
    /// (`revocation_unavailable`).
    ///
    /// No default: a list wrapping another (e.g. the feed's `FeedList`
    /// over the store) that forgot to pass them on applied none, silently.
    fn restrictions(
        &self,
        targets: &[Target],
        agents: std::ops::Range<usize>,
        principal: &str,
    ) -> Result<Vec<crate::restriction::InEffect>, VerifierError>;
}

impl<T: RevocationList + ?Sized> RevocationList for Arc<T> {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        (**self).first_revoked(targets)
    }

    fn position(&self) -> Option<u64> {
        (**self).position()
    }

    fn subscribe(&self, observer: RevocationObserver) -> bool {
        (**self).subscribe(observer)
    }

    fn restrictions(
        &self,
        targets: &[Target],
        agents: std::ops::Range<usize>,
        principal: &str,
    ) -> Result<Vec<crate::restriction::InEffect>, VerifierError> {
        (**self).restrictions(targets, agents, principal)
    }
}

impl<F> RevocationList for F
where
    F: Fn(&[Target]) -> Result<Option<(usize, Revocation)>, VerifierError> + Send + Sync,
{
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        self(targets)
    }

    /// A function answers for revocations only: it holds no restriction.
    fn restrictions(
        &self,
        _targets: &[Target],
        _agents: std::ops::Range<usize>,
        _principal: &str,
    ) -> Result<Vec<crate::restriction::InEffect>, VerifierError> {
        Ok(Vec::new())
    }
}

/// The revocation targets a verifier looks up for a token, in order: every
/// block's revocation id (block i at index i, as Biscuit's
/// `revocation_identifiers` gives them), then the token family, then each
/// hop's agent key, then each approval block's signer key (§9.1: a revoked
/// approver key stops the approvals it signed).
pub fn revocation_targets(ids: Vec<Vec<u8>>, chain: &Chain) -> Vec<Target> {
    let mut targets = Vec::with_capacity(ids.len() + 1 + chain.hops.len() + chain.approvals.len());
    targets.extend(ids.into_iter().map(Target::Block));
    targets.push(Target::Token(chain.token_id.clone()));
    targets.extend(
        chain
            .hops
            .iter()
            .map(|hop| Target::Agent(hop.agent_public_key.to_bytes().to_vec())),
    );
    targets.extend(chain.approvals.iter().filter_map(|a| {
        mandate_spec::parse_public_key(&a.approver_key)
            .ok()
            .map(|k| Target::Agent(k.to_bytes().to_vec()))
    }));
    targets
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
