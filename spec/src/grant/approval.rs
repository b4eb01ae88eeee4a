//! Approval rules (§14): which requests need a named approver's signature.

use super::{clip, validate_name, Constraint};
use crate::SpecError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Who must approve which requests of an alternative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// The approver's name, for people (e.g. `finance`).
    pub approver: String,
    /// The approver's Ed25519 public key, `ed25519/<hex>`.
    pub key: String,
    /// Integer bounds that all hold for requests needing approval (none:
    /// every request of the alternative).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Constraint>,
}

impl ApprovalRule {
    /// Parses `ACTION[,ACTION…] when CONDITION[ and CONDITION…] by
    /// NAME=PUBKEY` (or without `when …`: every request of those actions);
    /// returns the actions and the rule.
    pub fn parse(text: &str) -> Result<(BTreeSet<String>, ApprovalRule), SpecError> {
        let bad = |why: &str| {
            SpecError::Grant(format!(
                "approval rule {:?}: {why} (expected e.g. 'pay when amount>100 by finance=ed25519/<hex>')",
                clip(text)
            ))
        };
        let (head, by) = text
            .rsplit_once(" by ")
            .ok_or_else(|| bad("no ` by NAME=PUBKEY`"))?;
        let (name, key) = by
            .trim()
            .split_once('=')
            .ok_or_else(|| bad("the approver is NAME=PUBKEY"))?;
        let key = crate::parse_public_key(key.trim()).map_err(|e| bad(&e.to_string()))?;
        let (actions, when) = match head.split_once(" when ") {
            Some((a, w)) => (a, Some(w)),
            None => (head, None),
        };
        let actions: BTreeSet<String> = actions
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if actions.is_empty() {
            return Err(bad("name at least one action"));
        }
        for a in &actions {
            validate_name("action", a)?;
        }
        let when = match when {
            None => Vec::new(),
            Some(w) => w
                .split(" and ")
                .map(Constraint::parse)
                .collect::<Result<Vec<_>, _>>()?,
        };
        let rule = ApprovalRule {
            approver: name.trim().to_string(),
            key: crate::format_public_key(&key),
            when,
        };
        rule.validate()?;
        Ok((actions, rule))
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        validate_name("approver name", &self.approver)?;
        crate::parse_public_key(&self.key)?;
        for c in &self.when {
            match c {
                Constraint::Int { .. } => c.validate()?,
                other => {
                    return Err(SpecError::Grant(format!(
                        "approval conditions are integer bounds (amount>100), got {other}"
                    )))
                }
            }
        }
        Ok(())
    }
}
