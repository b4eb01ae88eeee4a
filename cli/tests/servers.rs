//! The three servers (`serve`, `verifierd`, `gateway`) as processes, on
//! their one start-up path: the configuration logged at start (key files by
//! path, never key material) with a WARN line per insecure setting, no
//! colours under `NO_COLOR`; a feed outage logged; SIGTERM while a request
//! is in flight → that request gets its normal answer, new connections are
//! refused, the audit log is flushed (its records are there after exit),
//! exit 0; `/healthz`; `/metrics` read by the official Prometheus text
//! parser (Python's `prometheus_client`, from the virtualenv
//! `scripts/setup-agents.sh` makes), with the expected families and types
//! and counters that move after a decision.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::free_port;
use common::{mandate, Run};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn run(d: &Path, args: &[&str]) -> Run {
    let r = mandate(d, args);
    assert_eq!(r.code, 0, "mandate {args:?}: {}", r.stderr);
    r
}

/// Keys (root, audit, agent) and a token allowing `read` under `allow`, in
/// `d`; returns (root public key, token).
fn keys_and_token(d: &Path, allow: &str) -> (String, String) {
    let root = run(d, &["keygen", "--out", "root.key"])
        .stdout
        .trim()
        .to_string();
    run(d, &["keygen", "--out", "audit.key"]);
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
            "agent",
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
    .to_string();
    (root, token)
}

