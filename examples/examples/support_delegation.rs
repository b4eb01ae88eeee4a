//! A support agent acting for alice delegates read-only access to a
//! sub-agent, offline, with its own key; an API server's verifier then allows
//! a read, denies a delete and a 500-row read, and shows the chain and the
//! reasons. The same scenario as the README's quickstart, through the
//! library instead of the CLI.
//!
//! Run with: `cargo run -p mandate-examples --example support_delegation`

use biscuit_auth::KeyPair;
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use mandate_verifier::{RootKeys, Verifier};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The issuer, and two agents with their own keys.
    let issuer = Issuer::new(KeyPair::new());
    let support = KeyPair::new();
    let sub = KeyPair::new();

    // Alice's support agent may read and list customers, 100 rows at most.
    let root = issuer.mint(&MintRequest {
        principal: "user:alice".into(),
        agent: "support-agent".into(),
        agent_key: support.public(),
        grant: Grant::parse(&["read,list:/api/customers/*"], &["rows<=100"])?,
        ttl: Duration::from_secs(3600),
        purpose: Some("answer support tickets".into()),
        max_depth: Some(2),
    })?;
    println!(
        "minted token {} ({} bytes)",
        root.token_id,
        root.token.len()
    );

    // Offline: the support agent hands read-only access to a sub-agent.
    let child = delegate(
        &root.token,
        &support,
        &Delegation {
            agent: "sub-agent".into(),
            agent_key: sub.public(),
            grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str])?,
            ttl: Some(Duration::from_secs(600)),
            purpose: Some("look up customer 42".into()),
        },
    )?;
    println!("delegated: {} ({} bytes)\n", child.chain, child.token.len());

    // The API server's verifier, trusting the issuer's keys by id.
    let mut keys = RootKeys::new();
    for (id, key) in issuer.keys().public_keys() {
        keys = keys.with(id, key);
    }
    let verifier = Verifier::new(keys);

    let requests = [
        Request::new("read", "/api/customers/42").param("rows", 10),
        Request::new("delete", "/api/customers/42").param("rows", 10),
        Request::new("read", "/api/customers/42").param("rows", 500),
    ];
    for request in &requests {
        let decision = verifier.authorize(&child.token, request);
        println!("{} {} → {}", request.action, request.resource, decision);
    }
    Ok(())
}
