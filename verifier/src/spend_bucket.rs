//! Single use across a fleet of verifiers (SPEC §14.4, §15, §11): a
//! [`SingleUse`] record whose spends go to a NATS JetStream key-value bucket
//! shared by every verifier, in front of the verifier's own
//! [`ReplayGuard`], which stays the record of what this verifier saw and
//! serves as a cache. Enabled with the `feed` cargo feature.
//!
//! A spend is **create-if-absent** in the bucket (`kv.create`): JetStream
//! accepts the first write of a key and refuses every later one ("wrong last
//! sequence"), whichever verifier makes it, so exactly one use in the fleet
//! is [`Use::First`]. Keys are the hex SHA-256 of the single-use key (valid
//! KV keys whatever the key holds). A key already in the local record is
//! [`Use::Replayed`] without asking NATS; a key the bucket accepted or
//! refused is recorded locally too.
//!
//! When the bucket cannot be reached within the timeout (NATS down, the
//! bucket missing, a slow server), the spend fails and the verifier denies
//! (`replay_record_unavailable`, the reason naming the bucket): fail closed.
//! The NATS client reconnects by itself; the next spend after NATS is back
//! succeeds, without a restart.
//!
//! Entries expire with the bucket's `max_age` (nats-server 2.9, the Debian
//! one, has no per-key expiry): a use whose entry must outlive it (an
//! approval valid for longer than the bucket keeps entries) is refused
//! rather than recorded for too short a time.
//!
//! [`SingleUse::use_once`] is synchronous, called from the decision
//! pipeline (servers run such decisions on blocking threads). The record
//! owns a small tokio runtime; a spend runs there and the caller waits on a
//! channel, bounded by the timeout, so it never needs (or blocks) the
//! caller's runtime. Servers' inline path never reaches it: approval
//! spends are excluded there, and so are proofs when nonces are spent in
//! the bucket ([`SingleUse::remote_nonces`]).

use crate::error::VerifierError;
use crate::feed::{FeedConfig, FeedError};
use crate::replay::{ReplayGuard, SingleUse, Use, NONCE_KEY_PREFIX};
use async_nats::jetstream::{self, kv};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Where spends go, and how long to wait for them.
#[derive(Debug, Clone)]
pub struct SpendBucketConfig {
    /// The key-value bucket for approvals. Default `MANDATE_SPENT`.
    pub bucket: String,
    /// Longest wait for one spend (connecting included); past it the spend
    /// fails and the request is denied. Default 2 s.
    pub timeout: Duration,
    /// How long the bucket keeps entries when this verifier creates it (an
    /// existing bucket keeps its own setting). It must cover the longest an
    /// approval stays valid: a spend that needs longer is refused. Default
    /// 7 days.
    pub max_age: Duration,
    /// Spend proof-of-possession nonces fleet-wide too, in the bucket
    /// `<bucket>_NONCES` (kept `nonce_max_age`). Default off: nonces stay in
    /// the local record (one per request; a network round trip each).
    pub nonces: bool,
    /// How long the nonce bucket keeps entries when created here: at least
    /// twice the proof skew. Default 5 minutes.
    pub nonce_max_age: Duration,
}

impl SpendBucketConfig {
    /// The defaults above, with approvals spent in `bucket`.
    pub fn new(bucket: impl Into<String>) -> SpendBucketConfig {
        SpendBucketConfig {
            bucket: bucket.into(),
            timeout: Duration::from_secs(2),
            max_age: Duration::from_secs(7 * 24 * 3600),
            nonces: false,
            nonce_max_age: Duration::from_secs(300),
        }
    }

    fn nonce_bucket(&self) -> String {
        format!("{}_NONCES", self.bucket)
    }
}

/// A bucket opened, with how long it keeps entries (zero: forever).
#[derive(Clone)]
struct Opened {
    store: kv::Store,
    name: String,
    max_age: Duration,
}

struct Connected {
    // Kept so the connection lives as long as the stores.
    _client: async_nats::Client,
    approvals: Opened,
    nonces: Option<Opened>,
}

struct Inner {
    nats: FeedConfig,
    cfg: SpendBucketConfig,
    conn: tokio::sync::Mutex<Option<Connected>>,
}

/// The fleet-wide record of uses: a JetStream key-value bucket in front of
/// the local [`ReplayGuard`]. See the module documentation.
pub struct FleetSingleUse {
    local: Arc<ReplayGuard>,
    inner: Arc<Inner>,
    runtime: BlockingRuntime,
}

