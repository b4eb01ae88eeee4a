//! The cases of the conformance vectors, by area. Every token and request
//! is fixed here or drawn from a generator seeded by [`super::SEED`].

use super::{at, key, key_of, root, token_id, Case, Presented, ProofSpec, Req, Tok};
use crate::{container, encode};
use biscuit_auth::builder::{bytes, date, fact, Algorithm, BlockBuilder};
use biscuit_auth::{BiscuitBuilder, KeyPair};
use mandate_spec::{
    hop_block, narrowing_block, root_block, token_to_text, Alternative, Grant, HopContent, Request,
    ResourcePattern, RootContent, Value,
};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The root tokens' lifetime: 30 days after [`super::T0`].
const ROOT_TTL: u64 = 30 * 86_400;
/// When requests are made unless a case says otherwise: one hour in.
const NOW: u64 = 3_600;

/// Every case, in order.
pub(super) fn all() -> Vec<Case> {
    let mut out = Vec::new();
    grammar(&mut out);
    requests(&mut out);
    depth(&mut out);
    narrowing(&mut out);
    root_keys(&mut out);
    approvals(&mut out);
    holder(&mut out);
    chain_rules(&mut out);
    cost_rules(&mut out);
    rule_order(&mut out);
    malformed(&mut out);
    random(&mut out);
    out
}

// ---------------------------------------------------------------- helpers

fn agent(i: usize) -> (String, KeyPair) {
    (format!("agent-{i}"), key(&format!("agent/{i}")))
}

fn grant(allow: &[&str], where_: &[&str]) -> Grant {
    Grant::parse(allow, where_).unwrap_or_else(|e| panic!("grant {allow:?} {where_:?}: {e}"))
}

fn rq(action: &str, resource: &str) -> Request {
    Request::new(action, resource).at(at(NOW))
}

fn rqp(action: &str, resource: &str, params: &[(&str, Value)]) -> Request {
    params
        .iter()
        .fold(rq(action, resource), |r, (n, v)| r.param(*n, v.clone()))
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

fn plain(requests: Vec<Request>) -> Vec<Req> {
    requests
        .into_iter()
        .map(|request| Req {
            request,
            proof: None,
        })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).expect("date")
}

fn case(
    out: &mut Vec<Case>,
    name: &str,
    description: &str,
    covers: &[&str],
    tok: &Tok,
    reqs: Vec<Request>,
) {
    case_with(
        out,
        name,
        description,
        covers,
        Presented::Bytes(tok.bytes.clone()),
        plain(reqs),
    );
}

fn case_with(
    out: &mut Vec<Case>,
    name: &str,
    description: &str,
    covers: &[&str],
    token: Presented,
    requests: Vec<Req>,
) {
    out.push(Case {
        name: name.into(),
        description: description.into(),
        covers: covers.iter().map(|c| c.to_string()).collect(),
        token,
        requests,
    });
}

/// Options of a root token minted by the spec's own encoder.
struct Root<'a> {
    label: &'a str,
    root_id: u32,
    grant: Grant,
    max_depth: Option<u32>,
    purpose: Option<&'a str>,
    ttl: u64,
}

impl<'a> Root<'a> {
    fn new(label: &'a str, grant: Grant) -> Root<'a> {
        Root {
            label,
            root_id: 0,
            grant,
            max_depth: None,
            purpose: Some("conformance"),
            ttl: ROOT_TTL,
        }
    }

    fn mint(&self) -> Tok {
        let id = token_id(self.label);
        let (name, k) = agent(0);
        let builder = root_block(
            &RootContent {
                token_id: &id,
                principal: "user:alice",
                issued_at: at(0),
                max_depth: self.max_depth,
            },
            &HopContent {
                agent: &name,
                agent_key: &k.public(),
                purpose: self.purpose,
                grant: &self.grant,
                expires: at(self.ttl),
            },
        )
        .unwrap_or_else(|e| panic!("{}: root block: {e}", self.label));
        Tok::mint(self.label, self.root_id, builder)
    }
}

/// Appends a delegation hop from agent `from` to agent `to`, built by the
/// spec's encoder and signed by `from`'s key, expiring `ttl` after T0.
fn hop(tok: &Tok, from: usize, to: usize, grant: &Grant, ttl: u64) -> Tok {
    let (name, k) = agent(to);
    let purpose = format!("hop to {name}");
    let block = hop_block(&HopContent {
        agent: &name,
        agent_key: &k.public(),
        purpose: Some(&purpose),
        grant,
        expires: at(ttl),
    })
    .expect("hop block");
    tok.third_party(&agent(from).1, block)
}

fn narrow(tok: &Tok, grant: &Grant, ttl: Option<u64>) -> Tok {
    tok.first_party(narrowing_block(grant, ttl.map(at)).expect("narrowing block"))
}

fn code(src: &str) -> BlockBuilder {
    BlockBuilder::new()
        .code(src)
        .unwrap_or_else(|e| panic!("block {src:?}: {e}"))
}

fn hexkey(k: &KeyPair) -> String {
    hex::encode(k.public().to_bytes())
}

/// The read check every crafted block carries.
fn read_check(ttl: u64) -> String {
    format!(
        "check if time($time), operation(\"read\"), resource(\"/api/customers/42\"), $time <= {};",
        rfc3339(at(ttl))
    )
}

/// A root block's Datalog, each part replaceable.
struct RawRoot {
    token: String,
    principal: String,
    issued_at: String,
    agent: String,
    extra: String,
}

impl RawRoot {
    fn new(label: &str) -> RawRoot {
        RawRoot {
            token: format!("token(\"{}\");", token_id(label)),
            principal: "principal(\"user:alice\");".into(),
            issued_at: format!("issued_at({});", rfc3339(at(0))),
            agent: format!("agent(\"agent-0\", hex:{});", hexkey(&agent(0).1)),
            extra: String::new(),
        }
    }

    fn mint(&self, label: &str) -> Tok {
        let src = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.token,
            self.principal,
            self.issued_at,
            self.agent,
            self.extra,
            read_check(ROOT_TTL)
        );
        let builder = BiscuitBuilder::new()
            .code(&src)
            .unwrap_or_else(|e| panic!("{label}: root {src:?}: {e}"));
        Tok::mint(label, 0, builder)
    }
}

/// A hop block's Datalog naming agent `to`, plus `extra`.
fn raw_hop(to: usize, extra: &str) -> BlockBuilder {
    code(&format!(
        "agent(\"agent-{to}\", hex:{});\n{extra}\n{}",
        hexkey(&agent(to).1),
        read_check(ROOT_TTL)
    ))
}

fn customers() -> Grant {
    grant(&["read,list:/api/customers/**"], &[])
}

fn read42() -> Request {
    rq("read", "/api/customers/42")
}

// ---------------------------------------------------------------- grammar

