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

use crate::grant::Value;
use biscuit_auth::builder::{Binary, Expression, Op, Predicate, Term};
use time::OffsetDateTime;

mod decode;
mod encode;

pub use decode::{decode_check, DecodedCheck};
pub use encode::{grant_checks, is_holder_check, is_limits_check};

pub(super) fn date(t: &OffsetDateTime) -> Term {
    Term::Date(t.unix_timestamp().max(0) as u64)
}

pub(super) fn value_term(v: &Value) -> Term {
    match v {
        Value::Int(i) => Term::Integer(*i),
        Value::Str(s) => Term::Str(s.clone()),
    }
}

pub(super) fn var(name: &str) -> Term {
    Term::Variable(name.to_string())
}

pub(super) fn pred(name: &str, terms: Vec<Term>) -> Predicate {
    Predicate::new(name.to_string(), terms)
}

pub(super) fn query_head() -> Predicate {
    Predicate::new("query".to_string(), Vec::<Term>::new())
}

pub(super) fn binary(a: Term, b: Term, op: Binary) -> Expression {
    Expression {
        ops: vec![Op::Value(a), Op::Value(b), Op::Binary(op)],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::grant::{Alternative, Grant};
    use crate::SpecError;
    use biscuit_auth::builder::Check;
    use std::collections::BTreeSet;
    use std::time::Duration;
    use std::time::UNIX_EPOCH;

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
