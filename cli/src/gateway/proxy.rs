//! The gateway's request path: refuse a non-canonical path, answer the
//! protected-resource metadata, route (on `/` boundaries), then the route's
//! stack — the Mandate middleware (the route's mapping: REST rules or MCP;
//! the decision; refusals in the client's protocol) over a proxy that strips
//! the Mandate token, injects the upstream's credential, forwards with a
//! timeout and streams both bodies (an MCP route's session ids bound to the
//! token family, its `tools/list` answers filtered).

use super::config::{Mode, Route, RuleFile};
use super::hold::{Hold, Holds};
use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use mandate_server::mcp::{self, McpMap, Message, Sessions};
use mandate_verifier::http::{
    error_response, Authorized, ColdDecisions, Mandate, MandateLayer, MapRequest, Refusal,
    Route as Rule, RouteMap,
};
use mandate_verifier::Verifier;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use tower::{Layer, ServiceExt};

/// Everything a request needs, shared: each route's service (the Mandate
/// middleware over a proxy to its upstream) and the protected-resource
/// metadata documents of the MCP routes.
pub(crate) struct Gateway {
    /// Each route's prefix, service, and hold for approval when it has one.
    routes: Vec<(String, RouteService, Option<Arc<Hold>>)>,
    /// RFC 9728 documents by their well-known path.
    metadata: Vec<(String, Bytes)>,
}

/// A route's stack: the middleware (mapping, decision, refusals) over the
/// route's upstream.
#[derive(Clone)]
pub(crate) enum RouteService {
    Rest(Mandate<Upstream, RouteMap>),
    Mcp(Mandate<Upstream, McpMap>),
}

