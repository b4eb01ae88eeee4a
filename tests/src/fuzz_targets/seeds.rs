//! The seed corpora: a few valid inputs per target, written by the library
//! itself with the fuzz key ring at the fixed time, so regenerating them
//! gives the same bytes (`fuzz_corpus.rs` checks that the committed files
//! are exactly these).

use super::token::{build_signed_token, parse_signed};
use super::{request_time, ring_key, ring_verifier, T0};
use crate::{delegation, grant, mint_request, Agent};
use biscuit_auth::Biscuit;
use mandate_attenuate::delegate_at;
use mandate_issuer::Issuer;
use mandate_spec::{format_public_key, Grant, Request};
use mandate_verifier::{
    audit::{AuditEvent, AuditLog, AuditOptions},
    revocation::{Revocation, Target},
};
use std::time::{Duration, UNIX_EPOCH};
use time::OffsetDateTime;

/// The token id every seed token carries (the issuer draws a random one).
const SEED_TOKEN_ID: &str = "00000000-0000-4000-8000-000000000000";

/// Every seed: (target, file name, content).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let signed = token_texts();
    for (name, text) in &signed {
        out.push(("token_signed", name.clone(), text.clone().into_bytes()));
        let (blocks, _) = parse_signed(text);
        let token = build_signed_token(&blocks).expect("a seed token builds");
        out.push(("token_bytes", name.clone(), token.clone()));
        if name == "two-hops" {
            let b64 = mandate_spec::token_to_text(&token);
            out.push(("token_bytes", "two-hops.b64".into(), b64.into_bytes()));
        }
    }
    for (name, text) in grant_texts() {
        out.push(("grant_text", name.into(), text.into_bytes()));
    }
    for (name, text) in http_texts() {
        out.push(("http_request", name.into(), text.into_bytes()));
    }
    for (name, text) in mcp_texts() {
        out.push(("mcp_jsonrpc", name.into(), text.into_bytes()));
    }
    for (name, text) in audit_texts() {
        out.push(("audit_export", name.into(), text.into_bytes()));
    }
    for (name, json) in feed_texts() {
        out.push(("feed_entry", name.into(), json));
    }
    out
}

fn at(secs: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn ring_agent(i: u8) -> Agent {
    Agent {
        id: format!("agent-{i}"),
        key: ring_key(i),
    }
}

/// Tokens minted and delegated by the library, written back as
/// `token_signed` text (one line of Datalog per block, the token id fixed).
fn token_texts() -> Vec<(String, String)> {
    let issuer = Issuer::new(ring_key(0));
    let mint = |g: Grant, edit: &dyn Fn(&mut mandate_issuer::MintRequest)| {
        let mut req = mint_request(&ring_agent(1), g);
        edit(&mut req);
        issuer
            .mint_at(&req, at(T0))
            .expect("a seed token mints")
            .token
    };
    let delegate = |token: &[u8], from: u8, to: u8, g: Grant| {
        delegate_at(
            token,
            &ring_key(from),
            &delegation(&ring_agent(to), g),
            at(T0),
        )
        .expect("a seed hop delegates")
        .token
    };
    let customers = grant(&["read,list:/api/customers/*"], &["rows<=100"]);
    let root = mint(customers, &|r| r.max_depth = Some(3));
    let one = delegate(
        &root,
        1,
        2,
        grant(&["read:/api/customers/*"], &["rows<=10"]),
    );
    let two = delegate(&one, 2, 3, grant(&["read:/api/customers/42"], &[]));
    let finance = format_public_key(&ring_key(5).public());
    let pay = grant(&["pay:/api/payments"], &["to in acme|globex"])
        .with_approval(&format!("pay when amount>100 by finance={finance}"))
        .expect("the approval rule parses");
    let pay = mint(pay, &|_| {});
    let mut held = grant(&["read,delete:/admin/**"], &["time<=2031-01-01T00:00:00Z"]);
    held.holder_bound = true;
    let held = mint(held, &|r| r.purpose = None);
    let mut out: Vec<(String, String)> = [
        ("root", &root),
        ("one-hop", &one),
        ("two-hops", &two),
        ("approval-rule", &pay),
        ("holder-bound", &held),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), as_text(t)))
    .collect();
    // An approval block for the fixed 150 payment, signed by ring key 5.
    let request = Request::new("pay", "/api/payments")
        .param("amount", 150)
        .param("to", "acme");
    let approved = format!(
        "{}hop 5: approval(hex:{}, {});\nrequest: pay /api/payments amount=150 to=acme\n",
        as_text(&pay),
        hex::encode(request.approval_digest()),
        rfc3339(T0 + 600)
    );
    out.push(("approved".into(), approved));
    out
}

