//! Human approval and holder binding through the `mandate` binary, as a
//! payments agent, a finance approver and an operator use them: the seed
//! scenario (pay 50: exit 0; 150: exit 3, needs approval; 1500: exit 1), the
//! approver shown the request and chain, signing, attaching, one use, the
//! replay denied; refusals (a key that is not an approver, an edited
//! request, no terminal without --yes); proofs of possession made by
//! `mandate prove` or `--proof-key`, missing, replayed and from another key;
//! a proof covers the audience and the whole target (path and query).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{mandate, mandate_stdin, Run};
use std::path::Path;

struct Seed {
    dir: tempfile::TempDir,
    root: String,
    agent: String,
    finance: String,
}

impl Seed {
    fn new(extra: &[&str]) -> Seed {
        let dir = tempfile::tempdir().unwrap();
        let key = |name: &str| {
            mandate(dir.path(), &["keygen", "--out", name])
                .stdout
                .trim()
                .to_string()
        };
        let (root, agent, finance) = (key("root.key"), key("agent.key"), key("finance.key"));
        let rule = format!("pay when amount>100 by finance={finance}");
        let mut args = vec![
            "issue",
            "--key",
            "root.key",
            "--principal",
            "org:acme",
            "--to",
            "payments-agent",
            "--to-key",
            &agent,
            "--allow",
            "pay:/api/payments",
            "--where",
            "amount<=1000",
            "--approval",
            &rule,
            "--ttl",
            "1h",
            "--purpose",
            "pay suppliers",
        ];
        args.extend_from_slice(extra);
        let r = mandate(dir.path(), &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::write(dir.path().join("pay.tok"), &r.stdout).unwrap();
        Seed {
            dir,
            root,
            agent,
            finance,
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// `mandate approve` with the root key and the payments token.
    fn approve_args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["approve", "--public-key", &self.root, "--token", "pay.tok"];
        args.extend_from_slice(rest);
        args
    }

    fn verify(&self, token: &str, amount: i64, extra: &[&str]) -> Run {
        let amount = format!("amount={amount}");
        let mut args = vec![
            "verify",
            "--public-key",
            &self.root,
            "--action",
            "pay",
            "--resource",
            "/api/payments",
            "--param",
            &amount,
            "--replay-db",
            "replay",
        ];
        args.extend_from_slice(extra);
        args.push(token);
        mandate(self.d(), &args)
    }
}

#[test]
fn the_seed_scenario_through_the_cli() {
    let s = Seed::new(&[]);
    assert_eq!(s.verify("pay.tok", 50, &[]).code, 0);
    let big = s.verify("pay.tok", 1500, &[]);
    assert_eq!(big.code, 1);
    assert!(
        big.stderr.contains("amount=1500 violates amount<=1000"),
        "{}",
        big.stderr
    );
    let ask = s.verify("pay.tok", 150, &[]);
    assert_eq!(ask.code, 3, "{}", ask.stderr);
    assert!(ask.stderr.contains("needs approval"), "{}", ask.stderr);
    assert!(ask.stderr.contains("finance"), "{}", ask.stderr);

    // What the approver receives.
    let req = s.verify("pay.tok", 150, &["--json"]);
    assert_eq!(req.code, 3);
    let json: serde_json::Value = serde_json::from_str(&req.stdout).unwrap();
    assert_eq!(json["decision"], "needs_approval");
    assert_eq!(json["denial"]["kind"], "needs_approval");
    assert_eq!(json["approval"]["approvers"][0]["name"], "finance");
    std::fs::write(s.d().join("req.json"), &req.stdout).unwrap();

    // --show: the request and the chain, nothing signed.
    let shown = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--show", "req.json"]),
    );
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.is_empty());
    for needle in [
        "pay /api/payments",
        "amount = 150",
        "on behalf of: org:acme",
        "payments-agent (\"pay suppliers\")",
    ] {
        assert!(shown.stderr.contains(needle), "{needle}: {}", shown.stderr);
    }
    let signed = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--yes", "--valid", "5m", "req.json"]),
    );
    assert_eq!(signed.code, 0, "{}", signed.stderr);
    std::fs::write(s.d().join("approval.b64"), &signed.stdout).unwrap();
    let attached = mandate(
        s.d(),
        &["attach-approval", "--approval", "approval.b64", "pay.tok"],
    );
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    std::fs::write(s.d().join("approved.tok"), &attached.stdout).unwrap();
    let inspect = mandate(s.d(), &["inspect", "approved.tok"]);
    assert!(
        inspect
            .stdout
            .contains(&format!("approval (block 1): signed by {}", s.finance)),
        "{}",
        inspect.stdout
    );
    assert!(inspect
        .stdout
        .contains("approval by finance when amount>100"));

    let used = s.verify("approved.tok", 150, &[]);
    assert_eq!(used.code, 0, "{}", used.stderr);
    let replay = s.verify("approved.tok", 150, &[]);
    assert_eq!(replay.code, 1);
    assert!(replay.stderr.contains("already used"), "{}", replay.stderr);
    let other = s.verify("approved.tok", 151, &[]);
    assert_eq!(other.code, 1);
    assert!(other.stderr.contains("another request"), "{}", other.stderr);
    // Decided as of after its 5 minutes: expired.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::minutes(6))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expired = s.verify("approved.tok", 150, &["--time", &later]);
    assert_eq!(expired.code, 1);
    assert!(expired.stderr.contains("expired"), "{}", expired.stderr);
}

