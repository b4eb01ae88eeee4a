//! The embedded usage store (SPEC §18.5): the counters of usage limits in a
//! RocksDB database of this verifier's own.
//!
//! **Atomicity.** One lock is held around each charge: every counter is
//! read (from the in-memory copy, else the database), checked for room, and
//! the changed counters are written in one `WriteBatch` before the lock is
//! released. No interleaving of callers in this process can charge more
//! than a limit allows; RocksDB's lock file keeps a second process out.
//!
//! **Durability.** By default ([`UsageOptions::sync`] `false`) a charge is
//! in RocksDB's write-ahead log before [`UsageMeter::charge`] returns: it
//! survives a crash of the process. It is not fsynced: a power cut or a
//! kernel crash loses what the kernel had not written back yet, up to
//! about 30 s of charges on Linux defaults (`vm.dirty_expire_centisecs`
//! 3000 plus the 5 s writeback interval), and those units can be spent
//! again after the reboot. With `sync` every charge is fsynced first (no
//! loss, one disk flush per allowed request: tens of microseconds on an
//! NVMe disk, milliseconds on others).
//!
//! **Pruning.** A counter whose window ended more than [`PRUNE_GRACE_SECS`]
//! ago holds nothing (the next charge starts a fresh window) and is
//! deleted: at open, by [`UsageStore::prune`], and by a compaction filter
//! whenever RocksDB compacts the files holding it, so a store used by many
//! short-lived tokens does not grow forever. The grace keeps a counter for
//! a day after its window: a request dated earlier than its counter's
//! window is counted in that window (SPEC §18.3), which a pruned counter
//! could no longer do.
//!
//! A counter is stored as 24 bytes: its window index (i64), the units used
//! in it (u64) and the window's end in Unix seconds (i64), big-endian.

use super::{Charge, Charged, Counter, UsageMeter};
use crate::error::VerifierError;
use rocksdb::{compaction_filter::Decision, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How long after its window ended a counter is kept (one day).
pub const PRUNE_GRACE_SECS: i64 = 86_400;

/// Most counters kept in memory in front of the database; past it the copy
/// is dropped and read again as needed.
const MAX_CACHED: usize = 100_000;

/// How often (at most) the in-memory copy drops the counters whose window
/// is over.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How a [`UsageStore`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageOptions {
    /// Fsync the write-ahead log before a charge returns (no charge lost to
    /// a power cut, one disk flush per charge). Default `false`: written to
    /// the log (a process crash loses nothing), not fsynced.
    pub sync: bool,
}

/// The counters of usage limits in RocksDB: a [`UsageMeter`] for one
/// verifier process (see the module documentation for atomicity,
/// durability and pruning).
pub struct UsageStore {
    db: DB,
    path: PathBuf,
    write: WriteOptions,
    sync: bool,
    state: Mutex<State>,
}

impl std::fmt::Debug for UsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What the lock guards: the in-memory copy of counters read or written.
struct State {
    cached: HashMap<String, Stored>,
    swept: Instant,
}

/// A counter as stored: its state and when its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    counter: Counter,
    end: i64,
}

impl Stored {
    const LEN: usize = 24;

