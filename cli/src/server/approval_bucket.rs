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
//! - **Listed in one pass.** [`ApprovalBucket::all`] reads the latest entry
//!   of every key through one ordered consumer (last message per subject),
//!   not one read per key: keys added by an outsider cost the listing one
//!   delivered message each, not a round trip. It returns at most
//!   [`ApprovalBucket::MAX_LISTED`] requests.

use crate::service::ApprovalRecord;
use crate::service::ApprovalStatus;
use crate::ServiceError;
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use mandate_verifier::feed::{FeedConfig, RevocationKeys, RevocationSigner};
use mandate_verifier::spend_bucket::strict_bucket_stream;
use std::collections::HashMap;
use std::str::FromStr;
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

/// An entry read: its record, or why it is not shown (reason label, detail).
type Unsealed = Result<ApprovalRecord, (&'static str, String)>;

/// The shared queue.
pub struct ApprovalBucket {
    client: async_nats::Client,
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
    /// The most requests one listing ([`ApprovalBucket::all`]) returns:
    /// every pending request first (the newest ones if there are more),
    /// then the newest decided ones. Older requests stay readable by id.
    pub const MAX_LISTED: usize = 1_000;

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
        let js = jetstream::new(client.clone());
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
            client,
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
        let mut r = r.clone();
        if let Some(token) = &r.token {
            r.token = Some(seal_token(&self.signer, &r.id, token).map_err(|e| self.err(e))?);
        }
        crate::signed_record::seal(&self.signer, APPROVAL_DOMAIN, &r).map_err(|e| self.err(e))
    }

    /// The record an entry stored under `key` holds, if it is signed by a
    /// trusted key and names `key`; else (reason label, detail).
    fn unseal(&self, key: &str, value: &[u8]) -> Unsealed {
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
        let mut record = record;
        if let Some(sealed) = record.token.take() {
            // A token this service cannot open (sealed under a retired
            // revocation key, or altered) is not held here: the request is
            // shown as not re-verifiable, never decided on stored data.
            match open_token(&self.signer, &record.id, &sealed) {
                Ok(token) => record.token = Some(token),
                Err(why) => tracing::warn!(
                    id = record.id,
                    %why,
                    "the agent's token of an approval request cannot be opened here"
                ),
            }
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

    /// The ids of the requests decided from now on, at any issuer service,
    /// as their `<id>.decided` entries are written (a watch of those keys,
    /// new entries only). Only a hint that a request may be decided: the
    /// entry is not verified here; read the request with
    /// [`ApprovalBucket::get`], which does.
    pub async fn watch_decisions(
        &self,
    ) -> Result<impl futures_util::Stream<Item = String> + Send + 'static, ServiceError> {
        let watch = self.timed(self.store.watch(format!("*{DECIDED}"))).await?;
        Ok(watch.filter_map(|entry| {
            std::future::ready(entry.ok().and_then(|e| {
                e.key
                    .strip_suffix(DECIDED)
                    .filter(|id| uuid::Uuid::parse_str(id).is_ok())
                    .map(str::to_string)
            }))
        }))
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

    /// Every request (its decision when there is one), oldest first, at
    /// most [`ApprovalBucket::MAX_LISTED`] of them; entries that are not
    /// records signed by a trusted key are left out (counted, logged), and
    /// so is a request whose `<id>.decided` entry is not a signed decision;
    /// keys whose latest entry is a delete or purge marker are skipped.
    /// One pass over the bucket (`latest`).
    pub async fn all(&self) -> Result<Vec<ApprovalRecord>, ServiceError> {
        let Latest {
            requests,
            mut decisions,
        } = self.latest().await?;
        let mut requests: Vec<(String, (u64, Unsealed))> = requests.into_iter().collect();
        // Stream order, as the keys were listed before.
        requests.sort_by_key(|(_, (seq, _))| *seq);
        let mut out = Vec::with_capacity(requests.len());
        for (id, (_, entry)) in requests {
            // Its decision when there is one (a bad one leaves it out).
            let (key, read) = match decisions.remove(&id) {
                Some(decision) => (format!("{id}{DECIDED}"), decision),
                None => (id, entry),
            };
            match read {
                Ok(r) => out.push(r),
                Err((reason, detail)) => Self::rejected(&key, reason, &detail),
            }
        }
        out.sort_by_key(|r| r.submitted_at);
        Ok(newest(out, Self::MAX_LISTED, |r| {
            r.status == ApprovalStatus::Pending
        }))
    }

    /// The latest entry under every key, read in one pass: an ordered
    /// consumer on the bucket's stream delivering the last message of each
    /// subject, read until it has nothing pending (its count when it was
    /// created bounds the read, so entries written meanwhile cannot keep it
    /// going); an empty bucket is known from the consumer's creation. Each
    /// entry is unsealed as it arrives (no entry's bytes are kept), and each
    /// wait for the server is bounded by `TIMEOUT`.
    ///
    /// Not `kv::Store::watch_with_history(">")`: its entries mark the last
    /// one of the history itself with `seen_current`, so reading "until
    /// seen_current" drops it (one request listed: nothing), and on an
    /// empty bucket it never yields at all.
    async fn latest(&self) -> Result<Latest, ServiceError> {
        let prefix = self.store.prefix.as_str();
        let consumer = self
            .timed(self.store.stream.create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("mandate approval listing".into()),
                filter_subject: format!("{prefix}>"),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            }))
            .await?;
        let mut left = consumer.cached_info().num_pending;
        let mut latest = Latest::default();
        if left == 0 {
            return Ok(latest);
        }
        let mut messages = self.timed(consumer.messages()).await?;
        while left > 0 {
            let message = match tokio::time::timeout(TIMEOUT, messages.next()).await {
                Ok(Some(m)) => m.map_err(|e| self.err(format!("listing the entries: {e}")))?,
                Ok(None) => return Err(self.err("listing the entries: the consumer ended")),
                Err(_) => {
                    return Err(self.err(format!(
                        "listing the entries: no answer within {} s",
                        TIMEOUT.as_secs()
                    )))
                }
            };
            let info = message
                .info()
                .map_err(|e| self.err(format!("listing the entries: {e}")))?;
            left = info.pending.min(left - 1);
            let seq = info.stream_sequence;
            let Some(key) = message.subject.as_str().strip_prefix(prefix) else {
                continue;
            };
            let put = operation(message.headers.as_ref()) == kv::Operation::Put;
            match key.strip_suffix(DECIDED) {
                Some(id) => {
                    let read = if put {
                        self.unseal(key, &message.payload)
                    } else {
                        Err(("marker", format!("a delete or purge marker under {key}")))
                    };
                    latest.decisions.insert(id.to_string(), read);
                }
                None if put => {
                    let read = self.unseal(key, &message.payload);
                    latest.requests.insert(key.to_string(), (seq, read));
                }
                None => {
                    latest.requests.remove(key);
                }
            }
        }
        Ok(latest)
    }
}

