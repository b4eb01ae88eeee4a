//! Signed feed entries (specification §9.3): every message on the stream is
//! an envelope carrying the entry's exact JSON bytes, the id of the
//! revocation key that signed them, and an Ed25519 signature over
//! `mandate-revocation-v1\n` followed by those bytes. A verifier applies an
//! entry only if the signature verifies under a revocation key it trusts;
//! anything else is rejected (skipped, counted, logged), never applied.
//!
//! ```json
//! {"entry":"{\"target\":{\"kind\":\"token\",\"value\":\"…\"},…}","key_id":0,"sig":"<128 hex digits>"}
//! ```
//!
//! The signature covers the entry bytes that are decoded, so no field
//! (target, kind, times, reason, by, note) can be changed without breaking
//! it. The entry is decoded from the signed bytes only after the signature
//! verifies; nothing is re-serialized in between.

use crate::revocation::Revocation;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use mandate_spec::RestrictionEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The domain prefix of every revocation-entry signature.
pub const DOMAIN: &[u8] = b"mandate-revocation-v1\n";

/// The domain prefix of every restriction or lift signature (SPEC §19.4).
pub const RESTRICTION_DOMAIN: &[u8] = b"mandate-restriction-v1\n";

/// The envelope of a restriction or a lift (SPEC §19.4).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestrictionEnvelope {
    /// The entry's JSON (a [`RestrictionEntry`]), exactly as signed.
    restriction: String,
    /// The id of the revocation key that signed it.
    key_id: u32,
    /// Ed25519 over [`RESTRICTION_DOMAIN`] ‖ `restriction`, hex.
    sig: String,
}

/// What a feed message carries once opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEntry {
    /// A revocation.
    Revocation(Revocation),
    /// A live restriction or its lift.
    Restriction(RestrictionEntry),
}

/// The envelope on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    /// The entry's JSON (a [`Revocation`]), exactly as signed.
    entry: String,
    /// The id of the revocation key that signed it.
    key_id: u32,
    /// Ed25519 over [`DOMAIN`] ‖ `entry`, hex.
    sig: String,
}

fn signed_bytes(entry: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + entry.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(entry);
    m
}

fn ed25519_bytes(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

/// The issuer's current revocation key: signs the entries it publishes.
#[derive(Clone)]
pub struct RevocationSigner {
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for RevocationSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSigner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RevocationSigner {
    /// The signer for key `id` (an Ed25519 key pair, as key files hold them).
    pub fn new(id: u32, key: &biscuit_auth::KeyPair) -> Result<RevocationSigner, String> {
        let bytes = key.private().to_bytes();
        let bytes = ed25519_bytes(bytes.as_slice())
            .ok_or_else(|| "a revocation key must be an Ed25519 key".to_string())?;
        Ok(RevocationSigner {
            id,
            key: SigningKey::from_bytes(&bytes),
        })
    }

    /// The key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public half, as `ed25519/<hex>`.
    pub fn public_key(&self) -> String {
        format!(
            "ed25519/{}",
            hex::encode(self.key.verifying_key().as_bytes())
        )
    }

    /// An Ed25519 signature (hex) over `domain` ‖ `bytes`, for another kind
    /// of message signed by the issuer's revocation key (e.g. the issuer
    /// services' mint records). `domain` must differ from [`DOMAIN`] (and
    /// end in a newline), so such a message is never a valid revocation
    /// entry; `None` if it does not.
    pub fn sign_other(&self, domain: &[u8], bytes: &[u8]) -> Option<String> {
        if domain == DOMAIN || domain == RESTRICTION_DOMAIN || !domain.ends_with(b"\n") {
            return None;
        }
        let mut m = Vec::with_capacity(domain.len() + bytes.len());
        m.extend_from_slice(domain);
        m.extend_from_slice(bytes);
        Some(hex::encode(self.key.sign(&m).to_bytes()))
    }

    /// A 32-byte secret derived from this revocation key for `label` (a
    /// purpose of its own, e.g. `approval-token-v1`): SHA-256 over
    /// `mandate-derived-secret-v1\n` ‖ label ‖ `\n` ‖ the private key. Issuer
    /// services that share the revocation key derive the same secret;
    /// nobody else can.
    pub fn derive_secret(&self, label: &str) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"mandate-derived-secret-v1\n");
        h.update(label.as_bytes());
        h.update(b"\n");
        h.update(self.key.to_bytes());
        h.finalize().into()
    }

    /// The message published for a restriction or a lift: the signed
    /// envelope's JSON (SPEC §19.4).
    pub fn seal_restriction(&self, entry: &RestrictionEntry) -> Result<Vec<u8>, serde_json::Error> {
        let bytes = serde_json::to_vec(entry)?;
        let mut m = Vec::with_capacity(RESTRICTION_DOMAIN.len() + bytes.len());
        m.extend_from_slice(RESTRICTION_DOMAIN);
        m.extend_from_slice(&bytes);
        let sig = self.key.sign(&m);
        let restriction = String::from_utf8(bytes).map_err(serde::ser::Error::custom)?;
        serde_json::to_vec(&RestrictionEnvelope {
            restriction,
            key_id: self.id,
            sig: hex::encode(sig.to_bytes()),
        })
    }

    /// The message published for `entry`: the signed envelope's JSON.
    pub fn seal(&self, entry: &Revocation) -> Result<Vec<u8>, serde_json::Error> {
        let bytes = serde_json::to_vec(entry)?;
        let sig = self.key.sign(&signed_bytes(&bytes));
        let entry = String::from_utf8(bytes).map_err(serde::ser::Error::custom)?;
        serde_json::to_vec(&Envelope {
            entry,
            key_id: self.id,
            sig: hex::encode(sig.to_bytes()),
        })
    }
}

