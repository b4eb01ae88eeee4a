//! The signed audit log of decisions (specification §12).
//!
//! Every decision a verifier with an audit sink makes (allow, deny, needs
//! approval) becomes an [`AuditEvent`]; the [`AuditLog`] places it after the
//! previous record (sequence number, previous record's hash), hashes it, and
//! stores it in RocksDB in a synced batch; a [`SignedCheckpoint`] — the
//! verifier's own Ed25519 key signing the last record written (the chain
//! head) — vouches for every record before it, signed once per interval
//! under load and whenever the writer runs out of records. A server answers a
//! decision once [`AuditSink::durable`] resolves. [`verify_entries`] checks
//! a log or an export and names the first record altered, removed or
//! reordered.

mod durable;
#[cfg(feature = "rocksdb")]
mod log;
#[cfg(feature = "feed")]
pub mod publish;
mod record;
#[cfg(feature = "rocksdb")]
mod tail;
mod verify;

pub use durable::AuditDurable;
#[cfg(feature = "rocksdb")]
pub use log::{read_audit_log, read_audit_store, AuditLog, AuditOptions};
pub use record::{
    AuditApproval, AuditChain, AuditCheckpoint, AuditEntry, AuditEvent, AuditHop, AuditRecord,
    Seal, SignedCheckpoint, GENESIS_HASH,
};
#[cfg(feature = "rocksdb")]
pub use tail::AuditTail;
pub use verify::{
    parse_checkpoint, parse_entry, parse_export, set_aside_forged, verify_entries,
    verify_entries_from, AuditProblem, AuditRead, AuditStart, AuditSummary, Place, ReadCheckpoint,
    ReadEntry,
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

    /// Resolves once every decision taken before the call is durable, or
    /// with why it is not; a server answers only after it resolves `Ok`.
    /// Default: at once, with [`AuditSink::health`] (a sink that records
    /// synchronously, such as a closure).
    fn durable(&self) -> AuditDurable {
        AuditDurable::ready(self.health())
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

    fn durable(&self) -> AuditDurable {
        AuditLog::durable(self)
    }
}

impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    fn record(&self, event: AuditEvent) {
        (**self).record(event);
    }

    fn health(&self) -> Result<(), crate::VerifierError> {
        (**self).health()
    }

    fn durable(&self) -> AuditDurable {
        (**self).durable()
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
