//! The MCP gateway as the official MCP SDKs see it (issue 14): the Python
//! SDK (`mcp` 2.3.0) and the TypeScript SDK (`@modelcontextprotocol/sdk`
//! 1.32.2) talk to the reference server (`server-everything`, streamable
//! HTTP) through `mandate gateway`, each running every scenario of
//! tests/mcp-sdk (one JSON line per outcome, what the client application
//! received) and this test asserting on them: initialize, a filtered
//! tools/list with the token's constraints in the descriptions, an allowed
//! call, a denied call whose reason the application receives, an argument out
//! of its bound, progress streamed as sent, sampling and roots round trips
//! (server → client → server), cancellation, DELETE ending the session, a
//! hijacked session id refused, no token and a garbage token (401 with the
//! RFC 6750 challenge) and the RFC 9728 metadata document.
//!
//! `scripts/test.sh` sets up the SDKs (`scripts/setup-agents.sh`: a
//! virtualenv and `npm ci` in tests/mcp-sdk) and requires these tests to
//! run; under a bare `cargo test` without that setup they say so and pass.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::procs::{free_port, Proc};
use common::{mandate, Run};
use serde_json::Value;
use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tools the agent's token allows (everything else the server has, e.g.
/// `get-env`, it does not).
const GRANTED: [&str; 5] = [
    "get-sum",
    "echo",
    "trigger-long-running-operation",
    "trigger-sampling-request",
    "get-roots-list",
];
const SUM: &str = "The sum of 2 and 3 is 5.";

fn run(d: &Path, args: &[&str]) -> Run {
    let r = mandate(d, args);
    assert_eq!(r.code, 0, "mandate {args:?}: {}", r.stderr);
    r
}

/// The interpreter and directory of the SDK clients, or `None` (with a
/// message) when they are not set up and not required.
fn sdk(lang: &str) -> Option<(Vec<String>, PathBuf)> {
    let required = std::env::var("MANDATE_AGENTS_REQUIRED").as_deref() == Ok("1");
    let dir = std::env::var("MANDATE_MCP_SDK_DIR").ok().map(PathBuf::from);
    let cmd = match (lang, &dir) {
        ("python", Some(dir)) => std::env::var("MANDATE_MCP_PYTHON")
            .ok()
            .map(|py| vec![py, dir.join("client.py").display().to_string()]),
        (_, Some(dir)) => Some(vec![
            "node".into(),
            dir.join("client.mjs").display().to_string(),
        ]),
        _ => None,
    };
    match (cmd, dir) {
        (Some(cmd), Some(dir)) => Some((cmd, dir)),
        _ => {
            assert!(
                !required,
                "the MCP SDKs ({lang}) are not set up: run `eval \"$(./scripts/setup-agents.sh)\"`"
            );
            eprintln!("skipped: the MCP SDKs ({lang}) are not set up (scripts/setup-agents.sh)");
            None
        }
    }
}

/// The reference server, `server-everything` over streamable HTTP, killed
/// when dropped.
struct Everything {
    child: Child,
    port: u16,
}

