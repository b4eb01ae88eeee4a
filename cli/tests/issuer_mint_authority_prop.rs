//! Property: whatever the issuer service mints for a narrowed admin token
//! satisfies every constraint of that admin token (SERVICE.md S2).
//!
//! Random admin tokens (random constraints over the mint parameters, built
//! as `mandate issue --allow … --where …` builds them, sometimes delegated
//! one hop further with more constraints) × random mint requests through the
//! router. Whenever the service answers 201, the minted token is decoded and
//! checked here, independently of the service's decision code: for every
//! minted alternative × action, every hop of the admin token has an
//! alternative (with `mint-admin` when the minted pattern reaches `/v1/…` or
//! `/ui/…`) whose every constraint the minted token meets in meaning — e.g.
//! `max.rows<=100` holds when the alternative's own constraints imply
//! `rows<=100`, `ttl_seconds<=3600` when the token's expiry is at most an
//! hour after its issue.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "issuer_common/mod.rs"]
mod common;

use axum::http::{Method, StatusCode};
use biscuit_auth::KeyPair;
use common::{call, Env};
use mandate_attenuate::Delegation;
use mandate_issuer::{Issuer, MintRequest, SigningKeys};
use mandate_server::Service;
use mandate_spec::{
    decode_blocks, format_public_key, token_from_text, Alternative, Chain, Constraint, Grant,
    IntCmp, Request, ResourcePattern, Value,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::Duration;

/// Keys every case shares: two agent keys, two approver keys.
struct Keys {
    agents: [KeyPair; 2],
    approvers: [KeyPair; 2],
}

/// Admin constraints the generator picks from; `{A0}` and `{K0}` stand for
/// the first agent key and the first approver key.
const ADMIN_WHERE: &[&str] = &[
    "principal starts-with team:a:",
    "principal in team:a:x|team:b:y",
    "agent=a",
    "agent_key={A0}",
    "ttl_seconds<=3600",
    "ttl_seconds<86400",
    "max_depth<=2",
    "max_depth<1",
    "require_proof=1",
    "purpose starts-with ticket",
    "grant_action in read|list",
    "grant_action=read",
    "grant_resource starts-with /api/a/",
    "grant_resource in /api/a/*|/api/b/*",
    "grant_kind in exact|children",
    "max.rows<=100",
    "max.rows<10",
    "min.rows>=1",
    "eq.region=eu",
    "prefix.to starts-with a",
    "prefix.to starts-with ab",
    "suffix.to ends-with .com",
    "in.cur in EUR|USD",
    "not_after<=4102444800",
    "not_before>=1577836800",
    "approval_key={K0}",
];

const ADMIN_ALLOW: &[&str] = &[
    "mint:/v1/tokens",
    "mint,mint-admin:/v1/tokens",
    "mint:/v1/*",
    "mint-admin:/v1/tokens",
];

/// Minted patterns, with whether they can match `/v1/…` or `/ui/…`.
const PATTERNS: &[(&str, bool)] = &[
    ("/api/a/x", false),
    ("/api/a/*", false),
    ("/api/a/**", false),
    ("/api/ab/*", false),
    ("/api/b/*", false),
    ("/*", false),
    ("/v1", false),
    ("/**", true),
    ("/v1/tokens", true),
    ("/v1/**", true),
    ("/ui/**", true),
];

const MINT_WHERE: &[&str] = &[
    "rows<=5",
    "rows<=100",
    "rows<2000",
    "rows<102",
    "rows<11",
    "rows>=1",
    "rows=7",
    "rows in 1|2",
    "region=eu",
    "region in eu|us",
    "to starts-with ab",
    "to starts-with a",
    "to ends-with .com",
    "cur in EUR",
    "cur in EUR|USD",
    "cur in USD|GBP",
    "cur=GBP",
    "time<=2099-01-01T00:00:00Z",
    "time>=2020-01-01T00:00:00Z",
];

#[derive(Debug, Clone)]
struct AdminSpec {
    allow: usize,
    root_where: Vec<usize>,
    /// A delegation hop: its allow and constraints.
    hop: Option<(usize, Vec<usize>)>,
}

#[derive(Debug, Clone)]
struct MintSpec {
    principal: usize,
    agent: usize,
    agent_key: usize,
    ttl: usize,
    max_depth: Option<u32>,
    purpose: usize,
    require_proof: bool,
    /// Each alternative: action bits (read, list, delete) and a pattern.
    allow: Vec<(u8, usize)>,
    where_: Vec<usize>,
    /// An approval rule on `read`: approver key, and whether it has a
    /// condition.
    approval: Option<(usize, bool)>,
}

fn admin_spec() -> impl Strategy<Value = AdminSpec> {
    let n = ADMIN_WHERE.len();
    (
        0..ADMIN_ALLOW.len(),
        prop::collection::vec(0..n, 0..4),
        prop::option::weighted(
            0.3,
            (0..ADMIN_ALLOW.len(), prop::collection::vec(0..n, 0..3)),
        ),
    )
        .prop_map(|(allow, root_where, hop)| AdminSpec {
            allow,
            root_where,
            hop,
        })
}

fn mint_spec() -> impl Strategy<Value = MintSpec> {
    (
        (0..3usize, 0..2usize, 0..2usize, 0..3usize),
        prop::option::of(0..4u32),
        (0..3usize, any::<bool>()),
        prop::collection::vec((1..8u8, 0..PATTERNS.len()), 1..4),
        prop::collection::vec(0..MINT_WHERE.len(), 0..4),
        prop::option::of((0..2usize, any::<bool>())),
    )
        .prop_map(
            |(
                (principal, agent, agent_key, ttl),
                max_depth,
                (purpose, require_proof),
                allow,
                where_,
                approval,
            )| {
                MintSpec {
                    principal,
                    agent,
                    agent_key,
                    ttl,
                    max_depth,
                    purpose,
                    require_proof,
                    allow,
                    where_,
                    approval,
                }
            },
        )
}

fn admin_text(i: usize, keys: &Keys) -> String {
    ADMIN_WHERE[i]
        .replace("{A0}", &format_public_key(&keys.agents[0].public()))
        .replace("{K0}", &format_public_key(&keys.approvers[0].public()))
}

/// The admin token the spec describes, minted and delegated with the
/// library calls `mandate issue` and `mandate attenuate` make.
fn admin_token(root: &KeyPair, spec: &AdminSpec, keys: &Keys) -> String {
    let holder = KeyPair::new();
    let root_where: Vec<String> = spec
        .root_where
        .iter()
        .map(|i| admin_text(*i, keys))
        .collect();
    let minted = Issuer::with_keys(SigningKeys::new(0, KeyPair::from(&root.private())))
        .mint(&MintRequest {
            principal: "ops:admin".into(),
            agent: "admin-cli".into(),
            agent_key: holder.public(),
            grant: Grant::parse(&[ADMIN_ALLOW[spec.allow]], &root_where).unwrap(),
            ttl: Duration::from_secs(3600),
            purpose: None,
            max_depth: None,
        })
        .unwrap();
    let Some((allow, where_)) = &spec.hop else {
        return minted.to_base64();
    };
    let hop_where: Vec<String> = where_.iter().map(|i| admin_text(*i, keys)).collect();
    mandate_attenuate::delegate(
        &minted.token,
        &holder,
        &Delegation {
            agent: "support-desk".into(),
            agent_key: KeyPair::new().public(),
            grant: Grant::parse(&[ADMIN_ALLOW[*allow]], &hop_where).unwrap(),
            ttl: None,
            purpose: None,
        },
    )
    .unwrap()
    .to_base64()
}

fn mint_body(spec: &MintSpec, keys: &Keys) -> serde_json::Value {
    let actions = |bits: u8| {
        let names: Vec<&str> = ["read", "list", "delete"]
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, a)| *a)
            .collect();
        names.join(",")
    };
    let allow: Vec<String> = spec
        .allow
        .iter()
        .map(|(bits, p)| format!("{}:{}", actions(*bits), PATTERNS[*p].0))
        .collect();
    let where_: Vec<&str> = spec.where_.iter().map(|i| MINT_WHERE[*i]).collect();
    let principal = ["team:a:x", "team:b:y", "user:z"][spec.principal];
    let agent = ["a", "b"][spec.agent];
    let ttl = ["1m", "1h", "2d"][spec.ttl];
    let mut body = json!({
        "principal": principal,
        "agent": agent,
        "agent_key": format_public_key(&keys.agents[spec.agent_key].public()),
        "allow": allow, "where": where_,
        "ttl": ttl,
        "require_proof": spec.require_proof,
    });
    if let Some(d) = spec.max_depth {
        body["max_depth"] = json!(d);
    }
    if let Some(p) = [None, Some("ticket 1"), Some("other")][spec.purpose] {
        body["purpose"] = json!(p);
    }
    if let Some((k, cond)) = spec.approval {
        let when = if cond { " when rows>10" } else { "" };
        body["approval"] = json!([format!(
            "read{when} by finance={}",
            keys.approvers[k].public()
        )]);
    }
    body
}

