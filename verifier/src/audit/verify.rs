//! Checking an audit log: every hash, the chain of hashes from one record
//! to the next, every checkpoint's signature and that the chain reaches the
//! head each checkpoint signed, naming the first record that was altered,
//! removed or reordered.

use super::record::{AuditEntry, Seal, SignedCheckpoint, GENESIS_HASH};
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// Where an entry was read from, for messages: a line of an export file or
/// the key it is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Line of a JSON-lines file, from 1.
    Line(usize),
    /// The sequence number a store keeps it under.
    Key(u64),
    /// The sequence number a store keeps a checkpoint under.
    CheckpointKey(u64),
    /// The sequence number of a message in the audit stream (a record or
    /// checkpoint as published, §12.4).
    Published(u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Key(k) => write!(f, "store key {k}"),
            Place::CheckpointKey(k) => write!(f, "checkpoint key {k}"),
            Place::Published(n) => write!(f, "audit stream message {n}"),
        }
    }
}

/// An entry as read from a store or a file: where, and the entry or why it
/// does not decode.
pub type ReadEntry = (Place, Result<AuditEntry, String>);

/// A checkpoint as read from a store or a file.
pub type ReadCheckpoint = (Place, Result<SignedCheckpoint, String>);

/// A log or an export as read: its records, in order, and its checkpoints.
#[derive(Debug, Clone, Default)]
pub struct AuditRead {
    /// The records, in stored (or file) order.
    pub entries: Vec<ReadEntry>,
    /// The signed checkpoints, in any order (each names the record it
    /// covers).
    pub checkpoints: Vec<ReadCheckpoint>,
}

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
    /// Checkpoints whose signature and head were checked against the
    /// records (those before a partial export's start are not counted).
    pub checkpoints: u64,
    /// The last record a verified checkpoint covers.
    pub covered_through: Option<u64>,
    /// Records after the last checkpoint that carry no signature of their
    /// own, first and last: nothing signed vouches for them (not yet
    /// covered). `None` when every record is covered.
    pub uncovered: Option<(u64, u64)>,
    /// Records first vouched for by a checkpoint marked `recovered`, first
    /// and last of each run: durable but not yet covered when the log was
    /// closed (a crash inside the checkpoint interval), signed when it was
    /// reopened (§12.2).
    pub recovered: Vec<(u64, u64)>,
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
    /// A checkpoint's signature is not the audit key's, or it names another
    /// log's key.
    #[error(
        "the checkpoint at {place} (over record {seq}) is not signed by this verifier's audit key"
    )]
    CheckpointForged {
        /// The record it claims to cover.
        seq: u64,
        /// Where.
        place: Place,
    },
    /// The records do not hash to the head a checkpoint signed: one of the
    /// records it covers, after the previous checkpoint, was altered (its
    /// hashes recomputed) or replaced.
    #[error(
        "record {seq} was altered (or, their hashes recomputed, one of records {from} to \
         {seq}): it does not have the hash the checkpoint at {place} signed"
    )]
    CheckpointMismatch {
        /// The first record after the previous verified checkpoint.
        from: u64,
        /// The record the checkpoint covers.
        seq: u64,
        /// Where the checkpoint is.
        place: Place,
    },
    /// A checkpoint covers records the log no longer holds: its end was
    /// cut off.
    #[error(
        "records {} to {signed} were removed from the end: the log ends at record {last}, but \
         the checkpoint at {place} signed record {signed}",
        last + 1
    )]
    TailRemoved {
        /// The last record the log holds.
        last: u64,
        /// The record the checkpoint covers.
        signed: u64,
        /// Where the checkpoint is.
        place: Place,
    },
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
/// [`GENESIS_HASH`] and hold at least one record; then each record's hash
/// (and signature, when it carries one), that sequence numbers run without
/// gaps, that each record's `prev_hash` is its predecessor's hash, and that
/// every checkpoint is signed by `key` and its head is the hash of the
/// record it names. Records after the last checkpoint that carry no
/// signature are reported in [`AuditSummary::uncovered`]. A partial export
/// is checked with [`verify_entries_from`] and its stated start.
pub fn verify_entries(
    log: &AuditRead,
    key: &biscuit_auth::PublicKey,
) -> Result<AuditSummary, AuditProblem> {
    verify_entries_from(log, key, &AuditStart::Genesis)
}

