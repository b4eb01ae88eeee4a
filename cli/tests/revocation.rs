//! Revocation through the CLI: `mandate revoke` by hop, family and agent key,
//! `mandate revocations`, `verify --revocation-db`, failing closed, and the
//! durability test (SIGKILL a revoking process; every acknowledged entry is there).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{assert_bad_input, Scenario};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn verify_with_db(s: &Scenario, token: &str, db: &str) -> common::Run {
    s.run(&[
        "verify",
        "--json",
        "--public-key",
        &s.issuer_pub.clone(),
        "--action",
        "read",
        "--resource",
        "/api/customers/42",
        "--param",
        "rows=1",
        "--revocation-db",
        db,
        token,
    ])
}

fn denial(run: &common::Run) -> serde_json::Value {
    assert_eq!(run.code, 1, "stdout={} stderr={}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["denial"].clone()
}

#[test]
fn revoking_a_hop_denies_it_and_keeps_the_parent() {
    let s = Scenario::new();
    let r = s.run(&[
        "revoke",
        "--db",
        "rev",
        "--token",
        "sub.tok",
        "--hop",
        "1",
        "--reason",
        "sub-agent misbehaved",
        "--by",
        "ops",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("revoked revocation id "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("hop 1 (agent \"sub-agent\")"),
        "{}",
        r.stdout
    );

    let d = denial(&verify_with_db(&s, "sub.tok", "rev"));
    assert_eq!(d["kind"], "revoked");
    assert_eq!(d["hop"], 1);
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("sub-agent misbehaved") && reason.contains("\"ops\""),
        "{reason}"
    );

    let parent = verify_with_db(&s, "support.tok", "rev");
    assert_eq!(parent.code, 0, "{}", parent.stdout);
}

#[test]
fn revoking_the_family_or_the_agent_key_denies() {
    let s = Scenario::new();
    let r = s.run(&[
        "revoke",
        "--db",
        "fam",
        "--token",
        "support.tok",
        "--reason",
        "ticket closed",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("token family"), "{}", r.stdout);
    for t in ["support.tok", "sub.tok"] {
        assert_eq!(denial(&verify_with_db(&s, t, "fam"))["kind"], "revoked");
    }

    let r = s.run(&[
        "revoke",
        "--db",
        "agent",
        "--agent-key",
        &s.sub_pub.clone(),
        "--reason",
        "key leaked",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = denial(&verify_with_db(&s, "sub.tok", "agent"));
    assert_eq!(d["kind"], "revoked");
    assert!(d["reason"]
        .as_str()
        .unwrap()
        .contains("agent \"sub-agent\""));
    assert_eq!(verify_with_db(&s, "support.tok", "agent").code, 0);
}

#[test]
fn revoking_by_id_and_listing() {
    let s = Scenario::new();
    let inspect = s.run(&["inspect", "--json", "sub.tok"]);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let id = v["chain"]["hops"][0]["revocation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.run(&["revoke", "--db", "ids", "--id", &id, "--reason", "rotated"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), format!("revoked revocation id {id}"));
    let d = denial(&verify_with_db(&s, "sub.tok", "ids"));
    assert_eq!(d["hop"], 0);

    let list = s.run(&["revocations", "--db", "ids"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains(&id) && list.stdout.contains("\"rotated\""));
    assert!(
        list.stdout.trim_end().ends_with("1 entry"),
        "{}",
        list.stdout
    );
    let json = s.run(&["revocations", "--db", "ids", "--json"]);
    let line: serde_json::Value =
        serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["target"]["kind"], "block");
    assert_eq!(line["target"]["value"], id.as_str());
    assert_eq!(line["reason"], "rotated");

    // Nothing here has expired: pruning keeps everything.
    let prune = s.run(&["revocations", "--db", "ids", "--prune"]);
    assert_eq!(prune.stdout.trim(), "pruned 0 expired entries");
}

#[test]
fn bad_revocation_input_is_one_line_and_exit_2() {
    let s = Scenario::new();
    assert_bad_input(
        &s.run(&["revoke", "--db", "x", "--id", "zz", "--reason", "r"]),
        "hex",
    );
    assert_bad_input(
        &s.run(&["revoke", "--db", "x", "--id", "abcd", "--reason", "r"]),
        "64 bytes",
    );
    assert_bad_input(
        &s.run(&[
            "revoke", "--db", "x", "--token", "sub.tok", "--hop", "7", "--reason", "r",
        ]),
        "hops 0 to 1",
    );
    // A usage error: clap's whole message with the usage (tests/unix.rs).
    let r = s.run(&["revoke", "--db", "x", "--reason", "r"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("required arguments were not provided"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Usage: mandate revoke"), "{}", r.stderr);
    assert_bad_input(
        &s.run(&["revocations", "--db", "missing"]),
        "no revocation store",
    );
}

#[test]
fn an_unusable_revocation_db_denies() {
    let s = Scenario::new();
    // Missing.
    let d = denial(&verify_with_db(&s, "sub.tok", "does-not-exist"));
    assert_eq!(d["kind"], "revocation_unavailable");
    assert!(d["reason"]
        .as_str()
        .unwrap()
        .contains("no revocation store"));
    // Corrupt: a directory whose files are garbage.
    let r = s.run(&[
        "revoke",
        "--db",
        "bad",
        "--agent-key",
        &s.support_pub.clone(),
        "--reason",
        "x",
    ]);
    assert_eq!(r.code, 0);
    for f in std::fs::read_dir(s.path("bad")).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("MANIFEST") || name == "CURRENT" {
            std::fs::write(&p, "garbage").unwrap();
        }
    }
    let d = denial(&verify_with_db(&s, "support.tok", "bad"));
    assert_eq!(d["kind"], "revocation_unavailable");
}

#[test]
fn acknowledged_revocations_survive_sigkill() {
    let s = Scenario::new();
    let db = s.path("durable");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["revoke", "--db"])
        .arg(&db)
        .args(["--ids-from", "-", "--reason", "durability test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..100_000u32 {
            let mut id = [0u8; 64];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[4..8].copy_from_slice(&0xfeed_beefu32.to_be_bytes());
            if writeln!(stdin, "{}", hex::encode(id)).is_err() {
                break; // the child was killed
            }
        }
    });
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        acked.push(line.strip_prefix("revoked ").unwrap().to_string());
        if acked.len() == 300 {
            // Mid-stream: no chance to flush or close anything.
            Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status()
                .unwrap();
            break;
        }
    }
    // Drain what was acknowledged before the signal landed.
    for line in lines.map_while(Result::ok) {
        acked.push(line.strip_prefix("revoked ").unwrap().to_string());
    }
    child.wait().unwrap();
    writer.join().unwrap();
    assert!(acked.len() >= 300, "only {} acknowledgements", acked.len());

    let list = s.run(&["revocations", "--db", db.to_str().unwrap(), "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let present: std::collections::HashSet<String> = list
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["target"]["value"].as_str().unwrap().to_string()
        })
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !present.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged revocations lost",
        missing.len()
    );
}
