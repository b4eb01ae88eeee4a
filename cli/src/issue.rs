//! `mandate issue`: mint a root token.

use crate::grant::{check_limits_meter, grant, GrantArgs};
use crate::io::read_private_key;
use anyhow::{bail, Context, Result};
use clap::Args;
use mandate_issuer::{Issuer, MintRequest, SigningKeys as IssuerKeys};
use mandate_spec::{parse_duration, parse_public_key};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// The issuer's root private key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The root key id written into the token (for key rotation).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) key_id: u32,
    /// Who the token acts for, e.g. user:alice.
    #[arg(long, value_name = "ID")]
    pub(crate) principal: String,
    /// The first agent's id.
    #[arg(long, value_name = "AGENT_ID")]
    pub(crate) to: String,
    /// The first agent's public key, ed25519/<hex>.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) to_key: String,
    #[command(flatten)]
    pub(crate) grant: GrantArgs,
    /// How long the token lives: 30s, 10m, 1h, 7d.
    #[arg(long, value_name = "DURATION")]
    pub(crate) ttl: String,
    /// Most delegation hops allowed below the root.
    #[arg(long, value_name = "N")]
    pub(crate) max_depth: Option<u32>,
}

pub(crate) fn run(a: IssueArgs) -> Result<ExitCode> {
    let root = read_private_key(&a.key)?;
    let agent_key = parse_public_key(&a.to_key).context("--to-key")?;
    let ttl = parse_duration(&a.ttl).context("--ttl")?;
    let grant = grant(&a.grant)?;
    if grant.alternatives.is_empty() {
        bail!("a root token needs at least one --allow ACTIONS:PATTERN");
    }
    check_limits_meter(&grant, None)?;
    let issuer = Issuer::with_keys(IssuerKeys::new(a.key_id, root));
    let minted = issuer.mint(&MintRequest {
        principal: a.principal,
        agent: a.to,
        agent_key,
        grant,
        ttl,
        purpose: a.grant.purpose,
        max_depth: a.max_depth,
    })?;
    outln!("{}", minted.to_base64())?;
    Ok(ExitCode::SUCCESS)
}
