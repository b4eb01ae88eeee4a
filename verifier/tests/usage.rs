//! Usage limits enforced by the verifier with the embedded RocksDB store
//! (SPEC §18.4–18.5): a limit set at a hop is shared by its whole subtree,
//! every limit on the path is charged all or nothing, `limit_exceeded`
//! names the hop, the limit, the usage and when it frees up; budgets sum
//! an integer parameter and refuse requests that cannot be metered;
//! concurrent requests never overspend; a request denied for any other
//! reason spends nothing (an approval that cannot be spent refunds the
//! charge); windows restart; counters survive reopening the store; a
//! verifier without counters denies tokens with limits (fail closed).
//! Request times are pinned, never read from the clock in assertions.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_attenuate::{approve, attach_approval, delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use mandate_verifier::revocation::{Revocation, RevocationStore, Target};
use mandate_verifier::usage::{chain_limits, ChainLimit, Charge, Charged, UsageMeter, UsageStore};
use mandate_verifier::{
    replay::ReplayGuard, CacheOptions, Check, Decision, DenialKind, LimitKind, Presented, RootKeys,
    Verifier, VerifierError,
};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// An issuer, its verifier's keys and a usage store in a temp dir.
struct World {
    issuer: Issuer,
    dir: tempfile::TempDir,
    store: Arc<UsageStore>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(UsageStore::open(dir.path().join("usage")).unwrap());
        World {
            issuer: Issuer::new(KeyPair::new()),
            dir,
            store,
        }
    }

    fn keys(&self) -> RootKeys {
        let (id, key) = self.issuer.keys().public_keys()[0];
        RootKeys::new().with(id, key)
    }

    /// A verifier counting in the store, with the cache on.
    fn verifier(&self) -> Verifier {
        Verifier::new(self.keys())
            .with_cache(CacheOptions::default())
            .with_usage(self.store.clone())
    }

    /// A root token for `agent` with `grant` (valid 3 hours).
    fn mint(&self, agent: &KeyPair, grant: Grant) -> Vec<u8> {
        self.issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "orchestrator".into(),
                agent_key: agent.public(),
                grant,
                ttl: Duration::from_secs(3 * 3600),
                purpose: None,
                max_depth: Some(4),
            })
            .unwrap()
            .token
    }
}

/// `token` delegated by `holder` to agent `name` (key `to`) with `grant`.
fn delegate_to(token: &[u8], holder: &KeyPair, name: &str, to: &KeyPair, grant: Grant) -> Vec<u8> {
    delegate(
        token,
        holder,
        &Delegation {
            agent: name.into(),
            agent_key: to.public(),
            grant,
            ttl: None,
            purpose: None,
        },
    )
    .unwrap()
    .token
}

fn grant(allow: &str) -> Grant {
    Grant::parse(&[allow], &[] as &[&str]).unwrap()
}

/// The start of the current hour (pinned request times: windows are
/// aligned on the epoch, so every request of a test falls in one window).
fn this_hour() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(now / 3600 * 3600)
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn mail(at: SystemTime) -> Request {
    Request::new("send_email", "/api/mail/outbox").at(at)
}

fn pay(amount: i64, at: SystemTime) -> Request {
    Request::new("pay", "/api/payments")
        .param("amount", amount)
        .at(at)
}

/// Asserts `d` is denied as `kind`, naming `hop`, with every word of
/// `words` in its reason.
fn assert_denied(d: &Decision, kind: DenialKind, hop: Option<usize>, words: &[&str]) {
    assert!(!d.is_allowed(), "expected {kind:?}, got {d}");
    let denial = d.denial.as_ref().unwrap();
    assert_eq!(denial.kind, kind, "{}", denial.reason);
    assert_eq!(denial.hop, hop, "{}", denial.reason);
    for w in words {
        assert!(
            denial.reason.contains(w),
            "{w:?} not in {:?}",
            denial.reason
        );
    }
}

