//! `mandate inspect`: a token's delegation chain, hop by hop.

use crate::io::read_token;
use crate::out::Out;
use anyhow::{anyhow, bail, Context, Result};
use biscuit_auth::{Biscuit, UnverifiedBiscuit};
use clap::Args;
use mandate_spec::display::{quoted, text, word};
use mandate_spec::{
    decode_blocks, effective_capabilities, parse_public_key, Capability, Chain, Restriction,
    RestrictionRule,
};
use mandate_verifier::revocation::{revocation_targets, InEffect, RevocationStore, Target};
use mandate_verifier::usage::{chain_limits, Charge, UsageMeter, UsageStore};
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Verify the signatures with this root public key (else they are not verified).
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: Option<String>,
    /// Also write the chain as a self-contained HTML page to FILE.
    #[arg(long, value_name = "OUT.html")]
    pub(crate) html: Option<PathBuf>,
    /// Mark the hops this revocation list revokes (a RocksDB directory,
    /// opened read-only), and show the live restrictions it holds on each
    /// hop with what the hop may do after them.
    #[arg(long, value_name = "DIR")]
    pub(crate) revocation_db: Option<PathBuf>,
    /// Show what each usage limit of the chain has used and has left in
    /// its current window, from this usage store (a verifier's --usage-db
    /// directory; it must exist, and no verifier may hold it open).
    #[arg(long, value_name = "DIR")]
    pub(crate) usage_db: Option<PathBuf>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

