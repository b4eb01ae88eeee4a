//! `mandate`: the command-line tool for Mandate tokens.
//!
//! Exit codes: 0 success / allowed, 1 denied, 2 bad input or usage, 3 needs
//! approval.

mod approve;
mod args;
mod audit;
mod commands;
mod feed;
mod gateway;
mod io;
mod revoke;
mod serve;
mod verifierd;

use args::{Cli, Command};
use clap::Parser;
use std::process::ExitCode;

/// Exit code for a request that was decided and denied.
const EXIT_DENIED: u8 = 1;
/// Exit code for bad input or usage.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a request that needs an approval before it can be allowed.
const EXIT_NEEDS_APPROVAL: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One clear line, no usage dump.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid usage");
            eprintln!("{first} (see `mandate --help`)");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen(a) => commands::keygen(a),
        Command::Issue(a) => commands::issue(a),
        Command::Attenuate(a) => commands::attenuate(a),
        Command::Inspect(a) => commands::inspect(a),
        Command::Verify(a) => commands::verify(a),
        Command::Revoke(a) => revoke::revoke(a),
        Command::Revocations(a) => revoke::revocations(a),
        Command::Serve(a) => serve::serve(a),
        Command::Verifierd(a) => verifierd::run(a),
        Command::Audit(a) => audit::audit(a),
        Command::Approve(a) => approve::approve(a),
        Command::AttachApproval(a) => approve::attach(a),
        Command::Prove(a) => approve::prove(a),
        Command::Gateway(a) => gateway::run(a),
    }
}

/// The error and its causes on one line: `context: cause: cause`, every
/// hidden character escaped (an error can quote a token or a file: it must
/// not draw lines or move text, SPEC §16).
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = mandate_spec::display::text(&cause.to_string().replace('\n', " ")).to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
