//! Encoding grants as Biscuit checks, and reading them back (specification §4).
//!
//! Checks are built from Biscuit's term builders, never by formatting strings
//! into Datalog source, so no action, resource or value can inject Datalog.
//! A grant with an expiry becomes a single check, one query per alternative,
//! with the expiry first in every query:
//!
//! ```text
//! check if time($time), operation($operation), resource("/api/customers/", $resource),
//!          param("rows", $p0), $time <= 2026-11-22T10:00:00Z,
//!          {"list", "read"}.contains($operation), $p0 <= 100
//!       or …next alternative…
//! ```
//!
//! [`decode_check`] recognises exactly this canonical shape; any other check
//! (a raw Datalog escape hatch, or a check written by another tool) is
//! reported as its Datalog text.

use crate::grant::{Alternative, ApprovalRule, Constraint, Grant, IntCmp, ResourcePattern, Value};
use crate::vocab::{
    self, VAR_APPROVAL_EXPIRY, VAR_DIGEST, VAR_HOLDER, VAR_OPERATION, VAR_RESOURCE, VAR_TIME,
};
use crate::SpecError;
use biscuit_auth::builder::{
    Binary, Check, CheckKind, Expression, Op, Predicate, Rule, Scope, Term,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

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
    for source in &grant.datalog {
        checks.push(parse_raw_check(source)?);
    }
    Ok(checks)
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
            && q.scopes.is_empty()
            && q.expressions.is_empty()
            && matches!(q.body.as_slice(), [p] if p.name == vocab::HOLDER
                && matches!(p.terms.as_slice(), [Term::Variable(_)])))
}

fn alternative_query(alt: &Alternative, expiry: Option<u64>) -> Rule {
    let mut body = Vec::new();
    let mut exprs = Vec::new();
    let needs_time = expiry.is_some()
        || alt.constraints.iter().any(|c| {
            matches!(
                c,
                Constraint::NotBefore { .. } | Constraint::NotAfter { .. }
            )
        });
    if needs_time {
        body.push(pred(vocab::TIME, vec![var(VAR_TIME)]));
    }
    if let Some(e) = expiry {
        exprs.push(binary(var(VAR_TIME), Term::Date(e), Binary::LessOrEqual));
    }
    if alt.actions.len() == 1 {
        let action = alt.actions.iter().next().cloned().unwrap_or_default();
        body.push(pred(vocab::OPERATION, vec![Term::Str(action)]));
    } else {
        body.push(pred(vocab::OPERATION, vec![var(VAR_OPERATION)]));
        let set = alt.actions.iter().cloned().map(Term::Str).collect();
        exprs.push(binary(Term::Set(set), var(VAR_OPERATION), Binary::Contains));
    }
    match &alt.resource {
        ResourcePattern::Exact(r) => {
            body.push(pred(vocab::RESOURCE, vec![Term::Str(r.clone())]));
        }
        ResourcePattern::Children(d) => {
            body.push(pred(
                vocab::RESOURCE,
                vec![Term::Str(d.clone()), var(VAR_RESOURCE)],
            ));
        }
        ResourcePattern::Descendants(d) => {
            body.push(pred(vocab::RESOURCE, vec![var(VAR_RESOURCE)]));
            exprs.push(binary(
                var(VAR_RESOURCE),
                Term::Str(d.clone()),
                Binary::Prefix,
            ));
        }
    }
    // One variable per constrained parameter name, bound once.
    let mut param_vars: BTreeMap<&str, String> = BTreeMap::new();
    for c in &alt.constraints {
        let (param, expr) = match c {
            Constraint::Equals { param, value } => {
                body.push(pred(
                    vocab::PARAM,
                    vec![Term::Str(param.clone()), value_term(value)],
                ));
                continue;
            }
            Constraint::NotBefore { at } => {
                exprs.push(binary(var(VAR_TIME), date(at), Binary::GreaterOrEqual));
                continue;
            }
            Constraint::NotAfter { at } => {
                exprs.push(binary(var(VAR_TIME), date(at), Binary::LessOrEqual));
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
            (Some(set), _, op) => exprs.push(binary(set, var(&v), op)),
            (None, rhs, op) => exprs.push(binary(var(&v), rhs, op)),
        }
    }
    Rule::new(query_head(), body, exprs, vec![])
}

/// What [`decode_check`] recovered from a canonical grant check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCheck {
    /// The expiry the check enforces.
    pub expires: Option<OffsetDateTime>,
    /// The alternatives (empty for an expiry-only check).
    pub alternatives: Vec<Alternative>,
}

