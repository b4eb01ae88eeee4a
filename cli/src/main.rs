//! `mandate`: the command-line tool for Mandate tokens.
//!
//! Exit codes: 0 success / allowed, 1 denied, 2 bad input or usage, 3 needs
//! approval (help.rs states them in `mandate --help` and the man page). A
//! closed standard output is not an error: exit 0, silently (out.rs).

// Standard output only through out.rs, whose writes cannot panic.
#![deny(clippy::print_stdout)]
#[macro_use]
mod out;

// One file per subcommand: its arguments and its `run`.
mod approve;
mod attach_approval;
mod attenuate;
mod audit;
mod completions;
mod inspect;
mod issue;
mod keygen;
mod man;
mod prove;
mod request_approval;
mod restrict;
mod restrictions;
mod revocations;
mod revoke;
mod verify;

mod approval_client;
mod args;
mod feed;
mod gateway;
mod grant;
mod help;
mod io;
mod serve;
// The one start-up path of serve, verifierd and gateway (issue 13).
mod startup;
mod verifierd;

use args::{Cli, Command};
use clap::FromArgMatches;
use std::process::ExitCode;

/// Exit code for a request that was decided and denied.
const EXIT_DENIED: u8 = 1;
/// Exit code for bad input or usage.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a request that needs an approval before it can be allowed.
const EXIT_NEEDS_APPROVAL: u8 = 3;
/// Exit code for a request denied by a usage limit without room
/// (`limit_exceeded`): it may be allowed once the limit's window ends.
const EXIT_LIMIT_EXCEEDED: u8 = 4;

/// mimalloc: glibc malloc's cross-thread frees cost ~13 % of a server's CPU
/// under load (a decision's audit record is made on a request thread and
/// freed by the audit writer); see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match help::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            // clap's whole message: what is wrong, the usage, a "similar
            // argument" tip. Help and version go to standard output, exit 0;
            // usage errors to standard error, exit 2. A failed write (a
            // closed pipe under `--help | head`) changes nothing.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): what it wanted it has; exit 0.
        Err(e) if out::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Issue(a) => issue::run(a),
        Command::Attenuate(a) => attenuate::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Revoke(a) => revoke::run(a),
        Command::Revocations(a) => revocations::run(a),
        Command::Restrict(a) => restrict::run(a),
        Command::Restrictions(a) => restrictions::run(a),
        Command::Serve(a) => serve::serve(a),
        Command::Verifierd(a) => verifierd::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Approve(a) => approve::run(a),
        Command::AttachApproval(a) => attach_approval::run(a),
        Command::RequestApproval(a) => request_approval::run(a),
        Command::Prove(a) => prove::run(a),
        Command::Gateway(a) => gateway::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
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
