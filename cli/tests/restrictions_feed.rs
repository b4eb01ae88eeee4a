//! Live restrictions on the revocation feed (issue 18; SPEC §19.4), against
//! a real nats-server with JetStream on loopback and real `mandate
//! verifierd` processes. A bus publisher (publish rights, no revocation
//! key) sends restrictions and lifts signed by keys the verifiers do not
//! trust, copies of real entries retargeted (signature kept), garbage in
//! the restriction envelope's form and validly signed entries that are not
//! valid: every one is skipped, counted by reason and never applied; the
//! verifier stays fresh and applies the next valid entry. A valid
//! restriction reaches the verifier and denies, a valid lift allows again,
//! a lift published before its restriction keeps it from ever applying,
//! and a restarted verifier keeps its restrictions (RocksDB) and resumes
//! the feed without applying anything again.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use biscuit_auth::KeyPair;
use common::procs::{http, wait_until, Nats};
use common::Scenario;
use mandate_spec::{Lift, Restriction, RestrictionEntry, RestrictionRule, RestrictionTarget};
use mandate_verifier::feed::RevocationSigner;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// A `mandate verifierd` following the feed, its standard error kept.
struct Verifier {
    child: Option<Child>,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Verifier {
    fn start(s: &Scenario, data: &str, nats: &str, trust: &str) -> Verifier {
        let args = [
            "verifierd",
            "--data-dir",
            data,
            "--public-key",
            &s.issuer_pub,
            "--nats",
            nats,
            "--staleness",
            "2s",
            "--listen",
            "127.0.0.1:0",
            "--revocation-key",
            trust,
        ];
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(args)
            .current_dir(s.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("verifierd said {line:?}: {}", log.lock().unwrap()))
            .to_string();
        Verifier {
            child: Some(child),
            addr,
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `action` on customer 42 with `token`: (status, decision).
    fn authorize(&self, token: &str, action: &str) -> (u16, Value) {
        let body = serde_json::json!({
            "token": token.trim(),
            "action": action,
            "resource": "/api/customers/42",
            "params": {"rows": 1},
        })
        .to_string();
        http(&self.addr, "POST", "/v1/authorize", &body, None)
    }

    fn health(&self) -> (u16, Value) {
        http(&self.addr, "GET", "/healthz", "", None)
    }

    fn position(&self) -> u64 {
        self.health().1["feed_position"].as_u64().unwrap_or(0)
    }

    /// A metric from `/metrics` (0 when absent); `name` with its labels.
    fn metric(&self, name: &str) -> u64 {
        let text = common::procs::http_client()
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.metric(&format!(
            "mandate_feed_entries_rejected_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Restrictions and lifts written from the feed by this process.
    fn written_from_feed(&self) -> u64 {
        self.metric("mandate_restriction_entries_written_total{source=\"feed\"}")
    }

    /// Waits for feed position `seq`, then checks the verifier is fresh.
    fn caught_up(&self, seq: u64) {
        wait_until(
            &format!("feed position {seq}"),
            Duration::from_secs(10),
            || self.position() >= seq && self.health().0 == 200,
        );
        assert_eq!(self.position(), seq, "{}", self.log());
        let (status, health) = self.health();
        assert_eq!(status, 200, "{health} {}", self.log());
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Publishes raw bytes on the feed's subject, as anyone with publish
/// rights can.
fn publish_raw(url: &str, payload: Vec<u8>) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish("mandate.revocations", payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
}

/// `entry` sealed by `key` under key id `id`, published.
fn publish(url: &str, key: &KeyPair, id: u32, entry: &RestrictionEntry) -> Vec<u8> {
    let sealed = RevocationSigner::new(id, key)
        .unwrap()
        .seal_restriction(entry)
        .unwrap();
    publish_raw(url, sealed.clone());
    sealed
}

fn restriction(target: RestrictionTarget, rule: &str) -> RestrictionEntry {
    RestrictionEntry::Restrict(Restriction {
        id: uuid::Uuid::new_v4().to_string(),
        target,
        rules: vec![RestrictionRule::parse_deny(rule).unwrap()],
        restricted_at: OffsetDateTime::now_utc(),
        by: "security@acme".into(),
        reason: "under review".into(),
        expires_at: None,
        note: None,
    })
}

fn lift(id: &str) -> RestrictionEntry {
    RestrictionEntry::Lift(Lift {
        id: id.into(),
        lifted_at: OffsetDateTime::now_utc(),
        by: "security@acme".into(),
        reason: "review done".into(),
    })
}

/// support.tok's family id (what `revoke --token` targets).
fn family_of(s: &Scenario, token_file: &str) -> String {
    let r = s.run(&[
        "revoke",
        "--db",
        "scratch-db",
        "--token",
        token_file,
        "--reason",
        "read the target",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    v["target"]["value"].as_str().unwrap().to_string()
}

fn kind(d: &Value) -> &str {
    d["denial"]["kind"].as_str().unwrap_or("")
}

/// Whatever a publisher without the revocation key sends is rejected by
/// reason and never applied; the feed stays fresh and applies the next
/// valid restriction, which denies; a forged lift changes nothing, a valid
/// one allows again; a lift before its restriction keeps it from applying;
/// a restart keeps everything and applies nothing again.
#[test]
fn only_restrictions_and_lifts_signed_by_a_trusted_key_are_applied() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev = KeyPair::new();
    let intruder = KeyPair::new();
    let trust = format!("0={}", rev.public());
    let token = s.read("support.tok");
    let family = RestrictionTarget::Token(family_of(&s, "support.tok"));
    let mut v = Verifier::start(&s, "v", &url, &trust);
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&token, "read").0 == 200
    });
    let mut seq = 0;

    // 1. A real entry (on a principal nobody uses), copied and retargeted
    //    at the family before the original is published: refused, and the
    //    original (its id) still applies afterwards.
    let real = restriction(
        RestrictionTarget::Principal("user:nobody".into()),
        "read:/**",
    );
    let sealed = RevocationSigner::new(0, &rev)
        .unwrap()
        .seal_restriction(&real)
        .unwrap();
    let mut envelope: Value = serde_json::from_slice(&sealed).unwrap();
    let text = envelope["restriction"].as_str().unwrap().to_string();
    let retargeted = text.replacen(
        "{\"kind\":\"principal\",\"value\":\"user:nobody\"}",
        &serde_json::to_string(&family).unwrap(),
        1,
    );
    assert_ne!(retargeted, text, "the entry's JSON changed shape: {text}");
    envelope["restriction"] = Value::String(retargeted);
    publish_raw(&url, serde_json::to_vec(&envelope).unwrap());
    publish_raw(&url, sealed);
    seq += 2;

    // 2. Signed by a key the verifier does not hold, under its trusted id
    //    and under an unknown one.
    let deny_read = restriction(family.clone(), "read:/api/customers/*");
    publish(&url, &intruder, 0, &deny_read);
    publish(&url, &intruder, 9, &deny_read);
    seq += 2;

    // 3. Garbage in the envelope's form; a validly signed entry that is
    //    not valid (an id that is no UUID); an envelope with a field too
    //    many.
    publish_raw(
        &url,
        serde_json::to_vec(&serde_json::json!({
            "restriction": "{\"restrict\": garbage",
            "key_id": 0,
            "sig": "00".repeat(64),
        }))
        .unwrap(),
    );
    let mut invalid = deny_read.clone();
    if let RestrictionEntry::Restrict(r) = &mut invalid {
        r.id = "not-a-uuid".into();
    }
    publish(&url, &rev, 0, &invalid);
    let mut extra: Value = serde_json::from_slice(
        &RevocationSigner::new(0, &rev)
            .unwrap()
            .seal_restriction(&deny_read)
            .unwrap(),
    )
    .unwrap();
    extra["apply"] = Value::Bool(true);
    publish_raw(&url, serde_json::to_vec(&extra).unwrap());
    seq += 3;

    v.caught_up(seq);
    let (status, d) = v.authorize(&token, "read");
    assert_eq!(
        status,
        200,
        "a rejected entry was applied: {d}\n{}",
        v.log()
    );
    assert!(d.get("restrictions").is_none(), "{d}");
    assert_eq!(v.rejected("bad_signature"), 3, "{}", v.log());
    assert_eq!(v.rejected("unknown_key"), 1, "{}", v.log());
    assert_eq!(v.rejected("malformed"), 2, "{}", v.log());
    assert_eq!(v.written_from_feed(), 1, "only the real entry");
    let log = v.log();
    assert!(
        log.contains("a signed restriction that is not valid"),
        "{log}"
    );
    assert!(log.contains("revocation key id 9"), "{log}");

    // 4. The next valid entry applies: read is denied, list is not.
    publish(&url, &rev, 0, &deny_read);
    seq += 1;
    v.caught_up(seq);
    let (status, d) = v.authorize(&token, "read");
    assert_eq!((status, kind(&d)), (403, "restricted"), "{d}");
    let reason = d["denial"]["reason"].as_str().unwrap();
    assert!(reason.contains(deny_read.id()), "{reason}");
    assert!(reason.contains("\"under review\""), "{reason}");
    assert_eq!(d["denial"]["restriction"]["id"], deny_read.id());
    assert_eq!(d["restrictions"][0], deny_read.id());
    assert_eq!(v.authorize(&token, "list").0, 200);

    // 5. Forged lifts change nothing; the real one allows again.
    publish(&url, &intruder, 0, &lift(deny_read.id()));
    publish(&url, &intruder, 9, &lift(deny_read.id()));
    seq += 2;
    v.caught_up(seq);
    assert_eq!(kind(&v.authorize(&token, "read").1), "restricted");
    assert_eq!(v.rejected("bad_signature"), 4);
    assert_eq!(v.rejected("unknown_key"), 2);
    publish(&url, &rev, 0, &lift(deny_read.id()));
    seq += 1;
    v.caught_up(seq);
    let (status, d) = v.authorize(&token, "read");
    assert_eq!(status, 200, "{d}");
    // The lifted restriction published again: stays lifted.
    publish(&url, &rev, 0, &deny_read);
    seq += 1;
    v.caught_up(seq);
    assert_eq!(v.authorize(&token, "read").0, 200);

    // 6. A lift before its restriction: the restriction never applies.
    let early = restriction(family.clone(), "read:/**");
    publish(&url, &rev, 0, &lift(early.id()));
    publish(&url, &rev, 0, &early);
    // One that stays.
    let deny_list = restriction(family.clone(), "list:/**");
    publish(&url, &rev, 0, &deny_list);
    seq += 3;
    v.caught_up(seq);
    assert_eq!(v.authorize(&token, "read").0, 200, "{}", v.log());
    let (status, d) = v.authorize(&token, "list");
    assert_eq!((status, kind(&d)), (403, "restricted"), "{d}");
    assert_eq!(
        v.metric("mandate_restrictions_in_effect"),
        2,
        "user:nobody's and deny_list"
    );

    // 7. Restarted on the same store: the same decisions at once, the same
    //    position, nothing applied again.
    drop(v);
    v = Verifier::start(&s, "v", &url, &trust);
    v.caught_up(seq);
    assert_eq!(v.authorize(&token, "read").0, 200);
    assert_eq!(kind(&v.authorize(&token, "list").1), "restricted");
    assert_eq!(v.written_from_feed(), 0, "re-applied after a restart");
    assert_eq!(v.metric("mandate_restrictions_in_effect"), 2);
    // And it goes on with the next entry.
    publish(&url, &rev, 0, &lift(deny_list.id()));
    seq += 1;
    v.caught_up(seq);
    assert_eq!(v.authorize(&token, "list").0, 200);
    assert_eq!(v.written_from_feed(), 1);
}

/// The sub-agent's token is derived from support.tok: a restriction on
/// the support agent's key, published on the feed, reaches it too; the
/// root token's holder key and its sibling are untouched by one on the
/// sub-agent's key.
#[test]
fn a_restriction_on_an_agent_key_reaches_every_token_through_it_across_the_feed() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev = KeyPair::new();
    let trust = format!("0={}", rev.public());
    let support = s.read("support.tok");
    let sub = s.read("sub.tok");
    let v = Verifier::start(&s, "v", &url, &trust);
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&sub, "read").0 == 200
    });
    let key_hex = |k: &str| k.strip_prefix("ed25519/").unwrap().to_string();
    let on_sub = restriction(
        RestrictionTarget::Agent(key_hex(&s.sub_pub)),
        "read:/api/customers/*",
    );
    publish(&url, &rev, 0, &on_sub);
    v.caught_up(1);
    let (status, d) = v.authorize(&sub, "read");
    assert_eq!((status, kind(&d)), (403, "restricted"), "{d}");
    assert_eq!(d["denial"]["hop"], 1, "{d}");
    assert_eq!(
        v.authorize(&support, "read").0,
        200,
        "the parent is untouched"
    );
    let on_support = restriction(
        RestrictionTarget::Agent(key_hex(&s.support_pub)),
        "list:/**",
    );
    publish(&url, &rev, 0, &on_support);
    v.caught_up(2);
    let (status, d) = v.authorize(&support, "list");
    assert_eq!((status, kind(&d)), (403, "restricted"), "{d}");
    assert_eq!(d["denial"]["hop"], 0, "{d}");
    // The sub-agent's token cannot list anyway (its grant); read is still
    // denied by the restriction on its own key.
    assert_eq!(kind(&v.authorize(&sub, "read").1), "restricted");
}
