//! Red team of issue 14, second round: the fixes of the first round
//! (2473b90, 5d76b9b, b4c63b0, e2b5874, 04d4173 — exact path only, no body
//! on GET/DELETE, sessions owned by route + family + chain, no token-only
//! pass for raw Datalog, `tools/list` filtered whatever the id, large bodies
//! mapped on the cold-decision threads, and unread without a token) attacked from the positions of THREATS.md: a
//! narrow token holder, a delegating agent (its own key, any Biscuit
//! library), another principal, no token, and a malicious upstream; through
//! a real `mandate gateway` in front of a stub MCP server (and, where the
//! SDKs are set up, the official TypeScript SDK and `server-everything`).
//!
//! Stopped attacks are regression tests. Attacks that succeed are
//! `#[ignore]`d tests asserting the secure behaviour (run them with
//! `--ignored`: they fail until fixed); each says what got through.
//!
//! The questions of THREATS.md, for the fixes:
//! 1. Positions: a delegator can make a hop to its delegate's key and so
//!    hold the delegate's session owner (agent keys are public; the owner
//!    names no hop signature and no holder binding); a token holder can
//!    add first-party blocks and keep its session (raw Datalog in them is
//!    decided, canonical time bounds are not); a bearer token that merely
//!    decodes (`AAAA`) still buys a parse of up to `max_body` on the
//!    cold-decision threads (no token at all: refused unread since 04d4173).
//! 2. What the filter reads is not what a client reads: a batch array, a
//!    BOM, events `serde_json` refuses (JavaScript and Python accept them),
//!    a second `Content-Encoding`, and events replayed on the GET stream.
//! 3. Expiry: a canonical `time<=` bound is not an expiry to the
//!    token-only check; a first-party expiry cuts the stream.
//! 4. The most expensive input (1 MiB of keys, a token that is no token)
//!    queues with the decisions of valid cold tokens: measured below.
//! 5. An agent is shown tools its token cannot call (the filter's bypasses).
//! 6. Not changed by these fixes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any as any_route;
use axum::Router;
use biscuit_auth::KeyPair;
use common::procs::{free_port, http_client, Proc};
use mandate_server::mcp::McpMap;
use mandate_spec::{Audience, Grant, HolderProof, ProofSubject};
use mandate_verifier::http::MapRequest;
use mandate_verifier::Check;
use serde_json::{json, Value as Json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const MIB: usize = 1 << 20;
const AUDIENCE: &str = "https://gw.example.com";

// ---------------------------------------------------------------------------
// The stub MCP server: records what reaches it; answers `tools/list` in the
// framing the request's `x-frame` header asks for (a malicious upstream).

#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
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

fn sse(body: impl Into<Body>) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body.into())
        .unwrap()
}

fn json_response(body: String) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

async fn answer(
    State(seen): State<Arc<Upstream>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    seen.got.lock().unwrap().push(Got {
        method: method.to_string(),
        path: uri.path().to_string(),
        body: body.to_vec(),
    });
    if method == Method::GET {
        if headers.contains_key("last-event-id") {
            // Resumption (streamable HTTP): the events after the one named,
            // here the answer to an earlier `tools/list` (as
            // `server-everything`'s event store replays it).
            return sse(format!(
                "id: 2\nevent: message\ndata: {}\n\n",
                tools_message(&json!(1))
            ));
        }
        if headers.contains_key("x-forever") {
            let events = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n",
                    )),
                    (),
                ))
            });
            return sse(Body::from_stream(events));
        }
        if headers.contains_key("x-sdk") {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        return "reached".into_response();
    }
    if method != Method::POST {
        return "reached".into_response();
    }
    let Ok(msg) = serde_json::from_slice::<Json>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    match msg["method"].as_str() {
        Some("initialize") => {
            let n = {
                let mut s = seen.sessions.lock().unwrap();
                *s += 1;
                *s
            };
            let version = msg["params"]["protocolVersion"]
                .as_str()
                .unwrap_or("2025-11-25");
            Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", format!("up-{n}"))
                .body(Body::from(
                    json!({"jsonrpc": "2.0", "id": id, "result": {
                        "protocolVersion": version,
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "stub", "version": "1"}}})
                    .to_string(),
                ))
                .unwrap()
        }
        Some("tools/list") => {
            let frame = headers
                .get("x-frame")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("json");
            framed_tools(frame, &id)
        }
        None => StatusCode::ACCEPTED.into_response(),
        Some(m) => {
            json_response(json!({"jsonrpc": "2.0", "id": id, "result": {"ok": m}}).to_string())
        }
    }
}

/// Two tools; the narrow token may call only `send_email`. The second
/// carries placeholders a framing replaces with JSON `serde_json` refuses.
fn tools_message(id: &Json) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
        {"name": "send_email", "description": "Sends an email.",
         "inputSchema": {"type": "object"}},
        {"name": "delete_inbox", "description": "Deletes every email.__SUR__",
         "inputSchema": {"type": "object", "properties": {}}, "_meta": {"x": "__DEEP__"}},
    ]}})
    .to_string()
    .replace("__SUR__", "")
    .replace("\"__DEEP__\"", "0")
}

fn framed_tools(frame: &str, id: &Json) -> Response {
    let text = tools_message(id);
    // Split after a comma: a `\n` between the halves is JSON whitespace.
    let cut = text.find(",\"result\"").unwrap() + 1;
    let (a, b) = text.split_at(cut);
    match frame {
        "batch" => json_response(format!("[{text}]")),
        "object" => {
            let msg: Json = serde_json::from_str(&text).unwrap();
            let tools = &msg["result"]["tools"];
            json_response(
                json!({"jsonrpc": "2.0", "id": id, "result": {"tools": {
                    "a": tools[0], "b": tools[1]}}})
                .to_string(),
            )
        }
        // A byte-order mark, then the event's data on the first line.
        "sse-bom-data" => sse(format!("\u{feff}data: {text}\n\n")),
        "sse-1e400" => sse(format!(
            "event: message\ndata: {}\n\n",
            text.replacen("\"properties\":{}", "\"maximum\":1e400", 1)
        )),
        "sse-surrogate" => sse(format!(
            "event: message\ndata: {}\n\n",
            text.replacen("every email.", "every email.\\ud800", 1)
        )),
        "sse-deep" => sse(format!(
            "event: message\ndata: {}\n\n",
            text.replacen(
                "\"x\":0",
                &format!("\"x\":{}0{}", "[".repeat(200), "]".repeat(200)),
                1
            )
        )),
        // Valid SSE the filter must read as a client does: comment lines
        // between data lines, a bare `data` line, mixed line ends and
        // event separators, a notification first.
        "sse-split" => sse(format!(
            ": hello\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\r\n\
             event: message\r\ndata: {a}\n: between\rdata\r\ndata: {b}\r\n\r\n: tail\n\n"
        )),
        "sse-deflate" => deflate_behind_identity(&text),
        _ => json_response(text),
    }
}

