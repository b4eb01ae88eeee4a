//! Usage limits across a fleet (issue 17, SPEC §18.5): three `mandate
//! verifierd` processes and a `mandate gateway` on one nats-server share a
//! token's limit through the JetStream key-value bucket `--usage-bucket`.
//! 10 000 concurrent requests spread over the three against a limit of
//! 1 000: exactly 1 000 allowed, in exact mode and with leases; the leases
//! are given back at shutdown; NATS stopped denies with its own kind
//! (`limit_unavailable`), and requests are allowed again once it is back.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use biscuit_auth::{Biscuit, KeyPair};
use common::procs::{free_port, http, http_client, wait_until, Nats, Proc};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Grant, Limit};
use mandate_verifier::feed::FeedConfig;
use mandate_verifier::usage::bucket::{FleetUsage, UsageBucketConfig};
use mandate_verifier::usage::{Charge, UsageMeter};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKET: &str = "MANDATE_USAGE";
/// The longest window: no window boundary falls within a test run.
const LIMIT: &str = "read 1000/366d";

/// A token allowed to read /api/customers/* at most 1 000 times per window,
/// and its counter (hop 0's limit) as a charge of one read.
fn token(issuer: &Issuer) -> (String, Charge) {
    let grant = Grant::parse(&["read:/api/customers/*"], &[] as &[&str])
        .unwrap()
        .with_limit(LIMIT)
        .unwrap();
    let minted = issuer
        .mint(&MintRequest {
            principal: "org:acme".into(),
            agent: "crm-agent".into(),
            agent_key: KeyPair::new().public(),
            grant,
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap();
    let root = issuer.keys().public_keys()[0].1;
    let biscuit = Biscuit::from(&minted.token, root).unwrap();
    let revocation_id = hex::encode(&biscuit.revocation_identifiers()[0]);
    let limit = Limit::parse_count(LIMIT).unwrap();
    let charge = Charge {
        key: limit.counter_key(&revocation_id),
        units: 1,
        max: limit.max,
        window_secs: limit.window_secs,
    };
    (token_to_text(&minted.token), charge)
}

fn root_key(issuer: &Issuer) -> String {
    issuer.keys().public_keys()[0].1.to_string()
}

/// `verifierd` on `nats` counting usage in the fleet's bucket (plus
/// `extra` flags), with a staleness limit long enough that a stopped NATS
/// shows as the usage bucket, not as the revocation feed.
fn verifierd(root: &str, dir: &Path, name: &str, nats: &str, extra: &[&str]) -> Proc {
    let key_file = usage_key(dir);
    let mut args: Vec<std::ffi::OsString> = vec!["verifierd".into(), "--data-dir".into()];
    args.push(dir.join(name).into());
    let revocation_key = format!("0={root}");
    for a in [
        "--public-key",
        root,
        "--revocation-key",
        &revocation_key,
        "--nats",
        nats,
        "--staleness",
        "1h",
        "--listen",
        "127.0.0.1:0",
        "--usage-bucket",
        BUCKET,
        "--usage-key-file",
        key_file.to_str().unwrap(),
    ]
    .iter()
    .chain(extra)
    {
        args.push(a.into());
    }
    ready(Proc::start(args))
}

/// The fleet key the verifiers in `dir` share (made on first use).
fn usage_key(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("usage.key");
    if !path.exists() {
        use sha2::{Digest, Sha256};
        let seed = format!("{:?} {:?}", std::process::id(), std::time::Instant::now());
        std::fs::write(&path, hex::encode(Sha256::digest(seed.as_bytes()))).unwrap();
    }
    path
}

/// `mandate gateway` counting usage in the same bucket; its upstream is
/// down (an allowed request is answered 502, after being charged).
fn gateway(root: &str, dir: &Path, nats: &str) -> Proc {
    let config = format!(
        r#"listen = "127.0.0.1:0"
public_key = "{root}"
revocation_db = "gw-revocations"
nats = "{nats}"
revocation_keys = ["0={root}"]
staleness = "1h"
usage_bucket = "{BUCKET}"
usage_key_file = "{key_file}"

[[routes]]
prefix = "/api/"
upstream = "http://127.0.0.1:{dead}"
"#,
        dead = free_port(),
        key_file = usage_key(dir).display(),
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    ready(Proc::start([
        "gateway",
        "--config",
        dir.join("gateway.toml").to_str().unwrap(),
    ]))
}

/// `p` once its revocation feed has answered (until then it denies
/// everything, `revocation_unavailable`).
fn ready(p: Proc) -> Proc {
    wait_until("the feed answers", Duration::from_secs(20), || {
        http(&p.addr, "GET", "/healthz", "", None).0 == 200
    });
    p
}

/// `GET /api/customers/42` through the gateway: status, `Retry-After`,
/// body.
fn through_gateway(gw: &Proc, token: &str) -> (u16, Option<String>, serde_json::Value) {
    let resp = http_client()
        .get(format!("http://{}/api/customers/42", gw.addr))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = serde_json::from_str(&resp.text().unwrap()).unwrap_or_default();
    (status, retry_after, body)
}

/// A `limit_exceeded` denial of the 1 000 limit, with its reason.
fn assert_exceeded(what: &str, d: &serde_json::Value) {
    assert_eq!(d["denial"]["kind"], "limit_exceeded", "{what}: {d}");
    assert_eq!(d["denial"]["limit"]["used"], 1000, "{what}: {d}");
    assert_eq!(d["denial"]["limit"]["max"], 1000, "{what}: {d}");
    assert_eq!(d["denial"]["limit"]["hop"], 0, "{what}: {d}");
    let reason = d["denial"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exceeded: 1000 of 1000 used"),
        "{what}: {reason}"
    );
}

/// `n` authorizations of `token` from 48 threads at once, request i going
/// to `verifiers[i % 3]`: how many were allowed. Every other answer is 403
/// `limit_exceeded` (verifierd answers every denial 403, SPEC §7.3).
fn hammer(verifiers: &[&Proc], token: &str, n: u64) -> u64 {
    let (next, allowed) = (AtomicU64::new(0), AtomicU64::new(0));
    let odd = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..48 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let (status, d) = verifiers[i as usize % verifiers.len()].authorize(token);
                match status {
                    200 => {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                    403 if d["denial"]["kind"] == "limit_exceeded" => {
                        assert_exceeded("verifierd", &d);
                    }
                    _ => odd.lock().unwrap().push((status, d)),
                }
            });
        }
    });
    let odd = odd.into_inner().unwrap();
    assert!(
        odd.is_empty(),
        "{} other answers: {:?}",
        odd.len(),
        odd.first()
    );
    allowed.into_inner()
}