// ---- The independent check ------------------------------------------------

/// The pattern as written in a grant.
fn pattern_text(p: &ResourcePattern) -> String {
    match p {
        ResourcePattern::Exact(s) => s.clone(),
        ResourcePattern::Children(d) => format!("{d}*"),
        ResourcePattern::Descendants(d) => format!("{d}**"),
    }
}

/// Whether the minted `alt`, for `action`, meets the admin constraint `c`.
fn meets(c: &Constraint, chain: &Chain, alt: &Alternative, action: &str) -> bool {
    let hop = &chain.hops[0];
    let name = c.param().expect("admin constraints are on parameters");
    // Fields the token carries directly: checked with the reference
    // semantics on the value read from the decoded token.
    let direct: Option<Option<Value>> = match name {
        "principal" => Some(Some(Value::Str(chain.principal.clone()))),
        "agent" => Some(Some(Value::Str(hop.agent.clone()))),
        "agent_key" => Some(Some(Value::Str(hop.agent_key.clone()))),
        "ttl_seconds" => Some(Some(Value::Int(
            (hop.expires_at.unwrap() - chain.issued_at).whole_seconds(),
        ))),
        "max_depth" => Some(chain.max_depth.map(|d| Value::Int(d.into()))),
        "require_proof" => Some(Some(Value::Int(i64::from(hop.grant.holder_bound)))),
        "purpose" => Some(hop.purpose.clone().map(Value::Str)),
        "grant_action" => Some(Some(Value::Str(action.into()))),
        "grant_resource" => Some(Some(Value::Str(pattern_text(&alt.resource)))),
        "grant_kind" => Some(Some(Value::Str(
            match alt.resource {
                ResourcePattern::Exact(_) => "exact",
                ResourcePattern::Children(_) => "children",
                ResourcePattern::Descendants(_) => "descendants",
            }
            .into(),
        ))),
        "approval_key" => Some(alt.approval.as_ref().map(|r| Value::Str(r.key.clone()))),
        _ => None,
    };
    if let Some(value) = direct {
        let mut req = Request::new("x", "/x");
        if let Some(v) = value {
            req.params.insert(name.into(), v);
        }
        return c.holds(&req);
    }
    // Fields implied by the alternative's constraints: does the alternative
    // imply what the admin constraint asks, in meaning?
    let (kind, param) = match name {
        "not_after" | "not_before" => (name, ""),
        _ => name.split_once('.').expect("a derived parameter"),
    };
    let on = |p: &str| {
        alt.constraints
            .iter()
            .filter(move |k| k.param() == Some(p))
            .collect::<Vec<_>>()
    };
    let ints = |set: &BTreeSet<Value>| -> Option<Vec<i64>> {
        set.iter()
            .map(|v| match v {
                Value::Int(i) => Some(*i),
                Value::Str(_) => None,
            })
            .collect()
    };
    // Every value the alternative lets `param` take, when it is a finite set.
    let finite = |p: &str| -> Option<BTreeSet<Value>> {
        let mut set: Option<BTreeSet<Value>> = None;
        for k in on(p) {
            let these: BTreeSet<Value> = match k {
                Constraint::OneOf { values, .. } => values.clone(),
                Constraint::Equals { value, .. } => [value.clone()].into(),
                _ => continue,
            };
            set = Some(match set {
                None => these,
                Some(s) => s.intersection(&these).cloned().collect(),
            });
        }
        set
    };
    match (kind, c) {
        ("max", Constraint::Int { cmp, bound, .. }) => {
            let n = match cmp {
                IntCmp::Le => *bound,
                IntCmp::Lt => bound - 1,
                _ => panic!("unsupported {c}"),
            };
            on(param).iter().any(|k| match k {
                Constraint::Int {
                    cmp: IntCmp::Le,
                    bound: b,
                    ..
                } => *b <= n,
                Constraint::Int {
                    cmp: IntCmp::Lt,
                    bound: b,
                    ..
                } => b - 1 <= n,
                Constraint::Equals {
                    value: Value::Int(v),
                    ..
                } => *v <= n,
                Constraint::OneOf { values, .. } => {
                    ints(values).is_some_and(|v| v.iter().all(|i| *i <= n))
                }
                _ => false,
            })
        }
        ("min", Constraint::Int { cmp, bound, .. }) => {
            let n = match cmp {
                IntCmp::Ge => *bound,
                IntCmp::Gt => bound + 1,
                _ => panic!("unsupported {c}"),
            };
            on(param).iter().any(|k| match k {
                Constraint::Int {
                    cmp: IntCmp::Ge,
                    bound: b,
                    ..
                } => *b >= n,
                Constraint::Int {
                    cmp: IntCmp::Gt,
                    bound: b,
                    ..
                } => b + 1 >= n,
                Constraint::Equals {
                    value: Value::Int(v),
                    ..
                } => *v >= n,
                Constraint::OneOf { values, .. } => {
                    ints(values).is_some_and(|v| v.iter().all(|i| *i >= n))
                }
                _ => false,
            })
        }
        ("eq", Constraint::Equals { value, .. }) => {
            finite(param).is_some_and(|s| s.iter().all(|v| v == value) && !s.is_empty())
                || on(param)
                    .iter()
                    .any(|k| matches!(k, Constraint::Equals { value: v, .. } if v == value))
        }
        ("prefix", Constraint::StartsWith { prefix: x, .. }) => {
            on(param).iter().any(|k| match k {
                Constraint::StartsWith { prefix, .. } => prefix.starts_with(x.as_str()),
                _ => false,
            }) || finite(param).is_some_and(|s| {
                s.iter()
                    .all(|v| matches!(v, Value::Str(t) if t.starts_with(x.as_str())))
            })
        }
        ("suffix", Constraint::EndsWith { suffix: x, .. }) => {
            on(param).iter().any(|k| match k {
                Constraint::EndsWith { suffix, .. } => suffix.ends_with(x.as_str()),
                _ => false,
            }) || finite(param).is_some_and(|s| {
                s.iter()
                    .all(|v| matches!(v, Value::Str(t) if t.ends_with(x.as_str())))
            })
        }
        ("in", Constraint::OneOf { values, .. }) => {
            finite(param).is_some_and(|s| s.is_subset(values))
        }
        (
            "not_after",
            Constraint::Int {
                cmp: IntCmp::Le,
                bound,
                ..
            },
        ) => alt
            .constraints
            .iter()
            .any(|k| matches!(k, Constraint::NotAfter { at } if at.unix_timestamp() <= *bound)),
        (
            "not_before",
            Constraint::Int {
                cmp: IntCmp::Ge,
                bound,
                ..
            },
        ) => alt
            .constraints
            .iter()
            .any(|k| matches!(k, Constraint::NotBefore { at } if at.unix_timestamp() >= *bound)),
        _ => panic!("the generator made an admin constraint this check does not read: {c}"),
    }
}

