//! Live restrictions through the issuer service (issue 18; SPEC §19,
//! SERVICE.md S3), with real `mandate serve` processes over HTTP.
//!
//! - The seed scenario, distributed: a personal assistant's token reads and
//!   sends email and schedules meetings; `POST /v1/restrictions` denies
//!   `send` on its hop (the issuer's embedded verifier and a `verifierd` on
//!   the feed deny it naming the restriction; reads still pass), then
//!   requires alice's approval to schedule (needs_approval, filed and
//!   approved at the service's desk, allowed once, the replay denied); a
//!   sibling token of the same principal is untouched; the lift makes
//!   sending work again; the audit log lists the restriction.
//! - An admin token narrowed to one principal restricts and lifts only that
//!   principal's tokens: every other selector reaching another principal's
//!   tokens (token, hop, family, root revocation id, agent key, principal)
//!   is refused, with the denial's reason.
//! - Bad input is 400 with a clear message, never a panic; retries by id.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "issuer_common/mod.rs"]
mod issuer;

use biscuit_auth::KeyPair;
use common::mandate;
use common::procs::{http, wait_until, Nats, Proc};
use issuer::{admin_token, write_key};
use mandate_spec::format_public_key;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

const EMAIL: &str = "/api/email/inbox";
const OUTBOX: &str = "/api/email/outbox";
const CALENDAR: &str = "/api/calendar/team";

/// `mandate serve` on a loopback port with the data directory `data`, root
/// key 0 in `root.key` (also its revocation key), approver `alice` and an
/// audit log; with `nats`, publishing to and following the feed.
fn serve(dir: &Path, data: &str, nats: Option<&str>) -> Proc {
    let mut args: Vec<OsString> = Vec::new();
    let root = format!("0={}", dir.join("root.key").display());
    let alice = format!("alice={}", dir.join("alice.key").display());
    for a in [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir.join(data).display().to_string(),
        "--root-key",
        &root,
        "--approver",
        &alice,
        "--audit-key",
        &dir.join("audit.key").display().to_string(),
    ] {
        args.push(a.into());
    }
    if let Some(url) = nats {
        for a in [
            "--revocation-key-file",
            &root,
            "--nats",
            url,
            "--staleness",
            "2s",
        ] {
            args.push(a.into());
        }
    }
    Proc::start(args)
}

/// Keys in `dir`: root (returned), approver alice (returned), audit.
fn keys(dir: &Path) -> (KeyPair, KeyPair) {
    let root = KeyPair::new();
    let alice = KeyPair::new();
    write_key(&dir.join("root.key"), &root);
    write_key(&dir.join("alice.key"), &alice);
    write_key(&dir.join("audit.key"), &KeyPair::new());
    (root, alice)
}

fn post(p: &Proc, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    http(&p.addr, "POST", path, &body.to_string(), bearer)
}

fn get(p: &Proc, path: &str, bearer: &str) -> (u16, Value) {
    http(&p.addr, "GET", path, "", Some(bearer))
}

/// Mints a token for `principal` held by `agent`: reads and sends email,
/// schedules meetings.
fn mint(p: &Proc, admin: &str, principal: &str, agent: &str) -> Value {
    let (status, minted) = post(
        p,
        "/v1/tokens",
        Some(admin),
        &json!({
            "principal": principal, "agent": agent,
            "agent_key": format_public_key(&KeyPair::new().public()),
            "allow": ["read,send:/api/email/**", "schedule:/api/calendar/**"],
            "ttl": "1h",
        }),
    );
    assert_eq!(status, 201, "{minted}");
    minted
}

fn token(minted: &Value) -> String {
    minted["token"].as_str().unwrap().to_string()
}

/// `POST /v1/authorize`: (status, decision).
fn decide(p: &Proc, token: &str, action: &str, resource: &str) -> (u16, Value) {
    post(
        p,
        "/v1/authorize",
        None,
        &json!({ "token": token, "action": action, "resource": resource, "params": {} }),
    )
}

