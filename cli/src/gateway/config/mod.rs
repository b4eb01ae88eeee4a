//! The gateway's configuration file (TOML). Every error names the line that
//! is wrong: TOML syntax and unknown settings by the parser's span, invalid
//! values by the span of the setting that holds them.
//!
//! ```toml
//! listen = "127.0.0.1:8480"
//! public_key = "ed25519/…"             # the issuer's root public key
//! revocation_db = "revocations"         # optional: RocksDB revocation list
//! nats = "nats://127.0.0.1:4222"        # optional: follow the revocation feed into it
//! revocation_keys = ["0=ed25519/…"]     # with nats: the issuer's revocation public keys
//!                                       # (only entries signed by one of them apply)
//! replay_db = "replay"                  # optional: accept approvals and proofs, each once
//! spend_bucket = "MANDATE_SPENT"        # optional, with nats and replay_db: once across the fleet
//! spend_nonces = false                  # optional: proof nonces in the bucket too
//! usage_db = "usage"                    # optional: count usage limits (tokens with limits
//!                                       # are denied without it)
//! usage_bucket = "MANDATE_USAGE"        # optional, with nats, instead of usage_db: counters
//!                                       # shared by the fleet (exact: a round trip per request)
//! usage_key_file = "usage.key"          # with usage_bucket: the fleet key authenticating the
//!                                       # counters (hex, 32+ bytes, the same on every verifier)
//! usage_lease = 100                     # optional: lease up to N units at a time, spent locally
//! usage_fleet_size = 4                  # optional, with usage_lease: a lease takes at most
//!                                       # 1/(2K) of what a counter has left
//! audit_dir = "audit"                   # optional, with audit_key_file
//! audit_key_file = "audit.key"
//! audit_async = false                   # optional: answer before records are durable
//!                                       # (a crash loses the queued ones; logged at start)
//! audit_publish = false                 # optional, with nats and audit_dir: publish signed
//!                                       # checkpoints to the audit stream (SPEC §12.4)
//! audit_publish_records = false         # optional: the records too (`mandate audit collect`)
//! audit_stream = "MANDATE_AUDIT"        # optional: the stream
//! workers = 2                           # optional: worker threads (default: one per core)
//! public_url = "https://gw.example.com" # optional: the origin clients reach the gateway at;
//!                                       # proofs of possession are refused without it
//!
//! [[routes]]
//! prefix = "/crm"                       # requests to /crm and /crm/… (never /crm-admin)
//! upstream = "http://127.0.0.1:9000"    # forwarded to upstream + path (and query)
//! public_url = "https://crm.example.com" # optional: this route's own origin (overrides the global one)
//! timeout = "10s"                       # until the upstream's response head
//! credential = { header = "authorization", prefix = "Bearer ", file = "crm.secret" }
//! rules = [ { method = "GET", pattern = "/crm/customers", action = "list", resource = "/crm/customers/*" } ]
//!
//! [[routes]]
//! prefix = "/mcp"
//! upstream = "http://127.0.0.1:9100"
//! mode = "mcp"                          # JSON-RPC: tools/call → action = tool, params = arguments;
//!                                       # housekeeping (initialize, ping, GET, …) needs a token, no grant
//! resource_name = "Mail tools"          # optional: in /.well-known/oauth-protected-resource/mcp
//! credential = { header = "x-api-key", env = "MCP_KEY" }
//! hold_for_approval = "2m"              # optional: a request that needs approval is filed
//!                                       # at approval_service and held open (1s to 10m)
//! ```
//!
//! `approval_service = "http://127.0.0.1:8080"` (top level; needs
//! `replay_db`): the issuer service where held requests are filed, with the
//! agent's own token, as the agent would file them.

mod route;

pub(crate) use route::{Mode, Route, RuleFile};

use anyhow::{anyhow, bail, Context, Result};
use mandate_spec::{parse_duration, parse_public_key, Audience};
use mandate_verifier::usage::bucket::LeaseConfig;
use route::{route, RouteFile};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The paths the gateway answers itself, whatever the routes: never
/// forwarded, never decided.
pub(crate) const OWN_PATHS: [&str; 2] = ["/healthz", "/metrics"];