/// A server process: its address, and its standard error as it comes.
struct Server {
    child: Option<Child>,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(dir: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "mandate {args:?} said {line:?}; log: {}",
                    log.lock().unwrap()
                )
            })
            .to_string();
        Server {
            child: Some(child),
            addr,
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 15 s) for `needle` in the log.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits (up to 60 s) for the exit; its code (-1: killed by a signal).
    fn wait(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not exit; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks the start-up log: one configuration line naming `settings`
    /// (key files by path), never `secrets`, WARN lines with `warnings`,
    /// no ANSI colours (NO_COLOR).
    fn check_start_log(&self, settings: &[&str], secrets: &[String], warnings: &[&str]) {
        let log = self.wait_log("listening");
        let config = log
            .lines()
            .find(|l| l.contains(" INFO ") && l.contains("configuration"))
            .unwrap_or_else(|| panic!("no configuration line in\n{log}"));
        for s in settings {
            assert!(config.contains(s), "{s:?} missing from {config}");
        }
        for w in warnings {
            assert!(
                log.lines().any(|l| l.contains(" WARN ") && l.contains(w)),
                "no WARN line with {w:?} in\n{log}"
            );
        }
        for secret in secrets {
            assert!(
                !log.contains(secret.as_str()),
                "a secret reached the log:\n{log}"
            );
        }
        assert!(!log.contains('\x1b'), "colours despite NO_COLOR:\n{log}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The secret half of a key file (what must never be logged).
fn secret_of(d: &Path, file: &str) -> String {
    std::fs::read_to_string(d.join(file))
        .unwrap()
        .trim()
        .trim_start_matches("ed25519-private/")
        .to_string()
}

/// One request on its own connection; (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    response(s)
}

fn response(mut s: TcpStream) -> (u16, String) {
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A POST whose body is only half sent: the request is in flight until
/// [`finish`] sends the rest.
fn half_post(addr: &str, path: &str, body: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    s.flush().unwrap();
    (s, rest.to_string())
}

fn finish(mut s: TcpStream, rest: &str) -> (u16, String) {
    s.write_all(rest.as_bytes()).unwrap();
    response(s)
}

/// Waits (up to 15 s) until a new connection to `addr` is refused.
fn wait_refused(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/metrics` parsed by `prometheus_client.parser`: family name (as the
/// parser gives it: a counter without `_total`) → {type, samples}. `None`
/// (the test is skipped) when the virtualenv is not set up and not required.
fn metrics(addr: &str) -> Option<Value> {
    let required = std::env::var("MANDATE_AGENTS_REQUIRED").as_deref() == Ok("1");
    let Ok(python) = std::env::var("MANDATE_PYTHON") else {
        assert!(
            !required,
            "prometheus_client is not set up: run `eval \"$(./scripts/setup-agents.sh)\"`"
        );
        eprintln!("skipped the /metrics parse: no MANDATE_PYTHON (scripts/setup-agents.sh)");
        return None;
    };
    let (status, text) = http(addr, "GET", "/metrics", "", "");
    assert_eq!(status, 200, "{text}");
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   out[f.name] = {'type': f.type, 'samples': [[s.name, s.labels, s.value] for s in f.samples]}\n\
        print(json.dumps(out))\n";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Asserts each (family, type) is present.
fn assert_families(m: &Value, expected: &[(&str, &str)]) {
    for (name, kind) in expected {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert_eq!(
            m[family]["type"], *kind,
            "family {name} ({kind}) missing or of another type in {m:#}"
        );
    }
}

/// The sum of the samples named `sample` whose labels include `labels`
/// (0 when there are none).
fn value(m: &Value, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let family = sample
        .strip_suffix("_total")
        .or_else(|| sample.strip_suffix("_count"))
        .unwrap_or(sample);
    m[family]["samples"]
        .as_array()
        .map(|samples| {
            samples
                .iter()
                .filter(|s| s[0] == sample)
                .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
                .map(|s| s[2].as_f64().unwrap())
                .sum()
        })
        .unwrap_or(0.0)
}

/// The audit log's records after the process ended (read with
/// `mandate audit export`).
fn audit_records(d: &Path, db: &str) -> Vec<Value> {
    run(d, &["audit", "export", "--db", db])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn authorize_body(token: &str, resource: &str) -> String {
    json!({ "token": token, "action": "read", "resource": resource }).to_string()
}

/// Decisions before and after one allowed request: the counters moved.
fn assert_decision_counted(before: &Value, after: &Value) {
    let allowed = |m: &Value| value(m, "mandate_decisions_total", &[("outcome", "allow")]);
    assert!(
        allowed(after) >= allowed(before) + 1.0,
        "{before:#}\n{after:#}"
    );
    let decided = |m: &Value| value(m, "mandate_decision_duration_seconds_count", &[]);
    assert!(decided(after) >= decided(before) + 1.0, "{after:#}");
}

/// Polls `/metrics` until `sample` reaches `at_least` (an asynchronous
/// writer, e.g. the audit log's, reports after the answer).
fn wait_metric(addr: &str, sample: &str, at_least: f64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = metrics(addr).unwrap();
        if value(&m, sample, &[]) >= at_least {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{sample} stayed below {at_least}: {m:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const VERIFIER_FAMILIES: [(&str, &str); 5] = [
    ("mandate_decisions_total", "counter"),
    ("mandate_decision_duration_seconds", "histogram"),
    ("mandate_verification_cache_hits_total", "counter"),
    ("mandate_verification_cache_misses_total", "counter"),
    ("mandate_revocation_entries", "gauge"),
];

const AUDIT_FAMILIES: [(&str, &str); 3] = [
    ("mandate_audit_queue_depth", "gauge"),
    ("mandate_audit_write_duration_seconds", "histogram"),
    ("mandate_audit_records_written_total", "counter"),
];

#[test]
fn serve_logs_its_configuration_drains_on_sigterm_and_exports_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, token) = keys_and_token(d, "read:/api/customers/*");
    let secrets = [secret_of(d, "root.key"), secret_of(d, "audit.key")];

    // Without an audit log: said at WARN.
    let bare = Server::start(
        d,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "bare",
            "--root-key",
            "0=root.key",
        ],
    );
    bare.check_start_log(&["root_keys=0=root.key"], &secrets, &["no audit log"]);
    drop(bare);

    let mut server = Server::start(
        d,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--root-key",
            "0=root.key",
            "--audit-key",
            "audit.key",
        ],
    );
    server.check_start_log(
        &["root_keys=0=root.key", "audit_key=audit.key"],
        &secrets,
        &[],
    );
    let addr = server.addr.clone();
    assert_eq!(http(&addr, "GET", "/healthz", "", "").0, 200);

    let before = metrics(&addr);
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/authorize",
        "",
        &authorize_body(&token, "/api/customers/1"),
    );
    assert_eq!(status, 200, "{body}");
    if let Some(before) = before {
        let after = wait_metric(&addr, "mandate_audit_records_written_total", 1.0);
        assert_families(&after, &VERIFIER_FAMILIES);
        assert_families(&after, &AUDIT_FAMILIES);
        assert_families(
            &after,
            &[
                ("mandate_tokens_minted_total", "counter"),
                ("mandate_revocations_total", "counter"),
                ("mandate_issuer_decisions_total", "counter"),
                ("mandate_http_responses_total", "counter"),
                ("mandate_authorize_duration_seconds", "histogram"),
            ],
        );
        assert_decision_counted(&before, &after);
        let authorized = |m: &Value| {
            value(
                m,
                "mandate_issuer_decisions_total",
                &[("source", "authorize"), ("outcome", "allow")],
            )
        };
        assert_eq!(authorized(&after), authorized(&before) + 1.0);
    }

    // SIGTERM with a request in flight (its body half sent).
    let (slow, rest) = half_post(
        &addr,
        "/v1/authorize",
        &authorize_body(&token, "/api/customers/7"),
    );
    std::thread::sleep(Duration::from_millis(300));
    server.signal("-TERM");
    server.wait_log("shutting down");
    wait_refused(&addr);
    let (status, body) = finish(slow, &rest);
    assert_eq!(status, 200, "the request in flight was cut: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["decision"],
        "allow"
    );
    assert_eq!(server.wait(), 0, "{}", server.log());
    let log = server.log();
    assert!(log.contains("audit log flushed"), "{log}");

    let records = audit_records(d, "data/audit");
    assert!(
        records
            .iter()
            .any(|r| r.to_string().contains("/api/customers/7")),
        "the request decided during the drain is not in the audit log: {records:#?}"
    );
}

#[test]
fn verifierd_logs_its_configuration_drains_on_sigterm_and_exports_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, token) = keys_and_token(d, "read:/api/customers/*");
    let secrets = [secret_of(d, "audit.key")];

    // Fail-open, and a feed that cannot be reached: both said at WARN, and
    // the outage logged.
    let dead_feed = format!("nats://127.0.0.1:{}", free_port());
    let open = Server::start(
        d,
        &[
            "verifierd",
            "--data-dir",
            "open",
            "--public-key",
            &root,
            "--listen",
            "127.0.0.1:0",
            "--nats",
            &dead_feed,
            "--revocation-key",
            &format!("0={root}"),
            "--staleness",
            "1s",
            "--insecure-fail-open-when-stale",
        ],
    );
    open.check_start_log(
        &[&format!("nats={dead_feed}"), "data_dir=open"],
        &secrets,
        &["--insecure-fail-open-when-stale", "no audit log"],
    );
    open.wait_log("revocation feed stale");
    if let Some(m) = metrics(&open.addr) {
        assert_families(
            &m,
            &[
                ("mandate_feed_stale", "gauge"),
                ("mandate_feed_interruptions_total", "counter"),
            ],
        );
        assert_eq!(value(&m, "mandate_feed_stale", &[]), 1.0, "{m:#}");
    }
    drop(open);

    let mut server = Server::start(
        d,
        &[
            "verifierd",
            "--data-dir",
            "data",
            "--public-key",
            &root,
            "--listen",
            "127.0.0.1:0",
            "--audit-db",
            "audit",
            "--audit-key",
            "audit.key",
        ],
    );
    server.check_start_log(
        &[
            "audit_db=audit",
            "audit_key=audit.key",
            "public_key=ed25519/",
        ],
        &secrets,
        &["no revocation feed"],
    );
    let addr = server.addr.clone();
    assert_eq!(http(&addr, "GET", "/healthz", "", "").0, 200);

    let before = metrics(&addr);
    let body = authorize_body(&token, "/api/customers/1");
    assert_eq!(http(&addr, "POST", "/v1/authorize", "", &body).0, 200);
    if let Some(before) = before {
        let after = wait_metric(&addr, "mandate_audit_records_written_total", 1.0);
        assert_families(&after, &VERIFIER_FAMILIES);
        assert_families(&after, &AUDIT_FAMILIES);
        assert_decision_counted(&before, &after);
        let misses = |m: &Value| value(m, "mandate_verification_cache_misses_total", &[]);
        assert!(misses(&after) >= misses(&before) + 1.0, "{after:#}");
    }

    let (slow, rest) = half_post(
        &addr,
        "/v1/authorize",
        &authorize_body(&token, "/api/customers/7"),
    );
    std::thread::sleep(Duration::from_millis(300));
    server.signal("-TERM");
    server.wait_log("shutting down");
    wait_refused(&addr);
    let (status, body) = finish(slow, &rest);
    assert_eq!(status, 200, "the request in flight was cut: {body}");
    assert_eq!(server.wait(), 0, "{}", server.log());
    assert!(server.log().contains("audit log flushed"));
    let records = audit_records(d, "audit");
    assert!(
        records
            .iter()
            .any(|r| r.to_string().contains("/api/customers/7")),
        "the request decided during the drain is not in the audit log: {records:#?}"
    );
}