/// Reads back a check written by [`grant_checks`]. Returns `None` for any
/// other shape; callers then show the check's Datalog text.
pub fn decode_check(check: &Check) -> Option<DecodedCheck> {
    if check.kind != CheckKind::One || check.queries.is_empty() {
        return None;
    }
    let mut expires: Option<Option<u64>> = None;
    let mut alternatives: Vec<Alternative> = Vec::new();
    for q in &check.queries {
        if q.head.name != "query" || !q.head.terms.is_empty() {
            return None;
        }
        let (exp, alt) = if q.scopes.is_empty() {
            decode_query(q)?
        } else {
            let (exp, alt) = decode_approval_query(q)?;
            (exp, Some(absorb_negations(&mut alternatives, alt)))
        };
        match expires {
            None => expires = Some(exp),
            Some(prev) if prev == exp => {}
            Some(_) => return None,
        }
        match alt {
            Some(a) => alternatives.push(a),
            None if check.queries.len() == 1 && exp.is_some() => {}
            None => return None,
        }
    }
    let expires = match expires.flatten() {
        Some(e) => Some(OffsetDateTime::from_unix_timestamp(i64::try_from(e).ok()?).ok()?),
        None => None,
    };
    Some(DecodedCheck {
        expires,
        alternatives,
    })
}

/// An approval query: exactly one `trusting <key>` scope, the canonical
/// alternative, and `request_digest($d), approval($d, $u), $time <= $u`.
/// Returns the alternative with an approval rule (approver name empty: the
/// block's `approver` facts name it).
fn decode_approval_query(q: &Rule) -> Option<(Option<u64>, Alternative)> {
    let [Scope::PublicKey(key)] = q.scopes.as_slice() else {
        return None;
    };
    let mut body = q.body.clone();
    let approval = body.pop()?;
    let digest = body.pop()?;
    let (d, u) = match (
        digest.name.as_str(),
        digest.terms.as_slice(),
        approval.name.as_str(),
        approval.terms.as_slice(),
    ) {
        (
            vocab::REQUEST_DIGEST,
            [Term::Variable(d)],
            vocab::APPROVAL,
            [Term::Variable(d2), Term::Variable(u)],
        ) if d == d2 && d != u => (d.clone(), u.clone()),
        _ => return None,
    };
    let mut exprs = q.expressions.clone();
    let last = exprs.pop()?;
    let time_var = body
        .iter()
        .find_map(|p| match (p.name.as_str(), p.terms.as_slice()) {
            (vocab::TIME, [Term::Variable(t)]) => Some(t.clone()),
            _ => None,
        })?;
    match last.ops.as_slice() {
        [Op::Value(Term::Variable(t)), Op::Value(Term::Variable(x)), Op::Binary(Binary::LessOrEqual)]
            if *t == time_var && *x == u => {}
        _ => return None,
    }
    // The approval variables are used nowhere else.
    let uses = |v: &str| {
        body.iter().any(|p| {
            p.terms
                .iter()
                .any(|t| matches!(t, Term::Variable(x) if x == v))
        }) || exprs.iter().any(|e| {
            e.ops
                .iter()
                .any(|o| matches!(o, Op::Value(Term::Variable(x)) if x == v))
        })
    };
    if uses(&d) || uses(&u) {
        return None;
    }
    // Without an expiry or time constraint the time predicate was added for
    // the approval alone: the alternative is decoded without it.
    let plain = Rule::new(query_head(), body.clone(), exprs.clone(), vec![]);
    let (exp, alt) = match decode_query(&plain)? {
        (exp, Some(alt)) => (exp, alt),
        (_, None) => return None,
    };
    Some((
        exp,
        Alternative {
            approval: Some(ApprovalRule {
                approver: String::new(),
                key: crate::format_public_key(key),
                when: Vec::new(),
            }),
            ..alt
        },
    ))
}

