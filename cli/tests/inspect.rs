//! `mandate inspect` as an auditor reads it — text, `--json` and `--html` —
//! on chains of depth 1 to 8, including a revoked hop, an approval block and
//! a hop requiring proof of possession; then both HTML views (a token's
//! chain, and the issuer service's decisions page) rendered in a real
//! headless browser (Debian chromium through chromedriver), with a
//! screenshot of each written to `target/screenshots/`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::browser::{screenshot_dir, Browser};
use common::procs::{http, Proc};
use common::{crafted, mandate, Run};
use serde_json::Value;
use std::path::Path;

/// A root for `org:acme` and `depth` hops below it: each hop narrows the
/// amount bound; hop 3 (when there is one) requires proof of possession;
/// the root carries an approval rule. Returns the token files by depth.
struct Chains {
    dir: tempfile::TempDir,
    root_pub: String,
}

fn run(d: &Path, args: &[&str]) -> Run {
    let r = mandate(d, args);
    assert_eq!(r.code, 0, "mandate {args:?}: {}", r.stderr);
    r
}

impl Chains {
    fn build() -> Chains {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root_pub = run(d, &["keygen", "--out", "root.key"])
            .stdout
            .trim()
            .to_string();
        let finance = run(d, &["keygen", "--out", "finance.key"])
            .stdout
            .trim()
            .to_string();
        let keys: Vec<String> = (0..=8)
            .map(|i| {
                run(d, &["keygen", "--out", &format!("a{i}.key")])
                    .stdout
                    .trim()
                    .to_string()
            })
            .collect();
        let rule = format!("pay when amount>100 by finance={finance}");
        let root = run(
            d,
            &[
                "issue",
                "--key",
                "root.key",
                "--principal",
                "org:acme",
                "--to",
                "agent-0",
                "--to-key",
                &keys[0],
                "--allow",
                "pay,refund:/api/payments/**",
                "--where",
                "amount<=1000",
                "--approval",
                &rule,
                "--ttl",
                "1h",
                "--purpose",
                "accounts payable",
            ],
        );
        std::fs::write(d.join("t0.tok"), &root.stdout).unwrap();
        for (i, key) in keys.iter().enumerate().skip(1) {
            let bound = format!("amount<={}", 1000 - i * 100);
            let from = format!("a{}.key", i - 1);
            let agent = format!("agent-{i}");
            let purpose = format!("step {i}");
            let prev = format!("t{}.tok", i - 1);
            let mut args = vec![
                "attenuate",
                "--key",
                &from,
                "--to",
                &agent,
                "--to-key",
                key,
                "--allow",
                "pay:/api/payments/**",
                "--where",
                &bound,
                "--purpose",
                &purpose,
            ];
            if i == 3 {
                args.push("--require-proof");
            }
            args.push(&prev);
            let next = run(d, &args);
            std::fs::write(d.join(format!("t{i}.tok")), &next.stdout).unwrap();
        }
        Chains { dir, root_pub }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn inspect_json(&self, token: &str, extra: &[&str]) -> Value {
        let mut args = vec!["inspect", "--json", "--public-key", &self.root_pub];
        args.extend_from_slice(extra);
        args.push(token);
        serde_json::from_str(&run(self.d(), &args).stdout).unwrap()
    }
}

#[test]
fn inspect_shows_every_hop_and_its_effective_capability_at_every_depth() {
    let c = Chains::build();
    // Revoke hop 2 of the depth-8 chain.
    run(
        c.d(),
        &[
            "revoke",
            "--db",
            "rev",
            "--token",
            "t8.tok",
            "--hop",
            "2",
            "--reason",
            "compromised",
        ],
    );
    for depth in 1..=8usize {
        let token = format!("t{depth}.tok");
        let j = c.inspect_json(&token, &["--revocation-db", "rev"]);
        assert_eq!(j["signatures_verified"], true);
        let hops = j["chain"]["hops"].as_array().unwrap();
        assert_eq!(hops.len(), depth + 1, "depth {depth}");
        let effective = j["effective"].as_array().unwrap();
        assert_eq!(effective.len(), depth + 1);
        // The effective bound at hop i is the tightest so far.
        for (i, cap) in effective.iter().enumerate() {
            // The root's rule split its alternative: refund (no approval)
            // and pay (approval above 100); from hop 1 on, only pay is left.
            let alts = cap["alternatives"].as_array().unwrap();
            assert_eq!(
                alts.len(),
                if i == 0 { 2 } else { 1 },
                "depth {depth} hop {i}: {cap}"
            );
            let alt = alts.iter().find(|a| a["actions"][0] == "pay").unwrap();
            assert_eq!(cap["nothing"], false);
            let want = if i == 0 { 1000 } else { 1000 - 100 * i as i64 };
            let bound = alt["constraints"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["param"] == "amount")
                .unwrap()["bound"]
                .as_i64()
                .unwrap();
            assert_eq!(bound, want, "depth {depth} hop {i}: {cap}");
            assert_eq!(
                alt["approval"]["approver"], "finance",
                "the root's rule stays in force"
            );
            assert_eq!(cap["holder_bound"], i >= 3);
        }
        // Revocation: hop 2 and below (the same blocks in every longer chain).
        let revoked = j["revoked"].as_array().unwrap();
        for (i, r) in revoked.iter().enumerate() {
            assert_eq!(!r.is_null(), i >= 2, "depth {depth} hop {i}: {r}");
        }
    }

    // The text form, for people.
    let text = run(
        c.d(),
        &[
            "inspect",
            "--public-key",
            &c.root_pub.clone(),
            "--revocation-db",
            "rev",
            "t4.tok",
        ],
    )
    .stdout;
    for needle in [
        "chain: org:acme → agent-0 → agent-1 → agent-2 → agent-3 → agent-4",
        "hop 3 (block 3): agent \"agent-3\"",
        "signed by: agent \"agent-2\"",
        "purpose: \"step 3\"",
        "each request proven by the final holder's key",
        "effective here: pay:/api/payments/** where amount<=700, approval by finance when amount>100; each request proven by the final holder's key",
        "REVOKED: hop 2 revoked",
        "(an earlier hop)",
    ] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
}

#[test]
fn the_chain_page_renders_in_a_headless_browser() {
    let c = Chains::build();
    run(
        c.d(),
        &[
            "revoke",
            "--db",
            "rev",
            "--token",
            "t8.tok",
            "--hop",
            "5",
            "--reason",
            "left the team",
        ],
    );
    // An approval block on the deepest chain.
    let ask = mandate(
        c.d(),
        &[
            "verify",
            "--json",
            "--public-key",
            &c.root_pub.clone(),
            "--action",
            "pay",
            "--resource",
            "/api/payments/9",
            "--param",
            "amount=150",
            "--proof-key",
            "a8.key",
            "--audience",
            "https://pay.example.com",
            "--replay-db",
            "replay",
            "t8.tok",
        ],
    );
    assert_eq!(ask.code, 3, "{}", ask.stderr);
    std::fs::write(c.d().join("ask.json"), &ask.stdout).unwrap();
    // Signed with the library: `mandate approve` decides the request
    // again without a proof, and this chain requires one from hop 3 on.
    let ask: Value = serde_json::from_str(&ask.stdout).unwrap();
    let request: mandate_spec::Request = serde_json::from_value(ask["request"].clone()).unwrap();
    let finance = std::fs::read_to_string(c.d().join("finance.key")).unwrap();
    let block = mandate_attenuate::approve(
        ask["approval"]["third_party_request"].as_str().unwrap(),
        &request,
        std::time::SystemTime::now() + std::time::Duration::from_secs(600),
        &mandate_spec::parse_private_key(&finance).unwrap(),
    )
    .unwrap();
    std::fs::write(c.d().join("approval.b64"), block).unwrap();
    let approved = run(
        c.d(),
        &["attach-approval", "--approval", "approval.b64", "t8.tok"],
    )
    .stdout;
    std::fs::write(c.d().join("approved.tok"), approved).unwrap();
    let page = c.d().join("chain.html");
    run(
        c.d(),
        &[
            "inspect",
            "--public-key",
            &c.root_pub.clone(),
            "--revocation-db",
            "rev",
            "--html",
            page.to_str().unwrap(),
            "approved.tok",
        ],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external asset"
    );
    assert!(!html.contains("<script"), "no script");

    let b = Browser::start();
    b.goto(&format!("file://{}", page.display()));
    let hops = b.eval("return Array.from(document.querySelectorAll('.node[data-hop]')).map(n => n.getAttribute('data-hop'))");
    let hops: Vec<String> = hops
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = std::iter::once("principal".to_string())
        .chain((0..=8).map(|i| i.to_string()))
        .collect();
    assert_eq!(hops, want);
    let revoked = b.eval("return document.querySelectorAll('.node.revoked').length");
    assert_eq!(revoked, 4, "hops 5 to 8 are dead");
    let approvals = b.eval("return document.querySelectorAll('.node.approval').length");
    assert_eq!(approvals, 1);
    let text = b
        .eval("return document.body.innerText")
        .as_str()
        .unwrap()
        .to_string();
    for needle in [
        "org:acme",
        "agent-8",
        "effective capability here",
        "step 8",
        "approval by finance",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    // Laid out as a path: each hop to the right of the one before.
    let xs = b.eval("return Array.from(document.querySelectorAll('.node[data-hop]')).map(n => n.getBoundingClientRect().left)");
    let xs: Vec<f64> = xs
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(xs.windows(2).all(|w| w[1] > w[0]), "{xs:?}");
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 10_000, "a real rendering, {} bytes", png.len());
    std::fs::write(screenshot_dir().join("inspect-chain.png"), png).unwrap();
}

#[test]
fn the_decisions_page_of_the_issuer_service_renders_in_a_headless_browser() {
    let c = Chains::build();
    let d = c.d();
    run(d, &["keygen", "--out", "audit.key"]);
    let admin = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "ops:auditor",
            "--to",
            "auditor",
            "--to-key",
            &c.root_pub.clone(),
            "--allow",
            "review:/ui/decisions",
            "--ttl",
            "1h",
        ],
    )
    .stdout
    .trim()
    .to_string();
    let serve = Proc::start([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        d.join("data").to_str().unwrap(),
        "--root-key",
        &format!("0={}", d.join("root.key").display()),
        "--audit-key",
        d.join("audit.key").to_str().unwrap(),
    ]);
    // Decisions: a payment within the grant, one above it, one by a token
    // requiring a proof it does not carry.
    for (tok, amount) in [
        ("t2.tok", 50),
        ("t2.tok", 5000),
        ("t4.tok", 50),
        ("t1.tok", 20),
    ] {
        let token = std::fs::read_to_string(d.join(tok)).unwrap();
        let body = serde_json::json!({"token": token.trim(), "action": "pay", "resource": "/api/payments/7", "params": {"amount": amount}});
        http(
            &serve.addr,
            "POST",
            "/v1/authorize",
            &body.to_string(),
            None,
        );
    }
    // Without the admin token: refused.
    let (status, _) = http(&serve.addr, "GET", "/ui/decisions", "", None);
    assert_eq!(status, 401);

    let b = Browser::start();
    b.goto(&format!("http://{}/healthz", serve.addr));
    b.add_cookie("mandate_admin", &admin);
    b.goto(&format!("http://{}/ui/decisions", serve.addr));
    let rows = b.eval("return Array.from(document.querySelectorAll('#decisions tr.row')).map(r => r.getAttribute('data-decision'))");
    let rows: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    // Two payments allowed, and the auditor's own access to this page: it is
    // a decision of the service's verifier like any other, and recorded.
    assert_eq!(
        rows.iter().filter(|r| **r == "allow").count(),
        3,
        "{rows:?}"
    );
    assert_eq!(rows.iter().filter(|r| **r == "deny").count(), 2, "{rows:?}");
    let text = b
        .eval("return document.body.innerText")
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("org:acme → agent-0 → agent-1 → agent-2"),
        "{text}"
    );
    assert!(text.contains("requires proof of possession"), "{text}");
    assert!(
        text.contains("review /ui/decisions"),
        "the page access itself: {text}"
    );
    assert!(
        text.contains("review /ui/decisions"),
        "the page access itself: {text}"
    );
    std::fs::write(
        screenshot_dir().join("service-decisions.png"),
        b.screenshot(),
    )
    .unwrap();
    // Filtered by decision and agent.
    b.goto(&format!(
        "http://{}/ui/decisions?decision=deny&agent=agent-4",
        serve.addr
    ));
    let rows = b.eval("return document.querySelectorAll('#decisions tr.row').length");
    assert_eq!(rows, 1);
    let _ = (Value::Null, &c.root_pub);
}