// ---------------------------------------------------------------------------
// A zlib stream of stored blocks that is also valid UTF-8 (the filter reads
// it as text): block headers `00|01 3D 40 C2 BF` (LEN 0x403D = 16445; the
// NLEN bytes are a two-byte UTF-8 character), an Adler-32 of ASCII bytes.

const BLOCK: usize = 0x403D;

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn zlib_stored(data: &[u8]) -> Vec<u8> {
    assert_eq!(data.len() % BLOCK, 0);
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(BLOCK).collect();
    for (i, c) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        out.extend_from_slice(&[0x3D, 0x40, 0xC2, 0xBF]);
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// What a client decoding `Content-Encoding: identity, deflate` reads
/// (httpx, the Python SDK's client, skips `identity` and inflates).
fn inflate_stored(z: &[u8]) -> Option<Vec<u8>> {
    let mut i = 2;
    let mut out = Vec::new();
    loop {
        let head = *z.get(i)?;
        if head & 0b110 != 0 {
            return None;
        }
        let len = usize::from(u16::from_le_bytes([*z.get(i + 1)?, *z.get(i + 2)?]));
        out.extend_from_slice(z.get(i + 5..i + 5 + len)?);
        i += 5 + len;
        if head & 1 == 1 {
            return Some(out);
        }
    }
}

/// The `tools/list` answer as an event stream, deflated in stored blocks,
/// with `Content-Encoding: identity` then `Content-Encoding: deflate`. A
/// block boundary falls inside `data:`, so the raw bytes show no data line.
fn deflate_behind_identity(text: &str) -> Response {
    let head = "\n\nevent: message\n";
    // The `d` of `data:` is the first block's last byte.
    let pad = BLOCK - 1 - (2 + head.len());
    let mut body = None;
    for salt in 0..10_000u32 {
        let mut s = format!(": {}{head}data: {text}\n\n: ", "p".repeat(pad));
        let fill = BLOCK - (s.len() + 9) % BLOCK;
        s.push_str(&format!("{salt:08}"));
        s.push_str(&"q".repeat(fill));
        s.push('\n');
        let z = zlib_stored(s.as_bytes());
        let tail = &z[z.len() - 4..];
        if std::str::from_utf8(&z).is_ok() && tail.iter().all(|b| (0x20..0x7f).contains(b)) {
            body = Some(z);
            break;
        }
    }
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("content-encoding", "identity")
        .header("content-encoding", "deflate")
        .body(Body::from(body.unwrap()))
        .unwrap()
}

// ---------------------------------------------------------------------------
// Keys, tokens and the gateway.

/// Keys and tokens, made with the libraries (a delegating agent holds its
/// own key and any Biscuit library).
struct Keys {
    issuer: mandate_issuer::Issuer,
    root: biscuit_auth::PublicKey,
    /// Alice's agent: holds `mail`.
    alice: KeyPair,
    /// `send_email:/mcp where to ends-with @company.com`, held by `alice`.
    mail: Vec<u8>,
}

fn grant(allow: &[&str], where_: &[&str]) -> Grant {
    Grant::parse(allow, where_).unwrap()
}

impl Keys {
    fn new() -> Keys {
        let root = KeyPair::new();
        let alice = KeyPair::new();
        let mut k = Keys {
            root: root.public(),
            issuer: mandate_issuer::Issuer::new(root),
            alice,
            mail: Vec::new(),
        };
        k.mail = k.mint_for(
            "user:alice",
            &k.alice.public(),
            grant(&["send_email:/mcp"], &["to ends-with @company.com"]),
        );
        k
    }

    fn mint_for(&self, principal: &str, agent: &biscuit_auth::PublicKey, g: Grant) -> Vec<u8> {
        self.issuer
            .mint(&mandate_issuer::MintRequest {
                principal: principal.into(),
                agent: "mail-agent".into(),
                agent_key: *agent,
                grant: g,
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
            .token
    }
}

fn delegate(token: &[u8], holder: &KeyPair, to: &biscuit_auth::PublicKey, g: Grant) -> Vec<u8> {
    mandate_attenuate::delegate(
        token,
        holder,
        &mandate_attenuate::Delegation {
            agent: "sub-agent".into(),
            agent_key: *to,
            grant: g,
            ttl: None,
            purpose: None,
        },
    )
    .unwrap()
    .token
}

fn narrow(token: &[u8], g: &Grant, ttl: Option<Duration>) -> Vec<u8> {
    mandate_attenuate::narrow(token, g, ttl).unwrap().token
}

fn text(token: &[u8]) -> String {
    mandate_spec::token_to_text(token)
}

struct Gw {
    _dir: tempfile::TempDir,
    gateway: Proc,
    up: Arc<Upstream>,
    keys: Keys,
}

fn gateway() -> Gw {
    let (upstream, up) = upstream();
    gateway_to(&upstream, up, "")
}

fn gateway_to(upstream: &str, up: Arc<Upstream>, route_extra: &str) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         public_key = \"{}\"\n\
         public_url = \"{AUDIENCE}\"\n\
         issuer_url = \"https://issuer.example.com\"\n\
         replay_db = \"{}\"\n\
         [[routes]]\n\
         prefix = \"/mcp\"\n\
         upstream = \"{upstream}\"\n\
         mode = \"mcp\"\n{route_extra}",
        keys.root,
        dir.path().join("replay").display(),
    );
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let gateway = Proc::start([
        "gateway",
        "--config",
        dir.path().join("gateway.toml").to_str().unwrap(),
    ]);
    Gw {
        _dir: dir,
        gateway,
        up,
        keys,
    }
}

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
    fn send(
        &self,
        method: &str,
        token: Option<&[u8]>,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http_client()
            .request(method, format!("http://{}/mcp", self.gateway.addr))
            .header("content-type", "application/json")
            .body(body.into());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(text(t));
        }
        let resp = req.send().unwrap();
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().unwrap().to_vec(),
        }
    }

    fn post(&self, token: &[u8], session: Option<&str>, body: &Json) -> Answer {
        let headers: Vec<(&str, &str)> =
            session.map(|s| ("mcp-session-id", s)).into_iter().collect();
        self.send("POST", Some(token), &headers, body.to_string())
    }

    fn open(&self, token: &[u8]) -> String {
        let a = self.post(token, None, &init());
        assert_eq!(a.status, 200, "{}", a.text());
        a.header("mcp-session-id")
    }

    /// `tools/list` with the mail token, the upstream framing its answer so.
    fn list_framed(&self, frame: &str) -> Answer {
        self.send(
            "POST",
            Some(&self.keys.mail),
            &[("x-frame", frame)],
            tools_list(1).to_string(),
        )
    }
}

