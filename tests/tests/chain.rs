//! Happy paths across the crates, and the chain a decision carries.
//!
//! Mint → delegate 0..8 hops → authorize; the chain in the decision
//! (principal, each hop's agent, key, signer, purpose, expiry, revocation id,
//! hop numbering 0..n, narrowing blocks); decision JSON; root key rotation.
#![allow(clippy::unwrap_used)]

use biscuit_auth::KeyPair;
use mandate_attenuate::{delegate, narrow, read_chain};
use mandate_issuer::{Issuer, SigningKeys as IssuerKeys};
use mandate_spec::{Request, Signer};
use mandate_tests::{
    assert_allowed, assert_denied, customers_grant, delegation, grant, mint_request, read_customer,
    secs, verifier, verifier_for, Agent, Family, PRINCIPAL, ROOT_TTL,
};
use mandate_verifier::{DenialKind, RootKeys};
use std::time::SystemTime;
use time::OffsetDateTime;

/// Hop `d` allows `read` with `rows <= 100 - 10 d`: each hop narrows.
fn bound(hop: usize) -> i64 {
    100 - 10 * hop as i64
}

#[test]
fn every_depth_from_0_to_8_allows_what_every_hop_allows() {
    for depth in 0..=8 {
        let mut family = Family::mint(customers_grant());
        for hop in 1..=depth {
            family.delegate(grant(
                &["read:/api/customers/*"],
                &[&format!("rows<={}", bound(hop))],
            ));
        }
        assert_eq!(family.depth(), depth);
        // Every token of the family allows a request within the deepest hop.
        for d in 0..=depth {
            assert_allowed(&family.authorize_at_depth(d, &read_customer(bound(depth))));
        }
        let decision = family.authorize(&read_customer(1));
        assert_allowed(&decision);
        let chain = decision.chain.as_ref().unwrap();
        assert_eq!(chain.depth(), depth);
        assert_eq!(
            chain.hops.iter().map(|h| h.hop).collect::<Vec<_>>(),
            (0..=depth).collect::<Vec<_>>()
        );
        assert_eq!(chain.holder().agent, format!("agent-{depth}"));
    }
}

#[test]
fn at_every_depth_the_earliest_hop_that_forbids_is_named() {
    let depth = 8;
    let mut family = Family::mint(customers_grant());
    for hop in 1..=depth {
        family.delegate(grant(
            &["read:/api/customers/*"],
            &[&format!("rows<={}", bound(hop))],
        ));
    }
    for k in 1..=depth {
        // Allowed by hops 0..k-1, refused by hop k (and every later hop).
        let rows = bound(k) + 1;
        let decision = family.authorize(&read_customer(rows));
        let denial = assert_denied(
            &decision,
            DenialKind::NotAllowed,
            Some(k),
            &[
                &format!(
                    "hop {k} (agent \"agent-{k}\", delegated by \"agent-{}\")",
                    k - 1
                ),
                &format!("parameter rows={rows} violates rows<={}", bound(k)),
            ],
        );
        assert_eq!(denial.block, Some(k));
        assert_eq!(denial.agent.as_deref(), Some(format!("agent-{k}").as_str()));
        if k < depth {
            // Later hops that deny too are listed after the first.
            let also = denial.reason.split_once("; also denied by ").unwrap().1;
            assert!(also.starts_with(&format!("hop {} (agent", k + 1)), "{also}");
            assert!(also.contains(&format!("hop {depth} (agent")), "{also}");
        }
        // A denial still carries the chain: the auditor sees who was asked.
        assert_eq!(decision.chain.as_ref().unwrap().depth(), depth);
    }
    // `list` is allowed by the root only.
    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    assert_allowed(&family.authorize_at_depth(0, &list));
    assert_denied(
        &family.authorize(&list),
        DenialKind::NotAllowed,
        Some(1),
        &["hop 1 (agent \"agent-1\"", "action \"list\" is not allowed"],
    );
}

