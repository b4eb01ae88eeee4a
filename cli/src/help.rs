//! The top-level command as parsed, completed and documented: the derived
//! definitions (args.rs) plus `mandate --help`'s commands grouped by task
//! and its exit codes. The parser, `mandate completions` and `mandate man`
//! all start from [`command`], so they cannot disagree.

use crate::args::Cli;
use clap::builder::styling::Styles;
use clap::CommandFactory;

/// The subcommands by task, in the order `mandate --help` lists them. A
/// unit test checks that every subcommand is in exactly one group.
pub(crate) const GROUPS: &[(&str, &[&str])] = &[
    (
        "Tokens",
        &["keygen", "issue", "attenuate", "inspect", "verify"],
    ),
    (
        "Approvals and proofs",
        &["approve", "attach-approval", "request-approval", "prove"],
    ),
    (
        "Revocation",
        &["revoke", "revocations", "restrict", "restrictions"],
    ),
    ("Audit", &["audit"]),
    ("Servers", &["serve", "verifierd", "gateway"]),
    ("Shell integration", &["completions", "man"]),
];

/// The exit codes, as the long help and the man page state them.
pub(crate) const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success; for verify: allowed"),
    (
        1,
        "denied (verify; approve declined; request-approval denied); audit verify: tampered \
         or empty log",
    ),
    (2, "bad input or usage: the error is on standard error"),
    (
        3,
        "needs approval (verify; request-approval still pending): see `mandate approve`, \
         `attach-approval`, `request-approval`",
    ),
    (
        4,
        "limit exceeded (verify): a usage limit has no room until its window ends \
         (denial.limit.retry_after)",
    ),
];

/// The whole command line: `Cli`'s definitions with the grouped help.
pub(crate) fn command() -> clap::Command {
    let cmd = Cli::command();
    let styles = Styles::default();
    let (h, l) = (styles.get_header(), styles.get_literal());
    let mut listing = String::new();
    for (group, names) in GROUPS {
        listing.push_str(&format!("{h}{group}:{h:#}\n"));
        for name in *names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            listing.push_str(&format!("  {l}{name:<16}{l:#} {about}\n"));
        }
        listing.push('\n');
    }
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{listing}\
         {h}Options:{h:#}\n{{options}}{{after-help}}"
    );
    let mut exit_codes = format!("{h}Exit status:{h:#}\n");
    for (code, meaning) in EXIT_CODES {
        exit_codes.push_str(&format!("  {l}{code}{l:#}  {meaning}\n"));
    }
    cmd.help_template(template)
        .after_help(
            "`mandate help COMMAND` or `mandate COMMAND --help`: a command's options.\n\
             Exit status: 0 ok or allowed, 1 denied, 2 bad input or usage, 3 needs approval \
             (--help says more).",
        )
        .after_long_help(format!(
            "{exit_codes}\nA closed standard output (`mandate … | head`) is not an error: \
             exit 0, or a\nverdict's own code. `mandate help COMMAND` or `mandate COMMAND \
             --help`: a command's\noptions; `mandate man`: the manual pages; \
             `mandate completions SHELL`."
        ))
}

/// The description the man page gives `mandate` itself: what it is for and
/// the commands by task (roff has no grouped subcommand list of its own).
pub(crate) fn man_description() -> String {
    let mut text = String::from(
        "Tokens are Biscuit tokens. An issuer mints a token for a principal and a first agent; each agent delegates offline by \
         appending a hop signed with its own key, which can only narrow what the token \
         allows; a verifier decides each request with the whole chain.\n\nThe commands, \
         by task (mandate-COMMAND(1) for each):\n",
    );
    for (group, names) in GROUPS {
        text.push_str(&format!("\n{group}: {}.\n", names.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_subcommand_is_in_exactly_one_group() {
        let cmd = command();
        let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        let grouped: Vec<&str> = GROUPS.iter().flat_map(|(_, n)| n.iter().copied()).collect();
        for name in &names {
            let n = grouped.iter().filter(|g| *g == name).count();
            assert_eq!(n, 1, "{name} is in {n} groups");
        }
        for name in &grouped {
            assert!(
                names.contains(name),
                "{name} is grouped but not a subcommand"
            );
        }
        // In the same order as the definitions, so completions and man
        // pages list them as the help does.
        assert_eq!(names, grouped);
    }

    #[test]
    fn the_long_help_lists_every_command_by_group_and_the_exit_codes() {
        let help = command().render_long_help().to_string();
        for (group, names) in GROUPS {
            assert!(help.contains(&format!("{group}:")), "{help}");
            for name in *names {
                assert!(help.contains(&format!("  {name} ")), "{name}: {help}");
            }
        }
        for (code, meaning) in EXIT_CODES {
            assert!(help.contains(&format!("  {code}  {meaning}")), "{help}");
        }
        assert!(help.contains("--version"), "{help}");
    }
}