fn init() -> Json {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})
}

fn ping() -> Json {
    json!({"jsonrpc": "2.0", "id": 7, "method": "ping"})
}

fn tools_list(id: i64) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

/// Sends `request` as written on a new connection; the answer as text.
fn raw_exchange(addr: &str, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(request).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Sessions: lookalike owners

/// Chains that could collide with alice's session owner (`route "/mcp"
/// family F hop K…`): a hop from alice to her own key, another root token
/// of the same principal for the same agent key (another family), and a
/// delegate — each gets 404. The owner's parts are fixed-form (the prefix
/// quoted with `{:?}`, a UUID family, `ed25519/<hex>` keys), so no text of a
/// token can shift them. First-party narrowing keeps the session (SPEC
/// §17), but a narrowing block with raw Datalog gets no token-only pass:
/// `check if false` added by the holder is denied before the session is
/// looked at, and a harmless raw check makes housekeeping need its grant.
#[test]
fn session_owner_lookalikes_and_narrowed_tokens() {
    let g = gateway();
    let k = &g.keys;
    let alice = g.open(&k.mail);
    let self_hop = delegate(&k.mail, &k.alice, &k.alice.public(), Grant::default());
    let second_root = k.mint_for(
        "user:alice",
        &k.alice.public(),
        grant(&["send_email:/mcp"], &[]),
    );
    let bob = KeyPair::new();
    let delegated = delegate(&k.mail, &k.alice, &bob.public(), Grant::default());
    let before = g.up.hits();
    for (what, token) in [
        ("a hop from alice to her own key", &self_hop),
        ("another root token for alice's agent key", &second_root),
        ("alice's delegate", &delegated),
    ] {
        for method in ["POST", "GET", "DELETE"] {
            let body = if method == "POST" {
                ping().to_string()
            } else {
                String::new()
            };
            let a = g.send(
                method,
                Some(token),
                &[("mcp-session-id", alice.as_str())],
                body,
            );
            assert_eq!(a.status, 404, "{what} {method}: {}", a.text());
            assert!(
                a.text().contains("no such MCP session"),
                "{what}: {}",
                a.text()
            );
        }
    }
    assert_eq!(g.up.hits(), before, "nothing reached alice's session");
    // Narrowed by its holder (canonical grant, expiry): the same session.
    let narrowed = narrow(
        &k.mail,
        &grant(&["send_email:/mcp"], &["to ends-with @company.com"]),
        Some(Duration::from_secs(600)),
    );
    let a = g.post(&narrowed, Some(&alice), &ping());
    assert_eq!(a.status, 200, "{}", a.text());
    // Narrowed with raw Datalog: decided on the grants, before the session.
    let nothing = narrow(
        &k.mail,
        &Grant {
            datalog: vec!["check if false".into()],
            ..Grant::default()
        },
        None,
    );
    let harmless = narrow(
        &k.mail,
        &Grant {
            datalog: vec!["check if time($t), $t < 2999-01-01T00:00:00Z".into()],
            ..Grant::default()
        },
        None,
    );
    let before = g.up.hits();
    for (what, token) in [
        ("check if false", &nothing),
        ("a harmless check", &harmless),
    ] {
        for (method, body, action) in [
            ("POST", ping().to_string(), "ping"),
            ("GET", String::new(), "http.get"),
            ("DELETE", String::new(), "http.delete"),
        ] {
            let a = g.send(
                method,
                Some(token),
                &[("mcp-session-id", alice.as_str())],
                body,
            );
            assert_eq!(a.status, 403, "{what} {method}: {}", a.text());
            let d = a.json();
            assert_eq!(d["error"]["data"]["denial"]["kind"], "not_allowed", "{d}");
            assert_eq!(d["error"]["data"]["request"]["action"], action, "{d}");
        }
    }
    assert_eq!(
        g.up.hits(),
        before,
        "no narrowed-away request was forwarded"
    );
}

/// SUCCEEDS: a session's owner names the agent keys of the chain, and an
/// agent key is public. Bob's hop requires proof of possession
/// (`--require-proof`): his token is useless without his key. Alice, his
/// delegator, makes a second hop to bob's key *without* that requirement:
/// the same family and the same agent keys, so the same owner — she uses
/// bob's session (his event stream: the server's sampling and elicitation
/// requests to him; answers in his name; its end) with no proof at all.
/// Input: `mandate attenuate --key alice.key --to sub-agent --to-key
/// <bob's public key> mail.tok`, then bob's `Mcp-Session-Id`.
/// Fix: name each hop by what only its signer could make — its block's
/// signature (revocation id) — instead of its agent key (first-party
/// narrowing still keeps the session; another hop block is another owner);
/// or add the holder-binding key when the chain requires proofs.
#[test]
fn a_delegator_cannot_use_its_holder_bound_delegates_session() {
    let g = gateway();
    let k = &g.keys;
    let bob = KeyPair::new();
    let bound = Grant {
        holder_bound: true,
        ..grant(&["send_email:/mcp"], &[])
    };
    let bobs = delegate(&k.mail, &k.alice, &bob.public(), bound);
    let proof = |body: &[u8], method: &str| {
        let audience = Audience::parse(AUDIENCE).unwrap();
        HolderProof::sign(
            &bob,
            &ProofSubject {
                method,
                audience: &audience,
                target: "/mcp",
                body_digest: ProofSubject::digest(body),
                token: &bobs,
            },
            SystemTime::now(),
        )
        .unwrap()
        .to_header()
    };
    let body = init().to_string();
    let p = proof(body.as_bytes(), "POST");
    let a = g.send(
        "POST",
        Some(&bobs),
        &[(mandate_spec::PROOF_HEADER, p.as_str())],
        body,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let session = a.header("mcp-session-id");
    // Bob's own token without his proof: refused.
    let a = g.post(&bobs, Some(&session), &ping());
    assert_eq!(a.status, 401, "{}", a.text());
    // Alice's forged hop to bob's key, no proof required.
    let forged = delegate(
        &k.mail,
        &k.alice,
        &bob.public(),
        grant(&["send_email:/mcp"], &[]),
    );
    let before = g.up.hits();
    for method in ["POST", "GET", "DELETE"] {
        let body = if method == "POST" {
            ping().to_string()
        } else {
            String::new()
        };
        let a = g.send(
            method,
            Some(&forged),
            &[("mcp-session-id", session.as_str())],
            body,
        );
        assert_eq!(
            a.status,
            404,
            "{method}: alice used bob's holder-bound session without his proof: {}",
            a.text()
        );
    }
    assert_eq!(g.up.hits(), before, "nothing reached bob's session");
}

/// A first-party expiry (a holder's own `ttl`) ends an open event stream,
/// as a hop's does.
#[test]
fn a_first_party_expiry_ends_the_event_stream() {
    let g = gateway();
    let short = narrow(
        &g.keys.mail,
        &Grant::default(),
        Some(Duration::from_secs(2)),
    );
    let mut resp = http_client()
        .get(format!("http://{}/mcp", g.gateway.addr))
        .bearer_auth(text(&short))
        .header("x-forever", "1")
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut got = Vec::new();
    let read = resp.read_to_end(&mut got);
    assert!(
        read.is_ok(),
        "the stream outlived the first-party expiry: {read:?}"
    );
    assert!(String::from_utf8_lossy(&got).contains("notifications/message"));
}

/// SUCCEEDS: the token-only check reads hop and first-party expiries, and
/// raw Datalog forces a grant check — but a canonical time bound
/// (`--where time<=T`, the CLI's way to say "until T", on every
/// alternative) is neither. After T the token allows no action, yet it
/// opens sessions, lists tools, holds the GET stream (the server's requests
/// to the agent) and answers them. Likewise before a `time>=T`. Input: a
/// root token `--allow send_email:/mcp --where time<=2020-01-01T00:00:00Z`,
/// then `initialize`. Fix: in the token-only check, a hop (or first-party
/// block) none of whose alternatives can hold at the request time for its
/// time constraints is expired (denial naming it); the stream cut
/// (`until`) at the latest such bound. Or: no token-only pass for a chain
/// with time constraints, as for raw Datalog.
#[test]
fn a_canonical_time_bound_ends_housekeeping_too() {
    let g = gateway();
    let k = &g.keys;
    let past = k.mint_for(
        "user:alice",
        &k.alice.public(),
        grant(&["send_email:/mcp"], &["time<=2020-01-01T00:00:00Z"]),
    );
    let future = k.mint_for(
        "user:alice",
        &k.alice.public(),
        grant(&["send_email:/mcp"], &["time>=2999-01-01T00:00:00Z"]),
    );
    let before = g.up.hits();
    for (what, token) in [("after time<=", &past), ("before time>=", &future)] {
        // The grant check denies every call...
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "send_email", "arguments": {"to": "a@company.com"}}});
        assert_eq!(g.post(token, None, &call).status, 403, "{what}");
        // ...and the housekeeping must not pass either.
        for (method, body) in [
            ("POST", init().to_string()),
            ("POST", tools_list(1).to_string()),
            ("GET", String::new()),
            (
                "POST",
                json!({"jsonrpc": "2.0", "id": "elicit-1", "result": {"action": "accept"}})
                    .to_string(),
            ),
        ] {
            let a = g.send(method, Some(token), &[], body.clone());
            assert!(
                a.status == 401 || a.status == 403,
                "{what}: {method} {body} passed: {} {}",
                a.status,
                a.text()
            );
        }
    }
    assert_eq!(
        g.up.hits(),
        before,
        "a time-bounded token reached the upstream"
    );
}

