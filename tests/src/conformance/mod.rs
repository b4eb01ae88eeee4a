//! Conformance vectors (SPEC §10.2): a seeded generator writing
//! `spec/samples/` — root keys, tokens (bytes and base64), the requests made
//! with each and the reference's decision, the expected `inspect --json`,
//! and malformed or adversarial tokens with their expected rejection.
//!
//! Everything is derived from [`SEED`]: keys are SHA-256 of the seed and a
//! label, Biscuit's per-block "next" key pairs likewise, token ids too, and
//! Ed25519 signatures are deterministic (RFC 8032), so running the generator
//! again writes the same bytes (`tests/tests/conformance.rs` checks it).
//!
//! Run: `cargo run --release -p mandate-tests --bin conformance-vectors --
//! spec/samples`.

mod cases;

use biscuit_auth::builder::{Algorithm, BlockBuilder};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::{AuthorizerBuilder, Biscuit, BiscuitBuilder, KeyPair, PrivateKey, PublicKey};
use mandate_spec::{
    decode_blocks, effective_capabilities, token_to_text, Audience, Chain, HolderProof,
    ProofSubject, Request,
};
use mandate_verifier::replay::{SingleUse, Use};
use mandate_verifier::{Decision, Limits, RootKeys, Verifier, VerifierError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Everything in the vectors derives from this text.
pub const SEED: &str = "mandate-conformance-v1";

/// The vectors' "now": tokens are minted at 2026-06-01T00:00:00Z.
pub const T0: u64 = 1_780_272_000;

/// The audience of the verifier that decides the vectors (§15).
pub const AUDIENCE: &str = "https://api.example.com";

/// The format tag of `vectors.json`.
pub const FORMAT: &str = "mandate-conformance/1";

/// A point in time `secs` after [`T0`].
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

/// The Ed25519 key pair of `label`, derived from [`SEED`].
pub fn key(label: &str) -> KeyPair {
    key_of(label, Algorithm::Ed25519)
}

/// A key pair of `label` for `algorithm` (P-256 for the refused-key cases).
pub fn key_of(label: &str, algorithm: Algorithm) -> KeyPair {
    let mut counter = 0u32;
    loop {
        let d = Sha256::digest(format!("{SEED}/key/{label}/{counter}"));
        if let Ok(private) = PrivateKey::from_bytes(&d, algorithm) {
            return KeyPair::from(&private);
        }
        counter += 1;
    }
}

/// A token id (UUID v4 form) derived from `label`.
pub fn token_id(label: &str) -> String {
    let d = Sha256::digest(format!("{SEED}/token-id/{label}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// The generator's root keys: id 0 and id 1 are trusted; a token naming
/// id 7 is signed by a key no verifier of the vectors trusts.
pub fn root(id: u32) -> KeyPair {
    key(&format!("root/{id}"))
}

/// The root key ids the vectors' verifier trusts.
pub const TRUSTED_ROOTS: [u32; 2] = [0, 1];

/// A token under construction: its bytes and a label from which its
/// blocks' next keys derive.
#[derive(Clone)]
pub struct Tok {
    label: String,
    /// The token's bytes.
    pub bytes: Vec<u8>,
    blocks: usize,
}

fn next_key(label: &str, block: usize) -> KeyPair {
    key(&format!("{label}/next/{block}"))
}

impl Tok {
    /// Builds the authority block from `builder` under root key `root_id`.
    pub fn mint(label: &str, root_id: u32, builder: BiscuitBuilder) -> Tok {
        let token = builder
            .root_key_id(root_id)
            .build_with_key_pair(&root(root_id), SymbolTable::new(), &next_key(label, 0))
            .unwrap_or_else(|e| panic!("{label}: mint: {e}"));
        Tok {
            label: label.to_string(),
            bytes: token.to_vec().expect("serialize"),
            blocks: 1,
        }
    }

    fn unverified(&self) -> biscuit_auth::UnverifiedBiscuit {
        biscuit_auth::UnverifiedBiscuit::from(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: parse: {e}", self.label))
    }

    /// Appends `block` as a third-party block signed by `signer`.
    pub fn third_party(&self, signer: &KeyPair, block: BlockBuilder) -> Tok {
        let b = self.unverified();
        let signed = b
            .third_party_request()
            .and_then(|r| r.create_block(&signer.private(), block))
            .and_then(|s| s.serialize())
            .unwrap_or_else(|e| panic!("{}: third-party block: {e}", self.label));
        let out = b
            .append_third_party_with_keypair(&signed, next_key(&self.label, self.blocks))
            .unwrap_or_else(|e| panic!("{}: append: {e:?}", self.label));
        self.with(out.to_vec().expect("serialize"))
    }

    /// Appends a first-party block.
    pub fn first_party(&self, block: BlockBuilder) -> Tok {
        self.first_party_with(block, &next_key(&self.label, self.blocks))
    }

    /// Appends a first-party block whose next key is `next`.
    pub fn first_party_with(&self, block: BlockBuilder, next: &KeyPair) -> Tok {
        let out = self
            .unverified()
            .append_with_keypair(next, block)
            .unwrap_or_else(|e| panic!("{}: append: {e}", self.label));
        self.with(out.to_vec().expect("serialize"))
    }

    fn with(&self, bytes: Vec<u8>) -> Tok {
        Tok {
            label: self.label.clone(),
            bytes,
            blocks: self.blocks + 1,
        }
    }
}

/// A request of a case, and what came with it.
pub struct Req {
    /// The request.
    pub request: Request,
    /// HTTP method, target, body and `Mandate-Proof` header, when the
    /// request carries a proof of possession.
    pub proof: Option<ProofSpec>,
}

/// What a holder-bound request presents (§15).
pub struct ProofSpec {
    /// The method signed.
    pub method: String,
    /// The request-target signed.
    pub target: String,
    /// The body (UTF-8).
    pub body: String,
    /// The `Mandate-Proof` header value.
    pub header: String,
}

impl ProofSpec {
    /// A proof by `holder` over `method target body` for `token`, made at
    /// `made` with `nonce`.
    pub fn sign(
        holder: &KeyPair,
        token: &[u8],
        (method, target, body): (&str, &str, &str),
        made: SystemTime,
        nonce: &str,
    ) -> ProofSpec {
        let audience = Audience::parse(AUDIENCE).expect("audience");
        let subject = ProofSubject {
            method,
            audience: &audience,
            target,
            body_digest: ProofSubject::digest(body.as_bytes()),
            token,
        };
        let timestamp = made
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let message = HolderProof::message(&subject, timestamp, nonce).expect("proof message");
        let signature = holder.sign(&message).expect("sign").to_bytes().to_vec();
        ProofSpec {
            method: method.into(),
            target: target.into(),
            body: body.into(),
            header: HolderProof {
                timestamp,
                nonce: nonce.into(),
                signature,
            }
            .to_header(),
        }
    }
}

/// The token of a case: bytes, or text (for the cases about the text form).
pub enum Presented {
    /// The token's bytes (written to `tokens/NNN.bc` and as base64).
    Bytes(Vec<u8>),
    /// Text as a client might send it (not base64, padding, whitespace).
    Text(String),
}

/// One case: a token and the requests made with it.
pub struct Case {
    /// Short name, `area/what`.
    pub name: String,
    /// What it shows, and the SPEC section.
    pub description: String,
    /// What it covers (grammar forms, depth, rules), for coverage counts.
    pub covers: Vec<String>,
    /// The token.
    pub token: Presented,
    /// The requests, decided in order on one verifier state.
    pub requests: Vec<Req>,
}

/// An in-memory single-use record: each case starts with an empty one
/// (the state the vectors assume, `verifier.state` in `vectors.json`).
#[derive(Default)]
pub struct Spent(Mutex<HashSet<Vec<u8>>>);

impl SingleUse for Spent {
    fn use_once(
        &self,
        key: &[u8],
        _until: OffsetDateTime,
        _synced: bool,
    ) -> Result<Use, VerifierError> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(if set.insert(key.to_vec()) {
            Use::First
        } else {
            Use::Replayed
        })
    }
}

/// The trusted root keys of the vectors' verifier.
pub fn root_keys() -> RootKeys {
    TRUSTED_ROOTS
        .iter()
        .fold(RootKeys::new(), |k, id| k.with(*id, root(*id).public()))
}

/// The verifier every case is decided on (fresh per case): the trusted
/// roots, the default limits, an empty single-use record.
pub fn verifier() -> Verifier {
    Verifier::new(root_keys())
        .with_limits(Limits::default())
        .with_single_use(Arc::new(Spent::default()))
}

/// What a request presents besides the token, for the verifier.
pub fn presented(proof: Option<&ProofSpec>) -> mandate_verifier::Presented {
    match proof {
        None => mandate_verifier::Presented::default(),
        Some(p) => mandate_verifier::Presented::new(
            &p.method,
            p.body.as_bytes(),
            Some(HolderProof::parse(&p.header).expect("proof header")),
        )
        .at(
            Some(Audience::parse(AUDIENCE).expect("audience")),
            &p.target,
        ),
    }
}

/// Decides one request of a case on `v`.
pub fn decide(v: &Verifier, token: &Presented, req: &Req) -> Decision {
    match token {
        Presented::Bytes(b) => {
            v.authorize_presented(b, &req.request, &presented(req.proof.as_ref()))
        }
        Presented::Text(t) => match mandate_spec::token_from_text(t) {
            Ok(b) => v.authorize_presented(&b, &req.request, &presented(req.proof.as_ref())),
            Err(_) => v.authorize_base64(t, &req.request),
        },
    }
}

/// The expected outcome of a decision, as the vectors write it.
pub fn expectation(d: &Decision) -> Value {
    let mut e = serde_json::Map::new();
    e.insert(
        "decision".into(),
        serde_json::to_value(d.decision).expect("json"),
    );
    if let Some(denial) = &d.denial {
        e.insert(
            "kind".into(),
            serde_json::to_value(denial.kind).expect("json"),
        );
        if let Some(h) = denial.hop {
            e.insert("hop".into(), json!(h));
        }
        if let Some(b) = denial.block {
            e.insert("block".into(), json!(b));
        }
        if let Some(a) = &denial.agent {
            e.insert("agent".into(), json!(a));
        }
    }
    Value::Object(e)
}

/// The key `inspect --public-key` is given for a token: the trusted root
/// key it names, else root 0.
pub fn inspect_key(bytes: &[u8]) -> PublicKey {
    let id = biscuit_auth::UnverifiedBiscuit::from(bytes)
        .ok()
        .and_then(|b| b.root_key_id())
        .filter(|id| TRUSTED_ROOTS.contains(id))
        .unwrap_or(0);
    root(id).public()
}

/// What `mandate inspect --json --public-key <inspect_key>` prints for the
/// token, or `None` where it refuses the token (signatures or chain).
pub fn inspect_json(bytes: &[u8]) -> Option<Value> {
    let key = inspect_key(bytes);
    let root_key_id = Biscuit::from(bytes, key).ok()?.root_key_id();
    let blocks = decode_blocks(bytes).ok()?;
    let chain = Chain::from_blocks(&blocks, root_key_id).ok()?;
    let effective = effective_capabilities(&chain);
    let revoked: Vec<Option<String>> = vec![None; chain.hops.len()];
    Some(json!({
        "signatures_verified": true,
        "root_key_id": root_key_id,
        "size_bytes": bytes.len(),
        "blocks": blocks.len(),
        "chain": chain,
        "effective": effective,
        "revoked": revoked,
    }))
}

/// Whether Biscuit alone (signatures under the named trusted root key)
/// accepts the token's bytes.
fn biscuit_accepts(bytes: &[u8]) -> bool {
    Biscuit::from(bytes, inspect_key(bytes)).is_ok()
}

/// What a plain Biscuit authorizer decides: the token's checks against
/// the request facts of §2.1 and `allow if true` (no `request_digest`, no
/// `holder`), with the limits of §7.1. `None` when Biscuit refuses the
/// token.
fn datalog_allows(bytes: &[u8], request: &Request) -> Option<bool> {
    let token = Biscuit::from(bytes, inspect_key(bytes)).ok()?;
    let limits = Limits::default();
    let mut b = AuthorizerBuilder::new();
    for f in request.facts() {
        b = b.fact(f).ok()?;
    }
    let mut authorizer = b
        .policy("allow if true")
        .ok()?
        .set_limits(biscuit_auth::datalog::RunLimits {
            max_facts: limits.max_facts,
            max_iterations: limits.max_iterations,
            max_time: limits.max_time,
        })
        .build(&token)
        .ok()?;
    Some(authorizer.authorize().is_ok())
}

/// `value` with every object's keys in sorted order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let entries: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The generated files: path under `spec/samples/` → contents.
pub fn generate() -> BTreeMap<String, Vec<u8>> {
    let cases = cases::all();
    let mut files = BTreeMap::new();
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, case) in cases.iter().enumerate() {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case {}",
            case.name
        );
        let id = i + 1;
        let v = verifier();
        let mut requests = Vec::new();
        // What a plain Biscuit authorizer decides is recorded where it is
        // meaningful and safe to compute: no approval or holder facts, and
        // not for a token whose structure the verifier refuses for its cost
        // (rule 1c: that Datalog could run for minutes unbounded).
        let plain = !case
            .covers
            .iter()
            .any(|c| c == "approval" || c == "holder" || c.starts_with("rule:1"))
            || matches!(&case.token, Presented::Bytes(b) if v.verifies(b));
        for req in &case.requests {
            let d = decide(&v, &case.token, req);
            let mut r = serde_json::Map::new();
            r.insert(
                "request".into(),
                serde_json::to_value(&req.request).expect("json"),
            );
            if let Some(p) = &req.proof {
                r.insert(
                    "presented".into(),
                    json!({"method": p.method, "target": p.target, "body": p.body, "proof": p.header}),
                );
            }
            r.insert("expect".into(), expectation(&d));
            if let (Presented::Bytes(b), true) = (&case.token, plain) {
                if let Some(allows) = datalog_allows(b, &req.request) {
                    r.insert("datalog_allows".into(), json!(allows));
                }
            }
            requests.push(Value::Object(r));
        }
        let mut c = serde_json::Map::new();
        c.insert("id".into(), json!(id));
        c.insert("name".into(), json!(case.name));
        c.insert("description".into(), json!(case.description));
        c.insert("covers".into(), json!(case.covers));
        match &case.token {
            Presented::Bytes(b) => {
                let file = format!("tokens/{id:03}.bc");
                c.insert("token_file".into(), json!(file));
                c.insert("token".into(), json!(token_to_text(b)));
                c.insert("biscuit_accepts".into(), json!(biscuit_accepts(b)));
                c.insert("inspect".into(), inspect_json(b).unwrap_or(Value::Null));
                files.insert(file, b.clone());
            }
            Presented::Text(t) => {
                c.insert("token".into(), json!(t));
            }
        }
        c.insert("requests".into(), Value::Array(requests));
        out.push(Value::Object(c));
    }
    let keys: Vec<Value> = TRUSTED_ROOTS
        .iter()
        .map(|id| json!({"id": id, "public_key": root(*id).public().to_string()}))
        .collect();
    let limits = Limits::default();
    let doc = json!({
        "format": FORMAT,
        "spec": "spec/SPEC.md",
        "generator": "cargo run --release -p mandate-tests --bin conformance-vectors -- spec/samples",
        "seed": SEED,
        "verifier": {
            "root_keys": keys,
            "audience": AUDIENCE,
            "proof_skew_seconds": 60,
            "limits": {
                "max_facts": limits.max_facts,
                "max_iterations": limits.max_iterations,
                "max_time_ms": limits.max_time.as_millis() as u64,
            },
            "revocations": [],
            "state": "each case starts with an empty single-use record; its requests are decided in order, so an approval or a proof nonce spent by one request stays spent for the next",
        },
        "cases": out,
    });
    // Keys sorted whatever serde_json's features (`preserve_order` keeps
    // insertion order): the bytes must not depend on feature unification.
    let mut text = serde_json::to_string_pretty(&sorted(doc)).expect("json");
    text.push('\n');
    files.insert("vectors.json".into(), text.into_bytes());
    files
}
