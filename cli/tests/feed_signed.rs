//! Signed revocation-feed entries (issue 16, part 1; SPEC §9.3), against a
//! real nats-server with JetStream on loopback. An outsider with publish
//! access used to revoke any live token (a real entry copied and
//! retargeted) and to stall every verifier with one message that was not an
//! entry. Now every entry is signed by the issuer's revocation key: a
//! forged, garbage, unsigned or wrongly signed message is skipped, counted
//! (`mandate_feed_entries_rejected_total{reason}`) and logged at WARN; the
//! verifiers stay fresh and apply the next valid entry; keys rotate.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{http, wait_until, Nats};
use common::Scenario;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `mandate verifierd` whose standard error is kept (the WARN lines).
struct Verifier {
    child: Option<Child>,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Verifier {
    /// Follows `nats` into `data`, trusting each `ID=ed25519/<hex>` in `trust`.
    fn start(s: &Scenario, data: &str, nats: &str, trust: &[String]) -> Verifier {
        let mut args: Vec<String> = [
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
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        for t in trust {
            args.push("--revocation-key".into());
            args.push(t.clone());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(&args)
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

    fn authorize(&self, token: &str) -> (u16, Value) {
        let body = serde_json::json!({
            "token": token.trim(),
            "action": "read",
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

    /// `mandate_feed_entries_rejected_total{reason}` from `/metrics` (0 when absent).
    fn rejected(&self, reason: &str) -> u64 {
        let text = common::procs::http_client()
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let prefix = format!("mandate_feed_entries_rejected_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    }

    /// The WARN lines saying a feed entry was rejected for `reason`.
    fn warned(&self, reason: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains(" WARN ")
                    && l.contains("revocation feed entry rejected")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .count()
    }

    /// Waits for feed position `seq`, then checks the verifier is fresh.
    fn caught_up(&self, seq: u64) {
        wait_until(
            &format!("feed position {seq}"),
            Duration::from_secs(10),
            || self.position() >= seq,
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

/// A new key file `name`; its public key.
fn keygen(s: &Scenario, name: &str) -> String {
    let r = s.run(&["keygen", "--out", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

/// `mandate revoke ... --nats` signed with `key` under `id`; must succeed.
fn revoke_signed(s: &Scenario, url: &str, target: &[&str], key: &str, id: u32) {
    let id = id.to_string();
    let mut args = vec!["revoke", "--db", "cli-db", "--reason", "signed test"];
    args.extend_from_slice(target);
    args.extend_from_slice(&[
        "--nats",
        url,
        "--revocation-key-file",
        key,
        "--revocation-key-id",
        &id,
    ]);
    let r = s.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A block revocation id nobody uses (128 hex digits).
fn fake_id(tag: u8) -> String {
    hex_of(&[tag; 64])
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// support.tok's token family id (what `revoke --token` targets).
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
    assert_eq!(v["target"]["kind"], "token");
    v["target"]["value"].as_str().unwrap().to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Publishes raw bytes on the feed's subject, as an outsider with publish
/// access would.
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

/// The stored message at `seq`, as an outsider reading the stream gets it.
fn stream_message(url: &str, seq: u64) -> Vec<u8> {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("MANDATE_REVOCATIONS").await.unwrap();
        stream.get_raw_message(seq).await.unwrap().payload.to_vec()
    })
}

fn denial_kind(d: &Value) -> &str {
    d["denial"]["kind"].as_str().unwrap_or("")
}

/// Regression: a real entry copied from the stream and retargeted at a
/// live token's family (signature kept) revoked that token everywhere.
#[test]
fn a_retargeted_copy_of_a_real_entry_revokes_nothing() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev0 = keygen(&s, "rev0.key");
    let token = s.read("support.tok");
    let family = family_of(&s, "support.tok");
    let v = Verifier::start(&s, "v", &url, &[format!("0={rev0}")]);
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });

    // A real, signed entry (an id nobody uses), then the forgery.
    revoke_signed(&s, &url, &["--id", &fake_id(0xa1)], "rev0.key", 0);
    let real: Value = serde_json::from_slice(&stream_message(&url, 1)).unwrap();
    let mut entry: Value = serde_json::from_str(real["entry"].as_str().unwrap()).unwrap();
    entry["target"] = serde_json::json!({"kind": "token", "value": family});
    let mut forged = real.clone();
    forged["entry"] = Value::String(entry.to_string());
    assert_eq!(forged["sig"], real["sig"]);
    publish_raw(&url, serde_json::to_vec(&forged).unwrap());
    // The same forgery with the entry's key order and spacing untouched,
    // only the target's bytes replaced.
    let text = real["entry"].as_str().unwrap();
    let spliced = text.replacen(
        &format!("\"kind\":\"block\",\"value\":\"{}\"", fake_id(0xa1)),
        &format!("\"kind\":\"token\",\"value\":\"{family}\""),
        1,
    );
    assert_ne!(spliced, text, "the entry's JSON changed shape: {text}");
    let mut spliced_msg = real.clone();
    spliced_msg["entry"] = Value::String(spliced);
    publish_raw(&url, serde_json::to_vec(&spliced_msg).unwrap());

    v.caught_up(3);
    let (status, d) = v.authorize(&token);
    assert_eq!(status, 200, "the forged entry revoked the token: {d}");
    assert_eq!(v.rejected("bad_signature"), 2);
    assert_eq!(v.warned("bad_signature"), 2, "{}", v.log());
    let log = v.log();
    assert!(
        log.contains("does not verify under revocation key id 0"),
        "{log}"
    );

    // The real entry applied; a real revocation of the family still works.
    revoke_signed(&s, &url, &["--token", "support.tok"], "rev0.key", 0);
    v.caught_up(4);
    let (status, d) = v.authorize(&token);
    assert_eq!((status, denial_kind(&d)), (403, "revoked"), "{d}");
}

/// Regression: one message that was not an entry stalled the fleet.
/// Garbage, a bare unsigned entry, an entry signed by another key under a
/// trusted id, and one under an unknown id: every verifier stays fresh and
/// deciding, each is counted by reason and logged, and the next valid entry
/// applies.
#[test]
fn garbage_and_wrongly_signed_entries_leave_every_verifier_fresh() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev0 = keygen(&s, "rev0.key");
    keygen(&s, "intruder.key");
    let token = s.read("support.tok");
    let family = family_of(&s, "support.tok");
    let trust = [format!("0={rev0}")];
    let fleet = [
        Verifier::start(&s, "v1", &url, &trust),
        Verifier::start(&s, "v2", &url, &trust),
    ];
    for v in &fleet {
        wait_until("the feed", Duration::from_secs(10), || {
            v.authorize(&token).0 == 200
        });
    }

    publish_raw(&url, b"\xff\x00 not json at all".to_vec());
    let bare = serde_json::json!({
        "target": {"kind": "token", "value": family},
        "revoked_at": "2026-01-01T00:00:00Z",
        "reason": "unsigned",
        "by": "outsider",
    });
    publish_raw(&url, serde_json::to_vec(&bare).unwrap());
    // Signed, but by a key the verifiers do not hold under id 0, and under
    // an id they do not know.
    revoke_signed(&s, &url, &["--token", "support.tok"], "intruder.key", 0);
    revoke_signed(&s, &url, &["--token", "support.tok"], "intruder.key", 9);

    for v in &fleet {
        v.caught_up(4);
        let (status, d) = v.authorize(&token);
        assert_eq!(status, 200, "{d}\n{}", v.log());
        for reason in ["malformed", "unsigned", "bad_signature", "unknown_key"] {
            assert_eq!(v.rejected(reason), 1, "{reason}\n{}", v.log());
            assert_eq!(v.warned(reason), 1, "{reason}\n{}", v.log());
        }
        assert!(v.log().contains("revocation key id 9"), "{}", v.log());
    }

    // The next valid entry applies everywhere.
    revoke_signed(&s, &url, &["--token", "support.tok"], "rev0.key", 0);
    for v in &fleet {
        v.caught_up(5);
        let (status, d) = v.authorize(&token);
        assert_eq!((status, denial_kind(&d)), (403, "revoked"), "{d}");
    }
}

/// Publishes `n` garbage messages on the feed's subject as fast as the
/// server acknowledges them (acknowledgements awaited in groups).
fn flood(url: &str, n: usize) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut acks = Vec::new();
        for i in 0..n {
            let junk = format!("junk {i}").into_bytes();
            acks.push(
                js.publish("mandate.revocations", junk.into())
                    .await
                    .unwrap(),
            );
            if acks.len() == 500 {
                for a in acks.drain(..) {
                    a.await.unwrap();
                }
            }
        }
        for a in acks {
            a.await.unwrap();
        }
    });
}

/// Regression: every answered pull counted as hearing from the feed, so a
/// verifier reading a backlog of junk published ahead of a revocation
/// looked fresh and allowed the revoked token until it reached the entry.
/// Staleness is how far behind the stream the list may be: while the
/// verifier has not applied what the stream held, it denies
/// (`revocation_unavailable`), then denies the token as revoked; it is
/// never allowed. Rejected messages are logged one by one up to a limit
/// per pull, then summed up (each counted).
#[test]
fn a_flood_of_junk_ahead_of_a_revocation_never_lets_the_revoked_token_through() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev0 = keygen(&s, "rev0.key");
    let token = s.read("support.tok");
    let trust = [format!("0={rev0}")];
    let v = Verifier::start(&s, "v", &url, &trust);
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    drop(v);

    // While the verifier is down: a flood, then the revocation behind it.
    let junk = 30_000;
    flood(&url, junk);
    revoke_signed(&s, &url, &["--token", "support.tok"], "rev0.key", 0);
    let last = junk as u64 + 1;

    let v = Verifier::start(&s, "v", &url, &trust);
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    wait_until("the revocation", Duration::from_secs(60), || {
        let (status, d) = v.authorize(&token);
        let kind = denial_kind(&d).to_string();
        assert_ne!(
            status,
            200,
            "the revoked token was allowed while the verifier read the backlog \
             (position {}): {d}",
            v.position()
        );
        if kind == "revocation_unavailable" {
            let reason = d["denial"]["reason"].as_str().unwrap_or("");
            assert!(
                ["not been reached yet", "catching up", "behind the feed"]
                    .iter()
                    .any(|r| reason.contains(r)),
                "{reason}"
            );
        } else {
            assert_eq!((status, kind.as_str()), (403, "revoked"), "{d}");
        }
        *answers.entry(kind.clone()).or_default() += 1;
        kind == "revoked"
    });
    v.caught_up(last);
    let health = v.health().1;
    assert!(health["behind_ms"].as_u64().is_some(), "{health}");
    assert_eq!(v.rejected("malformed"), junk as u64);
    // Logged one by one up to 20 per pull (a pull is at most 1 000), the
    // rest summed up: far fewer lines than messages.
    let warned = v.warned("malformed");
    assert!((20..=junk / 50).contains(&warned), "{warned} lines");
    assert!(
        v.log()
            .contains("more revocation feed messages rejected in this pull"),
        "{}",
        v.log()
    );
    eprintln!("answers while catching up: {answers:?}");
}

/// Removes the message at `seq` from the feed's stream, as anyone able to
/// publish to `$JS.API.STREAM.MSG.DELETE.MANDATE_REVOCATIONS` can.
fn delete_message(url: &str, seq: u64) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("MANDATE_REVOCATIONS").await.unwrap();
        assert!(stream.delete_message(seq).await.unwrap());
    });
}

/// Regression: staleness counted a message's sequence plus its pending
/// count as what the stream held, and an empty pull as current when the
/// consumer had nothing pending. A revocation removed from the end of the
/// stream before a verifier read it is neither pending nor delivered: the
/// verifier looked current without it and allowed the revoked token. The
/// stream's last sequence still counts it, so the verifier is never current
/// without it: the next entry is gone, the feed is stuck (every request
/// denied, 503 on /healthz) until an operator decides where to resume.
#[test]
fn a_revocation_removed_from_the_end_of_the_stream_leaves_the_verifier_stuck_not_current() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev0 = keygen(&s, "rev0.key");
    let token = s.read("support.tok");
    let trust = [format!("0={rev0}")];
    // An entry that revokes nothing, then the revocation, removed.
    revoke_signed(&s, &url, &["--id", &fake_id(0xb1)], "rev0.key", 0);
    revoke_signed(&s, &url, &["--token", "support.tok"], "rev0.key", 0);
    delete_message(&url, 2);

    let v = Verifier::start(&s, "v", &url, &trust);
    wait_until("the feed stuck", Duration::from_secs(20), || {
        let (status, d) = v.authorize(&token);
        assert_ne!(
            status,
            200,
            "the revoked token was allowed: the verifier looked current without the \
             removed revocation (position {}): {d}\n{}",
            v.position(),
            v.log()
        );
        assert_eq!(denial_kind(&d), "revocation_unavailable", "{d}");
        d["denial"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("stuck")
    });
    let (status, d) = v.authorize(&token);
    let reason = d["denial"]["reason"].as_str().unwrap_or("");
    assert_eq!(
        (status, denial_kind(&d)),
        (403, "revocation_unavailable"),
        "{d}"
    );
    assert!(reason.contains("entries 2 to 2 are missing"), "{reason}");
    let (status, health) = v.health();
    assert_eq!(status, 503, "{health}");
    assert_eq!(v.position(), 1, "{health}");
}

/// Moving a fleet from a feed of unsigned entries (before signed feeds):
/// a verifier that trusts only signed entries skips the old ones, so a
/// token revoked back then is allowed again on a fresh verifier. The
/// issuer republishes its list signed (`mandate revocations --republish`)
/// and every verifier applies it.
#[test]
fn an_old_unsigned_feed_is_carried_over_by_republishing_signed() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev0 = keygen(&s, "rev0.key");
    let token = s.read("support.tok");
    let family = family_of(&s, "support.tok");
    // What an issuer did before signed feeds: its local list, and the bare
    // entry it published.
    let r = s.run(&[
        "revoke",
        "--db",
        "old-issuer",
        "--token",
        "support.tok",
        "--reason",
        "left the company",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bare = serde_json::json!({
        "target": {"kind": "token", "value": family},
        "revoked_at": "2026-01-01T00:00:00Z",
        "reason": "left the company",
        "by": "old-issuer",
    });
    let v = Verifier::start(&s, "v", &url, &[format!("0={rev0}")]);
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    publish_raw(&url, serde_json::to_vec(&bare).unwrap());
    v.caught_up(1);
    assert_eq!(v.authorize(&token).0, 200, "the unsigned entry is skipped");
    assert_eq!(v.rejected("unsigned"), 1);

    // Without the key, nothing is published.
    let r = s.run(&[
        "revocations",
        "--db",
        "old-issuer",
        "--republish",
        "--nats",
        &url,
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--revocation-key-file"), "{}", r.stderr);
    let r = s.run(&[
        "revocations",
        "--db",
        "old-issuer",
        "--republish",
        "--nats",
        &url,
        "--revocation-key-file",
        "rev0.key",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("republished 1 entry signed with revocation key id 0"),
        "{}",
        r.stdout
    );
    v.caught_up(2);
    let (status, d) = v.authorize(&token);
    assert_eq!((status, denial_kind(&d)), (403, "revoked"), "{d}");
}

/// Key rotation mid-stream: entries signed by key 0, then by key 1, both
/// trusted, both apply; once key 0 is retired (no longer trusted) its
/// entries are skipped; an issuer service signing with its current key 1
/// publishes entries the fleet applies, and lists both keys.
#[test]
fn revocation_keys_rotate_mid_stream() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev0 = keygen(&s, "rev0.key");
    let rev1 = keygen(&s, "rev1.key");
    let token = s.read("support.tok");
    let both = [format!("0={rev0}"), format!("1={rev1}")];
    let mut v = Verifier::start(&s, "v", &url, &both);
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    revoke_signed(&s, &url, &["--id", &fake_id(0xb0)], "rev0.key", 0);
    revoke_signed(&s, &url, &["--id", &fake_id(0xb1)], "rev1.key", 1);
    v.caught_up(2);
    assert_eq!(v.rejected("unknown_key") + v.rejected("bad_signature"), 0);

    // Key 0 retired: the verifier now trusts key 1 only.
    drop(v);
    v = Verifier::start(&s, "v", &url, &[format!("1={rev1}")]);
    revoke_signed(&s, &url, &["--token", "support.tok"], "rev0.key", 0);
    v.caught_up(3);
    assert_eq!(v.authorize(&token).0, 200, "{}", v.log());
    assert_eq!(v.rejected("unknown_key"), 1);
    assert_eq!(v.warned("unknown_key"), 1, "{}", v.log());

    // The issuer service, current revocation key 1, key 0 still listed.
    let issuer = common::procs::Proc::start::<_, std::ffi::OsString>([
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        s.path("issuer").into(),
        "--root-key".into(),
        format!("0={}", s.path("issuer.key").display()).into(),
        "--revocation-key-file".into(),
        format!("0={}", s.path("rev0.key").display()).into(),
        "--revocation-key-file".into(),
        format!("1={}", s.path("rev1.key").display()).into(),
        "--current-revocation-key-id".into(),
        "1".into(),
        "--nats".into(),
        url.clone().into(),
    ]);
    let (status, keys) = http(&issuer.addr, "GET", "/v1/keys/revocation", "", None);
    assert_eq!(status, 200);
    assert_eq!(
        keys,
        serde_json::json!([
            {"id": 1, "public_key": rev1, "current": true},
            {"id": 0, "public_key": rev0, "current": false},
        ])
    );
    // Root keys are listed apart, unchanged.
    let (_, roots) = http(&issuer.addr, "GET", "/v1/keys", "", None);
    assert_eq!(roots[0]["public_key"], s.issuer_pub.as_str());
    wait_until("the issuer's feed", Duration::from_secs(10), || {
        issuer.health().0 == 200
    });
    let admin = admin_token(&s);
    let body = serde_json::json!({"revocation_id": fake_id(0xb2), "reason": "rotated"});
    let (status, answer) = http(
        &issuer.addr,
        "POST",
        "/v1/revocations",
        &body.to_string(),
        Some(&admin),
    );
    assert_eq!(status, 200, "{answer}");
    v.caught_up(4);
    let sealed: Value = serde_json::from_slice(&stream_message(&url, 4)).unwrap();
    assert_eq!(sealed["key_id"], 1);
    assert_eq!(v.rejected("unknown_key"), 1, "{}", v.log());
}

/// An admin token allowing revoke at the issuer service.
fn admin_token(s: &Scenario) -> String {
    let r = s.run(&[
        "issue",
        "--key",
        "issuer.key",
        "--principal",
        "ops:admin",
        "--to",
        "admin-cli",
        "--to-key",
        &s.support_pub.clone(),
        "--allow",
        "mint,revoke:/v1/*",
        "--ttl",
        "1h",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

/// Secure default: a feed without a trusted revocation key does not start,
/// and nothing publishes unsigned.
#[test]
fn a_feed_without_a_revocation_key_is_refused_everywhere() {
    let s = Scenario::new();
    let url = "nats://127.0.0.1:1";
    let r = s.run(&[
        "verifierd",
        "--data-dir",
        "v",
        "--public-key",
        &s.issuer_pub.clone(),
        "--nats",
        url,
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--revocation-key"), "{}", r.stderr);
    // A private key where the public one goes: refused without echoing it.
    let secret = s.read("issuer.key");
    let r = s.run(&[
        "verifierd",
        "--data-dir",
        "v",
        "--public-key",
        &s.issuer_pub.clone(),
        "--nats",
        url,
        "--revocation-key",
        &format!("0={}", secret.trim()),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("PUBLIC"), "{}", r.stderr);
    assert!(!r.stderr.contains(secret.trim()), "{}", r.stderr);

    // revoke --nats without a key: refused before anything is written.
    let r = s.run(&[
        "revoke",
        "--db",
        "cli-db",
        "--id",
        &fake_id(1),
        "--reason",
        "x",
        "--nats",
        url,
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--revocation-key-file"), "{}", r.stderr);
    assert!(!s.path("cli-db").exists());

    let r = s.run(&[
        "serve",
        "--data-dir",
        "issuer",
        "--root-key",
        "0=issuer.key",
        "--nats",
        url,
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--revocation-key-file"), "{}", r.stderr);

    // The gateway: nats without revocation_keys names the line.
    s.write(
        "gw.toml",
        &format!(
            "public_key = \"{}\"\nrevocation_db = \"r\"\nnats = \"{url}\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\n",
            s.issuer_pub
        ),
    );
    let r = s.run(&["gateway", "--config", "gw.toml"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("line 3") && r.stderr.contains("revocation_keys"),
        "{}",
        r.stderr
    );
}

/// The feed stream refuses a message over 64 KiB (one pull cannot buffer
/// 1 000 such), and the verifiers go on applying the next valid entry.
#[test]
fn a_message_over_the_size_limit_is_refused_by_the_stream_and_the_feed_goes_on() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let rev0 = keygen(&s, "rev0.key");
    let token = s.read("support.tok");
    let trust = [format!("0={rev0}")];
    let v = Verifier::start(&s, "v1", &url, &trust);
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    let refused = runtime().block_on(async {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let big = vec![b'x'; 65 * 1024];
        match js.publish("mandate.revocations", big.into()).await {
            Err(e) => e.to_string(),
            Ok(ack) => match ack.await {
                Err(e) => e.to_string(),
                Ok(ack) => panic!("stored at {}", ack.sequence),
            },
        }
    });
    assert!(
        refused.to_lowercase().contains("maximum"),
        "refused for another reason: {refused}"
    );
    revoke_signed(&s, &url, &["--token", "support.tok"], "rev0.key", 0);
    v.caught_up(1);
    let (status, d) = v.authorize(&token);
    assert_eq!((status, denial_kind(&d)), (403, "revoked"), "{d}");
}
