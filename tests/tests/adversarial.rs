//! Tampered tokens are denied, with the kind, hop and reason of the denial.
//!
//! Forged bytes and signatures; reordered, dropped and spliced blocks; hops
//! signed by a key that does not hold the token; chain-integrity violations
//! (an agent in a first-party block, reserved predicates, restated root
//! facts); tokens from another root; truncated, garbage and empty tokens.
#![allow(clippy::unwrap_used)]

use biscuit_auth::builder::{bytes, fact, string, BlockBuilder};
use biscuit_auth::format::schema::proof::Content;
use biscuit_auth::KeyPair;
use mandate_attenuate::{delegate, AttenuateError};
use mandate_issuer::Issuer;
use mandate_spec::{root_block, vocab, HopContent, RootContent, MAX_TOKEN_BYTES};
use mandate_tests::{
    append_first_party, append_hop, assert_allowed, assert_denied, container, customers_family,
    customers_grant, datalog_block, delegation, encode, flip_in, grant, hop_block_for, in_an_hour,
    read_customer, verifier, Agent, Family,
};
use mandate_verifier::{Decision, DenialKind, RootKeys};
use std::time::SystemTime;

fn bad_signature(d: &Decision) {
    assert_denied(
        d,
        DenialKind::BadSignature,
        None,
        &["a signature does not verify"],
    );
    assert!(d.chain.is_none(), "no chain is read from a forged token");
}

// ---- forged signatures --------------------------------------------------------

#[test]
fn a_flipped_byte_inside_any_block_is_a_bad_signature() {
    let f = customers_family(2);
    assert_allowed(&f.authorize(&read_customer(1)));
    // The authority block and each hop block, one string byte changed.
    let mut c = container(f.token());
    flip_in(&mut c.authority.block, b"user:alice");
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    for (block, needle) in [(0, "agent-1"), (1, "agent-2")] {
        let mut c = container(f.token());
        flip_in(&mut c.blocks[block].block, needle.as_bytes());
        bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    }
    // Any byte of a hop's payload, even one that leaves it undecodable:
    // signatures are verified before anything is read.
    let mut c = container(f.token());
    let payload = &mut c.blocks[0].block;
    let at = payload.len() - 1;
    payload[at] ^= 0x01;
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
}

#[test]
fn a_flipped_byte_in_any_signature_is_a_bad_signature() {
    let f = customers_family(2);
    let mut c = container(f.token());
    c.authority.signature[7] ^= 0x01;
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    for block in 0..2 {
        let mut c = container(f.token());
        c.blocks[block].signature[7] ^= 0x01;
        bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));

        let mut c = container(f.token());
        c.blocks[block]
            .external_signature
            .as_mut()
            .unwrap()
            .signature[7] ^= 0x01;
        bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    }
}

#[test]
fn a_hop_claiming_another_signer_key_is_a_bad_signature() {
    // Rewriting who signed hop 1 (to the key hop 0 named) without re-signing.
    let f = customers_family(1);
    let mallory = KeyPair::new();
    let mut c = container(f.token());
    c.blocks[0]
        .external_signature
        .as_mut()
        .unwrap()
        .public_key
        .key = mallory.public().to_bytes().to_vec();
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
}

#[test]
fn an_altered_proof_is_a_bad_signature() {
    let f = customers_family(1);
    let mut c = container(f.token());
    match c.proof.content.as_mut().unwrap() {
        Content::NextSecret(secret) => secret[0] ^= 0x01,
        Content::FinalSignature(_) => panic!("Mandate tokens are not sealed"),
    }
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
}

#[test]
fn a_token_signed_by_another_root_is_a_bad_signature() {
    let f = customers_family(1);
    let stranger = Issuer::new(KeyPair::new());
    let (id, key) = stranger.keys().public_keys()[0];
    let other = verifier(RootKeys::new().with(id, key));
    for token in &f.tokens {
        bad_signature(&other.authorize(token, &read_customer(1)));
    }
}