/// One root token per grammar form (§3.4), with requests on both sides of
/// each boundary.
fn grammar(out: &mut Vec<Case>) {
    type Form<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        Vec<Request>,
        &'a [&'a str],
    );
    let forms: Vec<Form> = vec![
        (
            "exact-resource",
            &["read:/api/customers/42"],
            &[],
            vec![
                read42(),
                rq("read", "/api/customers/43"),
                rq("write", "/api/customers/42"),
                rq("read", "/api/customers/42/orders"),
                rq("read", "/api/customers/"),
            ],
            &["pattern:exact"],
        ),
        (
            "children",
            &["read:/api/customers/*"],
            &[],
            vec![
                read42(),
                rq("read", "/api/customers/42/orders"),
                rq("read", "/api/customers/"),
                rq("read", "/api/customers"),
                rq("read", "/api/customersX/1"),
                rq("list", "/api/customers/42"),
            ],
            &["pattern:children"],
        ),
        (
            "subtree",
            &["read:/api/**"],
            &[],
            vec![
                rq("read", "/api/"),
                rq("read", "/api/a"),
                rq("read", "/api/a/b/c"),
                rq("read", "/api"),
                rq("read", "/apix"),
                rq("read", "/other/api/x"),
            ],
            &["pattern:subtree"],
        ),
        (
            "root-children",
            &["read:/*"],
            &[],
            vec![rq("read", "/x"), rq("read", "/"), rq("read", "/x/y")],
            &["pattern:children"],
        ),
        (
            "root-subtree",
            &["read:/**"],
            &[],
            vec![
                rq("read", "/"),
                rq("read", "/x/y/z"),
                rq("read", "urn:doc:1"),
            ],
            &["pattern:subtree"],
        ),
        (
            "opaque-resource",
            &["read:urn:doc:1"],
            &[],
            vec![
                rq("read", "urn:doc:1"),
                rq("read", "urn:doc:2"),
                rq("read", "urn:doc:1:x"),
            ],
            &["pattern:exact", "pattern:opaque"],
        ),
        (
            "colon-in-pattern",
            &["read,list:/api/a:b/*"],
            &[],
            vec![
                rq("list", "/api/a:b/c"),
                rq("read", "/api/a:b/c"),
                rq("list", "/api/a/c"),
            ],
            &["pattern:children", "actions:several"],
        ),
        (
            "several-actions",
            &["read,list,delete:/api/x"],
            &[],
            vec![
                rq("read", "/api/x"),
                rq("list", "/api/x"),
                rq("delete", "/api/x"),
                rq("write", "/api/x"),
            ],
            &["actions:several"],
        ),
        (
            "several-alternatives",
            &["read:/api/a", "write:/api/b/*"],
            &[],
            vec![
                rq("read", "/api/a"),
                rq("write", "/api/b/1"),
                rq("read", "/api/b/1"),
                rq("write", "/api/a"),
            ],
            &["alternatives:several"],
        ),
        (
            "bound-le",
            &["read:/api/r"],
            &["rows<=100"],
            vec![
                rqp("read", "/api/r", &[("rows", int(99))]),
                rqp("read", "/api/r", &[("rows", int(100))]),
                rqp("read", "/api/r", &[("rows", int(101))]),
                rq("read", "/api/r"),
                rqp("read", "/api/r", &[("rows", s("100"))]),
                rqp("read", "/api/r", &[("rows", int(-5))]),
            ],
            &["constraint:le"],
        ),
        (
            "bound-lt",
            &["read:/api/r"],
            &["rows<100"],
            vec![
                rqp("read", "/api/r", &[("rows", int(99))]),
                rqp("read", "/api/r", &[("rows", int(100))]),
            ],
            &["constraint:lt"],
        ),
        (
            "bound-ge",
            &["read:/api/r"],
            &["rows>=10"],
            vec![
                rqp("read", "/api/r", &[("rows", int(9))]),
                rqp("read", "/api/r", &[("rows", int(10))]),
                rqp("read", "/api/r", &[("rows", int(11))]),
            ],
            &["constraint:ge"],
        ),
        (
            "bound-gt",
            &["read:/api/r"],
            &["rows>10"],
            vec![
                rqp("read", "/api/r", &[("rows", int(10))]),
                rqp("read", "/api/r", &[("rows", int(11))]),
            ],
            &["constraint:gt"],
        ),
        (
            "bound-negative",
            &["adjust:/api/r"],
            &["delta>=-5", "delta<=5"],
            vec![
                rqp("adjust", "/api/r", &[("delta", int(-5))]),
                rqp("adjust", "/api/r", &[("delta", int(-6))]),
                rqp("adjust", "/api/r", &[("delta", int(5))]),
                rqp("adjust", "/api/r", &[("delta", int(6))]),
            ],
            &["constraint:ge", "constraint:le"],
        ),
        (
            "bound-int64-extremes",
            &["read:/api/r"],
            &["n<=9223372036854775807", "n>=-9223372036854775808"],
            vec![
                rqp("read", "/api/r", &[("n", int(i64::MAX))]),
                rqp("read", "/api/r", &[("n", int(i64::MIN))]),
                rqp("read", "/api/r", &[("n", int(0))]),
            ],
            &["constraint:le", "constraint:ge", "int64-extreme"],
        ),
        (
            "equals-string",
            &["read:/api/r"],
            &["region=eu"],
            vec![
                rqp("read", "/api/r", &[("region", s("eu"))]),
                rqp("read", "/api/r", &[("region", s("EU"))]),
                rq("read", "/api/r"),
                rqp("read", "/api/r", &[("region", int(5))]),
            ],
            &["constraint:eq"],
        ),
        (
            "equals-integer",
            &["read:/api/r"],
            &["n=5"],
            vec![
                rqp("read", "/api/r", &[("n", int(5))]),
                rqp("read", "/api/r", &[("n", s("5"))]),
                rqp("read", "/api/r", &[("n", int(6))]),
            ],
            &["constraint:eq", "typing"],
        ),
        (
            "equals-integer-text-is-string",
            &["read:/api/r"],
            &["code=007"],
            vec![
                rqp("read", "/api/r", &[("code", s("007"))]),
                rqp("read", "/api/r", &[("code", int(7))]),
            ],
            &["constraint:eq", "typing"],
        ),
        (
            "starts-with",
            &["send:/api/mail"],
            &["to starts-with ops-"],
            vec![
                rqp("send", "/api/mail", &[("to", s("ops-alerts"))]),
                rqp("send", "/api/mail", &[("to", s("dev-ops"))]),
                rqp("send", "/api/mail", &[("to", int(1))]),
                rq("send", "/api/mail"),
            ],
            &["constraint:starts-with"],
        ),
        (
            "ends-with",
            &["send:/api/mail"],
            &["to ends-with @example.com"],
            vec![
                rqp("send", "/api/mail", &[("to", s("bob@example.com"))]),
                rqp("send", "/api/mail", &[("to", s("bob@example.com.evil"))]),
            ],
            &["constraint:ends-with"],
        ),
        (
            "in-strings",
            &["read:/api/r"],
            &["region in eu|us"],
            vec![
                rqp("read", "/api/r", &[("region", s("eu"))]),
                rqp("read", "/api/r", &[("region", s("us"))]),
                rqp("read", "/api/r", &[("region", s("apac"))]),
                rq("read", "/api/r"),
            ],
            &["constraint:in"],
        ),
        (
            "in-integers",
            &["read:/api/r"],
            &["rows in 1|2|3"],
            vec![
                rqp("read", "/api/r", &[("rows", int(2))]),
                rqp("read", "/api/r", &[("rows", s("2"))]),
                rqp("read", "/api/r", &[("rows", int(4))]),
            ],
            &["constraint:in", "typing"],
        ),
        (
            "not-before",
            &["read:/api/r"],
            &["time>=2026-06-01T12:00:00Z"],
            vec![
                rq("read", "/api/r"),
                rq("read", "/api/r").at(at(12 * 3600)),
                rq("read", "/api/r").at(at(13 * 3600)),
            ],
            &["constraint:time>="],
        ),
        (
            "not-after",
            &["read:/api/r"],
            &["time<=2026-06-01T12:00:00Z"],
            vec![
                rq("read", "/api/r"),
                rq("read", "/api/r").at(at(12 * 3600)),
                rq("read", "/api/r").at(at(12 * 3600 + 1)),
            ],
            &["constraint:time<="],
        ),
        (
            "time-with-offset",
            &["read:/api/r"],
            &["time>=2026-06-01T14:00:00+02:00"],
            vec![
                rq("read", "/api/r").at(at(12 * 3600 - 1)),
                rq("read", "/api/r").at(at(12 * 3600)),
            ],
            &["constraint:time>="],
        ),
        (
            "several-constraints",
            &["read:/api/r"],
            &["rows<=100", "region in eu|us"],
            vec![
                rqp("read", "/api/r", &[("rows", int(5)), ("region", s("eu"))]),
                rqp("read", "/api/r", &[("rows", int(500)), ("region", s("eu"))]),
                rqp("read", "/api/r", &[("rows", int(5)), ("region", s("apac"))]),
                rqp("read", "/api/r", &[("rows", int(5))]),
            ],
            &["constraint:le", "constraint:in"],
        ),
        (
            "whitespace-in-constraint",
            &["read:/api/r"],
            &["rows <= 5"],
            vec![
                rqp("read", "/api/r", &[("rows", int(5))]),
                rqp("read", "/api/r", &[("rows", int(6))]),
            ],
            &["constraint:le", "whitespace"],
        ),
        (
            "unicode-value",
            &["read:/api/r"],
            &["name=José"],
            vec![
                rqp("read", "/api/r", &[("name", s("José"))]),
                rqp("read", "/api/r", &[("name", s("Jose"))]),
            ],
            &["constraint:eq"],
        ),
        (
            "quote-in-value",
            &["read:/api/r"],
            &["q=a\"b"],
            vec![
                rqp("read", "/api/r", &[("q", s("a\"b"))]),
                rqp("read", "/api/r", &[("q", s("a"))]),
            ],
            &["constraint:eq", "printed-datalog-ambiguity"],
        ),
        (
            "extra-params-ignored",
            &["read:/api/r"],
            &["rows<=10"],
            vec![rqp(
                "read",
                "/api/r",
                &[("rows", int(1)), ("other", s("x")), ("more", int(7))],
            )],
            &["constraint:le"],
        ),
    ];
    for (name, allow, where_, reqs, covers) in forms {
        let label = format!("grammar/{name}");
        let tok = Root::new(&label, grant(allow, where_)).mint();
        let mut cv = vec!["depth:0", "grammar"];
        cv.extend_from_slice(covers);
        let desc = format!("§3.4, §4.1: a root granting {allow:?} where {where_:?}");
        case(out, &label, &desc, &cv, &tok, reqs);
    }
    // Constraints per alternative (the library can attach them so).
    let mut g = grant(&["read:/api/a", "read:/api/b"], &[]);
    g.alternatives[0] = Alternative::parse("read:/api/a").expect("alt");
    g.alternatives[0].constraints = vec![mandate_spec::Constraint::parse("rows<=10").expect("c")];
    let tok = Root::new("grammar/per-alternative-constraints", g).mint();
    case(
        out,
        "grammar/per-alternative-constraints",
        "§3.4: constraints attached to one alternative bind only it",
        &[
            "depth:0",
            "grammar",
            "alternatives:several",
            "constraint:le",
        ],
        &tok,
        vec![
            rqp("read", "/api/a", &[("rows", int(10))]),
            rqp("read", "/api/a", &[("rows", int(11))]),
            rqp("read", "/api/b", &[("rows", int(11))]),
            rq("read", "/api/a"),
        ],
    );
    // Raw Datalog next to a grant (§3.6).
    let mut g = grant(&["read:/api/r"], &[]);
    g.datalog = vec!["check if param(\"region\", \"eu\")".into()];
    let tok = Root::new("grammar/raw-datalog", g).mint();
    case(
        out,
        "grammar/raw-datalog",
        "§3.6, §4.4: a raw Datalog check is ANDed with the grant and shown as Datalog",
        &["depth:0", "grammar", "raw-datalog"],
        &tok,
        vec![
            rqp("read", "/api/r", &[("region", s("eu"))]),
            rq("read", "/api/r"),
            rqp("write", "/api/r", &[("region", s("eu"))]),
        ],
    );
    // A hop with an empty grant: only the expiry.
    let root = Root::new("grammar/empty-hop-grant", customers()).mint();
    let tok = hop(&root, 0, 1, &Grant::default(), 2 * 3600);
    case(
        out,
        "grammar/empty-hop-grant",
        "§3.2: a hop with no grant only shortens the expiry",
        &["depth:1", "grammar", "expiry"],
        &tok,
        vec![
            read42(),
            read42().at(at(3 * 3600)),
            rq("write", "/api/customers/42"),
        ],
    );
}

