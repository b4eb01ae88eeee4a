//! `mandate gateway` against real upstream HTTP servers on loopback: the
//! upstream receives the injected credential and never the Mandate token;
//! denied requests never reach it; a 256 MiB upload and a 256 MiB download
//! stream through without the gateway holding them (its peak memory stays
//! far below); a slow upstream is a 504, a dead one a 502; MCP `tools/call`
//! is decided per tool and argument; configuration errors name their line.
//! Routes: public MCP access only on the route's exact path and exact HTTP
//! methods, non-canonical paths refused before forwarding, prefixes on `/`
//! boundaries, the routing in the audit policy hash; proofs of possession
//! over the audience and the whole target.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{any, get, post};
use axum::Router;
use common::procs::{free_port, http_client, Proc};
use common::{mandate, raw_http, Run};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MIB: usize = 1 << 20;

#[derive(Default)]
struct Seen {
    /// Every request that reached the upstream, whatever its path or method.
    hits: AtomicUsize,
    requests: AtomicUsize,
    headers: Mutex<Vec<HeaderMap>>,
    bodies: Mutex<Vec<Value>>,
}

/// The upstream API and MCP server, on a loopback port, in this process.
fn upstream() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/crm/customers/{id}", get(customer))
        .route("/crm/upload", post(upload))
        .route("/crm/download", get(download))
        .route("/crm/slow", get(slow))
        .route("/mcp", post(mcp).get(stream).delete(stream))
        .fallback(any(anywhere))
        // Whatever the gateway forwards is counted, routed here or not.
        .layer(axum::middleware::from_fn_with_state(seen.clone(), count))
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

fn record(seen: &Seen, headers: &HeaderMap) {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    seen.headers.lock().unwrap().push(headers.clone());
}

async fn customer(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> axum::Json<Value> {
    record(&seen, &headers);
    axum::Json(json!({"id": 42, "name": "Grace"}))
}

async fn upload(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Body) -> String {
    record(&seen, &headers);
    let mut stream = body.into_data_stream();
    let mut n = 0usize;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len();
    }
    n.to_string()
}

#[derive(serde::Deserialize)]
struct Size {
    mib: usize,
}

async fn download(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Query(s): Query<Size>,
) -> Body {
    record(&seen, &headers);
    let chunks = futures_util::stream::iter(
        (0..s.mib).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; MIB]))),
    );
    Body::from_stream(chunks)
}

async fn slow(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> &'static str {
    record(&seen, &headers);
    tokio::time::sleep(Duration::from_secs(3)).await;
    "late"
}

/// The stub MCP server: `initialize` opens session `upstream-session-1`;
/// `tools/list` lists two tools; anything else echoes its method.
async fn mcp(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    body: String,
) -> (HeaderMap, axum::Json<Value>) {
    record(&seen, &headers);
    let msg: Value = serde_json::from_str(&body).unwrap();
    seen.bodies.lock().unwrap().push(msg.clone());
    let mut out = HeaderMap::new();
    let result = match msg["method"].as_str() {
        Some("initialize") => {
            out.insert("mcp-session-id", "upstream-session-1".parse().unwrap());
            json!({"ok": "initialize"})
        }
        Some("tools/list") => json!({"tools": [
            {"name": "send_email", "description": "Sends an email.", "inputSchema": {"type": "object"}},
            {"name": "delete_inbox", "description": "Deletes every email.", "inputSchema": {"type": "object"}},
        ]}),
        m => json!({ "ok": m }),
    };
    (
        out,
        axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": result})),
    )
}

/// The stub's event stream: with `x-forever`, server-sent events that never
/// end (a ping every 50 ms); else one line.
async fn stream(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> axum::response::Response {
    record(&seen, &headers);
    if headers.contains_key("x-forever") {
        let events = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    b"data: {\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}\n\n",
                )),
                (),
            ))
        });
        return axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(events))
            .unwrap();
    }
    axum::response::Response::new(Body::from("events"))
}

async fn count(
    State(seen): State<Arc<Seen>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

async fn anywhere(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> &'static str {
    record(&seen, &headers);
    "reached"
}

fn run(d: &Path, args: &[&str]) -> Run {
    let r = mandate(d, args);
    assert_eq!(r.code, 0, "mandate {args:?}: {}", r.stderr);
    r
}

struct Setup {
    _dir: tempfile::TempDir,
    gateway: Proc,
    seen: Arc<Seen>,
    token: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    let agent = run(d, &["keygen", "--out", "agent.key"])
        .stdout
        .trim()
        .to_string();
    let token = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "user:alice",
            "--to",
            "mail-agent",
            "--to-key",
            &agent,
            "--allow",
            "read:/crm/customers/*",
            "--allow",
            "create:/crm/upload",
            "--allow",
            "read:/crm/download",
            "--allow",
            "read:/crm/slow",
            "--ttl",
            "1h",
        ],
    )
    .stdout
    .trim()
    .to_string();
    // The MCP grant: send_email only to company addresses.
    std::fs::write(d.join("root.tok"), &token).unwrap();
    let mail = run(d, &["keygen", "--out", "mail.key"])
        .stdout
        .trim()
        .to_string();
    let _ = mail;
    let mcp_token = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "user:alice",
            "--to",
            "mail-agent",
            "--to-key",
            &agent,
            "--allow",
            "send_email:/mcp",
            "--where",
            "to ends-with @company.com",
            "--ttl",
            "1h",
        ],
    )
    .stdout
    .trim()
    .to_string();
    std::fs::write(d.join("mcp.tok"), &mcp_token).unwrap();
    std::fs::write(d.join("crm.secret"), "upstream-secret\n").unwrap();
    let (upstream, seen) = upstream();
    let dead = free_port();
    let config = format!(
        r#"listen = "127.0.0.1:0"
public_key = "{root}"
public_url = "https://gw.example.com"
issuer_url = "https://issuer.example.com"

[[routes]]
prefix = "/crm/"
upstream = "{upstream}"
timeout = "1s"
credential = {{ header = "authorization", prefix = "Bearer ", file = "crm.secret" }}

[[routes]]
prefix = "/mcp"
upstream = "{upstream}"
mode = "mcp"
resource_name = "Mail tools"
resource_documentation = "https://docs.example.com/mandate"
credential = {{ header = "x-api-key", env = "MCP_UPSTREAM_KEY" }}

[[routes]]
prefix = "/down/"
upstream = "http://127.0.0.1:{dead}"
"#
    );
    std::fs::write(d.join("gateway.toml"), config).unwrap();
    std::env::set_var("MCP_UPSTREAM_KEY", "mcp-secret");
    let gateway = Proc::start([
        "gateway",
        "--config",
        d.join("gateway.toml").to_str().unwrap(),
    ]);
    Setup {
        _dir: dir,
        gateway,
        seen,
        token: format!("{token}\n{mcp_token}"),
    }
}

