//! What may be used only once: approvals (by their block's revocation id)
//! and proof-of-possession nonces, recorded durably in RocksDB so a replay
//! is refused even after a restart.

use crate::error::VerifierError;
use rocksdb::{IteratorMode, Options, WriteOptions, DB};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use time::OffsetDateTime;

/// The record of used approvals and nonces. Each entry is kept until the
/// time it could still be presented (an approval's expiry, a nonce's
/// timestamp plus the clock-skew allowance), then can be pruned.
pub struct ReplayGuard {
    db: DB,
    path: PathBuf,
    sync: WriteOptions,
    /// Check-then-record must be one step: two requests racing with the same
    /// approval must not both see it unused.
    lock: Mutex<()>,
}

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
