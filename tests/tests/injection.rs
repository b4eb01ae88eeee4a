//! Hostile and malformed input is refused at validation or stays data.
//!
//! Quotes, newlines and Datalog syntax through agent ids, principals,
//! purposes, patterns, constraint values, actions and parameter names;
//! non-canonical resources; mistyped and missing parameters; Datalog run
//! limits. None of it ever widens what a token allows.
#![allow(clippy::unwrap_used)]

use biscuit_auth::KeyPair;
use mandate_attenuate::delegate;
use mandate_issuer::{IssueError, Issuer};
use mandate_spec::{Grant, Request, SpecError, Value};
use mandate_tests::{
    append_hop, assert_allowed, assert_denied, customers_family, customers_grant, delegation,
    grant, hop_block_for, in_an_hour, mint_request, read_customer, root_keys_of, secs, Agent,
    Family,
};
use mandate_verifier::{DenialKind, Limits, Verifier};
use std::time::SystemTime;

// ---- injection ---------------------------------------------------------------

/// Strings that would change the program if they reached Datalog source.
const EVIL: [&str; 7] = [
    "evil\"), operation(\"delete",
    "\"), operation(\"delete",
    "a\"); check if true; //",
    "x\nallow if true",
    "agent(\"mallory\", hex:00)",
    "a b",
    "",
];

#[test]
fn agent_ids_and_principals_with_datalog_syntax_are_refused() {
    let issuer = Issuer::new(KeyPair::new());
    let good = Agent::new("agent-0");
    for evil in EVIL {
        let mut req = mint_request(&good, customers_grant());
        req.principal = evil.into();
        let err = issuer.mint(&req).unwrap_err();
        assert!(
            matches!(&err, IssueError::Spec(SpecError::Grant(m)) if m.contains("principal")),
            "{evil:?}: {err}"
        );
        let mut req = mint_request(&good, customers_grant());
        req.agent = evil.into();
        let err = issuer.mint(&req).unwrap_err();
        assert!(
            matches!(&err, IssueError::Spec(SpecError::Grant(m)) if m.contains("agent id")),
            "{evil:?}: {err}"
        );
    }
    let f = customers_family(0);
    for evil in EVIL {
        let mut d = delegation(&Agent::new("agent-1"), customers_grant());
        d.agent = evil.into();
        let err = delegate(f.token(), &f.holder().key, &d).unwrap_err();
        assert!(err.to_string().contains("agent id"), "{evil:?}: {err}");
    }
}

#[test]
fn agent_keys_must_be_ed25519() {
    let p256 = KeyPair::new_with_algorithm(biscuit_auth::builder::Algorithm::Secp256r1);
    let issuer = Issuer::new(KeyPair::new());
    let mut req = mint_request(&Agent::new("agent-0"), customers_grant());
    req.agent_key = p256.public();
    let err = issuer.mint(&req).unwrap_err();
    assert!(err.to_string().contains("Ed25519"), "{err}");
    let f = customers_family(0);
    let mut d = delegation(&Agent::new("agent-1"), customers_grant());
    d.agent_key = p256.public();
    let err = delegate(f.token(), &f.holder().key, &d).unwrap_err();
    assert!(err.to_string().contains("Ed25519"), "{err}");
}

#[test]
fn oversized_requests_are_invalid() {
    let f = customers_family(0);
    let mut many = read_customer(1);
    for i in 0..64 {
        many = many.param(format!("p{i}"), i);
    }
    assert_denied(
        &f.authorize(&many),
        DenialKind::InvalidRequest,
        None,
        &["more than 64 parameters"],
    );
    let long = read_customer(1).param("note", "x".repeat(4097));
    assert_denied(
        &f.authorize(&long),
        DenialKind::InvalidRequest,
        None,
        &["parameter note is longer than 4096 bytes"],
    );
    let long_action = Request::new("r".repeat(257), "/api/customers/42");
    assert_denied(
        &f.authorize(&long_action),
        DenialKind::InvalidRequest,
        None,
        &["action longer than 256 bytes"],
    );
    let before_1970 = read_customer(1).at(SystemTime::UNIX_EPOCH - secs(1));
    assert_denied(
        &f.authorize(&before_1970),
        DenialKind::InvalidRequest,
        None,
        &["before 1970"],
    );
}