impl Setup {
    fn token(&self) -> &str {
        self.token.lines().next().unwrap()
    }

    fn mcp_token(&self) -> &str {
        self.token.lines().nth(1).unwrap()
    }

    /// One request; (status, body text).
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http_client()
            .request(method, format!("http://{}{path}", self.gateway.addr))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }

    /// The same with the request-target sent exactly as given (see
    /// `common::raw_http`: a client would normalise the non-canonical ones).
    fn call_exact(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        raw_http::request(&self.gateway.addr, method, target, &headers, body)
    }

    fn reached(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Requests the upstream received, on any path with any method.
    fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }
}

#[test]
fn the_upstream_gets_its_credential_and_never_the_mandate_token() {
    let s = setup();
    let (status, body) = s.call("GET", "/crm/customers/42", Some(s.token()), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Grace"));
    let headers = s.seen.headers.lock().unwrap().last().unwrap().clone();
    assert_eq!(headers["authorization"], "Bearer upstream-secret");
    for (name, value) in &headers {
        let v = value.to_str().unwrap_or("");
        assert!(
            !v.contains(&s.token()[..40]),
            "the token reached the upstream in {name}"
        );
    }
    // Denied: never forwarded.
    let before = s.reached();
    let (status, body) = s.call("DELETE", "/crm/customers/42", Some(s.token()), "");
    assert_eq!(status, 403);
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["denial"]["kind"], "not_allowed");
    assert_eq!(d["chain"]["principal"], "user:alice");
    let (status, _) = s.call("GET", "/crm/customers/42", None, "");
    assert_eq!(status, 401);
    let (status, _) = s.call("GET", "/crm/customers/42", Some("garbage"), "");
    assert_eq!(status, 401);
    let (status, _) = s.call("GET", "/nowhere", Some(s.token()), "");
    assert_eq!(status, 404);
    assert_eq!(
        s.reached(),
        before,
        "no denied request reached the upstream"
    );
}

#[test]
fn a_slow_upstream_is_504() {
    let s = setup();
    let (status, body) = s.call("GET", "/crm/slow", Some(s.token()), "");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer within 1.0 s"), "{body}");
    // The decision comes before any upstream is tried: a request the token
    // does not allow is a 403 even on a route whose upstream is down.
    let (status, _) = s.call("GET", "/down/crm/customers/1", Some(s.token()), "");
    assert_eq!(status, 403);
}

#[test]
fn a_dead_upstream_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    let agent = run(d, &["keygen", "--out", "agent.key"])
        .stdout
        .trim()
        .to_string();
    let token = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "p",
            "--to",
            "a",
            "--to-key",
            &agent,
            "--allow",
            "read:/svc/**",
            "--ttl",
            "1h",
        ],
    )
    .stdout;
    let dead = free_port();
    std::fs::write(
        d.join("g.toml"),
        format!("listen = \"127.0.0.1:0\"\npublic_key = \"{root}\"\n[[routes]]\nprefix = \"/svc/\"\nupstream = \"http://127.0.0.1:{dead}\"\n"),
    )
    .unwrap();
    let g = Proc::start(["gateway", "--config", d.join("g.toml").to_str().unwrap()]);
    let (status, body) = common::procs::http(&g.addr, "GET", "/svc/x", "", Some(token.trim()));
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("could not be reached"));
}

/// Streams `mib` MiB to the gateway with chunked encoding (a body of
/// unknown length, in 1 MiB chunks), never holding it; (status, body text).
fn stream_upload(addr: &str, token: &str, mib: usize) -> (u16, String) {
    let chunk = bytes::Bytes::from(vec![b'u'; MIB]);
    let chunks =
        futures_util::stream::iter((0..mib).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let request = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{addr}/crm/upload"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(120))
        .body(reqwest::Body::wrap_stream(chunks));
    // The async client: the blocking one sends a streamed body in 8 KiB
    // pieces, too slowly for the route's 1 s upstream timeout.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
}

#[test]
fn large_bodies_stream_both_ways() {
    let s = setup();
    let baseline = s.gateway.peak_rss_kib();
    let (status, raw) = stream_upload(&s.gateway.addr, s.token(), 256);
    assert_eq!(status, 200, "{raw}");
    assert!(
        raw.ends_with(&(256 * MIB).to_string()),
        "the upstream counted every byte"
    );

    let mut reader = http_client()
        .get(format!("http://{}/crm/download?mib=256", s.gateway.addr))
        .bearer_auth(s.token())
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap();
    assert_eq!(reader.status(), 200);
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += buf[..n].iter().filter(|b| **b == b'x').count();
    }
    assert_eq!(total, 256 * MIB, "every byte came through");
    let peak = s.gateway.peak_rss_kib();
    eprintln!("gateway peak RSS {peak} KiB (before the transfers {baseline} KiB)");
    assert!(
        peak < 96 * 1024,
        "the gateway held the bodies: peak RSS {peak} KiB"
    );
}