pub(crate) fn run(a: InspectArgs) -> Result<ExitCode> {
    let token = read_token(&a.token)?;
    let root_key_id = root_key_id(&token, a.public_key.as_deref())?;
    let verified = a.public_key.is_some();
    let blocks = decode_blocks(&token)?;
    let chain =
        Chain::from_blocks(&blocks, root_key_id).map_err(|e| anyhow!("invalid chain: {e}"))?;
    let effective = effective_capabilities(&chain);
    let store = match &a.revocation_db {
        Some(dir) => Some(RevocationStore::open_read_only(dir)?),
        None => None,
    };
    let revoked = match &store {
        Some(store) => revoked_hops(&chain, store)?,
        None => vec![None; chain.hops.len()],
    };
    // The live restrictions in effect on the chain (SPEC §19).
    let restricted = match &store {
        Some(store) => Some(live_restrictions(&chain, &token, store)?),
        None => None,
    };
    // What the limits' counters hold now, in the current window.
    let usage = match &a.usage_db {
        Some(dir) => Some(usage_of(&chain, &open_usage(dir)?, unix_now())?),
        None => None,
    };
    if let Some(out) = &a.html {
        let words = usage_words(chain.hops.len(), usage.as_deref().unwrap_or_default());
        let page = mandate_server::html::page(
            &format!("Mandate chain {}", chain.token_id),
            maud::html! {
                (mandate_server::html::chain_section_with_usage(&chain, verified, &revoked, &words))
                @if let Some(live) = &restricted {
                    (restrictions_html(&chain, &effective, live))
                }
            },
        );
        std::fs::write(out, page).with_context(|| format!("--html: writing {}", out.display()))?;
    }
    let inspected = Inspected {
        verified,
        root_key_id,
        size_bytes: token.len(),
        blocks: blocks.len(),
        chain,
        effective,
        revoked,
        usage,
        restricted,
    };
    let mut out = Out::new();
    if a.json {
        inspected.write_json(&mut out)?;
    } else {
        inspected.write_text(&mut out)?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// The id of the root key the token names: with `public_key`, once its
/// signatures verify with that key; without, read unverified.
fn root_key_id(token: &[u8], public_key: Option<&str>) -> Result<Option<u32>> {
    Ok(match public_key {
        Some(pk) => {
            let key = parse_public_key(pk).context("--public-key")?;
            Biscuit::from(token, key)
                .map_err(|e| anyhow!("signatures do not verify with {pk}: {e}"))?
                .root_key_id()
        }
        None => UnverifiedBiscuit::from(token)
            .map_err(|e| anyhow!("not a valid token: {e}"))?
            .root_key_id(),
    })
}

/// What `inspect` shows of a token.
struct Inspected {
    /// Whether the signatures were verified with a root key.
    verified: bool,
    root_key_id: Option<u32>,
    size_bytes: usize,
    blocks: usize,
    chain: Chain,
    /// Per hop, what it may do once every hop above it is applied.
    effective: Vec<Capability>,
    /// Per hop, why it is revoked, if it is.
    revoked: Vec<Option<String>>,
    /// With a usage store: every limit of the chain and its counter now.
    usage: Option<Vec<LimitUsage>>,
    /// With a revocation list: the live restrictions in effect on the chain.
    restricted: Option<Vec<LiveRestriction>>,
}

/// A live restriction in effect on the chain (`inspect --revocation-db`).
#[derive(Debug, Clone, Serialize)]
struct LiveRestriction {
    /// The hop it reaches the chain through (its block, its agent key; the
    /// root for a family or a principal): it binds that hop and every hop
    /// below it.
    hop: usize,
    /// The restriction as recorded (id, target, rules, by, when, why).
    #[serde(flatten)]
    restriction: Restriction,
}

/// What the live restrictions leave of one hop's effective capability.
#[derive(Debug, Default, Serialize)]
struct AfterRestrictions {
    /// The ids of the restrictions that bind the hop.
    restrictions: Vec<String>,
    /// The capability before them (as `effective`), in words.
    capability: String,
    /// Requests taken away: the `deny` rules.
    denied: Vec<String>,
    /// Constraints every request in scope must now meet: the `only` rules.
    only: Vec<String>,
    /// Requests that now also need an approval.
    require_approval: Vec<String>,
    /// Usage limits now shared by everything the restriction reaches.
    limits: Vec<String>,
}

impl AfterRestrictions {
    /// What is left of `cap` at hop `hop` under the restrictions `live`.
    fn of(hop: usize, cap: &Capability, live: &[LiveRestriction]) -> AfterRestrictions {
        let mut after = AfterRestrictions {
            capability: cap.describe(),
            ..AfterRestrictions::default()
        };
        for l in live.iter().filter(|l| l.hop <= hop) {
            after.restrictions.push(l.restriction.id.clone());
            for rule in &l.restriction.rules {
                let words = rule.to_string();
                match rule {
                    RestrictionRule::Deny { .. } => after.denied.push(words),
                    RestrictionRule::Only { .. } => after.only.push(words),
                    RestrictionRule::RequireApproval { .. } => after.require_approval.push(words),
                    RestrictionRule::Limit { .. } => after.limits.push(words),
                }
            }
        }
        after
    }

    /// The capability, then what the restrictions take away or add, e.g.
    /// `read,send:/api/email/** but: deny send:/api/email/**`.
    fn describe(&self) -> String {
        let rules: Vec<&String> = self
            .denied
            .iter()
            .chain(&self.only)
            .chain(&self.require_approval)
            .chain(&self.limits)
            .collect();
        if rules.is_empty() {
            return self.capability.clone();
        }
        let rules: Vec<&str> = rules.iter().map(|r| r.as_str()).collect();
        format!("{} but: {}", self.capability, rules.join("; "))
    }
}

/// What one limit's counter holds now (`inspect --usage-db`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct LimitUsage {
    /// The hop that set the limit.
    hop: usize,
    /// That hop's agent.
    agent: String,
    /// The limit's canonical text.
    limit: String,
    /// Units used in the current window (requests for a count, the
    /// parameter's sum for a budget).
    used: u64,
    /// Units left in it.
    left: u64,
    /// The limit's maximum per window.
    max: u64,
    /// When the current window ends: the counter starts again from zero.
    #[serde(with = "time::serde::rfc3339")]
    window_end: OffsetDateTime,
    /// The counter's name (SPEC §18.2).
    counter: String,
}

impl LimitUsage {
    /// `send_email 10/1h: 3 used, 7 left in the window ending 2026-…`.
    fn words(&self) -> String {
        format!(
            "{}: {} used, {} left in the window ending {}",
            self.limit,
            self.used,
            self.left,
            rfc3339(self.window_end)
        )
    }
}

/// Opens an existing usage store (never creates one: a mistyped path would
/// show every limit unused).
fn open_usage(dir: &Path) -> Result<UsageStore> {
    if !dir.join("CURRENT").exists() {
        bail!(
            "--usage-db: {} is not a usage store (no RocksDB database there)",
            dir.display()
        );
    }
    UsageStore::open(dir).with_context(|| {
        format!(
            "--usage-db: cannot open {} (a verifier using it holds it locked)",
            dir.display()
        )
    })
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Every limit of `chain` with what its counter in `meter` holds in the
/// window of `unix`, root first.
fn usage_of(chain: &Chain, meter: &dyn UsageMeter, unix: i64) -> Result<Vec<LimitUsage>> {
    chain_limits(chain)
        .into_iter()
        .map(|l| {
            let charge = Charge {
                key: l.key.clone(),
                units: 0,
                max: l.limit.max,
                window_secs: l.limit.window_secs,
            };
            let used = meter
                .used(&charge, unix)
                .with_context(|| format!("--usage-db: reading the counter of {}", l.limit))?;
            let (_, end) = charge.window_of(unix);
            Ok(LimitUsage {
                hop: l.hop,
                agent: l.agent,
                limit: l.limit.to_string(),
                used,
                left: l.limit.max.saturating_sub(used),
                max: l.limit.max,
                window_end: OffsetDateTime::from_unix_timestamp(end)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                counter: l.key,
            })
        })
        .collect()
}

/// Per hop, the usage lines of its limits.
fn usage_words(hops: usize, usage: &[LimitUsage]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); hops];
    for u in usage {
        if let Some(lines) = out.get_mut(u.hop) {
            lines.push(u.words());
        }
    }
    out
}