#[test]
fn purposes_with_datalog_syntax_stay_data() {
    for evil in EVIL {
        let mut f = Family::mint_with(customers_grant(), |r| r.purpose = Some(evil.into()));
        f.delegate_with(
            grant(&["read:/api/customers/*"], &[]),
            |d| d.purpose = Some(evil.into()),
            SystemTime::now(),
        );
        let d = f.authorize(&read_customer(1));
        assert_allowed(&d);
        let chain = d.chain.unwrap();
        assert_eq!(chain.hops[0].purpose.as_deref(), Some(evil));
        assert_eq!(chain.hops[1].purpose.as_deref(), Some(evil));
        // Nothing was injected: delete stays denied by the root.
        let delete = Request::new("delete", "/api/customers/42").param("rows", 1);
        assert_denied(
            &f.authorize(&delete),
            DenialKind::NotAllowed,
            Some(0),
            &["action \"delete\" is not allowed"],
        );
    }
}

#[test]
fn patterns_with_quotes_stay_data() {
    let weird = "/x\"), operation(\"delete\"), resource(\"/x";
    let f = Family::mint(grant(&[&format!("read:{weird}")], &[]));
    assert_eq!(
        f.authorize(&Request::new("read", weird))
            .chain
            .unwrap()
            .hops[0]
            .grant,
        grant(&[&format!("read:{weird}")], &[])
    );
    assert_allowed(&f.authorize(&Request::new("read", weird)));
    assert_denied(
        &f.authorize(&Request::new("read", "/x")),
        DenialKind::NotAllowed,
        Some(0),
        &["resource \"/x\" is not"],
    );
    assert_denied(
        &f.authorize(&Request::new("delete", "/x")),
        DenialKind::NotAllowed,
        Some(0),
        &["action \"delete\" is not allowed"],
    );
    assert_denied(
        &f.authorize(&Request::new("delete", weird)),
        DenialKind::NotAllowed,
        Some(0),
        &["action \"delete\" is not allowed"],
    );
    // A pattern with a newline or a stray wildcard is refused outright.
    for bad in [
        "read:/x\nallow if true",
        "read:/x/*\"), operation(\"delete",
        "read:/api/../admin/*",
        "rea\"d:/x",
    ] {
        assert!(Grant::parse(&[bad], &[] as &[&str]).is_err(), "{bad:?}");
    }
}

#[test]
fn constraint_and_parameter_values_with_datalog_syntax_stay_data() {
    let f = Family::mint(grant(
        &["send:/mcp/email"],
        &[
            "to ends-with @company.com",
            "currency=EUR\"), operation(\"delete",
        ],
    ));
    let send = |to: &str, currency: &str| {
        Request::new("send", "/mcp/email")
            .param("to", to)
            .param("currency", currency)
    };
    let currency = "EUR\"), operation(\"delete";
    assert_allowed(&f.authorize(&send("ap@company.com", currency)));
    // The constraint value is one string, not `EUR` plus a predicate.
    assert_denied(
        &f.authorize(&send("ap@company.com", "EUR")),
        DenialKind::NotAllowed,
        Some(0),
        &["parameter currency=\"EUR\" violates currency="],
    );
    // A parameter value is one string: no second `param("to", …)` appears.
    let evil_to = "ok@company.com\"), param(\"to\", \"x@evil.com";
    assert_denied(
        &f.authorize(&send(evil_to, currency)),
        DenialKind::NotAllowed,
        Some(0),
        &["parameter to=", "violates to ends-with \"@company.com\""],
    );
    let with_newline = "x@evil.com\nok@company.com";
    assert_allowed(&f.authorize(&send(with_newline, currency)));
    let with_newline = "ok@company.com\nx@evil.com";
    assert_denied(
        &f.authorize(&send(with_newline, currency)),
        DenialKind::NotAllowed,
        Some(0),
        &["violates to ends-with"],
    );
}

