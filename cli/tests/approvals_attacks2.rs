//! A second attack pass on issue 19's human checkpoints (THREATS.md), with
//! real processes: `mandate serve` with the finance approver, `mandate
//! gateway` holding requests for approval (`common/hold.rs`), a webhook
//! receiver (`common/webhook.rs`).
//!
//! Found and fixed:
//! - **Person being misled: arguments an approver cannot read.** An MCP
//!   call's arguments that are not parameters are bound by the approval as
//!   one parameter, `mcp.other_arguments`: their canonical JSON, or past
//!   1 KiB only its SHA-256. A held call `pay {amount: 150, recipients:
//!   ["attacker"], memo: <1.1 KiB>}` was filed and put on the desk as "pay
//!   150 "sha256:…"": the approver could not see who was paid, and on
//!   approval the gateway forwarded the recipients it never saw. Now the
//!   service does not queue a request a person cannot read (400), so the
//!   held route answers `needs_approval` at once and nothing is forwarded;
//!   arguments within 1 KiB are filed and shown as before.
//!   (`an_mcp_call_whose_arguments_an_approver_cannot_read_is_not_put_to_a_person`)
//! - **Display injection in Slack notifications.** The Slack text dropped
//!   some hidden characters with a list of its own (C0/C1 controls, some
//!   bidi controls) and passed every other one through: a delegating agent's
//!   purpose carrying U+2028 (a line break), U+061C (a bidi mark) or U+200B
//!   reached the approvers' channel raw. Now the Slack text uses the one
//!   display rule (`mandate_spec::display::is_hidden`) and shows each hidden
//!   character escaped (`\u{200b}`), as the desk and the CLI do: a value
//!   that differs from another only by an invisible character reads
//!   differently.
//!   (`slack_notifications_show_hidden_characters_escaped`)
//! - **Unbounded work in filing (fixed for one service; measured, the test
//!   is the unit test `the_local_queue_indexes_the_waiting_requests_by_family`).**
//!   Each `POST /v1/approvals` read every record ever queued (decided and
//!   expired ones are never removed) to count the family's waiting ones,
//!   under the one lock all filings share: p50 0.8 ms with 30 records,
//!   19 ms at 1 000, 68 ms at 4 000, 91 ms at 8 000 (about 9 KiB each),
//!   growing by 20 records per family every 10 minutes, forever. Now the
//!   local queue keeps an index of the waiting requests by family (written
//!   with each record, read once when opened): 0.7 ms at 8 000. In a fleet
//!   the count still reads the shared bucket (one pass; known, issue 16),
//!   and the desk and `GET /v1/approvals` still read every record.
//!
//! Found, not fixed (tests ignored, "known gap"):
//! - **Authority gap on REST held routes.** The approver is shown (and the
//!   approval's digest binds) only the body fields the route maps
//!   (`body_params`); the held request is forwarded with its whole body. A
//!   held `{"amount": 150, "to": "attacker"}` is approved as "pay 150" and
//!   the upstream pays `attacker`. The MCP mapping closed this with
//!   `mcp.other_arguments`; the REST mapping has no equivalent at this
//!   commit. (`an_approval_on_a_rest_route_covers_the_body_forwarded`: it
//!   passes with the `http.other_body` parameter being added to the
//!   verifier's mapping in the working tree; un-ignore it when that lands.
//!   A hashed `http.other_body` is already refused by the service, like
//!   `mcp.other_arguments`.)
//! - **A copy of a holder-bound token files approval requests.** Filing is
//!   decided without the holder's proof, so whoever holds a copy of a
//!   holder-bound token (useless to act with) can put requests in the
//!   agent's name on the desk and take its family's whole
//!   `max_pending_per_family`: the agent's own requests are then 429.
//!   (`a_copy_of_a_holder_bound_token_cannot_file_in_its_holders_name`)
//!
//! What held: only the approver a request asks for decides it on the desk,
//! even with a valid session and form token of its own — legal's desk
//! (naming no approver, finance, or itself) and the payments agent's own
//! token (which opens the desk: a token-only decision) are refused, finance
//! decides (`only_the_approver_a_request_asks_for_decides_it_on_the_desk`).
//! Tried, not written as tests (see the other approval tests for the
//! behaviours relied on): the family quota is keyed by the root block's
//! token id, which no holder can change (attenuated, third-party-block and
//! approval-carrying tokens all count in their root's family); the desk
//! shows every value through the one display rule, forbids framing and
//! scripts, and refuses cross-site forms and forms without the session's
//! form token; an approver whose admin token names another approver sees
//! nothing of its requests and cannot approve or deny them; the gateway
//! files the decided request and re-sends the same head and body, decided
//! anew (an approval spent once, by the approver's signature); batches are
//! refused on MCP routes; the agent's token is never answered, notified or
//! shown (sealed in the fleet bucket); webhook bodies carry no token or
//! approval block and are signed over the timestamp and body.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "common/hold.rs"]
mod hold;
#[path = "common/webhook.rs"]
mod webhook;

