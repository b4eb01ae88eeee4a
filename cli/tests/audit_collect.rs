//! Central collection and truncation (issue 16 part 4, SPEC §12.4): three
//! `mandate verifierd` publish their signed audit checkpoints and records
//! to the MANDATE_AUDIT stream of a real nats-server; `mandate audit
//! collect` gathers them into one verified timeline; records edited,
//! deleted, reordered or cut from the tail of one verifier's published log
//! are each named for that verifier; a local log whose tail was cut (records
//! and their checkpoints) verifies as ok on its own and is named truncated
//! only when checked against the published checkpoints.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{wait_until, Nats, Proc};
use common::Scenario;
use serde_json::Value;
use std::time::Duration;

const VERIFIERS: usize = 3;
/// The third verifier is a gateway (the others `verifierd`).
const GATEWAY: usize = 2;
const REQUESTS: usize = 5;

struct Fleet {
    s: Scenario,
    nats: Nats,
    verifiers: Vec<Proc>,
    /// Each verifier's audit public key, `ed25519/<hex>`.
    keys: Vec<String>,
}

impl Fleet {
    fn start() -> Fleet {
        let s = Scenario::new();
        let nats = Nats::start(&s.path("nats"));
        let mut verifiers = Vec::new();
        let mut keys = Vec::new();
        for i in 0..VERIFIERS {
            let key = s.run(&["keygen", "--out", &format!("audit{i}.key")]);
            assert_eq!(key.code, 0, "{}", key.stderr);
            keys.push(key.stdout.trim().to_string());
            let (db, key_file) = (
                s.path(&format!("audit{i}")),
                s.path(&format!("audit{i}.key")),
            );
            if i == GATEWAY {
                verifiers.push(gateway(&s, &nats.url()));
                continue;
            }
            verifiers.push(Proc::verifierd(
                &s.issuer_pub,
                &s.path(&format!("v{i}")),
                &nats.url(),
                &[
                    "--audit-db",
                    db.to_str().unwrap(),
                    "--audit-key",
                    key_file.to_str().unwrap(),
                    "--audit-publish",
                    "--audit-publish-records",
                ],
            ));
        }
        for v in &verifiers {
            wait_until("the feed reached", Duration::from_secs(20), || {
                v.health().0 == 200
            });
        }
        Fleet {
            s,
            nats,
            verifiers,
            keys,
        }
    }

    fn id(&self, i: usize) -> String {
        self.keys[i].strip_prefix("ed25519/").unwrap().to_string()
    }

    /// `mandate audit collect --json --out timeline.jsonl`: (exit code,
    /// summary, timeline lines).
    fn collect(&self) -> (i32, Value, Vec<Value>) {
        let out = self.s.path("timeline.jsonl");
        let url = self.nats.url();
        let mut args = vec![
            "audit",
            "collect",
            "--nats",
            &url,
            "--json",
            "--out",
            out.to_str().unwrap(),
        ];
        for k in &self.keys {
            args.extend(["--log-key", k.as_str()]);
        }
        let run = self.s.run(&args);
        // Before anything is published: an error line, no summary.
        let summary: Value = serde_json::from_str(run.stdout.trim()).unwrap_or(Value::Null);
        let lines = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (run.code, summary, lines)
    }

    fn verdict<'a>(&self, summary: &'a Value, i: usize) -> &'a Value {
        let id = self.id(i);
        summary["verifiers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["verifier"] == id.as_str())
            .unwrap_or_else(|| panic!("verifier {i} not in {summary}"))
    }

    /// Verifier `i`'s records as its local log holds them (exactly the
    /// bytes it published).
    fn local_records(&self, i: usize) -> Vec<String> {
        let run = self
            .s
            .run(&["audit", "export", "--db", &format!("audit{i}")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout
            .lines()
            .filter(|l| l.starts_with("{\"record\":"))
            .map(str::to_string)
            .collect()
    }

    /// As someone with write access to the stream would: replaces verifier
    /// `i`'s published records with `lines` (fresh messages, no dedup id).
    fn rewrite_records(&self, i: usize, lines: &[String]) {
        let subject = format!("mandate.audit.{}.records", self.id(i));
        let url = self.nats.url();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
                let stream = js.get_stream("MANDATE_AUDIT").await.unwrap();
                stream.purge().filter(subject.clone()).await.unwrap();
                for l in lines {
                    js.publish(subject.clone(), l.clone().into_bytes().into())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                }
            });
    }
}

