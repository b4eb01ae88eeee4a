//! The token-only check (`Check::Token`, SPEC §7.4): protocol housekeeping
//! needs a valid, unexpired, unrevoked token (and the holder's proof when
//! the chain requires one) but no grant for its action. Allowed without a
//! grant; denied, with kind and reason, for a revoked block, family or agent
//! key, an expired hop or first-party block (named), a bad signature, an
//! unknown root key, a missing proof; it never spends an approval; and the
//! inline path (`try_decide_inline`) decides exactly as `decide_presented`.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_attenuate::{approve, attach_approval, delegate, narrow, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Audience, Grant, HolderProof, ProofSubject, Request};
use mandate_verifier::audit::AuditEvent;
use mandate_verifier::replay::ReplayGuard;
use mandate_verifier::revocation::{Revocation, RevocationStore, Target};
use mandate_verifier::{CacheOptions, Check, Decision, DenialKind, Presented, RootKeys, Verifier};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

struct World {
    issuer: Issuer,
    support: KeyPair,
    sub: KeyPair,
    finance: KeyPair,
    store: Arc<RevocationStore>,
    guard: Arc<ReplayGuard>,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        World {
            issuer: Issuer::new(KeyPair::new()),
            support: KeyPair::new(),
            sub: KeyPair::new(),
            finance: KeyPair::new(),
            store: Arc::new(RevocationStore::open(dir.path().join("revocations")).unwrap()),
            guard: Arc::new(ReplayGuard::open(dir.path().join("replay")).unwrap()),
            _dir: dir,
        }
    }

    fn keys(&self) -> RootKeys {
        let (id, key) = self.issuer.keys().public_keys()[0];
        RootKeys::new().with(id, key)
    }

    /// Revocations, a replay guard and a verification cache.
    fn verifier(&self) -> Verifier {
        Verifier::new(self.keys())
            .with_revocations(self.store.clone())
            .with_replay_guard(self.guard.clone())
            .with_cache(CacheOptions::default())
    }

    fn mint(&self, grant: Grant) -> Vec<u8> {
        self.issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "support-agent".into(),
                agent_key: self.support.public(),
                grant,
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
            .token
    }

    /// Read customers only: no grant for any MCP housekeeping action.
    fn root(&self) -> Vec<u8> {
        self.mint(Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap())
    }

    /// Pay up to 1000; above 100 with an approval by finance.
    fn payer(&self) -> Vec<u8> {
        self.mint(
            Grant::parse(&["pay:/api/payments"], &["amount<=1000"])
                .unwrap()
                .with_approval(&format!(
                    "pay when amount>100 by finance={}",
                    self.finance.public()
                ))
                .unwrap(),
        )
    }

    /// Hop 1 to the sub-agent, living `ttl`.
    fn hop(&self, token: &[u8], ttl: Duration) -> Vec<u8> {
        delegate(
            token,
            &self.support,
            &Delegation {
                agent: "sub-agent".into(),
                agent_key: self.sub.public(),
                grant: Grant::default(),
                ttl: Some(ttl),
                purpose: None,
            },
        )
        .unwrap()
        .token
    }
}

fn ping() -> Request {
    Request::new("ping", "/mcp")
}

fn token_check(v: &Verifier, token: &[u8], request: &Request) -> Decision {
    v.decide_presented(token, request, &Presented::default(), Check::Token)
}

fn grant_check(v: &Verifier, token: &[u8], request: &Request) -> Decision {
    v.decide_presented(token, request, &Presented::default(), Check::Grant)
}

fn entry(target: Target) -> Revocation {
    Revocation {
        target,
        revoked_at: OffsetDateTime::now_utc(),
        reason: "laptop stolen".into(),
        by: "security-team".into(),
        expires_at: None,
        note: None,
    }
}

fn block_id(token: &[u8], block: usize) -> Vec<u8> {
    biscuit_auth::UnverifiedBiscuit::from(token)
        .unwrap()
        .revocation_identifiers()[block]
        .clone()
}