fn rfc3339(secs: u64) -> String {
    OffsetDateTime::from_unix_timestamp(secs as i64)
        .expect("a valid instant")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

/// A token as `token_signed` lines: `root:`, `hop N:` (signed by ring key
/// N) and `block:`, each block's Datalog as Biscuit prints it.
fn as_text(token: &[u8]) -> String {
    let biscuit = Biscuit::from(token, ring_key(0).public()).expect("a seed token verifies");
    let mut out = String::new();
    for i in 0..biscuit.block_count() {
        let source = biscuit
            .print_block_source(i)
            .expect("a block prints")
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let label = match biscuit.block_external_key(i).expect("a block index") {
            _ if i == 0 => "root".to_string(),
            None => "block".to_string(),
            Some(key) => {
                let n = (0..super::RING)
                    .find(|n| ring_key(*n).public() == key)
                    .expect("seed hops are signed by ring keys");
                format!("hop {n}")
            }
        };
        out.push_str(&format!("{label}: {source}\n"));
    }
    let id = biscuit
        .print_block_source(0)
        .ok()
        .and_then(|s| {
            s.split("token(\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        })
        .expect("the root names its token id");
    out.replace(&id, SEED_TOKEN_ID)
}

fn grant_texts() -> Vec<(&'static str, String)> {
    let finance = format_public_key(&ring_key(5).public());
    vec![
        (
            "customers",
            "allow: read,list:/api/customers/*\nwhere: rows<=100\n\
             request: read /api/customers/42 rows=10\nrequest: read /api/customers/42 rows=500\n"
                .into(),
        ),
        (
            "every-constraint",
            "allow: send:/mail/**\nwhere: to ends-with @example.com\nwhere: subject starts-with [ext]\n\
             where: kind in a|b|c\nwhere: priority>=1\nwhere: priority<5\nwhere: size>0\n\
             where: currency=EUR\nwhere: time>=2030-01-01T00:00:00Z\nwhere: time<=2031-01-01T00:00:00+01:00\n\
             request: send /mail/out to=bob@example.com subject=[ext]hi kind=b priority=2 size=9 currency=EUR\n"
                .into(),
        ),
        (
            "approval",
            format!(
                "allow: pay,refund:/api/payments\nwhere: amount<=10000\n\
                 approval: pay when amount>100 and amount<5000 by finance={finance}\n\
                 request: pay /api/payments amount=50\nrequest: pay /api/payments amount=150\n\
                 request: refund /api/payments amount=150\nrequest: pay /api/payments\n"
            ),
        ),
        (
            "alternatives",
            "allow: read:/api/a/*\nallow: list:/api/**\nallow: ping:urn:x:y\nallow: read:/\n\
             request: list /api/b/c\nrequest: read /api/a/\n"
                .into(),
        ),
        (
            "raw-datalog",
            "allow: read:/x\ndatalog: check if operation(\"read\")\nholder\nrequest: read /x\n".into(),
        ),
        (
            "parsers",
            format!(
                "duration: 30s\nduration: 10m\nduration: 1h\nduration: 7d\npattern: /api/customers/*\n\
                 pattern: /api/**\npattern: /*\nconstraint: rows<=100\nconstraint: kind in 1|2|3\n\
                 constraint: time>=2030-01-01T00:00:00Z\nconstraint: n=-7\nkey: {finance}\n\
                 key: ed25519-private/{}\nvalue: 42\nvalue: 007\nvalue: -0\n",
                "01".repeat(32)
            ),
        ),
    ]
}

fn http_texts() -> Vec<(&'static str, String)> {
    let token = "Authorization: Bearer $TOKEN";
    let json = "Content-Type: application/json";
    vec![
        (
            "get",
            format!("GET /api/customers/42?rows=10&q=x\n{token}\n\n"),
        ),
        ("list", format!("GET /api/customers\n{token}\n\n")),
        ("erase", format!("DELETE /api/customers/7\n{token}\n\n")),
        (
            "pay",
            format!("POST /api/payments\n{token}\n{json}\n\n{{\"amount\":150,\"payee\":\"acme\"}}"),
        ),
        (
            "pay-approval",
            "POST /api/payments\nAuthorization: Bearer $APPROVAL_TOKEN\n\
             Content-Type: application/json; charset=utf-8\n\n{\"amount\":500}"
                .into(),
        ),
        (
            "order",
            format!("PUT /api/orders/9/items/3?note=x\n{token}\n{json}\n\n{{\"qty\":2}}"),
        ),
        ("files", format!("GET /files/a/b/c.txt?x=1\n{token}\n\n")),
        (
            "duplicate-query",
            format!("GET /api/customers/1?rows=1&rows=100\n{token}\n\n"),
        ),
        (
            "proof",
            format!("POST /files/x\n{token}\nMandate-Proof: v1;ts=1;nonce=n;sig=00\n\nbody"),
        ),
        ("no-token", "GET /api/customers/1\n\n".into()),
    ]
}

fn mcp_texts() -> Vec<(&'static str, String)> {
    let head = "POST /mcp\nAuthorization: Bearer $TOKEN\nContent-Type: application/json\n\n";
    vec![
        (
            "tools-call",
            format!(
                "{head}{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":\
                 {{\"name\":\"read\",\"arguments\":{{\"rows\":5,\"q\":\"x\",\"deep\":{{\"a\":1}},\"f\":1.5}}}}}}"
            ),
        ),
        (
            "initialize",
            format!("{head}{{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{{}}}}"),
        ),
        (
            "resources-read",
            format!(
                "{head}{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/read\",\"params\":{{\"uri\":\"x\"}}}}"
            ),
        ),
        ("batch", format!("{head}[{{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}}]")),
        ("stream", "GET /mcp\nAccept: text/event-stream\n\n".into()),
        ("end-session", "DELETE /mcp/session\n\n".into()),
    ]
}

/// A real audit log of four decisions (the fixed requests on the two-hop
/// seed token), exported as `mandate audit export` writes it; and its tail.
fn audit_texts() -> Vec<(&'static str, String)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = AuditLog::open(dir.path(), &ring_key(7), AuditOptions::default())
        .expect("an audit log opens");
    let (blocks, _) = parse_signed(
        &token_texts()
            .into_iter()
            .find(|(n, _)| n == "two-hops")
            .expect("the two-hop seed")
            .1,
    );
    let token = build_signed_token(&blocks).expect("a seed token builds");
    let verifier = ring_verifier();
    let decided_at = OffsetDateTime::from_unix_timestamp(T0 as i64 + 60).expect("an instant");
    for request in super::fixed_requests().into_iter().take(4) {
        let decision = verifier.authorize(&token, &request.at(request_time()));
        log.record(AuditEvent {
            decided_at,
            decision,
            revocation_position: Some(7),
            policy_hash: verifier.policy_hash().to_string(),
        });
    }
    log.flush().expect("the log flushes");
    drop(log);
    let lines: Vec<String> = mandate_verifier::audit::read_audit_store(dir.path())
        .expect("the log reads")
        .into_iter()
        .map(|(_, e)| serde_json::to_string(&e.expect("an entry decodes")).expect("serializes"))
        .collect();
    vec![
        ("whole-log", lines.join("\n") + "\n"),
        ("tail", lines[2..].join("\n") + "\n"),
    ]
}

fn feed_texts() -> Vec<(&'static str, Vec<u8>)> {
    let t = |s: u64| OffsetDateTime::from_unix_timestamp(s as i64).expect("an instant");
    let entries = [
        (
            "block",
            Revocation {
                target: Target::Block(vec![0xab; 64]),
                revoked_at: t(T0),
                reason: "key leaked".into(),
                by: "ops".into(),
                expires_at: Some(t(T0 + 3600)),
                note: Some("hop 2 (agent \"research\") of token …".into()),
            },
        ),
        (
            "token",
            Revocation {
                target: Target::Token(SEED_TOKEN_ID.into()),
                revoked_at: t(T0),
                reason: "family revoked".into(),
                by: "issuer".into(),
                expires_at: None,
                note: None,
            },
        ),
        (
            "agent",
            Revocation {
                target: Target::Agent(ring_key(2).public().to_bytes()),
                revoked_at: t(T0),
                reason: "agent retired".into(),
                by: "ops".into(),
                expires_at: None,
                note: None,
            },
        ),
    ];
    entries
        .into_iter()
        .map(|(n, e)| (n, serde_json::to_vec(&e).expect("an entry serializes")))
        .collect()
}
