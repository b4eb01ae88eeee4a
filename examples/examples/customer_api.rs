//! A small customer API (list, read, update and delete customers; a payments
//! endpoint with an amount) protected by the Mandate middleware, replaying
//! the seed scenario: alice's support agent delegates read and list on
//! `/api/customers/*` to a sub-agent, whose requests then get 200 on GET and
//! 403 — with the reason and the whole delegation chain — on DELETE. Every
//! decision lands in a signed audit log, verified at the end.
//!
//! Run with: `cargo run -p mandate-examples --example customer_api`
//!
//! The same server for load tests (`scripts/bench-http.sh`):
//! - `customer_api serve --listen ADDR --public-key PUBKEY [--no-auth]
//!   [--no-cache] [--audit-dir DIR [--audit-async] [--audit-sign-records]
//!   [--audit-checkpoint-every-batch]]`
//!   serves until killed (the audit key is generated in memory; its public
//!   key is printed; each answer waits for its record to be durable unless
//!   `--audit-async`; `--audit-sign-records` also signs every record, as
//!   logs did before checkpoints; `--audit-checkpoint-every-batch` signs a
//!   checkpoint with every batch, as before checkpoints were amortised over
//!   an interval);
//! - `customer_api tokens --key ROOT_KEY_FILE --count N [--datalog CHECK]`
//!   prints N fresh 2-hop tokens, one per line, each allowing `read` on
//!   customers; with `--datalog`, the hop also carries that raw Datalog
//!   check (a token that is not decided natively but on the Datalog world:
//!   the benchmark's baseline, SPEC §7.1).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use biscuit_auth::KeyPair;
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{parse_private_key, parse_public_key, token_to_text, Grant};
use mandate_verifier::http::{Authorized, MandateLayer, Route, RouteMap};
use mandate_verifier::{
    audit::{read_audit_log, verify_entries, AuditLog, AuditOptions},
    revocation::RevocationStore,
    CacheOptions, RootKeys, Verifier,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The allocator the `mandate` binary uses (cli/src/main.rs), so the
/// benchmark measures what a server built like it would do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("demo") => demo(),
        Some("serve") => serve(&args[1..]),
        Some("tokens") => tokens(&args[1..]),
        Some(other) => Err(format!("unknown command {other:?} (demo, serve, tokens)").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- the API

#[derive(Default)]
struct Customers(Mutex<BTreeMap<u64, Value>>);

impl Customers {
    fn seeded() -> Arc<Customers> {
        let c = Customers::default();
        if let Ok(mut m) = c.0.lock() {
            for (id, name) in [(41, "Ada"), (42, "Grace"), (43, "Edsger")] {
                m.insert(id, json!({ "id": id, "name": name, "plan": "pro" }));
            }
        }
        Arc::new(c)
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

/// The routes, without authorization.
fn api(customers: Arc<Customers>) -> Router {
    Router::new()
        .route("/api/customers", get(list))
        .route(
            "/api/customers/{id}",
            get(read_one).put(update).delete(remove),
        )
        .route("/api/payments", post(pay))
        .with_state(customers)
}

/// The mapping: the default (GET read, PUT update, DELETE delete, the path as
/// resource, query parameters typed), plus the list route and the payment's
/// amount and currency from its JSON body.
fn mapping() -> RouteMap {
    RouteMap::new()
        .route(
            "GET",
            "/api/customers",
            Route::new().action("list").resource("/api/customers/*"),
        )
        .route(
            "POST",
            "/api/payments",
            Route::new()
                .action("pay")
                .body_param("amount", "amount")
                .body_param("currency", "currency"),
        )
}

fn who(auth: &Option<Authorized>) -> Value {
    match auth {
        Some(a) => json!({ "principal": a.principal(), "agent": a.agent() }),
        None => Value::Null,
    }
}

async fn list(
    State(c): State<Arc<Customers>>,
    auth: Option<Authorized>,
    Query(q): Query<ListQuery>,
) -> Json<Value> {
    let all: Vec<Value> =
        c.0.lock()
            .map(|m| m.values().take(q.limit.unwrap_or(100)).cloned().collect())
            .unwrap_or_default();
    Json(json!({ "customers": all, "for": who(&auth) }))
}

async fn read_one(
    State(c): State<Arc<Customers>>,
    auth: Option<Authorized>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, StatusCode> {
    let found = c.0.lock().ok().and_then(|m| m.get(&id).cloned());
    found
        .map(|v| Json(json!({ "customer": v, "for": who(&auth) })))
        .ok_or(StatusCode::NOT_FOUND)
}

async fn update(
    State(c): State<Arc<Customers>>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let mut m = c.0.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let entry = m.get_mut(&id).ok_or(StatusCode::NOT_FOUND)?;
    if let (Some(e), Some(b)) = (entry.as_object_mut(), body.as_object()) {
        for (k, v) in b {
            if k != "id" {
                e.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Json(entry.clone()))
}

async fn remove(State(c): State<Arc<Customers>>, Path(id): Path<u64>) -> StatusCode {
    match c.0.lock().ok().and_then(|mut m| m.remove(&id)) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

async fn pay(auth: Authorized, Json(body): Json<Value>) -> Json<Value> {
    Json(json!({ "paid": body["amount"], "currency": body["currency"], "by": auth.agent() }))
}

// ------------------------------------------------------- the seed scenario

fn demo() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("mandate-customer-api-{}", std::process::id()));
    let result = demo_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn demo_in(dir: &std::path::Path) -> Result<(), Error> {
    // The issuer, alice's support agent, its sub-agent, the API's audit key.
    let issuer = Issuer::new(KeyPair::new());
    let (support, sub, audit_key) = (KeyPair::new(), KeyPair::new(), KeyPair::new());
    let root = issuer.mint(&MintRequest {
        principal: "user:alice".into(),
        agent: "support-agent".into(),
        agent_key: support.public(),
        grant: Grant::parse(
            &["read,list,update:/api/customers/*", "pay:/api/payments"],
            &[] as &[&str],
        )?,
        ttl: Duration::from_secs(3600),
        purpose: Some("answer support tickets".into()),
        max_depth: Some(2),
    })?;
    // Offline, the support agent hands read and list to a sub-agent.
    let hop = delegate(
        &root.token,
        &support,
        &Delegation {
            agent: "sub-agent".into(),
            agent_key: sub.public(),
            grant: Grant::parse(&["read,list:/api/customers/*"], &[] as &[&str])?,
            ttl: Some(Duration::from_secs(600)),
            purpose: Some("look up a customer".into()),
        },
    )?;
    let token = token_to_text(&hop.token);

    // The API server: routes behind the middleware, with a revocation list,
    // the verification cache and a signed audit log.
    let (id, key) = issuer.keys().public_keys()[0];
    let audit = AuditLog::open(dir.join("audit"), &audit_key, AuditOptions::default())?;
    let verifier = Verifier::new(RootKeys::new().with(id, key))
        .with_revocations(Arc::new(RevocationStore::open(dir.join("revocations"))?))
        .with_cache(CacheOptions::default())
        .with_audit(audit.clone());
    let app = api(Customers::seeded()).layer(MandateLayer::new(verifier, mapping()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    runtime.spawn(async move { axum::serve(listener, app).await });
    println!("customer API on http://{addr}, protected by Mandate\n");
    // The agent's side: any HTTP client, the token as a bearer credential.
    let client = reqwest::Client::builder().no_proxy().build()?;

    let requests = [
        ("GET", "/api/customers/42", None),
        ("GET", "/api/customers?limit=2", None),
        ("DELETE", "/api/customers/42", None),
        ("PUT", "/api/customers/42", Some(r#"{"plan": "free"}"#)),
        ("GET", "/api/customers/42", Some("no token")),
    ];
    for (method, path, body) in requests {
        let bearer = if body == Some("no token") {
            None
        } else {
            Some(token.as_str())
        };
        let body = body.filter(|b| *b != "no token");
        let (status, answer) = runtime.block_on(http(&client, addr, method, path, bearer, body))?;
        println!("sub-agent: {method} {path} -> {status}");
        let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        if status < 300 {
            println!("  {answer}");
        } else {
            println!("  reason: {}", v["reason"].as_str().unwrap_or("-"));
            if let Some(chain) = v["chain"].as_object() {
                let path: Vec<String> = std::iter::once(chain["principal"].to_string())
                    .chain(
                        chain["hops"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|h| h["agent"].to_string()),
                    )
                    .collect();
                println!("  chain: {}", path.join(" -> "));
            }
        }
    }

    // The auditor's view: every decision, signed and chained.
    audit.flush()?;
    let entries = read_audit_log(audit.path())?;
    let summary = verify_entries(&entries, &audit_key.public())?;
    println!(
        "\naudit log: {} records, every link and checkpoint signature verified (head {})",
        summary.records,
        summary.head_hash.unwrap_or_default()
    );
    for (_, entry) in &entries.entries {
        let r = &entry.as_ref().map_err(|e| e.to_string())?.record;
        println!(
            "  #{} {:?} {} {} -> {:?}",
            r.seq,
            r.request.action,
            r.request.resource,
            r.chain.as_ref().map_or("-", |c| c.principal.as_str()),
            r.decision
        );
    }
    Ok(())
}

/// One request as the agent sends it: the token in `Authorization: Bearer`;
/// (status, body).
async fn http(
    client: &reqwest::Client,
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut request = client
        .request(method, format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.unwrap_or("").to_string());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

// ------------------------------------------------------ load-test helpers

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn serve(args: &[String]) -> Result<(), Error> {
    let listen: SocketAddr = flag(args, "--listen").unwrap_or("127.0.0.1:8090").parse()?;
    let no_auth = args.iter().any(|a| a == "--no-auth");
    let mut app = api(Customers::seeded());
    if !no_auth {
        let key = parse_public_key(flag(args, "--public-key").ok_or("--public-key PUBKEY")?)?;
        let mut verifier = Verifier::new(RootKeys::single(key));
        if !args.iter().any(|a| a == "--no-cache") {
            verifier = verifier.with_cache(CacheOptions::default());
        }
        if let Some(dir) = flag(args, "--audit-dir") {
            let audit_key = KeyPair::new();
            println!("audit key {}", audit_key.public());
            let options = AuditOptions {
                durable: !args.iter().any(|a| a == "--audit-async"),
                sign_records: args.iter().any(|a| a == "--audit-sign-records"),
                checkpoint_interval: if args.iter().any(|a| a == "--audit-checkpoint-every-batch") {
                    std::time::Duration::ZERO
                } else {
                    AuditOptions::default().checkpoint_interval
                },
                ..AuditOptions::default()
            };
            verifier = verifier.with_audit(AuditLog::open(dir, &audit_key, options)?);
        }
        app = app.layer(MandateLayer::new(verifier, mapping()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

fn tokens(args: &[String]) -> Result<(), Error> {
    let key_file = flag(args, "--key").ok_or("--key ROOT_KEY_FILE")?;
    let count: usize = flag(args, "--count").unwrap_or("1").parse()?;
    let issuer = Issuer::new(parse_private_key(&std::fs::read_to_string(key_file)?)?);
    let (support, sub) = (KeyPair::new(), KeyPair::new());
    let grant = Grant::parse(&["read,list:/api/customers/*"], &[] as &[&str])?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.iter().any(|a| a == "--hostile") {
        writeln!(out, "{}", token_to_text(&hostile(&issuer)?))?;
        return Ok(());
    }
    let mut hop_grant = Grant::parse(&["read:/api/customers/*"], &[] as &[&str])?;
    if let Some(check) = flag(args, "--datalog") {
        hop_grant.datalog.push(check.to_string());
    }
    for i in 0..count {
        let root = issuer.mint(&MintRequest {
            principal: format!("user:{i}"),
            agent: "support-agent".into(),
            agent_key: support.public(),
            grant: grant.clone(),
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })?;
        let hop = delegate(
            &root.token,
            &support,
            &Delegation {
                agent: "sub-agent".into(),
                agent_key: sub.public(),
                grant: hop_grant.clone(),
                ttl: None,
                purpose: None,
            },
        )?;
        writeln!(out, "{}", token_to_text(&hop.token))?;
    }
    Ok(())
}

/// A hostile token for load tests: the holder appends a hop whose raw check
/// chains set unions, grown until the verifier's cost bound (SPEC §6 rule
/// 1c) would refuse one more: the most Datalog work a token it accepts can
/// ask for. Every request made with it is denied, after that work.
fn hostile(issuer: &Issuer) -> Result<Vec<u8>, Error> {
    let (support, sub) = (KeyPair::new(), KeyPair::new());
    let root = issuer.mint(&MintRequest {
        principal: "user:mallory".into(),
        agent: "support-agent".into(),
        agent_key: support.public(),
        grant: Grant::parse(&["read,list:/api/customers/*"], &[] as &[&str])?,
        ttl: Duration::from_secs(3600),
        purpose: None,
        max_depth: None,
    })?;
    let hop = |n: usize| {
        let mut expr = String::from("{0}");
        for i in 1..n {
            expr.push_str(&format!(".union({{{i}}})"));
        }
        let mut grant = Grant::parse(&["read:/api/customers/*"], &[] as &[&str])?;
        grant.datalog = vec![format!("check if {expr}.contains(-1)")];
        delegate(
            &root.token,
            &support,
            &Delegation {
                agent: "sub-agent".into(),
                agent_key: sub.public(),
                grant,
                ttl: None,
                purpose: None,
            },
        )
        .map(|a| a.token)
    };
    let (mut lo, mut hi) = (1usize, 4096usize);
    let mut best = hop(lo).map_err(|e| format!("even one union is refused: {e}"))?;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        match hop(mid) {
            Ok(t) => {
                best = t;
                lo = mid;
            }
            Err(_) => hi = mid,
        }
    }
    Ok(best)
}