/// The revocation public keys a verifier trusts, by id (several during a
/// rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationKeys(BTreeMap<u32, [u8; 32]>);

impl RevocationKeys {
    /// No key (a feed refuses to start with none).
    pub fn new() -> RevocationKeys {
        RevocationKeys::default()
    }

    /// Trusts `key` (`ed25519/<hex>`) under `id`. Refuses an id given twice
    /// with another key.
    pub fn insert(&mut self, id: u32, key: &str) -> Result<(), String> {
        let parsed = mandate_spec::parse_public_key(key).map_err(|e| e.to_string())?;
        let bytes = ed25519_bytes(&parsed.to_bytes())
            .filter(|b| VerifyingKey::from_bytes(b).is_ok())
            .ok_or_else(|| "a revocation key must be an Ed25519 public key".to_string())?;
        match self.0.insert(id, bytes) {
            Some(old) if old != bytes => Err(format!(
                "revocation key id {id} is given twice with different keys"
            )),
            _ => Ok(()),
        }
    }

    /// Parses `ID=ed25519/<hex>` (the `--revocation-key` flag) and trusts it.
    pub fn insert_spec(&mut self, spec: &str) -> Result<(), String> {
        let (id, key) = spec
            .split_once('=')
            .ok_or_else(|| "expected ID=ed25519/<hex>, e.g. 0=ed25519/ab12…".to_string())?;
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| format!("the key id {:?} is not a number", id.trim()))?;
        self.insert(id, key)
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The trusted ids.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.keys().copied()
    }

    /// Checks a signature made by [`RevocationSigner::sign_other`] under
    /// `domain` (never [`DOMAIN`]) with the trusted key `key_id`.
    pub fn verify_other(
        &self,
        key_id: u32,
        domain: &[u8],
        bytes: &[u8],
        sig_hex: &str,
    ) -> Result<(), Rejected> {
        if domain == DOMAIN || domain == RESTRICTION_DOMAIN {
            return Err(Rejected::new(
                RejectReason::Malformed,
                "the feed-entry domains are reserved for feed entries",
            ));
        }
        self.verify_signature(key_id, domain, bytes, sig_hex)
    }

    /// Opens any message from the stream: a revocation (as
    /// [`RevocationKeys::open`]) or a restriction or lift, signed under
    /// [`RESTRICTION_DOMAIN`] by a trusted key and valid (SPEC §19.4).
    pub fn open_entry(&self, payload: &[u8]) -> Result<FeedEntry, Rejected> {
        let Ok(envelope) = serde_json::from_slice::<RestrictionEnvelope>(payload) else {
            return self.open(payload).map(FeedEntry::Revocation);
        };
        self.verify_signature(
            envelope.key_id,
            RESTRICTION_DOMAIN,
            envelope.restriction.as_bytes(),
            &envelope.sig,
        )?;
        let entry: RestrictionEntry = serde_json::from_str(&envelope.restriction).map_err(|e| {
            Rejected::new(
                RejectReason::Malformed,
                format!("a signed message that is not a restriction or a lift: {e}"),
            )
        })?;
        entry.validate().map_err(|e| {
            Rejected::new(
                RejectReason::Malformed,
                format!("a signed restriction that is not valid: {e}"),
            )
        })?;
        Ok(FeedEntry::Restriction(entry))
    }

    fn verify_signature(
        &self,
        key_id: u32,
        domain: &[u8],
        bytes: &[u8],
        sig_hex: &str,
    ) -> Result<(), Rejected> {
        let Some(key) = self.0.get(&key_id) else {
            return Err(Rejected::new(
                RejectReason::UnknownKey,
                format!("signed by revocation key id {key_id}, which this verifier does not trust"),
            ));
        };
        let mut m = Vec::with_capacity(domain.len() + bytes.len());
        m.extend_from_slice(domain);
        m.extend_from_slice(bytes);
        let verified = VerifyingKey::from_bytes(key).ok().is_some_and(|key| {
            hex::decode(sig_hex)
                .ok()
                .and_then(|s| Signature::from_slice(&s).ok())
                .is_some_and(|sig| key.verify_strict(&m, &sig).is_ok())
        });
        if verified {
            Ok(())
        } else {
            Err(Rejected::new(
                RejectReason::BadSignature,
                format!("the signature does not verify under revocation key id {key_id}"),
            ))
        }
    }

    /// Opens a message from the stream: the entry, if the message is a
    /// signed envelope whose signature verifies under the trusted key it
    /// names; otherwise why it is rejected.
    pub fn open(&self, payload: &[u8]) -> Result<Revocation, Rejected> {
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(e) => e,
            // A bare entry, as published before entries were signed.
            Err(_) if serde_json::from_slice::<Revocation>(payload).is_ok() => {
                return Err(Rejected::new(
                    RejectReason::Unsigned,
                    "a revocation entry without a signature",
                ))
            }
            Err(e) => {
                return Err(Rejected::new(
                    RejectReason::Malformed,
                    format!("not a signed revocation entry: {e}"),
                ))
            }
        };
        self.verify_signature(
            envelope.key_id,
            DOMAIN,
            envelope.entry.as_bytes(),
            &envelope.sig,
        )?;
        serde_json::from_str(&envelope.entry).map_err(|e| {
            Rejected::new(
                RejectReason::Malformed,
                format!("a signed message that is not a revocation entry: {e}"),
            )
        })
    }
}

