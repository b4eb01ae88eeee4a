//! `mandate revoke` and `mandate revocations`.

use crate::args::{NatsArgs, RevocationsArgs, RevokeArgs};
use crate::feed::{self, BlockingPublisher};
use crate::io::read_token;
use crate::out::Out;
use anyhow::{anyhow, bail, Context, Result};
use mandate_attenuate::read_chain;
use mandate_spec::display::{quoted, text, word};
use mandate_spec::{parse_public_key, Chain};
use mandate_verifier::{Revocation, RevocationStore, Target};
use serde::Serialize;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use time::OffsetDateTime;

pub(crate) fn revoke(a: RevokeArgs) -> Result<ExitCode> {
    if a.reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let by =
        a.by.clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "mandate-cli".into());
    let store = RevocationStore::open(&a.db)?;
    let entry =
        |target: Target, expires_at: Option<OffsetDateTime>, note: Option<String>| Revocation {
            target,
            revoked_at: OffsetDateTime::now_utc(),
            reason: a.reason.clone(),
            by: by.clone(),
            expires_at,
            note,
        };
    if let Some(source) = &a.ids_from {
        return revoke_stream(&store, source, &entry, &a.feed, a.json);
    }
    let e = if let Some(id) = &a.id {
        entry(Target::Block(parse_id(id)?), None, None)
    } else if let Some(key) = &a.agent_key {
        let key = parse_public_key(key).context("--agent-key")?;
        entry(Target::Agent(key.to_bytes().to_vec()), None, None)
    } else if let Some(file) = &a.token {
        let token = read_token(file)?;
        let chain = read_chain(&token)?;
        match a.hop {
            None => entry(
                Target::Token(chain.token_id.clone()),
                chain.hops[0].expires_at,
                Some(format!(
                    "token family of {} ({chain})",
                    quoted(&chain.principal)
                )),
            ),
            Some(n) => hop_entry(&chain, n, &entry)?,
        }
    } else {
        bail!("give one of --id, --token, --agent-key, --ids-from");
    };
    store.revoke(std::slice::from_ref(&e))?;
    let mut feed_sequence = None;
    if let Some(cfg) = feed::config(&a.feed)? {
        let seq = BlockingPublisher::connect(cfg)?.publish(&e)?;
        if !a.json {
            outln!("published to the revocation feed (sequence {seq})")?;
        }
        feed_sequence = Some(seq);
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string(&Revoked {
                entry: &e,
                feed_sequence
            })?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    match &e.note {
        Some(note) => outln!("revoked {} — {}", text(&e.target.to_string()), text(note))?,
        None => outln!("revoked {}", text(&e.target.to_string()))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `revoke --json`: one line per entry revoked, the object `revocations
/// --json` lists plus where the feed put it.
#[derive(Serialize)]
struct Revoked<'a> {
    #[serde(flatten)]
    entry: &'a Revocation,
    /// The feed's stream sequence, with --nats; else null.
    feed_sequence: Option<u64>,
}

fn hop_entry(
    chain: &Chain,
    n: usize,
    entry: &dyn Fn(Target, Option<OffsetDateTime>, Option<String>) -> Revocation,
) -> Result<Revocation> {
    let hop = chain
        .hops
        .get(n)
        .ok_or_else(|| anyhow!("--hop {n}: the token has hops 0 to {}", chain.depth()))?;
    // The hop is dead anyway once the earliest expiry up to it has passed.
    let expires = chain.hops[..=n].iter().filter_map(|h| h.expires_at).min();
    let note = format!(
        "hop {n} (agent {}) of token {} for {}",
        quoted(&hop.agent),
        word(&chain.token_id),
        quoted(&chain.principal)
    );
    Ok(entry(
        Target::Block(hex::decode(&hop.revocation_id)?),
        expires,
        Some(note),
    ))
}

/// Revokes ids read line by line, acknowledging each only after it is synced.
///
/// If the reader of the acknowledgements goes away (`| head -1`), every id
/// is still revoked: the acknowledgements stop, the revocations do not.
fn revoke_stream(
    store: &RevocationStore,
    source: &str,
    entry: &dyn Fn(Target, Option<OffsetDateTime>, Option<String>) -> Revocation,
    nats: &NatsArgs,
    json: bool,
) -> Result<ExitCode> {
    let feed = match feed::config(nats)? {
        Some(cfg) => Some(BlockingPublisher::connect(cfg)?),
        None => None,
    };
    let reader: Box<dyn BufRead> = if source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(source).with_context(|| format!("opening {source}"))?,
        ))
    };
    let mut acknowledging = true;
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        let target = Target::Block(parse_id(id).with_context(|| format!("line {}", n + 1))?);
        let e = entry(target, None, None);
        store.revoke(std::slice::from_ref(&e))?;
        let feed_sequence = match &feed {
            Some(feed) => Some(feed.publish(&e)?),
            None => None,
        };
        if acknowledging {
            let written = if json {
                outln!(
                    "{}",
                    serde_json::to_string(&Revoked {
                        entry: &e,
                        feed_sequence
                    })?
                )
            } else {
                outln!("revoked {id}")
            };
            match written {
                Ok(()) => {}
                // The reader went away: keep revoking, stop acknowledging.
                Err(e) if crate::out::closed(&e) => acknowledging = false,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_id(hex_id: &str) -> Result<Vec<u8>> {
    let bytes = hex::decode(hex_id.trim())
        .map_err(|_| anyhow!("a revocation id is hex, got {:?}", hex_id.trim()))?;
    if bytes.len() != 64 {
        bail!(
            "a revocation id is 64 bytes (128 hex digits), got {}",
            bytes.len()
        );
    }
    Ok(bytes)
}

pub(crate) fn revocations(a: RevocationsArgs) -> Result<ExitCode> {
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
