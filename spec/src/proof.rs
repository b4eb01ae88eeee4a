//! Holder binding (specification §15): a fresh proof, signed by the final
//! holder's key, over one whole request — method, audience (the origin the
//! request is sent to), request-target (path and query, exactly as sent),
//! body and token.

use crate::SpecError;
use base64::Engine;
use biscuit_auth::KeyPair;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The HTTP header that carries a proof.
pub const PROOF_HEADER: &str = "mandate-proof";

/// The first line of the signed message: the version of the proof format.
/// Version 1 (method and path only) is refused everywhere.
pub const PROOF_VERSION: &str = "mandate-proof-v2";

/// Longest request-target a proof covers, in bytes (the `http` crate's own
/// limit on a path and query).
pub const MAX_TARGET_LEN: usize = 65_534;

/// A proof of possession: the final holder signs the request's method,
/// audience, target, a digest of its body, a timestamp and a nonce, and the
/// token it uses, so neither the token alone nor a captured proof can be
/// reused for another request, elsewhere or later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderProof {
    /// Unix seconds when the proof was made.
    pub timestamp: i64,
    /// A fresh random value (8–64 characters of `[A-Za-z0-9_-]`).
    pub nonce: String,
    /// Ed25519 signature of [`HolderProof::message`], 64 bytes.
    pub signature: Vec<u8>,
}

/// Where a request is sent: an origin, `scheme://host[:port]`, in canonical
/// form (scheme and host in lower case, the default port of the scheme
/// omitted: `https://API.example.com:443/` is `https://api.example.com`).
/// It plays the part of the scheme and authority of DPoP's `htu` (RFC 9449
/// §4.2): a proof made for one audience is refused by a verifier serving
/// another. A verifier takes its own audience from its configuration, never
/// from the request's `Host` header (which the sender chooses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Audience(String);