/// Why a message was not applied (the `reason` label of
/// `mandate_feed_entries_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not a signed envelope (garbage, or a signed message that is not an entry).
    Malformed,
    /// A bare entry without a signature.
    Unsigned,
    /// Signed by a key id this verifier does not trust (unknown or retired).
    UnknownKey,
    /// The signature does not verify (forged or altered, e.g. retargeted).
    BadSignature,
}

impl RejectReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Unsigned => "unsigned",
            RejectReason::UnknownKey => "unknown_key",
            RejectReason::BadSignature => "bad_signature",
        }
    }
}

/// A message rejected by [`RevocationKeys::open`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Rejected {
    /// The class.
    pub reason: RejectReason,
    /// What was wrong, for the log.
    pub detail: String,
}

impl Rejected {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Rejected {
        Rejected {
            reason,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::revocation::Target;
    use proptest::prelude::*;

    fn entry(token: &str) -> Revocation {
        Revocation {
            target: Target::Token(token.into()),
            revoked_at: time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            reason: "lost laptop".into(),
            by: "ops".into(),
            expires_at: None,
            note: Some("n".into()),
        }
    }

    fn keys_for(signers: &[&RevocationSigner]) -> RevocationKeys {
        let mut k = RevocationKeys::new();
        for s in signers {
            k.insert(s.id(), &s.public_key()).unwrap();
        }
        k
    }

    fn signer(id: u32) -> RevocationSigner {
        RevocationSigner::new(id, &biscuit_auth::KeyPair::new()).unwrap()
    }

    #[test]
    fn a_signed_entry_opens_under_its_key_only() {
        let (s0, s1) = (signer(0), signer(1));
        let msg = s0.seal(&entry("t1")).unwrap();
        assert_eq!(keys_for(&[&s0]).open(&msg).unwrap(), entry("t1"));
        let e = keys_for(&[&s1]).open(&msg).unwrap_err();
        assert_eq!(e.reason, RejectReason::UnknownKey, "{e}");
        // Same id, another key: the signature does not verify.
        let other = RevocationSigner::new(0, &biscuit_auth::KeyPair::new()).unwrap();
        let e = keys_for(&[&other]).open(&msg).unwrap_err();
        assert_eq!(e.reason, RejectReason::BadSignature, "{e}");
    }

    #[test]
    fn a_retargeted_entry_keeping_the_signature_is_rejected() {
        let s = signer(0);
        let msg = String::from_utf8(s.seal(&entry("t1")).unwrap()).unwrap();
        let forged = msg.replace("t1", "t2");
        assert_ne!(forged, msg);
        let e = keys_for(&[&s]).open(forged.as_bytes()).unwrap_err();
        assert_eq!(e.reason, RejectReason::BadSignature, "{e}");
    }

    #[test]
    fn garbage_and_bare_entries_are_rejected_by_class() {
        let k = keys_for(&[&signer(0)]);
        let bare = serde_json::to_vec(&entry("t")).unwrap();
        assert_eq!(k.open(&bare).unwrap_err().reason, RejectReason::Unsigned);
        for g in [
            &b"\xff\x00"[..],
            b"{}",
            b"null",
            b"{\"not\": \"a revocation\"}",
        ] {
            assert_eq!(k.open(g).unwrap_err().reason, RejectReason::Malformed);
        }
        // A validly signed message that is not an entry.
        let s = signer(0);
        let sig = s.key.sign(&signed_bytes(b"{}"));
        let msg = serde_json::to_vec(&Envelope {
            entry: "{}".into(),
            key_id: 0,
            sig: hex::encode(sig.to_bytes()),
        })
        .unwrap();
        assert_eq!(
            keys_for(&[&s]).open(&msg).unwrap_err().reason,
            RejectReason::Malformed
        );
    }

    #[test]
    fn trusted_key_flags_parse_and_refuse_conflicts() {
        let mut k = RevocationKeys::new();
        let s = signer(0);
        k.insert_spec(&format!("0={}", s.public_key())).unwrap();
        k.insert_spec(&format!("0={}", s.public_key())).unwrap();
        assert!(k
            .insert_spec(&format!("0={}", signer(0).public_key()))
            .unwrap_err()
            .contains("twice"));
        assert!(k
            .insert_spec("x=ed25519/00")
            .unwrap_err()
            .contains("not a number"));
        assert!(k.insert_spec("ed25519/00").unwrap_err().contains("ID="));
        assert!(k.insert_spec("1=ed25519-private/00").is_err());
    }

    fn restriction_entry() -> RestrictionEntry {
        RestrictionEntry::Restrict(mandate_spec::Restriction {
            id: "0b5f9a4e-8c1d-4f2a-9e3b-7a6c5d4e3f21".into(),
            target: mandate_spec::RestrictionTarget::Token("t1".into()),
            rules: vec![mandate_spec::RestrictionRule::parse_deny("send:/**").unwrap()],
            restricted_at: time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            by: "ops".into(),
            reason: "r".into(),
            expires_at: None,
            note: None,
        })
    }

    #[test]
    fn a_signed_restriction_opens_and_a_retargeted_one_does_not() {
        let s = signer(0);
        let keys = keys_for(&[&s]);
        let msg = s.seal_restriction(&restriction_entry()).unwrap();
        assert_eq!(
            keys.open_entry(&msg).unwrap(),
            FeedEntry::Restriction(restriction_entry())
        );
        let forged = String::from_utf8(msg.clone()).unwrap().replace("t1", "t2");
        let e = keys.open_entry(forged.as_bytes()).unwrap_err();
        assert_eq!(e.reason, RejectReason::BadSignature, "{e}");
        // Revocations still open through open_entry.
        let rev = s.seal(&entry("t1")).unwrap();
        assert_eq!(
            keys.open_entry(&rev).unwrap(),
            FeedEntry::Revocation(entry("t1"))
        );
        // A restriction's signature is not a revocation's, nor the reverse:
        // the envelopes' bytes swapped between domains never verify.
        let v: serde_json::Value = serde_json::from_slice(&msg).unwrap();
        let as_revocation = serde_json::json!({
            "entry": v["restriction"], "key_id": 0, "sig": v["sig"]
        });
        let e = keys
            .open_entry(&serde_json::to_vec(&as_revocation).unwrap())
            .unwrap_err();
        assert_eq!(e.reason, RejectReason::BadSignature, "{e}");
        // Another signed message kind cannot take either domain.
        assert!(s.sign_other(RESTRICTION_DOMAIN, b"x").is_none());
    }

    #[test]
    fn a_signed_but_invalid_restriction_is_rejected_as_malformed() {
        let s = signer(0);
        let mut bad = restriction_entry();
        if let RestrictionEntry::Restrict(r) = &mut bad {
            r.rules.clear();
        }
        let msg = s.seal_restriction(&bad).unwrap();
        let e = keys_for(&[&s]).open_entry(&msg).unwrap_err();
        assert_eq!(e.reason, RejectReason::Malformed, "{e}");
    }

    proptest! {
        /// Any change to any byte of the signed entry breaks the signature:
        /// nothing in an entry can be altered and still apply.
        #[test]
        fn any_altered_entry_byte_is_rejected(pos in 0usize..4096, byte in any::<u8>()) {
            let s = signer(7);
            let keys = keys_for(&[&s]);
            let bytes = serde_json::to_vec(&entry("family-1")).unwrap();
            let sig = s.key.sign(&signed_bytes(&bytes));
            let mut altered = bytes.clone();
            let i = pos % altered.len();
            prop_assume!(altered[i] != byte);
            altered[i] = byte;
            prop_assume!(std::str::from_utf8(&altered).is_ok());
            let msg = serde_json::to_vec(&Envelope {
                entry: String::from_utf8(altered).unwrap(),
                key_id: 7,
                sig: hex::encode(sig.to_bytes()),
            }).unwrap();
            prop_assert!(keys.open(&msg).is_err());
        }
    }
}