use common::payments::{issue, key, Payments};
use common::procs::{http, http_client, wait_until, Proc};
use hold::HoldGateway;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use webhook::{verified, Receiver};

/// `tools/call pay` with `arguments` on the held MCP route (JSON answer).
fn mcp_call(g: &HoldGateway, arguments: Value) -> (u16, String) {
    let call = json!({
        "jsonrpc": "2.0", "id": 11, "method": "tools/call",
        "params": { "name": "pay", "arguments": arguments }
    });
    let resp = http_client()
        .post(g.url("/mcp"))
        .bearer_auth(g.mcp_token.trim())
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(call.to_string())
        .timeout(Duration::from_secs(180))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().unwrap())
}

#[test]
fn an_mcp_call_whose_arguments_an_approver_cannot_read_is_not_put_to_a_person() {
    let g = Arc::new(HoldGateway::start());
    let p = &g.p;

    // Held: arguments past 1 KiB are not filed; answered at once, nothing
    // forwarded.
    let hidden = {
        let g = g.clone();
        std::thread::spawn(move || {
            mcp_call(
                &g,
                json!({ "amount": 150, "recipients": ["attacker"], "memo": { "note": "x".repeat(1100) } }),
            )
        })
    };
    wait_until(
        "the held call answered, or filed",
        Duration::from_secs(60),
        || hidden.is_finished() || !g.p.pending().is_empty(),
    );
    if let Some(id) = g.p.pending().into_iter().next() {
        let shown = g.p.record(&id)["request"]["params"].clone();
        panic!("filed for a person, who would be shown only {shown}");
    }
    let (status, body) = hidden.join().unwrap();
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("needs an approval by finance"), "{body}");
    assert_eq!(g.seen.hits(), 0, "nothing forwarded");

    // Filed directly, the hashed form is refused, saying why.
    let hashed = format!("sha256:{}", "ab".repeat(32));
    let asked = json!({
        "action": "pay", "resource": "/mcp",
        "params": { "amount": 150, "mcp.other_arguments": hashed }
    });
    let (status, r) = http(
        &p.serve.addr,
        "POST",
        "/v1/approvals",
        &asked.to_string(),
        Some(&g.mcp_token),
    );
    assert_eq!(
        status, 400,
        "a request an approver cannot read was queued: {r}"
    );
    let why = r["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("mcp.other_arguments") && why.contains("cannot be shown"),
        "{r}"
    );
    assert!(p.pending().is_empty());
    // So is a JSON body's unmapped fields given only as a hash.
    let asked = json!({
        "action": "pay", "resource": "/api/payments",
        "params": { "amount": 150, "http.other_body": format!("sha256:{}", "cd".repeat(32)) }
    });
    let (status, r) = http(
        &p.serve.addr,
        "POST",
        "/v1/approvals",
        &asked.to_string(),
        Some(&p.pay),
    );
    assert_eq!(status, 400, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("http.other_body"),
        "{r}"
    );
    assert!(p.pending().is_empty());

    // Arguments within 1 KiB are filed and readable, as before.
    let readable = {
        let g = g.clone();
        std::thread::spawn(move || {
            mcp_call(&g, json!({ "amount": 150, "recipients": ["supplier-7"] }))
        })
    };
    let id = p.next_filed(&Default::default());
    let params = p.record(&id)["request"]["params"].clone();
    assert_eq!(
        params["mcp.other_arguments"], r#"{"recipients":["supplier-7"]}"#,
        "{params}"
    );
    p.deny(&id, "checking only");
    let (status, body) = readable.join().unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("checking only"), "{body}");
    assert_eq!(g.seen.hits(), 0);
}

