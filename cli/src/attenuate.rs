//! `mandate attenuate`: delegate, appending a hop signed by the holder.

use crate::grant::{check_limits_meter, grant, GrantArgs};
use crate::io::{read_private_key, read_token};
use anyhow::{Context, Result};
use clap::Args;
use mandate_attenuate::{delegate, read_chain, Delegation};
use mandate_spec::{effective_capabilities, parse_duration, parse_public_key};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct AttenuateArgs {
    /// The holder agent's private key file (signs the hop).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The next agent's id.
    #[arg(long, value_name = "AGENT_ID")]
    pub(crate) to: String,
    /// The next agent's public key, ed25519/<hex>.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) to_key: String,
    #[command(flatten)]
    pub(crate) grant: GrantArgs,
    /// How long the hop lives (never past the chain's expiry; default: until it).
    #[arg(long, value_name = "DURATION")]
    pub(crate) ttl: Option<String>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

pub(crate) fn run(a: AttenuateArgs) -> Result<ExitCode> {
    let token = read_token(&a.token)?;
    let holder = read_private_key(&a.key)?;
    let agent_key = parse_public_key(&a.to_key).context("--to-key")?;
    let ttl = a
        .ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("--ttl")?;
    let grant = grant(&a.grant)?;
    if !grant.limits.is_empty() {
        // A limit on an action the chain no longer allows here counts nothing.
        let above = effective_capabilities(&read_chain(&token)?).pop();
        check_limits_meter(&grant, above.as_ref())?;
    }
    let out = delegate(
        &token,
        &holder,
        &Delegation {
            agent: a.to,
            agent_key,
            grant,
            ttl,
            purpose: a.grant.purpose,
        },
    )?;
    outln!("{}", out.to_base64())?;
    Ok(ExitCode::SUCCESS)
}
