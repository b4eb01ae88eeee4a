//! Reading a live audit log by position: a RocksDB secondary instance of
//! the writer's store that catches up with it on demand, so a reader (the
//! checkpoint publisher, the issuer service's decisions page) reads only
//! the records it asks for, by sequence number, instead of reopening and
//! re-reading the whole log.

use super::log::{key_of, CHECKPOINTS};
use super::verify::{parse_entry, Place, ReadEntry};
use crate::error::VerifierError;
use rocksdb::{Direction, IteratorMode, Options, DB};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A reader of the audit log at a path, beside its running writer (or
/// without one). A checkpoint is written with or after the records it
/// covers, never before, so after [`AuditTail::catch_up`] a reader sees
/// every record a checkpoint it sees covers.
pub struct AuditTail {
    db: DB,
    path: PathBuf,
    /// The secondary instance's own directory (its info log), removed on drop.
    secondary: PathBuf,
}

impl std::fmt::Debug for AuditTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTail")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for AuditTail {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.secondary);
    }
}

fn secondary_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "mandate-audit-tail-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl AuditTail {
    /// Opens the log at `path` for reading (it must exist and hold the
    /// checkpoints column family: a log written by this version).
    pub fn open(path: impl AsRef<Path>) -> Result<AuditTail, VerifierError> {
        let path = path.as_ref().to_path_buf();
        if !path.join("CURRENT").exists() {
            return Err(VerifierError::AuditMissing { path });
        }
        let mut opts = Options::default();
        // Required of a secondary instance.
        opts.set_max_open_files(-1);
        let secondary = secondary_dir();
        let db = DB::open_cf_as_secondary(&opts, &path, &secondary, ["default", CHECKPOINTS])
            .map_err(|e| VerifierError::from_rocksdb(&path, e))?;
        Ok(AuditTail {
            db,
            path,
            secondary,
        })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sees everything the writer has written so far.
    pub fn catch_up(&self) -> Result<(), VerifierError> {
        self.db
            .try_catch_up_with_primary()
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily, VerifierError> {
        self.db
            .cf_handle(CHECKPOINTS)
            .ok_or_else(|| VerifierError::Store {
                path: self.path.clone(),
                detail: "the audit log has no checkpoints column family".into(),
            })
    }

    /// The last record's sequence number (0: no record).
    pub fn last_seq(&self) -> Result<u64, VerifierError> {
        match self.db.iterator(IteratorMode::End).next() {
            None => Ok(0),
            Some(Err(e)) => Err(VerifierError::from_rocksdb(&self.path, e)),
            Some(Ok((k, _))) => Ok(seq_of(&k)),
        }
    }

    /// Up to `limit` stored record lines after record `after`, in order,
    /// each with its sequence number (exactly the bytes stored).
    pub fn records_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, VerifierError> {
        let from = key_of(after.saturating_add(1));
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&from, Direction::Forward))
            .take(limit)
        {
            let (k, v) = item.map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
            out.push((seq_of(&k), v.to_vec()));
        }
        Ok(out)
    }

    /// The stored checkpoint covering the highest record at or before
    /// `seq` (exactly the bytes stored), with that record's number.
    pub fn checkpoint_at_or_before(
        &self,
        seq: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, VerifierError> {
        let cf = self.cf()?;
        let from = key_of(seq);
        match self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Reverse))
            .next()
        {
            None => Ok(None),
            Some(Err(e)) => Err(VerifierError::from_rocksdb(&self.path, e)),
            Some(Ok((k, v))) => Ok(Some((seq_of(&k), v.to_vec()))),
        }
    }

    /// The newest checkpoint stored, with the record it covers.
    pub fn last_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, VerifierError> {
        self.checkpoint_at_or_before(u64::MAX)
    }

    /// Records newest first, starting at record `before - 1` (`None`: the
    /// last record), reading at most `scan` of them: a page of the log that
    /// costs what it shows, whatever the log's length.
    pub fn newest(
        &self,
        before: Option<u64>,
        scan: usize,
    ) -> Result<Vec<ReadEntry>, VerifierError> {
        let start = before.map(|b| key_of(b.saturating_sub(1)));
        let mode = match &start {
            Some(k) => IteratorMode::From(k, Direction::Reverse),
            None => IteratorMode::End,
        };
        let mut out = Vec::new();
        if before == Some(0) || before == Some(1) {
            return Ok(out);
        }
        for item in self.db.iterator(mode).take(scan) {
            let (k, v) = item.map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
            out.push((Place::Key(seq_of(&k)), parse_entry(&v)));
        }
        Ok(out)
    }
}

fn seq_of(key: &[u8]) -> u64 {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .unwrap_or(u64::MAX)
}
