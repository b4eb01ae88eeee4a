//! Attacks on live restrictions (issue 18, SPEC §19), through the library on
//! real RocksDB stores. Each test asserts the denial AND why (kind, hop,
//! reason words, the restriction named).
//!
//! Threat model (THREATS.md):
//! 1. Positions. *Narrow token holder / delegating agent*: escape a
//!    restriction on its hop by attenuating, narrowing, delegating to itself,
//!    dropping, reordering or re-signing blocks — every token derived from a
//!    block contains it, the rest breaks the signature chain. *Approved
//!    agent*: make one approval (another key's, another request's, an
//!    expired one, one spent already, one for the token's own rule) count for
//!    a restriction's approval rule — each is its own denial. *Bus
//!    publisher*: replay a restriction after its lift, or before — lifts are
//!    final, even after the store is pruned (regression below). *Operator
//!    mistake*: a verifier following the feed ignored every restriction
//!    (regression below); a restriction limit without a meter fails closed.
//! 2. The decision sees the request exactly as it is decided on: rules are
//!    evaluated in Rust on the request's facts; a parameter a condition
//!    cannot be evaluated on denies (`where`) or does not exempt (`deny`).
//! 3. Second use: approvals are single use across chain and restriction
//!    rules; limits are shared by every token the restriction reaches.
//! 4. The lookup is a few hash reads per target (benches/restrictions.rs).
//! 5. The denial names the restriction (id, rule, who, when, why).
//! 6. An unreadable list denies (`revocation_unavailable`).
#![allow(clippy::unwrap_used, missing_docs)]

use mandate_attenuate::{approve, attach_approval, delegate, narrow, read_chain};
use mandate_spec::{
    Lift, Request, Restriction, RestrictionEntry, RestrictionRule, RestrictionTarget,
};
use mandate_tests::{
    append_hop, assert_allowed, assert_denied, container, customers_family, customers_grant,
    delegation, encode, grant, hop_block_for, in_an_hour, mint_request, read_customer, Agent,
    Family, PRINCIPAL,
};
use mandate_verifier::feed::{spawn_feed, FeedConfig, RevocationKeys};
use mandate_verifier::replay::ReplayGuard;
use mandate_verifier::revocation::{RestrictionApplied, RevocationStore};
use mandate_verifier::usage::UsageStore;
use mandate_verifier::{CacheOptions, Decision, DenialKind, Outcome, Presented, Verifier};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

// ---- harness -------------------------------------------------------------------

/// A revocation store in its own temporary directory.
struct Store {
    store: Arc<RevocationStore>,
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RevocationStore::open(dir.path().join("revocations")).unwrap());
        Store { store, dir }
    }

    /// Writes a new restriction of `rules` on `target`; it must be added.
    fn restrict(&self, target: RestrictionTarget, rules: Vec<RestrictionRule>) -> Restriction {
        let r = restriction(target, rules);
        assert_eq!(
            self.store
                .restrict(&RestrictionEntry::Restrict(r.clone()))
                .unwrap(),
            RestrictionApplied::Added
        );
        r
    }

    fn lift(&self, id: &str) -> RestrictionApplied {
        self.store.restrict(&lift_of(id)).unwrap()
    }

    /// `verifier` deciding with this store's revocations and restrictions.
    fn on(&self, verifier: &Verifier) -> Verifier {
        verifier.clone().with_revocations(self.store.clone())
    }
}

fn restriction(target: RestrictionTarget, rules: Vec<RestrictionRule>) -> Restriction {
    Restriction {
        id: uuid::Uuid::new_v4().to_string(),
        target,
        rules,
        restricted_at: OffsetDateTime::now_utc(),
        by: "security@acme".into(),
        reason: "under review".into(),
        expires_at: None,
        note: None,
    }
}

fn lift_of(id: &str) -> RestrictionEntry {
    RestrictionEntry::Lift(Lift {
        id: id.into(),
        lifted_at: OffsetDateTime::now_utc(),
        by: "security@acme".into(),
        reason: "review done".into(),
    })
}

fn deny(text: &str) -> RestrictionRule {
    RestrictionRule::parse_deny(text).unwrap()
}

/// The revocation id of hop `hop` of `token` (the block a restriction on
/// that hop names).
fn hop_block(token: &[u8], hop: usize) -> RestrictionTarget {
    RestrictionTarget::Block(read_chain(token).unwrap().hops[hop].revocation_id.clone())
}