// ---------------------------------------------------------------------------
// The exact-path rule and bodies on GET/DELETE

/// Paths a server could resolve to `/mcp` (percent-encoded letters, a
/// trailing dot or slash, `;` parameters, dot segments, case, an absolute
/// form), and framings of "no body" on GET and DELETE: each is refused
/// (the canonical-path check, no route, the exact-path rule, or the body
/// rule), none reaches the upstream. `Content-Length: 0` is the one
/// spelling of no body (`00` is refused, which only refuses more).
#[test]
fn exact_path_lookalikes_and_bodiless_framings_never_reach_the_upstream() {
    let g = gateway();
    let token = text(&g.keys.mail);
    let addr = &g.gateway.addr;
    let body = ping().to_string();
    let post = |target: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let before = g.up.hits();
    for target in [
        "/mcp.",
        "/mcp..",
        "/mcp%2e",
        "/mcp%2E",
        "/%6dcp",
        "/%6Dcp",
        "/m%63p",
        "/mcp%2f",
        "/mcp/",
        "/MCP",
        "/Mcp",
        "/mcp;",
        "/mcp;x",
        "/mcp%3b",
        "/mcp%20",
        "/mcp%09",
        "/mcp%00",
        "/./mcp",
        "//mcp",
        "/mcp/.",
        "/mcp/..",
        "/x/../mcp",
        "/mcp?",
        "/mcp?a=b",
        "/mcp%23",
        "/mcp\\",
        "/mcp%5c",
        "/mcp~",
        "/mcp%7e",
        "http://gw.example.com/mcp/",
        "http://gw.example.com/MCP",
        "*",
    ] {
        let raw = raw_exchange(addr, post(target).as_bytes());
        let status = status_of(&raw);
        assert!(
            (400..500).contains(&status),
            "{target}: {}",
            raw.lines().next().unwrap_or_default()
        );
    }
    for (method, target) in [("HEAD", "/mcp"), ("OPTIONS", "/mcp"), ("OPTIONS", "*")] {
        let raw = raw_exchange(
            addr,
            format!(
                "{method} {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert!(
            (400..500).contains(&status_of(&raw)),
            "{method} {target}: {raw}"
        );
    }
    // "No body" framings on GET and DELETE other than a plain length 0.
    for method in ["GET", "DELETE"] {
        for framing in [
            "Content-Length: 00\r\n",
            "Content-Length: +0\r\n",
            "Content-Length: 0, 0\r\n",
            "Content-Length: -0\r\n",
            "Content-Length: 0x0\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\n",
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ] {
            let chunk = if framing.contains("chunked") {
                "0\r\n\r\n"
            } else {
                ""
            };
            let raw = raw_exchange(
                addr,
                format!(
                    "{method} /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
                     {framing}Connection: close\r\n\r\n{chunk}"
                )
                .as_bytes(),
            );
            assert!(
                (400..500).contains(&status_of(&raw)),
                "{method} {framing:?}: {}",
                raw.lines().next().unwrap_or_default()
            );
        }
    }
    assert_eq!(g.up.hits(), before, "a lookalike reached the upstream");
    // The controls: the exact path (absolute form too; a fragment, which
    // the request line should not carry, is dropped: `/mcp` to both) and a
    // length of 0, given twice, are the endpoint.
    for target in ["http://gw.example.com/mcp", "/mcp#x"] {
        let raw = raw_exchange(addr, post(target).as_bytes());
        assert_eq!(status_of(&raw), 200, "{target}: {raw}");
    }
    let raw = raw_exchange(
        addr,
        format!(
            "GET /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&raw), 200, "{raw}");
    let got = g.up.since(before);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.path == "/mcp"), "{got:?}");
    assert!(got[2].body.is_empty() && got[2].method == "GET");
}

// ---------------------------------------------------------------------------
// Members the decision reads, spelled otherwise

fn post_parts() -> http::request::Parts {
    http::Request::builder()
        .method("POST")
        .uri("/mcp")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// Every member the decision reads, in every method that reads it, is
/// spelled exactly or refused: `params.name` of `prompts/get`, `uri` of
/// `resources/*`, `arguments`, and lookalike keys inside the arguments.
/// Members the decision does not read (`_meta`, a nested `to`) are not what
/// a server acts on. An argument spelled otherwise than a constraint or an
/// approval condition names is a missing parameter: denied (`Amount` for a
/// rule on `amount` needs the approval; SPEC §14.2 fails closed).
#[test]
fn members_the_decision_reads_are_spelled_exactly() {
    let m = McpMap::new("/mcp", None, MIB);
    let refused = [
        json!({"method": "prompts/get", "params": {"Name": "admin"}}),
        json!({"method": "prompts/get", "params": {"name": "ok", "NAME": "admin"}}),
        json!({"method": "resources/read", "params": {"URI": "file:///etc/shadow"}}),
        json!({"method": "resources/read", "params": {"uri": "file:///ok", "Uri": "file:///etc/shadow"}}),
        json!({"method": "resources/subscribe", "params": {"uri": "file:///ok", "urI": "file:///x"}}),
        json!({"method": "tools/call", "params": {"name": "send_email", "Arguments": {"to": "x@evil.com"}}}),
        json!({"method": "tools/call", "params": {"name": "send_email",
               "arguments": {"to": "a@company.com", "TO": "x@evil.com"}}}),
        json!({"method": "tools/call", "params": {"name": "send_email", "nAme": "delete_inbox"}}),
        json!({"method": "tools/call", "params": {"name": "send_\u{17f}end", "NAME": "x"}}),
    ];
    for mut msg in refused {
        msg["jsonrpc"] = json!("2.0");
        msg["id"] = json!(1);
        let e = m.map_check(&post_parts(), Some(&msg)).unwrap_err();
        assert_eq!(
            e.status,
            http::StatusCode::BAD_REQUEST,
            "{msg}: {}",
            e.message
        );
    }
    for mut msg in [
        json!({"method": "tools/call", "params": {"name": "send_email",
               "_meta": {"name": "delete_inbox", "progressToken": 1}, "arguments": {"to": "a@company.com"}}}),
        json!({"method": "tools/call", "params": {"name": "send_email",
               "arguments": {"to": "a@company.com", "cc": {"to": "x@evil.com"}}}}),
    ] {
        msg["jsonrpc"] = json!("2.0");
        msg["id"] = json!(1);
        let (req, check) = m.map_check(&post_parts(), Some(&msg)).unwrap();
        assert_eq!((req.action.as_str(), check), ("send_email", Check::Grant));
        assert_eq!(
            req.params.get("to"),
            Some(&mandate_spec::Value::Str("a@company.com".into()))
        );
    }
    // Through the gateway: an approval condition on `amount`.
    let g = gateway();
    let k = &g.keys;
    let finance = KeyPair::new();
    let pay = grant(&["pay:/mcp"], &[])
        .with_approval(&format!(
            "pay when amount>100 by finance={}",
            finance.public()
        ))
        .unwrap();
    let token = k.mint_for("user:alice", &k.alice.public(), pay);
    let before = g.up.hits();
    let call = |args: Json| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "pay", "arguments": args}})
    };
    let a = g.post(&token, None, &call(json!({"Amount": 1000})));
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(
        a.json()["error"]["data"]["denial"]["kind"],
        "needs_approval",
        "{}",
        a.text()
    );
    let a = g.post(&token, None, &call(json!({"amount": 5, "AMOUNT": 1000})));
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(g.up.hits(), before);
    let a = g.post(&token, None, &call(json!({"amount": 5})));
    assert_eq!(a.status, 200, "{}", a.text());
}