/// The bucket's latest entries, unsealed.
#[derive(Default)]
struct Latest {
    /// Request keys whose latest entry is not a delete or purge marker:
    /// (stream sequence, the entry).
    requests: HashMap<String, (u64, Unsealed)>,
    /// `<id>.decided` entries by id (a marker as an error).
    decisions: HashMap<String, Unsealed>,
}

/// What a message of the bucket's stream does to its key, as the KV reads
/// it (`kv::Store::entry`, `keys`): an operation it does not name is a put.
fn operation(headers: Option<&async_nats::HeaderMap>) -> kv::Operation {
    let Some(headers) = headers else {
        return kv::Operation::Put;
    };
    if let Some(op) = headers.get("KV-Operation") {
        kv::Operation::from_str(op.as_str()).unwrap_or(kv::Operation::Put)
    } else {
        match headers
            .get(async_nats::header::NATS_MARKER_REASON)
            .map(|r| r.as_str())
        {
            Some("MaxAge" | "Purge") => kv::Operation::Purge,
            Some("Remove") => kv::Operation::Delete,
            _ => kv::Operation::Put,
        }
    }
}

/// `sorted` (oldest first) cut to at most `max` requests: every pending
/// one first (the newest `max` if there are more), then the newest decided
/// ones; still oldest first.
fn newest<T>(sorted: Vec<T>, max: usize, is_pending: impl Fn(&T) -> bool) -> Vec<T> {
    if sorted.len() <= max {
        return sorted;
    }
    let pending = sorted.iter().filter(|r| is_pending(r)).count().min(max);
    let (mut pending_room, mut decided_room) = (pending, max - pending);
    let mut kept: Vec<T> = sorted
        .into_iter()
        .rev()
        .filter(|r| {
            let room = if is_pending(r) {
                &mut pending_room
            } else {
                &mut decided_room
            };
            let keep = *room > 0;
            *room = room.saturating_sub(1);
            keep
        })
        .collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::newest;
    use proptest::prelude::*;

    proptest! {
        /// The cap: at most `max` kept, in their order; as many pending as
        /// fit (the newest), the rest of the room to the newest decided;
        /// nothing cut when all fit.
        #[test]
        fn newest_keeps_pending_first_then_the_newest_decided(
            pending in proptest::collection::vec(any::<bool>(), 0..60),
            max in 0usize..40,
        ) {
            let items: Vec<(usize, bool)> = pending.iter().copied().enumerate().collect();
            let kept = newest(items.clone(), max, |(_, p)| *p);
            prop_assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
            if items.len() <= max {
                prop_assert_eq!(kept, items);
                return Ok(());
            }
            prop_assert_eq!(kept.len(), max);
            let all_pending: Vec<_> = items.iter().filter(|i| i.1).collect();
            let kept_pending: Vec<_> = kept.iter().filter(|i| i.1).collect();
            let n = all_pending.len().min(max);
            prop_assert_eq!(&kept_pending[..], &all_pending[all_pending.len() - n..]);
            let all_decided: Vec<_> = items.iter().filter(|i| !i.1).collect();
            let kept_decided: Vec<_> = kept.iter().filter(|i| !i.1).collect();
            prop_assert_eq!(
                &kept_decided[..],
                &all_decided[all_decided.len() - (max - n)..]
            );
        }
    }
}