impl std::fmt::Debug for FleetSingleUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSingleUse")
            .field("bucket", &self.inner.cfg.bucket)
            .field("nats", &crate::feed::redact_url(&self.inner.nats.url))
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl FleetSingleUse {
    /// A record spending in the bucket `cfg` names on the NATS server
    /// `nats` (its URL, credentials and TLS, as the revocation feed uses
    /// them), caching in `local`. Does not connect: the first spend does
    /// (see [`FleetSingleUse::connect`] to fail early), so a verifier
    /// starting while NATS is down starts, denies approvals, and accepts
    /// them once NATS is back.
    pub fn new(
        local: Arc<ReplayGuard>,
        nats: FeedConfig,
        cfg: SpendBucketConfig,
    ) -> Result<FleetSingleUse, VerifierError> {
        for name in [cfg.bucket.clone(), cfg.nonce_bucket()] {
            check_bucket_name(&name).map_err(|detail| VerifierError::SpendBucket {
                bucket: name,
                detail,
            })?;
        }
        let runtime =
            BlockingRuntime::new("mandate-spend").map_err(|e| VerifierError::SpendBucket {
                bucket: cfg.bucket.clone(),
                detail: format!("cannot start its runtime: {e}"),
            })?;
        Ok(FleetSingleUse {
            local,
            inner: Arc::new(Inner {
                nats,
                cfg,
                conn: tokio::sync::Mutex::new(None),
            }),
            runtime,
        })
    }

    /// Connects and opens (creating if needed) the buckets now, within the
    /// timeout; an error says why. Spends connect by themselves anyway.
    pub fn connect(&self) -> Result<(), VerifierError> {
        let inner = self.inner.clone();
        self.run(&self.inner.cfg.bucket, async move {
            inner.opened().await.map(|_| ())
        })
    }

    /// The bucket approvals are spent in.
    pub fn bucket(&self) -> &str {
        &self.inner.cfg.bucket
    }

    /// Runs `fut` on the record's runtime, waiting at most the timeout.
    fn run<T: Send + 'static>(
        &self,
        bucket: &str,
        fut: impl std::future::Future<Output = Result<T, VerifierError>> + Send + 'static,
    ) -> Result<T, VerifierError> {
        self.runtime.run(self.inner.cfg.timeout, fut, |detail| {
            VerifierError::SpendBucket {
                bucket: bucket.to_string(),
                detail,
            }
        })
    }
}

/// A small tokio runtime (one worker) that synchronous callers wait on,
/// bounded by a timeout, so a decision pipeline running on any thread never
/// needs (or blocks) the caller's runtime. Shared by the spend bucket and
/// the usage bucket.
pub(crate) struct BlockingRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl BlockingRuntime {
    /// A runtime whose worker is named `thread_name`.
    pub(crate) fn new(thread_name: &str) -> std::io::Result<BlockingRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()?;
        Ok(BlockingRuntime { rt: Some(rt) })
    }

    /// Runs `fut` there and waits for it at most `timeout`; past it (or
    /// after a shutdown) the error `unavailable` makes from what happened.
    pub(crate) fn run<T: Send + 'static, E: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
        unavailable: impl Fn(String) -> E,
    ) -> Result<T, E> {
        let Some(rt) = &self.rt else {
            return Err(unavailable("shut down".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let out = tokio::time::timeout(timeout, fut).await;
            let _ = tx.send(out);
        });
        let waited = || format!("no answer within {:.1} s", timeout.as_secs_f64());
        match rx.recv_timeout(timeout + Duration::from_millis(500)) {
            Ok(Ok(result)) => result,
            Ok(Err(_elapsed)) => Err(unavailable(waited())),
            Err(_) => Err(unavailable(waited())),
        }
    }

    /// Starts `fut` there in the background (nothing after a shutdown).
    pub(crate) fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.rt {
            rt.spawn(fut);
        }
    }
}

impl Drop for BlockingRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context
        // (a server shutting down): let its thread finish on its own.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A JetStream key-value bucket name: letters, digits, `_` and `-`.
pub(crate) fn check_bucket_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err("not a valid bucket name (letters, digits, `_` and `-`)".into())
    }
}

