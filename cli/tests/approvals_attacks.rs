//! Attacks on issue 19's human checkpoints (THREATS.md), with real
//! processes: `mandate serve` with the finance approver, `mandate gateway`
//! holding requests for approval in front of a payments API and an MCP
//! server (`common/hold.rs`).
//!
//! Positions and what each gets:
//! - **Narrow token holder, holding the gateway's places.** An agent whose
//!   token needs approval above 100 sends many payments through a held
//!   route: each is filed and held for up to the route's hold. Before the
//!   fix one token family could take all 1 024 places (and the 64 MiB of
//!   bodies), and every other agent's request needing approval was then
//!   answered `needs_approval` at once instead of being held. Now one token
//!   family (an agent and everything delegated from it) holds at most an
//!   eighth of them; past its share its own requests are answered at once,
//!   nothing filed, and another family's request is still held.
//!   (`one_token_family_cannot_take_every_held_place`)
//! - **Narrow token holder, exhausting the long-poll.** `GET
//!   /v1/approvals/{id}?wait=` needs no token, only an id, and the service
//!   lets 1 000 requests wait at once. Before the fix an agent waiting 1 000
//!   times on its own request took every place: every other agent (and
//!   every gateway holding a call) was answered 503. Now the waiters of one
//!   token family's requests take at most a quarter of the places; past
//!   that they are refused (503 naming the share) while another family's
//!   waiter still waits and is woken by its decision.
//!   (`one_token_family_cannot_take_every_waiting_place`)
//!
//! - **Authority gap in MCP approvals** (fixed: those arguments are one
//!   parameter, `mcp.other_arguments`, bound by the digest). A `tools/call` argument that is not
//!   a string or an integer (a list, an object, a boolean) is not a
//!   parameter (`mcp::parameter`), so it is neither in the approval's
//!   digest nor shown to the approver. An approval of "pay 150" (asked by a
//!   held call, or filed by the agent) lets the agent send the same call
//!   with any other list, object or boolean arguments: allowed, forwarded.
//!   (`an_approval_of_an_mcp_call_covers_every_argument_forwarded`)
//!
//! - **Narrow token holder, flooding the approval desk.** `POST
//!   /v1/approvals` queued every request that needs approval: one agent
//!   could file thousands (each waiting 10 minutes on the desk, each
//!   notified to the approvers' webhooks) and bury the requests of every
//!   other agent. Now one token family has at most 20 requests waiting
//!   (`max_pending_per_family`); more are 429 with `Retry-After` (at the
//!   service and through a held gateway route), counted under one lock so
//!   concurrent filings cannot pass together; another family files as
//!   before; a decision frees a place.
//!   (`one_token_family_cannot_flood_the_approval_desk`)
//!
//! What held, tried and not written as separate tests (see the gateway_hold
//! and approval_desk tests for the behaviours they rely on): the request
//! filed is the decision the middleware handed over and the request sent
//! again is the same head and body, so an approval of X (digest of action,
//! resource, parameters) never admits Y; the approval is spent by the
//! gateway's verifier (replay record, by approver signature); a client gone
//! leaves an approval only the holder of the same token can attach.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "common/hold.rs"]
mod hold;

use common::mandate;
use common::payments::{issue, key, Options, Payments};
use common::procs::{http, http_client, wait_until};
use hold::HoldGateway;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The places one token family may hold: 1 024 / 8.
const SHARE: usize = 128;

