//! The audit log store: a RocksDB database of hash-chained records and the
//! signed checkpoints that cover them, written by one background thread in
//! batches (group commit): each batch is written in one atomic, synced
//! write, then every decision waiting on it is released. Checkpoints are
//! signed per interval under load and whenever the writer runs out of
//! records (specification §12.2).

use super::durable::{AuditDurable, DurableState};
use super::record::{AuditCheckpoint, AuditEntry, AuditEvent, ChainJson, GENESIS_HASH};
use super::verify::{AuditRead, Place, ReadEntry};
use crate::error::VerifierError;
use ed25519_dalek::SigningKey;
use rocksdb::{IteratorMode, Options, WriteBatch, WriteOptions, DB};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// How an [`AuditLog`] behaves. Every field has a safe default.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Records waiting for the writer at most; when the queue is full,
    /// [`AuditLog::record`] waits for room (back-pressure) rather than drop a
    /// record. Default 65 536.
    pub queue: usize,
    /// Most records per write batch. Default 4 096.
    pub batch: usize,
    /// Sync (fsync) every batch before it counts as written, so a power cut
    /// loses no written record. Default true. Without it a crash of the
    /// process still loses nothing written (RocksDB's WAL is in the OS), a
    /// power cut may.
    pub sync: bool,
    /// Whether [`AuditLog::durable`] waits for the write (default true: a
    /// server answers a decision only once its record is durable). False
    /// is asynchronous audit: decisions are answered at once, and a crash
    /// loses the records still queued ([`AuditOptions::loss_window`]).
    pub durable: bool,
    /// Also sign every record's hash, as logs did before checkpoints
    /// (default false: signed checkpoints cover the records). Costs one
    /// Ed25519 signature per decision; kept for comparison.
    pub sign_records: bool,
    /// How long records may stay durable without a signed checkpoint over
    /// them while more keep coming (default 100 ms). A batch written when
    /// the last checkpoint is older than this carries a new one; when the
    /// queue runs dry the writer signs one at once (before it releases the
    /// decisions it just wrote), so a log at rest is always covered. Under
    /// load this is one signature per interval rather than one per batch.
    /// Zero signs every batch.
    pub checkpoint_interval: Duration,
}

impl AuditOptions {
    /// What a crash may lose with asynchronous audit (`durable` false), in
    /// words for the log line at start.
    pub fn loss_window(&self) -> String {
        format!(
            "asynchronous audit: decisions are answered before their records are written; \
             a crash loses the records still queued — up to {} decisions (the queue), \
             normally those of the last batch write (a few ms)",
            self.queue.max(1)
        )
    }
}

impl Default for AuditOptions {
    fn default() -> AuditOptions {
        AuditOptions {
            queue: 65_536,
            batch: 4_096,
            sync: true,
            durable: true,
            sign_records: false,
            checkpoint_interval: Duration::from_millis(100),
        }
    }
}

enum Msg {
    Record(Box<AuditEvent>),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<Result<u64, VerifierError>>),
}

struct Shared {
    path: PathBuf,
    /// Records written (durably, per the options) so far: the last seq.
    written: AtomicU64,
    /// Records handed to [`AuditLog::record`] and not yet written.
    queued: AtomicU64,
    failure: Mutex<Option<VerifierError>>,
    /// Records queued by this process so far: each record's ticket is its
    /// number in queue order, taken with the send so tickets follow the
    /// queue.
    tickets: Mutex<u64>,
    /// How many of them are durable; what [`AuditLog::durable`] waits on.
    durable: Arc<DurableState>,
    wait_durable: bool,
}

