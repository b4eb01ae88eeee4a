//! Issuer services in a fleet (issue 16 part 5; SERVICE.md S6), against a
//! real nats-server with JetStream on loopback. Two `mandate serve --nats`
//! behind one (imagined) load balancer used to know only the tokens each
//! had minted: a revocation by principal at one missed the other's. Now
//! every mint is published (signed, acknowledged) to `MANDATE_MINTS` before
//! the token is returned, and every issuer service follows that stream into
//! its registry: a revocation by principal at either revokes them all; a
//! forged mint record redirects nothing; NATS down → no token is minted and
//! revocation by principal is refused (503, saying why); a restarted service
//! catches up from the stream.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{http, wait_until, Nats, Proc};
use common::Scenario;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::Duration;

/// An admin token allowing mint and revoke at the issuer services.
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

/// `mandate serve` on the scenario's root key (also its revocation key),
/// following `nats`, with the given staleness limit.
fn serve(s: &Scenario, data: &str, nats: &str, staleness: &str) -> Proc {
    let key = OsString::from(format!("0={}", s.path("issuer.key").display()));
    Proc::start::<_, OsString>([
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        s.path(data).into(),
        "--root-key".into(),
        key.clone(),
        "--revocation-key-file".into(),
        key,
        "--nats".into(),
        nats.into(),
        "--staleness".into(),
        staleness.into(),
    ])
}

/// `POST /v1/tokens` for `principal`: (status, answer).
fn mint(s: &Scenario, at: &Proc, admin: &str, principal: &str) -> (u16, Value) {
    let body = json!({
        "principal": principal,
        "agent": "support-agent",
        "agent_key": s.support_pub,
        "allow": ["read:/api/customers/*"],
        "ttl": "1h",
    });
    http(
        &at.addr,
        "POST",
        "/v1/tokens",
        &body.to_string(),
        Some(admin),
    )
}

/// A mint that must succeed: (token id, token).
fn minted(s: &Scenario, at: &Proc, admin: &str, principal: &str) -> (String, String) {
    let (status, answer) = mint(s, at, admin, principal);
    assert_eq!(status, 201, "{answer}");
    (
        answer["token_id"].as_str().unwrap().to_string(),
        answer["token"].as_str().unwrap().to_string(),
    )
}

/// `POST /v1/revocations {"principal": …}`: (status, answer).
fn revoke_principal(at: &Proc, admin: &str, principal: &str) -> (u16, Value) {
    let body = json!({"principal": principal, "reason": "left the company"});
    http(
        &at.addr,
        "POST",
        "/v1/revocations",
        &body.to_string(),
        Some(admin),
    )
}

fn revoked_ids(answer: &Value) -> BTreeSet<String> {
    answer["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["target"]["kind"], "token", "{e}");
            e["target"]["value"].as_str().unwrap().to_string()
        })
        .collect()
}

fn ids(tokens: &[(String, String)]) -> BTreeSet<String> {
    tokens.iter().map(|(id, _)| id.clone()).collect()
}

/// Publishes raw bytes on the mint stream's subject, as an outsider with
/// publish access to NATS could.
fn publish_raw(url: &str, payload: Vec<u8>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(url).await.unwrap();
            let js = async_nats::jetstream::new(client);
            js.publish("mandate.mints", payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        });
}

fn healthy(p: &Proc) -> bool {
    p.health().0 == 200
}