/// An upstream on loopback: `/api/slow` answers after 1.5 s, anything else
/// at once; counts the requests it received.
fn slow_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                count.fetch_add(1, Ordering::SeqCst);
                if first.contains("/api/slow") {
                    std::thread::sleep(Duration::from_millis(1500));
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream",
                );
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn gateway_logs_its_configuration_drains_on_sigterm_and_exports_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, token) = keys_and_token(d, "read:/api/*");
    let secrets = [secret_of(d, "audit.key"), "upstream-secret".to_string()];
    std::fs::write(d.join("up.secret"), "upstream-secret\n").unwrap();
    let (upstream, seen) = slow_upstream();
    // A route at `/`: /healthz and /metrics stay the gateway's own.
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\npublic_key = \"{root}\"\naudit_dir = \"audit\"\n\
             audit_key_file = \"audit.key\"\n[[routes]]\nprefix = \"/\"\nupstream = \"{upstream}\"\n\
             timeout = \"10s\"\ncredential = {{ header = \"authorization\", prefix = \"Bearer \", file = \"up.secret\" }}\n"
        ),
    )
    .unwrap();
    let mut gw = Server::start(d, &["gateway", "--config", "gateway.toml"]);
    gw.check_start_log(
        &[
            "routes=/->http://127.0.0.1",
            "credential=header:authorization",
            "audit=audit (key audit.key)",
        ],
        &secrets,
        &["no revocation_db"],
    );
    let addr = gw.addr.clone();
    let bearer = format!("Authorization: Bearer {token}\r\n");

    let (status, health) = http(&addr, "GET", "/healthz", "", "");
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&health).unwrap()["status"].clone()
        ),
        (200, json!("ok"))
    );
    let before = metrics(&addr);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "/healthz or /metrics was forwarded"
    );

    assert_eq!(http(&addr, "GET", "/api/fast", &bearer, "").0, 200);
    assert_eq!(http(&addr, "GET", "/api/fast", &bearer, "").0, 200);
    if let Some(before) = before {
        let after = wait_metric(&addr, "mandate_audit_records_written_total", 2.0);
        assert_families(&after, &VERIFIER_FAMILIES[..4]);
        assert_families(&after, &AUDIT_FAMILIES);
        assert_families(
            &after,
            &[
                ("mandate_upstream_duration_seconds", "histogram"),
                ("mandate_cold_decisions_running", "gauge"),
                ("mandate_cold_decisions_waiting", "gauge"),
            ],
        );
        assert_decision_counted(&before, &after);
        let upstream_count = value(
            &after,
            "mandate_upstream_duration_seconds_count",
            &[("route", "/")],
        );
        assert_eq!(upstream_count, 2.0, "{after:#}");
        // The second request was decided from the verification cache.
        assert!(
            value(&after, "mandate_verification_cache_hits_total", &[]) >= 1.0,
            "{after:#}"
        );
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // SIGTERM while the upstream takes its time.
    let slow = {
        let addr = addr.clone();
        let bearer = bearer.clone();
        std::thread::spawn(move || http(&addr, "GET", "/api/slow", &bearer, ""))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.signal("-TERM");
    gw.wait_log("shutting down");
    wait_refused(&addr);
    let (status, body) = slow.join().unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "upstream"),
        "the request in flight was cut"
    );
    assert_eq!(gw.wait(), 0, "{}", gw.log());
    assert!(gw.log().contains("audit log flushed"));
    let records = audit_records(d, "audit");
    assert!(
        records.iter().any(|r| r.to_string().contains("/api/slow")),
        "the request in flight is not in the audit log: {records:#?}"
    );
}

