//! HTTP integration (cargo feature `http`): a tower [`MandateLayer`] for any
//! axum or tower server, the [`Authorized`] extractor, and the request
//! mapping ([`RouteMap`], or any [`MapRequest`]).
//!
//! Per request the middleware maps the HTTP request to (action, resource,
//! parameters), takes the token from `Authorization: Bearer …`, decides with
//! the embedded [`crate::Verifier`] (its cache, revocation list and audit
//! sink included), and then:
//! - **allowed**: puts [`Authorized`] (the decision and chain) into the
//!   request's extensions and calls the inner service;
//! - **denied**: answers itself, never calling the inner service — 401 (no
//!   token, unreadable or unverifiable token), 403 (every other denial),
//!   each with its RFC 6750 `WWW-Authenticate: Bearer` challenge
//!   (`error="invalid_token"`, `"insufficient_scope"`, and the RFC 9728
//!   `resource_metadata` when configured), 400 (a request the verifier refuses as
//!   malformed), 429 with `Retry-After` (a usage limit without room,
//!   `limit_exceeded`), 503 (revocation list, usage counters or audit log
//!   unavailable), with the decision as JSON: `decision`, `reason`,
//!   `denial`, `request`, `chain`.
//!   A denial is an `Ok` response, never a service error.
//!
//! Mapping errors (a query parameter given twice, a body over the limit or
//! not JSON) are answered 400/413/415 with `{"error": …}` before any
//! authorization.
//!
//! A token that requires proof of possession (SPEC §15) needs the
//! `Mandate-Proof` header, checked over the method, the layer's configured
//! audience ([`MandateLayer::audience`]; never the `Host` header; without
//! one every proof is refused), the request-target exactly as sent (path and
//! query, [`request_target`]) and the body. [`decide`] is the one call to
//! the verifier per HTTP request, shared with `mandate gateway`.

mod mapping;
mod middleware;
mod response;

pub use mapping::{
    default_action, json_body, other_fields, query_params, strict_json, MapError, Route, RouteMap,
    DEFAULT_BODY_LIMIT, OTHER_BODY,
};
pub use middleware::{
    bearer, decide, request_target, ColdDecisions, Mandate, MandateLayer, MapRequest, Refusal,
    ResponseFuture,
};
pub use response::{denial_response, denial_status, error_response, Authorized, Denied};