/// Takes back, from the end of `alternatives`, the queries an approval rule
/// wrote before its approval query: the same alternative with one more
/// integer bound, the negation of one of the rule's conditions.
fn absorb_negations(alternatives: &mut Vec<Alternative>, mut approved: Alternative) -> Alternative {
    let mut when = Vec::new();
    while let Some(last) = alternatives.last() {
        let Some(extra) = one_more_int_bound(&approved, last) else {
            break;
        };
        when.push(extra);
        alternatives.pop();
    }
    when.reverse();
    if let Some(rule) = approved.approval.as_mut() {
        rule.when = when;
    }
    approved
}

/// `candidate` is `base` (without its approval) plus exactly one integer
/// bound: that bound, negated back into the condition it stands for.
fn one_more_int_bound(base: &Alternative, candidate: &Alternative) -> Option<Constraint> {
    if candidate.approval.is_some()
        || candidate.actions != base.actions
        || candidate.resource != base.resource
        || candidate.constraints.len() != base.constraints.len() + 1
    {
        return None;
    }
    let mut rest = candidate.constraints.clone();
    for c in &base.constraints {
        let i = rest.iter().position(|r| r == c)?;
        rest.remove(i);
    }
    match rest.pop()? {
        Constraint::Int { param, cmp, bound } => Some(Constraint::Int {
            param,
            cmp: cmp.negated(),
            bound,
        }),
        _ => None,
    }
}

