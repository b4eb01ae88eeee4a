//! The gateway's request path: refuse a non-canonical path, route (on `/`
//! boundaries), map, decide with the embedded verifier, strip the Mandate
//! token, inject the upstream's credential, forward with a timeout, and
//! stream both bodies.

use super::config::{Mode, Route};
use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use mandate_server::mcp::{mcp_request, Public};
use mandate_verifier::http::{
    decide, denial_response, error_response, json_body, ColdDecisions, MapRequest, Route as Rule,
    RouteMap,
};
use mandate_verifier::{Decision, Verifier};
use std::fmt::Write as _;
use std::sync::Arc;

/// The decision on a request (`None`: a public MCP request, forwarded
/// without one) and the body to forward; or the response that ends it.
type Decided = Result<(Option<Decision>, Body), Response<Body>>;

/// Everything a request needs, shared.
pub(crate) struct Gateway {
    pub(crate) verifier: Verifier,
    pub(crate) routes: Vec<(Route, Option<RouteMap>)>,
    pub(crate) client: Client<HttpConnector, Body>,
    /// Where cold decisions run: the blocking pool, one per core at a time.
    pub(crate) cold: ColdDecisions,
    /// Each route's upstream metrics, by prefix: registered once (the
    /// recorder is installed before the gateway is built), not per request.
    upstream_metrics: Vec<(String, UpstreamMetrics)>,
}

/// One route's handles on its upstream metrics.
struct UpstreamMetrics {
    duration: metrics::Histogram,
    timeouts: metrics::Counter,
    unreachable: metrics::Counter,
}

impl UpstreamMetrics {
    fn new(prefix: &str) -> UpstreamMetrics {
        let route = route_label(prefix).to_string();
        UpstreamMetrics {
            duration: metrics::histogram!(super::UPSTREAM_DURATION, "route" => route.clone()),
            timeouts: metrics::counter!(
                super::UPSTREAM_ERRORS, "route" => route.clone(), "error" => "timeout"
            ),
            unreachable: metrics::counter!(
                super::UPSTREAM_ERRORS, "route" => route, "error" => "unreachable"
            ),
        }
    }

    /// The upstream's latency (to its response head), or its failure.
    fn observe<T, E>(
        &self,
        answer: &Result<Result<T, E>, tokio::time::error::Elapsed>,
        took: std::time::Duration,
    ) {
        match answer {
            Ok(Ok(_)) => self.duration.record(took.as_secs_f64()),
            Ok(Err(_)) => self.unreachable.increment(1),
            Err(_) => self.timeouts.increment(1),
        }
    }
}

