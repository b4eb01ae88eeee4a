//! The gateway's configuration file (TOML). Every error names the line that
//! is wrong: TOML syntax and unknown settings by the parser's span, invalid
//! values by the span of the setting that holds them.
//!
//! ```toml
//! listen = "127.0.0.1:8480"
//! public_key = "ed25519/…"             # the issuer's root public key
//! revocation_db = "revocations"         # optional: RocksDB revocation list
//! nats = "nats://127.0.0.1:4222"        # optional: follow the revocation feed into it
//! replay_db = "replay"                  # optional: accept approvals and proofs, each once
//! audit_dir = "audit"                   # optional, with audit_key_file
//! audit_key_file = "audit.key"
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
//! mode = "mcp"                          # JSON-RPC: tools/call → action = tool, params = arguments
//! public_methods = ["initialize", "notifications/initialized", "tools/list"] # JSON-RPC, on /mcp only
//! public_http_methods = ["GET"]         # optional: HTTP methods (GET, DELETE) public on /mcp only
//! credential = { header = "x-api-key", env = "MCP_KEY" }
//! ```

use anyhow::{anyhow, bail, Context, Result};
use mandate_spec::{check_resource, parse_duration, parse_public_key, Audience};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The paths the gateway answers itself, whatever the routes: never
/// forwarded, never decided.
pub(crate) const OWN_PATHS: [&str; 2] = ["/healthz", "/metrics"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Spanned<String>>,
    public_key: Spanned<String>,
    revocation_db: Option<Spanned<PathBuf>>,
    replay_db: Option<Spanned<PathBuf>>,
    nats: Option<Spanned<String>>,
    staleness: Option<Spanned<String>>,
    audit_dir: Option<Spanned<PathBuf>>,
    audit_key_file: Option<Spanned<PathBuf>>,
    workers: Option<Spanned<usize>>,
    public_url: Option<Spanned<String>>,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    prefix: Spanned<String>,
    upstream: Spanned<String>,
    timeout: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    credential: Option<Spanned<CredentialFile>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleFile>>,
    public_methods: Option<Spanned<Vec<String>>>,
    public_http_methods: Option<Spanned<Vec<String>>>,
    resource: Option<Spanned<String>>,
    max_body: Option<Spanned<usize>>,
    public_url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    header: String,
    #[serde(default)]
    prefix: String,
    file: Option<PathBuf>,
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    pub(crate) method: String,
    pub(crate) pattern: String,
    pub(crate) action: Option<String>,
    pub(crate) resource: Option<String>,
    #[serde(default)]
    pub(crate) body_params: Vec<(String, String)>,
}

/// The configuration, checked.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) public_key: biscuit_auth::PublicKey,
    pub(crate) revocation_db: Option<PathBuf>,
    /// Where used approvals and proof nonces are recorded (RocksDB).
    pub(crate) replay_db: Option<PathBuf>,
    pub(crate) nats: Option<String>,
    pub(crate) staleness: Duration,
    pub(crate) audit: Option<(PathBuf, PathBuf)>,
    /// Worker threads (default: one per core).
    pub(crate) workers: Option<usize>,
    pub(crate) routes: Vec<Route>,
}

/// How a route's requests become the request the verifier decides.
#[derive(Debug)]
pub(crate) enum Mode {
    /// HTTP: the middleware's mapping, with these rules.
    Rest(Vec<RuleFile>),
    /// MCP over streamable HTTP (JSON-RPC).
    Mcp {
        /// JSON-RPC methods forwarded without a decision (e.g.
        /// `initialize`), in a `POST` to the route's exact path only.
        public_methods: Vec<String>,
        /// HTTP methods (`GET`, `DELETE`) forwarded without a decision, to
        /// the route's exact path only; compared exactly.
        public_http_methods: Vec<http::Method>,
        /// The resource requests to the route's exact path are decided on.
        resource: Option<String>,
    },
}

/// HTTP methods an MCP route can make public: the streamable HTTP
/// transport's event stream and end of session. `POST` carries JSON-RPC
/// calls, each decided (or public) by its JSON-RPC method.
const PUBLIC_HTTP_METHODS: [&str; 2] = ["GET", "DELETE"];

