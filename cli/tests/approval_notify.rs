//! Approval notifications and agents that wait (issue 19, parts 2 and 3;
//! SERVICE.md S3).
//!
//! Against a real `mandate serve` configured in TOML and a local webhook
//! receiver: the finance approver's webhook gets the request as signed JSON
//! (the HMAC checked here, as a receiver would), the ops approver's gets a
//! Slack `{"text"}` with the same signature; a receiver that fails twice
//! (500) gets it on the third attempt, the same delivery id each time; the
//! decision is notified too. `GET /v1/approvals/{id}?wait=` answers as soon
//! as the request is approved or denied (the waiter was seen waiting on
//! `/metrics` first), answers pending after a short wait, refuses bad
//! waits (400), and answers at once (pending) when the service stops.
//!
//! In-process: the cap on waiting requests (503 beyond it, the slot freed
//! after), a bad webhook configuration refused at start, and in a fleet
//! (nats-server) a decision at another issuer service wakes a waiter here.
//! `hold_path_latency` (ignored; run it with `--ignored --nocapture`)
//! prints filed → approved → long-poll answered latencies.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "issuer_common/mod.rs"]
mod issuer;
#[path = "common/webhook.rs"]
mod webhook;

use axum::http::{Method, StatusCode};
use common::mandate;
use common::procs::{http, wait_until, Proc};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use webhook::{verified, Receiver};

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

