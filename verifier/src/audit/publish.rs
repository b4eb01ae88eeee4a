//! Publishing a verifier's signed checkpoints (and, when configured, its
//! records) to a JetStream stream, and reading them back (specification
//! §12.4): what lets an auditor see records cut off the end of a log, and
//! gather every verifier's log into one timeline.
//!
//! The publisher tails the audit store (an [`AuditTail`]) rather than
//! hooking the writer: decisions never wait on NATS. The local log is the
//! durable copy; what is not yet published waits there and goes out once
//! the stream is reachable again. Where it resumes is asked of the stream
//! itself (the last checkpoint on the log's subject), and every message
//! carries a `Nats-Msg-Id` (log id, kind, sequence number) so a message
//! published twice is stored once.

use super::tail::AuditTail;
use super::verify::{parse_checkpoint, parse_entry, AuditRead, Place};
use crate::feed::{FeedConfig, FeedError};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// Default stream name.
pub const AUDIT_STREAM: &str = "MANDATE_AUDIT";
/// Default subject prefix: a log publishes on `mandate.audit.<log-id>.checkpoints`
/// and `mandate.audit.<log-id>.records`.
pub const AUDIT_SUBJECT_PREFIX: &str = "mandate.audit";

/// Records published per round at most (then the checkpoint that covers them).
const CHUNK: usize = 1_000;

/// Where and what to publish.
#[derive(Debug, Clone)]
pub struct AuditPublishConfig {
    /// The NATS server and credentials (those of the revocation feed).
    pub nats: FeedConfig,
    /// JetStream stream. Default [`AUDIT_STREAM`].
    pub stream: String,
    /// Subject prefix. Default [`AUDIT_SUBJECT_PREFIX`].
    pub prefix: String,
    /// Publish the records too, not only the checkpoints (what `mandate
    /// audit collect` gathers). Default false.
    pub records: bool,
    /// How often the log is looked at for new checkpoints. Default 1 s.
    pub interval: Duration,
}

impl AuditPublishConfig {
    /// The defaults above, on the server of `nats`.
    pub fn new(nats: FeedConfig) -> AuditPublishConfig {
        AuditPublishConfig {
            nats,
            stream: AUDIT_STREAM.into(),
            prefix: AUDIT_SUBJECT_PREFIX.into(),
            records: false,
            interval: Duration::from_secs(1),
        }
    }
}

/// The id of the log signed by the audit key `log_key` (`ed25519/<hex>`):
/// the key's hex, a subject token of its own.
pub fn log_id(log_key: &str) -> Option<String> {
    let hex = log_key.strip_prefix("ed25519/")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The subject a log's checkpoints are published on.
pub fn checkpoints_subject(prefix: &str, id: &str) -> String {
    format!("{prefix}.{id}.checkpoints")
}

/// The subject a log's records are published on.
pub fn records_subject(prefix: &str, id: &str) -> String {
    format!("{prefix}.{id}.records")
}

fn err(cfg: &FeedConfig, detail: impl std::fmt::Display) -> FeedError {
    FeedError::Nats {
        url: cfg.url.clone(),
        detail: format!("audit stream: {detail}"),
    }
}

/// The audit stream (created if missing, over `<prefix>.>`).
pub async fn audit_stream(
    js: &jetstream::Context,
    cfg: &AuditPublishConfig,
) -> Result<stream::Stream, FeedError> {
    js.get_or_create_stream(stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.prefix)],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| err(&cfg.nats, e))
}

