//! Single use of approvals (SPEC §14.4), attacked as an approved agent
//! would: it holds the token before attachment and the signed approval
//! block, and wants one human decision to pay more than once.
//!
//! Threat-model answers (THREATS.md):
//! 1. Positions: the approved agent (re-attaches the same approval, or sends
//!    requests whose parameters the rule's conditions cannot read); an
//!    operator revoking an approver key.
//! 2. The decision that allowed the request (Datalog) is the one that says
//!    which approvals were spent; a spent approval is identified by the
//!    approver's signature, which the agent cannot change.
//! 3. Second use at the same verifier: `approval_replayed`. (Across
//!    verifiers: per verifier until the fleet issue lands, SPEC §11.)
//! 6. Replay record unavailable: denied (`replay_record_unavailable`).
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::{Biscuit, KeyPair};
use mandate_attenuate::{approve, attach_approval};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use mandate_verifier::{
    replay::ReplayGuard,
    revocation::{Revocation, RevocationStore, Target},
    Decision, DenialKind, Outcome, RootKeys, Verifier,
};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

struct Setup {
    issuer: Issuer,
    finance: KeyPair,
    token: Vec<u8>,
    dir: tempfile::TempDir,
}

impl Setup {
    /// A payments token: `allow` (with `where_`), and the rule `rule` by
    /// the finance key.
    fn new(allow: &str, where_: &[&str], rule: &str) -> Setup {
        let (issuer, agent, finance) =
            (Issuer::new(KeyPair::new()), KeyPair::new(), KeyPair::new());
        let grant = Grant::parse(&[allow], where_)
            .unwrap()
            .with_approval(&format!("{rule} by finance={}", finance.public()))
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
        Setup {
            issuer,
            finance,
            token,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn keys(&self) -> RootKeys {
        let (id, key) = self.issuer.keys().public_keys()[0];
        RootKeys::new().with(id, key)
    }

    /// A verifier with its own replay record (a fresh one per `name`).
    fn verifier(&self, name: &str) -> Verifier {
        Verifier::new(self.keys()).with_replay_guard(Arc::new(
            ReplayGuard::open(self.dir.path().join(name)).unwrap(),
        ))
    }

    /// The finance approver's signed block for `request`, made from the
    /// token's own third-party request (not from a verifier's answer, so it
    /// works whatever the verifier thinks the request needs).
    fn approval_block(&self, request: &Request) -> String {
        let (_, root) = self.issuer.keys().public_keys()[0];
        let tpr = Biscuit::from(&self.token, root)
            .unwrap()
            .third_party_request()
            .unwrap()
            .serialize_base64()
            .unwrap();
        approve(
            &tpr,
            request,
            SystemTime::now() + Duration::from_secs(300),
            &self.finance,
        )
        .unwrap()
    }
}

fn pay(amount: Option<i64>) -> Request {
    let r = Request::new("pay", "/api/payments");
    match amount {
        Some(a) => r.param("amount", a),
        None => r,
    }
}

fn kind(d: &Decision) -> Option<DenialKind> {
    d.denial.as_ref().map(|x| x.kind)
}

#[test]
fn re_attaching_a_used_approval_does_not_pay_twice() {
    // Regression (issue 12): single use was keyed by the approval block's
    // revocation id, which changes every time the same signed approval is
    // appended to the token again; each copy was accepted.
    let s = Setup::new(
        "pay:/api/payments",
        &["amount<=1000"],
        "pay when amount>100",
    );
    let v = s.verifier("replay");
    let request = pay(Some(150));
    assert_eq!(
        v.authorize(&s.token, &request).decision,
        Outcome::NeedsApproval
    );
    let block = s.approval_block(&request);
    let first = attach_approval(&s.token, &block).unwrap().token;
    let again = attach_approval(&s.token, &block).unwrap().token;
    assert_ne!(first, again, "the copies differ (new block ids)");
    let allowed = v.authorize(&first, &request);
    assert!(allowed.is_allowed(), "{allowed}");
    let replayed = v.authorize(&again, &request);
    assert_eq!(
        kind(&replayed),
        Some(DenialKind::ApprovalReplayed),
        "{replayed}"
    );
    assert!(replayed.denial.unwrap().reason.contains("already used"));
    // And the first copy, of course.
    assert_eq!(
        kind(&v.authorize(&first, &request)),
        Some(DenialKind::ApprovalReplayed)
    );
}

#[test]
fn an_approval_for_a_request_without_the_rules_parameter_is_spent() {
    // Regression (issue 12): `pay when amount>100` on an alternative that
    // does not require `amount`: a request without it needs the approval by
    // Datalog (no exemption query matches), but the verifier's Rust reading
    // of the rule said no approval applied, so the approval was never
    // recorded as used and paid any number of times.
    let s = Setup::new("pay:/api/payments", &[], "pay when amount>100");
    let v = s.verifier("replay");
    let request = pay(None);
    let asked = v.authorize(&s.token, &request);
    assert_eq!(asked.decision, Outcome::NeedsApproval, "{asked}");
    let approved = attach_approval(&s.token, &s.approval_block(&request))
        .unwrap()
        .token;
    assert!(v.authorize(&approved, &request).is_allowed());
    let again = v.authorize(&approved, &request);
    assert_eq!(kind(&again), Some(DenialKind::ApprovalReplayed), "{again}");
}

#[test]
fn an_attached_approval_the_request_did_not_need_is_not_spent() {
    // The spent set comes from Datalog: a request the token allows without
    // the approval (amount 50) spends nothing, even with an approval for
    // exactly that request attached, and can be repeated.
    let s = Setup::new(
        "pay:/api/payments",
        &["amount<=1000"],
        "pay when amount>100",
    );
    let v = s.verifier("replay");
    let request = pay(Some(50));
    let approved = attach_approval(&s.token, &s.approval_block(&request))
        .unwrap()
        .token;
    for _ in 0..3 {
        let d = v.authorize(&approved, &request);
        assert!(d.is_allowed(), "{d}");
    }
}

#[test]
fn a_revoked_approver_key_stops_the_approvals_it_signed() {
    // Regression (issue 12): revoking a key (`--agent-key`) did not stop
    // approvals it had signed; approval signer keys are revocation targets.
    let s = Setup::new(
        "pay:/api/payments",
        &["amount<=1000"],
        "pay when amount>100",
    );
    let store = RevocationStore::open(s.dir.path().join("revocations")).unwrap();
    store
        .revoke(&[Revocation {
            target: Target::Agent(s.finance.public().to_bytes().to_vec()),
            revoked_at: OffsetDateTime::now_utc(),
            reason: "finance key leaked".into(),
            by: "security".into(),
            expires_at: None,
            note: None,
        }])
        .unwrap();
    let v = s.verifier("replay").with_revocations(store);
    let request = pay(Some(150));
    let approved = attach_approval(&s.token, &s.approval_block(&request))
        .unwrap()
        .token;
    let d = v.authorize(&approved, &request);
    assert_eq!(kind(&d), Some(DenialKind::Revoked), "{d}");
    let reason = d.denial.unwrap().reason;
    assert!(reason.contains("approver key"), "{reason}");
    assert!(reason.contains("finance key leaked"), "{reason}");
    // The token without the approval is not affected by it.
    assert!(v.authorize(&s.token, &pay(Some(50))).is_allowed());
}

/// A parameter value for the property test: absent, an integer, or a
/// string (mistyped for an integer bound).
fn amount_value() -> impl Strategy<Value = Option<Result<i64, String>>> {
    prop_oneof![
        Just(None),
        (-5i64..400).prop_map(|n| Some(Ok(n))),
        "[a-z0-9]{1,4}".prop_map(|s| Some(Err(s))),
    ]
}

fn cmp() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("<="), Just("<"), Just(">="), Just(">")]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random rules and requests (parameters missing, integers, or
    /// strings), whenever a request is allowed only thanks to its attached
    /// approval (the same request without it is not allowed), a second use
    /// is refused as replayed; and a request allowed without the approval
    /// never spends it.
    #[test]
    fn every_approval_datalog_relied_on_is_spent(
        bound in -2i64..300,
        op in cmp(),
        grant_bound in prop::option::of(0i64..400),
        amount in amount_value(),
        other in prop::option::of(0i64..10),
    ) {
        let where_: Vec<String> = grant_bound.iter().map(|b| format!("amount<={b}")).collect();
        let where_: Vec<&str> = where_.iter().map(String::as_str).collect();
        let s = Setup::new("pay:/api/payments", &where_, &format!("pay when amount{op}{bound}"));
        let mut request = Request::new("pay", "/api/payments");
        match &amount {
            None => {}
            Some(Ok(n)) => request = request.param("amount", *n),
            Some(Err(t)) => request = request.param("amount", t.as_str()),
        }
        if let Some(o) = other {
            request = request.param("memo", o);
        }
        let plain = s.verifier("plain").authorize(&s.token, &request);
        let approved = attach_approval(&s.token, &s.approval_block(&request)).unwrap().token;
        let v = s.verifier("replay");
        let first = v.authorize(&approved, &request);
        let second = v.authorize(&approved, &request);
        if first.is_allowed() && !plain.is_allowed() {
            prop_assert_eq!(kind(&second), Some(DenialKind::ApprovalReplayed), "{}", second);
        }
        if plain.is_allowed() {
            prop_assert!(first.is_allowed(), "{}", first);
            prop_assert!(second.is_allowed(), "{}", second);
        }
        if !plain.is_allowed() && plain.decision == Outcome::NeedsApproval {
            // What the verifier says needs an approval is unlocked by one.
            prop_assert!(first.is_allowed(), "{} then {}", plain, first);
        }
    }
}
