//! Grants: what a token (or one hop) allows, as data.
//!
//! A [`Grant`] is one or more [`Alternative`]s; a request is allowed by a
//! grant when it matches at least one alternative. Every hop of a chain holds
//! its own grant and a request must match the grant of *every* hop, so a hop
//! can only narrow (specification §4).
//!
//! The textual forms below are the ones the CLI takes and the chain prints:
//! - an alternative: `ACTION[,ACTION…]:PATTERN`, e.g. `read,list:/api/customers/*`;
//! - a pattern: an exact resource `/api/customers/42`, `PREFIX/*` (exactly one
//!   more non-empty path segment) or `PREFIX/**` (one or more segments);
//! - a constraint: `PARAM<=N`, `PARAM<N`, `PARAM>=N`, `PARAM>N`, `PARAM=VALUE`,
//!   `PARAM starts-with TEXT`, `PARAM ends-with TEXT`, `PARAM in A|B|C`,
//!   `time>=RFC3339`, `time<=RFC3339`;
//! - an approval rule: `ACTION[,ACTION…] when CONDITION[ and CONDITION…] by
//!   NAME=PUBKEY`, e.g. `pay when amount>100 by finance=ed25519/…`, where each
//!   condition is an integer bound (`PARAM<=N`, `<`, `>=`, `>`): requests for
//!   those actions that meet every condition need an approval signed by that
//!   key (specification §14).

use crate::display::{quoted, word};
use crate::SpecError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

mod approval;
mod constraint;
mod limit;
mod pattern;
mod restriction;

pub use approval::ApprovalRule;
pub use constraint::{Constraint, IntCmp, Value};
pub use limit::{
    validate_limits, window_text, Limit, Metered, MAX_LIMIT, MAX_LIMITS_PER_BLOCK, MAX_WINDOW_SECS,
};
pub use pattern::{resource_parent, ResourcePattern};
pub use restriction::{
    Lift, Restriction, RestrictionEntry, RestrictionRule, RestrictionTarget, MAX_RESTRICTION_RULES,
    MAX_RESTRICTION_TEXT,
};

/// Longest action, parameter name or pattern accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest constraint value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// What a token or a hop allows: a request must match one alternative.
///
/// A grant with no alternative and no Datalog checks adds no restriction of
/// its own (a hop that only shortens the expiry); a root grant must have at
/// least one alternative.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Grant {
    /// The alternatives; the request must match at least one.
    pub alternatives: Vec<Alternative>,
    /// Raw Datalog checks (`check if …`), the escape hatch for power users.
    /// Each must pass in addition to the alternatives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datalog: Vec<String>,
    /// Every request must carry a fresh proof signed by the final holder's
    /// key (holder binding, specification §15).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holder_bound: bool,
    /// Usage limits this hop sets on itself and everything delegated from
    /// it (specification §18). Only a root or delegation hop carries them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Limit>,
}

/// One way a request can be allowed: actions × resource pattern × constraints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    /// The allowed actions (at least one).
    pub actions: BTreeSet<String>,
    /// The resources the actions may touch.
    pub resource: ResourcePattern,
    /// Constraints on the request's parameters and time; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Requests within this alternative that meet the rule's conditions
    /// also need an approval signed by the rule's approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
}

impl Grant {
    /// A grant with a single alternative.
    pub fn single(alternative: Alternative) -> Grant {
        Grant {
            alternatives: vec![alternative],
            ..Grant::default()
        }
    }

    /// Adds an approval rule (`ACTIONS when CONDITIONS by NAME=PUBKEY`):
    /// every alternative allowing some of the rule's actions is split into
    /// those actions (with the rule) and the others (unchanged).
    pub fn with_approval(mut self, rule_text: &str) -> Result<Grant, SpecError> {
        let (actions, rule) = ApprovalRule::parse(rule_text)?;
        let mut out = Vec::new();
        let mut applied = false;
        for alt in self.alternatives {
            let (hit, rest): (BTreeSet<String>, BTreeSet<String>) = alt
                .actions
                .iter()
                .cloned()
                .partition(|a| actions.contains(a));
            if hit.is_empty() || alt.approval.is_some() {
                out.push(alt);
                continue;
            }
            applied = true;
            if !rest.is_empty() {
                out.push(Alternative {
                    actions: rest,
                    ..alt.clone()
                });
            }
            out.push(Alternative {
                actions: hit,
                approval: Some(rule.clone()),
                ..alt
            });
        }
        if !applied {
            return Err(SpecError::Grant(format!(
                "approval rule {:?}: no --allow alternative has any of its actions",
                clip(rule_text)
            )));
        }
        self.alternatives = out;
        Ok(self)
    }

