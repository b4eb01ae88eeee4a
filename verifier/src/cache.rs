//! The verification cache: what the signature and chain-integrity checks
//! established about a token, kept by a hash of the token's bytes, so a
//! token seen again skips them. Revocation and Datalog still run on every
//! request; a revocation prunes the entries it concerns.

use crate::prepared::Prepared;
use crate::revocation::{Revocation, Target};
use mandate_spec::Chain;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Bounds of the verification cache. Both bounds always apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// Most tokens kept (least recently used go first). Default 10 000.
    pub max_entries: u64,
    /// Longest a token stays after it was verified, however often it is
    /// used. Default 5 minutes.
    pub ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions {
            max_entries: 10_000,
            ttl: Duration::from_secs(300),
        }
    }
}

/// What signature and chain checks established about one token.
pub(crate) struct Verified {
    /// The chain, decoded from the verified blocks.
    pub(crate) chain: Arc<Chain>,
    /// Every revocation target, in the order [`crate::revocation::revocation_targets`]
    /// gives them.
    pub(crate) targets: Vec<Target>,
    /// Number of blocks (targets below this index are block ids).
    pub(crate) blocks: usize,
    /// The token's Datalog, loaded once, ready for a request's facts.
    pub(crate) prepared: Prepared,
    /// Some hop has an approval rule: requests carry their digest.
    pub(crate) has_approval_rules: bool,
    /// Some hop requires proof of possession.
    pub(crate) holder_required: bool,
    /// Some hop or narrowing block carries a raw Datalog check: no
    /// token-only pass (SPEC §7.4). Derived once, at verification.
    pub(crate) raw_datalog: bool,
    /// What each request with the token can cost: the evaluation part of
    /// its cost bound (SPEC §6 rule 1c).
    pub(crate) cost: u64,
    /// Every usage limit of the chain with its counter's name (SPEC §18),
    /// root first; empty for a chain without limits.
    pub(crate) limits: Vec<crate::usage::ChainLimit>,
}

/// A bounded, time-limited map from SHA-256(token bytes) to [`Verified`].
#[derive(Clone)]
pub(crate) struct VerificationCache {
    entries: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

impl VerificationCache {
    pub(crate) fn new(options: CacheOptions) -> VerificationCache {
        VerificationCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(options.max_entries)
                .time_to_live(options.ttl)
                .support_invalidation_closures()
                .build(),
        }
    }

    pub(crate) fn key(token: &[u8]) -> [u8; 32] {
        Sha256::digest(token).into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Arc<Verified>> {
        self.entries.get(key)
    }

    pub(crate) fn insert(&self, key: [u8; 32], verified: Arc<Verified>) {
        self.entries.insert(key, verified);
    }

    /// Drops every entry one of `revoked` concerns.
    pub(crate) fn prune(&self, revoked: &[Revocation]) {
        let targets: Vec<Target> = revoked.iter().map(|r| r.target.clone()).collect();
        // Fails only without `support_invalidation_closures`, set above.
        let _ = self
            .entries
            .invalidate_entries_if(move |_, v| v.targets.iter().any(|t| targets.contains(t)));
    }

    /// Entries now (after pending maintenance).
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