/// The denial's kind and reason, asserting the decision is a denial.
fn denied(d: &Decision) -> (DenialKind, String) {
    assert!(!d.is_allowed(), "expected a denial: {d:?}");
    let denial = d.denial.as_ref().expect("a denial says why");
    (denial.kind, denial.reason.clone())
}

#[test]
fn a_valid_token_passes_the_token_check_without_any_grant_for_the_action() {
    let w = World::new();
    let v = w.verifier();
    let root = w.root();
    let hop1 = w.hop(&root, Duration::from_secs(600));
    for token in [&root, &hop1] {
        // The grant check denies: nothing grants `ping` on /mcp.
        let (kind, reason) = denied(&grant_check(&v, token, &ping()));
        assert_eq!(kind, DenialKind::NotAllowed, "{reason}");
        assert!(reason.contains("\"ping\""), "{reason}");
        // The token check allows, and says who is asking.
        let request = ping();
        let d = token_check(&v, token, &request);
        assert!(d.is_allowed(), "{d:?}");
        assert!(d.denial.is_none());
        assert_eq!(d.request, request);
        let chain = d.chain.as_ref().expect("an allow carries the chain");
        assert_eq!(chain.principal, "user:alice");
        assert_eq!(
            chain.hops.len(),
            if *token == root { 1 } else { 2 },
            "the chain of the token presented"
        );
    }
    // Without a revocation list or cache, the same.
    let bare = Verifier::new(w.keys());
    assert!(token_check(&bare, &root, &ping()).is_allowed());
}

#[test]
fn a_malformed_request_is_refused_by_the_token_check_too() {
    let w = World::new();
    let v = w.verifier();
    let root = w.root();
    // Cached by a first decision.
    assert!(token_check(&v, &root, &ping()).is_allowed());
    for bad in [
        Request::new("not an action", "/mcp"),
        Request::new("ping", "/mcp/../admin"),
        Request::new("ping", "/mcp").param("time", 1),
    ] {
        let (kind, reason) = denied(&token_check(&v, &root, &bad));
        assert_eq!(kind, DenialKind::InvalidRequest, "{bad:?}: {reason}");
    }
    // Inline (the token cached by the decisions above), the same.
    let d = v
        .try_decide_inline(
            &root,
            &Request::new("not an action", "/mcp"),
            &Presented::default(),
            Check::Token,
        )
        .expect("a cached token is decided inline");
    assert_eq!(denied(&d).0, DenialKind::InvalidRequest);
}

#[test]
fn a_revoked_block_denies_the_token_check_naming_the_hop() {
    let w = World::new();
    let v = w.verifier();
    let root = w.root();
    let hop1 = w.hop(&root, Duration::from_secs(600));
    assert!(token_check(&v, &hop1, &ping()).is_allowed());
    w.store
        .revoke(&[entry(Target::Block(block_id(&hop1, 1)))])
        .unwrap();
    let d = token_check(&v, &hop1, &ping());
    let (kind, reason) = denied(&d);
    assert_eq!(kind, DenialKind::Revoked, "{reason}");
    let denial = d.denial.as_ref().unwrap();
    assert_eq!(denial.hop, Some(1));
    assert_eq!(denial.agent.as_deref(), Some("sub-agent"));
    assert!(reason.contains("hop 1"), "{reason}");
    assert!(reason.contains("laptop stolen"), "{reason}");
    assert!(reason.contains("security-team"), "{reason}");
    // The parent is not revoked.
    assert!(token_check(&v, &root, &ping()).is_allowed());
}

#[test]
fn a_revoked_family_denies_the_token_check_of_every_token_in_it() {
    let w = World::new();
    let v = w.verifier();
    let root = w.root();
    let hop1 = w.hop(&root, Duration::from_secs(600));
    let other = w.root();
    let family = mandate_attenuate::read_chain(&root).unwrap().token_id;
    w.store.revoke(&[entry(Target::Token(family))]).unwrap();
    for token in [&root, &hop1] {
        let (kind, reason) = denied(&token_check(&v, token, &ping()));
        assert_eq!(kind, DenialKind::Revoked, "{reason}");
        assert!(reason.contains("token family"), "{reason}");
        assert!(reason.contains("laptop stolen"), "{reason}");
    }
    assert!(
        token_check(&v, &other, &ping()).is_allowed(),
        "another family keeps working"
    );
}

