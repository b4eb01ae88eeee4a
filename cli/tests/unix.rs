//! `mandate` as a Unix citizen: clap's whole usage error with its tip on bad
//! arguments (exit 2), help and version (exit 0), a closed standard output
//! (`| head`) ending every command silently with exit 0 (a verdict's exit
//! code standing), completions for every shell, man pages, and the `--json`
//! shapes of `keygen`, `revoke` and `audit verify`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::Proc;
use common::{mandate, mandate_stdin, Run, Scenario};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `mandate args` with a standard output nobody reads: the pipe's read
/// end is closed before the process starts, so its first write fails with
/// EPIPE. Returns (exit code, stderr).
fn with_stdout_closed(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Asserts `mandate args` exits `code` with nothing on stderr when its
/// standard output is closed.
fn closed_pipe_exits(s: &Scenario, code: i32, args: &[&str]) {
    let (got, stderr) = with_stdout_closed(s.dir.path(), args, None);
    assert_eq!(got, code, "mandate {args:?} with stdout closed: {stderr}");
    assert_eq!(stderr, "", "mandate {args:?} with stdout closed");
}

fn json(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", run.stdout))
}

/// Asserts a usage error: exit 2, clap's whole message on stderr with
/// `needles` and the pointer to --help; nothing on stdout.
fn assert_usage_error(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, 2, "stdout={} stderr={}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    for needle in needles {
        assert!(run.stderr.contains(needle), "{needle:?} in {}", run.stderr);
    }
    assert!(
        run.stderr.contains("For more information, try '--help'"),
        "{}",
        run.stderr
    );
}

#[test]
fn regression_missing_arguments_are_listed_with_the_usage() {
    let dir = tempfile::tempdir().unwrap();
    let run = mandate(dir.path(), &["verify"]);
    assert_usage_error(
        &run,
        &[
            "the following required arguments were not provided:",
            "--public-key <PUBKEY>",
            "--action <A>",
            "--resource <R>",
            "Usage: mandate verify --public-key <PUBKEY> --action <A> --resource <R>",
        ],
    );
    // A required group names its members.
    let run = mandate(dir.path(), &["revoke", "--db", "x", "--reason", "r"]);
    assert_usage_error(
        &run,
        &[
            "--id <HEX>",
            "--token <FILE>",
            "--ids-from <FILE>",
            "Usage: mandate revoke",
        ],
    );
}

#[test]
fn regression_a_typo_gets_the_similar_argument_tip() {
    let dir = tempfile::tempdir().unwrap();
    let run = mandate(dir.path(), &["verify", "--public-kye", "k"]);
    assert_usage_error(
        &run,
        &[
            "unexpected argument '--public-kye'",
            "tip: a similar argument exists: '--public-key'",
            "Usage: mandate verify",
        ],
    );
    let run = mandate(dir.path(), &["verfy"]);
    assert_usage_error(
        &run,
        &[
            "unrecognized subcommand 'verfy'",
            "similar subcommand",
            "'verify'",
            "Usage: mandate <COMMAND>",
        ],
    );
    let run = mandate(dir.path(), &["completions", "tcsh"]);
    assert_usage_error(&run, &["invalid value 'tcsh'", "bash", "zsh", "fish"]);
}

#[test]
fn help_and_version_exit_0_and_the_help_groups_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let version = mandate(dir.path(), &["--version"]);
    assert_eq!(version.code, 0);
    assert!(version.stdout.starts_with("mandate "), "{}", version.stdout);

    let help = mandate(dir.path(), &["--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    let groups: &[(&str, &[&str])] = &[
        (
            "Tokens:",
            &["keygen", "issue", "attenuate", "inspect", "verify"],
        ),
        (
            "Approvals and proofs:",
            &["approve", "attach-approval", "prove"],
        ),
        ("Revocation:", &["revoke", "revocations"]),
        ("Audit:", &["audit"]),
        ("Servers:", &["serve", "verifierd", "gateway"]),
        ("Shell integration:", &["completions", "man"]),
    ];
    let mut at = 0;
    for (group, names) in groups {
        let found = help.stdout[at..]
            .find(group)
            .unwrap_or_else(|| panic!("{group} after byte {at} in {}", help.stdout));
        at += found;
        for name in *names {
            let line = format!("\n  {name} ");
            let found = help.stdout[at..]
                .find(&line)
                .unwrap_or_else(|| panic!("{name} under {group} in {}", help.stdout));
            at += found;
        }
    }
    for code in [
        "Exit status:",
        "  0  success",
        "  1  denied",
        "  2  bad input or usage",
        "  3  needs approval",
        "closed standard output",
    ] {
        assert!(help.stdout.contains(code), "{code:?} in {}", help.stdout);
    }
    // -h is short but still groups the commands and names the codes.
    let short = mandate(dir.path(), &["-h"]);
    assert_eq!(short.code, 0);
    assert!(
        short.stdout.contains("Shell integration:"),
        "{}",
        short.stdout
    );
    assert!(
        short.stdout.contains("3 needs approval"),
        "{}",
        short.stdout
    );
    let sub = mandate(dir.path(), &["help", "verify"]);
    assert_eq!(sub.code, 0);
    assert!(sub.stdout.contains("--public-key"), "{}", sub.stdout);

    // No subcommand: the help on stderr, and it is a usage error.
    let none = mandate(dir.path(), &[]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("Tokens:"), "{}", none.stderr);
}