/// Where the protected-resource metadata of MCP routes is served (RFC 9728
/// §3.1); no route may take it.
pub(crate) const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Spanned<String>>,
    public_key: Spanned<String>,
    revocation_db: Option<Spanned<PathBuf>>,
    replay_db: Option<Spanned<PathBuf>>,
    spend_bucket: Option<Spanned<String>>,
    spend_nonces: Option<bool>,
    usage_db: Option<Spanned<PathBuf>>,
    usage_bucket: Option<Spanned<String>>,
    usage_key_file: Option<Spanned<PathBuf>>,
    usage_lease: Option<Spanned<u64>>,
    usage_fleet_size: Option<Spanned<u64>>,
    nats: Option<Spanned<String>>,
    #[serde(default)]
    revocation_keys: Vec<Spanned<String>>,
    staleness: Option<Spanned<String>>,
    audit_dir: Option<Spanned<PathBuf>>,
    audit_key_file: Option<Spanned<PathBuf>>,
    audit_async: Option<Spanned<bool>>,
    audit_publish: Option<Spanned<bool>>,
    audit_publish_records: Option<bool>,
    audit_stream: Option<String>,
    workers: Option<Spanned<usize>>,
    public_url: Option<Spanned<String>>,
    session_key_file: Option<Spanned<PathBuf>>,
    issuer_url: Option<Spanned<String>>,
    approval_service: Option<Spanned<String>>,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

/// The configuration, checked.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) public_key: biscuit_auth::PublicKey,
    pub(crate) revocation_db: Option<PathBuf>,
    /// Where used approvals and proof nonces are recorded (RocksDB).
    pub(crate) replay_db: Option<PathBuf>,
    /// The fleet's JetStream key-value bucket approvals are spent in (with
    /// `nats`; `replay_db` is its local cache), and whether nonces too.
    pub(crate) spend_bucket: Option<(String, bool)>,
    /// Where the counters of usage limits are kept (RocksDB, SPEC §18.5).
    pub(crate) usage_db: Option<PathBuf>,
    /// The fleet's JetStream key-value bucket of usage counters (with
    /// `nats`), and the leases taken from it (none: exact).
    pub(crate) usage_bucket: Option<(String, Option<LeaseConfig>)>,
    /// The fleet key authenticating the bucket's counters (with
    /// `usage_bucket`, required).
    pub(crate) usage_key_file: Option<PathBuf>,
    pub(crate) nats: Option<String>,
    /// The issuer's revocation public keys the feed's entries must be signed by.
    pub(crate) revocation_keys: mandate_verifier::feed::RevocationKeys,
    pub(crate) staleness: Duration,
    pub(crate) audit: Option<(PathBuf, PathBuf)>,
    /// Asynchronous audit: decisions answered before their records are
    /// durable (default false: every answer waits for its record).
    pub(crate) audit_async: bool,
    /// Publish the audit checkpoints to this stream (and the records, when
    /// true), with `nats` and `audit`.
    pub(crate) audit_publish: Option<(String, bool)>,
    /// Worker threads (default: one per core).
    pub(crate) workers: Option<usize>,
    pub(crate) routes: Vec<Route>,
    /// The key MCP session ids are bound under (SHA-256 of the key file),
    /// shared by gateways that share sessions; `None`: a random key.
    pub(crate) session_key: Option<[u8; 32]>,
    /// Where an MCP client's operator gets a Mandate token (the issuer
    /// service), named in the routes' protected-resource metadata.
    pub(crate) issuer_url: Option<String>,
    /// The issuer service routes with `hold_for_approval` file requests at
    /// (`http://HOST:PORT`), with the agent's own token.
    pub(crate) approval_service: Option<String>,
}

/// The line (from 1) a byte offset is on.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].lines().count().max(1)
        + usize::from(text[..offset.min(text.len())].ends_with('\n'))
}