impl Audience {
    /// Parses `http[s]://host[:port]`, with at most a trailing `/`: no user
    /// information, other path, query or fragment. The host is a DNS name
    /// (letters, digits, `-`, `.`), an IPv4 address or a bracketed IPv6
    /// address.
    pub fn parse(text: &str) -> Result<Audience, SpecError> {
        let bad = |why: &str| {
            Err(SpecError::Request(format!(
                "audience {text:?}: {why} (expected http[s]://HOST[:PORT])"
            )))
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad("no scheme");
        };
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return bad("the scheme is not http or https"),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return bad("an audience has no path, query or fragment");
        }
        if authority.contains('@') {
            return bad("an audience has no user information");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((inside, after)) = v6.split_once(']') else {
                return bad("unclosed [ in the host");
            };
            if inside.is_empty()
                || !inside
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return bad("not an IPv6 address between [ ]");
            }
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return bad("unexpected text after ]"),
                },
            };
            (format!("[{}]", inside.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if host.is_empty()
                || host.len() > 253
                || host.starts_with(['.', '-'])
                || host.ends_with('.')
                || host.contains("..")
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return bad("the host is not a DNS name or an IP address");
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => default_port,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(n) if n != 0 => n,
                    _ => return bad("the port is not 1 to 65535"),
                }
            }
            Some(_) => return bad("the port is not 1 to 65535"),
        };
        Ok(Audience(if port == default_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        }))
    }

    /// Splits a URL as a client sends it into its audience (origin) and
    /// request-target (path and query, exactly as written; `/` when the URL
    /// has no path; a fragment is dropped, as clients never send one).
    pub fn split_url(url: &str) -> Result<(Audience, String), SpecError> {
        let url = url.split_once('#').map_or(url, |(u, _)| u);
        let start = url.find("://").map_or(0, |i| i + 3);
        let end = url[start..]
            .find(['/', '?'])
            .map_or(url.len(), |i| start + i);
        let audience = Audience::parse(&url[..end])?;
        let target = match &url[end..] {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        check_line("target", &target)?;
        Ok((audience, target))
    }

    /// The canonical text, e.g. `https://api.example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Audience {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Audience, SpecError> {
        Audience::parse(s)
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a proof is about: the request as sent.
#[derive(Debug, Clone, Copy)]
pub struct ProofSubject<'a> {
    /// The HTTP method (or, outside HTTP, the action), e.g. `POST`.
    pub method: &'a str,
    /// The origin the request is sent to (and the verifier serves).
    pub audience: &'a Audience,
    /// The request-target exactly as sent: path and query, byte for byte
    /// (`/transfer?amount=5`; outside HTTP, the resource).
    pub target: &'a str,
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

/// A field of the signed message: non-empty, bounded, one line (no control
/// character), so no two subjects sign the same bytes.
fn check_line(what: &str, text: &str) -> Result<(), SpecError> {
    if text.is_empty() {
        return Err(SpecError::Request(format!(
            "proof of possession: the {what} is empty"
        )));
    }
    if text.len() > MAX_TARGET_LEN {
        return Err(SpecError::Request(format!(
            "proof of possession: the {what} is longer than {MAX_TARGET_LEN} bytes"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(SpecError::Request(format!(
            "proof of possession: the {what} contains a control character"
        )));
    }
    Ok(())
}

impl HolderProof {
    /// The signed bytes: [`PROOF_VERSION`] (`mandate-proof-v2`), then the
    /// method, audience, target, body digest (hex), timestamp, nonce and
    /// SHA-256 of the token (hex), each on its own line. Refused: an empty
    /// method or target, or one with a control character (which could shift
    /// the lines).
    pub fn message(
        subject: &ProofSubject<'_>,
        timestamp: i64,
        nonce: &str,
    ) -> Result<Vec<u8>, SpecError> {
        check_line("method", subject.method)?;
        check_line("target", subject.target)?;
        check_line("nonce", nonce)?;
        Ok(format!(
            "{PROOF_VERSION}\n{}\n{}\n{}\n{}\n{timestamp}\n{nonce}\n{}",
            subject.method,
            subject.audience,
            subject.target,
            hex::encode(subject.body_digest),
            hex::encode(Sha256::digest(subject.token)),
        )
        .into_bytes())
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
            .sign(&HolderProof::message(subject, timestamp, &nonce)?)
            .map_err(|e| SpecError::Key(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(HolderProof {
            timestamp,
            nonce,
            signature,
        })
    }

    /// The header value: `v=2;t=<unix seconds>;n=<nonce>;s=<base64url
    /// signature>`.
    pub fn to_header(&self) -> String {
        format!(
            "v=2;t={};n={};s={}",
            self.timestamp,
            self.nonce,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }

    /// Parses a header value. A proof without `v=2` is a version 1 proof
    /// (method and path only) and is refused, saying so.
    pub fn parse(text: &str) -> Result<HolderProof, SpecError> {
        let bad = |why: &str| SpecError::Request(format!("proof of possession: {why}"));
        let expected = "expected v=2;t=<seconds>;n=<nonce>;s=<signature>";
        let (mut v, mut t, mut n, mut s) = (None, None, None, None);
        for part in text.trim().split(';') {
            match part.trim().split_once('=') {
                Some(("v", x)) => v = Some(x.to_string()),
                Some(("t", x)) => t = Some(x.parse::<i64>().map_err(|_| bad("t is not a number"))?),
                Some(("n", x)) => n = Some(x.to_string()),
                Some(("s", x)) => {
                    s = Some(
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(x.trim_end_matches('='))
                            .map_err(|_| bad("s is not base64url"))?,
                    )
                }
                _ => return Err(bad(expected)),
            }
        }
        match v.as_deref() {
            Some("2") => {}
            None => {
                return Err(bad(
                    "a version 1 proof (no v=2), which covers neither the query string nor \
                     the audience, is refused: sign mandate-proof-v2 and send v=2",
                ))
            }
            Some(other) => return Err(bad(&format!("unknown version v={other} (expected 2)"))),
        }
        let (Some(timestamp), Some(nonce), Some(signature)) = (t, n, s) else {
            return Err(bad(expected));
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
    use proptest::prelude::*;

    fn aud(s: &str) -> Audience {
        Audience::parse(s).unwrap()
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let key = KeyPair::new();
        let audience = aud("https://api.example.com");
        let subject = ProofSubject {
            method: "POST",
            audience: &audience,
            target: "/api/payments?x=1",
            body_digest: ProofSubject::digest(b"{}"),
            token: b"token",
        };
        let p = HolderProof::sign(&key, &subject, SystemTime::now()).unwrap();
        assert!(p.to_header().starts_with("v=2;"));
        assert_eq!(HolderProof::parse(&p.to_header()).unwrap(), p);
        for bad in [
            "",
            "v=2;t=1;n=abcdefgh",
            "v=2;t=x;n=abcdefgh;s=AAAA",
            "v=2;t=1;n=short;s=AAAA",
            "v=2;t=1;n=abcdefgh;s=AAAA",
            "v=3;t=1;n=abcdefgh;s=AAAA",
        ] {
            assert!(HolderProof::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_version_1_proof_is_refused_with_its_reason() {
        let header = HolderProof::sign(
            &KeyPair::new(),
            &ProofSubject {
                method: "GET",
                audience: &aud("http://a"),
                target: "/x",
                body_digest: ProofSubject::digest(b""),
                token: b"t",
            },
            SystemTime::now(),
        )
        .unwrap()
        .to_header();
        let v1 = header.trim_start_matches("v=2;");
        let e = HolderProof::parse(v1).unwrap_err().to_string();
        assert!(e.contains("version 1") && e.contains("refused"), "{e}");
    }

    #[test]
    fn the_message_covers_method_audience_target_body_and_token() {
        let (a, b) = (aud("https://a.example"), aud("https://b.example"));
        let base = ProofSubject {
            method: "POST",
            audience: &a,
            target: "/transfer?amount=5",
            body_digest: ProofSubject::digest(b""),
            token: b"token",
        };
        let m = |s: &ProofSubject<'_>| HolderProof::message(s, 1, "abcdefgh").unwrap();
        let first = m(&base);
        assert!(first.starts_with(b"mandate-proof-v2\nPOST\nhttps://a.example\n"));
        for other in [
            ProofSubject {
                method: "PUT",
                ..base
            },
            ProofSubject {
                audience: &b,
                ..base
            },
            ProofSubject {
                target: "/transfer?amount=500",
                ..base
            },
            ProofSubject {
                target: "/transfer",
                ..base
            },
            ProofSubject {
                body_digest: ProofSubject::digest(b"x"),
                ..base
            },
            ProofSubject {
                token: b"other",
                ..base
            },
        ] {
            assert_ne!(m(&other), first, "{other:?}");
        }
        // A line break cannot move text from one field to another.
        for target in ["/x\nPOST", "", "/x\r"] {
            assert!(HolderProof::message(&ProofSubject { target, ..base }, 1, "abcdefgh").is_err());
        }
        assert!(HolderProof::message(
            &ProofSubject {
                method: "GET\n/x",
                ..base
            },
            1,
            "abcdefgh"
        )
        .is_err());
    }

    #[test]
    fn audiences_are_canonical_origins() {
        for (text, canonical) in [
            ("https://api.example.com", "https://api.example.com"),
            ("https://api.example.com/", "https://api.example.com"),
            ("HTTPS://API.Example.COM:443", "https://api.example.com"),
            ("http://api.example.com:80", "http://api.example.com"),
            ("http://api.example.com:443", "http://api.example.com:443"),
            ("https://api.example.com:80", "https://api.example.com:80"),
            ("http://127.0.0.1:8480", "http://127.0.0.1:8480"),
            ("http://[::1]:8480", "http://[::1]:8480"),
            ("https://[FE80::1]:443/", "https://[fe80::1]"),
        ] {
            assert_eq!(aud(text).as_str(), canonical, "{text}");
        }
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://",
            "https://a/b",
            "https://a?x",
            "https://a#x",
            "https://u@a",
            "https://a:0",
            "https://a:65536",
            "https://a:+1",
            "https://a:",
            "https://a..b",
            "https://.a",
            "https://a b",
            "https://[::1",
            "https://[zz]",
            "https://a%2eb",
        ] {
            assert!(Audience::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_split_into_audience_and_target_as_written() {
        for (url, a, t) in [
            (
                "https://api.example.com/transfer?amount=5",
                "https://api.example.com",
                "/transfer?amount=5",
            ),
            (
                "https://api.example.com:443/t?b=2&a=1#frag",
                "https://api.example.com",
                "/t?b=2&a=1",
            ),
            ("http://gw:8480", "http://gw:8480", "/"),
            ("http://gw:8480?x=1", "http://gw:8480", "/?x=1"),
            ("http://gw/a/%2F/../b", "http://gw", "/a/%2F/../b"),
        ] {
            let (audience, target) = Audience::split_url(url).unwrap();
            assert_eq!((audience.as_str(), target.as_str()), (a, t), "{url}");
        }
        assert!(Audience::split_url("/just/a/path").is_err());
        assert!(Audience::split_url("https://a/x\ny").is_err());
    }

    proptest! {
        /// An explicit default port is the same audience as none; any other
        /// port is another audience.
        #[test]
        fn default_ports_equal_implicit_ones(
            host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,5}){0,3}",
            port in 1u16..,
            https in any::<bool>(),
        ) {
            let scheme = if https { "https" } else { "http" };
            let default = if https { 443 } else { 80 };
            let bare = aud(&format!("{scheme}://{host}"));
            let with = aud(&format!("{scheme}://{}:{port}", host.to_uppercase()));
            prop_assert_eq!(port == default, bare == with);
            prop_assert_eq!(aud(with.as_str()), with.clone());
        }
    }
}
