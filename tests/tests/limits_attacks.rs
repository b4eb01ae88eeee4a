//! Attacks on usage limits (issue 17, SPEC §18), from the positions of
//! THREATS.md, each asserting the safe outcome (denied, and why; exact
//! counts in the counters).
//!
//! - **Narrow token holder / delegating agent** (its own key, any Biscuit
//!   library): siblings and children never add allowance; a hop that
//!   repeats its parent's limit text, a bigger limit below, a narrowing
//!   block, a re-delegation: every ancestor's counter is still charged.
//!   Limits outside a hop (a narrowing block, an approval block), limit
//!   facts without their guard, a guard without facts, a `limits_enforced`
//!   fact or rule supplied by a block, malformed limit terms, 9 limits in a
//!   block: the chain is refused (`broken_chain`). A raw check naming the
//!   limit facts only restricts.
//! - **Crafted-input sender**: budget amounts that are negative, strings,
//!   missing, larger than a whole window or than i64; a parameter given
//!   twice; amounts 0; concurrent requests racing the all-or-nothing
//!   charge; windows (the documented 2·N across a boundary, an
//!   earlier-dated request after a later one, a request dated after the
//!   token expired).
//! - **Approved agent / thief**: a replayed approval is charged then given
//!   back exactly once, also while racing fresh requests; a request without
//!   the holder's proof (or with a thief's, or a replayed one) spends
//!   nothing.
//! - **Operator mistake / store failure**: a verifier without counters, a
//!   damaged RocksDB store, a fleet bucket holding junk or a delete marker
//!   (written with publish rights only), NATS stopped: all deny
//!   `limit_unavailable` (fail closed), recovering once NATS is back.
//! - **Unbounded work**: the most counters one request can touch (16 blocks
//!   × 8 limits = 128, each charged exactly once; a 17th block is refused).
//!
//! Request times are pinned (never asserted against the clock), except
//! where a proof of possession or the fleet's leases need the clock: those
//! use 366-day windows.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::builder::{int, Term};
use biscuit_auth::KeyPair;
use mandate_attenuate::{approve, attach_approval, delegate, narrow, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Audience, Grant, HolderProof, Limit, ProofSubject, Request};
use mandate_tests::{append_first_party, append_hop, datalog_block, hop_block_for, Agent};
use mandate_verifier::feed::FeedConfig;
use mandate_verifier::replay::ReplayGuard;
use mandate_verifier::usage::bucket::{FleetUsage, LeaseConfig, UsageBucketConfig};
use mandate_verifier::usage::{chain_limits, ChainLimit, Charge, UsageMeter, UsageStore};
use mandate_verifier::{CacheOptions, Check, Decision, DenialKind, Presented, RootKeys, Verifier};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------- harness