#[test]
fn a_revoked_agent_key_denies_the_token_check() {
    let w = World::new();
    let v = w.verifier();
    let hop1 = w.hop(&w.root(), Duration::from_secs(600));
    w.store
        .revoke(&[entry(Target::Agent(w.sub.public().to_bytes().to_vec()))])
        .unwrap();
    let (kind, reason) = denied(&token_check(&v, &hop1, &ping()));
    assert_eq!(kind, DenialKind::Revoked, "{reason}");
    assert!(reason.contains("agent \"sub-agent\""), "{reason}");
    assert!(reason.contains("at hop 1"), "{reason}");
}

#[test]
fn an_expired_hop_denies_the_token_check_naming_the_hop() {
    let w = World::new();
    let v = w.verifier();
    let root = w.root();
    let hop1 = w.hop(&root, Duration::from_secs(60));
    let now = SystemTime::now();
    // Within both lifetimes: allowed.
    assert!(token_check(&v, &hop1, &ping().at(now)).is_allowed());
    // Hop 1 lived 60 s; the root lives an hour.
    let later = ping().at(now + Duration::from_secs(300));
    let d = token_check(&v, &hop1, &later);
    let (kind, reason) = denied(&d);
    assert_eq!(kind, DenialKind::Expired, "{reason}");
    let denial = d.denial.as_ref().unwrap();
    assert_eq!(denial.hop, Some(1), "{reason}");
    assert_eq!(denial.agent.as_deref(), Some("sub-agent"));
    assert!(reason.contains("hop 1"), "{reason}");
    assert!(reason.contains("sub-agent"), "{reason}");
    assert!(reason.contains("expired at"), "{reason}");
    assert!(reason.contains("request time"), "{reason}");
    // The root alone is still valid then.
    assert!(token_check(&v, &root, &later).is_allowed());
    // The grant check of a granted request agrees on the kind and hop.
    let read_later = Request::new("read", "/api/customers/42").at(now + Duration::from_secs(300));
    let g = grant_check(&v, &hop1, &read_later);
    assert_eq!(denied(&g).0, DenialKind::Expired, "{g:?}");
    assert_eq!(g.denial.as_ref().unwrap().hop, Some(1), "{g:?}");

    // Past the root's expiry, the first expired hop (the root) is named.
    let much_later = ping().at(now + Duration::from_secs(7200));
    let d = token_check(&v, &hop1, &much_later);
    let (kind, reason) = denied(&d);
    assert_eq!(kind, DenialKind::Expired, "{reason}");
    assert_eq!(d.denial.as_ref().unwrap().hop, Some(0), "{reason}");
    assert!(reason.contains("hop 0"), "{reason}");
}

#[test]
fn an_expired_first_party_block_denies_the_token_check_naming_the_block() {
    let w = World::new();
    let v = w.verifier();
    let root = w.root();
    let narrowed = narrow(&root, &Grant::default(), Some(Duration::from_secs(60)))
        .unwrap()
        .token;
    let now = SystemTime::now();
    assert!(token_check(&v, &narrowed, &ping().at(now)).is_allowed());
    let d = token_check(&v, &narrowed, &ping().at(now + Duration::from_secs(300)));
    let (kind, reason) = denied(&d);
    assert_eq!(kind, DenialKind::Expired, "{reason}");
    let denial = d.denial.as_ref().unwrap();
    assert_eq!(denial.hop, Some(0));
    assert_eq!(denial.block, Some(1), "{reason}");
    assert!(reason.contains("first-party block 1"), "{reason}");
}

