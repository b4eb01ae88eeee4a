//! Live restrictions (SPEC §19) through the `mandate` binary: the seed
//! scenario — a personal assistant's token reads and sends email and
//! schedules meetings; `send` is restricted (reads still allowed, sends
//! denied naming the restriction), scheduling then needs an approval (and
//! passes once approved, once), a sibling delegation of the same principal
//! is untouched, and a lift gives sending back. Then every kind of target
//! (a hop and its subtree, a revocation id, an agent key, a principal),
//! `restrictions` and `inspect --revocation-db` (text, JSON, HTML), the
//! feed (`--nats`: a verifierd following it applies and lifts), and bad
//! input (exit 2, one clear line, nothing written).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{wait_until, Nats, Proc};
use common::{assert_bad_input, mandate, Run, Scenario};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Keys, and the tokens of two agents of user:alice: the assistant (read
/// and send email, schedule meetings) and a sibling, the travel agent.
struct Seed {
    dir: tempfile::TempDir,
    root: String,
    assistant: String,
    alice: String,
}

impl Seed {
    fn new() -> Seed {
        let dir = tempfile::tempdir().unwrap();
        let key = |name: &str| {
            let r = mandate(dir.path(), &["keygen", "--out", name]);
            assert_eq!(r.code, 0, "{}", r.stderr);
            r.stdout.trim().to_string()
        };
        let (root, assistant, travel, alice) = (
            key("root.key"),
            key("assistant.key"),
            key("travel.key"),
            key("alice.key"),
        );
        let s = Seed {
            dir,
            root,
            assistant,
            alice,
        };
        for (file, agent, pubkey) in [
            ("assistant.tok", "assistant", &s.assistant),
            ("travel.tok", "travel-agent", &travel),
        ] {
            let r = s.run(&[
                "issue",
                "--key",
                "root.key",
                "--principal",
                "user:alice",
                "--to",
                agent,
                "--to-key",
                pubkey,
                "--allow",
                "read,send:/api/email/**",
                "--allow",
                "schedule:/api/calendar/**",
                "--ttl",
                "1h",
                "--max-depth",
                "2",
                "--purpose",
                "personal assistant",
            ]);
            assert_eq!(r.code, 0, "{}", r.stderr);
            s.write(file, &r.stdout);
        }
        s
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.d().join(name), content).unwrap();
    }

    fn run(&self, args: &[&str]) -> Run {
        mandate(self.d(), args)
    }

    /// `mandate verify` against the revocation list `revs` (once it
    /// exists) and the replay record `replay`.
    fn verify(&self, token: &str, action: &str, resource: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "verify",
            "--public-key",
            &self.root,
            "--action",
            action,
            "--resource",
            resource,
            "--replay-db",
            "replay",
        ];
        if self.d().join("revs").exists() {
            args.extend(["--revocation-db", "revs"]);
        }
        args.extend_from_slice(extra);
        args.push(token);
        self.run(&args)
    }

    /// `mandate restrict --db revs …`, which must succeed; its output.
    fn restrict(&self, rest: &[&str]) -> Run {
        let mut args = vec!["restrict", "--db", "revs"];
        args.extend_from_slice(rest);
        let r = self.run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r
    }
}

