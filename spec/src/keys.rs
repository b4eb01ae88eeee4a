//! Reading and writing keys: public keys as `ed25519/<hex>`, private keys as
//! `ed25519-private/<hex>` files.

use crate::SpecError;
use biscuit_auth::{builder::Algorithm, KeyPair, PrivateKey, PublicKey};

/// Parses a public key written `ed25519/<64 hex digits>` (Biscuit's textual
/// form). Only Ed25519 keys are accepted for agents and roots.
pub fn parse_public_key(text: &str) -> Result<PublicKey, SpecError> {
    let text = text.trim();
    let hex_part = text.strip_prefix("ed25519/").ok_or_else(|| {
        SpecError::Key(format!(
            "expected `ed25519/<64 hex digits>`, got {:?}",
            truncate(text)
        ))
    })?;
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SpecError::Key(format!(
            "expected 64 hex digits after `ed25519/`, got {} characters",
            hex_part.len()
        )));
    }
    let key = PublicKey::from_bytes_hex(hex_part, Algorithm::Ed25519)
        .map_err(|e| SpecError::Key(format!("not a valid Ed25519 public key: {e}")))?;
    canonical_and_strong(&key.to_bytes())?;
    Ok(key)
}

/// Refuses an Ed25519 key given in a non-canonical encoding (a `y` not
/// reduced mod p, or the sign bit on `x = 0`: RFC 8032 §5.1.3 decoders may
/// accept it) or of small order (anyone can make signatures that verify
/// under such a key). Two encodings of one key would let a chain name an
/// agent in bytes a revocation of its key does not match (§9.1).
fn canonical_and_strong(bytes: &[u8]) -> Result<(), SpecError> {
    let bytes: &[u8; 32] = bytes
        .try_into()
        .map_err(|_| SpecError::Key("an Ed25519 public key is 32 bytes".into()))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map_err(|e| SpecError::Key(format!("not a valid Ed25519 public key: {e}")))?;
    if key.to_edwards().compress().to_bytes() != *bytes {
        return Err(SpecError::Key(
            "not a valid Ed25519 public key: not in canonical encoding (RFC 8032 §5.1.2)".into(),
        ));
    }
    if key.is_weak() {
        return Err(SpecError::Key(
            "not a valid Ed25519 public key: a point of small order (a weak key)".into(),
        ));
    }
    Ok(())
}

/// Builds an Ed25519 public key from its 32 raw bytes (as stored in tokens).
pub fn public_key_from_bytes(bytes: &[u8]) -> Result<PublicKey, SpecError> {
    if bytes.len() != 32 {
        return Err(SpecError::Key(format!(
            "an Ed25519 public key is 32 bytes, got {}",
            bytes.len()
        )));
    }
    let key = PublicKey::from_bytes(bytes, Algorithm::Ed25519)
        .map_err(|e| SpecError::Key(format!("not a valid Ed25519 public key: {e}")))?;
    canonical_and_strong(&key.to_bytes())?;
    Ok(key)
}

/// Formats a public key as `ed25519/<hex>`.
pub fn format_public_key(key: &PublicKey) -> String {
    key.to_string()
}

/// Parses the content of a private key file: `ed25519-private/<64 hex digits>`,
/// surrounding whitespace ignored.
pub fn parse_private_key(text: &str) -> Result<KeyPair, SpecError> {
    let text = text.trim();
    let hex_part = text.strip_prefix("ed25519-private/").ok_or_else(|| {
        SpecError::Key("a private key file holds `ed25519-private/<64 hex digits>`".to_string())
    })?;
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SpecError::Key(
            "a private key file holds `ed25519-private/<64 hex digits>`".to_string(),
        ));
    }
    let private = PrivateKey::from_bytes_hex(hex_part, Algorithm::Ed25519)
        .map_err(|e| SpecError::Key(format!("not a valid Ed25519 private key: {e}")))?;
    Ok(KeyPair::from(&private))
}

/// Formats a key pair's private half for a key file (`ed25519-private/<hex>`).
pub fn format_private_key(key: &KeyPair) -> String {
    key.private().to_prefixed_string()
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn non_canonical_and_weak_keys_are_refused() {
        // y = 2^255 - 1 is not reduced mod p: a second encoding of a point.
        let err = public_key_from_bytes(&[0xff; 32]).unwrap_err().to_string();
        assert!(err.contains("canonical"), "{err}");
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let err = public_key_from_bytes(&identity).unwrap_err().to_string();
        assert!(err.contains("small order"), "{err}");
        let err = parse_public_key(&format!("ed25519/{}", hex::encode(identity)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("small order"), "{err}");
        let kp = KeyPair::new();
        assert!(public_key_from_bytes(&kp.public().to_bytes()).is_ok());
    }

    #[test]
    fn public_key_round_trips() {
        let kp = KeyPair::new();
        let text = format_public_key(&kp.public());
        assert!(text.starts_with("ed25519/"));
        assert_eq!(parse_public_key(&text).unwrap(), kp.public());
    }

    #[test]
    fn private_key_round_trips() {
        let kp = KeyPair::new();
        let text = format_private_key(&kp);
        assert!(text.starts_with("ed25519-private/"));
        assert_eq!(parse_private_key(&text).unwrap().public(), kp.public());
    }

    #[test]
    fn rejects_other_forms() {
        assert!(parse_public_key("secp256r1/00").is_err());
        assert!(parse_public_key("ed25519/zz").is_err());
        assert!(parse_public_key("").is_err());
        assert!(parse_private_key("ed25519/00").is_err());
    }
}
