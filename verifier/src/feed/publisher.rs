//! The issuer side of the feed: publishing revocations to the stream, each
//! signed with the issuer's revocation key.

use super::{nats_err, stream_handle, FeedConfig, FeedError, RevocationSigner};
use crate::revocation::Revocation;
use async_nats::jetstream;
use mandate_spec::RestrictionEntry;
use std::time::Duration;

/// Publishes revocations to the stream (the issuer side), each entry signed
/// by `signer` (the issuer's current revocation key).
#[derive(Debug, Clone)]
pub struct FeedPublisher {
    js: jetstream::Context,
    cfg: FeedConfig,
    signer: RevocationSigner,
}

impl FeedPublisher {
    /// Connects and makes sure the stream exists.
    pub async fn connect(
        cfg: FeedConfig,
        signer: RevocationSigner,
    ) -> Result<FeedPublisher, FeedError> {
        let client = cfg.connect().await?;
        let js = jetstream::new(client);
        stream_handle(&js, &cfg).await?;
        Ok(FeedPublisher { js, cfg, signer })
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
        let payload = self
            .signer
            .seal(entry)
            .map_err(|e| nats_err(&self.cfg.url, e))?;
        let id = format!(
            "{}:{}",
            entry.target,
            entry.revoked_at.unix_timestamp_nanos()
        );
        self.send(payload, id, retry_for).await
    }

    /// Publishes a restriction or a lift (SPEC §19.4), signed, as
    /// [`FeedPublisher::publish`] does a revocation: acknowledged by
    /// JetStream, retried for up to 30 s, deduplicated by a message id
    /// naming the entry (`restrict:<id>` or `lift:<id>`).
    pub async fn publish_restriction(&self, entry: &RestrictionEntry) -> Result<u64, FeedError> {
        let payload = self
            .signer
            .seal_restriction(entry)
            .map_err(|e| nats_err(&self.cfg.url, e))?;
        let id = match entry {
            RestrictionEntry::Restrict(r) => format!("restrict:{}", r.id),
            RestrictionEntry::Lift(l) => format!("lift:{}", l.id),
        };
        self.send(payload, id, Duration::from_secs(30)).await
    }

    async fn send(
        &self,
        payload: Vec<u8>,
        id: String,
        retry_for: Duration,
    ) -> Result<u64, FeedError> {
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
