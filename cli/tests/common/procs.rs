//! Real processes for the multi-process tests and the propagation bench: a
//! nats-server with JetStream, `mandate serve`, `mandate verifierd`, and a
//! minimal HTTP/1.1 client (one request per connection, `Connection: close`).
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server with JetStream, storing in `dir`, killed when dropped.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Nats {
    pub fn start(dir: &Path) -> Nats {
        Nats::start_with(dir, free_port(), &[])
    }

    /// With extra nats-server flags (e.g. `--user u --pass p`).
    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Nats {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        *self = Nats::start_with(&self.dir.clone(), self.port, &extra);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `mandate` process that prints `listening on [http://]ADDR` first;
/// killed when dropped.
pub struct Proc {
    child: Option<Child>,
    pub addr: String,
    args: Vec<OsString>,
}

impl Proc {
    pub fn start<I, S>(args: I) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Proc::start_env(args, &[])
    }

    /// [`Proc::start`] with `env` set in the process's environment.
    pub fn start_env<I, S>(args: I, env: &[(&str, &std::path::Path)]) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(&args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("mandate {args:?} said {line:?}"))
            .trim_start_matches("http://")
            .to_string();
        Proc {
            child: Some(child),
            addr,
            args,
        }
    }

    /// `mandate verifierd` with its own data directory, following `nats`
    /// with a 2 s staleness limit, plus `extra` flags. It trusts feed entries
    /// signed by the issuer's root key as revocation key 0 (tests reuse the
    /// root key as the revocation key; [`Proc::serve`] signs with it).
    pub fn verifierd(issuer_pub: &str, data: &Path, nats: &str, extra: &[&str]) -> Proc {
        let mut args: Vec<OsString> = vec!["verifierd".into(), "--data-dir".into(), data.into()];
        let revocation_key = format!("0={issuer_pub}");
        for a in [
            "--public-key",
            issuer_pub,
            "--revocation-key",
            &revocation_key,
            "--nats",
            nats,
            "--staleness",
            "2s",
            "--listen",
            "127.0.0.1:0",
        ]
        .iter()
        .chain(extra)
        {
            args.push(a.into());
        }
        Proc::start(args)
    }

    /// `mandate serve` signing with `root_key`, following and publishing to
    /// the feed at `nats` (its entries signed with `root_key` too, as
    /// revocation key 0).
    pub fn serve(root_key: &Path, data: &Path, nats: &str) -> Proc {
        let mut root = OsString::from("0=");
        root.push(root_key);
        Proc::start::<_, OsString>([
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.into(),
            "--root-key".into(),
            root.clone(),
            "--revocation-key-file".into(),
            root,
            "--nats".into(),
            nats.into(),
            "--staleness".into(),
            "2s".into(),
        ])
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Peak resident memory of the process so far, in KiB (Linux VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stops the process with SIGINT (a clean shutdown) and waits for it.
    pub fn interrupt(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Starts the same command again (same data directory), on a new port.
    pub fn restart(&mut self) {
        self.stop();
        *self = Proc::start(self.args.clone());
    }

    /// `POST /v1/authorize` reading customer 42 with `token`: (status, body).
    pub fn authorize(&self, token: &str) -> (u16, serde_json::Value) {
        self.authorize_as(token, "read", "/api/customers/42")
    }

    pub fn authorize_as(
        &self,
        token: &str,
        action: &str,
        resource: &str,
    ) -> (u16, serde_json::Value) {
        let body = serde_json::json!({
            "token": token.trim(),
            "action": action,
            "resource": resource,
            "params": {"rows": 1},
        })
        .to_string();
        http(&self.addr, "POST", "/v1/authorize", &body, None)
    }

    pub fn health(&self) -> (u16, serde_json::Value) {
        http(&self.addr, "GET", "/healthz", "", None)
    }

    /// verifierd's feed position, from /healthz.
    pub fn feed_position(&self) -> u64 {
        self.health().1["feed_position"].as_u64().unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The tests' HTTP client: blocking, loopback only (no proxy), a new
/// connection per request (as `Connection: close` did: nothing pooled
/// across a server's restart or shutdown).
pub fn http_client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    })
}

/// One request with a JSON body (`Content-Type: application/json`, as
/// every endpoint here reads); (status, JSON body or null).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    bearer: Option<&str>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http_client()
        .request(method, format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = bearer {
        req = req.bearer_auth(t.trim());
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