/// Starts publishing the checkpoints of the log at `path` (signed by
/// `log_key`, `ed25519/<hex>`) on the current Tokio runtime. It never
/// stops: failures (NATS down, stream missing) are logged at WARN, counted,
/// and retried with a growing delay; the checkpoints wait in the log.
pub fn spawn_audit_publisher(
    path: PathBuf,
    log_key: &str,
    cfg: AuditPublishConfig,
) -> Result<tokio::task::JoinHandle<()>, FeedError> {
    let id = log_id(log_key).ok_or_else(|| err(&cfg.nats, "the audit key is not ed25519/<hex>"))?;
    Ok(tokio::spawn(async move {
        let mut publisher = Publisher {
            path,
            id,
            cfg,
            tail: None,
            js: None,
            published: None,
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match publisher.round().await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    tokio::time::sleep(publisher.cfg.interval).await;
                }
                Err(e) => {
                    metrics::counter!(crate::metrics::AUDIT_PUBLISH_ERRORS).increment(1);
                    tracing::warn!(error = %e, "audit checkpoints not published; retrying (they wait in the local log)");
                    publisher.js = None;
                    publisher.published = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }))
}

struct Publisher {
    path: PathBuf,
    id: String,
    cfg: AuditPublishConfig,
    tail: Option<AuditTail>,
    js: Option<jetstream::Context>,
    /// The last record a published checkpoint covers (`None`: ask the stream).
    published: Option<u64>,
}

impl Publisher {
    async fn round(&mut self) -> Result<(), FeedError> {
        let nats = self.cfg.nats.clone();
        if self.tail.is_none() {
            let path = self.path.clone();
            let tail = tokio::task::spawn_blocking(move || AuditTail::open(path))
                .await
                .map_err(|e| err(&nats, e))??;
            self.tail = Some(tail);
        }
        if self.js.is_none() {
            let js = jetstream::new(nats.connect().await?);
            audit_stream(&js, &self.cfg).await?;
            self.js = Some(js);
        }
        let (Some(tail), Some(js)) = (&self.tail, &self.js) else {
            return Ok(());
        };
        let cp_subject = checkpoints_subject(&self.cfg.prefix, &self.id);
        let published = match self.published {
            Some(p) => p,
            None => last_published(js, &self.cfg, &cp_subject, &self.id).await?,
        };
        self.published = Some(published);
        tail.catch_up()?;
        let Some((target, _)) = tail.last_checkpoint()? else {
            return Ok(());
        };
        let (mut cp_done, mut rec_done) = (published, published);
        while cp_done < target {
            let mut progressed = !self.cfg.records;
            let end = if self.cfg.records {
                let records = tail.records_after(rec_done, CHUNK)?;
                let mut acks = Vec::with_capacity(records.len());
                let subject = records_subject(&self.cfg.prefix, &self.id);
                for (seq, line) in records.into_iter().filter(|(s, _)| *s <= target) {
                    let ack = js
                        .send_publish(
                            subject.clone(),
                            jetstream::message::PublishMessage::build()
                                .payload(line.clone().into())
                                .message_id(format!("{}.r.{seq}", self.id)),
                        )
                        .await
                        .map_err(|e| err(&nats, e))?;
                    acks.push((line, ack));
                    rec_done = seq;
                    progressed = true;
                }
                for (line, ack) in acks {
                    let ack = ack.await.map_err(|e| err(&nats, e))?;
                    stored(js, &self.cfg, &subject, line, &ack, "record").await?;
                }
                rec_done.min(target)
            } else {
                target
            };
            match tail.checkpoint_at_or_before(end)? {
                Some((seq, bytes)) if seq > cp_done => {
                    let ack = js
                        .send_publish(
                            cp_subject.clone(),
                            jetstream::message::PublishMessage::build()
                                .payload(bytes.clone().into())
                                .message_id(format!("{}.c.{seq}", self.id)),
                        )
                        .await
                        .map_err(|e| err(&nats, e))?
                        .await
                        .map_err(|e| err(&nats, e))?;
                    stored(js, &self.cfg, &cp_subject, bytes, &ack, "checkpoint").await?;
                    cp_done = seq;
                    self.published = Some(seq);
                    metrics::gauge!(crate::metrics::AUDIT_PUBLISHED).set(seq as f64);
                }
                // Records published, no checkpoint among them yet: more.
                _ if end < target && progressed => {}
                _ => break,
            }
        }
        Ok(())
    }
}

/// Makes sure a message acknowledged as a duplicate of an earlier one with
/// its `Nats-Msg-Id` is in the stream: the ids are predictable, so anyone
/// who can publish on the stream could take one first with other bytes
/// (or on another subject) and have the real message dropped. The stored
/// message is compared with `payload` and `subject`; when it is not the
/// same, it is counted and logged at WARN, and `payload` published again
/// without an id (a reader drops identical copies).
async fn stored(
    js: &jetstream::Context,
    cfg: &AuditPublishConfig,
    subject: &str,
    payload: Vec<u8>,
    ack: &jetstream::publish::PublishAck,
    kind: &'static str,
) -> Result<(), FeedError> {
    if !ack.duplicate {
        return Ok(());
    }
    let stream = audit_stream(js, cfg).await?;
    let held = stream
        .get_raw_message(ack.sequence)
        .await
        .map_err(|e| err(&cfg.nats, e))?;
    if held.subject.as_str() == subject && held.payload.as_ref() == payload.as_slice() {
        return Ok(());
    }
    metrics::counter!(crate::metrics::AUDIT_STREAM_FORGED, "kind" => "taken_msg_id").increment(1);
    tracing::warn!(
        subject,
        kind,
        taken_by = ack.sequence,
        "another message took this audit message's Nats-Msg-Id (someone else publishes on the \
         audit stream): published again without it"
    );
    js.send_publish(
        subject.to_string(),
        jetstream::message::PublishMessage::build().payload(payload.into()),
    )
    .await
    .map_err(|e| err(&cfg.nats, e))?
    .await
    .map_err(|e| err(&cfg.nats, e))?;
    Ok(())
}

/// The last record a checkpoint published on `subject` covers (0: none),
/// counting only checkpoints signed by the log's own key (`id`): anyone
/// who can publish on the subject could otherwise post a forged checkpoint
/// over record `u64::MAX` and stop publication for good. The last message
/// is tried first; when it is not the log's, every checkpoint on the
/// subject is read and the highest genuine one is taken, the others
/// counted and logged at WARN.
async fn last_published(
    js: &jetstream::Context,
    cfg: &AuditPublishConfig,
    subject: &str,
    id: &str,
) -> Result<u64, FeedError> {
    let key = hex::decode(id)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| err(&cfg.nats, "the audit key is not an Ed25519 key"))?;
    let stream = audit_stream(js, cfg).await?;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => match parse_checkpoint(&m.payload) {
            Ok(c) if c.is_signed_by(&key) => return Ok(c.checkpoint.seq),
            _ => {}
        },
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok(0),
        Err(e) => return Err(err(&cfg.nats, e)),
    }
    let mut last = 0;
    for (place, c) in read_filtered(cfg, subject.to_string())
        .await?
        .remove(id)
        .map(|l| l.read.checkpoints)
        .unwrap_or_default()
    {
        match c {
            Ok(c) if c.is_signed_by(&key) => last = last.max(c.checkpoint.seq),
            _ => {
                metrics::counter!(crate::metrics::AUDIT_STREAM_FORGED, "kind" => "checkpoint")
                    .increment(1);
                tracing::warn!(
                    subject,
                    %place,
                    "a message on this log's checkpoint subject is not a checkpoint signed by \
                     its audit key: set aside (someone else can publish on the audit stream)"
                );
            }
        }
    }
    Ok(last)
}