#[test]
fn one_token_family_cannot_take_every_held_place() {
    // The service queues up to 1 000 requests of one family here, so that
    // the gateway's own share is what stops the family.
    let g = Arc::new(HoldGateway::start_with(Options {
        max_pending_per_family: Some(1_000),
        ..Options::default()
    }));
    // The payments agent fills its family's share: each payment above 100
    // is filed and held (the route holds up to 2m).
    let calls: Vec<_> = (0..SHARE)
        .map(|i| {
            let g = g.clone();
            std::thread::spawn(move || g.pay("/api", 101 + i as i64))
        })
        .collect();
    wait_until("the share held", Duration::from_secs(120), || {
        g.held_now() == SHARE as f64
    });
    let filed = g.p.pending();
    assert_eq!(filed.len(), SHARE);

    // One more of the same family, on another held route: answered at once
    // with the verifier's needs_approval, not filed, not held.
    let (status, headers, body) = g.pay("/brief", 300);
    assert_eq!(status, 403, "{body}");
    let denial: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denial["denial"]["kind"], "needs_approval", "{body}");
    let reason = denial["reason"].as_str().unwrap();
    assert!(reason.contains("needs an approval by finance"), "{reason}");
    assert!(
        !reason.contains("not approved within"),
        "answered at once, not held until the hold ended: {reason}"
    );
    assert!(
        headers.get("mandate-approval-id").is_none(),
        "nothing filed: {headers:?}"
    );
    assert_eq!(g.p.pending(), filed, "nothing filed past the share");
    assert_eq!(g.held_now(), SHARE as f64);

    // Another token family (the MCP token, minted on its own) is still held.
    let other = {
        let g = g.clone();
        std::thread::spawn(move || {
            let resp = g.mcp_pay(400, "application/json", None);
            let status = resp.status().as_u16();
            (status, resp.text().unwrap())
        })
    };
    let id = g.p.next_filed(&filed);
    wait_until("the other family held", Duration::from_secs(30), || {
        g.held_now() == SHARE as f64 + 1.0
    });
    g.p.deny(&id, "not this one");
    let (status, body) = other.join().unwrap();
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not this one") && message.contains(&id),
        "{message}"
    );

    // The share ends with its requests: each denied, each answered so.
    for id in &filed {
        g.p.deny(id, "too many at once");
    }
    for call in calls {
        let (status, _, body) = call.join().unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("too many at once"), "{body}");
    }
    wait_until("nothing held", Duration::from_secs(30), || {
        g.held_now() == 0.0
    });
    // A place freed is the family's again: held, and filed.
    let again = {
        let g = g.clone();
        std::thread::spawn(move || g.pay("/api", 150))
    };
    let known: HashSet<String> = filed.iter().cloned().chain([id]).collect();
    let id = g.p.next_filed(&known);
    g.p.approve(&id);
    let (status, _, body) = again.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        g.seen.amounts(),
        vec![150],
        "only the approved one forwarded"
    );
}