fn family_of(token: &[u8]) -> RestrictionTarget {
    RestrictionTarget::Token(read_chain(token).unwrap().token_id)
}

fn agent_key(agent: &Agent) -> RestrictionTarget {
    RestrictionTarget::Agent(hex::encode(agent.key.public().to_bytes()))
}

/// Asserts `d` is denied `restricted` at `hop` by `r`'s rule `rule`, the
/// reason naming the restriction, who made it and why, and the decision
/// listing it.
fn assert_restricted(d: &Decision, hop: usize, r: &Restriction, rule: &str) {
    let denial = assert_denied(
        d,
        DenialKind::Restricted,
        Some(hop),
        &[
            &format!("live restriction {}", r.id),
            "\"security@acme\"",
            "\"under review\"",
            &format!("rule {}", mandate_spec::display::quoted(rule)),
        ],
    );
    let named = denial
        .restriction
        .expect("the denial names the restriction");
    assert_eq!(named.id, r.id);
    assert_eq!(named.rule, rule);
    assert_eq!(named.by, "security@acme");
    assert!(d.restrictions.contains(&r.id), "{:?}", d.restrictions);
}

/// A verifier with a replay guard (approvals are single use) in `dir`.
fn with_replay(verifier: Verifier, dir: &std::path::Path) -> Verifier {
    verifier.with_replay_guard(Arc::new(ReplayGuard::open(dir.join("replay")).unwrap()))
}

// ---- escaping a restriction on a hop ----------------------------------------------

/// The holder of a restricted hop attenuates, narrows, delegates to a key
/// of its own: every derived token still carries the block and is denied,
/// through that hop. Dropping or reordering blocks, or re-signing the hop
/// itself, breaks the signature chain.
#[test]
fn no_token_derived_from_a_restricted_hop_escapes_it() {
    let s = Store::new();
    let mut f = customers_family(1);
    let target = hop_block(&f.tokens[1], 1);
    let r = s.restrict(target, vec![deny("read:/api/customers/*")]);
    let v = s.on(&f.verifier);
    let req = read_customer(1);
    assert_restricted(
        &v.authorize(&f.tokens[1], &req),
        1,
        &r,
        "deny read:/api/customers/*",
    );
    // `list` is not denied: only what the rule names is taken away.
    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    let d = v.authorize(&f.tokens[1], &list);
    assert_eq!(
        d.denial.as_ref().map(|d| d.kind),
        Some(DenialKind::NotAllowed),
        "hop 1 never had list: {d:?}"
    );

    // Delegated further (as any holder may).
    f.delegate(grant(&["read:/api/customers/*"], &["rows<=10"]));
    assert_restricted(
        &v.authorize(&f.tokens[2], &req),
        1,
        &r,
        "deny read:/api/customers/*",
    );
    // Narrowed with a first-party block.
    let narrowed = narrow(
        &f.tokens[1],
        &grant(&["read:/api/customers/42"], &[]),
        Some(Duration::from_secs(60)),
    )
    .unwrap()
    .token;
    assert_restricted(
        &v.authorize(&narrowed, &req),
        1,
        &r,
        "deny read:/api/customers/*",
    );
    // Delegated to a fresh key of the holder's own.
    let me_again = Agent::new("agent-1-bis");
    let to_self = delegate(
        &f.tokens[1],
        &f.agents[1].key,
        &delegation(&me_again, grant(&["read:/api/customers/*"], &[])),
    )
    .unwrap()
    .token;
    assert_restricted(
        &v.authorize(&to_self, &req),
        1,
        &r,
        "deny read:/api/customers/*",
    );

    // The restricted block dropped from a derived token: the signatures no
    // longer chain.
    let mut c = container(&f.tokens[2]);
    c.blocks.remove(0);
    let d = v.authorize(&encode(&c), &req);
    assert_denied(&d, DenialKind::BadSignature, None, &[]);
    // Reordered.
    let mut c = container(&f.tokens[2]);
    c.blocks.swap(0, 1);
    assert_denied(
        &v.authorize(&encode(&c), &req),
        DenialKind::BadSignature,
        None,
        &[],
    );
    // The hop re-made by its own agent on the parent token (a new block, a
    // new revocation id): only agent-0 may sign hop 1.
    let resigned = append_hop(
        &f.tokens[0],
        &f.agents[1].key,
        hop_block_for(&f.agents[1], &customers_grant(), in_an_hour()),
    );
    assert_denied(
        &v.authorize(&resigned, &req),
        DenialKind::BrokenChain,
        Some(1),
        &[&format!("signed by {}", f.agents[1].key_text())],
    );
}