impl Inspected {
    fn write_json(&self, out: &mut impl Write) -> Result<()> {
        let mut value = json!({
            "signatures_verified": self.verified,
            "root_key_id": self.root_key_id,
            "size_bytes": self.size_bytes,
            "blocks": self.blocks,
            "chain": self.chain,
            "effective": self.effective,
            "revoked": self.revoked,
        });
        if let Some(usage) = &self.usage {
            value["usage"] = serde_json::to_value(usage)?;
        }
        if let Some(live) = &self.restricted {
            value["restrictions"] = serde_json::to_value(live)?;
            let after: Vec<AfterRestrictions> = self
                .effective
                .iter()
                .enumerate()
                .map(|(hop, cap)| AfterRestrictions::of(hop, cap, live))
                .collect();
            value["effective_after_restrictions"] = serde_json::to_value(after)?;
        }
        // Rendered first: serde_json's writer would hide a closed pipe.
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        Ok(())
    }

    fn write_text(&self, out: &mut impl Write) -> Result<()> {
        let chain = &self.chain;
        // Every token-derived string below is escaped (SPEC §16).
        writeln!(
            out,
            "token {} for principal {}",
            word(&chain.token_id),
            quoted(&chain.principal)
        )?;
        writeln!(out, "issued: {}", rfc3339(chain.issued_at))?;
        match &chain.expires_at {
            Some(e) => writeln!(out, "expires: {} (earliest along the chain)", rfc3339(*e))?,
            None => writeln!(out, "expires: never")?,
        }
        if self.verified {
            writeln!(out, "signatures: verified with the given root key")?;
        } else {
            writeln!(
                out,
                "signatures: NOT verified (pass --public-key to verify them)"
            )?;
        }
        if let Some(d) = chain.max_depth {
            writeln!(out, "max depth: {d} delegation hop(s)")?;
        }
        writeln!(out, "chain: {chain}")?;
        writeln!(out)?;
        let usage = self
            .usage
            .as_deref()
            .map(|u| usage_words(chain.hops.len(), u));
        let hops = chain.hops.iter().zip(&self.effective).zip(&self.revoked);
        for ((hop, cap), revoked) in hops {
            write!(out, "{hop}")?;
            for line in usage.iter().flat_map(|u| &u[hop.hop]) {
                writeln!(out, "  usage now: {line}")?;
            }
            writeln!(out, "  effective here: {}", cap.describe())?;
            if let Some(why) = revoked {
                writeln!(out, "  REVOKED: {}", text(why))?;
            }
            if let Some(live) = &self.restricted {
                write_restrictions(out, hop.hop, cap, live)?;
            }
        }
        for approval in &chain.approvals {
            write!(out, "{approval}")?;
        }
        Ok(())
    }
}

