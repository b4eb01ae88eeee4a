//! `mandate inspect`: a token's delegation chain, hop by hop.

use crate::io::read_token;
use crate::out::Out;
use anyhow::{anyhow, Context, Result};
use biscuit_auth::{Biscuit, UnverifiedBiscuit};
use clap::Args;
use mandate_spec::display::{quoted, text, word};
use mandate_spec::{decode_blocks, effective_capabilities, parse_public_key, Capability, Chain};
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
    let root_key_id = root_key_id(&token, a.public_key.as_deref())?;
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
            mandate_server::html::chain_page(&chain, verified, &revoked),
        )
        .with_context(|| format!("--html: writing {}", out.display()))?;
    }
    let inspected = Inspected {
        verified,
        root_key_id,
        size_bytes: token.len(),
        blocks: blocks.len(),
        chain,
        effective,
        revoked,
    };
    let mut out = Out::new();
    if a.json {
        inspected.write_json(&mut out)?;
    } else {
        inspected.write_text(&mut out)?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// The id of the root key the token names: with `public_key`, once its
/// signatures verify with that key; without, read unverified.
fn root_key_id(token: &[u8], public_key: Option<&str>) -> Result<Option<u32>> {
    Ok(match public_key {
        Some(pk) => {
            let key = parse_public_key(pk).context("--public-key")?;
            Biscuit::from(token, key)
                .map_err(|e| anyhow!("signatures do not verify with {pk}: {e}"))?
                .root_key_id()
        }
        None => UnverifiedBiscuit::from(token)
            .map_err(|e| anyhow!("not a valid token: {e}"))?
            .root_key_id(),
    })
}

/// What `inspect` shows of a token.
struct Inspected {
    /// Whether the signatures were verified with a root key.
    verified: bool,
    root_key_id: Option<u32>,
    size_bytes: usize,
    blocks: usize,
    chain: Chain,
    /// Per hop, what it may do once every hop above it is applied.
    effective: Vec<Capability>,
    /// Per hop, why it is revoked, if it is.
    revoked: Vec<Option<String>>,
}

impl Inspected {
    fn write_json(&self, out: &mut impl Write) -> Result<()> {
        let value = json!({
            "signatures_verified": self.verified,
            "root_key_id": self.root_key_id,
            "size_bytes": self.size_bytes,
            "blocks": self.blocks,
            "chain": self.chain,
            "effective": self.effective,
            "revoked": self.revoked,
        });
        // Rendered first: serde_json's writer would hide a closed pipe.
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        Ok(())
    }

    fn write_text(&self, out: &mut impl Write) -> Result<()> {
        let chain = &self.chain;
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
        if self.verified {
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
        let hops = chain.hops.iter().zip(&self.effective).zip(&self.revoked);
        for ((hop, cap), revoked) in hops {
            write!(out, "{hop}")?;
            writeln!(out, "  effective here: {}", cap.describe())?;
            if let Some(why) = revoked {
                writeln!(out, "  REVOKED: {}", text(why))?;
            }
        }
        for approval in &chain.approvals {
            write!(out, "{approval}")?;
        }
        Ok(())
    }
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
