//! Red team of issue 14: the gateway's MCP routes (the Mandate middleware
//! with the MCP mapping over the proxy), attacked from the positions of
//! THREATS.md — a narrow token holder (`send_email:/mcp where to ends-with
//! @company.com`), a delegate of it, another principal, no token, and a
//! malicious upstream — through a real `mandate gateway` process in front of
//! a stub MCP server that records what reaches it, and through the mapping
//! as a library.
//!
//! Attacks that are stopped are regression tests. The attacks that
//! succeeded against the first gateway were fixed in 2473b90; their tests
//! (last section) assert the secure behaviour and say how each is stopped.
//! Tests still `#[ignore]`d assert the secure behaviour for a bug found in
//! that fix (run them with `--ignored`: they fail until it is fixed).
//!
//! The questions of THREATS.md, for this change:
//! 1. Positions: a valid token of any family reaches every token-only
//!    check (housekeeping), unless its chain carries raw Datalog (then its
//!    grants decide); no token reaches nothing (401 first); a session
//!    belongs to the route, family and chain that opened it (another
//!    principal, a delegate, the delegator, another route: 404); a
//!    malicious upstream controls its answers and can only make its own
//!    tools visible.
//! 2. The decision reads the strict JSON body; the upstream reads the same
//!    bytes. Where they parted: ids a server echoes otherwise (`1.0` → `1`:
//!    now refused, and the filter reads every message listing tools), a
//!    `Content-Encoding` (the upstream is asked for `identity`; a coded
//!    answer is a 502), GET/DELETE bodies (400), `/mcp/` versus `/mcp`
//!    (404), Unicode case folding, integers beyond 2^53.
//! 3. Every request is decided again; an open stream survives revocation
//!    (documented) and ends at the token's canonical expiry; a chain with a
//!    raw-Datalog time bound opens one only when its grants allow
//!    `http.get`, and then holds it past that bound (documented).
//! 4. The most expensive inputs (deep nesting, many keys, an 8 MiB
//!    `tools/list`): measured below (printed, not asserted).
//! 5. Challenges carry only printable ASCII from the reason.
//! 6. Not changed by this issue.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any as any_route;
use axum::Router;
use common::procs::{free_port, http_client, Proc};
use common::{mandate, Run};
use futures_util::StreamExt;
use mandate_server::mcp::{filter_tools, parameter, rewrite_sse, McpMap};
use mandate_verifier::http::{MapError, MapRequest};
use mandate_verifier::Check;
use proptest::prelude::*;
use serde_json::{json, Value as Json};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// The stub MCP server: records everything that reaches it.

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
    headers: HeaderMap,
    /// Bytes of the body received (all of them, counted).
    body_len: usize,
    /// The first MiB of the body.
    body: Vec<u8>,
}

#[derive(Default)]
struct Upstream {
    got: Mutex<Vec<Got>>,
    sessions: Mutex<usize>,
}

impl Upstream {
    fn hits(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn since(&self, n: usize) -> Vec<Got> {
        self.got.lock().unwrap()[n..].to_vec()
    }
}

fn upstream() -> (String, Arc<Upstream>) {
    let seen = Arc::new(Upstream::default());
    let app = Router::new()
        .fallback(any_route(answer))
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

/// An id as a JavaScript server echoes it (`JSON.parse` then
/// `JSON.stringify`, as the TypeScript SDK and `server-everything` do): a
/// number is a double, and an integral one prints without a fraction
/// (`1.0` → `1`, `-0` → `0`, `9007199254740993` → `9007199254740992`).
fn js_echo(id: &Json) -> Json {
    match id.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => json!(f as i64),
        Some(f) => json!(f),
        None => id.clone(),
    }
}

async fn answer(
    State(seen): State<Arc<Upstream>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut stream = body.into_data_stream();
    let (mut body_len, mut kept) = (0usize, Vec::new());
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        body_len += chunk.len();
        if kept.len() < MIB {
            kept.extend_from_slice(&chunk);
        }
    }
    seen.got.lock().unwrap().push(Got {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers.clone(),
        body_len,
        body: kept.clone(),
    });
    if method == Method::GET && headers.contains_key("x-forever") {
        let events = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n",
                )),
                (),
            ))
        });
        let kind = headers
            .get("x-forever-type")
            .cloned()
            .unwrap_or_else(|| axum::http::HeaderValue::from_static("text/event-stream"));
        return Response::builder()
            .header("content-type", kind)
            .body(Body::from_stream(events))
            .unwrap();
    }
    if method != Method::POST {
        return "reached".into_response();
    }
    let Ok(msg) = serde_json::from_slice::<Json>(&kept) else {
        return (axum::http::StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    // `x-answer-id`: an upstream answering with another id than asked.
    let id = match headers.get("x-answer-id") {
        Some(v) => serde_json::from_slice(v.as_bytes()).unwrap(),
        None => js_echo(&msg["id"]),
    };
    match msg["method"].as_str() {
        Some("initialize") => {
            let n = {
                let mut s = seen.sessions.lock().unwrap();
                *s += 1;
                *s
            };
            Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", format!("up-{n}"))
                .body(Body::from(
                    json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string(),
                ))
                .unwrap()
        }
        Some("tools/list") => tools_list_answer(&headers, id),
        m => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"jsonrpc": "2.0", "id": id, "result": {"ok": m}}).to_string(),
            ))
            .unwrap(),
    }
}

/// Two tools; the narrow token may call only `send_email`.
fn tools_list_answer(headers: &HeaderMap, id: Json) -> Response {
    let mut tools = vec![
        json!({"name": "send_email", "description": "Sends an email."}),
        json!({"name": "delete_inbox", "description": "Deletes every email."}),
    ];
    if headers.contains_key("x-huge") {
        // A malicious upstream: one answer beyond the 8 MiB the gateway reads.
        tools.push(json!({"name": "padding", "description": "p".repeat(9 * MIB)}));
    }
    let text = json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}}).to_string();
    let builder = Response::builder();
    if headers.contains_key("x-sse-cr") {
        // An event stream with `\r`-only line ends, the data split over two
        // `data:` lines (both valid SSE).
        // Split after a comma: the `\n` the client joins them with is JSON
        // whitespace there.
        let (a, b) = text.split_at(text.find(",\"result\"").unwrap() + 1);
        let sse = format!(": comment\revent: message\rdata: {a}\rdata: {b}\r\r");
        return builder
            .header("content-type", "text/event-stream")
            .body(Body::from(sse))
            .unwrap();
    }
    if let Some(codings) = headers.get("x-force-coding") {
        // An upstream coding its answer whatever it was asked (`|`
        // separates headers).
        let mut b = builder.header("content-type", "application/json");
        for c in codings.to_str().unwrap().split('|') {
            b = b.header("content-encoding", c);
        }
        return b.body(Body::from(gzip_stored(text.as_bytes()))).unwrap();
    }
    let gzip = headers
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    if gzip {
        return builder
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(Body::from(gzip_stored(text.as_bytes())))
            .unwrap();
    }
    builder
        .header("content-type", "application/json")
        .body(Body::from(text))
        .unwrap()
}

