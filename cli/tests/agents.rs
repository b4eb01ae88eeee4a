//! Agents written in other languages take part in a chain with the standard
//! Biscuit libraries and the spec alone: the Python orchestrator
//! (examples/python-agent, biscuit-python 0.4) and the JavaScript one
//! (examples/js-agent, biscuit-wasm 0.6 on Node) each receive a token,
//! append a delegation hop for a sub-agent signed with their own key, and
//! Mandate's verifier decides the sub-agent's requests: allowed within the
//! hop, denied beyond it, and a hop that tries to widen gets nothing more.
//! The hops they write decode as canonical grants (not raw Datalog), and
//! usage limits they set (SPEC §18.2) as the hop's own. Each also asks the
//! issuer service for a person's approval, waits, and attaches the approval
//! (request_approval.py / .mjs): the approved token pays once.
//!
//! `scripts/test.sh` sets up both (a virtualenv, `npm ci`) and requires
//! these tests to run; under a bare `cargo test` without that setup they
//! say so and pass.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::payments::Payments;
use common::{mandate, Run};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn run(d: &Path, args: &[&str]) -> Run {
    let r = mandate(d, args);
    assert_eq!(r.code, 0, "mandate {args:?}: {}", r.stderr);
    r
}

/// The interpreter and arguments that run an orchestrator, or `None` (with
/// a message) when the agents are not set up and not required.
fn agent(lang: &str) -> Option<Vec<String>> {
    let required = std::env::var("MANDATE_AGENTS_REQUIRED").as_deref() == Ok("1");
    let repo = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..");
    let cmd = match lang {
        "python" => std::env::var("MANDATE_PYTHON").ok().map(|py| {
            vec![
                py,
                repo.join("examples/python-agent/orchestrator.py")
                    .display()
                    .to_string(),
            ]
        }),
        _ => std::env::var("MANDATE_JS_AGENT_DIR").ok().map(|dir| {
            vec![
                "node".into(),
                "--experimental-wasm-modules".into(),
                "--no-warnings".into(),
                PathBuf::from(dir)
                    .join("orchestrator.mjs")
                    .display()
                    .to_string(),
            ]
        }),
    };
    if cmd.is_none() {
        assert!(
            !required,
            "the {lang} agent is not set up: run `eval \"$(./scripts/setup-agents.sh)\"`"
        );
        eprintln!("skipped: the {lang} agent is not set up (scripts/setup-agents.sh)");
    }
    cmd
}

