//! Human approval and holder binding through the library (SPEC §14, §15).
//! The seed scenario: a payments agent may pay up to 100 freely, needs an
//! approval from a finance approver above 100, and is denied above 1000; the
//! approval is signed, attached, used once and its replay denied. Every
//! reject case has its own reason: another request, expired, another key,
//! replayed; an approval never widens. Proofs of possession: missing, stale,
//! replayed, for another body or token, signed by a key other than the final
//! holder's.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_attenuate::{approve, attach_approval, delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Audience, Grant, HolderProof, ProofSubject, Request};
use mandate_verifier::{
    replay::ReplayGuard, Decision, DenialKind, Outcome, Presented, RootKeys, Verifier,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

struct Payments {
    issuer: Issuer,
    agent: KeyPair,
    finance: KeyPair,
    verifier: Verifier,
    token: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Payments {
    fn new(holder_bound: bool) -> Payments {
        let (issuer, agent, finance) =
            (Issuer::new(KeyPair::new()), KeyPair::new(), KeyPair::new());
        let mut grant = Grant::parse(&["pay:/api/payments"], &["amount<=1000"])
            .unwrap()
            .with_approval(&format!(
                "pay when amount>100 by finance={}",
                finance.public()
            ))
            .unwrap();
        grant.holder_bound = holder_bound;
        let token = issuer
            .mint(&MintRequest {
                principal: "org:acme".into(),
                agent: "payments-agent".into(),
                agent_key: agent.public(),
                grant,
                ttl: Duration::from_secs(3600),
                purpose: Some("pay suppliers".into()),
                max_depth: Some(2),
            })
            .unwrap()
            .token;
        let dir = tempfile::tempdir().unwrap();
        let (id, key) = issuer.keys().public_keys()[0];
        let verifier = Verifier::new(RootKeys::new().with(id, key)).with_replay_guard(Arc::new(
            ReplayGuard::open(dir.path().join("replay")).unwrap(),
        ));
        Payments {
            issuer,
            agent,
            finance,
            verifier,
            token,
            _dir: dir,
        }
    }

    fn pay(amount: i64) -> Request {
        Request::new("pay", "/api/payments").param("amount", amount)
    }

    fn decide(&self, token: &[u8], amount: i64) -> Decision {
        self.verifier.authorize(token, &Payments::pay(amount))
    }

    /// What the approver signs for `request`, from a needs-approval decision.
    fn approval_for(
        &self,
        token: &[u8],
        request: &Request,
        approver: &KeyPair,
        valid: Duration,
    ) -> Vec<u8> {
        let asked = self.verifier.authorize(token, request);
        assert!(asked.needs_approval(), "{asked}");
        let needed = asked.approval.unwrap();
        let block = approve(
            &needed.third_party_request,
            request,
            SystemTime::now() + valid,
            approver,
        )
        .unwrap();
        attach_approval(token, &block).unwrap().token
    }
}

fn kind(d: &Decision) -> DenialKind {
    d.denial.as_ref().unwrap().kind
}

#[test]
fn the_seed_scenario_pay_approve_use_once() {
    let p = Payments::new(false);
    // Up to 100: allowed without approval.
    assert!(p.decide(&p.token, 100).is_allowed());
    // Above 1000: denied, approval or not.
    let d = p.decide(&p.token, 1500);
    assert_eq!(d.decision, Outcome::Deny);
    assert_eq!(kind(&d), DenialKind::NotAllowed);
    assert!(d
        .denial
        .unwrap()
        .reason
        .contains("amount=1500 violates amount<=1000"));

    // 150: needs approval, says from whom and what exactly.
    let d = p.decide(&p.token, 150);
    assert_eq!(d.decision, Outcome::NeedsApproval, "{d}");
    assert!(!d.is_allowed());
    assert_eq!(kind(&d), DenialKind::NeedsApproval);
    let needed = d.approval.clone().unwrap();
    assert_eq!(needed.approvers.len(), 1);
    assert_eq!(needed.approvers[0].name, "finance");
    assert_eq!(needed.approvers[0].key, p.finance.public().to_string());
    assert_eq!(
        needed.digest,
        hex::encode(Payments::pay(150).approval_digest())
    );
    assert!(d
        .denial
        .as_ref()
        .unwrap()
        .reason
        .contains("needs an approval by finance"));
    // The chain shows the rule.
    let alt = &d.chain.as_ref().unwrap().hops[0].grant.alternatives[0];
    assert_eq!(alt.approval.as_ref().unwrap().approver, "finance");
    assert_eq!(
        alt.to_string(),
        "pay:/api/payments where amount<=1000, approval by finance when amount>100"
    );

    // Finance approves exactly that request; the agent attaches it.
    let approved = p.approval_for(
        &p.token,
        &Payments::pay(150),
        &p.finance,
        Duration::from_secs(300),
    );
    let chain = mandate_attenuate::read_chain(&approved).unwrap();
    assert_eq!(chain.approvals.len(), 1);
    assert_eq!(
        chain.approvals[0].approver_key,
        p.finance.public().to_string()
    );
    let d = p.decide(&approved, 150);
    assert!(d.is_allowed(), "{d}");
    // Once.
    let d = p.decide(&approved, 150);
    assert_eq!(kind(&d), DenialKind::ApprovalReplayed, "{d}");
    assert!(d.denial.unwrap().reason.contains("already used"));
    // Small payments with the same token still need none.
    assert!(p.decide(&approved, 20).is_allowed());
}

#[test]
fn an_approval_for_other_parameters_an_expired_one_or_another_signer_is_denied_with_its_reason() {
    let p = Payments::new(false);
    let approved = p.approval_for(
        &p.token,
        &Payments::pay(150),
        &p.finance,
        Duration::from_secs(300),
    );
    let d = p.decide(&approved, 160);
    assert_eq!(kind(&d), DenialKind::ApprovalMismatch, "{d}");
    assert!(d.denial.unwrap().reason.contains("is for another request"));

    let expired = p.approval_for(&p.token, &Payments::pay(150), &p.finance, Duration::ZERO);
    let later = Payments::pay(150).at(SystemTime::now() + Duration::from_secs(5));
    let d = p.verifier.authorize(&expired, &later);
    assert_eq!(kind(&d), DenialKind::ApprovalExpired, "{d}");
    assert!(d.denial.unwrap().reason.contains("expired"));

    let mallory = KeyPair::new();
    let forged = p.approval_for(
        &p.token,
        &Payments::pay(150),
        &mallory,
        Duration::from_secs(300),
    );
    let d = p.decide(&forged, 150);
    assert_eq!(kind(&d), DenialKind::ApprovalWrongApprover, "{d}");
    let reason = d.denial.unwrap().reason;
    assert!(
        reason.contains(&mallory.public().to_string()) && reason.contains("finance"),
        "{reason}"
    );
}

#[test]
fn an_approval_never_widens_the_grant() {
    let p = Payments::new(false);
    // The approver signs a payment above the grant's bound: still denied.
    let biscuit = biscuit_auth::UnverifiedBiscuit::from(&p.token).unwrap();
    let tpr = biscuit
        .third_party_request()
        .unwrap()
        .serialize_base64()
        .unwrap();
    let block = approve(
        &tpr,
        &Payments::pay(5000),
        SystemTime::now() + Duration::from_secs(60),
        &p.finance,
    )
    .unwrap();
    let widened = attach_approval(&p.token, &block).unwrap().token;
    let d = p.decide(&widened, 5000);
    assert_eq!(kind(&d), DenialKind::NotAllowed, "{d}");
    // Nor another action.
    let d = p.verifier.authorize(
        &widened,
        &Request::new("refund", "/api/payments").param("amount", 5000),
    );
    assert_eq!(kind(&d), DenialKind::NotAllowed);
}

#[test]
fn a_verifier_without_a_replay_record_refuses_approvals() {
    let p = Payments::new(false);
    let approved = p.approval_for(
        &p.token,
        &Payments::pay(150),
        &p.finance,
        Duration::from_secs(300),
    );
    let (id, key) = p.issuer.keys().public_keys()[0];
    let bare = Verifier::new(RootKeys::new().with(id, key));
    let d = bare.authorize(&approved, &Payments::pay(150));
    assert_eq!(kind(&d), DenialKind::ReplayRecordUnavailable, "{d}");
}

#[test]
fn an_approval_block_before_a_hop_breaks_the_chain() {
    let p = Payments::new(false);
    let approved = p.approval_for(
        &p.token,
        &Payments::pay(150),
        &p.finance,
        Duration::from_secs(300),
    );
    let next = KeyPair::new();
    let err = delegate(
        &approved,
        &p.agent,
        &Delegation {
            agent: "sub".into(),
            agent_key: next.public(),
            grant: Grant::default(),
            ttl: None,
            purpose: None,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("approval blocks come last"),
        "{err}"
    );
}

/// The audience the test verifier serves.
fn here() -> Audience {
    Audience::parse("https://pay.example.com").unwrap()
}

/// A proof by `key` for `POST https://pay.example.com/api/payments`,
/// presented to a verifier serving that audience.
fn presented(token: &[u8], key: &KeyPair, body: &[u8], at: SystemTime) -> Presented {
    presented_for(token, key, body, at, &here(), "/api/payments")
}

fn presented_for(
    token: &[u8],
    key: &KeyPair,
    body: &[u8],
    at: SystemTime,
    audience: &Audience,
    target: &str,
) -> Presented {
    let proof = HolderProof::sign(
        key,
        &ProofSubject {
            method: "POST",
            audience,
            target,
            body_digest: ProofSubject::digest(body),
            token,
        },
        at,
    )
    .unwrap();
    Presented::new("POST", body, Some(proof)).at(Some(here()), "/api/payments")
}

#[test]
fn a_proof_is_bound_to_its_audience_and_target() {
    let p = Payments::new(true);
    let req = Payments::pay(50);
    let body = br#"{"amount": 50}"#;
    let now = SystemTime::now();
    // Made for another server: refused here, though signed by the holder.
    let elsewhere = Audience::parse("https://other.example.com").unwrap();
    let d = p.verifier.authorize_presented(
        &p.token,
        &req,
        &presented_for(&p.token, &p.agent, body, now, &elsewhere, "/api/payments"),
    );
    assert_eq!(kind(&d), DenialKind::ProofInvalid);
    let why = d.denial.unwrap().reason;
    assert!(
        why.contains("not signed by the final holder") && why.contains("https://pay.example.com"),
        "{why}"
    );
    // Made for another target (the same path with a query): refused.
    let d = p.verifier.authorize_presented(
        &p.token,
        &req,
        &presented_for(&p.token, &p.agent, body, now, &here(), "/api/payments?x=1"),
    );
    assert_eq!(kind(&d), DenialKind::ProofInvalid);
    // The same audience written with its default port: accepted.
    let explicit = Audience::parse("HTTPS://Pay.Example.com:443/").unwrap();
    let d = p.verifier.authorize_presented(
        &p.token,
        &req,
        &presented_for(&p.token, &p.agent, body, now, &explicit, "/api/payments"),
    );
    assert!(d.is_allowed(), "{d}");
    // A verifier that does not know its own audience refuses every proof,
    // saying why.
    let mut unplaced = presented(&p.token, &p.agent, body, now);
    unplaced.audience = None;
    let d = p.verifier.authorize_presented(&p.token, &req, &unplaced);
    assert_eq!(kind(&d), DenialKind::ProofInvalid);
    let why = d.denial.unwrap().reason;
    assert!(why.contains("no configured audience"), "{why}");
}

#[test]
fn holder_binding_accepts_a_fresh_proof_by_the_final_holder_only() {
    let p = Payments::new(true);
    let req = Payments::pay(50);
    let body = br#"{"amount": 50}"#;
    let now = SystemTime::now();

    let d = p.verifier.authorize(&p.token, &req);
    assert_eq!(kind(&d), DenialKind::ProofMissing, "{d}");
    assert!(d.denial.unwrap().reason.contains("payments-agent"));

    let ok = presented(&p.token, &p.agent, body, now);
    assert!(p
        .verifier
        .authorize_presented(&p.token, &req, &ok)
        .is_allowed());
    // The same proof again: replayed.
    let d = p.verifier.authorize_presented(&p.token, &req, &ok);
    assert_eq!(kind(&d), DenialKind::ProofInvalid);
    assert!(d.denial.unwrap().reason.contains("replayed"));
    // Stale.
    let old = presented(&p.token, &p.agent, body, now - Duration::from_secs(600));
    let d = p.verifier.authorize_presented(&p.token, &req, &old);
    assert!(d.denial.unwrap().reason.contains("stale"));
    // Signed over another body than the one sent.
    let mut other_body = presented(&p.token, &p.agent, b"{}", now);
    other_body.body_digest = ProofSubject::digest(body);
    let d = p.verifier.authorize_presented(&p.token, &req, &other_body);
    assert!(d
        .denial
        .unwrap()
        .reason
        .contains("not signed by the final holder"));
    // A thief's key.
    let thief = presented(&p.token, &KeyPair::new(), body, now);
    let d = p.verifier.authorize_presented(&p.token, &req, &thief);
    assert_eq!(kind(&d), DenialKind::ProofInvalid);

    // After a delegation the final holder is the sub-agent: the delegator's
    // own proof no longer counts.
    let sub = KeyPair::new();
    let child = delegate(
        &p.token,
        &p.agent,
        &Delegation {
            agent: "sub-agent".into(),
            agent_key: sub.public(),
            grant: Grant::default(),
            ttl: None,
            purpose: None,
        },
    )
    .unwrap()
    .token;
    let by_parent = presented(&child, &p.agent, body, now);
    let d = p.verifier.authorize_presented(&child, &req, &by_parent);
    assert!(
        d.denial.unwrap().reason.contains("sub-agent"),
        "the reason names the holder"
    );
    let by_sub = presented(&child, &sub, body, now);
    assert!(p
        .verifier
        .authorize_presented(&child, &req, &by_sub)
        .is_allowed());
    // A proof made for the parent token does not fit the child token.
    let for_parent = presented(&p.token, &sub, body, now);
    assert!(!p
        .verifier
        .authorize_presented(&child, &req, &for_parent)
        .is_allowed());
}

#[test]
fn approval_and_holder_binding_together_with_the_cache() {
    let p = Payments::new(true);
    let cached = p
        .verifier
        .clone()
        .with_cache(mandate_verifier::CacheOptions::default());
    let req = Payments::pay(150);
    let body = br#"{"amount": 150}"#;
    let now = SystemTime::now();
    let d = cached.authorize_presented(&p.token, &req, &presented(&p.token, &p.agent, body, now));
    assert!(d.needs_approval(), "{d}");
    let tpr = d.approval.unwrap().third_party_request;
    let block = approve(&tpr, &req, now + Duration::from_secs(60), &p.finance).unwrap();
    let approved = attach_approval(&p.token, &block).unwrap().token;
    let d = cached.authorize_presented(&approved, &req, &presented(&approved, &p.agent, body, now));
    assert!(d.is_allowed(), "{d}");
    let d = cached.authorize_presented(&approved, &req, &presented(&approved, &p.agent, body, now));
    assert_eq!(kind(&d), DenialKind::ApprovalReplayed);
}