impl Config {
    /// Reads and checks `path`; relative paths are relative to its directory.
    pub(crate) fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    pub(crate) fn parse(text: &str, base: &Path) -> Result<Config> {
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            anyhow!("line {at}: {}", e.message().trim())
        })?;
        let lines = Lines { text };
        let usage_bucket = usage_bucket(&file, &lines)?;
        let listen = match &file.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 8480)),
            Some(l) => l.get_ref().parse().map_err(|_| {
                lines.at(
                    l.span(),
                    format!("listen: not an address: {:?}", l.get_ref()),
                )
            })?,
        };
        let public_key = parse_public_key(file.public_key.get_ref())
            .map_err(|e| lines.at(file.public_key.span(), format!("public_key: {e}")))?;
        let staleness = match &file.staleness {
            None => Duration::from_secs(10),
            Some(s) => parse_duration(s.get_ref())
                .map_err(|e| lines.at(s.span(), format!("staleness: {e}")))?,
        };
        if let (Some(n), None) = (&file.nats, &file.revocation_db) {
            return Err(lines.at(
                n.span(),
                "nats: needs revocation_db, the list the feed fills".into(),
            ));
        }
        let mut revocation_keys = mandate_verifier::feed::RevocationKeys::new();
        for k in &file.revocation_keys {
            if k.get_ref().contains("ed25519-private/") {
                return Err(lines.at(
                    k.span(),
                    "revocation_keys: the PUBLIC keys (ID=ed25519/<hex>), not a private key".into(),
                ));
            }
            revocation_keys
                .insert_spec(k.get_ref())
                .map_err(|e| lines.at(k.span(), format!("revocation_keys: {e}")))?;
        }
        if let (Some(n), true) = (&file.nats, revocation_keys.is_empty()) {
            return Err(lines.at(
                n.span(),
                "nats: needs revocation_keys = [\"ID=ed25519/<hex>\"], the issuer's revocation \
                 public keys (GET /v1/keys/revocation): unsigned feed entries are never applied"
                    .into(),
            ));
        }
        let audit = match (&file.audit_dir, &file.audit_key_file) {
            (None, None) => None,
            (Some(d), Some(k)) => Some((base.join(d.get_ref()), base.join(k.get_ref()))),
            (Some(d), None) => {
                return Err(lines.at(d.span(), "audit_dir needs audit_key_file".into()))
            }
            (None, Some(k)) => {
                return Err(lines.at(k.span(), "audit_key_file needs audit_dir".into()))
            }
        };
        if let (None, Some(a)) = (&audit, &file.audit_async) {
            return Err(lines.at(a.span(), "audit_async needs audit_dir".into()));
        }
        let audit_async = file.audit_async.is_some_and(|a| *a.get_ref());
        let audit_publish = match &file.audit_publish {
            Some(p) if *p.get_ref() && (audit.is_none() || file.nats.is_none()) => {
                return Err(lines.at(
                    p.span(),
                    "audit_publish needs audit_dir (the log) and nats (the audit stream's server)"
                        .into(),
                ))
            }
            Some(p) if *p.get_ref() => Some((
                file.audit_stream
                    .clone()
                    .unwrap_or_else(|| "MANDATE_AUDIT".into()),
                file.audit_publish_records.unwrap_or(false),
            )),
            _ => None,
        };
        if file.routes.is_empty() {
            bail!("no [[routes]]: nothing to forward");
        }
        let workers = match &file.workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > 1024 => {
                return Err(lines.at(w.span(), "workers: 1 to 1024".into()))
            }
            w => w.as_ref().map(|w| *w.get_ref()),
        };
        let public_url = match &file.public_url {
            None => None,
            Some(u) => Some(
                Audience::parse(u.get_ref())
                    .map_err(|e| lines.at(u.span(), format!("public_url: {e}")))?,
            ),
        };
        let spend_bucket = match &file.spend_bucket {
            None => None,
            Some(b) if file.nats.is_none() || file.replay_db.is_none() => {
                return Err(lines.at(
                    b.span(),
                    "spend_bucket needs nats (the server holding the bucket) and replay_db \
                     (its local cache)"
                        .into(),
                ))
            }
            Some(b) => Some((b.get_ref().clone(), file.spend_nonces.unwrap_or(false))),
        };
        let approval_service = match &file.approval_service {
            None => None,
            Some(u) => {
                crate::approval_client::ApprovalService::new(u.get_ref())
                    .map_err(|e| lines.at(u.span(), format!("approval_service: {e}")))?;
                Some(u.get_ref().clone())
            }
        };
        let hold_needs = match (&approval_service, &file.replay_db) {
            (None, _) => Some(
                "approval_service = \"http://HOST:PORT\" (the issuer service requests are \
                 filed at)",
            ),
            (_, None) => Some(
                "replay_db (an approval is accepted only where its use is recorded: without \
                 one every approved request would be refused)",
            ),
            _ => None,
        };
        let mut routes = Vec::new();
        for r in file.routes {
            routes.push(route(r, text, base, public_url.as_ref(), hold_needs)?);
        }
        let session_key = match &file.session_key_file {
            None => None,
            Some(f) => {
                Some(session_key(&base.join(f.get_ref())).map_err(|e| lines.at(f.span(), e))?)
            }
        };
        let issuer_url = match &file.issuer_url {
            None => None,
            Some(u) => {
                let url = u.get_ref();
                if !(url.starts_with("https://") || url.starts_with("http://"))
                    || url.chars().any(|c| c.is_control() || c == ' ')
                {
                    return Err(lines.at(
                        u.span(),
                        format!("issuer_url {url:?}: expected an http(s) URL"),
                    ));
                }
                Some(url.clone())
            }
        };
        Ok(Config {
            listen,
            public_key,
            revocation_db: file.revocation_db.map(|d| base.join(d.into_inner())),
            spend_bucket,
            replay_db: file.replay_db.map(|d| base.join(d.into_inner())),
            usage_db: file.usage_db.map(|d| base.join(d.into_inner())),
            usage_bucket,
            usage_key_file: file.usage_key_file.as_ref().map(|k| base.join(k.get_ref())),
            nats: file.nats.map(Spanned::into_inner),
            revocation_keys,
            staleness,
            audit,
            audit_async,
            audit_publish,
            workers,
            routes,
            session_key,
            issuer_url,
            approval_service,
        })
    }
}

