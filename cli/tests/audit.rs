//! `mandate audit export|verify` as an auditor uses them, on the log a real
//! `mandate verifierd --audit-db` wrote: it verifies; an exported file with a
//! record edited, deleted or reordered fails with exit 1 naming the record;
//! the store itself is checked read-only beside the running verifier.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::Proc;
use common::Scenario;

/// A verifierd auditing to `audit`, after 2 allows and 2 denials, stopped
/// cleanly (SIGINT: it writes what is queued, then exits).
fn audited_decisions(s: &Scenario) -> String {
    let audit_pub = s
        .run(&["keygen", "--out", "audit.key"])
        .stdout
        .trim()
        .to_string();
    let mut v = Proc::start([
        "verifierd",
        "--data-dir",
        s.path("v").to_str().unwrap(),
        "--public-key",
        &s.issuer_pub,
        "--listen",
        "127.0.0.1:0",
        "--audit-db",
        s.path("audit").to_str().unwrap(),
        "--audit-key",
        s.path("audit.key").to_str().unwrap(),
    ]);
    let token = s.read("sub.tok");
    assert_eq!(v.authorize(&token).0, 200);
    assert_eq!(v.authorize_as(&token, "delete", "/api/customers/42").0, 403);
    assert_eq!(v.authorize(&token).0, 200);
    assert_eq!(v.authorize("garbage").0, 403);
    // Beside the running verifier, read-only.
    let live = s.run(&[
        "audit",
        "verify",
        "--db",
        "audit",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(live.code, 0, "{}", live.stderr);
    v.interrupt();
    audit_pub
}

#[test]
fn an_auditor_verifies_the_log_and_finds_any_tampering() {
    let s = Scenario::new();
    let audit_pub = audited_decisions(&s);
    let ok = s.run(&[
        "audit",
        "verify",
        "--db",
        "audit",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout.starts_with("ok: 4 records (1..4)"),
        "{}",
        ok.stdout
    );

    let export = s.run(&["audit", "export", "--db", "audit"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let lines: Vec<&str> = export.stdout.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[1].contains("\"decision\":\"deny\""));
    assert!(lines[1].contains("\"principal\":\"user:alice\""));
    assert!(lines[1].contains("\"agent\":\"sub-agent\""));
    s.write("log.jsonl", &export.stdout);
    let ok = s.run(&[
        "audit",
        "verify",
        "--file",
        "log.jsonl",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);

    let check = |name: &str, lines: &[String], needle: &str| {
        s.write(name, &(lines.join("\n") + "\n"));
        let r = s.run(&[
            "audit",
            "verify",
            "--file",
            name,
            "--public-key",
            &audit_pub,
        ]);
        assert_eq!(r.code, 1, "{name}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle), "{name}: {}", r.stderr);
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut edited = owned.clone();
    edited[1] = edited[1].replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    check("edited.jsonl", &edited, "record 2 (line 2) was altered");
    let mut deleted = owned.clone();
    deleted.remove(2);
    check("deleted.jsonl", &deleted, "record 3 was removed");
    let mut reordered = owned.clone();
    reordered.swap(0, 1);
    check("reordered.jsonl", &reordered, "reordered");
    // Another key than the verifier's.
    let other = s
        .run(&["keygen", "--out", "other.key"])
        .stdout
        .trim()
        .to_string();
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "log.jsonl",
        "--public-key",
        &other,
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("record 1"), "{}", r.stderr);

    // A partial export verifies on its own.
    let tail = s.run(&["audit", "export", "--db", "audit", "--since-seq", "3"]);
    assert_eq!(tail.stdout.lines().count(), 2);
    s.write("tail.jsonl", &tail.stdout);
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "tail.jsonl",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(3..4)"), "{}", r.stdout);
}

#[test]
fn bad_audit_input_is_one_line_and_exit_2() {
    let s = Scenario::new();
    let r = s.run(&[
        "audit",
        "verify",
        "--db",
        "nowhere",
        "--public-key",
        &s.issuer_pub.clone(),
    ]);
    common::assert_bad_input(&r, "no audit log at nowhere");
    let r = s.run(&["audit", "verify", "--db", "x", "--public-key", "ed25519/zz"]);
    assert_eq!(r.code, 2);
    let r = s.run(&["audit", "export", "--db", "x", "--since", "yesterday"]);
    common::assert_bad_input(&r, "RFC 3339");
    let r = s.run(&["audit", "verify", "--public-key", &s.issuer_pub.clone()]);
    assert_eq!(r.code, 2);
    // The audit key comes with the audit directory.
    let r = s.run(&[
        "verifierd",
        "--data-dir",
        "v",
        "--public-key",
        &s.issuer_pub.clone(),
        "--audit-db",
        "a",
    ]);
    assert_eq!(r.code, 2);
}