/// A restriction on hop k binds hop k and below, never the parent nor a
/// sibling delegation. The delegator re-delegating to the same agent makes
/// a new block (not derived from the restricted one): an agent-key
/// restriction is what follows an agent wherever it is delegated to.
#[test]
fn a_restriction_on_a_hop_leaves_its_parent_and_siblings_alone() {
    let s = Store::new();
    let f = customers_family(2);
    let v = s.on(&f.verifier);
    let req = read_customer(1);
    let r = s.restrict(hop_block(&f.tokens[1], 1), vec![deny("read:/**")]);
    let d = v.authorize(&f.tokens[0], &req);
    assert_allowed(&d);
    assert!(d.restrictions.is_empty(), "{:?}", d.restrictions);
    assert_restricted(&v.authorize(&f.tokens[1], &req), 1, &r, "deny read:/**");
    assert_restricted(&v.authorize(&f.tokens[2], &req), 1, &r, "deny read:/**");
    // A restriction on hop 2 does not reach hop 1.
    let r2 = s.restrict(hop_block(&f.tokens[2], 2), vec![deny("list:/**")]);
    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    let d = v.authorize(&f.tokens[1], &list);
    assert!(!d.restrictions.contains(&r2.id));

    // A sibling of hop 1, and the same agent delegated to again.
    let sibling = delegate(
        &f.tokens[0],
        &f.agents[0].key,
        &delegation(&Agent::new("agent-x"), customers_grant()),
    )
    .unwrap()
    .token;
    assert_allowed(&v.authorize(&sibling, &req));
    let again = delegate(
        &f.tokens[0],
        &f.agents[0].key,
        &delegation(&f.agents[1], customers_grant()),
    )
    .unwrap()
    .token;
    assert_allowed(&v.authorize(&again, &req));
    let by_key = s.restrict(agent_key(&f.agents[1]), vec![deny("read:/**")]);
    assert_restricted(&v.authorize(&again, &req), 1, &by_key, "deny read:/**");
    assert_allowed(&v.authorize(&sibling, &req));
    assert_allowed(&v.authorize(&f.tokens[0], &req));
}

// ---- approvals for a restriction's approval rule ------------------------------------

/// A token allowed to read customers; a restriction on its family asks
/// alice's approval for every read.
struct Approvals {
    s: Store,
    f: Family,
    alice: biscuit_auth::KeyPair,
    r: Restriction,
    v: Verifier,
}

impl Approvals {
    fn new() -> Approvals {
        let s = Store::new();
        let f = customers_family(0);
        let alice = biscuit_auth::KeyPair::new();
        let rule =
            RestrictionRule::parse_require_approval(&format!("read by alice={}", alice.public()))
                .unwrap();
        let r = s.restrict(family_of(f.token()), vec![rule]);
        let v = with_replay(s.on(&f.verifier), s.dir.path());
        Approvals { s, f, alice, r, v }
    }

    /// The approval block `who` signs for `request` on `token`, valid until
    /// `expires`.
    fn approval(
        &self,
        token: &[u8],
        request: &Request,
        who: &biscuit_auth::KeyPair,
        expires: SystemTime,
    ) -> Vec<u8> {
        let block = self.block(token, request, who, expires);
        attach_approval(token, &block).unwrap().token
    }

    /// The approval block itself (base64).
    fn block(
        &self,
        token: &[u8],
        request: &Request,
        who: &biscuit_auth::KeyPair,
        expires: SystemTime,
    ) -> String {
        let tpr = biscuit_auth::UnverifiedBiscuit::from(token)
            .unwrap()
            .third_party_request()
            .unwrap()
            .serialize_base64()
            .unwrap();
        approve(&tpr, request, expires, who).unwrap()
    }

    fn asked_by(&self) -> String {
        format!("asked by live restriction {}", self.r.id)
    }
}

