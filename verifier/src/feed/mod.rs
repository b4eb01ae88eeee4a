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
//! Every entry is signed by the issuer's revocation key ([`signed`]): a
//! verifier applies only entries whose signature verifies under a key it
//! trusts ([`FeedConfig::revocation_keys`]; a feed with none refuses to
//! start). Any other message (garbage, unsigned, an unknown or retired key,
//! a signature that does not verify) is skipped, counted
//! (`mandate_feed_entries_rejected_total{reason}`) and logged at WARN: the
//! position moves past it and the feed goes on, so a publisher without the
//! key can neither revoke nor stall anything.
//!
//! A feed that answers but cannot be followed is **stuck**, and a stuck feed
//! denies at once, whatever the staleness limit: a stream that ends before
//! the position this verifier reached (it was deleted and recreated), or a
//! gap in the sequence (messages removed before this verifier read them).
//! Each would otherwise hide revocations while the verifier looked current.
//! The operator clears it by deciding where to resume (`mandate revocations
//! --db DIR --set-feed-position N`, with the verifier stopped).

mod consumer;
mod publisher;
pub mod signed;
mod watch;

pub use publisher::FeedPublisher;
pub use signed::{FeedEntry, RejectReason, Rejected, RevocationKeys, RevocationSigner};

use crate::error::VerifierError;
use crate::revocation::{Revocation, RevocationList, RevocationStore, Target};
use async_nats::jetstream::{self, stream};
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
    /// The issuer's revocation public keys this verifier trusts, by id:
    /// only entries signed by one of them are applied. Default: none, and a
    /// consumer refuses to start without one ([`spawn_feed`]).
    pub revocation_keys: RevocationKeys,
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
            revocation_keys: RevocationKeys::new(),
        }
    }

    /// Connects to the server with the configured credentials and TLS
    /// (also used by other JetStream users of the same server, e.g. the
    /// issuer services' mint stream).
    pub async fn connect(&self) -> Result<async_nats::Client, FeedError> {
        self.connect_as("mandate-revocation-feed").await
    }

    /// [`FeedConfig::connect`], naming the connection `name` on the server
    /// (e.g. `mandate-spend-bucket`).
    pub async fn connect_as(&self, name: &str) -> Result<async_nats::Client, FeedError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
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
    /// A consumer was configured without any trusted revocation key: it
    /// could apply nothing, so it does not start.
    #[error(
        "revocation feed: no trusted revocation key (give the issuer's revocation public \
         keys, e.g. --revocation-key 0=ed25519/<hex>; the issuer service lists them at \
         GET /v1/keys/revocation)"
    )]
    NoRevocationKeys,
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
        matches!(self, FeedError::Reset { .. } | FeedError::Gap { .. })
    }
}

fn nats_err(url: &str, e: impl std::fmt::Display) -> FeedError {
    FeedError::Nats {
        url: redact_url(url),
        detail: e.to_string(),
    }
}

/// `url` with its user information (`user:password@`, which may hold a
/// credential) replaced by `***@`, for logs and errors. The user information
/// is everything before the last `@` ahead of any query or fragment: a
/// password holding an unencoded `/` or `@` is still hidden (a path holding
/// an `@` is hidden too: too much is hidden rather than too little). Every
/// Mandate server writes URLs that may carry credentials through this.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let head = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let Some(at) = head.rfind('@') else {
        return url.to_string();
    };
    let host = &rest[at + 1..];
    match scheme {
        Some(s) => format!("{s}://***@{host}"),
        None => format!("***@{host}"),
    }
}

/// The largest message the streams Mandate creates accept (the revocation
/// feed, the mint stream, the spend buckets): their entries and records are
/// a few hundred bytes; this bounds what one pull can buffer.
pub const MAX_MESSAGE_SIZE: i32 = 64 * 1024;

/// The most one pull of a stream asks for, in bytes.
pub const MAX_FETCH_BYTES: usize = 4 * 1024 * 1024;

/// Logs at WARN when a stream that already existed (operators may own
/// stream config) sets no maximum message size, or one above
/// [`MAX_MESSAGE_SIZE`].
pub fn warn_message_size(cfg: &stream::Config) {
    if cfg.max_message_size <= 0 || cfg.max_message_size > MAX_MESSAGE_SIZE {
        tracing::warn!(
            stream = %cfg.name,
            max_message_size = cfg.max_message_size,
            expected = MAX_MESSAGE_SIZE,
            "stream max_message_size is unset or above {MAX_MESSAGE_SIZE} bytes: anyone able to \
             publish to it can make each pull buffer up to {MAX_FETCH_BYTES} bytes of junk"
        );
    }
}

async fn stream_handle(
    js: &jetstream::Context,
    cfg: &FeedConfig,
) -> Result<stream::Stream, FeedError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![cfg.subject.clone()],
            storage: stream::StorageType::File,
            max_message_size: MAX_MESSAGE_SIZE,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err(&cfg.url, e))?;
    warn_message_size(&stream.cached_info().config);
    Ok(stream)
}