/// The limits of `token`'s chain (read from an allowed or denied decision).
fn limits_of(d: &Decision) -> Vec<ChainLimit> {
    chain_limits(d.chain.as_ref().unwrap())
}

/// Units used now in the counter of `limit` at `at`.
fn used(store: &UsageStore, limit: &ChainLimit, at: SystemTime) -> u64 {
    let charge = Charge {
        key: limit.key.clone(),
        units: 0,
        max: limit.limit.max,
        window_secs: limit.limit.window_secs,
    };
    store.used(&charge, unix(at)).unwrap()
}

/// The scenario: root `send_email 10/1h`, delegated to two
/// sub-agents, one with `send_email 5/1h`, one without a limit.
struct Mail {
    world: World,
    verifier: Verifier,
    root: Vec<u8>,
    limited: Vec<u8>,
    free: Vec<u8>,
}

fn mail_family() -> Mail {
    let world = World::new();
    let orchestrator = KeyPair::new();
    let root = world.mint(
        &orchestrator,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 10/1h")
            .unwrap(),
    );
    let limited = delegate_to(
        &root,
        &orchestrator,
        "drafter",
        &KeyPair::new(),
        grant("send_email:/api/mail/*")
            .with_limit("send_email 5/1h")
            .unwrap(),
    );
    let free = delegate_to(
        &root,
        &orchestrator,
        "notifier",
        &KeyPair::new(),
        grant("send_email:/api/mail/*"),
    );
    let verifier = world.verifier();
    Mail {
        world,
        verifier,
        root,
        limited,
        free,
    }
}

#[test]
fn ten_sends_across_two_sub_agents_then_the_root_limit_and_the_hop_limit_deny() {
    let m = mail_family();
    let t = this_hour() + Duration::from_secs(600);
    for i in 0..5 {
        let d = m.verifier.authorize(&m.limited, &mail(t));
        assert!(d.is_allowed(), "drafter send {i}: {d}");
    }
    // The drafter's 6th: its own limit (hop 1), with the root's room left.
    let d = m.verifier.authorize(&m.limited, &mail(t));
    assert_denied(
        &d,
        DenialKind::LimitExceeded,
        Some(1),
        &[
            "hop 1",
            "\"drafter\"",
            "send_email 5/1h",
            "exceeded",
            "5 of 5 used in the window",
        ],
    );
    let denial = d.denial.as_ref().unwrap();
    assert_eq!(denial.agent.as_deref(), Some("drafter"));
    let limits = limits_of(&d);
    assert_eq!(limits.len(), 2);
    assert_eq!(used(&m.world.store, &limits[0], t), 5, "root: not charged");
    assert_eq!(used(&m.world.store, &limits[1], t), 5);
    // The notifier, with no limit of its own, spends the root's: 5 more.
    for i in 0..5 {
        let d = m.verifier.authorize(&m.free, &mail(t));
        assert!(d.is_allowed(), "notifier send {i}: {d}");
    }
    // The 11th, from either: the root's limit (hop 0).
    let window_end = unix(this_hour()) + 3600;
    for token in [&m.free, &m.root, &m.limited] {
        let d = m.verifier.authorize(token, &mail(t));
        assert_denied(
            &d,
            DenialKind::LimitExceeded,
            Some(0),
            &[
                "hop 0",
                "\"orchestrator\"",
                "usage limit \"send_email 10/1h\" (count) exceeded",
                "10 of 10 used in the window",
                &format!("frees up at {}", rfc3339(window_end)),
                "retry after 3000 s",
            ],
        );
        let denial = d.denial.as_ref().unwrap();
        assert_eq!(denial.block, Some(0));
        assert_eq!(denial.agent.as_deref(), Some("orchestrator"));
        let limit = denial.limit.as_ref().unwrap();
        assert_eq!(limit.limit, "send_email 10/1h");
        assert_eq!(limit.kind, LimitKind::Count);
        assert_eq!((limit.hop, limit.used, limit.max), (0, 10, 10));
        assert_eq!(limit.cost, 1);
        assert_eq!(limit.window_end, rfc3339(window_end));
        assert_eq!(limit.retry_after, 3000);
        // In the decision's JSON (and so in audit records), under denial.limit.
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["denial"]["kind"], "limit_exceeded");
        assert_eq!(json["denial"]["limit"]["retry_after"], 3000);
        assert_eq!(json["denial"]["limit"]["kind"], "count");
    }
    assert_eq!(used(&m.world.store, &limits[0], t), 10);
    // A request no limit meters is unaffected.
    let other = Request::new("read", "/api/mail/outbox").at(t);
    let d = m.verifier.authorize(&m.free, &other);
    assert_denied(&d, DenialKind::NotAllowed, Some(0), &["read"]);
}