#[test]
fn mcp_tool_calls_are_decided_per_tool_and_argument() {
    let s = setup();
    let call = |to: &str, id: u32| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "send_email", "arguments": {"to": to, "subject": "hi", "attachments": ["a"]}}})
        .to_string()
    };
    // Housekeeping: no grant needed, but a token (SPEC §17); forwarded
    // with the upstream's key.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}).to_string();
    let (status, body) = s.call("POST", "/mcp", None, &init);
    assert_eq!(status, 401, "{body}");
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), &init);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s.seen.headers.lock().unwrap().last().unwrap()["x-api-key"],
        "mcp-secret"
    );

    let (status, body) = s.call(
        "POST",
        "/mcp",
        Some(s.mcp_token()),
        &call("bob@company.com", 1),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\":\"tools/call\""));
    let headers = s.seen.headers.lock().unwrap().last().unwrap().clone();
    assert_eq!(headers["x-api-key"], "mcp-secret");
    assert!(
        headers.get("authorization").is_none(),
        "the Mandate token was stripped"
    );

    let before = s.reached();
    let (status, body) = s.call(
        "POST",
        "/mcp",
        Some(s.mcp_token()),
        &call("eve@evil.example", 2),
    );
    assert_eq!(status, 403, "{body}");
    // A JSON-RPC error response for the call's id, with the reason as its
    // message and the decision as its data.
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["jsonrpc"], "2.0", "{d}");
    assert_eq!(d["id"], 2, "{d}");
    assert_eq!(d["error"]["code"], -32080, "not_allowed: {d}");
    assert!(
        d["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ends-with \"@company.com\""),
        "{d}"
    );
    assert_eq!(d["error"]["data"]["denial"]["kind"], "not_allowed");
    assert_eq!(d["error"]["data"]["request"]["action"], "send_email");
    assert_eq!(d["error"]["data"]["chain"]["principal"], "user:alice");
    // Another tool: not in the grant.
    let other = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "delete_inbox", "arguments": {}}}).to_string();
    assert_eq!(s.call("POST", "/mcp", Some(s.mcp_token()), &other).0, 403);
    // resources/read is decided on its URI (a parameter), prompts/get on
    // the prompt's name: not in this grant.
    let read = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read",
                      "params": {"uri": "file:///etc/passwd"}})
    .to_string();
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), &read);
    assert_eq!(status, 403, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["error"]["data"]["request"]["action"], "resources.read");
    assert_eq!(
        d["error"]["data"]["request"]["params"]["uri"],
        "file:///etc/passwd"
    );
    let prompt = json!({"jsonrpc": "2.0", "id": 5, "method": "prompts/get",
                        "params": {"name": "leak-secrets"}})
    .to_string();
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), &prompt);
    assert_eq!(status, 403, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        d["error"]["data"]["request"]["params"]["name"],
        "leak-secrets"
    );
    // Integral numbers are integers (2.0 is 2); other numbers are refused
    // with a reason, never silently dropped.
    let number = |n: &str| {
        format!(
            r#"{{"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {{"name": "send_email", "arguments": {{"to": "bob@company.com", "n": {n}}}}}}}"#
        )
    };
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), &number("2.5"));
    assert_eq!(status, 400, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["error"]["code"], -32602, "{d}");
    assert!(
        d["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an integer"),
        "{d}"
    );
    assert_eq!(d["id"], 6);
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), &number("1e300"));
    assert_eq!(status, 400, "{body}");
    // Batches cannot be decided per message: refused.
    assert_eq!(s.call("POST", "/mcp", Some(s.mcp_token()), "[]").0, 400);
    assert_eq!(
        s.reached(),
        before,
        "denied calls never reached the tool server"
    );
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), &number("2.0"));
    assert_eq!(status, 200, "2.0 is an integer argument: {body}");
}

#[test]
fn a_holder_bound_token_needs_its_proof_at_the_gateway_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    let agent = run(d, &["keygen", "--out", "agent.key"])
        .stdout
        .trim()
        .to_string();
    let token = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "p",
            "--to",
            "a",
            "--to-key",
            &agent,
            "--allow",
            "read:/crm/customers/*",
            "--require-proof",
            "--ttl",
            "1h",
        ],
    )
    .stdout;
    std::fs::write(d.join("t.tok"), &token).unwrap();
    let (upstream, seen) = upstream();
    std::fs::write(
        d.join("g.toml"),
        format!("listen = \"127.0.0.1:0\"\npublic_key = \"{root}\"\nreplay_db = \"replay\"\npublic_url = \"https://gw.example.com\"\n[[routes]]\nprefix = \"/crm/\"\nupstream = \"{upstream}\"\n"),
    )
    .unwrap();
    let g = Proc::start(["gateway", "--config", d.join("g.toml").to_str().unwrap()]);
    // (status, body text)
    let get = |proof: Option<&str>| {
        let mut req = http_client()
            .get(format!("http://{}/crm/customers/42", g.addr))
            .bearer_auth(token.trim());
        if let Some(p) = proof {
            req = req.header("mandate-proof", p);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    assert_eq!(get(None).0, 401, "no proof");
    let proof = run(
        d,
        &[
            "prove",
            "--key",
            "agent.key",
            "--method",
            "GET",
            "--url",
            "https://gw.example.com/crm/customers/42",
            "t.tok",
        ],
    )
    .stdout;
    let ok = get(Some(proof.trim()));
    assert_eq!(ok.0, 200, "{}", ok.1);
    let headers = seen.headers.lock().unwrap().last().unwrap().clone();
    assert!(
        headers.get("mandate-proof").is_none(),
        "the proof stays at the gateway"
    );
    assert!(
        get(Some(proof.trim())).1.contains("replayed"),
        "a proof is used once"
    );
}

#[test]
fn configuration_errors_are_refused_at_start_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    for (text, needle) in [
        (format!("public_key = \"{key}\"\n[[routes]]\nprefix = \"/a/\"\nupstream = \"localhost\"\n"), "line 4: upstream"),
        (format!("public_key = \"{key}\"\n\n[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:1\"\ncredential = {{ header = \"x-key\", env = \"SURELY_UNSET_VAR\" }}\n"), "line 6: credential: environment variable SURELY_UNSET_VAR is not set"),
        (format!("public_key = \"{key}\"\nlisten = 80\n"), "line 2"),
        ("routes = []\n".to_string(), "public_key"),
    ] {
        std::fs::write(d.join("bad.toml"), &text).unwrap();
        let r = mandate(d, &["gateway", "--config", "bad.toml"]);
        common::assert_bad_input(&r, needle);

    }
}