#[test]
fn slack_notifications_show_hidden_characters_escaped() {
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    key(d, "root.key");
    let finance = key(d, "finance.key");
    let agent = key(d, "agent.key");
    // A purpose (set by whoever delegates) with a line separator, a bidi
    // mark and a zero-width space.
    let purpose = "pay suppliers\u{2028}approved by finance\u{61c} already\u{200b}";
    let pay = issue(
        d,
        &[
            "--principal",
            "org:acme",
            "--to",
            "payments-agent",
            "--to-key",
            &agent,
            "--allow",
            "pay:/api/payments",
            "--approval",
            &format!("pay when amount>100 by finance={finance}"),
            "--purpose",
            purpose,
        ],
    );
    std::fs::write(d.join("finance.webhook"), "a slack secret, 16+ bytes").unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\npublic_url = \"https://issuer.example/\"\n\
         [[root_keys]]\nid = 0\nfile = \"root.key\"\n\
         [[approvers]]\nname = \"finance\"\nfile = \"finance.key\"\n\
         webhook_url = \"{}\"\nwebhook_secret_file = \"finance.webhook\"\n\
         webhook_format = \"slack\"\n",
        receiver.url("/finance")
    );
    std::fs::write(d.join("mandate.toml"), config).unwrap();
    let serve = Proc::start([
        "serve".to_string(),
        "--config".into(),
        d.join("mandate.toml").display().to_string(),
    ]);
    let asked = json!({"action": "pay", "resource": "/api/payments", "params": {"amount": 150}});
    let (status, r) = http(
        &serve.addr,
        "POST",
        "/v1/approvals",
        &asked.to_string(),
        Some(&pay),
    );
    assert_eq!(status, 201, "{r}");
    let got = receiver.wait_for("/finance", 1);
    let slack = verified(&got[0], b"a slack secret, 16+ bytes");
    let text = slack["text"].as_str().unwrap();
    let raw: Vec<char> = text
        .chars()
        .filter(|c| mandate_spec::display::is_hidden(*c))
        .collect();
    assert!(
        raw.is_empty(),
        "hidden characters reached the approvers' channel raw: {raw:?} in {text:?}"
    );
    for escaped in [r"\u{2028}", r"\u{61c}", r"\u{200b}"] {
        assert!(text.contains(escaped), "{escaped} not shown in {text:?}");
    }
}

