//! Where acknowledged revocations and live restrictions go: the extension
//! point for a revocation feed.
//!
//! `POST /v1/revocations`, `POST /v1/restrictions` and `POST
//! /v1/restrictions/{id}/lift` answer only once their sink has returned
//! `Ok`. The embedded default is the service's own [`RevocationStore`] (a
//! synced RocksDB write, read by the embedded verifier). A feed publisher
//! (NATS JetStream, with many verifiers consuming it) implements this trait
//! and returns once the feed has acknowledged the entries: [`FeedSink`],
//! what `mandate serve --nats` uses.

use super::error::ServiceError;
use mandate_spec::RestrictionEntry;
use mandate_verifier::feed::FeedPublisher;
use mandate_verifier::revocation::{RestrictionApplied, Revocation, RevocationStore};
use std::sync::Arc;

/// Receives revocations and restrictions and makes them durable before
/// returning.
///
/// Called on a blocking thread (never on the async executor), once per
/// request, with every entry of that request: a sink that can write them
/// atomically should. Implemented by [`RevocationStore`], [`FeedSink`],
/// `Arc`s of any sink, and by closures (revocations only).
pub trait RevocationSink: Send + Sync {
    /// Records `entries`; `Ok` means they survive a crash of this process.
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError>;

    /// Records a live restriction or its lift (SPEC §19); `Ok` means it
    /// survives a crash of this process (and, for a feed, that the feed
    /// acknowledged it). What recording it did in the local store.
    ///
    /// The default refuses (503): a sink that only knows revocations never
    /// acknowledges a restriction it did not distribute.
    fn restrict(&self, entry: &RestrictionEntry) -> Result<RestrictionApplied, ServiceError> {
        Err(ServiceError::Sink(format!(
            "this service's revocation sink does not carry live restrictions: restriction {} \
             not recorded",
            entry.id()
        )))
    }
}

impl RevocationSink for RevocationStore {
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError> {
        Ok(RevocationStore::revoke(self, entries)?)
    }

    fn restrict(&self, entry: &RestrictionEntry) -> Result<RestrictionApplied, ServiceError> {
        Ok(RevocationStore::restrict(self, entry)?)
    }
}

impl<T: RevocationSink + ?Sized> RevocationSink for Arc<T> {
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError> {
        (**self).revoke(entries)
    }

    fn restrict(&self, entry: &RestrictionEntry) -> Result<RestrictionApplied, ServiceError> {
        (**self).restrict(entry)
    }
}

impl<F> RevocationSink for F
where
    F: Fn(&[Revocation]) -> Result<(), ServiceError> + Send + Sync,
{
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError> {
        self(entries)
    }
}

/// The sink of `mandate serve --nats`: each entry is written to the local
/// store first (synced: the embedded verifier applies it at once), then
/// published to the revocation feed, signed, and JetStream's
/// acknowledgement awaited (retried while the server is unreachable,
/// deduplicated by message id); only then does the client get its 200. A
/// publish that fails is a [`ServiceError::Sink`] (503): the entry may then
/// be in effect at this service only, and a retry publishes it again.
pub struct FeedSink {
    store: Arc<RevocationStore>,
    publisher: FeedPublisher,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for FeedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSink")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl FeedSink {
    /// Writes to `store`, then publishes with `publisher`, blocking on
    /// `runtime` (the sink is called on a blocking thread).
    pub fn new(
        store: Arc<RevocationStore>,
        publisher: FeedPublisher,
        runtime: tokio::runtime::Handle,
    ) -> FeedSink {
        FeedSink {
            store,
            publisher,
            runtime,
        }
    }
}

impl RevocationSink for FeedSink {
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError> {
        self.store.revoke(entries)?;
        for e in entries {
            self.runtime
                .block_on(self.publisher.publish(e))
                .map_err(|err| ServiceError::Sink(err.to_string()))?;
        }
        Ok(())
    }

    fn restrict(&self, entry: &RestrictionEntry) -> Result<RestrictionApplied, ServiceError> {
        let applied = self.store.restrict(entry)?;
        // Published even when nothing changed here: a retry after a publish
        // that failed must reach the feed (JetStream drops the duplicate
        // within its window; verifiers find the id known and change
        // nothing).
        self.runtime
            .block_on(self.publisher.publish_restriction(entry))
            .map_err(|err| ServiceError::Sink(err.to_string()))?;
        Ok(applied)
    }
}
