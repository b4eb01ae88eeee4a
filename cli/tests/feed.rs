//! The revocation feed across processes, against a real nats-server with
//! JetStream on loopback: issuer services (`mandate serve --nats`) take
//! revocations over HTTP and publish them; three `mandate verifierd`
//! processes follow the feed. Revoke → all three (and the other issuer)
//! deny; a stopped verifier catches up on 1000 revocations; a nats-server
//! restart in the middle of a stream of revocations loses none; a silent
//! feed fails closed and recovers; a message that is not a signed
//! revocation is skipped without stalling anything; a stuck feed (a reset
//! stream) fails closed at once until an operator sets where to resume;
//! NATS credentials. (Signatures: cli/tests/feed_signed.rs.)
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{free_port, http, wait_until, Nats, Proc};
use common::Scenario;
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{parse_private_key, parse_public_key, Grant};
use std::collections::HashSet;
use std::time::Duration;

/// An admin token allowing mint and revoke at the issuer service.
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

/// `POST /v1/revocations` by revocation id; the status.
fn revoke_at(issuer: &Proc, admin: &str, id: &str, reason: &str) -> u16 {
    let body = serde_json::json!({"revocation_id": id, "reason": reason}).to_string();
    let (status, answer) = http(&issuer.addr, "POST", "/v1/revocations", &body, Some(admin));
    assert!(status == 200 || status >= 500, "{status} {answer}");
    status
}

/// `n` tokens minted with the scenario's root key, as (revocation id, token).
fn mint_many(s: &Scenario, n: usize) -> Vec<(String, String)> {
    let root = parse_private_key(&s.read("issuer.key")).unwrap();
    let issuer = Issuer::new(root);
    let agent = parse_public_key(&s.support_pub).unwrap();
    (0..n)
        .map(|i| {
            let m = issuer
                .mint(&MintRequest {
                    principal: format!("user:{i}"),
                    agent: "support-agent".into(),
                    agent_key: agent,
                    grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
                    ttl: Duration::from_secs(3600),
                    purpose: None,
                    max_depth: None,
                })
                .unwrap();
            (m.revocation_ids[0].clone(), m.to_base64())
        })
        .collect()
}

