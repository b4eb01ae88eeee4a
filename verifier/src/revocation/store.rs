//! The embedded revocation list: a RocksDB database on disk, consulted on every
//! authorization before Datalog runs (specification §9).
//!
//! Three column families, one per kind of target, each keyed by the exact
//! bytes the verifier looks up:
//!
//! | column family | key | revokes |
//! |---|---|---|
//! | `block` | a block's revocation id (its 64-byte signature) | that hop and every token derived from it |
//! | `token` | a root token id (UUID text) | the whole token family |
//! | `agent` | an agent's 32-byte Ed25519 public key | every chain through that agent |
//!
//! Values are small JSON records (when, why, by whom, until when, what); the
//! target itself is the key and is not repeated in the value.
//!
//! Tuning, on purpose: lookups are point reads that almost always miss (a
//! live token is not revoked), so every column family has a full bloom filter
//! at 10 bits per key (~1 % false positives: a miss usually costs no disk
//! read), kept in memory with the index blocks by the open table readers
//! (about 1.25 bytes of filter per entry plus the index: ~40 MiB at 10M
//! entries), a shared LRU block cache (default 64 MiB) for data blocks, and
//! lz4 compression. Writes go through the WAL with `sync = true`: [`RevocationStore::revoke`]
//! returns only once the entry is on disk.

use super::{
    RestrictionApplied, RestrictionRecord, Revocation, RevocationList, RevocationObserver, Target,
};
use crate::error::VerifierError;
use crate::restriction::{InEffect, RestrictionIndex};
use mandate_spec::{Restriction, RestrictionEntry};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options,
    WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use time::OffsetDateTime;

const CF_BLOCK: &str = "block";

const CF_TOKEN: &str = "token";

const CF_AGENT: &str = "agent";

const CFS: [&str; 3] = [CF_BLOCK, CF_TOKEN, CF_AGENT];

/// Bookkeeping: the revocation feed's position.
const CF_META: &str = "meta";

/// Live restrictions and lifts (SPEC §19), keyed by restriction id.
const CF_RESTRICTION: &str = "restriction";

const ALL_CFS: [&str; 5] = [CF_BLOCK, CF_TOKEN, CF_AGENT, CF_META, CF_RESTRICTION];

const FEED_POSITION: &[u8] = b"feed_position";

/// Which stream the position counts in: its name and creation time.
const FEED_STREAM: &[u8] = b"feed_stream";

impl Target {
    fn cf(&self) -> &'static str {
        match self {
            Target::Block(_) => CF_BLOCK,
            Target::Token(_) => CF_TOKEN,
            Target::Agent(_) => CF_AGENT,
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Target::Block(b) | Target::Agent(b) => b,
            Target::Token(t) => t.as_bytes(),
        }
    }
}

/// The value stored under a target's key: a [`Revocation`] without its target.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    #[serde(rename = "at", with = "time::serde::rfc3339")]
    revoked_at: OffsetDateTime,
    reason: std::borrow::Cow<'a, str>,
    by: std::borrow::Cow<'a, str>,
    #[serde(
        default,
        rename = "exp",
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<std::borrow::Cow<'a, str>>,
}

impl Revocation {
    fn encode(&self, path: &Path) -> Result<Vec<u8>, VerifierError> {
        let stored = Stored {
            revoked_at: self.revoked_at,
            reason: self.reason.as_str().into(),
            by: self.by.as_str().into(),
            expires_at: self.expires_at,
            note: self.note.as_deref().map(Into::into),
        };
        // Fails only for dates outside RFC 3339's range: refuse the entry
        // rather than store an empty value.
        serde_json::to_vec(&stored).map_err(|e| VerifierError::Store {
            path: path.to_path_buf(),
            detail: format!("cannot record {}: {e}", self.target),
        })
    }
}