/// Runs an orchestrator; (exit code, stdout, stderr).
fn orchestrate(cmd: &[String], d: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .args(args)
        .current_dir(d)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn delegation_by(lang: &str) {
    let Some(cmd) = agent(lang) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    let orch = run(d, &["keygen", "--out", "orchestrator.key"])
        .stdout
        .trim()
        .to_string();
    let research = run(d, &["keygen", "--out", "research.key"])
        .stdout
        .trim()
        .to_string();
    let token = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "user:alice",
            "--to",
            "orchestrator",
            "--to-key",
            &orch,
            "--allow",
            "read,list:/api/customers/*",
            "--where",
            "rows<=100",
            "--ttl",
            "1h",
            "--max-depth",
            "3",
        ],
    );
    std::fs::write(d.join("orchestrator.tok"), &token.stdout).unwrap();

    // 1. A narrowing hop: read only, at most 10 rows.
    let (code, out, err) = orchestrate(
        &cmd,
        d,
        &[
            "--token",
            "orchestrator.tok",
            "--root-public-key",
            &root,
            "--key",
            "orchestrator.key",
            "--to",
            "research-agent",
            "--to-key",
            &research,
            "--allow",
            "read:/api/customers/*",
            "--where",
            "rows<=10",
            "--ttl",
            "600",
            "--purpose",
            &format!("made in {lang}"),
        ],
    );
    assert_eq!(code, 0, "{lang} orchestrator: {err}");
    std::fs::write(d.join("research.tok"), out).unwrap();
    let verify = |action: &str, resource: &str, rows: &str| {
        mandate(
            d,
            &[
                "verify",
                "--public-key",
                &root,
                "--action",
                action,
                "--resource",
                resource,
                "--param",
                &format!("rows={rows}"),
                "research.tok",
            ],
        )
    };
    let ok = verify("read", "/api/customers/42", "5");
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout
            .contains("user:alice → orchestrator → research-agent"),
        "{}",
        ok.stdout
    );
    let list = verify("list", "/api/customers/42", "5");
    assert_eq!(list.code, 1);
    assert!(
        list.stderr.contains("hop 1 (agent \"research-agent\""),
        "{}",
        list.stderr
    );
    let many = verify("read", "/api/customers/42", "50");
    assert_eq!(many.code, 1);
    assert!(
        many.stderr.contains("rows=50 violates rows<=10"),
        "{}",
        many.stderr
    );
    // What the other library wrote reads as Mandate's own vocabulary.
    let inspect = run(d, &["inspect", "--public-key", &root, "research.tok"]).stdout;
    assert!(
        inspect.contains("allows: read:/api/customers/* where rows<=10"),
        "{inspect}"
    );
    assert!(
        inspect.contains(&format!("purpose: \"made in {lang}\"")),
        "{inspect}"
    );
    assert!(
        inspect.contains("signed by: agent \"orchestrator\""),
        "{inspect}"
    );

    // 2. A hop that tries to widen: more actions, everything under /api.
    let (code, out, err) = orchestrate(
        &cmd,
        d,
        &[
            "--token",
            "orchestrator.tok",
            "--root-public-key",
            &root,
            "--key",
            "orchestrator.key",
            "--to",
            "greedy-agent",
            "--to-key",
            &research,
            "--allow",
            "read,write,delete:/api/**",
            "--where",
            "rows<=1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(d.join("research.tok"), out).unwrap();
    assert_eq!(verify("read", "/api/customers/42", "5").code, 0);
    for (action, resource, rows, needle) in [
        (
            "write",
            "/api/customers/42",
            "5",
            "action \"write\" is not allowed",
        ),
        (
            "delete",
            "/api/customers/42",
            "5",
            "action \"delete\" is not allowed",
        ),
        ("read", "/api/orders/1", "5", "/api/orders/1"),
        (
            "read",
            "/api/customers/42",
            "500",
            "rows=500 violates rows<=100",
        ),
    ] {
        let r = verify(action, resource, rows);
        assert_eq!(
            r.code, 1,
            "{action} {resource} rows={rows} must stay denied"
        );
        assert!(
            r.stderr.contains("hop 0"),
            "the root denies it: {}",
            r.stderr
        );
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }

    // 3. A hop with usage limits (SPEC §18.2), written with the plain
    // library: Mandate reads them as the hop's own, binding its subtree.
    let (code, out, err) = orchestrate(
        &cmd,
        d,
        &[
            "--token",
            "orchestrator.tok",
            "--root-public-key",
            &root,
            "--key",
            "orchestrator.key",
            "--to",
            "limited-agent",
            "--to-key",
            &research,
            "--allow",
            "read:/api/customers/*",
            "--limit",
            "read 5/366d",
            "--budget",
            "read,list rows 50/1d",
        ],
    );
    assert_eq!(code, 0, "{lang} orchestrator: {err}");
    std::fs::write(d.join("limited.tok"), out).unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &run(
            d,
            &["inspect", "--json", "--public-key", &root, "limited.tok"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(
        json["chain"]["hops"][1]["grant"]["limits"],
        serde_json::json!([
            { "actions": ["read"], "max": 5, "window_secs": 31_622_400 },
            { "actions": ["list", "read"], "param": "rows", "max": 50, "window_secs": 86400 },
        ]),
        "{json}"
    );
    let inspect = run(d, &["inspect", "--public-key", &root, "limited.tok"]).stdout;
    assert!(
        inspect.contains(
            "limits (shared by this hop and everything delegated from it): read 5/366d, \
             list,read rows 50/1d"
        ),
        "{inspect}"
    );
    // And enforces them: 5 reads, then the hop's own limit denies (exit 4).
    // (A 366-day window: the reads never straddle a window's end.)
    let read = |rows: &str, store: Option<&str>| {
        let mut args = vec![
            "verify",
            "--public-key",
            &root,
            "--action",
            "read",
            "--resource",
            "/api/customers/42",
        ];
        let rows = format!("rows={rows}");
        args.extend_from_slice(&["--param", &rows]);
        if let Some(dir) = store {
            args.extend_from_slice(&["--usage-db", dir]);
        }
        args.push("limited.tok");
        mandate(d, &args)
    };
    for i in 0..5 {
        let r = read("1", Some("usage"));
        assert_eq!(r.code, 0, "read {i}: {}", r.stderr);
    }
    let sixth = read("1", Some("usage"));
    assert_eq!(sixth.code, 4, "{}", sixth.stderr);
    assert!(
        sixth.stderr.contains("hop 1 (agent \"limited-agent\"")
            && sixth
                .stderr
                .contains("usage limit \"read 5/366d\" (count) exceeded: 5 of 5 used"),
        "{}",
        sixth.stderr
    );
    // The budget: a request costing more than it could ever allow.
    let big = read("60", Some("usage-2"));
    assert_eq!(big.code, 1, "{}", big.stderr);
    assert!(
        big.stderr
            .contains("costs 60 against list,read rows 50/1d, more than its whole allowance"),
        "{}",
        big.stderr
    );
    // A verifier without counters fails closed (the hop's guard).
    let none = read("1", None);
    assert_eq!(none.code, 1, "{}", none.stderr);
    assert!(
        none.stderr.contains("keeps no usage counters"),
        "{}",
        none.stderr
    );
    // Malformed limit text stops the orchestrator before it signs anything.
    let (code, _, err) = orchestrate(
        &cmd,
        d,
        &[
            "--token",
            "orchestrator.tok",
            "--root-public-key",
            &root,
            "--key",
            "orchestrator.key",
            "--to",
            "limited-agent",
            "--to-key",
            &research,
            "--allow",
            "read:/api/customers/*",
            "--limit",
            "read 5/1w",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("expected ACTION[,ACTION…] N/WINDOW"), "{err}");

    // 4. Only the holder can delegate.
    let (code, _, err) = orchestrate(
        &cmd,
        d,
        &[
            "--token",
            "orchestrator.tok",
            "--root-public-key",
            &root,
            "--key",
            "research.key",
            "--to",
            "x",
            "--to-key",
            &research,
            "--allow",
            "read:/api/customers/*",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("does not hold the token"), "{err}");
}

/// An agent in `lang` asks for approval of a payment, waits, and attaches
/// the approval the finance desk signs (examples/*/request_approval.*):
/// the token it prints pays once; a denial reaches it with the reason.
fn approval_by(lang: &str) {
    let Some(mut cmd) = agent(lang) else { return };
    let script = cmd.last_mut().unwrap();
    *script = script
        .replace("orchestrator.py", "request_approval.py")
        .replace("orchestrator.mjs", "request_approval.mjs");
    let p = Payments::start();
    let ask = |amount: &str| {
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .args([
                "--service",
                &p.url(),
                "--token",
                "pay.tok",
                "--action",
                "pay",
                "--resource",
                "/api/payments",
                "--param",
                &format!("amount={amount}"),
                "--wait",
                "60",
                "--root-public-key",
                &p.root,
            ])
            .current_dir(p.d())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = ask("150");
    let id = p.next_filed(&HashSet::new());
    p.approve(&id);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{lang}: {err}");
    assert!(
        err.contains("approved by ops:fin via finance-desk as finance"),
        "{err}"
    );
    std::fs::write(p.d().join("approved.tok"), &out.stdout).unwrap();
    let pay = || {
        mandate(
            p.d(),
            &[
                "verify",
                "--public-key",
                &p.root,
                "--replay-db",
                "replay",
                "--action",
                "pay",
                "--resource",
                "/api/payments",
                "--param",
                "amount=150",
                "approved.tok",
            ],
        )
    };
    let first = pay();
    assert_eq!(first.code, 0, "{lang}: {}", first.stderr);
    let again = pay();
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("approvals are single-use"),
        "{}",
        again.stderr
    );

    let child = ask("180");
    let id = p.next_filed(&[id].into());
    p.deny(&id, "not this supplier");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{lang}: {err}");
    assert!(
        err.contains("denied by ops:fin via finance-desk: not this supplier"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_python_agent_asks_waits_and_attaches_an_approval() {
    approval_by("python");
}

#[test]
fn a_javascript_agent_asks_waits_and_attaches_an_approval() {
    approval_by("javascript");
}

#[test]
fn a_python_orchestrator_delegates_with_biscuit_python() {
    delegation_by("python");
}

#[test]
fn a_javascript_orchestrator_delegates_with_biscuit_wasm() {
    delegation_by("javascript");
}

/// The conformance vectors (spec/samples) replayed with biscuit-wasm alone
/// (examples/js-agent/conformance.mjs): base64 text = token bytes, Biscuit's
/// signature verdict, the plain-Datalog decision of every request, and the
/// chain read from printed Datalog all agree with what the vectors record.
#[test]
fn the_conformance_vectors_replay_with_biscuit_wasm() {
    let Some(mut cmd) = agent("javascript") else {
        return;
    };
    let runner = PathBuf::from(cmd.pop().unwrap()).with_file_name("conformance.mjs");
    let samples = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../spec/samples");
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .arg(&runner)
        .arg(&samples)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "conformance.mjs:\n{stdout}\n{stderr}"
    );
    for check in ["base64", "signatures", "root key id", "datalog", "chain"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("checked {check}: ")))
            .unwrap_or_else(|| panic!("no `checked {check}` line:\n{stdout}"));
        let counts: Vec<u64> = line
            .split([' ', ',', ':', '('])
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            counts.len() >= 3 && counts[0] > 0 && counts[1] == 0,
            "{line}"
        );
    }
}

/// The stdlib decoder of SPEC Appendix B (examples/python-agent/mandate_wire.py)
/// reads tokens this binary mints as `inspect` does, and refuses malformed
/// bytes with a clear error.
#[test]
fn the_python_wire_decoder_reads_tokens_as_inspect_does() {
    let required = std::env::var("MANDATE_AGENTS_REQUIRED").as_deref() == Ok("1");
    let Ok(py) = std::env::var("MANDATE_PYTHON") else {
        assert!(
            !required,
            "the python agent is not set up: run `eval \"$(./scripts/setup-agents.sh)\"`"
        );
        eprintln!("skipped: the python agent is not set up (scripts/setup-agents.sh)");
        return;
    };
    let dir = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../examples/python-agent");
    let out = Command::new(py)
        .args(["-m", "unittest", "-v", "test_wire"])
        .current_dir(&dir)
        .env("MANDATE_BIN", env!("CARGO_BIN_EXE_mandate"))
        .env("MANDATE_AGENTS_REQUIRED", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "test_wire.py failed:\n{err}");
    assert!(err.contains("OK") && !err.contains("skipped"), "{err}");
}

/// The conformance vectors (spec/samples) replayed with biscuit-python 0.4
/// and the stdlib decoder alone (examples/python-agent/conformance.py):
/// base64 text = token bytes, Biscuit's signature verdict, the plain-Datalog
/// outcome of every request, the chain decoded from the bytes, §5 request
/// validation, and the full decision of every request needing no §6, §14 or
/// §15 logic all agree with what the vectors record.
#[test]
fn the_conformance_vectors_replay_with_biscuit_python() {
    let Some(mut cmd) = agent("python") else {
        return;
    };
    let runner = PathBuf::from(cmd.pop().unwrap()).with_file_name("conformance.py");
    let samples = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../spec/samples");
    let out = Command::new(&cmd[0])
        .arg(&runner)
        .arg(&samples)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "conformance.py:\n{stdout}\n{stderr}"
    );
    for check in [
        "token-bytes",
        "biscuit-accepts",
        "datalog",
        "chain",
        "validation",
        "decision",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("checked {check}: ")))
            .unwrap_or_else(|| panic!("no `checked {check}` line:\n{stdout}"));
        let counts: Vec<u64> = line
            .split([' ', ',', ':'])
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            counts.len() == 2 && counts[0] > 0 && counts[1] == 0,
            "{line}"
        );
    }
}
