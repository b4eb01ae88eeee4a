//! The bodies of Mandate's fuzz targets, shared by the libFuzzer binaries in
//! `fuzz/` (nightly, `cargo fuzz`) and by the replay test
//! `tests/tests/fuzz_corpus.rs` (stable), which feeds every committed corpus
//! and regression file through the same functions.
//!
//! Each target takes any bytes and must never panic; each also asserts its
//! own invariants (a failed assertion is a panic, so the fuzzer reports it
//! like a crash):
//!
//! | target | input | reaches |
//! |---|---|---|
//! | `token_bytes` | token bytes, or base64 text | `decode_blocks`, `Chain::from_blocks`, `Verifier::authorize` (plain and cached), `token_from_text` |
//! | `token_signed` | one block of Datalog per line | the same, with every block re-signed by the right key, so the verifier gets past the signatures |
//! | `grant_text` | `allow:`/`where:`/`approval:`/… lines | grant, constraint, pattern, approval-rule, duration and key parsers; encode → decode round trip; Datalog vs Rust semantics |
//! | `http_request` | an HTTP/1-like request | `RouteMap` mapping, `query_params`, the whole `MandateLayer` |
//! | `mcp_jsonrpc` | an HTTP/1-like request | the gateway's JSON-RPC → request shape rules (a mirror: see [`mcp`]) and the verifier |
//! | `audit_export` | a JSON-lines export | `parse_export`, `verify_entries` (as is, and re-sealed) |
//! | `feed_entry` | a NATS message payload | the feed's `Revocation` decoding and `RevocationStore::apply_feed` |
//!
//! Fixed keys ([`ring_key`]) and a fixed time ([`T0`]) make every input
//! decide the same way on every run.

mod audit;
mod feed;
mod grant;
pub mod http_map;
pub mod mcp;
mod seeds;
pub mod token;

pub use audit::audit_export;
pub use feed::feed_entry;
pub use grant::grant_text;
pub use http_map::http_request;
pub use mcp::mcp_jsonrpc;
pub use seeds::seeds;
pub use token::{build_signed_token, token_bytes, token_signed};

use biscuit_auth::builder::Algorithm;
use biscuit_auth::{KeyPair, PrivateKey};
use mandate_spec::{effective_capabilities, Chain, Request, Value};
use mandate_verifier::{Decision, DenialKind, Limits, RootKeys, Verifier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fuzz target's body: any bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/` call it.
pub const TARGETS: &[(&str, Target)] = &[
    ("token_bytes", token_bytes),
    ("token_signed", token_signed),
    ("grant_text", grant_text),
    ("http_request", http_request),
    ("mcp_jsonrpc", mcp_jsonrpc),
    ("audit_export", audit_export),
    ("feed_entry", feed_entry),
];

/// The instant tokens built from fuzz input are issued (Unix seconds,
/// 2030-03-17): fixed, so an input decides the same way on every run.
pub const T0: u64 = 1_900_000_000;

/// When requests built from fuzz input are made: one minute after [`T0`].
pub fn request_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + 60)
}

/// Fixed key `i` of the fuzz key ring: 0 is the root key (root key id 0),
/// 1–4 are agents, 5 is an approver. Derived from the bytes `[i + 1; 32]`,
/// so seeds and regression files written once stay valid.
pub fn ring_key(i: u8) -> KeyPair {
    let private = PrivateKey::from_bytes(&[i.wrapping_add(1); 32], Algorithm::Ed25519)
        .expect("32 bytes are an Ed25519 private key");
    KeyPair::from(&private)
}

/// How many keys [`ring_key`] hands out for signing blocks.
pub const RING: u8 = 6;