/// What the stream holds of one log: its records and checkpoints in stream
/// order, each placed by its stream sequence number
/// ([`Place::Published`]), ready for [`super::verify_entries`]. A message
/// published twice with the same bytes (a publisher that resumed) counts
/// once; anything else is kept as found, for verification to judge.
#[derive(Debug, Clone, Default)]
pub struct PublishedLog {
    /// The log's key, `ed25519/<hex>` (from its subject).
    pub log_key: String,
    /// Its records and checkpoints.
    pub read: AuditRead,
}

/// Reads the stream: every log published on it (`only`: just the log with
/// that id), by log id. Messages on subjects of another shape are skipped.
pub async fn read_published(
    cfg: &AuditPublishConfig,
    only: Option<&str>,
) -> Result<BTreeMap<String, PublishedLog>, FeedError> {
    let filter = match only {
        Some(id) => format!("{}.{id}.>", cfg.prefix),
        None => format!("{}.>", cfg.prefix),
    };
    read_filtered(cfg, filter).await
}

/// The checkpoints published for the log with id `id`, in stream order
/// (its records, if published, are not read).
pub async fn read_published_checkpoints(
    cfg: &AuditPublishConfig,
    id: &str,
) -> Result<Vec<super::verify::ReadCheckpoint>, FeedError> {
    let mut logs = read_filtered(cfg, checkpoints_subject(&cfg.prefix, id)).await?;
    Ok(logs
        .remove(id)
        .map(|l| l.read.checkpoints)
        .unwrap_or_default())
}

async fn read_filtered(
    cfg: &AuditPublishConfig,
    filter: String,
) -> Result<BTreeMap<String, PublishedLog>, FeedError> {
    let nats = &cfg.nats;
    let js = jetstream::new(nats.connect().await?);
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| err(nats, format!("stream {}: {e}", cfg.stream)))?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            filter_subject: filter,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| err(nats, e))?;
    let mut out: BTreeMap<String, PublishedLog> = BTreeMap::new();
    let mut seen: HashMap<(String, bool, u64), Vec<u8>> = HashMap::new();
    let mut pending = consumer
        .clone()
        .info()
        .await
        .map_err(|e| err(nats, e))?
        .num_pending;
    while pending > 0 {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| err(nats, e))?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| err(nats, e))?;
            let info = msg.info().map_err(|e| err(nats, e))?;
            let (stream_seq, left) = (info.stream_sequence, info.pending);
            got += 1;
            pending = left;
            let rest = msg
                .subject
                .as_str()
                .strip_prefix(&cfg.prefix)
                .and_then(|s| s.strip_prefix('.'));
            let Some((id, kind)) = rest.and_then(|r| r.split_once('.')) else {
                continue;
            };
            let is_record = match kind {
                "records" => true,
                "checkpoints" => false,
                _ => continue,
            };
            if log_id(&format!("ed25519/{id}")).as_deref() != Some(id) {
                continue;
            }
            let log = out.entry(id.to_string()).or_insert_with(|| PublishedLog {
                log_key: format!("ed25519/{id}"),
                read: AuditRead::default(),
            });
            let place = Place::Published(stream_seq);
            let bytes = msg.payload.to_vec();
            if is_record {
                let parsed = parse_entry(&bytes);
                if let Ok(e) = &parsed {
                    let k = (id.to_string(), true, e.record.seq);
                    if seen.get(&k) == Some(&bytes) {
                        continue;
                    }
                    seen.insert(k, bytes);
                }
                log.read.entries.push((place, parsed));
            } else {
                let parsed = parse_checkpoint(&bytes);
                if let Ok(c) = &parsed {
                    let k = (id.to_string(), false, c.checkpoint.seq);
                    if seen.get(&k) == Some(&bytes) {
                        continue;
                    }
                    seen.insert(k, bytes);
                }
                log.read.checkpoints.push((place, parsed));
            }
        }
        if got == 0 {
            break;
        }
    }
    Ok(out)
}
