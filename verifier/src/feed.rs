//! The revocation feed: revocations published by issuers to a NATS JetStream
//! stream, and applied by every verifier to its local RocksDB revocation list
//! (specification §9.3). Enabled with the `feed` cargo feature.
//!
//! Each verifier reads the stream from the sequence after the last one it
//! applied, and writes every entry **in the same RocksDB write batch** as the
//! stream sequence it reached, so a restart resumes exactly where it stopped:
//! no entry lost, none applied twice. A verifier that has not heard from the
//! feed for longer than its staleness limit denies every request
//! (`revocation_unavailable`, "revocation list stale") until it catches up.
//!
//! A feed that answers but cannot be followed is **stuck**, and a stuck feed
//! denies at once, whatever the staleness limit: a message that is not a
//! revocation entry, a stream that ends before the position this verifier
//! reached (it was deleted and recreated), or a gap in the sequence
//! (messages removed before this verifier read them). Each would otherwise
//! hide revocations while the verifier looked current. The operator clears
//! it by deciding where to resume (`mandate revocations --db DIR
//! --set-feed-position N`, with the verifier stopped).

use crate::error::VerifierError;
use crate::revocation::{Revocation, RevocationList, RevocationStore, Target};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the feed lives and how long a verifier may go without hearing from it.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// JetStream stream name. Default `MANDATE_REVOCATIONS`.
    pub stream: String,
    /// Subject revocations are published on. Default `mandate.revocations`.
    pub subject: String,
    /// Longest time without a successful exchange with the feed before the
    /// verifier denies everything. Default 10 s.
    pub staleness: Duration,
    /// How long one pull waits for new entries before asking again (each
    /// answered pull counts as hearing from the feed). Default 500 ms.
    pub poll: Duration,
    /// **Insecure**: keep allowing (with possibly missed revocations) when the
    /// feed is stale or stuck. Never the default.
    pub insecure_fail_open_when_stale: bool,
    /// How to authenticate to the NATS server. Default: none (a server on
    /// loopback or a private network). Anyone who can publish on the subject
    /// can revoke, and anyone who can delete the stream can make every
    /// verifier fail closed: production servers should require credentials.
    pub credentials: Option<FeedCredentials>,
    /// A PEM file of CA certificates: when set, the connection must use TLS
    /// and the server's certificate must chain to one of them. Default: none.
    pub tls_ca: Option<PathBuf>,
}

/// Credentials for the NATS server.
#[derive(Clone)]
#[non_exhaustive]
pub enum FeedCredentials {
    /// A NATS `.creds` file (user JWT and NKey seed), as `nsc` writes them.
    CredsFile(PathBuf),
    /// A user name and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password (never logged).
        password: String,
    },
    /// An authentication token (never logged).
    Token(String),
}

impl std::fmt::Debug for FeedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedCredentials::CredsFile(p) => f.debug_tuple("CredsFile").field(p).finish(),
            FeedCredentials::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .finish_non_exhaustive(),
            FeedCredentials::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl FeedConfig {
    /// The defaults above, for the server at `url`.
    pub fn new(url: impl Into<String>) -> FeedConfig {
        FeedConfig {
            url: url.into(),
            stream: "MANDATE_REVOCATIONS".into(),
            subject: "mandate.revocations".into(),
            staleness: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            insecure_fail_open_when_stale: false,
            credentials: None,
            tls_ca: None,
        }
    }

    /// Connects to the server with the configured credentials and TLS.
    async fn connect(&self) -> Result<async_nats::Client, FeedError> {
        let mut options = async_nats::ConnectOptions::new()
            .name("mandate-revocation-feed")
            .connection_timeout(Duration::from_secs(2));
        match &self.credentials {
            None => {}
            Some(FeedCredentials::CredsFile(path)) => {
                options = options.credentials_file(path).await.map_err(|e| {
                    nats_err(
                        &self.url,
                        format!("cannot read credentials file {}: {e}", path.display()),
                    )
                })?;
            }
            Some(FeedCredentials::UserPassword { user, password }) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            Some(FeedCredentials::Token(token)) => options = options.token(token.clone()),
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        options
            .connect(&self.url)
            .await
            .map_err(|e| nats_err(&self.url, e))
    }
}

/// Why the feed could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// Connecting to NATS or talking to JetStream failed.
    #[error("revocation feed at {url}: {detail}")]
    Nats {
        /// The server.
        url: String,
        /// What failed.
        detail: String,
    },
    /// Applying an entry to the local store failed.
    #[error(transparent)]
    Store(#[from] VerifierError),
    /// A message on the stream is not a revocation entry. The feed is stuck
    /// at it (verifiers deny) until an operator decides where to resume.
    #[error("revocation feed: message {seq} is not a revocation entry: {detail}")]
    BadMessage {
        /// Its stream sequence.
        seq: u64,
        /// The decoding error.
        detail: String,
    },
    /// The stream is not the one this verifier's position counts in: it was
    /// deleted and recreated (another creation time, or it ends before the
    /// position), so its sequence numbers no longer mean what the position
    /// says. Stuck until an operator resets the position.
    #[error("revocation feed: the stream was reset: {detail}")]
    Reset {
        /// What differs.
        detail: String,
    },
    /// Messages this verifier had not read yet are gone from the stream
    /// (removed or aged out): revocations may be missing. Stuck until an
    /// operator decides where to resume.
    #[error(
        "revocation feed: entries {} to {} are missing from the stream \
         (removed before this verifier read them)", .expected, .found - 1
    )]
    Gap {
        /// The sequence this verifier needed next.
        expected: u64,
        /// The first sequence the stream could give it.
        found: u64,
    },
}

