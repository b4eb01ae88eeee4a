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
    /// The TLS endpoint in front of the service, when the gateway reaches
    /// it over https.
    pub tls: Option<TlsFront>,
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
        let over_tls = options.service_over_tls;
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
        let mut env: Vec<(&str, std::path::PathBuf)> = Vec::new();
        let (service, tls) = if over_tls {
            let front = TlsFront::start(d, &p.serve.addr);
            env.push(("SSL_CERT_FILE", d.join("ca.pem")));
            (format!("https://localhost:{}", front.port), Some(front))
        } else {
            (p.url(), None)
        };
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
            service = service,
            api = rules("/api"),
            brief = rules("/brief"),
        );
        std::fs::write(d.join("gateway.toml"), config).unwrap();
        let env: Vec<(&str, &std::path::Path)> =
            env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let gateway = Proc::start_env(
            [
                "gateway",
                "--config",
                d.join("gateway.toml").to_str().unwrap(),
            ],
            &env,
        );
        HoldGateway {
            p,
            gateway,
            seen,
            mcp_token,
            audit_pub,
            tls,
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
            .body((json!({ "amount": amount })).to_string())
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

/// A TLS endpoint on loopback in front of a plain-http server (as a
/// TLS-terminating proxy is in front of an issuer service): a test CA
/// (`ca.pem` in the scenario's directory, made with `openssl`) and a
/// certificate for `localhost` it signed; each connection's bytes are
/// copied to the server after the handshake.
pub struct TlsFront {
    pub port: u16,
    /// Handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
}

impl TlsFront {
    pub fn start(d: &std::path::Path, target: &str) -> TlsFront {
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend_from_slice(&ec);
        ca.extend_from_slice(&[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=mandate test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        openssl(&ca);
        let mut csr = vec!["req"];
        csr.extend_from_slice(&ec);
        csr.extend_from_slice(&[
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&csr);
        std::fs::write(
            d.join("tls.ext"),
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.pem",
            "-days",
            "1",
            "-extfile",
            "tls.ext",
        ]);
        use rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls::pki_types::CertificateDer::pem_file_iter(d.join("tls.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(d.join("tls.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let target = target.to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, target, counted) =
                            (acceptor.clone(), target.clone(), counted.clone());
                        tokio::spawn(async move {
                            let Ok(mut tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            counted.fetch_add(1, Ordering::SeqCst);
                            let Ok(mut plain) = tokio::net::TcpStream::connect(&target).await
                            else {
                                return;
                            };
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        });
                    }
                });
        });
        TlsFront { port, handshakes }
    }
}
