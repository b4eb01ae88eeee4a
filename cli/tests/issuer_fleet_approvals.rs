//! The approval desk across issuer services (issue 16 part 5; SERVICE.md
//! S6), against a real nats-server. Each issuer service kept its approval
//! queue in its own RocksDB: an agent that submitted at one service behind
//! a load balancer could not be approved at the other ("no approval
//! request"). Now services in a fleet share `MANDATE_APPROVALS`: submitted
//! at A, listed, approved and fetched at B; decided once across both (a
//! race of approvals and denials at both services: exactly one wins);
//! entries written by an outsider with publish access (unsigned, or a
//! signed record copied under another id) are never shown nor decided.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "issuer_common/mod.rs"]
mod common;
#[path = "common/procs.rs"]
mod procs;

use axum::http::{Method, StatusCode};
use axum::Router;
use biscuit_auth::KeyPair;
use common::{admin_token, call, write_key, Env};
use mandate_server::{ApprovalBucket, ApproverFile, Service};
use mandate_spec::format_public_key;
use mandate_verifier::feed::{FeedConfig, RevocationKeys, RevocationSigner};
use serde_json::{json, Value};
use std::sync::Arc;

struct Fleet {
    _nats: procs::Nats,
    _dir: tempfile::TempDir,
    url: String,
    root: KeyPair,
    finance: KeyPair,
    envs: Vec<Env>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet::with_nats_flags(&[])
    }

    /// With extra nats-server flags (e.g. `-m PORT`: its monitoring port).
    fn with_nats_flags(extra: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let nats = procs::Nats::start_with(dir.path(), procs::free_port(), extra);
        Fleet {
            url: nats.url(),
            _nats: nats,
            _dir: dir,
            root: KeyPair::new(),
            finance: KeyPair::new(),
            envs: Vec::new(),
        }
    }

    fn nats(&self) -> FeedConfig {
        let mut keys = RevocationKeys::new();
        keys.insert(0, &format_public_key(&self.root.public()))
            .unwrap();
        let mut cfg = FeedConfig::new(&self.url);
        cfg.revocation_keys = keys;
        cfg
    }

    async fn bucket(&self) -> Arc<ApprovalBucket> {
        let signer = RevocationSigner::new(0, &self.root).unwrap();
        Arc::new(ApprovalBucket::open(&self.nats(), signer).await.unwrap())
    }

    /// An issuer service holding the finance approver's key, in the fleet.
    async fn service(&mut self) -> Router {
        let env = Env::new();
        let file = env.dir.path().join("finance.key");
        write_key(&file, &self.finance);
        let mut config = env.config(&[(0, &self.root)], 0);
        config.approvers = vec![ApproverFile {
            name: "finance".into(),
            file,
            ..Default::default()
        }];
        let service = Service::open(&config)
            .unwrap()
            .with_shared_approvals(self.bucket().await)
            .await
            .unwrap();
        self.envs.push(env);
        service.into_router()
    }

    /// A token for a payments agent: payments over 100 need finance.
    async fn agent_token(&self, at: &Router) -> String {
        let minter = admin_token(&self.root, 0, &["mint:/v1/tokens"], &[]);
        let agent = KeyPair::new();
        let (status, minted) = call(
            at,
            Method::POST,
            "/v1/tokens",
            Some(&minter),
            Some(json!({
                "principal": "org:acme", "agent": "payments-agent",
                "agent_key": format_public_key(&agent.public()),
                "allow": ["pay:/api/payments"], "where": ["amount<=1000"],
                "approval": [format!("pay when amount>100 by finance={}", self.finance.public())],
                "ttl": "1h",
            })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{minted}");
        minted["token"].as_str().unwrap().to_string()
    }

    fn approver(&self) -> String {
        admin_token(
            &self.root,
            0,
            &["approve:/v1/approvals"],
            &["approver=finance"],
        )
    }

    fn reviewer(&self) -> String {
        admin_token(&self.root, 0, &["review:/v1/approvals"], &[])
    }
}

fn pay(amount: i64) -> Value {
    json!({ "action": "pay", "resource": "/api/payments", "params": { "amount": amount } })
}

async fn submit(at: &Router, token: &str, amount: i64) -> String {
    let (status, asked) = call(
        at,
        Method::POST,
        "/v1/approvals",
        Some(token),
        Some(pay(amount)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    asked["id"].as_str().unwrap().to_string()
}

/// `POST /v1/approvals/{id}/approve` with `body`: (status, answer).
async fn approve(at: &Router, id: &str, approver: &str, body: Value) -> (StatusCode, Value) {
    call(
        at,
        Method::POST,
        &format!("/v1/approvals/{id}/approve"),
        Some(approver),
        Some(body),
    )
    .await
}

/// `GET /v1/approvals/{id}` (no token): (status, answer).
async fn fetch(at: &Router, id: &str) -> (StatusCode, Value) {
    call(at, Method::GET, &format!("/v1/approvals/{id}"), None, None).await
}

/// Regression: submitted at one issuer service, the request was unknown at
/// the other (404). Now: listed, approved and fetched at the other; the
/// first sees the decision; deciding again at either is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_at_one_service_approved_at_another() {
    let mut fleet = Fleet::new();
    let a = fleet.service().await;
    let b = fleet.service().await;
    let token = fleet.agent_token(&a).await;
    let id = submit(&a, &token, 150).await;

    let approver = fleet.approver();
    let (status, queue) = call(
        &b,
        Method::GET,
        "/v1/approvals?status=pending",
        Some(&fleet.reviewer()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let listed: Vec<&str> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()]);
    assert_eq!(queue[0]["chain"]["principal"], "org:acme");

    let (status, done) = approve(&b, &id, &approver, json!({"valid": "5m"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, seen) = fetch(&a, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["status"], "approved");
    assert_eq!(seen["approval_block"], done["approval_block"]);
    for at in [&a, &b] {
        let (status, body) = call(
            at,
            Method::POST,
            &format!("/v1/approvals/{id}/deny"),
            Some(&approver),
            Some(json!({"reason": "late"})),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("already"),
            "{body}"
        );
    }
    // An id that is not a UUID names nothing.
    let (status, _) = call(&b, Method::GET, "/v1/approvals/..%2F..", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Approvals and denials of one request raced at both services: exactly
/// one decision is recorded, and only its answer carries an approval
/// block; every other is refused (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_decided_once_across_the_fleet() {
    let mut fleet = Fleet::new();
    let a = fleet.service().await;
    let b = fleet.service().await;
    let token = fleet.agent_token(&a).await;
    let id = submit(&b, &token, 300).await;
    let approver = fleet.approver();

    let mut tasks = Vec::new();
    for i in 0..16 {
        let at = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (approver, id) = (approver.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let (path, body) = if i % 4 < 2 {
                ("approve", json!({}))
            } else {
                ("deny", json!({"reason": format!("no ({i})")}))
            };
            call(
                &at,
                Method::POST,
                &format!("/v1/approvals/{id}/{path}"),
                Some(&approver),
                Some(body),
            )
            .await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => won.push(body),
            StatusCode::CONFLICT => {
                let e = body["error"].as_str().unwrap();
                assert!(
                    e.contains("already") || e.contains("decided meanwhile"),
                    "{body}"
                );
            }
            s => panic!("{s} {body}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let (_, stored) = fetch(&a, &id).await;
    assert_eq!(stored["status"], won[0]["status"]);
    assert_eq!(stored["approval_block"], won[0]["approval_block"]);
    assert_eq!(stored["decided_at"], won[0]["decided_at"]);
}

/// Publishes `value` as the bucket entry `key`, as an outsider with
/// publish access to NATS would.
async fn put_raw(url: &str, key: &str, value: Vec<u8>) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish(format!("$KV.MANDATE_APPROVALS.{key}"), value.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn raw_entry(url: &str, key: &str) -> Vec<u8> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let kv = js.get_key_value("MANDATE_APPROVALS").await.unwrap();
    kv.get(key).await.unwrap().unwrap().to_vec()
}

/// An outsider with publish access writes a pending record of its own (no
/// signature), rewrites a real pending one (another amount, the signature
/// kept), and copies a real signed entry under another id: none is listed,
/// shown or decided; the service says why (503) and the real requests are
/// untouched elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_not_signed_by_the_issuer_are_never_shown_or_decided() {
    let mut fleet = Fleet::new();
    let a = fleet.service().await;
    let token = fleet.agent_token(&a).await;
    let real = submit(&a, &token, 150).await;
    let victim = submit(&a, &token, 200).await;
    let approver = fleet.approver();
    let (_, record) = fetch(&a, &real).await;

    // An unsigned record under a fresh id.
    let forged_id = uuid::Uuid::new_v4().to_string();
    let mut forged = record.clone();
    forged["id"] = json!(forged_id);
    put_raw(&fleet.url, &forged_id, forged.to_string().into_bytes()).await;
    // The victim's entry rewritten: amount 900, its signature kept.
    let entry: Value = serde_json::from_slice(&raw_entry(&fleet.url, &victim).await).unwrap();
    let mut inner: Value = serde_json::from_str(entry["record"].as_str().unwrap()).unwrap();
    inner["request"]["params"]["amount"] = json!(900);
    let mut rewritten = entry.clone();
    rewritten["record"] = json!(inner.to_string());
    put_raw(&fleet.url, &victim, rewritten.to_string().into_bytes()).await;
    // The real entry copied, signature and all, under another id.
    let copy_id = uuid::Uuid::new_v4().to_string();
    put_raw(&fleet.url, &copy_id, raw_entry(&fleet.url, &real).await).await;

    let (status, queue) = call(
        &a,
        Method::GET,
        "/v1/approvals",
        Some(&fleet.reviewer()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let listed: Vec<&str> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [real.as_str()], "only the intact request is listed");
    for (id, why) in [
        (&forged_id, "not a signed approval record"),
        (&victim, "does not verify"),
        (&copy_id, "stored under"),
    ] {
        let (status, body) = fetch(&a, id).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let e = body["error"].as_str().unwrap();
        assert!(
            e.contains("not a record signed by a trusted issuer key"),
            "{e}"
        );
        assert!(e.contains(why), "{e}");
        let (status, body) = approve(&a, id, &approver, json!({})).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.get("approval_block").is_none(), "{body}");
    }
    // The intact request is still decided normally.
    let (status, done) = approve(&a, &real, &approver, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
}

/// Requests queued at a service before it joined the fleet are copied into
/// the shared queue, and decided there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_queue_is_copied_into_the_shared_one() {
    let mut fleet = Fleet::new();
    let env = Env::new();
    let file = env.dir.path().join("finance.key");
    write_key(&file, &fleet.finance);
    let mut config = env.config(&[(0, &fleet.root)], 0);
    config.approvers = vec![ApproverFile {
        name: "finance".into(),
        file,
        ..Default::default()
    }];
    let alone = Service::open(&config).unwrap().into_router();
    let token = fleet.agent_token(&alone).await;
    let id = submit(&alone, &token, 150).await;
    drop(alone);
    let joined = Service::open(&config)
        .unwrap()
        .with_shared_approvals(fleet.bucket().await)
        .await
        .unwrap()
        .into_router();
    let other = fleet.service().await;
    let (status, seen) = fetch(&other, &id).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["status"], "pending");
    let (status, done) = approve(&joined, &id, &fleet.approver(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
}

/// Regression: a decision was written over the pending entry, and every
/// signed entry stays valid. An outsider with publish access who kept the
/// pending entry published it again over the decision (a plain publish
/// needs no revision): the approved request was pending again, listed, and
/// approved a second time (a second approval block). Now the decision is
/// written under a key of its own, created once; the pending entry
/// published again changes nothing, and a delete marker over the decision
/// makes the request refused (503), never pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_entry_published_again_does_not_undo_a_decision() {
    let mut fleet = Fleet::new();
    let a = fleet.service().await;
    let b = fleet.service().await;
    let token = fleet.agent_token(&a).await;
    let id = submit(&a, &token, 150).await;
    let kept = raw_entry(&fleet.url, &id).await;
    let approver = fleet.approver();
    let approve = |at: Router| {
        let (approver, id) = (approver.clone(), id.clone());
        async move { approve(&at, &id, &approver, json!({"valid": "5m"})).await }
    };
    let (status, first) = approve(a.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");

    put_raw(&fleet.url, &id, kept).await;
    let (status, seen) = fetch(&b, &id).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["status"], "approved", "{seen}");
    assert_eq!(seen["approval_block"], first["approval_block"]);
    let (status, queue) = call(
        &b,
        Method::GET,
        "/v1/approvals?status=pending",
        Some(&fleet.reviewer()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue, json!([]), "the decided request is listed as pending");
    let (status, again) = approve(b.clone()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "approved a second time: {again}"
    );
    assert!(
        again["error"].as_str().unwrap().contains("already"),
        "{again}"
    );

    // A delete marker over the decision: refused, not pending.
    let client = async_nats::connect(&fleet.url).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("KV-Operation", "DEL");
    async_nats::jetstream::new(client)
        .publish_with_headers(
            format!("$KV.MANDATE_APPROVALS.{id}.decided"),
            headers,
            Vec::new().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let (status, body) = approve(b.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("marker"), "{body}");
}

/// SPEC §11.2: the shared queue unreachable (NATS stopped). Submitting,
/// reading and deciding answer 503 naming the approval bucket; nothing is
/// decided and no approval block is handed out. Once NATS is back (same
/// storage), the request queued before is there and is decided normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_refuses_with_the_reason_and_nothing_is_lost() {
    let mut fleet = Fleet::new();
    let a = fleet.service().await;
    let token = fleet.agent_token(&a).await;
    let id = submit(&a, &token, 150).await;
    let approver = fleet.approver();

    fleet._nats.stop();
    let (status, body) = call(
        &a,
        Method::POST,
        "/v1/approvals",
        Some(&token),
        Some(pay(160)),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("approval bucket MANDATE_APPROVALS"),
        "{body}"
    );
    let (status, body) = fetch(&a, &id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = approve(&a, &id, &approver, json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.get("approval_block").is_none(), "{body}");

    fleet._nats.restart();
    let mut seen = Value::Null;
    for _ in 0..200 {
        let (status, body) = fetch(&a, &id).await;
        if status == StatusCode::OK {
            seen = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen["status"], "pending",
        "the request queued before: {seen}"
    );
    let (status, done) = approve(&a, &id, &approver, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
}

/// Messages each client connection has sent the server (requests,
/// publishes, flow-control replies), by connection id, from the server's
/// monitoring endpoint.
async fn sent_by_clients(monitor: u16) -> std::collections::HashMap<u64, u64> {
    let body = reqwest::get(format!("http://127.0.0.1:{monitor}/connz?limit=4096"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let connz: Value = serde_json::from_str(&body).unwrap();
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["cid"].as_u64().unwrap(), c["in_msgs"].as_u64().unwrap()))
        .collect()
}

/// `GET /v1/approvals` as a reviewer: the ids listed, in order, with their
/// status; and how many messages the clients sent the server meanwhile.
async fn list_counted(fleet: &Fleet, at: &Router, monitor: u16) -> (Vec<(String, String)>, u64) {
    let before = sent_by_clients(monitor).await;
    let (status, queue) = call(
        at,
        Method::GET,
        "/v1/approvals",
        Some(&fleet.reviewer()),
        None,
    )
    .await;
    let after = sent_by_clients(monitor).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let sent = after
        .iter()
        .map(|(cid, n)| n.saturating_sub(before.get(cid).copied().unwrap_or(0)))
        .sum();
    let listed = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (listed, sent)
}

/// Regression: `GET /v1/approvals` listed the bucket's keys and then read
/// each key (its decision, then its entry): an outsider with publish
/// access who added 2 000 keys made every page load about 3 000 round trips
/// (3 006 measured: two reads per request key), and one key that is a
/// valid subject but not a valid KV key (`bad!key`) failed the whole
/// listing (503). Now the listing is one pass over the latest entry
/// of every key: with 2 000 junk entries (unsigned records, garbage, a
/// signed entry copied under other ids, decisions of no request, a delete
/// marker) next to three real requests, exactly the real ones are listed
/// (the approved one with its decision), and the listing sends the server a
/// handful of messages, not one or more per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_junk_entries_are_left_out_in_one_pass() {
    let monitor = procs::free_port();
    let mut fleet = Fleet::with_nats_flags(&["-m", &monitor.to_string()]);
    let a = fleet.service().await;
    let token = fleet.agent_token(&a).await;
    let mut real = Vec::new();
    for amount in [150, 160, 170] {
        real.push(submit(&a, &token, amount).await);
    }
    let (status, done) = approve(&a, &real[1], &fleet.approver(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (_, record) = fetch(&a, &real[0]).await;
    let signed = raw_entry(&fleet.url, &real[0]).await;

    let client = async_nats::connect(&fleet.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut acks = Vec::new();
    for i in 0..2000 {
        let id = uuid::Uuid::new_v4().to_string();
        let (key, value) = match i % 4 {
            0 => (format!("junk-{i}"), b"not a record".to_vec()),
            1 => {
                let mut forged = record.clone();
                forged["id"] = json!(id);
                (id, forged.to_string().into_bytes())
            }
            2 => {
                let mut forged = record.clone();
                forged["id"] = json!(id);
                forged["status"] = json!("approved");
                (format!("{id}.decided"), forged.to_string().into_bytes())
            }
            _ => (id, signed.clone()),
        };
        acks.push(
            js.publish(format!("$KV.MANDATE_APPROVALS.{key}"), value.into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("KV-Operation", "DEL");
    js.publish_with_headers(
        format!("$KV.MANDATE_APPROVALS.{}", uuid::Uuid::new_v4()),
        headers,
        Vec::new().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let expected: Vec<(String, String)> = real
        .iter()
        .zip(["pending", "approved", "pending"])
        .map(|(id, st)| (id.clone(), st.to_string()))
        .collect();
    let (listed, sent) = list_counted(&fleet, &a, monitor).await;
    assert_eq!(listed, expected, "exactly the real requests, oldest first");
    eprintln!("messages sent to the server while listing 2 004 keys: {sent}");
    // Read key by key, this listing sent 3 006 (two reads per key not
    // ending in `.decided`); one pass sends one consumer creation and
    // flow-control replies (2 measured).
    assert!(
        sent < 50,
        "{sent} messages sent to the server for one listing of 2 004 keys"
    );

    // A key no KV read accepts: still left out, the listing still answers.
    put_raw(&fleet.url, "bad!key", b"junk".to_vec()).await;
    let (listed, _) = list_counted(&fleet, &a, monitor).await;
    assert_eq!(listed, expected);
}

/// A listing returns at most `MAX_LISTED` (1 000) requests however many
/// signed ones the bucket holds: every pending one first (so a long
/// history of decided requests never pushes a pending one off the desk),
/// then the newest decided ones; oldest first, as before. An empty bucket
/// lists nothing (the read does not wait for an entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_is_capped_and_keeps_the_pending_requests() {
    use mandate_server::ApprovalRecord;
    const MAX_LISTED: usize = ApprovalBucket::MAX_LISTED;
    let mut fleet = Fleet::new();
    let bucket = fleet.bucket().await;
    let empty = bucket.all().await.unwrap();
    assert!(empty.is_empty(), "an empty bucket lists nothing: {empty:?}");
    let a = fleet.service().await;
    let token = fleet.agent_token(&a).await;
    let template = fetch(&a, &submit(&a, &token, 150).await).await.1;
    let start = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    // Five pending requests older than every decided one, then decided
    // ones up to MAX_LISTED + 10 in all (with the one submitted above,
    // which is the newest and pending).
    let mut pending = Vec::new();
    let mut decided = Vec::new();
    for i in 0..MAX_LISTED + 10 - 1 {
        let mut r: ApprovalRecord = serde_json::from_value(template.clone()).unwrap();
        r.id = uuid::Uuid::new_v4().to_string();
        r.submitted_at = start + time::Duration::seconds(i as i64);
        bucket.create(&r).await.unwrap();
        if i < 5 {
            pending.push(r.id);
        } else {
            r.status = mandate_server::ApprovalStatus::Denied;
            r.denied_because = Some("no".into());
            bucket.decide(&r).await.unwrap();
            decided.push(r.id);
        }
    }
    pending.push(template["id"].as_str().unwrap().to_string());

    let listed = bucket.all().await.unwrap();
    assert_eq!(listed.len(), MAX_LISTED);
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    // The 5 pending first in time, then the newest decided, then the newest
    // pending: the 10 oldest decided are left out.
    let mut want: Vec<&str> = pending[..5].iter().map(String::as_str).collect();
    want.extend(decided[10..].iter().map(String::as_str));
    want.push(pending[5].as_str());
    assert_eq!(ids, want);
    assert!(listed
        .windows(2)
        .all(|w| w[0].submitted_at <= w[1].submitted_at));
}
