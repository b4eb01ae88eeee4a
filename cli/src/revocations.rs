//! `mandate revocations`: list or prune a revocation list; its feed position.

use crate::out::Out;
use anyhow::Result;
use clap::Args;
use mandate_spec::display::{quoted, text};
use mandate_verifier::revocation::RevocationStore;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub(crate) struct RevocationsArgs {
    /// The revocation list directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Delete entries whose target has expired (they can no longer matter),
    /// then compact. Entries without an expiry are kept.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Print where this list stands in the revocation feed: the last stream
    /// sequence applied and the stream it counts in.
    #[arg(long, conflicts_with_all = ["prune", "set_feed_position"])]
    pub(crate) feed_position: bool,
    /// Recovery for a stuck feed (stop the verifier first): resume the feed
    /// after stream sequence N (0: from the start of the stream) in whichever
    /// stream the server has. Entries already applied stay.
    #[arg(long, value_name = "N", conflicts_with = "prune")]
    pub(crate) set_feed_position: Option<u64>,
    /// Publish every entry of the list that can still matter (its target
    /// has not expired) to the revocation feed again, signed with
    /// --revocation-key-file: moving a fleet from a feed of unsigned entries
    /// (before signed feeds) to signed ones, whose verifiers skip unsigned
    /// entries. Applying an entry twice changes nothing.
    #[arg(
        long,
        requires = "nats",
        conflicts_with_all = ["prune", "feed_position", "set_feed_position"]
    )]
    pub(crate) republish: bool,
    /// With --republish: the revocation feed.
    #[command(flatten)]
    pub(crate) feed: crate::args::NatsArgs,
    /// With --republish: the revocation key that signs the entries.
    #[command(flatten)]
    pub(crate) signer: crate::feed::SignerArgs,
}

pub(crate) fn run(a: RevocationsArgs) -> Result<ExitCode> {
    if a.republish {
        return republish(&a);
    }
    if a.feed.nats.is_some() {
        anyhow::bail!("--nats is for --republish");
    }
    if let Some(position) = a.set_feed_position {
        let store = RevocationStore::open_existing(&a.db)?;
        let before = store.feed_position()?;
        store.set_feed_position(position)?;
        outln!(
            "feed position {before} -> {position}: the feed resumes at sequence {} of the \
             stream the server has now",
            position + 1
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.feed_position {
        let store = RevocationStore::open_read_only(&a.db)?;
        let position = store.feed_position()?;
        match store.feed_stream()? {
            Some(stream) => outln!("feed position {position} in stream {stream}")?,
            None => outln!("feed position {position} (no stream recorded yet)")?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.prune {
        let store = RevocationStore::open_existing(&a.db)?;
        let removed = store.prune_expired(OffsetDateTime::now_utc())?;
        outln!(
            "pruned {removed} expired entr{}",
            if removed == 1 { "y" } else { "ies" }
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = RevocationStore::open_read_only(&a.db)?;
    let entries = store.list()?;
    let mut out = Out::new();
    for e in &entries {
        if a.json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            let when = e
                .revoked_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            // Reason, author and note are free text from whoever revoked:
            // escaped, so an entry is one line that draws nothing (SPEC §16).
            write!(
                out,
                "{when}  {}  by {}: {}",
                text(&e.target.to_string()),
                quoted(&e.by),
                quoted(&e.reason)
            )?;
            if let Some(note) = &e.note {
                write!(out, "  ({})", text(note))?;
            }
            writeln!(out)?;
        }
    }
    if !a.json {
        writeln!(
            out,
            "{} entr{}",
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" }
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// `--republish`: every entry that can still matter, published signed.
fn republish(a: &RevocationsArgs) -> Result<ExitCode> {
    let signer = crate::feed::signer_for(&a.feed, &a.signer)?
        .ok_or_else(|| anyhow::anyhow!("--republish needs --nats"))?;
    let cfg =
        crate::feed::config(&a.feed)?.ok_or_else(|| anyhow::anyhow!("--republish needs --nats"))?;
    let store = RevocationStore::open_read_only(&a.db)?;
    let now = OffsetDateTime::now_utc();
    let entries: Vec<_> = store
        .list()?
        .into_iter()
        .filter(|e| e.expires_at.is_none_or(|t| t > now))
        .collect();
    let feed = crate::feed::BlockingPublisher::connect(cfg, signer)?;
    let mut last = None;
    for e in &entries {
        last = Some(feed.publish(e)?);
    }
    outln!(
        "republished {} entr{} signed with revocation key id {}{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        a.signer.revocation_key_id,
        last.map(|s| format!(" (last at feed sequence {s})"))
            .unwrap_or_default()
    )?;
    Ok(ExitCode::SUCCESS)
}
