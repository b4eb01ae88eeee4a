//! One audit record (how it is hashed and chained, the line it becomes in
//! the store and in an export) and the signed checkpoints that cover it.

use crate::decision::{Decision, Denial, Outcome};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use mandate_spec::{Chain, Request, Signer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// Domain separation for the record hash: a record hash can never be
/// mistaken for the hash of anything else this key signs.
const HASH_DOMAIN: &[u8] = b"mandate-audit-record-v1\n";

/// The `prev_hash` of the first record of a log.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A decision as the verifier hands it to the audit log, before the log
/// gives it a place (sequence number, previous hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When the decision was made.
    pub decided_at: OffsetDateTime,
    /// The decision.
    pub decision: Decision,
    /// The revocation-feed position the decision was checked against
    /// (`None`: no revocation list, or one without a position).
    pub revocation_position: Option<u64>,
    /// Hash of the verifier's policy (its root keys, limits and, for the
    /// middleware, its request mapping), hex.
    pub policy_hash: String,
}

/// The signed content of one audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log, from 1, with no gaps.
    pub seq: u64,
    /// When the decision was made, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub decided_at: OffsetDateTime,
    /// The request as the verifier saw it (action, resource, parameters,
    /// request time).
    pub request: Request,
    /// `allow`, `deny` or `needs_approval`.
    pub decision: Outcome,
    /// Why it was denied, when it was.
    pub denial: Option<Denial>,
    /// The delegation chain, when the token could be read far enough.
    pub chain: Option<AuditChain>,
    /// The revocation-feed position checked against, if any.
    pub revocation_position: Option<u64>,
    /// The ids of the live restrictions in effect for the chain (SPEC §19);
    /// absent when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<String>,
    /// Hash of the verifier's policy, hex.
    pub policy_hash: String,
    /// The previous record's hash, hex ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
}

/// The chain as an audit record keeps it: who, through whom, with which keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditChain {
    /// The root token id.
    pub token_id: String,
    /// Who the chain acts for.
    pub principal: String,
    /// The root key id the token names.
    pub root_key_id: Option<u32>,
    /// Every hop, root first.
    pub hops: Vec<AuditHop>,
    /// The approval blocks attached after the last hop (SPEC §14.3), in
    /// token order; absent when there are none, so the canonical JSON of a
    /// record without approvals is unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<AuditApproval>,
}

/// An approval block of an [`AuditChain`]: who approved which request,
/// until when, and the signature that marks it used (§14.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditApproval {
    /// Block index in the token.
    pub block: usize,
    /// The approver's key, `ed25519/<hex>`.
    pub approver_key: String,
    /// The digest of the request it approves, hex.
    pub digest: String,
    /// Until when it may be used, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The approver's signature over the block, hex: the key of its single
    /// use.
    pub approver_signature: String,
}

/// One hop of an [`AuditChain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHop {
    /// Hop number (0 = root).
    pub hop: usize,
    /// The agent the token was handed to.
    pub agent: String,
    /// That agent's key, `ed25519/<hex>`.
    pub agent_key: String,
    /// Who signed the hop: `root` or the delegating agent's id.
    pub signed_by: String,
    /// The hop block's revocation id, hex.
    pub revocation_id: String,
}

impl AuditChain {
    /// The audit view of a chain.
    pub fn of(chain: &Chain) -> AuditChain {
        let root_key_id = match chain.hops.first().map(|h| &h.signed_by) {
            Some(Signer::Root { key_id }) => *key_id,
            _ => None,
        };
        AuditChain {
            token_id: chain.token_id.clone(),
            principal: chain.principal.clone(),
            root_key_id,
            hops: chain
                .hops
                .iter()
                .map(|h| AuditHop {
                    hop: h.hop,
                    agent: h.agent.clone(),
                    agent_key: h.agent_key.clone(),
                    signed_by: match &h.signed_by {
                        Signer::Root { .. } => "root".into(),
                        Signer::Agent { agent, .. } => agent.clone(),
                    },
                    revocation_id: h.revocation_id.clone(),
                })
                .collect(),
            approvals: chain
                .approvals
                .iter()
                .map(|a| AuditApproval {
                    block: a.block,
                    approver_key: a.approver_key.clone(),
                    digest: a.digest.clone(),
                    expires_at: a.expires_at,
                    approver_signature: a.approver_signature.clone(),
                })
                .collect(),
        }
    }
}

/// One line of the log: the record and its hash. The record is vouched for
/// by the first signed [`SignedCheckpoint`] at or after it (its hash chain
/// leads to the checkpoint's head); logs written before checkpoints (and
/// writers configured with [`super::AuditOptions::sign_records`]) also sign
/// each record's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// The hashed content.
    pub record: AuditRecord,
    /// SHA-256 of the record's canonical JSON (with a domain prefix), hex.
    pub hash: String,
    /// Ed25519 signature of the hash's 32 bytes by the verifier's audit
    /// key, hex: only in logs signed record by record (the format before
    /// checkpoints, or [`super::AuditOptions::sign_records`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Domain separation for checkpoint signatures.