/// A gateway publishing its audit checkpoints and records (audit2), in
/// front of an upstream that is down: an allowed request is decided and
/// recorded, then answered 502.
fn gateway(s: &Scenario, nats: &str) -> Proc {
    let config = format!(
        r#"listen = "127.0.0.1:0"
public_key = "{root}"
revocation_db = "gw-revocations"
nats = "{nats}"
revocation_keys = ["0={root}"]
audit_dir = "audit2"
audit_key_file = "audit2.key"
audit_publish = true
audit_publish_records = true

[[routes]]
prefix = "/api/"
upstream = "http://127.0.0.1:{dead}"
"#,
        root = s.issuer_pub,
        dead = common::procs::free_port()
    );
    s.write("gateway.toml", &config);
    Proc::start([
        "gateway",
        "--config",
        s.path("gateway.toml").to_str().unwrap(),
    ])
}

/// An allowed decision at verifier `i` (`verifierd`, or the gateway).
fn authorize(f: &Fleet, i: usize, token: &str, resource: &str) {
    let v = &f.verifiers[i];
    if i == GATEWAY {
        let path = format!("{resource}?rows=1");
        let (status, body) = common::procs::http(&v.addr, "GET", &path, "", Some(token.trim()));
        assert_eq!(status, 502, "allowed, then no upstream: {body}");
        return;
    }
    let (status, body) = v.authorize_as(token, "read", resource);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");
}

#[test]
fn collect_merges_three_verifiers_and_names_each_tampering_of_one() {
    let f = Fleet::start();
    let token = f.s.read("sub.tok");
    for r in 0..REQUESTS {
        for i in 0..VERIFIERS {
            authorize(&f, i, &token, &format!("/api/customers/v{i}-r{r}"));
        }
    }
    // Published in the background (every second): wait for all of it.
    let mut collected = None;
    wait_until("every record published", Duration::from_secs(30), || {
        let c = f.collect();
        let done = c.0 == 0 && c.1["records"] == VERIFIERS * REQUESTS;
        collected = Some(c);
        done
    });
    let (_, summary, timeline) = collected.unwrap();
    assert_eq!(summary["status"], "ok", "{summary}");
    for i in 0..VERIFIERS {
        let v = f.verdict(&summary, i);
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(v["covered_through"], REQUESTS, "{v}");
        // Each verifier's records in the timeline, in their own order.
        let seqs: Vec<u64> = timeline
            .iter()
            .filter(|l| l["verifier"] == f.id(i).as_str())
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=REQUESTS as u64).collect::<Vec<_>>());
    }
    // One timeline, merged by decision time.
    let times: Vec<&str> = timeline
        .iter()
        .map(|l| l["record"]["decided_at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by_key(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
    });
    assert_eq!(times, sorted);
    let resources: Vec<&str> = timeline
        .iter()
        .map(|l| l["record"]["request"]["resource"].as_str().unwrap())
        .collect();
    assert!(resources.contains(&"/api/customers/v2-r4"), "{resources:?}");

    // Tampering with verifier 1's published records, one way at a time:
    // each is named for verifier 1; the others stay ok and in the timeline.
    let original = f.local_records(1);
    assert_eq!(original.len(), REQUESTS);
    let edited = {
        let mut l = original.clone();
        l[1] = l[1].replace("/api/customers/v1-r1", "/api/customers/v1-rX");
        assert_ne!(l[1], original[1]);
        l
    };
    let deleted = {
        let mut l = original.clone();
        l.remove(2);
        l
    };
    let reordered = {
        let mut l = original.clone();
        l.swap(1, 2);
        l
    };
    let truncated = original[..3].to_vec();
    for (what, lines, needle) in [
        // An edited record no longer matches its hash: set aside (anyone
        // could have published it), and the genuine record 2 is missing.
        ("edit", &edited, "record 2 was removed"),
        ("delete", &deleted, "record 3 was removed"),
        ("reorder", &reordered, "records were reordered"),
        (
            "truncate",
            &truncated,
            // The first published checkpoint beyond record 3 is named (4 or 5).
            "were removed from the end: the log ends at record 3, but the checkpoint at audit \
             stream message",
        ),
    ] {
        f.rewrite_records(1, lines);
        let (code, summary, timeline) = f.collect();
        assert_eq!(code, 1, "{what}: {summary}");
        assert_eq!(summary["status"], "tampered", "{what}: {summary}");
        let v = f.verdict(&summary, 1);
        assert_eq!(v["status"], "tampered", "{what}: {v}");
        let problem = v["problem"].as_str().unwrap();
        assert!(problem.contains(needle), "{what}: {problem}");
        if what == "edit" {
            assert!(
                v["injected"][0]
                    .as_str()
                    .unwrap()
                    .contains("a record 2 whose content does not match its hash"),
                "{v}"
            );
        }
        for i in [0, 2] {
            assert_eq!(f.verdict(&summary, i)["status"], "ok", "{what}: {summary}");
        }
        // Only the intact verifiers' records make the timeline.
        assert_eq!(timeline.len(), 2 * REQUESTS, "{what}");
        assert!(timeline.iter().all(|l| l["verifier"] != f.id(1).as_str()));
    }
    f.rewrite_records(1, &original);
    let (code, summary, _) = f.collect();
    assert_eq!(code, 0, "restored: {summary}");
}

