//! The approval queue shared by issuer services in a fleet (`mandate serve
//! --nats`; `spec/SERVICE.md` S6): a JetStream key-value bucket,
//! `MANDATE_APPROVALS`, one entry per approval request (key: its id).
//!
//! - **Any service answers for all.** An agent submits at one service, a
//!   person reviews and approves at another: every service reads and writes
//!   the same bucket.
//! - **Decided once.** A request is created only if its key never held an
//!   entry (expected last revision 0), and its decision (approved or
//!   denied) is written under a key of its own, `<id>.decided`, also only
//!   if that key never held an entry: two people deciding the same request
//!   at two services (or at one) cannot both succeed; the second is told it
//!   was decided meanwhile, and its approval is never handed out. A
//!   decision is never written over the pending entry: every signed entry
//!   stays valid, and an outsider with publish access who kept the pending
//!   one could publish it again over the decision (no revision needed) and
//!   have the request decided a second time.
//! - **Signed.** Each entry is the record's JSON signed with the issuer's
//!   revocation key under its own domain (`mandate-approval-v1\n`), and its
//!   record must name the key it is stored under. An entry that does not
//!   verify under a trusted key (written by someone with publish access to
//!   NATS, or copied under another id) is never shown to an approver nor
//!   decided: it is refused (one request) or left out of the list, counted
//!   (`mandate_approval_records_rejected_total{reason}`) and logged at WARN.
//! - The bucket's stream denies deletes, purges and rollups and keeps one
//!   entry per key, as the spend bucket's does.

use crate::service::ApprovalRecord;
use crate::ServiceError;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use mandate_verifier::feed::{FeedConfig, RevocationKeys, RevocationSigner};
use mandate_verifier::spend_bucket::strict_bucket_stream;
use std::time::Duration;

/// The domain prefix of every approval-record signature.
pub const APPROVAL_DOMAIN: &[u8] = b"mandate-approval-v1\n";

/// The counter of rejected approval entries (label `reason`).
pub const APPROVAL_REJECTED: &str = "mandate_approval_records_rejected_total";

/// The bucket's name.
pub const APPROVAL_BUCKET: &str = "MANDATE_APPROVALS";

/// The suffix of the key a request's decision is written under.
const DECIDED: &str = ".decided";

/// Largest entry: a record with its chain (a few KiB) and the approval block.
const MAX_ENTRY_BYTES: i32 = 256 * 1024;

/// Longest wait for the bucket on any one operation.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The shared queue.
pub struct ApprovalBucket {
    store: kv::Store,
    signer: RevocationSigner,
    keys: RevocationKeys,
    /// The server, without credentials, for errors.
    url: String,
}

impl std::fmt::Debug for ApprovalBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalBucket")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What a compare-and-set write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written.
    Yes,
    /// The entry changed since it was read (or, for a new one, exists).
    Conflict,
}