/// SIGINT drains as SIGTERM does (Ctrl-C in a terminal).
#[test]
fn sigint_stops_a_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, _) = keys_and_token(d, "read:/api/*");
    let mut server = Server::start(
        d,
        &[
            "verifierd",
            "--data-dir",
            "data",
            "--public-key",
            &root,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    server.wait_log("listening");
    server.signal("-INT");
    assert_eq!(server.wait(), 0, "{}", server.log());
    assert!(server.log().contains("stopped"));
}

/// A client that never finishes its request head (slowloris) holds no
/// connection: the server closes it after its header-read timeout, keeps
/// serving everyone else, and a SIGTERM is not held by it.
#[test]
fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, _) = keys_and_token(d, "read:/api/*");
    let mut server = Server::start(
        d,
        &[
            "verifierd",
            "--data-dir",
            "data",
            "--public-key",
            &root,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    server.wait_log("listening");
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    write!(slow, "POST /v1/authorize HTTP/1.1\r\nHost: t\r\nX-Slow: ").unwrap();
    slow.flush().unwrap();
    // Generous: the server's timeout is 10 s; a server that never closes
    // the connection fails here with a read timeout.
    slow.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut answer = Vec::new();
    match slow.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "the server kept the half-sent request open: {e}"
        ),
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Everyone else is still served.
    let (status, body) = http(&server.addr, "GET", "/healthz", "", "");
    assert_eq!(status, 200, "{body}");
    // A second slow client does not hold the shutdown either.
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    write!(slow, "GET /healthz HTTP/1.1\r\nHo").unwrap();
    slow.flush().unwrap();
    server.signal("-TERM");
    assert_eq!(server.wait(), 0, "{}", server.log());
    assert!(server.log().contains("stopped"), "{}", server.log());
}