#[test]
fn a_request_its_grants_deny_spends_nothing() {
    let m = mail_family();
    let t = this_hour() + Duration::from_secs(60);
    let outside = Request::new("send_email", "/api/other/x").at(t);
    let d = m.verifier.authorize(&m.limited, &outside);
    assert_denied(&d, DenialKind::NotAllowed, Some(0), &[]);
    let limits = limits_of(&d);
    assert_eq!(used(&m.world.store, &limits[0], t), 0);
    assert_eq!(used(&m.world.store, &limits[1], t), 0);
}

/// Root `pay amount 5000/1d`, its delegate `pay amount 1000/1d`.
struct Payments {
    world: World,
    verifier: Verifier,
    root: Vec<u8>,
    hop: Vec<u8>,
}

fn payments() -> Payments {
    let world = World::new();
    let treasurer = KeyPair::new();
    let root = world.mint(
        &treasurer,
        grant("pay:/api/payments")
            .with_budget("pay amount 5000/1d")
            .unwrap(),
    );
    let hop = delegate_to(
        &root,
        &treasurer,
        "clerk",
        &KeyPair::new(),
        grant("pay:/api/payments")
            .with_budget("pay amount 1000/1d")
            .unwrap(),
    );
    let verifier = world.verifier();
    Payments {
        world,
        verifier,
        root,
        hop,
    }
}

#[test]
fn budgets_sum_the_parameter_along_the_path() {
    let p = payments();
    let t = this_hour();
    assert!(p.verifier.authorize(&p.hop, &pay(600, t)).is_allowed());
    assert!(p.verifier.authorize(&p.hop, &pay(400, t)).is_allowed());
    let d = p.verifier.authorize(&p.hop, &pay(1, t));
    assert_denied(
        &d,
        DenialKind::LimitExceeded,
        Some(1),
        &[
            "hop 1",
            "\"clerk\"",
            "pay amount 1000/1d",
            "(budget) exceeded",
            "1000 of 1000 used in the window and this request's amount is 1",
        ],
    );
    let limits = limits_of(&d);
    let limit = d.denial.as_ref().unwrap().limit.clone().unwrap();
    assert_eq!(limit.kind, LimitKind::Budget);
    assert_eq!((limit.used, limit.max, limit.cost), (1000, 1000, 1));
    // The clerk's 1000 counted against the root's 5000 too.
    assert!(p.verifier.authorize(&p.root, &pay(4000, t)).is_allowed());
    let d = p.verifier.authorize(&p.root, &pay(1, t));
    assert_denied(
        &d,
        DenialKind::LimitExceeded,
        Some(0),
        &["hop 0", "pay amount 5000/1d", "5000 of 5000 used"],
    );
    // A zero amount still fits.
    assert!(p.verifier.authorize(&p.root, &pay(0, t)).is_allowed());
    assert_eq!(used(&p.world.store, &limits[0], t), 5000);
    assert_eq!(used(&p.world.store, &limits[1], t), 1000);
}

