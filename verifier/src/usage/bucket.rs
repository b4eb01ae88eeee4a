//! Usage limits across a fleet (SPEC §18.5): [`FleetUsage`], a
//! [`UsageMeter`] whose counters live in a NATS JetStream key-value bucket
//! shared by every verifier. Enabled with the `feed` cargo feature.
//!
//! **Exact mode** (the default). Each counter is one key (its name,
//! [`Charge::key`]) holding a [`Counter`] as JSON (`{"window":…,"used":…}`).
//! A charge reads the key's entry and revision, computes
//! [`Counter::charged`] and writes it back with compare-and-set on that
//! revision (revision 0 for a counter never written: create-if-absent, even
//! over a delete marker, which is refused as tampering). A write that lost a
//! race is retried on the new entry (at most [`UsageBucketConfig::retries`]
//! times, then the charge fails). Several counters are charged one after the
//! other in the request's order (root first); when one has no room or fails,
//! those already charged are given back (compare-and-set again, only within
//! the window they were charged in). Overspend is zero under any
//! interleaving: every unit counted was written over the exact state it was
//! computed from. A verifier remembers the last entry it wrote or read per
//! counter and tries its write over that first (one round trip instead of
//! two when no other verifier wrote since), and serializes its own writes to
//! one counter, so its concurrent requests do not race each other.
//!
//! **Leased mode** ([`UsageBucketConfig::lease`]). A verifier reserves a
//! slice of a counter's remaining allowance (compare-and-set `used +=
//! slice`: the bucket counts it as used), spends from it locally under a
//! mutex with no network round trip, and gives back what it did not spend
//! (compare-and-set `used -= unspent`, in the same window only) when the
//! lease ends: when its window ends (nothing to give back), after
//! [`LeaseConfig::idle`] without a spend, and at [`FleetUsage::close`]
//! (called on drop). The slice is `min(slice, ⌈remaining / (2 ·
//! fleet_size)⌉)`, at least what the request costs, at most what is left:
//! a counter is never leased more than it has left. While leases are out,
//! the units they hold are **stranded**: another verifier's request can be
//! denied `limit_exceeded` while this one holds unspent units. A verifier
//! killed without closing strands its leases until their window ends.
//!
//! **NATS unreachable.** A charge that needs the bucket fails within
//! [`UsageBucketConfig::timeout`] and the request is denied
//! (`limit_unavailable`); a leased verifier still spends what it holds and
//! never more. The client reconnects by itself: charges succeed again once
//! NATS is back, without a restart. A write sent while NATS was down may
//! land when it comes back, after the request was denied: units spent for
//! nothing (less allowance, never more); so does a charge cut by the
//! timeout before its rollback.
//!
//! **Authenticated counters.** Every value a verifier writes is
//! `{"window":…,"used":…,"prev":P,"tag":…}`: `prev` is the revision the
//! write replaced (the compare-and-set's expected revision, 0 on create)
//! and `tag` an HMAC-SHA256, under the fleet key
//! ([`UsageBucketConfig::key_file`]), of the bucket, the key, the window,
//! `used` and `prev`. A counter read at revision R is accepted only if its
//! tag verifies and the first message on its subject after P is R itself
//! (a direct get by subject from P + 1): a value copied from earlier and
//! published again (a rollback) names a predecessor that is no longer the
//! message before it, and an unsigned value has no valid tag; both are
//! refused (`limit_unavailable`). A value this verifier just wrote by
//! compare-and-set needs no such check. Anyone who may publish to
//! `$KV.<bucket>.>` can still deny (write junk); only a holder of the
//! fleet key can forge. The bucket's stream is
//! [`crate::spend_bucket::strict_bucket_stream`]'s (deletes, purges and
//! rollups denied) keeping 2 entries per key (the predecessor the check
//! needs; an existing stream keeping another number is refused), kept 400
//! days by default, longer than any window (366 days), so an entry only
//! expires once its window is over.

