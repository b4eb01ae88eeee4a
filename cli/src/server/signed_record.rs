//! A record the issuer services share through NATS, signed with the
//! issuer's revocation key under a domain of its own (mint records,
//! `mandate-mint-v1\n`; approval records, `mandate-approval-v1\n`): the
//! message is `{"record": "<JSON>", "key_id": N, "sig": "<hex>"}`, the
//! signature Ed25519 over the domain followed by the record's exact bytes.
//! A record of one kind never opens as another, nor as a revocation entry.

use mandate_verifier::feed::{RevocationKeys, RevocationSigner};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The message on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    /// The record's JSON, exactly as signed.
    record: String,
    /// The revocation key that signed it.
    key_id: u32,
    /// Ed25519 over the domain ‖ `record`, hex.
    sig: String,
}

/// The message for `record` (its JSON), signed by `signer` under `domain`;
/// an error in words.
pub(crate) fn seal<T: Serialize>(
    signer: &RevocationSigner,
    domain: &[u8],
    record: &T,
) -> Result<Vec<u8>, String> {
    let record = serde_json::to_string(record).map_err(|e| e.to_string())?;
    let sig = signer
        .sign_other(domain, record.as_bytes())
        .ok_or("cannot sign under this domain")?;
    serde_json::to_vec(&Envelope {
        record,
        key_id: signer.id(),
        sig,
    })
    .map_err(|e| e.to_string())
}

/// The record (`what`: its kind, in words) a message carries, if it is
/// signed under `domain` by a key of `keys`; else (reason label, detail).
pub(crate) fn open<T: DeserializeOwned>(
    keys: &RevocationKeys,
    domain: &[u8],
    payload: &[u8],
    what: &str,
) -> Result<T, (&'static str, String)> {
    let env: Envelope = serde_json::from_slice(payload)
        .map_err(|e| ("malformed", format!("not a signed {what}: {e}")))?;
    keys.verify_other(env.key_id, domain, env.record.as_bytes(), &env.sig)
        .map_err(|r| (r.reason.as_str(), r.detail))?;
    serde_json::from_str(&env.record).map_err(|e| {
        (
            "malformed",
            format!("a signed message that is not a {what}: {e}"),
        )
    })
}

/// A message signed over `record` as given (tests: a record's exact bytes).
#[cfg(test)]
pub(crate) fn seal_text(signer: &RevocationSigner, domain: &[u8], record: &str) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        record: record.into(),
        key_id: signer.id(),
        sig: signer
            .sign_other(domain, record.as_bytes())
            .unwrap_or_default(),
    })
    .unwrap_or_default()
}
