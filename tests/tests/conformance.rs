//! The conformance vectors of `spec/samples/` (SPEC §10.2), replayed:
//!
//! - the committed files are exactly what the seeded generator writes
//!   (byte for byte: a change to the reference that changes a decision, a
//!   token's bytes or `inspect --json` shows here, and the vectors are
//!   regenerated deliberately);
//! - every request of every case is decided by the reference verifier,
//!   configured from `vectors.json` alone, as the vectors say;
//! - the expected `inspect --json` is what the library shows (the CLI
//!   binary is checked in `cli/tests/conformance.rs`);
//! - the vectors cover what issue 15 asks: every grammar form, depth 0–8,
//!   narrowing, approvals, holder binding, each §6 rule, malformed tokens.
#![allow(clippy::unwrap_used, missing_docs)]

use mandate_spec::{token_from_text, Audience, HolderProof, Request};
use mandate_tests::conformance::{self, expectation, Spent};
use mandate_verifier::{Limits, Presented, RootKeys, Verifier};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn samples() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../spec/samples")
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(samples().join("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_committed_vectors_are_what_the_generator_writes() {
    let regenerate =
        "regenerate them: cargo run --release -p mandate-tests --bin conformance-vectors -- spec/samples";
    let files = conformance::generate();
    for (name, contents) in &files {
        let on_disk = std::fs::read(samples().join(name))
            .unwrap_or_else(|e| panic!("spec/samples/{name}: {e}; {regenerate}"));
        assert!(
            &on_disk == contents,
            "spec/samples/{name} differs from what the generator writes; {regenerate}"
        );
    }
    let tokens: BTreeSet<String> = std::fs::read_dir(samples().join("tokens"))
        .unwrap()
        .map(|e| format!("tokens/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let generated: BTreeSet<String> = files
        .keys()
        .filter(|k| k.starts_with("tokens/"))
        .cloned()
        .collect();
    assert_eq!(
        tokens, generated,
        "stray or missing token files; {regenerate}"
    );
}

/// A verifier as `vectors.json` describes it, with an empty single-use
/// record.
fn verifier_from(doc: &Value) -> Verifier {
    let v = &doc["verifier"];
    let keys = v["root_keys"]
        .as_array()
        .unwrap()
        .iter()
        .fold(RootKeys::new(), |k, e| {
            let key = mandate_spec::parse_public_key(e["public_key"].as_str().unwrap()).unwrap();
            k.with(e["id"].as_u64().unwrap() as u32, key)
        });
    let l = &v["limits"];
    assert_eq!(v["revocations"].as_array().map(Vec::len), Some(0));
    Verifier::new(keys)
        .with_limits(Limits {
            max_facts: l["max_facts"].as_u64().unwrap(),
            max_iterations: l["max_iterations"].as_u64().unwrap(),
            max_time: Duration::from_millis(l["max_time_ms"].as_u64().unwrap()),
        })
        .with_proof_skew(Duration::from_secs(
            v["proof_skew_seconds"].as_u64().unwrap(),
        ))
        .with_single_use(Arc::new(Spent::default()))
}

fn presented(doc: &Value, p: &Value) -> Presented {
    if p.is_null() {
        return Presented::default();
    }
    let audience = Audience::parse(doc["verifier"]["audience"].as_str().unwrap()).unwrap();
    Presented::new(
        p["method"].as_str().unwrap(),
        p["body"].as_str().unwrap().as_bytes(),
        Some(HolderProof::parse(p["proof"].as_str().unwrap()).unwrap()),
    )
    .at(Some(audience), p["target"].as_str().unwrap())
}

#[test]
fn every_request_is_decided_as_the_vectors_say() {
    let doc = vectors();
    let mut decided = 0;
    let mut failures = Vec::new();
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = case["token"].as_str().unwrap();
        let bytes = match case["token_file"].as_str() {
            Some(file) => {
                let bytes = std::fs::read(samples().join(file)).unwrap();
                assert_eq!(
                    token_from_text(text).ok().as_deref(),
                    Some(&bytes[..]),
                    "{name}: the base64 text is not the token file's bytes"
                );
                Some(bytes)
            }
            None => None,
        };
        let v = verifier_from(&doc);
        for (i, r) in case["requests"].as_array().unwrap().iter().enumerate() {
            let request: Request = serde_json::from_value(r["request"].clone()).unwrap();
            let p = presented(&doc, &r["presented"]);
            let d = match &bytes {
                Some(b) => v.authorize_presented(b, &request, &p),
                None => v.authorize_base64(text, &request),
            };
            decided += 1;
            if expectation(&d) != r["expect"] {
                failures.push(format!(
                    "{name} request {i}: expected {}, got {} ({:?})",
                    r["expect"],
                    expectation(&d),
                    d.denial.map(|d| d.reason)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {decided} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(decided >= 1000, "only {decided} requests");
}

#[test]
fn inspect_shows_what_the_vectors_say() {
    let doc = vectors();
    let mut shown = 0;
    for case in doc["cases"].as_array().unwrap() {
        let Some(file) = case["token_file"].as_str() else {
            continue;
        };
        let bytes = std::fs::read(samples().join(file)).unwrap();
        let got = conformance::inspect_json(&bytes).unwrap_or(Value::Null);
        assert_eq!(got, case["inspect"], "{}", case["name"]);
        if !got.is_null() {
            shown += 1;
        }
    }
    assert!(shown >= 200, "only {shown} chains shown");
}

#[test]
fn the_vectors_cover_what_the_spec_defines() {
    let doc = vectors();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 300, "{} cases", cases.len());
    let covers: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| {
            c["covers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
        })
        .collect();
    let mut wanted: Vec<String> = (0..=8).map(|d| format!("depth:{d}")).collect();
    for tag in [
        "pattern:exact",
        "pattern:children",
        "pattern:subtree",
        "pattern:opaque",
        "actions:several",
        "alternatives:several",
        "constraint:le",
        "constraint:lt",
        "constraint:ge",
        "constraint:gt",
        "constraint:eq",
        "constraint:starts-with",
        "constraint:ends-with",
        "constraint:in",
        "constraint:time>=",
        "constraint:time<=",
        "typing",
        "whitespace",
        "raw-datalog",
        "narrowing",
        "widening",
        "expiry",
        "root-key",
        "approval",
        "approval-block",
        "holder",
        "malformed",
        "request",
        "rule-order",
        "denial-order",
        "random",
    ] {
        wanted.push(tag.to_string());
    }
    for rule in [
        "1", "1a", "1b", "1c", "3", "4", "5", "6", "7", "8", "9", "10", "11",
    ] {
        wanted.push(format!("rule:{rule}"));
    }
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|w| !covers.contains(w.as_str()))
        .collect();
    assert!(missing.is_empty(), "not covered: {missing:?}");
    // Every denial kind a token or request can cause without a revocation
    // list or a broken store.
    let kinds: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c["requests"].as_array().unwrap())
        .filter_map(|r| r["expect"]["kind"].as_str())
        .collect();
    for kind in [
        "invalid_request",
        "malformed_token",
        "bad_signature",
        "unknown_root_key",
        "broken_chain",
        "depth_exceeded",
        "expired",
        "not_allowed",
        "evaluation",
        "needs_approval",
        "approval_mismatch",
        "approval_wrong_approver",
        "approval_expired",
        "approval_replayed",
        "proof_missing",
        "proof_invalid",
    ] {
        assert!(kinds.contains(kind), "no vector is denied {kind}");
    }
}
