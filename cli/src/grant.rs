//! The grant flags `issue` and `attenuate` share, and the grant they make.

use anyhow::{bail, Context, Result};
use clap::Args;
use mandate_spec::{Capability, Grant};
use std::collections::BTreeSet;

/// The grant flags shared by `issue` and `attenuate`.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// Allowed actions on a resource pattern: ACTION[,ACTION…]:PATTERN,
    /// e.g. read,list:/api/customers/*  (repeat for alternatives).
    #[arg(long, value_name = "ACTIONS:PATTERN")]
    pub(crate) allow: Vec<String>,
    /// A constraint every alternative must meet: PARAM<=N, PARAM>=N, PARAM<N,
    /// PARAM>N, PARAM=VALUE, 'PARAM starts-with TEXT', 'PARAM ends-with TEXT',
    /// 'PARAM in A|B', time>=RFC3339, time<=RFC3339 (repeatable).
    #[arg(long = "where", value_name = "CONSTRAINT")]
    pub(crate) where_: Vec<String>,
    /// A raw Datalog check (`check if …`) added as is: the escape hatch.
    #[arg(long, value_name = "CHECK")]
    pub(crate) datalog: Vec<String>,
    /// Why this token or hop exists.
    #[arg(long, value_name = "TEXT")]
    pub(crate) purpose: Option<String>,
    /// An approval rule: 'ACTIONS when PARAM>N[ and …] by NAME=PUBKEY', e.g.
    /// 'pay when amount>100 by finance=ed25519/…': those requests also need
    /// an approval signed by that key (repeatable).
    #[arg(long, value_name = "RULE")]
    pub(crate) approval: Vec<String>,
    /// Every request must carry a fresh proof signed by the final holder's
    /// key (holder binding).
    #[arg(long)]
    pub(crate) require_proof: bool,
    /// A usage limit: 'ACTION[,ACTION…] N/WINDOW', e.g. 'send_email 10/1h':
    /// at most N allowed requests for those actions per window (WINDOW:
    /// 30s, 10m, 1h, 1d; at most 366d). Windows are fixed and aligned on the
    /// Unix epoch (1h: each hour from :00 UTC). The limit is shared by this
    /// hop's whole subtree: every request made through it or through
    /// anything delegated from it counts (repeatable; at most 8 limits and
    /// budgets per hop).
    #[arg(long, value_name = "LIMIT")]
    pub(crate) limit: Vec<String>,
    /// A budget: 'ACTION[,ACTION…] PARAM N/WINDOW', e.g. 'pay amount
    /// 5000/1d': the sum of the integer parameter PARAM over the allowed
    /// requests for those actions is at most N per window (requests without
    /// PARAM as an integer ≥ 0 are denied). Fixed windows aligned on the
    /// Unix epoch (1d: each UTC day), shared by this hop's whole subtree,
    /// like --limit (repeatable).
    #[arg(long, value_name = "BUDGET")]
    pub(crate) budget: Vec<String>,
}

pub(crate) fn grant(g: &GrantArgs) -> Result<Grant> {
    let mut grant = Grant::parse(&g.allow, &g.where_)?;
    for rule in &g.approval {
        grant = grant.with_approval(rule).context("--approval")?;
    }
    grant.datalog = g.datalog.clone();
    grant.holder_bound = g.require_proof;
    for text in &g.limit {
        grant = grant
            .with_limit(text)
            .with_context(|| format!("--limit {text:?}"))?;
    }
    for text in &g.budget {
        grant = grant
            .with_budget(text)
            .with_context(|| format!("--budget {text:?}"))?;
    }
    Ok(grant)
}

/// Refuses a limit naming an action the hop cannot perform: it would never
/// count anything, which is almost always a typo (`send_mail` for
/// `send_email`) that leaves the real action unlimited. `above` is the
/// effective capability the hop is added under (`None` for a root).
pub(crate) fn check_limits_meter(grant: &Grant, above: Option<&Capability>) -> Result<()> {
    let Some(allowed) = allowed_actions(grant, above) else {
        return Ok(());
    };
    for limit in &grant.limits {
        let flag = if limit.param.is_some() {
            "--budget"
        } else {
            "--limit"
        };
        if let Some(a) = limit.actions.iter().find(|a| !allowed.contains(*a)) {
            bail!(
                "{flag} {:?}: this hop cannot perform action {a:?} (it allows {}), so the \
                 limit would never count it",
                limit.to_string(),
                words(&allowed)
            );
        }
    }
    Ok(())
}

/// The actions a hop with `grant` can perform under `above`, when the
/// alternatives say (`None` when only raw Datalog restricts them).
fn allowed_actions(grant: &Grant, above: Option<&Capability>) -> Option<BTreeSet<String>> {
    let actions = |alts: &[mandate_spec::Alternative]| -> BTreeSet<String> {
        alts.iter()
            .flat_map(|a| a.actions.iter().cloned())
            .collect()
    };
    let own = (!grant.alternatives.is_empty()).then(|| actions(&grant.alternatives));
    let inherited = match above {
        Some(cap) if cap.nothing => Some(BTreeSet::new()),
        Some(cap) if !cap.alternatives.is_empty() => Some(actions(&cap.alternatives)),
        _ => None,
    };
    match (own, inherited) {
        (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
        (a, b) => a.or(b),
    }
}

fn words(actions: &BTreeSet<String>) -> String {
    if actions.is_empty() {
        return "no action".into();
    }
    let quoted: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
    quoted.join(", ")
}