// ---------------------------------------------------------------- requests

/// Requests the verifier refuses before reading the token (§5, §7.1 step 1).
fn requests(out: &mut Vec<Case>) {
    let tok = Root::new("request/validation", grant(&["read:/**"], &[])).mint();
    let long = "x".repeat(4096);
    let too_long = "x".repeat(4097);
    let mut many = rq("read", "/api/r");
    for i in 0..65 {
        many = many.param(format!("p{i}"), int(i));
    }
    let mut sixty_four = rq("read", "/api/r");
    for i in 0..64 {
        sixty_four = sixty_four.param(format!("p{i}"), int(i));
    }
    case(
        out,
        "request/validation",
        "§5, §7.1 step 1: malformed requests are invalid_request whatever the token allows",
        &["depth:0", "request"],
        &tok,
        vec![
            rq("read", "/api/r"),
            rq("read", "/api/../r"),
            rq("read", "/api//r"),
            rq("read", "/api/./r"),
            rq("read", "/api/%2e/r"),
            rq("read", "/api/%+A"),
            rq("read", "/api/%2"),
            rq("read", "/api/%20x"),
            rq("read", "/api/%70"),
            rq("read", "/api/%2F"),
            rq("read", "/api/%25"),
            rq("read", "/api/a;b"),
            rq("read", "/api/a\\b"),
            rq("read", "/api/a\u{7}b"),
            rq("read", ""),
            rq("read", &format!("/{}", "r".repeat(255))),
            rq("read", &format!("/{}", "r".repeat(256))),
            rq("read", "api/r"),
            rq("re ad", "/api/r"),
            rq("", "/api/r"),
            rqp("read", "/api/r", &[("time", int(1))]),
            rqp("read", "/api/r", &[("bad name", int(1))]),
            rqp("read", "/api/r", &[("v", s(&long))]),
            rqp("read", "/api/r", &[("v", s(&too_long))]),
            sixty_four,
            many,
        ],
    );
}

// ---------------------------------------------------------------- depth

/// Chains of 0 to 8 hops (§3.2, §4.2, §6 rule 8).
fn depth(out: &mut Vec<Case>) {
    for d in 0..=8usize {
        let label = format!("depth/narrowing-{d}");
        let mut tok = Root::new(&label, customers()).mint();
        for i in 1..=d {
            let limit = 100 - 10 * i as i64;
            let g = grant(&["read:/api/customers/*"], &[&format!("rows<={limit}")]);
            tok = hop(&tok, i - 1, i, &g, ROOT_TTL - 60 * i as u64);
        }
        let last = 100 - 10 * d as i64;
        let depth_tag = format!("depth:{d}");
        case(
            out,
            &label,
            &format!(
                "§3.2, §4.2: {d} hops, each narrowing rows; the request must satisfy every hop"
            ),
            &[&depth_tag, "narrowing-hop"],
            &tok,
            vec![
                rqp("read", "/api/customers/42", &[("rows", int(5))]),
                rqp("read", "/api/customers/42", &[("rows", int(last))]),
                rqp("read", "/api/customers/42", &[("rows", int(last + 1))]),
                rqp("list", "/api/customers/42", &[("rows", int(5))]),
                rqp("write", "/api/customers/42", &[("rows", int(5))]),
                rqp("read", "/api/customers/42/orders", &[("rows", int(5))]),
                rqp("read", "/api/customers/42", &[("rows", int(5))]).at(at(ROOT_TTL - 30)),
            ],
        );
    }
    for d in 0..=8usize {
        for (suffix, max) in [
            ("exact", d as u32),
            ("exceeded", d.saturating_sub(1) as u32),
        ] {
            if suffix == "exceeded" && d == 0 {
                continue;
            }
            let label = format!("depth/max-depth-{suffix}-{d}");
            let mut root = Root::new(&label, customers());
            root.max_depth = Some(max);
            let mut tok = root.mint();
            for i in 1..=d {
                tok = hop(&tok, i - 1, i, &customers(), ROOT_TTL);
            }
            let depth_tag = format!("depth:{d}");
            case(
                out,
                &label,
                &format!("§6 rule 8: {d} hops under max_depth({max})"),
                &[&depth_tag, "rule:8"],
                &tok,
                vec![read42()],
            );
        }
    }
    for d in 1..=8usize {
        let label = format!("depth/widening-{d}");
        let mut tok = Root::new(&label, customers()).mint();
        for i in 1..d {
            tok = hop(&tok, i - 1, i, &customers(), ROOT_TTL);
        }
        tok = hop(
            &tok,
            d - 1,
            d,
            &grant(&["read,write,delete:/api/**"], &[]),
            ROOT_TTL,
        );
        let depth_tag = format!("depth:{d}");
        case(
            out,
            &label,
            &format!(
                "§4.2: hop {d} grants more than its parent; what the parent denies stays denied"
            ),
            &[&depth_tag, "widening"],
            &tok,
            vec![
                read42(),
                rq("write", "/api/customers/42"),
                rq("read", "/api/orders/1"),
            ],
        );
    }
    for d in 1..=8usize {
        let label = format!("depth/expiry-{d}");
        let mut tok = Root::new(&label, customers()).mint();
        for i in 1..=d {
            let ttl = if i == d { 2 * 3600 } else { ROOT_TTL };
            tok = hop(&tok, i - 1, i, &customers(), ttl);
        }
        let depth_tag = format!("depth:{d}");
        case(
            out,
            &label,
            &format!("§4.1, §7.2: hop {d} expires two hours in"),
            &[&depth_tag, "expiry"],
            &tok,
            vec![
                read42(),
                read42().at(at(2 * 3600)),
                read42().at(at(2 * 3600 + 1)),
                read42().at(at(ROOT_TTL + 1)),
            ],
        );
    }
}

// ---------------------------------------------------------------- narrowing

