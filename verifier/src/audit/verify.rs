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

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Records checked.
    pub records: u64,
    /// The first record's sequence number (1 for a whole log; more for an
    /// export made `--since` some point).
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

/// Checks entries in the order given: each seal (hash and signature by
/// `key`), then that sequence numbers run without gaps and each record's
/// `prev_hash` is its predecessor's hash. A whole log starts at record 1
/// from [`GENESIS_HASH`]; a partial export starts wherever it starts.
pub fn verify_entries(
    entries: &[ReadEntry],
    key: &biscuit_auth::PublicKey,
) -> Result<AuditSummary, AuditProblem> {
    let key = key
        .to_bytes()
        .try_into()
        .ok()
        .and_then(|b: [u8; 32]| VerifyingKey::from_bytes(&b).ok())
        .ok_or(AuditProblem::KeyNotEd25519)?;
    let key = &key;
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
        match entry.seal_is_intact(key) {
            Seal::Intact => {}
            Seal::HashMismatch => {
                return Err(AuditProblem::Altered {
                    seq,
                    place,
                    detail: "its content does not match its hash".into(),
                })
            }
            Seal::BadSignature => {
                return Err(AuditProblem::Altered {
                    seq,
                    place,
                    detail: "its hash is not signed by this verifier's key".into(),
                })
            }
        }
        if let Place::Key(k) = place {
            if k != seq {
                return Err(AuditProblem::Misplaced { seq, place });
            }
        }
        match prev {
            None if seq == 1 && entry.record.prev_hash != GENESIS_HASH => {
                return Err(AuditProblem::ChainBroken {
                    seq,
                    prev: 0,
                    place,
                })
            }
            None => {}
            Some((p, _)) if seq == p + 1 => {}
            Some((p, _)) if seq > p + 1 => {
                let expected = p + 1;
                if all_seqs.contains(&expected) {
                    return Err(AuditProblem::Reordered {
                        expected,
                        found: seq,
                        place,
                    });
                }
                return Err(AuditProblem::Removed {
                    missing: expected,
                    after: p,
                    found: seq,
                    place,
                });
            }
            Some((p, _)) => {
                return Err(AuditProblem::Reordered {
                    expected: p + 1,
                    found: seq,
                    place,
                })
            }
        }
        if let Some((p, hash)) = prev {
            if entry.record.prev_hash != hash {
                return Err(AuditProblem::ChainBroken {
                    seq,
                    prev: p,
                    place,
                });
            }
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

/// Reads a JSON-lines export (as `mandate audit export` writes it) into
/// entries for [`verify_entries`]. Blank lines are skipped.
pub fn parse_export(text: &str) -> Vec<ReadEntry> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            (
                Place::Line(i + 1),
                serde_json::from_str(l).map_err(|e| e.to_string()),
            )
        })
        .collect()
}