// ---------------------------------------------------------------------------
// The tools/list filter against a malicious upstream

/// Framings the filter reads as a client does: comment lines between data
/// lines, a bare `data` line, `\r`, `\r\n` and `\n` mixed, another event
/// first. Filtered.
#[test]
fn tools_list_split_by_comments_and_mixed_line_ends_is_filtered() {
    let g = gateway();
    let a = g.list_framed("sse-split");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(!a.text().contains("delete_inbox"), "{}", a.text());
    assert!(a.text().contains("send_email"), "{}", a.text());
    assert!(a.text().contains("notifications/message"), "{}", a.text());
}

/// SUCCEEDS: the filter narrows a message that is an object with
/// `result.tools`; an upstream answering `tools/list` with a JSON array (a
/// batch of one) is passed on whole, and the TypeScript SDK's client reads
/// an array answer message by message (`Array.isArray(data) ? data.map(…)`,
/// client/streamableHttp.js) — the agent sees `delete_inbox`. Input: the
/// upstream answers `[{"jsonrpc":"2.0","id":1,"result":{"tools":[…]}}]`.
/// Fix: in `narrow_tools`, narrow every element of an array too (or refuse
/// an array answer: 502), and refuse any answer that is neither.
#[test]
fn a_batch_framed_tools_list_is_filtered_or_refused() {
    let g = gateway();
    let a = g.list_framed("batch");
    assert!(
        a.status == 502 || !a.text().contains("delete_inbox"),
        "{} {}",
        a.status,
        a.text()
    );
}