// ---- hops signed by the wrong key --------------------------------------------

#[test]
fn a_hop_signed_by_a_key_that_is_not_the_holders_breaks_the_chain() {
    let f = customers_family(1);
    let mallory = Agent::new("mallory");
    let token = append_hop(
        f.token(),
        &mallory.key,
        hop_block_for(&Agent::new("mallory-sub"), &customers_grant(), in_an_hour()),
    );
    let d = f.verifier.authorize(&token, &read_customer(1));
    let denial = assert_denied(
        &d,
        DenialKind::BrokenChain,
        Some(2),
        &[
            &format!("signed by {}", mallory.key_text()),
            &format!(
                "but hop 1 delegated to agent \"agent-1\" with key {}",
                f.agents[1].key_text()
            ),
        ],
    );
    assert_eq!(denial.block, Some(2));
    // The mint API refuses the same thing up front.
    let refused = delegate(
        f.token(),
        &mallory.key,
        &delegation(&Agent::new("mallory-sub"), customers_grant()),
    )
    .unwrap_err();
    assert!(
        matches!(&refused, AttenuateError::NotHolder { holder_agent, .. } if holder_agent == "agent-1"),
        "{refused}"
    );
}

#[test]
fn a_previous_holder_cannot_delegate_from_a_token_it_passed_on() {
    let f = customers_family(2);
    // agent-0 and agent-1 held earlier tokens of this chain; neither holds it now.
    for earlier in 0..2 {
        let token = append_hop(
            f.token(),
            &f.agents[earlier].key,
            hop_block_for(&Agent::new("side-agent"), &customers_grant(), in_an_hour()),
        );
        assert_denied(
            &f.verifier.authorize(&token, &read_customer(1)),
            DenialKind::BrokenChain,
            Some(3),
            &[
                &format!("signed by {}", f.agents[earlier].key_text()),
                "hop 2 delegated to agent \"agent-2\"",
            ],
        );
    }
}

// ---- reordered, dropped and spliced blocks -----------------------------------

#[test]
fn reordered_blocks_are_denied() {
    let f = customers_family(3);
    for (i, j) in [(0, 1), (1, 2), (0, 2)] {
        let mut c = container(f.token());
        c.blocks.swap(i, j);
        bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    }
    let mut c = container(f.token());
    c.blocks.reverse();
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    // A hop block moved into the authority position.
    let mut c = container(f.token());
    std::mem::swap(&mut c.authority, &mut c.blocks[0]);
    let d = f.verifier.authorize(&encode(&c), &read_customer(1));
    assert_denied(&d, DenialKind::MalformedToken, None, &["not a valid token"]);
}

#[test]
fn dropped_blocks_are_denied() {
    let f = customers_family(3);
    for drop in 0..3 {
        let mut c = container(f.token());
        c.blocks.remove(drop);
        bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    }
    // Every hop dropped: the root block with the deepest token's proof.
    let mut c = container(f.token());
    c.blocks.clear();
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
}

#[test]
fn blocks_cannot_be_spliced_between_tokens() {
    // agent-0 delegates twice from the same root: to agent-1 and to agent-x.
    let mut f = customers_family(1);
    let x = Agent::new("agent-x");
    let sibling = delegate(
        &f.tokens[0],
        &f.agents[0].key,
        &delegation(&x, customers_grant()),
    )
    .unwrap()
    .token;
    f.delegate(grant(&["read:/api/customers/*"], &[]));
    // Hop 2 (signed by agent-1) moved onto the sibling chain.
    let mut c = container(&sibling);
    c.blocks.push(container(f.token()).blocks[1].clone());
    c.proof = container(f.token()).proof;
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
    // The same hops under another root block of the same issuer.
    let other = Family::mint_by(
        f.issuer.clone(),
        customers_grant(),
        |_| {},
        SystemTime::now(),
    );
    let mut c = container(f.token());
    c.authority = container(other.token()).authority;
    bad_signature(&f.verifier.authorize(&encode(&c), &read_customer(1)));
}

