//! HTTP requests → (action, resource, parameters): the [`RouteMap`]
//! mapping, `query_params`, and the whole [`MandateLayer`] in front of a
//! service that records what it is handed.

use super::{ring_key, text};
use crate::{grant, mint_request, Agent};
use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::StatusCode;
use mandate_issuer::Issuer;
use mandate_spec::Grant;
use mandate_verifier::http::{query_params, Authorized, MandateLayer, MapRequest, Route, RouteMap};
use std::sync::{Arc, Mutex, OnceLock};
use tower::{Layer, ServiceExt};

/// Largest body the routes read, in bytes.
const BODY_LIMIT: usize = 4096;

/// A request written as HTTP/1 (`METHOD TARGET`, `Name: value` lines, an
/// empty line, the body), with `$TOKEN` / `$APPROVAL_TOKEN` in a header
/// replaced by a valid token (see [`tokens`]).
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The method.
    pub method: String,
    /// The request target (path and query, or an absolute URI).
    pub target: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RawRequest {
    /// Reads `data`; `None` when its head is not UTF-8 or has no target.
    pub fn parse(data: &[u8]) -> Option<RawRequest> {
        let split = data.windows(2).position(|w| w == b"\n\n");
        let (head, body) = match split {
            Some(i) => (&data[..i], data[i + 2..].to_vec()),
            None => (data, Vec::new()),
        };
        let head = text(head)?;
        let mut lines = head.lines();
        let (method, target) = lines.next()?.split_once(' ')?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| {
                let v = v.trim_start();
                let (token, approval) = tokens();
                let v = v
                    .replace("$APPROVAL_TOKEN", approval)
                    .replace("$TOKEN", token);
                (n.to_string(), v)
            })
            .collect();
        Some(RawRequest {
            method: method.to_string(),
            target: target.trim_end().to_string(),
            headers,
            body,
        })
    }

    /// The request as `http` builds it; `None` when `http` refuses its
    /// method, target or a header (a server would answer 400 before any
    /// middleware runs).
    pub fn to_http(&self) -> Option<http::Request<Body>> {
        let mut b = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.target.as_str());
        for (n, v) in &self.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        b.body(Body::from(self.body.clone())).ok()
    }
}

/// Two valid tokens as base64, minted now (the middleware decides at the
/// current time) by root key 0 of the ring: `$TOKEN` allows reading and
/// listing customers, erasing one, paying up to 1000, anything on
/// `/files/**` and updating orders with `qty<=10`; `$APPROVAL_TOKEN` allows
/// paying, with an approval by ring key 5 above 100.
pub fn tokens() -> (&'static str, &'static str) {
    static T: OnceLock<(String, String)> = OnceLock::new();
    let (a, b) = T.get_or_init(|| {
        let issuer = Issuer::new(ring_key(0));
        let agent = Agent {
            id: "agent-1".into(),
            key: ring_key(1),
        };
        let mint = |g: Grant| {
            issuer
                .mint(&mint_request(&agent, g))
                .expect("the fuzz tokens mint")
                .to_base64()
        };
        let mut g = grant(&["read,list,erase:/api/customers/**"], &[]);
        for (allow, where_) in [
            ("pay:/api/payments", "amount<=1000"),
            ("update:/api/orders/**", "qty<=10"),
        ] {
            g.alternatives
                .extend(grant(&[allow], &[where_]).alternatives);
        }
        g.alternatives
            .extend(grant(&["read,create,update,delete:/files/**"], &[]).alternatives);
        let approver = format!(
            "pay when amount>100 by finance={}",
            mandate_spec::format_public_key(&ring_key(5).public())
        );
        let pay = grant(&["pay:/api/payments"], &[])
            .with_approval(&approver)
            .expect("the approval rule parses");
        (mint(g), mint(pay))
    });
    (a, b)
}

