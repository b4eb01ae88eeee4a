//! Audit exports: the JSON-lines file `mandate audit verify --file` reads.

use super::{ring_key, text};
use ed25519_dalek::{Signer as _, SigningKey};
use mandate_verifier::audit::{
    parse_export, verify_entries, AuditEntry, AuditProblem, AuditRead, AuditRecord, ReadEntry,
};
use std::sync::OnceLock;

/// Ring key 7 signs audit records in this target.
const AUDIT_KEY: u8 = 7;

/// An export → `parse_export` → `verify_entries`, as it is (every seal and
/// checkpoint is checked against the fuzz audit key, so mutated lines
/// mostly fail there), then with every entry that decodes sealed afresh by
/// that key (signed record by record, the format before checkpoints, and
/// without checkpoints), so the fuzzer reaches the checks on sequence
/// numbers and links.
///
/// Properties: a decoded entry prints back to JSON that decodes to the same
/// entry with the same hash; a freshly sealed entry is never reported
/// altered; a log that verifies runs without gaps (each record numbered one
/// more than the one before it, linked to its hash) and its summary names
/// its first and last record and the last hash.
pub fn audit_export(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let log = parse_export(s);
    let key = ring_key(AUDIT_KEY).public();
    let _ = verify_entries(&log, &key);
    let entries = &log.entries;
    for (_, entry) in entries {
        let Ok(entry) = entry else { continue };
        let json = serde_json::to_string(entry).expect("an entry serializes");
        let again: AuditEntry = serde_json::from_str(&json).expect("a printed entry decodes");
        assert_eq!(&again, entry, "an entry does not survive printing: {json}");
        assert_eq!(again.record.hash(), entry.record.hash(), "the hash moved");
    }
    let resealed: Vec<ReadEntry> = entries
        .iter()
        .map(|(place, e)| (*place, e.clone().map(|e| seal(e.record))))
        .collect();
    let resealed = AuditRead {
        entries: resealed,
        checkpoints: Vec::new(),
    };
    match verify_entries(&resealed, &key) {
        Err(AuditProblem::Altered { seq, place, detail }) => {
            panic!("record {seq} at {place}, sealed just now, reads as altered: {detail}")
        }
        Err(_) => {}
        Ok(summary) => {
            let records: Vec<&AuditEntry> = resealed
                .entries
                .iter()
                .map(|(_, e)| e.as_ref().expect("a log that verifies decodes"))
                .collect();
            assert_eq!(summary.records, records.len() as u64);
            for pair in records.windows(2) {
                assert_eq!(
                    Some(pair[1].record.seq),
                    pair[0].record.seq.checked_add(1),
                    "verified with a gap or a wrap"
                );
                assert_eq!(pair[1].record.prev_hash, pair[0].hash, "verified unlinked");
            }
            assert_eq!(summary.first_seq, records.first().map(|e| e.record.seq));
            assert_eq!(summary.last_seq, records.last().map(|e| e.record.seq));
            assert_eq!(summary.head_hash, records.last().map(|e| e.hash.clone()));
        }
    }
}

/// `record` hashed and signed by the fuzz audit key, as the audit log
/// seals it.
fn seal(record: AuditRecord) -> AuditEntry {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let bytes: [u8; 32] = ring_key(AUDIT_KEY)
            .private()
            .to_bytes()
            .as_slice()
            .try_into()
            .expect("an Ed25519 private key is 32 bytes");
        SigningKey::from_bytes(&bytes)
    });
    let hash = record.hash();
    AuditEntry {
        signature: Some(hex::encode(key.sign(&hash).to_bytes())),
        hash: hex::encode(hash),
        record,
    }
}