#[test]
fn a_local_log_cut_at_its_end_is_named_truncated_only_against_the_published_checkpoints() {
    let mut f = Fleet::start();
    let token = f.s.read("sub.tok");
    for r in 0..REQUESTS {
        authorize(&f, 0, &token, &format!("/api/customers/v0-r{r}"));
    }
    let published = |f: &Fleet| {
        let run = f.s.run(&[
            "audit",
            "verify",
            "--db",
            "audit0",
            "--public-key",
            &f.keys[0],
            "--nats",
            &f.nats.url(),
            "--json",
        ]);
        serde_json::from_str::<Value>(run.stdout.trim()).unwrap()
    };
    wait_until(
        "the last checkpoint published",
        Duration::from_secs(30),
        || published(&f)["status"] == "ok",
    );
    let intact = published(&f);
    assert_eq!(intact["last_seq"], REQUESTS, "{intact}");
    assert!(
        intact["published_checkpoints"].as_u64().unwrap() >= 1,
        "{intact}"
    );

    // Someone with the host cuts the last two records off the log, with the
    // checkpoints that covered them: what is left is a perfect log.
    f.verifiers[0].stop();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let families = rocksdb::DB::list_cf(&opts, f.s.path("audit0")).unwrap();
        let db = rocksdb::DB::open_cf(&opts, f.s.path("audit0"), families).unwrap();
        let cf = db.cf_handle("checkpoints").unwrap();
        for seq in 4u64..=5 {
            db.delete(seq.to_be_bytes()).unwrap();
            db.delete_cf(&cf, seq.to_be_bytes()).unwrap();
        }
    }
    let local = f.s.run(&[
        "audit",
        "verify",
        "--db",
        "audit0",
        "--public-key",
        &f.keys[0],
    ]);
    assert_eq!(
        local.code, 0,
        "plain local verify cannot see it: {}",
        local.stderr
    );
    assert!(
        local.stdout.starts_with("ok: 3 records (1..3)"),
        "{}",
        local.stdout
    );

    let against = f.s.run(&[
        "audit",
        "verify",
        "--db",
        "audit0",
        "--public-key",
        &f.keys[0],
        "--nats",
        &f.nats.url(),
    ]);
    assert_eq!(against.code, 1, "{}", against.stdout);
    // Named by the first published checkpoint beyond the cut (over record
    // 4 or 5, whichever the publisher's rounds caught).
    assert!(
        against.stderr.starts_with("TAMPERED: records 4 to ")
            && against.stderr.contains(
                "were removed from the end: the log ends at record 3, but the checkpoint at \
                 audit stream message"
            ),
        "{}",
        against.stderr
    );

    // The same cut in an export (records and checkpoints lines removed).
    let export = f.s.run(&["audit", "export", "--db", "audit0"]);
    f.s.write("cut.jsonl", &export.stdout);
    let local = f.s.run(&[
        "audit",
        "verify",
        "--file",
        "cut.jsonl",
        "--public-key",
        &f.keys[0],
    ]);
    assert_eq!(local.code, 0, "{}", local.stderr);
    let against = f.s.run(&[
        "audit",
        "verify",
        "--file",
        "cut.jsonl",
        "--public-key",
        &f.keys[0],
        "--nats",
        &f.nats.url(),
        "--json",
    ]);
    assert_eq!(against.code, 1);
    let v: Value = serde_json::from_str(against.stdout.trim()).unwrap();
    assert_eq!(v["status"], "tampered", "{v}");
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("were removed from the end: the log ends at record 3"),
        "{v}"
    );

    // A verifier that published nothing: its end cannot be checked, said so.
    let none = f.s.run(&[
        "audit",
        "verify",
        "--db",
        "audit1",
        "--public-key",
        &f.keys[1],
        "--nats",
        &f.nats.url(),
    ]);
    assert_eq!(none.code, 1);
    assert!(
        none.stderr.contains("UNPUBLISHED") || none.stderr.contains("EMPTY"),
        "{}",
        none.stderr
    );
}

