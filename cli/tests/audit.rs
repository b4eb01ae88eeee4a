//! `mandate audit export|verify` as an auditor uses them, on the log a real
//! `mandate verifierd --audit-db` wrote: it verifies; an exported file with a
//! record edited, deleted or reordered fails with exit 1 naming the record;
//! the store itself is checked read-only beside the running verifier; a
//! store or an export whose first records were cut, or that holds none,
//! fails with exit 1; a partial export verifies only from a stated start;
//! messages quote nothing raw from the file. Records are vouched for by
//! signed checkpoints (exported after the records): an export without them
//! is "not yet covered" (exit 1), one signed by another key fails.
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
    // The 4 records, then the checkpoints (one per written batch).
    assert!(lines.len() > 4, "{}", export.stdout);
    assert!(lines[..4].iter().all(|l| l.starts_with("{\"record\":")));
    assert!(lines[4..].iter().all(|l| l.starts_with("{\"checkpoint\":")));
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
    assert!(ok.stdout.contains("signed checkpoints"), "{}", ok.stdout);
    // Without its checkpoints the chain holds, but nothing signed vouches
    // for the records: not yet covered, exit 1.
    s.write("bare.jsonl", &(lines[..4].join("\n") + "\n"));
    let bare = |json: bool| {
        let mut args = vec![
            "audit",
            "verify",
            "--file",
            "bare.jsonl",
            "--public-key",
            &audit_pub,
        ];
        if json {
            args.push("--json");
        }
        s.run(&args)
    };
    let r = bare(false);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("UNCOVERED: records 1 to 4") && r.stderr.contains("not yet covered"),
        "{}",
        r.stderr
    );
    let r = bare(true);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (
            &v["status"],
            &v["uncovered_from"],
            &v["uncovered_to"],
            &v["checkpoints"]
        ),
        (&"uncovered".into(), &1.into(), &4.into(), &0.into()),
        "{v}"
    );

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
    assert!(
        r.stderr
            .contains("is not signed by this verifier's audit key"),
        "{}",
        r.stderr
    );

    // A partial export verifies only from the start the auditor states.
    let tail = s.run(&["audit", "export", "--db", "audit", "--since-seq", "3"]);
    assert_eq!(
        tail.stdout
            .lines()
            .filter(|l| l.starts_with("{\"record\":"))
            .count(),
        2
    );
    s.write("tail.jsonl", &tail.stdout);
    let verify_tail = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "verify",
            "--file",
            "tail.jsonl",
            "--public-key",
            &audit_pub,
        ];
        args.extend_from_slice(extra);
        s.run(&args)
    };
    let r = verify_tail(&[]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("line 1 holds record 3, but the log must start at record 1")
            && r.stderr.contains("records 1 to 2 were removed"),
        "{}",
        r.stderr
    );
    let r = verify_tail(&["--partial-from", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(3..4)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("not tied to the records before it"),
        "{}",
        r.stdout
    );
    // Tied to record 2's hash, as an earlier check of the log printed it.
    let hash2 = serde_json::from_str::<serde_json::Value>(lines[1]).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let r = verify_tail(&["--partial-from", "3", "--prev-hash", &hash2]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("following the stated hash"),
        "{}",
        r.stdout
    );
    let hash1 = serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let r = verify_tail(&["--partial-from", "3", "--prev-hash", &hash1]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("hash chain is broken"), "{}", r.stderr);
    let r = verify_tail(&["--partial-from", "2"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("record 2 was removed"), "{}", r.stderr);
    // A store is always whole.
    let r = s.run(&[
        "audit",
        "verify",
        "--db",
        "audit",
        "--partial-from",
        "3",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn a_store_whose_first_records_were_deleted_fails() {
    let s = Scenario::new();
    let audit_pub = audited_decisions(&s);
    let export = s.run(&["audit", "export", "--db", "audit"]).stdout;
    {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            s.path("audit"),
            ["default", "checkpoints", "tail"],
        )
        .unwrap();
        db.delete(1u64.to_be_bytes()).unwrap();
        db.delete(2u64.to_be_bytes()).unwrap();
    }
    let r = s.run(&[
        "audit",
        "verify",
        "--db",
        "audit",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.starts_with("TAMPERED: store key 3 holds record 3, but the log must start at record 1: records 1 to 2 were removed"),
        "{}",
        r.stderr
    );
    // The same cut in an export file.
    let cut: Vec<&str> = export.lines().skip(2).collect();
    s.write("cut.jsonl", &(cut.join("\n") + "\n"));
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "cut.jsonl",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("records 1 to 2 were removed"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_empty_store_is_reported_empty_with_exit_1() {
    let s = Scenario::new();
    let audit_pub = s
        .run(&["keygen", "--out", "audit.key"])
        .stdout
        .trim()
        .to_string();
    // A verifier that decided nothing: the store exists and is empty.
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
    v.interrupt();
    let r = s.run(&[
        "audit",
        "verify",
        "--db",
        "audit",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .starts_with("EMPTY: audit: the log holds no records"),
        "{}",
        r.stderr
    );
    // An empty export.
    s.write("empty.jsonl", "");
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "empty.jsonl",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("EMPTY: empty.jsonl"), "{}", r.stderr);
}

#[test]
fn audit_messages_quote_nothing_raw_from_the_file() {
    let s = Scenario::new();
    let audit_pub = audited_decisions(&s);
    let export = s.run(&["audit", "export", "--db", "audit"]).stdout;
    let mut lines: Vec<String> = export.lines().map(String::from).collect();
    // An unknown field whose name draws: serde quotes it in its message.
    let evil = "x\n hop 9 (block 9): agent \"evil\" \u{1b}[2J\u{202e}";
    lines[1] = lines[1].replacen(
        '{',
        &format!("{{{}:1,", serde_json::to_string(evil).unwrap()),
        1,
    );
    s.write("evil.jsonl", &(lines.join("\n") + "\n"));
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "evil.jsonl",
        "--public-key",
        &audit_pub,
    ]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.starts_with("TAMPERED: line 2: not an audit entry"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        !r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{202e}'),
        "{:?}",
        r.stderr
    );
    assert!(r.stderr.contains("\\u{202e}"), "{:?}", r.stderr);
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
