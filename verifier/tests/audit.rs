//! The signed audit log through the library: every decision recorded with
//! its request, chain, revocation position and policy hash; the hash chain
//! continues across a reopen; concurrent writers lose nothing; and
//! tampering — a record edited, deleted or reordered, in the store or in an
//! exported file — is found and the first bad record named; a log whose
//! first records were cut, or that holds none, does not verify.
//!
//! Threat (THREATS.md "truncation and omission"): whoever can write the
//! store or the export (an operator covering a decision, a compromised
//! host) deletes the oldest records; every remaining record still carries
//! a valid link (and checkpoint), so only the rule that a log starts at
//! record 1 from the all-zero hash shows the cut.
//!
//! Records are vouched for by signed checkpoints (one per written batch),
//! not signed one by one: `audit_checkpoints.rs` tests what is specific to
//! them.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use mandate_verifier::{
    audit::{
        parse_export, read_audit_log, verify_entries, verify_entries_from, AuditEntry, AuditLog,
        AuditOptions, AuditProblem, AuditStart, Place, GENESIS_HASH,
    },
    revocation::RevocationStore,
    Outcome, RootKeys, Verifier,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn verifying(key: &KeyPair) -> biscuit_auth::PublicKey {
    key.public()
}

/// A verifier auditing to `dir/audit`, and a token it allows for reads.
fn setup(dir: &Path, audit_key: &KeyPair) -> (Verifier, AuditLog, Vec<u8>) {
    let issuer = Issuer::new(KeyPair::new());
    let token = issuer
        .mint(&MintRequest {
            principal: "user:alice".into(),
            agent: "support".into(),
            agent_key: KeyPair::new().public(),
            grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap()
        .token;
    let (id, key) = issuer.keys().public_keys()[0];
    let store = Arc::new(RevocationStore::open(dir.join("revocations")).unwrap());
    let audit = AuditLog::open(dir.join("audit"), audit_key, AuditOptions::default()).unwrap();
    let verifier = Verifier::new(RootKeys::new().with(id, key))
        .with_revocations(store)
        .with_audit(audit.clone());
    (verifier, audit, token)
}

/// `n` decisions alternating allow (read) and deny (delete).
fn decide(verifier: &Verifier, token: &[u8], n: usize) {
    for i in 0..n {
        let action = if i % 2 == 0 { "read" } else { "delete" };
        verifier.authorize(token, &Request::new(action, format!("/api/customers/{i}")));
    }
}

#[test]
fn decisions_are_recorded_in_order_with_what_an_auditor_needs() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let (verifier, audit, token) = setup(dir.path(), &key);
    decide(&verifier, &token, 6);
    verifier.authorize(b"garbage", &Request::new("read", "/x"));
    assert_eq!(audit.flush().unwrap(), 7);
    let entries = read_audit_log(audit.path()).unwrap();
    let summary = verify_entries(&entries, &verifying(&key)).unwrap();
    assert_eq!((summary.first_seq, summary.last_seq), (Some(1), Some(7)));
    let records: Vec<_> = entries
        .entries
        .iter()
        .map(|(_, e)| e.as_ref().unwrap().record.clone())
        .collect();
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    for (i, r) in records.iter().enumerate().take(6) {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.request.resource, format!("/api/customers/{i}"));
        let want = if i % 2 == 0 {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        assert_eq!(r.decision, want);
        assert_eq!(r.chain.as_ref().unwrap().principal, "user:alice");
        assert_eq!(r.revocation_position, Some(0));
        assert_eq!(r.policy_hash, verifier.policy_hash());
    }
    assert!(records[1]
        .denial
        .as_ref()
        .unwrap()
        .reason
        .contains("delete"));
    // A token that could not be read: recorded without a chain.
    assert!(records[6].chain.is_none());
    assert_eq!(
        records[6].denial.as_ref().unwrap().kind,
        mandate_verifier::DenialKind::MalformedToken
    );
}

#[test]
fn the_chain_continues_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    {
        let (verifier, audit, token) = setup(dir.path(), &key);
        decide(&verifier, &token, 3);
        audit.flush().unwrap();
    }
    // Dropping every handle wrote and closed the log; a new process goes on.
    let audit = AuditLog::open(dir.path().join("audit"), &key, AuditOptions::default()).unwrap();
    assert_eq!(audit.written(), 3);
    let issuer = Issuer::new(KeyPair::new());
    let (id, pk) = issuer.keys().public_keys()[0];
    let verifier = Verifier::new(RootKeys::new().with(id, pk)).with_audit(audit.clone());
    verifier.authorize(b"x", &Request::new("read", "/x"));
    assert_eq!(audit.flush().unwrap(), 4);
    let entries = read_audit_log(audit.path()).unwrap();
    assert_eq!(
        verify_entries(&entries, &verifying(&key)).unwrap().records,
        4
    );
}

