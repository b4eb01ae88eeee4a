//! Issue 15, items 2–5: gaps in the grant grammar (§3.4, §5.1, §5.2) that an
//! independent implementation found. Each test is named after the gap.
#![allow(clippy::unwrap_used)]

use mandate_spec::{Constraint, Grant, IntCmp, Request, ResourcePattern, SpecError, Value};
use proptest::prelude::*;

fn refused(text: &str) -> String {
    match Constraint::parse(text) {
        Err(SpecError::Grant(m)) => m,
        other => panic!("{text:?} should be refused, got {other:?}"),
    }
}

// Item 2: `PARAM=VALUE` is typed by the canonical rule of §5.1, the same rule
// the CLI applies to `--param`, so the same text types the same way in both.

#[test]
fn equals_value_is_typed_by_the_canonical_integer_rule_of_5_1() {
    for (text, want) in [
        ("n=5", Value::Int(5)),
        ("n=-3", Value::Int(-3)),
        ("n=0", Value::Int(0)),
        ("n=007", Value::Str("007".into())),
        ("n=-0", Value::Str("-0".into())),
        ("n=+5", Value::Str("+5".into())),
        ("n=9223372036854775807", Value::Int(i64::MAX)),
        ("n=-9223372036854775808", Value::Int(i64::MIN)),
        (
            "n=9223372036854775808",
            Value::Str("9223372036854775808".into()),
        ),
    ] {
        let c = Constraint::parse(text).unwrap();
        assert_eq!(
            c,
            Constraint::Equals {
                param: "n".into(),
                value: want
            },
            "{text}"
        );
    }
}

#[test]
fn equals_in_a_grant_and_param_in_a_request_type_the_same_text_alike() {
    for v in ["007", "-0", "+5", "9223372036854775808", "5"] {
        let grant = Grant::parse(&["read:/api/x"], &[format!("n={v}")]).unwrap();
        // The CLI's `--param n=<v>` types the value with Value::infer.
        let same = Request::new("read", "/api/x").param("n", Value::infer(v));
        assert!(
            grant.alternatives[0].allows(&same),
            "n={v} should match itself"
        );
    }
    // And the other type does not match: `n=007` is the string "007", not 7.
    let grant = Grant::parse(&["read:/api/x"], &["n=007"]).unwrap();
    assert!(!grant.alternatives[0].allows(&Request::new("read", "/api/x").param("n", 7i64)));
    let grant = Grant::parse(&["read:/api/x"], &["n=5"]).unwrap();
    assert!(!grant.alternatives[0].allows(&Request::new("read", "/api/x").param("n", "5")));
}

#[test]
fn in_values_are_typed_by_the_same_rule() {
    let c = Constraint::parse("n in 1|2|3").unwrap();
    assert!(
        matches!(c, Constraint::OneOf { values, .. } if values.iter().all(|v| matches!(v, Value::Int(_))))
    );
    let c = Constraint::parse("n in 007|+5").unwrap();
    assert!(
        matches!(c, Constraint::OneOf { values, .. } if values.iter().all(|v| matches!(v, Value::Str(_))))
    );
    // `01|1` would be a string and an integer: refused as a mixed set.
    assert!(refused("n in 01|1").contains("mixes integer and string"));
}

// Item 3: whitespace. Around the parameter name and an operator it is
// ignored; at either end of the constraint, or at either end of a string
// value, it is refused (it would be ambiguous whether it is part of the value).

#[test]
fn whitespace_around_an_operator_is_ignored() {
    let want = Constraint::Int {
        param: "rows".into(),
        cmp: IntCmp::Le,
        bound: 5,
    };
    for text in ["rows<=5", "rows <= 5", "rows\t<=\t5", "rows  <=5"] {
        assert_eq!(Constraint::parse(text).unwrap(), want, "{text:?}");
    }
    assert_eq!(
        Constraint::parse("currency = EUR").unwrap(),
        Constraint::Equals {
            param: "currency".into(),
            value: Value::Str("EUR".into())
        }
    );
    assert!(matches!(
        Constraint::parse("time >= 2026-01-01T00:00:00Z").unwrap(),
        Constraint::NotBefore { .. }
    ));
    assert_eq!(
        Constraint::parse("to  ends-with @company.com").unwrap(),
        Constraint::EndsWith {
            param: "to".into(),
            suffix: "@company.com".into()
        }
    );
}

#[test]
fn trailing_or_leading_whitespace_in_a_constraint_is_refused_not_trimmed() {
    for text in [
        "to ends-with ",
        "to ends-with x ",
        "to starts-with  x",
        "name=EUR ",
        " rows<=5",
        "rows<=5 ",
        "rows<=5\n",
        "mode in a |b",
        "mode in a| b",
        "n in 1 |2",
    ] {
        let m = refused(text);
        assert!(m.contains("whitespace"), "{text:?}: {m}");
    }
}

#[test]
fn a_string_value_is_taken_exactly_after_its_separating_space() {
    assert_eq!(
        Constraint::parse("to ends-with @a b").unwrap(),
        Constraint::EndsWith {
            param: "to".into(),
            suffix: "@a b".into()
        }
    );
    assert_eq!(
        Constraint::parse("q starts-with a  b").unwrap(),
        Constraint::StartsWith {
            param: "q".into(),
            prefix: "a  b".into()
        }
    );
}