/// A holder-bound token for `read:/crm/customers/*` with `rows<=1000`, and a
/// gateway in front of a counting upstream, with `public_url` settings as
/// given (top-level lines, then the route's lines).
struct Bound {
    dir: tempfile::TempDir,
    gateway: Proc,
    seen: Arc<Seen>,
    token: String,
}

fn bound(global: &str, route: &str) -> Bound {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    let agent = run(d, &["keygen", "--out", "agent.key"])
        .stdout
        .trim()
        .to_string();
    let token = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "p",
            "--to",
            "a",
            "--to-key",
            &agent,
            "--allow",
            "read:/crm/customers/*",
            "--where",
            "rows<=1000",
            "--require-proof",
            "--ttl",
            "1h",
        ],
    )
    .stdout
    .trim()
    .to_string();
    std::fs::write(d.join("t.tok"), &token).unwrap();
    let (upstream, seen) = upstream();
    std::fs::write(
        d.join("g.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\npublic_key = \"{root}\"\nreplay_db = \"replay\"\n{global}\n\
             [[routes]]\nprefix = \"/crm\"\nupstream = \"{upstream}\"\n{route}\n"
        ),
    )
    .unwrap();
    let gateway = Proc::start(["gateway", "--config", d.join("g.toml").to_str().unwrap()]);
    Bound {
        dir,
        gateway,
        seen,
        token,
    }
}

impl Bound {
    /// `mandate prove` for `GET url`.
    fn prove(&self, url: &str) -> String {
        run(
            self.dir.path(),
            &[
                "prove",
                "--key",
                "agent.key",
                "--method",
                "GET",
                "--url",
                url,
                "t.tok",
            ],
        )
        .stdout
        .trim()
        .to_string()
    }

    /// `GET target` with the token, `proof` and a `Host` header: (status,
    /// decision JSON).
    fn get(&self, target: &str, proof: &str, host: &str) -> (u16, Value) {
        let resp = http_client()
            .get(format!("http://{}{target}", self.gateway.addr))
            // Sent as given: the audience must never come from it.
            .header("host", host)
            .bearer_auth(&self.token)
            .header("mandate-proof", proof)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn reached(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }
}

#[test]
fn a_proof_for_one_query_is_refused_with_another_at_the_gateway() {
    let b = bound("public_url = \"https://gw.example.com\"", "");
    let five = b.prove("https://gw.example.com/crm/customers/42?rows=5");
    // The thief's replay with rows=500 (which the grant allows).
    let (status, d) = b.get("/crm/customers/42?rows=500", &five, "gw.example.com");
    assert_eq!(status, 401, "{d}");
    assert_eq!(d["denial"]["kind"], "proof_invalid");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("not signed by the final holder"),
        "{d}"
    );
    assert_eq!(d["request"]["params"]["rows"], 500);
    // Reordered or with a parameter added: another request too.
    let two = b.prove("https://gw.example.com/crm/customers/42?rows=5&q=x");
    for other in [
        "/crm/customers/42?q=x&rows=5",
        "/crm/customers/42?rows=5&q=x&q=y",
        "/crm/customers/42?rows=5",
    ] {
        let (status, d) = b.get(other, &two, "gw.example.com");
        assert!(status == 401 || status == 400, "{other}: {status} {d}");
    }
    assert_eq!(b.reached(), 0, "no refused request reached the upstream");
    // The request it was made for passes.
    let (status, d) = b.get("/crm/customers/42?rows=5", &five, "gw.example.com");
    assert_eq!(status, 200, "{d}");
    assert_eq!(b.reached(), 1);
}

#[test]
fn a_proof_for_another_audience_is_refused_at_the_gateway() {
    // The route has its own public_url, overriding the global one.
    let b = bound(
        "public_url = \"https://gw.example.com\"",
        "public_url = \"http://crm.internal:8080\"",
    );
    let target = "/crm/customers/42?rows=5";
    for (made_for, host) in [
        ("https://gw.example.com", "gw.example.com"),
        ("https://evil.example", "evil.example"),
        ("http://crm.internal", "crm.internal:8080"),
    ] {
        let p = b.prove(&format!("{made_for}{target}"));
        let (status, d) = b.get(target, &p, host);
        assert_eq!(status, 401, "{made_for}: {d}");
        assert!(
            d["reason"]
                .as_str()
                .unwrap()
                .contains("audience (http://crm.internal:8080)"),
            "{d}"
        );
    }
    assert_eq!(b.reached(), 0);
    let p = b.prove(&format!("http://CRM.internal:8080{target}"));
    let (status, d) = b.get(target, &p, "whatever");
    assert_eq!(status, 200, "{d}");
}

#[test]
fn a_gateway_without_public_url_refuses_proofs_saying_why() {
    let b = bound("", "");
    let p = b.prove("https://gw.example.com/crm/customers/42");
    let (status, d) = b.get("/crm/customers/42", &p, "gw.example.com");
    assert_eq!(status, 401, "{d}");
    assert_eq!(d["denial"]["kind"], "proof_invalid");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("no configured audience"),
        "{d}"
    );
    assert_eq!(b.reached(), 0);
}