/// Headers that are about one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Gateway {
    /// The gateway for `routes`; their description (never a credential's
    /// value) is added to the verifier's policy hash, so each audit record
    /// names the routing it was decided and forwarded under.
    pub(crate) fn new(verifier: Verifier, routes: Vec<Route>) -> Gateway {
        let routes: Vec<(Route, Option<RouteMap>)> = routes
            .into_iter()
            .map(|r| {
                let map = match &r.mode {
                    Mode::Rest(rules) => {
                        let mut m = RouteMap::new().max_body_bytes(r.max_body);
                        for rule in rules {
                            let mut route = Rule::new();
                            if let Some(a) = &rule.action {
                                route = route.action(a);
                            }
                            if let Some(res) = &rule.resource {
                                route = route.resource(res);
                            }
                            for (param, field) in &rule.body_params {
                                route = route.body_param(param, field);
                            }
                            m = m.route(&rule.method, &rule.pattern, route);
                        }
                        Some(m)
                    }
                    Mode::Mcp { .. } => None,
                };
                (r, map)
            })
            .collect();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let verifier = verifier.with_policy_note(&describe(&routes));
        let upstream_metrics = routes
            .iter()
            .map(|(r, _)| (r.prefix.clone(), UpstreamMetrics::new(&r.prefix)))
            .collect();
        Gateway {
            verifier,
            routes,
            client,
            cold: ColdDecisions::per_core(),
            upstream_metrics,
        }
    }

    /// One request, start to end. Never an `Err`: every failure is a response.
    pub(crate) async fn handle(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        // Before any route is chosen: a path the upstream could resolve to
        // another one than the path decided on is refused (SPEC §5.2).
        if let Err(why) = canonical_path(req.uri().path()) {
            return error_response(StatusCode::BAD_REQUEST, &why);
        }
        let Some((route, map)) = self.route_for(req.uri().path()) else {
            return error_response(StatusCode::NOT_FOUND, "no route for this path");
        };
        let (parts, body) = req.into_parts();
        // Map and decide; the body is read only when the mapping needs it.
        let decided = match (&route.mode, map) {
            (
                Mode::Mcp {
                    public_methods,
                    public_http_methods,
                    resource,
                },
                _,
            ) => {
                let public = Public {
                    route_path: route_path(&route.prefix),
                    methods: public_methods,
                    http_methods: public_http_methods,
                    resource: resource.as_deref(),
                };
                self.decide_mcp(route, &public, &parts, body).await
            }
            (Mode::Rest(_), Some(map)) => self.decide_rest(route, map, &parts, body).await,
            (Mode::Rest(_), None) => Err(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "route without mapping",
            )),
        };
        let (decision, body) = match decided {
            Ok(decided) => decided,
            Err(resp) => return resp,
        };
        if let Some(decision) = &decision {
            if let Some(refusal) = self.refusal(decision) {
                return refusal;
            }
        }
        self.forward(route, parts, body).await
    }

    /// The route serving `path`: the longest prefix it is at or under.
    fn route_for(&self, path: &str) -> Option<&(Route, Option<RouteMap>)> {
        self.routes
            .iter()
            .filter(|(r, _)| prefix_matches(&r.prefix, path))
            .max_by_key(|(r, _)| r.prefix.len())
    }

    /// Why a decided request is not forwarded: the audit log cannot record
    /// it (503), or the decision is a denial; `None` when it goes on.
    fn refusal(&self, decision: &Decision) -> Option<Response<Body>> {
        if let Err(e) = self.verifier.audit_health() {
            return Some(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("audit log unavailable ({e}); retry later"),
            ));
        }
        if !decision.is_allowed() {
            return Some(denial_response(decision));
        }
        None
    }

    /// An MCP request: its JSON-RPC body read (bounded) and decided, unless
    /// it is public on the route's exact path.
    async fn decide_mcp(
        &self,
        route: &Route,
        public: &Public<'_>,
        parts: &Parts,
        body: Body,
    ) -> Decided {
        // The decision reads the JSON-RPC body; a query string would
        // reach the server undecided (a second parser): refused.
        if parts.uri.query().is_some() {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                "an MCP route takes no query string: it would reach the server \
                 without being decided",
            ));
        }
        let bytes = read(body, route.max_body).await?;
        match mcp_request(parts, &bytes, public) {
            Err(e) => Err(error_response(e.status, &e.message)),
            Ok(None) => Ok((None, Body::from(bytes))),
            Ok(Some(request)) => Ok((
                Some(self.decide(route, parts, request, Some(&bytes)).await),
                Body::from(bytes),
            )),
        }
    }

    /// A REST request, mapped by the route's rules and decided: its body
    /// streamed, or read first when the mapping or a proof needs it.
    async fn decide_rest(
        &self,
        route: &Route,
        map: &RouteMap,
        parts: &Parts,
        body: Body,
    ) -> Decided {
        match MapRequest::body_limit(map, parts) {
            None => self.decide_rest_without_json(route, map, parts, body).await,
            Some(limit) => {
                self.decide_rest_with_json(route, map, parts, body, limit)
                    .await
            }
        }
    }

    /// A REST request whose mapping reads no body.
    async fn decide_rest_without_json(
        &self,
        route: &Route,
        map: &RouteMap,
        parts: &Parts,
        body: Body,
    ) -> Decided {
        // A proof of possession covers the body: read it then
        // (bounded), else stream it untouched.
        let (body, bytes) = if parts.headers.contains_key(mandate_spec::PROOF_HEADER) {
            let b = read(body, route.max_body).await?;
            (Body::from(b.clone()), Some(b))
        } else {
            (body, None)
        };
        match map.map(parts, None) {
            Ok(request) => Ok((
                Some(self.decide(route, parts, request, bytes.as_ref()).await),
                body,
            )),
            Err(e) => Err(error_response(e.status, &e.message)),
        }
    }

    /// A REST request whose mapping reads fields of its JSON body (read up
    /// to `limit` bytes).
    async fn decide_rest_with_json(
        &self,
        route: &Route,
        map: &RouteMap,
        parts: &Parts,
        body: Body,
        limit: usize,
    ) -> Decided {
        let bytes = read(body, limit).await?;
        // As the middleware reads it: declared JSON (415), no
        // key given twice (400).
        let json = json_body(parts, &bytes).map_err(|e| error_response(e.status, &e.message))?;
        match map.map(parts, Some(&json)) {
            Ok(request) => Ok((
                Some(self.decide(route, parts, request, Some(&bytes)).await),
                Body::from(bytes),
            )),
            Err(e) => Err(error_response(e.status, &e.message)),
        }
    }

    /// Decides `request` with the bearer token and, when the request carries
    /// one, the proof of possession over `body` (read when a proof came), at
    /// the route's audience: the middleware's decision, called from this one
    /// place.
    async fn decide(
        &self,
        route: &Route,
        parts: &Parts,
        request: mandate_spec::Request,
        body: Option<&Bytes>,
    ) -> Decision {
        decide(
            &self.verifier,
            parts,
            request,
            body,
            route.audience.as_ref(),
            &self.cold,
        )
        .await
    }

    async fn forward(&self, route: &Route, mut parts: Parts, body: Body) -> Response<Body> {
        let target = match upstream_uri(&route.upstream, &parts.uri) {
            Ok(u) => u,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
        };
        let headers = &mut parts.headers;
        strip(headers);
        // The Mandate token and proof are for the gateway, never the upstream.
        headers.remove(header::AUTHORIZATION);
        headers.remove(mandate_spec::PROOF_HEADER);
        if let Some((name, value)) = &route.credential {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(authority) = target.authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(header::HOST, v);
            }
        }
        parts.uri = target;
        parts.version = http::Version::HTTP_11;
        let upstream = Request::from_parts(parts, body);
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(route.timeout, self.client.request(upstream)).await;
        if let Some((_, m)) = self
            .upstream_metrics
            .iter()
            .find(|(p, _)| *p == route.prefix)
        {
            m.observe(&answer, started.elapsed());
        }
        match answer {
            Err(_) => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "the upstream did not answer within {:.1} s",
                    route.timeout.as_secs_f64()
                ),
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, upstream = %route.upstream, "upstream request failed");
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "the upstream could not be reached or broke the connection",
                )
            }
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip(&mut parts.headers);
                Response::from_parts(parts, Body::new(body))
            }
        }
    }
}

