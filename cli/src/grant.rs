//! The grant flags `issue` and `attenuate` share, and the grant they make.

use anyhow::{Context, Result};
use clap::Args;
use mandate_spec::Grant;

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
}

pub(crate) fn grant(g: &GrantArgs) -> Result<Grant> {
    let mut grant = Grant::parse(&g.allow, &g.where_)?;
    for rule in &g.approval {
        grant = grant.with_approval(rule).context("--approval")?;
    }
    grant.datalog = g.datalog.clone();
    grant.holder_bound = g.require_proof;
    Ok(grant)
}