/// First-party narrowing blocks (§3.3).
fn narrowing(out: &mut Vec<Case>) {
    let root = Root::new("narrowing/after-root", customers()).mint();
    let tok = narrow(&root, &grant(&["read:/api/customers/42"], &[]), None);
    case(
        out,
        "narrowing/after-root",
        "§3.3: a narrowing block after the root attaches to hop 0",
        &["depth:0", "narrowing"],
        &tok,
        vec![
            read42(),
            rq("read", "/api/customers/43"),
            rq("list", "/api/customers/42"),
        ],
    );

    let root = Root::new("narrowing/ttl-only", customers()).mint();
    let tok = narrow(&root, &Grant::default(), Some(2 * 3600));
    case(
        out,
        "narrowing/ttl-only",
        "§3.3: a narrowing block with only an expiry",
        &["depth:0", "narrowing", "expiry"],
        &tok,
        vec![read42(), read42().at(at(3 * 3600))],
    );

    let root = Root::new("narrowing/between-hops", customers()).mint();
    let t1 = hop(&root, 0, 1, &customers(), ROOT_TTL);
    let t2 = narrow(&t1, &grant(&["read:/api/customers/*"], &["rows<=10"]), None);
    let tok = hop(&t2, 1, 2, &customers(), ROOT_TTL);
    case(
        out,
        "narrowing/between-hops",
        "§3.3, §6: hop 1, a narrowing block (block 2, attached to hop 1), hop 2 (block 3)",
        &["depth:2", "narrowing"],
        &tok,
        vec![
            rqp("read", "/api/customers/42", &[("rows", int(10))]),
            rqp("read", "/api/customers/42", &[("rows", int(11))]),
            rqp("list", "/api/customers/42", &[("rows", int(1))]),
        ],
    );

    let root = Root::new(
        "narrowing/widening",
        grant(&["read:/api/customers/42"], &[]),
    )
    .mint();
    let tok = narrow(&root, &grant(&["read,write:/api/**"], &[]), None);
    case(
        out,
        "narrowing/widening",
        "§3.3, §4.2: a narrowing block cannot widen",
        &["depth:0", "narrowing", "widening"],
        &tok,
        vec![
            read42(),
            rq("write", "/api/customers/42"),
            rq("read", "/api/x"),
        ],
    );

    let root = Root::new("narrowing/two-blocks", customers()).mint();
    let t1 = narrow(&root, &grant(&["read:/api/customers/*"], &[]), None);
    let tok = narrow(
        &t1,
        &grant(&["read,list:/api/customers/42"], &[]),
        Some(5 * 3600),
    );
    case(
        out,
        "narrowing/two-blocks",
        "§3.3: two narrowing blocks, both apply",
        &["depth:0", "narrowing"],
        &tok,
        vec![
            read42(),
            rq("list", "/api/customers/42"),
            rq("read", "/api/customers/7"),
            read42().at(at(6 * 3600)),
        ],
    );

    let root = Root::new("narrowing/raw-datalog", customers()).mint();
    let tok = root.first_party(code(
        "check if param(\"region\", $r), [\"eu\", \"us\"].contains($r);",
    ));
    case(
        out,
        "narrowing/raw-datalog",
        "§3.6: a narrowing block of raw Datalog",
        &["depth:0", "narrowing", "raw-datalog"],
        &tok,
        vec![
            rqp("read", "/api/customers/42", &[("region", s("eu"))]),
            read42(),
        ],
    );

    // 16 blocks: the most a token may have (§6 rule 1c).
    let mut tok = Root::new("narrowing/sixteen-blocks", customers()).mint();
    for i in 1..=8 {
        tok = hop(&tok, i - 1, i, &customers(), ROOT_TTL);
        if i < 8 {
            tok = narrow(&tok, &grant(&["read,list:/api/customers/*"], &[]), None);
        }
    }
    case(
        out,
        "narrowing/sixteen-blocks",
        "§6 rule 1c: 8 hops and 7 narrowing blocks, 16 blocks in all: the most allowed",
        &["depth:8", "narrowing", "rule:1c"],
        &tok,
        vec![read42(), rq("read", "/api/customers/42/orders")],
    );
}

// ---------------------------------------------------------------- root keys

/// Root key ids (§8).
fn root_keys(out: &mut Vec<Case>) {
    let mut r = Root::new("root-key/rotated", customers());
    r.root_id = 1;
    let tok = r.mint();
    case(
        out,
        "root-key/rotated",
        "§8: a token under root key id 1, both ids trusted",
        &["depth:0", "root-key"],
        &tok,
        vec![read42()],
    );

    let mut r = Root::new("root-key/unknown-id", customers());
    r.root_id = 7;
    let tok = r.mint();
    case(
        out,
        "root-key/unknown-id",
        "§8: a token naming root key id 7, not trusted",
        &["depth:0", "root-key"],
        &tok,
        vec![read42()],
    );

    // Signed by root 1's key while naming id 0.
    let r = Root::new("root-key/wrong-key-for-id", customers());
    let good = r.mint();
    let mut c = container(&good.bytes);
    c.root_key_id = Some(1);
    let tok = encode(&c);
    case_with(out, "root-key/wrong-key-for-id",
        "§8: the id is a hint the signatures do not cover: naming another trusted id selects another key, and the signature fails",
        &["depth:0", "root-key"], Presented::Bytes(tok), plain(vec![read42()]));

    let mut c = container(&good.bytes);
    c.root_key_id = None;
    case_with(
        out,
        "root-key/no-id",
        "§8: a token naming no root key id, at a verifier trusting keys by id",
        &["depth:0", "root-key"],
        Presented::Bytes(encode(&c)),
        plain(vec![read42()]),
    );
}

// ---------------------------------------------------------------- approvals

fn approval_block(tok: &Tok, approver: &KeyPair, request: &Request, until: u64) -> Tok {
    let block = BlockBuilder::new()
        .fact(fact(
            "approval",
            &[bytes(&request.approval_digest()), date(&at(until))],
        ))
        .expect("approval fact");
    tok.third_party(approver, block)
}

