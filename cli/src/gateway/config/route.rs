//! One `[[routes]]` entry of the gateway's configuration, checked: its
//! prefix, origin, upstream, mode (REST rules or MCP's public methods) and
//! the credential it injects.

use super::{Lines, METADATA_PREFIX, OWN_PATHS};
use anyhow::Result;
use mandate_spec::{check_resource, parse_duration, Audience};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
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
    resource_name: Option<Spanned<String>>,
    resource_documentation: Option<Spanned<String>>,
    hold_for_approval: Option<Spanned<String>>,
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

/// How a route's requests become the request the verifier decides.
#[derive(Debug)]
pub(crate) enum Mode {
    /// HTTP: the middleware's mapping, with these rules.
    Rest(Vec<RuleFile>),
    /// MCP over streamable HTTP (JSON-RPC).
    Mcp {
        /// The resource requests to the route's exact path are decided on.
        resource: Option<String>,
        /// Its protected-resource metadata's `resource_name` (RFC 9728).
        resource_name: Option<String>,
        /// Its metadata's `resource_documentation`: where a person reads
        /// how to get a token.
        resource_documentation: Option<String>,
    },
}

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
    /// How long a request that needs approval is held open while a person
    /// decides (`hold_for_approval`); `None`: answered at once.
    pub(crate) hold: Option<Duration>,
}

/// The longest `hold_for_approval`.
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(600);

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("prefix", &self.prefix)
            .field("audience", &self.audience)
            .field("upstream", &self.upstream)
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .field("hold", &self.hold)
            .field(
                "credential",
                &self.credential.as_ref().map(|(h, _)| (h, "<redacted>")),
            )
            .finish()
    }
}

/// `hold_needs`: why the global settings cannot hold a request for
/// approval (no `approval_service`, no `replay_db`), if they cannot.
pub(super) fn route(
    r: RouteFile,
    text: &str,
    base: &Path,
    public_url: Option<&Audience>,
    hold_needs: Option<&str>,
) -> Result<Route> {
    let lines = Lines { text };
    let RouteFile {
        prefix,
        upstream,
        timeout,
        mode,
        credential,
        rules,
        public_methods,
        public_http_methods,
        resource,
        max_body,
        public_url: route_url,
        resource_name,
        resource_documentation,
        hold_for_approval,
    } = r;
    if let Some(m) = public_methods.as_ref().or(public_http_methods.as_ref()) {
        return Err(lines.at(
            m.span(),
            "public_methods and public_http_methods are no longer accepted: every request \
             needs a valid token; MCP housekeeping (initialize, tools/list, ping, \
             notifications, responses, GET, DELETE) needs no grant (SPEC §17): remove them"
                .into(),
        ));
    }
    let prefix = route_prefix(&prefix, &lines)?;
    let audience = match &route_url {
        None => public_url.cloned(),
        Some(u) => Some(
            Audience::parse(u.get_ref())
                .map_err(|e| lines.at(u.span(), format!("public_url: {e}")))?,
        ),
    };
    let upstream = route_upstream(&upstream, &lines)?;
    let timeout = match &timeout {
        None => Duration::from_secs(30),
        Some(t) => {
            parse_duration(t.get_ref()).map_err(|e| lines.at(t.span(), format!("timeout: {e}")))?
        }
    };
    let mode = match mode.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("rest") => {
            if let Some(m) = resource_name.as_ref().or(resource_documentation.as_ref()) {
                return Err(lines.at(
                    m.span(),
                    "resource_name and resource_documentation describe an MCP route's \
                     metadata: mode = \"mcp\" only"
                        .into(),
                ));
            }
            rest_mode(rules, &lines)?
        }
        Some("mcp") => mcp_mode(resource, resource_name, resource_documentation, &lines)?,
        Some(other) => {
            let span = mode.as_ref().map(|m| m.span()).unwrap_or(0..0);
            return Err(lines.at(
                span,
                format!("mode {other:?}: expected \"rest\" or \"mcp\""),
            ));
        }
    };
    let credential = match credential {
        None => None,
        Some(c) => Some(route_credential(c, base, &lines)?),
    };
    let hold = match &hold_for_approval {
        None => None,
        Some(h) => Some(route_hold(h, hold_needs, &lines)?),
    };
    Ok(Route {
        prefix,
        audience,
        upstream,
        timeout,
        mode,
        max_body: max_body.map(Spanned::into_inner).unwrap_or(1 << 20),
        credential,
        hold,
    })
}

/// `hold_for_approval`: a duration from 1 s to [`MAX_HOLD`], with the
/// global settings a hold needs.
fn route_hold(h: &Spanned<String>, needs: Option<&str>, lines: &Lines<'_>) -> Result<Duration> {
    let d = parse_duration(h.get_ref())
        .map_err(|e| lines.at(h.span(), format!("hold_for_approval: {e}")))?;
    if d < Duration::from_secs(1) || d > MAX_HOLD {
        return Err(lines.at(
            h.span(),
            format!(
                "hold_for_approval {:?}: from 1s to {}m",
                h.get_ref(),
                MAX_HOLD.as_secs() / 60
            ),
        ));
    }
    if let Some(why) = needs {
        return Err(lines.at(h.span(), format!("hold_for_approval needs {why}")));
    }
    Ok(d)
}