const CHECKPOINT_DOMAIN: &[u8] = b"mandate-audit-checkpoint-v1\n";

/// A signed head of the log (specification §12.2; the signed tree head of
/// Certificate Transparency, RFC 9162 §4.10, over a hash chain): the audit
/// key vouches that record `seq` has hash `head_hash`, and so, through each
/// record's `prev_hash`, for every record before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// The log's (verifier's audit) public key, `ed25519/<hex>`.
    pub log_key: String,
    /// The last record covered.
    pub seq: u64,
    /// That record's hash, hex: the chain head.
    pub head_hash: String,
    /// When the checkpoint was signed, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub signed_at: OffsetDateTime,
    /// Signed when the log was reopened, over records that were durable
    /// but not yet covered by a checkpoint when it was last closed (a crash
    /// or power cut inside the checkpoint interval, §12.2): those records
    /// were vouched for only after the restart. Absent (false) otherwise,
    /// so an ordinary checkpoint's JSON is unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

/// An [`AuditCheckpoint`] and its signature: a line of its own in an
/// export, and an entry of the store's `checkpoints` column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// What is signed.
    pub checkpoint: AuditCheckpoint,
    /// Ed25519 signature by the audit key over a domain prefix
    /// (`mandate-audit-checkpoint-v1\n`) and the checkpoint's canonical
    /// JSON, hex.
    pub signature: String,
}

impl AuditCheckpoint {
    fn message(&self) -> Vec<u8> {
        let mut m = CHECKPOINT_DOMAIN.to_vec();
        // Plain data: serializing cannot fail.
        m.extend(serde_json::to_vec(self).unwrap_or_default());
        m
    }

    /// Signs the checkpoint with the audit key.
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let signature = hex::encode(key.sign(&self.message()).to_bytes());
        SignedCheckpoint {
            checkpoint: self,
            signature,
        }
    }
}

impl SignedCheckpoint {
    /// Whether `key` signed it and it names `key` as its log's.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let named = format!("ed25519/{}", hex::encode(key.as_bytes()));
        named == self.checkpoint.log_key
            && hex::decode(&self.signature)
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok())
                .is_some_and(|sig| key.verify_strict(&self.checkpoint.message(), &sig).is_ok())
    }
}

impl AuditRecord {
    /// The record's hash: SHA-256 over a domain prefix and its canonical
    /// JSON (fields in declaration order, parameters sorted by name).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        // Serializing plain data (strings, integers, maps with string keys)
        // cannot fail.
        h.update(serde_json::to_vec(self).unwrap_or_default());
        h.finalize().into()
    }
}

/// An [`AuditRecord`] as the writer serializes it, from the event's parts
/// without copying them: the same fields, in the same order, giving the
/// same bytes as serializing the record (`chain`: the chain's JSON, made
/// once per chain by [`ChainJson`]).
#[derive(Serialize)]
struct RecordView<'a> {
    seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    decided_at: OffsetDateTime,
    request: &'a Request,
    decision: Outcome,
    denial: Option<&'a Denial>,
    chain: Option<&'a RawValue>,
    revocation_position: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    restrictions: &'a [String],
    policy_hash: &'a str,
    prev_hash: &'a str,
}

/// The JSON of each chain's [`AuditChain`], made once per chain: requests
/// made with one token share its chain (an `Arc`), so a busy log
/// serializes a chain once, not once per decision. Holds the chains it
/// knows (a pointer is never reused while held); forgets them all past
/// [`ChainJson::MAX`].
#[derive(Default)]
pub(crate) struct ChainJson(HashMap<usize, (Arc<Chain>, Box<RawValue>)>);

impl ChainJson {
    /// Chains remembered at most.
    const MAX: usize = 4096;

    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn of(&mut self, chain: &Arc<Chain>) -> &RawValue {
        let key = Arc::as_ptr(chain) as usize;
        if self.0.len() >= Self::MAX && !self.0.contains_key(&key) {
            self.0.clear();
        }
        &self
            .0
            .entry(key)
            .or_insert_with(|| {
                // Plain data: serializing cannot fail, and JSON it made is
                // valid raw JSON.
                let json = serde_json::to_string(&AuditChain::of(chain)).unwrap_or_default();
                (
                    chain.clone(),
                    RawValue::from_string(json).unwrap_or_default(),
                )
            })
            .1
    }
}

