//! The service's errors: [`ServiceError`] when it cannot start or reach its
//! storage, and [`ApiError`], the JSON error responses a client sees.
//!
//! `ServiceError` is separate from [`mandate_issuer::IssueError`] (which says why one
//! token could not be minted) because it is about the service's environment:
//! configuration, key files, RocksDB, a revocation feed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mandate_verifier::{Denial, VerifierError};
use serde_json::json;
use std::path::PathBuf;

/// Why the issuer service could not start, or could not reach its storage.
/// Every message fits on one line and names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration is unusable: unreadable or malformed file, a
    /// missing setting, no root key, an unknown current key id. Fix the
    /// setting the message names.
    #[error("config: {0}")]
    Config(String),
    /// A root key file cannot be read or does not hold
    /// `ed25519-private/<hex>`. The message names the file, never its content.
    #[error("root key {id} ({}): {detail}", path.display())]
    KeyFile {
        /// The key id the configuration gives the file.
        id: u32,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The revocation store failed (see [`VerifierError`] for what to do).
    #[error(transparent)]
    Revocations(#[from] VerifierError),
    /// The token registry could not be opened, read or written.
    #[error("token registry {}: {detail}", path.display())]
    Registry {
        /// The registry directory.
        path: PathBuf,
        /// RocksDB's or the decoder's message.
        detail: String,
    },
    /// A [`crate::RevocationSink`] (e.g. a feed publisher) failed: the
    /// revocation was not acknowledged. Retry once the sink is back.
    #[error("revocation sink: {0}")]
    Sink(String),
    /// The fleet's mint stream (`MANDATE_MINTS`) could not be published to,
    /// reached, or followed up to date: a mint is not handed out, a
    /// revocation by principal is refused. Retry once it is back.
    #[error("{0}")]
    Fleet(String),
}

/// An error answered to an HTTP client: a status and `{"error": "..."}`.
/// Internal failures are logged in full and answered with a generic message.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400: bad JSON, an invalid grant, key, duration or selector.
    BadRequest(String),
    /// 401: no admin token, or one that cannot be read or verified.
    Unauthorized(String),
    /// 403: the admin token was read but does not allow the operation.
    Forbidden(String, Box<Denial>),
    /// 404: nothing to act on (e.g. a principal with no live token).
    NotFound(String),
    /// 409: the state does not allow it (an approval already decided, a
    /// request that needs no approval).
    Conflict(String),
    /// 429 with `Retry-After` (seconds, also `retry_after` in the body):
    /// a quota is used up (a token family's pending approval requests).
    TooManyRequests(String, u64),
    /// 413: the body is larger than [`super::MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType(String),
    /// 503: a dependency (the revocation list) is unavailable; logged.
    Unavailable(String),
    /// 503 saying why (the message names no secret): the fleet's mint
    /// stream is unavailable.
    UnavailableBecause(String),
    /// 500: anything else; logged, never shown.
    Internal(String),
}

impl ApiError {
    pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{context}: {e}"))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({ "error": m })),
            ApiError::Unauthorized(m) => {
                let mut r = (StatusCode::UNAUTHORIZED, Json(json!({ "error": m }))).into_response();
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            ApiError::Forbidden(m, denial) => (
                StatusCode::FORBIDDEN,
                json!({ "error": m, "denial": denial }),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({ "error": m })),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({ "error": m })),
            ApiError::TooManyRequests(m, retry_after) => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({ "error": m, "retry_after": retry_after })),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return r;
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": too_large_message() }),
            ),
            ApiError::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({ "error": m }))
            }
            ApiError::Unavailable(detail) => {
                tracing::error!(%detail, "dependency unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "service temporarily unavailable; retry later" }),
                )
            }
            ApiError::UnavailableBecause(why) => {
                tracing::error!(%why, "dependency unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": format!("{why}; retry later") }),
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": "internal error (logged by the service)" }),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

pub(crate) fn too_large_message() -> String {
    format!("request body larger than {} bytes", super::MAX_BODY_BYTES)
}
