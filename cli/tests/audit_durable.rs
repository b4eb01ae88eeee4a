//! Durable audit (issue 16 part 3, SPEC §12.2): `mandate verifierd` answers
//! a decision only once its record is durable. Under concurrent load the
//! process is killed with SIGKILL (no shutdown, nothing flushed); after a
//! restart, every request that was answered 200 has its record in the log
//! (matched by the request's own resource path), and the log verifies.
//! With `--audit-async` the loss window is stated at start.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{wait_until, Proc};
use common::Scenario;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Concurrent clients, each on its own kept-alive connection: enough
/// decisions in flight that every synced write holds several.
const CLIENTS: usize = 32;

/// A client keeping its connection (the load a server sees).
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn verifierd_args(s: &Scenario) -> Vec<String> {
    [
        "verifierd",
        "--data-dir",
        s.path("v").to_str().unwrap(),
        "--public-key",
        &s.issuer_pub,
        "--listen",
        "127.0.0.1:0",
        "--audit-db",
        s.path("audit").to_str().unwrap(),
        "--audit-key",
        s.path("audit.key").to_str().unwrap(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// `POST /v1/authorize` reading `resource`: the status, or `None` when the
/// connection failed (the process is gone).
fn authorize(
    client: &reqwest::blocking::Client,
    addr: &str,
    token: &str,
    resource: &str,
) -> Option<u16> {
    let body = serde_json::json!({
        "token": token.trim(),
        "action": "read",
        "resource": resource,
        "params": {"rows": 1},
    })
    .to_string();
    let resp = client
        .post(format!("http://{addr}/v1/authorize"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .ok()?;
    let status = resp.status().as_u16();
    // The answer counts once it has been read whole.
    resp.bytes().ok()?;
    Some(status)
}

#[test]
fn every_request_answered_before_a_sigkill_has_its_record() {
    let s = Scenario::new();
    let audit_pub = s
        .run(&["keygen", "--out", "audit.key"])
        .stdout
        .trim()
        .to_string();
    let token = s.read("sub.tok");
    let mut v = Proc::start(verifierd_args(&s));
    let answered = Mutex::new(HashSet::<String>::new());
    let (sent, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let stop = AtomicBool::new(false);
    let addr = v.addr.clone();
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let (answered, sent, refused, stop) = (&answered, &sent, &refused, &stop);
            let (addr, token) = (&addr, &token);
            scope.spawn(move || {
                let client = client();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let resource = format!("/api/customers/c{c}-r{i}");
                    sent.fetch_add(1, Ordering::Relaxed);
                    match authorize(&client, addr, token, &resource) {
                        Some(200) => {
                            answered.lock().unwrap().insert(resource);
                        }
                        Some(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
            });
        }
        // Mid-load: enough answered that the writer has batched a while.
        wait_until("2000 answers", Duration::from_secs(120), || {
            answered.lock().unwrap().len() >= 2000
        });
        v.stop(); // SIGKILL
        stop.store(true, Ordering::Relaxed);
    });
    let answered = answered.into_inner().unwrap();
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "every request is allowed"
    );

    // Restarted on the same log: it reopens after the last durable record.
    let v = Proc::start(verifierd_args(&s));
    assert_eq!(
        authorize(&client(), &v.addr, &token, "/api/customers/after-restart"),
        Some(200)
    );
    let export = s.run(&["audit", "export", "--db", "audit"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let recorded: HashSet<String> = export
        .stdout
        .lines()
        .filter(|l| l.starts_with("{\"record\":"))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["record"]["request"]["resource"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let missing: Vec<&String> = answered.difference(&recorded).collect();
    println!(
        "{CLIENTS} clients, {} requests sent, {} answered 200 before SIGKILL, {} records \
         after restart ({} decided but never answered), {} answered without a record",
        sent.load(Ordering::Relaxed),
        answered.len(),
        recorded.len(),
        recorded.len().saturating_sub(answered.len() + 1),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "answered 200 without a record: {missing:?}"
    );
    assert!(recorded.contains("/api/customers/after-restart"));
    let verdict = s.run(&[
        "audit",
        "verify",
        "--db",
        "audit",
        "--public-key",
        &audit_pub,
        "--json",
    ]);
    assert_eq!(verdict.code, 0, "{} {}", verdict.stdout, verdict.stderr);
    let verdict: serde_json::Value = serde_json::from_str(&verdict.stdout).unwrap();
    assert_eq!(verdict["status"], "ok", "{verdict}");
    assert_eq!(
        verdict["records"].as_u64().unwrap() as usize,
        recorded.len()
    );
    assert_eq!(verdict["covered_through"], verdict["last_seq"], "{verdict}");
}

#[test]
fn asynchronous_audit_is_asked_for_and_states_its_loss_window() {
    let s = Scenario::new();
    s.run(&["keygen", "--out", "audit.key"]);
    let mut args = verifierd_args(&s);
    args.push("--audit-async".into());
    let log = std::fs::File::create(s.path("stderr.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let addr = line
        .trim()
        .trim_start_matches("listening on ")
        .trim_start_matches("http://")
        .to_string();
    assert_eq!(
        authorize(&client(), &addr, &s.read("sub.tok"), "/api/customers/1"),
        Some(200)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let stderr = std::fs::read_to_string(s.path("stderr.log")).unwrap();
    assert!(
        stderr.contains("asynchronous audit") && stderr.contains("a crash loses the records"),
        "{stderr}"
    );
    // Without --audit-db there is nothing to make asynchronous.
    let r = s.run(&[
        "verifierd",
        "--data-dir",
        "v2",
        "--public-key",
        &s.issuer_pub,
        "--audit-async",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--audit-db"), "{}", r.stderr);
}