/// A gzip member with stored (uncompressed) deflate blocks: valid gzip whose
/// bytes still show the text, so a test can read what a client would.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let n = u16::try_from(c.len()).unwrap();
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// The gateway, its tokens, and requests to it.

fn run(d: &Path, args: &[&str]) -> Run {
    let r = mandate(d, args);
    assert_eq!(r.code, 0, "mandate {args:?}: {}", r.stderr);
    r
}

struct Gw {
    dir: tempfile::TempDir,
    gateway: Proc,
    up: Arc<Upstream>,
    /// `send_email:/mcp where to ends-with @company.com`, held by agent.key.
    mail: String,
}

fn gateway() -> Gw {
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
    let mail = run(
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
    std::fs::write(d.join("mail.tok"), &mail).unwrap();
    let (upstream, up) = upstream();
    let config = format!(
        r#"listen = "127.0.0.1:0"
public_key = "{root}"
public_url = "https://gw.example.com"
issuer_url = "https://issuer.example.com"

[[routes]]
prefix = "/mcp"
upstream = "{upstream}"
mode = "mcp"

[[routes]]
prefix = "/mcp2"
upstream = "{upstream}"
mode = "mcp"
"#
    );
    std::fs::write(d.join("gateway.toml"), config).unwrap();
    let gateway = Proc::start([
        "gateway",
        "--config",
        d.join("gateway.toml").to_str().unwrap(),
    ]);
    Gw {
        dir,
        gateway,
        up,
        mail,
    }
}

/// What the gateway answered.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    }
}

impl Gw {
    /// A root token of `principal` allowing `allow`, for a fresh agent.
    fn token(&self, principal: &str, allow: &str) -> String {
        let d = self.dir.path();
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

    /// The mail token delegated by its holder to a sub-agent, with `extra`
    /// attenuation flags.
    fn delegate(&self, extra: &[&str]) -> String {
        let d = self.dir.path();
        let sub = run(d, &["keygen", "--force", "--out", "sub.key"])
            .stdout
            .trim()
            .to_string();
        let mut args = vec![
            "attenuate",
            "--key",
            "agent.key",
            "--to",
            "sub-agent",
            "--to-key",
            &sub,
            "--allow",
            "send_email:/mcp",
        ];
        args.extend_from_slice(extra);
        args.push("mail.tok");
        run(d, &args).stdout.trim().to_string()
    }

    /// One request: `headers` are appended (a name given twice is sent
    /// twice); JSON content type unless `headers` set one.
    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http_client()
            .request(method, format!("http://{}{path}", self.gateway.addr))
            .body(body.into());
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().unwrap().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn post(&self, token: Option<&str>, session: Option<&str>, body: &Json) -> Answer {
        let headers: Vec<(&str, &str)> =
            session.map(|s| ("mcp-session-id", s)).into_iter().collect();
        self.send("POST", "/mcp", token, &headers, body.to_string())
    }

    /// `initialize` with `token`: the session id the client is given.
    fn open(&self, token: &str) -> String {
        let a = self.post(Some(token), None, &init());
        assert_eq!(a.status, 200, "{}", a.text());
        a.header("mcp-session-id")
    }
}

fn init() -> Json {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})
}

fn tools_list(id: Json) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

/// The tool names in a `tools/list` answer (JSON or an event stream).
fn listed(a: &Answer) -> Vec<String> {
    let text = a.text();
    let msg: Json = serde_json::from_str(&text).unwrap_or_else(|_| {
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        serde_json::from_str(&data.join("\n")).unwrap_or(Json::Null)
    });
    msg["result"]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Stopped: bodies two parsers could read differently

/// A crafted POST: what it is, its body, extra headers, the status expected.
type Crafted<'a> = (&'a str, Vec<u8>, &'a [(&'a str, &'a str)], u16);

#[test]
fn bodies_a_server_could_read_otherwise_never_reach_the_upstream() {
    let g = gateway();
    let before = g.up.hits();
    let init = init().to_string();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_inbox"}}"#;
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{}1{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let utf16: Vec<u8> = init.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let bodies: Vec<Crafted<'_>> = vec![
        ("a BOM", [b"\xef\xbb\xbf".as_slice(), init.as_bytes()].concat(), &[], 400),
        ("a comment", format!("/* x */{init}").into_bytes(), &[], 400),
        ("trailing data", format!("{init}{call}").into_bytes(), &[], 400),
        ("a trailing NUL", format!("{init}\0").into_bytes(), &[], 400),
        (
            "NaN",
            br#"{"jsonrpc":"2.0","id":NaN,"method":"ping"}"#.to_vec(),
            &[],
            400,
        ),
        (
            "1e400",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":1e400}}"#.to_vec(),
            &[],
            400,
        ),
        (
            "a lone surrogate",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\ud800"}}"#.to_vec(),
            &[],
            400,
        ),
        ("100k nesting", deep.into_bytes(), &[], 400),
        ("a batch", format!("[{init}]").into_bytes(), &[], 400),
        (
            "a key twice",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"delete_inbox"}}"#.to_vec(),
            &[],
            400,
        ),
        (
            "METHOD beside method",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call","params":{"name":"delete_inbox"}}"#.to_vec(),
            &[],
            400,
        ),
        (
            "Method alone",
            br#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"delete_inbox"}}"#.to_vec(),
            &[],
            400,
        ),
        (
            "params.Name on housekeeping",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"Name":"delete_inbox"}}"#.to_vec(),
            &[],
            400,
        ),
        (
            "jsonrpc 2.0 as a number",
            br#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#.to_vec(),
            &[],
            400,
        ),
        (
            "jsonrpc with a space",
            br#"{"jsonrpc":"2.0 ","id":1,"method":"ping"}"#.to_vec(),
            &[],
            400,
        ),
        (
            "id null",
            br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_vec(),
            &[],
            400,
        ),
        (
            "id an object",
            br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.to_vec(),
            &[],
            400,
        ),
        (
            "a result and an error",
            br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#.to_vec(),
            &[],
            400,
        ),
        (
            "gzip-encoded",
            gzip_stored(call.as_bytes()),
            &[("content-encoding", "gzip")],
            400,
        ),
        (
            "UTF-16 declared",
            utf16,
            &[("content-type", "application/json; charset=utf-16le")],
            400,
        ),
        ("text/plain", init.clone().into_bytes(), &[("content-type", "text/plain")], 415),
        (
            "a form",
            init.clone().into_bytes(),
            &[("content-type", "application/x-www-form-urlencoded")],
            415,
        ),
        (
            "application/json-seq",
            init.clone().into_bytes(),
            &[("content-type", "application/json-seq")],
            415,
        ),
        (
            "Mcp-Method twice",
            call.as_bytes().to_vec(),
            &[("mcp-method", "tools/call"), ("mcp-method", "ping")],
            400,
        ),
    ];
    for (what, body, headers, expected) in bodies {
        let a = g.send("POST", "/mcp", Some(&g.mail), headers, body);
        assert_eq!(a.status, expected, "{what}: {}", a.text());
        // In the client's protocol: a JSON-RPC error saying why.
        let d = a.json();
        assert_eq!(d["jsonrpc"], "2.0", "{what}: {d}");
        assert!(d["error"]["message"].as_str().is_some(), "{what}: {d}");
    }
    assert_eq!(g.up.hits(), before, "nothing refused reached the upstream");
    // The gateway is still up.
    let a = g.send("GET", "/healthz", None, &[], "");
    assert_eq!(a.status, 200);
}

