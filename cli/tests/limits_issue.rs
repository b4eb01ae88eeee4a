//! Setting and reading usage limits (SPEC §18.1, §18.6): `mandate issue` and
//! `mandate attenuate` with `--limit` / `--budget`, the issuer service's mint
//! with `"limits"` / `"budgets"` (and admin tokens scoped on them), and the
//! limits in `inspect` text, `--json` and `--html`. Bad limit text is bad
//! input (exit 2, 400) with the parser's words; a narrowing block cannot
//! carry limits. Enforcement is tested with the verifier
//! (`verifier/tests/usage*.rs`).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{http, Proc};
use common::{assert_bad_input, mandate, Run};
use mandate_spec::{token_from_text, Grant};
use serde_json::{json, Value};
use std::path::Path;

fn ok(d: &Path, args: &[&str]) -> Run {
    let r = mandate(d, args);
    assert_eq!(r.code, 0, "mandate {args:?}: {}", r.stderr);
    r
}

fn key(d: &Path, name: &str) -> String {
    ok(d, &["keygen", "--out", name]).stdout.trim().to_string()
}

/// A root for `orchestrator` allowing mail and payments with a count and a
/// budget, and a hop to `sub` adding its own count; the three key files and
/// the root public key.
struct Family {
    dir: tempfile::TempDir,
    root_pub: String,
}

