//! The fleet's usage counters (SPEC §18.5) against a real nats-server:
//! three meters on one JetStream key-value bucket, as three verifiers
//! would be. Exact mode and leased mode: concurrent charges never spend
//! more than the limit and spend all of it; leases are given back; several
//! counters are charged all or nothing; NATS stopped denies (a lease keeps
//! paying what it holds, never more) and recovery follows its restart.
#![allow(clippy::unwrap_used, missing_docs)]

use mandate_verifier::feed::FeedConfig;
use mandate_verifier::usage::bucket::{FleetUsage, LeaseConfig, UsageBucketConfig};
use mandate_verifier::usage::{Charge, Charged, UsageMeter};
use mandate_verifier::VerifierError;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A nats-server with JetStream on a temporary directory, killed when
/// dropped (as cli/tests/common/procs.rs, which needs the CLI binary).
struct Nats {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Nats {
    fn start(dir: &Path) -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Nats::start_on(dir, port)
    }

    fn start_on(dir: &Path, port: u16) -> Nats {
        let key = dir.join("usage.key");
        if !key.exists() {
            // A fresh fleet key per test (not a secret anyone keeps).
            use sha2::{Digest, Sha256};
            let seed = format!("{:?} {:?} {port}", std::process::id(), Instant::now());
            std::fs::write(&key, hex::encode(Sha256::digest(seed.as_bytes()))).unwrap();
        }
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/setup.sh installs it)");
        wait_until("nats-server to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Nats {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The fleet key the meters of this test share.
    fn key_file(&self) -> PathBuf {
        self.dir.join("usage.key")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        *self = Nats::start_on(&self.dir.clone(), self.port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const BUCKET: &str = "TEST_USAGE";
/// The longest window (366 days): no window boundary falls in a test run,
/// so the idle sweeper (which reads the clock) never ends a lease early.
const WINDOW: u64 = 366 * 86_400;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn charge(key: &str, units: u64, max: u64) -> Charge {
    Charge {
        key: key.into(),
        units,
        max,
        window_secs: WINDOW,
    }
}

/// One charge as a request's charges.
fn one(c: &Charge) -> &[Charge] {
    std::slice::from_ref(c)
}

fn meter(nats: &Nats, lease: Option<LeaseConfig>) -> FleetUsage {
    let mut cfg = UsageBucketConfig::new(BUCKET);
    // Generous: the machine runs other builds; nothing here waits on it.
    cfg.timeout = Duration::from_secs(20);
    cfg.lease = lease;
    cfg.key_file = Some(nats.key_file());
    let m = FleetUsage::new(FeedConfig::new(nats.url()), cfg).unwrap();
    m.connect().unwrap();
    m
}

fn lease(slice: u64, idle: Duration) -> LeaseConfig {
    let mut l = LeaseConfig::new(slice);
    l.fleet_size = 3;
    l.idle = idle;
    l
}

/// `n` charges of one unit against `c` (a limit of `c.max`), from 32
/// threads per meter at once, spread over `meters`: (spent, exceeded).
/// Every exceeded charge reports the counter full.
fn hammer(meters: &[&FleetUsage], c: &Charge, n: u64, unix: i64) -> (u64, u64) {
    let (spent, exceeded) = (AtomicU64::new(0), AtomicU64::new(0));
    let next = AtomicU64::new(0);
    let threads = 32 * meters.len();
    std::thread::scope(|s| {
        for t in 0..threads {
            let m = meters[t % meters.len()];
            let (spent, exceeded, next) = (&spent, &exceeded, &next);
            s.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    match m.charge(std::slice::from_ref(c), unix).unwrap() {
                        Charged::Spent => spent.fetch_add(1, Ordering::Relaxed),
                        Charged::Exceeded {
                            index,
                            used,
                            window_end,
                        } => {
                            assert_eq!(index, 0);
                            assert_eq!(used, c.max, "denied only when full");
                            assert_eq!(window_end, c.window_of(unix).1);
                            exceeded.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
    });
    (spent.into_inner(), exceeded.into_inner())
}

#[test]
fn exact_mode_10000_concurrent_charges_on_3_meters_spend_exactly_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let (a, b, c) = (meter(&nats, None), meter(&nats, None), meter(&nats, None));
    let limit = charge("exact", 1, 1_000);
    let unix = now();
    let (spent, exceeded) = hammer(&[&a, &b, &c], &limit, 10_000, unix);
    assert_eq!((spent, exceeded), (1_000, 9_000));
    for m in [&a, &b, &c] {
        assert_eq!(m.used(&limit, unix).unwrap(), 1_000);
        assert_eq!(m.leased(), 0);
    }
}

#[test]
fn leased_mode_10000_concurrent_charges_on_3_meters_spend_exactly_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let idle = Duration::from_secs(600);
    let meters: Vec<FleetUsage> = (0..3)
        .map(|_| meter(&nats, Some(lease(100, idle))))
        .collect();
    let limit = charge("leased", 1, 1_000);
    let unix = now();
    let refs: Vec<&FleetUsage> = meters.iter().collect();
    let (spent, exceeded) = hammer(&refs, &limit, 10_000, unix);
    assert_eq!((spent, exceeded), (1_000, 9_000));
    let held: u64 = meters.iter().map(FleetUsage::leased).sum();
    assert_eq!(held, 0, "every leased unit was spent");
    for m in &meters {
        m.close().unwrap();
    }
    assert_eq!(meters[0].used(&limit, unix).unwrap(), 1_000);
}

#[test]
fn leases_are_given_back_on_close_and_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let meters: Vec<FleetUsage> = (0..3)
        .map(|_| meter(&nats, Some(lease(50, Duration::from_secs(600)))))
        .collect();
    let limit = charge("given-back", 1, 1_000);
    let unix = now();
    let refs: Vec<&FleetUsage> = meters.iter().collect();
    let (spent, exceeded) = hammer(&refs, &limit, 301, unix);
    assert_eq!((spent, exceeded), (301, 0));
    // While the leases are out the bucket counts them as used.
    let held: u64 = meters.iter().map(FleetUsage::leased).sum();
    assert!(held > 0, "slices of 50 units, 301 spent");
    assert_eq!(meters[0].used(&limit, unix).unwrap(), 301 + held);
    for m in &meters {
        m.close().unwrap();
        assert_eq!(m.leased(), 0);
    }
    assert_eq!(
        meters[0].used(&limit, unix).unwrap(),
        301,
        "only what was spent"
    );

    // Idle: given back by the meter itself, without a close.
    let idle = meter(&nats, Some(lease(50, Duration::from_millis(200))));
    let other = charge("idle", 1, 1_000);
    assert_eq!(idle.charge(one(&other), unix).unwrap(), Charged::Spent);
    wait_until("the idle lease to be given back", || {
        idle.used(&other, unix).unwrap() == 1
    });
    assert_eq!(idle.leased(), 0);

    // Dropping the meter closes it.
    let dropped = meter(&nats, Some(lease(50, Duration::from_secs(600))));
    let third = charge("dropped", 1, 1_000);
    assert_eq!(dropped.charge(one(&third), unix).unwrap(), Charged::Spent);
    drop(dropped);
    assert_eq!(idle.used(&third, unix).unwrap(), 1);
}

#[test]
fn a_lease_is_never_more_than_the_counter_has_left() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let a = meter(&nats, Some(lease(100, Duration::from_secs(600))));
    let b = meter(&nats, Some(lease(100, Duration::from_secs(600))));
    let small = charge("small", 1, 3);
    let unix = now();
    assert_eq!(a.charge(one(&small), unix).unwrap(), Charged::Spent);
    assert_eq!(a.leased(), 0, "⌈3/6⌉ = 1 unit leased, spent");
    assert_eq!(b.charge(one(&small), unix).unwrap(), Charged::Spent);
    assert_eq!(a.charge(one(&small), unix).unwrap(), Charged::Spent);
    assert_eq!(
        b.charge(one(&small), unix).unwrap(),
        Charged::Exceeded {
            index: 0,
            used: 3,
            window_end: small.window_of(unix).1
        }
    );
    // A budget charge larger than a slice takes what it needs at once.
    let budget = charge("budget", 250, 1_000);
    assert_eq!(a.charge(one(&budget), unix).unwrap(), Charged::Spent);
    assert_eq!(a.used(&budget, unix).unwrap(), 250);
    let too_much = charge("budget", 751, 1_000);
    assert!(matches!(
        b.charge(&[too_much], unix).unwrap(),
        Charged::Exceeded { used: 250, .. }
    ));
}

#[test]
fn several_counters_are_charged_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let unix = now();
    for (mode, lease) in [
        ("exact", None),
        ("leased", Some(lease(5, Duration::from_secs(600)))),
    ] {
        let m = meter(&nats, lease);
        let first = charge(&format!("{mode}-first"), 1, 10);
        let full = charge(&format!("{mode}-full"), 1, 1);
        assert_eq!(m.charge(one(&full), unix).unwrap(), Charged::Spent);
        let both = [first.clone(), full.clone()];
        assert_eq!(
            m.charge(&both, unix).unwrap(),
            Charged::Exceeded {
                index: 1,
                used: 1,
                window_end: full.window_of(unix).1
            },
            "{mode}"
        );
        m.close().unwrap();
        assert_eq!(
            m.used(&first, unix).unwrap(),
            0,
            "{mode}: the first counter was not charged"
        );
        assert_eq!(m.charge(one(&first), unix).unwrap(), Charged::Spent);
        m.close().unwrap();
        assert_eq!(m.used(&first, unix).unwrap(), 1, "{mode}");

        // A refund gives back what an allowed charge took.
        let refunded = charge(&format!("{mode}-refunded"), 2, 2);
        assert_eq!(m.charge(one(&refunded), unix).unwrap(), Charged::Spent);
        m.refund(one(&refunded), unix).unwrap();
        assert_eq!(m.charge(one(&refunded), unix).unwrap(), Charged::Spent);
        m.close().unwrap();
        assert_eq!(m.used(&refunded, unix).unwrap(), 2, "{mode}");
    }
}

fn is_unavailable(r: Result<Charged, VerifierError>) -> bool {
    match r {
        Err(e @ VerifierError::UsageBucket { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("usage bucket {BUCKET} unavailable")),
                "{text}"
            );
            true
        }
        other => panic!("expected the bucket unavailable, got {other:?}"),
    }
}

#[test]
fn nats_stopped_denies_a_lease_pays_what_it_holds_and_recovery_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path());
    let exact = meter(&nats, None);
    let mut slice = LeaseConfig::new(10);
    slice.fleet_size = 1;
    slice.idle = Duration::from_secs(600);
    let leased = meter(&nats, Some(slice));
    let c = charge("outage", 1, 1_000);
    let unix = now();
    assert_eq!(exact.charge(one(&c), unix).unwrap(), Charged::Spent);
    assert_eq!(leased.charge(one(&c), unix).unwrap(), Charged::Spent);
    assert_eq!(leased.leased(), 9, "a slice of 10, one spent");

    nats.stop();
    assert!(is_unavailable(exact.charge(one(&c), unix)));
    let mut paid = 0;
    for _ in 0..20 {
        match leased.charge(one(&c), unix) {
            Ok(Charged::Spent) => paid += 1,
            other => assert!(is_unavailable(other)),
        }
    }
    assert_eq!(paid, 9, "exactly what the lease held");
    assert_eq!(leased.leased(), 0);
    leased.close().unwrap(); // nothing left to give back: no round trip

    nats.restart();
    wait_until("charges to succeed again", || {
        matches!(exact.charge(one(&c), unix), Ok(Charged::Spent))
    });
    // Each meter has its own connection, which reconnects on its own
    // schedule: until it has, its charges are denied as unavailable.
    wait_until("the leased meter to charge again", || {
        match leased.charge(one(&c), unix) {
            Ok(Charged::Spent) => true,
            other => {
                assert!(is_unavailable(other));
                false
            }
        }
    });
    leased.close().unwrap();
    let used = exact.used(&c, unix).unwrap();
    // 1 + 1 + 9 before, at least 2 after; a write that raced the stop may
    // have landed too (less allowance, never more).
    assert!((13..=14).contains(&used), "{used}");
}