impl AuditEntry {
    /// Places `event` in the log as record `seq` after the record hashed
    /// `prev_hash`, hashes it (and signs the hash when given a key): the
    /// entry's hash and its stored line (its canonical JSON, byte for byte
    /// what serializing the [`AuditEntry`] gives), serializing the record
    /// once, copying nothing: the writer's path, once per decision.
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn seal_event(
        event: &AuditEvent,
        seq: u64,
        prev_hash: &str,
        chains: &mut ChainJson,
        key: Option<&SigningKey>,
    ) -> (String, Vec<u8>) {
        let d = &event.decision;
        let view = RecordView {
            seq,
            decided_at: event.decided_at,
            request: &d.request,
            decision: d.decision,
            denial: d.denial.as_ref(),
            chain: d.chain.as_ref().map(|c| chains.of(c)),
            revocation_position: event.revocation_position,
            restrictions: &d.restrictions,
            policy_hash: &event.policy_hash,
            prev_hash,
        };
        let mut line = Vec::with_capacity(1536);
        line.extend_from_slice(b"{\"record\":");
        // Plain data: serializing cannot fail.
        let _ = serde_json::to_writer(&mut line, &view);
        let json = &line[b"{\"record\":".len()..];
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update(json);
        let hash: [u8; 32] = h.finalize().into();
        let hash_hex = hex::encode(hash);
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(hash_hex.as_bytes());
        line.push(b'"');
        if let Some(k) = key {
            line.extend_from_slice(b",\"signature\":\"");
            line.extend_from_slice(hex::encode(k.sign(&hash).to_bytes()).as_bytes());
            line.push(b'"');
        }
        line.push(b'}');
        (hash_hex, line)
    }

    /// Whether the hash matches the record and, when the entry is signed,
    /// the signature the hash.
    pub fn seal_is_intact(&self, key: &VerifyingKey) -> Seal {
        let hash = self.record.hash();
        if hex::encode(hash) != self.hash {
            return Seal::HashMismatch;
        }
        let Some(signature) = &self.signature else {
            return Seal::Unsigned;
        };
        let valid = hex::decode(signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .is_some_and(|sig| key.verify_strict(&hash, &sig).is_ok());
        if valid {
            Seal::Intact
        } else {
            Seal::BadSignature
        }
    }
}

/// The state of one entry's hash and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// Both hold.
    Intact,
    /// The hash holds; the entry carries no signature of its own (a
    /// checkpoint at or after it must cover it).
    Unsigned,
    /// The record's content does not hash to the stored hash.
    HashMismatch,
    /// The hash matches, but the signature is not the key's over it.
    BadSignature,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::decision::DenialKind;
    use biscuit_auth::KeyPair;
    use mandate_issuer::{Issuer, MintRequest};
    use mandate_spec::Grant;
    use std::time::Duration;

    fn chain(principal: &str) -> Arc<Chain> {
        let token = Issuer::new(KeyPair::new())
            .mint(&MintRequest {
                principal: principal.into(),
                agent: "support".into(),
                agent_key: KeyPair::new().public(),
                grant: Grant::parse(&["read:/api/*"], &[] as &[&str]).unwrap(),
                ttl: Duration::from_secs(3600),
                purpose: Some("a \"quoted\" purpose \u{e9}".into()),
                max_depth: None,
            })
            .unwrap()
            .token;
        Arc::new(mandate_attenuate::read_chain(&token).unwrap())
    }

    /// The writer's borrowed serialization is byte for byte the canonical
    /// one (what verification re-hashes), with and without a chain or a
    /// denial, and with a chain's JSON reused from the cache.
    #[test]
    fn the_writers_line_is_the_canonical_entry() {
        let mut chains = ChainJson::default();
        let shared = chain("user:alice");
        let mut request = Request::new("read", "/api/x");
        request
            .params
            .insert("q".into(), mandate_spec::Value::Str("\u{1}".into()));
        let allow = Decision::allow(request.clone(), shared.clone());
        let deny = Decision::deny(
            request,
            None,
            Denial::new(DenialKind::NotAllowed, "no \"way\""),
        );
        for (seq, decision) in [(1, &allow), (2, &deny), (3, &allow)] {
            let event = AuditEvent {
                decided_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                    .unwrap(),
                decision: decision.clone(),
                revocation_position: Some(seq),
                policy_hash: "ph".into(),
            };
            let (hash, line) = AuditEntry::seal_event(&event, seq, "prev", &mut chains, None);
            let entry: AuditEntry = serde_json::from_slice(&line).unwrap();
            assert_eq!(serde_json::to_vec(&entry).unwrap(), line);
            assert_eq!(hex::encode(entry.record.hash()), hash);
            assert_eq!(entry.hash, hash);
            assert_eq!(entry.record.seq, seq);
            assert_eq!(entry.record.prev_hash, "prev");
            assert_eq!(
                entry.record.chain,
                decision.chain.as_deref().map(AuditChain::of)
            );
        }
        assert_eq!(chains.0.len(), 1, "one chain, serialized once");
    }
}