/// Whether the admin chain allows minting `alt` × `action` in meaning.
fn admin_allows(
    admin: &Chain,
    minted: &Chain,
    alt: &Alternative,
    action: &str,
    service: bool,
) -> bool {
    let need = if service { "mint-admin" } else { "mint" };
    admin.hops.iter().all(|hop| {
        hop.grant.alternatives.is_empty()
            || hop.grant.alternatives.iter().any(|a| {
                a.actions.contains(need)
                    && a.resource.matches("/v1/tokens")
                    && a.constraints.iter().all(|c| meets(c, minted, alt, action))
            })
    })
}

fn decode(token: &str) -> Chain {
    let bytes = token_from_text(token).unwrap();
    Chain::from_blocks(&decode_blocks(&bytes).unwrap(), None).unwrap()
}

#[test]
fn whatever_is_minted_satisfies_every_constraint_of_the_admin_token() {
    let env = Env::new();
    let root = KeyPair::new();
    let router = Service::open(&env.config(&[(0, &root)], 0))
        .unwrap()
        .into_router();
    let keys = Keys {
        agents: [KeyPair::new(), KeyPair::new()],
        approvers: [KeyPair::new(), KeyPair::new()],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created = Cell::new(0usize);
    let refused = Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (admin_spec(), prop::collection::vec(mint_spec(), 8));
    runner
        .run(&strategy, |(admin_spec, mints)| {
            let admin = admin_token(&root, &admin_spec, &keys);
            let admin_chain = decode(&admin);
            for spec in &mints {
                let body = mint_body(spec, &keys);
                let (status, answer) = rt.block_on(call(
                    &router,
                    Method::POST,
                    "/v1/tokens",
                    Some(&admin),
                    Some(body.clone()),
                ));
                match status {
                    StatusCode::CREATED => {}
                    StatusCode::FORBIDDEN => {
                        let msg = answer["error"].as_str().unwrap_or_default();
                        prop_assert!(msg.contains(" for alternative "), "{msg}");
                        refused.set(refused.get() + 1);
                        continue;
                    }
                    // An approval rule on an action no alternative has.
                    StatusCode::BAD_REQUEST => {
                        let msg = answer["error"].as_str().unwrap_or_default();
                        prop_assert!(msg.contains("approval"), "{msg}");
                        continue;
                    }
                    other => prop_assert!(false, "unexpected {other}: {answer}"),
                }
                created.set(created.get() + 1);
                let minted = decode(answer["token"].as_str().unwrap());
                for alt in &minted.hops[0].grant.alternatives {
                    let pattern = pattern_text(&alt.resource);
                    let service = PATTERNS
                        .iter()
                        .find(|(p, _)| *p == pattern)
                        .map(|(_, s)| *s)
                        .unwrap();
                    for action in &alt.actions {
                        prop_assert!(
                            admin_allows(&admin_chain, &minted, alt, action, service),
                            "minted {alt} ({action}) beyond the admin token {admin_spec:?}\n\
                             body {body}"
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // The property was exercised both ways.
    let (created, refused) = (created.get(), refused.get());
    eprintln!("{created} mints allowed, {refused} refused");
    assert!(created > 50, "only {created} mints allowed");
    assert!(refused > 50, "only {refused} mints refused");
}