// Item 4: a bound N is an integer written canonically (§5.1).

#[test]
fn bound_with_plus_leading_zero_or_minus_zero_is_refused() {
    for text in [
        "rows<=+5",
        "rows<=05",
        "rows<=-0",
        "rows>=-05",
        "rows<9223372036854775808",
        "rows>5.0",
        "rows<=0x10",
        "rows<= ",
    ] {
        let m = if text.ends_with(' ') {
            refused(text)
        } else {
            let m = refused(text);
            assert!(m.contains("canonically"), "{text:?}: {m}");
            m
        };
        assert!(!m.is_empty());
    }
    assert!(Constraint::parse("rows<=-9223372036854775808").is_ok());
    assert!(Constraint::parse("rows<=0").is_ok());
}

// Item 5: a pattern's `PREFIX/` and an exact path are canonical (§5.2).

#[test]
fn non_canonical_pattern_prefix_is_refused_at_parse() {
    for pattern in [
        "/api//*",
        "/api//**",
        "//*",
        "//**",
        "/api///x/**",
        "/api/./x",
        "/api/./*",
        "/api/../*",
        "/api/../**",
        "/api/%2e/*",
        "/api/%2E%2E/**",
        "/api/x//",
        "/api/;x/*",
    ] {
        match ResourcePattern::parse(pattern) {
            Err(SpecError::Grant(m)) => assert!(m.contains("pattern"), "{pattern}: {m}"),
            other => panic!("{pattern} should be refused, got {other:?}"),
        }
        // Minting and attenuating go through Grant::parse / Grant::validate.
        assert!(Grant::parse(&[format!("read:{pattern}")], &[] as &[&str]).is_err());
        let g = Grant::single(mandate_spec::Alternative {
            actions: ["read".to_string()].into(),
            resource: match pattern.strip_suffix("**").or(pattern.strip_suffix('*')) {
                Some(d) if pattern.ends_with("**") => ResourcePattern::Descendants(d.into()),
                Some(d) => ResourcePattern::Children(d.into()),
                None => ResourcePattern::Exact(pattern.into()),
            },
            constraints: Vec::new(),
            approval: None,
        });
        assert!(
            g.validate().is_err(),
            "{pattern}: validate must refuse it too"
        );
    }
    for ok in [
        "/*", "/**", "/api/*", "/api/**", "/api/x/", "/api/x", "urn:x:y",
    ] {
        assert!(ResourcePattern::parse(ok).is_ok(), "{ok}");
    }
}

proptest! {
    #[test]
    fn a_parsed_bound_prints_back_identically(
        param in "[a-z][a-z0-9_]{0,8}",
        op in prop::sample::select(vec!["<=", ">=", "<", ">", "="]),
        text in prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            "[+-]?[0-9]{1,20}",
        ],
    ) {
        let src = format!("{param}{op}{text}");
        match Constraint::parse(&src) {
            Ok(c @ Constraint::Int { .. }) => prop_assert_eq!(c.to_string(), src),
            Ok(c @ Constraint::Equals { value: Value::Int(_), .. }) => {
                prop_assert_eq!(c.to_string(), src)
            }
            Ok(Constraint::Equals { value: Value::Str(s), .. }) => {
                prop_assert_eq!(op, "=");
                prop_assert_ne!(s.parse::<i64>().ok().map(|i| i.to_string()), Some(s.clone()));
            }
            Ok(other) => prop_assert!(false, "{src} parsed as {other:?}"),
            Err(_) => {
                // Refused only when the bound is not a canonical integer.
                prop_assert_ne!(op, "=");
                prop_assert!(!matches!(Value::infer(&text), Value::Int(_)));
            }
        }
    }

    #[test]
    fn value_infer_is_an_integer_exactly_when_it_prints_back(text in "[+-]?[0-9]{1,20}|.{0,12}") {
        match Value::infer(&text) {
            Value::Int(i) => prop_assert_eq!(i.to_string(), text),
            Value::Str(s) => {
                prop_assert_eq!(&s, &text);
                prop_assert!(s.parse::<i64>().map(|i| i.to_string() != s).unwrap_or(true));
            }
        }
    }

    #[test]
    fn an_accepted_wildcard_pattern_has_a_canonical_directory(
        segs in prop::collection::vec(prop_oneof!["[a-z]{1,3}", Just(String::new()), Just(".".to_string()), Just("..".to_string())], 0..5),
        star in prop::sample::select(vec!["*", "**"]),
    ) {
        let dir = format!("/{}", segs.iter().map(|s| format!("{s}/")).collect::<String>());
        let pattern = format!("{dir}{star}");
        let ok = ResourcePattern::parse(&pattern).is_ok();
        prop_assert_eq!(ok, mandate_spec::check_canonical(&dir).is_ok(), "{}", pattern);
        prop_assert_eq!(ok, segs.iter().all(|s| !s.is_empty() && s != "." && s != ".."));
    }
}