/// The id `restrict` prints on its `  id: ` line.
fn id_of(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("  id: "))
        .unwrap_or_else(|| panic!("no id in {}", r.stdout))
        .to_string()
}

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[test]
fn the_seed_scenario_through_the_cli() {
    let s = Seed::new();
    for (action, resource) in [
        ("read", "/api/email/inbox"),
        ("send", "/api/email/outbox"),
        ("schedule", "/api/calendar/events"),
    ] {
        let r = s.verify("assistant.tok", action, resource, &[]);
        assert_eq!(r.code, 0, "{action}: {}", r.stderr);
    }

    // Take sending away from the assistant's token family.
    let r = s.restrict(&[
        "--token",
        "assistant.tok",
        "--deny",
        "send:/api/email/**",
        "--reason",
        "phishing review",
        "--by",
        "security@acme",
    ]);
    let no_send = id_of(&r);
    for needle in [
        "restricted token family",
        "token family of \"user:alice\"",
        "  deny send:/api/email/**",
        "by \"security@acme\" at ",
        ": \"phishing review\"",
        "expires ",
        &format!("lift it with: mandate restrict --db revs --lift {no_send} --reason"),
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }

    // Reads still allowed; sends denied, naming the restriction.
    let read = s.verify("assistant.tok", "read", "/api/email/inbox", &[]);
    assert_eq!(read.code, 0, "{}", read.stderr);
    let send = s.verify("assistant.tok", "send", "/api/email/outbox", &[]);
    assert_eq!(send.code, 1, "{}", send.stderr);
    for needle in [
        "denied:",
        &format!("live restriction {no_send}"),
        "\"security@acme\"",
        "\"phishing review\"",
        "deny send:/api/email/**",
    ] {
        assert!(send.stderr.contains(needle), "{needle}: {}", send.stderr);
    }
    let send = s.verify("assistant.tok", "send", "/api/email/outbox", &["--json"]);
    assert_eq!(send.code, 1);
    let d = json(&send);
    assert_eq!(d["denial"]["kind"], "restricted", "{d}");
    assert_eq!(d["denial"]["restriction"]["id"], no_send.as_str());
    assert_eq!(d["denial"]["restriction"]["by"], "security@acme");
    assert_eq!(d["denial"]["restriction"]["reason"], "phishing review");
    assert_eq!(
        d["denial"]["restriction"]["rule"],
        "deny send:/api/email/**"
    );
    assert_eq!(d["restrictions"][0], no_send.as_str(), "{d}");

    // A sibling delegation of the same principal is untouched.
    let sibling = s.verify("travel.tok", "send", "/api/email/outbox", &[]);
    assert_eq!(sibling.code, 0, "{}", sibling.stderr);

    // Scheduling now needs alice's approval (on the assistant's root hop).
    let rule = format!("schedule by alice={}", s.alice);
    let r = s.restrict(&[
        "--token",
        "assistant.tok",
        "--hop",
        "0",
        "--require-approval",
        &rule,
        "--reason",
        "calendar spam",
        "--by",
        "security@acme",
    ]);
    let needs = id_of(&r);
    assert!(
        r.stdout.contains("hop 0 (agent \"assistant\")"),
        "{}",
        r.stdout
    );
    let ask = s.verify("assistant.tok", "schedule", "/api/calendar/events", &[]);
    assert_eq!(ask.code, 3, "{}", ask.stderr);
    assert!(ask.stderr.contains("needs approval"), "{}", ask.stderr);
    assert!(ask.stderr.contains(&needs), "{}", ask.stderr);
    let req = s.verify(
        "assistant.tok",
        "schedule",
        "/api/calendar/events",
        &["--json"],
    );
    assert_eq!(req.code, 3);
    assert_eq!(json(&req)["approval"]["approvers"][0]["name"], "alice");
    s.write("req.json", &req.stdout);
    // Alice signs what the verifier asked for (with the library:
    // `mandate approve` does not see a restriction's requirement yet, see
    // `mandate_approve_signs_what_a_restriction_requires`).
    let signed = sign(&s, &json(&req), "alice.key");
    s.write("approval.b64", &signed);
    let attached = s.run(&[
        "attach-approval",
        "--approval",
        "approval.b64",
        "assistant.tok",
    ]);
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    s.write("approved.tok", &attached.stdout);
    let ok = s.verify("approved.tok", "schedule", "/api/calendar/events", &[]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let again = s.verify("approved.tok", "schedule", "/api/calendar/events", &[]);
    assert_eq!(again.code, 1, "single use: {}", again.stderr);
    assert!(again.stderr.contains("already used"), "{}", again.stderr);
    // The sibling schedules without any approval.
    let sibling = s.verify("travel.tok", "schedule", "/api/calendar/events", &[]);
    assert_eq!(sibling.code, 0, "{}", sibling.stderr);

    // Both listed, oldest first.
    let list = s.run(&["restrictions", "--db", "revs"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let at_send = list.stdout.find(&no_send).unwrap();
    let at_needs = list.stdout.find(&needs).unwrap();
    assert!(at_send < at_needs, "{}", list.stdout);
    for needle in [
        "on token family ",
        "  deny send:/api/email/**",
        &format!("  require-approval schedule by alice={}", s.alice),
        "\"phishing review\"",
        "2 restrictions in effect",
    ] {
        assert!(list.stdout.contains(needle), "{needle}: {}", list.stdout);
    }
    let listed = json(&s.run(&["restrictions", "--db", "revs", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["id"], no_send.as_str());
    assert_eq!(listed[0]["state"], "in_effect");
    assert_eq!(listed[0]["restriction"]["target"]["kind"], "token");
    assert_eq!(listed[0]["restriction"]["rules"][0]["rule"], "deny");
    assert_eq!(listed[1]["restriction"]["target"]["kind"], "block");

    // inspect: the restrictions on the hop and what is left after them.
    let ins = s.run(&["inspect", "--revocation-db", "revs", "assistant.tok"]);
    assert_eq!(ins.code, 0, "{}", ins.stderr);
    for needle in [
        &format!("RESTRICTED: live restriction {no_send} on token family"),
        &format!("RESTRICTED: live restriction {needs} on revocation id"),
        "    deny send:/api/email/**",
        "effective after live restrictions: read,send:/api/email/** OR \
         schedule:/api/calendar/** but: deny send:/api/email/**; require-approval schedule by \
         alice=",
    ] {
        assert!(ins.stdout.contains(needle), "{needle}: {}", ins.stdout);
    }
    let ins = json(&s.run(&[
        "inspect",
        "--json",
        "--revocation-db",
        "revs",
        "--html",
        "chain.html",
        "assistant.tok",
    ]));
    let listed = ins["restrictions"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{ins}");
    let family = listed.iter().find(|r| r["id"] == no_send.as_str()).unwrap();
    assert_eq!(family["hop"], 0);
    assert_eq!(family["by"], "security@acme");
    assert_eq!(family["target"]["kind"], "token");
    let after = &ins["effective_after_restrictions"][0];
    assert_eq!(after["denied"][0], "deny send:/api/email/**", "{after}");
    assert!(after["require_approval"][0]
        .as_str()
        .unwrap()
        .starts_with("require-approval schedule by alice="));
    assert_eq!(after["restrictions"].as_array().unwrap().len(), 2);
    let html = std::fs::read_to_string(s.d().join("chain.html")).unwrap();
    for needle in [
        "data-restricted-hop=\"0\"",
        no_send.as_str(),
        "deny send:/api/email/**",
        "&quot;phishing review&quot;",
        "effective after live restrictions",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    // The sibling: nothing binds it.
    let ins = s.run(&["inspect", "--revocation-db", "revs", "travel.tok"]);
    assert!(!ins.stdout.contains("RESTRICTED"), "{}", ins.stdout);

    // Lift: sending works again.
    let lift = s.restrict(&[
        "--lift",
        &no_send,
        "--reason",
        "review done",
        "--by",
        "security@acme",
    ]);
    assert!(
        lift.stdout
            .contains(&format!("lifted restriction {no_send} at ")),
        "{}",
        lift.stdout
    );
    assert!(lift.stdout.contains("\"review done\""), "{}", lift.stdout);
    let send = s.verify("assistant.tok", "send", "/api/email/outbox", &[]);
    assert_eq!(send.code, 0, "{}", send.stderr);
    let list = s.run(&["restrictions", "--db", "revs"]);
    assert!(
        list.stdout.contains("1 restriction in effect"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains(&no_send), "{}", list.stdout);
    let all = s.run(&["restrictions", "--db", "revs", "--all"]);
    for needle in [
        no_send.as_str(),
        "  LIFTED at ",
        "by \"security@acme\": \"review done\"",
        "1 restriction in effect, 1 lifted or expired",
    ] {
        assert!(all.stdout.contains(needle), "{needle}: {}", all.stdout);
    }
    // Lifting again changes nothing, and says so.
    let again = s.restrict(&["--lift", &no_send, "--reason", "again"]);
    assert!(
        again.stdout.contains("was already lifted at ") && again.stdout.contains("review done"),
        "{}",
        again.stdout
    );
    let r = s.restrict(&["--lift", &no_send, "--reason", "again", "--json"]);
    let j = json(&r);
    assert_eq!(j["applied"], "unchanged");
    assert_eq!(j["state"], "lifted");
    assert_eq!(j["lifted"]["reason"], "review done");
}

/// An approval block for the request of a needs-approval decision
/// (`verify --json`), signed with the key in `key_file`.
fn sign(s: &Seed, decision: &Value, key_file: &str) -> String {
    let key = std::fs::read_to_string(s.d().join(key_file)).unwrap();
    let key = mandate_spec::parse_private_key(key.trim()).unwrap();
    let r = &decision["request"];
    let mut request = mandate_spec::Request::new(
        r["action"].as_str().unwrap(),
        r["resource"].as_str().unwrap(),
    );
    request.params = serde_json::from_value(r["params"].clone()).unwrap_or_default();
    mandate_attenuate::approve(
        decision["approval"]["third_party_request"]
            .as_str()
            .unwrap(),
        &request,
        std::time::SystemTime::now() + Duration::from_secs(300),
        &key,
    )
    .unwrap()
}

/// `mandate approve --revocation-db` shows and signs what a restriction
/// requires. Ignored until the verifier's `decide_for_approver` asks for
/// the restrictions' approvals (it returns "allowed" once Datalog allows,
/// before they are looked at: pipeline.rs, `Ok(()) if purpose ==
/// Purpose::Approval`).
#[test]
fn mandate_approve_signs_what_a_restriction_requires() {
    let s = Seed::new();
    let rule = format!("schedule by alice={}", s.alice);
    let r = s.restrict(&[
        "--token",
        "assistant.tok",
        "--require-approval",
        &rule,
        "--reason",
        "calendar spam",
    ]);
    let needs = id_of(&r);
    let req = s.verify(
        "assistant.tok",
        "schedule",
        "/api/calendar/events",
        &["--json"],
    );
    assert_eq!(req.code, 3, "{}", req.stderr);
    s.write("req.json", &req.stdout);
    let signed = s.run(&[
        "approve",
        "--public-key",
        &s.root,
        "--token",
        "assistant.tok",
        "--revocation-db",
        "revs",
        "--key",
        "alice.key",
        "--yes",
        "req.json",
    ]);
    assert_eq!(signed.code, 0, "{}", signed.stderr);
    assert!(signed.stderr.contains(&needs), "why: {}", signed.stderr);
    s.write("approval.b64", &signed.stdout);
    let attached = s.run(&[
        "attach-approval",
        "--approval",
        "approval.b64",
        "assistant.tok",
    ]);
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    s.write("approved.tok", &attached.stdout);
    let ok = s.verify("approved.tok", "schedule", "/api/calendar/events", &[]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[test]
fn every_kind_of_target_binds_what_it_names_and_nothing_else() {
    let s = Seed::new();
    let helper = s.run(&["keygen", "--out", "helper.key"]).stdout;
    let helper = helper.trim();
    let r = s.run(&[
        "attenuate",
        "--key",
        "assistant.key",
        "--to",
        "mail-helper",
        "--to-key",
        helper,
        "--allow",
        "read,send:/api/email/**",
        "--ttl",
        "10m",
        "assistant.tok",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.write("helper.tok", &r.stdout);

    // A hop (--token --hop 1): the helper's hop, not its parent.
    let r = s.restrict(&[
        "--token",
        "helper.tok",
        "--hop",
        "1",
        "--deny",
        "read:/api/email/private/**",
        "--reason",
        "not for helpers",
        "--json",
    ]);
    let j = json(&r);
    let on_hop = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["applied"], "added");
    assert_eq!(j["state"], "in_effect");
    assert_eq!(j["feed_sequence"], Value::Null);
    assert_eq!(j["restriction"]["target"]["kind"], "block");
    assert!(j["restriction"]["expires_at"].is_string(), "{j}");
    assert!(
        j["restriction"]["note"]
            .as_str()
            .unwrap()
            .starts_with("hop 1 (agent \"mail-helper\")"),
        "{j}"
    );
    let denied = s.verify("helper.tok", "read", "/api/email/private/x", &[]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(denied.stderr.contains(&on_hop), "{}", denied.stderr);
    assert!(
        denied.stderr.contains("not for helpers"),
        "{}",
        denied.stderr
    );
    let parent = s.verify("assistant.tok", "read", "/api/email/private/x", &[]);
    assert_eq!(parent.code, 0, "the parent is untouched: {}", parent.stderr);
    let other = s.verify("helper.tok", "read", "/api/email/inbox", &[]);
    assert_eq!(other.code, 0, "out of the rule: {}", other.stderr);
    // inspect shows it on hop 1 only.
    let ins = json(&s.run(&["inspect", "--json", "--revocation-db", "revs", "helper.tok"]));
    assert_eq!(ins["restrictions"][0]["hop"], 1, "{ins}");
    let after = &ins["effective_after_restrictions"];
    assert_eq!(after[0]["restrictions"].as_array().unwrap().len(), 0);
    assert_eq!(after[1]["denied"][0], "deny read:/api/email/private/**");

    // A revocation id (--id): the same hop, named as inspect shows it.
    let hop1 = ins["chain"]["hops"][1]["revocation_id"]
        .as_str()
        .unwrap()
        .to_uppercase();
    let r = s.restrict(&[
        "--id",
        &hop1,
        "--where",
        "rows<=10",
        "--reason",
        "small reads",
    ]);
    let small = id_of(&r);
    assert!(
        r.stdout
            .contains(&format!("restricted revocation id {}", hop1.to_lowercase())),
        "stored lowercase: {}",
        r.stdout
    );
    assert!(r.stdout.contains("  only rows<=10"), "{}", r.stdout);
    assert!(r.stdout.contains("no expiry"), "{}", r.stdout);
    let big = s.verify(
        "helper.tok",
        "read",
        "/api/email/inbox",
        &["--param", "rows=11"],
    );
    assert_eq!(big.code, 1, "{}", big.stderr);
    assert!(big.stderr.contains(&small), "{}", big.stderr);
    let fine = s.verify(
        "helper.tok",
        "read",
        "/api/email/inbox",
        &["--param", "rows=10"],
    );
    assert_eq!(fine.code, 0, "{}", fine.stderr);
    let unknown = s.verify("helper.tok", "read", "/api/email/inbox", &[]);
    assert_eq!(unknown.code, 1, "no rows: fails closed: {}", unknown.stderr);
    s.restrict(&["--lift", &small, "--reason", "done"]);

    // An agent key: every chain through that agent.
    let r = s.restrict(&[
        "--agent-key",
        helper,
        "--deny",
        "send:/api/email/**",
        "--reason",
        "helper compromised?",
    ]);
    let by_key = id_of(&r);
    assert!(
        r.stdout.contains(&format!("restricted agent key {helper}")),
        "{}",
        r.stdout
    );
    let sent = s.verify("helper.tok", "send", "/api/email/outbox", &[]);
    assert_eq!(sent.code, 1, "{}", sent.stderr);
    assert!(sent.stderr.contains(&by_key), "{}", sent.stderr);
    let parent = s.verify("assistant.tok", "send", "/api/email/outbox", &[]);
    assert_eq!(parent.code, 0, "{}", parent.stderr);
    let ins = json(&s.run(&["inspect", "--json", "--revocation-db", "revs", "helper.tok"]));
    let hops: Vec<_> = ins["restrictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["hop"].as_u64()))
        .collect();
    assert!(hops.contains(&(by_key.clone(), Some(1))), "{hops:?}");
    s.restrict(&["--lift", &by_key, "--reason", "false alarm"]);

    // A principal: every token minted for it, whatever the agent.
    let r = s.restrict(&[
        "--principal",
        "user:alice",
        "--deny",
        "schedule:/api/calendar/**",
        "--reason",
        "calendar migration",
    ]);
    let by_principal = id_of(&r);
    assert!(
        r.stdout.contains("restricted principal user:alice"),
        "{}",
        r.stdout
    );
    for token in ["assistant.tok", "travel.tok"] {
        let d = s.verify(token, "schedule", "/api/calendar/events", &[]);
        assert_eq!(d.code, 1, "{token}: {}", d.stderr);
        assert!(d.stderr.contains(&by_principal), "{}", d.stderr);
    }
    let ins = s.run(&["inspect", "--revocation-db", "revs", "helper.tok"]);
    // The principal's restriction reaches the root and binds hop 1 from it.
    assert!(
        ins.stdout.contains(&format!(
            "RESTRICTED: live restriction {by_principal} on principal user:alice, from hop 0"
        )),
        "{}",
        ins.stdout
    );
}

#[test]
fn bad_input_is_refused_with_one_clear_line_and_writes_nothing() {
    let s = Seed::new();
    let restrict = |rest: &[&str]| {
        let mut args = vec!["restrict", "--db", "revs"];
        args.extend_from_slice(rest);
        s.run(&args)
    };
    let block = "ab".repeat(64);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--deny", "send:/x/**", "--reason", "r"],
            "give what to restrict: one of --token FILE [--hop N], --id HEX, --agent-key \
             PUBKEY or --principal P",
        ),
        (
            &[
                "--principal",
                "user:a",
                "--id",
                &block,
                "--deny",
                "send:/x/**",
                "--reason",
                "r",
            ],
            "give exactly one target",
        ),
        (
            &["--principal", "user:a", "--reason", "r"],
            "give at least one rule: --deny, --require-approval, --where, --limit or --budget",
        ),
        (
            &["--principal", "user:a", "--deny", "send", "--reason", "r"],
            "--deny \"send\": ",
        ),
        (
            &[
                "--principal",
                "user:a",
                "--require-approval",
                "schedule by alice=nonsense",
                "--reason",
                "r",
            ],
            "--require-approval \"schedule by alice=nonsense\": ",
        ),
        (
            &[
                "--principal",
                "user:a",
                "--where",
                "rows<<10",
                "--reason",
                "r",
            ],
            "--where \"rows<<10\": ",
        ),
        (
            &[
                "--principal",
                "user:a",
                "--limit",
                "send lots",
                "--reason",
                "r",
            ],
            "--limit \"send lots\": ",
        ),
        (
            &[
                "--principal",
                "user:a",
                "--deny",
                "send:/x/**",
                "--reason",
                "  ",
            ],
            "--reason must say why",
        ),
        (
            &["--id", "xyz", "--deny", "send:/x/**", "--reason", "r"],
            "--id: a revocation id is hex, got \"xyz\"",
        ),
        (
            &["--id", "abcd", "--deny", "send:/x/**", "--reason", "r"],
            "--id: a revocation id is 64 bytes (128 hex digits), got 2",
        ),
        (
            &[
                "--agent-key",
                "ed25519/zz",
                "--deny",
                "send:/x/**",
                "--reason",
                "r",
            ],
            "--agent-key",
        ),
        (
            &[
                "--token",
                "assistant.tok",
                "--hop",
                "3",
                "--deny",
                "send:/x/**",
                "--reason",
                "r",
            ],
            "--hop 3: the token has hops 0 to 0",
        ),
        (
            &["--lift", "not-a-uuid", "--reason", "r"],
            "--lift: a restriction id is a UUID (as `mandate restrictions` lists it), got \
             \"not-a-uuid\"",
        ),
        (
            &[
                "--lift",
                "6f1c3a8e-3b52-4d5e-9a51-0d2f5b8c7e11",
                "--principal",
                "user:a",
                "--reason",
                "r",
            ],
            "--lift names the restriction by its id",
        ),
        (
            &[
                "--principal",
                "user:a",
                "--deny",
                "send:/x/**",
                "--reason",
                "r",
                "--nats",
                "nats://127.0.0.1:9",
            ],
            "--nats publishes signed entries: give the issuer's revocation key",
        ),
    ];
    for (args, needle) in cases {
        let r = restrict(args);
        assert_bad_input(&r, needle);
    }
    assert!(!s.d().join("revs").exists(), "bad input wrote nothing");
    // A rule over the bound of one restriction.
    let mut args = vec!["--principal", "user:a", "--reason", "r"];
    for _ in 0..17 {
        args.extend(["--deny", "send:/x/**"]);
    }
    assert_bad_input(
        &restrict(&args),
        "a restriction carries 1 to 16 rules, got 17",
    );
    assert!(!s.d().join("revs").exists(), "bad input wrote nothing");

    // No list there: `restrictions` says so.
    let r = s.run(&["restrictions", "--db", "revs"]);
    assert_bad_input(&r, "no revocation store at");

    // Lifting an id this list never saw: recorded (a restriction with that
    // id never applies here), with a warning, not an error.
    let unknown = "6f1c3a8e-3b52-4d5e-9a51-0d2f5b8c7e11";
    let r = restrict(&["--lift", &unknown.to_uppercase(), "--reason", "pre-emptive"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "warning: no restriction {unknown} is known in revs"
        )) && r.stderr.contains("will never apply here"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout
            .contains(&format!("lift of restriction {unknown} recorded at ")),
        "{}",
        r.stdout
    );
    let all = s.run(&["restrictions", "--db", "revs", "--all"]);
    assert!(
        all.stdout.contains(&format!(
            "{unknown}  (never received here: a restriction with this id will never apply)"
        )),
        "{}",
        all.stdout
    );
    let none = s.run(&["restrictions", "--db", "revs"]);
    assert_eq!(none.stdout, "0 restrictions in effect\n");
    let listed = json(&s.run(&["restrictions", "--db", "revs", "--json", "--all"]));
    assert_eq!(listed[0]["state"], "lift_only", "{listed}");
}

/// `mandate restrict --db local --nats URL` signed with the issuer's key
/// (revocation key 0, as `Proc::verifierd` trusts it), then `rest`.
fn restrict_feed(s: &Scenario, url: &str, rest: &[&str]) -> Value {
    let mut args = vec![
        "restrict",
        "--db",
        "local",
        "--nats",
        url,
        "--revocation-key-file",
        "issuer.key",
        "--json",
    ];
    args.extend_from_slice(rest);
    let r = s.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = json(&r);
    assert!(j["feed_sequence"].as_u64().is_some(), "{j}");
    j
}

/// The state of restriction `id` in the list at `db` (read beside the
/// verifier holding it), if it is there.
fn state_in(s: &Scenario, db: &str, id: &str) -> Option<String> {
    let r = s.run(&["restrictions", "--db", db, "--all", "--json"]);
    let listed: Value = serde_json::from_str(&r.stdout).ok()?;
    listed
        .as_array()?
        .iter()
        .find(|l| l["id"] == id)
        .map(|l| l["state"].as_str().unwrap_or("").to_string())
}

#[test]
fn a_restriction_published_to_the_feed_reaches_a_verifiers_list_and_so_does_its_lift() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let v = Proc::verifierd(&s.issuer_pub, &s.path("verifier"), &url, &[]);
    let token = s.read("support.tok");
    wait_until("the verifier, fresh", Duration::from_secs(20), || {
        v.authorize(&token).0 == 200
    });
    let j = restrict_feed(
        &s,
        &url,
        &[
            "--token",
            "support.tok",
            "--deny",
            "read:/api/customers/*",
            "--reason",
            "data leak review",
        ],
    );
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["applied"], "added");
    wait_until(
        "the restriction at the verifier",
        Duration::from_secs(20),
        || state_in(&s, "verifier", &id).as_deref() == Some("in_effect"),
    );
    let j = restrict_feed(&s, &url, &["--lift", &id, "--reason", "review done"]);
    assert_eq!(j["applied"], "lifted");
    wait_until("the lift at the verifier", Duration::from_secs(20), || {
        state_in(&s, "verifier", &id).as_deref() == Some("lifted")
    });
}

/// A verifier following the feed decides with the restrictions it took in
/// (regression: `FeedList` used to apply none, fixed at ac4fecf).
#[test]
fn a_verifier_following_the_feed_applies_a_published_restriction_until_lifted() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let v = Proc::verifierd(&s.issuer_pub, &s.path("verifier"), &url, &[]);
    let token = s.read("support.tok");
    wait_until("the verifier, fresh", Duration::from_secs(20), || {
        v.authorize(&token).0 == 200
    });
    let j = restrict_feed(
        &s,
        &url,
        &[
            "--token",
            "support.tok",
            "--deny",
            "read:/api/customers/*",
            "--reason",
            "data leak review",
        ],
    );
    let id = j["id"].as_str().unwrap().to_string();
    wait_until(
        "the restriction at the verifier",
        Duration::from_secs(20),
        || v.authorize(&token).0 == 403,
    );
    let (_, d) = v.authorize(&token);
    assert_eq!(d["denial"]["kind"], "restricted", "{d}");
    assert_eq!(d["denial"]["restriction"]["id"], id.as_str());
    assert_eq!(d["denial"]["restriction"]["reason"], "data leak review");
    restrict_feed(&s, &url, &["--lift", &id, "--reason", "review done"]);
    wait_until("the lift at the verifier", Duration::from_secs(20), || {
        v.authorize(&token).0 == 200
    });
}