#[test]
fn a_restriction_approval_needs_its_own_key_this_request_in_time_and_once() {
    let a = Approvals::new();
    let req = read_customer(1);
    // None attached: needs alice's approval, naming the restriction.
    let d = a.v.authorize(a.f.token(), &req);
    assert_eq!(d.decision, Outcome::NeedsApproval, "{d:?}");
    let asked = d.approval.clone().unwrap();
    assert_eq!(asked.approvers.len(), 1);
    assert_eq!(asked.approvers[0].name, "alice");
    assert_eq!(asked.approvers[0].key, a.alice.public().to_string());
    assert_eq!(asked.digest, hex::encode(req.approval_digest()));
    assert_denied(&d, DenialKind::NeedsApproval, Some(0), &[&a.asked_by()]);

    // Signed by another key: still needs alice's.
    let mallory = biscuit_auth::KeyPair::new();
    let other_key = a.approval(a.f.token(), &req, &mallory, in_an_hour());
    let d = a.v.authorize(&other_key, &req);
    assert_eq!(d.decision, Outcome::NeedsApproval, "{d:?}");
    assert_eq!(d.approval.unwrap().approvers[0].name, "alice");

    // Alice's, for another request.
    let other_req = a.approval(a.f.token(), &read_customer(2), &a.alice, in_an_hour());
    assert_denied(
        &a.v.authorize(&other_req, &req),
        DenialKind::ApprovalMismatch,
        Some(0),
        &["for another request", &a.asked_by()],
    );
    // Alice's, for this request, expired.
    let expired = a.approval(
        a.f.token(),
        &req,
        &a.alice,
        SystemTime::now() - Duration::from_secs(60),
    );
    assert_denied(
        &a.v.authorize(&expired, &req),
        DenialKind::ApprovalExpired,
        Some(0),
        &["the approval by alice expired at", &a.asked_by()],
    );
    // Alice's, for this request, in time: once.
    let approved = a.approval(a.f.token(), &req, &a.alice, in_an_hour());
    let d = a.v.authorize(&approved, &req);
    assert_allowed(&d);
    assert_eq!(d.restrictions, vec![a.r.id.clone()]);
    assert_denied(
        &a.v.authorize(&approved, &req),
        DenialKind::ApprovalReplayed,
        None,
        &["already used", "single-use"],
    );
    // The same approval block appended again to the token (a new block, a
    // new revocation id, the approver's signature unchanged): spent.
    let req = read_customer(3);
    let block = a.block(a.f.token(), &req, &a.alice, in_an_hour());
    let first = attach_approval(a.f.token(), &block).unwrap().token;
    let second = attach_approval(a.f.token(), &block).unwrap().token;
    assert_ne!(first, second);
    assert_allowed(&a.v.authorize(&first, &req));
    assert_denied(
        &a.v.authorize(&second, &req),
        DenialKind::ApprovalReplayed,
        None,
        &["already used"],
    );
    // Lifted: no approval needed any more.
    assert_eq!(a.s.lift(&a.r.id), RestrictionApplied::Lifted);
    assert_allowed(&a.v.authorize(a.f.token(), &req));
}

/// Regression guard: an approval attached for the token's own approval
/// rule (bob's key) does not satisfy a restriction asking alice; once
/// both are attached, both are spent with the one request.
#[test]
fn an_approval_for_the_tokens_own_rule_does_not_count_for_a_restriction_of_another_approver() {
    let s = Store::new();
    let bob = biscuit_auth::KeyPair::new();
    let alice = biscuit_auth::KeyPair::new();
    let g = grant(&["read:/api/customers/*"], &["rows<=100"])
        .with_approval(&format!("read by bob={}", bob.public()))
        .unwrap();
    let f = Family::mint(g);
    let rule =
        RestrictionRule::parse_require_approval(&format!("read by alice={}", alice.public()))
            .unwrap();
    let r = s.restrict(RestrictionTarget::Principal(PRINCIPAL.into()), vec![rule]);
    let v = with_replay(s.on(&f.verifier), s.dir.path());
    let req = read_customer(1);

    // The token's own rule asks first (Datalog), naming bob.
    let d = v.authorize(f.token(), &req);
    assert_eq!(d.decision, Outcome::NeedsApproval, "{d:?}");
    assert_eq!(d.approval.as_ref().unwrap().approvers[0].name, "bob");

    let sign = |token: &[u8], who: &biscuit_auth::KeyPair| {
        let tpr = biscuit_auth::UnverifiedBiscuit::from(token)
            .unwrap()
            .third_party_request()
            .unwrap()
            .serialize_base64()
            .unwrap();
        let block = approve(&tpr, &req, in_an_hour(), who).unwrap();
        attach_approval(token, &block).unwrap().token
    };
    let with_bob = sign(f.token(), &bob);
    let d = v.authorize(&with_bob, &req);
    assert_eq!(
        d.decision,
        Outcome::NeedsApproval,
        "bob's counted for alice: {d:?}"
    );
    let asked = d.approval.clone().unwrap();
    assert_eq!(asked.approvers.len(), 1);
    assert_eq!(asked.approvers[0].name, "alice");
    assert_denied(
        &d,
        DenialKind::NeedsApproval,
        Some(0),
        &[&format!("asked by live restriction {}", r.id)],
    );
    // Bob's approval was not spent by that denial: with alice's too, the
    // request is allowed once.
    let with_both = sign(&with_bob, &alice);
    assert_allowed(&v.authorize(&with_both, &req));
    assert_denied(
        &v.authorize(&with_both, &req),
        DenialKind::ApprovalReplayed,
        None,
        &["already used"],
    );
    // Bob's alone was spent with it: the token with only bob's approval
    // cannot use it again, even once the restriction is lifted.
    assert_eq!(s.lift(&r.id), RestrictionApplied::Lifted);
    assert_denied(
        &v.authorize(&with_bob, &req),
        DenialKind::ApprovalReplayed,
        None,
        &[&format!("signed by {}", bob.public())],
    );
}