fn write_secret(path: &Path, secret: &str) {
    std::fs::write(path, format!("{secret}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

const FINANCE_SECRET: &str = "finance-webhook-secret-0123456789";
const OPS_SECRET: &str = "ops-webhook-secret-abcdefghijklmn";
const LEGAL_SECRET: &str = "legal-webhook-secret-9876543210ab";

/// A `mandate serve` from a TOML configuration: approvers finance (JSON
/// webhook at /finance), ops (Slack, /ops) and legal (JSON, /flaky, which
/// answers 500 twice), public_url https://issuer.example; the agents'
/// tokens and the approvers' admin tokens.
struct Desk {
    dir: tempfile::TempDir,
    serve: Proc,
    receiver: Receiver,
    /// Payments over 100 need finance and ops (a delegation of
    /// `pay_finance`).
    pay: String,
    /// Contracts need legal.
    sign: String,
    /// Payments over 100 need finance only.
    pay_finance: String,
    finance: String,
    legal: String,
}

impl Desk {
    fn start() -> Desk {
        let receiver = Receiver::start(&[("/flaky", &[500, 500])]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        key(d, "root.key");
        let finance_pub = key(d, "finance.key");
        let ops_pub = key(d, "ops.key");
        let legal_pub = key(d, "legal.key");
        let agent = key(d, "agent.key");
        let admin = key(d, "admin.key");
        write_secret(&d.join("finance.webhook"), FINANCE_SECRET);
        write_secret(&d.join("ops.webhook"), OPS_SECRET);
        write_secret(&d.join("legal.webhook"), LEGAL_SECRET);
        let treasury = key(d, "treasury.key");
        let by_finance = format!("pay when amount>100 by finance={finance_pub}");
        let by_ops = format!("pay when amount>100 by ops={ops_pub}");
        let pay_finance = issue(
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
                "--where",
                "amount<=1000",
                "--approval",
                &by_finance,
                "--purpose",
                "pay suppliers",
            ],
        );
        // Delegated on by the payments agent, which asks ops too: a payment
        // over 100 then needs finance (hop 0) and ops (hop 1).
        std::fs::write(d.join("pay.tok"), &pay_finance).unwrap();
        let r = mandate(
            d,
            &[
                "attenuate",
                "--key",
                "agent.key",
                "--to",
                "treasury-agent",
                "--to-key",
                &treasury,
                "--allow",
                "pay:/api/payments",
                "--where",
                "amount<=1000",
                "--approval",
                &by_ops,
                "--ttl",
                "30m",
                "--purpose",
                "weekly run",
                "pay.tok",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let pay = r.stdout.trim().to_string();
        let by_legal = format!("sign by legal={legal_pub}");
        let sign = issue(
            d,
            &[
                "--principal",
                "org:acme",
                "--to",
                "contracts-agent",
                "--to-key",
                &agent,
                "--allow",
                "sign:/api/contracts/*",
                "--approval",
                &by_legal,
                "--purpose",
                "sign NDAs",
            ],
        );
        let approver = |name: &str| {
            let who = format!("ops:{name}");
            let to = format!("{name}-desk");
            let approver = format!("approver={name}");
            issue(
                d,
                &[
                    "--principal",
                    &who,
                    "--to",
                    &to,
                    "--to-key",
                    &admin,
                    "--allow",
                    "approve:/v1/approvals",
                    "--where",
                    &approver,
                ],
            )
        };
        let (finance, legal) = (approver("finance"), approver("legal"));
        let config = format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "data"
public_url = "https://issuer.example/"

[[root_keys]]
id = 0
file = "root.key"

[[approvers]]
name = "finance"
file = "finance.key"
webhook_url = "{finance}"
webhook_secret_file = "finance.webhook"

[[approvers]]
name = "ops"
file = "ops.key"
webhook_url = "{ops}"
webhook_secret_file = "ops.webhook"
webhook_format = "slack"

[[approvers]]
name = "legal"
file = "legal.key"
webhook_url = "{flaky}"
webhook_secret_file = "legal.webhook"
webhook_format = "json"
"#,
            finance = receiver.url("/finance"),
            ops = receiver.url("/ops"),
            flaky = receiver.url("/flaky"),
        );
        std::fs::write(d.join("mandate.toml"), config).unwrap();
        let serve = Proc::start([
            "serve".to_string(),
            "--config".into(),
            d.join("mandate.toml").display().to_string(),
        ]);
        Desk {
            dir,
            serve,
            receiver,
            pay,
            sign,
            pay_finance,
            finance,
            legal,
        }
    }

    /// The agent files a request: its id.
    fn ask(&self, token: &str, action: &str, resource: &str, params: Value) -> String {
        let body = json!({"action": action, "resource": resource, "params": params});
        let (status, asked) = http(
            &self.serve.addr,
            "POST",
            "/v1/approvals",
            &body.to_string(),
            Some(token),
        );
        assert_eq!(status, 201, "{asked}");
        asked["id"].as_str().unwrap().to_string()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        http(&self.serve.addr, "GET", path, "", None)
    }

    fn decide(&self, id: &str, what: &str, admin: &str, body: Value) -> Value {
        let (status, r) = http(
            &self.serve.addr,
            "POST",
            &format!("/v1/approvals/{id}/{what}"),
            &body.to_string(),
            Some(admin),
        );
        assert_eq!(status, 200, "{r}");
        r
    }

    fn metrics(&self) -> String {
        common::procs::http_client()
            .get(format!("http://{}/metrics", self.serve.addr))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// The value of `mandate_approvals_waiting` now.
    fn waiting(&self) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("mandate_approvals_waiting "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// `GET /v1/approvals/{id}?wait=WAIT` in another thread, started once
    /// the service counts no waiter; returns once the service counts it
    /// waiting. Join for (status, record).
    fn wait_in_background(&self, id: &str, wait: &str) -> std::thread::JoinHandle<(u16, Value)> {
        let (addr, path) = (
            self.serve.addr.clone(),
            format!("/v1/approvals/{id}?wait={wait}"),
        );
        let before = self.waiting();
        let waiter = std::thread::spawn(move || http(&addr, "GET", &path, "", None));
        wait_until("the waiter registered", Duration::from_secs(30), || {
            self.waiting() > before
        });
        waiter
    }
}

#[test]
fn the_approver_gets_the_webhook_signed_json_slack_text_and_retries() {
    let desk = Desk::start();
    let _ = desk.dir.path();
    let id = desk.ask(
        &desk.pay,
        "pay",
        "/api/payments",
        json!({"amount": 150, "supplier": "<!channel> <https://evil.example|click>"}),
    );

    // Finance: the event as JSON, signed with finance's secret.
    let got = desk.receiver.wait_for("/finance", 1);
    assert_eq!(got.len(), 1, "one notification: {got:?}");
    assert_eq!(got[0].headers["mandate-event"], "approval_requested");
    let delivery = got[0].headers["mandate-delivery"].to_str().unwrap();
    assert_eq!(delivery.len(), 36, "a UUID: {delivery}");
    let event = verified(&got[0], FINANCE_SECRET.as_bytes());
    assert_eq!(event["event"], "approval_requested");
    assert_eq!(event["delivery"], delivery, "the delivery id is signed too");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["approver"], "finance");
    assert_eq!(event["request"]["action"], "pay");
    assert_eq!(event["request"]["resource"], "/api/payments");
    assert_eq!(event["request"]["params"]["amount"], 150);
    assert_eq!(event["principal"], "org:acme");
    assert_eq!(event["agents"][0]["agent"], "payments-agent");
    assert_eq!(event["agents"][0]["purpose"], "pay suppliers");
    assert_eq!(event["agents"][1]["agent"], "treasury-agent");
    assert_eq!(
        event["desk_url"],
        format!("https://issuer.example/ui/approvals#{id}").as_str()
    );
    assert!(
        event["reason"].as_str().unwrap().contains("finance"),
        "{event}"
    );
    assert!(event["submitted_at"].as_str().unwrap().contains('T'));
    assert!(event.get("token").is_none(), "never the agent's token");
    assert!(!String::from_utf8_lossy(&got[0].body).contains(&desk.pay));

    // Ops: Slack's {"text"}, same signature scheme with ops's secret; the
    // hostile parameter cannot make a mention or a link.
    let got = desk.receiver.wait_for("/ops", 1);
    let slack = verified(&got[0], OPS_SECRET.as_bytes());
    let fields: Vec<&String> = slack.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["text"], "{slack}");
    let text = slack["text"].as_str().unwrap();
    for part in [
        "Approval needed from ops",
        "`pay` `amount=150`",
        "`/api/payments`",
        "`org:acme`",
        "`payments-agent` (purpose `pay suppliers`) → `treasury-agent` (purpose `weekly run`)",
        &format!("<https://issuer.example/ui/approvals#{id}|open the approval desk>"),
    ] {
        assert!(text.contains(part), "{part:?} in {text:?}");
    }
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<https://evil"), "{text}");
    assert!(text.contains("&lt;!channel&gt;"), "{text}");

    // Legal's receiver fails twice: the third attempt delivers it, the
    // same delivery each time, each attempt signed.
    let contract = desk.ask(
        &desk.sign,
        "sign",
        "/api/contracts/nda-7",
        json!({"counterparty": "beta"}),
    );
    let got = desk.receiver.wait_for("/flaky", 3);
    let statuses: Vec<u16> = got.iter().map(|g| g.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.headers["mandate-delivery"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|d| *d == ids[0]), "{ids:?}");
    for g in &got {
        let event = verified(g, LEGAL_SECRET.as_bytes());
        assert_eq!(event["delivery"], ids[0]);
        assert_eq!(event["id"], contract.as_str());
        assert_eq!(event["approver"], "legal");
    }
    // Legal was never told of the payment, finance never of the contract.
    assert!(desk
        .receiver
        .at("/finance")
        .iter()
        .all(|g| { serde_json::from_slice::<Value>(&g.body).unwrap()["id"] == id.as_str() }));

    // Decided: finance's webhook is told (approved, by whom).
    let only_finance = desk.ask(
        &desk.pay_finance,
        "pay",
        "/api/payments",
        json!({"amount": 300}),
    );
    desk.receiver.wait_for("/finance", 2);
    desk.decide(
        &only_finance,
        "approve",
        &desk.finance,
        json!({"valid": "5m"}),
    );
    let got = desk.receiver.wait_for("/finance", 3);
    let decided = verified(&got[2], FINANCE_SECRET.as_bytes());
    assert_eq!(got[2].headers["mandate-event"], "approval_decided");
    assert_eq!(decided["event"], "approval_decided");
    assert_eq!(decided["id"], only_finance.as_str());
    assert_eq!(decided["status"], "approved");
    assert!(
        decided["decided_by"].as_str().unwrap().contains("finance"),
        "{decided}"
    );
    // Denied: legal's, with the reason (the receiver answers 200 now).
    desk.decide(
        &contract,
        "deny",
        &desk.legal,
        json!({"reason": "not this counterparty"}),
    );
    let got = desk.receiver.wait_for("/flaky", 4);
    let denied = verified(&got[3], LEGAL_SECRET.as_bytes());
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["denied_because"], "not this counterparty");

    // Counted by event and outcome.
    let metrics = desk.metrics();
    for line in [
        "mandate_approval_notifications_total{event=\"approval_requested\",outcome=\"delivered\"} 4",
        "mandate_approval_notification_retries_total 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[test]
fn a_waiting_agent_is_answered_once_decided_or_after_its_wait() {
    let desk = Desk::start();
    // Approved while the agent waits: answered approved, with the block.
    let approved = desk.ask(
        &desk.pay_finance,
        "pay",
        "/api/payments",
        json!({"amount": 150}),
    );
    let waiter = desk.wait_in_background(&approved, "10s");
    desk.decide(&approved, "approve", &desk.finance, json!({"valid": "5m"}));
    let (status, record) = waiter.join().unwrap();
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "approved", "{record}");
    assert!(record["approval_block"]
        .as_str()
        .is_some_and(|b| !b.is_empty()));
    assert!(record.get("token").is_none());

    // Denied while it waits: answered denied, with the reason.
    let id = desk.ask(&desk.sign, "sign", "/api/contracts/nda-8", json!({}));
    let waiter = desk.wait_in_background(&id, "30");
    desk.decide(&id, "deny", &desk.legal, json!({"reason": "no"}));
    let (status, record) = waiter.join().unwrap();
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "denied");
    assert_eq!(record["denied_because"], "no");

    // Nobody decides: answered pending after the wait.
    let id = desk.ask(
        &desk.pay_finance,
        "pay",
        "/api/payments",
        json!({"amount": 200}),
    );
    let (status, record) = desk.get(&format!("/v1/approvals/{id}?wait=1s"));
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "pending");
    assert_eq!(desk.waiting(), 0.0, "the waiter is gone");
    // A decided request is answered at once whatever the wait (no
    // waiter is counted).
    let (status, decided) = desk.get(&format!("/v1/approvals/{approved}?wait=60s"));
    assert_eq!(
        (status, decided["status"].as_str()),
        (200, Some("approved"))
    );

    // Bad waits: 400, naming `wait`; an unknown request: 404.
    for bad in ["abc", "61s", "2m", "-1", "1.5s", "10ms", "", "1h"] {
        let (status, body) = desk.get(&format!("/v1/approvals/{id}?wait={bad}"));
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("wait: "),
            "{bad:?}: {body}"
        );
    }
    let (status, _) = desk.get(&format!("/v1/approvals/{}?wait=5s", uuid_like()));
    assert_eq!(status, 404);

    // Shutting down (SIGINT): a waiting agent is answered at once, pending,
    // instead of holding the drain until it is cut off (which would fail
    // the request).
    let waiter = desk.wait_in_background(&id, "60s");
    let mut desk = desk;
    desk.serve.interrupt();
    let (status, record) = waiter.join().unwrap();
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "pending");
}

