//! `mandate audit export` and `mandate audit verify`: the audit log a
//! verifier keeps (its RocksDB store, or an exported JSON-lines file):
//! hash-chained records and the signed checkpoints that cover them.

use crate::out::{unless_closed, Out};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mandate_spec::display::text;
use mandate_spec::parse_public_key;
use mandate_verifier::audit::{
    parse_export, read_audit_log, verify_entries_from, AuditOptions, AuditProblem, AuditStart,
    AuditSummary,
};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

/// How servers open their audit log: durable (each answer waits for its
/// record's synced write, shared by concurrent decisions) unless the
/// operator asked for asynchronous audit.
pub(crate) fn options(asynchronous: bool) -> AuditOptions {
    AuditOptions {
        durable: !asynchronous,
        ..AuditOptions::default()
    }
}

/// Exit code when the log fails verification, or holds no record.
const EXIT_TAMPERED: u8 = 1;

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    pub(crate) command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Write the log's records as JSON lines on standard output, then the
    /// signed checkpoints that cover them, one per line.
    Export(AuditExportArgs),
    /// Check the hash chain and every checkpoint's signature; exit 1 naming
    /// the first record altered, removed or reordered, or the records no
    /// checkpoint covers yet.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AuditExportArgs {
    /// The audit log directory (RocksDB; opened read-only, works beside a
    /// running verifier).
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// Start at the first record decided at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub(crate) since: Option<String>,
    /// Start at this sequence number.
    #[arg(long, value_name = "N")]
    pub(crate) since_seq: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["db", "file"])))]
