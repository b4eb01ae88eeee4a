//! Single use across a fleet (issue 16 part 2, SPEC §14.4, §15, §11):
//! verifiers on one NATS spend approvals in a JetStream key-value bucket
//! (`--spend-bucket`), so an approval allowed at one verifier is refused at
//! every other, however many try at once; with the bucket unreachable,
//! approvals are denied with their own reason, and accepted again once NATS
//! is back. Real nats-server, `mandate verifierd` and `mandate gateway`
//! processes; the 1 000-way race runs at the library level (three
//! verifiers, each with its own fleet record and local guard).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use biscuit_auth::{Biscuit, KeyPair};
use common::procs::{free_port, http, wait_until, Nats, Proc};
use mandate_attenuate::{approve, attach_approval};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Audience, Grant, HolderProof, ProofSubject, Request};
use mandate_verifier::{
    feed::FeedConfig,
    replay::{ReplayGuard, SingleUse, Use},
    spend_bucket::{FleetSingleUse, SpendBucketConfig},
    CacheOptions, DenialKind, Presented, RootKeys, Verifier,
};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

const BUCKET: &str = "MANDATE_SPENT";

/// A token allowed to read /pay/*, every read needing the finance key's
/// approval; approvals are made from the token's third-party request.
struct Seed {
    issuer: Issuer,
    finance: KeyPair,
    token: Vec<u8>,
    made: std::sync::atomic::AtomicU64,
}

impl Seed {
    fn new() -> Seed {
        let (issuer, agent, finance) =
            (Issuer::new(KeyPair::new()), KeyPair::new(), KeyPair::new());
        let grant = Grant::parse(&["read:/pay/*"], &[] as &[&str])
            .unwrap()
            .with_approval(&format!("read by finance={}", finance.public()))
            .unwrap();
        let token = issuer
            .mint(&MintRequest {
                principal: "org:acme".into(),
                agent: "payments-agent".into(),
                agent_key: agent.public(),
                grant,
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: Some(2),
            })
            .unwrap()
            .token;
        Seed {
            issuer,
            finance,
            token,
            made: Default::default(),
        }
    }

    fn root(&self) -> String {
        self.issuer.keys().public_keys()[0].1.to_string()
    }

    fn keys(&self) -> RootKeys {
        let (id, key) = self.issuer.keys().public_keys()[0];
        RootKeys::new().with(id, key)
    }

    /// The token with a fresh approval of `read /pay/invoice`, as text.
    /// Ed25519 is deterministic: each call's approval expires a second
    /// later than the last, so its signature (what is spent) differs.
    fn approved(&self) -> String {
        let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (_, root) = self.issuer.keys().public_keys()[0];
        let tpr = Biscuit::from(&self.token, root)
            .unwrap()
            .third_party_request()
            .unwrap()
            .serialize_base64()
            .unwrap();
        let block = approve(
            &tpr,
            &invoice(),
            SystemTime::now() + Duration::from_secs(300 + n),
            &self.finance,
        )
        .unwrap();
        token_to_text(&attach_approval(&self.token, &block).unwrap().token)
    }
}

fn invoice() -> Request {
    Request::new("read", "/pay/invoice")
}

/// `verifierd` on `nats` spending in the fleet's bucket, with a staleness
/// limit long enough that a stopped NATS shows as the bucket, not the feed.
fn verifierd(seed: &Seed, dir: &Path, name: &str, nats: &str) -> Proc {
    let root = seed.root();
    let data = dir.join(name);
    let replay = dir.join(format!("{name}-replay"));
    let mut args: Vec<std::ffi::OsString> = vec!["verifierd".into(), "--data-dir".into()];
    args.push(data.into());
    for a in [
        "--public-key",
        &root,
        "--revocation-key",
        &format!("0={root}"),
        "--nats",
        nats,
        "--staleness",
        "1h",
        "--listen",
        "127.0.0.1:0",
        "--spend-bucket",
        BUCKET,
        "--replay-db",
    ] {
        args.push(a.into());
    }
    args.push(replay.into());
    ready(Proc::start(args))
}

