//! What the middleware answers and hands on: denial responses (401, 403,
//! 503 with the decision as JSON) and the [`Authorized`] extractor.

use super::mapping::MapError;
use super::middleware::Refusal;
use crate::{Decision, DenialKind};
use axum::body::Body;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use std::sync::Arc;

/// The decision of an allowed request, put in the request's extensions by
/// the middleware. As an axum extractor it reads it back; a handler that is
/// not behind the middleware answers 500 rather than run unauthorized.
#[derive(Debug, Clone)]
pub struct Authorized(pub Arc<Decision>);

impl Authorized {
    /// The decision (always an allow), with the request and the chain.
    pub fn decision(&self) -> &Decision {
        &self.0
    }

    /// The principal the chain acts for.
    pub fn principal(&self) -> &str {
        self.0.chain.as_ref().map_or("", |c| c.principal.as_str())
    }

    /// The agent holding the token (the chain's last hop).
    pub fn agent(&self) -> &str {
        self.0
            .chain
            .as_ref()
            .and_then(|c| c.hops.last())
            .map_or("", |h| h.agent.as_str())
    }
}

/// The decision of a denied request, put in the extensions of the
/// middleware's refusal response (a `needs_approval` one included), so a
/// service wrapping the middleware can act on the decision itself — its
/// request as decided, its approval needed — without reading the body.
#[derive(Debug, Clone)]
pub struct Denied(pub Arc<Decision>);

impl<S: Send + Sync> FromRequestParts<S> for Authorized {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authorized>()
            .cloned()
            .ok_or_else(|| {
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "this route is not behind the Mandate middleware",
                )
            })
    }
}

/// `Option<Authorized>`: `None` for a route served without the middleware
/// (e.g. the same handlers mounted unprotected for a load test).
impl<S: Send + Sync> OptionalFromRequestParts<S> for Authorized {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Authorized>().cloned())
    }
}

/// The status a denial is answered with: 401 when there is no token, or
/// the token is not valid — unreadable, unverifiable, a broken chain,
/// expired or revoked (RFC 6750 §3.1 `invalid_token`) — or the proof of
/// possession is missing or invalid; 503 when the revocation list, the
/// record of used approvals or the usage counters cannot be consulted; 429
/// when a usage limit has no room left (`limit_exceeded`, RFC 6585 §4;
/// [`denial_response`] adds `Retry-After`); 400 for a request the verifier
/// refuses as malformed; 403 for every other denial (a valid token that
/// does not allow the request, `needs_approval` included: its body says
/// what to get approved).
pub fn denial_status(kind: DenialKind) -> StatusCode {
    match kind {
        DenialKind::MissingToken
        | DenialKind::MalformedToken
        | DenialKind::BadSignature
        | DenialKind::UnknownRootKey
        | DenialKind::BrokenChain
        | DenialKind::DepthExceeded
        | DenialKind::Expired
        | DenialKind::Revoked
        | DenialKind::ProofMissing
        | DenialKind::ProofInvalid => StatusCode::UNAUTHORIZED,
        DenialKind::RevocationUnavailable
        | DenialKind::ReplayRecordUnavailable
        | DenialKind::LimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        DenialKind::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
        DenialKind::InvalidRequest => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    }
}

#[derive(Serialize)]
struct DenialBody<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    /// The reason in words, at the top for clients that read one field.
    reason: &'a str,
}

/// The response for a denied decision: the status of [`denial_status`] and
/// the decision as JSON (`decision`, `reason`, `denial`, `request`, `chain`);
/// for `limit_exceeded` (429), `Retry-After: <seconds>` until the limit's
/// window ends (RFC 9110 §10.2.3).
pub fn denial_response(decision: &Decision) -> Response<Body> {
    let (status, reason) = match &decision.denial {
        Some(d) => (denial_status(d.kind), d.reason.as_str()),
        None => (StatusCode::FORBIDDEN, "denied"),
    };
    let body = serde_json::to_vec(&DenialBody { decision, reason }).unwrap_or_default();
    let mut response = json_response(status, body);
    if let Some(limit) = decision.denial.as_ref().and_then(|d| d.limit.as_ref()) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(limit.retry_after.max(1)),
        );
    }
    add_challenge(&mut response, Refusal::Denied(decision), None);
    response
}

/// Sets the `WWW-Authenticate` challenge of a refusal (RFC 6750 §3): on a
/// denial answered 401, `Bearer realm="mandate"` — with
/// `error="invalid_token"` and the reason as `error_description` unless no
/// token was sent at all (§3.1: no error code then); on 403,
/// `error="insufficient_scope"`; on a 400 denial, `error="invalid_request"`.
/// `resource_metadata` (RFC 9728 §5.1) is added when given. Other
/// refusals (a body too large, 503) carry no challenge.
pub(super) fn add_challenge(
    response: &mut Response<Body>,
    refusal: Refusal<'_>,
    resource_metadata: Option<&HeaderValue>,
) {
    let Refusal::Denied(decision) = refusal else {
        return;
    };
    let kind = decision.denial.as_ref().map(|d| d.kind);
    let error = match refusal.status() {
        StatusCode::UNAUTHORIZED if kind == Some(DenialKind::MissingToken) => None,
        StatusCode::UNAUTHORIZED => Some("invalid_token"),
        StatusCode::FORBIDDEN => Some("insufficient_scope"),
        StatusCode::BAD_REQUEST => Some("invalid_request"),
        _ => return,
    };
    let mut challenge = String::from("Bearer realm=\"mandate\"");
    if let Some(error) = error {
        challenge.push_str(&format!(
            ", error=\"{error}\", error_description=\"{}\"",
            description(refusal.reason())
        ));
    }
    if let Some(url) = resource_metadata.and_then(|u| u.to_str().ok()) {
        challenge.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
}

/// The longest `error_description` a challenge carries (the full reason is
/// in the body).
const DESCRIPTION_CHARS: usize = 200;

/// `reason` as an RFC 6750 `error_description`: only the characters §3
/// allows (printable ASCII but `"` and `\`; others become `?`, quotes `'`),
/// at most [`DESCRIPTION_CHARS`] of them.
fn description(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .take(DESCRIPTION_CHARS)
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect();
    if reason.chars().count() > DESCRIPTION_CHARS {
        out.replace_range(out.len() - 3.., "...");
    }
    out
}

/// `url` as the `resource_metadata` of a challenge: an absolute `http(s)`
/// URL whose characters can stand in a quoted string.
pub(super) fn challenge_url(url: &str) -> Result<HeaderValue, MapError> {
    let fits = (url.starts_with("https://") || url.starts_with("http://"))
        && url
            .chars()
            .all(|c| matches!(c, '!'..='~') && c != '"' && c != '\\');
    if !fits {
        return Err(MapError::bad_request(format!(
            "resource_metadata {url:?}: not an absolute http(s) URL of printable characters"
        )));
    }
    HeaderValue::from_str(url).map_err(|e| MapError::bad_request(e.to_string()))
}

/// `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    json_response(status, body)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
