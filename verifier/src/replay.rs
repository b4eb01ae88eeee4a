//! What may be used only once: approvals (by the approver's signature) and
//! proof-of-possession nonces. [`SingleUse`] is what the verifier needs;
//! [`ReplayGuard`] (feature `rocksdb`) records uses durably in RocksDB, so a
//! replay is refused even after a restart. `spend_bucket::FleetSingleUse`
//! (feature `feed`) spends them once across a fleet of verifiers, in a
//! JetStream key-value bucket, with a `ReplayGuard` as its cache.

use crate::error::VerifierError;
#[cfg(feature = "rocksdb")]
use rocksdb::{IteratorMode, Options, WriteOptions, DB};
#[cfg(feature = "rocksdb")]
use std::path::{Path, PathBuf};
#[cfg(feature = "rocksdb")]
use std::sync::Mutex;
use time::OffsetDateTime;

/// How a proof-of-possession nonce's key begins in the record (an
/// approval's begins `approval-signature:`): a fleet record can keep nonces
/// apart from approvals by it.
pub const NONCE_KEY_PREFIX: &[u8] = b"nonce:";

/// A record of what was used, where a use is recorded at most once: the
/// verifier spends approvals and proof nonces through it. Implemented by
/// [`ReplayGuard`]; a fleet-wide record implements it too.
pub trait SingleUse: Send + Sync {
    /// Records the use of `key` (kept until `until`), unless it was used
    /// before; checking and recording are one atomic step. With `synced`,
    /// the record is durable before [`Use::First`] is returned.
    fn use_once(
        &self,
        key: &[u8],
        until: OffsetDateTime,
        synced: bool,
    ) -> Result<Use, VerifierError>;

    /// Whether spending a proof nonce may wait on the network (a fleet
    /// record spending nonces in a shared bucket): servers then never
    /// decide holder-bound requests on their async threads. Default: no.
    fn remote_nonces(&self) -> bool {
        false
    }
}

/// The record of used approvals and nonces. Each entry is kept until the
/// time it could still be presented (an approval's expiry, a nonce's
/// timestamp plus the clock-skew allowance), then can be pruned.
#[cfg(feature = "rocksdb")]
pub struct ReplayGuard {
    db: DB,
    path: PathBuf,
    sync: WriteOptions,
    /// Check-then-record must be one step: two requests racing with the same
    /// approval must not both see it unused.
    lock: Mutex<()>,
}

#[cfg(feature = "rocksdb")]
impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a use was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// First use: now recorded (synced).
    First,
    /// Already used before.
    Replayed,
}

#[cfg(feature = "rocksdb")]
impl SingleUse for ReplayGuard {
    fn use_once(
        &self,
        key: &[u8],
        until: OffsetDateTime,
        synced: bool,
    ) -> Result<Use, VerifierError> {
        ReplayGuard::use_once(self, key, until, synced)
    }
}

#[cfg(feature = "rocksdb")]
impl ReplayGuard {
    /// Opens (creating if needed) the record at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<ReplayGuard, VerifierError> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, &path).map_err(|e| VerifierError::from_rocksdb(&path, e))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(ReplayGuard {
            db,
            path,
            sync,
            lock: Mutex::new(()),
        })
    }

    /// Records the use of `key` (kept until `until`), unless it was used
    /// before. With `synced`, the record is on disk before this returns
    /// [`Use::First`] (approvals: rare, and valid for minutes); without, it
    /// is in the write-ahead log, which survives a crash of the process but
    /// not of the machine (proof nonces: one per request, and useless after
    /// the clock-skew window anyway).
    pub fn use_once(
        &self,
        key: &[u8],
        until: OffsetDateTime,
        synced: bool,
    ) -> Result<Use, VerifierError> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let seen = self
            .db
            .get_pinned(key)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        if seen.is_some() {
            return Ok(Use::Replayed);
        }
        let plain = WriteOptions::default();
        let opts = if synced { &self.sync } else { &plain };
        self.db
            .put_opt(key, until.unix_timestamp().to_be_bytes(), opts)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        Ok(Use::First)
    }

    /// Whether `key` was used (is still recorded).
    pub fn contains(&self, key: &[u8]) -> Result<bool, VerifierError> {
        let seen = self
            .db
            .get_pinned(key)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        Ok(seen.is_some())
    }

    /// Deletes entries that can no longer be presented; returns how many.
    pub fn prune(&self, now: OffsetDateTime) -> Result<usize, VerifierError> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        for item in self.db.iterator(IteratorMode::Start) {
            let (key, value) = item.map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
            let until = <[u8; 8]>::try_from(value.as_ref())
                .map(i64::from_be_bytes)
                .unwrap_or(i64::MAX);
            if until < now.unix_timestamp() {
                self.db
                    .delete(&key)
                    .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
