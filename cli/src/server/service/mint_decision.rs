//! What a mint is decided on: everything the minted token will carry, as the
//! parameters of admin requests (`spec/SERVICE.md` S2).
//!
//! A mint is decided as one request per (minted alternative × action), every
//! one of which the admin token must allow. Each request carries the token's
//! common fields (principal, agent and key, lifetime, depth, purpose, holder
//! binding, usage limits) and that alternative's own (the action, the pattern, each
//! constraint as the tightest bound it implies, the approval rule), so an
//! admin token can be narrowed on any of them. A field the minted token does
//! not carry is absent, and a constraint on an absent parameter denies: an
//! admin token narrowed on `max.rows` can only mint alternatives that bound
//! `rows`. Nothing else reaches the token: its id, issue time and root key
//! are the service's own.
//!
//! An alternative whose pattern can match a resource of the service itself
//! (`/v1/…`, `/ui/…`) is decided with the action `mint-admin` instead of
//! `mint`, so only an admin token that names `mint-admin` can mint admin
//! tokens.

use biscuit_auth::PublicKey;
use mandate_spec::{
    format_public_key, Alternative, Constraint, Grant, IntCmp, Request, ResourcePattern, Value,
    MAX_NAME_LEN, MAX_PARAMS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The resource of every mint decision.
pub(crate) const MINT_RESOURCE: &str = "/v1/tokens";
/// The action deciding alternatives outside the service's own resources.
pub(crate) const MINT: &str = "mint";
/// The action deciding alternatives that reach the service's own resources.
pub(crate) const MINT_ADMIN: &str = "mint-admin";
/// Where the service's own resources live: every resource it decides admin
/// tokens on starts with one of these.
pub(crate) const SERVICE_SPACE: [&str; 2] = ["/v1/", "/ui/"];
/// Most (alternative × action) decisions one mint may need: the work of a
/// mint is bounded by construction, whatever the body holds.
pub(crate) const MAX_MINT_DECISIONS: usize = 128;

/// What the minted token will carry, validated.
pub(crate) struct Minting<'a> {
    pub(crate) principal: &'a str,
    pub(crate) agent: &'a str,
    pub(crate) agent_key: &'a PublicKey,
    pub(crate) ttl: Duration,
    pub(crate) max_depth: Option<u32>,
    pub(crate) purpose: Option<&'a str>,
    pub(crate) grant: &'a Grant,
}

/// One admin request a mint needs allowed.
#[derive(Debug, Clone)]
pub(crate) struct MintDecision {
    /// `mint` or `mint-admin`.
    pub(crate) action: &'static str,
    /// Which alternative and action, in words, for a refusal.
    pub(crate) label: String,
    /// The request's parameters.
    pub(crate) params: BTreeMap<String, Value>,
}

impl MintDecision {
    /// The request the admin token is asked.
    pub(crate) fn request(&self) -> Request {
        let mut r = Request::new(self.action, MINT_RESOURCE);
        r.params = self.params.clone();
        r
    }
}