use super::lease::{Leases, Unspent};
use super::{Charge, Charged, Counter, UsageMeter};
use crate::error::VerifierError;
use crate::feed::FeedConfig;
use crate::spend_bucket::{
    check_bucket_name, connect_jetstream, open_strict_bucket_history, BlockingRuntime,
};
use async_nats::jetstream::kv;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The longest window a limit may have (SPEC §18.1), seconds.
const MAX_WINDOW_SECS: u64 = 366 * 86_400;

/// How many locks serialize this verifier's writes to its counters.
const STRIPES: usize = 64;

/// At most this many counters' last entries are remembered.
const KNOWN_MAX: usize = 16_384;

/// Entries kept per key: the current value and its predecessor.
const HISTORY: i64 = 2;

/// The fleet key's least length, bytes.
const KEY_MIN: usize = 32;

/// Reads the fleet's usage key from `path`: hexadecimal (whitespace
/// ignored), at least 32 bytes. Make one with
/// `head -c 32 /dev/urandom | xxd -p > usage.key`.
pub fn read_usage_key(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("usage key file {}: {e}", path.display()))?;
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let key = hex::decode(&digits).map_err(|_| {
        format!(
            "usage key file {}: not hexadecimal (make one with `head -c 32 /dev/urandom | xxd \
             -p`)",
            path.display()
        )
    })?;
    if key.len() < KEY_MIN {
        return Err(format!(
            "usage key file {}: {} bytes, at least {KEY_MIN} needed",
            path.display(),
            key.len()
        ));
    }
    Ok(key)
}

/// A counter as stored: the counter, the revision its write replaced and
/// the tag over both.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    window: i64,
    used: u64,
    prev: u64,
    tag: String,
}

/// Where the fleet's counters are, and how to use them.
#[derive(Debug, Clone)]
pub struct UsageBucketConfig {
    /// The key-value bucket. Default `MANDATE_USAGE`.
    pub bucket: String,
    /// Longest wait for one charge (connecting, retries and rollback
    /// included); past it the charge fails and the request is denied.
    /// Default 2 s.
    pub timeout: Duration,
    /// How long the bucket keeps an entry after its last write when this
    /// verifier creates it (an existing bucket keeps its own, refused if
    /// shorter). Zero: forever; else at least 367 days, so no counter
    /// expires within its window. Default 400 days.
    pub max_age: Duration,
    /// Compare-and-set attempts per counter before a charge gives up
    /// (the request is then denied `limit_unavailable`). Default 64.
    pub retries: u32,
    /// Leased local quotas; `None` (the default): exact mode.
    pub lease: Option<LeaseConfig>,
    /// The fleet key authenticating the counters ([`read_usage_key`]),
    /// shared by every verifier of the bucket. Required: without it
    /// [`FleetUsage::new`] refuses.
    pub key_file: Option<PathBuf>,
}

impl UsageBucketConfig {
    /// The defaults above, in `bucket`.
    pub fn new(bucket: impl Into<String>) -> UsageBucketConfig {
        UsageBucketConfig {
            bucket: bucket.into(),
            timeout: Duration::from_secs(2),
            max_age: Duration::from_secs(400 * 86_400),
            retries: 64,
            lease: None,
            key_file: None,
        }
    }
}

/// How a verifier leases slices of the fleet's counters.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The most units one reservation takes (≥ 1).
    pub slice: u64,
    /// How many verifiers share the counters (a hint, ≥ 1): a reservation
    /// takes at most ⌈remaining / (2 · fleet_size)⌉, so the fleet never
    /// leases a counter dry at once. Default 4.
    pub fleet_size: u64,
    /// A lease unused this long is given back. Default 5 s.
    pub idle: Duration,
}

impl LeaseConfig {
    /// Slices of at most `slice` units, the defaults above otherwise.
    pub fn new(slice: u64) -> LeaseConfig {
        LeaseConfig {
            slice,
            fleet_size: 4,
            idle: Duration::from_secs(5),
        }
    }