#[test]
fn mcp_housekeeping_needs_a_token_but_no_grant_on_the_exact_route_path_only() {
    let s = setup();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}).to_string();
    let before = s.hits();
    // Sibling paths sharing the prefix as a string, and paths the upstream
    // would resolve elsewhere: never forwarded, with or without a token.
    for (path, expected) in [
        ("/mcp-admin/x", 404),
        ("/mcpx", 404),
        ("/mcp/../x", 400),
        ("/mcp/../crm/customers/42", 400),
        ("/mcp/%2e%2e/x", 400),
        ("/mcp/%2E%2e/x", 400),
        ("/mcp/./x", 400),
        ("/mcp//x", 400),
        ("/mcp/%2fx", 400),
        ("/mcp/%5cx", 400),
        ("/mcp/x%00", 400),
        ("/mcp\\..\\x", 400),
        ("/crm/../mcp", 400),
    ] {
        let (status, body) = s.call_exact("POST", path, None, &init);
        assert_eq!(status, expected, "{path}: {body}");
        let (status, _) = s.call_exact("POST", path, Some(s.mcp_token()), &init);
        assert_eq!(status, expected, "{path} with a token");
    }
    // Regression (issue 14): housekeeping was public, so tokenless callers
    // reached the server. Now every message needs a valid token: without
    // one, 401 with the JSON-RPC error and the RFC 6750 challenge.
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string();
    let cancelled = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                           "params": {"requestId": 1}})
    .to_string();
    let response = json!({"jsonrpc": "2.0", "id": "s-1", "result": {"roots": []}}).to_string();
    for (method, body) in [
        ("POST", init.as_str()),
        ("POST", ping.as_str()),
        ("POST", cancelled.as_str()),
        ("POST", response.as_str()),
        ("GET", ""),
        ("DELETE", ""),
    ] {
        for token in [None, Some("not-a-token")] {
            let (status, text) = s.call(method, "/mcp", token, body);
            assert_eq!(status, 401, "{method} {body} {token:?}: {text}");
            let d: Value = serde_json::from_str(&text).unwrap();
            let kind = if token.is_none() {
                "missing_token"
            } else {
                "malformed_token"
            };
            assert_eq!(d["error"]["data"]["denial"]["kind"], kind, "{d}");
        }
    }
    assert_eq!(
        s.hits(),
        before,
        "nothing reached the upstream without a token"
    );
    // With a token: no grant needed (the token allows send_email only).
    for (method, body) in [
        ("POST", init.as_str()),
        ("POST", ping.as_str()),
        ("POST", cancelled.as_str()),
        ("POST", response.as_str()),
        ("GET", ""),
        ("DELETE", ""),
    ] {
        let (status, text) = s.call(method, "/mcp", Some(s.mcp_token()), body);
        assert_eq!(status, 200, "{method} {body}: {text}");
    }
    assert_eq!(s.hits(), before + 6);
    // Regression (issue 14 red team): below the route's path is a second
    // door (servers resolve `/mcp/` as `/mcp`): an MCP route serves its
    // exact path only.
    for path in ["/mcp/", "/mcp/sub"] {
        let (status, body) = s.call("POST", path, Some(s.mcp_token()), &init);
        assert_eq!(status, 404, "{path}: {body}");
        let d: Value = serde_json::from_str(&body).unwrap();
        assert!(
            d["error"]["message"]
                .as_str()
                .unwrap()
                .contains("exact path only"),
            "{d}"
        );
        assert_eq!(s.call("GET", path, Some(s.mcp_token()), "").0, 404);
    }
    // A GET or DELETE carries no body: it would reach the server undecided.
    for method in ["GET", "DELETE"] {
        let (status, body) = s.call(method, "/mcp", Some(s.mcp_token()), &init);
        assert_eq!(status, 400, "{method}: {body}");
        assert!(body.contains("carries no body"), "{body}");
    }
    assert_eq!(
        s.hits(),
        before + 6,
        "refused below the route or with a body"
    );
    // Regression (issue 12 red team): a JSON-RPC message giving a key twice
    // (the decision reads one `method`, a server may act on the other).
    let dup = r#"{"jsonrpc": "2.0", "id": 1, "method": "initialize", "method": "tools/call", "params": {"name": "x"}}"#;
    for token in [None, Some(s.mcp_token())] {
        let (status, body) = s.call("POST", "/mcp", token, dup);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("twice"), "{body}");
    }
    // A query string on an MCP route would reach the server undecided:
    // refused, token or not.
    for token in [None, Some(s.mcp_token())] {
        let (status, body) = s.call("POST", "/mcp?admin=1", token, &init);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("no query string"), "{body}");
    }
    // A 2026-07-28 client's Mcp-Method / Mcp-Name headers must say what
    // the body says: a server routing on them must not act on another
    // method or tool than the one decided.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "send_email", "arguments": {"to": "bob@company.com"}}})
    .to_string();
    for (header, value) in [("mcp-method", "tools/list"), ("mcp-name", "delete_inbox")] {
        let resp = http_client()
            .post(format!("http://{}/mcp", s.gateway.addr))
            .header("content-type", "application/json")
            .header(header, value)
            .bearer_auth(s.mcp_token())
            .body(call.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{header}: {value}");
        assert!(resp.text().unwrap().contains("does not match"));
    }
    // A body that is not declared JSON: 415, as the middleware answers.
    let resp = http_client()
        .post(format!("http://{}/mcp", s.gateway.addr))
        .header("content-type", "text/plain")
        .bearer_auth(s.mcp_token())
        .body(init.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    assert_eq!(s.hits(), before + 6, "nothing refused reached the upstream");
}

#[test]
fn http_methods_named_like_json_rpc_methods_are_not_public() {
    let s = setup();
    let before = s.hits();
    // HTTP methods are compared exactly; a JSON-RPC name is never one.
    for method in [
        "initialize",
        "INITIALIZE",
        "Initialize",
        "get",
        "Get",
        "DELETE",
    ] {
        let (status, _) = s.call(method, "/mcp", None, "");
        assert_eq!(status, 401, "{method}: decided, and without a token denied");
    }
    // Not even an HTTP method (no client sends one): refused before any route.
    for method in ["tools/list", "notifications/initialized"] {
        let (status, _) = s.call_exact(method, "/mcp", None, "");
        assert_eq!(status, 400, "{method}");
    }
    assert_eq!(s.hits(), before, "nothing reached the upstream");
}

#[test]
fn rest_routes_refuse_non_canonical_paths_and_match_on_slash_boundaries() {
    let s = setup();
    let before = s.hits();
    for (path, expected) in [
        ("/crm/customers/../customers/42", 400),
        ("/crm/customers/%2e%2e/customers/42", 400),
        ("/crm/customers//42", 400),
        ("/crm/./customers/42", 400),
        ("/crm-admin/customers/42", 404),
        ("/crmx", 404),
        // Regression (issue 12 review): forms an upstream resolves to
        // another path: `..;` (Tomcat), path parameters, encodings of
        // unreserved characters, double encodings.
        ("/crm/customers/..;/admin", 400),
        ("/crm/customers/42;x=1", 400),
        ("/crm/%63ustomers/42", 400),
        ("/crm/customers/%252e%252e/admin", 400),
    ] {
        let (status, body) = s.call_exact("GET", path, Some(s.token()), "");
        assert_eq!(status, expected, "{path}: {body}");
        if expected == 400 {
            assert!(body.contains("non-canonical"), "{body}");
        }
    }
    assert_eq!(s.hits(), before, "nothing reached the upstream");
}

/// The policy hash of the audit records a gateway with `routes` writes,
/// trusting `root` and signing with the audit key in `keys`.
fn policy_hash(keys: &Path, root: &str, routes: &str, secret: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(keys.join("audit.key"), d.join("audit.key")).unwrap();
    std::fs::write(d.join("api.secret"), secret).unwrap();
    std::fs::write(
        d.join("g.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\npublic_key = \"{root}\"\naudit_dir = \"audit\"\n\
             audit_key_file = \"audit.key\"\n{routes}"
        ),
    )
    .unwrap();
    let mut g = Proc::start(["gateway", "--config", d.join("g.toml").to_str().unwrap()]);
    let (status, _) = common::procs::http(&g.addr, "GET", "/api/x", "", None);
    assert_eq!(status, 401);
    g.interrupt();
    let export = run(d, &["audit", "export", "--db", "audit"]).stdout;
    let first = export
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no record: {export:?}"));
    let line: Value = serde_json::from_str(first).unwrap();
    line["record"]["policy_hash"].as_str().unwrap().to_string()
}

#[test]
fn the_audit_policy_hash_covers_the_routes_but_not_the_credential() {
    let route = |prefix: &str, rules: &str| {
        format!(
            "[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://127.0.0.1:9\"\n\
             credential = {{ header = \"x-key\", file = \"api.secret\" }}\n{rules}\n"
        )
    };
    let keys = tempfile::tempdir().unwrap();
    let root = run(keys.path(), &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    run(keys.path(), &["keygen", "--out", "audit.key"]);
    let hash = |routes: &str, secret: &str| policy_hash(keys.path(), &root, routes, secret);
    let base = hash(&route("/api", ""), "one-secret");
    // Another prefix, another rule, another mode: another policy.
    let others = [
        route("/api", "")
            + "[[routes]]\nprefix = \"/mcp\"\nupstream = \"http://127.0.0.1:9\"\nmode = \"mcp\"\n",
        route(
            "/api",
            "rules = [ { method = \"GET\", pattern = \"/api/x\", action = \"list\" } ]",
        ),
        route("/api", "public_url = \"https://api.example.com\""),
        route("/", ""),
    ];
    for other in &others {
        assert_ne!(hash(other, "one-secret"), base, "{other}");
    }
    // The credential's value is not part of it (and so never hashed).
    assert_eq!(hash(&route("/api", ""), "another-secret"), base);
}

/// A token of `principal` allowing `allow` on the setup's root key.
fn token_for(s: &Setup, principal: &str, allow: &str) -> String {
    let d = s._dir.path();
    let agent = run(d, &["keygen", "--force", "--out", "other.key"])
        .stdout
        .trim()
        .to_string();
    run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            principal,
            "--to",
            "other-agent",
            "--to-key",
            &agent,
            "--allow",
            allow,
            "--ttl",
            "1h",
        ],
    )
    .stdout
    .trim()
    .to_string()
}

