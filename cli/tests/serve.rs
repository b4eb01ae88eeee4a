//! `mandate serve` as a user runs it: keys and the admin token from the CLI,
//! the service on a loopback port, mint → authorize → revoke over HTTP, a
//! clean stop on SIGTERM, no secret in the logs; bad configurations refused
//! with one line.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::http_client;
use common::{assert_bad_input, mandate};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running `mandate serve`, stopped (SIGTERM) when dropped.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &std::path::Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .arg("serve")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server {
            child: Some(child),
            addr,
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http_client()
            .request(method, format!("http://{}{path}", self.addr))
            .timeout(std::time::Duration::from_secs(10))
            .header("content-type", "application/json")
            .body(body.map(Value::to_string).unwrap_or_default());
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }

    fn json(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, body) = self.request(method, path, auth, body);
        (status, serde_json::from_str(&body).unwrap())
    }

    /// SIGTERM, then the exit code and everything logged.
    fn stop(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let mut log = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status.code().unwrap_or(-1), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn serve_mints_authorizes_revokes_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_pub = mandate(d, &["keygen", "--out", "root.key"]).stdout;
    let admin_pub = mandate(d, &["keygen", "--out", "admin.key"]).stdout;
    let agent_pub = mandate(d, &["keygen", "--out", "agent.key"]).stdout;
    let issue = mandate(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "ops:admin",
            "--to",
            "admin-cli",
            "--to-key",
            admin_pub.trim(),
            "--allow",
            "mint,revoke:/v1/*",
            "--ttl",
            "1h",
        ],
    );
    assert_eq!(issue.code, 0, "{}", issue.stderr);
    let admin = issue.stdout.trim().to_string();

    std::fs::write(
        d.join("mandate.toml"),
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[[root_keys]]\nid = 0\nfile = \"root.key\"\n",
    )
    .unwrap();
    let server = Server::start(d, &["--config", "mandate.toml"]);

    let (status, keys) = server.json("GET", "/v1/keys", None, None);
    assert_eq!(status, 200);
    assert_eq!(keys[0]["public_key"], root_pub.trim());

    let (status, minted) = server.json(
        "POST",
        "/v1/tokens",
        Some(&admin),
        Some(&json!({
            "principal": "user:alice", "agent": "support-agent", "agent_key": agent_pub.trim(),
            "allow": ["read,list:/api/customers/*"], "where": ["rows<=100"], "ttl": "1h",
        })),
    );
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();

    // The minted token verifies offline with the CLI too.
    std::fs::write(d.join("alice.tok"), &token).unwrap();
    let verify = mandate(
        d,
        &[
            "verify",
            "--public-key",
            root_pub.trim(),
            "--action",
            "read",
            "--resource",
            "/api/customers/42",
            "--param",
            "rows=5",
            "alice.tok",
        ],
    );
    assert_eq!(verify.code, 0, "{}", verify.stderr);

    let check = json!({ "token": token, "action": "read", "resource": "/api/customers/42",
                        "params": { "rows": 5 } });
    assert_eq!(
        server.json("POST", "/v1/authorize", None, Some(&check)).0,
        200
    );

    let (status, revoked) = server.json(
        "POST",
        "/v1/revocations",
        Some(&admin),
        Some(&json!({ "principal": "user:alice", "reason": "offboarded" })),
    );
    assert_eq!(status, 200, "{revoked}");
    let (status, decision) = server.json("POST", "/v1/authorize", None, Some(&check));
    assert_eq!(status, 403);
    assert_eq!(decision["denial"]["kind"], "revoked");

    let (status, metrics) = server.request("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nmandate_tokens_minted_total 1\n"),
        "{metrics}"
    );

    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("minted root token"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    let root_secret = std::fs::read_to_string(d.join("root.key")).unwrap();
    let root_hex = root_secret.trim().trim_start_matches("ed25519-private/");
    for secret in [token.as_str(), admin.as_str(), root_hex] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
    // Every revocation was synced: the list is readable after the stop.
    let list = mandate(d, &["revocations", "--db", "data/revocations"]);
    assert!(list.stdout.contains("offboarded"), "{}", list.stdout);
}

#[test]
fn serve_refuses_bad_configuration_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mandate(d, &["keygen", "--out", "root.key"]);

    let run = mandate(d, &["serve", "--data-dir", "data"]);
    assert_bad_input(&run, "no root key");

    let run = mandate(d, &["serve", "--root-key", "0=root.key"]);
    assert_bad_input(&run, "no data directory");

    let secret = std::fs::read_to_string(d.join("root.key")).unwrap();
    let arg = format!("0={}", secret.trim());
    let run = mandate(d, &["serve", "--data-dir", "data", "--root-key", &arg]);
    assert_bad_input(&run, "not the key itself");
    assert!(!run.stderr.contains(secret.trim()));

    let run = mandate(
        d,
        &[
            "serve",
            "--data-dir",
            "data",
            "--root-key",
            "0=root.key",
            "--root-key",
            "1=root.key",
        ],
    );
    assert_bad_input(&run, "set current_key_id");

    let run = mandate(
        d,
        &["serve", "--data-dir", "data", "--root-key", "0=nope.key"],
    );
    assert_bad_input(&run, "nope.key");

    std::fs::write(d.join("bad.toml"), "data_dir = \"data\"\nport = 8080\n").unwrap();
    let run = mandate(d, &["serve", "--config", "bad.toml"]);
    assert_bad_input(&run, "unknown field `port`");

    let run = mandate(d, &["serve", "--config", "missing.toml"]);
    assert_bad_input(&run, "missing.toml");
}