/// Tuning of a [`RevocationStore`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreOptions {
    /// Shared LRU block cache size in bytes. Default 64 MiB.
    pub block_cache_bytes: usize,
    /// Bloom filter bits per key. Default 10 (~1 % false positives).
    pub bloom_bits_per_key: f64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            block_cache_bytes: 64 << 20,
            bloom_bits_per_key: 10.0,
        }
    }
}

/// The revocation list on disk.
pub struct RevocationStore {
    db: DB,
    path: PathBuf,
    sync: WriteOptions,
    /// The feed position, as last read or written (for audit records).
    position: AtomicU64,
    observers: RwLock<Vec<RevocationObserver>>,
    /// The restrictions in effect (SPEC §19), loaded at open and kept in
    /// step with every write: a request pays hash lookups, not reads.
    restrictions: RwLock<RestrictionIndex>,
    /// Serializes restriction writes (each reads the entry it replaces).
    restricting: Mutex<()>,
}

impl std::fmt::Debug for RevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RevocationStore {
    /// Opens the store at `path` for reading and writing, creating it if
    /// missing. Fails if another process has it open for writing.
    pub fn open(path: impl AsRef<Path>) -> Result<RevocationStore, VerifierError> {
        Self::open_with(path, StoreOptions::default(), true)
    }