#[test]
fn regression_a_closed_pipe_ends_every_command_with_exit_0_and_no_word() {
    let s = Scenario::new();
    let pk = s.issuer_pub.clone();
    s.write(
        "ids",
        &format!("{}\n{}\n", "ab".repeat(64), "cd".repeat(64)),
    );
    s.run(&[
        "revoke",
        "--db",
        "rl",
        "--id",
        &"ef".repeat(64),
        "--reason",
        "r",
    ]);
    let verify = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "verify",
            "--public-key",
            &pk,
            "--resource",
            "/api/customers/42",
            "--param",
            "rows=10",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect()
    };
    let cases: Vec<(i32, Vec<String>)> = vec![
        (0, vec!["keygen".into()]),
        (0, vec!["keygen".into(), "--json".into()]),
        (0, vec!["keygen".into(), "--out".into(), "new.key".into()]),
        (0, vec!["inspect".into(), "sub.tok".into()]),
        (0, vec!["inspect".into(), "--json".into(), "sub.tok".into()]),
        (0, vec!["revocations".into(), "--db".into(), "rl".into()]),
        (
            0,
            vec![
                "revocations".into(),
                "--db".into(),
                "rl".into(),
                "--json".into(),
            ],
        ),
        (
            0,
            vec![
                "revocations".into(),
                "--db".into(),
                "rl".into(),
                "--feed-position".into(),
            ],
        ),
        (
            0,
            [
                "revoke",
                "--db",
                "rl",
                "--id",
                &"12".repeat(64),
                "--reason",
                "r",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            0,
            [
                "attenuate",
                "--key",
                "sub.key",
                "--to",
                "x",
                "--to-key",
                &s.support_pub,
                "--allow",
                "read:/api/customers/42",
                "sub.tok",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            0,
            [
                "prove",
                "--key",
                "sub.key",
                "--method",
                "GET",
                "--url",
                "https://api.example/x",
                "sub.tok",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (0, ["completions", "bash"].map(String::from).to_vec()),
        (0, ["man"].map(String::from).to_vec()),
        (0, ["--help"].map(String::from).to_vec()),
        (0, ["revoke", "--help"].map(String::from).to_vec()),
        // A verdict's exit code stands when nobody reads it: a denial that
        // exited 0 would read as allowed under `set -o pipefail`.
        (0, verify(&["--action", "read", "sub.tok"])),
        (1, verify(&["--action", "delete", "--json", "sub.tok"])),
    ];
    for (code, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        closed_pipe_exits(&s, *code, &args);
    }

    // A denial in text goes to stderr as always; the exit code is the verdict.
    let args = verify(&["--action", "delete", "sub.tok"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stderr) = with_stdout_closed(s.dir.path(), &args, None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("denied: hop 0"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Revoking from a list: the acknowledgements stop, the revocations do not.
    closed_pipe_exits(
        &s,
        0,
        &[
            "revoke",
            "--db",
            "rl",
            "--ids-from",
            "ids",
            "--reason",
            "done",
        ],
    );
    let list = s.run(&["revocations", "--db", "rl"]);
    assert!(list.stdout.contains(&"ab".repeat(64)), "{}", list.stdout);
    assert!(list.stdout.contains(&"cd".repeat(64)), "{}", list.stdout);
}

#[test]
fn regression_head_reads_the_first_line_of_a_long_list_and_mandate_exits_0() {
    // The reader goes away after the first bytes of a list too long for the
    // pipe's buffer, as `mandate revocations --db D | head -1` does.
    let s = Scenario::new();
    let ids: String = (0..1000u32).map(|n| format!("{:0128x}\n", n)).collect();
    s.write("ids", &ids);
    let r = s.run(&[
        "revoke",
        "--db",
        "rl",
        "--ids-from",
        "ids",
        "--reason",
        "bulk",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
        cmd.args(["revocations", "--db", "rl"]);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .current_dir(s.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 1];
        use std::io::Read;
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is closed now; the rest of the list meets EPIPE.
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "json={json}");
        assert_eq!(String::from_utf8(out.stderr).unwrap(), "", "json={json}");
    }
}

#[test]
fn an_audit_export_and_its_verdict_survive_a_closed_pipe() {
    let s = Scenario::new();
    let audit_pub = audited_decisions(&s);
    closed_pipe_exits(&s, 0, &["audit", "export", "--db", "audit"]);
    for json in [false, true] {
        let mut args = vec![
            "audit",
            "verify",
            "--db",
            "audit",
            "--public-key",
            &audit_pub,
        ];
        if json {
            args.push("--json");
        }
        closed_pipe_exits(&s, 0, &args);
    }
    // Tampered: exit 1 whoever reads it.
    let export = s.run(&["audit", "export", "--db", "audit"]);
    let lines: Vec<&str> = export.stdout.lines().collect();
    s.write("cut.jsonl", &format!("{}\n{}\n", lines[0], lines[2]));
    closed_pipe_exits(
        &s,
        1,
        &[
            "audit",
            "verify",
            "--file",
            "cut.jsonl",
            "--public-key",
            &audit_pub,
            "--json",
        ],
    );
}

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = mandate(dir.path(), &["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        for word in [
            "keygen",
            "attach-approval",
            "revocations",
            "verifierd",
            "completions",
        ] {
            assert!(r.stdout.contains(word), "{shell} completions lack {word}");
        }
        // Flags too, down to a nested subcommand's.
        assert!(r.stdout.contains("public-key"), "{shell}");
        assert!(r.stdout.contains("partial-from"), "{shell}");
    }
    // bash accepts what it was given.
    let bash = mandate(dir.path(), &["completions", "bash"]);
    let status = Command::new("bash")
        .args(["-n", "-c", &bash.stdout])
        .status()
        .unwrap();
    assert!(status.success(), "bash -n rejects the completion script");
}

#[test]
fn man_pages_are_generated_for_mandate_and_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let page = mandate(dir.path(), &["man"]);
    assert_eq!(page.code, 0, "{}", page.stderr);
    assert!(page.stdout.contains("\n.TH mandate 1 "), "{}", page.stdout);
    for needle in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        "Approvals and proofs: approve, attach\\-approval, request\\-approval, prove.",
        ".SH SUBCOMMANDS",
        "mandate\\-verify(1)",
        ".SH \"EXIT STATUS\"",
        "needs approval",
    ] {
        assert!(
            page.stdout.contains(needle),
            "{needle:?} in {}",
            page.stdout
        );
    }

    let r = mandate(dir.path(), &["man", "--out", "man1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let written: Vec<&str> = r.stdout.lines().collect();
    for name in [
        "mandate.1",
        "mandate-keygen.1",
        "mandate-verify.1",
        "mandate-attach-approval.1",
        "mandate-audit.1",
        "mandate-audit-export.1",
        "mandate-audit-verify.1",
        "mandate-gateway.1",
        "mandate-completions.1",
        "mandate-man.1",
    ] {
        let path = dir.path().join("man1").join(name);
        assert!(
            written.iter().any(|w| w.ends_with(name)),
            "{name} not in {written:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let title = format!("\n.TH {} 1 ", name.trim_end_matches(".1"));
        assert!(text.contains(&title), "{name}: {text}");
    }
    // No page for clap's `help` pseudo-command.
    assert!(!dir.path().join("man1/mandate-help.1").exists());
    let verify = std::fs::read_to_string(dir.path().join("man1/mandate-verify.1")).unwrap();
    assert!(verify.contains("\\-\\-public\\-key"), "{verify}");
    // man itself reads it, when the machine has man.
    if Command::new("man").arg("--version").output().is_ok() {
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.path().join("man1/mandate.1"))
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("EXIT STATUS"), "{text}");
    }
}

#[test]
fn keygen_json_gives_the_public_key_and_where_the_private_key_is() {
    let dir = tempfile::tempdir().unwrap();
    let r = mandate(dir.path(), &["keygen", "--out", "a.key", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let public = v["public_key"].as_str().unwrap();
    assert!(public.starts_with("ed25519/"), "{v}");
    assert_eq!(v["private_key_file"], "a.key");
    assert!(v.get("private_key").is_none(), "{v}");
    let file = std::fs::read_to_string(dir.path().join("a.key")).unwrap();
    assert!(file.starts_with("ed25519-private/"));

    // Without --out: both keys in the object, nothing on stderr.
    let r = mandate(dir.path(), &["keygen", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "");
    let v = json(&r);
    assert!(v["public_key"].as_str().unwrap().starts_with("ed25519/"));
    assert!(v["private_key"]
        .as_str()
        .unwrap()
        .starts_with("ed25519-private/"));
    // Text stays the default.
    let r = mandate(dir.path(), &["keygen", "--out", "b.key"]);
    assert!(r.stdout.trim().starts_with("ed25519/"));
}

#[test]
fn revoke_json_is_the_listed_entry_plus_its_feed_sequence() {
    let s = Scenario::new();
    let r = s.run(&[
        "revoke", "--db", "rl", "--token", "sub.tok", "--hop", "1", "--reason", "done", "--by",
        "ops", "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["target"]["kind"], "block", "{v}");
    assert_eq!(v["reason"], "done");
    assert_eq!(v["by"], "ops");
    assert!(v["revoked_at"].is_string(), "{v}");
    assert!(v["expires_at"].is_string(), "{v}");
    assert!(v["note"].as_str().unwrap().contains("sub-agent"), "{v}");
    assert!(v["feed_sequence"].is_null(), "{v}");
    // The same object `revocations --json` lists, less the feed's field.
    let listed = s.run(&["revocations", "--db", "rl", "--json"]);
    let mut entry: Value = serde_json::from_str(listed.stdout.trim()).unwrap();
    entry["feed_sequence"] = Value::Null;
    assert_eq!(entry, v);

    // From a list: one line per id, as each is synced.
    let ids = format!("{}\n{}\n", "ab".repeat(64), "cd".repeat(64));
    let r = mandate_stdin(
        s.dir.path(),
        &[
            "revoke",
            "--db",
            "rl",
            "--ids-from",
            "-",
            "--reason",
            "bulk",
            "--json",
        ],
        Some(&ids),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["target"]["value"], "cd".repeat(64));
    assert_eq!(lines[1]["reason"], "bulk");
}

#[test]
fn audit_verify_json_reports_the_verdict() {
    let s = Scenario::new();
    let audit_pub = audited_decisions(&s);
    let r = s.run(&[
        "audit",
        "verify",
        "--db",
        "audit",
        "--public-key",
        &audit_pub,
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["records"], 4);
    assert_eq!(v["first_seq"], 1);
    assert_eq!(v["last_seq"], 4);
    assert_eq!(v["head_hash"].as_str().unwrap().len(), 64, "{v}");
    assert_eq!(v["source"], "audit");
    assert!(v["partial_from"].is_null());
    assert_eq!(v["prev_hash_checked"], false);

    let export = s.run(&["audit", "export", "--db", "audit"]);
    let lines: Vec<&str> = export.stdout.lines().collect();
    s.write("cut.jsonl", &format!("{}\n{}\n", lines[0], lines[2]));
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "cut.jsonl",
        "--public-key",
        &audit_pub,
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["status"], "tampered", "{v}");
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("record 2 was removed"),
        "{v}"
    );

    // Records 3 and 4, and the signed checkpoints that follow the records
    // in an export (§12.2): a partial export is covered by them.
    let checkpoints: Vec<&str> = lines[4..].to_vec();
    s.write(
        "tail.jsonl",
        &format!("{}\n{}\n{}\n", lines[2], lines[3], checkpoints.join("\n")),
    );
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "tail.jsonl",
        "--public-key",
        &audit_pub,
        "--partial-from",
        "3",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["partial_from"], 3, "{v}");
    assert_eq!(v["records"], 2);
    assert_eq!(v["prev_hash_checked"], false);

    s.write("empty.jsonl", "");
    let r = s.run(&[
        "audit",
        "verify",
        "--file",
        "empty.jsonl",
        "--public-key",
        &audit_pub,
        "--json",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(json(&r)["status"], "empty");
}

/// A verifierd auditing to `audit` after 2 allows and 2 denials, stopped
/// cleanly; returns the audit public key.
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
    v.interrupt();
    audit_pub
}
