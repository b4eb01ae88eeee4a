//! `mandate restrictions`: the live restrictions (SPEC §19) a revocation
//! list holds; and the words every command shows a restriction in.

use crate::out::Out;
use anyhow::Result;
use clap::Args;
use mandate_spec::display::{quoted, text};
use mandate_spec::{Lift, Restriction};
use mandate_verifier::revocation::{RestrictionRecord, RevocationStore};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub(crate) struct RestrictionsArgs {
    /// The revocation list directory (opened read-only: it works beside a
    /// verifier holding it).
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// Print a JSON array: per restriction its "id", "state" (in_effect,
    /// expired, lifted, or lift_only: a lift of an id never received here),
    /// "restriction" and, once lifted, "lifted".
    #[arg(long)]
    pub(crate) json: bool,
    /// Also list lifted and expired restrictions (with who lifted them,
    /// when and why), and lifts of ids never received.
    #[arg(long)]
    pub(crate) all: bool,
}

/// Where a restriction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// It applies to every request its target reaches.
    InEffect,
    /// Its target has expired: it can no longer matter (pruned with
    /// `revocations --prune`).
    Expired,
    /// Lifted: it never applies again.
    Lifted,
    /// A lift of an id this list never received: a restriction with that
    /// id will never apply here.
    LiftOnly,
}

/// One restriction as listed.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    pub(crate) id: String,
    pub(crate) state: State,
    #[serde(flatten)]
    pub(crate) record: RestrictionRecord,
}

impl Listed {
    pub(crate) fn of(record: RestrictionRecord, now: OffsetDateTime) -> Listed {
        let state = match (&record.restriction, &record.lifted) {
            (_, Some(_)) if record.restriction.is_none() => State::LiftOnly,
            (_, Some(_)) => State::Lifted,
            (Some(r), None) if r.expires_at.is_some_and(|t| t <= now) => State::Expired,
            _ => State::InEffect,
        };
        let id = match (&record.restriction, &record.lifted) {
            (Some(r), _) => r.id.clone(),
            (None, Some(l)) => l.id.clone(),
            (None, None) => String::new(),
        };
        Listed { id, state, record }
    }

    /// When it was made (or, for a lone lift, lifted): the listing's order.
    fn at(&self) -> OffsetDateTime {
        match (&self.record.restriction, &self.record.lifted) {
            (Some(r), _) => r.restricted_at,
            (None, Some(l)) => l.lifted_at,
            (None, None) => OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// The text listing: a head line, one line per rule, who/when/why,
    /// the expiry, and the lift.
    pub(crate) fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        match &self.record.restriction {
            Some(r) => {
                write!(out, "{}  on {}", self.id, text(&r.target.to_string()))?;
                if let Some(note) = &r.note {
                    write!(out, "  ({})", text(note))?;
                }
                writeln!(out)?;
                for rule in &r.rules {
                    writeln!(out, "  {}", text(&rule.to_string()))?;
                }
                writeln!(out, "  {}", made(r))?;
                match (self.state, r.expires_at) {
                    (State::Expired, Some(t)) => {
                        writeln!(out, "  EXPIRED at {} with its target", rfc3339(t))?
                    }
                    (_, Some(t)) => writeln!(out, "  expires {} with its target", rfc3339(t))?,
                    (_, None) => writeln!(out, "  no expiry: in effect until lifted")?,
                }
            }
            None => writeln!(
                out,
                "{}  (never received here: a restriction with this id will never apply)",
                self.id
            )?,
        }
        if let Some(l) = &self.record.lifted {
            writeln!(out, "  LIFTED {}", lifted(l))?;
        }
        Ok(())
    }
}

/// `by "WHO" at TIME: "REASON"` (escaped: free text from whoever made it).
pub(crate) fn made(r: &Restriction) -> String {
    format!(
        "by {} at {}: {}",
        quoted(&r.by),
        rfc3339(r.restricted_at),
        quoted(&r.reason)
    )
}

/// `at TIME by "WHO": "REASON"`.
pub(crate) fn lifted(l: &Lift) -> String {
    format!(
        "at {} by {}: {}",
        rfc3339(l.lifted_at),
        quoted(&l.by),
        quoted(&l.reason)
    )
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn run(a: RestrictionsArgs) -> Result<ExitCode> {
    let store = RevocationStore::open_read_only(&a.db)?;
    let now = OffsetDateTime::now_utc();
    let mut listed: Vec<Listed> = store
        .restriction_records()?
        .into_iter()
        .map(|r| Listed::of(r, now))
        .filter(|l| a.all || l.state == State::InEffect)
        .collect();
    listed.sort_by(|x, y| x.at().cmp(&y.at()).then_with(|| x.id.cmp(&y.id)));
    let mut out = Out::new();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    for l in &listed {
        l.write_text(&mut out)?;
    }
    let in_effect = listed.iter().filter(|l| l.state == State::InEffect).count();
    write!(
        out,
        "{in_effect} restriction{} in effect",
        if in_effect == 1 { "" } else { "s" }
    )?;
    if a.all {
        write!(out, ", {} lifted or expired", listed.len() - in_effect)?;
    }
    writeln!(out)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
