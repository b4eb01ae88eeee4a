//! Live restrictions through the library (SPEC §19), on a real RocksDB
//! store: the seed scenario — a personal assistant reads and sends email and
//! schedules meetings; sending is taken away, scheduling then needs an
//! approval, a sibling delegation of the same principal is untouched, and a
//! lift gives sending back. Lifts are final; restrictions only narrow.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_attenuate::{approve, attach_approval, delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{
    Grant, Lift, Request, Restriction, RestrictionEntry, RestrictionRule, RestrictionTarget,
};
use mandate_verifier::replay::ReplayGuard;
use mandate_verifier::revocation::{RestrictionApplied, RevocationStore};
use mandate_verifier::{DenialKind, Outcome, RootKeys, Verifier};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

struct World {
    store: Arc<RevocationStore>,
    keys: RootKeys,
    verifier: Verifier,
    assistant: Vec<u8>,
    sibling: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let issuer = Issuer::new(KeyPair::new());
    let grant = Grant::parse(
        &["read,send:/api/email/**", "schedule:/api/calendar/**"],
        &[] as &[&str],
    )
    .unwrap();
    let mint = |agent: &str| {
        issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: agent.into(),
                agent_key: KeyPair::new().public(),
                grant: grant.clone(),
                ttl: Duration::from_secs(3600),
                purpose: Some("personal assistant".into()),
                max_depth: Some(2),
            })
            .unwrap()
            .token
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RevocationStore::open(dir.path().join("revocations")).unwrap());
    let (id, key) = issuer.keys().public_keys()[0];
    let keys = RootKeys::new().with(id, key);
    let verifier = Verifier::new(keys.clone())
        .with_revocations(store.clone())
        .with_replay_guard(Arc::new(
            ReplayGuard::open(dir.path().join("replay")).unwrap(),
        ));
    World {
        store,
        keys,
        verifier,
        assistant: mint("assistant"),
        sibling: mint("travel-agent"),
        _dir: dir,
    }
}

fn restriction(target: RestrictionTarget, rules: Vec<RestrictionRule>) -> Restriction {
    Restriction {
        id: uuid::Uuid::new_v4().to_string(),
        target,
        rules,
        restricted_at: OffsetDateTime::now_utc(),
        by: "security@acme".into(),
        reason: "sending is under review".into(),
        expires_at: None,
        note: None,
    }
}

fn root_id(verifier: &Verifier, token: &[u8]) -> String {
    let d = verifier.authorize(token, &Request::new("read", "/api/email/inbox"));
    d.chain.unwrap().hops[0].revocation_id.clone()
}

#[test]
fn the_seed_scenario_takes_sending_away_asks_approval_to_schedule_and_lifts() {
    let w = world();
    let read = Request::new("read", "/api/email/inbox");
    let send = Request::new("send", "/api/email/outbox");
    let schedule = Request::new("schedule", "/api/calendar/events");
    for r in [&read, &send, &schedule] {
        assert!(w.verifier.authorize(&w.assistant, r).is_allowed());
    }

    // Restrict `send` on the assistant's token (its root hop).
    let hop = RestrictionTarget::Block(root_id(&w.verifier, &w.assistant));
    let no_send = restriction(
        hop.clone(),
        vec![RestrictionRule::parse_deny("send:/api/email/**").unwrap()],
    );
    assert_eq!(
        w.store
            .restrict(&RestrictionEntry::Restrict(no_send.clone()))
            .unwrap(),
        RestrictionApplied::Added
    );
    assert!(w.verifier.authorize(&w.assistant, &read).is_allowed());
    let d = w.verifier.authorize(&w.assistant, &send);
    let denial = d.denial.clone().unwrap();
    assert_eq!(denial.kind, DenialKind::Restricted, "{d}");
    assert_eq!(denial.hop, Some(0));
    assert!(denial.reason.contains(&no_send.id), "{}", denial.reason);
    assert!(
        denial.reason.contains("security@acme") && denial.reason.contains("under review"),
        "names who and why: {}",
        denial.reason
    );
    let named = denial.restriction.unwrap();
    assert_eq!(named.rule, "deny send:/api/email/**");
    assert_eq!(named.by, "security@acme");
    assert_eq!(
        d.restrictions,
        vec![no_send.id.clone()],
        "the decision lists it"
    );
    // The sibling delegation of the same principal is untouched.
    let d = w.verifier.authorize(&w.sibling, &send);
    assert!(d.is_allowed(), "{d}");
    assert!(d.restrictions.is_empty());

    // Scheduling now needs an approval.
    let approver = KeyPair::new();
    let needs = restriction(
        hop,
        vec![RestrictionRule::parse_require_approval(&format!(
            "schedule by alice={}",
            approver.public()
        ))
        .unwrap()],
    );
    w.store
        .restrict(&RestrictionEntry::Restrict(needs.clone()))
        .unwrap();
    let d = w.verifier.authorize(&w.assistant, &schedule);
    assert_eq!(d.decision, Outcome::NeedsApproval, "{d}");
    let asked = d.approval.clone().unwrap();
    assert_eq!(asked.approvers[0].name, "alice");
    assert!(d.denial.unwrap().reason.contains(&needs.id));
    let block = approve(
        &asked.third_party_request,
        &schedule,
        SystemTime::now() + Duration::from_secs(600),
        &approver,
    )
    .unwrap();
    let approved = attach_approval(&w.assistant, &block).unwrap().token;
    let d = w.verifier.authorize(&approved, &schedule);
    assert!(d.is_allowed(), "{d}");
    let d = w.verifier.authorize(&approved, &schedule);
    assert_eq!(
        d.denial.unwrap().kind,
        DenialKind::ApprovalReplayed,
        "single use"
    );
    // An approval for another request does not count.
    let other = Request::new("schedule", "/api/calendar/other");
    let d = w.verifier.authorize(&approved, &other);
    assert_eq!(d.denial.unwrap().kind, DenialKind::ApprovalMismatch);

    // Lift: sending works again, and the lift is final.
    let lift = RestrictionEntry::Lift(Lift {
        id: no_send.id.clone(),
        lifted_at: OffsetDateTime::now_utc(),
        by: "security@acme".into(),
        reason: "review done".into(),
    });
    assert_eq!(w.store.restrict(&lift).unwrap(), RestrictionApplied::Lifted);
    assert!(w.verifier.authorize(&w.assistant, &send).is_allowed());
    assert_eq!(
        w.store
            .restrict(&RestrictionEntry::Restrict(no_send))
            .unwrap(),
        RestrictionApplied::Unchanged,
        "a restriction received again after its lift never applies again"
    );
    assert!(w.verifier.authorize(&w.assistant, &send).is_allowed());
    assert_eq!(
        w.store.restrict(&lift).unwrap(),
        RestrictionApplied::Unchanged
    );
}

