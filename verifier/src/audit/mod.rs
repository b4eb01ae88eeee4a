//! The signed audit log of decisions (specification §12).
//!
//! Every decision a verifier with an audit sink makes (allow, deny, needs
//! approval) becomes an [`AuditEvent`]; the [`AuditLog`] places it after the
//! previous record (sequence number, previous record's hash), hashes it,
//! signs the hash with the verifier's own Ed25519 key, and stores it in
//! RocksDB. [`verify_entries`] checks a log or an export and names the first
//! record altered, removed or reordered.

#[cfg(feature = "rocksdb")]
mod log;
mod record;
mod verify;

#[cfg(feature = "rocksdb")]
pub use log::{read_audit_store, AuditLog, AuditOptions};
pub use record::{AuditChain, AuditEntry, AuditEvent, AuditHop, AuditRecord, Seal, GENESIS_HASH};
pub use verify::{
    parse_entry, parse_export, verify_entries, verify_entries_from, AuditProblem, AuditStart,
    AuditSummary, Place, ReadEntry,
};

use std::sync::Arc;

/// Where a verifier sends its decisions. Implemented by [`AuditLog`], by
/// `Arc`s of any sink, and by closures (a test, or a sink of your own).
///
/// Called on the request path: an implementation must return quickly (queue
/// the event, as [`AuditLog`] does) and must not panic.
pub trait AuditSink: Send + Sync {
    /// Takes one decision.
    fn record(&self, event: AuditEvent);

    /// `Ok` while decisions are being recorded; an error makes the HTTP
    /// middleware answer 503 instead of acting without a record.
    fn health(&self) -> Result<(), crate::VerifierError> {
        Ok(())
    }
}

#[cfg(feature = "rocksdb")]
impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) {
        AuditLog::record(self, event);
    }

    fn health(&self) -> Result<(), crate::VerifierError> {
        AuditLog::health(self)
    }
}

impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    fn record(&self, event: AuditEvent) {
        (**self).record(event);
    }

    fn health(&self) -> Result<(), crate::VerifierError> {
        (**self).health()
    }
}

impl<F> AuditSink for F
where
    F: Fn(AuditEvent) + Send + Sync,
{
    fn record(&self, event: AuditEvent) {
        self(event);
    }
}