#[test]
fn a_budget_denies_what_it_cannot_meter_and_charges_nothing() {
    let p = payments();
    let t = this_hour();
    let missing = Request::new("pay", "/api/payments").at(t);
    let negative = pay(-50, t);
    let text = Request::new("pay", "/api/payments")
        .param("amount", "100")
        .at(t);
    let cases: [(&Request, &[&str]); 3] = [
        (
            &missing,
            &["hop 0", "pay amount 5000/1d", "amount", "does not carry"],
        ),
        (&negative, &["hop 0", "amount", "-50 is negative"]),
        (&text, &["hop 0", "amount", "must be an integer"]),
    ];
    for (request, words) in cases {
        let d = p.verifier.authorize(&p.hop, request);
        assert_denied(&d, DenialKind::NotAllowed, Some(0), words);
        assert!(d.denial.as_ref().unwrap().limit.is_none());
    }
    // More than a whole window allows: never, whatever the usage.
    let d = p.verifier.authorize(&p.hop, &pay(1001, t));
    assert_denied(
        &d,
        DenialKind::NotAllowed,
        Some(1),
        &[
            "hop 1",
            "costs 1001",
            "pay amount 1000/1d",
            "no window can allow it",
        ],
    );
    let limits = limits_of(&d);
    assert_eq!(used(&p.world.store, &limits[0], t), 0);
    assert_eq!(used(&p.world.store, &limits[1], t), 0);
}

