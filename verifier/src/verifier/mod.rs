//! The authorization pipeline: [`Verifier`], its configuration, and the
//! steps of a decision (SPEC §7):
//!
//! - `authorize`: the entry points (a request, an approver's view, inline);
//! - `pipeline`: signatures and chain (steps 1–2), then revocation, proof of
//!   possession, Datalog and approvals (steps 6–8);
//! - `denials`: each failure in words.

mod authorize;
mod denials;
mod pipeline;

use crate::audit::AuditSink;
use crate::cache::{CacheOptions, VerificationCache};
use crate::error::VerifierError;
use crate::holder::DEFAULT_PROOF_SKEW;
use crate::keys::RootKeys;
use crate::limits::Limits;
#[cfg(feature = "rocksdb")]
use crate::replay::ReplayGuard;
use crate::replay::SingleUse;
use crate::revocation::{Revocation, RevocationList};
use crate::usage::UsageMeter;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Decides requests made with Mandate tokens. Cheap to clone and share.
///
/// Without [`Verifier::with_revocations`] no revocation list is consulted:
/// every deployment that can revoke (all but throwaway tests) should set one.
#[derive(Clone)]
pub struct Verifier {
    keys: RootKeys,
    limits: Limits,
    revocations: Option<Arc<dyn RevocationList>>,
    cache: Option<VerificationCache>,
    audit: Option<Arc<dyn AuditSink>>,
    replay: Option<Arc<dyn SingleUse>>,
    usage: Option<Arc<dyn UsageMeter>>,
    proof_skew: Duration,
    policy_notes: Vec<String>,
    policy_hash: Arc<str>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("limits", &self.limits)
            .field("revocations", &self.revocations.is_some())
            .field("cache", &self.cache.is_some())
            .field("audit", &self.audit.is_some())
            .field("usage", &self.usage.is_some())
            .field("policy_hash", &self.policy_hash)
            .finish()
    }
}

impl Verifier {
    /// A verifier trusting `keys`, with default [`Limits`], no revocation
    /// list, no cache and no audit sink.
    pub fn new(keys: RootKeys) -> Verifier {
        let mut v = Verifier {
            keys,
            limits: Limits::default(),
            revocations: None,
            cache: None,
            audit: None,
            replay: None,
            usage: None,
            proof_skew: DEFAULT_PROOF_SKEW,
            policy_notes: Vec::new(),
            policy_hash: Arc::from(""),
        };
        v.rehash();
        v
    }

    /// Consults `list` on every authorization, before Datalog runs: every
    /// block's revocation id, the token family and every agent key of the
    /// chain. A list that cannot be read denies (fails closed).
    pub fn with_revocations(mut self, list: impl RevocationList + 'static) -> Verifier {
        self.revocations = Some(Arc::new(list));
        self.connect_cache();
        self.rehash();
        self
    }

    /// Keeps what the signature and chain checks established about each
    /// token, by a hash of its bytes, within `options`' bounds: a token seen
    /// again skips them. Revocation and Datalog still run on every request,
    /// and a revocation the list takes in (a local revoke or the feed) drops
    /// the cached tokens it concerns.
    pub fn with_cache(mut self, options: CacheOptions) -> Verifier {
        self.cache = Some(VerificationCache::new(options));
        self.connect_cache();
        self
    }

    /// Records used approvals and proof nonces in `guard`, so each is
    /// accepted once. Without one, a request that needs an approval or a
    /// proof of possession is denied (`replay_record_unavailable`).
    #[cfg(feature = "rocksdb")]
    pub fn with_replay_guard(self, guard: Arc<ReplayGuard>) -> Verifier {
        self.with_single_use(guard)
    }

    /// [`Verifier::with_replay_guard`] with any record of uses (e.g. one
    /// shared by a fleet of verifiers).
    pub fn with_single_use(mut self, record: Arc<dyn SingleUse>) -> Verifier {
        self.replay = Some(record);
        self
    }

    /// Counts usage limits (SPEC §18) in `meter`: e.g. a `UsageStore`
    /// (RocksDB, this process; feature `rocksdb`), or a fleet's shared
    /// counters. A request of a chain with limits that its grants
    /// allow is charged against every limit on its path, all or nothing,
    /// before approvals are spent, and given back if spending them denies.
    /// Without a meter every request of a chain with limits is denied
    /// (`limit_unavailable`); chains without limits never need one.
    pub fn with_usage(mut self, meter: Arc<dyn UsageMeter>) -> Verifier {
        self.usage = Some(meter);
        self.rehash();
        self
    }

    /// How far a proof's timestamp may be from the verifier's clock, either
    /// way. Default 60 s.
    pub fn with_proof_skew(mut self, skew: Duration) -> Verifier {
        self.proof_skew = skew;
        self.rehash();
        self
    }

    /// Sends every decision to `sink` (e.g. an [`crate::audit::AuditLog`]).
    pub fn with_audit(mut self, sink: impl AuditSink + 'static) -> Verifier {
        self.audit = Some(Arc::new(sink));
        self
    }