/// POST `body` to /mcp with `token` and `session`: (status, session id
/// answered, body JSON).
fn mcp_post(
    s: &Setup,
    token: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut req = http_client()
        .post(format!("http://{}/mcp", s.gateway.addr))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().unwrap();
    (
        status,
        id,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[test]
fn mcp_sessions_belong_to_the_token_that_opened_them() {
    let s = setup();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    let (status, session, _) = mcp_post(&s, Some(s.mcp_token()), None, &init);
    assert_eq!(status, 200);
    let session = session.expect("the session id is passed on");
    // The client sees the upstream's id bound to its token family.
    let (upstream_id, tag) = session.rsplit_once('.').unwrap();
    assert_eq!(upstream_id, "upstream-session-1");
    assert_eq!(tag.len(), 32, "{session}");
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, _, _) = mcp_post(&s, Some(s.mcp_token()), Some(&session), &ping);
    assert_eq!(status, 200);
    let seen = s.seen.headers.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        seen["mcp-session-id"], "upstream-session-1",
        "unwrapped upstream"
    );
    let d = s._dir.path();
    std::fs::write(d.join("mcp.tok"), s.mcp_token()).unwrap();
    run(d, &["keygen", "--out", "sub.key"]);
    let sub_pub = run(d, &["keygen", "--out", "sub2.key"])
        .stdout
        .trim()
        .to_string();
    let child = run(
        d,
        &[
            "attenuate",
            "--key",
            "agent.key",
            "--to",
            "sub-agent",
            "--to-key",
            &sub_pub,
            "--allow",
            "send_email:/mcp",
            "--ttl",
            "10m",
            "mcp.tok",
        ],
    )
    .stdout
    .trim()
    .to_string();
    // Regression (issue 14 red team): a delegate (another chain, which may
    // be narrower) used the delegator's session and read its server's
    // requests. A session belongs to the chain that opened it.
    let (status, _, body) = mcp_post(&s, Some(&child), Some(&session), &ping);
    assert_eq!(status, 404, "{body}");
    // The same token again keeps it.
    let (status, _, body) = mcp_post(&s, Some(s.mcp_token()), Some(&session), &ping);
    assert_eq!(status, 200, "{body}");
    // Regression (issue 14): another principal's token (or a forged or
    // bare id) used alice's session. Now 404, and nothing is forwarded.
    let before = s.hits();
    let bob = token_for(&s, "user:bob", "send_email:/mcp");
    let forged = format!("upstream-session-1.{}", "0".repeat(32));
    for (token, id) in [
        (bob.as_str(), session.as_str()),
        (s.mcp_token(), "upstream-session-1"),
        (s.mcp_token(), forged.as_str()),
        (s.mcp_token(), "upstream-session-1.zz"),
    ] {
        let (status, _, body) = mcp_post(&s, Some(token), Some(id), &ping);
        assert_eq!(status, 404, "{id}: {body}");
        assert_eq!(body["error"]["code"], -32090, "{body}");
        assert_eq!(body["id"], 1);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("session belongs to the token"),
            "{body}"
        );
    }
    // No token on the session: 401 before any session is looked at.
    let (status, _, _) = mcp_post(&s, None, Some(&session), &ping);
    assert_eq!(status, 401);
    // GET and DELETE on it with bob's token: refused too.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let resp = http_client()
            .request(method.clone(), format!("http://{}/mcp", s.gateway.addr))
            .bearer_auth(&bob)
            .header("mcp-session-id", &session)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{method}");
    }
    assert_eq!(
        s.hits(),
        before,
        "no hijacking request reached the upstream"
    );
}