#[test]
fn a_thousand_concurrent_requests_against_a_limit_of_100_allow_exactly_100() {
    let world = World::new();
    let agent = KeyPair::new();
    let token = world.mint(
        &agent,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 100/1h")
            .unwrap(),
    );
    let verifier = world.verifier();
    let t = this_hour() + Duration::from_secs(1);
    let start = Barrier::new(1000);
    let decisions: Vec<Decision> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..1000)
            .map(|_| {
                let (verifier, token, start) = (&verifier, &token, &start);
                std::thread::Builder::new()
                    .stack_size(512 * 1024)
                    .spawn_scoped(s, move || {
                        start.wait();
                        verifier.authorize(token, &mail(t))
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let allowed = decisions.iter().filter(|d| d.is_allowed()).count();
    assert_eq!(allowed, 100);
    for d in decisions.iter().filter(|d| !d.is_allowed()) {
        assert_denied(
            d,
            DenialKind::LimitExceeded,
            Some(0),
            &["send_email 100/1h", "100 of 100 used"],
        );
    }
    assert_eq!(used(&world.store, &limits_of(&decisions[0])[0], t), 100);
}

#[test]
fn concurrent_payments_never_exceed_either_budget() {
    let p = payments();
    let t = this_hour();
    // 300 payments of 1 to 100 from the clerk and the treasurer at once
    // (about 15 000 asked for, half by each).
    let amounts: Vec<i64> = (0..300).map(|i| (i * 7919 % 100) + 1).collect();
    let start = Barrier::new(amounts.len());
    let outcomes: Vec<(bool, bool, i64, Decision)> = std::thread::scope(|s| {
        let handles: Vec<_> = amounts
            .iter()
            .enumerate()
            .map(|(i, &amount)| {
                let (p, start) = (&p, &start);
                std::thread::Builder::new()
                    .stack_size(512 * 1024)
                    .spawn_scoped(s, move || {
                        let by_clerk = i % 2 == 0;
                        let token = if by_clerk { &p.hop } else { &p.root };
                        start.wait();
                        let d = p.verifier.authorize(token, &pay(amount, t));
                        (d.is_allowed(), by_clerk, amount, d)
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let clerk: i64 = outcomes.iter().filter(|o| o.0 && o.1).map(|o| o.2).sum();
    let all: i64 = outcomes.iter().filter(|o| o.0).map(|o| o.2).sum();
    assert!(clerk <= 1000, "the clerk spent {clerk}");
    assert!(all <= 5000, "the family spent {all}");
    for o in outcomes.iter().filter(|o| !o.0) {
        assert_eq!(
            o.3.denial.as_ref().unwrap().kind,
            DenialKind::LimitExceeded,
            "{}",
            o.3
        );
    }
    // The counters hold exactly what was allowed.
    let limits = limits_of(&outcomes.iter().find(|o| o.1).unwrap().3);
    assert_eq!(used(&p.world.store, &limits[0], t), all as u64);
    assert_eq!(used(&p.world.store, &limits[1], t), clerk as u64);
    // A payment is denied only when it does not fit: what is left of the
    // root's budget is less than the largest amount (100).
    assert!(all > 5000 - 100, "{all}");
}

#[test]
fn a_revoked_hop_spends_nothing() {
    let world = World::new();
    let orchestrator = KeyPair::new();
    let sub = KeyPair::new();
    let root = world.mint(
        &orchestrator,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 10/1h")
            .unwrap(),
    );
    let child = delegate_to(
        &root,
        &orchestrator,
        "drafter",
        &sub,
        grant("send_email:/api/mail/*"),
    );
    let revocations =
        Arc::new(RevocationStore::open(world.dir.path().join("revocations")).unwrap());
    revocations
        .revoke(&[Revocation {
            target: Target::Agent(sub.public().to_bytes().to_vec()),
            revoked_at: OffsetDateTime::now_utc(),
            reason: "compromised".into(),
            by: "ops".into(),
            expires_at: None,
            note: None,
        }])
        .unwrap();
    let verifier = world.verifier().with_revocations(revocations);
    let t = this_hour();
    let d = verifier.authorize(&child, &mail(t));
    assert_denied(&d, DenialKind::Revoked, Some(1), &["drafter"]);
    let ok = verifier.authorize(&root, &mail(t));
    assert!(ok.is_allowed(), "{ok}");
    assert_eq!(
        used(&world.store, &limits_of(&ok)[0], t),
        1,
        "only the root's"
    );
}

#[test]
fn an_approval_unlocked_request_spends_and_a_replayed_approval_is_refunded() {
    let world = World::new();
    let (agent, finance) = (KeyPair::new(), KeyPair::new());
    let token = world.mint(
        &agent,
        grant("pay:/api/payments")
            .with_budget("pay amount 1000/1d")
            .unwrap()
            .with_approval(&format!(
                "pay when amount>100 by finance={}",
                finance.public()
            ))
            .unwrap(),
    );
    let guard = Arc::new(ReplayGuard::open(world.dir.path().join("replay")).unwrap());
    let verifier = world.verifier().with_replay_guard(guard);
    let t = this_hour();
    let big = pay(300, t);
    // Needs an approval: a Datalog denial, nothing charged.
    let asked = verifier.authorize(&token, &big);
    assert!(asked.needs_approval(), "{asked}");
    let limits = limits_of(&asked);
    assert_eq!(used(&world.store, &limits[0], t), 0);
    let needed = asked.approval.as_ref().unwrap();
    let block = approve(
        &needed.third_party_request,
        &big,
        SystemTime::now() + Duration::from_secs(3600),
        &finance,
    )
    .unwrap();
    let approved = attach_approval(&token, &block).unwrap().token;
    let d = verifier.authorize(&approved, &big);
    assert!(d.is_allowed(), "{d}");
    assert_eq!(used(&world.store, &limits[0], t), 300, "approved: charged");
    // The approval again: charged, then refunded when it cannot be spent.
    let d = verifier.authorize(&approved, &big);
    assert_denied(&d, DenialKind::ApprovalReplayed, None, &["already used"]);
    assert_eq!(used(&world.store, &limits[0], t), 300, "refunded");
    // Without a record of used approvals: denied, refunded too.
    let unguarded = world.verifier();
    let fresh = attach_approval(&token, &block).unwrap().token;
    let d = unguarded.authorize(&fresh, &big);
    assert_denied(&d, DenialKind::ReplayRecordUnavailable, None, &[]);
    assert_eq!(used(&world.store, &limits[0], t), 300);
}

#[test]
fn the_next_window_starts_again_and_an_earlier_dated_request_never_reopens_one() {
    let world = World::new();
    let agent = KeyPair::new();
    let token = world.mint(
        &agent,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 3/1h")
            .unwrap(),
    );
    let verifier = world.verifier();
    let hour = this_hour();
    for _ in 0..3 {
        assert!(verifier.authorize(&token, &mail(hour)).is_allowed());
    }
    let late = hour + Duration::from_secs(3599);
    let d = verifier.authorize(&token, &mail(late));
    assert_denied(&d, DenialKind::LimitExceeded, Some(0), &["retry after 1 s"]);
    let next = hour + Duration::from_secs(3600);
    for _ in 0..3 {
        assert!(verifier.authorize(&token, &mail(next)).is_allowed());
    }
    assert_denied(
        &verifier.authorize(&token, &mail(next)),
        DenialKind::LimitExceeded,
        Some(0),
        &["3 of 3 used", "retry after 3600 s"],
    );
    // Dated in the spent hour before (a slow clock): counted in the
    // counter's window, which is full.
    let d = verifier.authorize(&token, &mail(hour + Duration::from_secs(10)));
    assert_denied(&d, DenialKind::LimitExceeded, Some(0), &["3 of 3 used"]);
    let limit = d.denial.as_ref().unwrap().limit.clone().unwrap();
    assert_eq!(limit.window_end, rfc3339(unix(hour) + 7200));
}

#[test]
fn counters_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(KeyPair::new());
    let (id, key) = issuer.keys().public_keys()[0];
    let agent = KeyPair::new();
    let token = issuer
        .mint(&MintRequest {
            principal: "user:alice".into(),
            agent: "a".into(),
            agent_key: agent.public(),
            grant: grant("send_email:/api/mail/*")
                .with_limit("send_email 3/1h")
                .unwrap(),
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap()
        .token;
    let t = this_hour();
    let open = || {
        let store = Arc::new(UsageStore::open(dir.path()).unwrap());
        Verifier::new(RootKeys::new().with(id, key)).with_usage(store)
    };
    {
        let v = open();
        for _ in 0..3 {
            assert!(v.authorize(&token, &mail(t)).is_allowed());
        }
    }
    let v = open();
    assert_denied(
        &v.authorize(&token, &mail(t)),
        DenialKind::LimitExceeded,
        Some(0),
        &["3 of 3 used"],
    );
}

#[test]
fn a_verifier_without_counters_denies_tokens_with_limits_and_allows_others() {
    let world = World::new();
    let agent = KeyPair::new();
    let limited = world.mint(
        &agent,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 3/1h")
            .unwrap(),
    );
    let plain = world.mint(&agent, grant("send_email:/api/mail/*"));
    let bare = Verifier::new(world.keys());
    let t = this_hour();
    assert_denied(
        &bare.authorize(&limited, &mail(t)),
        DenialKind::LimitUnavailable,
        None,
        &["keeps no usage counters", "fail closed"],
    );
    // A request the grants deny is denied for that first (Datalog runs
    // before the limits).
    let read = Request::new("send_email", "/api/other").at(t);
    assert_denied(
        &bare.authorize(&limited, &read),
        DenialKind::NotAllowed,
        Some(0),
        &[],
    );
    assert!(bare.authorize(&plain, &mail(t)).is_allowed());
    // With counters, the plain token is charged nothing and never denied
    // for limits.
    let v = world.verifier();
    for _ in 0..20 {
        assert!(v.authorize(&plain, &mail(t)).is_allowed());
    }
}

/// A meter whose store is unreachable.
struct Broken;

impl UsageMeter for Broken {
    fn charge(&self, _: &[Charge], _: i64) -> Result<Charged, VerifierError> {
        Err(VerifierError::UsageStore {
            path: "/nowhere".into(),
            detail: "disk on fire".into(),
        })
    }
    fn refund(&self, _: &[Charge], _: i64) -> Result<(), VerifierError> {
        Ok(())
    }
    fn used(&self, _: &Charge, _: i64) -> Result<u64, VerifierError> {
        Ok(0)
    }
}

#[test]
fn a_meter_that_fails_denies_limit_unavailable_with_its_error() {
    let world = World::new();
    let agent = KeyPair::new();
    let token = world.mint(
        &agent,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 3/1h")
            .unwrap(),
    );
    let v = Verifier::new(world.keys()).with_usage(Arc::new(Broken));
    assert_denied(
        &v.authorize(&token, &mail(this_hour())),
        DenialKind::LimitUnavailable,
        None,
        &["usage counters are unavailable", "disk on fire"],
    );
}

/// The store, seen as remote (a fleet's counters).
struct Remote(Arc<UsageStore>);

impl UsageMeter for Remote {
    fn charge(&self, c: &[Charge], unix: i64) -> Result<Charged, VerifierError> {
        self.0.charge(c, unix)
    }
    fn refund(&self, c: &[Charge], unix: i64) -> Result<(), VerifierError> {
        self.0.refund(c, unix)
    }
    fn used(&self, c: &Charge, unix: i64) -> Result<u64, VerifierError> {
        self.0.used(c, unix)
    }
    fn remote(&self) -> bool {
        true
    }
}

#[test]
fn only_a_local_meter_decides_inline_and_approvers_and_token_checks_charge_nothing() {
    let world = World::new();
    let agent = KeyPair::new();
    let token = world.mint(
        &agent,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 3/1h")
            .unwrap(),
    );
    let t = this_hour();
    let none = Presented::default();
    let local = world.verifier();
    assert!(local.authorize(&token, &mail(t)).is_allowed());
    let inline = local.try_authorize_inline(&token, &mail(t), &none);
    assert!(inline.unwrap().is_allowed(), "a local meter: inline");
    let remote = Verifier::new(world.keys())
        .with_cache(CacheOptions::default())
        .with_usage(Arc::new(Remote(world.store.clone())));
    assert!(remote.authorize(&token, &mail(t)).is_allowed());
    assert!(
        remote
            .try_authorize_inline(&token, &mail(t), &none)
            .is_none(),
        "a remote meter: never on the async threads"
    );
    let limits = limits_of(&local.authorize(&token, &Request::new("x", "/").at(t)));
    assert_eq!(used(&world.store, &limits[0], t), 3);
    // Full now; what an approver is shown and a token-only check are not
    // charged and not denied by the limit.
    assert!(local.decide_for_approver(&token, &mail(t)).is_allowed());
    let token_only = local.decide_presented(&token, &mail(t), &none, Check::Token);
    assert!(token_only.is_allowed(), "{token_only}");
    assert_eq!(used(&world.store, &limits[0], t), 3);
    assert_denied(
        &local.authorize(&token, &mail(t)),
        DenialKind::LimitExceeded,
        Some(0),
        &["3 of 3 used"],
    );
}

#[test]
fn audit_records_carry_the_limit_and_verify() {
    use mandate_verifier::audit::{read_audit_log, verify_entries, AuditLog, AuditOptions};
    let world = World::new();
    let agent = KeyPair::new();
    let token = world.mint(
        &agent,
        grant("send_email:/api/mail/*")
            .with_limit("send_email 1/1h")
            .unwrap(),
    );
    let audit_key = KeyPair::new();
    let audit = AuditLog::open(
        world.dir.path().join("audit"),
        &audit_key,
        AuditOptions::default(),
    )
    .unwrap();
    let verifier = world.verifier().with_audit(audit.clone());
    let t = this_hour();
    assert!(verifier.authorize(&token, &mail(t)).is_allowed());
    let denied = verifier.authorize(&token, &mail(t));
    assert_denied(&denied, DenialKind::LimitExceeded, Some(0), &[]);
    assert_eq!(audit.flush().unwrap(), 2);
    let log = read_audit_log(audit.path()).unwrap();
    assert_eq!(
        verify_entries(&log, &audit_key.public()).unwrap().records,
        2
    );
    let record = log.entries[1].1.as_ref().unwrap().record.clone();
    let denial = record.denial.unwrap();
    assert_eq!(denial.kind, DenialKind::LimitExceeded);
    assert_eq!(denial.limit, denied.denial.unwrap().limit);
    assert_eq!(denial.limit.unwrap().used, 1);
}