/// [`verify_entries`] for entries that must begin at `start`: record 1
/// from [`GENESIS_HASH`] ([`AuditStart::Genesis`]), or the record (and previous
/// hash) an auditor states for a partial export ([`AuditStart::At`]).
pub fn verify_entries_from(
    log: &AuditRead,
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
    let entries = &log.entries;
    if entries.is_empty() {
        return Err(AuditProblem::Empty);
    }
    // Every checkpoint decodes and is the key's, before any is relied on.
    let mut checkpoints: BTreeMap<u64, Vec<(Place, &SignedCheckpoint)>> = BTreeMap::new();
    for (place, c) in &log.checkpoints {
        let place = *place;
        let c = c.as_ref().map_err(|detail| AuditProblem::Malformed {
            place,
            detail: detail.clone(),
        })?;
        let seq = c.checkpoint.seq;
        if !c.is_signed_by(key) || matches!(place, Place::CheckpointKey(k) if k != seq) {
            return Err(AuditProblem::CheckpointForged { seq, place });
        }
        checkpoints.entry(seq).or_default().push((place, c));
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
    let mut prev_place = None;
    let (mut checked, mut covered_through) = (0u64, None::<u64>);
    let mut recovered = Vec::new();
    // The first record not yet vouched for by a signature, if any.
    let mut unvouched: Option<u64> = None;
    for (i, (place, entry)) in entries.iter().enumerate() {
        let place = *place;
        let entry = entry.as_ref().map_err(|detail| AuditProblem::Malformed {
            place,
            detail: detail.clone(),
        })?;
        let seq = entry.record.seq;
        let signed = check_seal(entry, key, place)?;
        if let Place::Key(k) = place {
            if k != seq {
                return Err(AuditProblem::Misplaced { seq, place });
            }
        }
        match prev {
            None => check_first(entry, place, first, stated, &all_seqs)?,
            Some((p, hash)) => check_successor(entry, place, p, hash, &all_seqs).map_err(|e| {
                rehashed(e, entries, i, &checkpoints, prev_place, unvouched.is_some())
            })?,
        }
        prev_place = Some(place);
        if !signed {
            unvouched.get_or_insert(seq);
        }
        // The checkpoints over this record: their head is its hash, which
        // (the chain being intact so far) vouches for every record before.
        for (cplace, c) in checkpoints.get(&seq).into_iter().flatten() {
            if c.checkpoint.head_hash != entry.hash {
                return Err(AuditProblem::CheckpointMismatch {
                    from: covered_through.map_or(first, |c| c + 1),
                    seq,
                    place: *cplace,
                });
            }
            checked += 1;
            let from = covered_through.map_or(first, |c| c + 1);
            if c.checkpoint.recovered && from <= seq {
                recovered.push((from, seq));
            }
            covered_through = Some(seq);
            unvouched = None;
        }
        prev = Some((seq, &entry.hash));
    }
    let last = prev.map(|(s, _)| s);
    if let Some(last) = last {
        if let Some((&signed, cps)) = checkpoints.range(last.saturating_add(1)..).next() {
            return Err(AuditProblem::TailRemoved {
                last,
                signed,
                place: cps[0].0,
            });
        }
    }
    let first_seq = entries
        .iter()
        .find_map(|(_, e)| e.as_ref().ok().map(|e| e.record.seq));
    Ok(AuditSummary {
        records: entries.len() as u64,
        first_seq,
        last_seq: last,
        head_hash: prev.map(|(_, h)| h.to_string()),
        checkpoints: checked,
        covered_through,
        uncovered: unvouched.zip(last),
        recovered,
    })
}

/// Sets aside what was read from the audit stream ([`Place::Published`])
/// and is not the log's own: a checkpoint that does not decode or is not
/// signed by `key` (naming it), a record that does not decode or whose
/// content does not match its hash, or whose signature is not `key`'s.
/// Anyone allowed to publish on the stream can post such messages, so they
/// are evidence of nothing about the log: they are removed from `log`, and
/// described (`injected: …`), for [`verify_entries`] to judge the log by
/// what its key signed. Entries read from a store or a file are kept.
pub fn set_aside_forged(log: &mut AuditRead, key: &biscuit_auth::PublicKey) -> Vec<String> {
    let Some(key) = <[u8; 32]>::try_from(key.to_bytes().as_slice())
        .ok()
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    log.checkpoints.retain(|(place, c)| {
        let why = match (place, c) {
            (Place::Published(_), Err(detail)) => format!("not a checkpoint ({detail})"),
            (Place::Published(_), Ok(c)) if !c.is_signed_by(&key) => format!(
                "a checkpoint (over record {}) not signed by the log's key",
                c.checkpoint.seq
            ),
            _ => return true,
        };
        out.push(format!("injected: {place} is {why}"));
        false
    });
    log.entries.retain(|(place, e)| {
        let why = match (place, e) {
            (Place::Published(_), Err(detail)) => format!("not a record ({detail})"),
            (Place::Published(_), Ok(e)) => match e.seal_is_intact(&key) {
                Seal::HashMismatch => format!(
                    "a record {} whose content does not match its hash (not the log's)",
                    e.record.seq
                ),
                Seal::BadSignature => {
                    format!("a record {} not signed by the log's key", e.record.seq)
                }
                Seal::Intact | Seal::Unsigned => return true,
            },
            _ => return true,
        };
        out.push(format!("injected: {place} is {why}"));
        false
    });
    out.extend(set_aside_second_records(log));
    out
}

/// A record an outsider computes with a valid hash (records are hashed,
/// not signed) under a number the log already has: of several published
/// records under one number, the log's is the one on the chain its signed
/// checkpoints vouch for (walking back from each checkpoint's head through
/// `prev_hash`), or past the last checkpoint the one that links to the
/// record kept before it. The others are set aside (copies of the log's own
/// dropped silently). A number whose record cannot be told is left for
/// [`verify_entries`] to judge. Call with only checkpoints signed by the
/// log's key left.
fn set_aside_second_records(log: &mut AuditRead) -> Vec<String> {
    let mut by_seq: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, (place, e)) in log.entries.iter().enumerate() {
        if let (Place::Published(_), Ok(e)) = (place, e) {
            by_seq.entry(e.record.seq).or_default().push(i);
        }
    }
    if by_seq.values().all(|v| v.len() < 2) {
        return Vec::new();
    }
    let entry = |i: usize| log.entries[i].1.as_ref().ok();
    // The hash each number must have, from the checkpoints, latest first.
    let mut wanted: BTreeMap<u64, String> = BTreeMap::new();
    let mut heads: Vec<(u64, &str)> = log
        .checkpoints
        .iter()
        .filter_map(|(_, c)| c.as_ref().ok())
        .map(|c| (c.checkpoint.seq, c.checkpoint.head_hash.as_str()))
        .collect();
    heads.sort_unstable_by(|a, b| b.cmp(a));
    for (mut seq, head) in heads {
        let mut hash = head.to_string();
        while !wanted.contains_key(&seq) {
            wanted.insert(seq, hash.clone());
            let found = by_seq
                .get(&seq)
                .and_then(|c| c.iter().filter_map(|&i| entry(i)).find(|e| e.hash == hash));
            match found {
                Some(e) if seq > 1 => {
                    hash = e.record.prev_hash.clone();
                    seq -= 1;
                }
                _ => break,
            }
        }
    }
    // Past the last checkpoint: the record linking to the one before it.
    let covered = wanted.keys().next_back().copied().unwrap_or(0);
    for (&seq, candidates) in by_seq.range(covered + 1..) {
        let Some(prev) = wanted.get(&(seq - 1)).cloned() else {
            break;
        };
        let linking: HashSet<&str> = candidates
            .iter()
            .filter_map(|&i| entry(i))
            .filter(|e| e.record.prev_hash == prev)
            .map(|e| e.hash.as_str())
            .collect();
        // One record links (or copies of it); several: not told apart.
        let [only] = linking.into_iter().collect::<Vec<_>>()[..] else {
            break;
        };
        wanted.insert(seq, only.to_string());
    }
    let mut drop = HashSet::new();
    let mut out = Vec::new();
    for (seq, candidates) in by_seq.iter().filter(|(_, c)| c.len() > 1) {
        let Some(hash) = wanted.get(seq) else {
            continue;
        };
        let mut kept = false;
        for &i in candidates {
            let Some(e) = entry(i) else { continue };
            if &e.hash == hash && !kept {
                kept = true;
            } else if &e.hash == hash {
                drop.insert(i); // a copy of the log's own record
            } else {
                drop.insert(i);
                out.push(format!(
                    "injected: {} is a second record {seq}, not on the chain the log's \
                     checkpoints sign",
                    log.entries[i].0
                ));
            }
        }
    }
    let mut i = 0;
    log.entries.retain(|_| {
        i += 1;
        !drop.contains(&(i - 1))
    });
    out
}

