//! The `mandate` binary end to end: keygen → issue → attenuate → inspect →
//! verify, exit codes, and one-line errors on bad input.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{assert_bad_input, crafted, mandate, mandate_stdin, Scenario};

#[test]
fn keygen_writes_a_private_file_and_prints_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let r = mandate(dir.path(), &["keygen", "--out", "a.key"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.trim().starts_with("ed25519/"));
    assert_eq!(r.stdout.trim().len(), "ed25519/".len() + 64);
    let content = std::fs::read_to_string(dir.path().join("a.key")).unwrap();
    assert!(content.starts_with("ed25519-private/"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("a.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never silently overwrite a key.
    let again = mandate(dir.path(), &["keygen", "--out", "a.key"]);
    assert_bad_input(&again, "already exists");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.key")).unwrap(),
        content
    );
    let forced = mandate(dir.path(), &["keygen", "--out", "a.key", "--force"]);
    assert_eq!(forced.code, 0);
    assert_ne!(
        std::fs::read_to_string(dir.path().join("a.key")).unwrap(),
        content
    );
}

#[test]
fn quickstart_read_is_allowed_with_the_chain() {
    let s = Scenario::new();
    let r = s.verify("sub.tok", "read", "/api/customers/42", &["rows=10"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "allowed: user:alice → support-agent → sub-agent"
    );
}

#[test]
fn quickstart_delete_is_denied_with_the_reason() {
    let s = Scenario::new();
    let r = s.verify("sub.tok", "delete", "/api/customers/42", &["rows=10"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("denied: hop 0"), "{}", r.stderr);
    assert!(r.stderr.contains("action \"delete\" is not allowed"));
    assert!(r.stderr.contains("hop 1 (agent \"sub-agent\""));
}

#[test]
fn quickstart_read_of_500_rows_is_denied() {
    let s = Scenario::new();
    let r = s.verify("sub.tok", "read", "/api/customers/42", &["rows=500"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("parameter rows=500 violates rows<=100"),
        "{}",
        r.stderr
    );
    // A missing parameter fails closed, and says so.
    let r = s.verify("sub.tok", "read", "/api/customers/42", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("parameter rows is missing"),
        "{}",
        r.stderr
    );
}

/// `--param rows=5 --param rows=500` was decided on the last value, where a
/// verifier supplying both facts allows (checks are existential): a name
/// given twice is refused, exit 2, in either order (§5.1).
#[test]
fn duplicate_param_is_refused_not_decided_on_the_last() {
    let s = Scenario::new();
    for params in [
        ["rows=5", "rows=500"],
        ["rows=500", "rows=5"],
        ["rows=5", "rows=5"],
    ] {
        let r = s.verify("sub.tok", "read", "/api/customers/42", &params);
        assert_bad_input(&r, "parameter rows given twice");
    }
    let r = s.verify(
        "sub.tok",
        "read",
        "/api/customers/42",
        &["rows=5", "cols=5"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `mandate approve` reads the request from JSON: a parameter object
/// giving a name twice is refused, not read as its last value.
#[test]
fn approve_refuses_a_request_giving_a_param_twice() {
    let dir = tempfile::tempdir().unwrap();
    let c = crafted::write(dir.path());
    std::fs::write(
        dir.path().join("ask.json"),
        r#"{"action":"pay","resource":"/api/payments/9","params":{"amount":15,"amount":150}}"#,
    )
    .unwrap();
    let r = mandate(
        dir.path(),
        &[
            "approve",
            "--show",
            "--key",
            c.approver_key,
            "--public-key",
            &c.root_pub,
            "--token",
            c.approval_token,
            "ask.json",
        ],
    );
    assert_bad_input(&r, "parameter amount given twice");
}

#[test]
fn sub_agent_cannot_list_what_its_parent_could() {
    let s = Scenario::new();
    let parent = s.verify("support.tok", "list", "/api/customers/42", &["rows=10"]);
    assert_eq!(parent.code, 0, "{}", parent.stderr);
    let child = s.verify("sub.tok", "list", "/api/customers/42", &["rows=10"]);
    assert_eq!(child.code, 1);
    assert!(child.stderr.contains("hop 1"), "{}", child.stderr);
}

#[test]
fn verify_json_carries_decision_reason_and_chain() {
    let s = Scenario::new();
    let r = s.run(&[
        "verify",
        "--json",
        "--public-key",
        &s.issuer_pub.clone(),
        "--action",
        "list",
        "--resource",
        "/api/customers/42",
        "--param",
        "rows=10",
        "sub.tok",
    ]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["denial"]["kind"], "not_allowed");
    assert_eq!(v["denial"]["hop"], 1);
    assert_eq!(v["denial"]["agent"], "sub-agent");
    assert_eq!(v["request"]["params"]["rows"], 10);
    let hops = v["chain"]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(v["chain"]["principal"], "user:alice");
    assert_eq!(hops[0]["hop"], 0);
    assert_eq!(hops[0]["agent"], "support-agent");
    assert_eq!(hops[0]["signed_by"]["kind"], "root");
    assert_eq!(hops[1]["agent"], "sub-agent");
    assert_eq!(hops[1]["agent_key"], s.sub_pub.as_str());
    assert_eq!(hops[1]["signed_by"]["agent"], "support-agent");
    assert_eq!(hops[1]["purpose"], "look up customer 42");
    assert_eq!(hops[1]["revocation_id"].as_str().unwrap().len(), 128);
}

#[test]
fn inspect_shows_the_chain_with_or_without_the_root_key() {
    let s = Scenario::new();
    let r = s.run(&["inspect", "sub.tok"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("signatures: NOT verified"));
    assert!(r
        .stdout
        .contains("chain: user:alice → support-agent → sub-agent"));
    assert!(r.stdout.contains("hop 1 (block 1): agent \"sub-agent\""));
    assert!(r.stdout.contains("allows: read:/api/customers/*"));
    assert!(r.stdout.contains(&format!(
        "signed by: agent \"support-agent\" ({})",
        s.support_pub
    )));

    let r = s.run(&[
        "inspect",
        "--json",
        "--public-key",
        &s.issuer_pub.clone(),
        "sub.tok",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["signatures_verified"], true);
    assert_eq!(
        v["chain"]["hops"][1]["grant"]["alternatives"][0]["actions"][0],
        "read"
    );

    // A wrong root key: bad input, one line.
    let r = s.run(&["inspect", "--public-key", &s.sub_pub.clone(), "sub.tok"]);
    assert_bad_input(&r, "signatures do not verify");
}

#[test]
fn tokens_are_read_from_standard_input_by_default() {
    let s = Scenario::new();
    let token = s.read("sub.tok");
    let r = mandate_stdin(
        s.dir.path(),
        &[
            "verify",
            "--public-key",
            &s.issuer_pub,
            "--action",
            "read",
            "--resource",
            "/api/customers/7",
            "--param",
            "rows=1",
        ],
        Some(&token),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn only_the_holder_can_attenuate() {
    let s = Scenario::new();
    // sub.tok is held by sub-agent; the support agent's key cannot extend it.
    let r = s.run(&[
        "attenuate",
        "--key",
        "support.key",
        "--to",
        "x",
        "--to-key",
        &s.sub_pub.clone(),
        "sub.tok",
    ]);
    assert_bad_input(&r, "does not hold the token");
}

#[test]
fn max_depth_is_enforced_when_attenuating() {
    let s = Scenario::new();
    let k3 = s
        .run(&["keygen", "--out", "third.key"])
        .stdout
        .trim()
        .to_string();
    let r = s.run(&[
        "attenuate",
        "--key",
        "sub.key",
        "--to",
        "third",
        "--to-key",
        &k3,
        "sub.tok",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.write("third.tok", &r.stdout);
    let k4 = s
        .run(&["keygen", "--out", "fourth.key"])
        .stdout
        .trim()
        .to_string();
    let r = s.run(&[
        "attenuate",
        "--key",
        "third.key",
        "--to",
        "fourth",
        "--to-key",
        &k4,
        "third.tok",
    ]);
    assert_bad_input(&r, "at most 2 delegation hops");
}

#[test]
fn expired_tokens_are_denied_with_the_hop() {
    let s = Scenario::new();
    // sub-agent's hop lives 10 minutes, the root an hour.
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = s.run(&[
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
        "--time",
        &later,
        "sub.tok",
    ]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["denial"]["kind"], "expired");
    assert_eq!(v["denial"]["hop"], 1);
    assert!(v["denial"]["reason"]
        .as_str()
        .unwrap()
        .contains("expired at"));
}

#[test]
fn bad_input_gives_one_line_and_exit_2() {
    let s = Scenario::new();
    let pk = s.issuer_pub.clone();
    let verify = |token: &str| {
        s.run(&[
            "verify",
            "--public-key",
            &pk,
            "--action",
            "read",
            "--resource",
            "/x",
            token,
        ])
    };
    s.write("garbage.tok", "this is not base64!!");
    assert_bad_input(&verify("garbage.tok"), "not URL-safe base64");
    let full = s.read("sub.tok");
    s.write("truncated.tok", &full.trim()[..full.trim().len() / 2]);
    assert_bad_input(&verify("truncated.tok"), "not a valid token");
    s.write("empty.tok", "");
    assert_bad_input(&verify("empty.tok"), "empty");
    assert_bad_input(&verify("missing.tok"), "missing.tok");
    // Wrong root key.
    let r = s.run(&[
        "verify",
        "--public-key",
        &s.sub_pub.clone(),
        "--action",
        "read",
        "--resource",
        "/x",
        "sub.tok",
    ]);
    assert_bad_input(&r, "signature does not verify");
    // Unknown flag: clap's whole message, with the usage (tests/unix.rs).
    let r = s.run(&["verify", "--bogus"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unexpected argument '--bogus'"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Usage: mandate verify"), "{}", r.stderr);
    // Malformed key, pattern, bound, duration, param, resource.
    let issue = |extra: &[&str]| {
        let support = s.support_pub.clone();
        let mut args = vec![
            "issue",
            "--key",
            "issuer.key",
            "--principal",
            "user:alice",
            "--to",
            "a",
            "--to-key",
            &support,
            "--ttl",
            "1h",
        ];
        args.extend_from_slice(extra);
        s.run(&args)
    };
    assert_bad_input(
        &issue(&["--allow", "read:/api/*/orders"]),
        "only allowed as a final",
    );
    assert_bad_input(&issue(&["--allow", "read"]), "ACTION");
    assert_bad_input(
        &issue(&["--allow", "read:/x", "--where", "rows<=ten"]),
        "integer bound",
    );
    let r = s.run(&[
        "issue",
        "--key",
        "issuer.key",
        "--principal",
        "user:alice",
        "--to",
        "a",
        "--to-key",
        &s.support_pub.clone(),
        "--allow",
        "read:/x",
        "--ttl",
        "soon",
    ]);
    assert_bad_input(&r, "duration");
    assert_bad_input(&issue(&[]), "at least one --allow");
    let r = s.run(&[
        "issue",
        "--key",
        "issuer.key",
        "--principal",
        "user:alice",
        "--to",
        "a",
        "--to-key",
        "ed25519/1234",
        "--allow",
        "read:/x",
        "--ttl",
        "1h",
    ]);
    assert_bad_input(&r, "64 hex digits");
    let r = s.run(&[
        "verify",
        "--public-key",
        &pk,
        "--action",
        "read",
        "--resource",
        "/x",
        "--param",
        "noequals",
        "sub.tok",
    ]);
    assert_bad_input(&r, "NAME=VALUE");
    let r = s.run(&[
        "verify",
        "--public-key",
        &pk,
        "--action",
        "read",
        "--resource",
        "/api/customers/../admin",
        "sub.tok",
    ]);
    assert_bad_input(&r, ". or .. segment");
    // A key file that is not a key.
    s.write("bad.key", "hello");
    let r = s.run(&[
        "attenuate",
        "--key",
        "bad.key",
        "--to",
        "x",
        "--to-key",
        &pk,
        "sub.tok",
    ]);
    assert_bad_input(&r, "ed25519-private");
}

#[test]
fn injection_through_flags_stays_data() {
    let s = Scenario::new();
    // An agent id with Datalog syntax is refused outright.
    let r = s.run(&[
        "attenuate",
        "--key",
        "sub.key",
        "--to",
        "x\"), operation(\"delete",
        "--to-key",
        &s.sub_pub.clone(),
        "sub.tok",
    ]);
    assert_bad_input(&r, "agent id");
    // A constraint value with Datalog syntax is a string, nothing more.
    let k = s
        .run(&["keygen", "--out", "mail.key"])
        .stdout
        .trim()
        .to_string();
    let r = s.run(&[
        "attenuate",
        "--key",
        "sub.key",
        "--to",
        "mailer",
        "--to-key",
        &k,
        "--allow",
        "read:/api/customers/*",
        "--where",
        "to=a\"), operation(\"delete",
        "sub.tok",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.write("mail.tok", &r.stdout);
    let deny = s.verify(
        "mail.tok",
        "delete",
        "/api/customers/1",
        &["rows=1", "to=a"],
    );
    assert_eq!(deny.code, 1);
    let allow = s.verify(
        "mail.tok",
        "read",
        "/api/customers/1",
        &["rows=1", "to=a\"), operation(\"delete"],
    );
    assert_eq!(allow.code, 0, "{}", allow.stderr);
}

// Display injection (THREATS.md): strings a token, a request or a
// revocation carries are shown escaped in every text output, so a crafted
// hop cannot draw a fake line, clear the screen or reverse text on the
// screen of whoever runs `verify` or `revocations`. The decision JSON keeps
// the raw strings.

#[test]
fn verify_denial_reasons_show_token_strings_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let c = crafted::write(dir.path());
    let verify = |action: &str, resource: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--public-key",
            &c.root_pub,
            "--action",
            action,
            "--resource",
            resource,
        ];
        args.extend_from_slice(extra);
        args.push(c.token);
        mandate(dir.path(), &args)
    };
    // Denied at hop 1 by its grant: the reason quotes every alternative
    // (the crafted check is Datalog beside it: SPEC §4.4).
    let r = verify("read", "/api/x", &[]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    crafted::assert_escaped(&r.stderr, 0);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("denied: hop 1 (agent \"sub-agent\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(allows list:/api/**)"), "{}", r.stderr);
    // Allowed: the chain line, with the crafted principal escaped.
    let r = verify("list", "/api/x", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    crafted::assert_escaped(&r.stdout, 0);
    assert_eq!(
        r.stdout.trim_end(),
        format!(
            "allowed: \"{}\" → support-agent → sub-agent",
            crafted::EVIL_SHOWN
        )
    );
    // Needs approval: the reason on stderr.
    let args = [
        "verify",
        "--public-key",
        &c.root_pub,
        "--action",
        "pay",
        "--resource",
        "/api/payments/9",
        "--param",
        "amount=150",
        c.approval_token,
    ];
    let r = mandate(dir.path(), &args);
    assert_eq!(r.code, 3, "{} {}", r.stdout, r.stderr);
    crafted::assert_escaped(&r.stderr, 0);
    assert!(
        r.stderr.starts_with("needs approval: hop 1"),
        "{}",
        r.stderr
    );
    // A request's own strings too (a resource may hold an RLO).
    let r = verify("pay", "/api/\u{202e}txt.exe", &["--param", "amount=1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    crafted::assert_escaped(&r.stderr, 0);
    assert!(r.stderr.contains("/api/\\u{202e}txt.exe"), "{}", r.stderr);
    // The JSON keeps the raw strings (JSON escapes them its own way).
    let r = verify("list", "/api/x", &["--json"]);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["chain"]["principal"], crafted::EVIL);
    assert_eq!(j["chain"]["hops"][1]["purpose"], crafted::EVIL);
}

#[test]
fn revocation_listing_shows_reasons_and_authors_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let c = crafted::write(dir.path());
    let r = mandate(
        dir.path(),
        &[
            "revoke",
            "--db",
            "rev",
            "--token",
            c.token,
            "--hop",
            "1",
            "--reason",
            crafted::EVIL,
            "--by",
            crafted::EVIL,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    crafted::assert_escaped(&r.stdout, 0);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let r = mandate(dir.path(), &["revocations", "--db", "rev"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    crafted::assert_escaped(&r.stdout, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one entry and the count:\n{}", r.stdout);
    assert!(
        lines[0].contains(&format!(
            "by \"{}\": \"{}\"",
            crafted::EVIL_SHOWN,
            crafted::EVIL_SHOWN
        )),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "1 entry");
    // As JSON, the raw text.
    let r = mandate(dir.path(), &["revocations", "--db", "rev", "--json"]);
    let j: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(j["reason"], crafted::EVIL);
}

#[test]
fn approve_show_displays_the_verified_chain_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let c = crafted::write(dir.path());
    let request = serde_json::json!({
        "action": "pay",
        "resource": "/api/payments/9",
        "params": {"amount": 150, "memo": crafted::EVIL},
    });
    std::fs::write(dir.path().join("ask.json"), request.to_string()).unwrap();
    let r = mandate(
        dir.path(),
        &[
            "approve",
            "--show",
            "--key",
            c.approver_key,
            "--public-key",
            &c.root_pub,
            "--token",
            c.approval_token,
            "ask.json",
        ],
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    crafted::assert_escaped(&r.stderr, 0);
    let shown = crafted::EVIL_SHOWN;
    for needle in [
        format!("memo = \"{shown}\""),
        format!("on behalf of: \"{shown}\""),
        format!("through:  support-agent (\"accounts payable\") -> sub-agent (\"{shown}\")"),
        "approvers asked: finance (ed25519/".to_string(),
    ] {
        assert!(
            r.stderr.contains(&needle),
            "{needle}\nnot in:\n{}",
            r.stderr
        );
    }
    // Every line is one of the fields `approve` prints.
    for line in r.stderr.lines() {
        assert!(
            line.starts_with("Approval requested") || line.starts_with("  "),
            "a line no field starts: {line:?}\n{}",
            r.stderr
        );
    }
}
