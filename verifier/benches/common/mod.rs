//! Fixtures shared by the verifier's benches: a root token and a chain of
//! delegation hops below it, each hop naming the next agent's key, one action
//! set, one resource pattern and an expiry.

// Each bench target compiles this module and uses part of it.
#![allow(dead_code)]

use biscuit_auth::datalog::RunLimits;
use biscuit_auth::{Authorizer, AuthorizerBuilder, Biscuit, KeyPair, PublicKey};
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use std::time::Duration;

/// The root's grant and every hop's grant: one action set, one resource pattern.
pub(crate) const GRANT: &str = "read,list:/api/customers/*";

/// A chain of tokens from the same root: `tokens[d]` has `d` delegation hops.
pub(crate) struct Chain {
    /// The root key id the tokens name.
    pub(crate) root_key_id: u32,
    /// The root public key.
    pub(crate) root_key: PublicKey,
    /// `tokens[0]` is the root token, `tokens[d]` has `d` hops below it.
    pub(crate) tokens: Vec<Vec<u8>>,
    /// The key pair of each token's holder (`holders[d]` holds `tokens[d]`).
    pub(crate) holders: Vec<KeyPair>,
}

/// Mints a root token and delegates `depth` times with `hop_grant` (and
/// `root_grant` on the root). Every hop sets its own expiry (1 hour).
pub(crate) fn chain_with(depth: usize, root_grant: &str, hop_grant: &str) -> Chain {
    let parse = |g: &str| Grant::parse(&[g], &[] as &[&str]).unwrap();
    chain_of(depth, parse(root_grant), &parse(hop_grant))
}

/// [`chain_with`] with grants already built (e.g. with usage limits).
pub(crate) fn chain_of(depth: usize, root_grant: Grant, hop_grant: &Grant) -> Chain {
    let issuer = Issuer::new(KeyPair::new());
    let (root_key_id, root_key) = issuer.keys().public_keys()[0];
    let first = KeyPair::new();
    let root = issuer
        .mint(&MintRequest {
            principal: "user:alice".into(),
            agent: "agent-0".into(),
            agent_key: first.public(),
            grant: root_grant,
            ttl: Duration::from_secs(86_400),
            purpose: None,
            max_depth: None,
        })
        .unwrap();
    let mut tokens = vec![root.token];
    let mut holders = vec![first];
    for hop in 1..=depth {
        let next = KeyPair::new();
        let child = delegate(
            &tokens[hop - 1],
            &holders[hop - 1],
            &Delegation {
                agent: format!("agent-{hop}"),
                agent_key: next.public(),
                grant: hop_grant.clone(),
                ttl: Some(Duration::from_secs(3600)),
                purpose: None,
            },
        )
        .unwrap();
        tokens.push(child.token);
        holders.push(next);
    }
    Chain {
        root_key_id,
        root_key,
        tokens,
        holders,
    }
}

/// [`chain_with`] with [`GRANT`] on the root and on every hop.
pub(crate) fn chain(depth: usize) -> Chain {
    chain_with(depth, GRANT, GRANT)
}

/// A request every hop of [`chain`] allows.
pub(crate) fn allowed_request() -> Request {
    Request::new("read", "/api/customers/42")
}

/// The baseline: what raw biscuit-auth does on the same bytes, with the same
/// request facts, policy and run limits as [`mandate_verifier::Verifier`]:
/// parse and verify every signature, build the authorizer, run it. Returns
/// whether the request was allowed and the authorizer (for its run figures).
pub(crate) fn raw_biscuit(
    token: &[u8],
    root_key: PublicKey,
    request: &Request,
    limits: mandate_verifier::Limits,
) -> (bool, Authorizer) {
    let biscuit = Biscuit::from(token, root_key).unwrap();
    raw_authorize(&biscuit, request, limits)
}

/// Raw biscuit-auth's authorization of an already-parsed token: build the
/// authorizer with the request facts, the policy and the limits; run it.
pub(crate) fn raw_authorize(
    biscuit: &Biscuit,
    request: &Request,
    limits: mandate_verifier::Limits,
) -> (bool, Authorizer) {
    let mut builder = AuthorizerBuilder::new();
    for fact in request.facts() {
        builder = builder.fact(fact).unwrap();
    }
    let mut authorizer = builder
        .policy("allow if true")
        .unwrap()
        .set_limits(RunLimits {
            max_facts: limits.max_facts,
            max_iterations: limits.max_iterations,
            max_time: limits.max_time,
        })
        .build(biscuit)
        .unwrap();
    let allowed = authorizer.authorize().is_ok();
    (allowed, authorizer)
}