/// One route.
pub(crate) struct Route {
    /// The path prefix without a trailing `/` (`""` for the root): the
    /// route serves that path and every path below it.
    pub(crate) prefix: String,
    /// The origin proofs of possession must be made for.
    pub(crate) audience: Option<Audience>,
    pub(crate) upstream: http::Uri,
    pub(crate) timeout: Duration,
    pub(crate) mode: Mode,
    pub(crate) max_body: usize,
    /// Header name and value to inject (the value never logged).
    pub(crate) credential: Option<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("prefix", &self.prefix)
            .field("audience", &self.audience)
            .field("upstream", &self.upstream)
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .field(
                "credential",
                &self.credential.as_ref().map(|(h, _)| (h, "<redacted>")),
            )
            .finish()
    }
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
        let at = |span: std::ops::Range<usize>, msg: String| {
            anyhow!("line {}: {msg}", line_of(text, span.start))
        };
        let listen = match &file.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 8480)),
            Some(l) => l.get_ref().parse().map_err(|_| {
                at(
                    l.span(),
                    format!("listen: not an address: {:?}", l.get_ref()),
                )
            })?,
        };
        let public_key = parse_public_key(file.public_key.get_ref())
            .map_err(|e| at(file.public_key.span(), format!("public_key: {e}")))?;
        let staleness = match &file.staleness {
            None => Duration::from_secs(10),
            Some(s) => {
                parse_duration(s.get_ref()).map_err(|e| at(s.span(), format!("staleness: {e}")))?
            }
        };
        if let (Some(n), None) = (&file.nats, &file.revocation_db) {
            return Err(at(
                n.span(),
                "nats: needs revocation_db, the list the feed fills".into(),
            ));
        }
        let audit = match (&file.audit_dir, &file.audit_key_file) {
            (None, None) => None,
            (Some(d), Some(k)) => Some((base.join(d.get_ref()), base.join(k.get_ref()))),
            (Some(d), None) => return Err(at(d.span(), "audit_dir needs audit_key_file".into())),
            (None, Some(k)) => return Err(at(k.span(), "audit_key_file needs audit_dir".into())),
        };
        if file.routes.is_empty() {
            bail!("no [[routes]]: nothing to forward");
        }
        let workers = match &file.workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > 1024 => {
                return Err(at(w.span(), "workers: 1 to 1024".into()))
            }
            w => w.as_ref().map(|w| *w.get_ref()),
        };
        let public_url = match &file.public_url {
            None => None,
            Some(u) => Some(
                Audience::parse(u.get_ref())
                    .map_err(|e| at(u.span(), format!("public_url: {e}")))?,
            ),
        };
        let mut routes = Vec::new();
        for r in file.routes {
            routes.push(route(r, text, base, public_url.as_ref())?);
        }
        Ok(Config {
            listen,
            public_key,
            revocation_db: file.revocation_db.map(|d| base.join(d.into_inner())),
            replay_db: file.replay_db.map(|d| base.join(d.into_inner())),
            nats: file.nats.map(Spanned::into_inner),
            staleness,
            audit,
            workers,
            routes,
        })
    }
}