#[test]
fn the_decision_carries_the_whole_chain() {
    let mut family = Family::mint_with(customers_grant(), |r| r.max_depth = Some(5));
    let before = SystemTime::now();
    family.delegate_with(
        grant(&["read:/api/customers/*"], &["rows<=50"]),
        |d| {
            d.ttl = Some(secs(600));
            d.purpose = Some("summarise customer 42".into());
        },
        before,
    );
    family.delegate(grant(&["read:/api/customers/42"], &[]));
    family.delegate_with(grant(&[], &[]), |d| d.purpose = None, SystemTime::now());

    let decision = family.authorize(&read_customer(5));
    assert_allowed(&decision);
    let chain: &mandate_spec::Chain = decision.chain.as_ref().unwrap();

    // The chain the verifier returns is the one the holder reads offline.
    assert_eq!(chain, &family.delegations.last().unwrap().chain);
    assert_eq!(chain, &read_chain(family.token()).unwrap());

    assert_eq!(chain.principal, PRINCIPAL);
    assert_eq!(chain.token_id, family.minted.token_id.to_string());
    assert_eq!(chain.max_depth, Some(5));
    assert_eq!(
        chain.to_string(),
        "user:alice → agent-0 → agent-1 → agent-2 → agent-3"
    );
    assert_eq!(chain.hops.len(), 4);
    for (n, hop) in chain.hops.iter().enumerate() {
        assert_eq!(hop.hop, n);
        assert_eq!(hop.block, n, "no narrowing block: block index = hop");
        assert_eq!(hop.agent, family.agents[n].id);
        assert_eq!(hop.agent_key, family.agents[n].key_text());
        assert_eq!(hop.revocation_id.len(), 128, "64-byte Ed25519 signature");
        assert!(hop.narrowing.is_empty());
        match (n, &hop.signed_by) {
            (0, Signer::Root { key_id }) => assert_eq!(*key_id, Some(0)),
            (n, Signer::Agent { agent, key }) if n > 0 => {
                assert_eq!(agent, &family.agents[n - 1].id);
                assert_eq!(key, &family.agents[n - 1].key_text());
            }
            (n, other) => panic!("hop {n} signed by {other:?}"),
        }
    }
    // Revocation ids: the issuer's and attenuator's, all distinct.
    assert_eq!(chain.hops[0].revocation_id, family.minted.revocation_ids[0]);
    for d in 1..=3 {
        assert_eq!(
            chain.hops[d].revocation_id,
            family.delegations[d - 1].revocation_id
        );
    }
    let ids: std::collections::BTreeSet<_> = chain.hops.iter().map(|h| &h.revocation_id).collect();
    assert_eq!(ids.len(), 4);

    // Purposes as given.
    assert_eq!(
        chain.hops[0].purpose.as_deref(),
        Some("root task for agent-0")
    );
    assert_eq!(
        chain.hops[1].purpose.as_deref(),
        Some("summarise customer 42")
    );
    assert_eq!(chain.hops[2].purpose.as_deref(), Some("task for agent-2"));
    assert_eq!(chain.hops[3].purpose, None);

    // Expiries: the root's, hop 1's own 10 minutes, then clamped to the chain.
    let root_exp = chain.hops[0].expires_at.unwrap();
    assert_eq!(
        root_exp.unix_timestamp(),
        family.minted.expires_at.unix_timestamp()
    );
    let hop1_exp = chain.hops[1].expires_at.unwrap();
    assert_eq!(
        hop1_exp.unix_timestamp(),
        OffsetDateTime::from(before + secs(600)).unix_timestamp()
    );
    assert_eq!(chain.hops[2].expires_at, Some(hop1_exp));
    assert_eq!(chain.hops[3].expires_at, Some(hop1_exp));
    assert_eq!(chain.expires_at, Some(hop1_exp));
    let age = OffsetDateTime::from(SystemTime::now()) - chain.issued_at;
    assert!((0..60).contains(&age.whole_seconds()), "issued {age} ago");

    // Grants decode back to what each hop was given.
    assert_eq!(chain.hops[0].grant, customers_grant());
    assert_eq!(
        chain.hops[2].grant.to_string(),
        "read:/api/customers/42",
        "{}",
        chain.hops[2]
    );
    assert!(chain.hops[3].grant.is_empty(), "an empty hop grant");
}

#[test]
fn decision_json_has_the_documented_shape() {
    let mut family = Family::mint(customers_grant());
    family.delegate(grant(&["read:/api/customers/*"], &[]));
    let allowed = serde_json::to_value(family.authorize(&read_customer(1))).unwrap();
    assert_eq!(allowed["decision"], "allow");
    assert!(allowed.get("denial").is_none());
    assert_eq!(allowed["request"]["params"]["rows"], 1);
    let hops = allowed["chain"]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0]["hop"], 0);
    assert_eq!(hops[0]["signed_by"]["kind"], "root");
    assert_eq!(hops[0]["signed_by"]["key_id"], 0);
    assert_eq!(hops[1]["hop"], 1);
    assert_eq!(hops[1]["signed_by"]["kind"], "agent");
    assert_eq!(hops[1]["signed_by"]["agent"], "agent-0");
    assert_eq!(hops[1]["agent_key"], family.agents[1].key_text());

    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    let denied = serde_json::to_value(family.authorize(&list)).unwrap();
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["denial"]["kind"], "not_allowed");
    assert_eq!(denied["denial"]["hop"], 1);
    assert_eq!(denied["denial"]["block"], 1);
    assert_eq!(denied["denial"]["agent"], "agent-1");
    assert!(denied["chain"]["hops"].is_array());
}

