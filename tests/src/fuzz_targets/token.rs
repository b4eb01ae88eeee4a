//! Tokens: raw bytes (or base64 text) through decoding, the chain and the
//! verifier; and tokens whose blocks come from fuzz input as Datalog and are
//! then signed with the right keys, so the fuzzer reaches everything after
//! the signature checks (chain integrity, Datalog, approvals, the cache).

use super::{
    assert_same_decision, check_decision, fixed_requests, parse_request_line, ring_key,
    ring_verifier, text, RING,
};
use biscuit_auth::builder::{Algorithm, BlockBuilder};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::{Biscuit, BiscuitBuilder, KeyPair, PrivateKey};
use mandate_spec::{decode_blocks, decode_verified_blocks, effective_capabilities, Chain, Request};
use mandate_verifier::{CacheOptions, Verifier};
use std::sync::OnceLock;
use std::time::Duration;

/// Most blocks a `token_signed` input may describe (each costs a signature).
const MAX_BLOCKS: usize = 16;

/// Token bytes → `decode_blocks` → `Chain::from_blocks` (with and without a
/// root key id) → everything `inspect` prints → `Verifier::authorize` for
/// the [`fixed_requests`], without and with the verification cache (a
/// second use of the same bytes is a cache hit). Text input is also read as
/// a base64 token (`token_from_text`, `authorize_base64`).
pub fn token_bytes(data: &[u8]) {
    decide_all(data, &[]);
    if let Some(s) = text(data) {
        if let Ok(bytes) = mandate_spec::token_from_text(s) {
            decide_all(&bytes, &[]);
        }
        let request = &fixed_requests()[0];
        let d = plain().authorize_base64(s, request);
        check_decision(
            &mandate_spec::token_from_text(s).unwrap_or_default(),
            request,
            &d,
        );
    }
}

/// Lines `root: DATALOG`, `hop N: DATALOG` (a third-party block signed by
/// [`ring_key`]`(N)`), `block: DATALOG` (a first-party block) and
/// `request: ACTION RESOURCE [NAME=VALUE]…` become a token signed with the
/// fuzz key ring (see [`build_signed_token`]), decided like
/// [`token_bytes`] for the fixed requests and the input's own.
pub fn token_signed(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let (blocks, requests) = parse_signed(s);
    let Some(token) = build_signed_token(&blocks) else {
        return;
    };
    // The verifier's decoder (keys taken from the verified token) and
    // inspect's (keys decoded again) read the same blocks.
    if let Ok(biscuit) = Biscuit::from(&token, ring_key(0).public()) {
        let fast = decode_verified_blocks(&token, &biscuit).map(|b| format!("{b:?}"));
        let slow = decode_blocks(&token).map(|b| format!("{b:?}"));
        assert_eq!(
            fast.as_ref().ok(),
            slow.as_ref().ok(),
            "decode_verified_blocks and decode_blocks disagree"
        );
    }
    decide_all(&token, &requests);
}

/// A block of a `token_signed` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBlock {
    /// The authority block, signed by the root key.
    Root(String),
    /// A third-party block signed by ring key `n`.
    Hop(u8, String),
    /// A first-party block.
    First(String),
}

/// The blocks and requests of a `token_signed` input. The first block is
/// the authority block whatever its label; lines of other shapes are
/// ignored.
pub fn parse_signed(text: &str) -> (Vec<SignedBlock>, Vec<Request>) {
    let mut blocks = Vec::new();
    let mut requests = Vec::new();
    for line in text.lines() {
        let Some((label, rest)) = line.split_once(':') else {
            continue;
        };
        let block = match label.trim().split_once(' ') {
            None if label.trim() == "root" => SignedBlock::Root(rest.to_string()),
            None if label.trim() == "block" => SignedBlock::First(rest.to_string()),
            None if label.trim() == "request" => {
                requests.extend(parse_request_line(rest.trim()).into_iter().take(4));
                continue;
            }
            Some(("hop", n)) => match n.trim().parse::<u8>() {
                Ok(n) => SignedBlock::Hop(n % RING, rest.to_string()),
                Err(_) => continue,
            },
            _ => continue,
        };
        if blocks.len() < MAX_BLOCKS {
            blocks.push(block);
        }
    }
    requests.truncate(4);
    (blocks, requests)
}