/// Connects to `nats` as `client_name` (the feed's credentials and TLS) and
/// returns the client and its JetStream context, whose requests wait at
/// most `timeout`. Errors name the server, never its credentials.
pub(crate) async fn connect_jetstream(
    nats: &FeedConfig,
    client_name: &str,
    timeout: Duration,
) -> Result<(async_nats::Client, jetstream::Context), String> {
    let client = nats.connect_as(client_name).await.map_err(|e| match e {
        FeedError::Nats { url, detail } => format!("NATS at {url}: {detail}"),
        other => other.to_string(),
    })?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(timeout);
    Ok((client, js))
}

/// Opens the key-value bucket `name`, creating it as
/// [`strict_bucket_stream`] says (entries kept `max_age`, zero: forever) if
/// it does not exist, and refusing an existing stream that could lose an
/// entry before `max_age`: the store and how long it keeps entries.
pub(crate) async fn open_strict_bucket(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    max_age: Duration,
) -> Result<(kv::Store, Duration), String> {
    open_strict_bucket_history(js, name, description, max_age, 1).await
}

/// [`open_strict_bucket`] keeping `history` entries per key (the usage
/// bucket keeps 2: a counter's predecessor, SPEC §18.5); an existing stream
/// keeping another number is refused.
pub(crate) async fn open_strict_bucket_history(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    max_age: Duration,
    history: i64,
) -> Result<(kv::Store, Duration), String> {
    let mut config =
        strict_bucket_stream(name, description, crate::feed::MAX_MESSAGE_SIZE, max_age);
    config.max_messages_per_subject = history;
    let stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| e.to_string())?;
    check_bucket_stream(&stream.cached_info().config, max_age, history)?;
    let store = js.get_key_value(name).await.map_err(|e| e.to_string())?;
    let kept = store.status().await.map_err(|e| e.to_string())?.max_age();
    Ok((store, kept))
}

impl Inner {
    fn err(&self, bucket: &str, e: impl std::fmt::Display) -> VerifierError {
        VerifierError::SpendBucket {
            bucket: bucket.to_string(),
            detail: e.to_string(),
        }
    }

    /// The open buckets, connecting first if needed.
    async fn opened(&self) -> Result<(Opened, Option<Opened>), VerifierError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok((c.approvals.clone(), c.nonces.clone()));
        }
        let bucket = &self.cfg.bucket;
        let (client, js) = connect_jetstream(&self.nats, "mandate-spend-bucket", self.cfg.timeout)
            .await
            .map_err(|e| self.err(bucket, e))?;
        let approvals = self.open(&js, bucket, self.cfg.max_age).await?;
        let nonces = if self.cfg.nonces {
            let name = self.cfg.nonce_bucket();
            Some(self.open(&js, &name, self.cfg.nonce_max_age).await?)
        } else {
            None
        };
        *conn = Some(Connected {
            _client: client,
            approvals: approvals.clone(),
            nonces: nonces.clone(),
        });
        Ok((approvals, nonces))
    }

    /// Opens `name`, creating it (file storage, one entry per key, entries
    /// kept `max_age`) if it does not exist.
    async fn open(
        &self,
        js: &jetstream::Context,
        name: &str,
        max_age: Duration,
    ) -> Result<Opened, VerifierError> {
        let (store, max_age) = open_strict_bucket(
            js,
            name,
            "Mandate: approvals and nonces used once across the fleet",
            max_age,
        )
        .await
        .map_err(|e| self.err(name, e))?;
        Ok(Opened {
            store,
            name: name.to_string(),
            max_age,
        })
    }

    /// Spends `key` (kept until `until`) in the bucket: whether this was
    /// the first use anywhere in the fleet.
    async fn spend(&self, key: Vec<u8>, until: OffsetDateTime) -> Result<Use, VerifierError> {
        let (approvals, nonces) = self.opened().await?;
        let bucket = match nonces {
            Some(n) if key.starts_with(NONCE_KEY_PREFIX) => n,
            _ => approvals,
        };
        let now = OffsetDateTime::now_utc();
        if !bucket.max_age.is_zero() && until > now + bucket.max_age {
            return Err(self.err(
                &bucket.name,
                format!(
                    "the use must be remembered until {until}, longer than the bucket keeps \
                     entries ({} s)",
                    bucket.max_age.as_secs()
                ),
            ));
        }
        let name = hex::encode(Sha256::digest(&key));
        let value = until.unix_timestamp().to_be_bytes().to_vec();
        // Expected last revision 0: accepted only if the key's subject has
        // never held a message. Not `kv.create`, which writes again over a
        // delete or purge marker: anyone able to publish one would un-spend
        // the key.
        match bucket.store.update(&name, value.into(), 0).await {
            Ok(_) => Ok(Use::First),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Use::Replayed),
            Err(e) => Err(self.err(&bucket.name, e)),
        }
    }
}

