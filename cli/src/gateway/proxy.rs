//! The gateway's request path: route, map, decide with the embedded
//! verifier, strip the Mandate token, inject the upstream's credential,
//! forward with a timeout, and stream both bodies.

use super::config::{Mode, Route};
use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use mandate_spec::Value;
use mandate_verifier::http::{
    denial_response, error_response, MapError, MapRequest, Route as Rule, RouteMap,
};
use mandate_verifier::{Denial, DenialKind, Verifier};
use std::sync::Arc;

/// Everything a request needs, shared.
pub(crate) struct Gateway {
    pub(crate) verifier: Verifier,
    pub(crate) routes: Vec<(Route, Option<RouteMap>)>,
    pub(crate) client: Client<HttpConnector, Body>,
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
    pub(crate) fn new(verifier: Verifier, routes: Vec<Route>) -> Gateway {
        let routes = routes
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
        Gateway {
            verifier,
            routes,
            client,
        }
    }

    /// One request, start to end. Never an `Err`: every failure is a response.
    pub(crate) async fn handle(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let Some((route, map)) = self
            .routes
            .iter()
            .filter(|(r, _)| path.starts_with(&r.prefix))
            .max_by_key(|(r, _)| r.prefix.len())
        else {
            return error_response(StatusCode::NOT_FOUND, "no route for this path");
        };
        let (parts, body) = req.into_parts();
        // Map and decide; the body is read only when the mapping needs it.
        let (decision, body) = match (&route.mode, map) {
            (
                Mode::Mcp {
                    public_methods,
                    resource,
                },
                _,
            ) => {
                let bytes = match read(body, route.max_body).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                match mcp_request(&parts, &bytes, public_methods, resource.as_deref()) {
                    Err(e) => return error_response(e.status, &e.message),
                    Ok(None) => (None, Body::from(bytes)),
                    Ok(Some(request)) => (
                        Some(self.decide(&parts, request, Some(&bytes))),
                        Body::from(bytes),
                    ),
                }
            }
            (Mode::Rest(_), Some(map)) => match MapRequest::body_limit(map, &parts) {
                None => {
                    // A proof of possession covers the body: read it then
                    // (bounded), else stream it untouched.
                    let (body, bytes) = if parts.headers.contains_key(mandate_spec::PROOF_HEADER) {
                        match read(body, route.max_body).await {
                            Ok(b) => (Body::from(b.clone()), Some(b)),
                            Err(resp) => return resp,
                        }
                    } else {
                        (body, None)
                    };
                    match map.map(&parts, None) {
                        Ok(request) => (Some(self.decide(&parts, request, bytes.as_deref())), body),
                        Err(e) => return error_response(e.status, &e.message),
                    }
                }
                Some(limit) => {
                    let bytes = match read(body, limit).await {
                        Ok(b) => b,
                        Err(resp) => return resp,
                    };
                    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
                    match map.map(&parts, json.as_ref()) {
                        Ok(request) => (
                            Some(self.decide(&parts, request, Some(&bytes))),
                            Body::from(bytes),
                        ),
                        Err(e) => return error_response(e.status, &e.message),
                    }
                }
            },
            (Mode::Rest(_), None) => {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "route without mapping")
            }
        };
        if let Some(decision) = &decision {
            if let Err(e) = self.verifier.audit_health() {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("audit log unavailable ({e}); retry later"),
                );
            }
            if !decision.is_allowed() {
                return denial_response(decision);
            }
        }
        self.forward(route, parts, body).await
    }

    /// Decides `request` with the bearer token and, when the request carries
    /// one, the proof of possession over `body` (read when a proof came).
    fn decide(
        &self,
        parts: &Parts,
        request: mandate_spec::Request,
        body: Option<&[u8]>,
    ) -> mandate_verifier::Decision {
        let deny = |kind, why: String| {
            self.verifier
                .deny_and_record(request.clone(), Denial::new(kind, why))
        };
        let Some(token) = bearer(&parts.headers) else {
            return deny(
                DenialKind::MissingToken,
                "no Mandate token: send it as Authorization: Bearer <token>".into(),
            );
        };
        let token = match mandate_spec::token_from_text(token) {
            Ok(t) => t,
            Err(e) => return deny(DenialKind::MalformedToken, e.to_string()),
        };
        let proof = match parts.headers.get(mandate_spec::PROOF_HEADER) {
            None => None,
            Some(h) => match h
                .to_str()
                .map_err(|_| "not text".to_string())
                .and_then(|t| mandate_spec::HolderProof::parse(t).map_err(|e| e.to_string()))
            {
                Ok(p) => Some(p),
                Err(e) => return deny(DenialKind::ProofInvalid, e),
            },
        };
        let mut presented = mandate_verifier::Presented::new(
            parts.method.as_str(),
            body.unwrap_or_default(),
            proof,
        );
        presented.resource = Some(parts.uri.path().to_string());
        self.verifier
            .authorize_presented(&token, &request, &presented)
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
        match tokio::time::timeout(route.timeout, self.client.request(upstream)).await {
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The request a JSON-RPC (MCP) body asks the verifier to decide:
/// `tools/call` → action = the tool's name, parameters = its scalar
/// arguments; a public method → `None` (forwarded without a decision); any
/// other method → action = the method with `/` as `.` (e.g. `resources.read`).
fn mcp_request(
    parts: &Parts,
    body: &[u8],
    public_methods: &[String],
    resource: Option<&str>,
) -> Result<Option<mandate_spec::Request>, MapError> {
    let bad = |m: &str| MapError::bad_request(m);
    if parts.method != http::Method::POST {
        // GET (the server's event stream) and DELETE (end of session) carry
        // no call: public when listed (as `GET`, `DELETE`), else decided as
        // action `http.get` / `http.delete`.
        if public_methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(parts.method.as_str()))
        {
            return Ok(None);
        }
        return Ok(Some(mandate_spec::Request::new(
            format!("http.{}", parts.method.as_str().to_ascii_lowercase()),
            resource.unwrap_or(parts.uri.path()).to_string(),
        )));
    }
    let msg: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("not a JSON-RPC message: {e}")))?;
    let Some(obj) = msg.as_object() else {
        return Err(bad(
            "JSON-RPC batches are not accepted: send one message per request",
        ));
    };
    let method = obj
        .get("method")
        .and_then(|m| m.as_str())
        .ok_or_else(|| bad("a JSON-RPC request needs a method"))?;
    if public_methods.iter().any(|m| m == method) {
        return Ok(None);
    }
    let resource = resource.unwrap_or(parts.uri.path()).to_string();
    if method != "tools/call" {
        return Ok(Some(mandate_spec::Request::new(
            method.replace('/', "."),
            resource,
        )));
    }
    let params = obj.get("params").and_then(|p| p.as_object());
    let name = params
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("tools/call needs params.name"))?;
    let mut request = mandate_spec::Request::new(name, resource);
    if let Some(args) = params
        .and_then(|p| p.get("arguments"))
        .and_then(|a| a.as_object())
    {
        for (k, v) in args {
            let value = match v {
                serde_json::Value::String(s) => Value::Str(s.clone()),
                serde_json::Value::Number(n) if n.is_i64() => {
                    Value::Int(n.as_i64().unwrap_or_default())
                }
                // Other shapes are not parameters: a constraint on them denies.
                _ => continue,
            };
            request.params.insert(k.clone(), value);
        }
    }
    Ok(Some(request))
}
