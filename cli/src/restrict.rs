//! `mandate restrict`: add a live restriction (SPEC §19) to a revocation
//! list, or lift one; with `--nats`, publish it to the feed, signed.

use crate::args::NatsArgs;
use crate::feed::{self, BlockingPublisher};
use crate::io::read_token;
use crate::restrictions::{lifted, made, rfc3339, Listed};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mandate_attenuate::read_chain;
use mandate_spec::display::{quoted, text};
use mandate_spec::{
    parse_public_key, Lift, Restriction, RestrictionEntry, RestrictionRule, RestrictionTarget,
};
use mandate_verifier::revocation::{RestrictionApplied, RevocationStore};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub(crate) struct RestrictArgs {
    /// The revocation list directory (created if missing); verifiers
    /// reading it apply the restriction before Datalog.
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// Target: a token file: its whole family, or with --hop N that hop and
    /// everything derived from it. The restriction expires with it.
    #[arg(long, value_name = "FILE")]
    pub(crate) token: Option<String>,
    /// With --token: the hop to restrict (0 = the root block).
    #[arg(long, value_name = "N", requires = "token")]
    pub(crate) hop: Option<usize>,
    /// Target: a block's revocation id (hex, as `inspect` shows it): that
    /// hop and everything derived from it.
    #[arg(long, value_name = "HEX")]
    pub(crate) id: Option<String>,
    /// Target: an agent key (ed25519/<hex>): every chain in which it is a
    /// hop's agent.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) agent_key: Option<String>,
    /// Target: a principal: every token minted for it.
    #[arg(long, value_name = "P")]
    pub(crate) principal: Option<String>,
    /// Deny these requests: 'ACTION[,ACTION…]:PATTERN[ where C[ and C…]]',
    /// e.g. 'send:/api/slack/**' (repeatable). A request its conditions
    /// cannot be evaluated on is denied too.
    #[arg(long, value_name = "RULE")]
    pub(crate) deny: Vec<String>,
    /// These requests also need an approval: 'ACTION[,ACTION…][ when C[ and
    /// C…]] by NAME=PUBKEY', e.g. 'schedule by alice=ed25519/…' (repeatable).
    #[arg(long = "require-approval", value_name = "RULE")]
    pub(crate) require_approval: Vec<String>,
    /// Tighten: every request (or, with 'ACTIONS:PATTERN where …', those in
    /// that scope) must meet these constraints: e.g. 'rows<=10',
    /// 'time<=2026-06-01T00:00:00Z' (repeatable; 'C and C' for several).
    #[arg(long = "where", value_name = "CONSTRAINTS")]
    pub(crate) where_: Vec<String>,
    /// A usage limit shared by every request the restriction reaches:
    /// 'ACTION[,ACTION…] N/WINDOW' (repeatable; needs the verifiers' usage
    /// meter).
    #[arg(long, value_name = "LIMIT")]
    pub(crate) limit: Vec<String>,
    /// A budget shared the same way: 'ACTION[,ACTION…] PARAM N/WINDOW'
    /// (repeatable).
    #[arg(long, value_name = "BUDGET")]
    pub(crate) budget: Vec<String>,
    /// Lift the restriction with this id (a UUID, as `mandate restrictions`
    /// lists it) instead: final, it never applies again.
    #[arg(long, value_name = "ID")]
    pub(crate) lift: Option<String>,
    /// Why (recorded, and named in every denial the restriction causes).
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
    /// Who restricts or lifts (default: $USER).
    #[arg(long, value_name = "WHO")]
    pub(crate) by: Option<String>,
    /// With --nats: also publish to the revocation feed, waiting for the
    /// server's acknowledgement.
    #[command(flatten)]
    pub(crate) feed: NatsArgs,
    /// With --nats: the revocation key that signs the published entry.
    #[command(flatten)]
    pub(crate) signer: feed::SignerArgs,
    /// Print the record as JSON: its "id", "applied" (added, lifted,
    /// lift_recorded, unchanged), "state", "restriction", "lifted" and
    /// "feed_sequence" (with --nats, else null).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `restrict --json`: the record as `restrictions --json` lists it, what
/// this command did, and where the feed put it.
#[derive(Serialize)]
struct Recorded<'a> {
    #[serde(flatten)]
    listed: &'a Listed,
    applied: &'static str,
    feed_sequence: Option<u64>,
}