// ---- conditions fail closed ---------------------------------------------------------

#[test]
fn only_and_deny_conditions_deny_a_request_they_cannot_be_evaluated_on() {
    let s = Store::new();
    let f = customers_family(0);
    let v = s.on(&f.verifier);
    let only = s.restrict(
        family_of(f.token()),
        vec![RestrictionRule::parse_only("read:/api/customers/* where rows<=10").unwrap()],
    );
    let rule = "only read:/api/customers/* where rows<=10";
    assert_allowed(&v.authorize(f.token(), &read_customer(10)));
    assert_restricted(&v.authorize(f.token(), &read_customer(50)), 0, &only, rule);
    // Missing and mistyped: restricted (before Datalog, which would say
    // not_allowed or evaluation).
    let missing = Request::new("read", "/api/customers/42");
    assert_restricted(&v.authorize(f.token(), &missing), 0, &only, rule);
    let mistyped = Request::new("read", "/api/customers/42").param("rows", "5");
    assert_restricted(&v.authorize(f.token(), &mistyped), 0, &only, rule);
    // Out of its scope: untouched.
    let list = Request::new("list", "/api/customers/42").param("rows", 50);
    assert_allowed(&v.authorize(f.token(), &list));
    assert_eq!(s.lift(&only.id), RestrictionApplied::Lifted);

    let over = s.restrict(
        RestrictionTarget::Principal(PRINCIPAL.into()),
        vec![deny("read:/api/customers/* where amount>100")],
    );
    let rule = "deny read:/api/customers/* where amount>100";
    let with = |amount: Option<mandate_spec::Value>| {
        let r = read_customer(1);
        match amount {
            Some(a) => r.param("amount", a),
            None => r,
        }
    };
    assert_allowed(&v.authorize(f.token(), &with(Some(50.into()))));
    assert_restricted(
        &v.authorize(f.token(), &with(Some(101.into()))),
        0,
        &over,
        rule,
    );
    assert_restricted(&v.authorize(f.token(), &with(None)), 0, &over, rule);
    assert_restricted(
        &v.authorize(f.token(), &with(Some("50".into()))),
        0,
        &over,
        rule,
    );
    // An unscoped `where` on a parameter only some requests carry denies
    // the others.
    let region = s.restrict(
        family_of(f.token()),
        vec![RestrictionRule::parse_only("region=eu").unwrap()],
    );
    let eu = read_customer(1).param("amount", 5).param("region", "eu");
    assert_allowed(&v.authorize(f.token(), &eu));
    assert_restricted(
        &v.authorize(f.token(), &list),
        0,
        &region,
        "only region=\"eu\"",
    );
}

// ---- identity and lifts --------------------------------------------------------------

