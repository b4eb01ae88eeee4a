//! `mandate attach-approval`: append an approval block to a token.

use crate::io::{read_text, read_token};
use anyhow::{bail, Result};
use clap::Args;
use mandate_attenuate::attach_approval;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct AttachApprovalArgs {
    /// The approval block (base64, from `mandate approve`): a file or - .
    #[arg(long, value_name = "FILE")]
    pub(crate) approval: String,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

pub(crate) fn run(a: AttachApprovalArgs) -> Result<ExitCode> {
    if a.approval == "-" && a.token == "-" {
        bail!("--approval and the token cannot both come from standard input");
    }
    let approval = read_text(&a.approval)?;
    let token = read_token(&a.token)?;
    let out = attach_approval(&token, &approval)?;
    outln!("{}", out.to_base64())?;
    Ok(ExitCode::SUCCESS)
}
