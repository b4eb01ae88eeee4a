//! Revocation propagation across processes on loopback: a real nats-server
//! with JetStream, three `mandate verifierd` processes, and an issuer-side
//! publisher in this process. Prints
//! - latency from the publish acknowledgement (what a revoke response waits
//!   for) until all three verifiers deny the revoked token, p50/p99/max over
//!   N revocations (default 200);
//! - sustained revocations per second, published back to back, and how long
//!   until every verifier has applied them all.
//!
//! Run with: `cargo bench -p mandate --bench propagation`
//! (`MANDATE_PROPAGATION_N` sets N; under `cargo test` it runs N = 10.)
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::Grant;
use mandate_verifier::{FeedConfig, FeedPublisher, Revocation, Target};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn status(addr: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

fn feed_position(addr: &str) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("{}");
    serde_json::from_str::<serde_json::Value>(body).unwrap()["feed_position"]
        .as_u64()
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("MANDATE_PROPAGATION_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 200 } else { 10 });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nats = Kill(
        Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("nats"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (scripts/setup.sh installs it)"),
    );
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("nats://127.0.0.1:{port}");

    let root = KeyPair::new();
    let agent = KeyPair::new();
    let issuer = Issuer::new(KeyPair::from(&root.private()));
    let mut verifiers = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["verifierd", "--data-dir"])
            .arg(dir.path().join(format!("v{i}")))
            .args(["--public-key", &root.public().to_string(), "--nats", &url])
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        addrs.push(line.trim().trim_start_matches("listening on ").to_string());
        verifiers.push(Kill(child));
    }

    let tokens: Vec<(String, String)> = (0..n)
        .map(|_| {
            let m = issuer
                .mint(&MintRequest {
                    principal: "user:bench".into(),
                    agent: "agent".into(),
                    agent_key: agent.public(),
                    grant: Grant::parse(&["read:/x"], &[] as &[&str]).unwrap(),
                    ttl: Duration::from_secs(3600),
                    purpose: None,
                    max_depth: None,
                })
                .unwrap();
            let body =
                serde_json::json!({"token": m.to_base64(), "action": "read", "resource": "/x"})
                    .to_string();
            (m.revocation_ids[0].clone(), body)
        })
        .collect();
    for (_, body) in &tokens[..1] {
        for a in &addrs {
            let deadline = Instant::now() + Duration::from_secs(10);
            while status(a, body) != 200 {
                assert!(Instant::now() < deadline, "verifier {a} never allowed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let publisher = rt
        .block_on(FeedPublisher::connect(FeedConfig::new(url.clone())))
        .unwrap();
    let entry = |id: &str| Revocation {
        target: Target::Block(hex::decode(id).unwrap()),
        revoked_at: OffsetDateTime::now_utc(),
        reason: "bench".into(),
        by: "bench".into(),
        expires_at: None,
        note: None,
    };

    // 1. Latency: one revocation at a time, until all three deny.
    let mut latencies = Vec::with_capacity(n);
    for (id, body) in &tokens {
        rt.block_on(publisher.publish(&entry(id))).unwrap();
        let acked = Instant::now();
        for a in &addrs {
            while status(a, body) != 403 {
                assert!(
                    acked.elapsed() < Duration::from_secs(10),
                    "revocation never arrived"
                );
            }
        }
        latencies.push(acked.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("# Revocation propagation, 1 publisher → NATS JetStream → 3 verifierd (loopback)\n");
    println!(
        "latency from publish ack to all 3 verifiers denying, over {n} revocations: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );

    // 2. Throughput: publish back to back (each waits for its ack), then wait
    //    until every verifier has applied the last one.
    let burst = if bench { 5_000 } else { 100 };
    let started = Instant::now();
    let mut last = 0;
    for i in 0..burst {
        let mut id = [0x5au8; 64];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        last = rt
            .block_on(publisher.publish(&entry(&hex::encode(id))))
            .unwrap();
    }
    let published = started.elapsed().as_secs_f64();
    for a in &addrs {
        while feed_position(a) < last {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let applied = started.elapsed().as_secs_f64();
    println!(
        "sustained: {burst} revocations published in {published:.2} s ({:.0}/s, one ack at a time); \
         all 3 verifiers applied them after {applied:.2} s ({:.0}/s end to end)",
        burst as f64 / published,
        burst as f64 / applied
    );
}
