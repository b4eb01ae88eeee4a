//! The payments scenario of the approval tests: a real `mandate serve`
//! holding the finance approver's key, a payments agent's token (`pay` on
//! `/api/payments` up to 1000, finance's approval above 100) and the admin
//! tokens of the finance desk (approves as finance) and of a reviewer
//! (lists the queue).
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use super::mandate;
use super::procs::{free_port, http, wait_until, Proc};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

pub struct Payments {
    pub dir: tempfile::TempDir,
    pub serve: Proc,
    /// The issuer's root public key.
    pub root: String,
    /// The finance approver's public key.
    pub finance_pub: String,
    /// The payments agent's public key.
    pub agent_pub: String,
    /// The payments agent's token (org:acme, payments-agent), also in
    /// `pay.tok`.
    pub pay: String,
    /// `approve:/v1/approvals where approver=finance`.
    pub finance: String,
    /// `review:/v1/approvals`.
    pub reviewer: String,
}

pub fn key(d: &Path, name: &str) -> String {
    let r = mandate(d, &["keygen", "--out", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

pub fn issue(d: &Path, args: &[&str]) -> String {
    let mut all = vec!["issue", "--key", "root.key", "--ttl", "1h"];
    all.extend_from_slice(args);
    let r = mandate(d, &all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

/// How the scenario's `mandate serve` is configured beyond the default.
#[derive(Default)]
pub struct Options {
    /// The finance approver's webhook: its URL and HMAC secret; the service
    /// then listens on a port chosen beforehand, its `public_url`.
    pub webhook: Option<(String, String)>,
    /// `max_pending_per_family`, when not the default.
    pub max_pending_per_family: Option<usize>,
    /// The gateway (common/hold.rs) reaches the service over https: through
    /// a TLS endpoint in front of it, with a certificate of a test CA the
    /// gateway trusts by `SSL_CERT_FILE`.
    pub service_over_tls: bool,
    /// Signs an audit log of the service's decisions (`audit_key`, the
    /// desk's actions included) with `service-audit.key`.
    pub audit: bool,
}

impl Payments {
    pub fn start() -> Payments {
        Payments::start_with(Options::default())
    }

    /// The scenario, its service configured in TOML by `options`.
    pub fn start_with(options: Options) -> Payments {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root = key(d, "root.key");
        let finance_key = key(d, "finance.key");
        let agent = key(d, "agent.key");
        let admin = key(d, "admin.key");
        let rule = format!("pay when amount>100 by finance={finance_key}");
        let pay = issue(
            d,
            &[
                "--principal",
                "org:acme",
                "--to",
                "payments-agent",
                "--to-key",
                &agent,
                "--allow",
                "pay:/api/payments",
                "--where",
                "amount<=1000",
                "--approval",
                &rule,
                "--purpose",
                "pay suppliers",
            ],
        );
        std::fs::write(d.join("pay.tok"), &pay).unwrap();
        let admin_token = |principal: &str, to: &str, grant: &[&str]| {
            let mut args = vec!["--principal", principal, "--to", to, "--to-key", &admin];
            args.extend_from_slice(grant);
            issue(d, &args)
        };
        let finance = admin_token(
            "ops:fin",
            "finance-desk",
            &[
                "--allow",
                "approve:/v1/approvals",
                "--where",
                "approver=finance",
            ],
        );
        let reviewer = admin_token(
            "ops:auditor",
            "auditor",
            &["--allow", "review:/v1/approvals"],
        );
        let mut config = String::from(
            "data_dir = \"data\"\n\
             [[root_keys]]\nid = 0\nfile = \"root.key\"\n\
             [[approvers]]\nname = \"finance\"\nfile = \"finance.key\"\n",
        );
        let mut top = String::new();
        match &options.webhook {
            Some((url, secret)) => {
                std::fs::write(d.join("finance.webhook"), secret).unwrap();
                config.push_str(&format!(
                    "webhook_url = \"{url}\"\nwebhook_secret_file = \"finance.webhook\"\n"
                ));
                let port = free_port();
                top.push_str(&format!(
                    "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}/\"\n"
                ));
            }
            None => top.push_str("listen = \"127.0.0.1:0\"\n"),
        }
        if let Some(max) = options.max_pending_per_family {
            top.push_str(&format!("max_pending_per_family = {max}\n"));
        }
        if options.audit {
            key(d, "service-audit.key");
            top.push_str("audit_key = \"service-audit.key\"\n");
        }
        std::fs::write(d.join("mandate.toml"), format!("{top}{config}")).unwrap();
        let serve = Proc::start([
            "serve".to_string(),
            "--config".into(),
            d.join("mandate.toml").display().to_string(),
        ]);
        Payments {
            dir,
            serve,
            root,
            finance_pub: finance_key,
            agent_pub: agent,
            pay,
            finance,
            reviewer,
        }
    }

    pub fn d(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.serve.addr)
    }

    /// The ids of the pending requests.
    pub fn pending(&self) -> HashSet<String> {
        let (status, list) = http(
            &self.serve.addr,
            "GET",
            "/v1/approvals?status=pending",
            "",
            Some(&self.reviewer),
        );
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until a request not in `known` is pending: its id.
    pub fn next_filed(&self, known: &HashSet<String>) -> String {
        let mut found = None;
        wait_until("a new approval request", Duration::from_secs(30), || {
            found = self.pending().difference(known).next().cloned();
            found.is_some()
        });
        found.unwrap()
    }

    pub fn record(&self, id: &str) -> Value {
        let (status, r) = http(
            &self.serve.addr,
            "GET",
            &format!("/v1/approvals/{id}"),
            "",
            None,
        );
        assert_eq!(status, 200, "{r}");
        r
    }

    /// The finance desk approves `id`: the record.
    pub fn approve(&self, id: &str) -> Value {
        self.approve_for(id, "10m")
    }

    /// The finance desk approves `id`, valid for `valid`: the record.
    pub fn approve_for(&self, id: &str, valid: &str) -> Value {
        let (status, r) = http(
            &self.serve.addr,
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            &json!({ "valid": valid }).to_string(),
            Some(&self.finance),
        );
        assert_eq!(status, 200, "{r}");
        r
    }

    /// The finance desk denies `id` with `reason`: the record.
    pub fn deny(&self, id: &str, reason: &str) -> Value {
        let (status, r) = http(
            &self.serve.addr,
            "POST",
            &format!("/v1/approvals/{id}/deny"),
            &json!({ "reason": reason }).to_string(),
            Some(&self.finance),
        );
        assert_eq!(status, 200, "{r}");
        r
    }
}
