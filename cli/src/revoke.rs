//! `mandate revoke`: add to a revocation list, and publish to the feed.

use crate::args::NatsArgs;
use crate::feed::{self, BlockingPublisher};
use crate::io::read_token;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mandate_attenuate::read_chain;
use mandate_spec::display::{quoted, text, word};
use mandate_spec::{parse_public_key, Chain};
use mandate_verifier::revocation::{Revocation, RevocationStore, Target};
use serde::Serialize;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["id", "token", "agent_key", "ids_from"])))]
pub(crate) struct RevokeArgs {
    /// The revocation list directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// A block's revocation id (hex, as `inspect` shows it).
    #[arg(long, value_name = "HEX")]
    pub(crate) id: Option<String>,
    /// A token file: revokes its whole family, or with --hop N that hop and
    /// everything derived from it.
    #[arg(long, value_name = "FILE")]
    pub(crate) token: Option<String>,
    /// With --token: the hop to revoke (0 = the root block).
    #[arg(long, value_name = "N", requires = "token")]
    pub(crate) hop: Option<usize>,
    /// An agent key (ed25519/<hex>): every chain through that agent.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) agent_key: Option<String>,
    /// Revocation ids, one hex id per line, from FILE or - (standard input);
    /// prints `revoked <id>` as each one is synced.
    #[arg(long, value_name = "FILE")]
    pub(crate) ids_from: Option<String>,
    /// Why (recorded and shown in every denial it causes).
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
    /// Who revokes (default: $USER).
    #[arg(long, value_name = "WHO")]
    pub(crate) by: Option<String>,
    /// With --nats: also publish to the revocation feed, waiting for the
    /// server's acknowledgement.
    #[command(flatten)]
    pub(crate) feed: NatsArgs,
    /// With --nats: the revocation key that signs the published entries.
    #[command(flatten)]
    pub(crate) signer: feed::SignerArgs,
    /// Print each entry revoked as a JSON line: the object `revocations
    /// --json` lists, plus "feed_sequence" (the feed's sequence with --nats,
    /// else null).
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn run(a: RevokeArgs) -> Result<ExitCode> {
    if a.reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let by =
        a.by.clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "mandate-cli".into());
    // Before anything is written: a publish that could not be signed must
    // not leave a local-only revocation behind.
    let signer = feed::signer_for(&a.feed, &a.signer)?;
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
        return revoke_stream(&store, source, &entry, &a.feed, signer, a.json);
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
    if let (Some(cfg), Some(signer)) = (feed::config(&a.feed)?, signer) {
        let seq = BlockingPublisher::connect(cfg, signer)?.publish(&e)?;
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
    let (id, expires, note) = hop_target(chain, n)?;
    Ok(entry(Target::Block(hex::decode(id)?), expires, Some(note)))
}

/// Hop `n` of `chain` as the target of a revocation or a restriction: its
/// block's revocation id (hex, lower case), when the hop is dead anyway
/// (the earliest expiry up to it), and a note naming it.
pub(crate) fn hop_target(
    chain: &Chain,
    n: usize,
) -> Result<(String, Option<OffsetDateTime>, String)> {
    let hop = chain
        .hops
        .get(n)
        .ok_or_else(|| anyhow!("--hop {n}: the token has hops 0 to {}", chain.depth()))?;
    let expires = chain.hops[..=n].iter().filter_map(|h| h.expires_at).min();
    let note = format!(
        "hop {n} (agent {}) of token {} for {}",
        quoted(&hop.agent),
        word(&chain.token_id),
        quoted(&chain.principal)
    );
    Ok((hop.revocation_id.to_ascii_lowercase(), expires, note))
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
    signer: Option<mandate_verifier::feed::RevocationSigner>,
    json: bool,
) -> Result<ExitCode> {
    let feed = match (feed::config(nats)?, signer) {
        (Some(cfg), Some(signer)) => Some(BlockingPublisher::connect(cfg, signer)?),
        _ => None,
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

/// A block's revocation id given in hex (64 bytes).
pub(crate) fn parse_id(hex_id: &str) -> Result<Vec<u8>> {
    let bytes = hex::decode(hex_id.trim())
        .map_err(|_| anyhow!("a revocation id is hex, got {}", quoted(hex_id.trim())))?;
    if bytes.len() != 64 {
        bail!(
            "a revocation id is 64 bytes (128 hex digits), got {}",
            bytes.len()
        );
    }
    Ok(bytes)
}