/// An issuer and a usage store in a temp dir.
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

    /// A root token for `agent` with `grant` (valid 3 hours, no depth limit).
    fn mint(&self, agent: &KeyPair, grant: Grant) -> Vec<u8> {
        self.issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "orchestrator".into(),
                agent_key: agent.public(),
                grant,
                ttl: Duration::from_secs(3 * 3600),
                purpose: None,
                max_depth: None,
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

fn mail_grant() -> Grant {
    grant("send_email:/api/mail/*")
}

fn limited(g: Grant, text: &str) -> Grant {
    g.with_limit(text).unwrap()
}

/// The start of the current hour: every pinned request of a test falls in
/// one window of an hour or more.
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
fn denied(d: &Decision, kind: DenialKind, hop: Option<usize>, words: &[&str]) {
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

fn allowed(d: &Decision) {
    assert!(d.is_allowed(), "{d}");
}

/// Every limit of the chain `d` was decided on, root first.
fn limits_of(d: &Decision) -> Vec<ChainLimit> {
    chain_limits(d.chain.as_ref().expect("the decision read the chain"))
}

fn probe(limit: &ChainLimit) -> Charge {
    Charge {
        key: limit.key.clone(),
        units: 0,
        max: limit.limit.max,
        window_secs: limit.limit.window_secs,
    }
}

/// Units used in `limit`'s counter in the window of `at`.
fn used(meter: &dyn UsageMeter, limit: &ChainLimit, at: SystemTime) -> u64 {
    meter.used(&probe(limit), unix(at)).unwrap()
}

/// Asks `request` with `token` until it is denied: how many were allowed
/// (at most `cap`), and the denial.
fn drain(v: &Verifier, token: &[u8], request: &Request, cap: usize) -> (usize, Decision) {
    for n in 0..cap {
        let d = v.authorize(token, request);
        if !d.is_allowed() {
            return (n, d);
        }
    }
    panic!("{cap} requests allowed: no limit stopped them");
}

// ------------------------------------------- delegation never adds allowance

/// Root `send_email 4/1h`; below it, a sibling with a *bigger* limit, a
/// sibling with none, grandchildren with the same text as their parent or
/// a bigger one, a narrowing block, and a hop the holder signs to itself
/// repeating its parent's limit: the whole tree sends 4.
#[test]
fn no_delegation_narrowing_or_repeated_limit_adds_allowance() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let (orch, b, c, d, e) = (
        KeyPair::new(),
        KeyPair::new(),
        KeyPair::new(),
        KeyPair::new(),
        KeyPair::new(),
    );
    let root = w.mint(&orch, limited(mail_grant(), "send_email 4/1h"));
    let big = delegate_to(
        &root,
        &orch,
        "big",
        &b,
        limited(mail_grant(), "send_email 1000/1h"),
    );
    let free = delegate_to(&root, &orch, "free", &c, mail_grant());
    let same = delegate_to(
        &big,
        &b,
        "same",
        &d,
        limited(mail_grant(), "send_email 1000/1h"),
    );
    let selfish = delegate_to(
        &free,
        &c,
        "free",
        &c,
        limited(mail_grant(), "send_email 4/1h"),
    );
    let bigger = delegate_to(
        &same,
        &d,
        "bigger",
        &e,
        limited(mail_grant(), "send_email 9999/1h"),
    );
    let narrowed = narrow(&bigger, &grant("send_email:/api/mail/outbox"), None)
        .unwrap()
        .token;
    let tree = [&big, &free, &same, &selfish, &bigger, &narrowed, &root];
    let mut allowed_n = 0;
    for round in 0..3 {
        for token in tree {
            let d = v.authorize(token, &mail(t + Duration::from_secs(round)));
            if d.is_allowed() {
                allowed_n += 1;
            } else {
                denied(&d, DenialKind::LimitExceeded, Some(0), &["4 of 4 used"]);
                let l = d.denial.as_ref().unwrap().limit.clone().unwrap();
                assert_eq!((l.used, l.max, l.cost, l.hop), (4, 4, 1, 0));
            }
        }
    }
    assert_eq!(allowed_n, 4, "the whole tree shares the root's 4");
    // Every counter on the narrowed token's path holds exactly what went
    // through it: the root 4; `big` (hop 1) what big, same, bigger and
    // narrowed sent; and so on.
    let d = v.authorize(&narrowed, &mail(t));
    let limits = limits_of(&d);
    assert_eq!(limits.len(), 4, "root, big, same, bigger");
    assert_eq!(used(&*w.store, &limits[0], t), 4);
    // The tokens were asked in tree order: big, free, same, selfish got the 4.
    assert_eq!(used(&*w.store, &limits[1], t), 2, "big and same");
    assert_eq!(used(&*w.store, &limits[2], t), 1, "same");
    assert_eq!(used(&*w.store, &limits[3], t), 0, "bigger never got room");
}

/// A delegator that signs a second hop for the same agent gives it a
/// second counter of its own (the hop is a new block: SPEC §18.2), but the
/// root's counter binds both; the agent cannot re-append its own hop (it
/// lacks the key the block before it was appended with), so the holder of
/// the narrow token only ever adds hops *below* its limit.
#[test]
fn a_redelegated_hop_gets_its_own_counter_and_the_ancestors_still_bind() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let (orch, agent) = (KeyPair::new(), KeyPair::new());
    let root = w.mint(&orch, limited(mail_grant(), "send_email 5/1h"));
    let first = delegate_to(
        &root,
        &orch,
        "agent",
        &agent,
        limited(mail_grant(), "send_email 2/1h"),
    );
    let second = delegate_to(
        &root,
        &orch,
        "agent",
        &agent,
        limited(mail_grant(), "send_email 2/1h"),
    );
    let (n, d) = drain(&v, &first, &mail(t), 10);
    assert_eq!(n, 2);
    denied(&d, DenialKind::LimitExceeded, Some(1), &["2 of 2 used"]);
    // The same limit text in another block: another counter, of 2 more.
    let (n, d2) = drain(&v, &second, &mail(t), 10);
    assert_eq!(n, 2);
    denied(&d2, DenialKind::LimitExceeded, Some(1), &["2 of 2 used"]);
    assert_ne!(limits_of(&d)[1].key, limits_of(&d2)[1].key);
    // Four were allowed: one is left at the root, for anyone.
    allowed(&v.authorize(&root, &mail(t)));
    denied(
        &v.authorize(&first, &mail(t)),
        DenialKind::LimitExceeded,
        Some(0),
        &["5 of 5 used"],
    );
    // The agent's own sub-hop with a fresh copy of the same text: still
    // charged against hop 1 and the root.
    let own = delegate_to(
        &first,
        &agent,
        "agent",
        &agent,
        limited(mail_grant(), "send_email 2/1h"),
    );
    denied(
        &v.authorize(&own, &mail(t)),
        DenialKind::LimitExceeded,
        Some(0),
        &["5 of 5 used"],
    );
    // The agent's token carries the proof key of its last block only.
    let container = mandate_tests::container(&first);
    assert_eq!(container.blocks.len(), 1, "root + one hop");
}

// ------------------------------------------ where limits may (not) appear