/// The stream of key-value bucket `name`, made as `create_key_value` would
/// (one entry per key, direct gets, file storage) but stricter: deletes,
/// purges and rollups denied, so nothing published to the bucket's subjects
/// removes or rolls up what a key holds, and a full stream refuses new
/// entries rather than evict old ones. Entries kept `max_age` (zero:
/// forever). (`create_key_value` first reads the account's limits, which
/// async-nats 0.51 cannot parse from nats-server 2.9, Debian's.) Shared by
/// the spend bucket and the issuer services' approval queue.
pub fn strict_bucket_stream(
    name: &str,
    description: &str,
    max_message_size: i32,
    max_age: Duration,
) -> jetstream::stream::Config {
    let dedup = Duration::from_secs(120);
    jetstream::stream::Config {
        name: format!("KV_{name}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_messages: -1,
        max_bytes: -1,
        max_message_size,
        max_age,
        duplicate_window: if max_age.is_zero() {
            dedup
        } else {
            dedup.min(max_age)
        },
        storage: jetstream::stream::StorageType::File,
        allow_rollup: false,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        num_replicas: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// Refuses a bucket stream (made by someone else, maybe to un-spend keys)
/// whose settings could lose a spent key before it expires: more than one
/// entry per key, limits that evict old entries, deletes, purges or
/// rollups allowed, or entries kept less than `max_age`. A missing or large
/// maximum message size is only logged.
fn check_bucket_stream(
    cfg: &jetstream::stream::Config,
    max_age: Duration,
    history: i64,
) -> Result<(), String> {
    let mut bad = Vec::new();
    if cfg.max_messages_per_subject != history {
        bad.push(format!(
            "max_msgs_per_subject is {} (history must be {history})",
            cfg.max_messages_per_subject
        ));
    }
    let evicts = cfg.discard == jetstream::stream::DiscardPolicy::Old;
    if evicts && cfg.max_messages > 0 {
        bad.push(format!(
            "max_msgs is {} with discard old (evicts spent keys)",
            cfg.max_messages
        ));
    }
    if evicts && cfg.max_bytes > 0 {
        bad.push(format!(
            "max_bytes is {} with discard old (evicts spent keys)",
            cfg.max_bytes
        ));
    }
    if !cfg.deny_delete {
        bad.push("deny_delete is false".into());
    }
    if !cfg.deny_purge {
        bad.push("deny_purge is false".into());
    }
    if cfg.allow_rollup {
        bad.push("allow_rollup is true".into());
    }
    if !cfg.max_age.is_zero() && (max_age.is_zero() || cfg.max_age < max_age) {
        bad.push(format!(
            "max_age is {} s, expected {}",
            cfg.max_age.as_secs(),
            if max_age.is_zero() {
                "none".to_string()
            } else {
                format!("at least {} s", max_age.as_secs())
            }
        ));
    }
    if !bad.is_empty() {
        return Err(format!(
            "refusing its existing stream {}: {} (a spent key or a usage counter could be \
             lost and used again; delete the stream or fix its settings)",
            cfg.name,
            bad.join(", ")
        ));
    }
    crate::feed::warn_message_size(cfg);
    Ok(())
}

impl SingleUse for FleetSingleUse {
    fn use_once(
        &self,
        key: &[u8],
        until: OffsetDateTime,
        synced: bool,
    ) -> Result<Use, VerifierError> {
        if key.starts_with(NONCE_KEY_PREFIX) && !self.inner.cfg.nonces {
            return self.local.use_once(key, until, synced);
        }
        // Seen here before: no need to ask the fleet.
        if self.local.contains(key)? {
            return Ok(Use::Replayed);
        }
        let bucket = if self.inner.cfg.nonces && key.starts_with(NONCE_KEY_PREFIX) {
            self.inner.cfg.nonce_bucket()
        } else {
            self.inner.cfg.bucket.clone()
        };
        let inner = self.inner.clone();
        let owned = key.to_vec();
        let spent = self.run(&bucket, async move { inner.spend(owned, until).await })?;
        // Cache the outcome either way: a key the fleet holds is never
        // asked about again.
        self.local.use_once(key, until, synced)?;
        Ok(spent)
    }

    fn remote_nonces(&self) -> bool {
        self.inner.cfg.nonces
    }
}