/// The live restrictions binding hop `hop` (those reaching the chain at it
/// or above it), each with its rules and who made it, when and why; then
/// what the hop may do after them.
fn write_restrictions(
    out: &mut impl Write,
    hop: usize,
    cap: &Capability,
    live: &[LiveRestriction],
) -> Result<()> {
    let after = AfterRestrictions::of(hop, cap, live);
    if after.restrictions.is_empty() {
        return Ok(());
    }
    for l in live.iter().filter(|l| l.hop <= hop) {
        let r = &l.restriction;
        let from = if l.hop == hop {
            String::new()
        } else {
            format!(", from hop {}", l.hop)
        };
        writeln!(
            out,
            "  RESTRICTED: live restriction {} on {}{from} {}",
            r.id,
            text(&r.target.to_string()),
            crate::restrictions::made(r)
        )?;
        for rule in &r.rules {
            writeln!(out, "    {}", text(&rule.to_string()))?;
        }
    }
    writeln!(
        out,
        "  effective after live restrictions: {}",
        text(&after.describe())
    )?;
    Ok(())
}

/// The live restrictions in effect on `chain` (the token `token`), each
/// with the hop it reaches the chain through, in the order the verifier
/// applies them; one listed once (at its first hop) even if it reaches the
/// chain twice (an agent key at two hops).
fn live_restrictions(
    chain: &Chain,
    token: &[u8],
    store: &RevocationStore,
) -> Result<Vec<LiveRestriction>> {
    let ids = UnverifiedBiscuit::from(token)
        .map_err(|e| anyhow!("not a valid token: {e}"))?
        .revocation_identifiers();
    let blocks = ids.len();
    let targets = revocation_targets(ids, chain);
    let agents = blocks + 1..blocks + 1 + chain.hops.len();
    let mut out: Vec<LiveRestriction> = Vec::new();
    for e in store.restrictions_for(&targets, agents, &chain.principal) {
        let hop = hop_of(chain, blocks, &e);
        match out
            .iter_mut()
            .find(|l| l.restriction.id == e.restriction.id)
        {
            Some(seen) => seen.hop = seen.hop.min(hop),
            None => out.push(LiveRestriction {
                hop,
                restriction: (*e.restriction).clone(),
            }),
        }
    }
    Ok(out)
}

/// The hop a restriction reaches the chain through (as the verifier
/// counts it): the hop holding the block it names, the hop whose agent key
/// it names, or the root for a family or a principal.
fn hop_of(chain: &Chain, blocks: usize, e: &InEffect) -> usize {
    let Some(i) = e.target else { return 0 };
    if i < blocks {
        return chain
            .hops
            .iter()
            .rev()
            .find(|h| h.block <= i)
            .map_or(0, |h| h.hop);
    }
    if i == blocks {
        return 0;
    }
    (i - blocks - 1).min(chain.hops.len().saturating_sub(1))
}