/// The service's `mandate_approvals_waiting` now.
fn waiting(p: &Payments) -> f64 {
    http_client()
        .get(format!("{}/metrics", p.url()))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("mandate_approvals_waiting "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Files a payment of `amount` with `token`: the request's id.
fn file(p: &Payments, token: &str, amount: i64) -> String {
    let body = serde_json::json!({
        "action": "pay", "resource": "/api/payments", "params": { "amount": amount }
    });
    let (status, r) = http(
        &p.serve.addr,
        "POST",
        "/v1/approvals",
        &body.to_string(),
        Some(token),
    );
    assert_eq!(status, 201, "{r}");
    r["id"].as_str().unwrap().to_string()
}

/// The places one token family's requests may wait in: 1 000 / 4.
const WAIT_SHARE: usize = 250;

#[test]
fn one_token_family_cannot_take_every_waiting_place() {
    let p = Arc::new(Payments::start());
    let own = file(&p, &p.pay, 150);
    // The payments agent waits on its own request, again and again.
    let waiters: Vec<_> = (0..WAIT_SHARE)
        .map(|_| {
            let (addr, path) = (
                p.serve.addr.clone(),
                format!("/v1/approvals/{own}?wait=50s"),
            );
            std::thread::spawn(move || http(&addr, "GET", &path, "", None))
        })
        .collect();
    wait_until("the share waiting", Duration::from_secs(60), || {
        waiting(&p) == WAIT_SHARE as f64
    });
    // One more wait by that family (on another of its requests): refused.
    let second = file(&p, &p.pay, 160);
    let (status, body) = http(
        &p.serve.addr,
        "GET",
        &format!("/v1/approvals/{second}?wait=1s"),
        "",
        None,
    );
    assert_eq!(status, 503, "{body}");
    let why = body["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("of this token family are already waiting"),
        "{body}"
    );
    // Without wait it is answered as ever.
    let (status, body) = http(
        &p.serve.addr,
        "GET",
        &format!("/v1/approvals/{second}"),
        "",
        None,
    );
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")));

    // Another token family's agent still waits, and is woken by its
    // decision.
    let d = p.d();
    let rule = format!("pay when amount>100 by finance={}", p.finance_pub);
    let other_token = issue(
        d,
        &[
            "--principal",
            "org:acme",
            "--to",
            "refunds-agent",
            "--to-key",
            &p.agent_pub,
            "--allow",
            "pay:/api/payments",
            "--where",
            "amount<=1000",
            "--approval",
            &rule,
        ],
    );
    let other = file(&p, &other_token, 170);
    let other_waiter = {
        let (addr, path) = (
            p.serve.addr.clone(),
            format!("/v1/approvals/{other}?wait=50s"),
        );
        std::thread::spawn(move || http(&addr, "GET", &path, "", None))
    };
    wait_until("the other family waiting", Duration::from_secs(30), || {
        waiting(&p) == WAIT_SHARE as f64 + 1.0
    });
    p.approve(&other);
    let (status, record) = other_waiter.join().unwrap();
    assert_eq!((status, record["status"].as_str()), (200, Some("approved")));

    // The agent's own request decided: every one of its waiters answered.
    p.deny(&own, "one is enough");
    for w in waiters {
        let (status, record) = w.join().unwrap();
        assert_eq!((status, record["status"].as_str()), (200, Some("denied")));
    }
    wait_until("nothing waiting", Duration::from_secs(30), || {
        waiting(&p) == 0.0
    });
    // The share is the family's again.
    let (status, body) = http(
        &p.serve.addr,
        "GET",
        &format!("/v1/approvals/{second}?wait=1s"),
        "",
        None,
    );
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")));
}

#[test]
fn an_approval_of_an_mcp_call_covers_every_argument_forwarded() {
    let g = HoldGateway::start();
    let d = g.p.d();
    // The agent asks for (and a person approves) "pay 150" on /mcp: what a
    // held call of {"amount": 150, "recipients": ["supplier-7"]} files.
    let asked = serde_json::json!({
        "action": "pay", "resource": "/mcp", "params": { "amount": 150 }
    });
    let (status, r) = http(
        &g.p.serve.addr,
        "POST",
        "/v1/approvals",
        &asked.to_string(),
        Some(&g.mcp_token),
    );
    assert_eq!(status, 201, "{r}");
    let approved = g.p.approve(r["id"].as_str().unwrap());
    std::fs::write(
        d.join("block.b64"),
        approved["approval_block"].as_str().unwrap(),
    )
    .unwrap();
    let out = mandate(
        d,
        &["attach-approval", "--approval", "block.b64", "mcp.tok"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The same amount to recipients the approver never saw.
    let call = serde_json::json!({
        "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": { "name": "pay", "arguments": { "amount": 150, "recipients": ["attacker"] } }
    });
    let resp = http_client()
        .post(g.url("/mcp"))
        .bearer_auth(out.stdout.trim())
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(call.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    assert_ne!(
        status, 200,
        "an approval of other arguments was used: {body}"
    );
    assert_eq!(
        g.seen.hits(),
        0,
        "nothing the approver did not see forwarded"
    );
}

/// Files a payment of `amount` with `token`: (status, headers, body).
fn try_file(p: &Payments, token: &str, amount: i64) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = serde_json::json!({
        "action": "pay", "resource": "/api/payments", "params": { "amount": amount }
    });
    let resp = http_client()
        .post(format!("{}/v1/approvals", p.url()))
        .bearer_auth(token.trim())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (
        status,
        headers,
        serde_json::from_str(&resp.text().unwrap()).unwrap_or(Value::Null),
    )
}

/// Pending approval requests one token family may have by default.
const PENDING_SHARE: usize = 20;

#[test]
fn one_token_family_cannot_flood_the_approval_desk() {
    let g = HoldGateway::start();
    let p = &g.p;
    // The payments agent files as fast as it can, 40 at once: the desk
    // (and finance's notifications) get its first 20, the rest are 429.
    let p_addr = p.url();
    let token = p.pay.clone();
    let results: Vec<(u16, Option<String>, Value)> = (0..2 * PENDING_SHARE)
        .map(|i| {
            let (url, token) = (p_addr.clone(), token.clone());
            std::thread::spawn(move || {
                let resp = http_client()
                    .post(format!("{url}/v1/approvals"))
                    .bearer_auth(token.trim())
                    .header("content-type", "application/json")
                    .body(
                        serde_json::json!({
                            "action": "pay", "resource": "/api/payments",
                            "params": { "amount": 101 + i as i64 }
                        })
                        .to_string(),
                    )
                    .send()
                    .unwrap();
                let status = resp.status().as_u16();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (
                    status,
                    retry,
                    serde_json::from_str(&resp.text().unwrap()).unwrap_or(Value::Null),
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let queued = results.iter().filter(|r| r.0 == 201).count();
    assert_eq!(queued, PENDING_SHARE, "{results:?}");
    let filed = p.pending();
    assert_eq!(filed.len(), PENDING_SHARE);
    for (status, retry, body) in results.iter().filter(|r| r.0 != 201) {
        assert_eq!(*status, 429, "{body}");
        let why = body["error"].as_str().unwrap();
        assert!(
            why.contains("already has 20 approval requests waiting for a decision (at most 20)"),
            "{why}"
        );
        // Retry once the first expires: the approval's suggested end (the
        // service's default 10 minutes).
        let after: u64 = retry.as_deref().unwrap().parse().unwrap();
        assert!((1..=600).contains(&after), "{after}");
        assert_eq!(body["retry_after"], after);
    }

    // A token delegated from it is the same family: refused too.
    let d = p.d();
    let sub = key(d, "sub.key");
    let r = mandate(
        d,
        &[
            "attenuate",
            "--key",
            "agent.key",
            "--to",
            "sub-agent",
            "--to-key",
            &sub,
            "--allow",
            "pay:/api/payments",
            "--ttl",
            "30m",
            "pay.tok",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (status, _, body) = try_file(p, r.stdout.trim(), 150);
    assert_eq!(status, 429, "{body}");

    // Through the gateway: the held route answers 429 with the reason and
    // when to retry; nothing is held, nothing forwarded.
    let (status, headers, body) = g.pay("/api", 150);
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let why = error["error"].as_str().unwrap();
    assert!(
        why.contains("the approval service does not queue it now") && why.contains("at most 20"),
        "{why}"
    );
    assert_eq!(g.seen.hits(), 0);
    assert_eq!(g.held_now(), 0.0);

    // Another token family is not affected.
    let rule = format!("pay when amount>100 by finance={}", p.finance_pub);
    let other_token = issue(
        d,
        &[
            "--principal",
            "org:acme",
            "--to",
            "refunds-agent",
            "--to-key",
            &p.agent_pub,
            "--allow",
            "pay:/api/payments",
            "--where",
            "amount<=1000",
            "--approval",
            &rule,
        ],
    );
    let other = file(p, &other_token, 170);

    // A request decided frees its place: the family files again.
    let one = filed.iter().next().unwrap();
    p.deny(one, "one at a time");
    let (status, _, body) = try_file(p, &p.pay, 180);
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = try_file(p, &p.pay, 190);
    assert_eq!(status, 429, "{body}");
    assert!(p.pending().contains(&other));
}