/// The run limits of fuzz verifiers: the defaults with a 2 s time limit, so
/// a loaded machine never turns an allow into an `evaluation` denial and
/// the differential checks below stay exact. Inputs that are slow by
/// themselves are libFuzzer's `-timeout` to find.
pub fn fuzz_limits() -> Limits {
    Limits {
        max_time: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// A verifier trusting [`ring_key`]`(0)` as root key id 0, with
/// [`fuzz_limits`], no revocation list and no cache.
pub fn ring_verifier() -> Verifier {
    Verifier::new(RootKeys::new().with(0, ring_key(0).public())).with_limits(fuzz_limits())
}

/// The requests every token target decides (at [`request_time`]).
pub fn fixed_requests() -> Vec<Request> {
    let at = request_time();
    vec![
        Request::new("read", "/api/customers/42")
            .param("rows", 10)
            .at(at),
        Request::new("list", "/api/customers/").at(at),
        Request::new("pay", "/api/payments")
            .param("amount", 150)
            .param("to", "acme")
            .at(at),
        Request::new("pay", "/api/payments")
            .param("amount", 50)
            .param("to", "acme")
            .at(at),
        Request::new("delete", "/admin/users/1").at(at),
    ]
}

/// Parses `ACTION RESOURCE [NAME=VALUE]…` (values typed as the CLI types
/// them) into a request at [`request_time`]; `None` without two words.
pub fn parse_request_line(line: &str) -> Option<Request> {
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let mut request = Request::new(words.next()?, words.next()?).at(request_time());
    for w in words {
        let (name, value) = w.split_once('=')?;
        request.params.insert(name.to_string(), Value::infer(value));
    }
    Some(request)
}

/// The reason the verifier gives when a decoder panicked inside it (it
/// catches the panic and denies); a target seeing it has found a panic.
const CAUGHT_PANIC: &str = "a decoder failed on it";

/// Invariants of any decision on `token` for `request`:
/// - no decoder panicked (the verifier's safety net did not fire);
/// - the decision is consistent (a denial exactly when not allowed) and is
///   about `request`;
/// - an allowed request is one the chain, as `inspect` reads it, allows:
///   the chain decodes without a verifier, has not expired, every hop's and
///   every narrowing's decoded grant has an alternative allowing it (Rust
///   semantics), and so does the effective capability at the last hop.
///   Otherwise what a person is shown and what the verifier decides differ.
pub fn check_decision(token: &[u8], request: &Request, decision: &Decision) {
    if let Some(d) = &decision.denial {
        assert!(
            !d.reason.contains(CAUGHT_PANIC),
            "a decoder panicked inside the verifier: {d:?}"
        );
    }
    assert_eq!(
        decision.is_allowed(),
        decision.denial.is_none(),
        "inconsistent decision {decision:?}"
    );
    assert_eq!(
        &decision.request, request,
        "the decision is about another request"
    );
    if !decision.is_allowed() {
        return;
    }
    request
        .validate()
        .expect("an allowed request passes validation");
    let blocks = mandate_spec::decode_blocks(token).expect("an allowed token decodes");
    let chain = Chain::from_blocks(&blocks, Some(0)).expect("an allowed token forms a chain");
    assert_chain_allows(&chain, request);
}

/// The Rust reading of `chain` allows `request` (see [`check_decision`]).
pub fn assert_chain_allows(chain: &Chain, request: &Request) {
    let now = time::OffsetDateTime::from_unix_timestamp(request.time_unix())
        .expect("a request time is a valid instant");
    if let Some(expiry) = chain.expires_at {
        assert!(expiry >= now, "allowed after the chain expired at {expiry}");
    }
    let grants = chain
        .hops
        .iter()
        .flat_map(|h| std::iter::once(&h.grant).chain(h.narrowing.iter().map(|n| &n.grant)));
    for g in grants {
        if !g.alternatives.is_empty() {
            assert!(
                g.alternatives.iter().any(|a| a.allows(request)),
                "Datalog allowed {request:?}, but the decoded grant {g} does not"
            );
        }
    }
    let caps = effective_capabilities(chain);
    let last = caps.last().expect("a chain has a root hop");
    assert!(
        !last.nothing,
        "Datalog allowed {request:?}, but the effective capability is nothing"
    );
    if !last.alternatives.is_empty() {
        assert!(
            last.alternatives.iter().any(|a| a.allows(request)),
            "Datalog allowed {request:?}, but the effective capability {} does not",
            last.describe()
        );
    }
}

/// Two decisions on the same token and request agree (outcome and denial
/// kind), unless one hit a run limit.
pub fn assert_same_decision(a: &Decision, b: &Decision, what: &str) {
    let kind = |d: &Decision| d.denial.as_ref().map(|d| d.kind);
    if [kind(a), kind(b)].contains(&Some(DenialKind::Evaluation)) {
        return;
    }
    assert_eq!(
        (a.decision, kind(a)),
        (b.decision, kind(b)),
        "{what}: {a:?} vs {b:?}"
    );
}

/// `data` as text, when it is UTF-8.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