#[test]
fn concurrent_deciders_lose_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let (verifier, audit, token) = setup(dir.path(), &key);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| decide(&verifier, &token, 500));
        }
    });
    assert_eq!(audit.flush().unwrap(), 2000);
    assert_eq!(audit.pending(), 0);
    let entries = read_audit_log(audit.path()).unwrap();
    assert_eq!(
        verify_entries(&entries, &verifying(&key)).unwrap().records,
        2000
    );
}

/// A log of `n` records, closed, and its export lines: the records (line
/// i + 1 is record i + 1), then the checkpoints, as `audit export` writes.
fn closed_log(dir: &Path, key: &KeyPair, n: usize) -> Vec<String> {
    let (verifier, audit, token) = setup(dir, key);
    decide(&verifier, &token, n);
    audit.flush().unwrap();
    drop(verifier);
    drop(audit);
    let log = read_audit_log(dir.join("audit")).unwrap();
    let mut lines: Vec<String> = log
        .entries
        .into_iter()
        .map(|(_, e)| serde_json::to_string(&e.unwrap()).unwrap())
        .collect();
    assert!(!log.checkpoints.is_empty());
    lines.extend(
        log.checkpoints
            .into_iter()
            .map(|(_, c)| serde_json::to_string(&c.unwrap()).unwrap()),
    );
    lines
}

/// The store opened for writing (records and checkpoints), as a tamperer.
fn open_rw(path: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        path,
        ["default", "checkpoints", "tail"],
    )
    .unwrap()
}

fn check_file(lines: &[String], key: &KeyPair) -> Result<u64, AuditProblem> {
    verify_entries(&parse_export(&lines.join("\n")), &verifying(key)).map(|s| s.records)
}