/// Human approval (§14).
fn approvals(out: &mut Vec<Case>) {
    let finance = key("approver/finance");
    let ops = key("approver/ops");
    let rule = format!("pay when amount>100 by finance={}", finance.public());
    let g = grant(&["pay,refund:/api/payments"], &["amount<=1000"])
        .with_approval(&rule)
        .expect("rule");
    let pay = |amount: i64| rqp("pay", "/api/payments", &[("amount", int(amount))]);
    let refund = |amount: i64| rqp("refund", "/api/payments", &[("amount", int(amount))]);

    let tok = Root::new("approval/rule", g.clone()).mint();
    case(
        out,
        "approval/rule",
        "§14: pay over 100 needs finance's approval; refund and small payments do not",
        &["depth:0", "approval"],
        &tok,
        vec![
            pay(50),
            pay(100),
            pay(101),
            pay(2000),
            refund(500),
            rq("pay", "/api/payments"),
        ],
    );

    let root = Root::new("approval/approved", g.clone()).mint();
    let tok = approval_block(&root, &finance, &pay(500), 2 * 3600);
    case(out, "approval/approved",
        "§14.3, §14.4: an approval of pay 500: used once, refused again (single use), and for no other amount",
        &["depth:0", "approval", "approval-block"], &tok,
        vec![pay(600), pay(500), pay(500), pay(50)]);

    let root = Root::new("approval/wrong-approver", g.clone()).mint();
    let tok = approval_block(&root, &ops, &pay(500), 2 * 3600);
    case(
        out,
        "approval/wrong-approver",
        "§14.4: an approval signed by another key",
        &["depth:0", "approval", "approval-block"],
        &tok,
        vec![pay(500)],
    );

    let root = Root::new("approval/expired", g.clone()).mint();
    let tok = approval_block(&root, &finance, &pay(500), 1800);
    case(
        out,
        "approval/expired",
        "§14.4: an approval past its expiry",
        &["depth:0", "approval", "approval-block"],
        &tok,
        vec![pay(500)],
    );

    let root = Root::new("approval/at-hop-1", customers()).mint();
    let g1 = grant(&["read,list:/api/customers/*"], &[])
        .with_approval(&format!("list by finance={}", finance.public()))
        .expect("rule");
    let t1 = hop(&root, 0, 1, &g1, ROOT_TTL);
    let listing = rq("list", "/api/customers/42");
    let tok = approval_block(&t1, &finance, &listing, 2 * 3600);
    case(
        out,
        "approval/at-hop-1",
        "§14, §6: a rule set at hop 1; the approval block is block 2, not a hop",
        &["depth:1", "approval", "approval-block"],
        &tok,
        vec![
            read42(),
            listing.clone(),
            listing,
            rq("list", "/api/customers/7"),
        ],
    );
    case(
        out,
        "approval/at-hop-1-unapproved",
        "§14.4: the same chain without the approval",
        &["depth:1", "approval"],
        &t1,
        vec![read42(), rq("list", "/api/customers/42")],
    );

    let root = Root::new("approval/then-hop", g.clone()).mint();
    let t1 = approval_block(&root, &finance, &pay(500), 2 * 3600);
    let tok = hop(&t1, 0, 1, &grant(&["pay:/api/payments"], &[]), ROOT_TTL);
    case(
        out,
        "approval/then-hop",
        "§6: a hop after an approval block breaks the chain",
        &[
            "depth:1",
            "approval",
            "approval-block",
            "rule:approval-last",
        ],
        &tok,
        vec![pay(500)],
    );

    let root = Root::new("approval/then-narrowing", g.clone()).mint();
    let t1 = approval_block(&root, &finance, &pay(500), 2 * 3600);
    let tok = narrow(&t1, &grant(&["pay:/api/payments"], &[]), None);
    case(
        out,
        "approval/then-narrowing",
        "§6: a narrowing block after an approval block breaks the chain",
        &[
            "depth:0",
            "approval",
            "approval-block",
            "rule:approval-last",
        ],
        &tok,
        vec![pay(500)],
    );

    let root = Root::new("approval/two-facts", g.clone()).mint();
    let digest = pay(500).approval_digest();
    let block = BlockBuilder::new()
        .fact(fact("approval", &[bytes(&digest), date(&at(7200))]))
        .expect("fact")
        .fact(fact(
            "approval",
            &[bytes(&pay(600).approval_digest()), date(&at(7200))],
        ))
        .expect("fact");
    let tok = root.third_party(&finance, block);
    case(
        out,
        "approval/two-facts",
        "§6, §14.3: an approval block holds exactly one approval fact",
        &[
            "depth:0",
            "approval",
            "approval-block",
            "rule:approval-form",
        ],
        &tok,
        vec![pay(500)],
    );

    let root = Root::new("approval/with-check", g.clone()).mint();
    let block = BlockBuilder::new()
        .fact(fact("approval", &[bytes(&digest), date(&at(7200))]))
        .expect("fact")
        .code("check if time($time);")
        .expect("check");
    let tok = root.third_party(&finance, block);
    case(
        out,
        "approval/with-check",
        "§6, §14.3: a block whose facts are all approvals is an approval block whatever else it holds; a check breaks its form",
        &["depth:0", "approval", "approval-block", "rule:approval-form"],
        &tok,
        vec![pay(500)],
    );

    let root = Root::new("approval/without-rule", customers()).mint();
    let tok = approval_block(&root, &finance, &read42(), 7200);
    case(
        out,
        "approval/without-rule",
        "§14: an approval on a token without approval rules changes nothing",
        &["depth:0", "approval", "approval-block"],
        &tok,
        vec![read42(), rq("write", "/api/customers/42")],
    );
}

// ---------------------------------------------------------------- holder

/// Holder binding (§15). Proofs are made at the request time.
fn holder(out: &mut Vec<Case>) {
    let mut g = customers();
    g.holder_bound = true;
    let tok = Root::new("holder/root", g.clone()).mint();
    let a0 = agent(0).1;
    let a1 = agent(1).1;
    let target = "/api/customers/42";
    let proof = |k: &KeyPair, t: &Tok, target: &str, made: u64, nonce: &str| {
        ProofSpec::sign(k, &t.bytes, ("GET", target, ""), at(made), nonce)
    };
    let with = |request: Request, p: Option<ProofSpec>| Req { request, proof: p };
    let reqs = vec![
        with(read42(), None),
        with(read42(), Some(proof(&a0, &tok, target, NOW, "nonce-0001"))),
        with(read42(), Some(proof(&a0, &tok, target, NOW, "nonce-0001"))),
        with(
            read42(),
            Some(proof(&a0, &tok, target, NOW - 120, "nonce-0002")),
        ),
        with(read42(), Some(proof(&a1, &tok, target, NOW, "nonce-0003"))),
        with(
            read42(),
            Some({
                // Signed for /api/customers/43, presented with /api/customers/42.
                let mut p = proof(&a0, &tok, "/api/customers/43", NOW, "nonce-0004");
                p.target = target.into();
                p
            }),
        ),
        with(
            read42(),
            Some(proof(&a0, &tok, target, NOW + 30, "nonce-0005")),
        ),
    ];
    case_with(out, "holder/root",
        "§15: no proof; a valid proof; the same proof again (replayed nonce); a stale one; another key's; another target's; 30 s early (within the skew)",
        &["depth:0", "holder"], Presented::Bytes(tok.bytes.clone()), reqs);

    let mut tampered = proof(&a0, &tok, target, NOW, "nonce-0006");
    tampered.body = "{}".into();
    case_with(
        out,
        "holder/body-changed",
        "§15: the proof covers the body's digest",
        &["depth:0", "holder"],
        Presented::Bytes(tok.bytes.clone()),
        vec![with(read42(), Some(tampered))],
    );

    let root = Root::new("holder/delegated", g.clone()).mint();
    let t1 = hop(&root, 0, 1, &customers(), ROOT_TTL);
    let reqs = vec![
        with(read42(), Some(proof(&a1, &t1, target, NOW, "nonce-0101"))),
        with(read42(), Some(proof(&a0, &t1, target, NOW, "nonce-0102"))),
        with(read42(), Some(proof(&a1, &root, target, NOW, "nonce-0103"))),
    ];
    case_with(out, "holder/delegated",
        "§15: the final holder (agent-1) must prove, not its delegator; a proof names the token it was made for",
        &["depth:1", "holder"], Presented::Bytes(t1.bytes.clone()), reqs);

    let root = Root::new("holder/narrowing", customers()).mint();
    let ng = Grant {
        holder_bound: true,
        ..Grant::default()
    };
    let tok = narrow(&root, &ng, None);
    let reqs = vec![
        with(read42(), None),
        with(read42(), Some(proof(&a0, &tok, target, NOW, "nonce-0201"))),
    ];
    case_with(
        out,
        "holder/narrowing",
        "§15, §3.3: a narrowing block can require proof of possession",
        &["depth:0", "holder", "narrowing"],
        Presented::Bytes(tok.bytes.clone()),
        reqs,
    );
}

// ---------------------------------------------------------------- §6 rules

/// An edit of a hand-written root block.
type RootEdit = Box<dyn Fn(&mut RawRoot)>;
/// Appends a crafted block to a token.
type HopMake = Box<dyn Fn(&Tok) -> Tok>;