/// The page's section of live restrictions: per hop they bind, each
/// restriction (rules, who, when, why) and the hop's capability after them.
fn restrictions_html(
    chain: &Chain,
    effective: &[Capability],
    live: &[LiveRestriction],
) -> maud::Markup {
    use mandate_server::html::shown;
    let hops: Vec<(usize, &str, AfterRestrictions)> = chain
        .hops
        .iter()
        .zip(effective)
        .map(|(h, cap)| {
            (
                h.hop,
                h.agent.as_str(),
                AfterRestrictions::of(h.hop, cap, live),
            )
        })
        .filter(|(_, _, after)| !after.restrictions.is_empty())
        .collect();
    maud::html! {
        h1 { "Live restrictions" }
        @if hops.is_empty() {
            div.meta #restrictions { "None of the revocation list's live restrictions binds this chain." }
        } @else {
            div.meta { "From the revocation list: each binds the hop it names and every hop below it." }
            div.path #restrictions {
                @for (hop, agent, after) in &hops {
                    div.node.revoked data-restricted-hop=(hop) {
                        h2 { (shown(agent)) span.badge { "hop " (hop) } span.badge.revoked-badge { "RESTRICTED" } }
                        dl {
                            @for l in live.iter().filter(|l| l.hop <= *hop) {
                                dt { "live restriction " span.key { (shown(&l.restriction.id)) } }
                                dd {
                                    "on " (shown(&l.restriction.target.to_string()))
                                    @if l.hop != *hop { " (from hop " (l.hop) ")" }
                                    br;
                                    (shown(&crate::restrictions::made(&l.restriction)))
                                }
                                dd.limits {
                                    @for (i, rule) in l.restriction.rules.iter().enumerate() {
                                        @if i > 0 { br; }
                                        (shown(&rule.to_string()))
                                    }
                                }
                            }
                            dt { "effective after live restrictions" }
                            dd.effective { (shown(&after.describe())) }
                        }
                    }
                }
            }
        }
    }
}

/// For each hop, why it is revoked (its block, the token family, its agent
/// key, or an earlier hop's, which kills everything below it), if it is.
fn revoked_hops(chain: &Chain, store: &RevocationStore) -> Result<Vec<Option<String>>> {
    let family = store.get(&Target::Token(chain.token_id.clone()))?;
    let mut out: Vec<Option<String>> = Vec::new();
    let mut above: Option<String> = None;
    for hop in &chain.hops {
        let own = store
            .get(&Target::Block(hex::decode(&hop.revocation_id)?))?
            .map(|e| format!("hop {} revoked", hop.hop) + &why(&e))
            .or(store
                .get(&Target::Agent(hop.agent_public_key.to_bytes().to_vec()))?
                .map(|e| format!("agent key {} revoked", hop.agent_key) + &why(&e)))
            .or(family
                .as_ref()
                .map(|e| "token family revoked".to_string() + &why(e)));
        let this = own.clone().or(above.clone());
        if above.is_none() {
            above = own.map(|w| format!("{w} (an earlier hop)"));
        }
        out.push(this);
    }
    Ok(out)
}

