//! Checking an audit log: every signature, every hash, and the chain of
//! hashes from one record to the next, naming the first record that was
//! altered, removed or reordered.

use super::record::{AuditEntry, Seal, GENESIS_HASH};
use ed25519_dalek::VerifyingKey;
use std::collections::HashSet;
use std::fmt;

/// Where an entry was read from, for messages: a line of an export file or
/// the key it is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Line of a JSON-lines file, from 1.
    Line(usize),
    /// The sequence number a store keeps it under.
    Key(u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Key(k) => write!(f, "store key {k}"),
        }
    }
}

/// An entry as read from a store or a file: where, and the entry or why it
/// does not decode.
pub type ReadEntry = (Place, Result<AuditEntry, String>);

/// Where the entries being checked must begin (specification §12.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuditStart {
    /// The whole log: the first entry is record 1, whose `prev_hash` is
    /// [`GENESIS_HASH`]. A log whose first records were cut fails.
    #[default]
    Genesis,
    /// A partial export whose starting point the auditor states: the first
    /// entry must be record `seq`, and, when `prev_hash` is given (the hash
    /// of record `seq - 1`, from a copy kept elsewhere), its `prev_hash`
    /// must be that hash. Without `prev_hash`, nothing ties the first
    /// record to the records before it. `seq` 1 is the whole log.
    At {
        /// The first record's sequence number.
        seq: u64,
        /// The hash of the record before it, hex, if known.
        prev_hash: Option<String>,
    },
}

impl AuditStart {
    /// A partial export starting at record `seq`.
    pub fn at(seq: u64, prev_hash: Option<String>) -> AuditStart {
        AuditStart::At { seq, prev_hash }
    }
}

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Records checked.
    pub records: u64,
    /// The first record's sequence number (1 for a whole log; the stated
    /// start of a partial export).
    pub first_seq: Option<u64>,
    /// The last record's sequence number.
    pub last_seq: Option<u64>,
    /// The last record's hash: compare it with a copy kept elsewhere to
    /// detect records cut off the end, which no log can show by itself.
    pub head_hash: Option<String>,
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditProblem {
    /// An entry does not decode as an audit entry.
    #[error("{place}: not an audit entry ({detail})")]
    Malformed {
        /// Where.
        place: Place,
        /// The decoder's message.
        detail: String,
    },
    /// The record's content was changed after it was written: it no longer
    /// matches its hash, or its hash no longer carries the verifier's
    /// signature.
    #[error("record {seq} ({place}) was altered: {detail}")]
    Altered {
        /// The record's (claimed) sequence number.
        seq: u64,
        /// Where.
        place: Place,
        /// Which seal is broken.
        detail: String,
    },
    /// A record is missing: the one after `after` should be `missing`.
    #[error(
        "record {missing} was removed: {place} holds record {found}, right after record {after}"
    )]
    Removed {
        /// The missing sequence number.
        missing: u64,
        /// The record before the gap.
        after: u64,
        /// The record found in its place.
        found: u64,
        /// Where that record is.
        place: Place,
    },
    /// Records are out of order: `expected` should come next but comes later.
    #[error(
        "records were reordered: {place} holds record {found} where record {expected} belongs \
         (record {expected} comes later)"
    )]
    Reordered {
        /// The sequence number that belongs here.
        expected: u64,
        /// The one found.
        found: u64,
        /// Where.
        place: Place,
    },
    /// A record's `prev_hash` is not its predecessor's hash although the
    /// numbers follow: a record was replaced by another signed one.
    #[error("record {seq} ({place}) does not follow record {prev}: the hash chain is broken")]
    ChainBroken {
        /// The record.
        seq: u64,
        /// Its predecessor.
        prev: u64,
        /// Where.
        place: Place,
    },
    /// No record at all. An empty log cannot be told from one whose every
    /// record was removed, so it does not verify.
    #[error("the log holds no records: an empty log cannot be told from one whose every record was removed")]
    Empty,
    /// The first record is not the one the log must start with (record 1
    /// for a whole log, the stated start of a partial export): records
    /// before it were removed, or the export is not the one stated.
    #[error(
        "{place} holds record {found}, but the log must start at record {expected}{}",
        head_hint(*expected, *found)
    )]
    HeadMissing {
        /// The record the log must start with.
        expected: u64,
        /// The first record found.
        found: u64,
        /// Where it is.
        place: Place,
    },
    /// The key given to check signatures with is not an Ed25519 key.
    #[error("the audit public key must be an Ed25519 key")]
    KeyNotEd25519,
    /// A store keeps a record under another sequence number than its own.
    #[error("{place} holds record {seq}: records were moved or reordered in the store")]
    Misplaced {
        /// The record's own sequence number.
        seq: u64,
        /// Where.
        place: Place,
    },
}

/// What a wrong first record means, in words.
fn head_hint(expected: u64, found: u64) -> String {
    match found.checked_sub(1) {
        Some(last) if last == expected => format!(": record {expected} was removed"),
        Some(last) if last > expected => format!(": records {expected} to {last} were removed"),
        _ => " (the export does not start where it was stated to)".into(),
    }
}

/// Checks a whole log, in the order given: it must start at record 1 from
/// [`GENESIS_HASH`] and hold at least one record; then each seal (hash and
/// signature by `key`), that sequence numbers run without gaps, and that
/// each record's `prev_hash` is its predecessor's hash. A partial export is
/// checked with [`verify_entries_from`] and its stated start.
pub fn verify_entries(
    entries: &[ReadEntry],
    key: &biscuit_auth::PublicKey,
) -> Result<AuditSummary, AuditProblem> {
    verify_entries_from(entries, key, &AuditStart::Genesis)
}

