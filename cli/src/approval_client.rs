//! The issuer service's approval routes as an agent calls them (SERVICE.md
//! S3 Approvals): file a request that needs approval with the agent's own
//! token (`POST /v1/approvals`), then wait for a person's decision by
//! long-polling `GET /v1/approvals/{id}?wait=…`. Shared by `mandate
//! request-approval` and the gateway's hold (SPEC §17).
//!
//! `https://` (rustls, the system's CA certificates or `SSL_CERT_FILE`'s:
//! [`mandate_server::tls`]) or `http://`: the agent's token travels in each
//! filing, so plain http is for loopback (a WARN says so otherwise).

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use mandate_spec::Request as Decided;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest wait asked of the service in one long-poll.
const LONG_POLL: Duration = Duration::from_secs(30);
/// How long an answer may take beyond the wait asked.
const SLACK: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Pauses between polls when the service answers a wait early (one that
/// does not long-poll), doubling up to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// The most characters kept of a text the service sends (a name, a reason).
const MAX_TEXT_CHARS: usize = 500;

/// An issuer service's approval routes.
#[derive(Clone)]
pub(crate) struct ApprovalService {
    /// `http(s)://HOST[:PORT][/PATH]`, without a trailing `/`.
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl std::fmt::Debug for ApprovalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalService")
            .field("base", &self.base)
            .finish()
    }
}

/// What filing a request answered.
#[derive(Debug)]
pub(crate) enum Filed {
    /// Queued for a person: its id.
    Queued(String),
    /// Refused by the service (it needs no approval: 409; the token does not
    /// allow it at all: 403; …): the status and the service's reason.
    Refused(StatusCode, String),
    /// Not queued now (429: the token family has as many requests waiting
    /// as the service allows): the service's reason, and the seconds after
    /// which one more may be filed.
    Throttled { reason: String, retry_after: u64 },
}

/// Where a filed request stands after waiting.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Approved: the approval block (base64) and who approved it, as the
    /// service says.
    Approved { block: String, by: String },
    /// Denied by a person: who, and their reason.
    Denied { by: String, reason: String },
    /// Still pending when the wait ended; the last error met, if the
    /// service could not be asked.
    Pending { last_error: Option<String> },
}