#[test]
fn mcp_tools_list_shows_only_what_the_token_allows_and_its_constraints() {
    let s = setup();
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    // The mail token: send_email where to ends-with @company.com.
    let (status, _, body) = mcp_post(&s, Some(s.mcp_token()), None, &list);
    assert_eq!(status, 200, "{body}");
    let tools = body["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "{body}");
    assert_eq!(tools[0]["name"], "send_email");
    let description = tools[0]["description"].as_str().unwrap();
    assert!(description.starts_with("Sends an email."), "{description}");
    assert!(
        description.contains("only where to ends-with \"@company.com\""),
        "{description}"
    );
    // A token for both tools sees both, without constraints added.
    let both = token_for(&s, "user:alice", "send_email,delete_inbox:/mcp");
    let (_, _, body) = mcp_post(&s, Some(&both), None, &list);
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["send_email", "delete_inbox"]);
    assert_eq!(
        body["result"]["tools"][1]["description"],
        "Deletes every email."
    );
    // A token for another route's resource sees none.
    let crm = token_for(&s, "user:alice", "read:/crm/*");
    let (status, _, body) = mcp_post(&s, Some(&crm), None, &list);
    assert_eq!(status, 200);
    assert_eq!(body["result"]["tools"], json!([]), "{body}");
}

