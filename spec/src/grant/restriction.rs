//! Live restrictions (specification §19): rules an operator adds to a live
//! delegation — a hop, a token family, an agent key or a principal — that
//! take something away without reissuing anything.
//!
//! A restriction's rules can only narrow what the chain already allows:
//! - `deny ACTIONS:PATTERN[ where C[ and C…]]`: those requests are denied (a
//!   request the conditions cannot be evaluated on is denied too);
//! - `require-approval ACTIONS[ when C[ and C…]] by NAME=KEY`: those
//!   requests also need an approval signed by KEY (§14);
//! - `only [ACTIONS:PATTERN where ]C[ and C…]`: requests (within the scope,
//!   when one is given) must meet every constraint;
//! - `limit ACTIONS N/WINDOW`, `budget ACTIONS PARAM N/WINDOW`: a usage
//!   limit (§18) shared by every request the restriction applies to.
//!
//! The verifier evaluates them in Rust, on the request alone (they are not
//! Datalog): each rule yields a denial, an approval requirement, a limit, or
//! nothing — never an allowance.

use super::{clip, validate_name, ApprovalRule, Constraint, Limit, ResourcePattern, Value};
use crate::display::word;
use crate::{Request, SpecError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use time::OffsetDateTime;

/// Most rules one restriction may carry.
pub const MAX_RESTRICTION_RULES: usize = 16;

/// Longest `by`, `reason` or `note` of a restriction or lift, in bytes.
pub const MAX_RESTRICTION_TEXT: usize = 4096;

/// What a restriction applies to (§19.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum RestrictionTarget {
    /// A block's revocation id (64 bytes, hex): that hop and every token
    /// derived from it.
    Block(String),
    /// A root token id: the whole token family.
    Token(String),
    /// An agent's Ed25519 public key (32 bytes, hex): every chain in which
    /// it is a hop's agent.
    Agent(String),
    /// A principal: every token minted for it.
    Principal(String),
}

impl RestrictionTarget {
    /// Checks the target's form: hex of the right length for a block or an
    /// agent key, a non-empty bounded text for a family or a principal.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |why: String| Err(SpecError::Grant(format!("restriction target: {why}")));
        match self {
            RestrictionTarget::Block(h) => match hex::decode(h) {
                Ok(b) if b.len() == 64 && h.bytes().all(|c| !c.is_ascii_uppercase()) => Ok(()),
                _ => bad(format!(
                    "a revocation id is 128 lowercase hex digits, got {:?}",
                    clip(h)
                )),
            },
            RestrictionTarget::Agent(h) => match hex::decode(h) {
                Ok(b) if b.len() == 32 && h.bytes().all(|c| !c.is_ascii_uppercase()) => Ok(()),
                _ => bad(format!(
                    "an agent key is 64 lowercase hex digits, got {:?}",
                    clip(h)
                )),
            },
            RestrictionTarget::Token(t) | RestrictionTarget::Principal(t) => {
                if t.is_empty() || t.len() > super::MAX_NAME_LEN {
                    bad(format!(
                        "a token id or principal is 1 to {} bytes",
                        super::MAX_NAME_LEN
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The target's kind: `block`, `token`, `agent` or `principal`.
    pub fn kind(&self) -> &'static str {
        match self {
            RestrictionTarget::Block(_) => "block",
            RestrictionTarget::Token(_) => "token",
            RestrictionTarget::Agent(_) => "agent",
            RestrictionTarget::Principal(_) => "principal",
        }
    }

    /// The target's value as stored (hex for blocks and keys).
    pub fn value(&self) -> &str {
        match self {
            RestrictionTarget::Block(v)
            | RestrictionTarget::Token(v)
            | RestrictionTarget::Agent(v)
            | RestrictionTarget::Principal(v) => v,
        }
    }
}

impl fmt::Display for RestrictionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestrictionTarget::Block(b) => write!(f, "revocation id {b}"),
            RestrictionTarget::Token(t) => write!(f, "token family {}", word(t)),
            RestrictionTarget::Agent(k) => write!(f, "agent key ed25519/{k}"),
            RestrictionTarget::Principal(p) => write!(f, "principal {}", word(p)),
        }
    }
}

/// One rule of a restriction (§19.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RestrictionRule {
    /// Requests for these actions on this pattern that meet every condition
    /// (or that the conditions cannot be evaluated on) are denied.
    Deny {
        /// The actions (at least one).
        actions: BTreeSet<String>,
        /// The resources.
        resource: ResourcePattern,
        /// Conditions that narrow what is denied (none: every such request).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        when: Vec<Constraint>,
    },
    /// Requests for these actions meeting every condition of the rule need
    /// an approval signed by the rule's key (§14).
    RequireApproval {
        /// The actions (at least one).
        actions: BTreeSet<String>,
        /// Who approves, and when one is needed.
        approval: ApprovalRule,
    },
    /// Requests (within the scope, when one is given) must meet every
    /// constraint; a request that does not is denied.
    Only {
        /// The actions in scope (none: every action).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actions: Option<BTreeSet<String>>,
        /// The resources in scope (none: every resource).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<ResourcePattern>,
        /// The constraints (at least one).
        constraints: Vec<Constraint>,
    },
    /// A usage limit shared by every request the restriction applies to.
    Limit {
        /// The limit.
        limit: Limit,
    },
}