#[test]
fn narrowing_blocks_belong_to_the_hop_that_appended_them() {
    let mut family = Family::mint(customers_grant());
    family.delegate(grant(&["read,list:/api/customers/*"], &[]));
    // agent-1 narrows its own token to `read`, then delegates.
    let narrowed = narrow(
        family.token(),
        &grant(&["read:/api/customers/*"], &[]),
        None,
    )
    .unwrap();
    let agent_2 = Agent::new("agent-2");
    let token = delegate(
        &narrowed.token,
        &family.holder().key,
        &delegation(&agent_2, grant(&["read,list:/api/customers/*"], &[])),
    )
    .unwrap()
    .token;

    let chain = read_chain(&token).unwrap();
    assert_eq!(chain.depth(), 2);
    assert_eq!(
        chain
            .hops
            .iter()
            .map(|h| (h.hop, h.block))
            .collect::<Vec<_>>(),
        vec![(0, 0), (1, 1), (2, 3)]
    );
    assert_eq!(chain.hops[1].narrowing.len(), 1);
    assert_eq!(chain.hops[1].narrowing[0].block, 2);
    assert_eq!(
        chain.hops[1].narrowing[0].revocation_id,
        narrowed.revocation_id
    );
    assert_eq!(
        chain.hops[2].signed_by,
        Signer::Agent {
            agent: "agent-1".into(),
            key: family.agents[1].key_text()
        }
    );

    assert_allowed(&family.verifier.authorize(&token, &read_customer(1)));
    // `list`: hop 1 allows it, its narrowing block does not, hop 2 would.
    let list = Request::new("list", "/api/customers/42").param("rows", 1);
    let denial = assert_denied(
        &family.verifier.authorize(&token, &list),
        DenialKind::NotAllowed,
        Some(1),
        &[
            "hop 1 (agent \"agent-1\"",
            "first-party block 2",
            "\"list\"",
        ],
    );
    assert_eq!(denial.block, Some(2));
}

#[test]
fn an_empty_hop_grant_passes_on_everything_the_chain_allows() {
    let mut family = Family::mint(customers_grant());
    family.delegate(grant(&[], &[]));
    assert_allowed(&family.authorize(&read_customer(100)));
    let list = Request::new("list", "/api/customers/7").param("rows", 3);
    assert_allowed(&family.authorize(&list));
    // …but nothing more.
    assert_denied(
        &family.authorize(&read_customer(101)),
        DenialKind::NotAllowed,
        Some(0),
        &["hop 0 (root token for \"user:alice\", agent \"agent-0\")"],
    );
}

#[test]
fn tokens_as_base64_text_are_accepted_with_or_without_padding() {
    let mut family = Family::mint(customers_grant());
    family.delegate(grant(&["read:/api/customers/*"], &[]));
    let text = family.delegations[0].to_base64();
    let v = &family.verifier;
    assert_allowed(&v.authorize_base64(&text, &read_customer(1)));
    assert_allowed(&v.authorize_base64(text.trim_end_matches('='), &read_customer(1)));
    assert_allowed(&v.authorize_base64(&format!("  {text}\n"), &read_customer(1)));
    assert_allowed(&v.authorize_base64(&family.minted.to_base64(), &read_customer(1)));
}

// ---- root key rotation ------------------------------------------------------

#[test]
fn a_token_naming_key_id_1_verifies_after_rotation() {
    let (k0, k1) = (KeyPair::new(), KeyPair::new());
    let (pk0, pk1) = (k0.public(), k1.public());
    let mut keys = IssuerKeys::new(0, k0);
    let before_rotation = Family::mint_by(
        Issuer::with_keys(keys.clone()),
        customers_grant(),
        |_| {},
        SystemTime::now(),
    );
    assert_eq!(before_rotation.minted.root_key_id, 0);
    keys.rotate(1, k1).unwrap();
    let mut family = Family::mint_by(
        Issuer::with_keys(keys.clone()),
        customers_grant(),
        |_| {},
        SystemTime::now(),
    );
    assert_eq!(family.minted.root_key_id, 1);
    family.delegate(grant(&["read:/api/customers/*"], &[]));

    let both = verifier(RootKeys::new().with(0, pk0).with(1, pk1));
    for token in &family.tokens {
        let d = both.authorize(token, &read_customer(1));
        assert_allowed(&d);
        assert_eq!(
            d.chain.unwrap().hops[0].signed_by,
            Signer::Root { key_id: Some(1) }
        );
    }
    // Tokens signed before the rotation keep verifying.
    assert_allowed(&both.authorize(before_rotation.token(), &read_customer(1)));
    // The harness's verifier (all of the issuer's keys) agrees.
    assert_allowed(
        &verifier_for(&Issuer::with_keys(keys)).authorize(family.token(), &read_customer(1)),
    );
}