#[test]
fn an_approval_signed_by_another_key_is_denied_through_the_cli() {
    let s = Seed::new(&[]);
    // `mandate approve` refuses a key the request does not ask for, so the
    // forged block is made with the library, as an attacker would.
    let token = std::fs::read_to_string(s.d().join("pay.tok")).unwrap();
    let token = mandate_spec::token_from_text(&token).unwrap();
    let tpr = biscuit_auth::UnverifiedBiscuit::from(&token)
        .unwrap()
        .third_party_request()
        .unwrap()
        .serialize_base64()
        .unwrap();
    let req = mandate_spec::Request::new("pay", "/api/payments").param("amount", 150);
    let mallory = biscuit_auth::KeyPair::new();
    let block = mandate_attenuate::approve(
        &tpr,
        &req,
        std::time::SystemTime::now() + std::time::Duration::from_secs(60),
        &mallory,
    )
    .unwrap();
    std::fs::write(s.d().join("forged.b64"), block).unwrap();
    let forged = mandate(
        s.d(),
        &["attach-approval", "--approval", "forged.b64", "pay.tok"],
    );
    std::fs::write(s.d().join("forged.tok"), &forged.stdout).unwrap();
    let r = s.verify("forged.tok", 150, &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("needs one from finance"), "{}", r.stderr);
}

#[test]
fn the_approver_refuses_what_it_should_not_sign() {
    let s = Seed::new(&[]);
    let req = s.verify("pay.tok", 150, &["--json"]);
    std::fs::write(s.d().join("req.json"), &req.stdout).unwrap();
    // Not one of the approvers asked for.
    let r = mandate(
        s.d(),
        &s.approve_args(&["--key", "agent.key", "--yes", "req.json"]),
    );
    common::assert_bad_input(&r, "is not one of the approvers");
    // The request edited after the verifier asked: it is decided again from
    // the token, and an amount that needs no approval gets none.
    let edited = req.stdout.replace("\"amount\": 150", "\"amount\": 15");
    assert_ne!(edited, req.stdout);
    std::fs::write(s.d().join("edited.json"), edited).unwrap();
    let r = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--yes", "edited.json"]),
    );
    common::assert_bad_input(&r, "needs no approval");
    // Beyond the grant, an approval cannot help: nothing is signed.
    let beyond = req.stdout.replace("\"amount\": 150", "\"amount\": 5000");
    std::fs::write(s.d().join("beyond.json"), beyond).unwrap();
    let r = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--yes", "beyond.json"]),
    );
    common::assert_bad_input(&r, "does not allow this request");
    assert!(r.stdout.is_empty());
    // No terminal, no --yes: no approval.
    let r = mandate_stdin(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "req.json"]),
        Some(""),
    );
    common::assert_bad_input(&r, "pass --yes");
    // Not a decision at all.
    std::fs::write(s.d().join("junk.json"), "{}").unwrap();
    let r = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--yes", "junk.json"]),
    );
    common::assert_bad_input(&r, "not a request or a needs-approval decision");
    // A bad rule when minting.
    let r = mandate(
        s.d(),
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "x",
            "--to",
            "a",
            "--to-key",
            &s.agent.clone(),
            "--allow",
            "pay:/p",
            "--approval",
            "pay when memo=x by f=ed25519/00",
            "--ttl",
            "1h",
        ],
    );
    assert_eq!(r.code, 2);
}