/// The verifier's audit log. Cheap to clone; the writer thread stops
/// (after writing everything queued) when the last clone is dropped.
///
/// Each record is placed after the previous one (`seq`, `prev_hash`),
/// hashed, and written to RocksDB under its sequence number, in synced
/// batches; a checkpoint signed by the verifier's audit key over the last
/// record written covers every record before it: one signature per
/// [`AuditOptions::checkpoint_interval`] under load, and one whenever the
/// writer runs out of records (so a log at rest is always covered), not one
/// per record. [`super::verify_entries`] checks a log or an export and
/// names the first record altered, removed or reordered.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    _writer: Arc<WriterGuard>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.shared.path)
            .field("written", &self.shared.written.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Joins the writer when the last [`AuditLog`] clone goes.
struct WriterGuard {
    tx: Mutex<Option<SyncSender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // Closing our sender ends the writer once every clone's is gone.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`, signing with `key`
    /// (the verifier's audit key: keep it apart from any root key).
    pub fn open(
        path: impl AsRef<Path>,
        key: &biscuit_auth::KeyPair,
        options: AuditOptions,
    ) -> Result<AuditLog, VerifierError> {
        let mut writer = Writer::open(path.as_ref(), key, options)?;
        let shared = writer.shared.clone();
        let path = shared.path.clone();
        let (tx, rx) = mpsc::sync_channel(writer.options.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("mandate-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| VerifierError::Store {
                path: path.clone(),
                detail: format!("cannot start the audit writer: {e}"),
            })?;
        Ok(AuditLog {
            tx: tx.clone(),
            shared,
            _writer: Arc::new(WriterGuard {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Queues a decision. Returns at once unless the queue is full (then it
    /// waits for room: records are never dropped). A write failure is
    /// reported by [`AuditLog::health`] and [`AuditLog::flush`], and the
    /// records are retried.
    pub fn record(&self, event: AuditEvent) {
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let msg = Msg::Record(Box::new(event));
        // The ticket is taken with the send, so tickets follow queue order
        // (the writer counts records in that order).
        let Ok(mut tickets) = self.shared.tickets.lock() else {
            return self.stopped();
        };
        let sent = match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(m)) => self.tx.send(m).is_ok(),
            Err(TrySendError::Disconnected(_)) => false,
        };
        if sent {
            *tickets += 1;
        } else {
            drop(tickets);
            self.stopped();
        }
    }

    /// Resolves once every record queued before this call is durable
    /// (written, and synced when [`AuditOptions::sync`]), or with the error
    /// that keeps it from being so. With asynchronous audit
    /// ([`AuditOptions::durable`] false) it resolves at once, with
    /// [`AuditLog::health`].
    pub fn durable(&self) -> AuditDurable {
        if !self.shared.wait_durable {
            return AuditDurable::ready(self.health());
        }
        match self.shared.tickets.lock() {
            Ok(t) => AuditDurable::waiting(*t, self.shared.durable.clone()),
            Err(_) => AuditDurable::ready(Err(self.stopped_error())),
        }
    }

    fn stopped_error(&self) -> VerifierError {
        VerifierError::Store {
            path: self.shared.path.clone(),
            detail: "the audit writer has stopped".into(),
        }
    }

    fn stopped(&self) {
        let e = self.stopped_error();
        self.shared.durable.fail(e.clone());
        self.fail(e);
    }

    /// Waits until every record queued before this call is written; returns
    /// the last sequence number written.
    pub fn flush(&self) -> Result<u64, VerifierError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| VerifierError::Store {
                path: self.shared.path.clone(),
                detail: "the audit writer has stopped".into(),
            })?;
        rx.recv().map_err(|_| VerifierError::Store {
            path: self.shared.path.clone(),
            detail: "the audit writer has stopped".into(),
        })?
    }

    /// `Ok` while records are being written; else the failure of the last
    /// write (records wait in memory and are retried until it succeeds).
    pub fn health(&self) -> Result<(), VerifierError> {
        match self.shared.failure.lock() {
            Ok(f) => f.clone().map_or(Ok(()), Err),
            Err(_) => Ok(()),
        }
    }

    /// The last sequence number written.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Records queued and not yet written.
    pub fn pending(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn fail(&self, e: VerifierError) {
        if let Ok(mut f) = self.shared.failure.lock() {
            f.get_or_insert(e);
        }
    }
}

fn signing_key(key: &biscuit_auth::KeyPair) -> Result<SigningKey, VerifierError> {
    let bytes = key.private().to_bytes();
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| VerifierError::Store {
            path: PathBuf::new(),
            detail: "the audit key must be an Ed25519 key".into(),
        })?;
    Ok(SigningKey::from_bytes(&bytes))
}

fn last_entry(db: &DB, path: &Path) -> Result<Option<(u64, AuditEntry)>, VerifierError> {
    match db.iterator(IteratorMode::End).next() {
        None => Ok(None),
        Some(Err(e)) => Err(VerifierError::from_rocksdb(path, e)),
        Some(Ok((key, value))) => {
            let corrupt = |detail: String| VerifierError::Corrupt {
                path: path.to_path_buf(),
                detail,
            };
            let entry: AuditEntry = serde_json::from_slice(&value)
                .map_err(|e| corrupt(format!("the last audit record does not decode: {e}")))?;
            let stored = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    corrupt("the last audit record's key is not a sequence number".into())
                })?;
            Ok(Some((stored, entry)))
        }
    }
}

/// The column family of checkpoints, keyed like records by the sequence
/// number of the last record each covers.
pub(crate) const CHECKPOINTS: &str = "checkpoints";

/// The column family holding the writer's tag over its last record
/// (SPEC §12.2): one entry, [`TAIL_KEY`], rewritten with every batch.
const TAIL: &str = "tail";
const TAIL_KEY: &[u8] = b"head";

type TailMac = hmac::Hmac<sha2::Sha256>;

/// What the writer's tag covers: the last record's sequence number and
/// hash (which chains to every record before it).
fn tail_message(seq: u64, head_hash: &str) -> Vec<u8> {
    let mut m = b"mandate-audit-tail-v1\n".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(head_hash.as_bytes());
    m
}

/// The tag's key: derived from the audit key, so only whoever holds the
/// audit key (the writer) can tag a log's last record.
fn tail_key(key: &SigningKey) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"mandate-audit-tail-key-v1\0");
    h.update(key.to_bytes());
    h.finalize().into()
}

/// The stored tag: `{"seq", "head_hash", "tag"}` (hex HMAC-SHA-256).
#[derive(serde::Serialize, serde::Deserialize)]
struct TailTag {
    seq: u64,
    head_hash: String,
    tag: String,
}

