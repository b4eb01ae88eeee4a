//! The approval desk (`GET /ui/approvals`) of a real `mandate serve`, in
//! headless Chromium: a payments agent asks to pay 150 (its token's rule
//! `pay when amount>100 by finance=…`), the finance approver signs in,
//! reads "pay 150 to /api/payments for org:acme via payments-agent (purpose
//! pay suppliers)", clicks approve (the block the service signs works, once)
//! and denies another request with a reason by clicking; both decisions are
//! in the signed audit log. An approver for another approver sees nothing;
//! no session is the sign-in page (401); a form posted from another origin
//! (even with the right form token) or without the session's form token is
//! refused and decides nothing; a request whose token was revoked after it
//! was queued is shown as no longer valid and cannot be approved (409); the
//! agent's token kept for that is never answered. The page is labelled for
//! screen readers and has no horizontal overflow at phone width; a
//! principal, purpose and parameter made of markup, bidi overrides, NUL
//! and BEL are only text on it.
//!
//! Positions (THREATS.md): the person being misled reads only what the
//! request's token verifies now, each value set apart from the sentence's
//! words; a narrow admin token sees only what it could approve; a page of
//! another origin in the approver's browser cannot decide anything.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::browser::{screenshot_dir, Browser, ENTER, TAB};
use common::mandate;
use common::procs::{http, wait_until, Proc};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// A `mandate serve` holding the finance approver's key and an audit key,
/// the payments agent's token, and the admin tokens of the people involved.
struct Desk {
    dir: tempfile::TempDir,
    serve: Proc,
    root: String,
    /// The finance approver's public key.
    finance_pub: String,
    /// The payments agent's token (org:acme, `pay suppliers`).
    pay: String,
    /// A second payments token, of another agent key (org:beta).
    beta: String,
    beta_key: String,
    /// `approve:/v1/approvals where approver=finance`.
    finance: String,
    /// `approve:/v1/approvals where approver=legal`.
    legal: String,
    /// `review` on `/ui/decisions` and `/v1/approvals`.
    reviewer: String,
    /// `revoke:/v1/revocations`.
    revoker: String,
}

