//! `mandate man`: the manual pages, generated from the same definitions
//! the parser uses (help.rs): mandate(1), with the commands by task and the
//! exit status, and one page per subcommand (mandate-verify(1),
//! mandate-audit-export(1), …).

use anyhow::{Context, Result};
use clap::Args;
use clap_mangen::Man;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write mandate.1 and one page per subcommand (mandate-verify.1, …)
    /// into DIR, created if missing, and print their paths. Without it,
    /// mandate.1 is printed on standard output (`mandate man | man -l -`).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}

pub(crate) fn run(a: ManArgs) -> Result<ExitCode> {
    let mut root = crate::help::command()
        .long_about(crate::help::man_description())
        .disable_help_subcommand(true);
    root.build();
    let Some(dir) = &a.out else {
        crate::out::write_bytes(&page(&root, true)?)?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(&root, true, dir, &mut written)?;
    for path in written {
        outln!("{}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `cmd`'s page and its subcommands' pages, depth first.
fn write_pages(
    cmd: &clap::Command,
    root: bool,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let path = dir.join(Man::new(cmd.clone()).get_filename());
    std::fs::write(&path, page(cmd, root)?)
        .with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, false, dir, written)?;
    }
    Ok(())
}

/// One page in roff: clap_mangen's sections, and on mandate(1) an EXIT
/// STATUS section in place of its generic "EXTRA".
fn page(cmd: &clap::Command, root: bool) -> Result<Vec<u8>> {
    let man = Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    if root {
        out.extend_from_slice(b".SH \"EXIT STATUS\"\n");
        for (code, meaning) in crate::help::EXIT_CODES {
            out.extend_from_slice(
                format!(".TP\n\\fB{code}\\fR\n{}\n", roff_text(meaning)).as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                ".PP\n{}\n",
                roff_text(
                    "A closed standard output (mandate ... | head) is not an error: the \
                     command exits 0, or with its verdict's code (verify, audit verify)."
                )
            )
            .as_bytes(),
        );
        man.render_version_section(&mut out)?;
    }
    // Each section rendered alone opens with roff's quote-character
    // preamble: keep the first.
    let text = String::from_utf8(out)?;
    let preamble = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let body = text.replace(preamble, "");
    Ok(if text.starts_with(preamble) {
        format!("{preamble}{body}").into_bytes()
    } else {
        body.into_bytes()
    })
}

/// Text safe on a roff line: no leading control character, backslashes and
/// hyphens escaped.
fn roff_text(s: &str) -> String {
    let escaped = s.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
