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
use crate::{request::check_resource, SpecError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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

/// Which resources an alternative covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ResourcePattern {
    /// Exactly this resource.
    Exact(String),
    /// `PREFIX/*`: a resource directly below the directory (held with its
    /// trailing `/`), one non-empty segment, no deeper.
    Children(String),
    /// `PREFIX/**`: any resource that starts with the directory (held with its
    /// trailing `/`): the directory itself and everything below it.
    Descendants(String),
}

/// A condition on one typed request parameter, or on the request time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Constraint {
    /// `param <op> bound` on an integer parameter.
    Int {
        /// Parameter name.
        param: String,
        /// Comparison.
        cmp: IntCmp,
        /// Bound.
        bound: i64,
    },
    /// The parameter equals this value (an integer or a string).
    Equals {
        /// Parameter name.
        param: String,
        /// Required value.
        value: Value,
    },
    /// A string parameter starts with this prefix.
    StartsWith {
        /// Parameter name.
        param: String,
        /// Required prefix.
        prefix: String,
    },
    /// A string parameter ends with this suffix.
    EndsWith {
        /// Parameter name.
        param: String,
        /// Required suffix.
        suffix: String,
    },
    /// The parameter is one of these values (integers or strings).
    OneOf {
        /// Parameter name.
        param: String,
        /// Allowed values (at least one).
        values: BTreeSet<Value>,
    },
    /// The request time is at or after this instant.
    NotBefore {
        /// Start of the window.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The request time is at or before this instant.
    NotAfter {
        /// End of the window.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// Integer comparisons a constraint can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntCmp {
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `>`
    #[serde(rename = ">")]
    Gt,
}

/// A typed request parameter value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A 64-bit signed integer.
    Int(i64),
    /// A UTF-8 string.
    Str(String),
}

impl Value {
    /// Types text the way the CLI does: an integer when it is an integer
    /// written canonically (`0`, `42`, `-7`: no sign `+`, no leading zeros,
    /// within i64), a string otherwise — so `007` stays the string `"007"`.
    pub fn infer(text: &str) -> Value {
        match text.parse::<i64>() {
            Ok(i) if i.to_string() == text => Value::Int(i),
            _ => Value::Str(text.to_string()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{}", quoted(s)),
        }
    }
}

impl IntCmp {
    /// The comparison that holds exactly when this one does not.
    pub fn negated(self) -> IntCmp {
        match self {
            IntCmp::Le => IntCmp::Gt,
            IntCmp::Lt => IntCmp::Ge,
            IntCmp::Ge => IntCmp::Lt,
            IntCmp::Gt => IntCmp::Le,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            IntCmp::Le => "<=",
            IntCmp::Lt => "<",
            IntCmp::Ge => ">=",
            IntCmp::Gt => ">",
        }
    }
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
        Ok(())
    }