fn allowed(p: &Proc, token: &str, action: &str, resource: &str) -> bool {
    decide(p, token, action, resource).0 == 200
}

fn kind(decision: &Value) -> &str {
    decision["denial"]["kind"].as_str().unwrap_or("")
}

/// Asserts `decision` is a `restricted` denial naming restriction `id`
/// (who, when, why).
fn assert_restricted(decision: &Value, id: &str, rule: &str) {
    assert_eq!(kind(decision), "restricted", "{decision}");
    let r = &decision["denial"]["restriction"];
    assert_eq!(r["id"], id, "{decision}");
    assert_eq!(r["rule"], rule, "{decision}");
    assert_eq!(r["by"], "security@acme", "{decision}");
    assert_eq!(r["reason"], "sending under review", "{decision}");
    assert!(r["restricted_at"].as_str().is_some(), "{decision}");
    let reason = decision["denial"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(id) && reason.contains("sending under review"),
        "{reason}"
    );
}

/// An issuer service publishing to the feed and a `verifierd` (with a
/// record of used approvals) following it; an admin token allowed every
/// operation; alice's approver key, which the service holds.
struct Fleet {
    dir: tempfile::TempDir,
    _nats: Nats,
    svc: Proc,
    vd: Proc,
    admin: String,
    alice: KeyPair,
}

impl Fleet {
    fn start() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (root, alice) = keys(d);
        let nats = Nats::start(&d.join("nats"));
        let svc = serve(d, "serve", Some(&nats.url()));
        let root_pub = format_public_key(&root.public());
        let replay = d.join("replay").display().to_string();
        let vd = Proc::verifierd(
            &root_pub,
            &d.join("verifierd"),
            &nats.url(),
            &["--replay-db", &replay],
        );
        for p in [&svc, &vd] {
            wait_until("the feed at both", Duration::from_secs(20), || {
                p.health().0 == 200
            });
        }
        let admin = admin_token(&root, 0, &["mint,restrict,lift,review,approve:/v1/*"], &[]);
        Fleet {
            dir,
            _nats: nats,
            svc,
            vd,
            admin,
            alice,
        }
    }

    /// `require-approval schedule by alice=…` on hop 0 of `token`, in
    /// effect at both verifiers; its id.
    fn require_alice_to_schedule(&self, token: &str) -> String {
        let (status, made) = post(
            &self.svc,
            "/v1/restrictions",
            Some(&self.admin),
            &json!({
                "token": token, "hop": 0,
                "require_approval": [format!("schedule by alice={}", format_public_key(&self.alice.public()))],
                "reason": "meetings need a human", "by": "security@acme",
            }),
        );
        assert_eq!(status, 200, "{made}");
        assert_eq!(
            made["rules"][0],
            format!(
                "require-approval schedule by alice={}",
                format_public_key(&self.alice.public())
            )
        );
        wait_until(
            "the approval rule at verifierd",
            Duration::from_secs(10),
            || decide(&self.vd, token, "schedule", CALENDAR).1["decision"] == "needs_approval",
        );
        made["id"].as_str().unwrap().to_string()
    }
}

/// With `block` attached, `token` schedules once at `vd`; the replay is
/// denied. The token with the block.
fn schedules_once(vd: &Proc, token: &str, block: &str) -> String {
    let with_approval =
        mandate_attenuate::attach_approval(&mandate_spec::token_from_text(token).unwrap(), block)
            .unwrap()
            .to_base64();
    let (status, once) = decide(vd, &with_approval, "schedule", CALENDAR);
    assert_eq!(status, 200, "{once}");
    let (status, again) = decide(vd, &with_approval, "schedule", CALENDAR);
    assert_eq!(status, 403, "{again}");
    assert_eq!(kind(&again), "approval_replayed", "{again}");
    with_approval
}