/// A broken link before record `i`, when the records from `i` on lead
/// intact to a checkpoint's head: that checkpoint vouches for the hash
/// record `i` names as its predecessor's, so the predecessor (unsigned) is
/// the record altered, its hash recomputed. Otherwise the problem as found.
fn rehashed(
    problem: AuditProblem,
    entries: &[ReadEntry],
    i: usize,
    checkpoints: &BTreeMap<u64, Vec<(Place, &SignedCheckpoint)>>,
    prev_place: Option<Place>,
    prev_unsigned: bool,
) -> AuditProblem {
    let (AuditProblem::ChainBroken { seq, prev, .. }, Some(prev_place), true) =
        (&problem, prev_place, prev_unsigned)
    else {
        return problem;
    };
    let mut last: Option<&AuditEntry> = None;
    for (_, e) in &entries[i..] {
        let Ok(e) = e else { break };
        if hex::encode(e.record.hash()) != e.hash
            || last.is_some_and(|l| {
                Some(e.record.seq) != l.record.seq.checked_add(1) || e.record.prev_hash != l.hash
            })
        {
            break;
        }
        let vouched = checkpoints
            .get(&e.record.seq)
            .into_iter()
            .flatten()
            .find(|(_, c)| c.checkpoint.head_hash == e.hash);
        if let Some((cplace, _)) = vouched {
            return AuditProblem::Altered {
                seq: *prev,
                place: prev_place,
                detail: format!(
                    "its hash is not the one record {seq} links to, which the checkpoint at \
                     {cplace} vouches for (its content was changed and its hash recomputed, \
                     or it was added while the log was stopped, or records after it removed: \
                     the writer then goes on from the last record it vouches for)"
                ),
            };
        }
        last = Some(e);
    }
    problem
}

