//! Holder binding (specification §15): a fresh proof, signed by the final
//! holder's key, over one request.

use crate::SpecError;
use base64::Engine;
use biscuit_auth::KeyPair;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The HTTP header that carries a proof.
pub const PROOF_HEADER: &str = "mandate-proof";

/// A proof of possession: the final holder signs the request's method,
/// resource, a digest of its body, a timestamp and a nonce, and the token it
/// uses, so neither the token alone nor a captured proof can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderProof {
    /// Unix seconds when the proof was made.
    pub timestamp: i64,
    /// A fresh random value (8–64 characters of `[A-Za-z0-9_-]`).
    pub nonce: String,
    /// Ed25519 signature of [`HolderProof::message`], 64 bytes.
    pub signature: Vec<u8>,
}

/// What a proof is about: the request as sent.
#[derive(Debug, Clone, Copy)]
pub struct ProofSubject<'a> {
    /// The HTTP method (or, outside HTTP, the action), e.g. `POST`.
    pub method: &'a str,
    /// The resource, exactly as the verifier decides it (the path).
    pub resource: &'a str,
    /// SHA-256 of the request body (of nothing, for a request without one).
    pub body_digest: [u8; 32],
    /// The token's bytes.
    pub token: &'a [u8],
}

impl ProofSubject<'_> {
    /// SHA-256 of a body.
    pub fn digest(body: &[u8]) -> [u8; 32] {
        Sha256::digest(body).into()
    }
}

impl HolderProof {
    /// The signed bytes: `mandate-proof-v1`, then the method, resource, body
    /// digest (hex), timestamp, nonce and SHA-256 of the token (hex), each on
    /// its own line.
    pub fn message(subject: &ProofSubject<'_>, timestamp: i64, nonce: &str) -> Vec<u8> {
        format!(
            "mandate-proof-v1\n{}\n{}\n{}\n{timestamp}\n{nonce}\n{}",
            subject.method,
            subject.resource,
            hex::encode(subject.body_digest),
            hex::encode(Sha256::digest(subject.token)),
        )
        .into_bytes()
    }

    /// A fresh proof by `holder` for `subject`, made at `now`.
    pub fn sign(
        holder: &KeyPair,
        subject: &ProofSubject<'_>,
        now: SystemTime,
    ) -> Result<HolderProof, SpecError> {
        let timestamp = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let signature = holder
            .sign(&HolderProof::message(subject, timestamp, &nonce))
            .map_err(|e| SpecError::Key(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(HolderProof {
            timestamp,
            nonce,
            signature,
        })
    }

    /// The header value: `t=<unix seconds>;n=<nonce>;s=<base64url signature>`.
    pub fn to_header(&self) -> String {
        format!(
            "t={};n={};s={}",
            self.timestamp,
            self.nonce,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }

    /// Parses a header value.
    pub fn parse(text: &str) -> Result<HolderProof, SpecError> {
        let bad = |why: &str| SpecError::Request(format!("proof of possession: {why}"));
        let (mut t, mut n, mut s) = (None, None, None);
        for part in text.trim().split(';') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| bad("t is not a number"))?),
                Some(("n", v)) => n = Some(v.to_string()),
                Some(("s", v)) => {
                    s = Some(
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(v.trim_end_matches('='))
                            .map_err(|_| bad("s is not base64url"))?,
                    )
                }
                _ => return Err(bad("expected t=<seconds>;n=<nonce>;s=<signature>")),
            }
        }
        let (Some(timestamp), Some(nonce), Some(signature)) = (t, n, s) else {
            return Err(bad("expected t=<seconds>;n=<nonce>;s=<signature>"));
        };
        if !(8..=64).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad("the nonce is 8 to 64 characters of [A-Za-z0-9_-]"));
        }
        if signature.len() != 64 {
            return Err(bad("the signature is 64 bytes"));
        }
        Ok(HolderProof {
            timestamp,
            nonce,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let key = KeyPair::new();
        let subject = ProofSubject {
            method: "POST",
            resource: "/api/payments",
            body_digest: ProofSubject::digest(b"{}"),
            token: b"token",
        };
        let p = HolderProof::sign(&key, &subject, SystemTime::now()).unwrap();
        assert_eq!(HolderProof::parse(&p.to_header()).unwrap(), p);
        for bad in [
            "",
            "t=1;n=abcdefgh",
            "t=x;n=abcdefgh;s=AAAA",
            "t=1;n=short;s=AAAA",
            "t=1;n=abcdefgh;s=AAAA",
        ] {
            assert!(HolderProof::parse(bad).is_err(), "{bad}");
        }
    }
}