    fn encode(&self) -> [u8; Stored::LEN] {
        let mut out = [0u8; Stored::LEN];
        out[..8].copy_from_slice(&self.counter.window.to_be_bytes());
        out[8..16].copy_from_slice(&self.counter.used.to_be_bytes());
        out[16..].copy_from_slice(&self.end.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Stored> {
        let bytes: &[u8; Stored::LEN] = bytes.try_into().ok()?;
        let word = |i: usize| -> [u8; 8] {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            w
        };
        Some(Stored {
            counter: Counter {
                window: i64::from_be_bytes(word(0)),
                used: u64::from_be_bytes(word(8)),
            },
            end: i64::from_be_bytes(word(16)),
        })
    }

    /// Whether the counter can go: its window ended over a day before `now`.
    fn prunable(&self, now: i64) -> bool {
        self.end.saturating_add(PRUNE_GRACE_SECS) <= now
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl UsageStore {
    /// Opens (creating if needed) the store at `path`, with the default
    /// [`UsageOptions`] (write-ahead log, no fsync per charge), and deletes
    /// the counters whose window is long over.
    pub fn open(path: impl AsRef<Path>) -> Result<UsageStore, VerifierError> {
        UsageStore::open_with(path, UsageOptions::default())
    }

    /// [`UsageStore::open`] with `options`.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: UsageOptions,
    ) -> Result<UsageStore, VerifierError> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compaction_filter("mandate-usage-prune", |_level, _key, value: &[u8]| {
            match Stored::decode(value) {
                Some(s) if s.prunable(unix_now()) => Decision::Remove,
                _ => Decision::Keep,
            }
        });
        let db = DB::open(&opts, &path).map_err(|e| store_error(&path, e))?;
        let mut write = WriteOptions::default();
        write.set_sync(options.sync);
        let store = UsageStore {
            db,
            path,
            write,
            sync: options.sync,
            state: Mutex::new(State {
                cached: HashMap::new(),
                swept: Instant::now(),
            }),
        };
        store.prune(unix_now())?;
        Ok(store)
    }

    /// Opens the store at `path` to read it (e.g. to show usage while a
    /// verifier holds it open): what it held at this moment. Charges and
    /// refunds fail (an error, so a verifier using it denies
    /// `limit_unavailable`).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<UsageStore, VerifierError> {
        let path = path.as_ref().to_path_buf();
        if !path.join("CURRENT").exists() {
            return Err(VerifierError::UsageStore {
                detail: "no usage store here".into(),
                path,
            });
        }
        let db = DB::open_for_read_only(&Options::default(), &path, false)
            .map_err(|e| store_error(&path, e))?;
        Ok(UsageStore {
            db,
            path,
            write: WriteOptions::default(),
            sync: false,
            state: Mutex::new(State {
                cached: HashMap::new(),
                swept: Instant::now(),
            }),
        })
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the counters whose window ended more than
    /// [`PRUNE_GRACE_SECS`] before `now` (Unix seconds); returns how many.
    /// Holds the store's lock while it reads every counter.
    pub fn prune(&self, now: i64) -> Result<usize, VerifierError> {
        let mut state = self.lock();
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        for item in self.db.iterator(IteratorMode::Start) {
            let (key, value) = item.map_err(|e| self.error(e))?;
            // A value that does not decode is left for `charge` to report.
            if Stored::decode(&value).is_some_and(|s| s.prunable(now)) {
                batch.delete(&key);
                removed += 1;
            }
        }
        if removed > 0 {
            self.db
                .write_opt(batch, &self.write)
                .map_err(|e| self.error(e))?;
        }
        state.cached.retain(|_, s| !s.prunable(now));
        Ok(removed)
    }

    /// Counters in the store (RocksDB's estimate).
    pub fn estimated_counters(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock left at most a stale in-memory
        // copy of what was written: drop it and carry on from the database.
        self.state.lock().unwrap_or_else(|p| {
            let mut s = p.into_inner();
            s.cached.clear();
            s
        })
    }

    fn error(&self, e: rocksdb::Error) -> VerifierError {
        store_error(&self.path, e)
    }

    /// The counter named `key`: from memory, else from the database (a
    /// counter never written is empty).
    fn load(&self, state: &mut State, key: &str) -> Result<Stored, VerifierError> {
        if let Some(s) = state.cached.get(key) {
            return Ok(*s);
        }
        let Some(bytes) = self.db.get_pinned(key).map_err(|e| self.error(e))? else {
            return Ok(Stored {
                counter: Counter::default(),
                end: i64::MIN,
            });
        };
        let stored = Stored::decode(&bytes).ok_or_else(|| VerifierError::UsageStore {
            path: self.path.clone(),
            detail: format!(
                "counter {key} holds {} bytes, not {}: the store is damaged",
                bytes.len(),
                Stored::LEN
            ),
        })?;
        // Kept: a counter without room is read on every request denied.
        if state.cached.len() < MAX_CACHED {
            state.cached.insert(key.to_string(), stored);
        }
        Ok(stored)
    }

    /// Writes `changed` in one batch, then keeps them in memory.
    fn store(
        &self,
        state: &mut State,
        changed: Vec<(String, Stored)>,
    ) -> Result<(), VerifierError> {
        let mut batch = WriteBatch::default();
        for (key, s) in &changed {
            batch.put(key.as_bytes(), s.encode());
        }
        self.db
            .write_opt(batch, &self.write)
            .map_err(|e| self.error(e))?;
        if state.swept.elapsed() >= SWEEP_EVERY {
            let now = unix_now();
            state.cached.retain(|_, s| !s.prunable(now));
            state.swept = Instant::now();
        }
        if state.cached.len() + changed.len() > MAX_CACHED {
            state.cached.clear();
        }
        state.cached.extend(changed);
        Ok(())
    }
}

fn store_error(path: &Path, e: rocksdb::Error) -> VerifierError {
    VerifierError::UsageStore {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// What [`each_counter`] finds: every changed counter, or the index of the
/// charge `apply` stopped at and that counter as it was.
type Applied = Result<Vec<(String, Stored)>, (usize, Stored)>;

/// The counters of `charges` as they are now, each charge applied in turn
/// to the result of the ones before it (two charges naming one counter add
/// up). `apply` returns the next state, or `Err(index)` to stop.
fn each_counter<F>(
    store: &UsageStore,
    state: &mut State,
    charges: &[Charge],
    mut apply: F,
) -> Result<Applied, VerifierError>
where
    F: FnMut(&Charge, Stored) -> Option<Stored>,
{
    let mut changed: Vec<(String, Stored)> = Vec::with_capacity(charges.len());
    for (i, c) in charges.iter().enumerate() {
        let current = match changed.iter().position(|(k, _)| *k == c.key) {
            Some(at) => changed[at].1,
            None => store.load(state, &c.key)?,
        };
        let Some(next) = apply(c, current) else {
            return Ok(Err((i, current)));
        };
        match changed.iter().position(|(k, _)| *k == c.key) {
            Some(at) => changed[at].1 = next,
            None => changed.push((c.key.clone(), next)),
        }
    }
    Ok(Ok(changed))
}

impl UsageMeter for UsageStore {
    fn charge(&self, charges: &[Charge], unix: i64) -> Result<Charged, VerifierError> {
        if charges.is_empty() {
            return Ok(Charged::Spent);
        }
        let mut state = self.lock();
        let outcome = each_counter(self, &mut state, charges, |c, s| {
            let counter = s.counter.charged(c, unix)?;
            Some(Stored {
                counter,
                end: counter.window_end(c),
            })
        })?;
        match outcome {
            Ok(changed) => {
                self.store(&mut state, changed)?;
                Ok(Charged::Spent)
            }
            Err((index, s)) => {
                let c = &charges[index];
                let (window, end) = c.window_of(unix);
                // The window the charge would have counted in: the
                // counter's when it is ahead of the request's time.
                let window_end = if s.counter.window > window {
                    s.counter.window_end(c)
                } else {
                    end
                };
                Ok(Charged::Exceeded {
                    index,
                    used: s.counter.used_at(c, unix),
                    window_end,
                })
            }
        }
    }

    fn refund(&self, charges: &[Charge], unix: i64) -> Result<(), VerifierError> {
        if charges.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let outcome = each_counter(self, &mut state, charges, |c, s| {
            Some(Stored {
                counter: s.counter.refunded(c, unix),
                end: s.end,
            })
        })?;
        if let Ok(mut changed) = outcome {
            // Counters never written stay unwritten.
            changed.retain(|(_, s)| s.end != i64::MIN);
            if !changed.is_empty() {
                self.store(&mut state, changed)?;
            }
        }
        Ok(())
    }

    /// True only for a store that fsyncs every charge ([`UsageOptions::sync`]):
    /// a disk flush per request is kept off a server's async threads like a
    /// network round trip.
    fn remote(&self) -> bool {
        self.sync
    }

    fn used(&self, charge: &Charge, unix: i64) -> Result<u64, VerifierError> {
        let mut state = self.lock();
        let s = self.load(&mut state, &charge.key)?;
        Ok(s.counter.used_at(charge, unix))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn charge(key: &str, units: u64, max: u64, window_secs: u64) -> Charge {
        Charge {
            key: key.into(),
            units,
            max,
            window_secs,
        }
    }

    #[test]
    fn all_or_nothing_and_kept_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let both = [charge("a", 1, 2, 3600), charge("b", 1, 1, 3600)];
        // Within the current hour (older counters are pruned at open).
        let t = unix_now() / 3600 * 3600;
        {
            let s = UsageStore::open(dir.path()).unwrap();
            assert_eq!(s.charge(&both, t).unwrap(), Charged::Spent);
            assert_eq!(
                s.charge(&both, t + 1).unwrap(),
                Charged::Exceeded {
                    index: 1,
                    used: 1,
                    window_end: t + 3600
                }
            );
            assert_eq!(s.used(&both[0], t + 2).unwrap(), 1, "a was not charged");
        }
        let s = UsageStore::open(dir.path()).unwrap();
        assert_eq!(s.used(&both[0], t + 3).unwrap(), 1);
        assert_eq!(s.used(&both[1], t + 3).unwrap(), 1);
        s.refund(&both, t + 4).unwrap();
        assert_eq!(s.used(&both[1], t + 4).unwrap(), 0);
        assert_eq!(s.charge(&both, t + 5).unwrap(), Charged::Spent);
        assert_eq!(s.used(&both[1], t + 3600).unwrap(), 0, "the next window");
    }

    #[test]
    fn two_charges_on_one_counter_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = UsageStore::open(dir.path()).unwrap();
        let twice = [charge("a", 3, 5, 60), charge("a", 3, 5, 60)];
        assert!(matches!(
            s.charge(&twice, 0).unwrap(),
            Charged::Exceeded { index: 1, .. }
        ));
        assert_eq!(s.used(&twice[0], 0).unwrap(), 0);
    }

    #[test]
    fn counters_long_over_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = UsageStore::open(dir.path()).unwrap();
        let old = charge("old", 1, 5, 60);
        let live = charge("live", 1, 5, 86_400);
        let now = unix_now();
        s.charge(std::slice::from_ref(&old), 0).unwrap();
        s.charge(std::slice::from_ref(&live), now).unwrap();
        assert_eq!(s.prune(now).unwrap(), 1);
        assert_eq!(s.used(&live, now).unwrap(), 1);
        assert!(s.db.get(b"old").unwrap().is_none());
        drop(s);
        // And at open.
        let s = UsageStore::open(dir.path()).unwrap();
        s.charge(&[old], 0).unwrap();
        drop(s);
        let s = UsageStore::open(dir.path()).unwrap();
        assert!(s.db.get(b"old").unwrap().is_none());
        assert!(s.db.get(b"live").unwrap().is_some());
    }

    #[test]
    fn a_read_only_store_shows_usage_and_refuses_charges() {
        let dir = tempfile::tempdir().unwrap();
        let c = charge("k", 2, 5, 3600);
        let t = unix_now();
        let s = UsageStore::open(dir.path()).unwrap();
        s.charge(std::slice::from_ref(&c), t).unwrap();
        // While the writer holds it open.
        let r = UsageStore::open_read_only(dir.path()).unwrap();
        assert_eq!(r.used(&c, t).unwrap(), 2);
        assert!(r.charge(std::slice::from_ref(&c), t).is_err());
        let missing = UsageStore::open_read_only(dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("no usage store"), "{missing}");
    }

    #[test]
    fn a_damaged_counter_is_an_error_not_room() {
        let dir = tempfile::tempdir().unwrap();
        let s = UsageStore::open(dir.path()).unwrap();
        s.db.put(b"k", b"junk").unwrap();
        let e = s.charge(&[charge("k", 1, 5, 60)], 0).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
