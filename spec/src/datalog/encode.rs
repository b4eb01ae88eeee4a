//! Grants → checks (§4.4): built from Biscuit's term builders, never by
//! formatting strings into Datalog source.

use super::{binary, date, pred, query_head, value_term, var};
use crate::grant::{Alternative, ApprovalRule, Constraint, Grant, IntCmp, ResourcePattern};
use crate::vocab::{
    self, VAR_APPROVAL_EXPIRY, VAR_DIGEST, VAR_HOLDER, VAR_OPERATION, VAR_RESOURCE, VAR_TIME,
};
use crate::SpecError;
use biscuit_auth::builder::{Binary, Check, CheckKind, Expression, Predicate, Rule, Scope, Term};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

/// Encodes a grant and an expiry as the checks of one block.
///
/// - alternatives and expiry → one check (expiry in every query);
/// - no alternative but an expiry → `check if time($t), $t <= expiry`;
/// - each raw Datalog check is parsed by Biscuit's parser and appended.
pub fn grant_checks(grant: &Grant, expires: Option<SystemTime>) -> Result<Vec<Check>, SpecError> {
    grant.validate()?;
    let expiry = expires.map(unix);
    let mut checks = Vec::new();
    if grant.alternatives.is_empty() {
        if let Some(e) = expiry {
            checks.push(one_query_check(Rule::new(
                query_head(),
                vec![pred(vocab::TIME, vec![var(VAR_TIME)])],
                vec![binary(var(VAR_TIME), Term::Date(e), Binary::LessOrEqual)],
                vec![],
            )));
        }
    } else {
        let mut queries = Vec::new();
        for alt in &grant.alternatives {
            match &alt.approval {
                None => queries.push(alternative_query(alt, expiry)),
                Some(rule) => approval_queries(alt, rule, expiry, &mut queries)?,
            }
        }
        checks.push(Check {
            queries,
            kind: CheckKind::One,
        });
    }
    if grant.holder_bound {
        checks.push(one_query_check(Rule::new(
            query_head(),
            vec![pred(vocab::HOLDER, vec![var(VAR_HOLDER)])],
            vec![],
            vec![],
        )));
    }
    if !grant.limits.is_empty() {
        checks.push(limits_check());
    }
    for source in &grant.datalog {
        checks.push(parse_raw_check(source)?);
    }
    Ok(checks)
}

/// `check if limits_enforced(1)`: the check every block with limits
/// carries (§18.2).
fn limits_check() -> Check {
    one_query_check(Rule::new(
        query_head(),
        vec![pred(vocab::LIMITS_ENFORCED, vec![Term::Integer(1)])],
        vec![],
        vec![],
    ))
}

/// Whether a check is `check if limits_enforced(1)` (with the head every
/// check query has, `query()`: a head variable the body does not bind
/// makes biscuit-auth drop every match, a check that never passes).
pub fn is_limits_check(check: &Check) -> bool {
    matches!(check.queries.as_slice(), [q]
        if check.kind == CheckKind::One
            && q.head == query_head()
            && q.scopes.is_empty()
            && q.expressions.is_empty()
            && matches!(q.body.as_slice(), [p] if p.name == vocab::LIMITS_ENFORCED
                && matches!(p.terms.as_slice(), [Term::Integer(1)])))
}

/// Parses a raw Datalog check. biscuit-auth turns the parser's `trusting`
/// keys into public keys with `expect`, so a key of the wrong length
/// (`trusting ed25519/00`) would panic there: every key is checked first.
fn parse_raw_check(source: &str) -> Result<Check, SpecError> {
    let bad = |e: &dyn std::fmt::Display| {
        SpecError::Grant(format!("raw Datalog check does not parse: {e}"))
    };
    let parsed = match biscuit_parser::parser::check(source) {
        Ok((_, parsed)) => parsed,
        // (`finish`, which `Check::try_from` calls, panics on `Incomplete`.)
        Err(e) if format!("{e:?}").starts_with("Incomplete") => {
            return Err(bad(&"the check is incomplete"))
        }
        // The same parser fails again, before any conversion: its message.
        Err(_) => return Err(Check::try_from(source).map_or_else(|e| bad(&e), |_| bad(&"?"))),
    };
    for query in &parsed.queries {
        let keys = query
            .scopes
            .iter()
            .filter_map(|s| match s {
                biscuit_parser::builder::Scope::PublicKey(k) => Some(k),
                _ => None,
            })
            .chain(query.scope_parameters.iter().flatten().flat_map(|(_, k)| k));
        for k in keys {
            biscuit_auth::PublicKey::from_bytes(&k.key, k.algorithm.clone().into())
                .map_err(|e| bad(&format!("invalid public key in `trusting`: {e}")))?;
        }
    }
    Ok(parsed.into())
}