/// The entry's hash covers its content and, when it carries a signature,
/// `key` signed that hash. `Ok(true)`: signed; `Ok(false)`: a checkpoint
/// must cover it.
fn check_seal(entry: &AuditEntry, key: &VerifyingKey, place: Place) -> Result<bool, AuditProblem> {
    let detail = match entry.seal_is_intact(key) {
        Seal::Intact => return Ok(true),
        Seal::Unsigned => return Ok(false),
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

/// Reads a JSON-lines export (as `mandate audit export` writes it: the
/// records, then the checkpoints that cover them) for [`verify_entries`].
/// A line that starts `{"checkpoint":` is a checkpoint, wherever it is (a
/// checkpoint names the record it covers); blank lines are skipped.
pub fn parse_export(text: &str) -> AuditRead {
    let mut out = AuditRead::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let place = Place::Line(i + 1);
        if line.starts_with("{\"checkpoint\":") {
            out.checkpoints
                .push((place, parse_checkpoint(line.as_bytes())));
        } else {
            out.entries.push((place, parse_entry(line.as_bytes())));
        }
    }
    out
}

/// Reads one checkpoint from exactly the bytes stored or exported, refusing
/// any that are not its canonical JSON (as for [`parse_entry`]).
pub fn parse_checkpoint(bytes: &[u8]) -> Result<SignedCheckpoint, String> {
    let c: SignedCheckpoint = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match serde_json::to_vec(&c) {
        Ok(canonical) if canonical == bytes => Ok(c),
        _ => Err(
            "not the checkpoint's canonical form: it carries content its signature does not cover"
                .into(),
        ),
    }
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
             given twice, another spelling) that its hash does not cover"
                .into(),
        ),
    }
}
