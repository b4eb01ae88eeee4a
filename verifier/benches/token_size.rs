//! Prints the figures behind `verifier/BENCHMARKS.md` that are not timings of
//! `Verifier::authorize`: token size by delegation depth; the bytes one hop
//! adds (Mandate's encoding against a naive one and an empty third-party
//! hop) and where they go; and the Datalog run of authorizations at depths
//! 0–8 (facts, iterations, time) that the verifier's default run limits are
//! set against.
//!
//! Run with: `cargo bench -p mandate-verifier --bench token_size`

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use biscuit_auth::builder::{bytes, date, fact, string, BlockBuilder, Check, Term};
use biscuit_auth::{Biscuit, BiscuitBuilder, KeyPair};
use mandate_spec::{hop_block, Grant, HopContent};
use mandate_verifier::Limits;
use std::time::{Duration, SystemTime};

const MAX_DEPTH: usize = 8;

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this program takes none.
    println!("# Token size by delegation depth (bytes, serialized, not base64)\n");
    println!("Hop: next agent's key + one action set + one resource pattern + expiry.\n");

    let mandate = sizes(&common::chain(MAX_DEPTH).tokens);
    let single =
        sizes(&common::chain_with(MAX_DEPTH, common::GRANT, "read:/api/customers/*").tokens);
    let naive = sizes(&naive_chain(MAX_DEPTH, Content::Naive));
    let empty = sizes(&naive_chain(MAX_DEPTH, Content::Empty));

    println!(
        "| depth | Mandate `{}` | Δ | Mandate `read:/api/customers/*` | Δ | naive (hex key, 3 checks) | Δ | empty third-party hop | Δ |",
        common::GRANT
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for d in 0..=MAX_DEPTH {
        let cell = |s: &[usize]| {
            let delta = if d == 0 {
                String::from("—")
            } else {
                format!("+{}", s[d] - s[d - 1])
            };
            format!("{} | {}", s[d], delta)
        };
        println!(
            "| {d} | {} | {} | {} | {} |",
            cell(&mandate),
            cell(&single),
            cell(&naive),
            cell(&empty)
        );
    }
    let per_hop = |s: &[usize]| (s[MAX_DEPTH] - s[0]) as f64 / MAX_DEPTH as f64;
    println!("\nMean bytes per hop (depth 0 → {MAX_DEPTH}):");
    println!("- Mandate, `{}`: {:.1}", common::GRANT, per_hop(&mandate));
    println!(
        "- Mandate, `read:/api/customers/*`: {:.1}",
        per_hop(&single)
    );
    println!(
        "- naive (hex key string, separate checks): {:.1}",
        per_hop(&naive)
    );
    println!(
        "- empty third-party hop (signatures and keys only): {:.1}",
        per_hop(&empty)
    );
    println!(
        "- Mandate hop content beyond the empty hop: {:.1} (`{}`), {:.1} (`read:…`)",
        per_hop(&mandate) - per_hop(&empty),
        common::GRANT,
        per_hop(&single) - per_hop(&empty)
    );
    println!("\nBase64 (what travels in a header) is 4/3 of these sizes.");

    hop_byte_budget();
    print_hop_source();
    datalog_run_figures();
}

/// Where one hop's bytes go: the same third-party hop appended to the same
/// root token with more and more of its content, then two encodings of the
/// same check that Mandate does not use (yet).
fn hop_byte_budget() {
    let chain = common::chain(0);
    let root = Biscuit::from(&chain.tokens[0], chain.root_key).unwrap();
    let holder = &chain.holders[0];
    let next = KeyPair::new();
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let added = |block: BlockBuilder| {
        let signed = root
            .third_party_request()
            .unwrap()
            .create_block(&holder.private(), block)
            .unwrap();
        let token = root.append_third_party(holder.public(), signed).unwrap();
        token.to_vec().unwrap().len() - chain.tokens[0].len()
    };
    let mandate_hop = |grant: &str| {
        let grant = if grant.is_empty() {
            Grant::default()
        } else {
            Grant::parse(&[grant], &[] as &[&str]).unwrap()
        };
        hop_block(&HopContent {
            agent: "agent-1",
            agent_key: &next.public(),
            purpose: None,
            grant: &grant,
            expires,
        })
        .unwrap()
    };
    let agent = || {
        BlockBuilder::new()
            .fact(fact(
                "agent",
                &[string("agent-1"), bytes(&next.public().to_bytes())],
            ))
            .unwrap()
    };
    let with_check = |source: &str| {
        let mut check = Check::try_from(source).unwrap();
        check.set("expires", date(&expires)).unwrap();
        agent().check(check).unwrap()
    };

    println!("\n# Where a hop's bytes go (one third-party hop on the same root token)\n");
    println!("| hop content | bytes added |");
    println!("|---|---:|");
    let rows: [(&str, usize); 5] = [
        (
            "empty third-party block (signature, next key, external signature and key, framing)",
            added(BlockBuilder::new()),
        ),
        ("+ `agent(\"agent-1\", <32 key bytes>)`", added(agent())),
        (
            "+ expiry-only check (Mandate, empty grant)",
            added(mandate_hop("")),
        ),
        (
            "+ `read:/api/customers/*` with expiry (Mandate)",
            added(mandate_hop("read:/api/customers/*")),
        ),
        (
            "+ `read,list:/api/customers/*` with expiry (Mandate)",
            added(mandate_hop(common::GRANT)),
        ),
    ];
    for (what, n) in rows {
        println!("| {what} | {n} |");
    }
    println!("\nThe same `read,list:/api/customers/*` hop, encoded differently (not what Mandate writes):\n");
    println!("| encoding | bytes added |");
    println!("|---|---:|");
    let variants = [
        (
            "short variables (`$t`, `$o`) and a `resource_parent` predicate (Mandate before its byte diet)",
            r#"check if time($t), operation($o), resource_parent("/api/customers/"), $t <= {expires}, {"list", "read"}.contains($o)"#,
        ),
        (
            "as Mandate writes it: default-symbol variables, two-term `resource($dir, $name)`",
            r#"check if time($time), operation($operation), resource("/api/customers/", $resource), $time <= {expires}, {"list", "read"}.contains($operation)"#,
        ),
    ];
    for (what, source) in variants {
        println!("| {what} | {} |", added(with_check(source)));
    }
}

