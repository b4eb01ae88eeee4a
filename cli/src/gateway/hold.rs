//! Holding a request that needs approval (SPEC §17, "Held for approval"):
//! on a route with `hold_for_approval`, a request the verifier answers
//! `needs_approval` is filed at the issuer service with the agent's own
//! token — exactly as the agent would file it — and held open while a
//! person decides. Approved: the approval block is attached to the token
//! the agent presented and the very same request (head and body, as read)
//! goes through the route's stack again, so the verifier decides it anew
//! and spends the approval (single use) before it is forwarded. Denied, or
//! not decided in time: a denial with the approver's reason, recorded in
//! the audit log. A client that goes away ends the wait; nothing is
//! forwarded.
//!
//! An MCP request whose client accepts `text/event-stream` is answered at
//! once with an event stream: `notifications/progress` every few seconds
//! while it waits (when the request carries `_meta.progressToken`, else an
//! SSE comment), then the JSON-RPC response on the same stream.

use super::proxy::RouteService;
use crate::approval_client::{ApprovalService, Decision as Decided, Filed};
use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mandate_server::mcp::{self, Message};
use mandate_verifier::http::{bearer, denial_response, error_response, Denied, Refusal};
use mandate_verifier::{Decision, Denial, DenialKind, Verifier};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// How many requests one gateway holds at a time; past it, a request that
/// needs approval is answered `needs_approval` at once.
const MAX_HELD: usize = 1024;
/// How many body bytes the requests held keep, in all (counted in KiB);
/// past it, likewise.
const MAX_HELD_KIB: usize = 64 * 1024;
/// One token family (an agent and everything delegated from it) holds at
/// most 1/`FAMILY_SHARE` of the requests and of the body bytes: past it,
/// its requests are answered `needs_approval` at once, so one agent cannot
/// fill the gateway's holds for every other.
const FAMILY_SHARE: usize = 8;
/// How often a held event stream says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The largest final answer read to put on a held event stream.
const MAX_FINAL_BYTES: usize = 8 << 20;
/// The header naming the approval request a refusal is about.
const APPROVAL_HEADER: &str = "mandate-approval-id";

/// What every held route shares: the issuer service and the bound on
/// requests held at once.
pub(crate) struct Holds {
    service: ApprovalService,
    permits: Arc<Semaphore>,
    kib: Arc<Semaphore>,
    /// Requests and body KiB held now, by token family.
    families: Arc<Mutex<HashMap<String, (usize, usize)>>>,
}

impl Holds {
    /// Holds filed at the issuer service at `url` (checked by the
    /// configuration).
    pub(crate) fn new(url: &str) -> Result<Arc<Holds>, String> {
        Ok(Arc::new(Holds {
            service: ApprovalService::new(url)?,
            permits: Arc::new(Semaphore::new(MAX_HELD)),
            kib: Arc::new(Semaphore::new(MAX_HELD_KIB)),
            families: Arc::default(),
        }))
    }

    /// A place for one more request of token family `family` keeping `kib`
    /// KiB of body, within the family's share (1/[`FAMILY_SHARE`] of the
    /// requests and of the bytes held); `None` past it.
    fn share(&self, family: &str, kib: usize) -> Option<Share> {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let (held, held_kib) = families.get(family).copied().unwrap_or((0, 0));
        if held >= MAX_HELD / FAMILY_SHARE || held_kib + kib > MAX_HELD_KIB / FAMILY_SHARE {
            return None;
        }
        families.insert(family.to_string(), (held + 1, held_kib + kib));
        Some(Share {
            families: self.families.clone(),
            family: family.to_string(),
            kib,
        })
    }
}

/// One held request's place in its token family's share, given back when
/// dropped.
struct Share {
    families: Arc<Mutex<HashMap<String, (usize, usize)>>>,
    family: String,
    kib: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((held, held_kib)) = families.get_mut(&self.family) {
            *held = held.saturating_sub(1);
            *held_kib = held_kib.saturating_sub(self.kib);
            if *held == 0 {
                families.remove(&self.family);
            }
        }
    }
}