/// Publishing never holds a decision back: with NATS stopped, decisions are
/// still answered and recorded; their checkpoints wait in the local log and
/// are published once NATS is back (SPEC §12.4).
#[test]
fn checkpoints_wait_in_the_log_while_nats_is_down_and_go_out_when_it_is_back() {
    let mut f = Fleet::start();
    let token = f.s.read("sub.tok");
    let collected = |f: &Fleet| {
        let (_, summary, _) = f.collect();
        if summary.is_null() {
            return 0;
        }
        f.verdict(&summary, 0)["covered_through"]
            .as_u64()
            .unwrap_or(0)
    };
    authorize(&f, 0, &token, "/api/customers/before");
    wait_until("record 1 published", Duration::from_secs(30), || {
        collected(&f) == 1
    });
    f.nats.stop();
    // Answered at once (the feed's staleness limit is 2 s: still fresh),
    // recorded locally although nothing can be published.
    let started = std::time::Instant::now();
    for r in 0..3 {
        authorize(&f, 0, &token, &format!("/api/customers/down-{r}"));
    }
    let answered_in = started.elapsed();
    let local = f.s.run(&[
        "audit",
        "verify",
        "--db",
        "audit0",
        "--public-key",
        &f.keys[0],
    ]);
    assert!(
        local.stdout.starts_with("ok: 4 records (1..4)"),
        "{}",
        local.stdout
    );
    f.nats.restart();
    wait_until(
        "the queued checkpoints published",
        Duration::from_secs(30),
        || collected(&f) == 4,
    );
    println!("3 decisions with NATS down answered in {answered_in:?}");
}