/// One principal's tokens minted at both issuer services; a revocation by
/// principal at one revokes all of them (a verifier following the feed
/// denies each `revoked`), and nothing else — not even a token a forged
/// mint record claims for that principal. A stopped service catches up from
/// the stream on restart.
#[test]
fn revocation_by_principal_at_one_issuer_service_revokes_tokens_minted_at_every_one() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    let a = serve(&s, "issuer-a", &url, "2s");
    let mut b = serve(&s, "issuer-b", &url, "2s");
    let v = Proc::verifierd(&s.issuer_pub, &s.path("verifier"), &url, &[]);
    wait_until("the issuers and verifier", Duration::from_secs(15), || {
        healthy(&a) && healthy(&b) && healthy(&v)
    });
    let admin = admin_token(&s);

    let mut bob = vec![
        minted(&s, &a, &admin, "user:bob"),
        minted(&s, &a, &admin, "user:bob"),
        minted(&s, &b, &admin, "user:bob"),
        minted(&s, &b, &admin, "user:bob"),
    ];
    let carol = minted(&s, &b, &admin, "user:carol");
    let bobby = minted(&s, &a, &admin, "user:bobby");
    for (_, token) in bob.iter().chain([&carol, &bobby]) {
        let (status, d) = v.authorize(token);
        assert_eq!(status, 200, "{d}");
    }

    // An outsider publishes garbage and a record claiming carol's token for
    // user:bob (wrongly signed): neither applies, neither stalls anything.
    publish_raw(&url, b"not a mint record".to_vec());
    let forged_record = json!({
        "token_id": carol.0, "principal": "user:bob", "agent": "x",
        "agent_key": s.support_pub, "revocation_ids": [], "root_key_id": 0,
        "minted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z",
        "minted_by": "mallory",
    })
    .to_string();
    let forged = json!({"record": forged_record, "key_id": 0, "sig": "00".repeat(64)});
    publish_raw(&url, forged.to_string().into_bytes());
    // A token minted after them is still followed.
    bob.push(minted(&s, &b, &admin, "user:bob"));

    let (status, answer) = revoke_principal(&a, &admin, "user:bob");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(revoked_ids(&answer), ids(&bob), "{answer}");

    // Every verifier (the standalone one, and both services' embedded ones)
    // denies each of bob's tokens as revoked; carol's and bobby's live on.
    for (_, token) in &bob {
        wait_until(
            "the revocation at the verifier",
            Duration::from_secs(10),
            || v.authorize(token).0 == 403,
        );
        for p in [&v, &a, &b] {
            let (status, d) = p.authorize(token);
            assert_eq!(status, 403, "{d}");
            assert_eq!(d["denial"]["kind"], "revoked", "{d}");
            assert!(
                d["denial"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("left the company"),
                "{d}"
            );
        }
    }
    for (_, token) in [&carol, &bobby] {
        for p in [&v, &a, &b] {
            let (status, d) = p.authorize(token);
            assert_eq!(status, 200, "{d}");
        }
    }

    // B stopped; tokens minted at A meanwhile; B restarted catches up from
    // the stream and its revocation by principal includes them.
    b.stop();
    let while_down = vec![
        minted(&s, &a, &admin, "user:dave"),
        minted(&s, &a, &admin, "user:dave"),
    ];
    b.restart();
    wait_until("B after restart", Duration::from_secs(15), || healthy(&b));
    let (status, answer) = revoke_principal(&b, &admin, "user:dave");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(revoked_ids(&answer), ids(&while_down), "{answer}");
    for (_, token) in &while_down {
        wait_until(
            "dave's revocation at the verifier",
            Duration::from_secs(10),
            || v.authorize(token).0 == 403,
        );
        assert_eq!(v.authorize(token).1["denial"]["kind"], "revoked");
    }
    // And B's registry knows A's tokens by id too (the note names the owner).
    let body = json!({"token_id": bobby.0, "reason": "check"}).to_string();
    let (status, answer) = http(&b.addr, "POST", "/v1/revocations", &body, Some(&admin));
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["revoked"][0]["note"]
            .as_str()
            .unwrap()
            .contains("\"user:bobby\""),
        "{answer}"
    );
}

