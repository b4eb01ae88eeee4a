//! `mandate request-approval` against a real `mandate serve` holding the
//! finance approver's key: the payments agent files a payment of 150 with
//! its own token and waits; the finance desk approves it over HTTP; the
//! token printed carries the approval and is allowed once (a second use is
//! a replay). A denial reaches the agent with the approver's reason (exit
//! 1, escaped); a wait that ends first says "still pending" with the id
//! (exit 3) and can be resumed with `--id`; filing from a needs-approval
//! decision (`mandate verify --json`); a payment that needs no approval, or
//! that the token does not allow, is not filed; bad input is refused.
//!
//! Positions (THREATS.md): the person being misled — what the service
//! sends (the approver's name and reason) is shown escaped; the approved
//! agent — the approval is spent by the verifier, once.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::payments::Payments;
use common::{assert_bad_input, mandate, Run};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// `mandate request-approval` for the payments agent, filing a payment of
/// `amount`, with `extra` flags.
fn args<'a>(p: &'a Payments, amount: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "request-approval".into(),
        "--service".into(),
        p.url(),
        "--token".into(),
        "pay.tok".into(),
    ];
    if !amount.is_empty() {
        for s in [
            "--action",
            "pay",
            "--resource",
            "/api/payments",
            "--param",
            &format!("amount={amount}"),
        ] {
            a.push(s.into());
        }
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Starts `mandate request-approval … --wait`, reads the id it filed from
/// its first line on standard error, lets `decide` act on it, and returns
/// how it ended.
fn waiting(p: &Payments, args: Vec<String>, decide: impl FnOnce(&str)) -> (String, Run) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(&args)
        .current_dir(p.d())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let id = first
        .strip_prefix("approval requested: ")
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("said {first:?}"))
        .to_string();
    decide(&id);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (
        id,
        Run {
            code,
            stdout,
            stderr: first + &rest,
        },
    )
}

/// `mandate verify` of a payment of `amount` with `token`, approvals spent
/// in the test's replay record.
fn pay(p: &Payments, token: &str, amount: &str) -> Run {
    std::fs::write(p.d().join("try.tok"), token).unwrap();
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
            &format!("amount={amount}"),
            "try.tok",
        ],
    )
}

#[test]
fn the_agent_asks_waits_and_gets_a_token_that_pays_once() {
    let p = Payments::start();
    assert_eq!(pay(&p, &p.pay, "150").code, 3, "needs approval first");
    let (id, run) = waiting(&p, args(&p, "150", &["--wait", "1m"]), |id| {
        let record = p.approve(id);
        assert_eq!(record["status"], "approved", "{record}");
    });
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("approved by ops:fin via finance-desk as finance"),
        "{}",
        run.stderr
    );
    let approved = run.stdout.trim();
    assert_ne!(approved, p.pay.trim());
    // The approval is the one the service signed for this request.
    assert_eq!(p.record(&id)["status"], "approved");
    let first = pay(&p, approved, "150");
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let again = pay(&p, approved, "150");
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("was already used: approvals are single-use"),
        "{}",
        again.stderr
    );
    // Another amount is another request: the approval does not cover it.
    assert_ne!(pay(&p, approved, "151").code, 0);
}