#[test]
fn mcp_challenges_follow_rfc_6750_and_name_the_rfc_9728_metadata() {
    let s = setup();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "delete_inbox", "arguments": {}}});
    let challenge = |token: Option<&str>| {
        let mut req = http_client()
            .post(format!("http://{}/mcp", s.gateway.addr))
            .header("content-type", "application/json")
            .body(call.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let header = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, header)
    };
    let metadata =
        "resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\"";
    // No token: no error code (RFC 6750 §3.1), the metadata named.
    let (status, h) = challenge(None);
    assert_eq!(status, 401);
    assert!(h.starts_with("Bearer realm=\"mandate\""), "{h}");
    assert!(!h.contains("error="), "{h}");
    assert!(h.contains(metadata), "{h}");
    // A garbage token: invalid_token with a description.
    let (status, h) = challenge(Some("garbage"));
    assert_eq!(status, 401);
    assert!(h.contains("error=\"invalid_token\""), "{h}");
    assert!(h.contains("error_description=\""), "{h}");
    assert!(h.contains(metadata), "{h}");
    // A valid token without the grant: 403 insufficient_scope.
    let (status, h) = challenge(Some(s.mcp_token()));
    assert_eq!(status, 403);
    assert!(h.contains("error=\"insufficient_scope\""), "{h}");
    assert!(h.contains(metadata), "{h}");
    // The description is a valid quoted string: no quote or backslash from
    // the reason (which quotes the tool's name) breaks out of it.
    let inner = h.split("error_description=\"").nth(1).unwrap();
    let description = &inner[..inner.find('"').unwrap()];
    assert!(description.contains("delete_inbox"), "{h}");
    // The metadata document (RFC 9728 §3), from the configuration.
    let resp = http_client()
        .get(format!(
            "http://{}/.well-known/oauth-protected-resource/mcp",
            s.gateway.addr
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert_eq!(doc["resource"], "https://gw.example.com/mcp");
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["resource_name"], "Mail tools");
    assert_eq!(
        doc["resource_documentation"],
        "https://docs.example.com/mandate"
    );
    assert_eq!(doc["mandate_issuer"], "https://issuer.example.com");
    // Required by the MCP authorization specification: where tokens
    // come from.
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://issuer.example.com"])
    );
    // REST routes have no metadata document.
    let resp = http_client()
        .get(format!(
            "http://{}/.well-known/oauth-protected-resource/crm",
            s.gateway.addr
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[test]
fn an_mcp_event_stream_ends_when_its_token_expires() {
    let s = setup();
    let short = {
        let d = s._dir.path();
        let agent = run(d, &["keygen", "--force", "--out", "short.key"])
            .stdout
            .trim()
            .to_string();
        run(
            d,
            &[
                "issue",
                "--key",
                "root.key",
                "--principal",
                "user:alice",
                "--to",
                "a",
                "--to-key",
                &agent,
                "--allow",
                "send_email:/mcp",
                "--ttl",
                "2s",
            ],
        )
        .stdout
        .trim()
        .to_string()
    };
    // The upstream's stream never ends; the gateway ends it at the token's
    // expiry (the hang guard below is only for a broken gateway).
    let mut resp = http_client()
        .get(format!("http://{}/mcp", s.gateway.addr))
        .bearer_auth(&short)
        .header("x-forever", "1")
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut got = Vec::new();
    let read = resp.read_to_end(&mut got);
    assert!(read.is_ok(), "the stream ended cleanly: {read:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("\"method\":\"ping\""),
        "events flowed until then: {text}"
    );
    // And the expired token opens no new stream.
    let (status, body) = s.call("GET", "/mcp", Some(&short), "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
}

#[test]
fn a_large_body_without_a_readable_token_is_denied_unread() {
    let s = setup();
    // 200 KiB of keys: without a token that decodes, it is not parsed at
    // all (work any client could cause), and denied as what it is on its
    // face.
    let mut big = String::from(
        r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "send_email", "arguments": {"#,
    );
    for i in 0..12_000 {
        big.push_str(&format!("\"k{i}\": {i},"));
    }
    big.push_str(r#""to": "bob@company.com"}}}"#);
    assert!(big.len() > 64 * 1024);
    let before = s.hits();
    for (token, kind) in [
        (None, "missing_token"),
        (Some("garbage"), "malformed_token"),
    ] {
        let (status, body) = s.call("POST", "/mcp", token, &big);
        assert_eq!(status, 401, "{body}");
        let d: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(d["error"]["data"]["denial"]["kind"], kind, "{d}");
        assert_eq!(d["error"]["data"]["request"]["action"], "http.post", "{d}");
        assert!(d.get("id").is_none(), "the body was not read: {d}");
    }
    assert_eq!(s.hits(), before);
    // With a token, the same body is read and decided (too many
    // parameters for one request: refused as invalid, with the call's id).
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), &big);
    assert_eq!(status, 400, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["id"], 1, "{d}");
}

/// A request carries each parameter at most once (SPEC §5.1): a query
/// parameter or a tool argument given twice is refused at the gateway,
/// never decided on one value and forwarded with both.
#[test]
fn a_parameter_given_twice_is_refused_at_the_gateway() {
    let s = setup();
    let before = s.reached();
    let (status, body) = s.call(
        "GET",
        "/crm/customers/42?rows=1&rows=1000",
        Some(s.token()),
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than once"), "{body}");
    let dup = r#"{"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                  "params": {"name": "send_email", "arguments":
                             {"to": "bob@company.com", "to": "eve@evil.example", "subject": "hi"}}}"#;
    let (status, body) = s.call("POST", "/mcp", Some(s.mcp_token()), dup);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("twice"), "{body}");
    assert_eq!(
        s.reached(),
        before,
        "no refused request reached the upstream"
    );
}

/// A refused MCP session is in the audit log: the token's own (token-only)
/// decision is an allow, so the refusal is recorded after it, naming the
/// session and the token that presented it.
#[test]
fn a_refused_mcp_session_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    run(d, &["keygen", "--out", "audit.key"]);
    let token = |principal: &str, key: &str| {
        let agent = run(d, &["keygen", "--out", key]).stdout.trim().to_string();
        run(
            d,
            &[
                "issue",
                "--key",
                "root.key",
                "--principal",
                principal,
                "--to",
                "agent",
                "--to-key",
                &agent,
                "--allow",
                "send_email:/mcp",
                "--ttl",
                "1h",
            ],
        )
        .stdout
        .trim()
        .to_string()
    };
    let alice = token("user:alice", "alice.key");
    let bob = token("user:bob", "bob.key");
    let (upstream, _seen) = upstream();
    std::fs::write(
        d.join("g.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\npublic_key = \"{root}\"\naudit_dir = \"audit\"\n\
             audit_key_file = \"audit.key\"\n[[routes]]\nprefix = \"/mcp\"\n\
             upstream = \"{upstream}\"\nmode = \"mcp\"\n"
        ),
    )
    .unwrap();
    let mut g = Proc::start(["gateway", "--config", d.join("g.toml").to_str().unwrap()]);
    let post = |token: &str, session: Option<&str>, body: Value| {
        let mut req = http_client()
            .post(format!("http://{}/mcp", g.addr))
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send().unwrap()
    };
    let init = post(
        &alice,
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize"}),
    );
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let hijack = post(
        &bob,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    );
    assert_eq!(hijack.status().as_u16(), 404);
    g.interrupt();
    let export = run(d, &["audit", "export", "--db", "audit"]).stdout;
    let refused: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["record"]["request"]["action"] == "mcp.session")
        .collect();
    assert_eq!(refused.len(), 1, "{export}");
    let r = &refused[0]["record"];
    assert_eq!(r["decision"], "deny");
    assert_eq!(r["request"]["params"]["session"], session.as_str());
    let reason = r["denial"]["reason"].as_str().unwrap();
    assert!(reason.contains("MCP session refused"), "{reason}");
    assert!(reason.contains("user:bob"), "{reason}");
}