#[test]
fn a_bad_signature_or_an_unknown_root_key_denies_the_token_check() {
    let w = World::new();
    let root = w.root();
    // The same key id, another key: the signature does not verify.
    let (id, _) = w.issuer.keys().public_keys()[0];
    let impostor = Verifier::new(RootKeys::new().with(id, KeyPair::new().public()))
        .with_cache(CacheOptions::default());
    let (kind, reason) = denied(&token_check(&impostor, &root, &ping()));
    assert_eq!(kind, DenialKind::BadSignature, "{reason}");
    assert!(reason.contains("signature does not verify"), "{reason}");
    // A key id the verifier does not know.
    let (_, key) = w.issuer.keys().public_keys()[0];
    let other_id = Verifier::new(RootKeys::new().with(id + 7, key));
    let (kind, reason) = denied(&token_check(&other_id, &root, &ping()));
    assert_eq!(kind, DenialKind::UnknownRootKey, "{reason}");
    assert!(reason.contains("root key id"), "{reason}");
    // A token altered after signing (a byte of the last signature flipped).
    let v = w.verifier();
    let mut altered = root.clone();
    let n = altered.len();
    altered[n - 10] ^= 0x55;
    let (kind, reason) = denied(&token_check(&v, &altered, &ping()));
    assert!(
        matches!(kind, DenialKind::BadSignature | DenialKind::MalformedToken),
        "{kind:?}: {reason}"
    );
    // Not a token at all.
    let (kind, _) = denied(&token_check(&v, b"not a token", &ping()));
    assert_eq!(kind, DenialKind::MalformedToken);
}

#[test]
fn a_holder_bound_token_needs_its_proof_for_the_token_check() {
    let w = World::new();
    let mut grant = Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap();
    grant.holder_bound = true;
    let token = w.mint(grant);
    let v = w.verifier();
    let (kind, reason) = denied(&token_check(&v, &token, &ping()));
    assert_eq!(kind, DenialKind::ProofMissing, "{reason}");
    assert!(reason.contains("proof of possession"), "{reason}");
    assert!(reason.contains("support-agent"), "{reason}");

    // With the holder's proof of this request: allowed.
    let audience = Audience::parse("https://gw.example.com").unwrap();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let sign = |key: &KeyPair| {
        HolderProof::sign(
            key,
            &ProofSubject {
                method: "POST",
                audience: &audience,
                target: "/mcp",
                body_digest: ProofSubject::digest(body),
                token: &token,
            },
            SystemTime::now(),
        )
        .unwrap()
    };
    let presented =
        |proof| Presented::new("POST", body, Some(proof)).at(Some(audience.clone()), "/mcp");
    let d = v.decide_presented(&token, &ping(), &presented(sign(&w.support)), Check::Token);
    assert!(d.is_allowed(), "{d:?}");
    // A proof by another key: invalid.
    let d = v.decide_presented(
        &token,
        &ping(),
        &presented(sign(&KeyPair::new())),
        Check::Token,
    );
    assert_eq!(denied(&d).0, DenialKind::ProofInvalid, "{d:?}");
    // The same proof twice: its nonce is spent.
    let once = sign(&w.support);
    assert!(v
        .decide_presented(&token, &ping(), &presented(once.clone()), Check::Token)
        .is_allowed());
    let (kind, reason) =
        denied(&v.decide_presented(&token, &ping(), &presented(once), Check::Token));
    assert_eq!(kind, DenialKind::ProofInvalid, "{reason}");
}

#[test]
fn the_token_check_never_spends_an_approval() {
    let w = World::new();
    let v = w.verifier();
    let token = w.payer();
    let pay = Request::new("pay", "/api/payments").param("amount", 500);
    let asked = grant_check(&v, &token, &pay);
    assert!(asked.needs_approval(), "{asked:?}");
    let tpr = asked.approval.as_ref().unwrap().third_party_request.clone();
    let block = approve(
        &tpr,
        &pay,
        SystemTime::now() + Duration::from_secs(300),
        &w.finance,
    )
    .unwrap();
    let approved = attach_approval(&token, &block).unwrap().token;
    // Token checks, on the approved request itself and on housekeeping,
    // cold and inline: all allowed, nothing spent.
    for _ in 0..3 {
        assert!(token_check(&v, &approved, &pay).is_allowed());
        assert!(token_check(&v, &approved, &ping()).is_allowed());
        let inline = v
            .try_decide_inline(&approved, &pay, &Presented::default(), Check::Token)
            .expect("a token check of a cached token runs inline, approval rules or not");
        assert!(inline.is_allowed(), "{inline:?}");
    }
    // The grant check still has its one use of the approval …
    let d = grant_check(&v, &approved, &pay);
    assert!(d.is_allowed(), "{d:?}");
    // … and only one.
    let (kind, reason) = denied(&grant_check(&v, &approved, &pay));
    assert_eq!(kind, DenialKind::ApprovalReplayed, "{reason}");
    assert!(reason.contains("single-use"), "{reason}");
    // The token check is still allowed: it asks nothing of approvals.
    assert!(token_check(&v, &approved, &pay).is_allowed());
}