fn why(e: &mandate_verifier::revocation::Revocation) -> String {
    format!(
        " at {} by {}: {}",
        rfc3339(e.revoked_at),
        quoted(&e.by),
        quoted(&e.reason)
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use biscuit_auth::KeyPair;
    use mandate_attenuate::{delegate, read_chain, Delegation};
    use mandate_issuer::{Issuer, MintRequest};
    use mandate_spec::Grant;
    use mandate_verifier::usage::Charged;
    use mandate_verifier::VerifierError;
    use std::collections::HashMap;
    use std::time::Duration;

    /// Units used per counter name, and the times it was asked at.
    struct Fixed(HashMap<String, u64>, std::sync::Mutex<Vec<i64>>);

    impl UsageMeter for Fixed {
        fn charge(&self, _: &[Charge], _: i64) -> Result<Charged, VerifierError> {
            unreachable!("inspect never charges")
        }
        fn refund(&self, _: &[Charge], _: i64) -> Result<(), VerifierError> {
            unreachable!("inspect never refunds")
        }
        fn used(&self, charge: &Charge, unix: i64) -> Result<u64, VerifierError> {
            assert_eq!(charge.units, 0);
            self.1.lock().unwrap().push(unix);
            Ok(self.0.get(&charge.key).copied().unwrap_or(0))
        }
    }

    /// A root `send_email 10/1h` + `pay amount 5000/1d` and a hop
    /// `send_email 5/1h`.
    fn chain() -> Chain {
        let issuer = Issuer::new(KeyPair::new());
        let (a, b) = (KeyPair::new(), KeyPair::new());
        let root = issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "mailer".into(),
                agent_key: a.public(),
                grant: Grant::parse(&["send_email,pay:/api/**"], &[] as &[&str])
                    .unwrap()
                    .with_limit("send_email 10/1h")
                    .unwrap()
                    .with_budget("pay amount 5000/1d")
                    .unwrap(),
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap();
        let hop = delegate(
            &root.token,
            &a,
            &Delegation {
                agent: "helper".into(),
                agent_key: b.public(),
                grant: Grant::default().with_limit("send_email 5/1h").unwrap(),
                ttl: None,
                purpose: None,
            },
        )
        .unwrap();
        read_chain(&hop.token).unwrap()
    }

    /// Regression guard: a restriction's free text (who, why, a
    /// principal) is shown escaped in the text and on the page; it cannot
    /// draw lines, reorder text or inject markup (SPEC §16).
    #[test]
    fn restrictions_are_shown_escaped_per_hop_with_what_is_left() {
        let chain = chain();
        let effective = effective_capabilities(&chain);
        let nasty = "<script>alert(1)</script>\u{202e}\nREVOKED: nothing";
        let live = vec![LiveRestriction {
            hop: 1,
            restriction: Restriction {
                id: "0b5d1c2e-7a0f-4a57-9d4c-3c1f6f2a9b10".into(),
                target: mandate_spec::RestrictionTarget::Principal(nasty.into()),
                rules: vec![RestrictionRule::parse_deny("pay:/api/**").unwrap()],
                restricted_at: OffsetDateTime::UNIX_EPOCH,
                by: nasty.into(),
                reason: nasty.into(),
                expires_at: None,
                note: None,
            },
        }];
        let mut text = Vec::new();
        write_restrictions(&mut text, 0, &effective[0], &live).unwrap();
        assert!(text.is_empty(), "hop 0 is above the restriction");
        write_restrictions(&mut text, 1, &effective[1], &live).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(!text
            .chars()
            .any(|c| c != '\n' && mandate_spec::display::is_hidden(c)));
        assert!(text.contains("    deny pay:/api/**"), "{text}");
        assert!(text.ends_with("but: deny pay:/api/**\n"), "{text}");
        let page = restrictions_html(&chain, &effective, &live).into_string();
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.chars().any(mandate_spec::display::is_hidden));
        assert!(page.contains("data-restricted-hop=\"1\""), "{page}");
        assert!(!page.contains("data-restricted-hop=\"0\""), "{page}");
    }

    #[test]
    fn usage_is_read_per_hop_and_limit_in_the_window_of_the_time_given() {
        let chain = chain();
        let limits = chain_limits(&chain);
        let used = HashMap::from([
            (limits[0].key.clone(), 3),
            (limits[1].key.clone(), 5200),
            (limits[2].key.clone(), 5),
        ]);
        let meter = Fixed(used, Default::default());
        // 2026-05-01T09:30:00Z.
        let at = 1_777_627_800;
        let usage = usage_of(&chain, &meter, at).unwrap();
        assert_eq!(*meter.1.lock().unwrap(), [at, at, at]);
        let words: Vec<String> = usage.iter().map(LimitUsage::words).collect();
        assert_eq!(
            words,
            [
                "send_email 10/1h: 3 used, 7 left in the window ending 2026-05-01T10:00:00Z",
                // A counter past its maximum (a store shared with an older
                // rule) shows nothing left, never a wrapped number.
                "pay amount 5000/1d: 5200 used, 0 left in the window ending 2026-05-02T00:00:00Z",
                "send_email 5/1h: 5 used, 0 left in the window ending 2026-05-01T10:00:00Z",
            ]
        );
        assert_eq!(
            usage
                .iter()
                .map(|u| (u.hop, u.agent.as_str()))
                .collect::<Vec<_>>(),
            [(0, "mailer"), (0, "mailer"), (1, "helper")]
        );
        assert_eq!(usage[2].counter, limits[2].key);
        let per_hop = usage_words(chain.hops.len(), &usage);
        assert_eq!(per_hop[0].len(), 2);
        assert_eq!(per_hop[1], [words[2].clone()]);
        let json = serde_json::to_value(&usage[0]).unwrap();
        assert_eq!(
            json,
            json!({
                "hop": 0, "agent": "mailer", "limit": "send_email 10/1h", "used": 3,
                "left": 7, "max": 10, "window_end": "2026-05-01T10:00:00Z",
                "counter": limits[0].key,
            })
        );
    }
}