    /// True when the grant restricts nothing by itself.
    pub fn is_empty(&self) -> bool {
        self.alternatives.is_empty() && self.datalog.is_empty() && !self.holder_bound
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

impl ResourcePattern {
    /// Parses an exact resource, `PREFIX/*` or `PREFIX/**`.
    pub fn parse(text: &str) -> Result<ResourcePattern, SpecError> {
        let pattern = if let Some(prefix) = text.strip_suffix("/**") {
            ResourcePattern::Descendants(format!("{prefix}/"))
        } else if let Some(prefix) = text.strip_suffix("/*") {
            ResourcePattern::Children(format!("{prefix}/"))
        } else {
            ResourcePattern::Exact(text.to_string())
        };
        pattern.validate()?;
        Ok(pattern)
    }

    fn validate(&self) -> Result<(), SpecError> {
        let (text, base) = match self {
            ResourcePattern::Exact(s) => (s.as_str(), s.as_str()),
            ResourcePattern::Children(d) | ResourcePattern::Descendants(d) => {
                if !d.starts_with('/') || !d.ends_with('/') {
                    return Err(SpecError::Grant(format!(
                        "a wildcard pattern must be a path like /api/customers/*, got {:?}",
                        clip(d)
                    )));
                }
                (d.as_str(), d.trim_end_matches('/'))
            }
        };
        if text.is_empty() {
            return Err(SpecError::Grant(
                "a resource pattern cannot be empty".into(),
            ));
        }
        if text.len() > MAX_NAME_LEN {
            return Err(SpecError::Grant(format!(
                "resource pattern longer than {MAX_NAME_LEN} bytes"
            )));
        }
        if text.contains('*') {
            return Err(SpecError::Grant(format!(
                "`*` is only allowed as a final /* or /** segment, got {:?}",
                clip(text)
            )));
        }
        if base.is_empty() {
            // "/*" or "/**": everything under the root.
            return Ok(());
        }
        check_resource(base).map_err(|e| match e {
            SpecError::Request(m) => SpecError::Grant(format!("pattern {:?}: {m}", clip(text))),
            other => other,
        })
    }

    /// Whether a (canonical) resource matches the pattern.
    pub fn matches(&self, resource: &str) -> bool {
        match self {
            ResourcePattern::Exact(s) => resource == s,
            ResourcePattern::Children(d) => resource_parent(resource) == Some(d.as_str()),
            ResourcePattern::Descendants(d) => resource.starts_with(d.as_str()),
        }
    }
}

/// The directory of a path resource (everything up to and including the last
/// `/`), when the last segment is not empty. The verifier supplies it as the
/// two-term `resource($dir, $name)` fact; `PREFIX/*` patterns match on it.
pub fn resource_parent(resource: &str) -> Option<&str> {
    let idx = resource.rfind('/')?;
    if idx + 1 == resource.len() || !resource.starts_with('/') {
        return None;
    }
    Some(&resource[..=idx])
}

impl Constraint {
    /// Parses one `--where` constraint (see the module docs for the forms).
    pub fn parse(text: &str) -> Result<Constraint, SpecError> {
        let t = text.trim();
        for (word, build) in [(" starts-with ", 0u8), (" ends-with ", 1), (" in ", 2)] {
            if let Some((param, value)) = t.split_once(word) {
                let param = param.trim().to_string();
                let value = value.to_string();
                let c = match build {
                    0 => Constraint::StartsWith {
                        param,
                        prefix: value,
                    },
                    1 => Constraint::EndsWith {
                        param,
                        suffix: value,
                    },
                    _ => Constraint::OneOf {
                        param,
                        values: value.split('|').map(Value::infer).collect(),
                    },
                };
                c.validate()?;
                return Ok(c);
            }
        }
        for (op, cmp) in [
            ("<=", Some(IntCmp::Le)),
            (">=", Some(IntCmp::Ge)),
            ("<", Some(IntCmp::Lt)),
            (">", Some(IntCmp::Gt)),
            ("=", None),
        ] {
            let Some((param, value)) = t.split_once(op) else {
                continue;
            };
            let param = param.trim();
            let value = value.trim();
            if param == "time" {
                let at = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
                    SpecError::Grant(format!(
                        "time bounds are RFC 3339 instants (2026-12-31T23:59:59Z), got {:?}",
                        clip(value)
                    ))
                })?;
                let c = match cmp {
                    Some(IntCmp::Ge) => Constraint::NotBefore { at },
                    Some(IntCmp::Le) => Constraint::NotAfter { at },
                    _ => return Err(SpecError::Grant("time takes only >= and <=".into())),
                };
                c.validate()?;
                return Ok(c);
            }
            let c = match cmp {
                Some(cmp) => Constraint::Int {
                    param: param.to_string(),
                    cmp,
                    bound: value.parse().map_err(|_| {
                        SpecError::Grant(format!(
                            "{param}{} needs an integer bound, got {:?}",
                            op,
                            clip(value)
                        ))
                    })?,
                },
                None => Constraint::Equals {
                    param: param.to_string(),
                    value: Value::infer(value),
                },
            };
            c.validate()?;
            return Ok(c);
        }
        Err(SpecError::Grant(format!(
            "expected PARAM<=N, PARAM>=N, PARAM<N, PARAM>N, PARAM=VALUE, PARAM starts-with TEXT, \
             PARAM ends-with TEXT, PARAM in A|B, time>=RFC3339 or time<=RFC3339; got {:?}",
            clip(t)
        )))
    }

