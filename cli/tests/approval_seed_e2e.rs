//! Issue 19's seed scenario end to end, with a person in the loop: real
//! processes — `mandate serve` (the finance approver, whose webhook points
//! at a receiver in this test), `mandate gateway` holding the `/api` route
//! for approval in front of a payments API — and the approver in headless
//! Chromium.
//!
//! The payments agent, unmodified (a plain HTTP client with its bearer
//! token), pays 50: it passes at once, nobody is told. It pays 150: the
//! gateway holds the call and files it; finance's webhook receives the
//! request, signed (the HMAC is checked here as a receiver would); the
//! approver opens the link the notification carries, signs in, reads "pay
//! 150 to /api/payments for org:acme via payments-agent (purpose pay
//! suppliers)" and clicks approve; the held call returns the upstream's 200,
//! and the webhook is told of the decision. It pays 1500: denied at once,
//! nothing filed, nobody told. A second 150 needs a second approval (the
//! first was spent). A payment the approver denies on the desk, with a
//! reason, reaches the agent as a 403 carrying that reason. The gateway's
//! audit log holds every decision and verifies.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "common/hold.rs"]
mod hold;
#[path = "common/webhook.rs"]
mod webhook;

use common::browser::{screenshot_dir, Browser};
use common::mandate;
use common::payments::Options;
use common::procs::wait_until;
use hold::{Answer, HoldGateway};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use webhook::{verified, Receiver};

const SECRET: &str = "finance-webhook-secret-0123456789";

fn text(b: &Browser, script: &str) -> String {
    b.eval(script).as_str().unwrap_or_default().to_string()
}

/// The agent pays `amount` on another thread (a held call blocks).
fn pay_in_background(g: &Arc<HoldGateway>, amount: i64) -> std::thread::JoinHandle<Answer> {
    let g = g.clone();
    std::thread::spawn(move || g.pay("/api", amount))
}

/// Waits for finance's `n`th notification; it, verified, as JSON.
fn notification(receiver: &Receiver, n: usize) -> Value {
    let got = receiver.wait_for("/finance", n);
    assert_eq!(got.len(), n, "one notification at a time: {got:?}");
    verified(&got[n - 1], SECRET.as_bytes())
}

/// The approver follows the notification's link to the request on the desk
/// (signing in the first time): the request's list item selector, once the
/// page shows it.
fn open_on_desk(b: &Browser, event: &Value, finance: &str, first: bool) -> String {
    let id = event["id"].as_str().unwrap();
    let link = event["desk_url"].as_str().unwrap();
    assert!(link.ends_with(&format!("/ui/approvals#{id}")), "{link}");
    b.goto(link);
    if first {
        assert!(
            text(b, "return document.body.innerText").contains("Approval desk: sign in"),
            "{}",
            text(b, "return document.body.innerText")
        );
        b.type_into("#token", finance);
        b.click("form.signin button");
    }
    let item = format!("li.request[data-id=\"{id}\"]");
    wait_until("the request on the desk", Duration::from_secs(20), || {
        b.eval(&format!("return document.querySelector('{item}') !== null")) == json!(true)
    });
    item
}

