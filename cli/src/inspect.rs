//! `mandate inspect`: a token's delegation chain, hop by hop.

use crate::io::read_token;
use crate::out::Out;
use anyhow::{anyhow, Context, Result};
use biscuit_auth::{Biscuit, UnverifiedBiscuit};
use clap::Args;
use mandate_spec::display::{quoted, text, word};
use mandate_spec::{decode_blocks, effective_capabilities, parse_public_key, Chain};
use mandate_verifier::revocation::{RevocationStore, Target};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Verify the signatures with this root public key (else they are not verified).
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: Option<String>,
    /// Also write the chain as a self-contained HTML page to FILE.
    #[arg(long, value_name = "OUT.html")]
    pub(crate) html: Option<PathBuf>,
    /// Mark the hops this revocation list revokes (a RocksDB directory,
    /// opened read-only).
    #[arg(long, value_name = "DIR")]
    pub(crate) revocation_db: Option<PathBuf>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

pub(crate) fn run(a: InspectArgs) -> Result<ExitCode> {
    let token = read_token(&a.token)?;
    let root_key_id = match &a.public_key {
        Some(pk) => {
            let key = parse_public_key(pk).context("--public-key")?;
            Biscuit::from(&token, key)
                .map_err(|e| anyhow!("signatures do not verify with {pk}: {e}"))?
                .root_key_id()
        }
        None => UnverifiedBiscuit::from(&token)
            .map_err(|e| anyhow!("not a valid token: {e}"))?
            .root_key_id(),
    };
    let verified = a.public_key.is_some();
    let blocks = decode_blocks(&token)?;
    let chain =
        Chain::from_blocks(&blocks, root_key_id).map_err(|e| anyhow!("invalid chain: {e}"))?;
    let effective = effective_capabilities(&chain);
    let revoked = match &a.revocation_db {
        Some(dir) => revoked_hops(&chain, &RevocationStore::open_read_only(dir)?)?,
        None => vec![None; chain.hops.len()],
    };
    if let Some(out) = &a.html {
        std::fs::write(
            out,
            mandate_issuer::html::chain_page(&chain, verified, &revoked),
        )
        .with_context(|| format!("--html: writing {}", out.display()))?;
    }
    let mut out = Out::new();
    if a.json {
        let value = json!({
            "signatures_verified": verified,
            "root_key_id": root_key_id,
            "size_bytes": token.len(),
            "blocks": blocks.len(),
            "chain": chain,
            "effective": effective,
            "revoked": revoked,
        });
        // Rendered first: serde_json's writer would hide a closed pipe.
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Every token-derived string below is escaped (SPEC §16).
    writeln!(
        out,
        "token {} for principal {}",
        word(&chain.token_id),
        quoted(&chain.principal)
    )?;
    writeln!(out, "issued: {}", rfc3339(chain.issued_at))?;
    match &chain.expires_at {
        Some(e) => writeln!(out, "expires: {} (earliest along the chain)", rfc3339(*e))?,
        None => writeln!(out, "expires: never")?,
    }
    if verified {
        writeln!(out, "signatures: verified with the given root key")?;
    } else {
        writeln!(
            out,
            "signatures: NOT verified (pass --public-key to verify them)"
        )?;
    }
    if let Some(d) = chain.max_depth {
        writeln!(out, "max depth: {d} delegation hop(s)")?;
    }
    writeln!(out, "chain: {chain}")?;
    writeln!(out)?;
    for ((hop, cap), revoked) in chain.hops.iter().zip(&effective).zip(&revoked) {
        write!(out, "{hop}")?;
        writeln!(out, "  effective here: {}", cap.describe())?;
        if let Some(why) = revoked {
            writeln!(out, "  REVOKED: {}", text(why))?;
        }
    }
    for approval in &chain.approvals {
        write!(out, "{approval}")?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// For each hop, why it is revoked (its block, the token family, its agent
/// key, or an earlier hop's, which kills everything below it), if it is.
fn revoked_hops(chain: &Chain, store: &RevocationStore) -> Result<Vec<Option<String>>> {
    let family = store.get(&Target::Token(chain.token_id.clone()))?;
    let mut out: Vec<Option<String>> = Vec::new();
    let mut above: Option<String> = None;
    for hop in &chain.hops {
        let own = store
            .get(&Target::Block(hex::decode(&hop.revocation_id)?))?
            .map(|e| format!("hop {} revoked", hop.hop) + &why(&e))
            .or(store
                .get(&Target::Agent(hop.agent_public_key.to_bytes().to_vec()))?
                .map(|e| format!("agent key {} revoked", hop.agent_key) + &why(&e)))
            .or(family
                .as_ref()
                .map(|e| "token family revoked".to_string() + &why(e)));
        let this = own.clone().or(above.clone());
        if above.is_none() {
            above = own.map(|w| format!("{w} (an earlier hop)"));
        }
        out.push(this);
    }
    Ok(out)
}

fn why(e: &mandate_verifier::revocation::Revocation) -> String {
    format!(
        " at {} by {}: {}",
        rfc3339(e.revoked_at),
        quoted(&e.by),
        quoted(&e.reason)
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