/// A route's prefix as operators write it (`/` for the root route).
pub(crate) fn route_label(prefix: &str) -> &str {
    if prefix.is_empty() {
        "/"
    } else {
        prefix
    }
}

/// Reads a body up to `limit` bytes, or the response saying why not.
async fn read(body: Body, limit: usize) -> Result<Bytes, Response<Body>> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {limit} bytes"),
        )),
        Err(e) => Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("could not read the request body: {e}"),
        )),
    }
}

fn strip(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for h in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(named) {
        headers.remove(h.as_str());
    }
}

fn upstream_uri(base: &Uri, incoming: &Uri) -> Result<Uri, String> {
    let base_path = base.path().trim_end_matches('/');
    let pq = incoming.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(
        format!("{base_path}{pq}")
            .parse()
            .map_err(|_| "the request path cannot be forwarded".to_string())?,
    );
    Uri::from_parts(parts).map_err(|e| e.to_string())
}

/// The path a route prefix (stored without its trailing `/`) names exactly.
fn route_path(prefix: &str) -> &str {
    if prefix.is_empty() {
        "/"
    } else {
        prefix
    }
}

/// Whether `path` is under `prefix` (stored without a trailing `/`; `""` is
/// the root): it is the prefix itself or continues it after a `/`. So `/mcp`
/// serves `/mcp` and `/mcp/x`, never `/mcp-admin`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The rules of SPEC §5.2 for a path, at any length
/// ([`mandate_spec::check_canonical`]): a path the upstream could resolve
/// to another path than the one routed and decided is refused, never
/// normalized.
pub(crate) fn canonical_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("non-canonical request path: it does not start with / (SPEC §5.2)".into());
    }
    mandate_spec::check_canonical(path)
        .map_err(|why| format!("non-canonical request path: it {why} (SPEC §5.2)"))
}