/// A gateway on the same NATS and bucket; its route's upstream is down, so
/// an allowed request is a 502 (decided, then not answered) and a denied
/// one a 403 with the decision.
fn gateway(seed: &Seed, dir: &Path, nats: &str) -> Proc {
    let root = seed.root();
    let config = format!(
        r#"listen = "127.0.0.1:0"
public_key = "{root}"
revocation_db = "gw-revocations"
nats = "{nats}"
revocation_keys = ["0={root}"]
staleness = "1h"
replay_db = "gw-replay"
spend_bucket = "{BUCKET}"

[[routes]]
prefix = "/pay/"
upstream = "http://127.0.0.1:{dead}"
"#,
        dead = free_port()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    ready(Proc::start([
        "gateway",
        "--config",
        dir.join("gateway.toml").to_str().unwrap(),
    ]))
}

/// `p` once its revocation feed has answered (`/healthz` 200): until then
/// it denies everything (`revocation_unavailable`).
fn ready(p: Proc) -> Proc {
    wait_until("the feed answers", Duration::from_secs(20), || {
        http(&p.addr, "GET", "/healthz", "", None).0 == 200
    });
    p
}

/// `POST /v1/authorize` of `read /pay/invoice` with `token`.
fn authorize(v: &Proc, token: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "token": token,
        "action": "read",
        "resource": "/pay/invoice",
        "params": {},
    })
    .to_string();
    http(&v.addr, "POST", "/v1/authorize", &body, None)
}

/// `GET /pay/invoice` through the gateway with `token`.
fn through_gateway(gw: &Proc, token: &str) -> (u16, serde_json::Value) {
    http(&gw.addr, "GET", "/pay/invoice", "", Some(token))
}

fn assert_replayed(what: &str, (status, d): &(u16, serde_json::Value)) {
    assert_eq!(*status, 403, "{what}: {d}");
    assert_eq!(d["denial"]["kind"], "approval_replayed", "{what}: {d}");
    let reason = d["denial"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("already used"), "{what}: {reason}");
}

#[test]
fn an_approval_used_at_one_verifier_is_refused_at_every_other() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let seed = Seed::new();
    let a = verifierd(&seed, dir.path(), "a", &nats.url());
    let b = verifierd(&seed, dir.path(), "b", &nats.url());
    let gw = gateway(&seed, dir.path(), &nats.url());

    // Without an approval: needs one (the rule applies), nothing spent.
    let (status, d) = authorize(&a, &token_to_text(&seed.token));
    assert_eq!(status, 403, "{d}");
    assert_eq!(d["denial"]["kind"], "needs_approval", "{d}");

    // Used at A: refused at B and at the gateway, and at A again.
    let first = seed.approved();
    let (status, d) = authorize(&a, &first);
    assert_eq!(status, 200, "{d}");
    assert_replayed("B after A", &authorize(&b, &first));
    assert_replayed("gateway after A", &through_gateway(&gw, &first));
    assert_replayed("A again", &authorize(&a, &first));

    // Used first at the gateway (allowed: the upstream is down, so 502):
    // refused at both verifierd.
    let second = seed.approved();
    let (status, d) = through_gateway(&gw, &second);
    assert_eq!(status, 502, "allowed at the gateway, then no upstream: {d}");
    assert_replayed("A after the gateway", &authorize(&a, &second));
    assert_replayed("B after the gateway", &authorize(&b, &second));
    assert_replayed("gateway again", &through_gateway(&gw, &second));
}