/// A call that did not get an answer it could read.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The service could not be reached, broke off, or answered 5xx.
    Unavailable(String),
    /// It answered something else than the route's answer.
    Unexpected(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unavailable(why) | CallError::Unexpected(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CallError {}

/// The fields of an approval record this client reads.
#[derive(Deserialize)]
struct Record {
    id: String,
    status: String,
    #[serde(default)]
    decided_by: Option<String>,
    #[serde(default)]
    denied_because: Option<String>,
    #[serde(default)]
    approval_block: Option<String>,
}

impl ApprovalService {
    /// The service at `url` (`http(s)://HOST[:PORT][/PATH]`).
    pub(crate) fn new(url: &str) -> Result<ApprovalService, String> {
        let base = url.trim_end_matches('/');
        let uri: Uri = base
            .parse()
            .map_err(|_| format!("{url:?}: not a URL (https://HOST[:PORT])"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "{url:?}: expected https://HOST[:PORT] or http://HOST:PORT"
                ))
            }
        };
        let Some(authority) = uri.authority() else {
            return Err(format!(
                "{url:?}: expected https://HOST[:PORT] or http://HOST:PORT"
            ));
        };
        if authority.as_str().contains('@') || uri.query().is_some() {
            return Err(format!(
                "{url:?}: no user information or query in the service's URL"
            ));
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = if https {
            let tls = mandate_server::tls::client_config(&format!("the approval service {url:?}"))?;
            HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .wrap_connector(http)
        } else {
            if !is_loopback(authority.host()) {
                tracing::warn!(
                    service = %base,
                    "the approval service is reached over plain http: agents' tokens cross the \
                     network in clear; use https"
                );
            }
            // Never used for TLS (every URL asked is under the http base).
            let none = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
            .with_no_client_auth();
            HttpsConnectorBuilder::new()
                .with_tls_config(none)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(ApprovalService {
            base: base.to_string(),
            client,
        })
    }

    /// `POST /v1/approvals` with the agent's `token` (base64): the service
    /// decides `request` with its own verifier and queues it when it needs
    /// approval.
    pub(crate) async fn file(&self, token: &str, request: &Decided) -> Result<Filed, CallError> {
        let body = serde_json::json!({
            "action": request.action,
            "resource": request.resource,
            "params": request.params,
        });
        let bearer = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| CallError::Unexpected("the token is not a valid header value".into()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/v1/approvals", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, bearer)
            .body(Body::from(body.to_string()))
            .map_err(|e| CallError::Unexpected(e.to_string()))?;
        let (status, bytes) = self.call(req, SLACK).await?;
        if status == StatusCode::CREATED {
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
                CallError::Unexpected(format!("the service's answer is not a record: {e}"))
            })?;
            if uuid::Uuid::parse_str(&record.id).is_err() {
                return Err(CallError::Unexpected(
                    "the service answered an id that is not a UUID".into(),
                ));
            }
            return Ok(Filed::Queued(record.id));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|j| j.get("retry_after").and_then(serde_json::Value::as_u64))
                .unwrap_or(1)
                .clamp(1, 86_400);
            return Ok(Filed::Throttled {
                reason: reason_of(&bytes),
                retry_after,
            });
        }
        Ok(Filed::Refused(status, reason_of(&bytes)))
    }

    /// Waits until request `id` is decided or `deadline` passes, asking the
    /// service to hold each answer up to 30 s (`?wait=`). A service that
    /// answers early (one that does not long-poll) is polled with growing
    /// pauses; one that cannot be reached is asked again until the
    /// deadline.
    pub(crate) async fn wait(&self, id: &str, deadline: Instant) -> Result<Decision, CallError> {
        let mut pause = BACKOFF.0;
        let mut last_error: Option<String>;
        let mut long_poll = true;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Whole seconds, at least one: `wait=0s` would not wait.
            let wait = left.min(LONG_POLL).as_secs().max(1);
            let asked = Instant::now();
            match self.status(id, long_poll.then_some(wait)).await {
                Ok(record) => {
                    last_error = None;
                    match record.status.as_str() {
                        "approved" => {
                            let block = record.approval_block.ok_or_else(|| {
                                CallError::Unexpected(
                                    "the service says approved but sent no approval block".into(),
                                )
                            })?;
                            return Ok(Decision::Approved {
                                block,
                                by: clip(record.decided_by.as_deref().unwrap_or("")),
                            });
                        }
                        "denied" => {
                            return Ok(Decision::Denied {
                                by: clip(record.decided_by.as_deref().unwrap_or("")),
                                reason: clip(record.denied_because.as_deref().unwrap_or("")),
                            })
                        }
                        "pending" => {}
                        other => {
                            return Err(CallError::Unexpected(format!(
                                "the service says request {id} is {:?}",
                                clip(other)
                            )))
                        }
                    }
                    // Held as asked: ask again at once.
                    if long_poll && asked.elapsed() >= Duration::from_secs(wait) / 2 {
                        pause = BACKOFF.0;
                        if Instant::now() >= deadline {
                            return Ok(Decision::Pending { last_error });
                        }
                        continue;
                    }
                }
                // A service that refuses the wait parameter is polled.
                Err(Asked::BadRequest) if long_poll => {
                    long_poll = false;
                    continue;
                }
                Err(Asked::BadRequest) => {
                    return Err(CallError::Unexpected(format!(
                        "the service refuses to show request {id}"
                    )))
                }
                Err(Asked::Call(CallError::Unavailable(why))) => last_error = Some(why),
                Err(Asked::Call(e)) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Decision::Pending { last_error });
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(BACKOFF.1);
        }
    }

    /// `GET /v1/approvals/{id}[?wait=Ns]`.
    async fn status(&self, id: &str, wait: Option<u64>) -> Result<Record, Asked> {
        // Ids are UUIDs: nothing else reaches a path.
        let id = uuid::Uuid::parse_str(id)
            .map_err(|_| Asked::Call(CallError::Unexpected(format!("{id:?} is not an id"))))?;
        let uri = match wait {
            Some(s) => format!("{}/v1/approvals/{id}?wait={s}s", self.base),
            None => format!("{}/v1/approvals/{id}", self.base),
        };
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Body::empty())
            .map_err(|e| Asked::Call(CallError::Unexpected(e.to_string())))?;
        let limit = Duration::from_secs(wait.unwrap_or(0)) + SLACK;
        let (status, bytes) = self.call(req, limit).await.map_err(Asked::Call)?;
        match status {
            StatusCode::OK => serde_json::from_slice(&bytes).map_err(|e| {
                Asked::Call(CallError::Unexpected(format!(
                    "the service's answer is not a record: {e}"
                )))
            }),
            StatusCode::BAD_REQUEST => Err(Asked::BadRequest),
            StatusCode::NOT_FOUND => Err(Asked::Call(CallError::Unexpected(format!(
                "the service knows no approval request {id}"
            )))),
            s => Err(Asked::Call(CallError::Unexpected(format!(
                "the service answered {s}: {}",
                reason_of(&bytes)
            )))),
        }
    }

    /// One call, its answer read (bounded) within `limit`; a 5xx is
    /// [`CallError::Unavailable`].
    async fn call(
        &self,
        req: Request<Body>,
        limit: Duration,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let answer = tokio::time::timeout(limit, async {
            let response =
                self.client.request(req).await.map_err(|e| {
                    CallError::Unavailable(format!("{}: {}", self.base, causes(&e)))
                })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::Unavailable(format!("{}: {e}", self.base)))?
                .to_bytes();
            Ok((status, bytes))
        })
        .await
        .map_err(|_| {
            CallError::Unavailable(format!(
                "{}: no answer within {} s",
                self.base,
                limit.as_secs()
            ))
        })??;
        if answer.0.is_server_error() {
            return Err(CallError::Unavailable(format!(
                "{} answered {}: {}",
                self.base,
                answer.0,
                reason_of(&answer.1)
            )));
        }
        Ok(answer)
    }
}