/// Anyone with publish access to the bucket's subjects can write there
/// (NATS permissions must stop them); what is not a counter, or a delete
/// marker (the stream denies deletes, not a raw publish of one), is
/// refused, never read as an empty counter.
#[test]
fn a_counter_overwritten_with_junk_or_a_delete_marker_is_refused_not_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let m = meter(&nats, None);
    let (junk, deleted) = (charge("junk", 1, 10), charge("deleted", 1, 10));
    let unix = now();
    for c in [&junk, &deleted] {
        assert_eq!(m.charge(one(c), unix).unwrap(), Charged::Spent);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        js.publish(format!("$KV.{BUCKET}.junk"), "not json".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        js.publish_with_headers(format!("$KV.{BUCKET}.deleted"), headers, "".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    // Another verifier (nothing cached) reads them.
    let fresh = meter(&nats, None);
    for (c, why) in [
        (&junk, "failed authentication (not a signed counter)"),
        (&deleted, "Delete marker"),
    ] {
        let err = fresh.charge(one(c), unix).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
        // This one tries its last known revision first: refused by the
        // bucket, then it reads what is there.
        let err = m.charge(one(c), unix).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
    }
}

/// `payload` published raw on counter `key`'s subject, as anyone with
/// publish access to the bucket could.
fn publish_raw(nats: &Nats, key: &str, payload: Vec<u8>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish(format!("$KV.{BUCKET}.{key}"), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
}

/// The bytes counter `key` holds now, as anyone allowed to read the
/// bucket can copy them.
fn copy_value(nats: &Nats, key: &str) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value(BUCKET).await.unwrap();
        kv.entry(key).await.unwrap().unwrap().value.to_vec()
    })
}