pub(crate) fn run(a: RestrictArgs) -> Result<ExitCode> {
    if a.reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let by =
        a.by.clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "mandate-cli".into());
    let entry = match &a.lift {
        Some(id) => lift(&a, id, by)?,
        None => RestrictionEntry::Restrict(restriction(&a, by)?),
    };
    entry.validate().map_err(|e| anyhow!("{e}"))?;
    // Before anything is written: a publish that could not be signed must
    // not leave a local-only entry behind.
    let signer = feed::signer_for(&a.feed, &a.signer)?;
    let store = RevocationStore::open(&a.db)?;
    let applied = store.restrict(&entry)?;
    let mut feed_sequence = None;
    if let (Some(cfg), Some(signer)) = (feed::config(&a.feed)?, signer) {
        let seq = BlockingPublisher::connect(cfg, signer)?.publish_restriction(&entry)?;
        if !a.json {
            outln!("published to the revocation feed (sequence {seq})")?;
        }
        feed_sequence = Some(seq);
    }
    let record = store
        .restriction_record(entry.id())?
        .ok_or_else(|| anyhow!("restriction {} was not recorded", entry.id()))?;
    let listed = Listed::of(record, OffsetDateTime::now_utc());
    if applied == RestrictionApplied::LiftRecorded {
        // Not an error: with a feed the restriction may reach this list
        // later (and then never applies). A mistyped id lifts nothing.
        eprintln!(
            "warning: no restriction {} is known in {}: the lift is recorded, so a \
             restriction with that id will never apply here; check the id with \
             `mandate restrictions --db {} --all`",
            entry.id(),
            a.db.display(),
            a.db.display()
        );
    }
    if a.json {
        let applied = match applied {
            RestrictionApplied::Added => "added",
            RestrictionApplied::Lifted => "lifted",
            RestrictionApplied::LiftRecorded => "lift_recorded",
            RestrictionApplied::Unchanged => "unchanged",
        };
        outln!(
            "{}",
            serde_json::to_string(&Recorded {
                listed: &listed,
                applied,
                feed_sequence,
            })?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    match (&entry, applied) {
        (RestrictionEntry::Restrict(r), _) => {
            match &r.note {
                Some(note) => outln!(
                    "restricted {} — {}",
                    text(&r.target.to_string()),
                    text(note)
                )?,
                None => outln!("restricted {}", text(&r.target.to_string()))?,
            }
            outln!("  id: {}", r.id)?;
            for rule in &r.rules {
                outln!("  {}", text(&rule.to_string()))?;
            }
            outln!("  {}", made(r))?;
            match r.expires_at {
                Some(t) => outln!("  expires {} with its target", rfc3339(t))?,
                None => outln!("  no expiry: in effect until lifted")?,
            }
            outln!(
                "lift it with: mandate restrict --db {} --lift {} --reason '…'",
                text(&a.db.display().to_string()),
                r.id
            )?;
        }
        (RestrictionEntry::Lift(l), RestrictionApplied::Lifted) => {
            outln!("lifted restriction {} {}", l.id, lifted(l))?;
            if let Some(r) = &listed.record.restriction {
                outln!("  it was on {}, {}", text(&r.target.to_string()), made(r))?;
            }
        }
        (RestrictionEntry::Lift(l), RestrictionApplied::Unchanged) => {
            let before = listed.record.lifted.as_ref().unwrap_or(l);
            outln!(
                "restriction {} was already lifted {}: nothing changed",
                l.id,
                lifted(before)
            )?;
        }
        (RestrictionEntry::Lift(l), _) => {
            outln!("lift of restriction {} recorded {}", l.id, lifted(l))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The lift `--lift ID` describes; no target or rule may come with it.
fn lift(a: &RestrictArgs, id: &str, by: String) -> Result<RestrictionEntry> {
    if target_flags(a) > 0 || rule_flags(a) > 0 {
        bail!(
            "--lift names the restriction by its id: give no target (--token, --id, \
             --agent-key, --principal) and no rule with it"
        );
    }
    let id = uuid::Uuid::parse_str(id.trim())
        .map_err(|_| {
            anyhow!(
                "--lift: a restriction id is a UUID (as `mandate restrictions` lists it), got {}",
                quoted(id)
            )
        })?
        .hyphenated()
        .to_string();
    Ok(RestrictionEntry::Lift(Lift {
        id,
        lifted_at: OffsetDateTime::now_utc(),
        by,
        reason: a.reason.clone(),
    }))
}

fn target_flags(a: &RestrictArgs) -> usize {
    [
        a.token.is_some(),
        a.id.is_some(),
        a.agent_key.is_some(),
        a.principal.is_some(),
    ]
    .into_iter()
    .filter(|x| *x)
    .count()
}

fn rule_flags(a: &RestrictArgs) -> usize {
    a.deny.len() + a.require_approval.len() + a.where_.len() + a.limit.len() + a.budget.len()
}

const TARGETS: &str = "--token FILE [--hop N], --id HEX, --agent-key PUBKEY or --principal P";

/// The restriction the flags describe, with a fresh id.
fn restriction(a: &RestrictArgs, by: String) -> Result<Restriction> {
    match target_flags(a) {
        0 => bail!("give what to restrict: one of {TARGETS} (or --lift ID)"),
        1 => {}
        _ => bail!("give exactly one target: one of {TARGETS}"),
    }
    let rules = rules(a)?;
    if rules.is_empty() {
        bail!("give at least one rule: --deny, --require-approval, --where, --limit or --budget");
    }
    let (target, expires_at, note) = target(a)?;
    Ok(Restriction {
        id: uuid::Uuid::new_v4().hyphenated().to_string(),
        target,
        rules,
        restricted_at: OffsetDateTime::now_utc(),
        by,
        reason: a.reason.clone(),
        expires_at,
        note,
    })
}

/// The rules, in the order: deny, where, require-approval, limit, budget.
/// A text that does not parse may lead with the rule's own keyword (`deny
/// send:/x`, as `restrictions` shows it).
fn rules(a: &RestrictArgs) -> Result<Vec<RestrictionRule>> {
    type Parse = fn(&str) -> std::result::Result<RestrictionRule, mandate_spec::SpecError>;
    let kinds: [(&str, &str, &[String], Parse); 5] = [
        ("--deny", "deny ", &a.deny, RestrictionRule::parse_deny),
        ("--where", "only ", &a.where_, RestrictionRule::parse_only),
        (
            "--require-approval",
            "require-approval ",
            &a.require_approval,
            RestrictionRule::parse_require_approval,
        ),
        ("--limit", "count ", &a.limit, RestrictionRule::parse_limit),
        (
            "--budget",
            "budget ",
            &a.budget,
            RestrictionRule::parse_budget,
        ),
    ];
    let mut out = Vec::new();
    for (flag, keyword, texts, parse) in kinds {
        for t in texts {
            let body = t.trim();
            let rule = parse(body).or_else(|e| match body.strip_prefix(keyword) {
                Some(rest) => parse(rest.trim()).map_err(|_| e),
                None => Err(e),
            });
            out.push(rule.with_context(|| format!("{flag} {}", quoted(t)))?);
        }
    }
    Ok(out)
}

/// The target, the time it expires (with a token: the hop's, or the
/// family's root) and a note saying what it was.
fn target(a: &RestrictArgs) -> Result<(RestrictionTarget, Option<OffsetDateTime>, Option<String>)> {
    if let Some(id) = &a.id {
        let bytes = crate::revoke::parse_id(id).context("--id")?;
        return Ok((RestrictionTarget::Block(hex::encode(bytes)), None, None));
    }
    if let Some(key) = &a.agent_key {
        let key = parse_public_key(key).context("--agent-key")?;
        return Ok((
            RestrictionTarget::Agent(hex::encode(key.to_bytes())),
            None,
            None,
        ));
    }
    if let Some(p) = &a.principal {
        return Ok((RestrictionTarget::Principal(p.clone()), None, None));
    }
    let Some(file) = &a.token else {
        bail!("give what to restrict: one of {TARGETS}");
    };
    let chain = read_chain(&read_token(file)?)?;
    let Some(n) = a.hop else {
        return Ok((
            RestrictionTarget::Token(chain.token_id.clone()),
            chain.hops[0].expires_at,
            Some(clip(format!(
                "token family of {} ({chain})",
                quoted(&chain.principal)
            ))),
        ));
    };
    let (id, expires, note) = crate::revoke::hop_target(&chain, n)?;
    Ok((RestrictionTarget::Block(id), expires, Some(clip(note))))
}

/// A note within the bound a restriction's texts have (a long chain's
/// description is cut, on a character boundary, with an ellipsis).
fn clip(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}