impl FeedError {
    /// Whether the feed is reachable but cannot be followed past this point
    /// (retrying will not help; verifiers deny until an operator acts).
    pub fn is_stuck(&self) -> bool {
        matches!(
            self,
            FeedError::BadMessage { .. } | FeedError::Reset { .. } | FeedError::Gap { .. }
        )
    }
}

fn nats_err(url: &str, e: impl std::fmt::Display) -> FeedError {
    FeedError::Nats {
        url: without_userinfo(url),
        detail: e.to_string(),
    }
}

/// `url` without `user:password@` (a credential): errors are logged.
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) if scheme.is_empty() => format!("***@{host}{}", &rest[end..]),
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
        None => url.to_string(),
    }
}

async fn stream_handle(
    js: &jetstream::Context,
    cfg: &FeedConfig,
) -> Result<stream::Stream, FeedError> {
    js.get_or_create_stream(stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![cfg.subject.clone()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err(&cfg.url, e))
}

/// Publishes revocations to the stream (the issuer side).
#[derive(Debug, Clone)]
pub struct FeedPublisher {
    js: jetstream::Context,
    cfg: FeedConfig,
}

impl FeedPublisher {
    /// Connects and makes sure the stream exists.
    pub async fn connect(cfg: FeedConfig) -> Result<FeedPublisher, FeedError> {
        let client = cfg.connect().await?;
        let js = jetstream::new(client);
        stream_handle(&js, &cfg).await?;
        Ok(FeedPublisher { js, cfg })
    }

    /// Publishes one entry and waits for JetStream's acknowledgement (the
    /// entry is then stored by the server). Returns its stream sequence.
    ///
    /// While the server is unreachable (a restart, a network blip) it retries
    /// for up to `retry_for`; each message carries a message id derived from
    /// the entry, so a retry after a lost acknowledgement is deduplicated by
    /// JetStream instead of stored twice.
    pub async fn publish(&self, entry: &Revocation) -> Result<u64, FeedError> {
        self.publish_retrying(entry, Duration::from_secs(30)).await
    }

    /// [`FeedPublisher::publish`] with an explicit retry budget.
    pub async fn publish_retrying(
        &self,
        entry: &Revocation,
        retry_for: Duration,
    ) -> Result<u64, FeedError> {
        let payload = serde_json::to_vec(entry).map_err(|e| nats_err(&self.cfg.url, e))?;
        let id = format!(
            "{}:{}",
            entry.target,
            entry.revoked_at.unix_timestamp_nanos()
        );
        let deadline = tokio::time::Instant::now() + retry_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = async {
                self.js
                    .send_publish(
                        self.cfg.subject.clone(),
                        jetstream::message::PublishMessage::build()
                            .payload(payload.clone().into())
                            .message_id(&id),
                    )
                    .await
                    .map_err(|e| nats_err(&self.cfg.url, e))?
                    .await
                    .map_err(|e| nats_err(&self.cfg.url, e))
            };
            match attempt.await {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) if tokio::time::Instant::now() + backoff > deadline => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing a revocation failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// What a running feed consumer shares with the verifier. Times are on the
/// monotonic clock: setting the wall clock neither makes a stale list look
/// fresh nor a fresh one stale.
#[derive(Debug)]
pub struct FeedState {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last contact, plus one (0: never).
    last_heard_ms: AtomicU64,
    applied_seq: AtomicU64,
    stopped: AtomicBool,
    stuck: Mutex<Option<String>>,
}

impl FeedState {
    fn new(applied_seq: u64) -> FeedState {
        FeedState {
            epoch: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            applied_seq: AtomicU64::new(applied_seq),
            stopped: AtomicBool::new(false),
            stuck: Mutex::new(None),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn heard(&self) {
        self.last_heard_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn set_stuck(&self, why: Option<String>) {
        if let Ok(mut s) = self.stuck.lock() {
            *s = why;
        }
    }

    /// Why the feed is stuck (reachable, but it cannot be followed), if it is.
    pub fn stuck(&self) -> Option<String> {
        self.stuck
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The last stream sequence applied to the local store.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Relaxed)
    }

    /// Time since the feed last answered, or `None` if it never has.
    pub fn silent_for(&self) -> Option<Duration> {
        match self.last_heard_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(self.now_ms().saturating_sub(t))),
        }
    }
}

/// A revocation list fed by the stream: the local store, refused when the
/// feed has been silent for longer than the staleness limit.
#[derive(Debug, Clone)]
pub struct FeedList {
    store: Arc<RevocationStore>,
    state: Arc<FeedState>,
    staleness: Duration,
    fail_open: bool,
}

impl FeedList {
    /// The feed's shared state (position, last contact).
    pub fn state(&self) -> &Arc<FeedState> {
        &self.state
    }

    /// Whether the list is stale now: the feed is stuck, or silent for
    /// longer than the staleness limit.
    pub fn is_stale(&self) -> bool {
        self.stale_because().is_some()
    }

    /// Why the list is stale, if it is.
    pub fn stale_because(&self) -> Option<String> {
        if let Some(why) = self.state.stuck() {
            return Some(format!("the revocation feed is stuck: {why}"));
        }
        match self.state.silent_for() {
            None => Some("the revocation feed has not been reached yet".to_string()),
            Some(d) if d > self.staleness => Some(format!(
                "no word from the revocation feed for {:.1} s (limit {:.1} s)",
                d.as_secs_f64(),
                self.staleness.as_secs_f64()
            )),
            Some(_) => None,
        }
    }
}

impl RevocationList for FeedList {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        if !self.fail_open {
            if let Some(detail) = self.stale_because() {
                return Err(VerifierError::Stale { detail });
            }
        }
        self.store.first_revoked(targets)
    }

    fn position(&self) -> Option<u64> {
        Some(self.state.applied_seq())
    }

    fn subscribe(&self, observer: crate::revocation::RevocationObserver) -> bool {
        self.store.subscribe(observer);
        true
    }
}

/// Handle on a running consumer: dropping it does not stop the task; call
/// [`FeedHandle::stop`].
#[derive(Debug)]
pub struct FeedHandle {
    state: Arc<FeedState>,
    task: tokio::task::JoinHandle<()>,
}

impl FeedHandle {
    /// Stops the consumer.
    pub fn stop(self) {
        self.state.stopped.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

/// Starts consuming the feed into `store` on the current tokio runtime.
/// Returns the list to give the verifier ([`crate::Verifier::with_revocations`])
/// and a handle on the task. The task reconnects by itself; while it cannot,
/// the list goes stale and the verifier fails closed.
pub fn spawn_feed(
    store: Arc<RevocationStore>,
    cfg: FeedConfig,
) -> Result<(FeedList, FeedHandle), FeedError> {
    let state = Arc::new(FeedState::new(store.feed_position()?));
    let list = FeedList {
        store: store.clone(),
        state: state.clone(),
        staleness: cfg.staleness,
        fail_open: cfg.insecure_fail_open_when_stale,
    };
    if cfg.insecure_fail_open_when_stale {
        tracing::warn!(
            "INSECURE: the verifier will keep allowing when its revocation feed is stale"
        );
    }
    tokio::spawn(watch(list.clone()));
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !task_state.stopped.load(Ordering::Relaxed) {
            match consume(&store, &cfg, &task_state).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) if e.is_stuck() => {
                    metrics::counter!(crate::metrics::FEED_INTERRUPTIONS).increment(1);
                    tracing::error!(
                        error = %e,
                        "revocation feed stuck: denying every request until an operator \
                         sets where to resume (mandate revocations --set-feed-position)"
                    );
                    task_state.set_stuck(Some(e.to_string()));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    metrics::counter!(crate::metrics::FEED_INTERRUPTIONS).increment(1);
                    tracing::warn!(error = %e, "revocation feed interrupted; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    Ok((list, FeedHandle { state, task }))
}

/// Every second while the feed runs: the staleness metrics, and a log line
/// when the list goes stale (requests are denied from then on) and when it
/// recovers, so an outage is never silent.
async fn watch(list: FeedList) {
    let mut stale_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !list.state.stopped.load(Ordering::Relaxed) {
        tick.tick().await;
        let why = list.stale_because();
        metrics::gauge!(crate::metrics::FEED_STALE).set(if why.is_some() { 1.0 } else { 0.0 });
        metrics::gauge!(crate::metrics::FEED_POSITION).set(list.state.applied_seq() as f64);
        if let Some(silent) = list.state.silent_for() {
            metrics::gauge!(crate::metrics::FEED_SILENT).set(silent.as_secs_f64());
        }
        match (why, stale_since) {
            (Some(why), None) => {
                stale_since = Some(Instant::now());
                if list.fail_open {
                    tracing::warn!(
                        why = %why,
                        "INSECURE: revocation feed stale; still allowing \
                         (--insecure-fail-open-when-stale)"
                    );
                } else {
                    tracing::warn!(why = %why, "revocation feed stale: denying every request");
                }
            }
            (None, Some(since)) => {
                stale_since = None;
                tracing::info!(
                    stale_for_s = since.elapsed().as_secs_f64(),
                    position = list.state.applied_seq(),
                    "revocation feed caught up: deciding again"
                );
            }
            _ => {}
        }
    }
}

async fn consume(
    store: &RevocationStore,
    cfg: &FeedConfig,
    state: &FeedState,
) -> Result<(), FeedError> {
    let client = cfg.connect().await?;
    let js = jetstream::new(client);
    let mut stream = stream_handle(&js, cfg).await?;
    let position = store.feed_position()?;
    let info = stream.info().await.map_err(|e| nats_err(&cfg.url, e))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let identity = format!(
        "{} created {}",
        info.config.name,
        info.created.unix_timestamp_nanos()
    );
    match store.feed_stream()? {
        Some(known) if known != identity => {
            return Err(FeedError::Reset {
                detail: format!(
                    "this verifier's position {position} counts in stream {known:?}, \
                     the server now has {identity:?}"
                ),
            })
        }
        Some(_) => {}
        None => store.set_feed_stream(&identity)?,
    }
    if last < position {
        return Err(FeedError::Reset {
            detail: format!(
                "this verifier applied up to sequence {position} but the stream ends at {last}"
            ),
        });
    }
    if last > position && first > position + 1 {
        return Err(FeedError::Gap {
            expected: position + 1,
            found: first,
        });
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: position + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err(&cfg.url, e))?;
    loop {
        if state.stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(cfg.poll)
            .messages()
            .await
            .map_err(|e| nats_err(&cfg.url, e))?;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| nats_err(&cfg.url, e))?;
            let info = msg.info().map_err(|e| nats_err(&cfg.url, e))?;
            let (seq, published) = (info.stream_sequence, info.published);
            let applied = state.applied_seq();
            if seq <= applied {
                continue; // already applied (a redelivery)
            }
            if seq != applied + 1 {
                return Err(FeedError::Gap {
                    expected: applied + 1,
                    found: seq,
                });
            }
            let entry: Revocation =
                serde_json::from_slice(&msg.payload).map_err(|e| FeedError::BadMessage {
                    seq,
                    detail: e.to_string(),
                })?;
            store.apply_feed(&[entry], seq)?;
            state.applied_seq.store(seq, Ordering::Relaxed);
            // By the two wall clocks (the server's and this host's).
            let lag = (time::OffsetDateTime::now_utc() - published).as_seconds_f64();
            metrics::histogram!(crate::metrics::FEED_LAG).record(lag.max(0.0));
        }
        // The pull ended normally: the server answered and everything it
        // gave was applied.
        state.set_stuck(None);
        state.heard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed error is logged: a password in the URL must not ride along.
    #[test]
    fn feed_errors_never_carry_the_urls_password() {
        let e = nats_err("nats://alice:s3cret@feed.example:4222/x", "refused");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("feed.example:4222"), "{e}");
        assert_eq!(
            without_userinfo("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
