//! `mandate prove`: a proof of possession for one request (SPEC §15).

use crate::io::{read_private_key, read_token};
use anyhow::{bail, Context, Result};
use clap::Args;
use mandate_spec::{Audience, HolderProof, ProofSubject};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(Debug, Args)]
pub(crate) struct ProveArgs {
    /// The final holder's private key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The request's method (HTTP), e.g. POST.
    #[arg(long, value_name = "METHOD")]
    pub(crate) method: String,
    /// The URL the request is sent to, exactly as sent, e.g.
    /// https://api.example.com/transfer?amount=5: its origin is the audience,
    /// its path and query the target.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with_all = ["audience", "target"],
        required_unless_present_all = ["audience", "target"]
    )]
    pub(crate) url: Option<String>,
    /// The audience, the origin the request is sent to
    /// (http[s]://HOST[:PORT]); with --target, instead of --url.
    #[arg(long, value_name = "URL", requires = "target")]
    pub(crate) audience: Option<String>,
    /// The request-target, path and query exactly as sent, e.g.
    /// /transfer?amount=5; with --audience, instead of --url.
    #[arg(long, value_name = "TARGET", requires = "audience")]
    pub(crate) target: Option<String>,
    /// The request body (a file; default: empty).
    #[arg(long, value_name = "FILE")]
    pub(crate) body: Option<PathBuf>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

pub(crate) fn run(a: ProveArgs) -> Result<ExitCode> {
    let key = read_private_key(&a.key)?;
    let token = read_token(&a.token)?;
    let body = match &a.body {
        Some(f) => std::fs::read(f).with_context(|| format!("--body: reading {}", f.display()))?,
        None => Vec::new(),
    };
    let (audience, target) = match (&a.url, &a.audience, &a.target) {
        (Some(url), _, _) => Audience::split_url(url).context("--url")?,
        (None, Some(audience), Some(target)) => (
            Audience::parse(audience).context("--audience")?,
            target.clone(),
        ),
        _ => bail!("give --url, or --audience and --target"),
    };
    let proof = HolderProof::sign(
        &key,
        &ProofSubject {
            method: &a.method,
            audience: &audience,
            target: &target,
            body_digest: ProofSubject::digest(&body),
            token: &token,
        },
        SystemTime::now(),
    )
    .context("--target")?;
    outln!("{}", proof.to_header())?;
    Ok(ExitCode::SUCCESS)
}