/// The route's prefix: starting with `/`, canonical, without its trailing
/// `/`, and not one of the gateway's own paths.
fn route_prefix(prefix: &Spanned<String>, lines: &Lines<'_>) -> Result<String> {
    let span = prefix.span();
    let prefix = prefix.get_ref();
    if !prefix.starts_with('/') {
        return Err(lines.at(span, format!("prefix {prefix:?} must start with /")));
    }
    // A canonical path (SPEC §5.2); a trailing `/` adds nothing, since a
    // prefix matches on `/` boundaries.
    check_resource(prefix).map_err(|e| lines.at(span.clone(), format!("prefix: {e}")))?;
    let prefix = prefix.trim_end_matches('/').to_string();
    // The gateway answers these two exact paths itself, before any route
    // (a `/` route included): a route at or under them would be half
    // shadowed.
    if let Some(own) = OWN_PATHS
        .iter()
        .find(|p| prefix == **p || prefix.starts_with(&format!("{p}/")))
    {
        return Err(lines.at(
            span,
            format!(
                "prefix {prefix:?}: {own} is the gateway's own (GET /healthz, GET /metrics), \
                 never forwarded"
            ),
        ));
    }
    if prefix == METADATA_PREFIX || prefix.starts_with(&format!("{METADATA_PREFIX}/")) {
        return Err(lines.at(
            span,
            format!(
                "prefix {prefix:?}: {METADATA_PREFIX} is where the gateway serves MCP routes' \
                 protected-resource metadata (RFC 9728)"
            ),
        ));
    }
    Ok(prefix)
}

/// The upstream: an `http://` URI with an authority.
fn route_upstream(upstream: &Spanned<String>, lines: &Lines<'_>) -> Result<http::Uri> {
    let uri = upstream
        .get_ref()
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| {
            lines.at(
                upstream.span(),
                format!(
                    "upstream {:?}: expected http://HOST:PORT",
                    crate::startup::redact_url(upstream.get_ref())
                ),
            )
        })?;
    // A credential in the URL would be logged, hashed into the policy note
    // and shown wherever the route is: the credential table is the place.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(lines.at(
            upstream.span(),
            format!(
                "upstream {:?}: user information (user:password@) is not allowed in the \
                 URL; give the upstream's credential as credential = {{ … }}",
                crate::startup::redact_url(upstream.get_ref())
            ),
        ));
    }
    Ok(uri)
}

/// A REST route: each rule's method and pattern checked.
fn rest_mode(rules: Vec<Spanned<RuleFile>>, lines: &Lines<'_>) -> Result<Mode> {
    for rule in &rules {
        let v = rule.get_ref();
        http::Method::from_bytes(v.method.as_bytes())
            .map_err(|_| lines.at(rule.span(), format!("rules: method {:?}", v.method)))?;
        if !v.pattern.starts_with('/') {
            return Err(lines.at(
                rule.span(),
                format!("rules: pattern {:?} must start with /", v.pattern),
            ));
        }
    }
    Ok(Mode::Rest(
        rules.into_iter().map(Spanned::into_inner).collect(),
    ))
}

/// An MCP route: its resource (a canonical path) and metadata texts.
fn mcp_mode(
    resource: Option<Spanned<String>>,
    resource_name: Option<Spanned<String>>,
    resource_documentation: Option<Spanned<String>>,
    lines: &Lines<'_>,
) -> Result<Mode> {
    if let Some(r) = &resource {
        check_resource(r.get_ref()).map_err(|e| lines.at(r.span(), format!("resource: {e}")))?;
    }
    if let Some(d) = &resource_documentation {
        let url = d.get_ref();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(lines.at(
                d.span(),
                format!("resource_documentation {url:?}: expected an http(s) URL"),
            ));
        }
    }
    Ok(Mode::Mcp {
        resource: resource.map(Spanned::into_inner),
        resource_name: resource_name.map(Spanned::into_inner),
        resource_documentation: resource_documentation.map(Spanned::into_inner),
    })
}

/// The header to inject: its name, and `prefix` + the secret (read from
/// exactly one of a file or an environment variable, never empty) as a
/// sensitive value.
fn route_credential(
    c: Spanned<CredentialFile>,
    base: &Path,
    lines: &Lines<'_>,
) -> Result<(http::HeaderName, http::HeaderValue)> {
    let span = c.span();
    let c = c.into_inner();
    let name = http::HeaderName::from_bytes(c.header.as_bytes())
        .map_err(|_| lines.at(span.clone(), format!("credential: header {:?}", c.header)))?;
    let secret = credential_secret(&c, base, span.clone(), lines)?;
    if secret.is_empty() {
        return Err(lines.at(span, "credential: the secret is empty".into()));
    }
    let mut value = http::HeaderValue::from_str(&format!("{}{secret}", c.prefix))
        .map_err(|_| lines.at(span.clone(), "credential: not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The credential's secret, from its file (without the trailing line end)
/// or its environment variable: exactly one of the two.
fn credential_secret(
    c: &CredentialFile,
    base: &Path,
    span: std::ops::Range<usize>,
    lines: &Lines<'_>,
) -> Result<String> {
    match (&c.file, &c.env) {
        (Some(f), None) => Ok(std::fs::read_to_string(base.join(f))
            .map_err(|e| {
                lines.at(
                    span.clone(),
                    format!("credential: cannot read {}: {e}", f.display()),
                )
            })?
            .trim_end_matches(['\r', '\n'])
            .to_string()),
        (None, Some(v)) => std::env::var(v).map_err(|_| {
            lines.at(
                span.clone(),
                format!("credential: environment variable {v} is not set"),
            )
        }),
        _ => Err(lines.at(span, "credential: give exactly one of file or env".into())),
    }
}