/// `usage_bucket` (needs `nats`, excludes `usage_db`) with its lease
/// settings (`usage_lease`, `usage_fleet_size`: at least 1).
fn usage_bucket(file: &File, lines: &Lines<'_>) -> Result<Option<(String, Option<LeaseConfig>)>> {
    for (name, value) in [
        ("usage_lease", &file.usage_lease),
        ("usage_fleet_size", &file.usage_fleet_size),
    ] {
        match value {
            Some(v) if file.usage_bucket.is_none() => {
                return Err(lines.at(v.span(), format!("{name} needs usage_bucket")))
            }
            Some(v) if *v.get_ref() == 0 => {
                return Err(lines.at(v.span(), format!("{name}: at least 1")))
            }
            _ => {}
        }
    }
    if let (Some(v), None) = (&file.usage_fleet_size, &file.usage_lease) {
        return Err(lines.at(v.span(), "usage_fleet_size needs usage_lease".into()));
    }
    let Some(bucket) = &file.usage_bucket else {
        if let Some(k) = &file.usage_key_file {
            return Err(lines.at(k.span(), "usage_key_file needs usage_bucket".into()));
        }
        return Ok(None);
    };
    if file.nats.is_none() {
        return Err(lines.at(
            bucket.span(),
            "usage_bucket needs nats (the server holding the bucket)".into(),
        ));
    }
    if file.usage_db.is_some() {
        return Err(lines.at(
            bucket.span(),
            "usage_bucket and usage_db: one place counts usage, not both".into(),
        ));
    }
    if file.usage_key_file.is_none() {
        return Err(lines.at(
            bucket.span(),
            "usage_bucket needs usage_key_file (the fleet key authenticating the counters, the \
             same on every verifier; make one with `head -c 32 /dev/urandom | xxd -p`)"
                .into(),
        ));
    }
    let lease = file.usage_lease.as_ref().map(|n| {
        let mut lease = LeaseConfig::new(*n.get_ref());
        if let Some(k) = &file.usage_fleet_size {
            lease.fleet_size = *k.get_ref();
        }
        lease
    });
    Ok(Some((bucket.get_ref().clone(), lease)))
}