impl RestrictionRule {
    /// Parses a deny rule: `ACTION[,ACTION…]:PATTERN[ where C[ and C…]]`.
    pub fn parse_deny(text: &str) -> Result<RestrictionRule, SpecError> {
        let (scope, when) = match text.split_once(" where ") {
            Some((s, w)) => (s, parse_conditions(w)?),
            None => (text, Vec::new()),
        };
        let alt = super::Alternative::parse(scope)?;
        let rule = RestrictionRule::Deny {
            actions: alt.actions,
            resource: alt.resource,
            when,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Parses an approval requirement: `ACTION[,ACTION…][ when C[ and C…]]
    /// by NAME=PUBKEY` (the approval rule syntax of §14.1).
    pub fn parse_require_approval(text: &str) -> Result<RestrictionRule, SpecError> {
        let (actions, approval) = ApprovalRule::parse(text)?;
        let rule = RestrictionRule::RequireApproval { actions, approval };
        rule.validate()?;
        Ok(rule)
    }

    /// Parses a constraint rule: `[ACTION[,ACTION…]:PATTERN where ]C[ and
    /// C…]`.
    pub fn parse_only(text: &str) -> Result<RestrictionRule, SpecError> {
        let scoped = text
            .split_once(" where ")
            .filter(|(scope, _)| scope.contains(':') && !scope.contains(' '));
        let rule = match scoped {
            Some((scope, constraints)) => {
                let alt = super::Alternative::parse(scope)?;
                RestrictionRule::Only {
                    actions: Some(alt.actions),
                    resource: Some(alt.resource),
                    constraints: parse_conditions(constraints)?,
                }
            }
            None => RestrictionRule::Only {
                actions: None,
                resource: None,
                constraints: parse_conditions(text)?,
            },
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Parses a count limit (`ACTION[,ACTION…] N/WINDOW`, §18.1).
    pub fn parse_limit(text: &str) -> Result<RestrictionRule, SpecError> {
        Ok(RestrictionRule::Limit {
            limit: Limit::parse_count(text)?,
        })
    }

    /// Parses a budget (`ACTION[,ACTION…] PARAM N/WINDOW`, §18.1).
    pub fn parse_budget(text: &str) -> Result<RestrictionRule, SpecError> {
        Ok(RestrictionRule::Limit {
            limit: Limit::parse_budget(text)?,
        })
    }

    /// Checks names, patterns, constraints and bounds.
    pub fn validate(&self) -> Result<(), SpecError> {
        let actions_ok = |actions: &BTreeSet<String>| {
            if actions.is_empty() {
                return Err(SpecError::Grant(
                    "a restriction rule needs at least one action".into(),
                ));
            }
            actions.iter().try_for_each(|a| validate_name("action", a))
        };
        match self {
            RestrictionRule::Deny {
                actions,
                resource,
                when,
            } => {
                actions_ok(actions)?;
                resource.validate()?;
                when.iter().try_for_each(Constraint::validate)
            }
            RestrictionRule::RequireApproval { actions, approval } => {
                actions_ok(actions)?;
                approval.validate()
            }
            RestrictionRule::Only {
                actions,
                resource,
                constraints,
            } => {
                if let Some(a) = actions {
                    actions_ok(a)?;
                }
                if let Some(r) = resource {
                    r.validate()?;
                }
                if constraints.is_empty() {
                    return Err(SpecError::Grant(
                        "an `only` rule needs at least one constraint".into(),
                    ));
                }
                constraints.iter().try_for_each(Constraint::validate)
            }
            RestrictionRule::Limit { limit } => limit.validate(),
        }
    }

    /// Whether this rule denies `request` (a `deny` rule it falls under, or
    /// an `only` rule whose constraints it does not meet).
    pub fn denies(&self, request: &Request) -> bool {
        match self {
            RestrictionRule::Deny {
                actions,
                resource,
                when,
            } => {
                actions.contains(&request.action)
                    && resource.matches(&request.resource)
                    && !when.iter().any(|c| exempts(c, request))
            }
            RestrictionRule::Only {
                actions,
                resource,
                constraints,
            } => {
                actions.as_ref().is_none_or(|a| a.contains(&request.action))
                    && resource
                        .as_ref()
                        .is_none_or(|r| r.matches(&request.resource))
                    && !constraints.iter().all(|c| c.holds(request))
            }
            RestrictionRule::RequireApproval { .. } | RestrictionRule::Limit { .. } => false,
        }
    }

    /// The approval `request` needs under this rule, if it needs one: a
    /// request for one of its actions that no condition exempts (one the
    /// conditions cannot be evaluated on needs it: fail closed).
    pub fn approval_needed(&self, request: &Request) -> Option<&ApprovalRule> {
        match self {
            RestrictionRule::RequireApproval { actions, approval }
                if actions.contains(&request.action)
                    && !approval.when.iter().any(|c| exempts(c, request)) =>
            {
                Some(approval)
            }
            _ => None,
        }
    }

    /// The usage limit this rule sets, if it is one.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            RestrictionRule::Limit { limit } => Some(limit),
            _ => None,
        }
    }
}

/// Whether `request` clearly falls outside condition `c`: it carries the
/// parameter with the condition's type and the condition does not hold (a
/// time condition: the request time is outside it). A request without the
/// parameter, or with another type, is exempted by nothing: a rule with
/// conditions fails closed.
fn exempts(c: &Constraint, request: &Request) -> bool {
    let typed = |param: &str, int: Option<bool>| {
        matches!(
            (request.params.get(param), int),
            (Some(Value::Int(_)), Some(true))
                | (Some(Value::Str(_)), Some(false))
                | (Some(_), None)
        )
    };
    let evaluable = match c {
        Constraint::Int { param, .. } => typed(param, Some(true)),
        Constraint::StartsWith { param, .. } | Constraint::EndsWith { param, .. } => {
            typed(param, Some(false))
        }
        Constraint::Equals { param, value } => typed(param, Some(matches!(value, Value::Int(_)))),
        Constraint::OneOf { param, values } => typed(
            param,
            values.iter().next().map(|v| matches!(v, Value::Int(_))),
        ),
        Constraint::NotBefore { .. } | Constraint::NotAfter { .. } => true,
    };
    evaluable && !c.holds(request)
}

fn parse_conditions(text: &str) -> Result<Vec<Constraint>, SpecError> {
    text.split(" and ").map(Constraint::parse).collect()
}

fn actions_text(actions: &BTreeSet<String>) -> String {
    actions
        .iter()
        .map(|a| word(a).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn conditions_text(cs: &[Constraint]) -> String {
    cs.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

impl fmt::Display for RestrictionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestrictionRule::Deny {
                actions,
                resource,
                when,
            } => {
                write!(f, "deny {}:{resource}", actions_text(actions))?;
                if !when.is_empty() {
                    write!(f, " where {}", conditions_text(when))?;
                }
                Ok(())
            }
            RestrictionRule::RequireApproval { actions, approval } => {
                write!(f, "require-approval {}", actions_text(actions))?;
                if !approval.when.is_empty() {
                    write!(f, " when {}", conditions_text(&approval.when))?;
                }
                write!(f, " by {}={}", word(&approval.approver), approval.key)
            }
            RestrictionRule::Only {
                actions,
                resource,
                constraints,
            } => {
                write!(f, "only ")?;
                if actions.is_some() || resource.is_some() {
                    let a = actions.as_ref().map_or("*".to_string(), actions_text);
                    let r = resource
                        .as_ref()
                        .map_or("/**".to_string(), |r| r.to_string());
                    write!(f, "{a}:{r} where ")?;
                }
                write!(f, "{}", conditions_text(constraints))
            }
            RestrictionRule::Limit { limit } => write!(f, "{} {limit}", limit.kind()),
        }
    }
}

/// A live restriction (§19): rules applied to everything its target
/// reaches, from when a verifier takes it in until it is lifted or its
/// target expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    /// A UUID naming it (what a lift names).
    pub id: String,
    /// What it applies to.
    pub target: RestrictionTarget,
    /// Its rules (1 to [`MAX_RESTRICTION_RULES`]).
    pub rules: Vec<RestrictionRule>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub restricted_at: OffsetDateTime,
    /// Who made it.
    pub by: String,
    /// Why, in their words.
    pub reason: String,
    /// When its target expires (after that it can be pruned); `None` for
    /// targets without an expiry (agent keys, principals).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// What the target was, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Restriction {
    /// Checks every part: the id is a UUID, the target well formed, 1 to
    /// [`MAX_RESTRICTION_RULES`] valid rules, bounded texts.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_id(&self.id)?;
        self.target.validate()?;
        if self.rules.is_empty() || self.rules.len() > MAX_RESTRICTION_RULES {
            return Err(SpecError::Grant(format!(
                "a restriction carries 1 to {MAX_RESTRICTION_RULES} rules, got {}",
                self.rules.len()
            )));
        }
        self.rules.iter().try_for_each(RestrictionRule::validate)?;
        let limits: Vec<Limit> = self
            .rules
            .iter()
            .filter_map(|r| r.limit().cloned())
            .collect();
        super::validate_limits(&limits)?;
        validate_text("by", &self.by)?;
        validate_text("reason", &self.reason)?;
        if let Some(n) = &self.note {
            validate_text("note", n)?;
        }
        Ok(())
    }

