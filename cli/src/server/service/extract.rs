//! Extractors that answer in the service's JSON error format: the admin
//! bearer token and JSON bodies.

use super::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;

/// The token of `Authorization: Bearer <base64>`, decoded to bytes. Whether
/// it verifies and what it allows is decided later, once the request body
/// says what is asked (see `admin.rs`).
pub(crate) struct Bearer(pub(crate) Vec<u8>);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Bearer, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized(
                "missing admin token: send `Authorization: Bearer <token>`".into(),
            )
        })?;
        let text = value.to_str().map_err(|_| {
            ApiError::Unauthorized("the Authorization header is not plain text".into())
        })?;
        let token = mandate_spec::bearer_token(text).ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
        mandate_spec::token_from_text(token)
            .map(Bearer)
            .map_err(|e| ApiError::Unauthorized(format!("admin token unreadable: {e}")))
    }
}

/// `axum::Json`, with its rejections in the service's error format: 413 for
/// a body over the limit, 415 when it is not declared JSON, 400 otherwise
/// (syntax errors and a body of the wrong shape alike).
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ),
        _ => ApiError::BadRequest(rejection.body_text()),
    }
}