/// The session key from a file of at least 32 bytes (e.g. 32 random bytes,
/// or `openssl rand -hex 32`): its SHA-256.
fn session_key(path: &Path) -> Result<[u8; 32], String> {
    use sha2::Digest;
    let bytes = std::fs::read(path)
        .map_err(|e| format!("session_key_file: cannot read {}: {e}", path.display()))?;
    if bytes.len() < 32 {
        return Err(format!(
            "session_key_file: {} has {} bytes; at least 32 random bytes are needed",
            path.display(),
            bytes.len()
        ));
    }
    Ok(sha2::Sha256::digest(&bytes).into())
}

/// Errors that name the line of the configuration they are about.
struct Lines<'a> {
    text: &'a str,
}

impl Lines<'_> {
    /// `msg`, on the line `span` starts on.
    fn at(&self, span: std::ops::Range<usize>, msg: String) -> anyhow::Error {
        anyhow!("line {}: {msg}", line_of(self.text, span.start))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "ed25519/5866666666666666666666666666666666666666666666666666666666666666";

    fn err(text: &str) -> String {
        Config::parse(text, Path::new(".")).unwrap_err().to_string()
    }

    #[test]
    fn usage_bucket_needs_nats_excludes_usage_db_and_carries_its_lease() {
        let head = format!("public_key = \"{KEY}\"\n");
        let nats = format!(
            "revocation_db = \"r\"\nnats = \"nats://127.0.0.1:4222\"\nrevocation_keys = [\"0={KEY}\"]\n"
        );
        let route = "[[routes]]\nprefix = \"/a\"\nupstream = \"http://x:1\"\n";
        for (settings, needle) in [
            ("usage_bucket = \"U\"\n", "line 2: usage_bucket needs nats"),
            (
                "usage_lease = 10\n",
                "line 2: usage_lease needs usage_bucket",
            ),
        ] {
            let e = err(&format!("{head}{settings}{route}"));
            assert!(e.starts_with(needle), "{e}");
        }
        for (settings, needle) in [
            (
                "usage_db = \"u\"\nusage_bucket = \"U\"\n",
                "one place counts usage",
            ),
            (
                "usage_bucket = \"U\"\nusage_lease = 0\n",
                "usage_lease: at least 1",
            ),
            (
                "usage_bucket = \"U\"\nusage_fleet_size = 3\n",
                "usage_fleet_size needs usage_lease",
            ),
        ] {
            let e = err(&format!("{head}{nats}{settings}{route}"));
            assert!(e.contains(needle), "{e}");
        }
        let parse = |settings: &str| {
            Config::parse(&format!("{head}{nats}{settings}{route}"), Path::new(".")).unwrap()
        };
        let e = err(&format!("{head}{nats}usage_bucket = \"U\"\n{route}"));
        assert!(e.contains("usage_bucket needs usage_key_file"), "{e}");
        let c = parse(
            "usage_bucket = \"U\"\nusage_key_file = \"k\"\nusage_lease = 10\nusage_fleet_size = 3\n",
        );
        let (bucket, lease) = c.usage_bucket.unwrap();
        let lease = lease.unwrap();
        assert_eq!(
            (bucket.as_str(), lease.slice, lease.fleet_size),
            ("U", 10, 3)
        );
        let c = parse("usage_bucket = \"U\"\nusage_key_file = \"k\"\n");
        assert_eq!(c.usage_key_file, Some(Path::new(".").join("k")));
        assert!(c.usage_bucket.unwrap().1.is_none(), "exact");
    }

    #[test]
    fn errors_name_the_line() {
        let head = format!("public_key = \"{KEY}\"\n");
        assert!(err(&format!(
            "{head}[[routes]]\nprefix = \"/a\"\nupstream = \"ftp://x\"\n"
        ))
        .starts_with("line 4: upstream"));
        assert!(err(&format!(
            "{head}[[routes]]\nprefix = \"a\"\nupstream = \"http://x:1\"\n"
        ))
        .starts_with("line 3: prefix"));
        assert!(err(&format!("{head}bogus = 1\n")).contains("unknown field"));
        assert!(err(&format!(
            "{head}[[routes]]\nprefix = \"/a\"\nupstream = \"http://x:1\"\ntimeout = \"soon\"\n"
        ))
        .starts_with("line 5: timeout"));
        assert!(err(&format!("{head}[[routes]]\nprefix = \"/a\"\nupstream = \"http://x:1\"\ncredential = {{ header = \"x\", file = \"/nonexistent\" }}\n")).starts_with("line 5: credential"));
        assert!(err("public_key = \"nope\"\n").starts_with("line 1: public_key"));
        // A credential in the upstream URL would be logged: refused, and
        // the error itself does not repeat it.
        let e = err(&format!(
            "{head}[[routes]]\nprefix = \"/a\"\nupstream = \"http://svc:UPSTREAMPW@x:1\"\n"
        ));
        assert!(e.starts_with("line 4: upstream"), "{e}");
        assert!(e.contains("credential = {"), "{e}");
        assert!(!e.contains("UPSTREAMPW"), "{e}");
        let mcp = format!(
            "{head}[[routes]]\nprefix = \"/mcp\"\nupstream = \"http://x:1\"\nmode = \"mcp\"\n"
        );
        for (extra, needle) in [
            (
                "public_methods = [\"initialize\"]",
                "line 6: public_methods and public_http_methods are no longer accepted",
            ),
            (
                "public_http_methods = [\"GET\"]",
                "line 6: public_methods and public_http_methods are no longer accepted",
            ),
            ("resource = \"/mcp/../x\"", "line 6: resource"),
            (
                "resource_documentation = \"docs\"",
                "line 6: resource_documentation \"docs\": expected an http(s) URL",
            ),
            (
                "public_url = \"https://gw.example.com/mcp\"",
                "line 6: public_url",
            ),
        ] {
            let e = err(&format!("{mcp}{extra}\n"));
            assert!(e.contains(needle), "{extra}: {e}");
        }
        let rest = format!("{head}[[routes]]\nupstream = \"http://x:1\"\n");
        for (extra, needle) in [
            ("prefix = \"/a/../b\"", "line 4: prefix"),
            ("prefix = \"/a//b\"", "line 4: prefix"),
            ("prefix = \"/a/%2e%2e\"", "line 4: prefix"),
            (
                "prefix = \"/a\"\npublic_methods = [\"initialize\"]",
                "line 5: public_methods and public_http_methods are no longer accepted",
            ),
            (
                "prefix = \"/a\"\nresource_name = \"CRM\"",
                "line 5: resource_name and resource_documentation describe an MCP route",
            ),
        ] {
            let e = err(&format!("{rest}{extra}\n"));
            assert!(e.starts_with(needle), "{extra}: {e}");
        }
        assert!(err(&format!(
            "{head}[[routes]]\nprefix = \"/a\"\nupstream = \"http://x:1\"\nmode = \"grpc\"\n"
        ))
        .starts_with("line 5: mode"));
        assert!(err(&format!("public_url = \"ftp://x\"\n{head}[[routes]]\nprefix = \"/a\"\nupstream = \"http://x:1\"\n")).starts_with("line 1: public_url"));
    }

    /// A held route's rule that reads no body for a method that may carry
    /// one is named at start (a body sent with it is forwarded unbound).
    #[test]
    fn held_rules_reading_no_body_are_named() {
        let text = format!(
            "public_key = \"{KEY}\"\napproval_service = \"http://127.0.0.1:8080\"\n\
             replay_db = \"r\"\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"http://x:1\"\nhold_for_approval = \"2m\"\n\
             rules = [ {{ method = \"POST\", pattern = \"/api/pay\", body_params = [[\"amount\", \"amount\"]] }},\n\
               {{ method = \"post\", pattern = \"/api/upload\" }},\n\
               {{ method = \"GET\", pattern = \"/api/list\" }} ]\n\
             [[routes]]\nprefix = \"/free\"\nupstream = \"http://x:1\"\n\
             rules = [ {{ method = \"POST\", pattern = \"/free/upload\" }} ]\n"
        );
        let c = Config::parse(&text, Path::new(".")).unwrap();
        assert_eq!(
            crate::gateway::held_rules_reading_no_body(&c.routes),
            vec![("/api".to_string(), "POST /api/upload".to_string())]
        );
    }

    #[test]
    fn a_hold_for_approval_is_bounded_and_needs_the_service_and_a_replay_record() {
        let head = format!("public_key = \"{KEY}\"\n");
        let service = "approval_service = \"http://127.0.0.1:8080\"\n";
        let route = |hold: &str| {
            format!(
                "[[routes]]\nprefix = \"/a\"\nupstream = \"http://x:1\"\nhold_for_approval = \"{hold}\"\n"
            )
        };
        for (settings, hold, needle) in [
            ("", "2m", "line 5: hold_for_approval needs approval_service"),
            (service, "2m", "line 6: hold_for_approval needs replay_db"),
            ("replay_db = \"r\"\n", "2m", "needs approval_service"),
        ] {
            let e = err(&format!("{head}{settings}{route}", route = route(hold)));
            assert!(e.contains(needle), "{settings}: {e}");
        }
        let full = format!("{head}{service}replay_db = \"r\"\n");
        for (hold, needle) in [
            ("11m", "from 1s to 10m"),
            ("500ms", "hold_for_approval"),
            ("0s", "hold_for_approval"),
            ("soon", "hold_for_approval"),
        ] {
            let e = err(&format!("{full}{}", route(hold)));
            assert!(e.starts_with("line 7: hold_for_approval"), "{hold}: {e}");
            assert!(e.contains(needle), "{hold}: {e}");
        }
        for (url, needle) in [
            (
                "ftp://issuer",
                "expected https://HOST[:PORT] or http://HOST:PORT",
            ),
            ("issuer:8080", "expected https://"),
            ("http://u:p@issuer", "no user information"),
        ] {
            let e = err(&format!(
                "{head}approval_service = \"{url}\"\n{}",
                route("2m")
            ));
            assert!(e.starts_with("line 2: approval_service"), "{url}: {e}");
            assert!(e.contains(needle), "{url}: {e}");
        }
        let c = Config::parse(&format!("{full}{}", route("2m")), Path::new(".")).unwrap();
        assert_eq!(c.routes[0].hold, Some(Duration::from_secs(120)));
        assert_eq!(c.approval_service.as_deref(), Some("http://127.0.0.1:8080"));
        let c = Config::parse(
            &format!("{full}[[routes]]\nprefix = \"/a\"\nupstream = \"http://x:1\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.routes[0].hold, None, "no hold unless asked");
    }

    #[test]
    fn a_route_cannot_take_the_gateways_own_paths() {
        let head = format!("public_key = \"{KEY}\"\n");
        for prefix in ["/healthz", "/metrics/", "/metrics/x"] {
            let e = err(&format!(
                "{head}[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://x:1\"\n"
            ));
            assert!(e.contains("the gateway's own"), "{prefix}: {e}");
        }
    }

    #[test]
    fn prefixes_lose_their_trailing_slash_and_routes_inherit_public_url() {
        let text = format!(
            "public_key = \"{KEY}\"\npublic_url = \"HTTPS://GW.example.com:443\"\n\
             [[routes]]\nprefix = \"/crm/\"\nupstream = \"http://x:1\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://x:1\"\npublic_url = \"http://10.0.0.1:8080\"\n"
        );
        let c = Config::parse(&text, Path::new(".")).unwrap();
        assert_eq!(c.routes[0].prefix, "/crm");
        assert_eq!(
            c.routes[0].audience.as_ref().unwrap().as_str(),
            "https://gw.example.com"
        );
        assert_eq!(c.routes[1].prefix, "");
        assert_eq!(
            c.routes[1].audience.as_ref().unwrap().as_str(),
            "http://10.0.0.1:8080"
        );
    }
}
