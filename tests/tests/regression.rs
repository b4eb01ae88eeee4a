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

/// Security review: a check whose expression is not well-formed RPN (here a
/// lone `+`) made Biscuit's printer panic inside `Chain::from_blocks`, taking
/// the verifier down. It is now shown as malformed and the request denied.
#[test]
fn a_malformed_expression_in_a_check_denies_instead_of_panicking() {
    use biscuit_auth::builder::{Binary, Check, CheckKind, Expression, Op, Predicate, Rule, Term};
    let f = mandate_tests::customers_family(1);
    let check = Check {
        queries: vec![Rule::new(
            Predicate::new("query".into(), Vec::<Term>::new()),
            vec![],
            vec![Expression {
                ops: vec![Op::Binary(Binary::Add)],
            }],
            vec![],
        )],
        kind: CheckKind::One,
    };
    let token = mandate_tests::append_first_party(
        f.token(),
        biscuit_auth::builder::BlockBuilder::new()
            .check(check)
            .unwrap(),
    );
    let verifier = mandate_tests::verifier_for(&f.issuer);
    let d = verifier.authorize(&token, &mandate_tests::read_customer(1));
    assert!(!d.is_allowed());
}

/// Security review: ECDSA (P-256) signatures are malleable, so a block whose
/// next key was P-256 could have its revocation id changed by anyone. Only
/// Ed25519 keys are accepted anywhere in a token.
#[test]
fn a_p256_next_key_is_refused() {
    use biscuit_auth::{builder::Algorithm, KeyPair, UnverifiedBiscuit};
    let f = mandate_tests::customers_family(1);
    let p256 = KeyPair::new_with_algorithm(Algorithm::Secp256r1);
    let token = UnverifiedBiscuit::from(f.token())
        .unwrap()
        .append_with_keypair(&p256, biscuit_auth::builder::BlockBuilder::new())
        .unwrap()
        .to_vec()
        .unwrap();
    let verifier = mandate_tests::verifier_for(&f.issuer);
    let d = verifier.authorize(&token, &mandate_tests::read_customer(1));
    let denial = d.denial.unwrap();
    assert!(denial.reason.contains("not Ed25519"), "{}", denial.reason);
}

/// Security review: a request time past `SystemTime`'s range panicked while
/// deserializing a `Request`.
#[test]
fn an_out_of_range_request_time_is_an_error_not_a_panic() {
    let r: Result<mandate_spec::Request, _> =
        serde_json::from_str(r#"{"action":"read","resource":"/x","time":18446744073709551615}"#);
    assert!(r.is_err());
}

/// Issue 15 (found by the Python conformance runner): `%+A` passed as a
/// percent-encoding of a newline, because `u8::from_str_radix` accepts a
/// sign; §5.2 says `%` and two hex digits.
#[test]
fn a_percent_sign_followed_by_a_sign_is_not_a_percent_encoding() {
    for resource in ["/api/%+A", "/api/%-A", "/api/%+0", "/api/%2", "/api/%"] {
        let err = mandate_spec::check_resource(resource)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not start a percent-encoding"),
            "{resource}: {err}"
        );
    }
    assert!(mandate_spec::check_resource("/api/%20x").is_ok());
    let f = mandate_tests::customers_family(0);
    let verifier = mandate_tests::verifier_for(&f.issuer);
    let request = mandate_spec::Request::new("read", "/api/customers/%+A");
    mandate_tests::assert_denied(
        &verifier.authorize(f.token(), &request),
        mandate_verifier::DenialKind::InvalidRequest,
        None,
        &["percent-encoding"],
    );
}