fn decode_query(q: &Rule) -> Option<(Option<u64>, Option<Alternative>)> {
    let mut time_var: Option<&str> = None;
    let mut op_var: Option<&str> = None;
    let mut res_var: Option<&str> = None;
    let mut actions: Option<BTreeSet<String>> = None;
    let mut resource: Option<ResourcePattern> = None;
    let mut params: BTreeMap<&str, &str> = BTreeMap::new(); // var -> param name
    let mut name_var: Option<&str> = None; // the `$name` of resource($dir, $name)
    let mut constraints = Vec::new();
    for p in &q.body {
        match (p.name.as_str(), p.terms.as_slice()) {
            (vocab::TIME, [Term::Variable(v)]) if time_var.is_none() => time_var = Some(v),
            (vocab::OPERATION, [Term::Str(a)]) if actions.is_none() => {
                actions = Some(BTreeSet::from([a.clone()]))
            }
            (vocab::OPERATION, [Term::Variable(v)]) if op_var.is_none() => op_var = Some(v),
            (vocab::RESOURCE, [Term::Str(r)]) if resource.is_none() => {
                resource = Some(ResourcePattern::Exact(r.clone()))
            }
            (vocab::RESOURCE, [Term::Variable(v)]) if res_var.is_none() => res_var = Some(v),
            (vocab::RESOURCE, [Term::Str(d), Term::Variable(v)]) if resource.is_none() => {
                name_var = Some(v);
                resource = Some(ResourcePattern::Children(d.clone()))
            }
            (vocab::PARAM, [Term::Str(name), Term::Variable(v)]) => {
                if params.insert(v, name).is_some() {
                    return None;
                }
            }
            (vocab::PARAM, [Term::Str(name), Term::Integer(i)]) => {
                constraints.push(Constraint::Equals {
                    param: name.clone(),
                    value: Value::Int(*i),
                })
            }
            (vocab::PARAM, [Term::Str(name), Term::Str(s)]) => {
                constraints.push(Constraint::Equals {
                    param: name.clone(),
                    value: Value::Str(s.clone()),
                })
            }
            _ => return None,
        }
    }
    let mut expiry = None;
    for (i, e) in q.expressions.iter().enumerate() {
        let [Op::Value(a), Op::Value(b), Op::Binary(op)] = e.ops.as_slice() else {
            return None;
        };
        let is =
            |t: &Term, v: Option<&str>| matches!((t, v), (Term::Variable(x), Some(y)) if x == y);
        match (a, b, op) {
            (t, Term::Date(d), Binary::LessOrEqual) if is(t, time_var) && i == 0 => {
                expiry = Some(*d)
            }
            (t, Term::Date(d), Binary::LessOrEqual) if is(t, time_var) => {
                constraints.push(Constraint::NotAfter { at: odt(*d)? })
            }
            (t, Term::Date(d), Binary::GreaterOrEqual) if is(t, time_var) => {
                constraints.push(Constraint::NotBefore { at: odt(*d)? })
            }
            (Term::Set(s), t, Binary::Contains) if is(t, op_var) && actions.is_none() => {
                actions = Some(strings(s)?);
            }
            (t, Term::Str(d), Binary::Prefix) if is(t, res_var) && resource.is_none() => {
                resource = Some(ResourcePattern::Descendants(d.clone()));
            }
            (Term::Set(s), Term::Variable(v), Binary::Contains) => {
                constraints.push(Constraint::OneOf {
                    param: params.get(v.as_str())?.to_string(),
                    values: values(s)?,
                })
            }
            (Term::Variable(v), Term::Integer(bound), op) => {
                let cmp = match op {
                    Binary::LessOrEqual => IntCmp::Le,
                    Binary::LessThan => IntCmp::Lt,
                    Binary::GreaterOrEqual => IntCmp::Ge,
                    Binary::GreaterThan => IntCmp::Gt,
                    _ => return None,
                };
                constraints.push(Constraint::Int {
                    param: params.get(v.as_str())?.to_string(),
                    cmp,
                    bound: *bound,
                })
            }
            (Term::Variable(v), Term::Str(s), Binary::Prefix) => {
                constraints.push(Constraint::StartsWith {
                    param: params.get(v.as_str())?.to_string(),
                    prefix: s.clone(),
                })
            }
            (Term::Variable(v), Term::Str(s), Binary::Suffix) => {
                constraints.push(Constraint::EndsWith {
                    param: params.get(v.as_str())?.to_string(),
                    suffix: s.clone(),
                })
            }
            _ => return None,
        }
    }
    // Every bound variable must have been used as the canonical form uses it.
    if (op_var.is_some() && actions.is_none()) || (res_var.is_some() && resource.is_none()) {
        return None;
    }
    // The last segment's variable must be bound nowhere else: reused, it
    // would join the resource with another fact and mean something else.
    if let Some(v) = name_var {
        if [time_var, op_var, res_var].contains(&Some(v)) || params.contains_key(v) {
            return None;
        }
    }
    match (actions, resource) {
        (Some(actions), Some(resource)) => Some((
            expiry,
            Some(Alternative {
                actions,
                resource,
                constraints,
                approval: None,
            }),
        )),
        (None, None) if constraints.is_empty() && params.is_empty() => Some((expiry, None)),
        _ => None,
    }
}