fn assert_failed_authentication(r: Result<Charged, VerifierError>, key: &str) {
    let text = match r {
        Err(e) => e.to_string(),
        Ok(c) => panic!("a tampered counter must deny, got {c:?}"),
    };
    assert!(
        text.contains(&format!("usage bucket {BUCKET} unavailable")),
        "{text}"
    );
    assert!(
        text.contains(&format!("counter {key} at revision")),
        "{text}"
    );
    assert!(text.contains("failed authentication"), "{text}");
}

/// A rollback: the value a counter had at 2 of 5, copied byte for byte and
/// published again once it is at 5 of 5, carries a valid tag; it names as
/// its predecessor a revision the counter left long ago, so every
/// verifier refuses it (a denial), where it used to allow 3 more.
#[test]
fn a_counter_rolled_back_to_an_earlier_signed_value_is_refused_not_spent_again() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let (m, leased) = (
        meter(&nats, None),
        meter(&nats, Some(lease(10, Duration::from_secs(600)))),
    );
    let c = charge("rollback", 1, 5);
    let unix = now();
    for _ in 0..2 {
        assert_eq!(m.charge(one(&c), unix).unwrap(), Charged::Spent);
    }
    let at_two = copy_value(&nats, "rollback");
    for _ in 0..3 {
        assert_eq!(m.charge(one(&c), unix).unwrap(), Charged::Spent);
    }
    assert!(matches!(
        m.charge(one(&c), unix).unwrap(),
        Charged::Exceeded { used: 5, .. }
    ));
    publish_raw(&nats, "rollback", at_two);
    for _ in 0..3 {
        assert_failed_authentication(m.charge(one(&c), unix), "rollback");
        assert_failed_authentication(leased.charge(one(&c), unix), "rollback");
        assert_failed_authentication(meter(&nats, None).charge(one(&c), unix), "rollback");
    }
    assert_eq!(
        leased.leased(),
        0,
        "nothing leased from a rolled-back counter"
    );
}