/// What a running feed consumer shares with the verifier. Times are on the
/// monotonic clock: setting the wall clock neither makes a stale list look
/// fresh nor a fresh one stale.
#[derive(Debug)]
pub struct FeedState {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last contact, plus one (0: never).
    last_heard_ms: AtomicU64,
    /// Milliseconds from `epoch`, plus one (0: never), of the latest instant
    /// such that every entry published to the stream before it is applied:
    /// what staleness is measured from. Contact alone does not move it: a
    /// verifier that answers pulls but has a backlog (a flood of rejected
    /// messages ahead of a revocation) is behind, not current.
    current_as_of_ms: AtomicU64,
    applied_seq: AtomicU64,
    stopped: AtomicBool,
    stuck: Mutex<Option<String>>,
}

impl FeedState {
    fn new(applied_seq: u64) -> FeedState {
        FeedState {
            epoch: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            current_as_of_ms: AtomicU64::new(0),
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

    /// Every entry published before `at_ms` (see [`FeedState::now_ms`]) is
    /// applied.
    fn current_as_of(&self, at_ms: u64) {
        self.current_as_of_ms.fetch_max(at_ms, Ordering::Relaxed);
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
        self.since(&self.last_heard_ms)
    }

    /// How far behind the feed the list may be: the time since the latest
    /// instant before which every published entry is applied (`None`: the
    /// verifier has never caught up with the stream). At least
    /// [`FeedState::silent_for`]; more while a backlog is being read.
    pub fn behind_for(&self) -> Option<Duration> {
        self.since(&self.current_as_of_ms)
    }

    fn since(&self, at: &AtomicU64) -> Option<Duration> {
        match at.load(Ordering::Relaxed) {
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

    /// Whether the list is stale now: the feed is stuck, silent for longer
    /// than the staleness limit, or behind it by more (entries published
    /// longer ago than the limit are not applied yet).
    pub fn is_stale(&self) -> bool {
        self.stale_because().is_some()
    }

    /// Why the list is stale, if it is.
    pub fn stale_because(&self) -> Option<String> {
        if let Some(why) = self.state.stuck() {
            return Some(format!("the revocation feed is stuck: {why}"));
        }
        let limit = self.staleness.as_secs_f64();
        match (self.state.silent_for(), self.state.behind_for()) {
            (None, _) => Some("the revocation feed has not been reached yet".to_string()),
            (Some(silent), _) if silent > self.staleness => Some(format!(
                "no word from the revocation feed for {:.1} s (limit {limit:.1} s)",
                silent.as_secs_f64(),
            )),
            (Some(_), None) => Some(format!(
                "catching up with the revocation feed (applied up to sequence {})",
                self.state.applied_seq()
            )),
            (Some(_), Some(behind)) if behind > self.staleness => Some(format!(
                "the revocation list is {:.1} s behind the feed (limit {limit:.1} s): \
                 entries published since are not applied yet (applied up to sequence {})",
                behind.as_secs_f64(),
                self.state.applied_seq()
            )),
            _ => None,
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

    /// The store's restrictions, under the same freshness rule as its
    /// revocations (they travel on the same feed).
    fn restrictions(
        &self,
        targets: &[Target],
        agents: std::ops::Range<usize>,
        principal: &str,
    ) -> Result<Vec<crate::restriction::InEffect>, VerifierError> {
        if !self.fail_open {
            if let Some(detail) = self.stale_because() {
                return Err(VerifierError::Stale { detail });
            }
        }
        Ok(self.store.restrictions_for(targets, agents, principal))
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
///
/// Refuses to start ([`FeedError::NoRevocationKeys`]) without a trusted
/// revocation key: every entry would be rejected.
pub fn spawn_feed(
    store: Arc<RevocationStore>,
    cfg: FeedConfig,
) -> Result<(FeedList, FeedHandle), FeedError> {
    if cfg.revocation_keys.is_empty() {
        return Err(FeedError::NoRevocationKeys);
    }
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
    tokio::spawn(watch::watch(list.clone()));
    let task = tokio::spawn(consumer::follow(store, cfg, state.clone()));
    Ok((list, FeedHandle { state, task }))
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
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        // Unencoded `/` and `@` in a password: still hidden.
        for url in [
            "nats://bob:PW/with/slash@127.0.0.1:5",
            "nats://bob:P@W@127.0.0.1:5/x",
            "bob:PW/x@127.0.0.1:5",
        ] {
            let shown = redact_url(url);
            assert!(
                !shown.contains("PW") && !shown.contains("P@W"),
                "{url} -> {shown}"
            );
            assert!(shown.contains("127.0.0.1:5"), "{url} -> {shown}");
        }
    }
}