    /// Builds a grant from CLI-style text: each `allow` is
    /// `ACTION[,ACTION…]:PATTERN`; every `where` constraint applies to every
    /// alternative.
    pub fn parse<A: AsRef<str>, W: AsRef<str>>(
        allow: &[A],
        where_: &[W],
    ) -> Result<Grant, SpecError> {
        let constraints = where_
            .iter()
            .map(|w| Constraint::parse(w.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if allow.is_empty() && !constraints.is_empty() {
            return Err(SpecError::Grant(
                "--where needs at least one --allow to attach to".into(),
            ));
        }
        let alternatives = allow
            .iter()
            .map(|a| {
                let mut alt = Alternative::parse(a.as_ref())?;
                alt.constraints = constraints.clone();
                Ok(alt)
            })
            .collect::<Result<Vec<_>, SpecError>>()?;
        Ok(Grant {
            alternatives,
            ..Grant::default()
        })
    }

    /// Checks every name, pattern and value against the rules of the
    /// specification (§3). Called before any grant is encoded.
    pub fn validate(&self) -> Result<(), SpecError> {
        for alt in &self.alternatives {
            alt.validate()?;
        }
        validate_limits(&self.limits)
    }

    /// True when the grant restricts nothing by itself.
    pub fn is_empty(&self) -> bool {
        self.alternatives.is_empty()
            && self.datalog.is_empty()
            && !self.holder_bound
            && self.limits.is_empty()
    }

    /// Adds a count limit (`ACTION[,ACTION…] N/WINDOW`, §18).
    pub fn with_limit(mut self, text: &str) -> Result<Grant, SpecError> {
        self.limits.push(Limit::parse_count(text)?);
        validate_limits(&self.limits)?;
        Ok(self)
    }

    /// Adds a budget (`ACTION[,ACTION…] PARAM N/WINDOW`, §18).
    pub fn with_budget(mut self, text: &str) -> Result<Grant, SpecError> {
        self.limits.push(Limit::parse_budget(text)?);
        validate_limits(&self.limits)?;
        Ok(self)
    }

    /// The approval rules of the alternatives that allow `request` and whose
    /// conditions it meets: the approvals it needs at this hop (evaluated in
    /// Rust; the Datalog encoding enforces the same, §14).
    pub fn approvals_needed(&self, request: &crate::Request) -> Vec<&ApprovalRule> {
        self.alternatives
            .iter()
            .filter(|a| a.allows(request))
            .filter_map(|a| a.approval.as_ref())
            .filter(|r| !r.when.iter().any(|c| c.negation_holds(request)))
            .collect()
    }
}

impl Alternative {
    /// Parses `ACTION[,ACTION…]:PATTERN`.
    pub fn parse(text: &str) -> Result<Alternative, SpecError> {
        let (actions, pattern) = text.split_once(':').ok_or_else(|| {
            SpecError::Grant(format!(
                "expected ACTION[,ACTION…]:PATTERN (e.g. read,list:/api/customers/*), got {:?}",
                clip(text)
            ))
        })?;
        let actions: BTreeSet<String> = actions.split(',').map(|a| a.trim().to_string()).collect();
        let alt = Alternative {
            actions,
            resource: ResourcePattern::parse(pattern.trim())?,
            constraints: Vec::new(),
            approval: None,
        };
        alt.validate()?;
        Ok(alt)
    }

    fn validate(&self) -> Result<(), SpecError> {
        if self.actions.is_empty() {
            return Err(SpecError::Grant(
                "an alternative needs at least one action".into(),
            ));
        }
        for a in &self.actions {
            validate_name("action", a)?;
        }
        self.resource.validate()?;
        for c in &self.constraints {
            c.validate()?;
        }
        if let Some(rule) = &self.approval {
            rule.validate()?;
        }
        Ok(())
    }

    /// Whether a request is within this alternative, evaluated in Rust (the
    /// reference semantics that the Datalog encoding must agree with; used by
    /// tests and by `inspect`).
    pub fn allows(&self, request: &crate::Request) -> bool {
        self.actions.contains(&request.action)
            && self.resource.matches(&request.resource)
            && self.constraints.iter().all(|c| c.holds(request))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "(no restriction of its own)");
        }
        let alternatives: Vec<String> = self.alternatives.iter().map(|a| a.to_string()).collect();
        write!(f, "{}", alternatives.join(" OR "))?;
        for (i, d) in self.datalog.iter().enumerate() {
            let sep = if i == 0 && alternatives.is_empty() {
                ""
            } else {
                "; and "
            };
            write!(f, "{sep}Datalog: {}", quoted(d))?;
        }
        if self.holder_bound {
            let sep = if self.alternatives.is_empty() && self.datalog.is_empty() {
                ""
            } else {
                "; "
            };
            write!(f, "{sep}each request proven by the final holder's key")?;
        }
        if !self.limits.is_empty() {
            let sep =
                if self.alternatives.is_empty() && self.datalog.is_empty() && !self.holder_bound {
                    ""
                } else {
                    "; "
                };
            let limits: Vec<String> = self.limits.iter().map(|l| l.to_string()).collect();
            write!(f, "{sep}limits: {}", limits.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Alternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An action holding `:` is quoted: bare, it would read as the end
        // of the actions.
        let actions: Vec<String> = self
            .actions
            .iter()
            .map(|a| {
                if a.contains(':') {
                    quoted(a).to_string()
                } else {
                    word(a).to_string()
                }
            })
            .collect();
        write!(f, "{}:{}", actions.join(","), self.resource)?;
        for c in &self.constraints {
            write!(f, " where {c}")?;
        }
        if let Some(rule) = &self.approval {
            write!(f, ", approval by {}", word(&rule.approver))?;
            if !rule.when.is_empty() {
                let when: Vec<String> = rule.when.iter().map(|c| c.to_string()).collect();
                write!(f, " when {}", when.join(" and "))?;
            }
        }
        Ok(())
    }
}

pub(crate) fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Actions and parameter names: 1 to 256 bytes of `[A-Za-z0-9_.:-]`.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), SpecError> {
    if name.is_empty() {
        return Err(SpecError::Grant(format!("{what} cannot be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SpecError::Grant(format!(
            "{what} longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(SpecError::Grant(format!(
            "{what} {:?} contains {c:?}; allowed are letters, digits and _ . : -",
            clip(name)
        )));
    }
    Ok(())
}

pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_cli_forms() {
        let g = Grant::parse(&["read,list:/api/customers/*"], &["rows<=100"]).unwrap();
        assert_eq!(g.to_string(), "list,read:/api/customers/* where rows<=100");
        let alt = &g.alternatives[0];
        assert_eq!(
            alt.resource,
            ResourcePattern::Children("/api/customers/".into())
        );
        assert_eq!(
            Constraint::parse("to ends-with @company.com").unwrap(),
            Constraint::EndsWith {
                param: "to".into(),
                suffix: "@company.com".into()
            }
        );
        assert_eq!(
            Constraint::parse("currency=EUR").unwrap(),
            Constraint::Equals {
                param: "currency".into(),
                value: Value::Str("EUR".into())
            }
        );
        assert!(matches!(
            Constraint::parse("time>=2026-01-01T00:00:00Z").unwrap(),
            Constraint::NotBefore { .. }
        ));
        assert_eq!(
            ResourcePattern::parse("/api/**").unwrap(),
            ResourcePattern::Descendants("/api/".into())
        );
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            "read",
            ":/x",
            "read:/api/*/orders",
            "read:",
            "re ad:/x",
            "read:/api/../admin/*",
            "read:/api//x",
            "rea\"d:/x",
        ] {
            assert!(Alternative::parse(bad).is_err(), "{bad}");
        }
        for bad in [
            "rows<=ten",
            "rows",
            "time>=yesterday",
            "time<5",
            "x in ",
            "x in 1|a",
            "ti me=1",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_as_documented() {
        let children = ResourcePattern::parse("/api/customers/*").unwrap();
        assert!(children.matches("/api/customers/42"));
        assert!(!children.matches("/api/customers/42/orders"));
        assert!(!children.matches("/api/customers/"));
        assert!(!children.matches("/api/customers"));
        let desc = ResourcePattern::parse("/api/customers/**").unwrap();
        assert!(desc.matches("/api/customers/42/orders"));
        assert!(desc.matches("/api/customers/"));
        assert!(!desc.matches("/api/customersX"));
    }

    /// Found by the `grant_text` fuzz target: Biscuit dates are whole
    /// seconds from 1970, so `time>=1015-01-01T00:00:00Z` was minted as
    /// `time>=1970-01-01T00:00:00Z` (and a fractional second was dropped):
    /// the token said something else than the grant the issuer was given and
    /// showed. A time bound the token cannot carry exactly is refused.
    #[test]
    fn a_time_bound_a_token_cannot_carry_exactly_is_refused() {
        for bad in [
            "time>=1015-01-01T00:00:00Z",
            "time<=1969-12-31T23:59:59Z",
            "time>=2030-01-01T00:00:00.5Z",
            "time<=1970-01-01T00:30:00+01:00",
        ] {
            let err = Constraint::parse(bad).unwrap_err();
            assert!(
                matches!(&err, SpecError::Grant(m) if m.contains("whole seconds from 1970")),
                "{bad}: {err}"
            );
        }
        // Built as data, it is refused when the grant is checked.
        let at = OffsetDateTime::from_unix_timestamp(-1).unwrap();
        let mut g = Grant::parse(&["read:/x"], &[] as &[&str]).unwrap();
        g.alternatives[0]
            .constraints
            .push(Constraint::NotBefore { at });
        assert!(g.validate().is_err());
        for ok in [
            "time>=1970-01-01T00:00:00Z",
            "time<=2030-01-01T01:00:00+01:00",
        ] {
            Constraint::parse(ok).unwrap();
        }
    }
}