/// Regression: `inspect` printed token strings raw, so a newline in a hop's
/// resource (or purpose, value, raw check, principal) drew fake `hop` lines
/// below it, and ANSI or bidi controls rewrote the screen. Every string is
/// now escaped and quoted in the text output; `--json` keeps the raw
/// strings; the HTML page shows bidi and control characters as escapes.
#[test]
fn a_crafted_hop_cannot_draw_lines_in_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = crafted::write(d);
    let text = run(d, &["inspect", "--public-key", &c.root_pub, c.token]).stdout;
    crafted::assert_escaped(&text, 2);
    let shown = crafted::EVIL_SHOWN;
    for needle in [
        format!("token 7d1c6e4a-1b7f-4c2e-9a51-0f6f8c3b2d10 for principal \"{shown}\""),
        format!("chain: \"{shown}\" → support-agent → sub-agent"),
        format!("  purpose: \"{shown}\""),
        // The crafted second grant-shaped check: shown as Datalog (a block's
        // checks are conjunctive; issue 15 item 9), its strings escaped.
        format!("operation(\\\"{shown}\\\"), resource(\\\"{shown}\\\")"),
        // The raw check, as Biscuit prints it, quoted whole.
        r#"Datalog: "check if resource($r), $r != \"x\n hop 9 (block 9): agent \"evil\" \u{1b}[2J\u{202e}exe.txt\"""#.to_string(),
    ] {
        assert!(text.contains(&needle), "{needle}\nnot in:\n{text}");
    }
    // Each hop's block is its own lines: nothing after a hop header starts
    // a line that is not one of its fields.
    for line in text.lines() {
        let known = line.is_empty()
            || line.starts_with("  ")
            || [
                "token ",
                "issued:",
                "expires:",
                "signatures:",
                "max depth:",
                "chain:",
                "hop ",
            ]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(known, "a line no field starts: {line:?}\n{text}");
    }

    let j: Value = serde_json::from_str(
        &run(
            d,
            &["inspect", "--json", "--public-key", &c.root_pub, c.token],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(j["chain"]["principal"], crafted::EVIL);
    assert_eq!(j["chain"]["hops"][1]["purpose"], crafted::EVIL);

    let page = d.join("evil.html");
    run(
        d,
        &[
            "inspect",
            "--public-key",
            &c.root_pub,
            "--html",
            page.to_str().unwrap(),
            c.token,
        ],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains('\u{1b}') && !html.contains('\u{202e}'));
    assert!(html.contains("\\u{202e}exe.txt"), "{html}");
}

/// Markup, an attribute breakout, quotes, an entity, bidi overrides, NUL
/// and a control character, all in one string.
const HOSTILE: &str =
    "<script>alert(1)</script>\"><img src=x onerror=alert(1)>'&amp;\u{202e}exe\u{2066}\u{0}\u{7}";

/// A token for principal [`HOSTILE`] whose hop (to `agent-x`, purpose
/// [`HOSTILE`]) allows `read:/api/**`, signed by `root.key` (id 0) in `d`;
/// written as `hostile.tok`. The principal is written as a fact directly:
/// the issuer would refuse it, a forged or foreign root need not.
fn hostile_token(d: &Path) -> String {
    use biscuit_auth::builder::{date, fact, string};
    use mandate_spec::{hop_block, vocab, Grant, HopContent};
    let root = run(d, &["keygen", "--out", "root.key"]).stdout;
    let key = mandate_spec::parse_private_key(
        std::fs::read_to_string(d.join("root.key")).unwrap().trim(),
    )
    .unwrap();
    let agent = biscuit_auth::KeyPair::new();
    let now = std::time::SystemTime::now();
    let token = biscuit_auth::BiscuitBuilder::new()
        .fact(fact(
            vocab::TOKEN,
            &[string("0b6c4d2e-3f41-4a5b-8c7d-9e0f1a2b3c4d")],
        ))
        .unwrap()
        .fact(fact(vocab::PRINCIPAL, &[string(HOSTILE)]))
        .unwrap()
        .fact(fact(vocab::ISSUED_AT, &[date(&now)]))
        .unwrap()
        .merge(
            hop_block(&HopContent {
                agent: "agent-x",
                agent_key: &agent.public(),
                purpose: Some(HOSTILE),
                grant: &Grant::parse(&["read:/api/**"], &[] as &[&str]).unwrap(),
                expires: now + std::time::Duration::from_secs(3600),
            })
            .unwrap(),
        )
        .root_key_id(0)
        .build(&key)
        .unwrap()
        .to_vec()
        .unwrap();
    std::fs::write(d.join("hostile.tok"), mandate_spec::token_to_text(&token)).unwrap();
    root.trim().to_string()
}

/// Every byte but letters and digits percent-encoded.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Asserts what a real browser made of a page that shows [`HOSTILE`]: no
/// element or attribute came from it, and it reads as its escaped form.
fn assert_inert(b: &Browser, what: &str) {
    let injected =
        b.eval("return document.querySelectorAll('script, img, [onerror], [onmouseover]').length");
    assert_eq!(injected, 0, "{what}: an element or handler from a value");
    let text = b
        .eval("return document.documentElement.outerHTML")
        .as_str()
        .unwrap()
        .to_string();
    for c in ['\u{202e}', '\u{2066}', '\u{0}', '\u{7}'] {
        assert!(!text.contains(c), "{what}: raw {c:?} in the page");
    }
}

/// Attack test (issue 13): a token's principal and purpose, a request's
/// parameter and the filters echoed by the form carry markup, an attribute
/// breakout, quotes, an entity, bidi overrides, NUL and BEL. Rendered in a
/// real browser, both pages hold no element, attribute or hidden character
/// from them, and show each as the text rule escapes it.
#[test]
fn hostile_strings_render_only_as_text_in_both_pages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_pub = hostile_token(d);
    let shown = mandate_spec::display::text(HOSTILE).to_string();
    let page = d.join("hostile.html");
    run(
        d,
        &[
            "inspect",
            "--public-key",
            &root_pub,
            "--html",
            page.to_str().unwrap(),
            "hostile.tok",
        ],
    );
    let b = Browser::start();
    b.goto(&format!("file://{}", page.display()));
    assert_inert(&b, "inspect --html");
    let principal = b.eval("return document.querySelector('.node.principal h2').textContent");
    assert_eq!(principal, shown.as_str());
    let purpose = b.eval(
        "return Array.from(document.querySelectorAll('.node[data-hop=\"0\"] dt')).find(e => e.textContent == 'purpose').nextElementSibling.textContent",
    );
    assert_eq!(purpose, shown.as_str());

    run(d, &["keygen", "--out", "audit.key"]);
    let admin = run(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "ops:auditor",
            "--to",
            "auditor",
            "--to-key",
            &root_pub,
            "--allow",
            "review:/ui/decisions",
            "--ttl",
            "1h",
        ],
    )
    .stdout
    .trim()
    .to_string();
    let serve = Proc::start([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        d.join("data").to_str().unwrap(),
        "--root-key",
        &format!("0={}", d.join("root.key").display()),
        "--audit-key",
        d.join("audit.key").to_str().unwrap(),
    ]);
    let token = std::fs::read_to_string(d.join("hostile.tok")).unwrap();
    for (action, resource) in [("read", "/api/x"), ("pay", "/api/x")] {
        let body = serde_json::json!({"token": token.trim(), "action": action,
            "resource": resource, "params": {"note": HOSTILE}});
        http(
            &serve.addr,
            "POST",
            "/v1/authorize",
            &body.to_string(),
            None,
        );
    }
    b.goto(&format!("http://{}/healthz", serve.addr));
    b.add_cookie("mandate_admin", &admin);
    b.goto(&format!(
        "http://{}/ui/decisions?principal={}",
        serve.addr,
        url_encode(HOSTILE)
    ));
    assert_inert(&b, "/ui/decisions");
    // The filter matched the hostile principal: both decisions are shown.
    let rows = b.eval("return Array.from(document.querySelectorAll('#decisions tr.row')).map(r => r.getAttribute('data-decision'))");
    assert_eq!(rows, serde_json::json!(["deny", "allow"]));
    for (what, script) in [
        (
            "principal",
            "return document.querySelector('#decisions tr.row b').textContent",
        ),
        (
            "principal filter",
            "return document.querySelector('input[name=principal]').value",
        ),
    ] {
        assert_eq!(b.eval(script), shown.as_str(), "{what}");
    }
    let request = b.eval("return document.querySelector('#decisions tr.row small').textContent");
    let request = request.as_str().unwrap();
    assert!(
        request.starts_with("note=\"<script>alert(1)</script>"),
        "{request}"
    );
    assert!(
        request.contains("\\u{202e}exe\\u{2066}\\u{0}\\u{7}"),
        "{request}"
    );
    // The agent filter echoed in the form (no decision matches it).
    b.goto(&format!(
        "http://{}/ui/decisions?agent={}",
        serve.addr,
        url_encode(HOSTILE)
    ));
    assert_inert(&b, "/ui/decisions?agent=");
    let agent = b.eval("return document.querySelector('input[name=agent]').value");
    assert_eq!(agent, shown.as_str());
    assert_eq!(
        b.eval("return document.querySelectorAll('#decisions tr.row').length"),
        0
    );
}