    /// The units one reservation takes of a counter with `remaining` units
    /// left, for a request missing `need`: the policy stated in the module
    /// documentation. `None` when fewer than `need` remain.
    fn take(&self, remaining: u64, need: u64) -> Option<u64> {
        if remaining < need {
            return None;
        }
        let share = remaining
            .div_ceil(self.fleet_size.max(1).saturating_mul(2))
            .min(self.slice.max(1));
        Some(share.max(need).min(remaining))
    }
}

struct Connected {
    client: async_nats::Client,
    store: kv::Store,
}

/// The bucket, and the client whose connection state guards every write.
#[derive(Clone)]
struct Bucket {
    client: async_nats::Client,
    store: kv::Store,
}

struct Inner {
    nats: FeedConfig,
    cfg: UsageBucketConfig,
    conn: tokio::sync::Mutex<Option<Connected>>,
    /// Serialize this verifier's writes to one counter (by key hash).
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// The last entry written or read per counter: (revision, counter).
    known: Mutex<HashMap<String, (u64, Counter)>>,
    leases: Leases,
    /// The fleet key.
    key: Vec<u8>,
}

/// The fleet's usage counters in a JetStream key-value bucket. See the
/// module documentation.
pub struct FleetUsage {
    inner: Arc<Inner>,
    runtime: BlockingRuntime,
}

impl std::fmt::Debug for FleetUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetUsage")
            .field("bucket", &self.inner.cfg.bucket)
            .field("nats", &crate::feed::redact_url(&self.inner.nats.url))
            .field("lease", &self.inner.cfg.lease)
            .finish_non_exhaustive()
    }
}

impl Drop for FleetUsage {
    fn drop(&mut self) {
        if self.inner.cfg.lease.is_some() {
            if let Err(e) = self.close() {
                tracing::warn!(error = %e, "usage leases not given back");
            }
        }
    }
}

impl FleetUsage {
    /// Counters in the bucket `cfg` names on the NATS server `nats` (its
    /// URL, credentials and TLS, as the revocation feed uses them). Does not
    /// connect: the first charge does ([`FleetUsage::connect`] fails
    /// early), so a verifier starting while NATS is down starts, denies
    /// requests with limits, and charges them once NATS is back.
    pub fn new(nats: FeedConfig, cfg: UsageBucketConfig) -> Result<FleetUsage, VerifierError> {
        let bad = |detail: String| VerifierError::UsageBucket {
            bucket: cfg.bucket.clone(),
            detail,
        };
        check_bucket_name(&cfg.bucket).map_err(bad)?;
        if !cfg.max_age.is_zero() && cfg.max_age.as_secs() <= MAX_WINDOW_SECS {
            return Err(bad(format!(
                "entries kept {} s: a counter could expire within its window (366 days at \
                 most); keep them longer than that, or forever (0)",
                cfg.max_age.as_secs()
            )));
        }
        if let Some(l) = &cfg.lease {
            if l.slice == 0 || l.fleet_size == 0 {
                return Err(bad(
                    "a lease slice and the fleet size must be at least 1".into()
                ));
            }
        }
        let key = match &cfg.key_file {
            Some(path) => read_usage_key(path).map_err(bad)?,
            None => {
                return Err(bad(
                    "no usage key file: the fleet's counters are authenticated with a key \
                     shared by its verifiers (make one with `head -c 32 /dev/urandom | xxd -p`)"
                        .into(),
                ))
            }
        };
        let runtime = BlockingRuntime::new("mandate-usage")
            .map_err(|e| bad(format!("cannot start its runtime: {e}")))?;
        let inner = Arc::new(Inner {
            nats,
            cfg,
            conn: tokio::sync::Mutex::new(None),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            known: Mutex::new(HashMap::new()),
            leases: Leases::default(),
            key,
        });
        if let Some(l) = &inner.cfg.lease {
            let tick = (l.idle / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
            runtime.spawn(end_leases(Arc::downgrade(&inner), tick));
        }
        Ok(FleetUsage { inner, runtime })
    }

    /// Connects and opens (creating if needed) the bucket now, within the
    /// timeout; an error says why. Charges connect by themselves anyway.
    pub fn connect(&self) -> Result<(), VerifierError> {
        let inner = self.inner.clone();
        self.run(async move { inner.store().await.map(|_| ()) })
    }

    /// The bucket the counters are in.
    pub fn bucket(&self) -> &str {
        &self.inner.cfg.bucket
    }

    /// Units this verifier holds in leases and has not spent (windows not
    /// over): allowance the rest of the fleet cannot use until the leases
    /// end. Zero in exact mode.
    pub fn leased(&self) -> u64 {
        self.inner.leases.unspent(now_unix())
    }

    /// Ends every lease, giving back to the bucket what was not spent
    /// (within the timeout). Called on drop; the meter stays usable (a
    /// later charge leases again). Units that could not be given back stay
    /// stranded until their window ends.
    pub fn close(&self) -> Result<(), VerifierError> {
        let inner = self.inner.clone();
        self.run(async move { inner.end_leases(true).await })
    }

    /// Runs `fut` on the meter's runtime, waiting at most the timeout.
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, VerifierError>> + Send + 'static,
    ) -> Result<T, VerifierError> {
        let bucket = &self.inner.cfg.bucket;
        self.runtime.run(self.inner.cfg.timeout, fut, |detail| {
            VerifierError::UsageBucket {
                bucket: bucket.clone(),
                detail,
            }
        })
    }
}