// ---- chain integrity: agents, reserved predicates, root facts ----------------

#[test]
fn a_first_party_block_naming_an_agent_breaks_the_chain() {
    let f = customers_family(1);
    let mallory = KeyPair::new();
    let block = BlockBuilder::new()
        .fact(fact(
            vocab::AGENT,
            &[string("mallory"), bytes(&mallory.public().to_bytes())],
        ))
        .unwrap();
    let token = append_first_party(f.token(), block);
    let denial = assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(1),
        &[
            "block 2 (hop 1)",
            "a first-party block cannot name a delegate",
        ],
    );
    assert_eq!(denial.block, Some(2));
}

/// Facts and rules that would let a block supply the request itself
/// (`resource` of either arity: `/*` patterns match the two-term form).
const RESERVED_DEFINITIONS: [(&str, &str); 7] = [
    ("operation", "operation(\"delete\");"),
    ("resource", "resource(\"/api/admin\");"),
    ("resource", "resource(\"/api/customers/\", \"42\");"),
    ("param", "param(\"rows\", 1);"),
    ("time", "time(2020-01-01T00:00:00Z);"),
    ("operation", "operation(\"delete\") <- time($t);"),
    ("resource", "resource($r) <- principal($r);"),
];

#[test]
fn a_first_party_block_defining_a_reserved_predicate_breaks_the_chain() {
    let f = customers_family(1);
    for (name, source) in RESERVED_DEFINITIONS {
        let token = append_first_party(f.token(), datalog_block(source));
        let denial = assert_denied(
            &f.verifier.authorize(&token, &read_customer(1)),
            DenialKind::BrokenChain,
            Some(1),
            &[&format!(
                "defines {name}(…), which only the verifier may supply"
            )],
        );
        assert_eq!(denial.block, Some(2), "{source}");
    }
}

#[test]
fn a_hop_defining_a_reserved_predicate_breaks_the_chain() {
    let f = customers_family(1);
    for (name, source) in RESERVED_DEFINITIONS {
        let block = hop_block_for(&Agent::new("agent-2"), &customers_grant(), in_an_hour())
            .code(source)
            .unwrap();
        // Signed by the legitimate holder: only the content is wrong.
        let token = append_hop(f.token(), &f.holder().key, block);
        let denial = assert_denied(
            &f.verifier.authorize(&token, &read_customer(1)),
            DenialKind::BrokenChain,
            Some(2),
            &[&format!("defines {name}(…)")],
        );
        assert_eq!(denial.block, Some(2), "{source}");
    }
}

#[test]
fn a_root_defining_a_reserved_predicate_or_missing_root_facts_is_refused() {
    let f = customers_family(0);
    let (key_id, root_key) = f.issuer.keys().current();
    let agent = Agent::new("agent-0");
    let g = customers_grant();
    let hop = HopContent {
        agent: &agent.id,
        agent_key: &agent.key.public(),
        purpose: None,
        grant: &g,
        expires: in_an_hour(),
    };
    let root = RootContent {
        token_id: "00000000-0000-4000-8000-000000000000",
        principal: "user:alice",
        issued_at: SystemTime::now(),
        max_depth: None,
    };
    // Signed by the trusted root key, but supplying a request fact.
    let token = root_block(&root, &hop)
        .unwrap()
        .fact("resource(\"/api/customers/42\")")
        .unwrap()
        .root_key_id(key_id)
        .build(root_key)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(0),
        &["block 0 (hop 0)", "defines resource(…)"],
    );
    // A root with no principal.
    let token = biscuit_auth::Biscuit::builder()
        .merge(mandate_spec::hop_block(&hop).unwrap())
        .fact("token(\"00000000-0000-4000-8000-000000000000\")")
        .unwrap()
        .root_key_id(key_id)
        .build(root_key)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_denied(
        &f.verifier.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(0),
        &["the root needs one principal(string) fact"],
    );
}