impl Everything {
    fn start(sdk_dir: &Path) -> Everything {
        let port = free_port();
        let child = Command::new("node")
            .arg(sdk_dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
            .arg("streamableHttp")
            // Nothing of ours in its environment (it has a tool that prints it).
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed (scripts/setup-agents.sh)");
        let server = Everything { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server-everything did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keys, tokens, the reference server and the gateway in front of it (the
/// README's MCP route: no public methods).
struct Setup {
    dir: tempfile::TempDir,
    public_url: String,
    _everything: Everything,
    _gateway: Proc,
}

impl Setup {
    fn new(sdk_dir: &Path) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root = run(d, &["keygen", "--out", "root.key"]).stdout;
        let agent = run(d, &["keygen", "--out", "agent.key"]).stdout;
        let granted = format!("{}:/mcp", GRANTED.join(","));
        let issue = |out: &str, principal: &str, allow: &str, extra: &[&str]| {
            let mut args = vec![
                "issue",
                "--key",
                "root.key",
                "--principal",
                principal,
                "--to",
                "agent",
                "--to-key",
                agent.trim(),
                "--allow",
                allow,
                "--ttl",
                "1h",
            ];
            args.extend_from_slice(extra);
            std::fs::write(d.join(out), run(d, &args).stdout).unwrap();
        };
        issue("alice.tok", "user:alice", &granted, &[]);
        issue(
            "bounded.tok",
            "user:alice",
            "get-sum:/mcp",
            &["--where", "a<=100"],
        );
        issue("mallory.tok", "user:mallory", &granted, &[]);

        let everything = Everything::start(sdk_dir);
        // The gateway's port is fixed up front: its public_url names it.
        let port = free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        std::fs::write(
            d.join("gateway.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\n\
                 public_key = \"{}\"\n\
                 public_url = \"{public_url}\"\n\
                 issuer_url = \"https://issuer.example.com\"\n\
                 [[routes]]\n\
                 prefix = \"/mcp\"\n\
                 upstream = \"http://127.0.0.1:{}\"\n\
                 mode = \"mcp\"\n\
                 timeout = \"60s\"\n\
                 resource_name = \"everything\"\n",
                root.trim(),
                everything.port
            ),
        )
        .unwrap();
        let gateway = Proc::start([
            "gateway".as_ref(),
            "--config".as_ref(),
            d.join("gateway.toml").as_os_str(),
        ]);
        Setup {
            dir,
            public_url,
            _everything: everything,
            _gateway: gateway,
        }
    }

    /// Runs every scenario of one SDK client: its outcomes by scenario name.
    fn outcomes(&self, cmd: &[String]) -> HashMap<String, Value> {
        let d = self.dir.path();
        let out = Command::new(&cmd[0])
            .args(&cmd[1..])
            .arg("--url")
            .arg(format!("{}/mcp", self.public_url))
            .arg("--token")
            .arg(d.join("alice.tok"))
            .arg("--bounded")
            .arg(d.join("bounded.tok"))
            .arg("--other")
            .arg(d.join("mallory.tok"))
            .current_dir(d)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                (v["scenario"].as_str().unwrap().to_string(), v)
            })
            .collect()
    }
}

/// One scenario's outcome; it must have run to its end.
fn scenario<'a>(all: &'a HashMap<String, Value>, name: &str) -> &'a Value {
    let v = all
        .get(name)
        .unwrap_or_else(|| panic!("no outcome for {name}"));
    assert!(
        v.get("exception").is_none() && v.get("timeout").is_none(),
        "{name} did not finish: {v}"
    );
    v
}

