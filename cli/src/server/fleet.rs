//! Issuer services in a fleet (`mandate serve --nats`; `spec/SERVICE.md` S6):
//! what every issuer service must know about every mint, shared through one
//! JetStream stream, `MANDATE_MINTS` (subject `mandate.mints`, file storage).
//!
//! - **Publishing.** A mint is recorded in the local [`Registry`] (synced),
//!   then published as a signed record with `Nats-Msg-Id` = the token id
//!   (a retried publish is deduplicated) and JetStream's acknowledgement
//!   awaited, *before* the token is returned. If the publish fails, the mint
//!   fails (503): no token is handed out that the fleet cannot revoke by
//!   principal.
//! - **Following.** Every issuer service follows the stream into its local
//!   registry, which stays the query index: each record is written in the
//!   same RocksDB batch as its stream sequence (as the revocation feed's
//!   consumer does), so a restart resumes exactly where it stopped. A stream
//!   that was reset or lost messages before they were read makes the
//!   follower **stuck**.
//! - **Records are signed** with the issuer's revocation key (Ed25519 over
//!   `mandate-mint-v1\n` ‖ the record's exact JSON bytes; another domain
//!   than revocation entries, so one is never taken for the other). A
//!   record that does not verify under a trusted key, or that contradicts a
//!   recorded token (same token id or root revocation id, other content), is
//!   skipped, counted
//!   (`mandate_mint_records_rejected_total{reason}`) and logged at WARN.
//! - **Revocation by principal never misses a token silently**: before it
//!   reads the registry, it asks the stream for its last sequence and waits
//!   until the local registry has applied it ([`MintFleet::barrier`]), so
//!   every mint acknowledged anywhere before the request is included. If the
//!   stream is unreachable, stuck, or the follower does not catch up within
//!   the timeout, it fails (503, with the reason).

use crate::registry::{Applied, Registry, TokenRecord};
use crate::ServiceError;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use mandate_verifier::feed::{FeedConfig, RevocationKeys, RevocationSigner};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The domain prefix of every mint-record signature.
pub const MINT_DOMAIN: &[u8] = b"mandate-mint-v1\n";

/// The counter of rejected mint records (label `reason`).
pub const MINT_REJECTED: &str = "mandate_mint_records_rejected_total";

/// Where the mint stream lives.
#[derive(Debug, Clone)]
pub struct MintFleetConfig {
    /// The NATS server, credentials, TLS and pull interval of the revocation
    /// feed (the same server), and the revocation public keys whose
    /// signatures on mint records are trusted.
    pub nats: FeedConfig,
    /// Stream name. Default `MANDATE_MINTS`.
    pub stream: String,
    /// Subject. Default `mandate.mints`.
    pub subject: String,
    /// Longest wait for a publish acknowledgement, and for the local
    /// registry to catch up before a revocation by principal. Default 5 s.
    pub timeout: Duration,
}