/// NATS down: a mint fails with a 503 saying the mint stream is unavailable
/// and hands out no token; a revocation by principal is refused (503, with
/// the reason) rather than revoking only what this service has seen. Both
/// work again once NATS is back.
#[test]
fn without_the_mint_stream_nothing_is_minted_and_revocation_by_principal_fails_closed() {
    let s = Scenario::new();
    let mut nats = Nats::start(&s.path("nats"));
    let url = nats.url();
    // A long staleness limit: the admin token keeps being accepted while
    // NATS is down, so what fails is the mint stream itself.
    let a = serve(&s, "issuer-a", &url, "1h");
    let b = serve(&s, "issuer-b", &url, "1h");
    wait_until("the issuers", Duration::from_secs(15), || {
        healthy(&a) && healthy(&b)
    });
    let admin = admin_token(&s);
    let first = minted(&s, &a, &admin, "user:erin");

    nats.stop();
    let (status, answer) = mint(&s, &a, &admin, "user:erin");
    assert_eq!(status, 503, "{answer}");
    assert!(answer.get("token").is_none(), "{answer}");
    let why = answer["error"].as_str().unwrap();
    assert!(why.contains("no token minted"), "{why}");
    assert!(why.contains("MANDATE_MINTS"), "{why}");

    let (status, answer) = revoke_principal(&b, &admin, "user:erin");
    assert_eq!(status, 503, "{answer}");
    let why = answer["error"].as_str().unwrap();
    assert!(why.contains("revocation by principal refused"), "{why}");
    assert!(why.contains("MANDATE_MINTS"), "{why}");

    nats.restart();
    let mut second = None;
    wait_until(
        "minting after NATS is back",
        Duration::from_secs(30),
        || {
            let (status, answer) = mint(&s, &b, &admin, "user:erin");
            if status == 201 {
                second = Some(answer["token_id"].as_str().unwrap().to_string());
            }
            status == 201
        },
    );
    let mut answer = Value::Null;
    wait_until(
        "revoking after NATS is back",
        Duration::from_secs(30),
        || {
            let (status, a2) = revoke_principal(&a, &admin, "user:erin");
            answer = a2;
            status == 200
        },
    );
    let expected: BTreeSet<String> = [first.0, second.unwrap()].into_iter().collect();
    // The failed mint left a local record at A (never handed out, never
    // published): it is revoked too, harmlessly.
    let got = revoked_ids(&answer);
    assert!(got.is_superset(&expected), "{answer}");
    assert!(got.len() <= 3, "{answer}");
}

/// Junk published on the mint stream without pause, faster than a disk
/// sync (2 000 messages before, more during), does not keep the registry
/// behind: revocations by principal pass the barrier and revoke.
#[test]
fn junk_on_the_mint_stream_does_not_keep_revocation_by_principal_behind() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"));
    let admin = admin_token(&s);
    let a = serve(&s, "a", &nats.url(), "1h");
    wait_until("the issuer service", Duration::from_secs(15), || {
        healthy(&a)
    });
    let (id, _) = minted(&s, &a, &admin, "org:acme");
    let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
    let url = nats.url();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let client = async_nats::connect(url.as_str()).await.unwrap();
                    let js = async_nats::jetstream::new(client);
                    while !stop.load(Ordering::Relaxed) {
                        let mut acks = Vec::new();
                        for i in 0..500 {
                            let junk = format!("junk {i}").into_bytes();
                            acks.push(js.publish("mandate.mints", junk.into()).await.unwrap());
                        }
                        for ack in acks {
                            ack.await.unwrap();
                        }
                        sent.fetch_add(500, Ordering::Relaxed);
                    }
                });
        });
        wait_until("2 000 junk messages", Duration::from_secs(30), || {
            sent.load(Ordering::Relaxed) >= 2000
        });
        let answers: Vec<_> = (0..3)
            .map(|_| revoke_principal(&a, &admin, "org:acme"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        for (i, (status, answer)) in answers.iter().enumerate() {
            assert_eq!(*status, 200, "revocation {i}: {answer}");
        }
        assert_eq!(
            revoked_ids(&answers[0].1),
            BTreeSet::from([id.clone()]),
            "{}",
            answers[0].1
        );
    });
}