/// SUCCEEDS: an event whose data `serde_json` cannot parse is passed on as
/// it came (`rewrite_sse` keeps unparsed events), while the JSON answer
/// path refuses what it cannot parse (502). JavaScript's `JSON.parse` (the
/// TypeScript SDK) and Python's `json` read `1e400` (Infinity), a lone
/// surrogate `\ud800` and 200 levels of nesting; `serde_json` refuses all
/// three. A malicious upstream puts one in a tool it wants shown: the whole
/// list passes unfiltered. Fix: in `rewrite_sse`, an event with data that
/// does not parse is an error (the answer is refused, 502), or is dropped.
#[test]
fn an_event_the_filter_cannot_parse_is_not_passed_on() {
    let g = gateway();
    for frame in ["sse-1e400", "sse-surrogate", "sse-deep"] {
        let a = g.list_framed(frame);
        assert!(
            a.status == 502 || !a.text().contains("delete_inbox"),
            "{frame}: {} {}",
            a.status,
            a.text()
        );
    }
}

/// SUCCEEDS: an event stream starting with a byte-order mark and the
/// answer's data on its first line (`\u{feff}data: {…}`): to the filter the
/// field is `\u{feff}data`, so the event has no data and is passed on; a
/// client decodes with `TextDecoder` (the TypeScript SDK), which drops the
/// BOM, and reads the data — the whole list. Fix: strip one leading BOM
/// before reading (as the SSE specification's decoder does), or refuse an
/// answer starting with one.
#[test]
fn a_bom_does_not_hide_the_first_event_from_the_filter() {
    let g = gateway();
    let a = g.send(
        "POST",
        Some(&g.keys.mail),
        &[("x-frame", "sse-bom-data")],
        tools_list(1).to_string(),
    );
    assert!(
        a.status == 502 || !a.text().contains("delete_inbox"),
        "{} {}",
        a.status,
        a.text()
    );
}

/// SUCCEEDS: the coded-answer check reads the first `Content-Encoding`
/// header only. An upstream sends `Content-Encoding: identity` and then
/// `Content-Encoding: deflate`, with a zlib stream of stored blocks whose
/// bytes are valid UTF-8 (block headers `00 3D 40 C2 BF`) and whose `data:`
/// is cut by a block header: the filter sees no data line and passes it on
/// (both headers kept); httpx (the Python SDK's client) skips `identity`,
/// inflates, and reads the whole list. Fix: read every `Content-Encoding`
/// value (`get_all`, split on commas) and refuse any but `identity`.
#[test]
fn a_content_coding_behind_identity_is_refused() {
    let g = gateway();
    let a = g.list_framed("sse-deflate");
    let codings: Vec<String> = a
        .headers
        .get_all("content-encoding")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let decoded = inflate_stored(&a.body).map(|b| String::from_utf8_lossy(&b).into_owned());
    eprintln!(
        "{} {codings:?}; the raw body shows delete_inbox: {}; decoded by a client: {:?}",
        a.status,
        a.text().contains("delete_inbox"),
        decoded.as_ref().map(|d| d.contains("delete_inbox"))
    );
    // The Python SDK's HTTP client itself, when set up.
    if let Ok(python) = std::env::var("MANDATE_MCP_PYTHON") {
        let script = "import httpx2, sys\n\
            r = httpx2.post(sys.argv[1], content=sys.argv[3], headers={\n\
                'authorization': 'Bearer ' + sys.argv[2], 'content-type': 'application/json',\n\
                'accept': 'application/json, text/event-stream', 'x-frame': 'sse-deflate'})\n\
            print(r.status_code, 'delete_inbox' in r.text)";
        let out = Command::new(python)
            .args(["-c", script])
            .arg(format!("http://{}/mcp", g.gateway.addr))
            .arg(text(&g.keys.mail))
            .arg(tools_list(1).to_string())
            .output()
            .unwrap();
        eprintln!(
            "httpx2 (the Python SDK's client): status, shows delete_inbox: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        a.status == 502 || !decoded.is_some_and(|d| d.contains("delete_inbox")),
        "{} {codings:?}: the client inflates the unfiltered list",
        a.status
    );
}

/// SUCCEEDS: only the answer to a `tools/list` POST is filtered. The
/// streamable HTTP transport resumes a stream on GET with `Last-Event-ID`,
/// and the server replays the events after that id — the `tools/list`
/// answer among them — on the GET stream, which the gateway passes through.
/// Against `server-everything` see
/// `server_everything_replays_the_unfiltered_list_on_get`. Fix: narrow
/// every message listing tools in every event stream of an MCP route (the
/// GET stream included), event by event as it streams.
#[test]
fn a_replayed_tools_list_is_filtered() {
    let g = gateway();
    let a = g.send("GET", Some(&g.keys.mail), &[("last-event-id", "1")], "");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(!a.text().contains("delete_inbox"), "{}", a.text());
}

// ---------------------------------------------------------------------------
// With the official SDK and the reference server (when set up)

fn sdk_dir() -> Option<PathBuf> {
    let dir = std::env::var("MANDATE_MCP_SDK_DIR").ok().map(PathBuf::from);
    if dir.is_none() {
        eprintln!("skipped: the MCP SDKs are not set up (scripts/setup-agents.sh)");
    }
    dir
}

/// The TypeScript SDK's `listTools()` through the gateway, the upstream
/// framing its answer as `frame`: the names listed, or the error.
fn ts_list_tools(sdk: &Path, gw: &Gw, frame: &str) -> Json {
    let script = r#"
import { pathToFileURL } from "node:url";
const [sdk, url, token, frame] = process.argv.slice(2);
const base = `${sdk}/node_modules/@modelcontextprotocol/sdk/dist/esm/client`;
const { Client } = await import(pathToFileURL(`${base}/index.js`));
const { StreamableHTTPClientTransport } = await import(pathToFileURL(`${base}/streamableHttp.js`));
const client = new Client({ name: "red-team", version: "1" });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { authorization: `Bearer ${token}`, "x-frame": frame, "x-sdk": "1" } },
});
let out;
try {
  await client.connect(transport);
  const r = await client.listTools();
  out = { tools: r.tools.map((t) => t.name) };
} catch (e) {
  out = { error: String(e) };
}
console.log(JSON.stringify(out));
process.exit(0);
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.mjs");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("node")
        .arg(&file)
        .arg(sdk)
        .arg(format!("http://{}/mcp", gw.gateway.addr))
        .arg(text(&gw.keys.mail))
        .arg(frame)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(
        |_| json!({"error": format!("{stdout} {}", String::from_utf8_lossy(&out.stderr))}),
    )
}

