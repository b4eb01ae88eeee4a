//! A gateway that holds requests for approval, for the hold tests and the
//! hold bench: the payments scenario's `mandate serve` (the issuer service
//! with the finance approver), a small upstream in this process (a payments
//! API and an MCP server answering JSON-RPC), and `mandate gateway` with
//! three held routes in front of it — `/api` (REST, held up to 2m), `/brief`
//! (REST, held up to 2s) and `/mcp` (MCP, held up to 2m).
//!
//! Included by path (`#[path = "common/hold.rs"] mod hold;`) next to `mod
//! common;`.
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use crate::common::payments::{issue, key, Options, Payments};
use crate::common::procs::{free_port, http_client, Proc};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What reached the upstream.
#[derive(Default)]
pub struct Seen {
    pub hits: AtomicUsize,
    /// Each request's body (JSON), in order.
    pub bodies: Mutex<Vec<Value>>,
    /// Each request's `Authorization` header, if any.
    pub authorization: Mutex<Vec<Option<String>>>,
}

impl Seen {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn amounts(&self) -> Vec<i64> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                b["amount"]
                    .as_i64()
                    .or_else(|| b["params"]["arguments"]["amount"].as_i64())
                    .unwrap_or(-1)
            })
            .collect()
    }
}

fn saw(seen: &Seen, headers: &HeaderMap, body: &Value) {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    seen.bodies.lock().unwrap().push(body.clone());
    seen.authorization.lock().unwrap().push(
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default().to_string()),
    );
}

async fn payments(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    saw(&seen, &headers, &body);
    axum::Json(json!({ "paid": body["amount"], "receipt": format!("r-{}", seen.hits()) }))
}

/// The MCP server: every `tools/call` answered with what it paid.
async fn mcp(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    axum::Json(msg): axum::Json<Value>,
) -> axum::Json<Value> {
    saw(&seen, &headers, &msg);
    let amount = msg["params"]["arguments"]["amount"].clone();
    axum::Json(json!({
        "jsonrpc": "2.0",
        "id": msg["id"],
        "result": { "content": [{ "type": "text", "text": format!("paid {amount}") }] },
    }))
}

/// The upstream, on a loopback port, in this process.
pub fn upstream() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/api/payments", post(payments))
        .route("/brief/payments", post(payments))
        .route("/mcp", post(mcp))
        .with_state(seen.clone());
    let port = free_port();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                axum::serve(listener, app).await.unwrap();
            });
    });
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    (format!("http://127.0.0.1:{port}"), seen)
}

pub struct HoldGateway {
    pub p: Payments,
    pub gateway: Proc,
    pub seen: Arc<Seen>,
    /// The payments agent's token for the MCP route (`pay:/mcp`, the same
    /// rule), also in `mcp.tok`.
    pub mcp_token: String,
    /// The gateway's audit public key.
    pub audit_pub: String,
}

/// An answer: status, headers, body text.
pub type Answer = (u16, reqwest::header::HeaderMap, String);

impl HoldGateway {
    pub fn start() -> HoldGateway {
        HoldGateway::start_with(Options::default())
    }

    /// The gateway in front of the payments scenario's service configured
    /// by `options`.
    pub fn start_with(options: Options) -> HoldGateway {
        let p = Payments::start_with(options);
        let d = p.d();
        let audit_pub = key(d, "audit.key");
        let rule = format!("pay when amount>100 by finance={}", p.finance_pub);
        let mcp_token = issue(
            d,
            &[
                "--principal",
                "org:acme",
                "--to",
                "payments-agent",
                "--to-key",
                &p.agent_pub,
                "--allow",
                "pay:/mcp",
                "--where",
                "amount<=1000",
                "--approval",
                &rule,
                "--purpose",
                "pay suppliers",
            ],
        );
        std::fs::write(d.join("mcp.tok"), &mcp_token).unwrap();
        let (upstream, seen) = upstream();
        let rules = |prefix: &str| {
            format!(
                "rules = [ {{ method = \"POST\", pattern = \"{prefix}/payments\", action = \"pay\", \
                 resource = \"/api/payments\", body_params = [[\"amount\", \"amount\"]] }} ]"
            )
        };
        let config = format!(
            r#"listen = "127.0.0.1:0"
public_key = "{root}"
replay_db = "replay"
audit_dir = "audit"
audit_key_file = "audit.key"
approval_service = "{service}"

[[routes]]
prefix = "/api"
upstream = "{upstream}"
hold_for_approval = "2m"
{api}

[[routes]]
prefix = "/brief"
upstream = "{upstream}"
hold_for_approval = "2s"
{brief}

[[routes]]
prefix = "/mcp"
upstream = "{upstream}"
mode = "mcp"
hold_for_approval = "2m"
"#,
            root = p.root,
            service = p.url(),
            api = rules("/api"),
            brief = rules("/brief"),
        );
        std::fs::write(d.join("gateway.toml"), config).unwrap();
        let gateway = Proc::start([
            "gateway",
            "--config",
            d.join("gateway.toml").to_str().unwrap(),
        ]);
        HoldGateway {
            p,
            gateway,
            seen,
            mcp_token,
            audit_pub,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }

    /// The payments agent pays `amount` through `prefix` (`/api`, `/brief`).
    pub fn pay(&self, prefix: &str, amount: i64) -> Answer {
        let resp = http_client()
            .post(self.url(&format!("{prefix}/payments")))
            .bearer_auth(self.p.pay.trim())
            .header("content-type", "application/json")
            .body((json!({ "amount": amount, "to": "supplier-7" })).to_string())
            .timeout(Duration::from_secs(180))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().unwrap())
    }

    /// `pay` as an MCP `tools/call` of `amount` (id 7), accepting `accept`,
    /// with `meta` as `params._meta` when given: the response, unread.
    pub fn mcp_pay(
        &self,
        amount: i64,
        accept: &str,
        meta: Option<Value>,
    ) -> reqwest::blocking::Response {
        let mut params = json!({ "name": "pay", "arguments": { "amount": amount } });
        if let Some(m) = meta {
            params["_meta"] = m;
        }
        http_client()
            .post(self.url("/mcp"))
            .bearer_auth(self.mcp_token.trim())
            .header("accept", accept)
            .header("content-type", "application/json")
            .body(
                (json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params }))
                    .to_string(),
            )
            .timeout(Duration::from_secs(180))
            .send()
            .unwrap()
    }

    /// The gateway's `mandate_gateway_held_requests` now.
    pub fn held_now(&self) -> f64 {
        self.metric("mandate_gateway_held_requests")
    }

    /// A metric's value (the first sample whose name and labels start with
    /// `prefix`), 0 when absent.
    pub fn metric(&self, prefix: &str) -> f64 {
        let text = http_client()
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}