#[test]
fn actions_and_parameter_names_with_datalog_syntax_are_invalid_requests() {
    let f = customers_family(1);
    for evil in EVIL {
        let d = f.authorize(&Request::new(evil, "/api/customers/42").param("rows", 1));
        assert_denied(&d, DenialKind::InvalidRequest, None, &["action"]);
        assert!(d.chain.is_none());
        let d = f.authorize(&read_customer(1).param(evil, 1));
        assert_denied(&d, DenialKind::InvalidRequest, None, &["parameter name"]);
    }
    assert_denied(
        &f.authorize(&read_customer(1).param("time", 0)),
        DenialKind::InvalidRequest,
        None,
        &["`time` is reserved"],
    );
}

// ---- malformed requests ------------------------------------------------------

#[test]
fn non_canonical_resources_are_invalid_requests() {
    let f = Family::mint(grant(&["read:/api/customers/**"], &[]));
    assert_allowed(&f.authorize(&Request::new("read", "/api/customers/42")));
    for (resource, why) in [
        ("/api/customers/../admin", "has a . or .. segment"),
        ("/api/customers/./42", "has a . or .. segment"),
        ("/api/customers/..", "has a . or .. segment"),
        ("/api/customers//42", "has an empty path segment"),
        ("/api/customers/%2e%2e/admin", "contains %2E"),
        ("/api/customers/%2E%2E/admin", "contains %2E"),
        ("/api/customers/42%2Forders", "contains %2F"),
        ("/api/customers/42%00", "contains %00"),
        // Regression (issue 12 review): forms a server resolves to another
        // path than the one decided: path parameters on a dot segment
        // (Tomcat reads `..;` as `..`), encodings of unreserved characters
        // (equivalent to the character, RFC 3986 §6.2.2.2), double encoding.
        ("/api/customers/..;/admin", "has a ;"),
        ("/api/customers/42;jsessionid=x", "has a ;"),
        ("/api/%63ustomers/42", "contains %63"),
        ("/api/customers/%2542", "contains %25"),
        ("/api/customers/%4", "does not start a percent-encoding"),
        ("/api/customers/x\\..\\admin", "backslash"),
        ("/api/customers/42\n", "control character"),
        ("", "is empty"),
    ] {
        let d = f.authorize(&Request::new("read", resource));
        assert_denied(
            &d,
            DenialKind::InvalidRequest,
            None,
            &["invalid request: resource", why],
        );
        assert!(d.chain.is_none());
    }
    let long = format!("/api/customers/{}", "a".repeat(300));
    assert_denied(
        &f.authorize(&Request::new("read", long)),
        DenialKind::InvalidRequest,
        None,
        &["longer than 256 bytes"],
    );
}

#[test]
fn a_string_parameter_against_an_integer_bound_is_denied() {
    let f = customers_family(1);
    // "50" as a string is not the integer 50: Datalog cannot compare them.
    let d = f.authorize(&Request::new("read", "/api/customers/42").param("rows", "50"));
    assert_denied(
        &d,
        DenialKind::Evaluation,
        None,
        &["could not be evaluated", "string parameter compared"],
    );
    // starts-with on an integer: the same evaluation failure.
    let g = Family::mint(grant(&["send:/mcp/email"], &["to starts-with ap@"]));
    assert_denied(
        &g.authorize(&Request::new("send", "/mcp/email").param("to", 7)),
        DenialKind::Evaluation,
        None,
        &["could not be evaluated"],
    );
    // `=` with the other type simply does not match: the hop denies.
    let h = Family::mint(grant(&["pay:/api/pay"], &["currency=978"]));
    assert_allowed(&h.authorize(&Request::new("pay", "/api/pay").param("currency", 978)));
    assert_denied(
        &h.authorize(&Request::new("pay", "/api/pay").param("currency", "978")),
        DenialKind::NotAllowed,
        Some(0),
        &["parameter currency=\"978\" violates currency=978"],
    );
    // Typed `in` sets: an integer set does not match a string.
    let k = Family::mint(grant(&["pay:/api/pay"], &["kind in 1|2"]));
    assert_eq!(
        k.authorize(&Request::new("pay", "/api/pay").param("kind", 1))
            .chain
            .unwrap()
            .hops[0]
            .grant
            .alternatives[0]
            .constraints[0],
        mandate_spec::Constraint::OneOf {
            param: "kind".into(),
            values: [Value::Int(1), Value::Int(2)].into()
        }
    );
    assert_allowed(&k.authorize(&Request::new("pay", "/api/pay").param("kind", 1)));
    assert_denied(
        &k.authorize(&Request::new("pay", "/api/pay").param("kind", "1")),
        DenialKind::NotAllowed,
        Some(0),
        &["parameter kind=\"1\" violates kind in 1|2"],
    );
}