/// Each rule of §6 broken by one block.
fn chain_rules(out: &mut Vec<Case>) {
    let rd = || vec![read42()];
    // The root block (rules 1, 1a, 3–6).
    let roots: Vec<(&str, &str, RootEdit)> = vec![
        (
            "root-canonical",
            "a hand-written root equal in form to the encoder's: valid",
            Box::new(|_| {}),
        ),
        (
            "rule-1-reserved-fact",
            "1",
            Box::new(|r| r.extra = "operation(\"read\");".into()),
        ),
        (
            "rule-1-reserved-rule",
            "1",
            Box::new(|r| r.extra = "resource($x) <- principal($x);".into()),
        ),
        (
            "rule-1a-rule",
            "1a",
            Box::new(|r| r.extra = "friend($x) <- principal($x);".into()),
        ),
        (
            "rule-1a-unknown-fact",
            "1a",
            Box::new(|r| r.extra = "color(\"red\");".into()),
        ),
        (
            "rule-1a-query-too-long",
            "1a",
            Box::new(|r| {
                let body: Vec<String> = (0..17).map(|i| format!("time($t{i})")).collect();
                r.extra = format!("check if {};", body.join(", "));
            }),
        ),
        (
            "rule-1a-two-open-params",
            "1a",
            Box::new(|r| r.extra = "check if param($n, $v), param($m, $w), $v == $w;".into()),
        ),
        (
            "rule-1a-approver-not-a-key",
            "1a",
            Box::new(|r| r.extra = "approver(\"finance\", \"not a key\");".into()),
        ),
        ("rule-3-no-token", "3", Box::new(|r| r.token.clear())),
        (
            "rule-3-two-tokens",
            "3",
            Box::new(|r| r.token.push_str(" token(\"other\");")),
        ),
        (
            "rule-3-token-not-string",
            "3",
            Box::new(|r| r.token = "token(42);".into()),
        ),
        (
            "rule-3-no-principal",
            "3",
            Box::new(|r| r.principal.clear()),
        ),
        (
            "rule-3-two-principals",
            "3",
            Box::new(|r| r.principal.push_str(" principal(\"user:bob\");")),
        ),
        (
            "rule-3-no-issued-at",
            "3",
            Box::new(|r| r.issued_at.clear()),
        ),
        (
            "rule-3-issued-at-not-date",
            "3",
            Box::new(|r| r.issued_at = "issued_at(\"yesterday\");".into()),
        ),
        (
            "rule-4-max-depth",
            "4",
            Box::new(|r| r.extra = "max_depth(3);".into()),
        ),
        (
            "rule-4-two-max-depths",
            "4",
            Box::new(|r| r.extra = "max_depth(3); max_depth(4);".into()),
        ),
        (
            "rule-4-max-depth-string",
            "4",
            Box::new(|r| r.extra = "max_depth(\"3\");".into()),
        ),
        (
            "rule-4-max-depth-negative",
            "4",
            Box::new(|r| r.extra = "max_depth(-1);".into()),
        ),
        (
            "rule-4-max-depth-too-large",
            "4",
            Box::new(|r| r.extra = "max_depth(4294967296);".into()),
        ),
        (
            "rule-4-max-depth-largest",
            "4",
            Box::new(|r| r.extra = "max_depth(4294967295);".into()),
        ),
        ("rule-5-no-agent", "5", Box::new(|r| r.agent.clear())),
        (
            "rule-5-two-agents",
            "5",
            Box::new(|r| {
                r.agent.push_str(&format!(
                    " agent(\"agent-9\", hex:{});",
                    hexkey(&agent(9).1)
                ))
            }),
        ),
        (
            "rule-5-agent-id-alphabet",
            "5",
            Box::new(|r| r.agent = format!("agent(\"agent 0\", hex:{});", hexkey(&agent(0).1))),
        ),
        (
            "rule-5-agent-key-31-bytes",
            "5",
            Box::new(|r| {
                r.agent = format!("agent(\"agent-0\", hex:{});", &hexkey(&agent(0).1)[2..])
            }),
        ),
        (
            "rule-5-agent-key-string",
            "5",
            Box::new(|r| {
                r.agent = format!("agent(\"agent-0\", \"ed25519/{}\");", hexkey(&agent(0).1))
            }),
        ),
        (
            "rule-6-purpose",
            "6",
            Box::new(|r| r.extra = "purpose(\"why\");".into()),
        ),
        (
            "rule-6-two-purposes",
            "6",
            Box::new(|r| r.extra = "purpose(\"why\"); purpose(\"why not\");".into()),
        ),
        (
            "rule-1a-approver",
            "1a",
            Box::new(|r| r.extra = format!("approver(\"finance\", hex:{});", hexkey(&agent(8).1))),
        ),
        (
            "rule-1a-approver-name-alphabet",
            "1a",
            Box::new(|r| r.extra = format!("approver(\"fin ance\", hex:{});", hexkey(&agent(8).1))),
        ),
        (
            "rule-5-agent-key-non-canonical",
            "5",
            Box::new(|r| r.agent = format!("agent(\"agent-0\", hex:{});", "ff".repeat(32))),
        ),
        (
            "rule-5-agent-key-small-order",
            "5",
            Box::new(|r| r.agent = format!("agent(\"agent-0\", hex:01{});", "00".repeat(31))),
        ),
    ];
    for (name, rule, edit) in roots {
        let label = format!("chain/{name}");
        let mut r = RawRoot::new(&label);
        edit(&mut r);
        let tok = r.mint(&label);
        let rule_tag = format!("rule:{rule}");
        let cov: Vec<&str> = if rule.len() > 3 {
            vec!["depth:0"]
        } else {
            vec!["depth:0", &rule_tag]
        };
        case(out, &label, &format!("§6 (root): {name}"), &cov, &tok, rd());
    }
    // Delegation hops (rules 1, 1a, 7, 9, 10) and narrowing blocks (11).
    let hops: Vec<(&str, &str, HopMake)> = vec![
        (
            "hop-canonical",
            "-",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, ""))),
        ),
        (
            "rule-1-hop-reserved-fact",
            "1",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "time(2026-06-01T00:00:00Z);"))),
        ),
        (
            "rule-1-hop-defines-holder",
            "1",
            Box::new(|t| {
                t.third_party(
                    &agent(0).1,
                    raw_hop(1, &format!("holder(hex:{});", hexkey(&agent(1).1))),
                )
            }),
        ),
        (
            "rule-1-hop-defines-request-digest",
            "1",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "request_digest(hex:00);"))),
        ),
        (
            "rule-1a-hop-rule",
            "1a",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "friend($x) <- agent($x, $k);"))),
        ),
        (
            "rule-1a-hop-unknown-fact",
            "1a",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "color(\"red\");"))),
        ),
        (
            "rule-7-wrong-signer",
            "7",
            Box::new(|t| t.third_party(&agent(5).1, raw_hop(1, ""))),
        ),
        (
            "rule-7-signed-by-root",
            "7",
            Box::new(|t| t.third_party(&root(0), raw_hop(1, ""))),
        ),
        (
            "rule-9-hop-restates-principal",
            "9",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "principal(\"user:bob\");"))),
        ),
        (
            "rule-9-hop-restates-token",
            "9",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "token(\"x\");"))),
        ),
        (
            "rule-9-hop-restates-issued-at",
            "9",
            Box::new(|t| {
                t.third_party(&agent(0).1, raw_hop(1, "issued_at(2026-06-01T00:00:00Z);"))
            }),
        ),
        (
            "rule-9-hop-restates-max-depth",
            "9",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "max_depth(9);"))),
        ),
        (
            "rule-10-hop-without-agent",
            "10",
            Box::new(|t| t.third_party(&agent(0).1, code(&read_check(ROOT_TTL)))),
        ),
        (
            "rule-10-hop-two-agents",
            "10",
            Box::new(|t| {
                t.third_party(
                    &agent(0).1,
                    raw_hop(
                        1,
                        &format!("agent(\"agent-2\", hex:{});", hexkey(&agent(2).1)),
                    ),
                )
            }),
        ),
        (
            "rule-10-hop-two-purposes",
            "10",
            Box::new(|t| t.third_party(&agent(0).1, raw_hop(1, "purpose(\"a\"); purpose(\"b\");"))),
        ),
        (
            "rule-10-hop-agent-bad-key",
            "10",
            Box::new(|t| {
                t.third_party(
                    &agent(0).1,
                    code(&format!(
                        "agent(\"agent-1\", hex:00ff);\n{}",
                        read_check(ROOT_TTL)
                    )),
                )
            }),
        ),
        (
            "rule-10-hop-agent-bad-id",
            "10",
            Box::new(|t| {
                t.third_party(
                    &agent(0).1,
                    code(&format!(
                        "agent(\"agent/1\", hex:{});\n{}",
                        hexkey(&agent(1).1),
                        read_check(ROOT_TTL)
                    )),
                )
            }),
        ),
        (
            "rule-11-narrowing-names-agent",
            "11",
            Box::new(|t| t.first_party(raw_hop(1, ""))),
        ),
        (
            "rule-11-narrowing-purpose",
            "1a",
            Box::new(|t| {
                t.first_party(code(&format!("purpose(\"x\");\n{}", read_check(ROOT_TTL))))
            }),
        ),
    ];
    for (name, rule, make) in hops {
        let label = format!("chain/{name}");
        let base = Root::new(&label, customers()).mint();
        let tok = make(&base);
        let rule_tag = format!("rule:{rule}");
        let cov: Vec<&str> = if rule == "-" {
            vec!["depth:1"]
        } else {
            vec!["depth:1", &rule_tag]
        };
        case(
            out,
            &label,
            &format!("§6 (block 1): {name}"),
            &cov,
            &tok,
            rd(),
        );
    }
    // Rule 1b: only Ed25519.
    let p256 = key_of("p256/next", Algorithm::Secp256r1);
    let base = Root::new("chain/rule-1b-p256-next-key", customers()).mint();
    let tok = base.first_party_with(narrowing_block(&customers(), None).expect("block"), &p256);
    case(
        out,
        "chain/rule-1b-p256-next-key",
        "§6 rule 1b: a block's next key is P-256",
        &["depth:0", "rule:1b"],
        &tok,
        rd(),
    );
    let base = Root::new("chain/rule-1b-p256-signer", customers()).mint();
    let tok = base.third_party(&key_of("p256/signer", Algorithm::Secp256r1), raw_hop(1, ""));
    case(
        out,
        "chain/rule-1b-p256-signer",
        "§6 rule 1b: a third-party block signed with P-256",
        &["depth:1", "rule:1b"],
        &tok,
        rd(),
    );
    // Rule 1c: 17 blocks.
    let mut tok = Root::new("chain/rule-1c-seventeen-blocks", customers()).mint();
    for _ in 0..16 {
        tok = tok.first_party(code("check if time($time);"));
    }
    case(
        out,
        "chain/rule-1c-seventeen-blocks",
        "§6 rule 1c: 17 blocks, one more than allowed",
        &["depth:0", "rule:1c"],
        &tok,
        rd(),
    );
}