#[test]
fn a_lift_is_final_in_whatever_order_the_entries_arrive() {
    let s = Store::new();
    let f = customers_family(0);
    let v = s.on(&f.verifier);
    let req = read_customer(1);
    let r = s.restrict(family_of(f.token()), vec![deny("read:/**")]);
    assert_restricted(&v.authorize(f.token(), &req), 0, &r, "deny read:/**");
    assert_eq!(s.lift(&r.id), RestrictionApplied::Lifted);
    assert_allowed(&v.authorize(f.token(), &req));
    // The restriction re-sent: unchanged, still lifted.
    let again = RestrictionEntry::Restrict(r.clone());
    assert_eq!(
        s.store.restrict(&again).unwrap(),
        RestrictionApplied::Unchanged
    );
    assert_allowed(&v.authorize(f.token(), &req));
    // Re-sent with other rules and another target under the same id.
    let mut retargeted = r.clone();
    retargeted.target = RestrictionTarget::Principal(PRINCIPAL.into());
    retargeted.rules = vec![deny("list:/**")];
    assert_eq!(
        s.store
            .restrict(&RestrictionEntry::Restrict(retargeted.clone()))
            .unwrap(),
        RestrictionApplied::Unchanged
    );
    assert_eq!(s.lift(&r.id), RestrictionApplied::Unchanged);
    assert_eq!(s.store.restrictions_in_effect(), 0);

    // A lift before its restriction: the restriction never applies.
    let early = restriction(family_of(f.token()), vec![deny("read:/**")]);
    assert_eq!(s.lift(&early.id), RestrictionApplied::LiftRecorded);
    assert_eq!(
        s.store
            .restrict(&RestrictionEntry::Restrict(early.clone()))
            .unwrap(),
        RestrictionApplied::Unchanged
    );
    let d = v.authorize(f.token(), &req);
    assert_allowed(&d);
    assert!(d.restrictions.is_empty());
    let record = s.store.restriction_record(&early.id).unwrap().unwrap();
    assert!(record.restriction.is_none() && record.lifted.is_some());

    // A restriction on an id in effect is not replaced.
    let held = s.restrict(family_of(f.token()), vec![deny("list:/**")]);
    let mut swapped = held.clone();
    swapped.rules = vec![deny("write:/**")];
    assert_eq!(
        s.store
            .restrict(&RestrictionEntry::Restrict(swapped))
            .unwrap(),
        RestrictionApplied::Unchanged
    );
    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    assert_restricted(&v.authorize(f.token(), &list), 0, &held, "deny list:/**");

    // All of it survives a restart.
    let path = s.dir.path().join("revocations");
    drop(v);
    let Store { store, dir } = s;
    drop(store);
    let store = Arc::new(RevocationStore::open(&path).unwrap());
    let v = f.verifier.clone().with_revocations(store.clone());
    assert_allowed(&v.authorize(f.token(), &req));
    assert_restricted(&v.authorize(f.token(), &list), 0, &held, "deny list:/**");
    for e in [
        RestrictionEntry::Restrict(r),
        RestrictionEntry::Restrict(early),
    ] {
        assert_eq!(store.restrict(&e).unwrap(), RestrictionApplied::Unchanged);
    }
    assert_allowed(&v.authorize(f.token(), &req));
    assert_eq!(store.restrictions_in_effect(), 1);
    drop(dir);
}

/// Regression: pruning deleted the record of a lifted restriction whose
/// target expired, lift included; the same signed restriction replayed
/// (from the feed, by anyone able to publish) was then `Added` again and
/// applied — to a principal or agent key, which do not expire. Pruning
/// now keeps the lift (the restriction's body goes): the replay is
/// `Unchanged`.
#[test]
fn a_lifted_restriction_replayed_after_pruning_stays_lifted() {
    let s = Store::new();
    let f = customers_family(0);
    let v = s.on(&f.verifier);
    let req = read_customer(1);
    let now = OffsetDateTime::now_utc();
    let mut r = restriction(
        RestrictionTarget::Principal(PRINCIPAL.into()),
        vec![deny("read:/**")],
    );
    r.expires_at = Some(now + time::Duration::hours(1));
    let entry = RestrictionEntry::Restrict(r.clone());
    assert_eq!(s.store.restrict(&entry).unwrap(), RestrictionApplied::Added);
    assert_restricted(&v.authorize(f.token(), &req), 0, &r, "deny read:/**");
    assert_eq!(s.lift(&r.id), RestrictionApplied::Lifted);
    assert_allowed(&v.authorize(f.token(), &req));

    // Two hours later, the store is pruned.
    assert_eq!(
        s.store
            .prune_expired(now + time::Duration::hours(2))
            .unwrap(),
        1
    );
    let record = s.store.restriction_record(&r.id).unwrap();
    assert!(
        record.as_ref().is_some_and(|r| r.lifted.is_some()),
        "the lift is kept: {record:?}"
    );
    // The signed entry replayed.
    assert_eq!(
        s.store.restrict(&entry).unwrap(),
        RestrictionApplied::Unchanged,
        "a lifted restriction came back after pruning"
    );
    assert_allowed(&v.authorize(f.token(), &req));
    assert_eq!(s.store.restrictions_in_effect(), 0);
    // An expired restriction never lifted is simply removed.
    let mut stale = restriction(
        RestrictionTarget::Principal("user:nobody".into()),
        vec![deny("read:/**")],
    );
    stale.expires_at = Some(now + time::Duration::hours(1));
    s.store
        .restrict(&RestrictionEntry::Restrict(stale.clone()))
        .unwrap();
    assert_eq!(
        s.store
            .prune_expired(now + time::Duration::hours(2))
            .unwrap(),
        1
    );
    assert!(s.store.restriction_record(&stale.id).unwrap().is_none());
    // The kept lift is not pruned again (it counts once).
    assert_eq!(
        s.store
            .prune_expired(now + time::Duration::hours(3))
            .unwrap(),
        0
    );
}

