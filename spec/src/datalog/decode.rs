//! Checks → grants (§4.4): recognises exactly the canonical shape that
//! [`grant_checks`](super::grant_checks) writes; anything else is `None`.

use super::query_head;
use crate::grant::{Alternative, ApprovalRule, Constraint, IntCmp, ResourcePattern, Value};
use crate::vocab;
use biscuit_auth::builder::{
    Binary, Check, CheckKind, Expression, Op, Predicate, Rule, Scope, Term,
};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

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

/// Reads one query of the canonical shape (§4.4) back into its expiry and
/// alternative (`None` for an expiry-only query); `None` for any other shape.
fn decode_query(q: &Rule) -> Option<(Option<u64>, Option<Alternative>)> {
    let mut r = QueryReading::default();
    for p in &q.body {
        r.predicate(p)?;
    }
    for (i, e) in q.expressions.iter().enumerate() {
        r.expression(i, e)?;
    }
    r.finish()
}

/// What [`decode_query`] has read of a query so far: the variables the body
/// bound, and the parts of the alternative they stand for.
#[derive(Default)]
struct QueryReading<'a> {
    time_var: Option<&'a str>,
    op_var: Option<&'a str>,
    res_var: Option<&'a str>,
    /// The `$name` of `resource($dir, $name)`.
    name_var: Option<&'a str>,
    /// Variable → parameter name.
    params: BTreeMap<&'a str, &'a str>,
    /// The parameter variables some constraint uses.
    constrained: BTreeSet<String>,
    actions: Option<BTreeSet<String>>,
    resource: Option<ResourcePattern>,
    constraints: Vec<Constraint>,
    expiry: Option<u64>,
}

impl<'a> QueryReading<'a> {
    /// One body predicate: each canonical predicate once, parameters once
    /// per variable.
    fn predicate(&mut self, p: &'a Predicate) -> Option<()> {
        match (p.name.as_str(), p.terms.as_slice()) {
            (vocab::TIME, [Term::Variable(v)]) if self.time_var.is_none() => {
                self.time_var = Some(v)
            }
            (vocab::OPERATION, [Term::Str(a)]) if self.actions.is_none() => {
                self.actions = Some(BTreeSet::from([a.clone()]))
            }
            (vocab::OPERATION, [Term::Variable(v)]) if self.op_var.is_none() => {
                self.op_var = Some(v)
            }
            (vocab::RESOURCE, [Term::Str(r)]) if self.resource.is_none() => {
                self.resource = Some(ResourcePattern::Exact(r.clone()))
            }
            (vocab::RESOURCE, [Term::Variable(v)]) if self.res_var.is_none() => {
                self.res_var = Some(v)
            }
            (vocab::RESOURCE, [Term::Str(d), Term::Variable(v)]) if self.resource.is_none() => {
                self.name_var = Some(v);
                self.resource = Some(ResourcePattern::Children(d.clone()))
            }
            (vocab::PARAM, [Term::Str(name), Term::Variable(v)]) => {
                if self.params.insert(v, name).is_some() {
                    return None;
                }
            }
            (vocab::PARAM, [Term::Str(name), Term::Integer(i)]) => {
                self.constraints.push(Constraint::Equals {
                    param: name.clone(),
                    value: Value::Int(*i),
                })
            }
            (vocab::PARAM, [Term::Str(name), Term::Str(s)]) => {
                self.constraints.push(Constraint::Equals {
                    param: name.clone(),
                    value: Value::Str(s.clone()),
                })
            }
            _ => return None,
        }
        Some(())
    }

    /// Expression `i`: `$a OP b` over a variable the body bound (the expiry
    /// only as the first expression).
    fn expression(&mut self, i: usize, e: &Expression) -> Option<()> {
        let used = std::cell::RefCell::new(None::<String>);
        let used = &used;
        let [Op::Value(a), Op::Value(b), Op::Binary(op)] = e.ops.as_slice() else {
            return None;
        };
        let is =
            |t: &Term, v: Option<&str>| matches!((t, v), (Term::Variable(x), Some(y)) if x == y);
        let param = |v: &String| {
            let name = self.params.get(v.as_str()).map(|p| p.to_string());
            if name.is_some() {
                used.replace(Some(v.clone()));
            }
            name
        };
        let constraint = match (a, b, op) {
            (t, Term::Date(d), Binary::LessOrEqual) if is(t, self.time_var) && i == 0 => {
                self.expiry = Some(*d);
                return Some(());
            }
            (t, Term::Date(d), Binary::LessOrEqual) if is(t, self.time_var) => {
                Constraint::NotAfter { at: odt(*d)? }
            }
            (t, Term::Date(d), Binary::GreaterOrEqual) if is(t, self.time_var) => {
                Constraint::NotBefore { at: odt(*d)? }
            }
            (Term::Set(s), t, Binary::Contains) if is(t, self.op_var) && self.actions.is_none() => {
                self.actions = Some(strings(s)?);
                return Some(());
            }
            (t, Term::Str(d), Binary::Prefix) if is(t, self.res_var) && self.resource.is_none() => {
                self.resource = Some(ResourcePattern::Descendants(d.clone()));
                return Some(());
            }
            (Term::Set(s), Term::Variable(v), Binary::Contains) => Constraint::OneOf {
                param: param(v)?,
                values: values(s)?,
            },
            (Term::Variable(v), Term::Integer(bound), op) => {
                let cmp = match op {
                    Binary::LessOrEqual => IntCmp::Le,
                    Binary::LessThan => IntCmp::Lt,
                    Binary::GreaterOrEqual => IntCmp::Ge,
                    Binary::GreaterThan => IntCmp::Gt,
                    _ => return None,
                };
                Constraint::Int {
                    param: param(v)?,
                    cmp,
                    bound: *bound,
                }
            }
            (Term::Variable(v), Term::Str(s), Binary::Prefix) => Constraint::StartsWith {
                param: param(v)?,
                prefix: s.clone(),
            },
            (Term::Variable(v), Term::Str(s), Binary::Suffix) => Constraint::EndsWith {
                param: param(v)?,
                suffix: s.clone(),
            },
            _ => return None,
        };
        if let Some(v) = used.borrow_mut().take() {
            self.constrained.insert(v);
        }
        self.constraints.push(constraint);
        Some(())
    }

    /// The alternative read, if every variable was used as the canonical
    /// form uses it.
    fn finish(self) -> Option<(Option<u64>, Option<Alternative>)> {
        if (self.op_var.is_some() && self.actions.is_none())
            || (self.res_var.is_some() && self.resource.is_none())
        {
            return None;
        }
        // Every parameter the query binds is constrained (§4.1 binds a
        // parameter only to constrain it): `param("rows", $p)` alone
        // requires the parameter to be present, which no grant says.
        if self.params.keys().any(|v| !self.constrained.contains(*v)) {
            return None;
        }
        // The last segment's variable must be bound nowhere else: reused, it
        // would join the resource with another fact and mean something else.
        if let Some(v) = self.name_var {
            if [self.time_var, self.op_var, self.res_var].contains(&Some(v))
                || self.params.contains_key(v)
            {
                return None;
            }
        }
        match (self.actions, self.resource) {
            (Some(actions), Some(resource)) => Some((
                self.expiry,
                Some(Alternative {
                    actions,
                    resource,
                    constraints: self.constraints,
                    approval: None,
                }),
            )),
            (None, None) if self.constraints.is_empty() && self.params.is_empty() => {
                Some((self.expiry, None))
            }
            _ => None,
        }
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