#[test]
fn every_token_check_is_recorded_like_any_decision() {
    let w = World::new();
    let seen: Arc<Mutex<Vec<Decision>>> = Arc::default();
    let sink = seen.clone();
    let v = Verifier::new(w.keys())
        .with_cache(CacheOptions::default())
        .with_audit(move |e: AuditEvent| sink.lock().unwrap().push(e.decision));
    let root = w.root();
    let allowed = token_check(&v, &root, &ping());
    let inline = v
        .try_decide_inline(&root, &ping(), &Presented::default(), Check::Token)
        .unwrap();
    let refused = token_check(&v, b"garbage", &ping());
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, vec![allowed, inline, refused]);
}

/// Compares what matters of two decisions of the same request.
fn same(a: &Decision, b: &Decision, what: &str) {
    assert_eq!(a.decision, b.decision, "{what}: {a:?} vs {b:?}");
    assert_eq!(a.denial, b.denial, "{what}");
    assert_eq!(a.request, b.request, "{what}");
    assert_eq!(a.chain, b.chain, "{what}");
}

#[test]
fn the_inline_path_decides_both_checks_as_the_blocking_path_does() {
    let w = World::new();
    let v = w.verifier();
    let root = w.root();
    let hop1 = w.hop(&root, Duration::from_secs(60));
    let revoked = w.hop(&root, Duration::from_secs(600));
    let payer = w.payer();
    let mut bound = Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap();
    bound.holder_bound = true;
    let bound = w.mint(bound);
    let now = SystemTime::now();
    let requests = [
        ping().at(now),
        Request::new("read", "/api/customers/42").at(now),
        Request::new("delete", "/api/customers/42").at(now),
        Request::new("pay", "/api/payments")
            .param("amount", 50)
            .at(now),
        Request::new("read", "/api/customers/42").at(now + Duration::from_secs(300)),
        ping().at(now + Duration::from_secs(7200)),
        Request::new("bad action", "/mcp").at(now),
    ];
    let tokens = [&root, &hop1, &revoked, &payer, &bound];
    // Nothing cached yet: nothing is decided inline.
    for t in tokens {
        for check in [Check::Grant, Check::Token] {
            assert!(v
                .try_decide_inline(t, &ping(), &Presented::default(), check)
                .is_none());
        }
    }
    // Cache every token (a decision verifies and keeps it).
    for t in tokens {
        grant_check(&v, t, &ping());
    }
    w.store
        .revoke(&[entry(Target::Block(block_id(&revoked, 1)))])
        .unwrap();
    for (ti, t) in tokens.iter().enumerate() {
        for (ri, r) in requests.iter().enumerate() {
            for check in [Check::Grant, Check::Token] {
                let what = format!("token {ti}, request {ri}, {check:?}");
                let cold = v.decide_presented(t, r, &Presented::default(), check);
                match v.try_decide_inline(t, r, &Presented::default(), check) {
                    Some(inline) => same(&inline, &cold, &what),
                    None => {
                        // Only a grant check of a token with approval rules
                        // (a synced write) is left to the blocking path.
                        assert_eq!(check, Check::Grant, "{what}");
                        assert_eq!(ti, 3, "{what}: only the payer has approval rules");
                    }
                }
            }
        }
    }
}