#[test]
fn holder_binding_through_the_cli() {
    let s = Seed::new(&["--require-proof"]);
    let missing = s.verify("pay.tok", 50, &[]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("requires proof of possession"),
        "{}",
        missing.stderr
    );
    let ok = s.verify(
        "pay.tok",
        50,
        &[
            "--proof-key",
            "agent.key",
            "--method",
            "POST",
            "--audience",
            PAY,
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    // A proof made with `mandate prove`, used twice.
    std::fs::write(s.d().join("body.json"), r#"{"amount": 50}"#).unwrap();
    let proof = mandate(
        s.d(),
        &[
            "prove",
            "--key",
            "agent.key",
            "--method",
            "POST",
            "--url",
            "https://pay.example.com:443/api/payments",
            "--body",
            "body.json",
            "pay.tok",
        ],
    );
    assert_eq!(proof.code, 0, "{}", proof.stderr);
    let proof = proof.stdout.trim().to_string();
    assert!(proof.starts_with("v=2;t="), "{proof}");
    let with = |extra: &[&str]| {
        let mut args = vec![
            "--proof",
            proof.as_str(),
            "--method",
            "POST",
            "--body",
            "body.json",
            "--audience",
            PAY,
        ];
        args.extend_from_slice(extra);
        s.verify("pay.tok", 50, &args)
    };
    assert_eq!(with(&[]).code, 0);
    let replayed = with(&[]);
    assert_eq!(replayed.code, 1);
    assert!(replayed.stderr.contains("replayed"), "{}", replayed.stderr);
    // Another key than the holder's.
    let stolen = s.verify(
        "pay.tok",
        50,
        &["--proof-key", "finance.key", "--audience", PAY],
    );
    assert_eq!(stolen.code, 1);
    assert!(
        stolen.stderr.contains("not signed by the final holder"),
        "{}",
        stolen.stderr
    );
    // A proof that is not one.
    let junk = s.verify("pay.tok", 50, &["--proof", "t=1"]);
    common::assert_bad_input(&junk, "--proof");
    // Stale: made now, presented to a verifier deciding 10 minutes later.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let stale = s.verify(
        "pay.tok",
        50,
        &[
            "--proof-key",
            "agent.key",
            "--time",
            &later,
            "--audience",
            PAY,
        ],
    );
    assert_eq!(stale.code, 1);
    assert!(stale.stderr.contains("stale"), "{}", stale.stderr);
}

/// The audience of the payments API in these tests.
const PAY: &str = "https://pay.example.com";

#[test]
fn a_proof_covers_the_audience_and_the_whole_target_through_the_cli() {
    let s = Seed::new(&["--require-proof"]);
    let prove = |args: &[&str]| {
        let mut all = vec!["prove", "--key", "agent.key", "--method", "pay"];
        all.extend_from_slice(args);
        all.push("pay.tok");
        let r = mandate(s.d(), &all);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_string()
    };
    let check = |proof: &str, extra: &[&str]| {
        let mut args = vec!["--proof", proof];
        args.extend_from_slice(extra);
        s.verify("pay.tok", 50, &args)
    };
    // Made for ?amount=5, presented for ?amount=500: refused.
    let five = prove(&["--url", "https://pay.example.com/api/payments?amount=5"]);
    let r = check(
        &five,
        &["--audience", PAY, "--target", "/api/payments?amount=500"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not signed by the final holder"),
        "{}",
        r.stderr
    );
    // Presented at another audience: refused.
    let r = check(
        &five,
        &[
            "--audience",
            "https://other.example.com",
            "--target",
            "/api/payments?amount=5",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("other.example.com"), "{}", r.stderr);
    // Without an audience the verifier refuses it, saying why.
    let r = check(&five, &["--target", "/api/payments?amount=5"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no configured audience"), "{}", r.stderr);
    // --audience and --target instead of --url; presented as made: allowed.
    let exact = prove(&["--audience", PAY, "--target", "/api/payments?amount=5"]);
    let r = check(
        &exact,
        &["--audience", PAY, "--target", "/api/payments?amount=5"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A header without v=2 is a version 1 proof: refused as bad input.
    let v1 = prove(&["--url", "https://pay.example.com/api/payments"]).replacen("v=2;", "", 1);
    common::assert_bad_input(&check(&v1, &["--audience", PAY]), "version 1");
    // prove needs a URL, or an audience and a target; audiences are origins.
    let r = mandate(
        s.d(),
        &["prove", "--key", "agent.key", "--method", "POST", "pay.tok"],
    );
    assert_eq!(r.code, 2);
    let r = mandate(
        s.d(),
        &[
            "prove",
            "--key",
            "agent.key",
            "--method",
            "POST",
            "--url",
            "ftp://pay.example.com/x",
            "pay.tok",
        ],
    );
    common::assert_bad_input(&r, "--url");
    let r = s.verify("pay.tok", 50, &["--proof-key", "agent.key"]);
    common::assert_bad_input(&r, "--proof-key needs --audience");
}

#[test]
fn approve_shows_only_what_it_verified_from_the_token() {
    // Regression (issue 12): `mandate approve` showed the principal, agents
    // and purposes of the JSON it was handed, and signed the third-party
    // request that JSON carried: an approver could be shown one chain and
    // sign for another. Now the JSON contributes the request alone; the
    // chain shown and the block signed come from the token, verified.
    let s = Seed::new(&[]);
    let req = s.verify("pay.tok", 150, &["--json"]);
    assert_eq!(req.code, 3, "{}", req.stderr);
    let mut forged: serde_json::Value = serde_json::from_str(&req.stdout).unwrap();
    forged["chain"]["principal"] = "user:trusted-ceo".into();
    forged["chain"]["hops"][0]["agent"] = "audited-bot".into();
    forged["chain"]["hops"][0]["purpose"] = "routine refund".into();
    forged["denial"]["reason"] = "pre-approved by policy".into();
    forged["approval"]["third_party_request"] = "AAAA".into();
    std::fs::write(s.d().join("forged.json"), forged.to_string()).unwrap();
    let shown = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--show", "forged.json"]),
    );
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for needle in [
        "chain verified with the root key",
        "on behalf of: org:acme",
        "payments-agent (\"pay suppliers\")",
        "needs an approval by finance",
    ] {
        assert!(shown.stderr.contains(needle), "{needle}: {}", shown.stderr);
    }
    for lie in [
        "trusted-ceo",
        "audited-bot",
        "routine refund",
        "pre-approved",
    ] {
        assert!(!shown.stderr.contains(lie), "{lie}: {}", shown.stderr);
    }
    // Signed from the forged JSON, the block still extends the real token
    // and works once.
    let signed = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--yes", "forged.json"]),
    );
    assert_eq!(signed.code, 0, "{}", signed.stderr);
    std::fs::write(s.d().join("approval.b64"), &signed.stdout).unwrap();
    let attached = mandate(
        s.d(),
        &["attach-approval", "--approval", "approval.b64", "pay.tok"],
    );
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    std::fs::write(s.d().join("approved.tok"), &attached.stdout).unwrap();
    assert_eq!(s.verify("approved.tok", 150, &[]).code, 0);

    // A token the root key does not verify is refused before anything is shown.
    let other = mandate(s.d(), &["keygen", "--out", "other.key"]);
    let other_pub = other.stdout.trim().to_string();
    let r = mandate(
        s.d(),
        &[
            "approve",
            "--public-key",
            &other_pub,
            "--token",
            "pay.tok",
            "--key",
            "finance.key",
            "--show",
            "forged.json",
        ],
    );
    common::assert_bad_input(&r, "does not verify with this root key");
    assert!(!r.stderr.contains("on behalf of"), "{}", r.stderr);
}

#[test]
fn an_approver_can_approve_for_a_holder_bound_token() {
    // Regression (issue 12 review): `mandate approve` decided the request
    // again without the holder's proof of possession, which the approver
    // cannot make, so a holder-bound token could never be approved. The
    // approver's view assumes the proof; the request still needs it.
    let s = Seed::new(&["--require-proof"]);
    let req = s.verify(
        "pay.tok",
        150,
        &[
            "--proof-key",
            "agent.key",
            "--method",
            "POST",
            "--audience",
            PAY,
            "--json",
        ],
    );
    assert_eq!(req.code, 3, "{}", req.stderr);
    std::fs::write(s.d().join("req.json"), &req.stdout).unwrap();
    let signed = mandate(
        s.d(),
        &s.approve_args(&["--key", "finance.key", "--yes", "req.json"]),
    );
    assert_eq!(signed.code, 0, "{}", signed.stderr);
    std::fs::write(s.d().join("approval.b64"), &signed.stdout).unwrap();
    let attached = mandate(
        s.d(),
        &["attach-approval", "--approval", "approval.b64", "pay.tok"],
    );
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    std::fs::write(s.d().join("approved.tok"), &attached.stdout).unwrap();
    // Without the holder's proof, the approval alone does not pass.
    let no_proof = s.verify("approved.tok", 150, &[]);
    assert_eq!(no_proof.code, 1, "{}", no_proof.stderr);
    assert!(
        no_proof.stderr.contains("proof of possession"),
        "{}",
        no_proof.stderr
    );
    let ok = s.verify(
        "approved.tok",
        150,
        &[
            "--proof-key",
            "agent.key",
            "--method",
            "POST",
            "--audience",
            PAY,
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}