impl Family {
    fn new() -> Family {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root_pub = key(d, "root.key");
        let orch = key(d, "orchestrator.key");
        let sub = key(d, "sub.key");
        let root = ok(
            d,
            &[
                "issue",
                "--key",
                "root.key",
                "--principal",
                "user:alice",
                "--to",
                "orchestrator",
                "--to-key",
                &orch,
                "--allow",
                "send_email:/api/mail/**",
                "--allow",
                "pay:/api/payments",
                "--limit",
                "send_email 10/1h",
                "--budget",
                "pay amount 5000/1d",
                "--ttl",
                "1h",
            ],
        );
        std::fs::write(d.join("orchestrator.tok"), &root.stdout).unwrap();
        let hop = ok(
            d,
            &[
                "attenuate",
                "--key",
                "orchestrator.key",
                "--to",
                "sub",
                "--to-key",
                &sub,
                "--limit",
                "send_email 5/1h",
                "--budget",
                "pay amount 1000/1d",
                "orchestrator.tok",
            ],
        );
        std::fs::write(d.join("sub.tok"), &hop.stdout).unwrap();
        Family { dir, root_pub }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn inspect_json(&self, token: &str) -> Value {
        let r = ok(
            self.d(),
            &["inspect", "--json", "--public-key", &self.root_pub, token],
        );
        serde_json::from_str(&r.stdout).unwrap()
    }
}

fn limit_json(actions: &[&str], param: Option<&str>, max: u64, window_secs: u64) -> Value {
    let mut v = json!({ "actions": actions, "max": max, "window_secs": window_secs });
    if let Some(p) = param {
        v["param"] = json!(p);
    }
    v
}

#[test]
fn issue_and_attenuate_write_limits_that_inspect_reads_per_hop() {
    let f = Family::new();
    let v = f.inspect_json("sub.tok");
    let hops = v["chain"]["hops"].as_array().unwrap();
    assert_eq!(
        hops[0]["grant"]["limits"],
        json!([
            limit_json(&["send_email"], None, 10, 3600),
            limit_json(&["pay"], Some("amount"), 5000, 86_400),
        ])
    );
    assert_eq!(
        hops[1]["grant"]["limits"],
        json!([
            limit_json(&["send_email"], None, 5, 3600),
            limit_json(&["pay"], Some("amount"), 1000, 86_400),
        ])
    );
    // The hop's limits are its own: its grant restricts nothing else.
    assert_eq!(hops[1]["grant"]["alternatives"], json!([]), "{v}");

    // The effective capability lists every limit on the path, root first,
    // with the hop that set it and its canonical text.
    let texts = |i: usize| -> Vec<(u64, String)> {
        v["effective"][i]["limits"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        (
                            l["hop"].as_u64().unwrap(),
                            l["limit"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        texts(0),
        [
            (0, "send_email 10/1h".to_string()),
            (0, "pay amount 5000/1d".to_string())
        ]
    );
    assert_eq!(
        texts(1),
        [
            (0, "send_email 10/1h".to_string()),
            (0, "pay amount 5000/1d".to_string()),
            (1, "send_email 5/1h".to_string()),
            (1, "pay amount 1000/1d".to_string()),
        ]
    );
    let budget = &v["effective"][1]["limits"][3];
    assert_eq!(budget["agent"], "sub");
    assert_eq!(budget["param"], "amount");
    assert_eq!(budget["max"], 1000);
    assert_eq!(budget["window_secs"], 86_400);
    assert_eq!(budget["actions"], json!(["pay"]));

    // In words: each hop's own limits on a line saying whom they bind, and
    // the effective capability with every limit on the path.
    let text = ok(f.d(), &["inspect", "--public-key", &f.root_pub, "sub.tok"]).stdout;
    for needle in [
        "limits (shared by this hop and everything delegated from it): send_email 10/1h, \
         pay amount 5000/1d",
        "limits (shared by this hop and everything delegated from it): send_email 5/1h, \
         pay amount 1000/1d",
        "allows: (no restriction of its own)",
        "within every limit on the path: send_email 10/1h (set by hop 0), pay amount 5000/1d \
         (set by hop 0), send_email 5/1h (set by hop 1), pay amount 1000/1d (set by hop 1)",
    ] {
        assert!(text.contains(needle), "{needle}\nnot in:\n{text}");
    }
}

#[test]
fn a_token_without_limits_shows_none() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    key(d, "root.key");
    let a = key(d, "a.key");
    let t = ok(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "user:alice",
            "--to",
            "a",
            "--to-key",
            &a,
            "--allow",
            "read:/x",
            "--ttl",
            "1h",
        ],
    );
    std::fs::write(d.join("a.tok"), &t.stdout).unwrap();
    let v: Value = serde_json::from_str(&ok(d, &["inspect", "--json", "a.tok"]).stdout).unwrap();
    assert!(
        v["chain"]["hops"][0]["grant"].get("limits").is_none(),
        "{v}"
    );
    assert!(v["effective"][0].get("limits").is_none(), "{v}");
    assert!(v.get("usage").is_none(), "{v}");
    let text = ok(d, &["inspect", "a.tok"]).stdout;
    assert!(!text.contains("limit"), "{text}");
}

#[test]
fn malformed_limits_are_bad_input_with_the_parsers_words() {
    let f = Family::new();
    let d = f.d();
    let sub_pub = key(d, "other.key");
    let issue = |flag: &str, text: &str| {
        mandate(
            d,
            &[
                "issue",
                "--key",
                "root.key",
                "--principal",
                "user:alice",
                "--to",
                "a",
                "--to-key",
                &sub_pub,
                "--allow",
                "send_email,pay:/api/**",
                flag,
                text,
                "--ttl",
                "1h",
            ],
        )
    };
    for (flag, text, needle) in [
        (
            "--limit",
            "send_email",
            "expected a limit ACTION[,ACTION…] N/WINDOW",
        ),
        ("--limit", "send_email 10", "expected N/WINDOW"),
        ("--limit", "send_email 0/1h", "N must be a positive integer"),
        ("--limit", "send_email 10/1w", "invalid duration"),
        ("--limit", "send_email 10/367d", "between 1s and 366d"),
        (
            "--limit",
            "pay amount 10/1h",
            "expected a limit ACTION[,ACTION…] N/WINDOW",
        ),
        (
            "--budget",
            "pay 5000/1d",
            "expected a budget ACTION[,ACTION…] PARAM N/WINDOW",
        ),
        ("--budget", "pay am$ount 5000/1d", "parameter"),
    ] {
        let r = issue(flag, text);
        assert_bad_input(&r, needle);
        assert!(
            r.stderr.contains(&format!("{flag} {text:?}")),
            "names the flag and its text: {}",
            r.stderr
        );
    }
    // The same limit twice (60m is 1h).
    let r = mandate(
        d,
        &[
            "attenuate",
            "--key",
            "orchestrator.key",
            "--to",
            "x",
            "--to-key",
            &sub_pub,
            "--limit",
            "send_email 3/1h",
            "--limit",
            "send_email 3/60m",
            "orchestrator.tok",
        ],
    );
    assert_bad_input(&r, "the limit send_email 3/1h is given twice");
    // Nine limits: at most eight per hop.
    let mut args: Vec<String> = [
        "attenuate",
        "--key",
        "orchestrator.key",
        "--to",
        "x",
        "--to-key",
        &sub_pub,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in 1..=9 {
        args.push("--limit".into());
        args.push(format!("send_email {n}/1h"));
    }
    args.push("orchestrator.tok".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_bad_input(&mandate(d, &args), "at most 8 limits per hop");
}

/// A limit naming an action the hop cannot perform counts nothing: almost
/// always a typo that leaves the real action unlimited. Refused, at the
/// root (against its alternatives) and at a hop (against what the chain
/// still allows there).
#[test]
fn a_limit_on_an_action_the_hop_cannot_perform_is_refused() {
    let f = Family::new();
    let d = f.d();
    let other = key(d, "other.key");
    let r = mandate(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "user:alice",
            "--to",
            "a",
            "--to-key",
            &other,
            "--allow",
            "send_email:/api/mail/**",
            "--limit",
            "send_mail 10/1h",
            "--ttl",
            "1h",
        ],
    );
    assert_bad_input(
        &r,
        "--limit \"send_mail 10/1h\": this hop cannot perform action \"send_mail\"",
    );
    // The hop narrows to payments: a limit on send_email would count nothing.
    let r = mandate(
        d,
        &[
            "attenuate",
            "--key",
            "orchestrator.key",
            "--to",
            "x",
            "--to-key",
            &other,
            "--allow",
            "pay:/api/payments",
            "--limit",
            "send_email 3/1h",
            "orchestrator.tok",
        ],
    );
    assert_bad_input(
        &r,
        "cannot perform action \"send_email\" (it allows \"pay\")",
    );
    // Nor can the hop name an action the chain above no longer allows.
    let r = mandate(
        d,
        &[
            "attenuate",
            "--key",
            "orchestrator.key",
            "--to",
            "x",
            "--to-key",
            &other,
            "--budget",
            "refund amount 3/1h",
            "orchestrator.tok",
        ],
    );
    assert_bad_input(
        &r,
        "--budget \"refund amount 3/1h\": this hop cannot perform action",
    );
}

/// A limit belongs to a hop (its counter is named after the hop's block):
/// a first-party narrowing block cannot carry one (SPEC §18.2).
#[test]
fn narrowing_with_a_limit_is_refused() {
    let f = Family::new();
    let token = token_from_text(&std::fs::read_to_string(f.d().join("sub.tok")).unwrap()).unwrap();
    let grant = Grant::default().with_limit("send_email 1/1h").unwrap();
    let err = mandate_attenuate::narrow(&token, &grant, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("limits are set by a delegation hop (or the root), not by a narrowing block: delegate to an agent with the limits instead"),
        "{err}"
    );
}

#[test]
fn inspect_html_shows_each_hops_limits_and_the_path() {
    let f = Family::new();
    ok(
        f.d(),
        &[
            "inspect",
            "--public-key",
            &f.root_pub,
            "--html",
            "chain.html",
            "sub.tok",
        ],
    );
    let page = std::fs::read_to_string(f.d().join("chain.html")).unwrap();
    for needle in [
        "<dt>limits, shared by this hop and everything delegated from it</dt>\
         <dd class=\"limits\">send_email 10/1h<br>pay amount 5000/1d</dd>",
        "<dt>limits, shared by this hop and everything delegated from it</dt>\
         <dd class=\"limits\">send_email 5/1h<br>pay amount 1000/1d</dd>",
        "<dt>this hop allows</dt><dd class=\"\">(no restriction of its own)</dd>",
        "within every limit on the path: send_email 10/1h (set by hop 0), pay amount \
         5000/1d (set by hop 0), send_email 5/1h (set by hop 1), pay amount 1000/1d \
         (set by hop 1)</dd>",
    ] {
        assert!(page.contains(needle), "{needle}\nnot in:\n{page}");
    }
    assert!(!page.contains("usage now"), "no store, no usage");
}

/// `mandate serve`'s mint takes `"limits"` and `"budgets"`; bad text is a
/// 400 with the parser's words; an admin token can require the limits it
/// mints (`limits` is a parameter of the mint decision, SERVICE.md S2.1).
#[test]
fn the_service_mints_limits_and_admin_tokens_can_require_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    key(d, "root.key");
    let admin_pub = key(d, "admin.key");
    let agent_pub = key(d, "agent.key");
    let admin = |extra: &[&str]| -> String {
        let mut args = vec![
            "issue",
            "--key",
            "root.key",
            "--principal",
            "ops:admin",
            "--to",
            "admin-cli",
            "--to-key",
            &admin_pub,
            "--allow",
            "mint:/v1/tokens",
            "--ttl",
            "1h",
        ];
        args.extend_from_slice(extra);
        ok(d, &args).stdout.trim().to_string()
    };
    let any = admin(&[]);
    // The canonical texts, sorted, joined with "; ".
    let scoped = admin(&["--where", "limits=read,send_email 100/1d; send_email 10/1h"]);
    let mut root = std::ffi::OsString::from("0=");
    root.push(d.join("root.key"));
    let serve = Proc::start::<_, std::ffi::OsString>([
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        d.join("data").into(),
        "--root-key".into(),
        root,
    ]);
    let mint = |bearer: &str, extra: Value| -> (u16, Value) {
        let mut body = json!({
            "principal": "user:alice", "agent": "mailer", "agent_key": agent_pub,
            "allow": ["send_email,read:/api/mail/**"], "ttl": "1h",
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        http(
            &serve.addr,
            "POST",
            "/v1/tokens",
            &body.to_string(),
            Some(bearer),
        )
    };

    let limits = json!({
        "limits": ["send_email 10/1h", "read,send_email 100/1d"],
        "budgets": ["send_email recipients 50/1d"],
    });
    let (status, minted) = mint(&any, limits.clone());
    assert_eq!(status, 201, "{minted}");
    std::fs::write(d.join("minted.tok"), minted["token"].as_str().unwrap()).unwrap();
    let v: Value =
        serde_json::from_str(&ok(d, &["inspect", "--json", "minted.tok"]).stdout).unwrap();
    assert_eq!(
        v["chain"]["hops"][0]["grant"]["limits"],
        json!([
            limit_json(&["send_email"], None, 10, 3600),
            limit_json(&["read", "send_email"], None, 100, 86_400),
            limit_json(&["send_email"], Some("recipients"), 50, 86_400),
        ])
    );

    // Malformed: 400 naming the field, with the parser's words; nothing minted.
    for (extra, needle) in [
        (
            json!({"limits": ["send_email 10/1w"]}),
            "limits: invalid grant: limit \"10/1w\": invalid duration",
        ),
        (
            json!({"limits": ["send_email"]}),
            "limits: invalid grant: expected a limit ACTION[,ACTION…] N/WINDOW",
        ),
        (
            json!({"budgets": ["send_email 10/1h"]}),
            "budgets: invalid grant: expected a budget ACTION[,ACTION…] PARAM N/WINDOW",
        ),
        (
            json!({"limits": ["send_email 0/1h"]}),
            "N must be a positive integer",
        ),
        (
            json!({"limits": ["send_mail 10/1h"]}),
            "limits: send_mail 10/1h: no alternative allows action \"send_mail\"",
        ),
        (json!({"limits": "send_email 10/1h"}), "limits"),
    ] {
        let (status, body) = mint(&any, extra.clone());
        assert_eq!(status, 400, "{extra}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{extra}: {needle:?} not in {body}");
    }

    // An admin token narrowed on `limits` mints exactly those limits.
    let (status, body) = mint(
        &scoped,
        json!({"limits": ["read,send_email 100/1d", "send_email 10/1h"]}),
    );
    assert_eq!(status, 201, "the same limits in another order: {body}");
    for (extra, what) in [
        (json!({}), "no limits"),
        (json!({"limits": ["send_email 10/1h"]}), "one of the two"),
        (
            json!({"limits": ["send_email 11/1h", "read,send_email 100/1d"]}),
            "a wider one",
        ),
        (limits, "one more"),
    ] {
        let (status, body) = mint(&scoped, extra);
        assert_eq!(status, 403, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("admin token does not allow mint on /v1/tokens")
                && error.contains("limits"),
            "{what}: {body}"
        );
    }
}

/// With a usage store, `inspect --usage-db` shows per hop and limit what its
/// counter holds in the current window: the hop's own limit and its
/// parent's count the same requests. (366-day windows: the test never
/// straddles a window's end.)
#[test]
fn inspect_shows_the_usage_of_each_limit_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_pub = key(d, "root.key");
    let orch = key(d, "orchestrator.key");
    let sub = key(d, "sub.key");
    let root = ok(
        d,
        &[
            "issue",
            "--key",
            "root.key",
            "--principal",
            "user:alice",
            "--to",
            "orchestrator",
            "--to-key",
            &orch,
            "--allow",
            "send_email:/api/mail/**",
            "--allow",
            "pay:/api/payments",
            "--limit",
            "send_email 10/366d",
            "--budget",
            "pay amount 5000/366d",
            "--ttl",
            "1h",
        ],
    );
    std::fs::write(d.join("orchestrator.tok"), &root.stdout).unwrap();
    let hop = ok(
        d,
        &[
            "attenuate",
            "--key",
            "orchestrator.key",
            "--to",
            "sub",
            "--to-key",
            &sub,
            "--limit",
            "send_email 5/366d",
            "orchestrator.tok",
        ],
    );
    std::fs::write(d.join("sub.tok"), &hop.stdout).unwrap();
    let verify = |token: &str, action: &str, params: &[&str]| {
        let mut args = vec![
            "verify",
            "--public-key",
            &root_pub,
            "--usage-db",
            "usage",
            "--action",
            action,
            "--resource",
        ];
        args.push(if action == "pay" {
            "/api/payments"
        } else {
            "/api/mail/out"
        });
        for p in params {
            args.extend_from_slice(&["--param", p]);
        }
        args.push(token);
        mandate(d, &args)
    };
    for _ in 0..3 {
        let r = verify("sub.tok", "send_email", &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = verify("orchestrator.tok", "pay", &["amount=1200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let v: Value = serde_json::from_str(
        &ok(
            d,
            &[
                "inspect",
                "--json",
                "--public-key",
                &root_pub,
                "--usage-db",
                "usage",
                "sub.tok",
            ],
        )
        .stdout,
    )
    .unwrap();
    let usage: Vec<(u64, &str, u64, u64, u64)> = v["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["hop"].as_u64().unwrap(),
                u["limit"].as_str().unwrap(),
                u["used"].as_u64().unwrap(),
                u["left"].as_u64().unwrap(),
                u["max"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        usage,
        [
            (0, "send_email 10/366d", 3, 7, 10),
            (0, "pay amount 5000/366d", 1200, 3800, 5000),
            (1, "send_email 5/366d", 3, 2, 5),
        ],
        "{v}"
    );
    for u in v["usage"].as_array().unwrap() {
        assert!(u["window_end"].as_str().unwrap().ends_with('Z'), "{u}");
        assert_eq!(u["counter"].as_str().unwrap().len(), 64, "{u}");
    }

    let text = ok(d, &["inspect", "--usage-db", "usage", "sub.tok"]).stdout;
    for needle in [
        "  usage now: send_email 10/366d: 3 used, 7 left in the window ending ",
        "  usage now: pay amount 5000/366d: 1200 used, 3800 left in the window ending ",
        "  usage now: send_email 5/366d: 3 used, 2 left in the window ending ",
    ] {
        assert!(text.contains(needle), "{needle}\nnot in:\n{text}");
    }
    ok(
        d,
        &[
            "inspect",
            "--usage-db",
            "usage",
            "--html",
            "chain.html",
            "sub.tok",
        ],
    );
    let page = std::fs::read_to_string(d.join("chain.html")).unwrap();
    assert!(
        page.contains(
            "<dt>usage now</dt><dd class=\"usage\">send_email 5/366d: 3 used, 2 left in the \
             window ending "
        ),
        "{page}"
    );

    // No store there: refused, none created.
    let r = mandate(d, &["inspect", "--usage-db", "nowhere", "sub.tok"]);
    assert_bad_input(&r, "--usage-db: nowhere is not a usage store");
    assert!(!d.join("nowhere").exists());
}
