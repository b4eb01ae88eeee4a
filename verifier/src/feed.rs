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

use crate::error::VerifierError;
use crate::revocation::{Revocation, RevocationStore, Target};
use crate::verifier::RevocationList;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// feed is stale. Never the default.
    pub insecure_fail_open_when_stale: bool,
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
        }
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
    /// A message on the stream is not a revocation entry.
    #[error("revocation feed: message {seq} is not a revocation entry: {detail}")]
    BadMessage {
        /// Its stream sequence.
        seq: u64,
        /// The decoding error.
        detail: String,
    },
}

fn nats_err(url: &str, e: impl std::fmt::Display) -> FeedError {
    FeedError::Nats {
        url: url.to_string(),
        detail: e.to_string(),
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
        let client = async_nats::connect(&cfg.url)
            .await
            .map_err(|e| nats_err(&cfg.url, e))?;
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

/// What a running feed consumer shares with the verifier.
#[derive(Debug, Default)]
pub struct FeedState {
    last_heard_ms: AtomicU64,
    applied_seq: AtomicU64,
    stopped: AtomicBool,
}

impl FeedState {
    fn heard(&self) {
        self.last_heard_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The last stream sequence applied to the local store.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Relaxed)
    }

    /// Time since the feed last answered, or `None` if it never has.
    pub fn silent_for(&self) -> Option<Duration> {
        match self.last_heard_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(now_ms().saturating_sub(t))),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

    /// Whether the list is stale now.
    pub fn is_stale(&self) -> bool {
        match self.state.silent_for() {
            None => true,
            Some(d) => d > self.staleness,
        }
    }
}

impl RevocationList for FeedList {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        if self.is_stale() && !self.fail_open {
            let detail = match self.state.silent_for() {
                None => "the revocation feed has not been reached yet".to_string(),
                Some(d) => format!(
                    "no word from the revocation feed for {:.1} s (limit {:.1} s)",
                    d.as_secs_f64(),
                    self.staleness.as_secs_f64()
                ),
            };
            return Err(VerifierError::Stale { detail });
        }
        self.store.first_revoked(targets)
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
    let state = Arc::new(FeedState::default());
    state
        .applied_seq
        .store(store.feed_position()?, Ordering::Relaxed);
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
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !task_state.stopped.load(Ordering::Relaxed) {
            match consume(&store, &cfg, &task_state).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "revocation feed interrupted; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    Ok((list, FeedHandle { state, task }))
}

async fn consume(
    store: &RevocationStore,
    cfg: &FeedConfig,
    state: &FeedState,
) -> Result<(), FeedError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(&cfg.url)
        .await
        .map_err(|e| nats_err(&cfg.url, e))?;
    let js = jetstream::new(client);
    let stream = stream_handle(&js, cfg).await?;
    let start = store.feed_position()? + 1;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err(&cfg.url, e))?;
    state.heard();
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
            let seq = msg
                .info()
                .map_err(|e| nats_err(&cfg.url, e))?
                .stream_sequence;
            if seq <= state.applied_seq() {
                continue; // already applied (a redelivery)
            }
            let entry: Revocation =
                serde_json::from_slice(&msg.payload).map_err(|e| FeedError::BadMessage {
                    seq,
                    detail: e.to_string(),
                })?;
            store.apply_feed(&[entry], seq)?;
            state.applied_seq.store(seq, Ordering::Relaxed);
            state.heard();
        }
        // The pull ended normally: the server answered.
        state.heard();
    }
}
