//! A token whose strings try to draw on the reader's screen (THREATS.md
//! "display injection"): every string a token can carry free text in holds
//! a fake `hop 9` line, an ANSI "clear screen" and a right-to-left override.
//!
//! Built with the library the way each position could: the issuer (who
//! holds the root key) writes the principal; the delegating agent signs
//! hop 1 itself and puts what it likes in it — a purpose, a raw Datalog
//! check, and a check in the canonical shape whose action, resource,
//! parameter name and value are free strings (decoding reads them back as
//! an alternative of the hop's grant; only `agent` and `approver` names are
//! validated when a chain is read).

use biscuit_auth::builder::{date, fact, string, BlockBuilder, Predicate, Rule, Term};
use biscuit_auth::{BiscuitBuilder, KeyPair, UnverifiedBiscuit};
use mandate_spec::{grant_checks, hop_block, vocab, Grant, HopContent};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A line break, a fake hop line, quotes, ANSI clear screen, RLO.
pub const EVIL: &str = "x\n hop 9 (block 9): agent \"evil\" \u{1b}[2J\u{202e}exe.txt";

/// The token file written, and the keys (files in `dir`) around it.
pub struct Crafted {
    /// The root public key, `ed25519/<hex>`.
    pub root_pub: String,
    /// The approver's key file (`finance.key`), for `approve`.
    pub approver_key: &'static str,
    /// The token file (`evil.tok`): root → support-agent → sub-agent.
    pub token: &'static str,
    /// The same without the raw checks (`evil-approval.tok`): a hop with
    /// raw Datalog is never answered "needs approval", this one is.
    pub approval_token: &'static str,
}

fn keygen(dir: &Path, name: &str) -> KeyPair {
    let r = super::mandate(dir, &["keygen", "--out", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    mandate_spec::parse_private_key(text.trim()).unwrap()
}

/// Writes `evil.tok` (and its keys) into `dir`. Hop 0 (root, for principal
/// [`EVIL`]) allows `list,pay,read:/api/**`; hop 1 (signed by
/// support-agent, to sub-agent, purpose [`EVIL`]) allows `list:/api/**` and
/// `pay:/api/payments/**` with an approval by `finance` for every pay, and
/// adds a check whose second alternative is made entirely of [`EVIL`]
/// strings, and (in `evil.tok`) a raw check quoting [`EVIL`] that every
/// request passes.
/// `list /api/x` is allowed; `read /api/x` is denied at hop 1; `pay
/// /api/payments/9` needs finance's approval.
pub fn write(dir: &Path) -> Crafted {
    let root = keygen(dir, "root.key");
    let support = keygen(dir, "support.key");
    let sub = keygen(dir, "sub.key");
    let finance = keygen(dir, "finance.key");
    let now = SystemTime::now();
    let expires = now + Duration::from_secs(3600);

    // Hop 0, by the issuer.
    let root_grant = Grant::parse(&["list,pay,read:/api/**"], &[] as &[&str]).unwrap();
    let token = BiscuitBuilder::new()
        .fact(fact(
            vocab::TOKEN,
            &[string("7d1c6e4a-1b7f-4c2e-9a51-0f6f8c3b2d10")],
        ))
        .unwrap()
        .fact(fact(vocab::PRINCIPAL, &[string(EVIL)]))
        .unwrap()
        .fact(fact(vocab::ISSUED_AT, &[date(&now)]))
        .unwrap()
        .merge(
            hop_block(&HopContent {
                agent: "support-agent",
                agent_key: &support.public(),
                purpose: Some("accounts payable"),
                grant: &root_grant,
                expires,
            })
            .unwrap(),
        )
        .root_key_id(0)
        .build(&root)
        .unwrap()
        .to_vec()
        .unwrap();

    // Hop 1, by support-agent: a valid grant with an approval rule and a
    // raw check, plus an alternative of free strings.
    let mut grant = Grant::parse(&["pay:/api/payments/**", "list:/api/**"], &[] as &[&str])
        .unwrap()
        .with_approval(&format!("pay by finance={}", finance.public()))
        .unwrap();
    let raw = format!(
        "check if resource($r), $r != \"{}\"",
        EVIL.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    );
    let mut crafted = grant_checks(
        &Grant::parse(&["list,pay:/api/**"], &[] as &[&str]).unwrap(),
        None,
    )
    .unwrap()
    .remove(0);
    let pred = |name: &str, terms: Vec<Term>| Predicate::new(name.to_string(), terms);
    crafted.queries.push(Rule::new(
        pred("query", vec![]),
        vec![
            pred(vocab::OPERATION, vec![Term::Str(EVIL.into())]),
            pred(vocab::RESOURCE, vec![Term::Str(EVIL.into())]),
            pred(
                vocab::PARAM,
                vec![Term::Str(EVIL.into()), Term::Str(EVIL.into())],
            ),
        ],
        vec![],
        vec![],
    ));
    let parsed = UnverifiedBiscuit::from(&token).unwrap();
    for (file, datalog) in [("evil.tok", vec![raw]), ("evil-approval.tok", vec![])] {
        let approval = datalog.is_empty();
        grant.datalog = datalog;
        let mut block: BlockBuilder = hop_block(&HopContent {
            agent: "sub-agent",
            agent_key: &sub.public(),
            purpose: Some(EVIL),
            grant: &grant,
            expires,
        })
        .unwrap();
        // The crafted second check is shown as Datalog (a block's checks
        // are conjunctive: SPEC §4.4), so only the token without raw
        // Datalog can be answered "needs approval" without it.
        if !approval {
            block = block.check(crafted.clone()).unwrap();
        }
        let signed = parsed
            .third_party_request()
            .unwrap()
            .create_block(&support.private(), block)
            .unwrap();
        let token = parsed
            .append_third_party(&signed.serialize().unwrap())
            .unwrap()
            .to_vec()
            .unwrap();
        std::fs::write(dir.join(file), mandate_spec::token_to_text(&token)).unwrap();
    }
    Crafted {
        root_pub: root.public().to_string(),
        approver_key: "finance.key",
        token: "evil.tok",
        approval_token: "evil-approval.tok",
    }
}

/// Asserts that `out` shows [`EVIL`] only escaped: no ESC, no RLO, no line
/// that the fake hop line became, and `hop_lines` lines that start with
/// `hop N (block`.
pub fn assert_escaped(out: &str, hop_lines: usize) {
    assert!(!out.contains('\u{1b}'), "raw ESC in: {out:?}");
    assert!(!out.contains('\u{202e}'), "raw RLO in: {out:?}");
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("hop 9")),
        "a fabricated line in:\n{out}"
    );
    let hops = out
        .lines()
        .filter(|l| l.starts_with("hop ") && l.contains(" (block "))
        .count();
    assert_eq!(hops, hop_lines, "hop lines in:\n{out}");
}

/// How [`EVIL`] shows once escaped inside a quoted value.
pub const EVIL_SHOWN: &str = r#"x\n hop 9 (block 9): agent \"evil\" \u{1b}[2J\u{202e}exe.txt"#;