#[test]
fn audit_publish_without_a_log_or_nats_is_refused_at_start() {
    let s = Scenario::new();
    let r = s.run(&[
        "verifierd",
        "--data-dir",
        "v",
        "--public-key",
        &s.issuer_pub,
        "--audit-publish",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--nats"), "{}", r.stderr);
    let r = s.run(&[
        "verifierd",
        "--data-dir",
        "v",
        "--public-key",
        &s.issuer_pub,
        "--nats",
        "nats://127.0.0.1:1",
        "--revocation-key",
        &format!("0={}", s.issuer_pub),
        "--audit-publish",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--audit-publish needs an audit log"),
        "{}",
        r.stderr
    );
    s.write(
        "gw.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\npublic_key = \"{}\"\naudit_dir = \"a\"\n\
             audit_key_file = \"a.key\"\naudit_publish = true\n[[routes]]\nprefix = \"/x/\"\n\
             upstream = \"http://127.0.0.1:1\"\n",
            s.issuer_pub
        ),
    );
    let r = s.run(&["gateway", "--config", "gw.toml"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("line 5") && r.stderr.contains("audit_publish needs audit_dir"),
        "{}",
        r.stderr
    );
}

/// `/ui/decisions` reads the issuer service's log by position (a reader
/// kept open and caught up per page), never the whole log: decisions made
/// after a page was served are on the next one, newest first, and the
/// total is the log's length.
#[test]
fn the_decisions_page_reads_new_records_by_position() {
    let s = Scenario::new();
    s.run(&["keygen", "--out", "service-audit.key"]);
    let admin = s
        .run(&[
            "issue",
            "--key",
            "issuer.key",
            "--principal",
            "ops:auditor",
            "--to",
            "auditor",
            "--to-key",
            &s.support_pub,
            "--allow",
            "review:/ui/decisions",
            "--ttl",
            "1h",
        ])
        .stdout
        .trim()
        .to_string();
    let serve = Proc::start([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        s.path("data").to_str().unwrap(),
        "--root-key",
        &format!("0={}", s.path("issuer.key").display()),
        "--audit-key",
        s.path("service-audit.key").to_str().unwrap(),
    ]);
    let token = s.read("sub.tok");
    let decide = |resource: &str| {
        let (status, body) = serve.authorize_as(&token, "read", resource);
        assert_eq!(status, 200, "{body}");
    };
    let page = || {
        let resp = common::procs::http_client()
            .get(format!("http://{}/ui/decisions?limit=2", serve.addr))
            .bearer_auth(&admin)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().unwrap()
    };
    for r in 0..3 {
        decide(&format!("/api/customers/first-{r}"));
    }
    let first = page();
    // 3 decisions, then the page's own access (a decision too).
    assert!(
        first.contains(" shown of 4 in the signed audit log"),
        "{first}"
    );
    assert!(first.contains("/api/customers/first-2"), "{first}");
    assert!(
        !first.contains("/api/customers/first-0"),
        "limit 2: {first}"
    );
    decide("/api/customers/later");
    let second = page();
    assert!(
        second.contains(" shown of 6 in the signed audit log"),
        "{second}"
    );
    assert!(second.contains("/api/customers/later"), "{second}");
    assert!(!second.contains("/api/customers/first-2"), "{second}");
}

/// Publishes `bytes` on `subject` of the audit stream, as anyone allowed to
/// publish on it could (no dedup id unless `msg_id`).
fn inject(nats: &str, subject: &str, bytes: &[u8], msg_id: Option<&str>) {
    let (url, subject, bytes, msg_id) = (
        nats.to_string(),
        subject.to_string(),
        bytes.to_vec(),
        msg_id.map(str::to_string),
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
            let mut m =
                async_nats::jetstream::message::PublishMessage::build().payload(bytes.into());
            if let Some(id) = msg_id {
                m = m.message_id(id);
            }
            js.send_publish(subject, m).await.unwrap().await.unwrap();
        });
}

/// The checkpoints published for verifier `i`'s log, as the stream holds them.
fn published_checkpoints(f: &Fleet, i: usize) -> Vec<mandate_verifier::audit::SignedCheckpoint> {
    let cfg = mandate_verifier::audit::publish::AuditPublishConfig::new(
        mandate_verifier::feed::FeedConfig::new(f.nats.url()),
    );
    let id = f.id(i);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(mandate_verifier::audit::publish::read_published_checkpoints(&cfg, &id))
        .unwrap()
        .into_iter()
        .filter_map(|(_, c)| c.ok())
        .collect()
}

/// A forged checkpoint over record u64::MAX, published by an outsider on a
/// log's checkpoint subject, once stopped that log's publication for good
/// (after a restart it believed everything published): only checkpoints
/// signed by the log's key count.
#[test]
fn a_forged_checkpoint_on_the_stream_does_not_stop_publication() {
    let mut f = Fleet::start();
    let token = f.s.read("sub.tok");
    authorize(&f, 0, &token, "/api/customers/first");
    let covers = |f: &Fleet, seq: u64| {
        published_checkpoints(f, 0)
            .iter()
            .any(|c| c.checkpoint.seq == seq)
    };
    wait_until("record 1 published", Duration::from_secs(30), || {
        covers(&f, 1)
    });
    let mut forged = published_checkpoints(&f, 0).pop().unwrap();
    forged.checkpoint.seq = u64::MAX;
    let subject = format!("mandate.audit.{}.checkpoints", f.id(0));
    inject(&f.nats.url(), &subject, b"not even json", None);
    inject(
        &f.nats.url(),
        &subject,
        &serde_json::to_vec(&forged).unwrap(),
        None,
    );
    f.verifiers[0].restart();
    wait_until("verifier 0 back", Duration::from_secs(20), || {
        f.verifiers[0].health().0 == 200
    });
    for r in 0..2 {
        authorize(&f, 0, &token, &format!("/api/customers/after-{r}"));
    }
    wait_until("records 2 and 3 published", Duration::from_secs(30), || {
        covers(&f, 3)
    });
}

/// Messages an outsider publishes on a log's subjects (garbage, a
/// checkpoint not signed by the log's key, a record that does not match its
/// hash) once made `collect` and `verify --nats` call that log tampered
/// for good: they are set aside, named as injected, and the log is judged
/// by what its key signed.
#[test]
fn forged_messages_on_a_logs_subjects_are_set_aside_not_called_tampering() {
    let f = Fleet::start();
    let token = f.s.read("sub.tok");
    for r in 0..2 {
        authorize(&f, 0, &token, &format!("/api/customers/r{r}"));
    }
    // Every expected verifier has a log on the stream.
    authorize(&f, 1, &token, "/api/customers/v1");
    authorize(&f, GATEWAY, &token, "/api/customers/v2");
    let covered = |f: &Fleet| {
        let (code, summary, _) = f.collect();
        code == 0 && f.verdict(&summary, 0)["covered_through"] == 2
    };
    wait_until("records published", Duration::from_secs(30), || covered(&f));
    let (cps, recs) = (
        format!("mandate.audit.{}.checkpoints", f.id(0)),
        format!("mandate.audit.{}.records", f.id(0)),
    );
    let mut forged = published_checkpoints(&f, 0).pop().unwrap();
    forged.checkpoint.seq = 1;
    let record = f.local_records(0)[1].replace("/api/customers/r1", "/api/customers/rX");
    inject(&f.nats.url(), &cps, b"junk", None);
    inject(
        &f.nats.url(),
        &cps,
        &serde_json::to_vec(&forged).unwrap(),
        None,
    );
    inject(&f.nats.url(), &recs, b"junk", None);
    inject(&f.nats.url(), &recs, record.as_bytes(), None);
    // Record 2 altered with its hash recomputed (records are hashed, not
    // signed): a valid record under a number the log has. Once "tampered".
    let mut rehashed: mandate_verifier::audit::AuditEntry =
        serde_json::from_str(&f.local_records(0)[1]).unwrap();
    rehashed.record.request.resource = "/api/customers/rY".into();
    rehashed.hash = hex::encode(rehashed.record.hash());
    inject(
        &f.nats.url(),
        &recs,
        &serde_json::to_vec(&rehashed).unwrap(),
        None,
    );
    // And a copy of the log's own record 1 (a publisher's retry).
    inject(&f.nats.url(), &recs, f.local_records(0)[0].as_bytes(), None);
    let (code, summary, timeline) = f.collect();
    assert_eq!(code, 0, "{summary}");
    let v = f.verdict(&summary, 0);
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["covered_through"], 2, "{v}");
    let injected = v["injected"].as_array().unwrap();
    assert_eq!(injected.len(), 5, "{v}");
    assert!(
        injected.iter().any(|i| i
            .as_str()
            .unwrap()
            .contains("a second record 2, not on the chain the log's checkpoints sign")),
        "{v}"
    );
    assert!(
        !timeline
            .iter()
            .any(|l| l.to_string().contains("/api/customers/rY")),
        "the rehashed record is not in the timeline"
    );
    assert!(
        injected.iter().any(|i| i
            .as_str()
            .unwrap()
            .contains("a checkpoint (over record 1) not signed by the log's key")),
        "{v}"
    );
    assert_eq!(
        timeline
            .iter()
            .filter(|l| l["verifier"] == f.id(0).as_str())
            .count(),
        2
    );
    let verify = f.s.run(&[
        "audit",
        "verify",
        "--db",
        "audit0",
        "--public-key",
        &f.keys[0],
        "--nats",
        &f.nats.url(),
    ]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert!(
        verify.stderr.contains("injected: audit stream message"),
        "{}",
        verify.stderr
    );
}

/// `collect` once merged whatever log it found on the stream (an outsider's
/// self-signed log too) and said nothing of a verifier that published
/// nothing: it now takes the expected verifiers' keys, and names foreign
/// and missing logs (exit 1), or is told --any-log and says the logs are
/// unauthenticated.
#[test]
fn collect_names_foreign_and_missing_logs_and_needs_the_expected_keys() {
    let f = Fleet::start();
    let token = f.s.read("sub.tok");
    for i in 0..VERIFIERS {
        authorize(&f, i, &token, &format!("/api/customers/v{i}"));
    }
    wait_until("every record published", Duration::from_secs(30), || {
        let (code, summary, _) = f.collect();
        code == 0 && summary["records"] == VERIFIERS
    });
    let absent = f.s.run(&["keygen", "--out", "absent.key"]).stdout;
    let absent = absent.trim();
    // Verifiers 0 and 1 expected (one in a file), plus one that published
    // nothing; verifier 2's log is not expected.
    f.s.write(
        "verifiers.txt",
        &format!("# the fleet\n{}\n\n{absent}\n", f.keys[1]),
    );
    let run = f.s.run(&[
        "audit",
        "collect",
        "--nats",
        &f.nats.url(),
        "--log-key",
        &f.keys[0],
        "--verifiers",
        "verifiers.txt",
        "--json",
        "--out",
        "t.jsonl",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let summary: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(summary["status"], "incomplete", "{summary}");
    assert_eq!(summary["records"], 2, "{summary}");
    assert_eq!(f.verdict(&summary, 2)["status"], "foreign", "{summary}");
    let missing = summary["verifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["verifier"] == absent.strip_prefix("ed25519/").unwrap())
        .unwrap();
    assert_eq!(missing["status"], "missing", "{summary}");
    let timeline = f.s.read("t.jsonl");
    assert!(!timeline.contains(&f.id(2)), "{timeline}");

    // Without keys: refused, saying why.
    let run = f.s.run(&["audit", "collect", "--nats", &f.nats.url()]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("needs the expected verifiers' audit public keys")
            && run.stderr.contains("--any-log"),
        "{}",
        run.stderr
    );
    // --any-log: every log merged, said to be unauthenticated.
    let run = f.s.run(&[
        "audit",
        "collect",
        "--nats",
        &f.nats.url(),
        "--any-log",
        "--out",
        "t.jsonl",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("logs unauthenticated"),
        "{}",
        run.stdout
    );
    // A key that is not one: refused.
    let run = f.s.run(&[
        "audit",
        "collect",
        "--nats",
        &f.nats.url(),
        "--log-key",
        "ed25519/zz",
    ]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("--log-key"), "{}", run.stderr);
}

/// The `Nats-Msg-Id`s of a log's messages are predictable: an outsider who
/// published junk under the next record's and checkpoint's ids (within the
/// duplicate window) once had the real ones dropped as duplicates, and the
/// publisher counted them published. A duplicate ack is now checked
/// against what the stream holds, and the message published again.
#[test]
fn a_message_id_taken_by_an_outsider_does_not_drop_the_real_message() {
    let f = Fleet::start();
    let token = f.s.read("sub.tok");
    authorize(&f, 0, &token, "/api/customers/first");
    let covers = |f: &Fleet, seq: u64| {
        published_checkpoints(f, 0)
            .iter()
            .any(|c| c.checkpoint.seq == seq)
    };
    wait_until("record 1 published", Duration::from_secs(30), || {
        covers(&f, 1)
    });
    let id = f.id(0);
    for seq in 2..=4 {
        inject(
            &f.nats.url(),
            &format!("mandate.audit.{id}.records"),
            b"junk",
            Some(&format!("{id}.r.{seq}")),
        );
        inject(
            &f.nats.url(),
            &format!("mandate.audit.{id}.checkpoints"),
            b"junk",
            Some(&format!("{id}.c.{seq}")),
        );
    }
    authorize(&f, 0, &token, "/api/customers/second");
    wait_until("record 2 published", Duration::from_secs(30), || {
        covers(&f, 2)
    });
    let (_, summary, timeline) = f.collect();
    assert_eq!(f.verdict(&summary, 0)["covered_through"], 2, "{summary}");
    assert!(
        timeline
            .iter()
            .any(|l| l["record"]["request"]["resource"] == "/api/customers/second"),
        "{timeline:?}"
    );
}