/// A value without a tag (or with someone else's) is refused, never read
/// as the counter: an unsigned `{"window":…,"used":0}` used to reset it.
#[test]
fn an_unsigned_counter_value_is_refused_not_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let m = meter(&nats, None);
    let c = charge("unsigned", 1, 2);
    let unix = now();
    for _ in 0..2 {
        assert_eq!(m.charge(one(&c), unix).unwrap(), Charged::Spent);
    }
    let window = c.window_of(unix).0;
    publish_raw(
        &nats,
        "unsigned",
        format!("{{\"window\":{window},\"used\":0}}").into_bytes(),
    );
    assert_failed_authentication(m.charge(one(&c), unix), "unsigned");
    assert_failed_authentication(meter(&nats, None).charge(one(&c), unix), "unsigned");
    // A tag made with another key is no better.
    let mut other = serde_json::from_slice::<serde_json::Value>(&copy_value(&nats, "unsigned"))
        .unwrap_or(serde_json::json!({}));
    other["prev"] = serde_json::json!(0);
    other["tag"] = serde_json::json!("00".repeat(32));
    publish_raw(&nats, "unsigned", serde_json::to_vec(&other).unwrap());
    assert_failed_authentication(m.charge(one(&c), unix), "unsigned");
}

#[test]
fn a_meter_without_a_valid_fleet_key_is_refused_at_construction() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |key_file: Option<PathBuf>| {
        let mut cfg = UsageBucketConfig::new(BUCKET);
        cfg.key_file = key_file;
        FleetUsage::new(FeedConfig::new("nats://127.0.0.1:1"), cfg)
            .unwrap_err()
            .to_string()
    };
    let err = refused(None);
    assert!(err.contains("no usage key file"), "{err}");
    let err = refused(Some(dir.path().join("absent.key")));
    assert!(err.contains("absent.key"), "{err}");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not hex at all, but long enough to be a key file").unwrap();
    let err = refused(Some(garbage));
    assert!(err.contains("not hexadecimal"), "{err}");
    let short = dir.path().join("short.key");
    std::fs::write(&short, "00112233445566778899aabbccddeeff\n").unwrap();
    let err = refused(Some(short));
    assert!(err.contains("16 bytes, at least 32 needed"), "{err}");
    // `head -c 32 /dev/urandom | xxd -p` wraps its output: accepted.
    let wrapped = dir.path().join("wrapped.key");
    std::fs::write(
        &wrapped,
        format!("{}\n{}\n", "ab".repeat(30), "cd".repeat(2)),
    )
    .unwrap();
    let mut cfg = UsageBucketConfig::new(BUCKET);
    cfg.key_file = Some(wrapped);
    FleetUsage::new(FeedConfig::new("nats://127.0.0.1:1"), cfg).unwrap();
}

/// The predecessor check needs the bucket to keep 2 entries per key: an
/// existing bucket keeping 1 is refused at start.
#[test]
fn an_existing_bucket_keeping_one_entry_per_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        // The stream a verifier made before counters were authenticated.
        js.get_or_create_stream(mandate_verifier::spend_bucket::strict_bucket_stream(
            BUCKET,
            "Mandate: usage-limit counters shared by the fleet",
            1 << 20,
            Duration::from_secs(400 * 86_400),
        ))
        .await
        .unwrap();
    });
    let mut cfg = UsageBucketConfig::new(BUCKET);
    cfg.key_file = Some(nats.key_file());
    let m = FleetUsage::new(FeedConfig::new(nats.url()), cfg).unwrap();
    let err = m.connect().unwrap_err().to_string();
    assert!(err.contains("history must be 2"), "{err}");
}