    /// The parameter this constraint reads (`None` for time bounds).
    pub fn param(&self) -> Option<&str> {
        match self {
            Constraint::Int { param, .. }
            | Constraint::Equals { param, .. }
            | Constraint::StartsWith { param, .. }
            | Constraint::EndsWith { param, .. }
            | Constraint::OneOf { param, .. } => Some(param),
            Constraint::NotBefore { .. } | Constraint::NotAfter { .. } => None,
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        // Biscuit dates are whole seconds from 1970: a bound the token
        // cannot carry exactly would be minted as another one.
        if let Constraint::NotBefore { at } | Constraint::NotAfter { at } = self {
            if at.unix_timestamp() < 0 || at.nanosecond() != 0 {
                return Err(SpecError::Grant(format!(
                    "time bounds are whole seconds from 1970 on (what a token can carry), got {}",
                    rfc3339(at)
                )));
            }
        }
        if let Some(p) = self.param() {
            validate_name("parameter name", p)?;
            if p == "time" {
                return Err(SpecError::Grant(
                    "`time` is reserved for the request time: use time>=… or time<=…".into(),
                ));
            }
        }
        let check_value = |v: &str| {
            if v.len() > MAX_VALUE_LEN {
                Err(SpecError::Grant(format!(
                    "constraint value longer than {MAX_VALUE_LEN} bytes"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Constraint::Equals {
                value: Value::Str(s),
                ..
            } => check_value(s),
            Constraint::StartsWith { prefix: s, .. } | Constraint::EndsWith { suffix: s, .. } => {
                check_value(s)
            }
            Constraint::OneOf { values, .. } => {
                if values.is_empty() {
                    return Err(SpecError::Grant("`in` needs at least one value".into()));
                }
                // Biscuit sets are homogeneous: a token holding `{1, "a"}`
                // does not deserialize (and biscuit-auth panics appending it).
                let ints = values.iter().filter(|v| matches!(v, Value::Int(_))).count();
                if ints != 0 && ints != values.len() {
                    return Err(SpecError::Grant(format!(
                        "`{self}` mixes integer and string values; `in` values must all be \
                         integers or all be strings"
                    )));
                }
                values.iter().try_for_each(|v| match v {
                    Value::Str(s) => check_value(s),
                    Value::Int(_) => Ok(()),
                })
            }
            _ => Ok(()),
        }
    }

    /// For an integer bound, whether its negation holds (`amount>100`:
    /// the request has an integer `amount` and it is at most 100). This is
    /// what exempts a request from an approval rule (§14.2): a request
    /// without the parameter, or with a string, is exempted by no
    /// condition, so the rule fails closed. `false` for other constraints.
    pub fn negation_holds(&self, request: &crate::Request) -> bool {
        match self {
            Constraint::Int { param, cmp, bound } => Constraint::Int {
                param: param.clone(),
                cmp: cmp.negated(),
                bound: *bound,
            }
            .holds(request),
            _ => false,
        }
    }

    /// Reference semantics in Rust (see [`Alternative::allows`]). A parameter
    /// the request does not carry, or carries with the wrong type, fails.
    pub fn holds(&self, request: &crate::Request) -> bool {
        let param = |name: &str| request.params.get(name);
        match self {
            Constraint::Int {
                param: p,
                cmp,
                bound,
            } => match param(p) {
                Some(Value::Int(v)) => match cmp {
                    IntCmp::Le => v <= bound,
                    IntCmp::Lt => v < bound,
                    IntCmp::Ge => v >= bound,
                    IntCmp::Gt => v > bound,
                },
                _ => false,
            },
            Constraint::Equals { param: p, value } => param(p) == Some(value),
            Constraint::StartsWith { param: p, prefix } => {
                matches!(param(p), Some(Value::Str(s)) if s.starts_with(prefix.as_str()))
            }
            Constraint::EndsWith { param: p, suffix } => {
                matches!(param(p), Some(Value::Str(s)) if s.ends_with(suffix.as_str()))
            }
            Constraint::OneOf { param: p, values } => param(p).is_some_and(|v| values.contains(v)),
            Constraint::NotBefore { at } => request.time_unix() >= at.unix_timestamp(),
            Constraint::NotAfter { at } => request.time_unix() <= at.unix_timestamp(),
        }
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

    fn validate(&self) -> Result<(), SpecError> {
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

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePattern::Exact(s) => write!(f, "{}", word(s)),
            ResourcePattern::Children(d) => write!(f, "{}*", word(d)),
            ResourcePattern::Descendants(d) => write!(f, "{}**", word(d)),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Int { param, cmp, bound } => {
                write!(f, "{}{}{bound}", word(param), cmp.symbol())
            }
            Constraint::Equals { param, value } => write!(f, "{}={value}", word(param)),
            Constraint::StartsWith { param, prefix } => {
                write!(f, "{} starts-with {}", word(param), quoted(prefix))
            }
            Constraint::EndsWith { param, suffix } => {
                write!(f, "{} ends-with {}", word(param), quoted(suffix))
            }
            Constraint::OneOf { param, values } => {
                let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                write!(f, "{} in {}", word(param), v.join("|"))
            }
            Constraint::NotBefore { at } => write!(f, "time>={}", rfc3339(at)),
            Constraint::NotAfter { at } => write!(f, "time<={}", rfc3339(at)),
        }
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
