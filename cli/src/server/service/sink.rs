//! Where acknowledged revocations go: the extension point for a revocation
//! feed.
//!
//! `POST /v1/revocations` answers only once its sink has returned `Ok`. The
//! embedded default is the service's own [`RevocationStore`] (a synced
//! RocksDB write, read by the embedded verifier). A feed publisher (NATS
//! JetStream, with many verifiers consuming it) implements this trait and
//! returns once the feed has acknowledged the entries.

use super::error::ServiceError;
use mandate_verifier::revocation::{Revocation, RevocationStore};
use std::sync::Arc;

/// Receives revocations and makes them durable before returning.
///
/// Called on a blocking thread (never on the async executor), once per
/// `POST /v1/revocations`, with every entry of that request: a sink that
/// can write them atomically should. Implemented by [`RevocationStore`], by
/// `Arc`s of any sink, and by closures.
pub trait RevocationSink: Send + Sync {
    /// Records `entries`; `Ok` means they survive a crash of this process.
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError>;
}

impl RevocationSink for RevocationStore {
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError> {
        Ok(RevocationStore::revoke(self, entries)?)
    }
}

impl<T: RevocationSink + ?Sized> RevocationSink for Arc<T> {
    fn revoke(&self, entries: &[Revocation]) -> Result<(), ServiceError> {
        (**self).revoke(entries)
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
