//! The gateway holds a request that needs approval (`hold_for_approval`):
//! real processes — `mandate serve` with the finance approver, `mandate
//! gateway` in front of a small payments API and MCP server. The payments
//! agent, unmodified, pays 50 (passes at once), 150 (held; the finance desk
//! approves over HTTP; the held call returns the upstream's 200), 1500
//! (denied at once, nothing filed); a second 150 needs a second approval; a
//! denial reaches the agent with the approver's reason; a hold that ends
//! first is `needs_approval` naming the approval id; a client that goes
//! away (or closes its event stream) ends the wait and nothing is
//! forwarded (the approval stays unspent); an issuer service that cannot be
//! reached is a 503; an MCP call held with an event stream gets progress
//! notifications (or keep-alive comments) and then its result on the same
//! stream; a denial there is a JSON-RPC error. The audit log holds the
//! `needs_approval` decision, the allowed one with the approval in its
//! chain, and each denial naming the approval id and the approver.
//!
//! Positions (THREATS.md): the approved agent — the gateway spends the
//! approval through the verifier, once; a client that left cannot have it
//! spent for it. The decision and the effect — the gateway files the
//! request exactly as decided and sends the very same bytes again.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "common/hold.rs"]
mod hold;

use common::mandate;
use common::procs::{http_client, wait_until};
use hold::HoldGateway;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// Starts `f` on another thread (a held call blocks until decided).
fn background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(f)
}