impl RouteService {
    /// One request through the route's stack.
    pub(crate) async fn call(self, req: Request<Body>) -> Response<Body> {
        let answered = match self {
            RouteService::Rest(s) => s.oneshot(req).await,
            RouteService::Mcp(s) => s.oneshot(req).await,
        };
        match answered {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
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

/// The streamable HTTP transport's session header.
const SESSION_HEADER: &str = "mcp-session-id";

/// The largest `tools/list` answer the gateway reads to filter it.
const MAX_TOOLS_LIST_BYTES: usize = 8 << 20;

/// What the gateway is built from, besides the verifier and the routes.
pub(crate) struct Options {
    /// The key MCP session ids are bound under.
    pub(crate) session_key: [u8; 32],
    /// Where to get a token, for the metadata documents.
    pub(crate) issuer_url: Option<String>,
    /// The issuer service routes with `hold_for_approval` file at.
    pub(crate) holds: Option<Arc<Holds>>,
}

impl Gateway {
    /// The gateway for `routes`: each route's service is the Mandate
    /// middleware (its mapping: the route's REST rules or MCP) over a proxy
    /// to its upstream. The routing's description (never a credential's
    /// value) is added to the verifier's policy hash, so each audit record
    /// names the routing it was decided and forwarded under.
    pub(crate) fn new(verifier: Verifier, routes: Vec<Route>, options: Options) -> Gateway {
        let verifier = verifier.with_policy_note(&describe(&routes));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let cold = ColdDecisions::per_core();
        let sessions = Sessions::new(options.session_key);
        let mut metadata = Vec::new();
        let mut services = Vec::new();
        for route in routes {
            let prefix = route.prefix.clone();
            let hold_for = |verifier: &Verifier| {
                let shared = options.holds.clone()?;
                Some(Arc::new(Hold {
                    within: route.hold?,
                    max_body: route.max_body,
                    mcp: matches!(route.mode, Mode::Mcp { .. }),
                    label: route_label(&route.prefix).to_string(),
                    shared,
                    verifier: verifier.clone(),
                }))
            };
            let (service, hold) = match &route.mode {
                Mode::Rest(rules) => {
                    let layer = with_audience(
                        MandateLayer::new(verifier.clone(), rest_map(&route, rules)),
                        &route,
                    )
                    .cold_decisions(cold.clone());
                    let hold = hold_for(layer.verifier());
                    (
                        RouteService::Rest(layer.layer(Upstream::new(route, &client, None))),
                        hold,
                    )
                }
                Mode::Mcp { resource, .. } => {
                    let map = McpMap::new(route_path(&prefix), resource.as_deref(), route.max_body);
                    let mut layer =
                        with_audience(MandateLayer::new(verifier.clone(), map.clone()), &route)
                            .cold_decisions(cold.clone());
                    if let Some((path, url, document)) =
                        metadata_document(&route, options.issuer_url.as_deref())
                    {
                        match layer.clone().resource_metadata(&url) {
                            Ok(l) => layer = l,
                            Err(e) => {
                                tracing::warn!(error = %e.message, "no resource_metadata in challenges")
                            }
                        }
                        metadata.push((path, document));
                    }
                    let mcp = McpUpstream {
                        sessions: sessions.clone(),
                        map,
                        verifier: layer.verifier().clone(),
                    };
                    let hold = hold_for(layer.verifier());
                    (
                        RouteService::Mcp(layer.layer(Upstream::new(route, &client, Some(mcp)))),
                        hold,
                    )
                }
            };
            services.push((prefix, service, hold));
        }
        Gateway {
            routes: services,
            metadata,
        }
    }

    /// One request, start to end. Never an `Err`: every failure is a response.
    pub(crate) async fn handle(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        // Before any route is chosen: a path the upstream could resolve to
        // another one than the path decided on is refused (SPEC §5.2).
        if let Err(why) = canonical_path(req.uri().path()) {
            return error_response(StatusCode::BAD_REQUEST, &why);
        }
        if req.method() == http::Method::GET {
            if let Some((_, document)) = self.metadata.iter().find(|(p, _)| p == req.uri().path()) {
                return metadata_response(document.clone());
            }
        }
        let Some((_, service, hold)) = self
            .routes
            .iter()
            .filter(|(prefix, ..)| prefix_matches(prefix, req.uri().path()))
            .max_by_key(|(prefix, ..)| prefix.len())
        else {
            return error_response(StatusCode::NOT_FOUND, "no route for this path");
        };
        match hold {
            Some(hold) => hold.clone().handle(service.clone(), req).await,
            None => service.clone().call(req).await,
        }
    }
}

/// The middleware checks proofs for the route's audience, when it has one.
fn with_audience<M: MapRequest>(layer: MandateLayer<M>, route: &Route) -> MandateLayer<M> {
    match &route.audience {
        Some(a) => layer.with_audience(a.clone()),
        None => layer,
    }
}

/// A REST route's mapping: its rules over the middleware's default.
fn rest_map(route: &Route, rules: &[RuleFile]) -> RouteMap {
    let mut m = RouteMap::new().max_body_bytes(route.max_body);
    for rule in rules {
        let mut r = Rule::new();
        if let Some(a) = &rule.action {
            r = r.action(a);
        }
        if let Some(res) = &rule.resource {
            r = r.resource(res);
        }
        for (param, field) in &rule.body_params {
            r = r.body_param(param, field);
        }
        m = m.route(&rule.method, &rule.pattern, r);
    }
    m
}

/// An MCP route's protected-resource metadata (RFC 9728 §3): its
/// well-known path, its URL, and the document; `None` without a
/// `public_url` (the document's `resource` is an absolute URL, never taken
/// from the request's `Host`).
fn metadata_document(route: &Route, issuer_url: Option<&str>) -> Option<(String, String, Bytes)> {
    let Mode::Mcp {
        resource_name,
        resource_documentation,
        ..
    } = &route.mode
    else {
        return None;
    };
    let origin = route.audience.as_ref()?.as_str().to_string();
    // RFC 9728 §3.1: the well-known segment goes between the host and the
    // resource's path.
    let path = format!("/.well-known/oauth-protected-resource{}", route.prefix);
    let mut doc = serde_json::json!({
        "resource": format!("{origin}{}", route_path(&route.prefix)),
        "bearer_methods_supported": ["header"],
        "mandate_token_type": "biscuit",
        "mandate_token_help": "Send a Mandate token (a Biscuit minted by the issuer service, or attenuated \
            from one) as Authorization: Bearer <token>. Mandate tokens are not OAuth access tokens: \
            the issuer service does not run OAuth flows; get a token from it (POST /v1/tokens) or \
            from the agent that delegates to you.",
    });
    if let serde_json::Value::Object(o) = &mut doc {
        if let Some(n) = resource_name {
            o.insert("resource_name".into(), n.clone().into());
        }
        if let Some(d) = resource_documentation {
            o.insert("resource_documentation".into(), d.clone().into());
        }
        if let Some(i) = issuer_url {
            // The MCP authorization specification requires at least one
            // authorization server (the Python SDK refuses the document
            // without): the issuer service, where tokens come from. It is
            // not an OAuth server: `mandate_token_help` says what to do.
            o.insert("authorization_servers".into(), serde_json::json!([i]));
            o.insert("mandate_issuer".into(), i.into());
        }
    }
    let url = format!("{origin}{path}");
    Some((
        path,
        url,
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
    ))
}

fn metadata_response(document: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(document));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// The proxy to one route's upstream: the inner service of the route's
/// middleware, called only for allowed requests.
#[derive(Clone)]
pub(crate) struct Upstream(Arc<UpstreamState>);

struct UpstreamState {
    route: Route,
    client: Client<HttpConnector, Body>,
    metrics: UpstreamMetrics,
    mcp: Option<McpUpstream>,
}

/// What an MCP route adds to the proxy: session binding and `tools/list`
/// filtering.
struct McpUpstream {
    sessions: Sessions,
    map: McpMap,
    /// Records a refused session in the audit log (the middleware recorded
    /// the token-only decision that came before it).
    verifier: Verifier,
}

impl Upstream {
    fn new(
        route: Route,
        client: &Client<HttpConnector, Body>,
        mcp: Option<McpUpstream>,
    ) -> Upstream {
        Upstream(Arc::new(UpstreamState {
            metrics: UpstreamMetrics::new(&route.prefix),
            route,
            client: client.clone(),
            mcp,
        }))
    }
}

impl tower::Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            Ok(match &state.mcp {
                None => state
                    .forward(parts, body)
                    .await
                    .unwrap_or_else(|(status, why)| error_response(status, &why)),
                Some(mcp) => state.forward_mcp(mcp, parts, body).await,
            })
        })
    }
}