#[test]
fn out_writes_the_approved_token_readable_by_its_owner_only() {
    let p = Payments::start();
    let (_, run) = waiting(
        &p,
        args(&p, "200", &["--wait", "1m", "--out", "approved.tok"]),
        |id| {
            p.approve(id);
        },
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.contains("approved.tok"), "{}", run.stderr);
    let token = std::fs::read_to_string(p.d().join("approved.tok")).unwrap();
    assert_eq!(pay(&p, &token, "200").code, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.d().join("approved.tok"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_denial_reaches_the_agent_with_the_approvers_reason_escaped() {
    let p = Payments::start();
    let (id, run) = waiting(&p, args(&p, "150", &["--wait", "1m"]), |id| {
        p.deny(id, "supplier not on the list\u{1b}[31m\nok");
    });
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "no token: {}", run.stdout);
    assert!(
        run.stderr.contains("denied by ops:fin via finance-desk"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("supplier not on the list"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&id), "{}", run.stderr);
    // What the service sent is text, not terminal control.
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 2, "{:?}", run.stderr);
}

#[test]
fn a_wait_that_ends_first_says_still_pending_and_can_be_resumed() {
    let p = Payments::start();
    let run = mandate(p.d(), &as_str(&args(&p, "300", &["--wait", "1s"])));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("still pending (id "), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    let pending = p.pending();
    assert_eq!(pending.len(), 1);
    let id = pending.iter().next().unwrap().clone();
    assert!(run.stderr.contains(&id), "{}", run.stderr);
    // Resumed: nothing filed again, the same request waited for.
    let (resumed, run) = waiting(&p, args(&p, "", &["--id", &id, "--wait", "1m"]), |_| {
        assert_eq!(p.pending().len(), 1, "nothing filed again");
        p.approve(&id);
    });
    assert_eq!(resumed, id);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(pay(&p, run.stdout.trim(), "300").code, 0);
}

#[test]
fn without_wait_the_id_is_printed_and_a_decision_json_can_be_filed() {
    let p = Payments::start();
    let run = mandate(p.d(), &as_str(&args(&p, "400", &[])));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.stdout.trim().to_string();
    assert_eq!(p.record(&id)["status"], "pending");
    assert_eq!(p.record(&id)["request"]["params"]["amount"], 400);
    // From a needs-approval decision: only its request is read.
    let verify_json = mandate(
        p.d(),
        &[
            "verify",
            "--public-key",
            &p.root,
            "--json",
            "--action",
            "pay",
            "--resource",
            "/api/payments",
            "--param",
            "amount=450",
            "pay.tok",
        ],
    );
    assert_eq!(verify_json.code, 3, "{}", verify_json.stderr);
    std::fs::write(p.d().join("decision.json"), &verify_json.stdout).unwrap();
    let before: HashSet<String> = p.pending();
    let run = mandate(
        p.d(),
        &as_str(&args(&p, "", &["--decision", "decision.json"])),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.stdout.trim().to_string();
    assert!(!before.contains(&id));
    assert_eq!(p.record(&id)["request"]["params"]["amount"], 450);
}

#[test]
fn nothing_is_filed_that_needs_no_approval_or_is_not_allowed() {
    let p = Payments::start();
    let run = mandate(p.d(), &as_str(&args(&p, "50", &["--wait", "5s"])));
    assert_bad_input(&run, "nothing to approve");
    assert!(run.stderr.contains("needs no approval"), "{}", run.stderr);
    let run = mandate(p.d(), &as_str(&args(&p, "5000", &["--wait", "5s"])));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("denied: the token does not allow this request"),
        "{}",
        run.stderr
    );
    assert!(p.pending().is_empty());
}

#[test]
fn bad_input_is_refused_with_one_line() {
    let p = Payments::start();
    for (extra, service, needle) in [
        (vec!["--wait", "25h"], p.url(), "--wait: from 1s to 24h"),
        (vec!["--wait", "0s"], p.url(), "--wait"),
        (vec!["--wait", "soon"], p.url(), "--wait"),
        (
            vec![],
            "ftp://issuer.example.com".to_string(),
            "expected https://HOST[:PORT] or http://HOST:PORT",
        ),
        (vec![], "issuer:8080".to_string(), "expected https://"),
    ] {
        let mut a = args(&p, "150", &extra);
        a[2] = service;
        let run = mandate(p.d(), &as_str(&a));
        assert_bad_input(&run, needle);
    }
    let mut a = args(&p, "150", &[]);
    a.push("--param".into());
    a.push("amount=2".into());
    assert_bad_input(&mandate(p.d(), &as_str(&a)), "amount");
    // An id that is not one names nothing.
    let run = mandate(
        p.d(),
        &as_str(&args(&p, "", &["--id", "../../v1/tokens", "--wait", "5s"])),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not an id"), "{}", run.stderr);
    // clap: --id needs --wait; --out needs --wait.
    let run = mandate(p.d(), &as_str(&args(&p, "150", &["--out", "x.tok"])));
    assert_eq!(run.code, 2);
    assert!(p.pending().is_empty(), "nothing filed");
}

fn as_str(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}