fn route(r: RouteFile, text: &str, base: &Path, public_url: Option<&Audience>) -> Result<Route> {
    let at = |span: std::ops::Range<usize>, msg: String| {
        anyhow!("line {}: {msg}", line_of(text, span.start))
    };
    let prefix = r.prefix.get_ref().clone();
    if !prefix.starts_with('/') {
        return Err(at(
            r.prefix.span(),
            format!("prefix {prefix:?} must start with /"),
        ));
    }
    // A canonical path (SPEC §5.2); a trailing `/` adds nothing, since a
    // prefix matches on `/` boundaries.
    check_resource(&prefix).map_err(|e| at(r.prefix.span(), format!("prefix: {e}")))?;
    let prefix = prefix.trim_end_matches('/').to_string();
    // The gateway answers these two exact paths itself, before any route
    // (a `/` route included): a route at or under them would be half
    // shadowed.
    if let Some(own) = OWN_PATHS
        .iter()
        .find(|p| prefix == **p || prefix.starts_with(&format!("{p}/")))
    {
        return Err(at(
            r.prefix.span(),
            format!(
                "prefix {prefix:?}: {own} is the gateway's own (GET /healthz, GET /metrics), \
                 never forwarded"
            ),
        ));
    }
    let audience = match &r.public_url {
        None => public_url.cloned(),
        Some(u) => Some(
            Audience::parse(u.get_ref()).map_err(|e| at(u.span(), format!("public_url: {e}")))?,
        ),
    };
    let upstream: http::Uri = r
        .upstream
        .get_ref()
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| {
            at(
                r.upstream.span(),
                format!(
                    "upstream {:?}: expected http://HOST:PORT",
                    r.upstream.get_ref()
                ),
            )
        })?;
    let timeout = match &r.timeout {
        None => Duration::from_secs(30),
        Some(t) => {
            parse_duration(t.get_ref()).map_err(|e| at(t.span(), format!("timeout: {e}")))?
        }
    };
    let mode = match r.mode.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("rest") => {
            if let Some(m) = r.public_methods.as_ref().or(r.public_http_methods.as_ref()) {
                return Err(at(
                    m.span(),
                    "public_methods and public_http_methods are for mode = \"mcp\" routes: \
                     every REST request is decided"
                        .into(),
                ));
            }
            for rule in &r.rules {
                let v = rule.get_ref();
                http::Method::from_bytes(v.method.as_bytes())
                    .map_err(|_| at(rule.span(), format!("rules: method {:?}", v.method)))?;
                if !v.pattern.starts_with('/') {
                    return Err(at(
                        rule.span(),
                        format!("rules: pattern {:?} must start with /", v.pattern),
                    ));
                }
            }
            Mode::Rest(r.rules.into_iter().map(Spanned::into_inner).collect())
        }
        Some("mcp") => {
            let (span, public_methods) = match r.public_methods {
                Some(m) => (m.span(), m.into_inner()),
                None => (0..0, Vec::new()),
            };
            // A JSON-RPC method name is never an HTTP method: the two lists
            // are kept apart so neither can open the other.
            if let Some(m) = public_methods.iter().find(|m| {
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_ok_and(|h| {
                    [
                        http::Method::GET,
                        http::Method::POST,
                        http::Method::PUT,
                        http::Method::DELETE,
                        http::Method::HEAD,
                        http::Method::OPTIONS,
                        http::Method::PATCH,
                        http::Method::CONNECT,
                        http::Method::TRACE,
                    ]
                    .contains(&h)
                })
            }) {
                return Err(at(
                    span,
                    format!(
                        "public_methods lists JSON-RPC methods; {m:?} is an HTTP method: list \
                         it in public_http_methods"
                    ),
                ));
            }
            let (span, http_methods) = match r.public_http_methods {
                Some(m) => (m.span(), m.into_inner()),
                None => (0..0, Vec::new()),
            };
            let mut public_http_methods = Vec::new();
            for m in &http_methods {
                if !PUBLIC_HTTP_METHODS.contains(&m.as_str()) {
                    return Err(at(
                        span,
                        format!(
                            "public_http_methods: {m:?} cannot be public (allowed, exactly as \
                             written: {PUBLIC_HTTP_METHODS:?})"
                        ),
                    ));
                }
                public_http_methods.push(
                    http::Method::from_bytes(m.as_bytes())
                        .map_err(|_| at(span.clone(), format!("public_http_methods: {m:?}")))?,
                );
            }
            Mode::Mcp {
                public_methods,
                public_http_methods,
                resource: r.resource.map(Spanned::into_inner),
            }
        }
        Some(other) => {
            let span = r.mode.as_ref().map(|m| m.span()).unwrap_or(0..0);
            return Err(at(
                span,
                format!("mode {other:?}: expected \"rest\" or \"mcp\""),
            ));
        }
    };
    let credential = match r.credential {
        None => None,
        Some(c) => {
            let span = c.span();
            let c = c.into_inner();
            let name = http::HeaderName::from_bytes(c.header.as_bytes())
                .map_err(|_| at(span.clone(), format!("credential: header {:?}", c.header)))?;
            let secret = match (&c.file, &c.env) {
                (Some(f), None) => std::fs::read_to_string(base.join(f))
                    .map_err(|e| {
                        at(
                            span.clone(),
                            format!("credential: cannot read {}: {e}", f.display()),
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (None, Some(v)) => std::env::var(v).map_err(|_| {
                    at(
                        span.clone(),
                        format!("credential: environment variable {v} is not set"),
                    )
                })?,
                _ => {
                    return Err(at(
                        span,
                        "credential: give exactly one of file or env".into(),
                    ))
                }
            };
            if secret.is_empty() {
                return Err(at(span, "credential: the secret is empty".into()));
            }
            let mut value = http::HeaderValue::from_str(&format!("{}{secret}", c.prefix))
                .map_err(|_| at(span.clone(), "credential: not a valid header value".into()))?;
            value.set_sensitive(true);
            Some((name, value))
        }
    };
    Ok(Route {
        prefix,
        audience,
        upstream,
        timeout,
        mode,
        max_body: r.max_body.map(Spanned::into_inner).unwrap_or(1 << 20),
        credential,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "ed25519/0000000000000000000000000000000000000000000000000000000000000000";

    fn err(text: &str) -> String {
        Config::parse(text, Path::new(".")).unwrap_err().to_string()
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
        let mcp = format!(
            "{head}[[routes]]\nprefix = \"/mcp\"\nupstream = \"http://x:1\"\nmode = \"mcp\"\n"
        );
        for (extra, needle) in [
            (
                "public_methods = [\"initialize\", \"GET\"]",
                "line 6: public_methods lists JSON-RPC methods; \"GET\" is an HTTP method",
            ),
            ("public_methods = [\"delete\"]", "is an HTTP method"),
            (
                "public_http_methods = [\"POST\"]",
                "line 6: public_http_methods: \"POST\" cannot be public",
            ),
            (
                "public_http_methods = [\"get\"]",
                "\"get\" cannot be public",
            ),
            ("public_http_methods = [\"initialize\"]", "cannot be public"),
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
                "line 5: public_methods and public_http_methods are for mode",
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