/// The prefix of an agent's token sealed for the bucket.
const SEALED_TOKEN: &str = "sealed-v1:";

/// Seals an agent's token (base64 text) for the shared bucket: the bucket's
/// readers must not get bearer tokens (nor use an approval before the agent
/// does). ChaCha20-Poly1305 under a secret derived from the issuer's
/// revocation key (shared by the issuer services of a fleet), a random
/// nonce, the request id as associated data (a sealed token moved to another
/// request does not open).
fn seal_token(signer: &RevocationSigner, id: &str, token: &str) -> Result<String, String> {
    use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
    let cipher =
        chacha20poly1305::ChaCha20Poly1305::new(&signer.derive_secret("approval-token-v1").into());
    let nonce = chacha20poly1305::ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: token.as_bytes(),
                aad: id.as_bytes(),
            },
        )
        .map_err(|_| "cannot seal the agent's token".to_string())?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(format!("{SEALED_TOKEN}{}", hex::encode(out)))
}

/// Opens a token sealed by [`seal_token`] for request `id`.
fn open_token(signer: &RevocationSigner, id: &str, sealed: &str) -> Result<String, String> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let bytes = sealed
        .strip_prefix(SEALED_TOKEN)
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| b.len() > 12)
        .ok_or("not a sealed token")?;
    let (nonce, ct) = bytes.split_at(12);
    let cipher =
        chacha20poly1305::ChaCha20Poly1305::new(&signer.derive_secret("approval-token-v1").into());
    let plain = cipher
        .decrypt(
            nonce.into(),
            Payload {
                msg: ct,
                aad: id.as_bytes(),
            },
        )
        .map_err(|_| "sealed under another revocation key, or altered")?;
    String::from_utf8(plain).map_err(|_| "not text".to_string())
}

#[cfg(test)]
mod sealed_token_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_token_opens_for_its_request_under_the_same_key_only() {
        let key = biscuit_auth::KeyPair::new();
        let signer = RevocationSigner::new(0, &key).unwrap();
        let sealed = seal_token(&signer, "req-1", "En0KEwoEdG9rZW4").unwrap();
        assert!(!sealed.contains("En0KEwoEdG9rZW4"), "not in the clear");
        assert_eq!(
            open_token(&signer, "req-1", &sealed).unwrap(),
            "En0KEwoEdG9rZW4"
        );
        assert!(open_token(&signer, "req-2", &sealed).is_err(), "moved");
        let other = RevocationSigner::new(0, &biscuit_auth::KeyPair::new()).unwrap();
        assert!(open_token(&other, "req-1", &sealed).is_err(), "another key");
        assert!(
            open_token(&signer, "req-1", "En0KEwoEdG9rZW4").is_err(),
            "clear text"
        );
    }
}