    /// Adds `note` (e.g. the HTTP request mapping) to what the policy hash
    /// covers.
    pub fn with_policy_note(mut self, note: &str) -> Verifier {
        self.policy_notes.push(note.to_string());
        self.rehash();
        self
    }

    /// Replaces the Datalog run limits.
    pub fn with_limits(mut self, limits: Limits) -> Verifier {
        self.limits = limits;
        self.rehash();
        self
    }

    /// The run limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// SHA-256 (hex) of this verifier's policy: its root keys, run limits,
    /// whether it consults a revocation list, whether it counts usage
    /// limits, and its policy notes. Audit
    /// records carry it, so an auditor can tell which policy decided.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }

    /// Whether the revocation list can be consulted now: `Ok` when it
    /// answers (or none is set), else why every request is being denied
    /// (e.g. a stale feed). For health endpoints.
    pub fn revocations_ready(&self) -> Result<(), VerifierError> {
        match &self.revocations {
            None => Ok(()),
            Some(list) => list.first_revoked(&[]).map(|_| ()),
        }
    }

    /// `Ok` while the audit sink records decisions (or there is none).
    pub fn audit_health(&self) -> Result<(), VerifierError> {
        match &self.audit {
            None => Ok(()),
            Some(a) => a.health(),
        }
    }

    /// Resolves once every decision this verifier recorded before the call
    /// is durable in its audit sink (at once without one), or with the
    /// error that keeps it from being so. A server answers a decision only
    /// after this resolves `Ok` (group commit: concurrent decisions share
    /// one write), and answers 503 on `Err`. `.await` it, or
    /// [`crate::audit::AuditDurable::wait`] where blocking is allowed.
    pub fn audit_durable(&self) -> crate::audit::AuditDurable {
        match &self.audit {
            None => crate::audit::AuditDurable::ready(Ok(())),
            Some(a) => a.durable(),
        }
    }

    /// Tokens in the verification cache (0 without one). Runs the cache's
    /// pending maintenance first, so it is exact but not free.
    pub fn cached_tokens(&self) -> u64 {
        self.cache.as_ref().map_or(0, VerificationCache::len)
    }

    fn connect_cache(&self) {
        if let (Some(cache), Some(list)) = (&self.cache, &self.revocations) {
            let cache = cache.clone();
            list.subscribe(Arc::new(move |entries: &[Revocation]| cache.prune(entries)));
        }
    }

    fn rehash(&mut self) {
        let mut h = Sha256::new();
        h.update(b"mandate-policy-v1\n");
        h.update(self.keys.describe().as_bytes());
        h.update(
            format!(
                "\nlimits facts={} iterations={} time_us={}\nrevocations={}\nproof_skew_s={}\n",
                self.limits.max_facts,
                self.limits.max_iterations,
                self.limits.max_time.as_micros(),
                self.revocations.is_some(),
                self.proof_skew.as_secs()
            )
            .as_bytes(),
        );
        // Only when set: the hash of a verifier without one is unchanged.
        if self.usage.is_some() {
            h.update(b"usage_limits=enforced\n");
        }
        for note in &self.policy_notes {
            h.update(b"note\n");
            h.update(note.as_bytes());
            h.update(b"\n");
        }
        self.policy_hash = Arc::from(hex::encode(h.finalize()).as_str());
    }
}

/// The evaluation cost (SPEC §6 rule 1c, the part each request pays) up to
/// which a cached token is decided inline by
/// [`Verifier::try_authorize_inline`], and its Datalog loaded once into the
/// cache: a canonical chain of a few hops costs a few thousand units, and a
/// decision of this cost takes well under a millisecond.
pub const INLINE_COST: u64 = 20_000;

/// What a request must pass: the grants of every hop (an action on a
/// resource), or only the token itself (protocol housekeeping that acts on
/// nothing, such as an MCP `ping`; SPEC §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Check {
    /// Every step of SPEC §7: the token, its revocation, the holder's proof,
    /// every hop's Datalog and approvals. The default.
    #[default]
    Grant,
    /// The token only: signatures and chain, revocation (every block, the
    /// family, every agent key), the holder's proof when the chain requires
    /// one, and every hop's expiry. No grant is consulted and no approval
    /// spent: an allow says who is asking, not that any action is allowed.
    /// A chain with raw Datalog checks (which may forbid anything) is
    /// decided as with [`Check::Grant`].
    Token,
}

/// Why a request is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To act on it: proofs checked, approvals spent.
    Request,
    /// To show an approver (see [`Verifier::decide_for_approver`]).
    Approval,
    /// A token-only check ([`Check::Token`]): proofs checked, no Datalog.
    Token,
}

impl From<Check> for Purpose {
    fn from(check: Check) -> Purpose {
        match check {
            Check::Grant => Purpose::Request,
            Check::Token => Purpose::Token,
        }
    }
}