#[test]
fn a_hundred_concurrent_uses_over_http_across_three_servers_allow_one() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let seed = Seed::new();
    let a = verifierd(&seed, dir.path(), "a", &nats.url());
    let b = verifierd(&seed, dir.path(), "b", &nats.url());
    let gw = gateway(&seed, dir.path(), &nats.url());
    let token = seed.approved();
    let go = Barrier::new(100);
    let results: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let (a, b, gw, token, go) = (&a, &b, &gw, &token, &go);
                s.spawn(move || {
                    go.wait();
                    match i % 3 {
                        0 => authorize(a, token),
                        1 => authorize(b, token),
                        _ => through_gateway(gw, token),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let allowed = results
        .iter()
        .filter(|(s, _)| *s == 200 || *s == 502)
        .count();
    assert_eq!(allowed, 1, "exactly one use allowed across the fleet");
    for r in results.iter().filter(|(s, _)| *s != 200 && *s != 502) {
        assert_replayed("a concurrent use", r);
    }
}

/// A verifier with its own fleet record and local guard, as three
/// API servers embedding the library would have.
fn fleet_verifier(seed: &Seed, dir: &Path, name: &str, nats: &str) -> Verifier {
    let local = Arc::new(ReplayGuard::open(dir.join(name)).unwrap());
    let mut cfg = SpendBucketConfig::new(BUCKET);
    // A loaded 2-core machine: no spend may time out and be counted as
    // unavailable instead of replayed.
    cfg.timeout = Duration::from_secs(20);
    let record = FleetSingleUse::new(local, FeedConfig::new(nats), cfg).unwrap();
    record.connect().unwrap();
    Verifier::new(seed.keys()).with_single_use(Arc::new(record))
}

#[test]
fn a_thousand_concurrent_uses_across_three_verifiers_allow_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let seed = Seed::new();
    let verifiers: Vec<Verifier> = ["a", "b", "c"]
        .iter()
        .map(|n| fleet_verifier(&seed, dir.path(), n, &nats.url()))
        .collect();
    let token = mandate_spec::token_from_text(&seed.approved()).unwrap();
    let go = Barrier::new(1000);
    let kinds: Vec<Option<DenialKind>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                let (v, token, go) = (&verifiers[i % 3], &token, &go);
                s.spawn(move || {
                    go.wait();
                    let d = v.authorize(token, &invoice());
                    d.denial.map(|x| x.kind)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let allowed = kinds.iter().filter(|k| k.is_none()).count();
    let replayed = kinds
        .iter()
        .filter(|k| **k == Some(DenialKind::ApprovalReplayed))
        .count();
    assert_eq!(allowed, 1, "{kinds:?}");
    assert_eq!(replayed, 999, "every other attempt is a replay: {kinds:?}");
}

#[test]
fn with_nats_stopped_approvals_are_denied_naming_the_bucket_then_accepted_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(&dir.path().join("nats"));
    let seed = Seed::new();
    let a = verifierd(&seed, dir.path(), "a", &nats.url());
    let gw = gateway(&seed, dir.path(), &nats.url());
    let token = seed.approved();
    nats.stop();
    // verifierd answers every denial 403; the gateway a 503 (retry later).
    for (what, expected, (status, d)) in [
        ("verifierd", 403, authorize(&a, &token)),
        ("gateway", 503, through_gateway(&gw, &token)),
    ] {
        assert_eq!(status, expected, "{what}: {d}");
        assert_eq!(
            d["denial"]["kind"], "replay_record_unavailable",
            "{what}: {d}"
        );
        let reason = d["denial"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(BUCKET) && reason.contains("fail closed"),
            "{what}: {reason}"
        );
    }
    // Nothing was spent while it was down: once NATS is back (same
    // storage), the approval is accepted once, without a restart.
    nats.restart();
    wait_until("the bucket answers again", Duration::from_secs(30), || {
        authorize(&a, &token).0 == 200
    });
    assert_replayed("gateway after recovery", &through_gateway(&gw, &token));
}

#[test]
fn nonces_spent_in_the_bucket_are_single_use_fleet_wide_and_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(&dir.path().join("nats"));
    let record = |name: &str, nonces: bool| {
        let mut cfg = SpendBucketConfig::new(BUCKET);
        cfg.nonces = nonces;
        let local = Arc::new(ReplayGuard::open(dir.path().join(name)).unwrap());
        FleetSingleUse::new(local, FeedConfig::new(nats.url()), cfg).unwrap()
    };
    let (a, b, local_only) = (record("a", true), record("b", true), record("c", false));
    assert!(a.remote_nonces() && !local_only.remote_nonces());
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
    let nonce = b"nonce:holder-key-bytes:n0nce-123";
    assert_eq!(a.use_once(nonce, until, false).unwrap(), Use::First);
    assert_eq!(b.use_once(nonce, until, false).unwrap(), Use::Replayed);
    // Without `nonces`, a nonce stays in the verifier's own record.
    assert_eq!(
        local_only.use_once(nonce, until, false).unwrap(),
        Use::First
    );
    // An approval valid longer than the bucket keeps entries: refused,
    // never recorded for too short a time.
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let e = a.use_once(b"approval-signature:x", far, true).unwrap_err();
    assert!(
        e.to_string().contains("longer than the bucket keeps"),
        "{e}"
    );
    nats.stop();
    let e = a.use_once(b"nonce:k:other", until, false).unwrap_err();
    assert!(e.to_string().contains("MANDATE_SPENT_NONCES"), "{e}");
    // A key already seen here is answered locally, NATS or not.
    assert_eq!(a.use_once(nonce, until, false).unwrap(), Use::Replayed);
}

/// A token requiring proof of possession (no approval rule), its holder's
/// key, and a fresh proof of `GET /pay/invoice` for it.
struct Bound {
    issuer: Issuer,
    agent: KeyPair,
    token: Vec<u8>,
}

impl Bound {
    fn new() -> Bound {
        let (issuer, agent) = (Issuer::new(KeyPair::new()), KeyPair::new());
        let mut grant = Grant::parse(&["read:/pay/*"], &[] as &[&str]).unwrap();
        grant.holder_bound = true;
        let token = issuer
            .mint(&MintRequest {
                principal: "org:acme".into(),
                agent: "payments-agent".into(),
                agent_key: agent.public(),
                grant,
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: Some(2),
            })
            .unwrap()
            .token;
        Bound {
            issuer,
            agent,
            token,
        }
    }

    /// A verifier with a cache, spending in `record`.
    fn verifier(&self, record: Arc<dyn SingleUse>) -> Verifier {
        let (id, key) = self.issuer.keys().public_keys()[0];
        Verifier::new(RootKeys::new().with(id, key))
            .with_cache(CacheOptions::default())
            .with_single_use(record)
    }

    fn presented(&self) -> Presented {
        let audience = Audience::parse("https://api.example.com").unwrap();
        let proof = HolderProof::sign(
            &self.agent,
            &ProofSubject {
                method: "GET",
                audience: &audience,
                target: "/pay/invoice",
                body_digest: ProofSubject::digest(b""),
                token: &self.token,
            },
            SystemTime::now(),
        )
        .unwrap();
        Presented::new("GET", b"", Some(proof)).at(Some(audience), "/pay/invoice")
    }
}

#[test]
fn proof_nonces_spent_in_the_bucket_are_never_spent_inline_and_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(&dir.path().join("nats"));
    let bound = Bound::new();
    let fleet = |name: &str| -> Arc<dyn SingleUse> {
        let mut cfg = SpendBucketConfig::new(BUCKET);
        cfg.nonces = true;
        let local = Arc::new(ReplayGuard::open(dir.path().join(name)).unwrap());
        Arc::new(FleetSingleUse::new(local, FeedConfig::new(nats.url()), cfg).unwrap())
    };
    let (a, b) = (bound.verifier(fleet("a")), bound.verifier(fleet("b")));
    let local_only = bound.verifier(Arc::new(
        ReplayGuard::open(dir.path().join("local")).unwrap(),
    ));
    for v in [&a, &b, &local_only] {
        assert!(v.verifies(&bound.token));
    }
    // A proof's nonce in the bucket is a round trip: never on the inline
    // (async-thread) path; with a local record it still is.
    let p = bound.presented();
    assert!(a
        .try_authorize_inline(&bound.token, &invoice(), &p)
        .is_none());
    assert!(local_only
        .try_authorize_inline(&bound.token, &invoice(), &p)
        .is_some());

    // Used at A: replayed at B.
    let p = bound.presented();
    let d = a.authorize_presented(&bound.token, &invoice(), &p);
    assert!(d.is_allowed(), "{:?}", d.denial);
    let d = b.authorize_presented(&bound.token, &invoice(), &p);
    let denial = d.denial.unwrap();
    assert_eq!(denial.kind, DenialKind::ProofInvalid);
    assert!(denial.reason.contains("replayed"), "{}", denial.reason);

    // NATS down: a fresh proof is denied with the nonce bucket named.
    nats.stop();
    let d = b.authorize_presented(&bound.token, &invoice(), &bound.presented());
    let denial = d.denial.unwrap();
    assert_eq!(denial.kind, DenialKind::ReplayRecordUnavailable);
    assert!(
        denial.reason.contains("MANDATE_SPENT_NONCES") && denial.reason.contains("fail closed"),
        "{}",
        denial.reason
    );
}