// ---- caches ----------------------------------------------------------------------------

/// A token whose verification is cached (and decided inline, on the hot
/// path) is restricted by the next decision after the write, and allowed
/// by the next decision after the lift.
#[test]
fn a_cached_token_is_restricted_at_once_and_freed_at_once() {
    let s = Store::new();
    let f = customers_family(1);
    let v = s.on(&f.verifier).with_cache(CacheOptions::default());
    let req = read_customer(1);
    let presented = Presented::default();
    assert_allowed(&v.authorize(f.token(), &req));
    let inline = v.try_authorize_inline(f.token(), &req, &presented);
    assert_allowed(inline.as_ref().expect("cached: decided inline"));

    let r = s.restrict(agent_key(&f.agents[1]), vec![deny("read:/api/**")]);
    assert_restricted(&v.authorize(f.token(), &req), 1, &r, "deny read:/api/**");
    let inline = v.try_authorize_inline(f.token(), &req, &presented).unwrap();
    assert_restricted(&inline, 1, &r, "deny read:/api/**");

    assert_eq!(s.lift(&r.id), RestrictionApplied::Lifted);
    let d = v.authorize(f.token(), &req);
    assert_allowed(&d);
    assert!(d.restrictions.is_empty());
    assert_allowed(&v.try_authorize_inline(f.token(), &req, &presented).unwrap());
}

// ---- limits ----------------------------------------------------------------------------

#[test]
fn a_restriction_limit_is_shared_by_every_token_of_the_principal() {
    let s = Store::new();
    let mut f = customers_family(0);
    let second = f
        .issuer
        .mint(&mint_request(&Agent::new("agent-b"), customers_grant()))
        .unwrap()
        .token;
    let mut bob_req = mint_request(&Agent::new("agent-c"), customers_grant());
    bob_req.principal = "user:bob".into();
    let bobs = f.issuer.mint(&bob_req).unwrap().token;
    f.delegate(grant(&["read:/api/customers/*"], &[]));
    let usage_dir = tempfile::tempdir().unwrap();
    let usage = Arc::new(UsageStore::open(usage_dir.path()).unwrap());
    let v = s.on(&f.verifier).with_usage(usage);
    let r = s.restrict(
        RestrictionTarget::Principal(PRINCIPAL.into()),
        vec![RestrictionRule::parse_limit("read 3/1h").unwrap()],
    );
    // Every request at one instant: one window.
    let at = SystemTime::now();
    let req = read_customer(1).at(at);
    assert_allowed(&v.authorize(&f.tokens[0], &req));
    assert_allowed(&v.authorize(&second, &req));
    assert_allowed(&v.authorize(&f.tokens[1], &req));
    for token in [&f.tokens[0], &second, &f.tokens[1]] {
        let d = v.authorize(token, &req);
        let denial = assert_denied(
            &d,
            DenialKind::LimitExceeded,
            Some(0),
            &[&format!("live restriction {} on hop 0", r.id)],
        );
        assert!(denial.limit.is_some(), "{denial:?}");
    }
    // Another principal: untouched; another action: not counted.
    let d = v.authorize(&bobs, &req);
    assert_allowed(&d);
    assert!(d.restrictions.is_empty());
    let list = Request::new("list", "/api/customers/42")
        .param("rows", 1)
        .at(at);
    assert_allowed(&v.authorize(&f.tokens[0], &list));
    // Lifted: the limit goes with it.
    assert_eq!(s.lift(&r.id), RestrictionApplied::Lifted);
    assert_allowed(&v.authorize(&second, &req));
}