// ---------------------------------------------------------------------------
// Stopped: tool calls dressed as housekeeping

#[test]
fn messages_dressed_as_housekeeping_are_decided_on_their_grant() {
    let g = gateway();
    let before = g.up.hits();
    for (what, body, action) in [
        (
            // Decided as the tool it names, as the request would be (SPEC §17).
            "a tools/call notification",
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_inbox"}}),
            "delete_inbox",
        ),
        (
            "a request named like a client notification",
            json!({"jsonrpc": "2.0", "id": 1, "method": "notifications/cancelled", "params": {}}),
            "notifications.cancelled",
        ),
        (
            "a server's notification",
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
            "notifications.tools.list_changed",
        ),
        (
            "Ping",
            json!({"jsonrpc": "2.0", "id": 1, "method": "Ping"}),
            "Ping",
        ),
        (
            "a method and a result",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "result": {},
                   "params": {"name": "delete_inbox"}}),
            "delete_inbox",
        ),
        (
            "a string id with a call",
            json!({"jsonrpc": "2.0", "id": "ping", "method": "tools/call",
                   "params": {"name": "delete_inbox"}}),
            "delete_inbox",
        ),
        (
            "send_email to the outside",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "send_email", "arguments": {"to": "x@evil.com"}}}),
            "send_email",
        ),
        (
            "send_email with to as an array",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "send_email", "arguments": {"to": ["x@evil.com"]}}}),
            "send_email",
        ),
    ] {
        let a = g.post(Some(&g.mail), None, &body);
        assert_eq!(a.status, 403, "{what}: {}", a.text());
        let d = a.json();
        assert_eq!(
            d["error"]["data"]["denial"]["kind"], "not_allowed",
            "{what}: {d}"
        );
        assert_eq!(
            d["error"]["data"]["request"]["action"], action,
            "{what}: {d}"
        );
        assert_eq!(d["error"]["code"], -32080, "{what}: {d}");
    }
    // A call under an id a server would echo otherwise: refused before any
    // decision (the id could not be matched to its answer).
    for id in [json!(1.5), json!(1.0), json!(9_007_199_254_740_993_i64)] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "delete_inbox"}});
        let a = g.post(Some(&g.mail), None, &body);
        assert_eq!(a.status, 400, "id {id}: {}", a.text());
        let d = a.json();
        assert_eq!(d["error"]["code"], -32600, "{d}");
        assert!(d.get("id").is_none(), "{d}");
    }
    // Lookalikes of housekeeping methods are no actions at all: refused.
    for method in [
        "tools/l\u{456}st",
        "ping\u{0}",
        "tools/list\u{200b}",
        "ping ",
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method});
        let a = g.post(Some(&g.mail), None, &body);
        assert_eq!(a.status, 400, "{method:?}: {}", a.text());
        let d = a.json();
        assert_eq!(
            d["error"]["data"]["denial"]["kind"], "invalid_request",
            "{d}"
        );
        assert_eq!(d["error"]["code"], -32070, "{d}");
    }
    // HTTP methods other than GET and DELETE on the exact path: decided as
    // themselves, on their grant.
    for method in ["HEAD", "OPTIONS", "PUT", "PATCH", "TRACE"] {
        let a = g.send(method, "/mcp", Some(&g.mail), &[], "");
        assert_eq!(a.status, 403, "{method}");
    }
    assert_eq!(
        g.up.hits(),
        before,
        "no denied message reached the upstream"
    );
    // A client response carrying a tool call's members is a response to
    // the server (token-only): it reaches the server as a response, with
    // no method — nothing is called.
    let response = json!({"jsonrpc": "2.0", "id": 1, "result": {},
                          "params": {"name": "delete_inbox", "arguments": {}}});
    let a = g.post(Some(&g.mail), None, &response);
    assert_eq!(a.status, 200, "{}", a.text());
    let got = g.up.since(before);
    assert_eq!(got.len(), 1);
    let seen: Json = serde_json::from_slice(&got[0].body).unwrap();
    assert!(seen.get("method").is_none(), "{seen}");
    assert_eq!(seen, response);
}

// ---------------------------------------------------------------------------
// Stopped: session id games

