//! Expensive decisions never run on the async executor (SPEC §13): while
//! cold decisions are in progress — here held open on purpose, standing for
//! hostile tokens that take long to verify — a request with a token the
//! verifier has already verified is still answered, even on a runtime with a
//! single executor thread.
//!
//! Regression (issue 12): the middleware and the gateway decided every
//! request inline on the executor's threads, so two expensive tokens stopped
//! a server answering anyone. No timing is asserted: the legitimate request
//! either completes while the cold ones are held, or the test fails at its
//! (generous) deadline.
#![allow(clippy::unwrap_used, missing_docs)]

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use biscuit_auth::KeyPair;
use http::{Request, StatusCode};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Grant};
use mandate_verifier::http::{ColdDecisions, MandateLayer, RouteMap};
use mandate_verifier::{
    revocation::{Revocation, Target},
    CacheOptions, RootKeys, Verifier, VerifierError,
};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// A gate the held decisions wait at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    waiting: Mutex<usize>,
}

impl Gate {
    fn wait(&self) {
        *self.waiting.lock().unwrap() += 1;
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    fn waiting(&self) -> usize {
        *self.waiting.lock().unwrap()
    }
}

fn mint(issuer: &Issuer, principal: &str) -> (String, String) {
    let minted = issuer
        .mint(&MintRequest {
            principal: principal.into(),
            agent: "agent".into(),
            agent_key: KeyPair::new().public(),
            grant: Grant::parse(&["read:/api/**"], &[] as &[&str]).unwrap(),
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap();
    (token_to_text(&minted.token), minted.token_id.to_string())
}

fn get_with(token: &str) -> Request<Body> {
    Request::get("/api/items/1")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn cold_decisions_do_not_stall_requests_the_verifier_already_knows() {
    let issuer = Issuer::new(KeyPair::new());
    let (id, key) = issuer.keys().public_keys()[0];
    let (legit, _) = mint(&issuer, "user:alice");
    let (slow, slow_family) = mint(&issuer, "user:mallory");
    let gate = Arc::new(Gate::default());
    // The revocation lookup of the slow family's decisions blocks at the
    // gate, as a decision that takes long would; everyone else's is instant.
    let held = gate.clone();
    let list = move |targets: &[Target]| -> Result<Option<(usize, Revocation)>, VerifierError> {
        if targets.contains(&Target::Token(slow_family.clone())) {
            held.wait();
        }
        Ok(None)
    };
    let verifier = Verifier::new(RootKeys::new().with(id, key))
        .with_revocations(list)
        .with_cache(CacheOptions::default());
    let app = Router::new()
        .route("/api/items/{id}", get(|| async { "item" }))
        .layer(MandateLayer::new(verifier, RouteMap::new()).cold_decisions(ColdDecisions::new(2)));

    // Alice's token is verified once (cold, nothing held), then cached.
    let first = app.clone().oneshot(get_with(&legit)).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    // A watchdog: were a held decision to block the executor thread itself
    // (the regression), nothing in this test could run again; after a
    // minute the watchdog opens the gate and the test fails below instead
    // of hanging.
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (gate, fired) = (gate.clone(), fired.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            fired.store(true, std::sync::atomic::Ordering::SeqCst);
            gate.open();
        });
    }

    // Four slow decisions: two hold the blocking pool's permits, two queue.
    let slow_requests: Vec<_> = (0..4)
        .map(|_| tokio::spawn(app.clone().oneshot(get_with(&slow))))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while gate.waiting() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow decisions never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // With the single executor thread free, Alice is answered meanwhile.
    let answered = tokio::time::timeout(
        Duration::from_secs(60),
        app.clone().oneshot(get_with(&legit)),
    )
    .await
    .expect("a known token was not answered while cold decisions were held")
    .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    assert!(
        !fired.load(std::sync::atomic::Ordering::SeqCst),
        "the executor was blocked until the watchdog opened the gate"
    );
    // Only two slow decisions ran at once: the limit held.
    assert_eq!(gate.waiting(), 2);

    gate.open();
    for r in slow_requests {
        let resp = r.await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(gate.waiting(), 4);
}