/// The route table every input is mapped with.
pub fn route_map() -> RouteMap {
    RouteMap::new()
        .route(
            "GET",
            "/api/customers",
            Route::new().action("list").resource("/api/customers/"),
        )
        .route(
            "DELETE",
            "/api/customers/{id}",
            Route::new().action("erase").resource("/api/customers/{id}"),
        )
        .route(
            "POST",
            "/api/payments",
            Route::new()
                .action("pay")
                .body_param("amount", "amount")
                .body_param("to", "payee"),
        )
        .route(
            "PUT",
            "/api/orders/{id}/items/{item}",
            Route::new()
                .resource("/api/orders/{id}/{item}")
                .body_param("qty", "qty"),
        )
        .route(
            "*",
            "/files/{*path}",
            Route::new()
                .resource("/files/{path}")
                .without_query_params(),
        )
        .max_body_bytes(BODY_LIMIT)
}

/// An HTTP request (see [`RawRequest`]) through the mapping alone, then
/// through the middleware in front of a recording service.
///
/// Properties: `query_params` refuses a name given twice rather than keep
/// one of them; when the service is called, it holds an allow decision for
/// exactly the request the mapping makes of what the service receives
/// (method, target and body unchanged); no request makes the middleware
/// answer 500.
pub fn http_request(data: &[u8]) {
    let Some(raw) = RawRequest::parse(data) else {
        return;
    };
    let Some(req) = raw.to_http() else { return };
    let (parts, _) = req.into_parts();
    let map = route_map();
    if let Ok(params) = query_params(parts.uri.query()) {
        let pairs =
            form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).count();
        assert_eq!(params.len(), pairs, "a query parameter was dropped");
    }
    let json = MapRequest::body_limit(&map, &parts)
        .and_then(|_| serde_json::from_slice::<serde_json::Value>(&raw.body).ok());
    let mapped = map.map(&parts, json.as_ref());
    if let Ok(r) = &mapped {
        let _ = r.validate();
    }
    through_middleware(&raw, &map);
}

/// What the service behind the middleware was handed.
struct Seen {
    authorized: Option<Authorized>,
    parts: Parts,
    body: Bytes,
}

fn through_middleware(raw: &RawRequest, map: &RouteMap) {
    let Some(req) = raw.to_http() else { return };
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let record = seen.clone();
    let service = tower::service_fn(move |req: http::Request<Body>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let authorized = parts.extensions.get::<Authorized>().cloned();
            *record.lock().expect("not poisoned") = Some(Seen {
                authorized,
                parts,
                body,
            });
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }
    });
    let response = runtime()
        .block_on(layer().layer(service).oneshot(req))
        .unwrap_or_else(|never| match never {});
    assert_ne!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "the middleware answered 500 to {raw:?}"
    );
    let Some(seen) = seen.lock().expect("not poisoned").take() else {
        return;
    };
    let authorized = seen
        .authorized
        .expect("the service was called without a decision");
    let decision = authorized.decision();
    assert!(decision.is_allowed(), "called on {decision:?}");
    assert_eq!(seen.parts.method.as_str(), raw.method, "method changed");
    assert_eq!(
        seen.parts.uri.to_string(),
        raw.to_http()
            .map(|r| r.uri().to_string())
            .unwrap_or_default(),
        "target changed"
    );
    assert_eq!(&seen.body[..], &raw.body[..], "body changed on the way");
    // The decision is about exactly what the service acts upon.
    let json = MapRequest::body_limit(map, &seen.parts)
        .and_then(|_| serde_json::from_slice::<serde_json::Value>(&seen.body).ok());
    let acted = map
        .map(&seen.parts, json.as_ref())
        .expect("what was allowed maps again");
    let decided = &decision.request;
    assert_eq!(
        (&decided.action, &decided.resource, &decided.params),
        (&acted.action, &acted.resource, &acted.params),
        "decided on one request, the service got another"
    );
}

fn layer() -> &'static MandateLayer<RouteMap> {
    static L: OnceLock<MandateLayer<RouteMap>> = OnceLock::new();
    L.get_or_init(|| MandateLayer::new(super::ring_verifier(), route_map()))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}