/// One route's hold.
pub(crate) struct Hold {
    pub(crate) within: Duration,
    pub(crate) max_body: usize,
    pub(crate) mcp: bool,
    /// The route, as operators write it (for logs).
    pub(crate) label: String,
    pub(crate) shared: Arc<Holds>,
    /// The route's verifier (its policy hash): records how a hold ended.
    pub(crate) verifier: Verifier,
}

/// A request's head, kept to send the request through the stack again.
#[derive(Clone)]
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    original: Option<axum::extract::OriginalUri>,
}

impl Head {
    /// The request again, with `body` and, when given, another token.
    fn request(&self, token: Option<&str>, body: Bytes) -> Request<Body> {
        let mut req = Request::new(Body::from(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        if let Some(o) = &self.original {
            req.extensions_mut().insert(o.clone());
        }
        if let Some(t) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            req.headers_mut().insert(header::AUTHORIZATION, t);
        }
        req
    }
}

/// A request being held: what it needs to end. Counted in
/// [`super::HELD`] while it lives.
struct Held {
    hold: Arc<Hold>,
    service: RouteService,
    head: Head,
    body: Bytes,
    /// The request's JSON (MCP routes): for JSON-RPC refusals.
    json: Option<Json>,
    /// The `needs_approval` decision.
    decision: Arc<Decision>,
    token: String,
    id: String,
    started: Instant,
    _permit: OwnedSemaphorePermit,
    _kib: OwnedSemaphorePermit,
    _share: Share,
    _gauge: Gauge,
}

/// [`super::HELD`] raised while this lives.
struct Gauge;

impl Gauge {
    fn up() -> Gauge {
        metrics::gauge!(super::HELD).increment(1.0);
        Gauge
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!(super::HELD).decrement(1.0);
    }
}

/// Counts how a hold on `route` ended ([`super::HOLDS`]).
fn ended(route: &str, outcome: &'static str) {
    metrics::counter!(super::HOLDS, "route" => route.to_string(), "outcome" => outcome)
        .increment(1);
}

impl Hold {
    /// A request on this route: through the route's stack; held when the
    /// verifier answers `needs_approval`.
    pub(crate) async fn handle(
        self: Arc<Self>,
        service: RouteService,
        req: Request<Body>,
    ) -> Response<Body> {
        // A proof of possession signs the token's bytes, which the approval
        // changes: such a request cannot be sent again for the agent.
        if req.headers().contains_key(mandate_spec::PROOF_HEADER) {
            return service.call(req).await;
        }
        let (parts, body) = req.into_parts();
        let head = Head {
            original: parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .cloned(),
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        };
        let body = match read(body, &head.headers, self.max_body).await {
            Ok(b) => b,
            Err((status, why)) => return self.refuse(None, Refusal::Error(status, &why), None),
        };
        let first = service.clone().call(head.request(None, body.clone())).await;
        let decision = match first.extensions().get::<Denied>() {
            Some(Denied(d)) if d.needs_approval() => d.clone(),
            _ => return first,
        };
        let Some(token) = bearer(&head.headers).map(str::to_string) else {
            return first;
        };
        let kib = u32::try_from(body.len() / 1024 + 1).unwrap_or(u32::MAX);
        // The token family's share first: one agent (and its delegates)
        // never holds more than its share of the gateway's places.
        let family = decision.chain.as_ref().map(|c| c.token_id.clone());
        let Some(share) = family
            .as_deref()
            .and_then(|f| self.shared.share(f, kib as usize))
        else {
            tracing::warn!(
                route = %self.label,
                token_family = ?family,
                held = MAX_HELD / FAMILY_SHARE,
                held_kib = MAX_HELD_KIB / FAMILY_SHARE,
                "not held for approval: this token family holds its share of the gateway's \
                 holds already"
            );
            return first;
        };
        let permits = self
            .shared
            .permits
            .clone()
            .try_acquire_owned()
            .and_then(|p| {
                let k = self.shared.kib.clone().try_acquire_many_owned(kib)?;
                Ok((p, k))
            });
        let Ok((permit, kib)) = permits else {
            tracing::warn!(
                route = %self.label,
                held = MAX_HELD,
                held_kib = MAX_HELD_KIB,
                "not held for approval: too many requests (or body bytes) held already"
            );
            return first;
        };
        let json: Option<Json> = if self.mcp {
            serde_json::from_slice(&body).ok()
        } else {
            None
        };
        let id = match self.shared.service.file(&token, &decision.request).await {
            Ok(Filed::Queued(id)) => id,
            Ok(Filed::Refused(status, why)) => {
                // The service decides otherwise (needs no approval, not
                // allowed): the verifier's answer stands.
                tracing::warn!(
                    route = %self.label,
                    %status,
                    reason = ?why,
                    "not held for approval: the issuer service refused to file the request"
                );
                return first;
            }
            Ok(Filed::Throttled {
                reason,
                retry_after,
            }) => {
                // The agent's family has as many requests waiting as the
                // service allows: told so, and when to try again.
                tracing::warn!(
                    route = %self.label,
                    reason = ?reason,
                    retry_after,
                    "not held for approval: the issuer service queues no more for this token family now"
                );
                let why = format!(
                    "this request needs approval, and the approval service does not queue it \
                     now: {reason}"
                );
                let mut response = self.refuse(
                    json.as_ref(),
                    Refusal::Error(StatusCode::TOO_MANY_REQUESTS, &why),
                    None,
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return response;
            }
            Err(e) => {
                tracing::warn!(route = %self.label, error = %e, "not held for approval");
                let why = format!(
                    "this request needs approval, and the approval service could not be reached \
                     to file it ({e}); retry later"
                );
                return self.refuse(
                    json.as_ref(),
                    Refusal::Error(StatusCode::SERVICE_UNAVAILABLE, &why),
                    None,
                );
            }
        };
        tracing::info!(
            approval = %id,
            route = %self.label,
            principal = ?decision.chain.as_ref().map(|c| c.principal.as_str()),
            action = ?decision.request.action,
            resource = ?decision.request.resource,
            within_s = self.within.as_secs(),
            "held for approval: filed at the issuer service"
        );
        let streams = json.as_ref().is_some_and(|j| {
            matches!(Message::read(j), Ok(Message::Request { .. }))
                && head.method == Method::POST
                && accepts_events(&head.headers)
        });
        let progress_token = json
            .as_ref()
            .and_then(|j| j.pointer("/params/_meta/progressToken"))
            .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
            .cloned();
        let held = Held {
            hold: self.clone(),
            service,
            head,
            body,
            json,
            decision,
            token,
            id,
            started: Instant::now(),
            _permit: permit,
            _kib: kib,
            _share: share,
            _gauge: Gauge::up(),
        };
        if streams {
            return held.stream(progress_token);
        }
        // Dropped with this future when the client goes away: nothing is
        // forwarded then.
        let mut watch = Watch::new(&held.id, &self.label);
        let decided = held.wait().await;
        watch.done();
        held.finish(decided).await
    }

    /// A refusal in the route's protocol (a JSON-RPC error on an MCP
    /// route), naming the approval request when there is one.
    fn refuse(
        &self,
        json: Option<&Json>,
        refusal: Refusal<'_>,
        id: Option<&str>,
    ) -> Response<Body> {
        let mut response = match refusal {
            Refusal::Denied(d) => denial_response(d),
            Refusal::Error(status, why) => error_response(status, why),
        };
        if self.mcp {
            let body = mcp::error_body(json, refusal);
            *response.body_mut() = Body::from(serde_json::to_vec(&body).unwrap_or_default());
        }
        if let Some(v) = id.and_then(|i| HeaderValue::from_str(i).ok()) {
            response.headers_mut().insert(APPROVAL_HEADER, v);
        }
        response
    }
}

impl Held {
    /// Waits for the decision until the route's hold ends.
    async fn wait(&self) -> Result<Decided, String> {
        self.hold
            .shared
            .service
            .wait(&self.id, self.started + self.hold.within)
            .await
            .map_err(|e| e.to_string())
    }

