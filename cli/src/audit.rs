//! `mandate audit export` and `mandate audit verify`: the signed audit log
//! a verifier keeps (its RocksDB store, or an exported JSON-lines file).

use crate::args::{AuditArgs, AuditCommand, AuditExportArgs, AuditVerifyArgs};
use anyhow::{bail, Context, Result};
use mandate_spec::parse_public_key;
use mandate_verifier::{parse_export, read_audit_store, verify_entries};
use std::io::Write;
use std::process::ExitCode;
use time::OffsetDateTime;

/// Exit code when the log fails verification.
const EXIT_TAMPERED: u8 = 1;

pub(crate) fn audit(a: AuditArgs) -> Result<ExitCode> {
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
    let entries = read_audit_store(&a.db)?;
    let mut out = std::io::stdout().lock();
    let mut started = false;
    for (place, entry) in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(detail) => {
                bail!("{place}: not an audit entry ({detail}); run `mandate audit verify`")
            }
        };
        // From the first record at or after the bound on: an export is a
        // contiguous run of the log, so it can be verified on its own.
        started = started
            || (since.is_none_or(|t| entry.record.decided_at >= t)
                && a.since_seq.is_none_or(|s| entry.record.seq >= s));
        if started {
            writeln!(out, "{}", serde_json::to_string(&entry)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(a: AuditVerifyArgs) -> Result<ExitCode> {
    let key = parse_public_key(&a.public_key).context("--public-key")?;
    let (entries, source) = match (&a.db, &a.file) {
        (Some(db), None) => (read_audit_store(db)?, db.display().to_string()),
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
    match verify_entries(&entries, &key) {
        Ok(summary) => {
            match (summary.first_seq, summary.last_seq, summary.head_hash) {
                (Some(first), Some(last), Some(head)) => println!(
                    "ok: {} records ({first}..{last}) in {source}, every signature and link \
                     verified; head hash {head}",
                    summary.records
                ),
                _ => println!("ok: {source} holds no records"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            eprintln!("TAMPERED: {problem}");
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
    }
}