/// Builds and signs a token from `blocks` with the fuzz key ring: the first
/// block (whatever its kind) is the authority block signed by root key 0;
/// every later block is appended as written. Each block's next key is fixed
/// too, so the same blocks always give the same bytes. `None` when a block's
/// Datalog does not parse or Biscuit refuses it.
pub fn build_signed_token(blocks: &[SignedBlock]) -> Option<Vec<u8>> {
    let source = |b: &SignedBlock| match b {
        SignedBlock::Root(s) | SignedBlock::Hop(_, s) | SignedBlock::First(s) => s.clone(),
    };
    if !blocks.iter().all(|b| keys_well_formed(&source(b))) {
        return None;
    }
    let (first, rest) = blocks.split_first()?;
    let mut token = BiscuitBuilder::new()
        .code(source(first))
        .ok()?
        .root_key_id(0)
        .build_with_key_pair(&ring_key(0), SymbolTable::new(), &next_key(0))
        .ok()?;
    for (i, block) in rest.iter().enumerate() {
        let builder = BlockBuilder::new().code(source(block)).ok()?;
        let next = next_key(i + 1);
        token = match block {
            SignedBlock::Hop(n, _) => {
                let signer = ring_key(*n);
                let signed = token
                    .third_party_request()
                    .ok()?
                    .create_block(&signer.private(), builder)
                    .ok()?;
                token
                    .append_third_party_with_keypair(signer.public(), signed, next)
                    .ok()?
            }
            SignedBlock::Root(_) | SignedBlock::First(_) => {
                token.append_with_keypair(&next, builder).ok()?
            }
        };
    }
    token.to_vec().ok()
}

/// Whether every `ed25519/` or `secp256r1/` key written in `source` is a
/// valid key. biscuit-auth's Datalog builder panics on any other; that
/// builder makes the attacker's tokens here and is no part of Mandate
/// (which never parses a token's source: raw checks in grants are parsed by
/// `mandate_spec`, which checks their keys first).
fn keys_well_formed(source: &str) -> bool {
    [
        ("ed25519/", Algorithm::Ed25519),
        ("secp256r1/", Algorithm::Secp256r1),
    ]
    .into_iter()
    .all(|(prefix, algorithm)| {
        source.match_indices(prefix).all(|(at, _)| {
            let rest = &source[at + prefix.len()..];
            let len = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
            hex::decode(&rest[..len])
                .ok()
                .is_some_and(|bytes| biscuit_auth::PublicKey::from_bytes(&bytes, algorithm).is_ok())
        })
    })
}

/// The fixed key that follows block `i` (Biscuit's per-block key pair).
fn next_key(i: usize) -> KeyPair {
    let seed = 0x80u8.wrapping_add(i as u8);
    let private = PrivateKey::from_bytes(&[seed; 32], Algorithm::Ed25519)
        .expect("32 bytes are an Ed25519 private key");
    KeyPair::from(&private)
}

fn plain() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(ring_verifier)
}

fn cached() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        ring_verifier().with_cache(CacheOptions {
            max_entries: 256,
            ttl: Duration::from_secs(3600),
        })
    })
}

/// Reads `token` the way `inspect` does, then decides every request with
/// the plain and the cached verifier, checking each decision and that both
/// agree.
fn decide_all(token: &[u8], extra: &[Request]) {
    if let Ok(blocks) = decode_blocks(token) {
        for key_id in [None, Some(0)] {
            if let Ok(chain) = Chain::from_blocks(&blocks, key_id) {
                let _ = chain.to_string();
                for hop in &chain.hops {
                    let _ = hop.to_string();
                }
                for approval in &chain.approvals {
                    let _ = approval.to_string();
                }
                let _ = serde_json::to_string(&chain);
                for cap in effective_capabilities(&chain) {
                    let _ = cap.describe();
                }
                let _ = mandate_server::html::chain_page(&chain, key_id.is_some(), &[]);
            }
        }
    }
    for request in fixed_requests().iter().chain(extra) {
        let a = plain().authorize(token, request);
        check_decision(token, request, &a);
        let b = cached().authorize(token, request);
        check_decision(token, request, &b);
        assert_same_decision(&a, &b, "the cached verifier decided otherwise");
    }
}