pub(crate) struct AuditVerifyArgs {
    /// The audit log directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) db: Option<PathBuf>,
    /// An exported file (JSON lines), or - for standard input. It must
    /// start at record 1 unless --partial-from states where it starts.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<String>,
    /// The file is a partial export (`audit export --since…`) that must
    /// start at exactly record N.
    #[arg(long, value_name = "N", requires = "file", conflicts_with = "db")]
    pub(crate) partial_from: Option<u64>,
    /// The hash of record N-1 (kept from an earlier check, e.g. its head
    /// hash): ties a partial export to the records before it.
    #[arg(long, value_name = "HEX", requires = "partial_from")]
    pub(crate) prev_hash: Option<String>,
    /// The verifier's audit public key, ed25519/<hex>: the signatures must
    /// be its.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: String,
    /// Print the result as one JSON object on standard output: {"status":
    /// "ok", "records", "first_seq", "last_seq", "head_hash", "checkpoints",
    /// "covered_through", "source", "partial_from", "prev_hash_checked"},
    /// {"status": "uncovered", the same fields, "uncovered_from",
    /// "uncovered_to"} (exit 1) or {"status": "tampered" | "empty",
    /// "problem", "source"} (exit 1).
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn run(a: AuditArgs) -> Result<ExitCode> {
    match a.command {
        AuditCommand::Export(a) => export(a),
        AuditCommand::Verify(a) => verify(a),
    }
}

fn export(a: AuditExportArgs) -> Result<ExitCode> {
    let since = match &a.since {
        Some(t) => Some(
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--since: {t:?} is not an RFC 3339 time"))?,
        ),
        None => None,
    };
    let log = read_audit_log(&a.db)?;
    // The records, then the checkpoints over the records exported (so a
    // record's line number is its place among the records).
    let mut checkpoints = std::collections::BTreeMap::new();
    for (place, c) in log.checkpoints {
        match c {
            Ok(c) => {
                checkpoints.insert(c.checkpoint.seq, c);
            }
            Err(detail) => bail!(
                "{place}: not a checkpoint ({}); run `mandate audit verify`",
                text(&detail)
            ),
        }
    }
    let mut out = Out::new();
    let mut started = false;
    let mut first = None;
    for (place, entry) in log.entries {
        let entry = match entry {
            Ok(e) => e,
            Err(detail) => {
                bail!(
                    "{place}: not an audit entry ({}); run `mandate audit verify`",
                    text(&detail)
                )
            }
        };
        // From the first record at or after the bound on: an export is a
        // contiguous run of the log, so it can be verified on its own.
        started = started
            || (since.is_none_or(|t| entry.record.decided_at >= t)
                && a.since_seq.is_none_or(|s| entry.record.seq >= s));
        if started {
            writeln!(out, "{}", serde_json::to_string(&entry)?)?;
            first.get_or_insert(entry.record.seq);
        }
    }
    if let Some(first) = first {
        for c in checkpoints.range(first..).map(|(_, c)| c) {
            writeln!(out, "{}", serde_json::to_string(c)?)?;
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Checks a store (which must start at record 1) or an export file (which
/// must too, unless `--partial-from N` states that it starts at record N).
fn verify(a: AuditVerifyArgs) -> Result<ExitCode> {
    let key = parse_public_key(&a.public_key).context("--public-key")?;
    let (entries, source) = match (&a.db, &a.file) {
        (Some(db), None) => (read_audit_log(db)?, db.display().to_string()),
        (None, Some(file)) => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
            };
            (parse_export(&text), file.clone())
        }
        _ => bail!("give one of --db DIR or --file FILE"),
    };
    if let Some(h) = &a.prev_hash {
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--prev-hash: expected a record hash (64 hex digits), got {h:?}");
        }
    }
    let start = match a.partial_from {
        Some(seq) => AuditStart::at(seq, a.prev_hash.as_ref().map(|h| h.to_ascii_lowercase())),
        None => AuditStart::Genesis,
    };
    let problem = match verify_entries_from(&entries, &key, &start) {
        Ok(summary) => return intact(&a, &summary, &source),
        Err(problem) => problem,
    };
    // The exit code is the verdict: a reader that went away changes nothing.
    let status = if problem == AuditProblem::Empty {
        "empty"
    } else {
        "tampered"
    };
    if a.json {
        let out = json!({ "status": status, "source": source, "problem": problem.to_string() });
        unless_closed(outln!("{out}"))?;
    } else if problem == AuditProblem::Empty {
        eprintln!("EMPTY: {}: {problem}", text(&source));
    } else {
        eprintln!("TAMPERED: {}", text(&problem.to_string()));
    }
    Ok(ExitCode::from(EXIT_TAMPERED))
}

/// Reports a log that verified (exit 0).
fn intact(a: &AuditVerifyArgs, summary: &AuditSummary, source: &str) -> Result<ExitCode> {
    let shown = text(source);
    let (Some(first), Some(last), Some(head)) =
        (summary.first_seq, summary.last_seq, &summary.head_hash)
    else {
        // verify_entries_from reports an empty log as a problem.
        bail!("no record was checked in {shown}");
    };
    // Records no signature vouches for: the chain holds, but anyone could
    // have appended them (the writer stores each batch with its checkpoint
    // in one atomic write, so an intact log has none).
    let code = match summary.uncovered {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::from(EXIT_TAMPERED),
    };
    if a.json {
        let mut out = json!({
            "status": if summary.uncovered.is_some() { "uncovered" } else { "ok" },
            "source": source,
            "records": summary.records,
            "first_seq": first,
            "last_seq": last,
            "head_hash": head,
            "checkpoints": summary.checkpoints,
            "covered_through": summary.covered_through,
            "partial_from": a.partial_from,
            "prev_hash_checked": a.partial_from.is_some() && a.prev_hash.is_some(),
        });
        if let Some((from, to)) = summary.uncovered {
            out["uncovered_from"] = json!(from);
            out["uncovered_to"] = json!(to);
        }
        unless_closed(outln!("{out}"))?;
        return Ok(code);
    }
    if let Some((from, to)) = summary.uncovered {
        eprintln!(
            "UNCOVERED: records {from} to {to} of {shown} are not yet covered by a checkpoint: \
             their hash chain holds, but no signature of the audit key vouches for them \
             (appended by someone without the key, or their checkpoint was removed)"
        );
        return Ok(code);
    }
    let tie = match (&a.partial_from, &a.prev_hash) {
        (None, _) => "",
        (Some(_), Some(_)) => ", a partial export following the stated hash",
        (Some(_), None) => {
            ", a partial export (not tied to the records before it: pass --prev-hash)"
        }
    };
    unless_closed(outln!(
        "ok: {} records ({first}..{last}) in {shown}{tie}, every link verified and covered \
         by {} signed checkpoints{}; head hash {head}",
        summary.records,
        summary.checkpoints,
        if summary.checkpoints == 0 {
            " (records signed one by one)"
        } else {
            ""
        }
    ))?;
    Ok(ExitCode::SUCCESS)
}