/// The filter narrows `result.tools` only when it is an array; an upstream
/// sending an object is passed on whole, but the SDK refuses such a result
/// (its schema wants an array): the agent is shown nothing.
#[test]
fn the_typescript_sdk_refuses_tools_that_are_not_an_array() {
    let Some(sdk) = sdk_dir() else { return };
    let g = gateway();
    let plain = ts_list_tools(&sdk, &g, "json");
    assert_eq!(plain, json!({"tools": ["send_email"]}), "{plain}");
    let got = ts_list_tools(&sdk, &g, "object");
    eprintln!("tools as an object: {got}");
    assert!(got.get("error").is_some(), "{got}");
}

/// SUCCEEDS (see the gateway-level tests above): what the TypeScript SDK
/// lists when the upstream frames `tools/list` as a batch, behind a BOM, or
/// with a value `serde_json` refuses.
#[test]
fn the_typescript_sdk_lists_only_callable_tools_however_framed() {
    let Some(sdk) = sdk_dir() else { return };
    let g = gateway();
    let mut shown = Vec::new();
    for frame in [
        "batch",
        "sse-bom-data",
        "sse-1e400",
        "sse-surrogate",
        "sse-deep",
    ] {
        let got = ts_list_tools(&sdk, &g, frame);
        eprintln!("{frame}: {got}");
        if got.to_string().contains("delete_inbox") {
            shown.push(frame);
        }
    }
    assert!(
        shown.is_empty(),
        "the SDK listed delete_inbox for {shown:?}"
    );
}

/// `server-everything` over streamable HTTP, killed when dropped.
struct Everything {
    child: Child,
    port: u16,
}

impl Everything {
    fn start(sdk: &Path) -> Everything {
        let port = free_port();
        let child = Command::new("node")
            .arg(sdk.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
            .arg("streamableHttp")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server-everything did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Everything { child, port }
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of the tools listed in an event stream's messages.
fn tool_names(sse_text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in sse_text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(msg) = serde_json::from_str::<Json>(data.trim_start()) else {
            continue;
        };
        for t in msg["result"]["tools"].as_array().into_iter().flatten() {
            names.push(t["name"].as_str().unwrap_or_default().to_string());
        }
    }
    names
}

/// SUCCEEDS against the reference server: the agent (token: `echo` only)
/// lists tools (filtered: `echo`), then resumes on GET from the priming
/// event of that answer's stream (`Last-Event-ID`, the id the gateway
/// showed it): `server-everything`'s event store replays the `tools/list`
/// answer on the GET stream, unfiltered — every tool, `get-env` included.
#[test]
fn server_everything_replays_the_unfiltered_list_on_get() {
    let Some(sdk) = sdk_dir() else { return };
    let everything = Everything::start(&sdk);
    let up = Arc::new(Upstream::default());
    let g = gateway_to(
        &format!("http://127.0.0.1:{}", everything.port),
        up,
        "timeout = \"30s\"\n",
    );
    let token = g.keys.mint_for(
        "user:alice",
        &g.keys.alice.public(),
        grant(&["echo:/mcp"], &[]),
    );
    let accept = ("accept", "application/json, text/event-stream");
    let version = ("mcp-protocol-version", "2025-11-25");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "red-team", "version": "1"}}});
    let a = g.send("POST", Some(&token), &[accept], init.to_string());
    assert_eq!(a.status, 200, "{}", a.text());
    let session = a.header("mcp-session-id");
    let s = ("mcp-session-id", session.as_str());
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let a = g.send(
        "POST",
        Some(&token),
        &[accept, version, s],
        note.to_string(),
    );
    assert_eq!(a.status, 202, "{}", a.text());
    let a = g.send(
        "POST",
        Some(&token),
        &[accept, version, s],
        tools_list(1).to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let listed = tool_names(&a.text());
    assert_eq!(listed, ["echo"], "{}", a.text());
    let priming = a
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("id:").map(|i| i.trim().to_string()))
        .expect("the answer's stream has event ids (resumable)");
    // Resume from the priming event: the stream replays what followed it.
    let mut resp = http_client()
        .get(format!("http://{}/mcp", g.gateway.addr))
        .bearer_auth(text(&token))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .header("last-event-id", &priming)
        .timeout(Duration::from_secs(3))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut got = Vec::new();
    let _ = resp.read_to_end(&mut got);
    let replayed = tool_names(&String::from_utf8_lossy(&got));
    eprintln!("filtered: {listed:?}; replayed on GET: {replayed:?}");
    assert!(
        replayed.iter().all(|t| t == "echo"),
        "the GET stream listed {replayed:?}"
    );
}

// ---------------------------------------------------------------------------
// The cold-decision threads: large tokenless bodies versus valid cold tokens

/// 1 MiB of distinct keys: the most parsing per byte `max_body` allows.
fn heavy_body() -> Vec<u8> {
    let mut params = serde_json::Map::new();
    let mut i = 0;
    loop {
        params.insert(format!("k{i}"), json!(1));
        i += 1;
        if i % 1000 == 0 {
            let len = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": params})
                .to_string()
                .len();
            if len > MIB - 20_000 {
                break;
            }
        }
    }
    json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": params})
        .to_string()
        .into_bytes()
}