/// A denial as the application received it: the JSON-RPC error code, the
/// denial kind and the message it can show (for the TypeScript SDK, the
/// transport error whose message carries the response body; its HTTP status
/// must be `status`).
fn denial(v: &Value, status: u16) -> (i64, String, String) {
    let e = &v["error"];
    assert!(e.is_object(), "expected a denial, got {v}");
    if e["type"] == "StreamableHTTPError" {
        assert_eq!(e["http_status"], status, "{e}");
    } else {
        assert_eq!(e["type"], "MCPError", "{e}");
    }
    (
        e["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no code in {e}")),
        e["kind"].as_str().unwrap_or_default().to_string(),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn statuses(v: &Value) -> Vec<String> {
    v["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

fn assert_sdk(lang: &str) {
    let Some((cmd, sdk_dir)) = sdk(lang) else {
        return;
    };
    let setup = Setup::new(&sdk_dir);
    let all = setup.outcomes(&cmd);
    let metadata_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        setup.public_url
    );

    // initialize: the newest revision both sides speak, through the gateway,
    // with no exchange denied (discovery, the GET stream and DELETE included),
    // and a session id that is the gateway's (upstream id + binding).
    let v = scenario(&all, "initialize");
    assert_eq!(v["protocol_version"], "2025-11-25", "{v}");
    assert_eq!(v["server_name"], "mcp-servers/everything", "{v}");
    let sid = v["session_id"].as_str().unwrap();
    let (upstream_id, binding) = sid.rsplit_once('.').unwrap_or(("", ""));
    assert!(
        !upstream_id.is_empty()
            && binding.len() == 32
            && binding.bytes().all(|b| b.is_ascii_hexdigit()),
        "session id {sid:?}"
    );
    for h in statuses(v) {
        assert!(
            !h.ends_with(" 401") && !h.ends_with(" 403") && !h.ends_with(" 415"),
            "housekeeping denied: {h} in {v}"
        );
    }
    assert!(statuses(v).iter().any(|h| h == "DELETE - 200"), "{v}");

    // tools/list: only the granted tools; the bounded token's constraint is
    // in get-sum's description.
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools in {v}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let v = scenario(&all, "tools_list");
    let mut granted: Vec<String> = GRANTED.iter().map(|s| s.to_string()).collect();
    granted.sort();
    assert_eq!(names(v), granted, "{v}");
    let v = scenario(&all, "tools_list_bounded");
    assert_eq!(names(v), ["get-sum"], "{v}");
    let description = v["tools"][0]["description"].as_str().unwrap();
    assert!(
        description.starts_with("Returns the sum of two numbers") && description.contains("a<=100"),
        "{description:?}"
    );

    // An allowed call.
    let v = scenario(&all, "allowed_call");
    assert_eq!(v["text"], SUM, "{v}");

    // A denied call: the application gets the reason, the code and the kind;
    // the HTTP answer is a 403 with the RFC 6750 challenge; the session lives on.
    let v = scenario(&all, "denied_call");
    let (code, kind, message) = denial(v, 403);
    assert_eq!((code, kind.as_str()), (-32080, "not_allowed"), "{v}");
    assert!(message.contains("get-env"), "no reason in {message:?}");
    assert_eq!(v["raw"]["status"], 403, "{v}");
    let challenge = v["raw"]["www_authenticate"].as_str().unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"mandate\"")
            && challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge:?}"
    );
    assert_eq!(v["raw"]["body"]["error"]["code"], -32080, "{v}");
    assert_eq!(v["after"], SUM, "{v}");

    // An argument out of its bound is denied with the bound in the reason;
    // 2.0 is the integer 2 (only Python can send it as 2.0).
    let v = scenario(&all, "bounds");
    let (code, kind, message) = denial(&v["over"], 403);
    assert_eq!((code, kind.as_str()), (-32080, "not_allowed"), "{v}");
    assert!(message.contains("violates a<=100"), "{message:?}");
    assert_eq!(v["float"]["text"], SUM, "{v}");
    if lang == "python" {
        assert!(v["float_sent"].as_str().unwrap().contains("2.0"), "{v}");
    }

    // Progress: four events in order, and streamed as sent: the ping the
    // client sent on receiving the first was answered before the result
    // (behind a proxy that buffers the response, both SDKs see the ping
    // answered after it: an order, not a time).
    let v = scenario(&all, "progress");
    let events = v["events"].as_array().unwrap();
    let steps: Vec<f64> = events
        .iter()
        .map(|e| e["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(steps, [1.0, 2.0, 3.0, 4.0], "{v}");
    assert!(
        events.iter().all(|e| e["total"].as_f64() == Some(4.0)),
        "{v}"
    );
    let times: Vec<f64> = events.iter().map(|e| e["t_ms"].as_f64().unwrap()).collect();
    let result_ms = v["result_ms"].as_f64().unwrap();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{v}");
    assert!(times[0] < result_ms, "{v}");
    let order: Vec<&str> = v["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(order.last(), Some(&"result"), "{v}");
    let ping = order.iter().position(|o| *o == "ping");
    assert!(
        ping.is_some_and(|p| p < order.len() - 1),
        "the progress events were held back until the result: {v}"
    );
    assert!(v["text"]
        .as_str()
        .unwrap()
        .starts_with("Long running operation completed"));

    // Sampling: the server's request reaches the client's callback, whose
    // answer (a JSON-RPC response POSTed back, 202) reaches the server.
    let v = scenario(&all, "sampling");
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains(v["callback_text"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(
        v["callback_prompts"],
        serde_json::json!(["Resource trigger-sampling-request context: say hi"]),
        "{v}"
    );
    assert!(statuses(v).iter().any(|h| h == "POST response 202"), "{v}");

    // Roots: the server asks on the GET stream, the client answers.
    let v = scenario(&all, "roots");
    assert!(v["roots_requests"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains(v["declared"]["uri"].as_str().unwrap()),
        "{v}"
    );

    // Cancellation: notifications/cancelled is forwarded (202); the session
    // then answers the next call.
    let v = scenario(&all, "cancel");
    assert_eq!(v["cancelled"], true, "{v}");
    assert_eq!(v["progress_before_cancel"].as_f64(), Some(1.0), "{v}");
    assert!(
        statuses(v)
            .iter()
            .any(|h| h == "POST notifications/cancelled 202"),
        "{v}"
    );
    assert_eq!(v["after"], SUM, "{v}");

    // DELETE ends the upstream session: its id then fails.
    let v = scenario(&all, "delete");
    assert_eq!(v["delete_status"], 200, "{v}");
    let after = v["after"]["status"].as_u64().unwrap();
    assert!(
        (400..500).contains(&after) && v["after"]["body"]["error"].is_object(),
        "the deleted session still answers: {v}"
    );

    // Another principal's token on alice's session id: 404 (-32090) for a
    // call, the GET stream and DELETE; no token at all: 401. Alice's session
    // is untouched.
    let v = scenario(&all, "hijack");
    for what in ["other_post", "other_get", "other_delete"] {
        assert_eq!(v[what]["status"], 404, "{what}: {v}");
    }
    assert_eq!(v["other_post"]["body"]["error"]["code"], -32090, "{v}");
    assert_eq!(v["no_token_post"]["status"], 401, "{v}");
    if lang == "typescript" {
        // The SDK itself resuming the session with the other token.
        let (code, _, _) = denial(&v["other_sdk_call"], 404);
        assert_eq!(code, -32090, "{v}");
    }
    assert_eq!(v["owner_after"], SUM, "{v}");

    // No token / a garbage token: 401, the RFC 6750 challenge pointing at the
    // metadata (which the SDK's own parser reads), a JSON-RPC error body, and
    // the SDK application gets the code.
    for (name, code, kind) in [
        ("no_token", -32071, "missing_token"),
        ("garbage_token", -32072, "malformed_token"),
    ] {
        let v = scenario(&all, name);
        assert_eq!(v["status"], 401, "{v}");
        let challenge = v["www_authenticate"].as_str().unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"mandate\"")
                && challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
            "{challenge:?}"
        );
        if name == "no_token" {
            assert!(!challenge.contains("error="), "{challenge:?}");
            assert!(v["sdk_challenge"]["error"].is_null(), "{v}");
        } else {
            assert!(
                challenge.contains("error=\"invalid_token\"")
                    && challenge.contains("error_description=\""),
                "{challenge:?}"
            );
            assert_eq!(v["sdk_challenge"]["error"], "invalid_token", "{v}");
        }
        assert_eq!(
            v["sdk_challenge"]["resource_metadata"],
            metadata_url.as_str(),
            "{v}"
        );
        assert_eq!(v["body"]["error"]["code"], code, "{v}");
        assert_eq!(v["body"]["error"]["data"]["denial"]["kind"], kind, "{v}");
        let (got, _, _) = denial(&v["sdk"], 401);
        assert_eq!(got, code, "{v}");
    }

    // The RFC 9728 document, found the SDK's way and accepted by its model.
    let v = scenario(&all, "metadata");
    assert_eq!(v["status"], 200, "{v}");
    assert!(
        v["content_type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("application/json"),
        "{v}"
    );
    assert_eq!(
        v["body"]["resource"],
        format!("{}/mcp", setup.public_url),
        "{v}"
    );
    assert_eq!(
        v["body"]["bearer_methods_supported"],
        serde_json::json!(["header"]),
        "{v}"
    );
    assert_eq!(v["body"]["mandate_token_type"], "biscuit", "{v}");
    // The MCP authorization spec: "MUST include the authorization_servers
    // field containing at least one authorization server" (the Python SDK's
    // model refuses the document without it).
    assert!(
        v["body"]["authorization_servers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{v}"
    );
    assert_eq!(v["sdk_valid"], true, "{v}");
}

#[test]
fn python_sdk_through_the_gateway() {
    assert_sdk("python");
}

#[test]
fn typescript_sdk_through_the_gateway() {
    assert_sdk("typescript");
}