    /// The counter name of a limit this restriction sets: like a hop's
    /// (§18.2), named by `restriction:<id>` instead of a revocation id, so
    /// it is shared by every request the restriction applies to.
    pub fn counter_key(&self, limit: &Limit) -> String {
        limit.counter_key(&format!("restriction:{}", self.id))
    }
}

/// Lifts a restriction (§19.3): once lifted, the restriction with that id
/// never applies again, even if its entry is received again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lift {
    /// The restriction's id.
    pub id: String,
    /// When it was lifted.
    #[serde(with = "time::serde::rfc3339")]
    pub lifted_at: OffsetDateTime,
    /// Who lifted it.
    pub by: String,
    /// Why.
    pub reason: String,
}

impl Lift {
    /// Checks the id and the texts.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_id(&self.id)?;
        validate_text("by", &self.by)?;
        validate_text("reason", &self.reason)
    }
}

/// A restriction or a lift, as the feed carries them (§19.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RestrictionEntry {
    /// A new restriction.
    Restrict(Restriction),
    /// A restriction lifted.
    Lift(Lift),
}

impl RestrictionEntry {
    /// The restriction id the entry concerns.
    pub fn id(&self) -> &str {
        match self {
            RestrictionEntry::Restrict(r) => &r.id,
            RestrictionEntry::Lift(l) => &l.id,
        }
    }

