//! Regression tests, each named after what broke.
#![allow(clippy::unwrap_used)]

use mandate_attenuate::{delegate, AttenuateError};
use mandate_issuer::IssueError;
use mandate_spec::{Constraint, Grant, SpecError, Value};
use mandate_tests::{delegation, grant, mint_request, Agent, Family};

/// `kind in 1|a` typed its values one by one into the set `{1, "a"}`. Biscuit
/// sets are homogeneous: the issuer minted a token no verifier could read
/// (`malformed_token`), and `delegate` panicked inside biscuit-auth while
/// appending the hop. Such a set is now refused as a malformed grant.
#[test]
fn an_in_set_mixing_integers_and_strings_is_refused_not_minted_or_panicking() {
    let err = Grant::parse(&["read:/x"], &["kind in 1|a"]).unwrap_err();
    assert!(
        matches!(&err, SpecError::Grant(m) if m.contains("mixes integer and string values")),
        "{err}"
    );
    // Built as data, it is refused when encoded: by the issuer…
    let mixed = Grant::single(mandate_spec::Alternative {
        constraints: vec![Constraint::OneOf {
            param: "kind".into(),
            values: [Value::Int(1), Value::from("a")].into(),
        }],
        ..grant(&["read:/x"], &[]).alternatives[0].clone()
    });
    let issuer = mandate_issuer::Issuer::new(biscuit_auth::KeyPair::new());
    let err = issuer
        .mint(&mint_request(&Agent::new("agent-0"), mixed.clone()))
        .unwrap_err();
    assert!(
        matches!(err, IssueError::Spec(SpecError::Grant(_))),
        "{err}"
    );
    // …and by the attenuator, with an error rather than a panic.
    let f = Family::mint(grant(&["read:/x"], &[]));
    let err = delegate(
        f.token(),
        &f.holder().key,
        &delegation(&Agent::new("agent-1"), mixed),
    )
    .unwrap_err();
    assert!(
        matches!(err, AttenuateError::Spec(SpecError::Grant(_))),
        "{err}"
    );
    // Homogeneous sets of either type still work; `007` is the string "007".
    assert!(Constraint::parse("kind in 1|2").is_ok());
    assert!(Constraint::parse("kind in a|b").is_ok());
    assert!(Constraint::parse("kind in 007|42").is_err());
    assert!(Constraint::parse("kind in 007|x").is_ok());
}