/// The admin requests deciding `m`, one per (alternative × action), in the
/// grant's order. Err (a 400) when there are too many, or when one cannot be
/// put as a valid request (too many constraints, names too long).
pub(crate) fn mint_decisions(m: &Minting<'_>) -> Result<Vec<MintDecision>, String> {
    if !m.grant.datalog.is_empty() {
        // Grant::parse never makes raw checks; refuse rather than mint a
        // check no decision saw.
        return Err("raw Datalog checks cannot be minted over HTTP".into());
    }
    let total: usize = m.grant.alternatives.iter().map(|a| a.actions.len()).sum();
    if total > MAX_MINT_DECISIONS {
        return Err(format!(
            "a mint is decided once per alternative and action: at most \
             {MAX_MINT_DECISIONS}, this grant has {total}"
        ));
    }
    let mut common = BTreeMap::new();
    let mut put = |k: &str, v: Value| common.insert(k.to_string(), v);
    put("principal", Value::Str(m.principal.into()));
    put("agent", Value::Str(m.agent.into()));
    put("agent_key", Value::Str(format_public_key(m.agent_key)));
    put(
        "ttl_seconds",
        Value::Int(i64::try_from(m.ttl.as_secs()).unwrap_or(i64::MAX)),
    );
    if let Some(d) = m.max_depth {
        put("max_depth", Value::Int(d.into()));
    }
    if let Some(p) = m.purpose {
        put("purpose", Value::Str(p.into()));
    }
    put("require_proof", Value::Int(i64::from(m.grant.holder_bound)));
    if !m.grant.limits.is_empty() {
        put("limits", Value::Str(limits_text(m.grant)));
    }

    let n = m.grant.alternatives.len();
    let mut out = Vec::with_capacity(total);
    for (i, alt) in m.grant.alternatives.iter().enumerate() {
        let admin = reaches_service(&alt.resource);
        let mut params = common.clone();
        params.extend(
            alternative_params(alt)
                .map_err(|e| format!("alternative {} of {n} (`{alt}`): {e}", i + 1))?,
        );
        for action in &alt.actions {
            let mut params = params.clone();
            params.insert("grant_action".into(), Value::Str(action.clone()));
            let decision = MintDecision {
                action: if admin { MINT_ADMIN } else { MINT },
                label: format!(
                    "alternative {} of {n} (`{alt}`{}), action {action:?}",
                    i + 1,
                    if admin {
                        ": it reaches the service's own resources"
                    } else {
                        ""
                    }
                ),
                params,
            };
            decision.request().validate().map_err(|e| {
                format!(
                    "alternative {} of {n} (`{alt}`) cannot be decided: {e}",
                    i + 1
                )
            })?;
            out.push(decision);
        }
    }
    Ok(out)
}

/// The grant's usage limits (SPEC §18) as one text: each limit's canonical
/// text, sorted, joined with `; `. Limits only narrow what a token allows,
/// but they are part of what it carries, so an admin token can require
/// them (`--where 'limits=send_email 10/1h'`).
fn limits_text(grant: &Grant) -> String {
    let texts: BTreeSet<String> = grant.limits.iter().map(|l| l.to_string()).collect();
    texts.into_iter().collect::<Vec<_>>().join("; ")
}

/// Whether some resource the pattern matches starts with `/v1/` or `/ui/`.
pub(crate) fn reaches_service(p: &ResourcePattern) -> bool {
    SERVICE_SPACE.iter().any(|space| match p {
        ResourcePattern::Exact(r) => r.starts_with(space),
        // One more segment (no `/`) after `d`: it starts with `space` only
        // when `d` already does (`space` ends with `/`).
        ResourcePattern::Children(d) => d.starts_with(space),
        // Everything below `d`: it meets everything below `space` when
        // either directory contains the other.
        ResourcePattern::Descendants(d) => d.starts_with(space) || space.starts_with(d.as_str()),
    })
}

/// The alternative's own parameters, without `grant_action`.
fn alternative_params(alt: &Alternative) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    // The pattern as written in a grant (`/api/x`, `/api/*`, `/api/**`): raw
    // text, not the escaped form `Display` gives people.
    let (text, kind) = match &alt.resource {
        ResourcePattern::Exact(r) => (r.clone(), "exact"),
        ResourcePattern::Children(d) => (format!("{d}*"), "children"),
        ResourcePattern::Descendants(d) => (format!("{d}**"), "descendants"),
    };
    out.insert("grant_resource".to_string(), Value::Str(text));
    out.insert("grant_kind".into(), Value::Str(kind.into()));
    out.extend(constraint_params(&alt.constraints)?);
    if let Some(rule) = &alt.approval {
        out.insert("approval_key".into(), Value::Str(rule.key.clone()));
        out.insert("approval_name".into(), Value::Str(rule.approver.clone()));
        let mut when: Vec<String> = rule.when.iter().map(condition_text).collect();
        when.sort();
        out.insert("approval_when".into(), Value::Str(when.join(" and ")));
    }
    Ok(out)
}

