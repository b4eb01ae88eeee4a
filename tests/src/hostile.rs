//! A corpus of hostile tokens: the most expensive shapes a delegating agent
//! (holding its own key and a token) can append within what the spec allows,
//! each grown until the verifier refuses it or the 64 KiB size limit is
//! reached. The worst-case bench (`benches/worst_case.rs`) times the largest
//! accepted token of each shape; `tests/cost_bound.rs` checks every one is
//! either refused before Datalog runs or decided without reaching a run
//! limit.

use crate::{append_first_party, append_hop, datalog_block, hop_block_for, Agent, Family};
use mandate_spec::{Grant, Request, MAX_BLOCKS, MAX_TOKEN_BYTES};
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// One hostile token and the request it is decided with.
#[derive(Debug, Clone)]
pub struct Hostile {
    /// The shape, and the parameter it was grown to.
    pub name: String,
    /// The token's bytes.
    pub token: Vec<u8>,
    /// The request: every parameter slot used, with the longest values.
    pub request: Request,
}

/// The most expensive request the limits allow: 64 parameters (the
/// maximum) with 4096-byte string values, plus the ones hostile checks name.
pub fn worst_request() -> Request {
    let mut r = Request::new("read", "/api/customers/42").param("rows", 1);
    let long = "x".repeat(4096);
    for i in 0..63 {
        r = r.param(format!("p{i}"), long.as_str());
    }
    r
}

fn expires() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

/// A hop from the family's holder to a fresh agent, carrying extra Datalog
/// `source` besides its canonical content.
fn hop_with(f: &Family, source: &str) -> Vec<u8> {
    let next = Agent::new("hostile-agent");
    let block = hop_block_for(&next, &Grant::default(), expires())
        .code(source)
        .unwrap_or_else(|e| panic!("hostile block does not parse: {e}\n{source}"));
    append_hop(f.token(), &f.holder().key, block)
}

/// `k` approver facts (the only repeatable fact a hop may hold).
fn approver_facts(k: usize) -> String {
    let mut s = String::new();
    for i in 0..k {
        let _ = writeln!(s, "approver(\"a{i}\", hex:{:064x});", i + 1);
    }
    s
}

/// A check joining `m` approver predicates that never passes, so every
/// combination is enumerated.
fn approver_join(m: usize) -> String {
    let body: Vec<String> = (0..m).map(|i| format!("approver($a{i}, $k{i})")).collect();
    format!("check if {}, $a0 == \"never\";", body.join(", "))
}

/// Grows `make(n)` for n = 1, 2, 4, … (then bisects) while the token stays
/// under the size limit and `accepted` says the verifier would decide it,
/// and returns the largest accepted one (or the smallest refused one, when
/// even n = 1 is refused).
fn grow(
    name: &str,
    accepted: &dyn Fn(&[u8]) -> bool,
    make: &dyn Fn(usize) -> Option<Vec<u8>>,
) -> Hostile {
    let ok = |n: usize| match make(n) {
        Some(t) if t.len() <= MAX_TOKEN_BYTES && accepted(&t) => Some(t),
        _ => None,
    };
    let Some(mut best) = ok(1).map(|t| (1, t)) else {
        let token = make(1).unwrap_or_default();
        return Hostile {
            name: format!("{name} (n=1, refused)"),
            token,
            request: worst_request(),
        };
    };
    let mut hi = 2;
    while let Some(t) = ok(hi) {
        best = (hi, t);
        if hi > 1 << 16 {
            break;
        }
        hi *= 2;
    }
    let (mut lo, mut hi) = (best.0, hi);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        match ok(mid) {
            Some(t) => {
                best = (mid, t);
                lo = mid;
            }
            None => hi = mid,
        }
    }
    Hostile {
        name: format!("{name} (n={})", best.0),
        token: best.1,
        request: worst_request(),
    }
}