/// The routing a decision is made under, for the policy hash: every route's
/// prefix, upstream, audience, mode and its rules or public methods, and
/// the name of the credential header — never the credential's value.
fn describe(routes: &[(Route, Option<RouteMap>)]) -> String {
    let mut out = String::from("gateway routes v1");
    for (route, map) in routes {
        let _ = write!(
            out,
            "\nroute prefix={:?} upstream={} public_url={} max_body={} timeout_ms={} credential_header={}",
            route_path(&route.prefix),
            route.upstream,
            route.audience.as_ref().map_or("none", |a| a.as_str()),
            route.max_body,
            route.timeout.as_millis(),
            route.credential.as_ref().map_or("none", |(h, _)| h.as_str()),
        );
        match (&route.mode, map) {
            (
                Mode::Mcp {
                    public_methods,
                    public_http_methods,
                    resource,
                },
                _,
            ) => {
                let _ = write!(
                    out,
                    "\nmode=mcp public_methods={public_methods:?} public_http_methods={:?} resource={resource:?}",
                    public_http_methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                );
            }
            (Mode::Rest(_), Some(map)) => {
                let _ = write!(out, "\nmode=rest {}", map.describe());
            }
            (Mode::Rest(_), None) => out.push_str("\nmode=rest unmapped"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_match_on_slash_boundaries() {
        for (prefix, path, yes) in [
            ("/mcp", "/mcp", true),
            ("/mcp", "/mcp/", true),
            ("/mcp", "/mcp/x/y", true),
            ("/mcp", "/mcp-admin", false),
            ("/mcp", "/mcp-admin/x", false),
            ("/mcp", "/mcpx", false),
            ("/mcp", "/mc", false),
            ("/mcp", "/", false),
            ("", "/", true),
            ("", "/anything/at/all", true),
        ] {
            assert_eq!(prefix_matches(prefix, path), yes, "{prefix:?} {path:?}");
        }
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for bad in [
            "/mcp/../x",
            "/mcp/./x",
            "/mcp//x",
            "/mcp/%2e%2e/x",
            "/mcp/%2E%2E/x",
            "/mcp%2fx",
            "/mcp/%5cx",
            "/mcp/%00",
            "/mcp\\x",
            "/mcp/x\u{7f}",
            "/..",
            "mcp",
            // Regression (issue 12 review): forms servers resolve otherwise.
            "/mcp/..;/admin",
            "/api/public/..;/admin",
            "/api/items;v=1/x",
            "/api/%70ayments",
            "/api/%7e",
            "/api/a%252e%252e/b",
            "/api/%3b",
            "/api/%zz",
            "/api/%4",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad:?}");
        }
        for ok in ["/", "/mcp", "/mcp/", "/mcp/x.y/..z/%20%C3%A9", "/a/b/c/"] {
            assert!(canonical_path(ok).is_ok(), "{ok:?}");
        }
    }

    proptest! {
        /// A path matches a prefix iff it equals it or starts with the
        /// prefix and a `/`.
        #[test]
        fn a_prefix_matches_itself_and_what_is_below_it(
            prefix in "(/[a-z.-]{1,4}){1,3}",
            path in "(/[a-z.-]{0,4}){1,5}",
        ) {
            let expected = path == prefix || path.starts_with(&format!("{prefix}/"));
            prop_assert_eq!(prefix_matches(&prefix, &path), expected);
            // The prefix itself and anything below it always match.
            prop_assert!(prefix_matches(&prefix, &prefix));
            let below = format!("{}{}", prefix, path);
            prop_assert!(prefix_matches(&prefix, &below));
        }

        /// Up to the spec's 256 bytes, the gateway's path rules are exactly
        /// the verifier's rules for a resource path: no two parsers.
        #[test]
        fn the_path_rules_are_the_resource_rules(
            path in "/([a-z]|\\.|/|%2[eEfF]|%5[cC]|%00|%41|\\\\|\n){0,40}",
        ) {
            prop_assume!(path.len() <= 256);
            prop_assert_eq!(
                canonical_path(&path).is_ok(),
                mandate_spec::check_resource(&path).is_ok(),
                "{:?}", path
            );
        }
    }
}