#[test]
fn session_id_games_are_refused() {
    let g = gateway();
    let alice = g.open(&g.mail);
    assert!(alice.starts_with("up-1."), "{alice}");
    let bob_token = g.token("user:bob", "send_email:/mcp");
    let bob = g.open(&bob_token);
    assert!(bob.starts_with("up-2."), "{bob}");
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let before = g.up.hits();
    let upper = {
        let (id, tag) = alice.rsplit_once('.').unwrap();
        format!("{id}.{}", tag.to_ascii_uppercase())
    };
    let long = format!("up-1.{}", "a".repeat(60_000));
    let dotted = format!("up-1.{}.", alice.rsplit_once('.').unwrap().1);
    let joined = format!("{bob}, {alice}");
    // Bob, holding his own valid session, on alice's.
    for (what, ids) in [
        ("alice's id", vec![alice.as_str()]),
        (
            "alice's id with the tag in upper case",
            vec![upper.as_str()],
        ),
        (
            "alice's id first, his own second",
            vec![alice.as_str(), bob.as_str()],
        ),
        ("both in one header", vec![joined.as_str()]),
        ("the bare upstream id", vec!["up-1"]),
        ("a 60 KB id", vec![long.as_str()]),
        ("a dotted id", vec![dotted.as_str()]),
    ] {
        let headers: Vec<(&str, &str)> = ids.iter().map(|i| ("mcp-session-id", *i)).collect();
        for method in ["POST", "GET", "DELETE"] {
            let body = if method == "POST" { ping.as_str() } else { "" };
            let a = g.send(method, "/mcp", Some(&bob_token), &headers, body);
            assert!(
                a.status == 404 || a.status == 431 || a.status == 400,
                "{what} {method}: {} {}",
                a.status,
                a.text()
            );
        }
    }
    assert_eq!(g.up.hits(), before, "no hijacking request was forwarded");
    // His own id first and alice's second: his session only reaches the
    // upstream (the second value is dropped, never forwarded).
    let a = g.send(
        "POST",
        "/mcp",
        Some(&bob_token),
        &[
            ("mcp-session-id", bob.as_str()),
            ("mcp-session-id", alice.as_str()),
        ],
        ping.clone(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let got = g.up.since(before);
    let ids: Vec<&str> = got[0]
        .headers
        .get_all("mcp-session-id")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(ids, ["up-2"]);
    // No token at all on alice's session: 401 before anything.
    let a = g.post(
        None,
        Some(&alice),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    );
    assert_eq!(a.status, 401);
    assert!(a
        .header("www-authenticate")
        .starts_with("Bearer realm=\"mandate\""));
}

// ---------------------------------------------------------------------------
// Stopped: the malicious upstream's tools/list, exact ids

#[test]
fn tools_list_answers_are_filtered_however_the_upstream_frames_them() {
    let g = gateway();
    for id in [
        json!(1),
        json!("1"),
        json!(-7),
        json!(9_007_199_254_740_992_i64),
    ] {
        let a = g.post(Some(&g.mail), None, &tools_list(id.clone()));
        assert_eq!(a.status, 200, "{id}");
        assert_eq!(listed(&a), ["send_email"], "{id}: {}", a.text());
        assert_eq!(a.json()["id"], id);
    }
    // `\r`-only line ends and data split over two lines: still filtered.
    let a = g.send(
        "POST",
        "/mcp",
        Some(&g.mail),
        &[("x-sse-cr", "1")],
        tools_list(json!(3)).to_string(),
    );
    assert_eq!(a.status, 200);
    assert!(!a.text().contains("delete_inbox"), "{}", a.text());
    assert_eq!(listed(&a), ["send_email"], "{}", a.text());
    // An answer beyond what the gateway reads: 502, never passed on unread.
    let a = g.send(
        "POST",
        "/mcp",
        Some(&g.mail),
        &[("x-huge", "1")],
        tools_list(json!(4)).to_string(),
    );
    assert_eq!(a.status, 502);
    assert!(!a.text().contains("delete_inbox"));
}

/// Every refusal on an MCP route is a JSON-RPC error (issue 14, item 2;
/// SPEC §17): the 502 for a `tools/list` answer too large to filter was
/// plain `{"error": …}`; it is a JSON-RPC error answering the request.
#[test]
fn an_oversized_tools_list_is_refused_as_a_json_rpc_error() {
    let g = gateway();
    let a = g.send(
        "POST",
        "/mcp",
        Some(&g.mail),
        &[("x-huge", "1")],
        tools_list(json!(4)).to_string(),
    );
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["code"], -32092, "{}", a.text());
    assert_eq!(a.json()["id"], 4);
}

// ---------------------------------------------------------------------------
// Stopped: challenge and metadata injection

#[test]
fn challenges_carry_no_text_from_the_request_that_could_break_out() {
    let g = gateway();
    for name in [
        "x\", error=\"invalid_token",
        "x\\\", scope=\"admin",
        "x\r\nSet-Cookie: a=b",
        "x\u{202e}evil\u{7f}\u{0}",
    ] {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": name}});
        let a = g.post(Some(&g.mail), None, &call);
        assert!(a.status == 403 || a.status == 400, "{name:?}: {}", a.status);
        let h = a.header("www-authenticate");
        assert!(a.headers.get("set-cookie").is_none());
        if a.status == 403 {
            assert_eq!(h.matches("error=").count(), 1, "{h}");
            assert!(!h.contains("scope="), "{h}");
            let inner = h.split("error_description=\"").nth(1).unwrap();
            let description = &inner[..inner.find('"').unwrap()];
            assert!(description.chars().all(|c| (' '..='~').contains(&c)), "{h}");
            assert!(
                h.ends_with("resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\""),
                "{h}"
            );
        }
    }
    // A malformed token with quotes: invalid_token, nothing of it raw.
    let a = g.post(Some("a\"b, error=\"x"), None, &init());
    assert_eq!(a.status, 401);
    let h = a.header("www-authenticate");
    assert_eq!(h.matches("error=").count(), 1, "{h}");
    // The metadata document comes from the configuration: not from Host,
    // not at other paths.
    let doc = g.send(
        "GET",
        "/.well-known/oauth-protected-resource/mcp?resource=https://evil.example",
        None,
        &[
            ("host", "evil.example"),
            ("x-forwarded-host", "evil.example"),
        ],
        "",
    );
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["resource"], "https://gw.example.com/mcp");
    let doc2 = g.send(
        "GET",
        "/.well-known/oauth-protected-resource/mcp2",
        None,
        &[],
        "",
    );
    assert_eq!(doc2.json()["resource"], "https://gw.example.com/mcp2");
    for (method, path) in [
        ("POST", "/.well-known/oauth-protected-resource/mcp"),
        ("GET", "/.well-known/oauth-protected-resource/mcp/"),
        ("GET", "/.well-known/oauth-protected-resource/mcp/x"),
        ("GET", "/.well-known/oauth-protected-resource/MCP"),
    ] {
        let a = g.send(method, path, None, &[], "");
        assert_eq!(a.status, 404, "{method} {path}: {}", a.text());
    }
    assert_eq!(g.up.hits(), 0);
}

// ---------------------------------------------------------------------------
// Stopped: expensive bodies (sizes within max_body), with figures

#[test]
fn expensive_messages_are_refused_or_decided_cheaply() {
    let g = gateway();
    // 60 000 distinct keys in params (not arguments): read, folded, forwarded.
    let mut params = serde_json::Map::new();
    for i in 0..60_000 {
        params.insert(format!("k{i}"), json!(1));
    }
    let wide = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": params});
    // 65 string arguments: more parameters than a request may have.
    let mut args = serde_json::Map::new();
    for i in 0..65 {
        args.insert(format!("a{i}"), json!("x"));
    }
    let many = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "send_email", "arguments": args}});
    // Keys that differ only in case, deep inside arguments.
    let nested = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "send_email", "arguments":
                          {"to": "a@company.com", "x": [[[{"ab": 1, "aB": 2}]]]}}});
    for (what, body, expected) in [
        ("60k keys", wide, 200),
        ("65 parameters", many, 400),
        ("folded keys deep inside", nested, 400),
    ] {
        let started = Instant::now();
        let a = g.post(Some(&g.mail), None, &body);
        eprintln!(
            "{what}: {} in {:?} ({} bytes)",
            a.status,
            started.elapsed(),
            body.to_string().len()
        );
        assert_eq!(a.status, expected, "{what}: {}", a.text());
    }
    // The same work is done before the token is looked at: without one.
    let mut params = serde_json::Map::new();
    for i in 0..90_000 {
        params.insert(format!("k{i}"), json!(1));
    }
    let wide = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": params});
    let started = Instant::now();
    let a = g.post(None, None, &wide);
    eprintln!(
        "90k keys without a token: {} in {:?} ({} bytes)",
        a.status,
        started.elapsed(),
        wide.to_string().len()
    );
    assert_eq!(a.status, 401);
    let a = g.send("GET", "/healthz", None, &[], "");
    assert_eq!(a.status, 200);
}