    /// Opens an existing store for reading and writing; a missing store is an
    /// error (a verifier must not silently start with an empty list).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<RevocationStore, VerifierError> {
        Self::open_with(path, StoreOptions::default(), false)
    }

    /// Opens with explicit options; `create` allows creating a new store.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: StoreOptions,
        create: bool,
    ) -> Result<RevocationStore, VerifierError> {
        let path = path.as_ref().to_path_buf();
        if !create && !path.join("CURRENT").exists() {
            return Err(VerifierError::Missing { path });
        }
        let (db_opts, cfs) = options_for(&options, create);
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs)
            .map_err(|e| VerifierError::from_rocksdb(&path, e))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        RevocationStore::with_db(db, path, sync)
    }

    fn with_db(
        db: DB,
        path: PathBuf,
        sync: WriteOptions,
    ) -> Result<RevocationStore, VerifierError> {
        let store = RevocationStore {
            db,
            path,
            sync,
            position: AtomicU64::new(0),
            observers: RwLock::new(Vec::new()),
            restrictions: RwLock::new(RestrictionIndex::default()),
            restricting: Mutex::new(()),
        };
        let position = store.feed_position()?;
        store.position.store(position, Ordering::Relaxed);
        store.count_entries();
        store.load_restrictions()?;
        Ok(store)
    }

    /// Calls `observer` with the entries of every revocation written through
    /// this handle from now on (`revoke`, `apply_feed`; not `bulk_load`),
    /// after they are written.
    pub fn subscribe(&self, observer: RevocationObserver) {
        if let Ok(mut o) = self.observers.write() {
            o.push(observer);
        }
    }

    fn notify(&self, entries: &[Revocation]) {
        if let Ok(observers) = self.observers.read() {
            for o in observers.iter() {
                o(entries);
            }
        }
    }

    /// The feed position as this handle last read or wrote it (no I/O).
    pub fn cached_feed_position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// Opens an existing store read-only: takes no lock, so it works while
    /// another process writes; sees the entries synced before it opened.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<RevocationStore, VerifierError> {
        let path = path.as_ref().to_path_buf();
        if !path.join("CURRENT").exists() {
            return Err(VerifierError::Missing { path });
        }
        let (db_opts, cfs) = options_for(&StoreOptions::default(), false);
        // A read-only open cannot create column families: open those the
        // store has (a store from an older version may lack `meta`).
        let existing = DB::list_cf(&db_opts, &path).unwrap_or_default();
        let cfs: Vec<_> = cfs
            .into_iter()
            .filter(|cf| existing.iter().any(|e| e == cf.name()))
            .collect();
        let db = DB::open_cf_descriptors_read_only(&db_opts, &path, cfs, false)
            .map_err(|e| VerifierError::from_rocksdb(&path, e))?;
        RevocationStore::with_db(db, path, WriteOptions::default())
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records revocations in one atomic batch, synced to disk before
    /// returning: once this returns `Ok`, they survive a crash.
    pub fn revoke(&self, entries: &[Revocation]) -> Result<(), VerifierError> {
        let mut batch = WriteBatch::default();
        self.put(&mut batch, entries)?;
        self.db
            .write_opt(batch, &self.sync)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        self.written(entries, "local");
        self.notify(entries);
        Ok(())
    }

    /// Metrics after a write (revocations are rare: the estimate's
    /// property reads are not on any request's path).
    fn written(&self, entries: &[Revocation], source: &'static str) {
        metrics::counter!(crate::metrics::REVOCATION_WRITTEN, "source" => source)
            .increment(entries.len() as u64);
        self.count_entries();
    }

    fn count_entries(&self) {
        metrics::gauge!(crate::metrics::REVOCATION_ENTRIES).set(self.estimated_len() as f64);
    }

    /// The entry for one target, if revoked.
    pub fn get(&self, target: &Target) -> Result<Option<Revocation>, VerifierError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(target.cf())?, target.key())
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        raw.map(|v| self.decode(target.clone(), &v)).transpose()
    }

    /// The first revoked target among `targets` (in their order), if any: one
    /// batched read for all of them.
    pub fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        let mut keys = Vec::with_capacity(targets.len());
        for t in targets {
            keys.push((self.cf(t.cf())?, t.key()));
        }
        let results = self.db.multi_get_cf(keys);
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(None) => {}
                Ok(Some(v)) => return Ok(Some((i, self.decode(targets[i].clone(), &v)?))),
                Err(e) => return Err(VerifierError::from_rocksdb(&self.path, e)),
            }
        }
        Ok(None)
    }

    /// Every entry, block ids first, then token families, then agent keys.
    pub fn list(&self) -> Result<Vec<Revocation>, VerifierError> {
        let mut out = Vec::new();
        for cf in CFS {
            for item in self.db.iterator_cf(self.cf(cf)?, IteratorMode::Start) {
                let (k, v) = item.map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
                out.push(self.decode(target_of(cf, &k)?, &v)?);
            }
        }
        Ok(out)
    }

    /// Deletes the entries whose target expired before `now` (they can no
    /// longer matter: the token is dead anyway), then compacts. Entries
    /// without an expiry are kept. Restrictions likewise, except that the
    /// lift of a lifted one is kept (without its body), so that it stays
    /// lifted if received again. Returns how many were removed.
    pub fn prune_expired(&self, now: OffsetDateTime) -> Result<usize, VerifierError> {
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        for cf_name in CFS {
            let cf = self.cf(cf_name)?;
            for item in self.db.iterator_cf(cf, IteratorMode::Start) {
                let (k, v) = item.map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
                let entry = self.decode(target_of(cf_name, &k)?, &v)?;
                if matches!(entry.expires_at, Some(e) if e < now) {
                    batch.delete_cf(cf, k);
                    removed += 1;
                }
            }
        }
        let _guard = self.restricting.lock().unwrap_or_else(|e| e.into_inner());
        let mut lifted_ids = Vec::new();
        if let Some(cf) = self.db.cf_handle(CF_RESTRICTION) {
            for item in self.db.iterator_cf(cf, IteratorMode::Start) {
                let (k, v) = item.map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
                let record = self.decode_restriction(&k, &v)?;
                if let Some(r) = record
                    .restriction
                    .filter(|r| matches!(r.expires_at, Some(e) if e < now))
                {
                    // A lift is kept (without the restriction's body): lifts
                    // are final (§19.3), and the same signed restriction
                    // replayed after a prune must not apply again.
                    match record.lifted {
                        Some(lift) => {
                            let tombstone = RestrictionRecord {
                                restriction: None,
                                lifted: Some(lift),
                            };
                            let value = serde_json::to_vec(&tombstone).map_err(|e| {
                                VerifierError::Store {
                                    path: self.path.clone(),
                                    detail: format!("cannot record restriction {}: {e}", r.id),
                                }
                            })?;
                            batch.put_cf(cf, &k, value);
                        }
                        None => batch.delete_cf(cf, &k),
                    }
                    removed += 1;
                    lifted_ids.push(r);
                }
            }
        }
        self.db
            .write_opt(batch, &self.sync)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        if let Ok(mut ix) = self.restrictions.write() {
            for r in &lifted_ids {
                ix.remove(&r.id, &r.target);
            }
        }
        self.count_restrictions();
        self.compact()?;
        Ok(removed)
    }

    /// Compacts every column family fully (blocking): removes deleted
    /// entries from disk and leaves one sorted run per level, so lookups
    /// touch as few files as possible.
    pub fn compact(&self) -> Result<(), VerifierError> {
        for cf in CFS {
            self.db
                .compact_range_cf(self.cf(cf)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// The last revocation-feed sequence applied to this store (0: none).
    pub fn feed_position(&self) -> Result<u64, VerifierError> {
        let Some(meta) = self.db.cf_handle(CF_META) else {
            return Ok(0); // a read-only view of a store from before the feed
        };
        let raw = self
            .db
            .get_pinned_cf(meta, FEED_POSITION)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        match raw {
            None => Ok(0),
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| VerifierError::Corrupt {
                    path: self.path.clone(),
                    detail: "feed position is not 8 bytes".into(),
                })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    /// The identity of the stream [`RevocationStore::feed_position`] counts
    /// in (its name and creation time), once the feed has recorded it.
    pub fn feed_stream(&self) -> Result<Option<String>, VerifierError> {
        let Some(meta) = self.db.cf_handle(CF_META) else {
            return Ok(None);
        };
        let raw = self
            .db
            .get_pinned_cf(meta, FEED_STREAM)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        Ok(raw.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the identity of the stream the feed position counts in
    /// (synced). The feed consumer sets it when it first follows a stream.
    pub fn set_feed_stream(&self, identity: &str) -> Result<(), VerifierError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META)?, FEED_STREAM, identity.as_bytes());
        self.db
            .write_opt(batch, &self.sync)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))
    }

    /// Operator recovery for a stuck feed: the feed resumes after stream
    /// sequence `position` (0: from the start), in whichever stream it finds
    /// (the recorded stream identity is forgotten). Entries already applied
    /// stay. Synced.
    pub fn set_feed_position(&self, position: u64) -> Result<(), VerifierError> {
        let mut batch = WriteBatch::default();
        let meta = self.cf(CF_META)?;
        batch.put_cf(meta, FEED_POSITION, position.to_be_bytes());
        batch.delete_cf(meta, FEED_STREAM);
        self.db
            .write_opt(batch, &self.sync)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        self.position.store(position, Ordering::Relaxed);
        Ok(())
    }

    /// Applies entries received from the revocation feed together with the
    /// feed sequence they bring the store to, in one atomic write batch: after
    /// a crash the store holds both or neither, and the feed resumes from the
    /// stored position. (Not synced: the stream is the durable copy, and an
    /// unsynced tail lost to a power cut is re-read from it.)
    pub fn apply_feed(&self, entries: &[Revocation], position: u64) -> Result<(), VerifierError> {
        let mut batch = WriteBatch::default();
        self.put(&mut batch, entries)?;
        batch.put_cf(self.cf(CF_META)?, FEED_POSITION, position.to_be_bytes());
        self.db
            .write(batch)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        self.position.store(position, Ordering::Relaxed);
        self.written(entries, "feed");
        self.notify(entries);
        Ok(())
    }

    /// Records a restriction or a lift (SPEC §19), synced before returning.
    /// A restriction id, once lifted, never applies again: a lift of an id
    /// not seen yet is kept, and a restriction arriving after its lift (or
    /// again) changes nothing.
    pub fn restrict(&self, entry: &RestrictionEntry) -> Result<RestrictionApplied, VerifierError> {
        self.write_restriction(entry, None)
    }

    /// Applies a restriction or lift from the feed with the feed position it
    /// brings the store to, in one write batch (not synced, as
    /// [`RevocationStore::apply_feed`]).
    pub fn apply_feed_restriction(
        &self,
        entry: &RestrictionEntry,
        position: u64,
    ) -> Result<RestrictionApplied, VerifierError> {
        let applied = self.write_restriction(entry, Some(position))?;
        self.position.store(position, Ordering::Relaxed);
        Ok(applied)
    }

    fn write_restriction(
        &self,
        entry: &RestrictionEntry,
        position: Option<u64>,
    ) -> Result<RestrictionApplied, VerifierError> {
        entry.validate().map_err(|e| VerifierError::Store {
            path: self.path.clone(),
            detail: format!("refused restriction entry {}: {e}", entry.id()),
        })?;
        let _guard = self.restricting.lock().unwrap_or_else(|e| e.into_inner());
        let cf = self.cf(CF_RESTRICTION)?;
        let current = self.restriction_record(entry.id())?;
        let (record, applied) = match (entry, current) {
            (RestrictionEntry::Restrict(_), Some(_)) => (None, RestrictionApplied::Unchanged),
            (RestrictionEntry::Restrict(r), None) => (
                Some(RestrictionRecord {
                    restriction: Some(r.clone()),
                    lifted: None,
                }),
                RestrictionApplied::Added,
            ),
            (RestrictionEntry::Lift(_), Some(c)) if c.lifted.is_some() => {
                (None, RestrictionApplied::Unchanged)
            }
            (RestrictionEntry::Lift(l), Some(c)) => (
                Some(RestrictionRecord {
                    restriction: c.restriction,
                    lifted: Some(l.clone()),
                }),
                RestrictionApplied::Lifted,
            ),
            (RestrictionEntry::Lift(l), None) => (
                Some(RestrictionRecord {
                    restriction: None,
                    lifted: Some(l.clone()),
                }),
                RestrictionApplied::LiftRecorded,
            ),
        };
        let mut batch = WriteBatch::default();
        if let Some(record) = &record {
            let value = serde_json::to_vec(record).map_err(|e| VerifierError::Store {
                path: self.path.clone(),
                detail: format!("cannot record restriction {}: {e}", entry.id()),
            })?;
            batch.put_cf(cf, entry.id().as_bytes(), value);
        }
        match position {
            Some(p) => {
                batch.put_cf(self.cf(CF_META)?, FEED_POSITION, p.to_be_bytes());
                self.db.write(batch)
            }
            None if record.is_some() => self.db.write_opt(batch, &self.sync),
            None => Ok(()),
        }
        .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        if let Some(record) = record {
            let mut ix = self.restrictions.write().unwrap_or_else(|e| e.into_inner());
            match (&record.restriction, &record.lifted) {
                (Some(r), None) => ix.insert(Arc::new(r.clone())),
                (Some(r), Some(_)) => ix.remove(&r.id, &r.target),
                _ => {}
            }
            drop(ix);
            metrics::counter!(
                crate::metrics::RESTRICTION_WRITTEN,
                "source" => if position.is_some() { "feed" } else { "local" }
            )
            .increment(1);
            self.count_restrictions();
        }
        Ok(applied)
    }

    /// The record of restriction `id` (the restriction, its lift), if any.
    pub fn restriction_record(&self, id: &str) -> Result<Option<RestrictionRecord>, VerifierError> {
        let Some(cf) = self.db.cf_handle(CF_RESTRICTION) else {
            return Ok(None);
        };
        let raw = self
            .db
            .get_pinned_cf(cf, id.as_bytes())
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        raw.map(|v| self.decode_restriction(id.as_bytes(), &v))
            .transpose()
    }

    /// Every restriction record, lifted ones included, by id.
    pub fn restriction_records(&self) -> Result<Vec<RestrictionRecord>, VerifierError> {
        let Some(cf) = self.db.cf_handle(CF_RESTRICTION) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
            out.push(self.decode_restriction(&k, &v)?);
        }
        Ok(out)
    }

    /// How many restrictions are in effect (not lifted, not pruned).
    pub fn restrictions_in_effect(&self) -> usize {
        self.restrictions.read().map_or(0, |ix| ix.len())
    }

    /// Writes restrictions without syncing each batch and without the WAL,
    /// then flushes: for building large stores (benchmarks). Not for
    /// acknowledged restrictions.
    pub fn bulk_load_restrictions(
        &self,
        entries: impl IntoIterator<Item = Restriction>,
    ) -> Result<u64, VerifierError> {
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        let cf = self.cf(CF_RESTRICTION)?;
        let mut batch = WriteBatch::default();
        let mut n = 0u64;
        let mut ix = self.restrictions.write().unwrap_or_else(|e| e.into_inner());
        for r in entries {
            r.validate().map_err(|e| VerifierError::Store {
                path: self.path.clone(),
                detail: format!("refused restriction {}: {e}", r.id),
            })?;
            let record = RestrictionRecord {
                restriction: Some(r),
                lifted: None,
            };
            let value = serde_json::to_vec(&record).map_err(|e| VerifierError::Store {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
            let r = record.restriction.unwrap_or_else(|| unreachable!());
            batch.put_cf(cf, r.id.as_bytes(), value);
            ix.insert(Arc::new(r));
            n += 1;
            if batch.len() >= 50_000 {
                self.db
                    .write_opt(std::mem::take(&mut batch), &opts)
                    .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
            }
        }
        drop(ix);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        self.db
            .flush_cf(cf)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        self.count_restrictions();
        Ok(n)
    }

    fn load_restrictions(&self) -> Result<(), VerifierError> {
        let mut ix = RestrictionIndex::default();
        for record in self.restriction_records()? {
            if let (Some(r), None) = (record.restriction, record.lifted) {
                ix.insert(Arc::new(r));
            }
        }
        *self.restrictions.write().unwrap_or_else(|e| e.into_inner()) = ix;
        self.count_restrictions();
        Ok(())
    }

    fn count_restrictions(&self) {
        metrics::gauge!(crate::metrics::RESTRICTIONS_IN_EFFECT)
            .set(self.restrictions_in_effect() as f64);
    }

    fn decode_restriction(&self, key: &[u8], v: &[u8]) -> Result<RestrictionRecord, VerifierError> {
        serde_json::from_slice(v).map_err(|e| VerifierError::Corrupt {
            path: self.path.clone(),
            detail: format!(
                "undecodable restriction {}: {e}",
                String::from_utf8_lossy(key)
            ),
        })
    }

    /// The restrictions in effect for a chain (see
    /// [`RevocationList::restrictions`]).
    pub fn restrictions_for(
        &self,
        targets: &[Target],
        agents: std::ops::Range<usize>,
        principal: &str,
    ) -> Vec<InEffect> {
        self.restrictions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .in_effect(targets, agents, principal)
    }

    /// RocksDB's estimate of the number of entries (cheap, approximate).
    pub fn estimated_len(&self) -> u64 {
        CFS.iter()
            .filter_map(|cf| self.db.cf_handle(cf))
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .sum()
    }

    /// Writes entries without syncing each batch and without the WAL, then
    /// flushes and compacts: for building large stores (benchmarks, imports).
    /// Not for acknowledged revocations.
    pub fn bulk_load(
        &self,
        entries: impl IntoIterator<Item = Revocation>,
    ) -> Result<u64, VerifierError> {
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        let mut batch = WriteBatch::default();
        let mut n = 0u64;
        for e in entries {
            self.put(&mut batch, std::slice::from_ref(&e))?;
            n += 1;
            if batch.len() >= 50_000 {
                self.db
                    .write_opt(std::mem::take(&mut batch), &opts)
                    .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
            }
        }
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        self.db
            .flush()
            .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
        for cf in CFS {
            if let Some(h) = self.db.cf_handle(cf) {
                self.db
                    .flush_cf(h)
                    .map_err(|e| VerifierError::from_rocksdb(&self.path, e))?;
            }
        }
        Ok(n)
    }

    /// Adds each entry to `batch` under its target's column family and key.
    fn put(&self, batch: &mut WriteBatch, entries: &[Revocation]) -> Result<(), VerifierError> {
        for e in entries {
            batch.put_cf(
                self.cf(e.target.cf())?,
                e.target.key(),
                e.encode(&self.path)?,
            );
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, VerifierError> {
        self.db.cf_handle(name).ok_or_else(|| VerifierError::Store {
            path: self.path.clone(),
            detail: format!("column family {name} missing: not a Mandate revocation store"),
        })
    }

    fn decode(&self, target: Target, v: &[u8]) -> Result<Revocation, VerifierError> {
        let s: Stored<'_> = serde_json::from_slice(v).map_err(|e| VerifierError::Corrupt {
            path: self.path.clone(),
            detail: format!("undecodable entry for {target}: {e}"),
        })?;
        Ok(Revocation {
            target,
            revoked_at: s.revoked_at,
            reason: s.reason.into_owned(),
            by: s.by.into_owned(),
            expires_at: s.expires_at,
            note: s.note.map(|n| n.into_owned()),
        })
    }
}

fn target_of(cf: &str, key: &[u8]) -> Result<Target, VerifierError> {
    Ok(match cf {
        CF_BLOCK => Target::Block(key.to_vec()),
        CF_AGENT => Target::Agent(key.to_vec()),
        _ => Target::Token(String::from_utf8_lossy(key).into_owned()),
    })
}

fn options_for(o: &StoreOptions, create: bool) -> (Options, Vec<ColumnFamilyDescriptor>) {
    let cache = Cache::new_lru_cache(o.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(o.bloom_bits_per_key, false);
    table.set_whole_key_filtering(true);
    // Index and filter blocks stay in the table readers' memory, outside the
    // block cache: a large SST's full filter is bigger than one shard of the
    // LRU cache and would be re-read from disk on every lookup.
    table.set_cache_index_and_filter_blocks(false);
    let mut cf_opts = Options::default();
    cf_opts.set_block_based_table_factory(&table);
    cf_opts.set_compression_type(DBCompressionType::Lz4);
    // Most lookups miss, so filters stay on every level
    // (`optimize_filters_for_hits` would drop the last level's).
    let cfs = ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_opts.clone()))
        .collect();
    let mut db_opts = Options::default();
    db_opts.create_if_missing(create);
    // Column families added by newer versions (e.g. `meta`) are created when
    // an existing store is opened for writing.
    db_opts.create_missing_column_families(true);
    db_opts.set_paranoid_checks(true);
    db_opts.set_keep_log_file_num(4);
    (db_opts, cfs)
}

impl RevocationList for RevocationStore {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        RevocationStore::first_revoked(self, targets)
    }

    fn position(&self) -> Option<u64> {
        Some(self.cached_feed_position())
    }

    fn subscribe(&self, observer: RevocationObserver) -> bool {
        RevocationStore::subscribe(self, observer);
        true
    }

    fn restrictions(
        &self,
        targets: &[Target],
        agents: std::ops::Range<usize>,
        principal: &str,
    ) -> Result<Vec<InEffect>, VerifierError> {
        Ok(self.restrictions_for(targets, agents, principal))
    }
}
