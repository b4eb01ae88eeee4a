//! `mandate keygen`: a new Ed25519 key pair.

use crate::io::write_private_key;
use anyhow::Result;
use biscuit_auth::KeyPair;
use clap::Args;
use mandate_spec::format_public_key;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Write the private key to FILE (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print one JSON object on standard output: {"public_key",
    /// "private_key_file"} with --out, else {"public_key", "private_key"}.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn run(a: KeygenArgs) -> Result<ExitCode> {
    let key = KeyPair::new();
    let public = format_public_key(&key.public());
    match &a.out {
        Some(path) => {
            write_private_key(path, &key, a.force)?;
            if a.json {
                let out = json!({ "public_key": public, "private_key_file": path });
                outln!("{out}")?;
            } else {
                outln!("{public}")?;
            }
        }
        None => {
            let private = mandate_spec::format_private_key(&key);
            if a.json {
                outln!(
                    "{}",
                    json!({ "public_key": public, "private_key": private })
                )?;
            } else {
                // No file: the private key goes to standard output (for a
                // secret store), the public key to standard error.
                outln!("{private}")?;
                eprintln!("public key: {public}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