impl UsageMeter for FleetUsage {
    fn charge(&self, charges: &[Charge], unix: i64) -> Result<Charged, VerifierError> {
        if charges.is_empty() {
            return Ok(Charged::Spent);
        }
        let inner = self.inner.clone();
        let owned = charges.to_vec();
        if self.inner.cfg.lease.is_some() {
            if self.inner.leases.spend(charges, unix) {
                return Ok(Charged::Spent);
            }
            return self.run(async move { inner.charge_leased(&owned, unix).await });
        }
        self.run(async move { inner.charge_exact(&owned, unix).await })
    }

    fn refund(&self, charges: &[Charge], unix: i64) -> Result<(), VerifierError> {
        if self.inner.cfg.lease.is_some() {
            self.inner.leases.refund(charges, unix);
            return Ok(());
        }
        let inner = self.inner.clone();
        let owned = charges.to_vec();
        self.run(async move {
            let store = inner.store().await?;
            let _locked = inner.lock_counters(&owned).await;
            for c in &owned {
                inner
                    .give_back(&store, &c.key, c.units, c.window_of(unix).0)
                    .await?;
            }
            Ok(())
        })
    }

    fn used(&self, charge: &Charge, unix: i64) -> Result<u64, VerifierError> {
        let inner = self.inner.clone();
        let owned = charge.clone();
        self.run(async move {
            let store = inner.store().await?;
            let (_, counter) = inner.read(&store, &owned.key).await?;
            Ok(counter.used_at(&owned, unix))
        })
    }

    /// True: charges may wait on NATS (a lease's refill too).
    fn remote(&self) -> bool {
        true
    }
}

/// What one compare-and-set round decides from a counter's state: write
/// this counter and answer `T`, or answer `T` without writing.
enum Cas<T> {
    Write(Counter, T),
    Stop(T),
}

/// One counter's outcome in a charge.
enum Step {
    /// Charged, in this window of the counter.
    Charged(i64),
    /// No room: the units used and when the window ends.
    Full { used: u64, window_end: i64 },
}