#[test]
fn the_seed_scenario_over_http_with_a_verifier_on_the_feed() {
    let fleet = Fleet::start();
    let (svc, vd, admin) = (&fleet.svc, &fleet.vd, fleet.admin.as_str());
    let d = fleet.dir.path().to_path_buf();
    let assistant_minted = mint(svc, admin, "user:alice", "assistant");
    let assistant = token(&assistant_minted);
    let sibling = token(&mint(svc, admin, "user:alice", "travel-agent"));
    for t in [&assistant, &sibling] {
        for (action, resource) in [("read", EMAIL), ("send", OUTBOX), ("schedule", CALENDAR)] {
            assert!(allowed(svc, t, action, resource), "{action} before");
            assert!(allowed(vd, t, action, resource), "{action} before");
        }
    }

    // Restrict `send` on the assistant's hop.
    let (status, made) = post(
        svc,
        "/v1/restrictions",
        Some(admin),
        &json!({
            "token": assistant, "hop": 0, "deny": ["send:/api/email/**"],
            "reason": "sending under review", "by": "security@acme",
        }),
    );
    assert_eq!(status, 200, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["applied"], "added");
    assert_eq!(made["state"], "in_effect");
    assert_eq!(made["rules"], json!(["deny send:/api/email/**"]));
    let r = &made["restriction"];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["target"]["kind"], "block");
    assert_eq!(
        r["target"]["value"], assistant_minted["revocation_ids"][0],
        "hop 0 is the root block"
    );
    assert_eq!(r["by"], "security@acme");
    assert_eq!(r["reason"], "sending under review");
    assert!(r["restricted_at"].as_str().is_some());
    assert!(r["expires_at"].as_str().is_some(), "expires with the token");
    assert!(r["note"].as_str().unwrap().contains("assistant"), "{made}");

    // At once at the issuer's own verifier: sends denied naming the
    // restriction, reads allowed (listing it as in effect).
    let (status, denied) = decide(svc, &assistant, "send", OUTBOX);
    assert_eq!(status, 403, "{denied}");
    assert_restricted(&denied, &id, "deny send:/api/email/**");
    let (status, read) = decide(svc, &assistant, "read", EMAIL);
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["restrictions"], json!([id]));
    // The verifier on the feed, once the signed entry reached it.
    wait_until(
        "the restriction at verifierd",
        Duration::from_secs(10),
        || !allowed(vd, &assistant, "send", OUTBOX),
    );
    let (_, denied) = decide(vd, &assistant, "send", OUTBOX);
    assert_restricted(&denied, &id, "deny send:/api/email/**");
    assert!(allowed(vd, &assistant, "read", EMAIL));
    // The sibling of the same principal is untouched.
    for p in [svc, vd] {
        let (status, d) = decide(p, &sibling, "send", OUTBOX);
        assert_eq!(status, 200, "{d}");
        assert!(d.get("restrictions").is_none(), "{d}");
    }

    // Scheduling now needs alice's approval: at once at the issuer, then at
    // verifierd; never for the sibling.
    let approval_id = fleet.require_alice_to_schedule(&assistant);
    let (status, needs) = decide(svc, &assistant, "schedule", CALENDAR);
    assert_eq!(status, 403, "{needs}");
    assert_eq!(needs["decision"], "needs_approval", "{needs}");
    assert_eq!(needs["approval"]["approvers"][0]["name"], "alice");
    assert!(
        needs["denial"]["reason"]
            .as_str()
            .unwrap()
            .contains(&approval_id),
        "{needs}"
    );
    let (_, needs) = decide(vd, &assistant, "schedule", CALENDAR);
    assert_eq!(needs["decision"], "needs_approval", "{needs}");
    assert!(allowed(vd, &sibling, "schedule", CALENDAR), "sibling");
    // Alice approves (with her key, as `mandate approve` does): allowed
    // once, the replay denied.
    let request = mandate_spec::Request::new("schedule", CALENDAR);
    let block = mandate_attenuate::approve(
        needs["approval"]["third_party_request"].as_str().unwrap(),
        &request,
        std::time::SystemTime::now() + Duration::from_secs(300),
        &fleet.alice,
    )
    .unwrap();
    let with_approval = schedules_once(vd, &assistant, &block);
    // Sending is still restricted with the approval attached.
    let (_, denied) = decide(vd, &with_approval, "send", OUTBOX);
    assert_restricted(&denied, &id, "deny send:/api/email/**");

    // Lift: sending works again, here at once and at verifierd.
    let (status, lifted) = post(
        svc,
        &format!("/v1/restrictions/{id}/lift"),
        Some(admin),
        &json!({ "reason": "review done", "by": "security@acme" }),
    );
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["applied"], "lifted");
    assert_eq!(lifted["state"], "lifted");
    assert_eq!(lifted["lifted"]["reason"], "review done");
    assert!(allowed(svc, &assistant, "send", OUTBOX));
    wait_until("the lift at verifierd", Duration::from_secs(10), || {
        allowed(vd, &assistant, "send", OUTBOX)
    });
    // Lifting again changes nothing.
    let (status, again) = post(
        svc,
        &format!("/v1/restrictions/{id}/lift"),
        Some(admin),
        &json!({ "reason": "again" }),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["applied"], "unchanged");
    assert_eq!(again["lifted"]["reason"], "review done");

    // The listing: in effect only, or every one.
    let (status, listed) = get(svc, "/v1/restrictions", admin);
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [approval_id.as_str()]);
    let (_, all) = get(svc, "/v1/restrictions?all=true", admin);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all[0]["id"], id.as_str());
    assert_eq!(all[0]["state"], "lifted");

    // The service's audit log lists the restriction on the decisions made
    // while it was in effect.
    let mut fleet = fleet;
    fleet.svc.interrupt();
    let export = mandate(
        &d,
        &[
            "audit",
            "export",
            "--db",
            &d.join("serve/audit").display().to_string(),
        ],
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    let records: Vec<Value> = export
        .stdout
        .lines()
        .filter(|l| l.starts_with("{\"record\":"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let restricted: Vec<&Value> = records
        .iter()
        .filter(|r| r["record"]["denial"]["kind"] == "restricted")
        .collect();
    assert!(!restricted.is_empty(), "{}", export.stdout);
    for r in restricted {
        assert!(
            r["record"]["restrictions"]
                .as_array()
                .unwrap()
                .contains(&json!(id)),
            "{r}"
        );
    }
}

/// A restriction's approval is filed at the service's desk with the agent's
/// own token (the approvers the restriction names, not the token's rules),
/// approved there with the approver key the service holds, and spent once.
#[test]
fn a_restriction_approval_is_filed_and_approved_at_the_desk() {
    let fleet = Fleet::start();
    let (svc, vd, admin) = (&fleet.svc, &fleet.vd, fleet.admin.as_str());
    let assistant = token(&mint(svc, admin, "user:alice", "assistant"));
    let restriction = fleet.require_alice_to_schedule(&assistant);

    let schedule = json!({ "action": "schedule", "resource": CALENDAR, "params": {} });
    let (status, asked) = post(svc, "/v1/approvals", Some(&assistant), &schedule);
    assert_eq!(status, 201, "{asked}");
    assert_eq!(asked["status"], "pending");
    assert_eq!(asked["approval"]["approvers"][0]["name"], "alice");
    assert_eq!(
        asked["approval"]["approvers"][0]["key"],
        format_public_key(&fleet.alice.public())
    );
    assert!(
        asked["reason"].as_str().unwrap().contains(&restriction),
        "the desk says which restriction asks: {asked}"
    );
    let ask = asked["id"].as_str().unwrap();
    let (status, approved) = post(
        svc,
        &format!("/v1/approvals/{ask}/approve"),
        Some(admin),
        &json!({ "approver": "alice" }),
    );
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    schedules_once(vd, &assistant, approved["approval_block"].as_str().unwrap());
}

/// An admin token narrowed to `principal=user:alice` restricts alice's
/// tokens only: each way of reaching bob's (his token, one of its hops, his
/// family, his root revocation id, his agent key, his principal) is
/// refused, naming the parameter; lifting likewise.
#[test]
fn an_admin_token_narrowed_to_a_principal_cannot_restrict_anothers_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, _) = keys(d);
    let svc = serve(d, "data", None);
    let admin = admin_token(&root, 0, &["mint,restrict,lift,review:/v1/*"], &[]);
    let team = admin_token(
        &root,
        0,
        &["restrict,lift:/v1/restrictions"],
        &["principal=user:alice"],
    );
    let alice = token(&mint(&svc, &admin, "user:alice", "assistant"));
    let bob_minted = mint(&svc, &admin, "user:bob", "assistant");
    let bob = token(&bob_minted);
    let bob_chain =
        mandate_attenuate::read_chain(&mandate_spec::token_from_text(&bob).unwrap()).unwrap();
    let rule = || json!(["send:/api/email/**"]);
    let reason = "sending under review";

    // Alice's: by her token, one of its hops, her principal.
    for target in [
        json!({ "token": alice }),
        json!({ "token": alice, "hop": 0 }),
        json!({ "principal": "user:alice" }),
    ] {
        let mut body = target.clone();
        body["deny"] = rule();
        body["reason"] = json!(reason);
        let (status, made) = post(&svc, "/v1/restrictions", Some(&team), &body);
        assert_eq!(status, 200, "{target}: {made}");
    }
    assert!(!allowed(&svc, &alice, "send", OUTBOX));

    // Bob's, every way: refused, saying why.
    let bob_selectors = [
        (json!({ "token": bob }), "principal"),
        (json!({ "token": bob, "hop": 0 }), "principal"),
        (json!({ "principal": "user:bob" }), "principal"),
        (json!({ "token_id": bob_minted["token_id"] }), "principal"),
        (
            json!({ "revocation_id": bob_minted["revocation_ids"][0] }),
            "principal",
        ),
        (
            json!({ "agent_key": bob_chain.hops[0].agent_key }),
            "principal",
        ),
    ];
    for (target, param) in bob_selectors {
        let mut body = target.clone();
        body["deny"] = rule();
        body["reason"] = json!(reason);
        let (status, refused) = post(&svc, "/v1/restrictions", Some(&team), &body);
        assert_eq!(status, 403, "{target}: {refused}");
        let error = refused["error"].as_str().unwrap();
        assert!(
            error.contains("does not allow restrict on /v1/restrictions"),
            "{error}"
        );
        assert!(refused["denial"]["kind"].as_str().is_some(), "{refused}");
        assert!(
            refused["denial"]["reason"]
                .as_str()
                .unwrap()
                .contains(param),
            "{target}: {refused}"
        );
    }
    // A token of bob's with alice's principal named elsewhere changes
    // nothing: the principal is the token's own.
    let (status, refused) = post(
        &svc,
        "/v1/restrictions",
        Some(&team),
        &json!({ "token": bob, "deny": rule(), "reason": reason, "by": "user:alice" }),
    );
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["denial"]["reason"]
            .as_str()
            .unwrap()
            .contains("user:bob"),
        "{refused}"
    );
    // Bob is untouched.
    let (status, d) = decide(&svc, &bob, "send", OUTBOX);
    assert_eq!(status, 200, "{d}");
    assert!(d.get("restrictions").is_none(), "{d}");

    // Lifts: bob's restriction (made by the full admin) cannot be lifted by
    // the team token; alice's hop restriction can, with her token shown.
    let (status, on_bob) = post(
        &svc,
        "/v1/restrictions",
        Some(&admin),
        &json!({ "token": bob, "hop": 0, "deny": rule(), "reason": reason }),
    );
    assert_eq!(status, 200, "{on_bob}");
    let bob_id = on_bob["id"].as_str().unwrap();
    for body in [
        json!({ "reason": "x" }),
        json!({ "reason": "x", "token": bob }),
    ] {
        let (status, refused) = post(
            &svc,
            &format!("/v1/restrictions/{bob_id}/lift"),
            Some(&team),
            &body,
        );
        assert_eq!(status, 403, "{refused}");
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("does not allow lift"),
            "{refused}"
        );
    }
    // Showing alice's token for bob's restriction: 400, not reached.
    let (status, refused) = post(
        &svc,
        &format!("/v1/restrictions/{bob_id}/lift"),
        Some(&team),
        &json!({ "reason": "x", "token": alice }),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("not in this token's chain"),
        "{refused}"
    );
    let (_, listed) = get(&svc, "/v1/restrictions", &admin);
    let alice_hop = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["restriction"]["target"]["kind"] == "block" && l["id"] != bob_id)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, refused) = post(
        &svc,
        &format!("/v1/restrictions/{alice_hop}/lift"),
        Some(&team),
        &json!({ "reason": "done" }),
    );
    assert_eq!(
        status, 403,
        "whose it is is unknown without the token: {refused}"
    );
    let (status, lifted) = post(
        &svc,
        &format!("/v1/restrictions/{alice_hop}/lift"),
        Some(&team),
        &json!({ "reason": "done", "token": alice }),
    );
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["applied"], "lifted");

    // Other admin tokens: revoking is not restricting, restricting is not
    // lifting nor listing.
    let revoker = admin_token(&root, 0, &["revoke:/v1/revocations"], &[]);
    let (status, refused) = post(
        &svc,
        "/v1/restrictions",
        Some(&revoker),
        &json!({ "principal": "user:alice", "deny": rule(), "reason": reason }),
    );
    assert_eq!(status, 403, "{refused}");
    let restrict_only = admin_token(&root, 0, &["restrict:/v1/restrictions"], &[]);
    let (status, refused) = post(
        &svc,
        &format!("/v1/restrictions/{bob_id}/lift"),
        Some(&restrict_only),
        &json!({ "reason": "x" }),
    );
    assert_eq!(status, 403, "{refused}");
    let (status, _) = get(&svc, "/v1/restrictions", &restrict_only);
    assert_eq!(status, 403);
    let (status, refused) = post(
        &svc,
        "/v1/restrictions",
        None,
        &json!({ "principal": "user:alice", "deny": rule(), "reason": reason }),
    );
    assert_eq!(status, 401, "{refused}");
}