/// The targets in a verifier's store (read-only open beside the running
/// verifier).
fn stored(s: &Scenario, dir: &str) -> HashSet<String> {
    let listed = s.run(&[
        "revocations",
        "--db",
        s.path(dir).to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    listed
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["target"]["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn fake_ids(n: usize, tag: u8) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut id = [tag; 64];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            hex::encode(id)
        })
        .collect()
}

fn start_verifiers(s: &Scenario, url: &str, token: &str) -> Vec<Proc> {
    let verifiers: Vec<Proc> = (0..3)
        .map(|i| Proc::verifierd(&s.issuer_pub, &s.path(&format!("v{i}")), url, &[]))
        .collect();
    for v in &verifiers {
        wait_until(
            "the verifier to reach the feed",
            Duration::from_secs(10),
            || v.authorize(token).0 == 200,
        );
    }
    verifiers
}

#[test]
fn revocations_at_the_issuer_service_reach_every_verifier_and_survive_restarts() {
    let s = Scenario::new();
    let mut nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let admin = admin_token(&s);
    let issuer = Proc::serve(&s.path("issuer.key"), &s.path("issuer-a"), &url);
    // A second issuer service on the same feed: it sees the first one's
    // revocations through the feed alone.
    let other_issuer = Proc::serve(&s.path("issuer.key"), &s.path("issuer-b"), &url);
    let token = s.read("sub.tok");
    let parent = s.read("support.tok");
    let mut verifiers = start_verifiers(&s, &url, &token);

    // 1. Revoke hop 1 at the issuer service: all three verifiers and the other
    //    issuer deny it, naming the hop; the parent token still works.
    let chain: serde_json::Value =
        serde_json::from_str(&s.run(&["inspect", "--json", "sub.tok"]).stdout).unwrap();
    let hop1 = chain["chain"]["hops"][1]["revocation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(revoke_at(&issuer, &admin, &hop1, "task done"), 200);
    // The issuer's own embedded verifier denies as soon as it answered.
    let (status, d) = issuer.authorize(&token);
    assert_eq!(status, 403, "{d}");
    for v in verifiers.iter().chain([&other_issuer]) {
        wait_until("the revocation to arrive", Duration::from_secs(5), || {
            v.authorize(&token).0 == 403
        });
        let (_, d) = v.authorize(&token);
        assert_eq!(d["denial"]["kind"], "revoked", "{d}");
        assert_eq!(d["denial"]["hop"], 1, "{d}");
        assert!(
            d["denial"]["reason"]
                .as_str()
                .unwrap()
                .contains("task done"),
            "{d}"
        );
        assert_eq!(v.authorize(&parent).0, 200);
    }

    // 2. Stop verifier 2, revoke 1000 tokens at the service, restart it: it
    //    denies all 1000 (and the others do too).
    verifiers[2].stop();
    let minted = mint_many(&s, 1000);
    for (id, _) in &minted {
        assert_eq!(revoke_at(&issuer, &admin, id, "bulk"), 200);
    }
    verifiers[2].restart();
    for v in &verifiers {
        wait_until(
            "catching up on 1000 revocations",
            Duration::from_secs(20),
            || v.feed_position() == 1001,
        );
    }
    for (id, tok) in &minted {
        let (status, d) = verifiers[2].authorize(tok);
        assert_eq!(status, 403, "{id} not denied after the restart: {d}");
        assert_eq!(d["denial"]["kind"], "revoked");
    }
    for v in &verifiers[..2] {
        for (_, tok) in minted.iter().step_by(97) {
            assert_eq!(v.authorize(tok).0, 403);
        }
    }

    // 3. Restart nats-server in the middle of a stream of revocations at the
    //    service: every revocation it acknowledged (200) reaches every
    //    verifier.
    let stream_ids = fake_ids(400, 0xb2);
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let client = {
        let (addr, admin) = (issuer.addr.clone(), admin.clone());
        std::thread::spawn(move || {
            for id in stream_ids {
                let body = serde_json::json!({"revocation_id": id, "reason": "stream"});
                let (status, _) = http(
                    &addr,
                    "POST",
                    "/v1/revocations",
                    &body.to_string(),
                    Some(&admin),
                );
                acked_tx.send((id, status)).unwrap();
            }
        })
    };
    let (mut acked, mut failed) = (Vec::new(), 0u64);
    for (id, status) in acked_rx.iter() {
        if status != 200 {
            failed += 1; // not acknowledged: it may or may not be on the stream
            continue;
        }
        acked.push(id);
        if acked.len() == 100 {
            nats.restart();
        }
    }
    client.join().unwrap();
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
    for (i, v) in verifiers.iter().enumerate() {
        let want = 1001 + acked.len() as u64;
        wait_until(
            "catching up after the nats restart",
            Duration::from_secs(30),
            || v.feed_position() >= want,
        );
        let present = stored(&s, &format!("v{i}"));
        let lost = acked.iter().filter(|id| !present.contains(*id)).count();
        assert_eq!(lost, 0, "verifier {i} lost {lost} acknowledged revocations");
    }
    // Once each: an acknowledged revocation is one stream entry (a publish
    // retried across the restart is deduplicated by its message id).
    let position = verifiers[0].feed_position();
    let acked = acked.len() as u64;
    assert!(
        (1001 + acked..=1001 + acked + failed).contains(&position),
        "position {position} for {acked} acknowledged and {failed} failed revocations"
    );
}

#[test]
fn a_silent_feed_fails_closed_and_recovers() {
    let s = Scenario::new();
    let mut nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let token = s.read("support.tok");
    let v = Proc::verifierd(&s.issuer_pub, &s.path("v"), &url, &[]);
    wait_until(
        "the verifier to reach the feed",
        Duration::from_secs(10),
        || v.authorize(&token).0 == 200,
    );

    nats.stop();
    // Staleness limit 2 s: within a few seconds every request is denied.
    wait_until(
        "the verifier to fail closed",
        Duration::from_secs(8),
        || v.authorize(&token).0 == 403,
    );
    let (_, d) = v.authorize(&token);
    assert_eq!(d["denial"]["kind"], "revocation_unavailable");
    let reason = d["denial"]["reason"].as_str().unwrap();
    assert!(reason.contains("revocation list stale"), "{d}");
    assert!(reason.contains("no word from the revocation feed"), "{d}");
    let (status, health) = v.health();
    assert_eq!(status, 503);
    assert_eq!(health["stale"], true);

    nats.restart();
    wait_until("the verifier to recover", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    assert_eq!(v.health().0, 200);
}

#[test]
fn fail_open_must_be_asked_for_by_name() {
    let s = Scenario::new();
    let mut nats = Nats::start(&s.path("nats"));
    let token = s.read("support.tok");
    let v = Proc::verifierd(
        &s.issuer_pub,
        &s.path("v"),
        &nats.url(),
        &["--insecure-fail-open-when-stale"],
    );
    wait_until("the feed", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    nats.stop();
    wait_until("staleness", Duration::from_secs(8), || v.health().0 == 503);
    // Stale, and told so by /healthz, but still allowing: that is what the
    // insecure option says.
    assert_eq!(v.authorize(&token).0, 200);
}

/// Publishes raw bytes on the feed's subject, as a misbehaving publisher.
fn publish_raw(url: &str, payload: &'static [u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish("mandate.revocations", payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
}

/// Deletes the feed's stream and creates it again (sequences restart at 1).
fn reset_stream(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.delete_stream("MANDATE_REVOCATIONS").await.unwrap();
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "MANDATE_REVOCATIONS".into(),
            subjects: vec!["mandate.revocations".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    });
}

/// One issuer service and one verifier on a fresh feed, the verifier allowing.
struct One {
    s: Scenario,
    _nats: Nats,
    url: String,
    admin: String,
    issuer: Proc,
    token: String,
    v: Proc,
}

impl One {
    fn start() -> One {
        let s = Scenario::new();
        let nats = Nats::start(&s.path("nats"));
        let url = nats.url();
        let admin = admin_token(&s);
        let issuer = Proc::serve(&s.path("issuer.key"), &s.path("issuer"), &url);
        let token = s.read("support.tok");
        let v = Proc::verifierd(&s.issuer_pub, &s.path("v"), &url, &[]);
        wait_until("the feed", Duration::from_secs(10), || {
            v.authorize(&token).0 == 200
        });
        One {
            s,
            _nats: nats,
            url,
            admin,
            issuer,
            token,
            v,
        }
    }
}

/// Regression (issue 16): one message that was not a revocation entry made
/// every verifier and issuer service fail closed until an operator acted.
#[test]
fn a_message_that_is_not_a_revocation_is_skipped_and_the_feed_goes_on() {
    let One {
        s,
        _nats,
        url,
        admin,
        issuer,
        token,
        v,
    } = One::start();

    publish_raw(&url, b"{\"not\": \"a revocation\"}");
    // Skipped: the position moves past it, nothing stalls.
    wait_until("the garbage to be skipped", Duration::from_secs(5), || {
        v.feed_position() == 1
    });
    assert_eq!(v.authorize(&token).0, 200);
    assert_eq!(v.health().0, 200);
    assert_eq!(issuer.health().0, 200);
    // Revocations after it, by the issuer service and by the CLI, apply.
    let fakes = fake_ids(2, 0xc3);
    assert_eq!(revoke_at(&issuer, &admin, &fakes[0], "after garbage"), 200);
    std::fs::write(s.path("behind.txt"), &fakes[1]).unwrap();
    let cli = s.run(&[
        "revoke",
        "--db",
        "cli-db",
        "--ids-from",
        "behind.txt",
        "--reason",
        "behind",
        "--nats",
        &url,
        "--revocation-key-file",
        "issuer.key",
    ]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    wait_until("both entries", Duration::from_secs(5), || {
        v.feed_position() == 3
    });
    let present = stored(&s, "v");
    assert!(fakes.iter().all(|id| present.contains(id)));
    assert_eq!(v.authorize(&token).0, 200);
}

#[test]
fn a_reset_stream_stops_the_feed_until_an_operator_resets_the_position() {
    let One {
        s,
        _nats,
        url,
        admin,
        issuer,
        token,
        mut v,
    } = One::start();
    for id in fake_ids(3, 0xd4) {
        assert_eq!(revoke_at(&issuer, &admin, &id, "before"), 200);
    }
    wait_until("3 entries", Duration::from_secs(5), || {
        v.feed_position() == 3
    });

    // The stream is deleted and recreated, and gets as many entries again:
    // the sequence numbers alone cannot tell, the stream's identity can.
    reset_stream(&url);
    let after = fake_ids(4, 0xe5);
    for id in &after {
        assert_eq!(revoke_at(&issuer, &admin, id, "after"), 200);
    }
    wait_until("the reset to be noticed", Duration::from_secs(10), || {
        v.authorize(&token).0 == 403
    });
    let (_, d) = v.authorize(&token);
    let reason = d["denial"]["reason"].as_str().unwrap();
    assert!(reason.contains("the stream was reset"), "{reason}");

    v.stop();
    let shown = s.run(&[
        "revocations",
        "--db",
        s.path("v").to_str().unwrap(),
        "--feed-position",
    ]);
    assert!(
        shown.stdout.contains("feed position 3 in stream"),
        "{}",
        shown.stdout
    );
    let set = s.run(&[
        "revocations",
        "--db",
        s.path("v").to_str().unwrap(),
        "--set-feed-position",
        "0",
    ]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    v.restart();
    wait_until("recovery", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    wait_until("the new stream's entries", Duration::from_secs(5), || {
        v.feed_position() == 4
    });
    let present = stored(&s, "v");
    assert!(after.iter().all(|id| present.contains(id)));
    // Entries applied from the old stream stay.
    assert!(fake_ids(3, 0xd4).iter().all(|id| present.contains(id)));
}

#[test]
fn nats_credentials_come_from_files_and_a_wrong_password_fails_closed() {
    let s = Scenario::new();
    let nats = Nats::start_with(
        &s.path("nats"),
        free_port(),
        &["--user", "verifier", "--pass", "s3cret-pass"],
    );
    let url = nats.url();
    s.write("good.pass", "s3cret-pass\n");
    s.write("bad.pass", "wrong\n");
    let token = s.read("support.tok");
    let good = s.path("good.pass");
    let bad = s.path("bad.pass");

    let wrong = Proc::verifierd(
        &s.issuer_pub,
        &s.path("v-wrong"),
        &url,
        &[
            "--nats-user",
            "verifier",
            "--nats-password-file",
            bad.to_str().unwrap(),
        ],
    );
    let right = Proc::verifierd(
        &s.issuer_pub,
        &s.path("v-right"),
        &url,
        &[
            "--nats-user",
            "verifier",
            "--nats-password-file",
            good.to_str().unwrap(),
        ],
    );
    wait_until("the feed", Duration::from_secs(10), || {
        right.authorize(&token).0 == 200
    });
    let (status, d) = wrong.authorize(&token);
    assert_eq!(status, 403);
    assert!(
        d["denial"]["reason"]
            .as_str()
            .unwrap()
            .contains("has not been reached yet"),
        "{d}"
    );

    // The CLI publishes with the same flags; without them it is refused.
    let denied = s.run(&[
        "revoke",
        "--db",
        "cli-db",
        "--token",
        "support.tok",
        "--reason",
        "x",
        "--nats",
        &url,
        "--revocation-key-file",
        "issuer.key",
    ]);
    assert_eq!(denied.code, 2);
    assert!(
        denied.stderr.contains("revocation feed"),
        "{}",
        denied.stderr
    );
    assert!(!denied.stderr.contains("s3cret"), "{}", denied.stderr);
    let ok = s.run(&[
        "revoke",
        "--db",
        "cli-db",
        "--token",
        "support.tok",
        "--reason",
        "x",
        "--nats",
        &url,
        "--nats-user",
        "verifier",
        "--nats-password-file",
        good.to_str().unwrap(),
        "--revocation-key-file",
        "issuer.key",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    wait_until("the revocation", Duration::from_secs(5), || {
        right.authorize(&token).0 == 403
    });
    // A password on the command line is not a flag at all.
    let refused = s.run(&[
        "verifierd",
        "--data-dir",
        "x",
        "--public-key",
        &s.issuer_pub.clone(),
        "--nats",
        &url,
        "--nats-password",
        "s3cret-pass",
    ]);
    assert_eq!(refused.code, 2);
}