/// `counter` as seen by a charge dated `unix`: a later window starts empty.
fn current(counter: Counter, c: &Charge, unix: i64) -> Counter {
    let (window, _) = c.window_of(unix);
    if window > counter.window {
        Counter { window, used: 0 }
    } else {
        counter
    }
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Ends idle leases and leases whose window is over, every `tick`, while
/// the meter lives. A failure is logged once until a round succeeds (NATS
/// down: every tick fails).
async fn end_leases(inner: Weak<Inner>, tick: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.end_leases(false).await {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "idle usage leases not given back yet; retrying");
            }
            Err(_) => {}
            Ok(()) if failing => {
                failing = false;
                tracing::info!("usage leases are given back again");
            }
            Ok(()) => {}
        }
    }
}

impl Inner {
    fn err(&self, detail: impl std::fmt::Display) -> VerifierError {
        VerifierError::UsageBucket {
            bucket: self.cfg.bucket.clone(),
            detail: detail.to_string(),
        }
    }

    /// The open bucket, connecting first if needed.
    async fn store(&self) -> Result<Bucket, VerifierError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(Bucket {
                client: c.client.clone(),
                store: c.store.clone(),
            });
        }
        let (client, js) = connect_jetstream(&self.nats, "mandate-usage-bucket", self.cfg.timeout)
            .await
            .map_err(|e| self.err(e))?;
        let (store, _) = open_strict_bucket_history(
            &js,
            &self.cfg.bucket,
            "Mandate: usage-limit counters shared by the fleet",
            self.cfg.max_age,
            HISTORY,
        )
        .await
        .map_err(|e| self.err(e))?;
        *conn = Some(Connected {
            client: client.clone(),
            store: store.clone(),
        });
        Ok(Bucket { client, store })
    }

    /// Locks the counters of `charges` against this verifier's other
    /// writes, in one global order (no two callers wait on each other).
    async fn lock_counters(&self, charges: &[Charge]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = charges
            .iter()
            .map(|c| {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                BuildHasherDefault::<DefaultHasher>::default().hash_one(&c.key) as usize % STRIPES
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].lock().await);
        }
        guards
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Counter)>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, key: &str, revision: u64, counter: Counter) {
        let mut known = self.known();
        if known.len() >= KNOWN_MAX && !known.contains_key(key) {
            known.clear();
        }
        known.insert(key.to_string(), (revision, counter));
    }

    /// The counter `key` holds and its revision (0 and an empty counter
    /// when it was never written). A delete or purge marker, or a value that
    /// is not a counter, is an error: someone with publish access to the
    /// bucket wrote it, and the counter is refused rather than restarted.
    async fn read(&self, store: &Bucket, key: &str) -> Result<(u64, Counter), VerifierError> {
        for _ in 0..=self.cfg.retries {
            if let Some(read) = self.read_once(store, key).await? {
                return Ok(read);
            }
        }
        Err(self.err(format!(
            "counter {key} changed under every read (too much contention)"
        )))
    }

    /// [`Inner::read`] once: `None` when the entry read was replaced before
    /// its predecessor could be checked (read again).
    async fn read_once(
        &self,
        store: &Bucket,
        key: &str,
    ) -> Result<Option<(u64, Counter)>, VerifierError> {
        if store.client.connection_state() != async_nats::connection::State::Connected {
            return Err(self.err("not connected to NATS (reconnecting)"));
        }
        let entry = store
            .store
            .entry(key)
            .await
            .map_err(|e| self.err(format!("reading counter {key}: {e}")))?;
        let Some(entry) = entry else {
            return Ok(Some((0, Counter::default())));
        };
        if entry.operation != kv::Operation::Put {
            return Err(self.err(format!(
                "counter {key} holds a {:?} marker (the bucket denies deletes: someone with \
                 publish access wrote it); refusing to restart it",
                entry.operation
            )));
        }
        let revision = entry.revision;
        let failed = |why: &str| {
            self.err(format!(
                "counter {key} at revision {revision} failed authentication ({why}); someone \
                 with publish access to the bucket wrote it"
            ))
        };
        let sealed = serde_json::from_slice::<Sealed>(&entry.value)
            .map_err(|_| failed("not a signed counter"))?;
        let counter = Counter {
            window: sealed.window,
            used: sealed.used,
        };
        let tag = hex::decode(&sealed.tag).map_err(|_| failed("bad tag"))?;
        self.mac(key, counter, sealed.prev)
            .verify_slice(&tag)
            .map_err(|_| failed("bad tag"))?;
        if sealed.prev >= revision {
            return Err(failed("it claims to replace a later revision"));
        }
        // The write that made this value replaced `prev`: the next message
        // on the key after `prev` must be this one (a value published again
        // later has other messages between).
        let subject = format!("{}{key}", store.store.prefix);
        let next = store
            .store
            .stream
            .direct_get_next_for_subject(subject, Some(sealed.prev + 1))
            .await
            .map_err(|e| self.err(format!("reading counter {key}'s history: {e}")))?;
        match next.sequence.cmp(&revision) {
            std::cmp::Ordering::Equal => Ok(Some((revision, counter))),
            // Later writes replaced this entry since it was read (the
            // bucket keeps 2): read again.
            std::cmp::Ordering::Greater => Ok(None),
            std::cmp::Ordering::Less => Err(failed(&format!(
                "it replaced revision {} but revision {} came between (a replayed value)",
                sealed.prev, next.sequence
            ))),
        }
    }

    /// The tag of `counter` written over revision `prev` of `key`.
    fn mac(&self, key: &str, counter: Counter, prev: u64) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)]
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"mandate usage counter v1\0");
        for part in [self.cfg.bucket.as_bytes(), key.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&counter.window.to_be_bytes());
        mac.update(&counter.used.to_be_bytes());
        mac.update(&prev.to_be_bytes());
        mac
    }

    /// `counter` as written over revision `prev` of `key`, tagged.
    fn seal(&self, key: &str, counter: Counter, prev: u64) -> Result<Vec<u8>, VerifierError> {
        let tag = hex::encode(self.mac(key, counter, prev).finalize().into_bytes());
        serde_json::to_vec(&Sealed {
            window: counter.window,
            used: counter.used,
            prev,
            tag,
        })
        .map_err(|e| self.err(e))
    }

    /// One compare-and-set loop on `key`: `decide` sees the counter (a
    /// fresh, verified read) and says what to write; a lost race reads
    /// again after a jittered backoff. A decision not to write is only
    /// taken on a fresh read.
    async fn cas<T>(
        &self,
        store: &Bucket,
        key: &str,
        mut decide: impl FnMut(Counter) -> Cas<T>,
    ) -> Result<T, VerifierError> {
        // Always a fresh (verified) read first. Writing on the revision this
        // verifier last wrote, without a read, made the last winner of a hot
        // counter win every race (one round trip against the others' three):
        // they starved and were denied limit_unavailable after 64 losses
        // (the usage_fleet bench, 3 verifiers × 4 threads on one counter).
        let mut state: Option<(u64, Counter, bool)> = None;
        let mut conflicts = 0u32;
        loop {
            let (revision, counter, fresh) = match state.take() {
                Some(s) => s,
                None => {
                    let (r, c) = self.read(store, key).await?;
                    (r, c, true)
                }
            };
            let (next, out) = match decide(counter) {
                Cas::Stop(out) if fresh => {
                    self.remember(key, revision, counter);
                    return Ok(out);
                }
                Cas::Stop(_) => continue,
                Cas::Write(next, out) => (next, out),
            };
            let value = self.seal(key, next, revision)?;
            // Never queue a write while disconnected: the client would send
            // it on reconnecting, after the request was denied.
            if store.client.connection_state() != async_nats::connection::State::Connected {
                return Err(self.err("not connected to NATS (reconnecting)"));
            }
            match store.store.update(key, value.into(), revision).await {
                Ok(revision) => {
                    self.remember(key, revision, next);
                    return Ok(out);
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    conflicts += 1;
                    if conflicts > self.cfg.retries {
                        return Err(self.err(format!(
                            "counter {key} changed under {conflicts} writes in a row (too much \
                             contention)"
                        )));
                    }
                    if conflicts > 1 {
                        // Exponential backoff with full jitter: verifiers
                        // that keep losing the race on a hot counter spread
                        // out instead of colliding again in lockstep (each
                        // retry is a read, a check and a write).
                        let ceiling = 100u64 << conflicts.min(6);
                        let nanos = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| u64::from(d.subsec_nanos()));
                        let mixed = (nanos ^ u64::from(conflicts).wrapping_mul(0x9e37_79b9))
                            .wrapping_mul(0x2545_f491_4f6c_dd1d);
                        let jitter = (mixed >> 33) % ceiling;
                        tokio::time::sleep(Duration::from_micros(jitter)).await;
                    }
                }
                Err(e) => {
                    self.known().remove(key);
                    return Err(self.err(format!("writing counter {key}: {e}")));
                }
            }
        }
    }

    /// Gives `units` back to `key` if the counter is still in `window`
    /// (never below zero).
    async fn give_back(
        &self,
        store: &Bucket,
        key: &str,
        units: u64,
        window: i64,
    ) -> Result<(), VerifierError> {
        self.cas(store, key, |counter| {
            if units == 0 || counter.window != window || counter.used == 0 {
                Cas::Stop(())
            } else {
                Cas::Write(
                    Counter {
                        window,
                        used: counter.used.saturating_sub(units),
                    },
                    (),
                )
            }
        })
        .await
    }

    /// Exact mode: every counter charged in the bucket, all or nothing.
    async fn charge_exact(&self, charges: &[Charge], unix: i64) -> Result<Charged, VerifierError> {
        let store = self.store().await?;
        let _locked = self.lock_counters(charges).await;
        let mut done: Vec<(usize, i64)> = Vec::with_capacity(charges.len());
        for (i, c) in charges.iter().enumerate() {
            let step = self
                .cas(&store, &c.key, |counter| match counter.charged(c, unix) {
                    Some(next) => Cas::Write(next, Step::Charged(next.window)),
                    None => {
                        let now = current(counter, c, unix);
                        Cas::Stop(Step::Full {
                            used: now.used,
                            window_end: now.window_end(c),
                        })
                    }
                })
                .await;
            let exceeded = match step {
                Ok(Step::Charged(window)) => {
                    done.push((i, window));
                    continue;
                }
                Ok(Step::Full { used, window_end }) => Ok(Charged::Exceeded {
                    index: i,
                    used,
                    window_end,
                }),
                Err(e) => Err(e),
            };
            self.roll_back(&store, charges, &done).await;
            return exceeded;
        }
        Ok(Charged::Spent)
    }

    /// Gives back the charges already made for a request that is not
    /// allowed after all; one that fails stays spent (less allowance).
    async fn roll_back(&self, store: &Bucket, charges: &[Charge], done: &[(usize, i64)]) {
        for &(i, window) in done {
            let c = &charges[i];
            if let Err(e) = self.give_back(store, &c.key, c.units, window).await {
                tracing::warn!(counter = %c.key, units = c.units, error = %e,
                    "usage charge not rolled back: the units stay spent");
            }
        }
    }

    /// Leased mode, when the leases cannot pay: reserve what is missing,
    /// then spend from the leases.
    async fn charge_leased(&self, charges: &[Charge], unix: i64) -> Result<Charged, VerifierError> {
        let Some(policy) = self.cfg.lease.clone() else {
            return self.charge_exact(charges, unix).await;
        };
        let store = self.store().await?;
        let _locked = self.lock_counters(charges).await;
        // Other requests of this verifier spend from the leases meanwhile
        // (the fast path takes no stripe lock): a few rounds.
        for _ in 0..16 {
            let Some(lacking) = self.leases.lacking(charges, unix) else {
                return Err(self.err("a request's cost overflows"));
            };
            for (i, need) in lacking {
                let c = &charges[i];
                let reserved = self
                    .cas(&store, &c.key, |counter| {
                        let now = current(counter, c, unix);
                        let remaining = c.max.saturating_sub(now.used);
                        match policy.take(remaining, need) {
                            Some(take) => Cas::Write(
                                Counter {
                                    window: now.window,
                                    used: now.used + take,
                                },
                                Ok((now, take)),
                            ),
                            None => Cas::Stop(Err((now.used, now.window_end(c)))),
                        }
                    })
                    .await?;
                match reserved {
                    Ok((now, take)) => {
                        let stranded = self.leases.add(&c.key, now.window, now.window_end(c), take);
                        if stranded > 0 {
                            tracing::warn!(counter = %c.key, units = stranded,
                                "usage lease reserved behind the counter's window: units stranded");
                        }
                    }
                    Err((used, window_end)) => {
                        return Ok(Charged::Exceeded {
                            index: i,
                            used,
                            window_end,
                        })
                    }
                }
            }
            if self.leases.spend(charges, unix) {
                return Ok(Charged::Spent);
            }
        }
        Err(self.err("the leases were spent by other requests as fast as they were reserved"))
    }

    /// Ends leases (all, or the idle and window-ended ones) and gives back
    /// what they did not spend; what cannot be given back now is kept as a
    /// lease (spendable here, given back on a later round) unless closing.
    async fn end_leases(&self, all: bool) -> Result<(), VerifierError> {
        let idle = self.cfg.lease.as_ref().map_or(Duration::ZERO, |l| l.idle);
        let unspent = self.leases.end(now_unix(), idle, all);
        if unspent.is_empty() {
            return Ok(());
        }
        let mut first_error = None;
        let store = self.store().await;
        for u in unspent {
            let given = match &store {
                Ok(store) => self.give_back_unspent(store, &u).await,
                Err(e) => Err(e.clone()),
            };
            if let Err(e) = given {
                if !all {
                    let idle_since = Instant::now()
                        .checked_sub(idle)
                        .unwrap_or_else(Instant::now);
                    self.leases.restore(&u, idle_since);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn give_back_unspent(&self, store: &Bucket, u: &Unspent) -> Result<(), VerifierError> {
        let probe = Charge {
            key: u.key.clone(),
            units: u.units,
            max: 0,
            window_secs: 1,
        };
        let _locked = self.lock_counters(std::slice::from_ref(&probe)).await;
        self.give_back(store, &u.key, u.units, u.window).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_lease_takes_its_share_at_least_the_need_at_most_what_is_left() {
        let p = LeaseConfig {
            slice: 100,
            fleet_size: 3,
            idle: Duration::from_secs(5),
        };
        assert_eq!(p.take(1000, 1), Some(100), "min(100, ⌈1000/6⌉ = 167)");
        assert_eq!(p.take(300, 1), Some(50), "⌈300/6⌉");
        assert_eq!(p.take(5, 1), Some(1), "⌈5/6⌉");
        assert_eq!(p.take(5, 4), Some(4), "at least the need");
        assert_eq!(p.take(3, 4), None, "never more than is left");
        assert_eq!(p.take(0, 1), None);
        assert_eq!(p.take(1000, 700), Some(700));
    }

    #[test]
    fn a_bucket_that_could_expire_a_live_counter_is_refused() {
        let mut cfg = UsageBucketConfig::new("U");
        cfg.max_age = Duration::from_secs(86_400);
        let err = FleetUsage::new(FeedConfig::new("nats://127.0.0.1:1"), cfg).unwrap_err();
        assert!(
            err.to_string().contains("could expire within its window"),
            "{err}"
        );
        let err = FleetUsage::new(
            FeedConfig::new("nats://127.0.0.1:1"),
            UsageBucketConfig::new("a.b"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a valid bucket name"), "{err}");
    }
}