/// An approval condition as written (`amount>100`); conditions are integer
/// bounds (spec §14).
fn condition_text(c: &Constraint) -> String {
    match c {
        Constraint::Int { param, cmp, bound } => {
            let op = match cmp {
                IntCmp::Le => "<=",
                IntCmp::Lt => "<",
                IntCmp::Ge => ">=",
                IntCmp::Gt => ">",
            };
            format!("{param}{op}{bound}")
        }
        other => other.to_string(),
    }
}

/// What the constraints of one alternative imply, per parameter, as the
/// tightest single value of each kind (see SERVICE.md S2). Each value is
/// implied by the constraints, so a decision on it never over-states what
/// the minted alternative allows.
#[derive(Default)]
struct Implied {
    max: Option<i64>,
    min: Option<i64>,
    eq: Option<Value>,
    prefix: Option<String>,
    suffix: Option<String>,
    one_of: Option<BTreeSet<Value>>,
}

fn constraint_params(constraints: &[Constraint]) -> Result<BTreeMap<String, Value>, String> {
    let mut by_param: BTreeMap<&str, Implied> = BTreeMap::new();
    let mut not_before: Option<i64> = None;
    let mut not_after: Option<i64> = None;
    for c in constraints {
        match c {
            Constraint::NotBefore { at } => {
                let t = at.unix_timestamp();
                not_before = Some(not_before.map_or(t, |b| b.max(t)));
            }
            Constraint::NotAfter { at } => {
                let t = at.unix_timestamp();
                not_after = Some(not_after.map_or(t, |a| a.min(t)));
            }
            _ => {
                if let Some(param) = c.param() {
                    by_param.entry(param).or_default().add(c);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (param, im) in by_param {
        im.write_params(param, &mut out)?;
    }
    if let Some(t) = not_before {
        out.insert("not_before".into(), Value::Int(t));
    }
    if let Some(t) = not_after {
        out.insert("not_after".into(), Value::Int(t));
    }
    if out.len() > MAX_PARAMS {
        return Err(format!(
            "its constraints need {} parameters, more than the {MAX_PARAMS} a decision carries",
            out.len()
        ));
    }
    Ok(out)
}

impl Implied {
    fn upper(&mut self, v: i64) {
        self.max = Some(self.max.map_or(v, |m| m.min(v)));
    }

    fn lower(&mut self, v: i64) {
        self.min = Some(self.min.map_or(v, |m| m.max(v)));
    }

    /// Tightens what is implied with one more constraint on the parameter.
    fn add(&mut self, c: &Constraint) {
        match c {
            Constraint::Int { cmp, bound, .. } => match cmp {
                IntCmp::Le => self.upper(*bound),
                IntCmp::Lt => self.upper(bound.saturating_sub(1)),
                IntCmp::Ge => self.lower(*bound),
                IntCmp::Gt => self.lower(bound.saturating_add(1)),
            },
            Constraint::Equals { value, .. } => {
                if let Value::Int(v) = value {
                    self.upper(*v);
                    self.lower(*v);
                }
                // Several different values cannot all hold: any one of them
                // is implied; take the least, for a stable answer.
                if self.eq.as_ref().is_none_or(|e| value < e) {
                    self.eq = Some(value.clone());
                }
            }
            Constraint::StartsWith { prefix, .. } => {
                if self.prefix.as_ref().is_none_or(|p| longer(prefix, p)) {
                    self.prefix = Some(prefix.clone());
                }
            }
            Constraint::EndsWith { suffix, .. } => {
                if self.suffix.as_ref().is_none_or(|s| longer(suffix, s)) {
                    self.suffix = Some(suffix.clone());
                }
            }
            Constraint::OneOf { values, .. } => {
                let ints: Vec<i64> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Int(i) => Some(*i),
                        Value::Str(_) => None,
                    })
                    .collect();
                if ints.len() == values.len() {
                    if let (Some(lo), Some(hi)) = (ints.iter().min(), ints.iter().max()) {
                        self.upper(*hi);
                        self.lower(*lo);
                    }
                }
                self.one_of = Some(match self.one_of.take() {
                    None => values.clone(),
                    Some(prev) => prev.intersection(values).cloned().collect(),
                });
            }
            Constraint::NotBefore { .. } | Constraint::NotAfter { .. } => {}
        }
    }

    /// `max.P`, `min.P`, `eq.P`, `prefix.P`, `suffix.P`, `in.P` for what is
    /// implied about `param`.
    fn write_params(self, param: &str, out: &mut BTreeMap<String, Value>) -> Result<(), String> {
        let mut put = |kind: &str, v: Value| -> Result<(), String> {
            let name = format!("{kind}.{param}");
            if name.len() > MAX_NAME_LEN {
                return Err(format!(
                    "the constraint on parameter {param:?} cannot be decided: {kind}.{{param}} \
                     would be longer than {MAX_NAME_LEN} bytes"
                ));
            }
            out.insert(name, v);
            Ok(())
        };
        if let Some(v) = self.max {
            put("max", Value::Int(v))?;
        }
        if let Some(v) = self.min {
            put("min", Value::Int(v))?;
        }
        if let Some(v) = self.eq {
            put("eq", v)?;
        }
        if let Some(v) = self.prefix {
            put("prefix", Value::Str(v))?;
        }
        if let Some(v) = self.suffix {
            put("suffix", Value::Str(v))?;
        }
        if let Some(set) = self.one_of {
            let joined: Vec<String> = set
                .iter()
                .map(|v| match v {
                    Value::Int(i) => i.to_string(),
                    Value::Str(s) => s.clone(),
                })
                .collect();
            put("in", Value::Str(joined.join("|")))?;
        }
        Ok(())
    }
}

/// Longer, or as long and smaller: the tighter of two prefixes or suffixes
/// (any one is implied; this picks one stably).
fn longer(a: &str, b: &str) -> bool {
    (a.len(), std::cmp::Reverse(a)) > (b.len(), std::cmp::Reverse(b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pattern(text: &str) -> ResourcePattern {
        ResourcePattern::parse(text).unwrap()
    }

    #[test]
    fn service_space_is_recognised_by_what_a_pattern_can_match() {
        for p in [
            "/v1/tokens",
            "/v1/*",
            "/v1/**",
            "/**",
            "/ui/**",
            "/ui/decisions",
            "/v1/approvals/*",
            "/v1/approvals/**",
        ] {
            assert!(reaches_service(&pattern(p)), "{p}");
        }
        for p in [
            "/*",
            "/v1",
            "/ui",
            "/api/**",
            "/v2/**",
            "/v1x/**",
            "/api/v1/**",
            "urn:v1:x",
        ] {
            assert!(!reaches_service(&pattern(p)), "{p}");
        }
    }

    #[test]
    fn constraints_become_their_tightest_implied_values() {
        let cs: Vec<Constraint> = [
            "rows<=100",
            "rows<50",
            "rows>=1",
            "n>3",
            "k=7",
            "to starts-with a",
            "to starts-with ab",
            "to ends-with @x.com",
            "cur in EUR|USD",
            "cur in USD|GBP",
            "time<=2030-01-01T00:00:00Z",
            "time<=2029-01-01T00:00:00Z",
        ]
        .iter()
        .map(|t| Constraint::parse(t).unwrap())
        .collect();
        let p = constraint_params(&cs).unwrap();
        assert_eq!(p["max.rows"], Value::Int(49));
        assert_eq!(p["min.rows"], Value::Int(1));
        assert_eq!(p["min.n"], Value::Int(4));
        assert!(!p.contains_key("max.n"));
        assert_eq!(p["eq.k"], Value::Int(7));
        assert_eq!(p["max.k"], Value::Int(7));
        assert_eq!(p["prefix.to"], Value::Str("ab".into()));
        assert_eq!(p["suffix.to"], Value::Str("@x.com".into()));
        assert_eq!(p["in.cur"], Value::Str("USD".into()));
        assert_eq!(p["not_after"], Value::Int(1_861_920_000));
        assert!(!p.contains_key("not_before"));
    }
}