impl ApprovalBucket {
    /// Connects with `nats`'s server, credentials and TLS, and opens the
    /// bucket (creating its stream if needed); entries are signed with
    /// `signer` and trusted under `nats.revocation_keys`.
    pub async fn open(
        nats: &FeedConfig,
        signer: RevocationSigner,
    ) -> Result<ApprovalBucket, ServiceError> {
        let url = mandate_verifier::feed::redact_url(&nats.url);
        let err = |e: &dyn std::fmt::Display| {
            ServiceError::Fleet(format!("approval bucket {APPROVAL_BUCKET} at {url}: {e}"))
        };
        if nats.revocation_keys.is_empty() {
            return Err(ServiceError::Config(
                "the shared approval queue needs the revocation public keys that sign its \
                 entries"
                    .into(),
            ));
        }
        let client = nats.connect().await.map_err(|e| err(&e))?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(strict_bucket_stream(
                APPROVAL_BUCKET,
                "Mandate: the issuer services' approval queue",
                MAX_ENTRY_BYTES,
                Duration::ZERO,
            ))
            .await
            .map_err(|e| err(&e))?;
        let cfg = &stream.cached_info().config;
        if cfg.max_messages_per_subject != 1 || !cfg.deny_delete || !cfg.deny_purge {
            return Err(err(
                &"the existing bucket stream keeps more than one entry per key or allows \
                  deletes or purges: recreate it (SERVICE.md S6)",
            ));
        }
        let store = js
            .get_key_value(APPROVAL_BUCKET)
            .await
            .map_err(|e| err(&e))?;
        Ok(ApprovalBucket {
            store,
            signer,
            keys: nats.revocation_keys.clone(),
            url,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> ServiceError {
        ServiceError::Fleet(format!(
            "approval bucket {APPROVAL_BUCKET} at {}: {e}",
            self.url
        ))
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, ServiceError> {
        match tokio::time::timeout(TIMEOUT, f).await {
            Ok(r) => r.map_err(|e| self.err(e)),
            Err(_) => Err(self.err(format!("no answer within {} s", TIMEOUT.as_secs()))),
        }
    }

    fn seal(&self, r: &ApprovalRecord) -> Result<Vec<u8>, ServiceError> {
        crate::signed_record::seal(&self.signer, APPROVAL_DOMAIN, r).map_err(|e| self.err(e))
    }

    /// The record an entry stored under `key` holds, if it is signed by a
    /// trusted key and names `key`; else (reason label, detail).
    fn unseal(&self, key: &str, value: &[u8]) -> Result<ApprovalRecord, (&'static str, String)> {
        let record: ApprovalRecord =
            crate::signed_record::open(&self.keys, APPROVAL_DOMAIN, value, "approval record")?;
        let (id, decision) = match key.strip_suffix(DECIDED) {
            Some(id) => (id, true),
            None => (key, false),
        };
        if decision && record.status == crate::service::ApprovalStatus::Pending {
            return Err((
                "misplaced",
                format!("a pending record of approval request {id} stored as its decision"),
            ));
        }
        if record.id != id {
            return Err((
                "misplaced",
                format!(
                    "a record of approval request {} stored under {key}",
                    record.id
                ),
            ));
        }
        Ok(record)
    }

    fn rejected(key: &str, reason: &'static str, detail: &str) {
        metrics::counter!(APPROVAL_REJECTED, "reason" => reason).increment(1);
        tracing::warn!(
            key,
            reason,
            detail,
            "approval queue entry rejected: not shown, not decided"
        );
    }

    /// Adds a new request: [`Written::Conflict`] if its id was ever used.
    pub async fn create(&self, r: &ApprovalRecord) -> Result<Written, ServiceError> {
        self.write_once(&r.id, r).await
    }

    /// Writes the decision `r` under `<id>.decided` only if that key never
    /// held an entry (the request was read as pending; its entry is never
    /// written over).
    pub async fn decide(&self, r: &ApprovalRecord) -> Result<Written, ServiceError> {
        self.write_once(&format!("{}{DECIDED}", r.id), r).await
    }

    /// Writes `r` signed under `key` only if that key never held an entry
    /// (expected last revision 0: a delete or purge marker counts as held).
    async fn write_once(&self, key: &str, r: &ApprovalRecord) -> Result<Written, ServiceError> {
        let value = self.seal(r)?;
        match tokio::time::timeout(TIMEOUT, self.store.update(key, value.into(), 0)).await {
            Ok(Ok(_)) => Ok(Written::Yes),
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Ok(Written::Conflict)
            }
            Ok(Err(e)) => Err(self.err(e)),
            Err(_) => Err(self.err(format!("no answer within {} s", TIMEOUT.as_secs()))),
        }
    }

    /// One request: its decision when there is one, else
    /// its entry. An entry that is not a record signed by a trusted key is
    /// an error (never shown or decided), and so is anything but a signed
    /// decision under `<id>.decided` (a delete marker published there
    /// must not make a decided request pending again).
    pub async fn get(&self, id: &str) -> Result<Option<ApprovalRecord>, ServiceError> {
        match self.lookup(id).await? {
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(why)) => Err(self.err(why)),
            None => Ok(None),
        }
    }

    /// [`ApprovalBucket::get`], a rejected entry as `Some(Err(why))`.
    async fn lookup(
        &self,
        id: &str,
    ) -> Result<Option<Result<ApprovalRecord, String>>, ServiceError> {
        let decided = format!("{id}{DECIDED}");
        if let Some(entry) = self.timed(self.store.entry(&decided)).await? {
            return Ok(Some(self.read(&decided, entry)));
        }
        let Some(entry) = self.timed(self.store.entry(id)).await? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        Ok(Some(self.read(id, entry)))
    }

    fn read(&self, key: &str, entry: kv::Entry) -> Result<ApprovalRecord, String> {
        let unsealed = match entry.operation {
            kv::Operation::Put => self.unseal(key, &entry.value),
            _ => Err(("marker", format!("a delete or purge marker under {key}"))),
        };
        match unsealed {
            Ok(r) => Ok(r),
            Err((reason, detail)) => {
                Self::rejected(key, reason, &detail);
                Err(format!(
                    "the entry {key} is not a record signed by a trusted issuer key \
                     ({detail}): refused"
                ))
            }
        }
    }

    /// Every request, oldest first; entries that are not records signed by
    /// a trusted key are left out (counted, logged).
    pub async fn all(&self) -> Result<Vec<ApprovalRecord>, ServiceError> {
        let mut keys = self.timed(self.store.keys()).await?;
        let mut names = Vec::new();
        loop {
            match tokio::time::timeout(TIMEOUT, keys.next()).await {
                Ok(Some(k)) => names.push(k.map_err(|e| self.err(e))?),
                Ok(None) => break,
                Err(_) => return Err(self.err("listing the keys: no answer")),
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names.iter().filter(|n| !n.ends_with(DECIDED)) {
            // Its decision when there is one (a bad one leaves it out).
            if let Some(Ok(r)) = self.lookup(name).await? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.submitted_at);
        Ok(out)
    }
}