/// The gateway's own work on the largest `tools/list` answer it reads
/// (nearly 8 MiB, 36 000 tools), and on a 1 MiB message of keys: measured, printed.
#[test]
fn the_largest_inputs_cost_what_they_cost() {
    let cap = {
        let root = biscuit_auth::KeyPair::new();
        let issuer = mandate_issuer::Issuer::new(root);
        let token = issuer
            .mint(&mandate_issuer::MintRequest {
                principal: "user:alice".into(),
                agent: "a".into(),
                agent_key: biscuit_auth::KeyPair::new().public(),
                grant: mandate_spec::Grant::parse(
                    &["send_email,t1,t2,t3,t4,t5:/mcp"],
                    &["to ends-with @company.com"],
                )
                .unwrap(),
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
            .token;
        mandate_spec::effective_capabilities(&mandate_attenuate::read_chain(&token).unwrap())
            .pop()
            .unwrap()
    };
    let tools: Vec<Json> = (0..36_000)
        .map(|i| json!({"name": format!("t{}", i % 7), "description": "d".repeat(180)}))
        .collect();
    let text = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}).to_string();
    assert!(text.len() < 8 * MIB);
    let started = Instant::now();
    let mut msg: Json = serde_json::from_str(&text).unwrap();
    let removed = filter_tools(&mut msg, &cap, "/mcp");
    let out = msg.to_string();
    eprintln!(
        "tools/list of {} bytes: parsed, filtered ({removed} removed), written in {:?}",
        text.len(),
        started.elapsed()
    );
    assert!(out.len() > 1000);
    let sse = format!("event: message\r\ndata: {text}\r\n\r\n");
    let started = Instant::now();
    let rewritten = rewrite_sse(sse.as_bytes(), |m| {
        filter_tools(m, &cap, "/mcp");
        true
    })
    .unwrap();
    eprintln!(
        "the same as an event stream: rewritten in {:?} ({} bytes)",
        started.elapsed(),
        rewritten.len()
    );
    // A 1 MiB message of distinct keys through the mapping.
    let mut params = serde_json::Map::new();
    for i in 0..90_000 {
        params.insert(format!("k{i}"), json!(1));
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": params});
    let text = body.to_string();
    let started = Instant::now();
    let parsed: Json = serde_json::from_str(&text).unwrap();
    eprintln!("its parse alone: {:?}", started.elapsed());
    assert_eq!(parsed, body);
    let m = McpMap::new("/mcp", None, MIB);
    let started = Instant::now();
    let (_, check) = map_post(&m, "/mcp", &body).unwrap();
    eprintln!(
        "a message of 90 000 keys ({} bytes) mapped in {:?}",
        body.to_string().len(),
        started.elapsed()
    );
    assert_eq!(check, Check::Token);
}

// ---------------------------------------------------------------------------
// The mapping as a library

fn parts(method: &str, uri: &str) -> http::request::Parts {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn map_post(
    m: &McpMap,
    uri: &str,
    body: &Json,
) -> Result<(mandate_spec::Request, Check), MapError> {
    m.map_check(&parts("POST", uri), Some(body))
}

fn any_id() -> impl Strategy<Value = Option<Json>> {
    prop_oneof![
        Just(None),
        Just(Some(Json::Null)),
        Just(Some(json!(1))),
        Just(Some(json!(1.0))),
        Just(Some(json!("1"))),
        Just(Some(json!(true))),
        Just(Some(json!([1]))),
    ]
}

fn any_method_value() -> impl Strategy<Value = Option<Json>> {
    prop_oneof![
        Just(None),
        Just(Some(json!("tools/call"))),
        Just(Some(json!("ping"))),
        Just(Some(json!("tools/list"))),
        Just(Some(json!("notifications/cancelled"))),
        Just(Some(json!(["ping"]))),
        Just(Some(Json::Null)),
    ]
}

proptest! {
    /// Whatever the envelope, a message whose `method` member is
    /// `tools/call` (the member any JSON-RPC server dispatches on) is never
    /// a token-only check; a token-only message either has no method (a
    /// response) or a housekeeping one.
    #[test]
    fn no_envelope_makes_a_tool_call_token_only(
        id in any_id(),
        method in any_method_value(),
        result in any::<bool>(),
        error in any::<bool>(),
        name in prop_oneof![Just("delete_inbox"), Just("send_email")],
    ) {
        let mut o = serde_json::Map::new();
        o.insert("jsonrpc".into(), json!("2.0"));
        if let Some(id) = id { o.insert("id".into(), id); }
        if let Some(m) = method.clone() { o.insert("method".into(), m); }
        if result { o.insert("result".into(), json!({})); }
        if error { o.insert("error".into(), json!({"code": 1, "message": "x"})); }
        o.insert("params".into(), json!({"name": name, "arguments": {}}));
        let msg = Json::Object(o);
        let m = McpMap::new("/mcp", None, MIB);
        if let Ok((request, check)) = map_post(&m, "/mcp", &msg) {
            if check == Check::Token {
                let method = msg.get("method").and_then(Json::as_str);
                prop_assert!(
                    method.is_none()
                        || mandate_server::mcp::HOUSEKEEPING.contains(&method.unwrap())
                        || mandate_server::mcp::CLIENT_NOTIFICATIONS.contains(&method.unwrap()),
                    "{} → {:?}", msg, request
                );
                prop_assert_ne!(request.action.as_str(), name);
            }
            if method == Some(json!("tools/call")) && msg.get("id").is_some() {
                prop_assert_eq!(request.action.as_str(), name);
                prop_assert_eq!(check, Check::Grant);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The red team's successful attacks, fixed (2473b90): each asserts the
// secure behaviour and how the attack is now stopped.

/// Two parsers on ids: the `tools/list` filter found the answer by `id`
/// equality of `serde_json` numbers, and a JavaScript or Python server
/// echoes `1.0` as `1` (checked by hand against `server-everything`): the
/// answer was passed on unfiltered. Stopped twice: an id a server would
/// echo otherwise is refused (400) before anything reaches the upstream,
/// and every message listing tools is filtered whatever its id.
#[test]
fn tools_list_is_filtered_whatever_the_id_spelling() {
    let g = gateway();
    let before = g.up.hits();
    for id in ["1.0", "1e0", "10E-1", "-0", "1.5", "9007199254740993"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
        let a = g.send("POST", "/mcp", Some(&g.mail), &[], body);
        assert_eq!(a.status, 400, "id {id}: {}", a.text());
        let message = a.json()["error"]["message"].to_string();
        assert!(
            message.contains("a JSON-RPC id is a string or an integer"),
            "id {id}: {message}"
        );
        assert!(!a.text().contains("delete_inbox"));
    }
    assert_eq!(g.up.hits(), before, "no refused id reached the upstream");
    // An upstream answering with another id (or spelling) than the one
    // asked: filtered all the same, as JSON or as an event stream.
    for answer_id in ["1.0", "\"1\"", "99", "null"] {
        for sse in [false, true] {
            let mut headers = vec![("x-answer-id", answer_id)];
            if sse {
                headers.push(("x-sse-cr", "1"));
            }
            let a = g.send(
                "POST",
                "/mcp",
                Some(&g.mail),
                &headers,
                tools_list(json!(1)).to_string(),
            );
            assert_eq!(a.status, 200, "answer id {answer_id}: {}", a.text());
            assert!(!a.text().contains("delete_inbox"), "{}", a.text());
            assert_eq!(listed(&a), ["send_email"], "answer id {answer_id}");
        }
    }
}

/// Fail-open: the client's `Accept-Encoding` reached the upstream, and a
/// coded `tools/list` answer, which the gateway cannot read, was passed on
/// unfiltered. Stopped: the upstream is asked for `identity`; an answer
/// coded all the same is a 502 (a JSON-RPC error), never passed on.
#[test]
fn tools_list_is_filtered_or_refused_when_the_client_asks_for_gzip() {
    let g = gateway();
    let before = g.up.hits();
    let a = g.send(
        "POST",
        "/mcp",
        Some(&g.mail),
        &[("accept-encoding", "gzip, br")],
        tools_list(json!(1)).to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-encoding"), "");
    assert_eq!(listed(&a), ["send_email"], "{}", a.text());
    let got = g.up.since(before);
    let asked: Vec<&str> = got[0]
        .headers
        .get_all("accept-encoding")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(asked, ["identity"]);
    // A malicious (or misconfigured) upstream coding its answer anyway.
    for coding in [
        "gzip",
        "GZIP",
        "x-gzip",
        "br",
        "identity, gzip",
        "identity|gzip",
    ] {
        let a = g.send(
            "POST",
            "/mcp",
            Some(&g.mail),
            &[("x-force-coding", coding)],
            tools_list(json!(5)).to_string(),
        );
        assert_eq!(a.status, 502, "{coding}: {}", a.text());
        assert!(!a.text().contains("delete_inbox"), "{coding}");
        let d = a.json();
        assert_eq!(d["error"]["code"], -32092, "{coding}: {d}");
        assert_eq!(d["id"], 5, "{coding}: {d}");
    }
}

/// Sends `request` as written on a new connection; the answer as text.
fn raw_exchange(addr: &str, request: &str) -> String {
    use std::io::Write;
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// Unbounded work and an undecided body: a GET or DELETE body (token-only)
/// was not read by the middleware, then collected whole by the proxy with
/// no limit and forwarded to the upstream. Stopped: a non-POST request
/// announcing a body (a length above zero, or chunked) is refused (400)
/// from its headers, before the token is decided or the body read.
#[test]
fn get_and_delete_bodies_are_neither_buffered_nor_forwarded() {
    let g = gateway();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "delete_inbox", "arguments": {}}})
    .to_string();
    let before = g.up.hits();
    for method in ["GET", "DELETE"] {
        let a = g.send(method, "/mcp", Some(&g.mail), &[], call.clone());
        assert_eq!(a.status, 400, "{method}: {}", a.text());
        let message = a.json()["error"]["message"].to_string();
        assert!(
            message.contains(&format!("an MCP {method} carries no body")),
            "{message}"
        );
        // Chunked, with no length (sent raw: hyper clients send no chunked
        // body on a GET).
        let chunk = format!("{:x}\r\n{call}\r\n0\r\n\r\n", call.len());
        let head = raw_exchange(
            &g.gateway.addr,
            &format!(
                "{method} /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}",
                g.mail
            ),
        );
        assert!(head.starts_with("HTTP/1.1 400"), "{method} chunked: {head}");
        assert!(head.contains("carries no body"), "{method} chunked: {head}");
    }
    // 256 MiB on a GET with a valid (narrow) token. (With a length: hyper
    // clients send no chunked body on a GET.)
    let baseline = g.gateway.peak_rss_kib();
    let status = http_client()
        .get(format!("http://{}/mcp", g.gateway.addr))
        .bearer_auth(&g.mail)
        .timeout(Duration::from_secs(120))
        .body(vec![b'u'; 256 * MIB])
        .send()
        .map(|r| r.status().as_u16());
    let peak = g.gateway.peak_rss_kib();
    eprintln!("GET with 256 MiB: {status:?}; gateway peak RSS {peak} KiB (before {baseline} KiB)");
    // Refused from its headers: a 400, or the connection closed on the
    // unread body; never a 200.
    assert!(
        matches!(status, Ok(400) | Err(_)),
        "{status:?}: the GET body was taken"
    );
    assert!(
        peak < 96 * 1024,
        "the gateway held a GET body: peak RSS {peak} KiB"
    );
    assert_eq!(g.up.hits(), before, "no body reached the upstream");
    // Without a body (a length of zero), the event stream and the end of
    // a session are housekeeping as before.
    for method in ["GET", "DELETE"] {
        let before = g.up.hits();
        let a = g.send(
            method,
            "/mcp",
            Some(&g.mail),
            &[("content-length", "0")],
            "",
        );
        assert_eq!(a.status, 200, "{method}: {}", a.text());
        let got = g.up.since(before);
        assert_eq!(
            (
                got[0].method.as_str(),
                got[0].path.as_str(),
                got[0].body_len
            ),
            (method, "/mcp", 0)
        );
    }
}

/// Authority gap: a token-only check ran none of the token's raw Datalog,
/// so a delegate whose delegator wrote `check if false` (or an expiry in
/// raw Datalog) opened sessions, listed tools and held the event stream.
/// Stopped: a chain carrying raw Datalog gets no token-only pass; its
/// housekeeping is decided on its grants like any request (SPEC §7.4).
#[test]
fn token_only_checks_honour_the_tokens_raw_datalog() {
    let g = gateway();
    let nothing = g.delegate(&["--datalog", "check if false"]);
    let expired = g.delegate(&["--datalog", "check if time($t), $t < 2020-01-01T00:00:00Z"]);
    let before = g.up.hits();
    for (what, token) in [("check if false", &nothing), ("a raw expiry", &expired)] {
        // The grant check denies it...
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "send_email", "arguments": {"to": "a@company.com"}}});
        let a = g.post(Some(token), None, &call);
        assert_eq!(a.status, 403, "{what}: {}", a.text());
        // ...and so does the housekeeping one, now decided on the grants.
        for (method, body, action) in [
            ("POST", init().to_string(), "initialize"),
            ("POST", tools_list(json!(1)).to_string(), "tools.list"),
            ("GET", String::new(), "http.get"),
            ("DELETE", String::new(), "http.delete"),
        ] {
            let a = g.send(method, "/mcp", Some(token), &[], body.clone());
            assert_eq!(a.status, 403, "{what}: {method} {body}: {}", a.text());
            let d = a.json();
            assert_eq!(d["error"]["code"], -32080, "{what}: {d}");
            assert_eq!(
                d["error"]["data"]["denial"]["kind"], "not_allowed",
                "{what}: {d}"
            );
            assert_eq!(d["error"]["data"]["request"]["action"], action, "{d}");
        }
    }
    assert_eq!(g.up.hits(), before, "nothing reached the upstream");
    // A chain with raw Datalog whose grants allow its housekeeping: passes
    // where the grants and the checks allow, and only there.
    let broad = g.token(
        "user:alice",
        "initialize,tools.list,http.get,send_email:/mcp",
    );
    let d = g.dir.path();
    std::fs::write(d.join("broad.tok"), &broad).unwrap();
    let sub = run(d, &["keygen", "--force", "--out", "sub.key"])
        .stdout
        .trim()
        .to_string();
    let checked = run(
        d,
        &[
            "attenuate",
            "--key",
            "other.key",
            "--to",
            "sub-agent",
            "--to-key",
            &sub,
            "--allow",
            "initialize,tools.list,http.get:/mcp",
            "--datalog",
            "check if time($t), $t < 2999-01-01T00:00:00Z",
            "broad.tok",
        ],
    )
    .stdout
    .trim()
    .to_string();
    for (method, body) in [
        ("POST", init().to_string()),
        ("POST", tools_list(json!(1)).to_string()),
        ("GET", String::new()),
    ] {
        let a = g.send(method, "/mcp", Some(&checked), &[], body.clone());
        assert_eq!(a.status, 200, "{method} {body}: {}", a.text());
    }
    for (method, body, action) in [
        (
            "POST",
            json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string(),
            "ping",
        ),
        ("DELETE", String::new(), "http.delete"),
    ] {
        let a = g.send(method, "/mcp", Some(&checked), &[], body);
        assert_eq!(a.status, 403, "{method}: {}", a.text());
        assert_eq!(a.json()["error"]["data"]["request"]["action"], action);
    }
}

/// The session binding named the token family only: a delegate (an
/// attenuation) used its delegator's session — its event stream (the
/// server's requests to the delegator: sampling prompts, elicitations),
/// answers to them, its end (DELETE). Stopped: a session's owner is the
/// route, the family and every hop's agent key; a delegate holds another
/// chain, so gets 404 (and one with `check if false` is denied first).
#[test]
fn a_delegate_does_not_join_its_delegators_session() {
    let g = gateway();
    let alice = g.open(&g.mail);
    let plain = g.delegate(&[]);
    let nothing = g.delegate(&["--datalog", "check if false"]);
    let before = g.up.hits();
    for method in ["GET", "DELETE"] {
        let a = g.send(
            method,
            "/mcp",
            Some(&plain),
            &[("mcp-session-id", alice.as_str())],
            "",
        );
        assert_eq!(a.status, 404, "{method}: the delegate used alice's session");
        assert!(a.text().contains("no such MCP session"), "{}", a.text());
        let a = g.send(
            method,
            "/mcp",
            Some(&nothing),
            &[("mcp-session-id", alice.as_str())],
            "",
        );
        assert_eq!(a.status, 403, "{method}: {}", a.text());
    }
    let answer = json!({"jsonrpc": "2.0", "id": "elicit-1", "result": {"action": "accept"}});
    let a = g.post(Some(&plain), Some(&alice), &answer);
    assert_eq!(
        a.status, 404,
        "the delegate answered a request sent to alice"
    );
    assert_eq!(a.json()["error"]["code"], -32090);
    assert_eq!(g.up.hits(), before, "nothing reached alice's session");
    // The other way round: the delegator on its delegate's session.
    let delegates = g.open(&plain);
    let a = g.post(
        Some(&g.mail),
        Some(&delegates),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    );
    assert_eq!(a.status, 404, "alice used her delegate's session");
    // Alice herself still uses hers.
    let a = g.post(
        Some(&g.mail),
        Some(&alice),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
}

/// The session tag did not name the route: a session opened on `/mcp2`
/// was accepted on `/mcp` (and forwarded to that route's upstream).
/// Stopped: the route's prefix is part of the session's owner.
#[test]
fn a_session_belongs_to_the_route_that_opened_it() {
    let g = gateway();
    let a = g.send("POST", "/mcp2", Some(&g.mail), &[], init().to_string());
    let other = a.header("mcp-session-id");
    assert!(!other.is_empty());
    let before = g.up.hits();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let a = g.post(Some(&g.mail), Some(&other), &ping);
    assert_eq!(a.status, 404, "a /mcp2 session was used on /mcp");
    assert_eq!(a.json()["error"]["code"], -32090);
    assert_eq!(g.up.hits(), before);
    // On its own route it is the session.
    let a = g.send(
        "POST",
        "/mcp2",
        Some(&g.mail),
        &[("mcp-session-id", other.as_str())],
        ping.to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
}

/// Two parsers on the path: `/mcp/` was a sub-path to the gateway (decided
/// on the resource `/mcp/`, so a grant on `/mcp/**` allowed it) and the
/// same endpoint as `/mcp` to an Express server (non-strict routing, as
/// `server-everything` answers `POST /mcp/` and even `POST /MCP`).
/// Stopped: an MCP route serves its exact path only; anything below it is
/// 404, never decided.
#[test]
fn a_trailing_slash_is_not_a_second_door_to_the_endpoint() {
    let g = gateway();
    let sub = g.token("user:alice", "delete_inbox:/mcp/**");
    let before = g.up.hits();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "delete_inbox", "arguments": {}}});
    for path in ["/mcp/", "/mcp/x", "/mcp/tools/delete_inbox"] {
        let a = g.send("POST", path, Some(&sub), &[], call.to_string());
        assert_eq!(a.status, 404, "{path}: {}", a.text());
        let d = a.json();
        assert!(
            d["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("exact path only")),
            "{path}: {d}"
        );
        assert_eq!(d["id"], 1, "{path}: {d}");
        for method in ["GET", "DELETE"] {
            let a = g.send(method, path, Some(&g.mail), &[], "");
            assert_eq!(a.status, 404, "{method} {path}: {}", a.text());
        }
    }
    assert_eq!(g.up.hits(), before, "nothing reached the upstream");
    // On the endpoint itself the sub-path grant allows nothing.
    let a = g.send("POST", "/mcp", Some(&sub), &[], call.to_string());
    assert_eq!(a.status, 403, "{}", a.text());
}

/// Two parsers on keys: Go's `encoding/json` (the official Go MCP SDK
/// decodes tool arguments with it) matches struct fields by Unicode simple
/// case folding; the gateway folded ASCII, `ſ` and `K` only. A tool whose
/// argument is `é` decided on `é=1` acted on `É=1000`. Stopped: keys are
/// folded by Unicode case (SPEC §17). (`größe`/`GRÖSSE` is no pair: simple
/// folding does not map `ß` to `SS`; `ß` and `ẞ` are one orbit.)
#[test]
fn keys_a_unicode_case_insensitive_decoder_merges_are_refused() {
    let m = McpMap::new("/mcp", None, MIB);
    for (a, b) in [("é", "É"), ("größe", "GRÖẞE"), ("µ", "Μ"), ("å", "Å")] {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "pay", "arguments": {a: 1, b: 1000}}});
        let e = map_post(&m, "/mcp", &call).unwrap_err();
        assert_eq!(e.status, http::StatusCode::BAD_REQUEST, "{a:?} {b:?}");
        assert!(
            e.message.contains("differ only in letter case"),
            "{a:?} and {b:?}: {}",
            e.message
        );
    }
}