#[test]
fn a_restriction_limit_without_a_usage_meter_is_limit_unavailable() {
    let s = Store::new();
    let f = customers_family(0);
    let v = s.on(&f.verifier);
    s.restrict(
        family_of(f.token()),
        vec![RestrictionRule::parse_budget("read rows 100/1d").unwrap()],
    );
    assert_denied(
        &v.authorize(f.token(), &read_customer(1)),
        DenialKind::LimitUnavailable,
        None,
        &["no usage store", "fail closed"],
    );
    // Unlike a token's own limits (whose guard needs a meter for every
    // request, §18.2), a restriction's limit needs one only for the
    // requests it meters (§19.2): another action is decided as usual.
    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    assert_allowed(&v.authorize(f.token(), &list));
    // Another family: untouched.
    let other = customers_family(0);
    assert_allowed(&s.on(&other.verifier).authorize(other.token(), &list));
}

// ---- the verifier on a feed ---------------------------------------------------------------

/// Regression: the list a verifier following the feed decides with (a
/// `FeedList` over the store) did not pass the store's restrictions on —
/// `RevocationList::restrictions` defaulted to "none" — so `mandate
/// verifierd --nats`, the gateway and the issuer service with a feed
/// ignored every restriction, written locally or received from the feed.
/// The method has no default any more: a list says what it holds.
#[test]
fn a_verifier_following_the_feed_applies_the_restrictions_of_its_store() {
    let s = Store::new();
    let f = customers_family(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut keys = RevocationKeys::new();
    keys.insert(0, &biscuit_auth::KeyPair::new().public().to_string())
        .unwrap();
    let mut cfg = FeedConfig::new("nats://127.0.0.1:1");
    cfg.revocation_keys = keys;
    // No server: the list is stale, and this verifier allows anyway (the
    // insecure option), so only the restriction can deny.
    cfg.insecure_fail_open_when_stale = true;
    let (list, handle) = spawn_feed(s.store.clone(), cfg).unwrap();
    let v = f.verifier.clone().with_revocations(list);
    let req = read_customer(1);
    assert_allowed(&v.authorize(f.token(), &req));
    let r = s.restrict(family_of(f.token()), vec![deny("read:/**")]);
    assert_restricted(&v.authorize(f.token(), &req), 0, &r, "deny read:/**");
    assert_eq!(s.lift(&r.id), RestrictionApplied::Lifted);
    assert_allowed(&v.authorize(f.token(), &req));
    handle.stop();
}

/// Regression: the inline (async-thread) path left a cached token to be
/// decided there unless the token itself had approval rules or limits; a
/// live restriction asking an approval made that decision spend it (a
/// synced write, or a fleet bucket's round trip) on an executor thread.
/// Such a decision now goes to the blocking pool, as the token's own
/// approval rules do.
#[test]
fn a_restriction_asking_an_approval_is_never_decided_on_the_inline_path() {
    let s = Store::new();
    let f = customers_family(0);
    let v = with_replay(s.on(&f.verifier), s.dir.path()).with_cache(CacheOptions::default());
    let req = read_customer(1);
    let presented = Presented::default();
    assert_allowed(&v.authorize(f.token(), &req));
    assert!(v
        .try_authorize_inline(f.token(), &req, &presented)
        .is_some());
    let alice = biscuit_auth::KeyPair::new();
    let r = s.restrict(
        family_of(f.token()),
        vec![
            RestrictionRule::parse_require_approval(&format!("read by alice={}", alice.public()))
                .unwrap(),
        ],
    );
    assert!(
        v.try_authorize_inline(f.token(), &req, &presented)
            .is_none(),
        "decided inline with an approval to spend"
    );
    let d = v.authorize(f.token(), &req);
    assert_eq!(d.decision, Outcome::NeedsApproval, "{d:?}");
    // A deny rule alone needs no write: still inline.
    assert_eq!(s.lift(&r.id), RestrictionApplied::Lifted);
    let r = s.restrict(family_of(f.token()), vec![deny("read:/**")]);
    let inline = v.try_authorize_inline(f.token(), &req, &presented).unwrap();
    assert_restricted(&inline, 0, &r, "deny read:/**");
}
