//! The revocation feed across processes, against a real nats-server with
//! JetStream on loopback: one issuer-side publisher (`mandate revoke --nats`)
//! and three `mandate verifierd` processes. Revoke → all three deny; a stopped
//! verifier catches up on 1000 revocations; a nats-server restart loses
//! nothing; a silent feed makes a verifier fail closed until it returns.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::Scenario;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Nats {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nats {
    fn start(dir: &Path, port: u16) -> Nats {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        *self = Nats::start(&self.dir.clone(), self.port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Verifierd {
    child: Child,
    addr: String,
}

impl Verifierd {
    fn start(s: &Scenario, data: &Path, nats: &str) -> Verifierd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["verifierd", "--data-dir"])
            .arg(data)
            .args([
                "--public-key",
                &s.issuer_pub,
                "--nats",
                nats,
                "--staleness",
                "2s",
                "--listen",
                "127.0.0.1:0",
            ])
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
            .unwrap_or_else(|| panic!("verifierd said {line:?}"))
            .to_string();
        Verifierd { child, addr }
    }

    /// POSTs to /v1/authorize; returns (status, body).
    fn authorize(&self, token: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({
            "token": token.trim(),
            "action": "read",
            "resource": "/api/customers/42",
            "params": {"rows": 1},
        })
        .to_string();
        http(&self.addr, "POST", "/v1/authorize", &body)
    }

    fn health(&self) -> (u16, serde_json::Value) {
        http(&self.addr, "GET", "/healthz", "")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Verifierd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    http_as(addr, method, path, body, None)
}

fn http_as(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    bearer: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status: u16 = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = raw.split("\r\n\r\n").nth(1).unwrap_or("null");
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Revokes `ids` through the CLI with --ids-from, publishing to the feed.
fn revoke_ids(s: &Scenario, db: &str, nats: &str, ids: &[String]) -> common::Run {
    let path = s.path(&format!("ids-{}.txt", ids.len()));
    std::fs::write(&path, ids.join("\n")).unwrap();
    s.run(&[
        "revoke",
        "--db",
        db,
        "--ids-from",
        path.to_str().unwrap(),
        "--reason",
        "bulk",
        "--nats",
        nats,
    ])
}

fn fake_ids(n: usize, tag: u8) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut id = [tag; 64];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            hex::encode(id)
        })
        .collect()
}