/// Two parsers on numbers: an integer literal beyond 2^53 was decided
/// exactly, while a JavaScript server (doubles) acts on its neighbour:
/// `account=9007199254740993` decided, `9007199254740992` acted on (and a
/// Python or Go server reads `…993` exactly). Refused since 2473b90 for
/// every integer beyond ±2^53 but the two that round to ±2^53 (see
/// `integers_that_round_to_2_pow_53_are_refused`).
#[test]
fn integers_a_double_cannot_hold_are_refused() {
    for text in [
        "9007199254740994",
        "-9007199254740994",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
    ] {
        let v: Json = serde_json::from_str(text).unwrap();
        let e = parameter("account", &v).unwrap_err();
        assert!(
            e.message.starts_with("invalid params") && e.message.contains("2^53"),
            "{text}: {}",
            e.message
        );
    }
}

/// BUG in 2473b90: `parameter` refuses an integer beyond 2^53 in its
/// integer branch, then reads it again as a double, where
/// `9007199254740993` rounds to `2^53` — in range, integral: decided as
/// `9007199254740992` while a Python or Go server acts on `…993`.
#[test]
fn integers_that_round_to_2_pow_53_are_refused() {
    for text in ["9007199254740993", "-9007199254740993"] {
        let v: Json = serde_json::from_str(text).unwrap();
        let r = parameter("account", &v);
        assert!(r.is_err(), "{text}: {r:?}");
    }
}

