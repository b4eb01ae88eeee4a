//! The effective capability at each hop: what the token can actually do
//! there, after every narrowing so far (specification §4.2: a request must
//! pass every hop, so the capability is the intersection of their grants).

use crate::chain::Chain;
use crate::grant::{Alternative, ApprovalRule, Constraint, Grant, IntCmp, Limit, ResourcePattern};
use serde::Serialize;
use time::OffsetDateTime;

/// What a token can do at one hop, as data and in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// The alternatives left after intersecting every grant up to this hop
    /// (empty with `nothing` set: no request can pass).
    pub alternatives: Vec<Alternative>,
    /// No request can pass at this hop (the grants do not overlap).
    pub nothing: bool,
    /// Raw Datalog checks in force (they are not intersected, only listed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datalog: Vec<String>,
    /// The earliest expiry so far.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Some hop so far requires proof of possession.
    pub holder_bound: bool,
    /// Every usage limit on the path so far, root first (§18): a request
    /// here must have room in each, and is counted against each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<PathLimit>,
}

/// A usage limit on the path to a hop, and the hop that set it (§18.6).
/// Serialized as `{"hop", "agent", "limit": canonical text, "actions",
/// "param" (budgets only), "max", "window_secs"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathLimit {
    /// The hop that set it (0 = root): it binds that hop's whole subtree.
    pub hop: usize,
    /// That hop's agent.
    pub agent: String,
    /// The limit's canonical text (§18.1), e.g. `send_email 10/1h`.
    #[serde(rename = "limit")]
    pub text: String,
    /// The limit.
    #[serde(flatten)]
    pub limit: Limit,
}

impl Capability {
    /// Everything (before any grant).
    fn unrestricted() -> Capability {
        Capability {
            alternatives: Vec::new(),
            nothing: false,
            datalog: Vec::new(),
            expires_at: None,
            holder_bound: false,
            limits: Vec::new(),
        }
    }

    /// This capability narrowed by `grant` and `expires`.
    fn and(&self, grant: &Grant, expires: Option<OffsetDateTime>, first: bool) -> Capability {
        let mut out = self.clone();
        if let Some(e) = expires {
            out.expires_at = Some(out.expires_at.map_or(e, |x| x.min(e)));
        }
        out.datalog.extend(grant.datalog.iter().cloned());
        out.holder_bound |= grant.holder_bound;
        if grant.alternatives.is_empty() || out.nothing {
            return out;
        }
        if first {
            out.alternatives = Vec::new();
            for a in &grant.alternatives {
                let a = normal(a.clone());
                if !out.alternatives.contains(&a) {
                    out.alternatives.push(a);
                }
            }
            return out;
        }
        let mut next = Vec::new();
        for a in &self.alternatives {
            for b in &grant.alternatives {
                if let Some(c) = intersect(a, b) {
                    if !next.contains(&c) {
                        next.push(c);
                    }
                }
            }
        }
        out.nothing = next.is_empty();
        out.alternatives = next;
        out
    }

    /// In words: `read:/api/customers/* where rows<=100 OR …`, or `nothing`.
    pub fn describe(&self) -> String {
        if self.nothing {
            return "nothing: the grants so far have no request in common".into();
        }
        let mut parts: Vec<String> = self.alternatives.iter().map(|a| a.to_string()).collect();
        if parts.is_empty() {
            parts.push("anything the checks below allow".into());
        }
        let mut out = parts.join(" OR ");
        for d in &self.datalog {
            out.push_str(&format!("; and Datalog: {}", crate::display::quoted(d)));
        }
        if self.holder_bound {
            out.push_str("; each request proven by the final holder's key");
        }
        if !self.limits.is_empty() {
            let limits: Vec<String> = self
                .limits
                .iter()
                .map(|l| format!("{} (set by hop {})", l.text, l.hop))
                .collect();
            out.push_str(&format!(
                "; within every limit on the path: {}",
                limits.join(", ")
            ));
        }
        out
    }
}

/// The effective capability at each hop of `chain` (index = hop), counting
/// the hop's own grant and its first-party narrowing blocks.
pub fn effective_capabilities(chain: &Chain) -> Vec<Capability> {
    let mut out = Vec::with_capacity(chain.hops.len());
    let mut cap = Capability::unrestricted();
    let mut first = true;
    for hop in &chain.hops {
        cap = cap.and(&hop.grant, hop.expires_at, first);
        cap.limits
            .extend(hop.grant.limits.iter().map(|l| PathLimit {
                hop: hop.hop,
                agent: hop.agent.clone(),
                text: l.to_string(),
                limit: l.clone(),
            }));
        first &= hop.grant.alternatives.is_empty();
        for n in &hop.narrowing {
            cap = cap.and(&n.grant, n.expires_at, first);
            first &= n.grant.alternatives.is_empty();
        }
        out.push(cap.clone());
    }
    out
}