/// A meter on the bucket, to read the counters the processes share.
fn reader(nats: &Nats, dir: &Path) -> FleetUsage {
    let mut cfg = UsageBucketConfig::new(BUCKET);
    cfg.key_file = Some(usage_key(dir));
    FleetUsage::new(FeedConfig::new(nats.url()), cfg).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn three_verifierds_allow_exactly_the_shared_limit_then_nats_down_denies_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(&dir.path().join("nats"));
    let issuer = Issuer::new(KeyPair::new());
    let root = root_key(&issuer);
    let verifiers: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|n| verifierd(&root, dir.path(), n, &nats.url(), &[]))
        .collect();
    let gw = gateway(&root, dir.path(), &nats.url());
    let refs: Vec<&Proc> = verifiers.iter().collect();

    let (spent, counter) = token(&issuer);
    assert_eq!(hammer(&refs, &spent, 10_000), 1_000);
    assert_eq!(
        reader(&nats, dir.path()).used(&counter, now()).unwrap(),
        1_000
    );
    // The gateway shares the counter: 429 with when it frees up.
    let (status, retry_after, d) = through_gateway(&gw, &spent);
    assert_eq!(status, 429, "{d}");
    assert_exceeded("gateway", &d);
    let retry_after: u64 = retry_after.unwrap().parse().unwrap();
    assert_eq!(
        Some(retry_after),
        d["denial"]["limit"]["retry_after"].as_u64()
    );

    // NATS down: a token with room is denied with its own kind, naming the
    // bucket; nothing else (the feed's staleness limit is an hour).
    let (fresh, _) = token(&issuer);
    assert_eq!(verifiers[0].authorize(&fresh).0, 200);
    nats.stop();
    for v in &verifiers {
        let (status, d) = v.authorize(&fresh);
        assert_eq!(status, 403, "{d}");
        assert_eq!(d["denial"]["kind"], "limit_unavailable", "{d}");
        let reason = d["denial"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("usage bucket {BUCKET} unavailable"))
                && reason.contains("fail closed"),
            "{reason}"
        );
    }
    let (status, _, d) = through_gateway(&gw, &fresh);
    assert_eq!(status, 503, "{d}");
    assert_eq!(d["denial"]["kind"], "limit_unavailable", "{d}");

    // Back (same storage): allowed again without a restart, the spent
    // token still denied.
    nats.restart();
    for v in &verifiers {
        wait_until("the bucket answers again", Duration::from_secs(30), || {
            v.authorize(&fresh).0 == 200
        });
    }
    wait_until("the gateway charges again", Duration::from_secs(30), || {
        through_gateway(&gw, &fresh).0 != 503
    });
    assert_eq!(
        through_gateway(&gw, &fresh).0,
        502,
        "allowed: the upstream is down"
    );
    let (status, d) = verifiers[1].authorize(&spent);
    assert_eq!(status, 403, "{d}");
    assert_exceeded("after recovery", &d);
}

#[test]
fn leased_verifierds_allow_exactly_the_shared_limit_and_give_their_leases_back() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let issuer = Issuer::new(KeyPair::new());
    let root = root_key(&issuer);
    let lease = ["--usage-lease", "50", "--usage-fleet-size", "3"];
    let mut verifiers: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|n| verifierd(&root, dir.path(), n, &nats.url(), &lease))
        .collect();
    let refs: Vec<&Proc> = verifiers.iter().collect();

    let (spent, _) = token(&issuer);
    assert_eq!(hammer(&refs, &spent, 10_000), 1_000);

    // 101 requests: the bucket counts what the leases hold as used until
    // the verifiers shut down and give back what they did not spend.
    let (some, counter) = token(&issuer);
    assert_eq!(hammer(&refs, &some, 101), 101);
    let meter = reader(&nats, dir.path());
    let while_leased = meter.used(&counter, now()).unwrap();
    assert!(while_leased > 101, "slices of 50: {while_leased}");
    for v in &mut verifiers {
        v.interrupt();
    }
    assert_eq!(meter.used(&counter, now()).unwrap(), 101);
}