/// An alternative with an approval rule (§14) becomes, in the same check:
/// one query per condition with that condition negated (a request that
/// fails a condition needs no approval), then the alternative with an
/// approval: `request_digest($digest), approval($digest, $approved_until),
/// $time <= $approved_until`, trusting only blocks signed by the approver.
fn approval_queries(
    alt: &Alternative,
    rule: &ApprovalRule,
    expiry: Option<u64>,
    out: &mut Vec<Rule>,
) -> Result<(), SpecError> {
    let base = Alternative {
        approval: None,
        ..alt.clone()
    };
    for c in &rule.when {
        let Constraint::Int { param, cmp, bound } = c else {
            return Err(SpecError::Grant(
                "approval conditions are integer bounds".into(),
            ));
        };
        let mut negated = base.clone();
        negated.constraints.push(Constraint::Int {
            param: param.clone(),
            cmp: cmp.negated(),
            bound: *bound,
        });
        out.push(alternative_query(&negated, expiry));
    }
    let key = crate::parse_public_key(&rule.key)?;
    let q = alternative_query(&base, expiry);
    let mut body = q.body;
    if !body.iter().any(|p| p.name == vocab::TIME) {
        body.insert(0, pred(vocab::TIME, vec![var(VAR_TIME)]));
    }
    body.push(pred(vocab::REQUEST_DIGEST, vec![var(VAR_DIGEST)]));
    body.push(pred(
        vocab::APPROVAL,
        vec![var(VAR_DIGEST), var(VAR_APPROVAL_EXPIRY)],
    ));
    let mut exprs = q.expressions;
    exprs.push(binary(
        var(VAR_TIME),
        var(VAR_APPROVAL_EXPIRY),
        Binary::LessOrEqual,
    ));
    out.push(Rule::new(
        query_head(),
        body,
        exprs,
        vec![Scope::PublicKey(key)],
    ));
    Ok(())
}

/// Whether a check is the holder-binding check `check if holder($holder)`.
pub fn is_holder_check(check: &Check) -> bool {
    matches!(check.queries.as_slice(), [q]
        if check.kind == CheckKind::One
            && q.head == query_head()
            && q.scopes.is_empty()
            && q.expressions.is_empty()
            && matches!(q.body.as_slice(), [p] if p.name == vocab::HOLDER
                && matches!(p.terms.as_slice(), [Term::Variable(_)])))
}

/// The canonical query of one alternative (§4.4): time and expiry first,
/// then the action, the resource, and one expression per constraint.
fn alternative_query(alt: &Alternative, expiry: Option<u64>) -> Rule {
    let mut q = Query::default();
    let needs_time = expiry.is_some()
        || alt.constraints.iter().any(|c| {
            matches!(
                c,
                Constraint::NotBefore { .. } | Constraint::NotAfter { .. }
            )
        });
    if needs_time {
        q.body.push(pred(vocab::TIME, vec![var(VAR_TIME)]));
    }
    if let Some(e) = expiry {
        q.exprs
            .push(binary(var(VAR_TIME), Term::Date(e), Binary::LessOrEqual));
    }
    q.actions(&alt.actions);
    q.resource(&alt.resource);
    q.constraints(&alt.constraints);
    Rule::new(query_head(), q.body, q.exprs, vec![])
}