#[test]
fn an_exported_file_names_the_first_record_edited_removed_or_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let lines = closed_log(dir.path(), &key, 8);
    assert_eq!(check_file(&lines, &key), Ok(8));

    // Edited: a deny turned into an allow, hash left as it was.
    let mut edited = lines.clone();
    edited[3] = edited[3].replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    assert_ne!(edited[3], lines[3]);
    match check_file(&edited, &key) {
        Err(AuditProblem::Altered {
            seq: 4,
            place: Place::Line(4),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Edited and re-hashed: record 5 (or the checkpoint over record 4)
    // vouches for another hash. Which one depends on how the writer
    // batched the records; both name record 4.
    let mut entry: mandate_verifier::audit::AuditEntry = serde_json::from_str(&lines[3]).unwrap();
    entry.record.request.resource = "/api/customers/elsewhere".into();
    entry.hash = hex::encode(entry.record.hash());
    let mut rehashed = lines.clone();
    rehashed[3] = serde_json::to_string(&entry).unwrap();
    let e = check_file(&rehashed, &key).unwrap_err();
    match &e {
        AuditProblem::Altered {
            seq: 4,
            place: Place::Line(4),
            ..
        } => assert!(e.to_string().contains("vouches for"), "{e}"),
        AuditProblem::CheckpointMismatch { seq: 4, .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("record 4"), "{e}");
    assert!(e.to_string().contains("altered"), "{e}");

    // Removed.
    let mut removed = lines.clone();
    removed.remove(5);
    match check_file(&removed, &key) {
        Err(AuditProblem::Removed {
            missing: 6,
            after: 5,
            found: 7,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Reordered.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let e = check_file(&swapped, &key).unwrap_err();
    match &e {
        AuditProblem::Reordered {
            expected: 3,
            found: 4,
            place: Place::Line(3),
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("reordered"), "{e}");
    // Another key: the checkpoints are not its.
    match check_file(&lines, &KeyPair::new()) {
        Err(AuditProblem::CheckpointForged { .. }) => {}
        other => panic!("{other:?}"),
    }
    // A partial export (--since) verifies only from the start it is stated
    // to have (see `an_export_missing_its_first_records_does_not_verify`).
    let tail = parse_export(&lines[4..].join("\n"));
    assert_eq!(
        verify_entries_from(&tail, &verifying(&key), &AuditStart::at(5, None)).map(|s| s.records),
        Ok(4)
    );
    // Not JSON.
    let mut junk = lines.clone();
    junk[1] = "{not json".into();
    assert!(matches!(
        check_file(&junk, &key),
        Err(AuditProblem::Malformed {
            place: Place::Line(2),
            ..
        })
    ));
}

#[test]
fn the_store_names_the_first_record_edited_removed_or_reordered() {
    let key = KeyPair::new();
    let tamper = |f: &dyn Fn(&rocksdb::DB)| {
        let dir = tempfile::tempdir().unwrap();
        closed_log(dir.path(), &key, 6);
        {
            let db = open_rw(&dir.path().join("audit"));
            f(&db);
        }
        let entries = read_audit_log(dir.path().join("audit")).unwrap();
        verify_entries(&entries, &verifying(&key))
    };
    let k = |seq: u64| seq.to_be_bytes();
    // Untouched.
    assert_eq!(tamper(&|_| {}).unwrap().records, 6);
    // Edited in place.
    let e = tamper(&|db| {
        let v = db.get(k(2)).unwrap().unwrap();
        let v = String::from_utf8(v)
            .unwrap()
            .replacen("/api/customers/1", "/api/customers/9", 1);
        db.put(k(2), v).unwrap();
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            AuditProblem::Altered {
                seq: 2,
                place: Place::Key(2),
                ..
            }
        ),
        "{e:?}"
    );
    // Deleted.
    let e = tamper(&|db| db.delete(k(4)).unwrap()).unwrap_err();
    assert!(
        matches!(
            e,
            AuditProblem::Removed {
                missing: 4,
                after: 3,
                found: 5,
                ..
            }
        ),
        "{e:?}"
    );
    // Two records swapped between keys.
    let e = tamper(&|db| {
        let (a, b) = (
            db.get(k(3)).unwrap().unwrap(),
            db.get(k(5)).unwrap().unwrap(),
        );
        db.put(k(3), b).unwrap();
        db.put(k(5), a).unwrap();
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            AuditProblem::Misplaced {
                seq: 5,
                place: Place::Key(3)
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("reordered"));
}

#[test]
fn a_store_missing_its_first_records_does_not_verify() {
    let key = KeyPair::new();
    for cut in [1u64, 2, 5] {
        let dir = tempfile::tempdir().unwrap();
        closed_log(dir.path(), &key, 6);
        {
            let db = open_rw(&dir.path().join("audit"));
            for seq in 1..=cut {
                db.delete(seq.to_be_bytes()).unwrap();
            }
        }
        let entries = read_audit_log(dir.path().join("audit")).unwrap();
        assert_eq!(entries.entries.len() as u64, 6 - cut);
        let e = verify_entries(&entries, &verifying(&key)).unwrap_err();
        assert_eq!(
            e,
            AuditProblem::HeadMissing {
                expected: 1,
                found: cut + 1,
                place: Place::Key(cut + 1),
            },
            "cut {cut}"
        );
        let words = e.to_string();
        assert!(words.contains("must start at record 1"), "{words}");
        let removed = if cut == 1 {
            "record 1 was removed".to_string()
        } else {
            format!("records 1 to {cut} were removed")
        };
        assert!(words.contains(&removed), "{words}");
    }
}

#[test]
fn an_empty_store_is_reported_empty_not_intact() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let audit = AuditLog::open(dir.path().join("audit"), &key, AuditOptions::default()).unwrap();
    assert_eq!(audit.flush().unwrap(), 0);
    drop(audit);
    let entries = read_audit_log(dir.path().join("audit")).unwrap();
    assert!(entries.entries.is_empty());
    let e = verify_entries(&entries, &verifying(&key)).unwrap_err();
    assert_eq!(e, AuditProblem::Empty);
    assert!(e.to_string().contains("no records"), "{e}");
    // Every record deleted: the same.
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), &key, 3);
    {
        let db = open_rw(&dir.path().join("audit"));
        for seq in 1..=3u64 {
            db.delete(seq.to_be_bytes()).unwrap();
        }
    }
    let entries = read_audit_log(dir.path().join("audit")).unwrap();
    assert_eq!(
        verify_entries(&entries, &verifying(&key)),
        Err(AuditProblem::Empty)
    );
    // An empty export, and one of blank lines.
    for text in ["", "\n\n  \n"] {
        assert_eq!(
            verify_entries(&parse_export(text), &verifying(&key)),
            Err(AuditProblem::Empty)
        );
    }
}

#[test]
fn an_export_missing_its_first_records_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let lines = closed_log(dir.path(), &key, 8);
    let pk = verifying(&key);
    let tail = parse_export(&lines[4..].join("\n"));
    // Not stated as partial: it must start at record 1.
    assert_eq!(
        verify_entries(&tail, &pk),
        Err(AuditProblem::HeadMissing {
            expected: 1,
            found: 5,
            place: Place::Line(1),
        })
    );
    // Stated to start at record 5: verifies; with the hash of record 4
    // (kept from an earlier check) it is tied to the records before it.
    let entry = |i: usize| -> AuditEntry { serde_json::from_str(&lines[i]).unwrap() };
    let hash4 = entry(3).hash;
    let ok = verify_entries_from(&tail, &pk, &AuditStart::at(5, Some(hash4))).unwrap();
    assert_eq!(
        (ok.first_seq, ok.last_seq, ok.records),
        (Some(5), Some(8), 4)
    );
    // A wrong stated hash, or another stated start, fails.
    let other = entry(2).hash;
    assert_eq!(
        verify_entries_from(&tail, &pk, &AuditStart::at(5, Some(other))),
        Err(AuditProblem::ChainBroken {
            seq: 5,
            prev: 4,
            place: Place::Line(1),
        })
    );
    // The stated start was cut off the export: 5 missing, 6 first.
    let cut = parse_export(&lines[5..].join("\n"));
    let e = verify_entries_from(&cut, &pk, &AuditStart::at(5, None)).unwrap_err();
    assert_eq!(
        e,
        AuditProblem::HeadMissing {
            expected: 5,
            found: 6,
            place: Place::Line(1),
        }
    );
    assert!(e.to_string().contains("record 5 was removed"), "{e}");
    // An export stated to start later than it does.
    let e = verify_entries_from(&tail, &pk, &AuditStart::at(6, None)).unwrap_err();
    assert!(
        matches!(
            e,
            AuditProblem::HeadMissing {
                expected: 6,
                found: 5,
                ..
            }
        ),
        "{e:?}"
    );
    // Stated to start at 1 is the whole log: record 1 from the zero hash.
    let whole = parse_export(&lines.join("\n"));
    assert_eq!(
        verify_entries_from(&whole, &pk, &AuditStart::at(1, None)).map(|s| s.records),
        Ok(8)
    );
    // The first record swapped further down: reordered, not removed.
    let mut swapped = lines.clone();
    swapped.swap(0, 1);
    assert!(matches!(
        verify_entries(&parse_export(&swapped.join("\n")), &pk),
        Err(AuditProblem::Reordered {
            expected: 1,
            found: 2,
            ..
        })
    ));
}

#[test]
fn an_exported_line_with_unsigned_content_does_not_verify() {
    // Regression (found by fuzzing, issue 12): the hash covers the record
    // re-serialized, so a line with an extra field (`"note"`), a parameter
    // given twice, or another spelling of a value verified as intact while
    // showing an auditor text no signature covers. A line must be exactly
    // its record's canonical form.
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let lines = closed_log(dir.path(), &key, 3);
    assert_eq!(check_file(&lines, &key), Ok(3));
    let injected = lines[1].replacen(
        "\"request\":{",
        "\"request\":{\"note\":\"approved by the CFO\",",
        1,
    );
    assert_ne!(injected, lines[1]);
    // A key given twice, the last value the signed one.
    let duplicated = lines[1].replacen("\"action\":", "\"action\":\"pay\",\"action\":", 1);
    assert_ne!(duplicated, lines[1]);
    // The same value spelled otherwise (an escaped character).
    let respelled = lines[1]
        .replacen("\"action\":\"", "\"action\":\"\\u0064", 1)
        .replacen("\\u0064d", "\\u0064", 1);
    assert!(respelled.contains("\\u0064elete"), "{respelled}");
    for bad in [injected, duplicated, respelled] {
        let mut tampered = lines.clone();
        tampered[1] = bad.clone();
        let err = check_file(&tampered, &key).unwrap_err().to_string();
        // A struct field given twice is refused by the decoder already; any
        // other difference by the canonical-form rule.
        assert!(
            err.contains("canonical form") || err.contains("duplicate field"),
            "{err} for {bad}"
        );
        assert!(err.contains("line 2"), "{err}");
    }
}

/// Regression: the small checkpoints column family never filled a memtable,
/// so RocksDB could delete no write-ahead log file: a busy verifier's log
/// directory grew by one 64 MiB `.log` file per memtable of records (and a
/// restart replayed them all). Both families now flush together and the
/// logs are recycled: after ~200 MB of records the logs stay under 100 MB.
#[test]
fn write_ahead_logs_do_not_accumulate() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::new();
    let (verifier, audit, token) = setup(dir.path(), &key);
    // Incompressible parameters (the tables are LZ4-compressed).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut note = || -> String {
        (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    };
    let n = 48_000;
    for i in 0..n {
        let request = Request::new("read", format!("/api/customers/{i}")).param("note", note());
        verifier.authorize(&token, &request);
    }
    assert_eq!(audit.flush().unwrap(), n as u64);
    let sizes = |ext: &str| -> u64 {
        std::fs::read_dir(audit.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| p.metadata().unwrap().len())
            .sum()
    };
    let (logs, tables) = (sizes("log"), sizes("sst"));
    assert!(
        tables > 100 << 20,
        "the records were flushed to tables: {tables} bytes"
    );
    assert!(
        logs < 100 << 20,
        "write-ahead logs total {logs} bytes after ~200 MB of records"
    );
    let entries = read_audit_log(audit.path()).unwrap();
    assert_eq!(
        verify_entries(&entries, &verifying(&key)).unwrap().records,
        n as u64
    );
}