fn key(d: &Path, name: &str) -> String {
    let r = mandate(d, &["keygen", "--out", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

fn issue(d: &Path, args: &[&str]) -> String {
    let mut all = vec!["issue", "--key", "root.key", "--ttl", "1h"];
    all.extend_from_slice(args);
    let r = mandate(d, &all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

impl Desk {
    fn start() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root = key(d, "root.key");
        let finance_key = key(d, "finance.key");
        let agent = key(d, "agent.key");
        let beta_key = key(d, "beta.key");
        let admin = key(d, "admin.key");
        key(d, "audit.key");
        let rule = format!("pay when amount>100 by finance={finance_key}");
        let payments = |principal: &str, agent_name: &str, agent_key: &str| {
            issue(
                d,
                &[
                    "--principal",
                    principal,
                    "--to",
                    agent_name,
                    "--to-key",
                    agent_key,
                    "--allow",
                    "pay:/api/payments",
                    "--where",
                    "amount<=1000",
                    "--approval",
                    &rule,
                    "--purpose",
                    "pay suppliers",
                ],
            )
        };
        let pay = payments("org:acme", "payments-agent", &agent);
        std::fs::write(d.join("pay.tok"), &pay).unwrap();
        let beta = payments("org:beta", "beta-agent", &beta_key);
        let admin_token = |principal: &str, to: &str, grant: &[&str]| {
            let mut args = vec!["--principal", principal, "--to", to, "--to-key", &admin];
            args.extend_from_slice(grant);
            issue(d, &args)
        };
        let finance = admin_token(
            "ops:fin",
            "finance-desk",
            &[
                "--allow",
                "approve:/v1/approvals",
                "--where",
                "approver=finance",
            ],
        );
        let legal = admin_token(
            "ops:legal",
            "legal-desk",
            &[
                "--allow",
                "approve:/v1/approvals",
                "--where",
                "approver=legal",
            ],
        );
        let reviewer = admin_token(
            "ops:auditor",
            "auditor",
            &[
                "--allow",
                "review:/ui/decisions",
                "--allow",
                "review:/v1/approvals",
            ],
        );
        let revoker = admin_token(
            "ops:sec",
            "security",
            &["--allow", "revoke:/v1/revocations"],
        );
        let serve = Proc::start([
            "serve".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            d.join("data").display().to_string(),
            "--root-key".into(),
            format!("0={}", d.join("root.key").display()),
            "--approver".into(),
            format!("finance={}", d.join("finance.key").display()),
            "--audit-key".into(),
            d.join("audit.key").display().to_string(),
        ]);
        Desk {
            dir,
            serve,
            root,
            finance_pub: finance_key,
            pay,
            beta,
            beta_key,
            finance,
            legal,
            reviewer,
            revoker,
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.serve.addr)
    }

    /// The agent asks for approval of a payment of `amount`: its id.
    fn ask(&self, token: &str, amount: i64) -> String {
        let body =
            json!({"action": "pay", "resource": "/api/payments", "params": {"amount": amount}});
        let (status, asked) = http(
            &self.serve.addr,
            "POST",
            "/v1/approvals",
            &body.to_string(),
            Some(token),
        );
        assert_eq!(status, 201, "{asked}");
        assert!(
            asked.get("token").is_none(),
            "the kept token is never answered: {asked}"
        );
        asked["id"].as_str().unwrap().to_string()
    }

    fn record(&self, id: &str) -> Value {
        let (status, r) = http(
            &self.serve.addr,
            "GET",
            &format!("/v1/approvals/{id}"),
            "",
            None,
        );
        assert_eq!(status, 200, "{r}");
        r
    }

    /// A page without following redirects: (status, headers, body).
    fn page(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        form: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client.request(method, self.url(path));
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Cookie(t) => req = req.header("cookie", format!("mandate_admin={t}")),
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if !form.is_empty() {
            req = req.form(form);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().unwrap())
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

fn text(b: &Browser, script: &str) -> String {
    b.eval(script).as_str().unwrap_or_default().to_string()
}

fn body_text(b: &Browser) -> String {
    text(b, "return document.body.innerText")
}

/// The hidden form token of the first form on a desk page.
fn form_token(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    page[start..start + 64].to_string()
}

const SENTENCE: &str =
    "pay 150 to /api/payments for org:acme via payments-agent (purpose pay suppliers)";

#[test]
fn the_approver_approves_and_denies_by_clicking_on_the_desk() {
    let desk = Desk::start();
    let paid = desk.ask(&desk.pay, 150);
    let refused = desk.ask(&desk.pay, 200);

    let b = Browser::start();
    // No session: the sign-in page; the approver signs in by typing the
    // admin token and clicking.
    b.goto(&desk.url("/ui/approvals"));
    assert!(
        body_text(&b).contains("Approval desk: sign in"),
        "{}",
        body_text(&b)
    );
    b.type_into("#token", &desk.finance);
    b.click("form.signin button");
    wait_until("the desk", Duration::from_secs(20), || {
        b.eval("return document.getElementById('requests') !== null") == json!(true)
    });
    let page = body_text(&b);
    assert!(
        page.contains("Signed in as ops:fin via finance-desk"),
        "{page}"
    );

    // Newest first; each request in words, from its verification.
    let ids = b.eval(
        "return Array.from(document.querySelectorAll('#requests > li.request')).map(l => l.dataset.id)",
    );
    assert_eq!(ids, json!([refused, paid]), "{page}");
    let item = format!("li.request[data-id=\"{paid}\"]");
    assert_eq!(
        text(
            &b,
            &format!("return document.querySelector('{item} h2').innerText")
        ),
        SENTENCE
    );
    let details = text(
        &b,
        &format!("return document.querySelector('{item}').innerText"),
    );
    for needle in [
        "On behalf of\norg:acme",
        "amount = 150",
        "payments-agent: purpose pay suppliers",
        // The rule that asks, as written in the token, and the verifier's reason.
        "pay:/api/payments where amount<=1000, approval by finance when amount>100 (hop 0, payments-agent)",
        "needs an approval by finance",
        "Waited\nless than a minute",
    ] {
        assert!(details.contains(needle), "{needle:?} not in:\n{details}");
    }

    // Screen readers: every control labelled, each button naming its request.
    let unlabelled = b.eval(
        "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, button'))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.tagName === 'BUTTON' && e.innerText.trim()))
            .map(e => e.outerHTML)",
    );
    assert_eq!(unlabelled, json!([]));
    assert_eq!(
        text(&b, &format!("return document.querySelector('{item} form.approve button').getAttribute('aria-label')")),
        format!("Approve: {SENTENCE}")
    );
    assert_eq!(
        text(&b, &format!("return document.querySelector('{item} form.deny button').getAttribute('aria-label')")),
        format!("Deny: {SENTENCE}")
    );
    assert_eq!(
        b.eval("return [document.documentElement.lang, document.querySelectorAll('h1').length, document.querySelectorAll('[tabindex=\"-1\"]').length]"),
        json!(["en", 1, 0])
    );

    // A phone's width: one column, nothing wider than the screen.
    b.set_window_size(375, 800);
    let (inner, scroll) = (
        b.eval("return window.innerWidth").as_u64().unwrap(),
        b.eval("return document.documentElement.scrollWidth")
            .as_u64()
            .unwrap(),
    );
    assert!(inner < 600, "the window did not narrow: {inner}");
    assert!(
        scroll <= inner,
        "horizontal overflow at {inner}px: {scroll}px wide"
    );
    std::fs::write(
        screenshot_dir().join("approval-desk-phone.png"),
        b.screenshot(),
    )
    .unwrap();
    b.set_window_size(1600, 1000);

    // Approve by clicking.
    b.click(&format!("{item} form.approve button"));
    wait_until("the approval", Duration::from_secs(20), || {
        text(&b, "return location.search").contains("approved=")
    });
    let notice = text(&b, "return document.querySelector('.notice').innerText");
    assert_eq!(
        notice,
        format!("Approved: pay 150 to /api/payments (request {paid}), by ops:fin via finance-desk as finance.")
    );
    assert_eq!(
        b.eval(&format!("return document.querySelector('{item}') === null")),
        json!(true)
    );
    std::fs::write(screenshot_dir().join("approval-desk.png"), b.screenshot()).unwrap();
    let approved = desk.record(&paid);
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(
        approved["decided_by"],
        "ops:fin via finance-desk as finance"
    );
    assert!(approved["decided_at"].is_string());
    assert!(approved.get("token").is_none(), "{approved}");

    // The block works, once.
    std::fs::write(
        desk.d().join("approval.b64"),
        approved["approval_block"].as_str().unwrap(),
    )
    .unwrap();
    let attached = mandate(
        desk.d(),
        &["attach-approval", "--approval", "approval.b64", "pay.tok"],
    );
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    std::fs::write(desk.d().join("approved.tok"), &attached.stdout).unwrap();
    let verify = |amount: &str| {
        mandate(
            desk.d(),
            &[
                "verify",
                "--public-key",
                &desk.root,
                "--action",
                "pay",
                "--resource",
                "/api/payments",
                "--param",
                amount,
                "--replay-db",
                "replay",
                "approved.tok",
            ],
        )
    };
    assert_eq!(verify("amount=150").code, 0);
    let again = verify("amount=150");
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already used"), "{}", again.stderr);

    // Deny by clicking, with a reason.
    let other = format!("li.request[data-id=\"{refused}\"]");
    b.type_into(&format!("#reason-{refused}"), "not this supplier");
    b.click(&format!("{other} form.deny button"));
    wait_until("the denial", Duration::from_secs(20), || {
        text(&b, "return location.search").contains("denied=")
    });
    let notice = text(&b, "return document.querySelector('.notice').innerText");
    assert_eq!(
        notice,
        format!("Denied: pay 200 to /api/payments (request {refused}), by ops:fin via finance-desk, because: not this supplier")
    );
    let denied = desk.record(&refused);
    assert_eq!(denied["status"], "denied", "{denied}");
    assert_eq!(denied["denied_because"], "not this supplier");
    assert_eq!(denied["decided_by"], "ops:fin via finance-desk");
    assert!(denied.get("approval_block").is_none());
    // Decided requests are gone from the desk.
    assert!(body_text(&b).contains("Nothing waits for your approval."));

    // An approver for another approver sees nothing of finance's requests.
    let third = desk.ask(&desk.pay, 300);
    let (status, _, legal) = desk.page("GET", "/ui/approvals", Auth::Bearer(&desk.legal), &[], &[]);
    assert_eq!(status, 200, "{legal}");
    assert!(
        legal.contains("Nothing waits for your approval."),
        "{legal}"
    );
    assert!(!legal.contains(&third), "{legal}");
    assert!(!legal.contains("org:acme"), "{legal}");
    let (_, _, finance) = desk.page(
        "GET",
        "/ui/approvals",
        Auth::Bearer(&desk.finance),
        &[],
        &[],
    );
    assert!(finance.contains(&third), "{finance}");

    // Every desk action is in the signed audit log: the desk opened, the
    // approval and the denial decided for finance's admin token.
    let (status, _, log) = desk.page(
        "GET",
        "/ui/decisions?principal=ops:fin&limit=500",
        Auth::Bearer(&desk.reviewer),
        &[],
        &[],
    );
    assert_eq!(status, 200, "{log}");
    for needle in [
        "open /ui/approvals",
        "approve /v1/approvals",
        &paid,
        &refused,
        "not this supplier",
    ] {
        assert!(
            log.contains(needle),
            "{needle} not in the audit log page:\n{log}"
        );
    }
}

/// Serves `page` to every request on a new loopback port (another origin
/// than the desk): its address.
fn serve_page(page: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

#[test]
fn a_forged_form_is_refused_and_decides_nothing() {
    let desk = Desk::start();
    let id = desk.ask(&desk.pay, 150);
    let fin = desk.finance.as_str();

    // No session: 401, the sign-in page (HTML, not framed).
    let (status, headers, page) = desk.page("GET", "/ui/approvals", Auth::None, &[], &[]);
    assert_eq!(status, 401);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(page.contains("Approval desk: sign in"), "{page}");
    let (status, _, _) = desk.page(
        "POST",
        &format!("/ui/approvals/{id}/approve"),
        Auth::None,
        &[("csrf", "x")],
        &[],
    );
    assert_eq!(status, 401);

    let (_, _, page) = desk.page("GET", "/ui/approvals", Auth::Cookie(fin), &[], &[]);
    let csrf = form_token(&page);
    let approve = format!("/ui/approvals/{id}/approve");
    // The session's cookie without its form token, or with another's.
    for form in [
        vec![("approver", "finance".to_string())],
        vec![("csrf", "0".repeat(64))],
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, page) = desk.page("POST", &approve, Auth::Cookie(fin), &form, &[]);
        assert_eq!(status, 403, "{page}");
        assert!(
            page.contains("did not come from this approval desk"),
            "{page}"
        );
    }
    // The right form token, from a page a browser says is of another site.
    for site in ["cross-site", "same-site"] {
        let (status, _, page) = desk.page(
            "POST",
            &approve,
            Auth::Cookie(fin),
            &[("csrf", &csrf)],
            &[("sec-fetch-site", site)],
        );
        assert_eq!(status, 403, "{site}: {page}");
    }
    // A denial needs a reason.
    let (status, _, page) = desk.page(
        "POST",
        &format!("/ui/approvals/{id}/deny"),
        Auth::Cookie(fin),
        &[("csrf", &csrf), ("reason", "  ")],
        &[],
    );
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("reason: say why"), "{page}");
    assert_eq!(desk.record(&id)["status"], "pending");

    // In a browser signed in at the desk, a page of another origin posts the
    // approve form (a forged form token, then the real one leaked): refused.
    let b = Browser::start();
    b.goto(&desk.url("/ui/approvals"));
    b.type_into("#token", fin);
    b.click("form.signin button");
    wait_until("the desk", Duration::from_secs(20), || {
        b.eval("return document.getElementById('requests') !== null") == json!(true)
    });
    for token in ["forged", csrf.as_str()] {
        let evil = serve_page(format!(
            "<!doctype html><title>prize</title><form method=post action=\"{}\">\
             <input type=hidden name=csrf value=\"{token}\">\
             <input type=hidden name=approver value=finance>\
             <button id=go>Claim your prize</button></form>",
            desk.url(&approve)
        ));
        b.goto(&format!("http://{evil}/"));
        b.click("#go");
        wait_until("the desk's answer", Duration::from_secs(20), || {
            body_text(&b).contains("not done")
        });
        let page = body_text(&b);
        assert!(
            page.contains("did not come from this approval desk"),
            "{page}"
        );
        assert_eq!(desk.record(&id)["status"], "pending");
    }
    // From the desk itself, the same session approves.
    b.goto(&desk.url("/ui/approvals"));
    b.click(&format!("li.request[data-id=\"{id}\"] form.approve button"));
    wait_until("the approval", Duration::from_secs(20), || {
        text(&b, "return location.search").contains("approved=")
    });
    assert_eq!(desk.record(&id)["status"], "approved");

    // Signing out forgets the session.
    b.click("form.signout button");
    wait_until("the sign-in page", Duration::from_secs(20), || {
        body_text(&b).contains("Approval desk: sign in")
    });
}

#[test]
fn a_request_whose_token_was_revoked_is_not_approvable() {
    let desk = Desk::start();
    let id = desk.ask(&desk.beta, 120);
    let fin = Auth::Bearer(&desk.finance);
    let (_, _, page) = desk.page("GET", "/ui/approvals", fin, &[], &[]);
    assert!(
        page.contains(&format!("/ui/approvals/{id}/approve")),
        "{page}"
    );
    assert!(page.contains("beta-agent"), "{page}");

    // The kept token is never answered, by id or in the queue.
    let (_, body) = http(
        &desk.serve.addr,
        "GET",
        &format!("/v1/approvals/{id}"),
        "",
        None,
    );
    let (status, queue) = http(
        &desk.serve.addr,
        "GET",
        "/v1/approvals",
        "",
        Some(&desk.reviewer),
    );
    assert_eq!(status, 200, "{queue}");
    for answer in [body.to_string(), queue.to_string()] {
        assert!(!answer.contains(&desk.beta), "{answer}");
        assert!(!answer.contains("\"token\""), "{answer}");
    }

    // The agent's key is revoked after the request was queued.
    let revoke = json!({"agent_key": desk.beta_key, "reason": "key leaked"});
    let (status, body) = http(
        &desk.serve.addr,
        "POST",
        "/v1/revocations",
        &revoke.to_string(),
        Some(&desk.revoker),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, page) = desk.page("GET", "/ui/approvals", fin, &[], &[]);
    assert_eq!(status, 200);
    assert!(
        !page.contains(&format!("/ui/approvals/{id}/approve")),
        "{page}"
    );
    assert!(!page.contains("<li class=\"request\""), "{page}");
    let stale = page
        .split("<li class=\"stale\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no stale row: {page}"));
    assert!(stale.contains(&id), "{stale}");
    assert!(stale.contains("no longer valid"), "{stale}");
    assert!(stale.contains("revoked"), "{stale}");

    // Nor through the JSON route.
    let (status, body) = http(
        &desk.serve.addr,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        "{}",
        Some(&desk.finance),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot be approved any more"),
        "{body}"
    );
    assert_eq!(desk.record(&id)["status"], "pending");
}

/// Markup, an attribute breakout, quotes, an entity, bidi overrides, NUL
/// and BEL, all in one string.
const HOSTILE: &str =
    "<script>alert(1)</script>\"><img src=x onerror=alert(1)>'&amp;\u{202e}exe\u{2066}\u{0}\u{7}";

/// A payments token (hop 0 to `agent-x`, `pay:/api/payments`, approval by
/// finance above 100) whose principal and purpose are [`HOSTILE`], signed
/// with `root.key` in `d`: the issuer would refuse such a principal, a
/// forged or foreign root need not.
fn hostile_token(d: &Path, finance_pub: &str) -> String {
    use biscuit_auth::builder::{date, fact, string};
    use mandate_spec::{hop_block, vocab, Grant, HopContent};
    let key = mandate_spec::parse_private_key(
        std::fs::read_to_string(d.join("root.key")).unwrap().trim(),
    )
    .unwrap();
    let agent = biscuit_auth::KeyPair::new();
    let now = std::time::SystemTime::now();
    let grant = Grant::parse(&["pay:/api/payments"], &[] as &[&str])
        .unwrap()
        .with_approval(&format!("pay when amount>100 by finance={finance_pub}"))
        .unwrap();
    let token = biscuit_auth::BiscuitBuilder::new()
        .fact(fact(
            vocab::TOKEN,
            &[string("0b6c4d2e-3f41-4a5b-8c7d-9e0f1a2b3c4d")],
        ))
        .unwrap()
        .fact(fact(vocab::PRINCIPAL, &[string(HOSTILE)]))
        .unwrap()
        .fact(fact(vocab::ISSUED_AT, &[date(&now)]))
        .unwrap()
        .merge(
            hop_block(&HopContent {
                agent: "agent-x",
                agent_key: &agent.public(),
                purpose: Some(HOSTILE),
                grant: &grant,
                expires: now + Duration::from_secs(3600),
            })
            .unwrap(),
        )
        .root_key_id(0)
        .build(&key)
        .unwrap()
        .to_vec()
        .unwrap();
    mandate_spec::token_to_text(&token)
}

#[test]
fn hostile_strings_in_a_request_are_only_text_on_the_desk() {
    let desk = Desk::start();
    let hostile = hostile_token(desk.d(), &desk.finance_pub);
    let body = json!({"action": "pay", "resource": "/api/payments",
                      "params": {"amount": 150, "note": HOSTILE}});
    let (status, asked) = http(
        &desk.serve.addr,
        "POST",
        "/v1/approvals",
        &body.to_string(),
        Some(&hostile),
    );
    assert_eq!(status, 201, "{asked}");
    let id = asked["id"].as_str().unwrap();
    let (status, _, page) = desk.page(
        "GET",
        "/ui/approvals",
        Auth::Bearer(&desk.finance),
        &[],
        &[],
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(id), "{page}");
    for markup in [
        "<script",
        "<img",
        "onerror=alert(1)>",
        "\u{202e}",
        "\u{2066}",
        "\u{0}",
        "\u{7}",
    ] {
        assert!(!page.contains(markup), "{markup:?} in:\n{page}");
    }
    // The desk's own structure only: one request, its two forms, sign-out.
    assert_eq!(page.matches("<li class=\"request\"").count(), 1, "{page}");
    assert_eq!(page.matches("<form").count(), 3, "{page}");
    assert_eq!(page.matches("<button").count(), 3, "{page}");
    assert_eq!(page.matches("<input").count(), 4, "{page}");
    // Shown as the text rule escapes it: principal, purpose, parameter,
    // and in the buttons' labels.
    let shown = mandate_spec::display::text(HOSTILE).to_string();
    let entities = shown
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(page.matches(&entities).count() >= 6, "{entities}\n{page}");
}

/// The element focused now: its id, the name a screen reader gives it
/// (`aria-label`, else its label's text, else its own text), and whether
/// the focus is drawn (an outline that is not `none`).
const FOCUSED: &str = "const e = document.activeElement;
    return [e.id || '', e.getAttribute('aria-label')
        || (e.labels && e.labels.length ? e.labels[0].innerText : '')
        || (e.innerText || '').trim(),
        getComputedStyle(e).outlineStyle !== 'none'];";

/// Presses Tab until `want` says the focused element is the one (at most
/// 40 times): the names of the elements focused on the way.
fn tab_to(b: &Browser, want: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..40 {
        b.press(TAB);
        let f = b.eval(FOCUSED);
        let (id, name) = (f[0].as_str().unwrap(), f[1].as_str().unwrap());
        seen.push(name.to_string());
        assert_eq!(f[2], json!(true), "no visible focus on {name:?}");
        if want(id, name) {
            return seen;
        }
    }
    panic!("never focused; went through {seen:?}");
}

#[test]
fn the_desk_works_with_the_keyboard_alone() {
    let desk = Desk::start();
    let paid = desk.ask(&desk.pay, 150);
    let refused = desk.ask(&desk.pay, 200);
    let b = Browser::start();
    b.goto(&desk.url("/ui/approvals"));

    // Sign in: Tab to the token field, type, Enter submits.
    tab_to(&b, |id, _| id == "token");
    b.press(&desk.finance);
    b.press(ENTER);
    wait_until("the desk", Duration::from_secs(20), || {
        b.eval("return document.getElementById('requests') !== null") == json!(true)
    });

    // Tab to the approval of the 150 payment: every control on the way is
    // named for a screen reader; Enter approves.
    let approve = format!("Approve: {SENTENCE}");
    let went = tab_to(&b, |_, name| name == approve);
    assert!(went.iter().all(|n| !n.trim().is_empty()), "{went:?}");
    b.press(ENTER);
    wait_until("the approval", Duration::from_secs(20), || {
        text(&b, "return location.search").contains("approved=")
    });
    assert_eq!(desk.record(&paid)["status"], "approved");

    // Deny the other: Tab to its reason, type it, Tab to Deny, Enter.
    tab_to(&b, |id, _| id == format!("reason-{refused}"));
    b.press("over the weekly limit");
    let went = tab_to(&b, |_, name| name.starts_with("Deny: pay 200"));
    assert_eq!(went.len(), 1, "Deny follows its reason: {went:?}");
    b.press(ENTER);
    wait_until("the denial", Duration::from_secs(20), || {
        text(&b, "return location.search").contains("denied=")
    });
    let denied = desk.record(&refused);
    assert_eq!(denied["status"], "denied", "{denied}");
    assert_eq!(denied["denied_because"], "over the weekly limit");
}