#[test]
fn a_spend_bucket_without_nats_or_a_local_record_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Seed::new().root();
    // verifierd: --spend-bucket needs --nats and --replay-db.
    let r = common::mandate(
        d,
        &[
            "verifierd",
            "--data-dir",
            "v",
            "--public-key",
            &root,
            "--replay-db",
            "r",
            "--spend-bucket",
            BUCKET,
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--nats"), "{}", r.stderr);
    // The gateway: the line of the setting is named.
    std::fs::write(
        d.join("gw.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\npublic_key = \"{root}\"\nreplay_db = \"r\"\n\
             spend_bucket = \"{BUCKET}\"\n[[routes]]\nprefix = \"/pay/\"\n\
             upstream = \"http://127.0.0.1:1\"\n"
        ),
    )
    .unwrap();
    let r = common::mandate(d, &["gateway", "--config", "gw.toml"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("line 4") && r.stderr.contains("spend_bucket needs nats"),
        "{}",
        r.stderr
    );
    // An invalid bucket name: refused, named.
    let r = common::mandate(
        d,
        &[
            "verifierd",
            "--data-dir",
            "v",
            "--public-key",
            &root,
            "--revocation-key",
            &format!("0={root}"),
            "--nats",
            "nats://127.0.0.1:1",
            "--replay-db",
            "r",
            "--spend-bucket",
            "no.dots",
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a valid bucket name"), "{}", r.stderr);
}

/// Runs `f` with a JetStream context on `url`.
fn with_js<T>(
    url: &str,
    f: impl AsyncFnOnce(async_nats::Client, async_nats::jetstream::Context) -> T,
) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(url).await.unwrap();
            let js = async_nats::jetstream::new(client.clone());
            f(client, js).await
        })
}

fn fleet_record(dir: &Path, name: &str, nats: &str, bucket: &str) -> FleetSingleUse {
    let local = Arc::new(ReplayGuard::open(dir.join(name)).unwrap());
    let mut cfg = SpendBucketConfig::new(bucket);
    cfg.timeout = Duration::from_secs(20);
    FleetSingleUse::new(local, FeedConfig::new(nats), cfg).unwrap()
}

#[test]
fn a_purge_or_delete_marker_published_over_a_spent_key_does_not_unspend_it() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let until = time::OffsetDateTime::now_utc() + Duration::from_secs(600);
    let a = fleet_record(dir.path(), "a", &nats.url(), BUCKET);
    for (i, op) in ["PURGE", "DEL"].iter().enumerate() {
        let key = format!("approval-signature-{i}");
        assert_eq!(a.use_once(key.as_bytes(), until, true).unwrap(), Use::First);
        // Anyone able to publish to the bucket's subjects writes a marker
        // over the spent key (plain, and as kv.purge does, with a rollup).
        let subject = format!(
            "$KV.{BUCKET}.{}",
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        );
        with_js(&nats.url(), async |client, _js| {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("KV-Operation", *op);
            client
                .publish_with_headers(subject.clone(), headers.clone(), "".into())
                .await
                .unwrap();
            headers.insert("Nats-Rollup", "sub");
            client
                .publish_with_headers(subject.clone(), headers, "".into())
                .await
                .unwrap();
            client.flush().await.unwrap();
        });
        // A verifier that has not cached the key still finds it spent.
        let fresh = fleet_record(dir.path(), &format!("fresh-{i}"), &nats.url(), BUCKET);
        assert_eq!(
            fresh.use_once(key.as_bytes(), until, true).unwrap(),
            Use::Replayed,
            "a {op} marker un-spent the key"
        );
    }
}

#[test]
fn a_pre_created_bucket_stream_that_could_lose_spent_keys_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let bucket = "EVICTING";
    with_js(&nats.url(), async |_client, js| {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_age: Duration::from_secs(1),
            max_messages: 10,
            discard: async_nats::jetstream::stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let record = fleet_record(dir.path(), "a", &nats.url(), bucket);
    let err = record.connect().unwrap_err().to_string();
    for words in [
        "refusing its existing stream KV_EVICTING",
        "max_msgs_per_subject",
        "max_msgs is 10 with discard old",
        "deny_delete is false",
        "deny_purge is false",
        "max_age is 1 s",
    ] {
        assert!(err.contains(words), "{words:?} missing from: {err}");
    }
    // A spend is refused the same way: denied, never recorded there.
    let until = time::OffsetDateTime::now_utc() + Duration::from_secs(60);
    let err = record.use_once(b"k", until, true).unwrap_err().to_string();
    assert!(err.contains("refusing its existing stream"), "{err}");
}