    /// Validates the restriction or the lift.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            RestrictionEntry::Restrict(r) => r.validate(),
            RestrictionEntry::Lift(l) => l.validate(),
        }
    }
}

fn validate_id(id: &str) -> Result<(), SpecError> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(()),
        _ => Err(SpecError::Grant(format!(
            "a restriction id is a lowercase hyphenated UUID, got {:?}",
            clip(id)
        ))),
    }
}

fn validate_text(what: &str, text: &str) -> Result<(), SpecError> {
    if text.len() > MAX_RESTRICTION_TEXT {
        return Err(SpecError::Grant(format!(
            "a restriction's {what} is at most {MAX_RESTRICTION_TEXT} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(action: &str, resource: &str, params: &[(&str, Value)]) -> Request {
        let mut r = Request::new(action, resource);
        for (k, v) in params {
            r.params.insert((*k).to_string(), v.clone());
        }
        r
    }

    #[test]
    fn deny_rules_match_scope_and_fail_closed_on_missing_parameters() {
        let d = RestrictionRule::parse_deny("send:/api/slack/**").unwrap();
        assert!(d.denies(&req("send", "/api/slack/general", &[])));
        assert!(!d.denies(&req("read", "/api/slack/general", &[])));
        assert!(!d.denies(&req("send", "/api/email/x", &[])));
        assert_eq!(d.to_string(), "deny send:/api/slack/**");
        let d = RestrictionRule::parse_deny("pay:/api/** where amount>100").unwrap();
        assert!(d.denies(&req("pay", "/api/p", &[("amount", Value::Int(101))])));
        assert!(!d.denies(&req("pay", "/api/p", &[("amount", Value::Int(100))])));
        // Cannot be evaluated: denied.
        assert!(d.denies(&req("pay", "/api/p", &[])));
        assert!(d.denies(&req("pay", "/api/p", &[("amount", Value::Str("5".into()))])));
    }

    #[test]
    fn only_rules_deny_what_does_not_meet_them() {
        let o = RestrictionRule::parse_only("rows<=10").unwrap();
        assert!(!o.denies(&req("query", "/db/t", &[("rows", Value::Int(10))])));
        assert!(o.denies(&req("query", "/db/t", &[("rows", Value::Int(11))])));
        assert!(o.denies(&req("query", "/db/t", &[])));
        let o = RestrictionRule::parse_only("query:/db/** where rows<=10").unwrap();
        assert!(!o.denies(&req("read", "/db/t", &[])), "out of scope");
        assert!(o.denies(&req("query", "/db/t", &[("rows", Value::Int(11))])));
        assert_eq!(o.to_string(), "only query:/db/** where rows<=10");
        assert!(RestrictionRule::parse_only("").is_err());
    }

    #[test]
    fn approval_rules_apply_unless_a_condition_exempts() {
        let key = format!("ed25519/{}", "11".repeat(32));
        let a =
            RestrictionRule::parse_require_approval(&format!("schedule by alice={key}")).unwrap();
        assert!(a.approval_needed(&req("schedule", "/cal", &[])).is_some());
        assert!(a.approval_needed(&req("read", "/cal", &[])).is_none());
        assert!(!a.denies(&req("schedule", "/cal", &[])));
        let a = RestrictionRule::parse_require_approval(&format!("pay when amount>100 by f={key}"))
            .unwrap();
        assert!(a
            .approval_needed(&req("pay", "/p", &[("amount", Value::Int(50))]))
            .is_none());
        assert!(a.approval_needed(&req("pay", "/p", &[])).is_some());
    }

    #[test]
    fn restrictions_validate_ids_targets_and_rule_counts() {
        let mut r = Restriction {
            id: uuid::Uuid::new_v4().to_string(),
            target: RestrictionTarget::Principal("user:alice".into()),
            rules: vec![RestrictionRule::parse_deny("send:/**").unwrap()],
            restricted_at: OffsetDateTime::UNIX_EPOCH,
            by: "ops".into(),
            reason: "r".into(),
            expires_at: None,
            note: None,
        };
        r.validate().unwrap();
        r.id = "not-a-uuid".into();
        assert!(r.validate().is_err());
        r.id = uuid::Uuid::new_v4().to_string().to_uppercase();
        assert!(r.validate().is_err(), "one spelling per id");
        r.id = uuid::Uuid::new_v4().to_string();
        r.target = RestrictionTarget::Block("ab".into());
        assert!(r.validate().is_err());
        r.target = RestrictionTarget::Agent("AB".repeat(32));
        assert!(r.validate().is_err());
        r.target = RestrictionTarget::Agent("ab".repeat(32));
        r.validate().unwrap();
        r.rules.clear();
        assert!(r.validate().is_err());
        r.rules = vec![RestrictionRule::parse_deny("send:/**").unwrap(); 17];
        assert!(r.validate().is_err());
    }

    #[test]
    fn entries_round_trip_through_json() {
        let r = Restriction {
            id: uuid::Uuid::new_v4().to_string(),
            target: RestrictionTarget::Token("t".into()),
            rules: vec![
                RestrictionRule::parse_deny("send:/api/slack/** where to ends-with @x.com")
                    .unwrap(),
                RestrictionRule::parse_only("time<=2030-01-01T00:00:00Z").unwrap(),
                RestrictionRule::parse_limit("send 5/1h").unwrap(),
                RestrictionRule::parse_budget("pay amount 100/1d").unwrap(),
            ],
            restricted_at: OffsetDateTime::UNIX_EPOCH,
            by: "ops".into(),
            reason: "r".into(),
            expires_at: None,
            note: Some("n".into()),
        };
        let e = RestrictionEntry::Restrict(r);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<RestrictionEntry>(&json).unwrap(), e);
        e.validate().unwrap();
    }
}