/// [`verify_entries`] for entries that must begin at `start`: record 1
/// from [`GENESIS_HASH`] ([`AuditStart::Genesis`]), or the record (and previous
/// hash) an auditor states for a partial export ([`AuditStart::At`]).
pub fn verify_entries_from(
    entries: &[ReadEntry],
    key: &biscuit_auth::PublicKey,
    start: &AuditStart,
) -> Result<AuditSummary, AuditProblem> {
    let key = key
        .to_bytes()
        .try_into()
        .ok()
        .and_then(|b: [u8; 32]| VerifyingKey::from_bytes(&b).ok())
        .ok_or(AuditProblem::KeyNotEd25519)?;
    let key = &key;
    if entries.is_empty() {
        return Err(AuditProblem::Empty);
    }
    let (first, stated) = match start {
        AuditStart::Genesis => (1, None),
        AuditStart::At { seq, prev_hash } => ((*seq).max(1), prev_hash.as_deref()),
    };
    let all_seqs: HashSet<u64> = entries
        .iter()
        .filter_map(|(_, e)| e.as_ref().ok().map(|e| e.record.seq))
        .collect();
    let mut prev: Option<(u64, &str)> = None;
    for (place, entry) in entries {
        let place = *place;
        let entry = entry.as_ref().map_err(|detail| AuditProblem::Malformed {
            place,
            detail: detail.clone(),
        })?;
        let seq = entry.record.seq;
        check_seal(entry, key, place)?;
        if let Place::Key(k) = place {
            if k != seq {
                return Err(AuditProblem::Misplaced { seq, place });
            }
        }
        match prev {
            None => check_first(entry, place, first, stated, &all_seqs)?,
            Some((p, hash)) => check_successor(entry, place, p, hash, &all_seqs)?,
        }
        prev = Some((seq, &entry.hash));
    }
    let first_seq = entries
        .iter()
        .find_map(|(_, e)| e.as_ref().ok().map(|e| e.record.seq));
    Ok(AuditSummary {
        records: entries.len() as u64,
        first_seq,
        last_seq: prev.map(|(s, _)| s),
        head_hash: prev.map(|(_, h)| h.to_string()),
    })
}

/// The entry's hash covers its content and `key` signed that hash.
fn check_seal(entry: &AuditEntry, key: &VerifyingKey, place: Place) -> Result<(), AuditProblem> {
    let detail = match entry.seal_is_intact(key) {
        Seal::Intact => return Ok(()),
        Seal::HashMismatch => "its content does not match its hash",
        Seal::BadSignature => "its hash is not signed by this verifier's key",
    };
    Err(AuditProblem::Altered {
        seq: entry.record.seq,
        place,
        detail: detail.into(),
    })
}

/// The first entry is record `first` (1, or a partial export's stated
/// start) and follows the genesis hash or the stated previous hash.
fn check_first(
    entry: &AuditEntry,
    place: Place,
    first: u64,
    stated: Option<&str>,
    all_seqs: &HashSet<u64>,
) -> Result<(), AuditProblem> {
    let seq = entry.record.seq;
    if seq > first && all_seqs.contains(&first) {
        return Err(AuditProblem::Reordered {
            expected: first,
            found: seq,
            place,
        });
    }
    if seq != first {
        return Err(AuditProblem::HeadMissing {
            expected: first,
            found: seq,
            place,
        });
    }
    // Record 1 follows nothing; a stated start follows the stated hash.
    if (seq == 1 && entry.record.prev_hash != GENESIS_HASH)
        || stated.is_some_and(|h| entry.record.prev_hash != h)
    {
        return Err(AuditProblem::ChainBroken {
            seq,
            prev: seq.saturating_sub(1),
            place,
        });
    }
    Ok(())
}

/// The entry after record `prev` (whose hash is `prev_hash`) is record
/// `prev + 1` and names that hash: otherwise, which records were removed
/// or reordered.
fn check_successor(
    entry: &AuditEntry,
    place: Place,
    prev: u64,
    prev_hash: &str,
    all_seqs: &HashSet<u64>,
) -> Result<(), AuditProblem> {
    let seq = entry.record.seq;
    if Some(seq) != prev.checked_add(1) {
        let expected = prev.saturating_add(1);
        if seq > prev && !all_seqs.contains(&expected) {
            return Err(AuditProblem::Removed {
                missing: expected,
                after: prev,
                found: seq,
                place,
            });
        }
        return Err(AuditProblem::Reordered {
            expected,
            found: seq,
            place,
        });
    }
    if entry.record.prev_hash != prev_hash {
        return Err(AuditProblem::ChainBroken { seq, prev, place });
    }
    Ok(())
}

/// Reads a JSON-lines export (as `mandate audit export` writes it) into
/// entries for [`verify_entries`]. Blank lines are skipped.
pub fn parse_export(text: &str) -> Vec<ReadEntry> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (Place::Line(i + 1), parse_entry(l.trim().as_bytes())))
        .collect()
}

/// Reads one entry from exactly the bytes stored or exported, refusing any
/// that are not the entry's canonical JSON (as the log writes it): the hash
/// covers the record re-serialized, so extra fields, a key given twice or
/// another spelling of a value would otherwise be shown to an auditor while
/// nothing signed covers them.
pub fn parse_entry(bytes: &[u8]) -> Result<AuditEntry, String> {
    let entry: AuditEntry = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match serde_json::to_vec(&entry) {
        Ok(canonical) if canonical == bytes => Ok(entry),
        _ => Err(
            "not the record's canonical form: it carries content (another field, a key \
             given twice, another spelling) that its hash and signature do not cover"
                .into(),
        ),
    }
}