#[test]
fn an_unknown_root_key_id_is_denied() {
    let (k0, k1) = (KeyPair::new(), KeyPair::new());
    let pk0 = k0.public();
    let mut keys = IssuerKeys::new(0, k0);
    keys.rotate(1, k1).unwrap();
    let mut family = Family::mint_by(
        Issuer::with_keys(keys),
        customers_grant(),
        |_| {},
        SystemTime::now(),
    );
    family.delegate(grant(&["read:/api/customers/*"], &[]));

    let only_0 = verifier(RootKeys::new().with(0, pk0));
    for token in &family.tokens {
        let d = only_0.authorize(token, &read_customer(1));
        assert_denied(
            &d,
            DenialKind::UnknownRootKey,
            None,
            &["root key id", "does not trust"],
        );
        assert!(d.chain.is_none(), "nothing is read from an untrusted token");
    }
    // A verifier with no key at all trusts nothing.
    assert_denied(
        &verifier(RootKeys::new()).authorize(family.token(), &read_customer(1)),
        DenialKind::UnknownRootKey,
        None,
        &["root key id"],
    );
}

#[test]
fn the_key_id_selects_a_key_and_the_signature_decides() {
    let (k0, k1) = (KeyPair::new(), KeyPair::new());
    let (pk0, pk1) = (k0.public(), k1.public());
    let mut keys = IssuerKeys::new(0, k0);
    keys.rotate(1, k1).unwrap();
    let family = Family::mint_by(
        Issuer::with_keys(keys),
        customers_grant(),
        |_| {},
        SystemTime::now(),
    );

    // Id 1 mapped to the wrong key: the signature check fails.
    let swapped = verifier(RootKeys::new().with(0, pk1).with(1, pk0));
    assert_denied(
        &swapped.authorize(family.token(), &read_customer(1)),
        DenialKind::BadSignature,
        None,
        &["signature does not verify"],
    );
    // A single trusted key, whatever id the token names.
    assert_allowed(&verifier(RootKeys::single(pk1)).authorize(family.token(), &read_customer(1)));
    assert_denied(
        &verifier(RootKeys::single(pk0)).authorize(family.token(), &read_customer(1)),
        DenialKind::BadSignature,
        None,
        &["signature does not verify"],
    );
    // Retiring id 1 on the verifier stops the tokens it signed.
    let mut retired = RootKeys::new().with(0, pk0).with(1, pk1);
    retired.retire(1);
    assert_denied(
        &verifier(retired).authorize(family.token(), &read_customer(1)),
        DenialKind::UnknownRootKey,
        None,
        &["root key id"],
    );
}

#[test]
fn issuer_key_rotation_rules() {
    let mut keys = IssuerKeys::new(0, KeyPair::new());
    assert!(keys.rotate(0, KeyPair::new()).is_err(), "id already in use");
    keys.rotate(1, KeyPair::new()).unwrap();
    assert_eq!(keys.current().0, 1);
    assert!(keys.retire(1).is_err(), "the current key cannot be retired");
    keys.retire(0).unwrap();
    assert_eq!(
        keys.public_keys()
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![1]
    );
    // Root tokens live at most as long as the issuer allows.
    let issuer = Issuer::with_keys(keys);
    let agent = Agent::new("agent-0");
    let mut req = mint_request(&agent, customers_grant());
    req.ttl = ROOT_TTL * 24 * 400;
    assert!(issuer.mint(&req).is_err(), "ttl over a year");
}

#[test]
fn a_token_naming_no_key_id_needs_a_verifier_trusting_a_single_key() {
    let root = KeyPair::new();
    let issuer = Issuer::new(KeyPair::from(&root.private()));
    let agent = Agent::new("agent-0");
    let g = customers_grant();
    let hop = mandate_spec::HopContent {
        agent: &agent.id,
        agent_key: &agent.key.public(),
        purpose: None,
        grant: &g,
        expires: SystemTime::now() + ROOT_TTL,
    };
    let content = mandate_spec::RootContent {
        token_id: "00000000-0000-4000-8000-000000000000",
        principal: PRINCIPAL,
        issued_at: SystemTime::now(),
        max_depth: None,
    };
    // Written by another tool: no root key id in the container.
    let token = mandate_spec::root_block(&content, &hop)
        .unwrap()
        .build(&root)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_denied(
        &verifier_for(&issuer).authorize(&token, &read_customer(1)),
        DenialKind::UnknownRootKey,
        None,
        &["root key id"],
    );
    let d = verifier(RootKeys::single(root.public())).authorize(&token, &read_customer(1));
    assert_allowed(&d);
    assert_eq!(
        d.chain.unwrap().hops[0].signed_by,
        Signer::Root { key_id: None }
    );
}