#[test]
fn a_restriction_on_a_hop_binds_its_subtree_and_not_its_parent() {
    let w = world();
    let sub = KeyPair::new();
    // A token minted to a known key so that it can delegate; restrict the
    // delegated hop.
    let issuer = Issuer::new(KeyPair::new());
    let agent = KeyPair::new();
    let root = issuer
        .mint(&MintRequest {
            principal: "user:bob".into(),
            agent: "assistant".into(),
            agent_key: agent.public(),
            grant: Grant::parse(&["read,send:/api/email/**"], &[] as &[&str]).unwrap(),
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: Some(3),
        })
        .unwrap();
    let child = delegate(
        &root.token,
        &agent,
        &Delegation {
            agent: "mailer".into(),
            agent_key: sub.public(),
            grant: Grant::parse(&["read,send:/api/email/**"], &[] as &[&str]).unwrap(),
            ttl: None,
            purpose: Some("send the newsletter".into()),
        },
    )
    .unwrap();
    let (id, key) = issuer.keys().public_keys()[0];
    let verifier = Verifier::new(RootKeys::new().with(id, key)).with_revocations(w.store.clone());
    let send = Request::new("send", "/api/email/outbox");
    let hop1 = verifier.authorize(&child.token, &send).chain.unwrap().hops[1]
        .revocation_id
        .clone();
    w.store
        .restrict(&RestrictionEntry::Restrict(restriction(
            RestrictionTarget::Block(hop1),
            vec![RestrictionRule::parse_deny("send:/**").unwrap()],
        )))
        .unwrap();
    let d = verifier.authorize(&child.token, &send);
    let denial = d.denial.unwrap();
    assert_eq!(denial.kind, DenialKind::Restricted);
    assert_eq!(denial.hop, Some(1), "reached through hop 1");
    assert_eq!(denial.agent.as_deref(), Some("mailer"));
    assert!(
        verifier.authorize(&root.token, &send).is_allowed(),
        "the parent keeps working"
    );
    // By agent key: every chain through that key.
    w.store
        .restrict(&RestrictionEntry::Restrict(restriction(
            RestrictionTarget::Agent(hex::encode(agent.public().to_bytes())),
            vec![RestrictionRule::parse_only("read:/** where folder=inbox").unwrap()],
        )))
        .unwrap();
    let d = verifier.authorize(&root.token, &Request::new("read", "/api/email/x"));
    assert_eq!(d.denial.unwrap().kind, DenialKind::Restricted);
    let ok = Request::new("read", "/api/email/x").param("folder", "inbox");
    assert!(verifier.authorize(&root.token, &ok).is_allowed());
    // By principal.
    w.store
        .restrict(&RestrictionEntry::Restrict(restriction(
            RestrictionTarget::Principal("user:bob".into()),
            vec![RestrictionRule::parse_deny("read:/api/email/**").unwrap()],
        )))
        .unwrap();
    let d = verifier.authorize(&root.token, &ok);
    let denial = d.denial.unwrap();
    assert_eq!(denial.kind, DenialKind::Restricted);
    assert!(denial.reason.contains("principal"), "{}", denial.reason);
}

#[test]
fn restriction_limits_are_shared_by_everything_the_restriction_reaches_and_need_a_meter() {
    let w = world();
    let send = Request::new("send", "/api/email/outbox");
    w.store
        .restrict(&RestrictionEntry::Restrict(restriction(
            RestrictionTarget::Principal("user:alice".into()),
            vec![RestrictionRule::parse_limit("send 2/1h").unwrap()],
        )))
        .unwrap();
    // No usage store: fail closed.
    let d = w.verifier.authorize(&w.assistant, &send);
    assert_eq!(d.denial.unwrap().kind, DenialKind::LimitUnavailable);
    let dir = tempfile::tempdir().unwrap();
    let usage = Arc::new(mandate_verifier::usage::UsageStore::open(dir.path()).unwrap());
    let verifier = Verifier::new(w.keys.clone())
        .with_revocations(w.store.clone())
        .with_usage(usage);
    assert!(verifier.authorize(&w.assistant, &send).is_allowed());
    assert!(verifier.authorize(&w.sibling, &send).is_allowed());
    let d = verifier.authorize(&w.assistant, &send);
    let denial = d.denial.unwrap();
    assert_eq!(
        denial.kind,
        DenialKind::LimitExceeded,
        "shared: 2 across both"
    );
    assert!(
        denial.reason.contains("live restriction"),
        "{}",
        denial.reason
    );
}
