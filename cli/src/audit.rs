//! `mandate audit export` and `mandate audit verify`: the audit log a
//! verifier keeps (its RocksDB store, or an exported JSON-lines file):
//! hash-chained records and the signed checkpoints that cover them.

use crate::out::{unless_closed, Out};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mandate_spec::display::text;
use mandate_spec::parse_public_key;
use mandate_verifier::audit::publish::{
    log_id, read_published, read_published_checkpoints, AuditPublishConfig, AUDIT_STREAM,
};
use mandate_verifier::audit::{
    parse_export, read_audit_log, set_aside_forged, verify_entries, verify_entries_from,
    AuditOptions, AuditProblem, AuditRead, AuditStart, AuditSummary,
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

/// Starts publishing the audit log's checkpoints (and records, when asked)
/// to `stream` (SPEC §12.4), on the current Tokio runtime.
pub(crate) fn spawn_publisher(
    stream: &str,
    records: bool,
    db: &std::path::Path,
    log_key: &str,
    nats: &mandate_verifier::feed::FeedConfig,
) -> Result<()> {
    let mut cfg = AuditPublishConfig::new(nats.clone());
    cfg.stream = stream.to_string();
    cfg.records = records;
    mandate_verifier::audit::publish::spawn_audit_publisher(db.to_path_buf(), log_key, cfg)
        .context("audit publishing")?;
    tracing::info!(
        stream = %stream,
        records = records,
        "publishing audit checkpoints to the audit stream (never delays a decision; \
         unpublished checkpoints wait in the local log)"
    );
    Ok(())
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
    /// checkpoint covers yet. With --nats, also against the checkpoints
    /// the verifier published: records cut off the end are named.
    Verify(AuditVerifyArgs),
    /// Gather every verifier's published records from the audit stream
    /// into one timeline (JSON lines, merged by time), each verifier's
    /// chain checked against its published checkpoints; exit 1 naming
    /// each verifier whose records were altered, removed or reordered.
    Collect(AuditCollectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AuditCollectArgs {
    /// The NATS server of the audit stream (required).
    #[command(flatten)]
    pub(crate) nats: crate::args::NatsArgs,
    /// The audit stream.
    #[arg(long, value_name = "NAME", default_value = AUDIT_STREAM)]
    pub(crate) stream: String,
    /// Write the timeline to FILE (the summary then goes to standard
    /// output); default: the timeline on standard output, the summary on
    /// standard error.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// An expected verifier's audit public key, ed25519/<hex> (repeat the
    /// option for each): a log on the stream under another key is foreign
    /// and not merged; an expected key with nothing on the stream is
    /// missing. Both exit 1.
    #[arg(long = "log-key", value_name = "PUBKEY")]
    pub(crate) log_keys: Vec<String>,
    /// A file of expected audit public keys, one ed25519/<hex> per line
    /// (blank lines and lines starting with # skipped), as --log-key.
    #[arg(long, value_name = "FILE")]
    pub(crate) verifiers: Option<PathBuf>,
    /// Merge every log found on the stream, whoever signed it: anyone who
    /// can publish on the stream can add a log of their own, so the
    /// output says the logs are unauthenticated.
    #[arg(long, conflicts_with_all = ["log_keys", "verifiers"])]
    pub(crate) any_log: bool,
    /// The summary as one JSON object: {"status": "ok" | "tampered" |
    /// "incomplete", "authenticated", "records", "verifiers": [{"verifier",
    /// "status" (ok, tampered, no_records, foreign, missing), "records",
    /// "first_seq", "last_seq", "covered_through", "left_out_from",
    /// "left_out_to", "problem"}]}.
    #[arg(long)]
    pub(crate) json: bool,
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
    /// Also check the log against the checkpoints the verifier published
    /// to the audit stream on this NATS server (`verifierd
    /// --audit-publish`): a published checkpoint beyond the log's end, or
    /// over a record the log holds with another hash, is named.
    #[command(flatten)]
    pub(crate) nats: crate::args::NatsArgs,
    /// The audit stream (with --nats).
    #[arg(long, value_name = "NAME", default_value = AUDIT_STREAM)]
    pub(crate) stream: String,
    /// Print the result as one JSON object on standard output: {"status":
    /// "ok", "records", "first_seq", "last_seq", "head_hash", "checkpoints",
    /// "covered_through", "source", "partial_from", "prev_hash_checked",
    /// "recovered" when a checkpoint signed at reopening covers some},
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
        AuditCommand::Collect(a) => collect(a),
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
    let (mut entries, source) = match (&a.db, &a.file) {
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
    let published = match crate::feed::config(&a.nats)? {
        None => None,
        Some(nats) => {
            let id = log_id(&format!("ed25519/{}", hex::encode(key.to_bytes())))
                .context("--public-key: not an Ed25519 key")?;
            let mut cfg = AuditPublishConfig::new(nats);
            cfg.stream = a.stream.clone();
            let mut published = AuditRead {
                checkpoints: runtime()?.block_on(read_published_checkpoints(&cfg, &id))?,
                ..AuditRead::default()
            };
            // What its key did not sign says nothing about the log.
            for line in set_aside_forged(&mut published, &key) {
                eprintln!("{}", text(&line));
            }
            let checkpoints = published.checkpoints;
            if checkpoints.is_empty() {
                let why = format!(
                    "the audit stream {} holds no checkpoint of this log (is the verifier \
                     started with --audit-publish?): its end cannot be checked",
                    a.stream
                );
                if a.json {
                    let out = json!({ "status": "unpublished", "source": source, "problem": why });
                    unless_closed(outln!("{out}"))?;
                } else {
                    eprintln!("UNPUBLISHED: {}", text(&why));
                }
                return Ok(ExitCode::from(EXIT_TAMPERED));
            }
            let n = checkpoints.len();
            entries.checkpoints.extend(checkpoints);
            Some(n)
        }
    };
    let problem = match verify_entries_from(&entries, &key, &start) {
        Ok(summary) => return intact(&a, &summary, &source, published),
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
fn intact(
    a: &AuditVerifyArgs,
    summary: &AuditSummary,
    source: &str,
    published: Option<usize>,
) -> Result<ExitCode> {
    let shown = text(source);
    let (Some(first), Some(last), Some(head)) =
        (summary.first_seq, summary.last_seq, &summary.head_hash)
    else {
        // verify_entries_from reports an empty log as a problem.
        bail!("no record was checked in {shown}");
    };
    // Records no signature vouches for: the chain holds, but anyone could
    // have appended them (a log at rest has none: its writer signs a
    // checkpoint whenever it runs out of records, and at reopening).
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
        if let Some(n) = published {
            out["published_checkpoints"] = json!(n);
        }
        if let Some((from, to)) = summary.uncovered {
            out["uncovered_from"] = json!(from);
            out["uncovered_to"] = json!(to);
        }
        if !summary.recovered.is_empty() {
            out["recovered"] = json!(summary.recovered);
        }
        unless_closed(outln!("{out}"))?;
        return Ok(code);
    }
    if let Some((from, to)) = summary.uncovered {
        eprintln!(
            "UNCOVERED: records {from} to {to} of {shown} are not yet covered by a checkpoint: \
             their hash chain holds, but no signature of the audit key vouches for them \
             (appended by someone without the key, or their checkpoint was removed; a log \
             being written under load covers its newest records within its checkpoint \
             interval: check again)"
        );
        return Ok(code);
    }
    for (from, to) in &summary.recovered {
        eprintln!(
            "note: records {from} to {to} were durable but not yet covered by a checkpoint \
             when the log was closed; the checkpoint over them (marked recovered) was \
             signed when it was reopened: vouched for by whoever restarted the verifier \
             with its key, not by the writer that wrote them (a crash or power cut, or \
             records appended while it was stopped)"
        );
    }
    let tie = match (&a.partial_from, &a.prev_hash) {
        (None, _) => "",
        (Some(_), Some(_)) => ", a partial export following the stated hash",
        (Some(_), None) => {
            ", a partial export (not tied to the records before it: pass --prev-hash)"
        }
    };
    let against = match published {
        Some(n) => format!(" ({n} of them published: the log reaches every published head)"),
        None => String::new(),
    };
    unless_closed(outln!(
        "ok: {} records ({first}..{last}) in {shown}{tie}, every link verified and covered \
         by {} signed checkpoints{}{against}; head hash {head}",
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the NATS client")
}

/// The log ids `collect` expects (`None`: `--any-log`, every log found).
fn expected_logs(a: &AuditCollectArgs) -> Result<Option<std::collections::BTreeSet<String>>> {
    let mut keys: Vec<(String, String)> = a
        .log_keys
        .iter()
        .map(|k| ("--log-key".to_string(), k.clone()))
        .collect();
    if let Some(file) = &a.verifiers {
        let body = std::fs::read_to_string(file)
            .with_context(|| format!("--verifiers: reading {}", file.display()))?;
        for (n, line) in body.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                keys.push((
                    format!("{} line {}", file.display(), n + 1),
                    line.to_string(),
                ));
            }
        }
    }
    if keys.is_empty() {
        if a.any_log {
            return Ok(None);
        }
        bail!(
            "collect needs the expected verifiers' audit public keys (--log-key ed25519/HEX, \
             repeated, or --verifiers FILE, one per line): anyone who can publish on the audit \
             stream can add a log of their own. --any-log merges every log found, unauthenticated"
        );
    }
    let mut out = std::collections::BTreeSet::new();
    for (from, k) in keys {
        let id = log_id(&k).with_context(|| {
            format!(
                "{from}: {:?} is not an audit public key (ed25519/<64 hex digits>)",
                text(&k)
            )
        })?;
        out.insert(id);
    }
    Ok(Some(out))
}

/// One verifier's part of a collection.
struct Collected {
    id: String,
    status: &'static str,
    summary: Option<AuditSummary>,
    problem: Option<String>,
    /// Records published after the last published checkpoint: left out.
    left_out: Option<(u64, u64)>,
    /// Messages on its subjects that its key did not sign: set aside.
    injected: Vec<String>,
}

/// `mandate audit collect`: every log on the stream, each verified against
/// its own published checkpoints (a chain per verifier), the covered records
/// of the intact ones merged by decision time.
fn collect(a: AuditCollectArgs) -> Result<ExitCode> {
    let Some(nats) = crate::feed::config(&a.nats)? else {
        bail!("--nats URL: the NATS server of the audit stream is required");
    };
    let expected = expected_logs(&a)?;
    let mut cfg = AuditPublishConfig::new(nats);
    cfg.stream = a.stream.clone();
    let logs = runtime()?.block_on(read_published(&cfg, None))?;
    if logs.is_empty() && expected.is_none() {
        bail!(
            "the audit stream {} holds no verifier's log (are the verifiers started with \
             --audit-publish --audit-publish-records?)",
            a.stream
        );
    }
    let mut timeline = Vec::new();
    let mut verifiers = Vec::new();
    for id in expected.iter().flatten() {
        if !logs.contains_key(id) {
            verifiers.push(Collected {
                id: id.clone(),
                status: "missing",
                summary: None,
                problem: Some(format!(
                    "an expected verifier with nothing on the audit stream {} (not publishing, \
                     or its messages were removed)",
                    a.stream
                )),
                left_out: None,
                injected: Vec::new(),
            });
        }
    }
    for (id, log) in &logs {
        if expected.as_ref().is_some_and(|e| !e.contains(id)) {
            verifiers.push(Collected {
                id: id.clone(),
                status: "foreign",
                summary: None,
                problem: Some(
                    "a log under a key that is not an expected verifier's: not verified, \
                     not merged"
                        .into(),
                ),
                left_out: None,
                injected: Vec::new(),
            });
            continue;
        }
        let key = parse_public_key(&log.log_key).context("a log key on the stream")?;
        let mut read = log.read.clone();
        let injected = set_aside_forged(&mut read, &key);
        let log = &read;
        let mut c = Collected {
            id: id.clone(),
            status: "ok",
            summary: None,
            problem: None,
            left_out: None,
            injected,
        };
        if log.entries.is_empty() {
            c.status = "no_records";
            c.problem = Some(format!(
                "{} checkpoints published but no record: its records are not published \
                 (--audit-publish-records) or were removed from the stream",
                log.checkpoints.len()
            ));
            verifiers.push(c);
            continue;
        }
        match verify_entries(log, &key) {
            Err(p) => {
                c.status = "tampered";
                c.problem = Some(p.to_string());
            }
            Ok(summary) => {
                let covered = summary.covered_through.unwrap_or(0);
                c.left_out = summary.uncovered;
                for (_, e) in &log.entries {
                    if let Ok(e) = e {
                        if e.record.seq <= covered {
                            timeline.push((id.as_str(), e.clone()));
                        }
                    }
                }
                c.summary = Some(summary);
            }
        }
        verifiers.push(c);
    }
    timeline.sort_by(|(ia, a), (ib, b)| {
        (a.record.decided_at, ia, a.record.seq).cmp(&(b.record.decided_at, ib, b.record.seq))
    });
    let mut lines = String::new();
    for (id, e) in &timeline {
        let line =
            json!({ "verifier": id, "seq": e.record.seq, "hash": e.hash, "record": e.record });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    match &a.out {
        Some(path) => {
            std::fs::write(path, &lines).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = Out::new();
            out.write_all(lines.as_bytes())?;
            out.finish()?;
        }
    }
    let failed = verifiers.iter().any(|c| c.status != "ok");
    let overall = if verifiers
        .iter()
        .any(|c| matches!(c.status, "tampered" | "no_records"))
    {
        "tampered"
    } else if failed {
        "incomplete"
    } else {
        "ok"
    };
    let summary = if a.json {
        let list: Vec<_> = verifiers
            .iter()
            .map(|c| {
                let s = c.summary.as_ref();
                json!({
                    "verifier": c.id,
                    "status": c.status,
                    "records": s.map(|s| s.records),
                    "first_seq": s.and_then(|s| s.first_seq),
                    "last_seq": s.and_then(|s| s.last_seq),
                    "covered_through": s.and_then(|s| s.covered_through),
                    "left_out_from": c.left_out.map(|l| l.0),
                    "left_out_to": c.left_out.map(|l| l.1),
                    "problem": c.problem,
                    "injected": c.injected,
                })
            })
            .collect();
        json!({
            "status": overall,
            "authenticated": expected.is_some(),
            "records": timeline.len(),
            "verifiers": list,
        })
        .to_string()
    } else {
        let mut text_out = Vec::new();
        for c in &verifiers {
            let line = match (&c.problem, &c.summary) {
                (Some(p), _) => format!(
                    "{}: verifier {}: {}",
                    c.status.to_ascii_uppercase(),
                    c.id,
                    text(p)
                ),
                (None, Some(s)) => {
                    let mut l = format!(
                        "ok: verifier {}: {} records ({}..{}), covered by {} published checkpoints",
                        c.id,
                        s.covered_through
                            .map_or(0, |t| t + 1 - s.first_seq.unwrap_or(1)),
                        s.first_seq.unwrap_or(0),
                        s.covered_through.unwrap_or(0),
                        s.checkpoints
                    );
                    if let Some((from, to)) = c.left_out {
                        l.push_str(&format!(
                            "; records {from} to {to} left out (no published checkpoint covers them yet)"
                        ));
                    }
                    l
                }
                (None, None) => format!("ok: verifier {}", c.id),
            };
            text_out.push(line);
            for i in &c.injected {
                text_out.push(format!("  verifier {}: {}", c.id, text(i)));
            }
        }
        text_out.push(format!(
            "{} records from {} verifiers in the timeline{}",
            timeline.len(),
            verifiers.iter().filter(|c| c.status == "ok").count(),
            if expected.is_some() {
                ""
            } else {
                " (--any-log: logs unauthenticated, anyone who can publish on the stream can add one)"
            }
        ));
        text_out.join("\n")
    };
    if a.out.is_some() {
        unless_closed(outln!("{summary}"))?;
    } else {
        eprintln!("{summary}");
    }
    Ok(if failed {
        ExitCode::from(EXIT_TAMPERED)
    } else {
        ExitCode::SUCCESS
    })
}