/// Limits and their guard are a hop's (root or delegation): anywhere else,
/// or one without the other, malformed, or more than 8, the chain is
/// refused, never read as "no limit".
#[test]
fn limits_outside_a_hop_or_malformed_are_refused_not_ignored() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let orch = KeyPair::new();
    let root = w.mint(&orch, limited(mail_grant(), "send_email 5/1h"));
    let sub = Agent::new("sub");
    let hop_with = |extra: &str| {
        let block = hop_block_for(&sub, &mail_grant(), t + Duration::from_secs(7200))
            .merge(datalog_block(extra));
        append_hop(&root, &orch, block)
    };
    let guard = "check if limits_enforced(1);";
    // A term the Datalog parser would not write (an empty set), as any
    // Biscuit library's builder can. (A set mixing types is refused by
    // Biscuit itself when the token is read.)
    let hop_with_fact = |f: biscuit_auth::builder::Fact| {
        let block = hop_block_for(&sub, &mail_grant(), t + Duration::from_secs(7200))
            .fact(f)
            .unwrap()
            .merge(datalog_block(guard));
        append_hop(&root, &orch, block)
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "facts without the guard",
            hop_with(r#"limit({"send_email"}, 1, 3600);"#),
            "without check if limits_enforced(1)",
        ),
        (
            "the guard without facts",
            hop_with(guard),
            "without any limit(…) or budget(…) fact",
        ),
        (
            "a guard that is not the guard",
            hop_with(r#"limit({"send_email"}, 1, 3600); check if limits_enforced(1), true;"#),
            "without check if limits_enforced(1)",
        ),
        (
            "max 0",
            hop_with(&format!(r#"limit({{"send_email"}}, 0, 3600); {guard}"#)),
            "positive integers",
        ),
        (
            "a negative max",
            hop_with(&format!(r#"limit({{"send_email"}}, -5, 3600); {guard}"#)),
            "positive integers",
        ),
        (
            "a string max",
            hop_with(&format!(r#"limit({{"send_email"}}, "10", 3600); {guard}"#)),
            "positive integers",
        ),
        (
            "a window over 366 days",
            hop_with(&format!(r#"limit({{"send_email"}}, 1, 31708801); {guard}"#)),
            "366d",
        ),
        (
            "actions not a set",
            hop_with(&format!(r#"limit("send_email", 1, 3600); {guard}"#)),
            "limit({actions}, max, window_seconds)",
        ),
        (
            "an empty action set",
            hop_with_fact(biscuit_auth::builder::fact(
                "limit",
                &[Term::Set(Default::default()), int(1), int(3600)],
            )),
            "at least one action",
        ),
        (
            "an action with trailing whitespace",
            hop_with(&format!(r#"limit({{"send_email "}}, 1, 3600); {guard}"#)),
            "contains ' '",
        ),
        (
            "a budget without its parameter",
            hop_with(&format!(r#"budget({{"pay"}}, 1000, 86400); {guard}"#)),
            "budget({actions}",
        ),
        (
            "nine limits",
            hop_with(&format!(
                "{} {guard}",
                (1..=9)
                    .map(|i| format!(r#"limit({{"send_email"}}, {i}, 3600);"#))
                    .collect::<String>()
            )),
            "at most 8 limits per hop",
        ),
        (
            "a limits_enforced fact in a hop",
            hop_with(&format!(
                r#"limit({{"send_email"}}, 1, 3600); limits_enforced(1); {guard}"#
            )),
            "only the verifier may supply",
        ),
        (
            "a limits_enforced rule in a hop",
            hop_with(&format!(
                r#"limit({{"send_email"}}, 1, 3600); limits_enforced(1) <- time($t); {guard}"#
            )),
            "only the verifier may supply",
        ),
        (
            "a first-party block with a limit and its guard",
            append_first_party(
                &root,
                datalog_block(&format!(r#"limit({{"send_email"}}, 1000, 3600); {guard}"#)),
            ),
            "not allowed in this block",
        ),
        (
            "a first-party block with the guard alone",
            append_first_party(&root, datalog_block(guard)),
            "a first-party block cannot carry limits",
        ),
        (
            "a first-party block supplying limits_enforced",
            append_first_party(&root, datalog_block("limits_enforced(1);")),
            "only the verifier may supply",
        ),
    ];
    for (what, token, why) in cases {
        let d = v.authorize(&token, &mail(t));
        assert!(!d.is_allowed(), "{what}: allowed");
        let denial = d.denial.as_ref().unwrap();
        assert_eq!(
            denial.kind,
            DenialKind::BrokenChain,
            "{what}: {}",
            denial.reason
        );
        assert!(denial.reason.contains(why), "{what}: {:?}", denial.reason);
    }
    // An approver's block (approval fact, signed by the approver) carrying
    // a limit: not an approval block, and not a hop its signer may write.
    let approver = KeyPair::new();
    let block = datalog_block(&format!(
        r#"approval(hex:{}, 2100-01-01T00:00:00Z); limit({{"send_email"}}, 1000000, 3600); {guard}"#,
        "00".repeat(32)
    ));
    let d = v.authorize(&append_hop(&root, &approver, block), &mail(t));
    denied(&d, DenialKind::BrokenChain, Some(1), &[]);
    // Nothing of the above charged anything.
    let ok = v.authorize(&root, &mail(t));
    allowed(&ok);
    assert_eq!(used(&*w.store, &limits_of(&ok)[0], t), 1);
}

/// The same limit fact twice in one hop (hand-built): the chain is refused
/// (it would name one counter twice).
#[test]
fn a_limit_fact_written_twice_is_refused() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let orch = KeyPair::new();
    let root = w.mint(&orch, mail_grant().with_limit("send_email 5/1h").unwrap());
    let sub = Agent::new("sub");
    let block =
        hop_block_for(&sub, &mail_grant(), t + Duration::from_secs(7200)).merge(datalog_block(
            r#"limit({"send_email"}, 1, 3600); limit({"send_email"}, 1, 3600);
               check if limits_enforced(1);"#,
        ));
    let token = append_hop(&root, &orch, block);
    let d = v.authorize(&token, &mail(t));
    denied(
        &d,
        DenialKind::BrokenChain,
        Some(1),
        &["send_email 1/1h is given twice"],
    );
}

/// A plain Biscuit authorizer (a verifier that knows nothing of limits)
/// denies a token with limits: the guard needs `limits_enforced(1)`, which
/// no block can supply.
#[test]
fn an_unaware_biscuit_authorizer_fails_closed() {
    let w = World::new();
    let orch = KeyPair::new();
    let token = w.mint(&orch, limited(mail_grant(), "send_email 5/1h"));
    let (_, key) = w.issuer.keys().public_keys()[0];
    let biscuit = biscuit_auth::Biscuit::from(&token, key).unwrap();
    let facts = mail(this_hour()).facts();
    let run = |extra: &[biscuit_auth::builder::Fact]| {
        let mut b = biscuit_auth::builder::AuthorizerBuilder::new();
        for f in facts.iter().chain(extra) {
            b = b.fact(f.clone()).unwrap();
        }
        b.code("allow if true")
            .unwrap()
            .build(&biscuit)
            .unwrap()
            .authorize()
    };
    let e = run(&[]).unwrap_err();
    assert!(format!("{e:?}").contains("limits_enforced"), "{e:?}");
    // With the verifier's fact it passes: the guard is the only difference.
    let enforced = biscuit_auth::builder::fact("limits_enforced", &[biscuit_auth::builder::int(1)]);
    run(&[enforced]).unwrap();
}

/// A raw Datalog check reading the root's limit facts (visible to every
/// block) only restricts: the request it lets through is still charged.
#[test]
fn a_raw_check_on_the_limit_facts_restricts_only() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let orch = KeyPair::new();
    let root = w.mint(&orch, limited(mail_grant(), "send_email 2/1h"));
    let reads = append_first_party(
        &root,
        datalog_block(r#"check if limit({"send_email"}, $max, 3600), $max <= 2;"#),
    );
    let wrong = append_first_party(
        &root,
        datalog_block(r#"check if limit({"send_email"}, $max, 3600), $max > 1000;"#),
    );
    denied(
        &v.authorize(&wrong, &mail(t)),
        DenialKind::NotAllowed,
        Some(0),
        &[],
    );
    let (n, d) = drain(&v, &reads, &mail(t), 10);
    assert_eq!(n, 2);
    denied(&d, DenialKind::LimitExceeded, Some(0), &["2 of 2 used"]);
}

// --------------------------------------------- actions: order, case, space

/// A limit's actions are a set of exact names: any order is one limit and
/// one counter; another case is another action (and the tools refuse a
/// limit on an action the hop cannot perform); whitespace is not a name.
#[test]
fn action_sets_differing_in_order_case_or_space() {
    let a = Limit::parse_count("send_email,pay 3/1h").unwrap();
    let b = Limit::parse_count("  pay,send_email   3/3600s ").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.counter_key("00"), b.counter_key("00"));
    for bad in [
        "send_email, pay 3/1h",
        "send_email ,pay 3/1h",
        "send_email,,pay 3/1h",
        "send_email,pay, 3/1h",
    ] {
        assert!(Limit::parse_count(bad).is_err(), "{bad:?}");
    }
    // At the token level (hand-built, bypassing the tools' typo check), a
    // limit on `Send_Email` meters nothing `send_email` does: the root's
    // limit still binds the subtree.
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let orch = KeyPair::new();
    let root = w.mint(&orch, limited(mail_grant(), "send_email 3/1h"));
    let sub = Agent::new("sub");
    let block = hop_block_for(&sub, &mail_grant(), t + Duration::from_secs(7200)).merge(
        datalog_block(r#"limit({"Send_Email"}, 1, 3600); check if limits_enforced(1);"#),
    );
    let token = append_hop(&root, &orch, block);
    let (n, d) = drain(&v, &token, &mail(t), 10);
    assert_eq!(n, 3);
    denied(&d, DenialKind::LimitExceeded, Some(0), &["3 of 3 used"]);
    assert_eq!(
        used(&*w.store, &limits_of(&d)[1], t),
        0,
        "Send_Email meters nothing"
    );
    // (The CLI and the issuer service refuse such a limit as a likely
    // typo: cli/tests/limits_issue.rs; the library and plain Biscuit do not.)
}

// ---------------------------------------------------------------- budgets

fn payments(w: &World, agent: &KeyPair, budget: &str) -> Vec<u8> {
    w.mint(
        agent,
        grant("pay:/api/payments").with_budget(budget).unwrap(),
    )
}

/// Amounts that cannot be metered, or cost more than a whole window, are
/// `not_allowed` naming the hop and charge nothing; an amount of 0 costs
/// nothing; the largest amount fits exactly once.
#[test]
fn budget_amounts_negative_string_missing_huge_or_zero() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let agent = KeyPair::new();
    let token = payments(&w, &agent, "pay amount 1000/1h");
    let cases: Vec<(Request, &str)> = vec![
        (pay(-1, t), "is negative"),
        (pay(i64::MIN, t), "is negative"),
        (
            Request::new("pay", "/api/payments")
                .param("amount", "40")
                .at(t),
            "must be an integer",
        ),
        (
            Request::new("pay", "/api/payments")
                .param("amount", "99999999999999999999")
                .at(t),
            "must be an integer",
        ),
        (
            Request::new("pay", "/api/payments")
                .param("Amount", 40)
                .at(t),
            "does not carry",
        ),
        (Request::new("pay", "/api/payments").at(t), "does not carry"),
        (pay(1001, t), "more than its whole allowance of 1000"),
        (pay(i64::MAX, t), "more than its whole allowance of 1000"),
    ];
    for (request, why) in &cases {
        let d = v.authorize(&token, request);
        denied(&d, DenialKind::NotAllowed, Some(0), &[why]);
        assert_eq!(used(&*w.store, &limits_of(&d)[0], t), 0, "{why}");
    }
    // Zero costs nothing, however often.
    for _ in 0..50 {
        allowed(&v.authorize(&token, &pay(0, t)));
    }
    allowed(&v.authorize(&token, &pay(1000, t)));
    let d = v.authorize(&token, &pay(1, t));
    denied(
        &d,
        DenialKind::LimitExceeded,
        Some(0),
        &["1000 of 1000 used", "this request's amount is 1"],
    );
    allowed(&v.authorize(&token, &pay(0, t)));
    // The largest budget and the largest amount: once, never wrapping.
    let huge = payments(&w, &agent, &format!("pay amount {}/1h", i64::MAX));
    allowed(&v.authorize(&huge, &pay(i64::MAX, t)));
    let d = v.authorize(&huge, &pay(1, t));
    denied(&d, DenialKind::LimitExceeded, Some(0), &[]);
    let l = d.denial.unwrap().limit.unwrap();
    assert_eq!((l.used, l.max), (i64::MAX as u64, i64::MAX as u64));
    // A count and a budget on one action: the count still counts zeros.
    let both = w.mint(
        &agent,
        grant("pay:/api/payments")
            .with_budget("pay amount 10/1h")
            .unwrap()
            .with_limit("pay 3/1h")
            .unwrap(),
    );
    let (n, d) = drain(&v, &both, &pay(0, t), 10);
    assert_eq!(n, 3);
    denied(&d, DenialKind::LimitExceeded, Some(0), &["pay 3/1h"]);
}

/// A parameter given twice is refused wherever a request is read from
/// outside (JSON, `try_param`), so the budget and the Datalog can never
/// read one value while the payment uses the other.
#[test]
fn a_budget_parameter_given_twice_is_refused() {
    let json = r#"{"action":"pay","resource":"/api/payments",
        "params":{"amount":1,"amount":5000},"time":1700000000}"#;
    let err = serde_json::from_str::<Request>(json).unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
    let err = Request::new("pay", "/api/payments")
        .try_param("amount", 1)
        .unwrap()
        .try_param("amount", 5000)
        .unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
}

// ------------------------------------------------------------ concurrency

/// 8 threads through a tree of siblings and children race the root's 50:
/// exactly 50 allowed, every other one `limit_exceeded`, and every
/// counter holds exactly what its subtree was allowed.
#[test]
fn racing_siblings_and_children_allow_exactly_the_root_limit() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let (orch, a, b) = (KeyPair::new(), KeyPair::new(), KeyPair::new());
    let root = w.mint(&orch, limited(mail_grant(), "send_email 50/1h"));
    let left = delegate_to(
        &root,
        &orch,
        "left",
        &a,
        limited(mail_grant(), "send_email 30/1h"),
    );
    let right = delegate_to(&root, &orch, "right", &b, mail_grant());
    let leaf = delegate_to(
        &left,
        &a,
        "leaf",
        &KeyPair::new(),
        limited(mail_grant(), "send_email 10/1h"),
    );
    let tokens = [&root, &left, &right, &leaf];
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (v, token) = (&v, tokens[i % 4]);
                s.spawn(move || {
                    (0..40)
                        .map(|_| {
                            let d = v.authorize(token, &mail(t));
                            if !d.is_allowed() {
                                assert_eq!(
                                    d.denial.as_ref().unwrap().kind,
                                    DenialKind::LimitExceeded
                                );
                            }
                            (i % 4, d.is_allowed())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let per = |k: usize| results.iter().filter(|(i, ok)| *i == k && *ok).count() as u64;
    assert_eq!(per(0) + per(1) + per(2) + per(3), 50);
    assert!(per(3) <= 10 && per(1) + per(3) <= 30);
    let d = v.authorize(&leaf, &mail(t));
    let limits = limits_of(&d);
    assert_eq!(used(&*w.store, &limits[0], t), 50);
    assert_eq!(used(&*w.store, &limits[1], t), per(1) + per(3));
    assert_eq!(used(&*w.store, &limits[2], t), per(3));
}

/// Concurrent payments of random amounts against a root budget and a
/// tighter hop budget: the sum allowed through each is at most its budget
/// and equals its counter.
#[test]
fn racing_payments_never_exceed_either_budget() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let (orch, sub) = (KeyPair::new(), KeyPair::new());
    let root = payments(&w, &orch, "pay amount 5000/1h");
    let hop = delegate_to(
        &root,
        &orch,
        "sub",
        &sub,
        grant("pay:/api/payments")
            .with_budget("pay amount 1000/1h")
            .unwrap(),
    );
    let sums: Vec<(bool, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|i| {
                let (v, token) = (&v, if i % 2 == 0 { &root } else { &hop });
                s.spawn(move || {
                    let mut sum = 0;
                    for k in 0..60u64 {
                        let amount = (i * 37 + k * 101) % 250 + 1;
                        if v.authorize(token, &pay(amount as i64, t)).is_allowed() {
                            sum += amount;
                        }
                    }
                    (i % 2 == 1, sum)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let through_hop: u64 = sums.iter().filter(|(h, _)| *h).map(|(_, s)| s).sum();
    let total: u64 = sums.iter().map(|(_, s)| s).sum();
    assert!(
        through_hop <= 1000 && total <= 5000,
        "{through_hop} {total}"
    );
    let limits = limits_of(&v.authorize(&hop, &pay(0, t)));
    assert_eq!(used(&*w.store, &limits[0], t), total);
    assert_eq!(used(&*w.store, &limits[1], t), through_hop);
}

// ------------------------------------------- denied after the charge

/// A replayed approval is charged, then given back, exactly once: replayed
/// 40 times from 4 threads while 4 others make small payments, the budget
/// still allows exactly 1 000 in all, and no more.
#[test]
fn replayed_approvals_racing_payments_are_refunded_exactly_once() {
    let w = World::new();
    let (agent, finance) = (KeyPair::new(), KeyPair::new());
    let token = w.mint(
        &agent,
        grant("pay:/api/payments")
            .with_budget("pay amount 1000/1h")
            .unwrap()
            .with_approval(&format!(
                "pay when amount>100 by finance={}",
                finance.public()
            ))
            .unwrap(),
    );
    let guard = Arc::new(ReplayGuard::open(w.dir.path().join("replay")).unwrap());
    let v = w.verifier().with_replay_guard(guard);
    let t = this_hour();
    let big = pay(300, t);
    let asked = v.authorize(&token, &big);
    assert!(asked.needs_approval(), "{asked}");
    let block = approve(
        &asked.approval.as_ref().unwrap().third_party_request,
        &big,
        SystemTime::now() + Duration::from_secs(3600),
        &finance,
    )
    .unwrap();
    let approved = attach_approval(&token, &block).unwrap().token;
    allowed(&v.authorize(&approved, &big));
    let limit = &limits_of(&asked)[0];
    assert_eq!(used(&*w.store, limit, t), 300);
    let small: u64 = std::thread::scope(|s| {
        let replays: Vec<_> = (0..4)
            .map(|_| {
                let (v, approved, big) = (&v, &approved, &big);
                s.spawn(move || {
                    for _ in 0..10 {
                        let d = v.authorize(approved, big);
                        let kind = d.denial.as_ref().map(|x| x.kind);
                        assert!(
                            matches!(
                                kind,
                                Some(DenialKind::ApprovalReplayed | DenialKind::LimitExceeded)
                            ),
                            "{d}"
                        );
                    }
                })
            })
            .collect();
        let payers: Vec<_> = (0..4)
            .map(|_| {
                let (v, token) = (&v, &token);
                s.spawn(move || {
                    (0..30)
                        .filter(|_| v.authorize(token, &pay(10, t)).is_allowed())
                        .count() as u64
                })
            })
            .collect();
        for r in replays {
            r.join().unwrap();
        }
        payers.into_iter().map(|p| p.join().unwrap()).sum()
    });
    // Drain what is left with payments of 10: the whole budget, no more.
    let (rest, d) = drain(&v, &token, &pay(10, t), 200);
    assert_eq!(300 + 10 * (small + rest as u64), 1000);
    denied(
        &d,
        DenialKind::LimitExceeded,
        Some(0),
        &["1000 of 1000 used"],
    );
    assert_eq!(used(&*w.store, limit, t), 1000);
}

fn here() -> Audience {
    Audience::parse("https://pay.example.com").unwrap()
}

fn presented(token: &[u8], key: &KeyPair, at: SystemTime) -> Presented {
    let body = br#"{"amount": 50}"#;
    let proof = HolderProof::sign(
        key,
        &ProofSubject {
            method: "POST",
            audience: &here(),
            target: "/api/payments",
            body_digest: ProofSubject::digest(body),
            token,
        },
        at,
    )
    .unwrap();
    Presented::new("POST", body, Some(proof)).at(Some(here()), "/api/payments")
}

/// A thief with a copy of a holder-bound token cannot spend its subtree's
/// allowance: no proof, a proof by another key, a replayed or stale proof
/// are denied before anything is charged.
#[test]
fn a_thief_without_the_holder_key_spends_nothing() {
    let w = World::new();
    let agent = KeyPair::new();
    let mut g = grant("pay:/api/payments")
        .with_budget("pay amount 1000/366d")
        .unwrap();
    g.holder_bound = true;
    let token = w.mint(&agent, g);
    let guard = Arc::new(ReplayGuard::open(w.dir.path().join("replay")).unwrap());
    let v = w.verifier().with_replay_guard(guard);
    let now = SystemTime::now();
    let req = pay(50, now);
    let d = v.authorize(&token, &req);
    assert_eq!(
        d.denial.as_ref().unwrap().kind,
        DenialKind::ProofMissing,
        "{d}"
    );
    let limit = limits_of(&d)[0].clone();
    assert_eq!(used(&*w.store, &limit, now), 0);
    for _ in 0..20 {
        let d = v.authorize_presented(&token, &req, &presented(&token, &KeyPair::new(), now));
        assert_eq!(d.denial.unwrap().kind, DenialKind::ProofInvalid);
    }
    let stale = presented(&token, &agent, now - Duration::from_secs(3600));
    let d = v.authorize_presented(&token, &req, &stale);
    assert_eq!(d.denial.unwrap().kind, DenialKind::ProofInvalid);
    assert_eq!(used(&*w.store, &limit, now), 0);
    let ok = presented(&token, &agent, now);
    allowed(&v.authorize_presented(&token, &req, &ok));
    for _ in 0..5 {
        let d = v.authorize_presented(&token, &req, &ok);
        assert!(d.denial.unwrap().reason.contains("replayed"));
    }
    assert_eq!(used(&*w.store, &limit, now), 50);
}

// ---------------------------------------------------------------- windows

/// Fixed windows: N at the end of one, N at the start of the next (the
/// documented 2·N, SPEC §18.3), never N+1 in either; an earlier-dated
/// request after a later one counts in the later window; a request dated
/// after the token expired is denied `expired` and charges nothing (no
/// caller moves a counter to a future window with a token that has none).
#[test]
fn window_boundaries_and_request_dates() {
    let w = World::new();
    let v = w.verifier();
    let hour = this_hour();
    let orch = KeyPair::new();
    let token = w.mint(&orch, limited(mail_grant(), "send_email 3/1h"));
    let end = hour + Duration::from_secs(3599);
    let (n, d) = drain(&v, &token, &mail(end), 10);
    assert_eq!(n, 3);
    denied(&d, DenialKind::LimitExceeded, Some(0), &["retry after 1 s"]);
    let next = hour + Duration::from_secs(3600);
    let (n, _) = drain(&v, &token, &mail(next), 10);
    assert_eq!(n, 3, "the next window");
    // Back-dated into the first window: counted in the counter's (full).
    let d = v.authorize(&token, &mail(hour));
    denied(
        &d,
        DenialKind::LimitExceeded,
        Some(0),
        &["3 of 3 used", "retry after 7200 s"],
    );
    // Dated after the token's expiry (3 h): expired, nothing charged.
    let later = hour + Duration::from_secs(5 * 3600);
    let d = v.authorize(&token, &mail(later));
    assert_eq!(d.denial.as_ref().unwrap().kind, DenialKind::Expired, "{d}");
    let limit = &limits_of(&d)[0];
    assert_eq!(used(&*w.store, limit, next), 3, "the window of `next` kept");
}

/// The counter of a request dated far in the future: no panic formatting
/// a window end past year 9999, a `Retry-After` that does not overflow.
#[test]
fn a_window_ending_past_year_9999_is_reported_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let store = UsageStore::open(dir.path()).unwrap();
    // A root valid past year 9999 cannot be minted, so the meter is driven
    // directly at the edge of time.
    let c = Charge {
        key: "k".into(),
        units: 1,
        max: 1,
        window_secs: 366 * 86_400,
    };
    let edge = 253_402_300_799; // 9999-12-31T23:59:59Z
    assert_eq!(
        store.charge(std::slice::from_ref(&c), edge).unwrap(),
        mandate_verifier::usage::Charged::Spent
    );
    match store.charge(std::slice::from_ref(&c), edge).unwrap() {
        mandate_verifier::usage::Charged::Exceeded {
            used, window_end, ..
        } => {
            assert_eq!(used, 1);
            assert!(window_end > edge);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.charge(std::slice::from_ref(&c), i64::MAX).unwrap(),
        mandate_verifier::usage::Charged::Spent
    );
}

// ----------------------------------------------------- fail closed: store

/// No counters: every request of a token with limits is denied
/// `limit_unavailable`, even one whose action no limit meters; what an
/// approver is shown and a token-only check are not requests.
#[test]
fn a_verifier_without_counters_denies_limit_unavailable() {
    let w = World::new();
    let t = this_hour();
    let orch = KeyPair::new();
    let token = w.mint(
        &orch,
        grant("send_email,read:/api/mail/*")
            .with_limit("send_email 3/1h")
            .unwrap(),
    );
    let bare = Verifier::new(w.keys());
    denied(
        &bare.authorize(&token, &mail(t)),
        DenialKind::LimitUnavailable,
        None,
        &["keeps no usage counters"],
    );
    denied(
        &bare.authorize(&token, &Request::new("read", "/api/mail/outbox").at(t)),
        DenialKind::LimitUnavailable,
        None,
        &[],
    );
    allowed(&bare.decide_for_approver(&token, &mail(t)));
    allowed(&bare.decide_presented(&token, &mail(t), &Presented::default(), Check::Token));
}

/// Every file of a RocksDB store damaged on disk: the store refuses to
/// open or the charge fails; it never reads the damage as room.
#[test]
fn a_damaged_usage_store_never_reads_as_room() {
    let w = World::new();
    let t = this_hour();
    let orch = KeyPair::new();
    let token = w.mint(&orch, limited(mail_grant(), "send_email 2/1h"));
    let path = w.dir.path().join("damaged");
    {
        let store = Arc::new(UsageStore::open(&path).unwrap());
        let v = Verifier::new(w.keys()).with_usage(store);
        let (n, _) = drain(&v, &token, &mail(t), 5);
        assert_eq!(n, 2);
    }
    // Reopening replays the write-ahead log into a table file.
    drop(UsageStore::open(&path).unwrap());
    // Overwrite the counter's `used` (= 2, big-endian, in its 24-byte
    // value) in the table files: their checksums no longer match.
    let mut hits = 0;
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "sst") {
            continue;
        }
        let mut bytes = std::fs::read(&p).unwrap();
        let needle = 2u64.to_be_bytes();
        let mut at = 0;
        while let Some(i) = bytes[at..].windows(8).position(|w| w == needle) {
            bytes[at + i + 7] = 0;
            hits += 1;
            at += i + 8;
        }
        if hits > 0 {
            std::fs::write(&p, &bytes).unwrap();
        }
    }
    assert!(hits > 0, "the counter is in a table file");
    match UsageStore::open(&path) {
        Err(e) => eprintln!("damaged store refused at open: {e}"),
        Ok(store) => {
            let v = Verifier::new(w.keys()).with_usage(Arc::new(store));
            let d = v.authorize(&token, &mail(t));
            eprintln!("damaged store: {:?}", d.denial);
            assert!(!d.is_allowed(), "the damaged counter read as room");
        }
    }
}

// ------------------------------------------------------ unbounded work

/// The most any one request can touch: 16 blocks (the root and 15 hops)
/// of 8 limits metering its action: 128 counters, each charged exactly
/// once; a 17th block is refused before anything is read or charged.
#[test]
fn sixteen_blocks_of_eight_limits_touch_128_counters_once() {
    let w = World::new();
    let v = w.verifier();
    let t = this_hour();
    let eight = |g: Grant, base: u64| {
        (0..8).fold(g, |g, i| {
            g.with_limit(&format!("send_email {}/{}h", base + i, i + 1))
                .unwrap()
        })
    };
    let mut keys = vec![KeyPair::new()];
    let mut tokens = vec![w.mint(&keys[0], eight(mail_grant(), 1000))];
    for hop in 1..16 {
        let next = KeyPair::new();
        let token = delegate_to(
            tokens.last().unwrap(),
            &keys[hop - 1],
            &format!("a{hop}"),
            &next,
            eight(mail_grant(), 1000 + 10 * hop as u64),
        );
        keys.push(next);
        tokens.push(token);
    }
    let deepest = tokens.last().unwrap();
    assert!(
        deepest.len() <= mandate_spec::MAX_TOKEN_BYTES,
        "{}",
        deepest.len()
    );
    let started = Instant::now();
    let d = v.authorize(deepest, &mail(t));
    let cold = started.elapsed();
    allowed(&d);
    let started = Instant::now();
    allowed(&v.authorize(deepest, &mail(t)));
    eprintln!(
        "128 limits: cold decision {cold:?}, warm {:?}, token {} bytes",
        started.elapsed(),
        deepest.len()
    );
    // The same depth without limits, for scale (printed, not asserted).
    let mut plain_keys = vec![KeyPair::new()];
    let mut plain = w.mint(&plain_keys[0], mail_grant());
    for hop in 1..16 {
        let next = KeyPair::new();
        plain = delegate_to(
            &plain,
            &plain_keys[hop - 1],
            &format!("p{hop}"),
            &next,
            mail_grant(),
        );
        plain_keys.push(next);
    }
    allowed(&v.authorize(&plain, &mail(t)));
    let started = Instant::now();
    allowed(&v.authorize(&plain, &mail(t)));
    eprintln!(
        "the same 16 blocks without limits: warm {:?}",
        started.elapsed()
    );
    let limits = limits_of(&d);
    assert_eq!(limits.len(), 128);
    let keys_seen: std::collections::BTreeSet<_> = limits.iter().map(|l| &l.key).collect();
    assert_eq!(keys_seen.len(), 128, "128 distinct counters");
    for l in &limits {
        assert_eq!(used(&*w.store, l, t), 2, "{}", l.limit);
    }
    // A request no limit meters touches none.
    let other = w.mint(
        &KeyPair::new(),
        eight(grant("send_email,read:/api/mail/*"), 1),
    );
    allowed(&v.authorize(&other, &Request::new("read", "/api/mail/outbox").at(t)));
    // A 17th block: refused as malformed, nothing charged.
    let last = Agent::new("a16");
    let beyond = append_hop(
        deepest,
        &keys[15],
        hop_block_for(&last, &mail_grant(), t + Duration::from_secs(7200)),
    );
    let d = v.authorize(&beyond, &mail(t));
    denied(
        &d,
        DenialKind::MalformedToken,
        None,
        &["17 blocks", "at most 16"],
    );
    for l in &limits {
        assert_eq!(used(&*w.store, l, t), 2);
    }
}

// ------------------------------------------------------ the fleet (NATS)

/// A nats-server with JetStream on a temporary directory, killed when
/// dropped.
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
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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

    /// Publishes `payload` (with NATS headers `headers`, e.g.
    /// `KV-Operation: DEL`) on `subject` over the plain protocol, as anyone
    /// with publish rights could, and waits for JetStream's ack.
    fn publish(&self, subject: &str, headers: Option<&str>, payload: &[u8]) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert!(line.starts_with("INFO"), "{line}");
        let mut msg = Vec::new();
        msg.extend_from_slice(b"CONNECT {\"verbose\":false,\"headers\":true,\"protocol\":1}\r\n");
        msg.extend_from_slice(b"SUB _INBOX.attack 1\r\n");
        match headers {
            None => msg.extend_from_slice(
                format!("PUB {subject} _INBOX.attack {}\r\n", payload.len()).as_bytes(),
            ),
            Some(h) => {
                let h = format!("NATS/1.0\r\n{h}\r\n\r\n");
                msg.extend_from_slice(
                    format!(
                        "HPUB {subject} _INBOX.attack {} {}\r\n{h}",
                        h.len(),
                        h.len() + payload.len()
                    )
                    .as_bytes(),
                );
            }
        }
        msg.extend_from_slice(payload);
        msg.extend_from_slice(b"\r\n");
        out.write_all(&msg).unwrap();
        loop {
            line.clear();
            lines.read_line(&mut line).unwrap();
            if line.starts_with("PING") {
                out.write_all(b"PONG\r\n").unwrap();
            } else if line.starts_with("MSG") {
                line.clear();
                lines.read_line(&mut line).unwrap();
                assert!(line.contains("\"seq\""), "JetStream refused: {line}");
                return;
            } else if line.starts_with("-ERR") {
                panic!("{line}");
            }
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

const BUCKET: &str = "ATTACK_USAGE";

fn fleet(nats: &Nats, lease: Option<LeaseConfig>) -> Arc<FleetUsage> {
    let mut cfg = UsageBucketConfig::new(BUCKET);
    cfg.timeout = Duration::from_secs(20);
    cfg.lease = lease;
    // The fleet key authenticating the counters, shared by the verifiers.
    let key = nats.dir.join("usage.key");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    cfg.key_file = Some(key);
    let m = FleetUsage::new(FeedConfig::new(nats.url()), cfg).unwrap();
    m.connect().unwrap();
    Arc::new(m)
}

/// Someone with publish rights on the bucket's subjects (no issuer key)
/// writes junk, a counter with a negative count, or a delete marker over a
/// counter: the verifier denies `limit_unavailable` naming the counter,
/// never restarts it from zero.
#[test]
fn a_bus_publisher_writing_junk_over_a_counter_gets_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let w = World::new();
    let meter = fleet(&nats, None);
    let v = Verifier::new(w.keys()).with_usage(meter.clone());
    let now = SystemTime::now();
    let token = w.mint(&KeyPair::new(), limited(mail_grant(), "send_email 3/366d"));
    let d = v.authorize(&token, &mail(now));
    allowed(&d);
    let limit = limits_of(&d)[0].clone();
    let subject = format!("$KV.{BUCKET}.{}", limit.key);
    // Each reason names the counter (and why it was refused).
    let counter = format!("counter {}", limit.key);
    let junk: [(Option<&str>, &[u8]); 5] = [
        (None, b"not json"),
        (None, br#"{"window":0,"used":0}"#),
        (None, br#"{"window":0,"used":-1}"#),
        (Some("KV-Operation: DEL"), b""),
        (Some("KV-Operation: PURGE"), b""),
    ];
    for (headers, payload) in junk {
        let why = counter.as_str();
        nats.publish(&subject, headers, payload);
        let d = v.authorize(&token, &mail(now));
        denied(
            &d,
            DenialKind::LimitUnavailable,
            None,
            &["fail closed", why],
        );
    }
    // The counter of another hop is untouched: a fresh token still counts.
    let other = w.mint(&KeyPair::new(), limited(mail_grant(), "send_email 1/366d"));
    allowed(&v.authorize(&other, &mail(now)));
    denied(
        &v.authorize(&other, &mail(now)),
        DenialKind::LimitExceeded,
        Some(0),
        &["1 of 1 used"],
    );
}

/// NATS stopped: requests of tokens with limits are denied
/// `limit_unavailable` (others are not affected); after its restart the
/// counters are where they were.
#[test]
fn nats_down_denies_limit_unavailable_and_the_count_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path());
    let w = World::new();
    let v = Verifier::new(w.keys()).with_usage(fleet(&nats, None));
    let now = SystemTime::now();
    let token = w.mint(&KeyPair::new(), limited(mail_grant(), "send_email 3/366d"));
    let plain = w.mint(&KeyPair::new(), mail_grant());
    allowed(&v.authorize(&token, &mail(now)));
    nats.stop();
    for _ in 0..5 {
        denied(
            &v.authorize(&token, &mail(now)),
            DenialKind::LimitUnavailable,
            None,
            &["fail closed"],
        );
    }
    allowed(&v.authorize(&plain, &mail(now)));
    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let d = v.authorize(&token, &mail(now));
        if d.is_allowed() || Instant::now() > deadline {
            break d;
        }
        assert_eq!(
            d.denial.as_ref().unwrap().kind,
            DenialKind::LimitUnavailable
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    allowed(&d);
    allowed(&v.authorize(&token, &mail(now)));
    denied(
        &v.authorize(&token, &mail(now)),
        DenialKind::LimitExceeded,
        Some(0),
        &["3 of 3 used"],
    );
}

/// A budget request of amount 0 costs nothing, in every mode: with leases
/// too, where no lease is ever taken for a counter it does not spend from
/// (it was denied `limit_unavailable`: "the leases were spent … as fast as
/// they were reserved").
#[test]
fn a_zero_amount_is_allowed_by_the_fleet_in_exact_and_leased_mode() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let w = World::new();
    let now = SystemTime::now();
    for lease in [None, Some(LeaseConfig::new(10))] {
        let leased = lease.is_some();
        let meter = fleet(&nats, lease);
        let v = Verifier::new(w.keys()).with_usage(meter.clone());
        let token = payments(&w, &KeyPair::new(), "pay amount 100/366d");
        for _ in 0..3 {
            allowed(&v.authorize(&token, &pay(0, now)));
        }
        allowed(&v.authorize(&token, &pay(100, now)));
        let d = v.authorize(&token, &pay(1, now));
        denied(&d, DenialKind::LimitExceeded, Some(0), &["100 of 100 used"]);
        allowed(&v.authorize(&token, &pay(0, now)));
        let limit = &limits_of(&d)[0];
        assert_eq!(used(&*meter, limit, now), 100, "leased: {leased}");
    }
}

/// Found by this file: whoever sets the request time (an operator's
/// `mandate verify --time`, a library caller; never a network API, SPEC
/// §18.7) dated requests *before the token was issued*, in successive past
/// windows, and got N in each (`3/1h`, ten past hours: 30 allowed). Every
/// window before issuance now counts as the issuance window (SPEC §18.3).
#[test]
fn requests_dated_before_the_token_was_issued_count_in_its_first_window() {
    let w = World::new();
    let v = w.verifier();
    let orch = KeyPair::new();
    let token = w.mint(&orch, limited(mail_grant(), "send_email 3/1h"));
    let hour = this_hour();
    let mut total = 0;
    for back in (1..=10u64).rev() {
        let (n, _) = drain(
            &v,
            &token,
            &mail(hour - Duration::from_secs(back * 3600)),
            10,
        );
        total += n;
    }
    let (now, denied) = drain(&v, &token, &mail(SystemTime::now()), 10);
    assert_eq!(denied.denial.unwrap().kind, DenialKind::LimitExceeded);
    assert_eq!(
        (total, now),
        (3, 0),
        "allowed {total} requests dated before the token existed, then {now}"
    );
}