fn strings(set: &BTreeSet<Term>) -> Option<BTreeSet<String>> {
    set.iter()
        .map(|t| match t {
            Term::Str(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn values(set: &BTreeSet<Term>) -> Option<BTreeSet<Value>> {
    set.iter()
        .map(|t| match t {
            Term::Str(s) => Some(Value::Str(s.clone())),
            Term::Integer(i) => Some(Value::Int(*i)),
            _ => None,
        })
        .collect()
}

fn odt(secs: u64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn date(t: &OffsetDateTime) -> Term {
    Term::Date(t.unix_timestamp().max(0) as u64)
}

fn value_term(v: &Value) -> Term {
    match v {
        Value::Int(i) => Term::Integer(*i),
        Value::Str(s) => Term::Str(s.clone()),
    }
}

fn var(name: &str) -> Term {
    Term::Variable(name.to_string())
}

fn pred(name: &str, terms: Vec<Term>) -> Predicate {
    Predicate::new(name.to_string(), terms)
}

fn query_head() -> Predicate {
    Predicate::new("query".to_string(), Vec::<Term>::new())
}

fn binary(a: Term, b: Term, op: Binary) -> Expression {
    Expression {
        ops: vec![Op::Value(a), Op::Value(b), Op::Binary(op)],
    }
}

fn one_query_check(rule: Rule) -> Check {
    Check {
        queries: vec![rule],
        kind: CheckKind::One,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn round_trip(allow: &[&str], where_: &[&str]) {
        let grant = Grant::parse(allow, where_).unwrap();
        let exp = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let checks = grant_checks(&grant, Some(exp)).unwrap();
        assert_eq!(checks.len(), 1);
        // Through Datalog text and back, as a token would carry it.
        let text = checks[0].to_string();
        let reparsed = Check::try_from(text.as_str()).unwrap();
        let decoded = decode_check(&reparsed).unwrap_or_else(|| panic!("not canonical: {text}"));
        // Constraints are a conjunction: compare them as sets.
        let norm = |alts: &[Alternative]| -> Vec<(String, BTreeSet<String>)> {
            alts.iter()
                .map(|a| {
                    let mut plain = a.clone();
                    plain.constraints.clear();
                    (
                        plain.to_string(),
                        a.constraints.iter().map(|c| c.to_string()).collect(),
                    )
                })
                .collect()
        };
        assert_eq!(
            norm(&decoded.alternatives),
            norm(&grant.alternatives),
            "{text}"
        );
        assert_eq!(decoded.expires.unwrap().unix_timestamp(), 1_900_000_000);
    }

    #[test]
    fn canonical_checks_round_trip() {
        round_trip(&["read:/api/customers/42"], &[]);
        round_trip(&["read,list:/api/customers/*"], &["rows<=100"]);
        round_trip(
            &["pay:/api/payments/**"],
            &["amount>=1", "amount<1000", "currency=EUR"],
        );
        round_trip(
            &["send_email:/mcp/tools"],
            &[
                "to ends-with @company.com",
                "cc starts-with a",
                "kind in x|y",
            ],
        );
        round_trip(
            &["read:/a", "write:/b/*"],
            &[
                "time>=2026-01-01T00:00:00Z",
                "time<=2030-01-01T00:00:00Z",
                "n>0",
            ],
        );
    }

    #[test]
    fn approval_rules_and_holder_binding_round_trip() {
        let key = biscuit_auth::KeyPair::new().public();
        for (allow, wh, rule) in [
            (
                vec!["pay:/api/payments"],
                vec!["amount<=1000"],
                format!("pay when amount>100 by finance={key}"),
            ),
            (
                vec!["pay,refund:/api/payments/*"],
                vec![],
                format!("pay when amount>100 and amount<5000 by finance={key}"),
            ),
            (vec!["deploy:/prod"], vec![], format!("deploy by ops={key}")),
        ] {
            let mut grant = Grant::parse(&allow, &wh)
                .unwrap()
                .with_approval(&rule)
                .unwrap();
            grant.holder_bound = true;
            for exp in [None, Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000))] {
                let checks = grant_checks(&grant, exp).unwrap();
                assert_eq!(checks.len(), 2);
                assert!(is_holder_check(&checks[1]));
                let text = checks[0].to_string();
                let reparsed = Check::try_from(text.as_str()).unwrap();
                let decoded =
                    decode_check(&reparsed).unwrap_or_else(|| panic!("not decoded: {text}"));
                let mut want = grant.alternatives.clone();
                for a in &mut want {
                    if let Some(r) = a.approval.as_mut() {
                        r.approver = String::new();
                    }
                }
                assert_eq!(decoded.alternatives, want, "{text}");
            }
        }
        // Splitting: refund keeps no approval rule.
        let g = Grant::parse(&["pay,refund:/p"], &[] as &[&str])
            .unwrap()
            .with_approval(&format!("pay when amount>1 by f={key}"))
            .unwrap();
        assert_eq!(g.alternatives.len(), 2);
        assert!(g.alternatives[0].approval.is_none());
        assert!(g.alternatives[1].approval.is_some());
        // Only integer bounds as conditions; the actions must be allowed.
        assert!(Grant::parse(&["pay:/p"], &[] as &[&str])
            .unwrap()
            .with_approval(&format!("pay when to=x by f={key}"))
            .is_err());
        assert!(Grant::parse(&["pay:/p"], &[] as &[&str])
            .unwrap()
            .with_approval(&format!("read by f={key}"))
            .is_err());
        assert!(Grant::parse(&["pay:/p"], &[] as &[&str])
            .unwrap()
            .with_approval("pay by f=nokey")
            .is_err());
    }

    #[test]
    fn expiry_only_check() {
        let exp = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let checks = grant_checks(&Grant::default(), Some(exp)).unwrap();
        let d = decode_check(&checks[0]).unwrap();
        assert!(d.alternatives.is_empty());
        assert!(d.expires.is_some());
    }

    #[test]
    fn foreign_checks_are_not_decoded() {
        let c = Check::try_from(
            "check if operation(\"read\"), resource(\"/a/\", $v), param(\"x\", $v)",
        )
        .unwrap();
        assert!(
            decode_check(&c).is_none(),
            "a reused segment variable is not canonical"
        );
        let c = Check::try_from("check if operation($o), $o.starts_with(\"r\")").unwrap();
        assert!(decode_check(&c).is_none());
        let c = Check::try_from("check all operation(\"read\"), resource(\"/x\")").unwrap();
        assert!(decode_check(&c).is_none());
    }

    #[test]
    fn injection_stays_data() {
        // Quotes and Datalog syntax in patterns and values are terms, never source.
        let evil = "a\"), operation(\"delete";
        let grant = Grant::parse(&[format!("read:/x{evil}")], &[format!("to={evil}")]).unwrap();
        let checks = grant_checks(&grant, None).unwrap();
        assert_eq!(checks.len(), 1);
        let d = decode_check(&checks[0]).unwrap();
        assert_eq!(d.alternatives, grant.alternatives);
        assert_eq!(d.alternatives[0].actions.len(), 1);
    }

    /// Found by fuzzing: biscuit-auth converts a parsed check's `trusting`
    /// keys with `expect`, so a raw check naming a key of the wrong length
    /// (`trusting ed25519/00`) or not on the curve panicked inside
    /// `grant_checks` (the CLI's `--datalog`, the library's mint, delegate
    /// and narrow) instead of being refused.
    #[test]
    fn a_raw_check_trusting_a_malformed_key_is_refused_not_panicking() {
        let key = "8a875fff1eb38451577acd5afee405456568dd7c89e090863a0557bc7af49f17";
        for bad in [
            "check if true trusting ed25519/00".to_string(),
            // 32 bytes, but not a point on the curve.
            "check if true trusting \
             ed25519/8a875fff1eb38451577acd5afee40545656d8d7c89e090863a0557bc7af49f17"
                .to_string(),
            format!("check if true trusting ed25519/{key}00"),
            "check if true trusting secp256r1/0011".to_string(),
            "check if true trusting {p}, ed25519/abcd".to_string(),
            "check if operation($o) or true trusting ed25519/ab".to_string(),
        ] {
            let mut grant = Grant::parse(&["read:/x"], &[] as &[&str]).unwrap();
            grant.datalog.push(bad.clone());
            let err = grant_checks(&grant, None).unwrap_err();
            assert!(
                matches!(&err, SpecError::Grant(m) if m.contains("raw Datalog check")
                    && m.contains("public key")),
                "{bad}: {err}"
            );
        }
        // A well-formed key still works.
        let mut grant = Grant::parse(&["read:/x"], &[] as &[&str]).unwrap();
        grant
            .datalog
            .push(format!("check if true trusting ed25519/{key}"));
        assert_eq!(grant_checks(&grant, None).unwrap().len(), 2);
    }
}
