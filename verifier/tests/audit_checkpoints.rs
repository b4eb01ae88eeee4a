//! Durable audit with signatures amortised (issue 16 part 3, SPEC §12):
//! a decision's record is durable before `audit_durable` resolves (blocking
//! or awaited); records carry no signature of their own, one signed
//! checkpoint per written batch vouches for them (concurrent decisions
//! share batches); and what checkpoints add to verification: a chain
//! re-hashed to the end, a forged or missing checkpoint, records cut off
//! below a checkpoint, and old logs signed record by record (still verify).
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_spec::Request;
use mandate_verifier::{
    audit::{
        read_audit_log, verify_entries, AuditEvent, AuditLog, AuditOptions, AuditProblem, Place,
    },
    RootKeys, Verifier,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A verifier (no token will verify: every decision is a recorded deny).
fn verifier(audit: AuditLog) -> Verifier {
    Verifier::new(RootKeys::single(KeyPair::new().public())).with_audit(audit)
}

fn decide(v: &Verifier, i: usize) {
    v.authorize(b"not a token", &Request::new("read", format!("/r/{i}")));
}

fn open_rw(path: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        path,
        ["default", "checkpoints", "tail"],
    )
    .unwrap()
}

#[test]
fn a_decision_is_durable_when_audit_durable_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let audit = AuditLog::open(dir.path().join("audit"), &key, AuditOptions::default()).unwrap();
    let v = verifier(audit.clone());
    // Blocking: no flush, the wait alone makes the record readable.
    decide(&v, 0);
    v.audit_durable().wait().unwrap();
    let log = read_audit_log(audit.path()).unwrap();
    assert_eq!(log.entries.len(), 1);
    // Awaited on a runtime (what the middleware and verifierd do).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        decide(&v, 1);
        v.audit_durable().await.unwrap();
    });
    let log = read_audit_log(audit.path()).unwrap();
    assert_eq!(log.entries.len(), 2);
    let summary = verify_entries(&log, &key.public()).unwrap();
    assert_eq!(summary.covered_through, Some(2));
    assert_eq!(summary.uncovered, None);
}

#[test]
fn records_are_unsigned_and_concurrent_decisions_share_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let audit = AuditLog::open(dir.path().join("audit"), &key, AuditOptions::default()).unwrap();
    let v = verifier(audit.clone());
    // 8 threads, each answering only after its record is durable.
    std::thread::scope(|s| {
        for t in 0..8 {
            let v = &v;
            s.spawn(move || {
                for i in 0..100 {
                    decide(v, t * 1000 + i);
                    v.audit_durable().wait().unwrap();
                }
            });
        }
    });
    let log = read_audit_log(audit.path()).unwrap();
    assert_eq!(log.entries.len(), 800);
    assert!(log
        .entries
        .iter()
        .all(|(_, e)| e.as_ref().unwrap().signature.is_none()));
    let summary = verify_entries(&log, &key.public()).unwrap();
    assert_eq!(summary.records, 800);
    assert_eq!(summary.covered_through, Some(800));
    // Group commit: batches held several records each.
    println!(
        "800 durable decisions from 8 threads: {} checkpoints (one per batch)",
        summary.checkpoints
    );
    assert!(summary.checkpoints < 800, "{}", summary.checkpoints);
    assert_eq!(summary.checkpoints as usize, log.checkpoints.len());
}

#[test]
fn a_closure_sink_is_durable_at_once() {
    let seen = Arc::new(Mutex::new(Vec::<AuditEvent>::new()));
    let sink = {
        let seen = seen.clone();
        move |e: AuditEvent| seen.lock().unwrap().push(e)
    };
    let v = Verifier::new(RootKeys::single(KeyPair::new().public())).with_audit(sink);
    decide(&v, 0);
    v.audit_durable().wait().unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Without a sink: nothing to wait for.
    let bare = Verifier::new(RootKeys::single(KeyPair::new().public()));
    bare.audit_durable().wait().unwrap();
}

#[test]
fn asynchronous_audit_resolves_at_once_and_states_its_loss_window() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let options = AuditOptions {
        durable: false,
        ..AuditOptions::default()
    };
    let window = options.loss_window();
    assert!(window.contains("asynchronous audit"), "{window}");
    assert!(window.contains("65536 decisions"), "{window}");
    let audit = AuditLog::open(dir.path().join("audit"), &key, options).unwrap();
    let v = verifier(audit.clone());
    decide(&v, 0);
    v.audit_durable().wait().unwrap();
    // Written all the same (flush waits for it).
    assert_eq!(audit.flush().unwrap(), 1);
}

/// A closed log of `n` decisions, written by `threads` threads.
fn closed(dir: &Path, key: &KeyPair, n: usize, options: AuditOptions) {
    let audit = AuditLog::open(dir.join("audit"), key, options).unwrap();
    let v = verifier(audit.clone());
    for i in 0..n {
        decide(&v, i);
    }
    audit.flush().unwrap();
}