/// Authority gap (2026-07-28): `subscriptions/listen` with
/// `notifications.resourceSubscriptions` "replaces the former
/// `resources/subscribe` RPC" (the Python SDK's schema says so), which the
/// gateway decides on the URI; the listen request was token-only, URIs and
/// all. Stopped: one listened resource is decided as
/// `resources.subscribe` with its `uri`; several are refused.
#[test]
fn subscribing_to_a_resource_is_decided_on_its_uri_in_every_revision() {
    let m = McpMap::new("/mcp", None, MIB);
    let listen = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
                        "params": {"notifications": {"resourceSubscriptions": ["file:///etc/secret"]}}});
    let (request, check) = map_post(&m, "/mcp", &listen).unwrap();
    assert_eq!(check, Check::Grant, "{request:?}");
    assert_eq!(request.action, "resources.subscribe");
    assert_eq!(
        request.params.get("uri"),
        Some(&mandate_spec::Value::Str("file:///etc/secret".into()))
    );
    // Through the gateway: the narrow token may not subscribe.
    let g = gateway();
    let before = g.up.hits();
    let a = g.post(Some(&g.mail), None, &listen);
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(
        a.json()["error"]["data"]["request"]["action"],
        "resources.subscribe"
    );
    assert_eq!(g.up.hits(), before);
}

