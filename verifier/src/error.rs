//! The one error type of `mandate-verifier`: problems with the verifier's own
//! environment (its revocation store). Problems with a token or a request are
//! never errors: they are denials ([`crate::Denial`]).

use std::path::PathBuf;

/// Why the verifier's revocation store could not be used. A verifier that
/// cannot consult its revocation list denies every request
/// ([`crate::DenialKind::RevocationUnavailable`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierError {
    /// No store at this path. Create it (`mandate revoke` or
    /// [`crate::revocation::RevocationStore::open`]) or fix the path.
    #[error("no revocation store at {path}")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// Another process holds the store open for writing. Stop it, or open
    /// this one read-only.
    #[error("revocation store {path} is locked by another process ({detail})")]
    Locked {
        /// The store.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// The store's files are damaged. Restore it from a replica or rebuild
    /// it from the revocation feed; never delete it to "fix" a verifier.
    #[error("revocation store {path} is corrupt: {detail}")]
    Corrupt {
        /// The store.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// The disk is full: the revocation was NOT recorded. Free space and retry.
    #[error("no space left for revocation store {path}: {detail}")]
    NoSpace {
        /// The store.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// The revocation feed has been silent for longer than the staleness
    /// limit: revocations may be missing. Restore the feed connection.
    #[error("revocation list stale: {detail}")]
    Stale {
        /// How long, and the limit.
        detail: String,
    },
    /// No audit log at this path. Check the path (`--audit-db` of the
    /// verifier that writes it).
    #[error("no audit log at {path}")]
    AuditMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The fleet's record of used approvals and nonces (a JetStream
    /// key-value bucket) could not be used: NATS unreachable, no answer
    /// within the timeout, or the bucket refused. Spends are denied until it
    /// answers again.
    #[error("spend bucket {bucket} unavailable: {detail}")]
    SpendBucket {
        /// The bucket.
        bucket: String,
        /// What failed.
        detail: String,
    },
    /// The usage store (the counters of usage limits, SPEC §18) could not
    /// be opened, read or written: locked by another process, corrupt, a
    /// full disk, an I/O error. Requests of tokens with limits are denied
    /// (`limit_unavailable`) while it cannot.
    #[error("usage store {path}: {detail}")]
    UsageStore {
        /// The store.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The fleet's usage counters (a JetStream key-value bucket, SPEC §18.5)
    /// could not be used: NATS unreachable, no answer within the timeout,
    /// the bucket refused, or a counter was unreadable. Requests of chains
    /// with limits are denied (`limit_unavailable`) until it answers again.
    #[error("usage bucket {bucket} unavailable: {detail}")]
    UsageBucket {
        /// The bucket.
        bucket: String,
        /// What failed.
        detail: String,
    },
    /// Any other storage failure (permissions, I/O).
    #[error("revocation store {path}: {detail}")]
    Store {
        /// The store.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

impl VerifierError {
    #[cfg(feature = "rocksdb")]
    pub(crate) fn from_rocksdb(path: &std::path::Path, e: rocksdb::Error) -> VerifierError {
        let detail = e.to_string();
        let path = path.to_path_buf();
        let lower = detail.to_ascii_lowercase();
        match e.kind() {
            rocksdb::ErrorKind::Corruption => VerifierError::Corrupt { path, detail },
            _ if lower.contains("no space left") => VerifierError::NoSpace { path, detail },
            _ if lower.contains("lock") => VerifierError::Locked { path, detail },
            rocksdb::ErrorKind::InvalidArgument if lower.contains("does not exist") => {
                VerifierError::Missing { path }
            }
            _ if lower.contains("no such file") && !path.exists() => {
                VerifierError::Missing { path }
            }
            _ if lower.contains("corrupt") || lower.contains("bad magic") => {
                VerifierError::Corrupt { path, detail }
            }
            _ => VerifierError::Store { path, detail },
        }
    }
}