impl UpstreamState {
    /// An allowed MCP request: its session id checked against the token's
    /// family and unwrapped, forwarded; the answer's session id wrapped for
    /// the family, a `tools/list` answer filtered.
    async fn forward_mcp(&self, mcp: &McpUpstream, mut parts: Parts, body: Body) -> Response<Body> {
        // The middleware read a POST's body (bounded) and refused a body
        // on any other method: collecting it again costs nothing (and is
        // bounded all the same).
        let bytes = match Limited::new(body, self.route.max_body).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("could not read the request body: {e}"),
                )
            }
        };
        let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let refuse = |status: StatusCode, why: &str| {
            let mut r = error_response(status, why);
            let body = mcp::error_body(json.as_ref(), Refusal::Error(status, why));
            *r.body_mut() = Body::from(serde_json::to_vec(&body).unwrap_or_default());
            r
        };
        let Some(chain) = parts
            .extensions
            .get::<Authorized>()
            .and_then(|a| a.decision().chain.clone())
        else {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an MCP request reached the upstream undecided",
            );
        };
        let family = session_owner(&self.route.prefix, &chain);
        let family = family.as_str();
        if let Some(presented) = parts.headers.get(SESSION_HEADER) {
            let upstream = presented
                .to_str()
                .ok()
                .and_then(|p| mcp.sessions.unwrap(family, p))
                .and_then(|u| HeaderValue::from_str(u).ok());
            match upstream {
                Some(u) => {
                    parts.headers.insert(SESSION_HEADER, u);
                }
                None => {
                    // The token was valid (its decision is recorded as an
                    // allow); the refusal of the session is recorded too,
                    // so an auditor sees the attempt.
                    let mut request = mandate_spec::Request::new(
                        "mcp.session",
                        mcp.map.resource_for(parts.uri.path()),
                    );
                    request.params.insert(
                        "session".into(),
                        mandate_spec::Value::Str(
                            String::from_utf8_lossy(presented.as_bytes())
                                .chars()
                                .take(200)
                                .collect(),
                        ),
                    );
                    mcp.verifier.deny_and_record(
                        request,
                        mandate_verifier::Denial::new(
                            mandate_verifier::DenialKind::NotAllowed,
                            format!(
                                "MCP session refused: it was not opened by this token (token \
                                 family {}, principal {:?})",
                                chain.token_id, chain.principal
                            ),
                        ),
                    );
                    // Answered once its record is durable, like every decision.
                    if let Err(e) = mcp.verifier.audit_durable().await {
                        return refuse(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!("audit log unavailable ({e}); retry later"),
                        );
                    }
                    return refuse(
                        StatusCode::NOT_FOUND,
                        "no such MCP session for this token: a session belongs to the token \
                         (its family and delegation chain) that opened it, on this route; \
                         start a new one (initialize)",
                    );
                }
            }
        }
        let tools_list = json.as_ref().and_then(|j| match Message::read(j) {
            Ok(Message::Request {
                id,
                method: "tools/list",
                ..
            }) => Some(id.clone()),
            _ => None,
        });
        let resource = mcp.map.resource_for(parts.uri.path());
        // An answer the gateway reads (tools/list) must come readable: no
        // content coding it would pass on unfiltered.
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let response = match self.forward(parts, Body::from(bytes)).await {
            Ok(r) => r,
            Err((status, why)) => return refuse(status, &why),
        };
        let (mut head, body) = response.into_parts();
        if let Some(wrapped) = head
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| HeaderValue::from_str(&mcp.sessions.wrap(family, v)).ok())
        {
            head.headers.insert(SESSION_HEADER, wrapped);
        }
        let event_stream = is_event_stream(&head.headers);
        // An answer the gateway reads (an event stream, a tools/list) must
        // come without a content coding it would pass on unread.
        if (event_stream || tools_list.is_some()) && coded(&head.headers) {
            return refuse(
                StatusCode::BAD_GATEWAY,
                "the upstream's answer has a content coding the gateway cannot read",
            );
        }
        // Only an answer the gateway filters needs the token's capability.
        let capability = (event_stream || tools_list.is_some())
            .then(|| mandate_spec::effective_capabilities(&chain).pop())
            .flatten();
        match (capability, event_stream) {
            // Every event stream (a POST's answer, the GET stream, a resumed
            // one replaying an old answer) is filtered event by event, and
            // ends when the token does.
            (Some(capability), true) => {
                head.headers.remove(header::CONTENT_LENGTH);
                let body = filter_events(body, capability, resource);
                Response::from_parts(head, until(body, deadline(&chain)))
            }
            (Some(capability), false) if tools_list.is_some() && head.status.is_success() => {
                match filtered(head, body, capability, &resource).await {
                    Ok(r) => r,
                    Err(why) => refuse(StatusCode::BAD_GATEWAY, &why),
                }
            }
            _ => Response::from_parts(head, body),
        }
    }

    /// Forwards an allowed request to the upstream (the Mandate token and
    /// proof removed, the route's credential injected), its answer streamed
    /// back; or the status and reason of the upstream's failure.
    async fn forward(
        &self,
        mut parts: Parts,
        body: Body,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let route = &self.route;
        let target =
            upstream_uri(&route.upstream, &parts.uri).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
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
        parts.extensions = http::Extensions::new();
        let upstream = Request::from_parts(parts, body);
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(route.timeout, self.client.request(upstream)).await;
        self.metrics.observe(&answer, started.elapsed());
        match answer {
            Err(_) => Err((
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the upstream did not answer within {:.1} s",
                    route.timeout.as_secs_f64()
                ),
            )),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, upstream = %route.upstream, "upstream request failed");
                Err((
                    StatusCode::BAD_GATEWAY,
                    "the upstream could not be reached or broke the connection".into(),
                ))
            }
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip(&mut parts.headers);
                Ok(Response::from_parts(parts, Body::new(body)))
            }
        }
    }
}

