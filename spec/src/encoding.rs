//! Tokens as text: Biscuit's URL-safe base64.

use crate::SpecError;
use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::{alphabet, Engine};

const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Largest token accepted, in bytes once decoded (a 64-hop chain is ~30 KiB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Decodes a token written as URL-safe base64 (padding optional, surrounding
/// whitespace ignored) into its bytes.
pub fn token_from_text(text: &str) -> Result<Vec<u8>, SpecError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SpecError::Biscuit("no token given (empty input)".into()));
    }
    if text.len() > MAX_TOKEN_BYTES * 4 / 3 + 4 {
        return Err(SpecError::Biscuit(format!(
            "token larger than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    URL_SAFE_ANY_PADDING
        .decode(text)
        .map_err(|e| SpecError::Biscuit(format!("token is not URL-safe base64: {e}")))
}

/// The token of an `Authorization` header value `Bearer <token>` (RFC 6750
/// §2.1: the scheme in any letter case, then spaces, then the token), with
/// surrounding whitespace removed; `None` for another scheme or no token.
/// Every Mandate server reads the header with this one function.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Encodes token bytes as URL-safe base64 with padding (Biscuit's form).
pub fn token_to_text(bytes: &[u8]) -> String {
    URL_SAFE_ANY_PADDING.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_token_reads_rfc_6750_credentials_only() {
        assert_eq!(bearer_token("Bearer abc-_="), Some("abc-_="));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        for not_bearer in [
            "Basic abc",
            "Bearer",
            "Bearer   ",
            "Bearerabc",
            "",
            "Token abc",
        ] {
            assert_eq!(bearer_token(not_bearer), None, "{not_bearer:?}");
        }
    }
}