/// BUG in 2473b90 (the class of `Arguments` for `arguments`): the listened
/// resources are read from `params.notifications.resourceSubscriptions`
/// only; a spelling a case-insensitive decoder (Go's `encoding/json`) reads
/// as it — `Notifications`, `resourcesubscriptions` — is neither decided
/// nor refused, so the subscription is token-only.
#[test]
fn a_listened_resource_spelled_otherwise_is_refused() {
    let m = McpMap::new("/mcp", None, MIB);
    for params in [
        json!({"notifications": {"ResourceSubscriptions": ["file:///etc/secret"]}}),
        json!({"notifications": {"resourcesubscriptions": ["file:///etc/secret"]}}),
        json!({"Notifications": {"resourceSubscriptions": ["file:///etc/secret"]}}),
    ] {
        let listen = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
                            "params": params});
        let r = map_post(&m, "/mcp", &listen);
        assert!(
            !matches!(r, Ok((_, Check::Token))),
            "{params}: token-only: {r:?}"
        );
    }
}

/// The expiry cut read the stream's `Content-Type` case-sensitively and
/// the chain's canonical expiries only, so a raw-Datalog expiry never cut.
/// Stopped as far as it can be: a chain with raw Datalog gets no
/// token-only pass, so this delegate (granted `send_email` only) cannot
/// open the event stream at all. (A chain whose grants allow `http.get`
/// holds a stream past a raw-Datalog time bound: the gateway cannot read
/// one; SPEC §17 cuts at the canonical expiry.)
#[test]
fn an_event_stream_ends_with_any_expiry_of_the_token() {
    let g = gateway();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let rfc = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let rfc = format!("{}Z", &rfc[..19]);
    let check = format!("check if time($t), $t < {rfc}");
    let token = g.delegate(&["--datalog", &check]);
    let before = g.up.hits();
    let a = g.send("GET", "/mcp", Some(&token), &[("x-forever", "1")], "");
    assert_eq!(a.status, 403, "{}", a.text());
    let d = a.json();
    assert_eq!(d["error"]["data"]["request"]["action"], "http.get", "{d}");
    assert_eq!(d["error"]["data"]["denial"]["kind"], "not_allowed", "{d}");
    assert_eq!(g.up.hits(), before, "no stream was opened");
}

/// The canonical expiry cuts the stream whatever the letter case of its
/// `Content-Type` (an upstream's `Text/Event-Stream` was not recognised,
/// and its stream never ended).
#[test]
fn an_event_stream_ends_at_expiry_whatever_the_case_of_its_content_type() {
    let g = gateway();
    let short = g.delegate(&["--ttl", "2s"]);
    // The hang guard is only for a broken gateway.
    let mut resp = http_client()
        .get(format!("http://{}/mcp", g.gateway.addr))
        .bearer_auth(&short)
        .header("x-forever", "1")
        .header("x-forever-type", "Text/Event-Stream; charset=UTF-8")
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut got = Vec::new();
    let read = resp.read_to_end(&mut got);
    assert!(
        read.is_ok(),
        "the stream did not end at the token's expiry: {read:?}"
    );
    assert!(String::from_utf8_lossy(&got).contains("notifications/message"));
}