/// Whether an answer is a server-sent event stream.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// `body`, ended when the token's chain expires: a long-lived answer (the
/// `GET` event stream, a long tool call's progress) does not outlive the
/// authority it was opened with. (A revocation does not end a stream
/// already open; every new request is decided.)
fn until(body: Body, expires_at: Option<time::OffsetDateTime>) -> Body {
    use futures_util::StreamExt;
    let Some(expires_at) = expires_at else {
        return body;
    };
    // A token is valid through the second it expires at (SPEC §7).
    let left = expires_at + time::Duration::SECOND - time::OffsetDateTime::now_utc();
    let left = std::time::Duration::try_from(left).unwrap_or_default();
    Body::from_stream(body.into_data_stream().take_until(tokio::time::sleep(left)))
}

/// A JSON `tools/list` answer with every message listing tools narrowed
/// (a batch element by element, whatever the ids); one that cannot be read
/// (larger than [`MAX_TOOLS_LIST_BYTES`], not JSON) is a 502, never passed
/// on unfiltered.
async fn filtered(
    mut head: http::response::Parts,
    body: Body,
    capability: mandate_spec::Capability,
    resource: &str,
) -> Result<Response<Body>, String> {
    let bytes = Limited::new(body, MAX_TOOLS_LIST_BYTES)
        .collect()
        .await
        .map_err(|_| {
            format!(
                "the upstream's tools/list answer is larger than {MAX_TOOLS_LIST_BYTES} bytes \
                 or broke off"
            )
        })?
        .to_bytes();
    let large = bytes.len() > INLINE_FILTER_BYTES;
    let resource = resource.to_string();
    let narrow = move || {
        let mut msg: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        mcp::narrow_listing(&mut msg, &capability, &resource);
        Some(msg.to_string().into_bytes())
    };
    // A large answer is parsed off the executor's threads.
    let rewritten = if large {
        tokio::task::spawn_blocking(narrow).await.ok().flatten()
    } else {
        narrow()
    };
    let Some(b) = rewritten else {
        return Err("the upstream's tools/list answer could not be read to filter it".into());
    };
    head.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(head, Body::from(b)))
}