#[test]
fn revocations_reach_every_verifier_and_survive_restarts() {
    let s = Scenario::new();
    let mut nats = Nats::start(&s.path("nats"), free_port());
    let url = nats.url();
    let token = s.read("sub.tok");
    let parent = s.read("support.tok");
    let mut verifiers: Vec<Verifierd> = (0..3)
        .map(|i| Verifierd::start(&s, &s.path(&format!("v{i}")), &url))
        .collect();
    for v in &verifiers {
        wait_until(
            "the verifier to reach the feed",
            Duration::from_secs(10),
            || v.authorize(&token).0 == 200,
        );
    }

    // 1. Revoke hop 1 at the issuer: all three verifiers deny, the parent lives.
    let r = s.run(&[
        "revoke",
        "--db",
        "issuer",
        "--token",
        "sub.tok",
        "--hop",
        "1",
        "--reason",
        "task done",
        "--nats",
        &url,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for v in &verifiers {
        wait_until("the revocation to arrive", Duration::from_secs(5), || {
            v.authorize(&token).0 == 403
        });
        let (_, d) = v.authorize(&token);
        assert_eq!(d["denial"]["kind"], "revoked");
        assert_eq!(d["denial"]["hop"], 1);
        assert_eq!(v.authorize(&parent).0, 200);
    }

    // 2. Stop verifier 2, revoke 1000 ids, restart it: it has all 1000.
    verifiers[2].stop();
    let ids = fake_ids(1000, 0xa1);
    let r = revoke_ids(&s, "issuer", &url, &ids);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1000);
    verifiers[2] = Verifierd::start(&s, &s.path("v2"), &url);
    for v in &verifiers {
        wait_until(
            "catching up on 1000 revocations",
            Duration::from_secs(10),
            || v.health().1["feed_position"].as_u64() == Some(1001),
        );
    }
    let listed = s.run(&[
        "revocations",
        "--db",
        s.path("v2").to_str().unwrap(),
        "--json",
    ]);
    let present: std::collections::HashSet<String> = listed
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["target"]["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        ids.iter().all(|id| present.contains(id)),
        "verifier 2 missed revocations"
    );
    assert_eq!(present.len(), 1001);

    // 3. Restart nats-server in the middle of a stream of revocations: every
    //    acknowledged one reaches every verifier.
    let stream_ids = fake_ids(600, 0xb2);
    std::fs::write(s.path("stream.txt"), stream_ids.join("\n")).unwrap();
    let mut publisher = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["revoke", "--db"])
        .arg(s.path("issuer"))
        .args(["--ids-from"])
        .arg(s.path("stream.txt"))
        .args(["--reason", "stream", "--nats", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(publisher.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        acked.push(line.strip_prefix("revoked ").unwrap().to_string());
        if acked.len() == 150 {
            nats.restart();
        }
    }
    publisher.wait().unwrap();
    assert!(acked.len() > 150, "only {} acknowledged", acked.len());
    for (i, v) in verifiers.iter().enumerate() {
        let want = 1001 + acked.len() as u64;
        wait_until(
            "catching up after the nats restart",
            Duration::from_secs(20),
            || v.health().1["feed_position"].as_u64() >= Some(want),
        );
        let listed = s.run(&[
            "revocations",
            "--db",
            s.path(&format!("v{i}")).to_str().unwrap(),
            "--json",
        ]);
        let present: std::collections::HashSet<String> = listed
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["target"]["value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let lost = acked.iter().filter(|id| !present.contains(*id)).count();
        assert_eq!(lost, 0, "verifier {i} lost {lost} acknowledged revocations");
    }
}

#[test]
fn a_silent_feed_fails_closed_and_recovers() {
    let s = Scenario::new();
    let mut nats = Nats::start(&s.path("nats"), free_port());
    let url = nats.url();
    let token = s.read("support.tok");
    let v = Verifierd::start(&s, &s.path("v"), &url);
    wait_until(
        "the verifier to reach the feed",
        Duration::from_secs(10),
        || v.authorize(&token).0 == 200,
    );

    nats.stop();
    // Staleness limit 2 s: within a few seconds every request is denied.
    wait_until(
        "the verifier to fail closed",
        Duration::from_secs(8),
        || v.authorize(&token).0 == 403,
    );
    let (_, d) = v.authorize(&token);
    assert_eq!(d["denial"]["kind"], "revocation_unavailable");
    assert!(
        d["denial"]["reason"]
            .as_str()
            .unwrap()
            .contains("revocation list stale"),
        "{d}"
    );
    assert_eq!(v.health().0, 503);

    nats.restart();
    wait_until("the verifier to recover", Duration::from_secs(10), || {
        v.authorize(&token).0 == 200
    });
    assert_eq!(v.health().0, 200);
}

#[test]
fn a_revocation_at_the_issuer_service_reaches_every_verifier() {
    let s = Scenario::new();
    let nats = Nats::start(&s.path("nats"), free_port());
    let url = nats.url();
    // The admin token the service's own verifier decides on.
    let admin = s.run(&[
        "issue",
        "--key",
        "issuer.key",
        "--principal",
        "ops:admin",
        "--to",
        "admin-cli",
        "--to-key",
        &s.support_pub.clone(),
        "--allow",
        "mint,revoke:/v1/*",
        "--ttl",
        "1h",
    ]);
    assert_eq!(admin.code, 0, "{}", admin.stderr);
    let admin = admin.stdout.trim().to_string();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(s.path("issuer-data"))
        .arg("--root-key")
        .arg(format!("0={}", s.path("issuer.key").display()))
        .args(["--nats", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let issuer = line
        .trim()
        .trim_start_matches("listening on http://")
        .to_string();
    let _serve = Verifierd {
        child: serve,
        addr: issuer.clone(),
    };

    let token = s.read("sub.tok");
    let verifiers: Vec<Verifierd> = (0..3)
        .map(|i| Verifierd::start(&s, &s.path(&format!("v{i}")), &url))
        .collect();
    for v in &verifiers {
        wait_until(
            "the verifier to reach the feed",
            Duration::from_secs(10),
            || v.authorize(&token).0 == 200,
        );
    }
    let inspect = s.run(&["inspect", "--json", "sub.tok"]);
    let chain: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let id = chain["chain"]["hops"][1]["revocation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({"revocation_id": id, "reason": "task done"}).to_string();
    let (status, answer) = http_as(&issuer, "POST", "/v1/revocations", &body, Some(&admin));
    assert_eq!(status, 200, "{answer}");
    for v in &verifiers {
        wait_until("the revocation to arrive", Duration::from_secs(5), || {
            v.authorize(&token).0 == 403
        });
        assert_eq!(v.authorize(&token).1["denial"]["kind"], "revoked");
    }
}