/// The requests both alternatives allow, as one alternative (`None`: none).
fn intersect(a: &Alternative, b: &Alternative) -> Option<Alternative> {
    let actions: std::collections::BTreeSet<String> =
        a.actions.intersection(&b.actions).cloned().collect();
    if actions.is_empty() {
        return None;
    }
    let resource = intersect_patterns(&a.resource, &b.resource)?;
    let mut constraints = a.constraints.clone();
    constraints.extend(b.constraints.iter().cloned());
    // Approval rules of both apply: keep the first, mention the second's
    // approver in words when they differ (a rare chain).
    let approval = match (&a.approval, &b.approval) {
        (Some(x), Some(y)) if x != y => Some(ApprovalRule {
            approver: format!("{} and {}", x.approver, y.approver),
            key: x.key.clone(),
            when: x.when.iter().chain(&y.when).cloned().collect(),
        }),
        (Some(x), _) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    };
    Some(normal(Alternative {
        actions,
        resource,
        constraints,
        approval,
    }))
}

/// An alternative in the normal form of SPEC §16: its constraints in the
/// order they first appear, each integer bound of a parameter and
/// direction replaced by the tightest of them (at the first one's place),
/// exact duplicates dropped. Two readers of one chain print the same.
fn normal(mut alt: Alternative) -> Alternative {
    let mut unique: Vec<Constraint> = Vec::new();
    for c in tighten(std::mem::take(&mut alt.constraints)) {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    alt.constraints = unique;
    alt
}

/// Keeps only the tightest integer bound of each direction per parameter
/// (`n<=1000` and `n<=200` → `n<=200`); other constraints stay as they are.
fn tighten(constraints: Vec<Constraint>) -> Vec<Constraint> {
    let mut out: Vec<Constraint> = Vec::new();
    for c in constraints {
        let Constraint::Int { param, cmp, bound } = &c else {
            out.push(c);
            continue;
        };
        // Upper bounds as "< limit", lower bounds as "> limit", to compare.
        let (upper, limit) = match cmp {
            IntCmp::Le => (true, i128::from(*bound) + 1),
            IntCmp::Lt => (true, i128::from(*bound)),
            IntCmp::Ge => (false, i128::from(*bound) - 1),
            IntCmp::Gt => (false, i128::from(*bound)),
        };
        let same = out.iter().position(|o| match o {
            Constraint::Int {
                param: p, cmp: k, ..
            } => p == param && matches!(k, IntCmp::Le | IntCmp::Lt) == upper,
            _ => false,
        });
        match same {
            None => out.push(c),
            Some(i) => {
                let Constraint::Int {
                    cmp: k, bound: b, ..
                } = &out[i]
                else {
                    continue;
                };
                let old = match k {
                    IntCmp::Le => i128::from(*b) + 1,
                    IntCmp::Lt | IntCmp::Gt => i128::from(*b),
                    IntCmp::Ge => i128::from(*b) - 1,
                };
                if (upper && limit < old) || (!upper && limit > old) {
                    out[i] = c;
                }
            }
        }
    }
    out
}

fn intersect_patterns(a: &ResourcePattern, b: &ResourcePattern) -> Option<ResourcePattern> {
    use ResourcePattern::{Children, Descendants, Exact};
    match (a, b) {
        (Exact(x), p) | (p, Exact(x)) => p.matches(x).then(|| Exact(x.clone())),
        (Children(d), Children(e)) => (d == e).then(|| Children(d.clone())),
        (Descendants(d), Descendants(e)) => {
            if d.starts_with(e.as_str()) {
                Some(Descendants(d.clone()))
            } else if e.starts_with(d.as_str()) {
                Some(Descendants(e.clone()))
            } else {
                None
            }
        }
        (Children(d), Descendants(e)) | (Descendants(e), Children(d)) => {
            // One segment below d, and starting with e: all of d's children
            // when e is d or above it; none when e is deeper.
            d.starts_with(e.as_str()).then(|| Children(d.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Request;

    fn alt(text: &str) -> Alternative {
        Alternative::parse(text).unwrap()
    }

    fn capability(grants: &[Grant]) -> Capability {
        let mut cap = Capability::unrestricted();
        let mut first = true;
        for g in grants {
            cap = cap.and(g, None, first);
            first &= g.alternatives.is_empty();
        }
        cap
    }

    fn grant(allow: &[&str], where_: &[&str]) -> Grant {
        Grant::parse(allow, where_).unwrap()
    }

    /// Issue 15 item 10 (SPEC §16 "Normal form"): hop 0's alternatives are
    /// normalized like intersections — duplicate alternatives and
    /// constraints merged, the tightest bound kept at the first's place —
    /// so the same chain prints the same JSON whichever hop it comes from.
    #[test]
    fn the_effective_capability_is_in_normal_form_from_hop_0() {
        let mut g = grant(&["read:/a/*"], &["rows<=100", "to ends-with @x.com"]);
        g.alternatives[0]
            .constraints
            .push(Constraint::parse("rows<=10").unwrap());
        g.alternatives[0]
            .constraints
            .push(Constraint::parse("to ends-with @x.com").unwrap());
        g.alternatives.push(g.alternatives[0].clone());
        let cap = capability(&[g.clone()]);
        assert_eq!(cap.alternatives.len(), 1, "{cap:?}");
        let words: Vec<String> = cap.alternatives[0]
            .constraints
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(words, ["rows<=10", "to ends-with \"@x.com\""]);
        // Intersected with a grant allowing all of it: the same form.
        let all = grant(&["read:/a/*"], &[]);
        assert_eq!(
            capability(&[g.clone(), all.clone()]).alternatives,
            cap.alternatives
        );
        assert_eq!(capability(&[all, g]).alternatives, cap.alternatives);
    }

    proptest::proptest! {
        /// Normal form is idempotent, and duplicating an alternative or a
        /// constraint of a grant never changes the capability.
        #[test]
        fn duplicates_never_change_the_capability(
            bounds in proptest::collection::vec((0usize..2, 0usize..4, -5i64..5), 1..6),
            dup in proptest::prelude::any::<bool>(),
        ) {
            let params = ["a", "b"];
            let ops = ["<=", "<", ">=", ">"];
            let where_: Vec<String> = bounds
                .iter()
                .map(|(p, o, n)| format!("{}{}{}", params[*p], ops[*o], n))
                .collect();
            let g = Grant::parse(&["read:/a/*"], &where_).unwrap();
            let mut doubled = g.clone();
            if dup {
                doubled.alternatives.push(g.alternatives[0].clone());
            } else {
                let c = g.alternatives[0].constraints[0].clone();
                doubled.alternatives[0].constraints.push(c);
            }
            let cap = capability(std::slice::from_ref(&g));
            proptest::prop_assert_eq!(&capability(&[doubled]).alternatives, &cap.alternatives);
            let again = normal(cap.alternatives[0].clone());
            proptest::prop_assert_eq!(&again, &cap.alternatives[0]);
        }
    }

    #[test]
    fn patterns_intersect_as_their_resource_sets_do() {
        let req = |r: &str| Request::new("read", r);
        let cases = [
            ("read:/a/*", "read:/a/**"),
            ("read:/a/**", "read:/a/b/**"),
            ("read:/a/*", "read:/a/b/*"),
            ("read:/a/1", "read:/a/*"),
            ("read:/a/1", "read:/b/**"),
            ("read,list:/a/**", "list,write:/a/b/*"),
        ];
        let tight = tighten(vec![
            Constraint::parse("n<=1000").unwrap(),
            Constraint::parse("n<200").unwrap(),
            Constraint::parse("n>=5").unwrap(),
            Constraint::parse("m<=1").unwrap(),
            Constraint::parse("n>7").unwrap(),
        ]);
        let text: Vec<String> = tight.iter().map(|c| c.to_string()).collect();
        assert_eq!(text, ["n<200", "n>7", "m<=1"]);
        for (x, y) in cases {
            let (x, y) = (alt(x), alt(y));
            let both = intersect(&x, &y);
            for r in ["/a/", "/a/1", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/d", "/b/1"] {
                for action in ["read", "list", "write"] {
                    let mut q = req(r);
                    q.action = action.into();
                    let want = x.allows(&q) && y.allows(&q);
                    let got = both.as_ref().is_some_and(|b| b.allows(&q));
                    assert_eq!(got, want, "{x} ∩ {y} on {action} {r}: {both:?}");
                }
            }
        }
    }
}