#[test]
fn a_person_approves_and_denies_on_the_desk_while_the_gateway_holds_the_payment() {
    let receiver = Receiver::start(&[]);
    let g = Arc::new(HoldGateway::start_with(Options {
        webhook: Some((receiver.url("/finance"), SECRET.into())),
        ..Options::default()
    }));
    let b = Browser::start();

    // 50: passes at once; nothing filed, nobody notified.
    let (status, _, body) = g.pay("/api", 50);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["paid"], 50);

    // 150: held. Finance's webhook gets the request, signed.
    let call = pay_in_background(&g, 150);
    let event = notification(&receiver, 1);
    assert_eq!(event["event"], "approval_requested");
    assert_eq!(event["approver"], "finance");
    assert_eq!(event["request"]["action"], "pay");
    assert_eq!(event["request"]["resource"], "/api/payments");
    assert_eq!(event["request"]["params"]["amount"], 150);
    assert_eq!(event["principal"], "org:acme");
    assert_eq!(event["agents"][0]["agent"], "payments-agent");
    assert_eq!(event["agents"][0]["purpose"], "pay suppliers");
    let first = event["id"].as_str().unwrap().to_string();
    wait_until("the payment held", Duration::from_secs(10), || {
        g.held_now() == 1.0
    });
    assert_eq!(g.seen.amounts(), vec![50], "nothing forwarded while held");

    // The approver follows the link, signs in and reads the request in
    // words, from the token's verification.
    let item = open_on_desk(&b, &event, &g.p.finance, true);
    assert_eq!(
        text(
            &b,
            &format!("return document.querySelector('{item} h2').innerText")
        ),
        "pay 150 to /api/payments for org:acme via payments-agent (purpose pay suppliers)"
    );
    let details = text(
        &b,
        &format!("return document.querySelector('{item}').innerText"),
    );
    for needle in [
        "On behalf of\norg:acme",
        "amount = 150",
        "payments-agent: purpose pay suppliers",
        "needs an approval by finance",
    ] {
        assert!(details.contains(needle), "{needle:?} not in:\n{details}");
    }
    std::fs::write(
        screenshot_dir().join("approval-seed-held.png"),
        b.screenshot(),
    )
    .unwrap();

    // Approve by clicking: the held call returns the upstream's answer.
    b.click(&format!("{item} form.approve button"));
    let (status, _, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["paid"], 150);
    assert_eq!(g.seen.amounts(), vec![50, 150]);
    let decided = notification(&receiver, 2);
    assert_eq!(decided["event"], "approval_decided");
    assert_eq!(decided["id"], first.as_str());
    assert_eq!(decided["status"], "approved", "{decided}");
    assert_eq!(
        g.p.record(&first)["decided_by"],
        "ops:fin via finance-desk as finance"
    );

    // 1500: beyond the grant; denied at once, nothing filed, nobody told.
    let (status, _, body) = g.pay("/api", 1500);
    assert_eq!(status, 403, "{body}");
    let denial: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denial["denial"]["kind"], "not_allowed", "{body}");
    assert!(g.p.pending().is_empty());
    assert_eq!(receiver.at("/finance").len(), 2);

    // A second 150: the first approval was spent; a second person-click.
    let call = pay_in_background(&g, 150);
    let event = notification(&receiver, 3);
    let second = event["id"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let item = open_on_desk(&b, &event, &g.p.finance, false);
    b.click(&format!("{item} form.approve button"));
    let (status, _, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(g.seen.amounts(), vec![50, 150, 150]);
    assert_eq!(notification(&receiver, 4)["status"], "approved");

    // A payment the approver denies on the desk, with a reason: the agent
    // gets a 403 carrying it.
    let call = pay_in_background(&g, 160);
    let event = notification(&receiver, 5);
    let third = event["id"].as_str().unwrap().to_string();
    let item = open_on_desk(&b, &event, &g.p.finance, false);
    b.type_into(
        &format!("#reason-{third}"),
        "supplier-7 is not on the approved list",
    );
    b.click(&format!("{item} form.deny button"));
    let (status, headers, body) = call.join().unwrap();
    assert_eq!(status, 403, "{body}");
    let denial: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denial["denial"]["kind"], "not_allowed", "{body}");
    let reason = denial["reason"].as_str().unwrap();
    for needle in [
        format!("approval request {third} was denied by ops:fin via finance-desk"),
        "supplier-7 is not on the approved list".to_string(),
    ] {
        assert!(reason.contains(&needle), "{needle:?} not in {reason}");
    }
    assert_eq!(headers["mandate-approval-id"], third.as_str());
    assert_eq!(
        g.seen.amounts(),
        vec![50, 150, 150],
        "the denied one never sent"
    );
    let told = notification(&receiver, 6);
    assert_eq!(told["status"], "denied", "{told}");
    // Decided requests are gone from the desk.
    b.goto(&format!("http://{}/ui/approvals", g.p.serve.addr));
    assert!(
        text(&b, "return document.body.innerText").contains("Nothing waits for your approval."),
        "{}",
        text(&b, "return document.body.innerText")
    );

    // The gateway's audit log: each decision, the approvals spent, and it
    // verifies.
    let mut g = Arc::try_unwrap(g).ok().unwrap();
    g.gateway.interrupt();
    let export = mandate(g.p.d(), &["audit", "export", "--db", "audit"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let decisions: Vec<(String, i64)> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l.get("record").cloned())
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_string(),
                r["request"]["params"]["amount"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let d = |k: &str, a: i64| (k.to_string(), a);
    assert_eq!(
        decisions,
        vec![
            d("allow", 50),
            d("needs_approval", 150),
            d("allow", 150),
            d("deny", 1500),
            d("needs_approval", 150),
            d("allow", 150),
            d("needs_approval", 160),
            d("deny", 160),
        ]
    );
    let verify = mandate(
        g.p.d(),
        &[
            "audit",
            "verify",
            "--db",
            "audit",
            "--public-key",
            &g.audit_pub,
        ],
    );
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}