/// The corpus, against `family` (depth 0 or 1; its holder appends the
/// hostile blocks), with `accepted` telling whether the verifier decides a
/// token (rather than refusing its structure).
pub fn corpus(family: &Family, accepted: &dyn Fn(&[u8]) -> bool) -> Vec<Hostile> {
    let f = family;
    let mut out = Vec::new();
    // Widest joins: m approver predicates over n facts, for each m.
    for m in [1usize, 2, 3, 4, 6, 8, 16] {
        out.push(grow(
            &format!("join of {m} over n approver facts"),
            accepted,
            &|n| Some(hop_with(f, &(approver_facts(n) + &approver_join(m)))),
        ));
    }
    // Many facts in every hop a `trusting` check can see: a chain that
    // alternates between two agents, the last hop trusting the first
    // agent's key (whose blocks then all become visible).
    out.push(grow("trusting a key that signed n hops", accepted, &|n| {
        let a = Agent::new("agent-a");
        let b = Agent::new("agent-b");
        let mut token = f.token().to_vec();
        let mut signer = &f.holder().key;
        let hops = n.min(MAX_BLOCKS);
        for i in 0..hops {
            let next = if i % 2 == 0 { &a } else { &b };
            let mut src = approver_facts(3);
            if i + 1 == hops {
                let _ = write!(
                    src,
                    "check if approver($x, $y), approver($z, $w), $x == \"never\" trusting {};",
                    a.key.public()
                );
            }
            let block = hop_block_for(next, &Grant::default(), expires())
                .code(&src)
                .ok()?;
            token = append_hop(&token, signer, block);
            signer = &next.key;
        }
        Some(token)
    }));
    // The open parameter join against all 64 request parameters.
    out.push(grow(
        "open param join with n approver facts",
        accepted,
        &|n| {
            let src = approver_facts(n)
                + "check if param($n, $v), approver($a, $k), $v == \"never\", $a == \"never\";";
            Some(hop_with(f, &src))
        },
    ));
    // Largest sets: n checks each with a 1000-element set literal.
    out.push(grow("n checks with 1000-element sets", accepted, &|n| {
        let set: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let mut src = String::new();
        for _ in 0..n {
            let _ = writeln!(
                src,
                "check if param(\"rows\", $r), {{{}}}.contains($r + 100000);",
                set.join(", ")
            );
        }
        Some(hop_with(f, &src))
    }));
    // Growing values: one expression concatenating n string literals, then
    // compared with a 4096-byte parameter.
    out.push(grow(
        "concatenation of n 200-byte strings",
        accepted,
        &|n| {
            let lit = format!("\"{}\"", "y".repeat(200));
            let parts = vec![lit; n];
            let src = format!("check if param(\"p0\", $p), {} == $p;", parts.join(" + "));
            Some(hop_with(f, &src))
        },
    ));
    // Set unions that grow by one element per operation.
    out.push(grow("n chained set unions", accepted, &|n| {
        let mut expr = String::from("{0}");
        for i in 1..n {
            let _ = write!(expr, ".union({{{i}}})");
        }
        let src = format!("check if param(\"rows\", $r), {expr}.contains($r + 100000);");
        Some(hop_with(f, &src))
    }));
    // Many cheap checks: n canonical-looking checks with a long string
    // comparison each, filling the token.
    out.push(grow(
        "n string checks on a 4096-byte parameter",
        accepted,
        &|n| {
            let mut src = String::new();
            for i in 0..n {
                let _ = writeln!(
                    src,
                    "check if param(\"p{}\", $p), $p.contains(\"zz{i}\");",
                    i % 63
                );
            }
            Some(hop_with(f, &src))
        },
    ));
    // String interning (red team, issue 12): a table filled with symbols
    // (literals in a check whose body never matches), then n checks each
    // concatenating strings once per request parameter: every `+` interns
    // its result after a scan of the table.
    out.push(grow(
        "n interning checks over a full symbol table",
        accepted,
        &|n| {
            let lits: Vec<String> = (0..400).map(|i| format!("\"s{i:05}\"")).collect();
            let mut src = format!(
                "check if no_such_fact($z), ({}).length() == 0;\n",
                lits.join(" + ")
            );
            let pieces = ["\"a\""; 4].join(" + ");
            for _ in 0..n {
                let _ = writeln!(src, "check if param($n, $v), ({pieces}).length() == 0;");
            }
            Some(hop_with(f, &src))
        },
    ));
    // Deepest chain: n delegation hops (each two signatures to verify).
    out.push(grow("chain of n delegation hops", accepted, &|n| {
        let mut token = f.token().to_vec();
        let mut holder = Agent::new("d0");
        let first = hop_block_for(&holder, &crate::customers_grant(), expires());
        token = append_hop(&token, &f.holder().key, first);
        for i in 1..n {
            let next = Agent::new(&format!("d{i}"));
            let block = hop_block_for(&next, &crate::customers_grant(), expires());
            token = append_hop(&token, &holder.key, block);
            holder = next;
        }
        Some(token)
    }));
    // Narrowing blocks (first-party: one signature each) with a join each.
    out.push(grow(
        "n narrowing blocks with an open param check",
        accepted,
        &|n| {
            let mut token = f.token().to_vec();
            for _ in 0..n {
                token = append_first_party(
                    &token,
                    datalog_block("check if param($n, $v), $v.contains(\"never\");"),
                );
            }
            Some(token)
        },
    ));
    out
}