fn uuid_like() -> &'static str {
    "5f1c1e0a-3c1b-4d2a-9a57-1b2c3d4e5f60"
}

/// An in-process service with the finance approver (and its webhook when
/// `webhook` is given), a payments token and finance's approver token.
struct InProcess {
    env: issuer::Env,
    root: biscuit_auth::KeyPair,
    finance: biscuit_auth::KeyPair,
}

impl InProcess {
    fn new() -> InProcess {
        InProcess {
            env: issuer::Env::new(),
            root: biscuit_auth::KeyPair::new(),
            finance: biscuit_auth::KeyPair::new(),
        }
    }

    fn config(&self) -> mandate_server::ServiceConfig {
        let file = self.env.dir.path().join("finance.key");
        issuer::write_key(&file, &self.finance);
        let mut config = self.env.config(&[(0, &self.root)], 0);
        config.approvers = vec![mandate_server::ApproverFile {
            name: "finance".into(),
            file,
            ..Default::default()
        }];
        config
    }

    async fn token(&self, router: &axum::Router) -> String {
        let minter = issuer::admin_token(&self.root, 0, &["mint:/v1/tokens"], &[]);
        let agent = biscuit_auth::KeyPair::new();
        let (status, minted) = issuer::call(
            router,
            Method::POST,
            "/v1/tokens",
            Some(&minter),
            Some(json!({
                "principal": "org:acme", "agent": "payments-agent",
                "agent_key": mandate_spec::format_public_key(&agent.public()),
                "allow": ["pay:/api/payments"], "where": ["amount<=1000"],
                "approval": [format!("pay when amount>100 by finance={}", self.finance.public())],
                "ttl": "1h",
            })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{minted}");
        minted["token"].as_str().unwrap().to_string()
    }

    fn approver(&self) -> String {
        issuer::admin_token(
            &self.root,
            0,
            &["approve:/v1/approvals"],
            &["approver=finance"],
        )
    }
}

async fn submit(router: &axum::Router, token: &str, amount: i64) -> String {
    let (status, asked) = issuer::call(
        router,
        Method::POST,
        "/v1/approvals",
        Some(token),
        Some(json!({"action": "pay", "resource": "/api/payments", "params": {"amount": amount}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    asked["id"].as_str().unwrap().to_string()
}

async fn approve(router: &axum::Router, id: &str, admin: &str) -> Value {
    let (status, done) = issuer::call(
        router,
        Method::POST,
        &format!("/v1/approvals/{id}/approve"),
        Some(admin),
        Some(json!({"valid": "5m"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_are_capped_and_the_slot_is_freed() {
    let p = InProcess::new();
    let router = mandate_server::Service::open(&p.config())
        .unwrap()
        .with_max_waiting(1)
        .into_router();
    let token = p.token(&router).await;
    let first = submit(&router, &token, 150).await;
    let second = submit(&router, &token, 160).await;
    let start_first = || {
        let (r, path) = (router.clone(), format!("/v1/approvals/{first}?wait=60s"));
        tokio::spawn(async move { issuer::call(&r, Method::GET, &path, None, None).await })
    };
    let mut waiter = start_first();
    // Once the first waits, a second waiter is refused, naming the cap. (A
    // probe that got the slot first holds it for its second: the first was
    // then refused, and is started again.)
    let mut refused = None;
    for _ in 0..50 {
        // Ordering only: let the first take the slot.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = issuer::call(
            &router,
            Method::GET,
            &format!("/v1/approvals/{second}?wait=1s"),
            None,
            None,
        )
        .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(body);
            break;
        }
        assert_eq!(body["status"], "pending", "{body}");
        if waiter.is_finished() {
            let (status, body) = waiter.await.unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            waiter = start_first();
        }
    }
    let refused = refused.expect("a second waiter is refused while the first waits");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already waiting"),
        "{refused}"
    );
    // Without wait it is answered as before.
    let (status, body) = issuer::call(
        &router,
        Method::GET,
        &format!("/v1/approvals/{second}"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("pending"))
    );
    approve(&router, &first, &p.approver()).await;
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "approved");
    // The slot is free again.
    let (status, body) = issuer::call(
        &router,
        Method::GET,
        &format!("/v1/approvals/{second}?wait=1s"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
}

#[test]
fn bad_webhook_settings_are_refused_at_start() {
    let p = InProcess::new();
    let secret = p.env.dir.path().join("finance.webhook");
    write_secret(&secret, FINANCE_SECRET);
    let short = p.env.dir.path().join("short.webhook");
    write_secret(&short, "too short");
    let with = |url: &str, secret: Option<&Path>, public: Option<&str>| {
        let mut c = p.config();
        c.approvers[0].webhook_url = Some(url.into());
        c.approvers[0].webhook_secret_file = secret.map(Path::to_path_buf);
        c.public_url = public.map(str::to_string);
        mandate_server::Service::open(&c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let public = Some("https://issuer.example");
    for (url, secret, public, needle) in [
        (
            "ftp://hooks.example/x",
            Some(&*secret),
            public,
            "only http and https",
        ),
        (
            "file:///etc/passwd",
            Some(&*secret),
            public,
            "only http and https",
        ),
        (
            "https://user:pw@hooks.example/x",
            Some(&*secret),
            public,
            "no credentials",
        ),
        (
            "http://hooks example/x",
            Some(&*secret),
            public,
            "not a URL",
        ),
        (
            "http://hooks.example/x",
            None,
            public,
            "webhook_secret_file is required",
        ),
        (
            "http://hooks.example/x",
            Some(&*short),
            public,
            "shorter than 16 bytes",
        ),
        (
            "http://hooks.example/x",
            Some(&*secret),
            None,
            "set public_url",
        ),
        (
            "http://hooks.example/x",
            Some(&*secret),
            Some("issuer.example"),
            "public_url",
        ),
    ] {
        let e = with(url, secret, public);
        assert!(e.contains(needle), "{url} {public:?}: {e:?}");
        assert!(e.contains("config: "), "{e}");
        assert!(!e.contains("user:pw"), "the URL is never echoed: {e}");
    }
    // A Slack webhook needs no secret (Slack cannot check one).
    let mut c = p.config();
    c.approvers[0].webhook_url = Some("http://127.0.0.1:9/hook".into());
    c.approvers[0].webhook_format = mandate_server::WebhookFormat::Slack;
    c.public_url = public.map(str::to_string);
    assert!(mandate_server::Service::open(&c).is_ok());
    // Unknown settings in an approver's entry are refused.
    let e = mandate_server::ServiceConfig::from_toml(
        "[[approvers]]\nname = \"f\"\nfile = \"f.key\"\nwebhook = \"http://x\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `webhook`"), "{e}");
    let e = mandate_server::ServiceConfig::from_toml(
        "[[approvers]]\nname = \"f\"\nfile = \"f.key\"\nwebhook_format = \"xml\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("xml"), "{e}");
}

/// A decision at another issuer service of the fleet wakes a request
/// waiting here (the watch of the shared bucket's decisions): answered
/// approved although this service decided nothing, well before the waiters'
/// own periodic read (10 s) would have seen it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_at_another_fleet_service_wakes_the_waiter() {
    use mandate_verifier::feed::{FeedConfig, RevocationKeys, RevocationSigner};
    let dir = tempfile::tempdir().unwrap();
    let nats = common::procs::Nats::start(dir.path());
    let p = InProcess::new();
    let other = issuer::Env::new();
    let mut keys = RevocationKeys::new();
    keys.insert(0, &mandate_spec::format_public_key(&p.root.public()))
        .unwrap();
    let mut cfg = FeedConfig::new(nats.url());
    cfg.revocation_keys = keys;
    let bucket = || async {
        let signer = RevocationSigner::new(0, &p.root).unwrap();
        Arc::new(
            mandate_server::ApprovalBucket::open(&cfg, signer)
                .await
                .unwrap(),
        )
    };
    let a = mandate_server::Service::open(&p.config())
        .unwrap()
        .with_shared_approvals(bucket().await)
        .await
        .unwrap()
        .into_router();
    let mut config_b = p.config();
    config_b.data_dir = Some(other.data_dir());
    let b = mandate_server::Service::open(&config_b)
        .unwrap()
        .with_shared_approvals(bucket().await)
        .await
        .unwrap()
        .into_router();
    let token = p.token(&a).await;
    let id = submit(&a, &token, 150).await;
    let (r, path) = (a.clone(), format!("/v1/approvals/{id}?wait=8s"));
    let waiter =
        tokio::spawn(async move { issuer::call(&r, Method::GET, &path, None, None).await });
    // Let it register (ordering only: nothing is asserted on time).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "still waiting");
    approve(&b, &id, &p.approver()).await;
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved", "woken by B's decision: {body}");
}

/// Filed → approved → the waiting agent answered, in-process over loopback
/// HTTP (keep-alive), `runs` times: p50/p99 of each step and of the
/// machine's part of the hold path (filing + approving + waking the
/// agent; the person's delay excluded). Printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --release -p mandate --test approval_notify -- --ignored --nocapture"]
async fn hold_path_latency() {
    let runs: usize = std::env::var("MANDATE_HOLD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let p = InProcess::new();
    let router = mandate_server::Service::open(&p.config())
        .unwrap()
        .into_router();
    let token = p.token(&router).await;
    let admin = p.approver();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{addr}");
    let body = json!({"action": "pay", "resource": "/api/payments", "params": {"amount": 150}});
    let (mut filed, mut approved, mut woken, mut total) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs + 10 {
        let t0 = Instant::now();
        let asked = client
            .post(format!("{base}/v1/approvals"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let asked: Value = serde_json::from_slice(&asked).unwrap();
        let t_filed = t0.elapsed();
        let id = asked["id"].as_str().unwrap().to_string();
        let (c, url) = (client.clone(), format!("{base}/v1/approvals/{id}?wait=30s"));
        let waiter = tokio::spawn(async move {
            let r = c.get(url).send().await.unwrap().bytes().await.unwrap();
            (Instant::now(), serde_json::from_slice::<Value>(&r).unwrap())
        });
        // The person (not measured).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t1 = Instant::now();
        let done = client
            .post(format!("{base}/v1/approvals/{id}/approve"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(json!({"valid": "5m"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200);
        let t_approved = t1.elapsed();
        let (at, record) = waiter.await.unwrap();
        assert_eq!(record["status"], "approved");
        filed.push(t_filed);
        approved.push(t_approved);
        woken.push(at.duration_since(t1));
        total.push(t_filed + at.duration_since(t1));
    }
    let show = |name: &str, v: &mut Vec<Duration>| {
        let v = &mut v[10..]; // warm-up
        v.sort();
        let q = |f: f64| v[((v.len() as f64 * f) as usize).min(v.len() - 1)];
        println!(
            "{name:<44} p50 {:>7.2} ms  p99 {:>7.2} ms",
            q(0.50).as_secs_f64() * 1e3,
            q(0.99).as_secs_f64() * 1e3
        );
    };
    println!("hold path, {runs} runs (in-process service, loopback HTTP):");
    show("filed (POST /v1/approvals → 201)", &mut filed);
    show("approved (POST …/approve → 200)", &mut approved);
    show("approve sent → long-poll answered", &mut woken);
    show("machine total (filed + approve → answered)", &mut total);
}

/// Behind https (`public_url` is `https://…`, TLS ending at a proxy) the
/// desk's session cookie is `Secure`: a browser never sends the admin token
/// over plain http.
#[test]
fn behind_https_the_desk_session_cookie_is_secure() {
    let desk = Desk::start();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .post(format!("http://{}/ui/session", desk.serve.addr))
        .form(&[("token", desk.finance.as_str())])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("mandate_admin="), "{cookie}");
    for part in ["; Path=/ui", "; HttpOnly", "; SameSite=Strict", "; Secure"] {
        assert!(cookie.contains(part), "{part:?} not in {cookie}");
    }
}

/// A notification not delivered when the service is killed (SIGKILL) is
/// sent again by the restarted service, the same delivery (same
/// `Mandate-Delivery`, same signed body), until the receiver takes it.
#[test]
fn a_notification_not_delivered_before_a_crash_is_sent_after_restart() {
    let mut desk = Desk::start();
    // Finance's receiver is down for now: every attempt fails.
    desk.receiver.script("/finance", &[503; 1000]);
    let id = desk.ask(
        &desk.pay_finance,
        "pay",
        "/api/payments",
        json!({"amount": 150}),
    );
    let before = desk.receiver.wait_for("/finance", 1);
    let delivery = before[0].headers["mandate-delivery"]
        .to_str()
        .unwrap()
        .to_string();
    desk.serve.stop(); // SIGKILL
    let tried = desk.receiver.at("/finance").len();
    assert!(
        desk.receiver.at("/finance").iter().all(|g| g.status == 503),
        "not delivered before the crash"
    );

    // The receiver is back; the service restarts and sends it again.
    desk.receiver.script("/finance", &[]);
    desk.serve.restart();
    let got = desk.receiver.wait_for("/finance", tried + 1);
    let last = got.last().unwrap();
    assert_eq!(last.status, 200);
    assert_eq!(last.headers["mandate-delivery"], delivery.as_str());
    let event = verified(last, FINANCE_SECRET.as_bytes());
    assert_eq!(event["event"], "approval_requested");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["delivery"], delivery.as_str());

    // Delivered: not sent again by a later restart (once the service has
    // taken it out of its outbox: a SIGKILL between the receiver's answer
    // and that removal sends it twice, as SERVICE.md says).
    let outbox = desk.dir.path().join("data").join("notifications");
    wait_until(
        "the delivered notification out of the outbox",
        Duration::from_secs(30),
        || {
            rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), &outbox, false)
                .is_ok_and(|db| db.iterator(rocksdb::IteratorMode::Start).next().is_none())
        },
    );
    desk.serve.restart();
    let (status, _) = desk.get(&format!("/v1/approvals/{id}"));
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(desk.receiver.at("/finance").len(), tried + 1);
}