#[test]
fn an_approval_on_a_rest_route_covers_the_body_forwarded() {
    let g = Arc::new(HoldGateway::start());
    let call = {
        let g = g.clone();
        std::thread::spawn(move || {
            http_client()
                .post(g.url("/api/payments"))
                .bearer_auth(g.p.pay.trim())
                .header("content-type", "application/json")
                .body(json!({ "amount": 150, "to": "attacker" }).to_string())
                .timeout(Duration::from_secs(180))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let id = g.p.next_filed(&Default::default());
    // What the approver is shown, and what the approval binds.
    let shown = g.p.record(&id)["request"].clone();
    g.p.approve(&id);
    let status = call.join().unwrap();
    let forwarded = g.seen.bodies.lock().unwrap().clone();
    assert!(
        status != 200 || shown.to_string().contains("attacker"),
        "approved as {shown}, forwarded {forwarded:?}"
    );
}

#[test]
#[ignore = "known gap: POST /v1/approvals decides a holder-bound token without the holder's proof"]
fn a_copy_of_a_holder_bound_token_cannot_file_in_its_holders_name() {
    let p = Payments::start();
    let d = p.d();
    let bound = issue(
        d,
        &[
            "--principal",
            "org:acme",
            "--to",
            "payments-agent",
            "--to-key",
            &p.agent_pub,
            "--allow",
            "pay:/api/payments",
            "--where",
            "amount<=1000",
            "--approval",
            &format!("pay when amount>100 by finance={}", p.finance_pub),
            "--require-proof",
        ],
    );
    // Someone with a copy of the token, not the agent's key, no proof.
    let asked = json!({"action": "pay", "resource": "/api/payments", "params": {"amount": 900}});
    let (status, r) = http(
        &p.serve.addr,
        "POST",
        "/v1/approvals",
        &asked.to_string(),
        Some(&bound),
    );
    assert_ne!(
        status, 201,
        "filed in the holder's name without its proof: {r}"
    );
    assert!(p.pending().is_empty());
}

/// The desk's form token for `token` (text): SHA-256 over the desk's
/// domain and the token's bytes, as the desk computes it for its session;
/// whoever holds a token can compute its own.
fn form_token_of(token: &str) -> String {
    use sha2::Digest as _;
    let bytes = mandate_spec::token_from_text(token.trim()).unwrap();
    let mut h = sha2::Sha256::new();
    h.update(b"mandate-desk-form-v1\n");
    h.update(&bytes);
    hex::encode(h.finalize())
}

/// A desk form posted as a browser on the desk's origin would, signed in
/// with `token` (cookie) and carrying its own form token.
fn desk_form(p: &Payments, token: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let csrf = form_token_of(token);
    let mut fields = vec![("csrf", csrf.as_str())];
    fields.extend_from_slice(form);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .post(format!("{}{path}", p.url()))
        .header("cookie", format!("mandate_admin={}", token.trim()))
        .header("sec-fetch-site", "same-origin")
        .form(&fields)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let page = resp.text().unwrap();
    // Refused, if at all, for who is deciding: not as a forged form.
    assert!(
        !page.contains("did not come from this approval desk"),
        "{page}"
    );
    (status, page)
}

#[test]
fn only_the_approver_a_request_asks_for_decides_it_on_the_desk() {
    let p = Payments::start();
    let d = p.d();
    let admin = key(d, "legal-admin.key");
    // Legal's desk: an admin token for another approver.
    let legal = issue(
        d,
        &[
            "--principal",
            "ops:legal",
            "--to",
            "legal-desk",
            "--to-key",
            &admin,
            "--allow",
            "approve:/v1/approvals",
            "--where",
            "approver=legal",
        ],
    );
    let asked = json!({"action": "pay", "resource": "/api/payments", "params": {"amount": 150}});
    let (status, r) = http(
        &p.serve.addr,
        "POST",
        "/v1/approvals",
        &asked.to_string(),
        Some(&p.pay),
    );
    assert_eq!(status, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let approve = format!("/ui/approvals/{id}/approve");
    let deny = format!("/ui/approvals/{id}/deny");

    // Legal, with its own valid session and form token, naming no approver,
    // finance, or itself; then denying.
    for form in [
        vec![],
        vec![("approver", "finance")],
        vec![("approver", "legal")],
    ] {
        let (status, page) = desk_form(&p, &legal, &approve, &form);
        assert!(
            status == 403 || status == 400,
            "legal approved finance's request ({form:?}): {status} {page}"
        );
    }
    let (status, page) = desk_form(&p, &legal, &deny, &[("reason", "not mine to say")]);
    assert_eq!(status, 403, "legal denied finance's request: {page}");
    // The agent itself: its token opens the desk (a token-only decision)
    // but approves nothing, not even its own request.
    let (status, page) = desk_form(&p, &p.pay, &approve, &[("approver", "finance")]);
    assert_eq!(status, 403, "the agent approved its own request: {page}");
    let (status, page) = desk_form(&p, &p.pay, &deny, &[("reason", "x")]);
    assert_eq!(status, 403, "{page}");
    assert_eq!(p.record(&id)["status"], "pending");

    // Finance, the same way: decided.
    let (status, page) = desk_form(&p, &p.finance, &approve, &[]);
    assert_eq!(status, 303, "{page}");
    assert_eq!(p.record(&id)["status"], "approved");
}