/// The key a record is stored under: its sequence number, big-endian, so
/// RocksDB's order is the log's order.
pub(crate) fn key_of(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

struct Writer {
    db: DB,
    key: SigningKey,
    /// [`tail_key`] of `key`.
    tail_key: [u8; 32],
    /// The key's public half, `ed25519/<hex>`, named in checkpoints.
    log_key: String,
    /// Records of this process's queue written so far (see `Shared::tickets`).
    committed: u64,
    seq: u64,
    prev_hash: String,
    shared: Arc<Shared>,
    options: AuditOptions,
    /// Each chain's JSON, made once.
    chains: ChainJson,
    /// The last record a checkpoint covers.
    signed_through: u64,
    /// When the last checkpoint was signed.
    last_signed: Instant,
}

impl Writer {
    /// Opens (creating if needed) the store at `path` and places the
    /// writer after its last record, covering a tail a stop left without a
    /// checkpoint.
    fn open(
        path: &Path,
        key: &biscuit_auth::KeyPair,
        options: AuditOptions,
    ) -> Result<Writer, VerifierError> {
        let path = path.to_path_buf();
        let signing = signing_key(key)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        tune_for_group_commit(&mut opts);
        // Each family gets these options (`DB::open_cf` would give them
        // RocksDB's defaults: no compression, 64 MiB memtables).
        let families = ["default", CHECKPOINTS, TAIL]
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, opts.clone()));
        let db = DB::open_cf_descriptors(&opts, &path, families)
            .map_err(|e| VerifierError::from_rocksdb(&path, e))?;
        // The writer goes on after the last record, by its key or by the
        // sequence number it claims, whichever is later: it never writes
        // over a stored record.
        let (last_seq, last_hash, last_unsigned) = match last_entry(&db, &path)? {
            Some((stored, e)) => (stored.max(e.record.seq), e.hash, e.signature.is_none()),
            None => (0, GENESIS_HASH.to_string(), false),
        };
        // No log reaches 2^64 - 2^32 records: a record claiming more was
        // put there, and the writer's sequence numbers must never wrap.
        if last_seq > u64::MAX - (1 << 32) {
            return Err(VerifierError::Corrupt {
                path: path.clone(),
                detail: format!(
                    "the last audit record claims sequence number {last_seq}, near the \
                     largest possible: no log reaches it (the store was altered)"
                ),
            });
        }
        let shared = Arc::new(Shared {
            path: path.clone(),
            written: AtomicU64::new(last_seq),
            queued: AtomicU64::new(0),
            failure: Mutex::new(None),
            tickets: Mutex::new(0),
            durable: Arc::new(DurableState::default()),
            wait_durable: options.durable,
        });
        let log_key = format!(
            "ed25519/{}",
            hex::encode(signing.verifying_key().as_bytes())
        );
        let mut writer = Writer {
            db,
            tail_key: tail_key(&signing),
            key: signing,
            log_key,
            committed: 0,
            seq: last_seq,
            prev_hash: last_hash,
            shared,
            options,
            chains: ChainJson::default(),
            signed_through: last_seq,
            last_signed: Instant::now(),
        };
        // Records a stop left without a checkpoint are covered before any
        // new one is written.
        let tag = writer.valid_tag()?;
        if !writer.go_on_after_tag(tag.clone())? && last_unsigned {
            writer.recover_tail(tag)?;
        }
        writer.shared.written.store(writer.seq, Ordering::Relaxed);
        Ok(writer)
    }

    fn run(&mut self, rx: Receiver<Msg>) {
        let mut flushes = Vec::new();
        let mut events = Vec::new();
        // A message taken while looking whether the queue ran dry.
        let mut next: Option<Msg> = None;
        loop {
            if next.is_none() {
                // Block for the first message (unless a failed batch waits
                // to be retried), then take whatever else is queued.
                let wait = if events.is_empty() {
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                };
                next = match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) if events.is_empty() => {
                        // Idle: a checkpoint that failed is tried again.
                        self.cover_head();
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        // Last chance for a failed batch, then stop, covered.
                        let _ = self.write(&mut events, true);
                        if events.is_empty() {
                            self.shared.durable.advance(self.committed);
                        } else {
                            self.shared.durable.fail(VerifierError::Store {
                                path: self.shared.path.clone(),
                                detail: "the audit writer has stopped".into(),
                            });
                        }
                        self.cover_head();
                        return;
                    }
                };
            }
            while let Some(m) = next.take() {
                match m {
                    Msg::Record(e) => events.push(*e),
                    Msg::Flush(reply) => flushes.push(reply),
                }
                if events.len() < self.options.batch {
                    next = rx.try_recv().ok();
                }
            }
            // Group commit: everything queued while the last write was
            // syncing goes into this one. It carries a checkpoint when the
            // last one is older than the interval (or a flush asks).
            let sign = !flushes.is_empty() || self.checkpoint_due();
            let result = self.write(&mut events, sign);
            if result.is_ok() && self.signed_through < self.seq {
                // A flush answers with everything covered. Otherwise, more
                // decisions already queued: released now, the checkpoint
                // comes with a later batch; none: the writer would go idle,
                // so it covers what it wrote first.
                let idle = !flushes.is_empty()
                    || match rx.try_recv() {
                        Ok(m) => {
                            next = Some(m);
                            false
                        }
                        Err(_) => true,
                    };
                if idle {
                    self.cover_head();
                }
            }
            if result.is_ok() {
                self.shared.durable.advance(self.committed);
            }
            for reply in flushes.drain(..) {
                let _ = reply.send(result.clone().map(|()| self.seq));
            }
        }
    }

    /// [`Writer::sign_head`], its failure counted and logged: the records
    /// are durable all the same, and the next batch or idle moment signs
    /// again.
    fn cover_head(&mut self) {
        if let Err(e) = self.sign_head() {
            metrics::counter!(crate::metrics::AUDIT_ERRORS).increment(1);
            tracing::warn!(
                log = %self.shared.path.display(),
                error = %e,
                "audit checkpoint not written; the next write signs again"
            );
        }
    }

    /// Whether the next batch must carry a checkpoint.
    fn checkpoint_due(&self) -> bool {
        self.last_signed.elapsed() >= self.options.checkpoint_interval
    }

    /// The signed checkpoint over the last record written, as a column
    /// family entry.
    fn checkpoint(&self, seq: u64, head_hash: &str, recovered: bool) -> Vec<u8> {
        let checkpoint = AuditCheckpoint {
            log_key: self.log_key.clone(),
            seq,
            head_hash: head_hash.to_string(),
            signed_at: OffsetDateTime::now_utc(),
            recovered,
        }
        .sign(&self.key);
        // Plain data: serializing cannot fail.
        serde_json::to_vec(&checkpoint).unwrap_or_default()
    }

    fn checkpoints_cf(&self) -> Result<&rocksdb::ColumnFamily, VerifierError> {
        self.cf(CHECKPOINTS)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, VerifierError> {
        self.db.cf_handle(name).ok_or_else(|| VerifierError::Store {
            path: self.shared.path.clone(),
            detail: format!("the audit log has no {name} column family"),
        })
    }

    /// The stored tag over record `seq` with hash `head_hash`.
    fn tail_tag(&self, seq: u64, head_hash: &str) -> Vec<u8> {
        use hmac::Mac;
        let tag = TailTag {
            seq,
            head_hash: head_hash.to_string(),
            tag: hex::encode(self.tail_mac(seq, head_hash).finalize().into_bytes()),
        };
        // Plain data: serializing cannot fail.
        serde_json::to_vec(&tag).unwrap_or_default()
    }

    /// The record (seq, hash) the stored tag vouches for, when it is this
    /// writer's (its MAC compared in constant time).
    fn valid_tag(&self) -> Result<Option<(u64, String)>, VerifierError> {
        use hmac::Mac;
        let stored = self
            .db
            .get_cf(self.cf(TAIL)?, TAIL_KEY)
            .map_err(|e| VerifierError::from_rocksdb(&self.shared.path, e))?;
        let Some(tag) = stored.and_then(|b| serde_json::from_slice::<TailTag>(&b).ok()) else {
            return Ok(None);
        };
        let Ok(bytes) = hex::decode(&tag.tag) else {
            return Ok(None);
        };
        let valid = self
            .tail_mac(tag.seq, &tag.head_hash)
            .verify_slice(&bytes)
            .is_ok();
        Ok(valid.then_some((tag.seq, tag.head_hash)))
    }

    fn tail_mac(&self, seq: u64, head_hash: &str) -> TailMac {
        use hmac::Mac;
        let mut mac =
            TailMac::new_from_slice(&self.tail_key).expect("HMAC takes keys of any length");
        mac.update(&tail_message(seq, head_hash));
        mac
    }

    /// Writes a checkpoint alone over the last record written, if any is
    /// not yet covered. Not synced: the records it covers are, and a
    /// checkpoint lost in a power cut is signed again (`recovered`) when
    /// the log is reopened.
    fn sign_head(&mut self) -> Result<(), VerifierError> {
        if self.signed_through >= self.seq {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let line = self.checkpoint(self.seq, &self.prev_hash, false);
        batch.put_cf(self.checkpoints_cf()?, key_of(self.seq), line);
        self.db
            .write(batch)
            .map_err(|e| VerifierError::from_rocksdb(&self.shared.path, e))?;
        self.signed_through = self.seq;
        self.last_signed = Instant::now();
        Ok(())
    }

    /// Writes `events` as one batch, with a checkpoint over its last record
    /// when `sign`. On failure they stay in `events` (and are tried again
    /// with the next batch): nothing queued is dropped. The decisions it
    /// makes durable are released by the caller.
    fn write(&mut self, events: &mut Vec<AuditEvent>, sign: bool) -> Result<(), VerifierError> {
        if events.is_empty() {
            return self.failure();
        }
        let started = std::time::Instant::now();
        metrics::gauge!(crate::metrics::AUDIT_QUEUE)
            .set(self.shared.queued.load(Ordering::Relaxed) as f64);
        let mut batch = WriteBatch::default();
        let (mut seq, mut prev) = (self.seq, self.prev_hash.clone());
        let record_key = self.options.sign_records.then_some(&self.key);
        for event in events.iter() {
            let Some(next) = seq.checked_add(1) else {
                let e = VerifierError::Corrupt {
                    path: self.shared.path.clone(),
                    detail: "the audit log's sequence numbers are exhausted".into(),
                };
                self.shared.durable.fail(e.clone());
                std::thread::sleep(Duration::from_millis(200));
                return Err(e);
            };
            seq = next;
            let (hash, line) =
                AuditEntry::seal_event(event, seq, &prev, &mut self.chains, record_key);
            batch.put(key_of(seq), line);
            prev = hash;
        }
        // The writer's tag over the batch's last record, atomically with
        // it: what lets a reopening sign a tail no checkpoint covers.
        match self.cf(TAIL) {
            Ok(cf) => batch.put_cf(cf, TAIL_KEY, self.tail_tag(seq, &prev)),
            Err(e) => {
                self.shared.durable.fail(e.clone());
                return Err(e);
            }
        }
        if sign {
            // One signature for the batch and every batch before it since
            // the last: a checkpoint over its last record, written
            // atomically with the records.
            let cf = match self.checkpoints_cf() {
                Ok(cf) => cf,
                Err(e) => {
                    self.shared.durable.fail(e.clone());
                    return Err(e);
                }
            };
            batch.put_cf(cf, key_of(seq), self.checkpoint(seq, &prev, false));
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(self.options.sync);
        match self.db.write_opt(batch, &wo) {
            Ok(()) => {
                let left = self
                    .shared
                    .queued
                    .fetch_sub(events.len() as u64, Ordering::Relaxed)
                    .saturating_sub(events.len() as u64);
                metrics::histogram!(crate::metrics::AUDIT_WRITE_DURATION)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(crate::metrics::AUDIT_WRITTEN).increment(events.len() as u64);
                metrics::gauge!(crate::metrics::AUDIT_QUEUE).set(left as f64);
                self.committed += events.len() as u64;
                events.clear();
                self.seq = seq;
                self.prev_hash = prev;
                if sign {
                    self.signed_through = seq;
                    self.last_signed = Instant::now();
                }
                self.shared.written.store(seq, Ordering::Relaxed);
                if let Ok(mut f) = self.shared.failure.lock() {
                    *f = None;
                }
                Ok(())
            }
            Err(e) => {
                metrics::counter!(crate::metrics::AUDIT_ERRORS).increment(1);
                let e = VerifierError::from_rocksdb(&self.shared.path, e);
                if let Ok(mut f) = self.shared.failure.lock() {
                    *f = Some(e.clone());
                }
                self.shared.durable.fail(e.clone());
                // Do not spin on a full disk.
                std::thread::sleep(Duration::from_millis(200));
                Err(e)
            }
        }
    }

    /// At every opening: when the writer's valid tag names a record after
    /// the last one stored (records cut from the end while the log was
    /// closed, even back to a covered record, or every record deleted), it
    /// goes on after the tagged record, so `audit verify` reports the
    /// missing ones. `tag` is [`Writer::valid_tag`]'s answer; returns
    /// whether the writer moved. A log with records and no valid tag (a
    /// version without tags, or the tag removed or altered) is logged.
    fn go_on_after_tag(&mut self, tag: Option<(u64, String)>) -> Result<bool, VerifierError> {
        let path = self.shared.path.clone();
        match tag {
            Some((seq, head)) if seq > self.seq => {
                tracing::error!(
                    log = %path.display(),
                    last = self.seq,
                    tagged = seq,
                    "the audit log ends before the last record its writer wrote: records \
                     removed while it was closed (`mandate audit verify` names them); going on \
                     after the last one written"
                );
                (self.seq, self.prev_hash) = (seq, head);
                Ok(true)
            }
            None if self.seq > 0 => {
                let present = self
                    .db
                    .get_cf(self.cf(TAIL)?, TAIL_KEY)
                    .map_err(|e| VerifierError::from_rocksdb(&path, e))?
                    .is_some();
                if present {
                    tracing::error!(
                        log = %path.display(),
                        "the audit log's tag over its last record is not its writer's (altered \
                         while the log was closed): records cut from its end would not be noticed"
                    );
                } else {
                    tracing::warn!(
                        log = %path.display(),
                        "the audit log has no tag over its last record (written by a version \
                         without tags, or the tag was removed): records cut from its end before \
                         now would not be noticed"
                    );
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Reopening a log whose last records no checkpoint covers (the
    /// verifier stopped, or the power failed, between their synced write and
    /// the checkpoint that was to follow): checks that they chain from the
    /// last checkpoint's head and signs a checkpoint over them marked
    /// `recovered` (an auditor sees which records were vouched for only
    /// after the restart), when `tag` (the writer's valid tag) names their
    /// last record. A tail declined for any reason is left for `audit
    /// verify` to name, and unless `tag` names its last record, new records
    /// chain from the last checkpoint's head, so the break is in the log
    /// for good (a later checkpoint must not cover it unmarked). Returns
    /// the range signed.
    fn recover_tail(
        &mut self,
        tag: Option<(u64, String)>,
    ) -> Result<Option<(u64, u64)>, VerifierError> {
        let path = self.shared.path.clone();
        let tagged = tag.as_ref() == Some(&(self.seq, self.prev_hash.clone()));
        let cf = self.checkpoints_cf()?;
        let vk = self.key.verifying_key();
        let last_checkpoint = match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Some((1, GENESIS_HASH.to_string())),
            Some(Err(e)) => return Err(VerifierError::from_rocksdb(&path, e)),
            Some(Ok((key, value))) => match super::verify::parse_checkpoint(&value) {
                Ok(c)
                    if c.is_signed_by(&vk)
                        && key.as_ref() == &key_of(c.checkpoint.seq)[..]
                        && c.checkpoint.seq < u64::MAX =>
                {
                    Some((c.checkpoint.seq + 1, c.checkpoint.head_hash))
                }
                _ => None,
            },
        };
        // Whatever the reason a tail is declined, the writer chains on
        // from its last record only if it tagged it: else its next record
        // follows the last checkpoint's head (the genesis hash when there
        // is none it can trust), so a later checkpoint can never cover
        // records it did not write, and `audit verify` names the break.
        let vouched = last_checkpoint
            .as_ref()
            .map_or_else(|| GENESIS_HASH.to_string(), |(_, h)| h.clone());
        let decline =
            |w: &mut Writer, record: u64, why: &str| -> Result<Option<(u64, u64)>, VerifierError> {
                if !tagged {
                    w.prev_hash = vouched.clone();
                }
                tracing::error!(
                    log = %path.display(),
                    record,
                    chained_on = tagged,
                    "the audit log's records after its last checkpoint are not signed at \
                     reopening: {why} (`mandate audit verify` names the problem)"
                );
                Ok(None)
            };
        let Some((from, mut prev)) = last_checkpoint else {
            return decline(self, self.seq, "the last checkpoint is not this log's");
        };
        if from > self.seq {
            if from > self.seq + 1 {
                return decline(
                    self,
                    self.seq,
                    "the last checkpoint is beyond the last record",
                );
            }
            return Ok(None);
        }
        let mode = IteratorMode::From(&key_of(from)[..], rocksdb::Direction::Forward);
        let mut expected = from;
        let mut broken = None;
        for item in self.db.iterator(mode) {
            let (_, value) = item.map_err(|e| VerifierError::from_rocksdb(&path, e))?;
            let Ok(entry) = super::verify::parse_entry(&value) else {
                broken = Some((expected, "a record does not decode"));
                break;
            };
            // A record signed on its own (sign_records) must be signed by
            // this log's key; the others are vouched for by the chain.
            let sealed = match entry.seal_is_intact(&vk) {
                super::record::Seal::Intact | super::record::Seal::Unsigned => true,
                super::record::Seal::HashMismatch | super::record::Seal::BadSignature => false,
            };
            if !(sealed && entry.record.seq == expected && entry.record.prev_hash == prev) {
                broken = Some((expected, "they do not chain from it"));
                break;
            }
            prev = entry.hash;
            expected += 1;
        }
        if let Some((record, why)) = broken {
            return decline(self, record, why);
        }
        if expected != self.seq + 1 {
            return decline(self, self.seq, "the last record is not where its key says");
        }
        // Records that chain are not yet the writer's: anyone able to write
        // to the stopped store could have appended them (the chain is
        // unkeyed). Only the tag the writer wrote with its last batch
        // vouches that it wrote them, up to this very record.
        if !tagged {
            return decline(
                self,
                self.seq,
                "the last record carries no tag of this log's writer (records added or \
                 removed while the log was closed, or written by a version without tags); \
                 new records chain from the last checkpoint's head, leaving a break after \
                 them",
            );
        }
        let mut batch = WriteBatch::default();
        let line = self.checkpoint(self.seq, &self.prev_hash, true);
        batch.put_cf(cf, key_of(self.seq), line);
        let mut wo = WriteOptions::default();
        wo.set_sync(self.options.sync);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| VerifierError::from_rocksdb(&path, e))?;
        self.signed_through = self.seq;
        tracing::warn!(
            log = %path.display(),
            from,
            to = self.seq,
            "audit records {from}..={} were durable but not yet covered by a checkpoint \
             when the log was last closed; signed now in a checkpoint marked recovered",
            self.seq
        );
        Ok(Some((from, self.seq)))
    }

    fn failure(&self) -> Result<(), VerifierError> {
        match self.shared.failure.lock() {
            Ok(f) => f.clone().map_or(Ok(()), Err),
            Err(_) => Ok(()),
        }
    }
}

/// RocksDB settings for a log whose every batch is synced.
///
/// - All column families flush together (`atomic_flush`): the small
///   checkpoints family would otherwise never fill its memtable, and no
///   write-ahead log file could ever be deleted (the log's directory grew
///   by one 64 MiB file per memtable and a restart replayed all of them).
/// - Write-ahead log files are recycled: a new log overwrites an old one's
///   already allocated blocks, so a batch's `fdatasync` flushes the data
///   alone, without the inode (the file's size no longer changes with
///   every append). On the 2-core VM of `scripts/bench-http.sh` this took
///   durable audit from 41 k to 47 k requests/s. Recovery stays
///   point-in-time (RocksDB's default; recycled logs carry their number in
///   every record, so an old file's stale tail is never replayed).
/// - Smaller memtables and a cap on the logs' total size keep the recycled
///   files few and hot in the page cache.
fn tune_for_group_commit(opts: &mut Options) {
    opts.set_atomic_flush(true);
    opts.set_recycle_log_file_num(4);
    opts.set_write_buffer_size(16 << 20);
    opts.set_max_total_wal_size(64 << 20);
}

/// Reads every record of the log at `path` (read-only: works beside a
/// running writer), in stored order, each with the key it is stored under.
/// Entries that do not decode are errors in place. Checkpoints are left
/// out: [`read_audit_log`] reads both, for [`super::verify_entries`].
pub fn read_audit_store(path: impl AsRef<Path>) -> Result<Vec<ReadEntry>, VerifierError> {
    Ok(read_audit_log(path)?.entries)
}

/// Reads every record and every checkpoint of the log at `path`
/// (read-only: works beside a running writer; records and the checkpoint
/// of their batch are written atomically, so a reader sees both or
/// neither), ready for [`super::verify_entries`].
pub fn read_audit_log(path: impl AsRef<Path>) -> Result<AuditRead, VerifierError> {
    let path = path.as_ref();
    if !path.join("CURRENT").exists() {
        return Err(VerifierError::AuditMissing {
            path: path.to_path_buf(),
        });
    }
    let opts = Options::default();
    // A log written before checkpoints has no such column family.
    let families = DB::list_cf(&opts, path).map_err(|e| VerifierError::from_rocksdb(path, e))?;
    let has_checkpoints = families.iter().any(|f| f == CHECKPOINTS);
    let open: Vec<&str> = if has_checkpoints {
        vec!["default", CHECKPOINTS]
    } else {
        vec!["default"]
    };
    let db = DB::open_cf_for_read_only(&opts, path, open, false)
        .map_err(|e| VerifierError::from_rocksdb(path, e))?;
    let stored_key = |key: &[u8]| {
        <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .unwrap_or(u64::MAX)
    };
    let mut out = AuditRead::default();
    for item in db.iterator(IteratorMode::Start) {
        let (key, value) = item.map_err(|e| VerifierError::from_rocksdb(path, e))?;
        out.entries.push((
            Place::Key(stored_key(&key)),
            super::verify::parse_entry(&value),
        ));
    }
    if let Some(cf) = db.cf_handle(CHECKPOINTS) {
        for item in db.iterator_cf(&cf, IteratorMode::Start) {
            let (key, value) = item.map_err(|e| VerifierError::from_rocksdb(path, e))?;
            out.checkpoints.push((
                Place::CheckpointKey(stored_key(&key)),
                super::verify::parse_checkpoint(&value),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::{verify_entries, SignedCheckpoint};
    use crate::decision::{Decision, Denial, DenialKind};
    use biscuit_auth::KeyPair;
    use mandate_spec::Request;

    fn event(n: u64) -> AuditEvent {
        AuditEvent {
            decided_at: OffsetDateTime::now_utc(),
            decision: Decision::deny(
                Request::new("read", format!("/api/{n}")),
                None,
                Denial::new(DenialKind::NotAllowed, "no"),
            ),
            revocation_position: None,
            policy_hash: "ph".into(),
        }
    }

    fn checkpoints(path: &Path) -> Vec<SignedCheckpoint> {
        read_audit_log(path)
            .unwrap()
            .checkpoints
            .into_iter()
            .map(|(_, c)| c.unwrap())
            .collect()
    }

    /// A writer driven on the calling thread: `records` records queued
    /// before it runs, in batches of 10, with checkpoints every `interval`.
    fn run_writer(path: &Path, key: &KeyPair, interval: Duration, records: u64) {
        let options = AuditOptions {
            batch: 10,
            checkpoint_interval: interval,
            ..AuditOptions::default()
        };
        let mut w = Writer::open(path, key, options).unwrap();
        let (tx, rx) = mpsc::sync_channel(1000);
        for n in 0..records {
            tx.send(Msg::Record(Box::new(event(n)))).unwrap();
        }
        drop(tx);
        w.run(rx);
    }

    /// Under load (records always waiting) one checkpoint covers many
    /// batches: the writer signs when the interval has passed or when it
    /// runs out of records, not once per batch.
    #[test]
    fn batches_written_back_to_back_share_one_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let key = KeyPair::new();
        run_writer(&path, &key, Duration::from_secs(3600), 100);
        let cps = checkpoints(&path);
        assert_eq!(cps.len(), 1, "ten batches, one checkpoint: {cps:?}");
        assert_eq!(cps[0].checkpoint.seq, 100);
        assert!(!cps[0].checkpoint.recovered);
        let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
        assert_eq!((summary.records, summary.uncovered), (100, None));
        assert!(summary.recovered.is_empty());

        // A zero interval signs every batch, as before checkpoints were
        // amortised.
        run_writer(&path, &key, Duration::ZERO, 30);
        let seqs: Vec<u64> = checkpoints(&path)
            .iter()
            .map(|c| c.checkpoint.seq)
            .collect();
        assert_eq!(seqs, vec![100, 110, 120, 130]);
    }

    /// A decision released by the writer finds a log at rest covered: when
    /// nothing else is queued, the checkpoint is written before the
    /// decisions are released.
    #[test]
    fn a_released_decision_finds_its_record_covered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let key = KeyPair::new();
        let options = AuditOptions {
            checkpoint_interval: Duration::from_secs(3600),
            ..AuditOptions::default()
        };
        let log = AuditLog::open(&path, &key, options).unwrap();
        for n in 0..5 {
            log.record(event(n));
            log.durable().wait().unwrap();
            let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
            assert_eq!(summary.records, n + 1);
            assert_eq!(
                summary.uncovered,
                None,
                "record {} released uncovered",
                n + 1
            );
        }
    }

    /// Records made durable and then left without their checkpoint (the
    /// process died, or the power failed, inside the interval) are signed
    /// when the log is reopened, in a checkpoint marked recovered; a tail
    /// that no longer chains from the last checkpoint is not signed.
    #[test]
    fn a_tail_left_uncovered_is_signed_at_reopening_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let key = KeyPair::new();
        let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
        for n in 0..3 {
            log.record(event(n));
        }
        log.flush().unwrap();
        for n in 3..7 {
            log.record(event(n));
        }
        log.flush().unwrap();
        drop(log);
        // As if the process had died after the second batch's synced
        // write and before any checkpoint over it.
        {
            let db =
                DB::open_cf(&Options::default(), &path, ["default", CHECKPOINTS, TAIL]).unwrap();
            for seq in 4..=7 {
                db.delete_cf(db.cf_handle(CHECKPOINTS).unwrap(), key_of(seq))
                    .unwrap();
            }
        }
        let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
        assert_eq!(summary.uncovered, Some((4, 7)));

        let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
        let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
        assert_eq!(summary.uncovered, None);
        assert_eq!(summary.recovered, vec![(4, 7)]);
        let last = checkpoints(&path).pop().unwrap();
        assert!(last.checkpoint.recovered && last.checkpoint.seq == 7);
        // New records after it are covered as usual, and not "recovered".
        log.record(event(7));
        log.flush().unwrap();
        drop(log);
        let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
        assert_eq!((summary.last_seq, summary.uncovered), (Some(8), None));
        assert_eq!(summary.recovered, vec![(4, 7)]);

        // A tail altered while the log was closed is left uncovered for
        // `audit verify` to name, never signed.
        for n in 8..10 {
            let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
            log.record(event(n));
            log.flush().unwrap();
        }
        {
            let db =
                DB::open_cf(&Options::default(), &path, ["default", CHECKPOINTS, TAIL]).unwrap();
            db.delete_cf(db.cf_handle(CHECKPOINTS).unwrap(), key_of(10))
                .unwrap();
            let line = db.get(key_of(10)).unwrap().unwrap();
            let forged = String::from_utf8(line).unwrap().replace("/api/9", "/api/X");
            db.put(key_of(10), forged).unwrap();
        }
        drop(AuditLog::open(&path, &key, AuditOptions::default()).unwrap());
        assert!(!checkpoints(&path).iter().any(|c| c.checkpoint.seq == 10));
        let problem = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap_err();
        assert!(problem.to_string().contains("record 10"), "{problem}");
    }

    /// The other ways a stopped store can be arranged to steer where the
    /// writer goes on: a copy of the last appended record stored under the
    /// next key (the tail no longer chains where its keys say), a planted
    /// last checkpoint, the end cut back to a covered record, a record
    /// claiming the largest sequence number. None lets a later checkpoint
    /// cover records the writer did not write, and none panics.
    #[test]
    fn a_stopped_store_cannot_steer_where_the_writer_goes_on() {
        let key = KeyPair::new();
        let rw = |path: &Path| {
            DB::open_cf(&Options::default(), path, ["default", CHECKPOINTS, TAIL]).unwrap()
        };
        let fresh = |n: u64| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit");
            let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
            for i in 0..n {
                log.record(event(i));
            }
            log.flush().unwrap();
            drop(log);
            (dir, path)
        };
        let last = |path: &Path| {
            let read = read_audit_log(path).unwrap();
            let (_, e) = read.entries.last().unwrap();
            e.as_ref().unwrap().clone()
        };
        let write_one_more = |path: &Path, n: u64| {
            let log = AuditLog::open(path, &key, AuditOptions::default()).unwrap();
            log.record(event(n));
            log.flush().unwrap();
        };
        let verified = |path: &Path| verify_entries(&read_audit_log(path).unwrap(), &key.public());

        // Appended 5..=6, and a copy of 6 under key 7.
        let (_dir, path) = fresh(4);
        {
            let db = rw(&path);
            let mut prev = last(&path).hash;
            let mut line6 = Vec::new();
            for seq in 5..=6 {
                let (hash, line) = AuditEntry::seal_event(
                    &event(90 + seq),
                    seq,
                    &prev,
                    &mut ChainJson::default(),
                    None,
                );
                db.put(key_of(seq), &line).unwrap();
                prev = hash;
                line6 = line;
            }
            db.put(key_of(7), line6).unwrap();
        }
        write_one_more(&path, 7);
        assert!(
            verified(&path).is_err(),
            "records 5..=7 must not pass as covered"
        );
        assert_eq!(
            read_audit_log(&path).unwrap().entries.len(),
            8,
            "the writer went on after key 7, over nothing stored"
        );

        // Appended 5, and a planted checkpoint (garbage) under key 6.
        let (_dir, path) = fresh(4);
        {
            let db = rw(&path);
            let (_, line) = AuditEntry::seal_event(
                &event(95),
                5,
                &last(&path).hash,
                &mut ChainJson::default(),
                None,
            );
            db.put(key_of(5), line).unwrap();
            db.put_cf(db.cf_handle(CHECKPOINTS).unwrap(), key_of(6), b"{}")
                .unwrap();
        }
        write_one_more(&path, 5);
        assert!(
            verified(&path).is_err(),
            "record 5 must not pass as covered"
        );

        // Cut back to a covered record: 1..=4 covered at 4, 5..=6 removed
        // with their checkpoint. The writer goes on after 6 (its tag), so
        // verify finds 5 and 6 missing.
        let (_dir, path) = fresh(4);
        write_one_more(&path, 4);
        write_one_more(&path, 5);
        {
            let db = rw(&path);
            let cps = db.cf_handle(CHECKPOINTS).unwrap();
            for seq in 5..=6 {
                db.delete(key_of(seq)).unwrap();
                db.delete_cf(cps, key_of(seq)).unwrap();
            }
        }
        assert!(
            verified(&path).is_ok(),
            "a cut at a checkpoint reads as a whole log"
        );
        write_one_more(&path, 6);
        let problem = verified(&path).unwrap_err();
        assert!(problem.to_string().contains("record 5"), "{problem}");

        // Every record and checkpoint deleted, the tag left: the writer
        // goes on after record 4, and verify finds 1..=4 missing.
        let (_dir, path) = fresh(4);
        {
            let db = rw(&path);
            let cps = db.cf_handle(CHECKPOINTS).unwrap();
            for seq in 1..=4 {
                db.delete(key_of(seq)).unwrap();
                db.delete_cf(cps, key_of(seq)).unwrap();
            }
        }
        write_one_more(&path, 4);
        assert!(
            verified(&path).is_err(),
            "a log emptied while stopped must not verify"
        );

        // A record claiming a sequence number near the largest (by its
        // key or its content): refused at opening, never a wrap that
        // would write over record 1.
        for (at, claimed) in [(3, u64::MAX), (3, u64::MAX - 1), (u64::MAX - 1, 3)] {
            let (_dir, path) = fresh(2);
            {
                let db = rw(&path);
                let (_, line) = AuditEntry::seal_event(
                    &event(99),
                    claimed,
                    &last(&path).hash,
                    &mut ChainJson::default(),
                    None,
                );
                db.put(key_of(at), line).unwrap();
            }
            let err = AuditLog::open(&path, &key, AuditOptions::default()).unwrap_err();
            assert!(err.to_string().contains("near the largest"), "{err}");
        }
    }

    /// Someone who can write to a stopped verifier's store (but has not
    /// its audit key) appends a record that chains, or cuts the tail
    /// short: the next start signs neither (the writer's tag over its last
    /// record does not match), and `audit verify` shows the records
    /// uncovered instead of vouched for as recovered.
    #[test]
    fn records_added_or_removed_while_stopped_are_never_signed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let key = KeyPair::new();
        let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
        for n in 0..4 {
            log.record(event(n));
        }
        log.flush().unwrap();
        drop(log);
        let head = |path: &Path| {
            let read = read_audit_log(path).unwrap();
            let (_, last) = read.entries.last().unwrap();
            let last = last.as_ref().unwrap();
            (last.record.seq, last.hash.clone())
        };
        let (seq, hash) = head(&path);
        assert_eq!(seq, 4);
        // Appended: a well-formed record that chains from the last one.
        {
            let db =
                DB::open_cf(&Options::default(), &path, ["default", CHECKPOINTS, TAIL]).unwrap();
            let forged = event(99);
            let (_, line) =
                AuditEntry::seal_event(&forged, 5, &hash, &mut ChainJson::default(), None);
            db.put(key_of(5), line).unwrap();
        }
        let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
        assert_eq!(summary.uncovered, Some((5, 5)), "it chains: only uncovered");
        let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
        let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
        assert_eq!(summary.uncovered, Some((5, 5)), "never signed at restart");
        assert!(summary.recovered.is_empty());
        assert!(!checkpoints(&path).iter().any(|c| c.checkpoint.seq == 5));
        // Nor covered by the next checkpoint, as if the writer had written
        // it: the next record chains from record 4, and verify names 5.
        log.record(event(5));
        log.flush().unwrap();
        drop(log);
        let problem = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap_err();
        assert!(problem.to_string().contains("record 5"), "{problem}");

        // Cut short: the writer wrote 6..=8 (tagged at 8), the checkpoint
        // over them and record 8 are removed.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
        for n in 0..8 {
            log.record(event(n));
            if n == 4 {
                log.flush().unwrap();
            }
        }
        log.flush().unwrap();
        drop(log);
        {
            let db =
                DB::open_cf(&Options::default(), &path, ["default", CHECKPOINTS, TAIL]).unwrap();
            let cps = db.cf_handle(CHECKPOINTS).unwrap();
            for seq in 6..=8 {
                db.delete_cf(cps, key_of(seq)).unwrap();
            }
            db.delete(key_of(8)).unwrap();
        }
        let log = AuditLog::open(&path, &key, AuditOptions::default()).unwrap();
        let summary = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap();
        assert_eq!(summary.uncovered, Some((6, 7)));
        assert!(summary.recovered.is_empty());
        log.record(event(8));
        log.flush().unwrap();
        drop(log);
        let problem = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap_err();
        assert!(problem.to_string().contains("record 7"), "{problem}");
    }
}