fn sizes(tokens: &[Vec<u8>]) -> Vec<usize> {
    tokens.iter().map(Vec::len).collect()
}

#[derive(Clone, Copy)]
enum Content {
    /// The hop's content written the obvious way: key as an `ed25519/<hex>`
    /// string, one check per constraint.
    Naive,
    /// A third-party block with nothing in it: the fixed cost of a hop.
    Empty,
}

/// A chain built with biscuit-auth's API directly, `depth` third-party hops.
fn naive_chain(depth: usize, content: Content) -> Vec<Vec<u8>> {
    let root = KeyPair::new();
    let now = SystemTime::now();
    let mut holder = KeyPair::new();
    let mut authority = BiscuitBuilder::new()
        .fact(fact(
            "token",
            &[string("2b1c7a0e-4f7d-4c43-9a55-0d6a1e9f3b21")],
        ))
        .unwrap()
        .fact(fact("principal", &[string("user:alice")]))
        .unwrap()
        .fact(fact("issued_at", &[date(&now)]))
        .unwrap();
    authority = authority.merge(hop_content(
        content,
        "agent-0",
        &holder,
        now + Duration::from_secs(86_400),
    ));
    let mut token = authority.root_key_id(0).build(&root).unwrap();
    let mut out = vec![token.to_vec().unwrap()];
    for hop in 1..=depth {
        let next = KeyPair::new();
        let block = hop_content(
            content,
            &format!("agent-{hop}"),
            &next,
            now + Duration::from_secs(3600),
        );
        let signed = token
            .third_party_request()
            .unwrap()
            .create_block(&holder.private(), block)
            .unwrap();
        token = token.append_third_party(holder.public(), signed).unwrap();
        out.push(token.to_vec().unwrap());
        holder = next;
    }
    // The naive chain is still a valid token.
    Biscuit::from(out.last().unwrap(), root.public()).unwrap();
    out
}

fn hop_content(content: Content, agent: &str, next: &KeyPair, expires: SystemTime) -> BlockBuilder {
    if let Content::Empty = content {
        return BlockBuilder::new();
    }
    let mut expiry = Check::try_from("check if time($t), $t <= {expires}").unwrap();
    expiry.set("expires", date(&expires)).unwrap();
    let mut action = Check::try_from("check if operation($o), {actions}.contains($o)").unwrap();
    let actions = ["list", "read"]
        .into_iter()
        .map(|a| Term::Str(a.into()))
        .collect();
    action.set("actions", Term::Set(actions)).unwrap();
    let mut resource = Check::try_from("check if resource_parent({dir})").unwrap();
    resource.set("dir", string("/api/customers/")).unwrap();
    BlockBuilder::new()
        .fact(fact(
            "agent",
            &[string(agent), string(&next.public().to_string())],
        ))
        .unwrap()
        .check(expiry)
        .unwrap()
        .check(action)
        .unwrap()
        .check(resource)
        .unwrap()
}

fn print_hop_source() {
    let chain = common::chain(1);
    let biscuit = Biscuit::from(&chain.tokens[1], chain.root_key).unwrap();
    println!("\n# A Mandate hop (block 1 of a 1-hop token), as Datalog\n");
    println!(
        "```datalog\n{}\n```",
        biscuit.print_block_source(1).unwrap().trim_end()
    );
}

/// The Datalog run of the verifier's authorization (the same builder, facts,
/// policy and limits as `Verifier::authorize`), repeated to see its spread.
fn datalog_run_figures() {
    const RUNS: usize = 10_000;
    // biscuit-auth's own default time limit, which the verifier raises.
    const BISCUIT_DEFAULT: Duration = Duration::from_millis(1);
    let limits = Limits::default();
    let request = common::allowed_request();
    let chain = common::chain(MAX_DEPTH);
    println!(
        "\n# Datalog run (verifier defaults: {} facts, {} iterations, {:?}; {RUNS} runs each)\n\n\
         Authorizer::fact_count / iterations / execution_time after authorize(), same builder, \
         facts, policy and limits as the verifier; run time covers the rule runs, checks and \
         policies, not parsing.\n",
        limits.max_facts, limits.max_iterations, limits.max_time
    );
    println!("| depth | facts | iterations | run time median | p99 | max | runs ≥ 1 ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for depth in [0, 1, 2, 4, 8] {
        let token = &chain.tokens[depth];
        let mut times = Vec::with_capacity(RUNS);
        let (mut facts, mut iterations) = (0, 0);
        for _ in 0..RUNS {
            let (allowed, authorizer) =
                common::raw_biscuit(token, chain.root_key, &request, limits);
            assert!(allowed, "depth {depth}");
            facts = authorizer.fact_count();
            iterations = authorizer.iterations();
            times.push(authorizer.execution_time().unwrap());
        }
        times.sort();
        let slow = times.iter().filter(|t| **t >= BISCUIT_DEFAULT).count();
        println!(
            "| {depth} | {facts} | {iterations} | {:.1} µs | {:.1} µs | {:.1} µs | {slow} |",
            micros(times[RUNS / 2]),
            micros(times[RUNS * 99 / 100]),
            micros(times[RUNS - 1])
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