/// Rule 1c: what a block may not use, and the cost bound.
fn cost_rules(out: &mut Vec<Case>) {
    let sources: Vec<(&str, String)> = vec![
        (
            "trusting-previous",
            "check if agent($a, $k) trusting previous;".into(),
        ),
        (
            "trusting-authority",
            "check if principal(\"user:alice\") trusting authority;".into(),
        ),
        (
            "all-closure",
            "check if param(\"rows\", $r), [1, 2, 3].all($x -> $x > 0);".into(),
        ),
        (
            "any-closure",
            "check if param(\"rows\", $r), [1, 2, 3].any($x -> $x == $r);".into(),
        ),
        (
            "matches",
            "check if resource($r), $r.matches(\"(a+)+$\");".into(),
        ),
        (
            "type",
            "check if param(\"rows\", $r), $r.type() == \"integer\";".into(),
        ),
        (
            "lazy-and",
            "check if param(\"rows\", $r), $r >= 0 && $r <= 100;".into(),
        ),
        ("approver-join", {
            let mut src = String::new();
            for i in 0..200 {
                let _ = writeln!(src, "approver(\"a{i}\", hex:{:064x});", i + 1);
            }
            let body: Vec<String> = (0..16).map(|i| format!("approver($a{i}, $k{i})")).collect();
            let _ = write!(src, "check if {}, $a0 == \"never\";", body.join(", "));
            src
        }),
        ("symbols", {
            let lits: Vec<String> = (0..mandate_spec::MAX_SYMBOLS + 10)
                .map(|i| format!("\"s{i:05}\""))
                .collect();
            format!(
                "check if no_such_fact($z), ({}).length() == 0;",
                lits.join(" + ")
            )
        }),
        ("large-sets", {
            let set: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
            let mut src = String::new();
            for _ in 0..12 {
                let _ = writeln!(
                    src,
                    "check if param(\"rows\", $r), {{{}}}.contains($r + 100000);",
                    set.join(", ")
                );
            }
            src
        }),
    ];
    for (name, src) in sources {
        let label = format!("cost/{name}");
        let base = Root::new(&label, customers()).mint();
        let tok = base.third_party(&agent(0).1, raw_hop(1, &src));
        case(
            out,
            &label,
            &format!("§6 rule 1c: a hop using {name}"),
            &["depth:1", "rule:1c"],
            &tok,
            vec![rqp("read", "/api/customers/42", &[("rows", int(5))])],
        );
    }
    let base = Root::new("cost/block-scope", customers()).mint();
    let block = raw_hop(1, "").scope(biscuit_auth::builder::Scope::Previous);
    let tok = base.third_party(&agent(0).1, block);
    case(
        out,
        "cost/block-scope",
        "§6 rule 1c: a block-level scope annotation",
        &["depth:1", "rule:1c"],
        &tok,
        vec![read42()],
    );
}

/// Which rule a denial reports when a block breaks several (§6).
fn rule_order(out: &mut Vec<Case>) {
    let mut root = Root::new("order/depth-before-restated-principal", customers());
    root.max_depth = Some(0);
    let base = root.mint();
    let tok = base.third_party(&agent(0).1, raw_hop(1, "principal(\"user:bob\");"));
    case(
        out,
        "order/depth-before-restated-principal",
        "§6 order: rule 8 before rule 9",
        &["depth:1", "rule:8", "rule:9", "rule-order"],
        &tok,
        vec![read42()],
    );

    let base = Root::new("order/reserved-before-rule", customers()).mint();
    let tok = base.third_party(
        &agent(0).1,
        raw_hop(1, "operation(\"read\"); friend($x) <- agent($x, $k);"),
    );
    case(
        out,
        "order/reserved-before-rule",
        "§6 order: rule 1 before rule 1a",
        &["depth:1", "rule:1", "rule:1a"],
        &tok,
        vec![read42()],
    );

    let mut root = Root::new("order/reserved-before-depth", customers());
    root.max_depth = Some(0);
    let base = root.mint();
    let tok = base.third_party(&agent(0).1, raw_hop(1, "operation(\"read\");"));
    case(
        out,
        "order/reserved-before-depth",
        "§6 order: rule 1 (broken_chain) before rule 8 (depth_exceeded) in one block",
        &["depth:1", "rule:1", "rule:8", "rule-order"],
        &tok,
        vec![read42()],
    );

    let mut root = Root::new("order/depth-counts-hops-only", customers());
    root.max_depth = Some(1);
    let base = root.mint();
    let t1 = hop(&base, 0, 1, &customers(), ROOT_TTL);
    let t2 = narrow(&t1, &grant(&["read:/api/customers/*"], &[]), None);
    let tok = approval_block(&t2, &key("approver/finance"), &read42(), 7200);
    case(
        out,
        "order/depth-counts-hops-only",
        "§6 rule 8: max_depth(1) with one hop, a narrowing block and an approval block: only the hop counts",
        &["depth:1", "rule:8", "narrowing", "approval-block"],
        &tok,
        vec![read42(), rq("list", "/api/customers/42")],
    );

    let base = Root::new("order/signer-before-restated", customers()).mint();
    let tok = base.third_party(&agent(5).1, raw_hop(1, "token(\"x\");"));
    case(
        out,
        "order/signer-before-restated",
        "§6 order: rule 7 before rule 9",
        &["depth:1", "rule:7", "rule:9"],
        &tok,
        vec![read42()],
    );

    let base = Root::new("order/earlier-block-first", customers()).mint();
    let t1 = base.third_party(&agent(0).1, raw_hop(1, "principal(\"user:bob\");"));
    let tok = t1.third_party(&agent(7).1, raw_hop(2, ""));
    case(
        out,
        "order/earlier-block-first",
        "§6 order: the first offending block decides",
        &["depth:2", "rule:9", "rule:7", "rule-order"],
        &tok,
        vec![read42()],
    );

    let base = Root::new("order/block-before-cost", customers()).mint();
    let t1 = base.third_party(
        &agent(0).1,
        raw_hop(1, "check if agent($a, $k) trusting previous;"),
    );
    let tok = t1.third_party(&agent(1).1, raw_hop(2, "max_depth(1);"));
    case(
        out,
        "order/block-before-cost",
        "§6 order: every block's rules before rule 1c's scopes",
        &["depth:2", "rule:9", "rule:1c", "rule-order"],
        &tok,
        vec![read42()],
    );

    let base = Root::new("order/count-before-signatures", customers()).mint();
    let mut tok = base.clone();
    for _ in 0..16 {
        tok = tok.first_party(code("check if time($time);"));
    }
    let mut c = container(&tok.bytes);
    c.authority.signature[0] ^= 1;
    case_with(
        out,
        "order/count-before-signatures",
        "§6 order: the block count before any signature",
        &["depth:0", "rule:1c", "rule-order"],
        Presented::Bytes(encode(&c)),
        plain(vec![read42()]),
    );

    // Denials naming the earliest failing block (§7.2).
    let root = Root::new(
        "order/earliest-failing-block",
        grant(&["read:/api/customers/*"], &["rows<=50"]),
    )
    .mint();
    let t1 = hop(
        &root,
        0,
        1,
        &grant(&["read:/api/customers/*"], &["rows<=10"]),
        ROOT_TTL,
    );
    let tok = hop(
        &t1,
        1,
        2,
        &grant(&["read:/api/customers/42"], &["rows<=5"]),
        ROOT_TTL,
    );
    case(
        out,
        "order/earliest-failing-block",
        "§7.2: of several failing blocks, the earliest is reported",
        &["depth:2", "denial-order"],
        &tok,
        vec![
            rqp("read", "/api/customers/42", &[("rows", int(5))]),
            rqp("read", "/api/customers/42", &[("rows", int(6))]),
            rqp("read", "/api/customers/42", &[("rows", int(11))]),
            rqp("read", "/api/customers/42", &[("rows", int(51))]),
            rqp("read", "/api/customers/7", &[("rows", int(6))]),
        ],
    );
}