#[test]
fn the_seed_scenario_pays_at_once_holds_and_denies() {
    let g = HoldGateway::start();
    let g = std::sync::Arc::new(g);

    // 50: no approval needed, passes at once; nothing filed.
    let (status, _, body) = g.pay("/api", 50);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["paid"], 50);
    assert!(g.p.pending().is_empty());

    // 150: held; filed at the issuer service with the agent's token; the
    // finance desk approves; the held call returns the upstream's answer.
    let known = HashSet::new();
    let call = {
        let g = g.clone();
        background(move || g.pay("/api", 150))
    };
    let first = g.p.next_filed(&known);
    let filed = g.p.record(&first);
    assert_eq!(filed["request"]["action"], "pay");
    assert_eq!(filed["request"]["params"]["amount"], 150);
    assert_eq!(filed["chain"]["principal"], "org:acme");
    assert_eq!(g.seen.hits(), 1, "nothing forwarded while held");
    wait_until("the hold counted", Duration::from_secs(10), || {
        g.held_now() == 1.0
    });
    g.p.approve(&first);
    let (status, _, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["paid"], 150);
    assert_eq!(g.seen.amounts(), vec![50, 150]);
    // The upstream never sees the Mandate token (with or without approval).
    assert!(g
        .seen
        .authorization
        .lock()
        .unwrap()
        .iter()
        .all(|a| a.is_none()));

    // 1500: beyond the grant; denied at once, nothing filed.
    let (status, _, body) = g.pay("/api", 1500);
    assert_eq!(status, 403, "{body}");
    let denial: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denial["denial"]["kind"], "not_allowed", "{body}");
    assert_eq!(g.p.pending().len(), 0);

    // A second 150: a second approval (single use: the first is spent).
    let call = {
        let g = g.clone();
        background(move || g.pay("/api", 150))
    };
    let known: HashSet<String> = [first.clone()].into();
    let second = g.p.next_filed(&known);
    assert_ne!(second, first);
    // Another validity: two approvals of one request signed in the same
    // second with the same expiry are the same bytes (Ed25519 signatures
    // are deterministic), hence one approval, already spent (reported).
    g.p.approve_for(&second, "11m");
    let (status, _, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(g.seen.amounts(), vec![50, 150, 150]);

    // A denial by the approver reaches the agent with the reason.
    let call = {
        let g = g.clone();
        background(move || g.pay("/api", 160))
    };
    let known: HashSet<String> = [first.clone(), second.clone()].into();
    let third = g.p.next_filed(&known);
    g.p.deny(&third, "supplier-7 is not on the approved list");
    let (status, headers, body) = call.join().unwrap();
    assert_eq!(status, 403, "{body}");
    let denial: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denial["denial"]["kind"], "not_allowed", "{body}");
    let reason = denial["reason"].as_str().unwrap();
    let by = format!("approval request {third} was denied by ops:fin via finance-desk");
    for needle in [
        by.as_str(),
        "supplier-7 is not on the approved list",
        "principal \"org:acme\"",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {reason}");
    }
    assert_eq!(headers["mandate-approval-id"], third.as_str());
    assert_eq!(
        g.seen.hits(),
        3,
        "the denied payment never reached the upstream"
    );
    assert_eq!(g.held_now(), 0.0);
    assert_eq!(
        g.metric("mandate_gateway_holds_total{route=\"/api\",outcome=\"approved\"}"),
        2.0
    );
    assert_eq!(
        g.metric("mandate_gateway_holds_total{route=\"/api\",outcome=\"denied\"}"),
        1.0
    );

    // The audit log: the decisions, in order, with who and why.
    let mut g = std::sync::Arc::try_unwrap(g).ok().unwrap();
    g.gateway.interrupt();
    let export = mandate(g.p.d(), &["audit", "export", "--db", "audit"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let records: Vec<Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("record").is_some())
        .map(|l| l["record"].clone())
        .collect();
    let seen: Vec<(String, i64, String)> = records
        .iter()
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_string(),
                r["request"]["params"]["amount"].as_i64().unwrap_or(-1),
                r["denial"]["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expect = |d: &str, a: i64, k: &str| (d.to_string(), a, k.to_string());
    assert_eq!(
        seen,
        vec![
            expect("allow", 50, ""),
            expect("needs_approval", 150, "needs_approval"),
            expect("allow", 150, ""),
            expect("deny", 1500, "not_allowed"),
            expect("needs_approval", 150, "needs_approval"),
            expect("allow", 150, ""),
            expect("needs_approval", 160, "needs_approval"),
            expect("deny", 160, "not_allowed"),
        ],
        "{}",
        export.stdout
    );
    let denied = records[7]["denial"]["reason"].as_str().unwrap();
    assert!(
        denied.contains(&third) && denied.contains("finance-desk"),
        "{denied}"
    );
    // The allowed payment was decided on the chain of the agent's token,
    // with the approval attached: who approved, which request.
    assert_eq!(records[2]["chain"]["principal"], "org:acme");
    let approval = &records[2]["chain"]["approvals"][0];
    assert_eq!(approval["approver_key"], g.p.finance_pub.as_str());
    assert_eq!(approval["digest"], g.p.record(&first)["approval"]["digest"]);
    // The needs_approval record has none.
    assert!(records[1]["chain"].get("approvals").is_none());
    assert_ne!(
        records[2]["chain"]["approvals"][0]["approver_signature"],
        records[5]["chain"]["approvals"][0]["approver_signature"],
        "two approvals, each spent once"
    );
    assert_eq!(verify_audit(&g), 0);
}

/// `mandate audit verify` of the gateway's log: its exit code.
fn verify_audit(g: &HoldGateway) -> i32 {
    let run = mandate(
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
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    run.code
}

#[test]
fn a_hold_that_ends_first_is_needs_approval_naming_the_request() {
    let g = HoldGateway::start();
    // `/brief` holds for 2s; nobody decides.
    let (status, headers, body) = g.pay("/brief", 150);
    assert_eq!(status, 403, "{body}");
    let denial: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denial["denial"]["kind"], "needs_approval", "{body}");
    let id = headers["mandate-approval-id"].to_str().unwrap().to_string();
    let reason = denial["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "not approved within 2s: approval request {id} is still pending"
        )),
        "{reason}"
    );
    assert_eq!(g.p.record(&id)["status"], "pending");
    assert_eq!(g.seen.hits(), 0);
    // Approved later, the agent can still use it itself: the approval was
    // never spent by the gateway.
    g.p.approve(&id);
    let block = g.p.record(&id)["approval_block"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(g.p.d().join("block"), &block).unwrap();
    let attached = mandate(
        g.p.d(),
        &["attach-approval", "--approval", "block", "pay.tok"],
    );
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    let resp = http_client()
        .post(g.url("/brief/payments"))
        .bearer_auth(attached.stdout.trim())
        .header("content-type", "application/json")
        .body((json!({ "amount": 150 })).to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(g.seen.amounts(), vec![150]);
}

#[test]
fn a_client_that_goes_away_ends_the_wait_and_nothing_is_forwarded() {
    let g = HoldGateway::start();
    let body = json!({ "amount": 150 }).to_string();
    let mut conn = std::net::TcpStream::connect(&g.gateway.addr).unwrap();
    write!(
        conn,
        "POST /api/payments HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        g.p.pay.trim(),
        body.len()
    )
    .unwrap();
    let id = g.p.next_filed(&HashSet::new());
    wait_until("the hold", Duration::from_secs(10), || g.held_now() == 1.0);
    drop(conn);
    // The wait ends with the connection.
    wait_until("the hold to end", Duration::from_secs(30), || {
        g.held_now() == 0.0
    });
    assert_eq!(
        g.metric("mandate_gateway_holds_total{route=\"/api\",outcome=\"cancelled\"}"),
        1.0
    );
    g.p.approve(&id);
    // Nothing was forwarded, and the approval is unspent: the agent can
    // still use it (once).
    let block = g.p.record(&id)["approval_block"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(g.p.d().join("block"), &block).unwrap();
    let attached = mandate(
        g.p.d(),
        &["attach-approval", "--approval", "block", "pay.tok"],
    );
    let send = || {
        http_client()
            .post(g.url("/api/payments"))
            .bearer_auth(attached.stdout.trim())
            .header("content-type", "application/json")
            .body((json!({ "amount": 150 })).to_string())
            .send()
            .unwrap()
    };
    assert_eq!(g.seen.hits(), 0);
    assert_eq!(send().status().as_u16(), 200);
    let again = send();
    assert_eq!(again.status().as_u16(), 403);
    assert!(again.text().unwrap().contains("approval_replayed"));
    assert_eq!(g.seen.hits(), 1);
}

#[test]
fn a_request_with_a_proof_of_possession_is_not_held() {
    let g = HoldGateway::start();
    // The proof signs the token's bytes, which an approval changes: the
    // gateway could not send it again. (This token does not require one:
    // the verifier ignores it and answers needs_approval at once.)
    let resp = http_client()
        .post(g.url("/api/payments"))
        .bearer_auth(g.p.pay.trim())
        .header(
            "mandate-proof",
            "v=2;t=1;n=abcdefgh;s=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .header("content-type", "application/json")
            .body((json!({ "amount": 150 })).to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert_eq!(body["denial"]["kind"], "needs_approval", "{body}");
    assert!(g.p.pending().is_empty(), "nothing filed");
}

/// Reads server-sent events from `resp` until `until` is true of one: every
/// event read (comments as `: …`, data as the JSON text).
fn read_events(
    reader: &mut BufReader<reqwest::blocking::Response>,
    mut until: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let mut events = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the stream ended after {events:?}");
        let l = line.trim_end_matches('\n');
        let event = if let Some(c) = l.strip_prefix(':') {
            format!(":{c}")
        } else if let Some(d) = l.strip_prefix("data: ") {
            d.to_string()
        } else {
            continue;
        };
        let done = until(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

#[test]
fn an_mcp_call_held_streams_progress_then_its_result() {
    let g = HoldGateway::start();
    let resp = g.mcp_pay(
        150,
        "application/json, text/event-stream",
        Some(json!({ "progressToken": "pay-150" })),
    );
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut reader = BufReader::new(resp);
    // The first notice comes at once and names the approval request.
    let first = read_events(&mut reader, |_| true);
    let notice: Value = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(notice["method"], "notifications/progress", "{notice}");
    assert_eq!(notice["params"]["progressToken"], "pay-150");
    assert_eq!(notice["params"]["total"], 120);
    let message = notice["params"]["message"].as_str().unwrap();
    let id = message
        .strip_prefix("waiting for approval ")
        .unwrap()
        .to_string();
    assert_eq!(g.p.record(&id)["request"]["resource"], "/mcp");
    assert_eq!(g.seen.hits(), 0);
    g.p.approve(&id);
    let rest = read_events(&mut reader, |e| e.contains("\"result\""));
    let result: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "paid 150");
    // Every notice before it was a progress notification, increasing.
    let mut last = -1.0;
    for e in first.iter().chain(&rest[..rest.len() - 1]) {
        let n: Value = serde_json::from_str(e).unwrap();
        let p = n["params"]["progress"].as_f64().unwrap();
        assert!(p > last, "{first:?} {rest:?}");
        last = p;
    }
    assert_eq!(g.seen.amounts(), vec![150]);
}

#[test]
fn an_mcp_call_held_without_a_progress_token_gets_comments_and_its_denial() {
    let g = HoldGateway::start();
    let resp = g.mcp_pay(150, "application/json, text/event-stream", None);
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = BufReader::new(resp);
    let first = read_events(&mut reader, |_| true);
    let id = first[0]
        .strip_prefix(": waiting for approval ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    g.p.deny(&id, "no MCP payments today");
    let rest = read_events(&mut reader, |e| e.contains("\"error\""));
    let error: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(error["id"], 7);
    assert_eq!(error["error"]["code"], -32080, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("no MCP payments today"), "{message}");
    assert!(message.contains(&id), "{message}");
    let mut tail = String::new();
    reader.read_to_string(&mut tail).unwrap();
    assert!(tail.trim().is_empty(), "the stream ends: {tail:?}");
    assert_eq!(g.seen.hits(), 0);
}

#[test]
fn an_mcp_client_that_takes_json_only_is_held_and_answered_in_json() {
    let g = HoldGateway::start();
    let g = std::sync::Arc::new(g);
    let call = {
        let g = g.clone();
        background(move || {
            let resp = g.mcp_pay(150, "application/json", None);
            let status = resp.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&resp.text().unwrap()).unwrap(),
            )
        })
    };
    let id = g.p.next_filed(&HashSet::new());
    g.p.approve(&id);
    let (status, result) = call.join().unwrap();
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["result"]["content"][0]["text"], "paid 150");
}

#[test]
fn an_mcp_client_that_closes_its_event_stream_ends_the_wait() {
    let g = HoldGateway::start();
    let resp = g.mcp_pay(
        150,
        "application/json, text/event-stream",
        Some(json!({ "progressToken": 1 })),
    );
    let mut reader = BufReader::new(resp);
    let first = read_events(&mut reader, |_| true);
    let notice: Value = serde_json::from_str(&first[0]).unwrap();
    let id = notice["params"]["message"]
        .as_str()
        .unwrap()
        .strip_prefix("waiting for approval ")
        .unwrap()
        .to_string();
    drop(reader);
    wait_until("the hold to end", Duration::from_secs(30), || {
        g.held_now() == 0.0
    });
    assert_eq!(
        g.metric("mandate_gateway_holds_total{route=\"/mcp\",outcome=\"cancelled\"}"),
        1.0
    );
    g.p.approve(&id);
    assert_eq!(g.seen.hits(), 0, "nothing forwarded");
}

#[test]
fn an_unreachable_approval_service_is_a_503_and_nothing_is_forwarded() {
    let g = HoldGateway::start();
    let d = g.p.d();
    let dead = common::procs::free_port();
    let config = std::fs::read_to_string(d.join("gateway.toml"))
        .unwrap()
        .replace(&g.p.url(), &format!("http://127.0.0.1:{dead}"))
        .replace("replay_db = \"replay\"", "replay_db = \"replay2\"")
        .replace("audit_dir = \"audit\"", "audit_dir = \"audit2\"");
    std::fs::write(d.join("dead.toml"), config).unwrap();
    let gateway =
        common::procs::Proc::start(["gateway", "--config", d.join("dead.toml").to_str().unwrap()]);
    let resp = http_client()
        .post(format!("http://{}/api/payments", gateway.addr))
        .bearer_auth(g.p.pay.trim())
        .header("content-type", "application/json")
        .body(json!({ "amount": 150 }).to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body = resp.text().unwrap();
    assert!(
        body.contains("the approval service could not be reached to file it"),
        "{body}"
    );
    assert_eq!(g.seen.hits(), 0);
}

/// The issuer service behind TLS (a TLS-terminating proxy in front of it):
/// the gateway files and waits over https, verifying the service's
/// certificate against the CA it trusts (`SSL_CERT_FILE`); a gateway that
/// does not trust that CA files nothing (503, nothing forwarded).
#[test]
fn the_gateway_reaches_an_issuer_service_over_https_and_verifies_it() {
    let g = std::sync::Arc::new(HoldGateway::start_with(common::payments::Options {
        service_over_tls: true,
        ..Default::default()
    }));
    let call = {
        let g = g.clone();
        background(move || g.pay("/api", 150))
    };
    let id = g.p.next_filed(&HashSet::new());
    g.p.approve(&id);
    let (status, _, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(g.seen.amounts(), vec![150]);
    let tls = g.tls.as_ref().unwrap();
    assert!(
        tls.handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "filed over TLS"
    );

    // Another gateway, same routes, without the test CA: the service's
    // certificate is not trusted; nothing is filed or forwarded.
    let d = g.p.d();
    let config = std::fs::read_to_string(d.join("gateway.toml"))
        .unwrap()
        .replace("replay_db = \"replay\"", "replay_db = \"replay2\"")
        .replace("audit_dir = \"audit\"", "audit_dir = \"audit2\"");
    std::fs::write(d.join("gateway2.toml"), config).unwrap();
    let untrusting = common::procs::Proc::start_env(
        [
            "gateway",
            "--config",
            d.join("gateway2.toml").to_str().unwrap(),
        ],
        &[("SSL_CERT_FILE", d.join("tls.pem").as_path())],
    );
    let pending = g.p.pending();
    let resp = http_client()
        .post(format!("http://{}/api/payments", untrusting.addr))
        .bearer_auth(g.p.pay.trim())
        .header("content-type", "application/json")
        .body(json!({ "amount": 150 }).to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the approval service could not be reached") && body.contains("certificate"),
        "{body}"
    );
    assert_eq!(g.p.pending(), pending, "nothing filed");
    assert_eq!(g.seen.amounts(), vec![150], "nothing forwarded");
}