    /// The answer once decided: approved, the request sent through the
    /// stack again with the approval attached; else a recorded denial.
    async fn finish(&self, decided: Result<Decided, String>) -> Response<Body> {
        let waited_ms = self.started.elapsed().as_millis() as u64;
        let hold = &self.hold;
        let (kind, reason) = match decided {
            Ok(Decided::Approved { block, by }) => {
                let token = self.token.clone();
                let attached = tokio::task::spawn_blocking(move || {
                    let bytes = mandate_spec::token_from_text(&token).map_err(|e| e.to_string())?;
                    mandate_attenuate::attach_approval(&bytes, &block)
                        .map(|a| a.to_base64())
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                let approved = match attached {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(approval = %self.id, route = %hold.label, error = %e,
                            "the approval service's approval block cannot be attached");
                        ended(&hold.label, "error");
                        let why = format!(
                            "approval request {} was approved, but the approval block the \
                             service sent cannot be attached: {e}",
                            self.id
                        );
                        return hold.refuse(
                            self.json.as_ref(),
                            Refusal::Error(StatusCode::BAD_GATEWAY, &why),
                            Some(&self.id),
                        );
                    }
                };
                let response = self
                    .service
                    .clone()
                    .call(self.head.request(Some(&approved), self.body.clone()))
                    .await;
                tracing::info!(
                    approval = %self.id,
                    route = %hold.label,
                    decision = "approved",
                    approver = ?by,
                    waited_ms,
                    status = response.status().as_u16(),
                    "held request approved: decided again with the approval attached"
                );
                ended(&hold.label, "approved");
                return response;
            }
            Ok(Decided::Denied { by, reason }) => {
                tracing::info!(approval = %self.id, route = %hold.label, decision = "denied",
                    approver = ?by, reason = ?reason, waited_ms, "held request denied by a person");
                ended(&hold.label, "denied");
                (
                    DenialKind::NotAllowed,
                    format!(
                        "approval request {} was denied by {} after {:.1} s: {reason}",
                        self.id,
                        if by.is_empty() { "the approver" } else { &by },
                        waited_ms as f64 / 1000.0
                    ),
                )
            }
            Ok(Decided::Pending { last_error }) => {
                tracing::info!(approval = %self.id, route = %hold.label, decision = "timeout",
                    waited_ms, last_error = ?last_error, "held request not approved in time");
                ended(&hold.label, "timeout");
                let mut why = format!(
                    "not approved within {}: approval request {} is still pending at the issuer \
                     service",
                    human(hold.within),
                    self.id
                );
                if let Some(e) = last_error {
                    why.push_str(&format!(" (which could not be asked: {e})"));
                }
                (DenialKind::NeedsApproval, why)
            }
            Err(e) => {
                tracing::warn!(approval = %self.id, route = %hold.label, error = %e, waited_ms,
                    "waiting for a held request's approval failed");
                ended(&hold.label, "error");
                (
                    DenialKind::NeedsApproval,
                    format!(
                        "approval request {} could not be followed at the issuer service: {e}",
                        self.id
                    ),
                )
            }
        };
        self.deny(kind, reason).await
    }

    /// Records how the hold ended (after the `needs_approval` decision
    /// already recorded, naming the token family and principal) and
    /// answers it once the record is durable.
    async fn deny(&self, kind: DenialKind, reason: String) -> Response<Body> {
        let hold = &self.hold;
        let reason = match &self.decision.chain {
            Some(c) => format!(
                "{reason} (token family {}, principal {:?})",
                c.token_id, c.principal
            ),
            None => reason,
        };
        let decision = hold
            .verifier
            .deny_and_record(self.decision.request.clone(), Denial::new(kind, reason));
        if let Err(e) = hold.verifier.audit_durable().await {
            let why = format!("audit log unavailable ({e}); retry later");
            return hold.refuse(
                self.json.as_ref(),
                Refusal::Error(StatusCode::SERVICE_UNAVAILABLE, &why),
                Some(&self.id),
            );
        }
        hold.refuse(
            self.json.as_ref(),
            Refusal::Denied(&decision),
            Some(&self.id),
        )
    }

    /// Answers at once with an event stream: waiting notices while a
    /// person decides, then the answer as a JSON-RPC message. The wait
    /// runs in a task of its own that ends when the client goes away.
    fn stream(self, progress_token: Option<Json>) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        tokio::spawn(async move {
            let mut watch = Watch::new(&self.id, &self.hold.label);
            let total = self.hold.within.as_secs();
            let waiting = |progress: u64| -> Bytes {
                let message = format!("waiting for approval {}", self.id);
                match &progress_token {
                    Some(t) => {
                        let n = json!({
                            "jsonrpc": "2.0",
                            "method": "notifications/progress",
                            "params": {
                                "progressToken": t,
                                "progress": progress,
                                "total": total,
                                "message": message,
                            },
                        });
                        Bytes::from(format!("event: message\ndata: {n}\n\n"))
                    }
                    None => Bytes::from(format!(": {message}\n\n")),
                }
            };
            let decided = {
                let wait = self.wait();
                tokio::pin!(wait);
                let mut tick = tokio::time::interval(PROGRESS_EVERY);
                loop {
                    tokio::select! {
                        d = &mut wait => break d,
                        _ = tick.tick() => {
                            let at = self.started.elapsed().as_secs();
                            if tx.send(waiting(at)).await.is_err() {
                                return;
                            }
                        }
                        () = tx.closed() => return,
                    }
                }
            };
            if tx.is_closed() {
                return;
            }
            watch.done();
            let response = self.finish(decided).await;
            for chunk in final_events(response, self.json.as_ref()).await {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
        });
        let mut response = Response::new(Body::from_stream(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The final answer on a held event stream: an event stream's events as
/// they are (the route's filtering already applied); a JSON message as one
/// event; anything else as a JSON-RPC error.
async fn final_events(response: Response<Body>, request: Option<&Json>) -> Vec<Bytes> {
    let is_events = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_FINAL_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes());
    let message = match bytes {
        Ok(b) if is_events => return vec![b],
        Ok(b) => serde_json::from_slice::<Json>(&b).ok(),
        Err(_) => None,
    };
    let message = message.unwrap_or_else(|| {
        let why = format!("the upstream's answer ({status}) could not be read");
        mcp::error_body(request, Refusal::Error(StatusCode::BAD_GATEWAY, &why))
    });
    vec![Bytes::from(format!("event: message\ndata: {message}\n\n"))]
}

/// Logs a wait that ends without a decision being acted on: its future was
/// dropped (the client went away) before [`Watch::done`].
struct Watch {
    id: String,
    route: String,
    started: Instant,
    done: bool,
}

impl Watch {
    fn new(id: &str, route: &str) -> Watch {
        Watch {
            id: id.to_string(),
            route: route.to_string(),
            started: Instant::now(),
            done: false,
        }
    }

    fn done(&mut self) {
        self.done = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            ended(&self.route, "cancelled");
            tracing::info!(
                approval = %self.id,
                route = %self.route,
                decision = "cancelled",
                waited_ms = self.started.elapsed().as_millis() as u64,
                "held request cancelled: the client went away; nothing forwarded"
            );
        }
    }
}

/// Whether the client takes an event stream (`Accept`).
fn accepts_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// The body, read up to `limit` bytes (a held request is sent again).
async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes (max_body of a route that holds)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {e}"),
        )),
    }
}

/// A duration as configured: `2m`, `90s`, `1m30s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_configured() {
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn event_streams_are_accepted_by_media_type_only() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
            accepts_events(&h)
        };
        assert!(accept("application/json, text/event-stream"));
        assert!(accept("TEXT/EVENT-STREAM;q=0.5"));
        assert!(!accept("application/json"));
        assert!(!accept("text/event-streams"));
    }
}