#[test]
fn a_missing_parameter_is_denied_naming_it() {
    let f = customers_family(1);
    let d = f.authorize(&Request::new("read", "/api/customers/42"));
    let denial = assert_denied(
        &d,
        DenialKind::NotAllowed,
        Some(0),
        &[
            "hop 0 (root token",
            "parameter rows is missing, and rows<=100 requires it",
        ],
    );
    // Hop 1 requires it too, and says so after the root.
    assert!(
        denial
            .reason
            .contains("also denied by hop 1 (agent \"agent-1\""),
        "{}",
        denial.reason
    );
    // An unrelated parameter does not stand in for it.
    assert_denied(
        &f.authorize(&Request::new("read", "/api/customers/42").param("limit", 1)),
        DenialKind::NotAllowed,
        Some(0),
        &["parameter rows is missing"],
    );
}

// ---- evaluation limits -------------------------------------------------------

#[test]
fn blocks_that_could_make_datalog_explode_are_refused_before_it_runs() {
    // Regression (security review): biscuit-auth looks at its run limits only
    // between rule rounds, so a hop with rules could derive 12³ facts, or
    // join many facts in one check, before any limit applied. Token blocks
    // may hold no rules, only their vocabulary's facts, and queries joining
    // at most one open param(…).
    let f = customers_family(1);
    let defaults = Verifier::new(root_keys_of(&f.issuer));
    assert_eq!(defaults.limits(), Limits::default());
    let rules = hop_block_for(&Agent::new("agent-2"), &customers_grant(), in_an_hour())
        .code("v(0); v(1); v(2); triple($x, $y, $z) <- v($x), v($y), v($z);")
        .unwrap();
    let token = append_hop(f.token(), &f.holder().key, rules);
    assert_denied(
        &defaults.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(2),
        &["may not contain rules"],
    );
    let facts = hop_block_for(&Agent::new("agent-2"), &customers_grant(), in_an_hour())
        .code("v(0); v(1);")
        .unwrap();
    let token = append_hop(f.token(), &f.holder().key, facts);
    assert_denied(
        &defaults.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(2),
        &["fact v(…) is not allowed"],
    );
    let join = hop_block_for(&Agent::new("agent-2"), &customers_grant(), in_an_hour())
        .code("check if param($a, $b), param($c, $d), $b == $d;")
        .unwrap();
    let token = append_hop(f.token(), &f.holder().key, join);
    assert_denied(
        &defaults.authorize(&token, &read_customer(1)),
        DenialKind::BrokenChain,
        Some(2),
        &["at most one param"],
    );
    // The limits are still set explicitly, and too short a time limit fails
    // closed rather than open.
    let hurried = defaults.with_limits(Limits {
        max_time: std::time::Duration::from_nanos(1),
        ..Limits::default()
    });
    assert_denied(
        &hurried.authorize(f.token(), &read_customer(1)),
        DenialKind::Evaluation,
        None,
        &["run limit"],
    );
}