/// `tools/list` answers up to this size are filtered on the executor.
const INLINE_FILTER_BYTES: usize = 64 * 1024;

/// Whether an answer has a content coding other than `identity` (every
/// `Content-Encoding` header, every listed coding).
fn coded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.to_str().map_or(true, |v| {
            v.split(',')
                .any(|c| !c.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

/// An event stream passed on event by event ([`mcp::EventSplitter`]), each
/// message listing tools narrowed to `capability` ([`mcp::narrow_listing`]),
/// events whose data is not a readable JSON message dropped (and an
/// unfinished last event); a stream that is not UTF-8 or holds an event
/// over [`mcp::MAX_EVENT_BYTES`] ends there.
fn filter_events(body: Body, capability: mandate_spec::Capability, resource: String) -> Body {
    use futures_util::StreamExt;
    struct State {
        upstream: axum::body::BodyDataStream,
        splitter: mcp::EventSplitter,
        capability: mandate_spec::Capability,
        resource: String,
    }
    fn pass(state: &State, events: Vec<String>) -> String {
        let mut rewrite =
            |m: &mut serde_json::Value| mcp::narrow_listing(m, &state.capability, &state.resource);
        events
            .iter()
            .filter_map(|e| mcp::filter_event(e, &mut rewrite))
            .collect()
    }
    let state = State {
        upstream: body.into_data_stream(),
        splitter: mcp::EventSplitter::default(),
        capability,
        resource,
    };
    let stream = futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            match state.upstream.next().await {
                Some(Ok(chunk)) => match state.splitter.push(&chunk) {
                    Ok(events) => {
                        let out = pass(&state, events);
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), Some(state)));
                        }
                    }
                    Err(why) => return Some((Err(std::io::Error::other(why)), None)),
                },
                Some(Err(e)) => return Some((Err(std::io::Error::other(e)), None)),
                // A last event without its blank line is never dispatched
                // by a client: it is not passed on either.
                None => return None,
            }
        }
    });
    Body::from_stream(stream)
}

/// When the chain stops allowing anything: its earliest expiry, and for
/// each hop (and narrowing block) whose every alternative has a `time<=`
/// bound, the latest of those bounds.
fn deadline(chain: &mandate_spec::Chain) -> Option<time::OffsetDateTime> {
    let until = |grant: &mandate_spec::Grant| -> Option<time::OffsetDateTime> {
        let per_alternative = grant.alternatives.iter().map(|a| {
            a.constraints
                .iter()
                .filter_map(|c| match c {
                    mandate_spec::Constraint::NotAfter { at } => Some(*at),
                    _ => None,
                })
                .min()
        });
        // One alternative without a bound leaves the grant unbounded.
        per_alternative
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    };
    let grants = chain
        .hops
        .iter()
        .flat_map(|h| std::iter::once(&h.grant).chain(h.narrowing.iter().map(|n| &n.grant)));
    grants.filter_map(until).chain(chain.expires_at).min()
}

/// Who an MCP session belongs to: the route, the token family and the
/// delegation chain (each hop's block, by its revocation id: its
/// signature) of the token that opened it. A delegate, a sibling, the
/// delegator — even re-delegating to the same key — holds other blocks, so
/// another session; first-party narrowing by the same holder keeps them.
fn session_owner(prefix: &str, chain: &mandate_spec::Chain) -> String {
    // As JSON: no two owners write the same text, whatever the parts hold.
    let blocks: Vec<&str> = chain
        .hops
        .iter()
        .map(|h| h.revocation_id.as_str())
        .collect();
    serde_json::json!([prefix, chain.token_id, blocks]).to_string()
}

/// A route's prefix as operators write it (`/` for the root route).
pub(crate) fn route_label(prefix: &str) -> &str {
    if prefix.is_empty() {
        "/"
    } else {
        prefix
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
fn describe(routes: &[Route]) -> String {
    let mut out = String::from("gateway routes v2");
    for route in routes {
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
        if let Some(h) = route.hold {
            let _ = write!(out, " hold_for_approval_ms={}", h.as_millis());
        }
        match &route.mode {
            Mode::Mcp { resource, .. } => {
                let _ = write!(out, "\nmode=mcp resource={resource:?}");
            }
            Mode::Rest(rules) => {
                let _ = write!(out, "\nmode=rest {}", rest_map(route, rules).describe());
            }
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