impl MintFleetConfig {
    /// The defaults, on the feed's server.
    pub fn new(nats: FeedConfig) -> MintFleetConfig {
        MintFleetConfig {
            nats,
            stream: "MANDATE_MINTS".into(),
            subject: "mandate.mints".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A running member of the fleet: publishes this service's mints and follows
/// everyone's into the local registry.
pub struct MintFleet {
    js: jetstream::Context,
    cfg: MintFleetConfig,
    signer: RevocationSigner,
    state: Arc<State>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for MintFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintFleet")
            .field("stream", &self.cfg.stream)
            .field("applied", &self.state.applied.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    applied: AtomicU64,
    stuck: Mutex<Option<String>>,
}

impl State {
    fn set_stuck(&self, why: Option<String>) {
        if let Ok(mut s) = self.stuck.lock() {
            *s = why;
        }
    }

    fn stuck(&self) -> Option<String> {
        self.stuck
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

fn fleet_err(cfg: &MintFleetConfig, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Fleet(format!(
        "mint stream {} at {}: {e}",
        cfg.stream,
        mandate_verifier::feed::redact_url(&cfg.nats.url)
    ))
}

impl MintFleet {
    /// Connects, makes sure the stream exists, and starts following it into
    /// `registry` on the current runtime. Refuses to start without a trusted
    /// revocation key (no record could be applied).
    pub async fn start(
        cfg: MintFleetConfig,
        signer: RevocationSigner,
        registry: Arc<Registry>,
    ) -> Result<Arc<MintFleet>, ServiceError> {
        if cfg.nats.revocation_keys.is_empty() {
            return Err(ServiceError::Config(
                "the mint stream needs the revocation public keys that sign mint records".into(),
            ));
        }
        let client = cfg.nats.connect().await.map_err(|e| fleet_err(&cfg, e))?;
        let js = jetstream::new(client);
        stream_handle(&js, &cfg).await?;
        let state = Arc::new(State {
            applied: AtomicU64::new(registry.mint_position()?),
            stuck: Mutex::new(None),
        });
        tokio::spawn(follow(registry, cfg.clone(), state.clone()));
        Ok(Arc::new(MintFleet {
            js,
            cfg,
            signer,
            state,
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// The last stream sequence applied to the local registry.
    pub fn applied(&self) -> u64 {
        self.state.applied.load(Ordering::Relaxed)
    }

    /// The signed message for `rec`.
    fn seal(&self, rec: &TokenRecord) -> Result<Vec<u8>, ServiceError> {
        crate::signed_record::seal(&self.signer, MINT_DOMAIN, rec)
            .map_err(|e| fleet_err(&self.cfg, e))
    }

    /// Publishes `rec` and waits for JetStream's acknowledgement (at most
    /// the timeout). Called on a blocking thread.
    pub fn publish(&self, rec: &TokenRecord) -> Result<u64, ServiceError> {
        let payload = self.seal(rec)?;
        let attempt = async {
            self.js
                .send_publish(
                    self.cfg.subject.clone(),
                    jetstream::message::PublishMessage::build()
                        .payload(payload.into())
                        .message_id(&rec.token_id),
                )
                .await
                .map_err(|e| fleet_err(&self.cfg, e))?
                .await
                .map_err(|e| fleet_err(&self.cfg, e))
        };
        let ack = self
            .runtime
            .block_on(async { tokio::time::timeout(self.cfg.timeout, attempt).await })
            .map_err(|_| fleet_err(&self.cfg, "no acknowledgement in time"))??;
        Ok(ack.sequence)
    }

    /// Returns once the local registry holds every mint the stream had
    /// acknowledged when it was called; fails (with the reason) when the
    /// stream is unreachable or stuck, or the registry does not catch up
    /// within the timeout. Called on a blocking thread.
    pub fn barrier(&self) -> Result<(), ServiceError> {
        if let Some(why) = self.state.stuck() {
            return Err(fleet_err(&self.cfg, format!("stuck: {why}")));
        }
        let last = self
            .runtime
            .block_on(async {
                tokio::time::timeout(self.cfg.timeout, self.js.get_stream(&self.cfg.stream)).await
            })
            .map_err(|_| fleet_err(&self.cfg, "unreachable (no answer in time)"))?
            .map_err(|e| fleet_err(&self.cfg, format!("unreachable: {e}")))?
            .cached_info()
            .state
            .last_sequence;
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let applied = self.applied();
            if applied >= last {
                return Ok(());
            }
            if let Some(why) = self.state.stuck() {
                return Err(fleet_err(&self.cfg, format!("stuck: {why}")));
            }
            if Instant::now() > deadline {
                return Err(fleet_err(
                    &self.cfg,
                    format!("this service has applied mints up to {applied} of {last}: behind"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

async fn stream_handle(
    js: &jetstream::Context,
    cfg: &MintFleetConfig,
) -> Result<stream::Stream, ServiceError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![cfg.subject.clone()],
            storage: stream::StorageType::File,
            max_message_size: mandate_verifier::feed::MAX_MESSAGE_SIZE,
            ..Default::default()
        })
        .await
        .map_err(|e| fleet_err(cfg, e))?;
    mandate_verifier::feed::warn_message_size(&stream.cached_info().config);
    Ok(stream)
}

/// Why following stopped: `Stuck` needs an operator, `Other` is retried.
enum Stop {
    Stuck(String),
    Other(ServiceError),
}

impl From<ServiceError> for Stop {
    fn from(e: ServiceError) -> Stop {
        Stop::Other(e)
    }
}

/// The follower task: reconnects with a growing backoff; a stuck stream is
/// marked (revocation by principal fails) and tried again every 2 s.
async fn follow(registry: Arc<Registry>, cfg: MintFleetConfig, state: Arc<State>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match consume(&registry, &cfg, &state).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(Stop::Stuck(why)) => {
                tracing::error!(
                    why = %why,
                    "mint stream stuck: revocation by principal refused until an operator acts"
                );
                state.set_stuck(Some(why));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(Stop::Other(e)) => {
                tracing::warn!(error = %e, "mint stream interrupted; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn consume(registry: &Registry, cfg: &MintFleetConfig, state: &State) -> Result<(), Stop> {
    let client = cfg.nats.connect().await.map_err(|e| fleet_err(cfg, e))?;
    let js = jetstream::new(client);
    let stream = stream_handle(&js, cfg).await?;
    let info = stream.get_info().await.map_err(|e| fleet_err(cfg, e))?;
    let position = registry.mint_position()?;
    check_stream(registry, &info, position)?;
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
        .map_err(|e| fleet_err(cfg, e))?;
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .max_bytes(mandate_verifier::feed::MAX_FETCH_BYTES)
            .expires(cfg.nats.poll)
            .messages()
            .await
            .map_err(|e| fleet_err(cfg, e))?;
        // Messages that change nothing (rejected, or already recorded) move
        // the position in memory only; it is written once per pull, so junk
        // published faster than a disk sync cannot hold the barrier back.
        let mut written = registry.mint_position()?;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| fleet_err(cfg, e))?;
            if apply(&msg, registry, cfg, state)? {
                written = state.applied.load(Ordering::Relaxed);
            }
        }
        let applied = state.applied.load(Ordering::Relaxed);
        if applied > written {
            registry.set_mint_position(applied)?;
        }
        state.set_stuck(None);
    }
}

/// As the revocation feed: the stream the position counts in (identity kept
/// on first contact), not ending before the position, nothing unread gone.
fn check_stream(registry: &Registry, info: &stream::Info, position: u64) -> Result<(), Stop> {
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let identity = format!(
        "{} created {}",
        info.config.name,
        info.created.unix_timestamp_nanos()
    );
    match registry.mint_stream()? {
        Some(known) if known != identity => {
            return Err(Stop::Stuck(format!(
                "the stream was reset: this registry's position {position} counts in \
                 {known:?}, the server now has {identity:?}"
            )))
        }
        Some(_) => {}
        None => registry.set_mint_stream(&identity)?,
    }
    if last < position {
        return Err(Stop::Stuck(format!(
            "the stream was reset: applied up to {position} but it ends at {last}"
        )));
    }
    if last > position && first > position + 1 {
        return Err(Stop::Stuck(format!(
            "mint records {} to {} are gone from the stream (removed before this service read them)",
            position + 1,
            first - 1
        )));
    }
    Ok(())
}

/// Applies the message at the next sequence: a verified new record is
/// written with its sequence, in one synced batch (true: the position is
/// on disk); a rejected message or a record already recorded identically
/// moves only the position in memory (false), written by the caller.
fn apply(
    msg: &jetstream::Message,
    registry: &Registry,
    cfg: &MintFleetConfig,
    state: &State,
) -> Result<bool, Stop> {
    let seq = msg.info().map_err(|e| fleet_err(cfg, e))?.stream_sequence;
    let applied = state.applied.load(Ordering::Relaxed);
    if seq <= applied {
        return Ok(false);
    }
    if seq != applied + 1 {
        return Err(Stop::Stuck(format!(
            "mint records {} to {} are missing",
            applied + 1,
            seq - 1
        )));
    }
    let mut written = false;
    match open(&cfg.nats.revocation_keys, &msg.payload) {
        Ok(rec) if registry.get(&rec.token_id)?.as_ref() == Some(&rec) => {}
        Ok(rec) => {
            written = true;
            if let Applied::Conflict(known) = registry.apply_mint(Some(&rec), seq)? {
                reject(
                    seq,
                    "conflict",
                    &format!(
                        "the record of token {} for {:?} contradicts the recorded token {} \
                         for {:?} (same token id or root revocation id)",
                        rec.token_id, rec.principal, known.token_id, known.principal
                    ),
                );
            }
        }
        Err((reason, detail)) => reject(seq, reason, &detail),
    }
    state.applied.store(seq, Ordering::Relaxed);
    Ok(written)
}

fn reject(seq: u64, reason: &'static str, detail: &str) {
    metrics::counter!(MINT_REJECTED, "reason" => reason).increment(1);
    tracing::warn!(
        seq,
        reason,
        detail,
        "mint record rejected: not applied, skipped"
    );
}

/// The record a message carries, if it is signed by a trusted key; else
/// (reason label, detail).
fn open(keys: &RevocationKeys, payload: &[u8]) -> Result<TokenRecord, (&'static str, String)> {
    crate::signed_record::open(keys, MINT_DOMAIN, payload, "mint record")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn signer() -> (RevocationSigner, RevocationKeys) {
        let kp = biscuit_auth::KeyPair::new();
        let s = RevocationSigner::new(3, &kp).unwrap();
        let mut keys = RevocationKeys::new();
        keys.insert(3, &s.public_key()).unwrap();
        (s, keys)
    }

    fn seal(s: &RevocationSigner, record: &str) -> Vec<u8> {
        crate::signed_record::seal_text(s, MINT_DOMAIN, record)
    }

    /// A record retargeted at another principal (or token id) after signing
    /// does not open; nor does a revocation entry, nor garbage.
    #[test]
    fn only_signed_unaltered_mint_records_open() {
        let (s, keys) = signer();
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap();
        let rec = TokenRecord {
            token_id: "0b4e0c1e-8f55-4c41-9d1e-3c35f1d1a001".into(),
            principal: "user:alice".into(),
            agent: "a".into(),
            agent_key: "ed25519/00".into(),
            revocation_ids: vec![],
            root_key_id: 0,
            minted_at: now,
            expires_at: now,
            minted_by: "t".into(),
        };
        let json = serde_json::to_string(&rec).unwrap();
        assert_eq!(open(&keys, &seal(&s, &json)).unwrap(), rec);
        let mut env: serde_json::Value = serde_json::from_slice(&seal(&s, &json)).unwrap();
        env["record"] = json.replace("user:alice", "user:bob").into();
        let forged = serde_json::to_vec(&env).unwrap();
        assert_eq!(open(&keys, &forged).unwrap_err().0, "bad_signature");
        let entry = s
            .seal(&mandate_verifier::revocation::Revocation {
                target: mandate_verifier::revocation::Target::Token(rec.token_id.clone()),
                revoked_at: now,
                reason: "x".into(),
                by: "y".into(),
                expires_at: None,
                note: None,
            })
            .unwrap();
        assert_eq!(open(&keys, &entry).unwrap_err().0, "malformed");
        assert_eq!(open(&keys, b"garbage").unwrap_err().0, "malformed");
        let (other, _) = signer();
        assert_eq!(
            open(&keys, &seal(&other, &json)).unwrap_err().0,
            "bad_signature"
        );
        assert!(s
            .sign_other(mandate_verifier::feed::signed::DOMAIN, b"x")
            .is_none());
    }
}
