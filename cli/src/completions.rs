//! `mandate completions SHELL`: the shell's completion script, generated
//! from the same definitions the parser uses (help.rs).

use anyhow::Result;
use clap::Args;
use clap_complete::Shell;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(after_long_help = "Install, for example:\n  \
    bash: mandate completions bash > ~/.local/share/bash-completion/completions/mandate\n  \
    zsh:  mandate completions zsh > \"${fpath[1]}/_mandate\"\n  \
    fish: mandate completions fish > ~/.config/fish/completions/mandate.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    pub(crate) shell: Shell,
}

pub(crate) fn run(a: CompletionsArgs) -> Result<ExitCode> {
    // Generated in memory: clap_complete panics on a failed write, and a
    // closed pipe must not.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut crate::help::command(), "mandate", &mut script);
    crate::out::write_bytes(&script)?;
    Ok(ExitCode::SUCCESS)
}