#[test]
fn a_hop_restating_root_facts_or_agents_breaks_the_chain() {
    let f = customers_family(1);
    let next = Agent::new("agent-2");
    let hop = || hop_block_for(&next, &customers_grant(), in_an_hour());
    let other = KeyPair::new();
    let cases: Vec<(BlockBuilder, &str)> = vec![
        (
            hop().code("principal(\"user:root\");").unwrap(),
            "cannot state principal(…); only the root does",
        ),
        (
            hop().code("max_depth(100);").unwrap(),
            "cannot state max_depth(…)",
        ),
        (
            hop().code("token(\"another-family\");").unwrap(),
            "cannot state token(…)",
        ),
        (
            hop().code("issued_at(2020-01-01T00:00:00Z);").unwrap(),
            "cannot state issued_at(…)",
        ),
        (
            hop()
                .fact(fact(
                    vocab::AGENT,
                    &[string("agent-3"), bytes(&other.public().to_bytes())],
                ))
                .unwrap(),
            "2 agent(…) facts",
        ),
        (
            datalog_block("check if operation(\"read\");"),
            "a hop needs exactly one agent(id, key_bytes) fact",
        ),
        (
            datalog_block("agent(\"agent-2\", hex:0011);"),
            "an Ed25519 public key is 32 bytes",
        ),
        (
            hop().code("purpose(\"one\"); purpose(\"two\");").unwrap(),
            "purpose(…) facts where at most one is allowed",
        ),
        (
            // An agent id that bypassed the attenuator's validation.
            BlockBuilder::new()
                .fact(fact(
                    vocab::AGENT,
                    &[
                        string("x\"), operation(\"delete"),
                        bytes(&other.public().to_bytes()),
                    ],
                ))
                .unwrap(),
            "agent id",
        ),
    ];
    for (block, needle) in cases {
        let token = append_hop(f.token(), &f.holder().key, block);
        let denial = assert_denied(
            &f.verifier.authorize(&token, &read_customer(1)),
            DenialKind::BrokenChain,
            Some(2),
            &["block 2 (hop 2)", needle],
        );
        assert_eq!(denial.block, Some(2));
    }
}

// ---- malformed tokens --------------------------------------------------------

fn malformed(d: &Decision, needle: &str) {
    assert_denied(d, DenialKind::MalformedToken, None, &[needle]);
    assert!(d.chain.is_none());
}

#[test]
fn truncated_garbage_and_empty_tokens_are_malformed() {
    let f = customers_family(2);
    let token = f.token();
    for len in [0, 1, 10, token.len() / 2, token.len() - 1] {
        malformed(
            &f.verifier.authorize(&token[..len], &read_customer(1)),
            "not a valid token",
        );
    }
    malformed(
        &f.verifier
            .authorize(b"this is not a token at all", &read_customer(1)),
        "not a valid token",
    );
    malformed(
        &f.verifier.authorize(&[0xff; 64], &read_customer(1)),
        "not a valid token",
    );
    malformed(
        &f.verifier
            .authorize(&vec![0u8; MAX_TOKEN_BYTES + 1], &read_customer(1)),
        "larger than",
    );
    // As text.
    malformed(
        &f.verifier.authorize_base64("", &read_customer(1)),
        "empty input",
    );
    malformed(
        &f.verifier.authorize_base64("   \n", &read_customer(1)),
        "empty input",
    );
    malformed(
        &f.verifier
            .authorize_base64("not*base64!", &read_customer(1)),
        "not URL-safe base64",
    );
    malformed(
        &f.verifier
            .authorize_base64(&"A".repeat(MAX_TOKEN_BYTES * 2), &read_customer(1)),
        "larger than",
    );
    let text = f.delegations[1].to_base64();
    malformed(
        &f.verifier
            .authorize_base64(&text[..text.len() / 2], &read_customer(1)),
        "not a valid token",
    );
}