// ---------------------------------------------------------------- malformed

/// Tokens that are not tokens, or not this verifier's (§7.1 steps 2–4, §8).
fn malformed(out: &mut Vec<Case>) {
    let good = Root::new("malformed/base", customers()).mint();
    let t1 = hop(&good, 0, 1, &customers(), ROOT_TTL);
    let t2 = hop(&t1, 1, 2, &customers(), ROOT_TTL);
    let rd = || plain(vec![read42()]);
    let text = token_to_text(&good.bytes);
    let texts: Vec<(&str, &str, String)> = vec![
        ("empty", "an empty token text", String::new()),
        (
            "not-base64",
            "text that is not base64",
            "not base64!".into(),
        ),
        (
            "unpadded-with-whitespace",
            "§8: padding optional, surrounding whitespace ignored",
            format!("  \n{}\n ", text.trim_end_matches('=')),
        ),
        (
            "standard-alphabet",
            "§8: URL-safe base64 only",
            text.replace('-', "+").replace('_', "/")
                + if text.contains(['-', '_']) { "" } else { "+" },
        ),
        (
            "too-long-text",
            "§8: text over 87 385 characters is refused before decoding",
            "A".repeat(87_388),
        ),
    ];
    for (name, desc, t) in texts {
        case_with(
            out,
            &format!("malformed/{name}"),
            desc,
            &["malformed"],
            Presented::Text(t),
            rd(),
        );
    }
    let mut noise = Vec::new();
    for i in 0u32..4 {
        noise.extend_from_slice(&Sha256::digest(format!("{}/noise/{i}", super::SEED)));
    }
    let mut big = good.bytes.clone();
    big.resize(65_537, 0);
    let mut flipped_sig = good.bytes.clone();
    let c = container(&good.bytes);
    let n = flipped_sig.len();
    flipped_sig[n - 10] ^= 1;
    let mut flipped_block = container(&good.bytes);
    flipped_block.authority.block[8] ^= 1;
    let mut dropped = container(&t2.bytes);
    dropped.blocks.remove(0);
    let mut swapped = container(&t2.bytes);
    swapped.blocks.swap(0, 1);
    let other = hop(
        &Root::new("malformed/other", customers()).mint(),
        0,
        1,
        &customers(),
        ROOT_TTL,
    );
    let mut spliced = container(&t1.bytes);
    spliced.blocks[0] = container(&other.bytes).blocks[0].clone();
    let mut external_root = c.clone();
    external_root.authority.external_signature =
        container(&t1.bytes).blocks[0].external_signature.clone();
    let mut no_proof = c.clone();
    no_proof.proof.content = None;
    let bytes_cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("random-bytes", "128 bytes that are not a token", noise),
        (
            "truncated",
            "a token cut in half",
            good.bytes[..good.bytes.len() / 2].to_vec(),
        ),
        ("over-64-kib", "§3.5: over 64 KiB of bytes", big),
        ("flipped-proof", "a byte of the proof changed", flipped_sig),
        (
            "flipped-block",
            "a byte of the authority block changed",
            encode(&flipped_block),
        ),
        (
            "dropped-block",
            "hop 1 removed from a 2-hop token",
            encode(&dropped),
        ),
        ("swapped-blocks", "hops 1 and 2 swapped", encode(&swapped)),
        (
            "spliced-block",
            "hop 1 taken from another token",
            encode(&spliced),
        ),
        (
            "no-proof",
            "the container's proof removed",
            encode(&no_proof),
        ),
        (
            "authority-external-signature",
            "§6 rule 2: the root block carries an external signature (refused by Biscuit's parser: malformed_token)",
            encode(&external_root),
        ),
    ];
    for (name, desc, b) in bytes_cases {
        case_with(
            out,
            &format!("malformed/{name}"),
            desc,
            &["malformed"],
            Presented::Bytes(b),
            rd(),
        );
    }
}

// ---------------------------------------------------------------- random

/// SplitMix64, seeded from [`super::SEED`]: random chains reproducible
/// everywhere.
struct Rng(u64);

impl Rng {
    fn new(label: &str) -> Rng {
        let d = Sha256::digest(format!("{}/rng/{label}", super::SEED));
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        Rng(u64::from_le_bytes(b))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const ACTIONS: [&str; 4] = ["read", "list", "write", "delete"];
const PATTERNS: [&str; 7] = [
    "/api/customers/42",
    "/api/customers/*",
    "/api/customers/**",
    "/api/**",
    "/api/orders/*",
    "/**",
    "/api/customers/42/orders",
];
const RESOURCES: [&str; 8] = [
    "/api/customers/42",
    "/api/customers/7",
    "/api/customers/42/orders",
    "/api/customers/",
    "/api/orders/1",
    "/api",
    "/other",
    "/api/orders/",
];

fn random_grant(rng: &mut Rng) -> Grant {
    let n = 1 + rng.below(2);
    let mut allow = Vec::new();
    for _ in 0..n {
        let k = 1 + rng.below(2);
        let mut acts: Vec<&str> = (0..k).map(|_| *rng.pick(&ACTIONS)).collect();
        acts.sort_unstable();
        acts.dedup();
        allow.push(format!("{}:{}", acts.join(","), rng.pick(&PATTERNS)));
    }
    let mut where_ = Vec::new();
    if rng.chance(50) {
        let op = *rng.pick(&["<=", "<", ">=", ">"]);
        where_.push(format!("rows{op}{}", rng.below(200)));
    }
    if rng.chance(30) {
        where_.push(
            (*rng.pick(&["region in eu|us", "region=eu", "region starts-with e"])).to_string(),
        );
    }
    if rng.chance(10) {
        where_.push(format!(
            "time<={}",
            rfc3339(at(NOW + rng.below(4) as u64 * 1800))
        ));
    }
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    let where_: Vec<&str> = where_.iter().map(String::as_str).collect();
    grant(&allow, &where_)
}

fn random_request(rng: &mut Rng, root: &Grant) -> Request {
    // Half the requests aim inside the root's grant, so that allows and
    // denials by later hops are both common.
    let (action, resource) = if rng.chance(50) {
        let alt = rng.pick(&root.alternatives);
        let actions: Vec<&String> = alt.actions.iter().collect();
        let resource = match &alt.resource {
            ResourcePattern::Exact(r) => r.clone(),
            ResourcePattern::Children(p) => format!("{p}{}", rng.pick(&["42", "7"])),
            ResourcePattern::Descendants(p) => format!("{p}{}", rng.pick(&["", "42", "42/orders"])),
        };
        (rng.pick(&actions).to_string(), resource)
    } else {
        (
            rng.pick(&ACTIONS).to_string(),
            rng.pick(&RESOURCES).to_string(),
        )
    };
    let mut r = rq(&action, &resource);
    match rng.below(4) {
        0 => {}
        1 => r = r.param("rows", int(rng.below(250) as i64)),
        2 => {
            r = r
                .param("rows", int(rng.below(250) as i64))
                .param("region", s(rng.pick::<&str>(&["eu", "us", "apac"])))
        }
        _ => r = r.param("region", s(rng.pick::<&str>(&["eu", "us", "apac"]))),
    }
    if rng.chance(15) {
        r = r.at(at(NOW + rng.below(4) as u64 * 1800));
    }
    r
}

/// Random chains of 0 to 8 hops (with narrowing blocks) and requests.
fn random(out: &mut Vec<Case>) {
    for i in 0..150usize {
        let label = format!("random/{i:03}");
        let mut rng = Rng::new(&label);
        let d = i % 9;
        let root_grant = random_grant(&mut rng);
        let mut tok = Root::new(&label, root_grant.clone()).mint();
        for h in 1..=d {
            let g = match rng.below(20) {
                0..=2 => Grant::default(),
                3..=10 => root_grant.clone(),
                _ => random_grant(&mut rng),
            };
            let ttl = if rng.chance(10) { NOW + 1800 } else { ROOT_TTL };
            tok = hop(&tok, h - 1, h, &g, ttl);
            if rng.chance(15) {
                tok = narrow(&tok, &random_grant(&mut rng), None);
            }
        }
        let reqs = (0..6)
            .map(|_| random_request(&mut rng, &root_grant))
            .collect();
        let depth_tag = format!("depth:{d}");
        case(
            out,
            &label,
            "random chain and requests (seeded)",
            &["random", &depth_tag],
            &tok,
            reqs,
        );
    }
}
