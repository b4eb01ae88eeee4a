//! A real headless browser for the HTML tests: Debian's chromium driven by
//! chromedriver over the W3C WebDriver protocol (plain HTTP and JSON), with
//! the flags that keep it off the network.
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use super::procs::free_port;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (scripts/setup.sh installs chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let answer = b.call("POST", "/session", Some(caps));
        b.session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Read the head, then exactly Content-Length bytes (chromedriver may
        // keep the connection open whatever `Connection: close` says).
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "chromedriver closed the connection");
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        match length {
            Some(len) => {
                while raw.len() < head_end + len {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "chromedriver closed the connection early");
                    raw.extend_from_slice(&buf[..n]);
                }
            }
            None => {
                let _ = s.read_to_end(&mut raw);
            }
        }
        let text = String::from_utf8_lossy(&raw[head_end..]).to_string();
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&text)
        } else {
            text
        };
        let raw = String::from_utf8_lossy(&raw).to_string();
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("WebDriver said {raw}"))
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        let v = self.call("POST", &self.at("/url"), Some(json!({ "url": url })));
        assert!(v["value"].is_null(), "navigating to {url}: {v}");
    }

    /// Runs `script` in the page; its return value.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )["value"]
            .clone()
    }

    pub fn add_cookie(&self, name: &str, value: &str) {
        let v = self.call(
            "POST",
            &self.at("/cookie"),
            Some(json!({ "cookie": { "name": name, "value": value } })),
        );
        assert!(v["value"].is_null(), "setting a cookie: {v}");
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call("GET", &self.at("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.at(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n.min(tail.len())]);
        rest = tail.get(n + 2..).unwrap_or("");
    }
    out
}

/// Where the screenshots of a test run go: `$CARGO_TARGET_DIR/screenshots`
/// (beside the test binaries), created if missing.
pub fn screenshot_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // …/target/release/deps/test-binary → …/target/screenshots
    let dir = exe
        .ancestors()
        .nth(3)
        .unwrap_or(std::path::Path::new("."))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