#[test]
fn bad_restrictions_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, _) = keys(d);
    let svc = serve(d, "data", None);
    let admin = admin_token(&root, 0, &["mint,restrict,lift,review:/v1/*"], &[]);
    let alice = token(&mint(&svc, &admin, "user:alice", "assistant"));
    let stranger = {
        // A token of another root key.
        let other = KeyPair::new();
        admin_token(&other, 0, &["read:/x"], &[])
    };
    let key = format_public_key(&KeyPair::new().public());
    let cases = [
        (
            json!({ "principal": "user:alice", "reason": "r" }),
            "at least one rule",
        ),
        (
            json!({ "principal": "user:alice", "deny": ["send"], "reason": "r" }),
            "deny \"send\"",
        ),
        (
            json!({ "principal": "user:alice", "where": ["rows<<3"], "reason": "r" }),
            "where \"rows<<3\"",
        ),
        (
            json!({ "principal": "user:alice", "require_approval": ["schedule by alice=nokey"], "reason": "r" }),
            "require_approval",
        ),
        (
            json!({ "principal": "user:alice", "limits": ["send ten/1h"], "reason": "r" }),
            "limits",
        ),
        (
            json!({ "principal": "user:alice", "token_id": "x", "deny": ["send:/**"], "reason": "r" }),
            "exactly one of",
        ),
        (
            json!({ "deny": ["send:/**"], "reason": "r" }),
            "exactly one of",
        ),
        (
            json!({ "token": "not a token", "deny": ["send:/**"], "reason": "r" }),
            "unreadable token",
        ),
        (
            json!({ "token": stranger, "deny": ["send:/**"], "reason": "r" }),
            "not a token of this service",
        ),
        (
            json!({ "token": alice, "hop": 3, "deny": ["send:/**"], "reason": "r" }),
            "hop 3: the token has hops 0 to 0",
        ),
        (
            json!({ "principal": "user:alice", "hop": 0, "deny": ["send:/**"], "reason": "r" }),
            "hop: only with token",
        ),
        (
            json!({ "revocation_id": "abcd", "deny": ["send:/**"], "reason": "r" }),
            "revocation_id",
        ),
        (
            json!({ "agent_key": "ed25519/zz", "deny": ["send:/**"], "reason": "r" }),
            "agent_key",
        ),
        (
            json!({ "principal": "user:alice", "deny": ["send:/**"], "reason": "  " }),
            "reason: say why",
        ),
        (
            json!({ "principal": "user:alice", "deny": ["send:/**"], "reason": "r", "id": "nope" }),
            "id: a restriction id is a UUID",
        ),
        (
            json!({ "principal": "user:alice", "deny": ["send:/**"], "reason": "r", "rules": [] }),
            "unknown field",
        ),
        (
            json!({ "principal": "user:alice", "deny": vec!["send:/**"; 17], "reason": "r" }),
            "1 to 16 rules",
        ),
    ];
    for (body, needle) in cases {
        let (status, refused) = post(&svc, "/v1/restrictions", Some(&admin), &body);
        assert_eq!(status, 400, "{body}: {refused}");
        let error = refused["error"].as_str().unwrap();
        assert!(
            error.contains(needle),
            "{body}: {needle:?} not in {error:?}"
        );
    }
    let _ = key;

    // The rule's keyword may lead its text (as the service answers it).
    let body = json!({
        "principal": "user:alice", "deny": ["deny send:/api/email/**"],
        "where": ["only rows<=10"], "reason": "r",
    });
    let (status, made) = post(&svc, "/v1/restrictions", Some(&admin), &body);
    assert_eq!(status, 200, "{made}");
    assert_eq!(
        made["rules"],
        json!(["deny send:/api/email/**", "only rows<=10"])
    );
    assert!(made["restriction"].get("expires_at").is_none(), "{made}");

    // Lifts: not a UUID; an unknown id (recorded, said so); a restriction
    // made later with that id is refused (lifts are final).
    let (status, refused) = post(
        &svc,
        "/v1/restrictions/nope/lift",
        Some(&admin),
        &json!({ "reason": "r" }),
    );
    assert_eq!(status, 400, "{refused}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, lifted) = post(
        &svc,
        &format!("/v1/restrictions/{unknown}/lift"),
        Some(&admin),
        &json!({ "reason": "pre-empt" }),
    );
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["applied"], "lift_recorded");
    assert_eq!(lifted["state"], "lift_only");
    assert!(
        lifted["warning"]
            .as_str()
            .unwrap()
            .contains("will never apply"),
        "{lifted}"
    );
    let (status, refused) = post(
        &svc,
        "/v1/restrictions",
        Some(&admin),
        &json!({ "principal": "user:alice", "deny": ["send:/**"], "reason": "r", "id": unknown }),
    );
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("lifts are final"),
        "{refused}"
    );

    // A retry with the id: the stored restriction, unchanged; another
    // restriction under a taken id: 409.
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({ "token": alice, "hop": 0, "deny": ["send:/**"], "reason": "r", "id": id });
    let (status, first) = post(&svc, "/v1/restrictions", Some(&admin), &body);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["applied"], "added");
    let (status, again) = post(&svc, "/v1/restrictions", Some(&admin), &body);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["applied"], "unchanged");
    assert_eq!(again["restriction"], first["restriction"]);
    let mut other = body.clone();
    other["deny"] = json!(["read:/**"]);
    let (status, refused) = post(&svc, "/v1/restrictions", Some(&admin), &other);
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already names another restriction"),
        "{refused}"
    );

    // Still serving.
    let (status, _) = http(&svc.addr, "GET", "/healthz", "", None);
    assert_eq!(status, 200);
}