#[test]
fn a_chain_rehashed_to_the_end_does_not_reach_the_signed_head() {
    // Without per-record signatures, whoever can write the store can edit
    // a record and recompute every hash after it: each link holds, but the
    // chain no longer leads to a head the audit key signed.
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    closed(dir.path(), &key, 6, AuditOptions::default());
    let path = dir.path().join("audit");
    {
        let db = open_rw(&path);
        let log = read_audit_log(&path).unwrap();
        let mut entries: Vec<_> = log.entries.into_iter().map(|(_, e)| e.unwrap()).collect();
        entries[2].record.request.resource = "/r/elsewhere".into();
        for i in 2..entries.len() {
            if i > 2 {
                entries[i].record.prev_hash = entries[i - 1].hash.clone();
            }
            entries[i].hash = hex::encode(entries[i].record.hash());
            let seq = entries[i].record.seq;
            db.put(seq.to_be_bytes(), serde_json::to_vec(&entries[i]).unwrap())
                .unwrap();
        }
    }
    let e = verify_entries(&read_audit_log(&path).unwrap(), &key.public()).unwrap_err();
    match &e {
        AuditProblem::CheckpointMismatch { from, seq, .. } => assert!(*from <= 3 && *seq >= 3),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("altered"), "{e}");
}

#[test]
fn a_forged_or_removed_checkpoint_and_a_cut_tail_are_found() {
    let key = KeyPair::new();
    let tamper = |f: &dyn Fn(&rocksdb::DB)| {
        let dir = tempfile::tempdir().unwrap();
        closed(dir.path(), &key, 5, AuditOptions::default());
        let path = dir.path().join("audit");
        f(&open_rw(&path));
        verify_entries(&read_audit_log(&path).unwrap(), &key.public())
    };
    let cps = |db: &rocksdb::DB| -> Vec<(Vec<u8>, Vec<u8>)> {
        let cf = db.cf_handle("checkpoints").unwrap();
        db.iterator_cf(&cf, rocksdb::IteratorMode::Start)
            .map(|i| {
                let (k, v) = i.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    };
    let ok = tamper(&|_| {}).unwrap();
    assert_eq!((ok.covered_through, ok.uncovered), (Some(5), None));
    // A checkpoint signed by another key (an attacker's), over record 5.
    let e = tamper(&|db| {
        let cf = db.cf_handle("checkpoints").unwrap();
        let (k, v) = cps(db).pop().unwrap();
        let v = String::from_utf8(v).unwrap();
        let sig_at = v.find("\"signature\":\"").unwrap() + 13;
        let mut forged = v.clone();
        let flip = if &v[sig_at..sig_at + 1] == "0" {
            "1"
        } else {
            "0"
        };
        forged.replace_range(sig_at..sig_at + 1, flip);
        db.put_cf(&cf, k, forged).unwrap();
    })
    .unwrap_err();
    assert!(
        matches!(e, AuditProblem::CheckpointForged { seq: 5, .. }),
        "{e:?}"
    );
    // The last checkpoint removed: its records are not yet covered.
    let uncovered = tamper(&|db| {
        let cf = db.cf_handle("checkpoints").unwrap();
        let (k, _) = cps(db).pop().unwrap();
        db.delete_cf(&cf, k).unwrap();
    })
    .unwrap();
    let (from, to) = uncovered.uncovered.unwrap();
    assert_eq!(to, 5);
    assert!(from <= 5 && uncovered.covered_through.is_none_or(|c| c < from));
    // The last records cut, their checkpoint kept: named as removed.
    let e = tamper(&|db| {
        db.delete(5u64.to_be_bytes()).unwrap();
        db.delete(4u64.to_be_bytes()).unwrap();
    })
    .unwrap_err();
    match &e {
        AuditProblem::TailRemoved {
            last: 3, signed, ..
        } if *signed >= 4 => {}
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("removed from the end"), "{e}");
}

#[test]
fn a_log_signed_record_by_record_still_verifies() {
    // The format before checkpoints: every record signed, no checkpoints
    // column family. Written here with `sign_records` and the checkpoints
    // dropped, then also with an altered signature.
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let options = AuditOptions {
        sign_records: true,
        ..AuditOptions::default()
    };
    closed(dir.path(), &key, 4, options);
    let path = dir.path().join("audit");
    {
        let mut db = open_rw(&path);
        db.drop_cf("checkpoints").unwrap();
    }
    let log = read_audit_log(&path).unwrap();
    assert!(log.checkpoints.is_empty());
    let summary = verify_entries(&log, &key.public()).unwrap();
    assert_eq!((summary.records, summary.checkpoints), (4, 0));
    assert_eq!(summary.uncovered, None);
    // Another key: the first record's signature is not its.
    match verify_entries(&log, &KeyPair::new().public()) {
        Err(AuditProblem::Altered {
            seq: 1,
            place: Place::Key(1),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