/// Why a status request failed.
enum Asked {
    /// 400: the service refuses the request (e.g. a `wait` it does not take).
    BadRequest,
    Call(CallError),
}

/// The `error` (or `reason`) of a JSON answer, else its first characters.
fn reason_of(bytes: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
    let text = json
        .as_ref()
        .and_then(|j| j.get("error").or_else(|| j.get("reason")))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).to_string());
    clip(&text)
}

/// At most [`MAX_TEXT_CHARS`] characters of a text the service sent.
fn clip(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

/// Whether `host` (a URL's host) is this machine: `localhost` or a loopback
/// address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `e` and its causes, `: `-separated (hyper's "client error (Connect)"
/// alone does not say that a certificate was refused).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    clip(&text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_http_or_https_urls_without_credentials() {
        assert!(ApprovalService::new("http://127.0.0.1:8080").is_ok());
        assert_eq!(
            ApprovalService::new("http://issuer:8080/base/")
                .unwrap()
                .base,
            "http://issuer:8080/base"
        );
        for (bad, needle) in [
            (
                "ftp://issuer",
                "expected https://HOST[:PORT] or http://HOST:PORT",
            ),
            ("issuer:8080", "expected https://"),
            ("https://u:p@issuer", "no user information"),
            ("http://u:p@issuer", "no user information"),
            ("http://issuer/?x=1", "no user information or query"),
            ("not a url", "not a URL"),
        ] {
            let e = ApprovalService::new(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn loopback_hosts_are_known() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.1", "[::1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["issuer", "10.0.0.1", "[2001:db8::1]", "localhost.example"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn reasons_are_read_from_json_and_clipped() {
        assert_eq!(reason_of(br#"{"error":"no"}"#), "no");
        assert_eq!(reason_of(b"plain"), "plain");
        assert_eq!(reason_of(&[b'x'; 2000]).chars().count(), MAX_TEXT_CHARS);
    }
}