/// A gauge's value in the gateway's `/metrics`.
fn gauge(addr: &str, name: &str) -> f64 {
    let text = http_client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Clients sending 1 MiB POSTs without a valid token.
struct Flood {
    handles: Vec<std::thread::JoinHandle<()>>,
    /// Requests answered.
    done: Arc<AtomicUsize>,
    /// Their statuses (0: no answer).
    statuses: Arc<Mutex<Vec<u16>>>,
}

/// 1 MiB POSTs, `n` at a time, until `stop`, with the header line `auth`
/// (empty: none).
fn flood(addr: &str, n: usize, auth: &str, stop: &Arc<AtomicBool>) -> Flood {
    let body = Arc::new(heavy_body());
    let done = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let handles = (0..n)
        .map(|_| {
            let (addr, head, body, stop, done, statuses) = (
                addr.to_string(),
                head.clone(),
                body.clone(),
                stop.clone(),
                done.clone(),
                statuses.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = TcpStream::connect(&addr) else {
                        continue;
                    };
                    let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
                    if c.write_all(head.as_bytes())
                        .and_then(|()| c.write_all(&body))
                        .is_err()
                    {
                        continue;
                    }
                    let mut got = Vec::new();
                    let _ = c.read_to_end(&mut got);
                    let s = status_of(&String::from_utf8_lossy(&got[..got.len().min(64)]));
                    statuses.lock().unwrap().push(s);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    Flood {
        handles,
        done,
        statuses,
    }
}

/// `ping` with a token the gateway has never seen (a cold decision): its
/// status and latency.
fn cold_ping(g: &Gw, token: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let status = http_client()
        .post(format!("http://{}/mcp", g.gateway.addr))
        .bearer_auth(text(token))
        .header("content-type", "application/json")
        .body(ping().to_string())
        .timeout(Duration::from_secs(300))
        .send()
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "p50 {:?}, max {:?} (n={})",
        v[v.len() / 2],
        v[v.len() - 1],
        v.len()
    )
}

/// A token that decodes (URL-safe base64) and is no token: three zero bytes.
const GARBAGE: &str = "Authorization: Bearer AAAA\r\n";

/// Measured, printed (not asserted on time): a client with a fresh valid
/// token (a cold decision) while other clients send 1 MiB bodies of keys,
/// `n` at a time — without a token (refused unread since 04d4173), or with
/// a bearer token that merely decodes (`AAAA`: parsed on the cold-decision
/// threads, one per two cores, which also verify every token the cache does
/// not hold; one FIFO queue, the parse first). Asserted: the valid client
/// is still answered and allowed, and every flood request refused.
#[test]
#[ignore = "a measurement under load (prints figures): run by ./scripts/bench-mcp.sh"]
fn large_bodies_without_a_valid_token_and_valid_cold_tokens() {
    let g = gateway();
    let k = &g.keys;
    let mut fresh =
        (0..40).map(|_| narrow(&k.mail, &Grant::default(), Some(Duration::from_secs(3000))));
    assert_eq!(cold_ping(&g, &k.mail).0, 200);
    let baseline: Vec<Duration> = (0..6)
        .map(|_| {
            let (s, t) = cold_ping(&g, &fresh.next().unwrap());
            assert_eq!(s, 200);
            t
        })
        .collect();
    eprintln!("fresh valid token, no flood: {}", summary(baseline));
    for (what, auth, n) in [
        ("no token", "", 16),
        ("bearer AAAA", GARBAGE, 4),
        ("bearer AAAA", GARBAGE, 16),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let Flood {
            handles,
            done,
            statuses,
        } = flood(&g.gateway.addr, n, auth, &stop);
        std::thread::sleep(Duration::from_millis(1500));
        let mut queued = 0.0f64;
        let during: Vec<Duration> = (0..6)
            .map(|_| {
                queued = queued.max(gauge(&g.gateway.addr, "mandate_cold_decisions_waiting"));
                let (s, t) = cold_ping(&g, &fresh.next().unwrap());
                assert_eq!(s, 200, "the valid client was refused during the flood");
                t
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        let answered = done.load(Ordering::Relaxed);
        let statuses = statuses.lock().unwrap();
        eprintln!(
            "fresh valid token, {n} clients sending 1 MiB with {what}: {}; cold queue up to \
             {queued}; {answered} flood requests answered",
            summary(during)
        );
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 0),
            "{statuses:?}"
        );
    }
}

/// Since 04d4173 a body over 64 KiB without a bearer token is denied
/// unread (as `http.post`): a tokenless flood never reaches the
/// cold-decision threads.
#[test]
fn tokenless_bodies_do_not_occupy_the_cold_decision_threads() {
    let g = gateway();
    let stop = Arc::new(AtomicBool::new(false));
    let handles = flood(&g.gateway.addr, 8, "", &stop).handles;
    let mut peak = 0.0f64;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(
            gauge(&g.gateway.addr, "mandate_cold_decisions_waiting")
                + gauge(&g.gateway.addr, "mandate_cold_decisions_running"),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        peak, 0.0,
        "tokenless requests occupied the cold-decision threads"
    );
}

/// SUCCEEDS (04d4173's check): "a bearer token that decodes" is any
/// URL-safe base64, so `Authorization: Bearer AAAA` (three zero bytes) buys
/// a parse of up to `max_body` on the cold-decision threads (70 ms for 1
/// MiB of keys here), queued ahead of the decisions of valid cold tokens;
/// figures in `large_bodies_without_a_valid_token_and_valid_cold_tokens`.
/// Fix: before a large body is parsed, verify the token (its signatures and
/// chain: the cached verification, on the cold threads when not cached) and
/// deny unread (as `http.<method>`) when it is not valid; a holder of a
/// valid token is accountable for what it sends.
#[test]
fn a_large_body_with_a_token_that_is_no_token_is_denied_unread() {
    let g = gateway();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{GARBAGE}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        heavy_body().len()
    )
    .into_bytes();
    req.extend_from_slice(&heavy_body());
    let started = Instant::now();
    let raw = raw_exchange(&g.gateway.addr, &req);
    let took = started.elapsed();
    let body: Json = serde_json::from_str(&raw[raw.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    let data = &body["error"]["data"];
    eprintln!(
        "bearer AAAA with 1 MiB of keys: {} in {took:?}",
        status_of(&raw)
    );
    assert_eq!(data["denial"]["kind"], "malformed_token", "{body}");
    assert_eq!(
        data["request"]["action"], "http.post",
        "the body was parsed: {body}"
    );
}