/// A check query being written: its body predicates and expressions.
#[derive(Default)]
struct Query {
    body: Vec<Predicate>,
    exprs: Vec<Expression>,
}

impl Query {
    /// `operation("a")`, or `operation($operation)` and a set for several.
    fn actions(&mut self, actions: &BTreeSet<String>) {
        if actions.len() == 1 {
            let action = actions.iter().next().cloned().unwrap_or_default();
            self.body
                .push(pred(vocab::OPERATION, vec![Term::Str(action)]));
        } else {
            self.body
                .push(pred(vocab::OPERATION, vec![var(VAR_OPERATION)]));
            let set = actions.iter().cloned().map(Term::Str).collect();
            self.exprs
                .push(binary(Term::Set(set), var(VAR_OPERATION), Binary::Contains));
        }
    }

    /// The resource predicate of an exact resource, `PREFIX/*` or `PREFIX/**`.
    fn resource(&mut self, pattern: &ResourcePattern) {
        match pattern {
            ResourcePattern::Exact(r) => {
                self.body
                    .push(pred(vocab::RESOURCE, vec![Term::Str(r.clone())]));
            }
            ResourcePattern::Children(d) => {
                self.body.push(pred(
                    vocab::RESOURCE,
                    vec![Term::Str(d.clone()), var(VAR_RESOURCE)],
                ));
            }
            ResourcePattern::Descendants(d) => {
                self.body
                    .push(pred(vocab::RESOURCE, vec![var(VAR_RESOURCE)]));
                self.exprs.push(binary(
                    var(VAR_RESOURCE),
                    Term::Str(d.clone()),
                    Binary::Prefix,
                ));
            }
        }
    }

    /// One expression per constraint; one variable per constrained
    /// parameter name, bound once (`param("rows", $p0)`).
    fn constraints(&mut self, constraints: &[Constraint]) {
        let mut param_vars: BTreeMap<&str, String> = BTreeMap::new();
        for c in constraints {
            let (param, expr) = match c {
                Constraint::Equals { param, value } => {
                    self.body.push(pred(
                        vocab::PARAM,
                        vec![Term::Str(param.clone()), value_term(value)],
                    ));
                    continue;
                }
                Constraint::NotBefore { at } => {
                    self.exprs
                        .push(binary(var(VAR_TIME), date(at), Binary::GreaterOrEqual));
                    continue;
                }
                Constraint::NotAfter { at } => {
                    self.exprs
                        .push(binary(var(VAR_TIME), date(at), Binary::LessOrEqual));
                    continue;
                }
                Constraint::Int { param, cmp, bound } => {
                    let op = match cmp {
                        IntCmp::Le => Binary::LessOrEqual,
                        IntCmp::Lt => Binary::LessThan,
                        IntCmp::Ge => Binary::GreaterOrEqual,
                        IntCmp::Gt => Binary::GreaterThan,
                    };
                    (param, (None, Term::Integer(*bound), op))
                }
                Constraint::StartsWith { param, prefix } => {
                    (param, (None, Term::Str(prefix.clone()), Binary::Prefix))
                }
                Constraint::EndsWith { param, suffix } => {
                    (param, (None, Term::Str(suffix.clone()), Binary::Suffix))
                }
                Constraint::OneOf { param, values } => {
                    let set = values.iter().map(value_term).collect();
                    (param, (Some(Term::Set(set)), Term::Null, Binary::Contains))
                }
            };
            let next = param_vars.len();
            let body = &mut self.body;
            let v = param_vars
                .entry(param.as_str())
                .or_insert_with(|| {
                    body.push(pred(
                        vocab::PARAM,
                        vec![Term::Str(param.clone()), var(&format!("p{next}"))],
                    ));
                    format!("p{next}")
                })
                .clone();
            match expr {
                (Some(set), _, op) => self.exprs.push(binary(set, var(&v), op)),
                (None, rhs, op) => self.exprs.push(binary(var(&v), rhs, op)),
            }
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn one_query_check(rule: Rule) -> Check {
    Check {
        queries: vec![rule],
        kind: CheckKind::One,
    }
}
