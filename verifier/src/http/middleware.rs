//! The tower middleware: [`MandateLayer`] wraps a service in [`Mandate`],
//! which maps each request (see [`MapRequest`]), decides it with the
//! embedded [`Verifier`], and either answers the denial itself or passes the
//! request on with the decision in its extensions.

use super::mapping::{MapError, DEFAULT_BODY_LIMIT};
use super::response::{denial_response, error_response, Authorized, Denied};
use crate::{Check, Decision, Denial, DenialKind, Presented, Verifier};
use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mandate_spec::{Audience, HolderProof, PROOF_HEADER};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Adds Mandate authorization to a service. Cheap to clone.
///
/// ```
/// use axum::{routing::get, Router};
/// use mandate_verifier::http::{MandateLayer, RouteMap};
/// use mandate_verifier::{RootKeys, Verifier};
///
/// let root = biscuit_auth::KeyPair::new();
/// let verifier = Verifier::new(RootKeys::single(root.public()));
/// let app: Router = Router::new()
///     .route("/api/customers/{id}", get(|| async { "customer" }))
///     .layer(MandateLayer::new(verifier, RouteMap::new()).audience("https://api.example.com"));
/// ```
#[derive(Clone)]
pub struct MandateLayer<M> {
    shared: Arc<Shared<M>>,
}

struct Shared<M> {
    verifier: Verifier,
    mapper: Arc<M>,
    audience: Option<Audience>,
    cold: ColdDecisions,
    /// RFC 9728 protected-resource metadata URL, named in challenges.
    resource_metadata: Option<HeaderValue>,
}

/// Where decisions that may be expensive run: off the async executor, on a
/// few threads of their own at the lowest CPU priority (Linux `SCHED_IDLE`:
/// they run when a core would otherwise be idle), one decision per thread
/// at a time (the rest wait their turn, asynchronously).
///
/// A cold decision (a token the verification cache does not hold: every
/// signature checked, its Datalog loaded; or one whose cost bound is high,
/// or that writes a synced record) takes from a tenth of a millisecond to a
/// few milliseconds (SPEC §6 rule 1c bounds it). Run on the executor, a
/// burst of them would stall every other request on that thread; run on an
/// unbounded pool at the executor's priority, they would crowd its threads
/// off the cores. On their own idle-priority threads they use only what the
/// executor leaves, and cheap repeat decisions stay inline (see
/// [`Verifier::try_authorize_inline`]). Cheap to clone; clones share the
/// threads. The threads end when the last clone is dropped.
#[derive(Clone)]
pub struct ColdDecisions(Arc<ColdPool>);

struct ColdPool {
    permits: tokio::sync::Semaphore,
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<ColdJob>>,
    threads: usize,
}

type ColdJob = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for ColdDecisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdDecisions")
            .field("threads", &self.0.threads)
            .finish()
    }
}

impl ColdDecisions {
    /// `n` threads (at least 1) for cold decisions.
    pub fn new(n: usize) -> ColdDecisions {
        let n = n.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<ColdJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            // A thread that cannot be started is simply missing: with none
            // at all, the jobs channel has no receiver and every cold
            // decision is denied (fail closed), never left waiting.
            let _ = std::thread::Builder::new()
                .name(format!("mandate-cold-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panic is caught inside the verifier; this
                            // keeps the thread whatever happens.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
        }
        ColdDecisions(Arc::new(ColdPool {
            permits: tokio::sync::Semaphore::new(n),
            jobs: std::sync::Mutex::new(tx),
            threads: n,
        }))
    }

    /// One thread per two cores, at least one (the default).
    pub fn per_core() -> ColdDecisions {
        ColdDecisions::new(std::thread::available_parallelism().map_or(1, |n| n.get() / 2))
    }

    /// Runs `f` on one of the threads once one is free; `None` if the pool
    /// has stopped.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let waiting = Gauge::up(crate::metrics::COLD_WAITING);
        let _permit = self.0.permits.acquire().await.ok()?;
        drop(waiting);
        let _running = Gauge::up(crate::metrics::COLD_RUNNING);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: ColdJob = Box::new(move || {
            let _ = tx.send(f());
        });
        self.0.jobs.lock().ok()?.send(job).ok()?;
        rx.await.ok()
    }
}

/// A gauge raised while this lives (also when the future holding it is
/// dropped: a client gone while its decision waited).
struct Gauge(&'static str);

impl Gauge {
    fn up(name: &'static str) -> Gauge {
        metrics::gauge!(name).increment(1.0);
        Gauge(name)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// The idle scheduling class for the calling thread (Linux): any runnable
/// thread of the default class preempts it, so requests with known tokens
/// are never slowed by cold ones; on a machine with spare cycles it runs at
/// full speed. (A machine kept fully busy by cheap requests delays cold
/// decisions until it is not.) Best effort: elsewhere, or where it cannot
/// be set, the thread runs at the default priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        use thread_priority::ThreadPriority;
        let _ = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
    }
}

impl Default for ColdDecisions {
    fn default() -> ColdDecisions {
        ColdDecisions::per_core()
    }
}

impl<M> std::fmt::Debug for MandateLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MandateLayer")
            .field("verifier", &self.shared.verifier)
            .finish_non_exhaustive()
    }
}

impl<M: MapRequest> MandateLayer<M> {
    /// Decides every request with `verifier`, mapping it with `mapper`. The
    /// mapping's description is added to the verifier's policy hash, so audit
    /// records name the mapping they were decided under.
    ///
    /// No audience is set: a token that requires proof of possession is
    /// then always denied (see [`MandateLayer::audience`]).
    pub fn new(verifier: Verifier, mapper: M) -> MandateLayer<M> {
        let verifier = verifier.with_policy_note(&mapper.describe());
        MandateLayer {
            shared: Arc::new(Shared {
                verifier,
                mapper: Arc::new(mapper),
                audience: None,
                cold: ColdDecisions::default(),
                resource_metadata: None,
            }),
        }
    }

    /// The origin clients reach this server at, `scheme://host[:port]`
    /// (e.g. `https://api.example.com`; an explicit default port is the same
    /// as none): proofs of possession must be made for it (SPEC §15). It is
    /// configuration, never read from the request's `Host` header, which the
    /// sender chooses. Default: none, and then every proof is refused, with
    /// a reason saying so. The audience is added to the policy hash.
    ///
    /// # Panics
    /// On text that is not such an origin: a programming error found at
    /// start-up. Parse a configured value with [`Audience::parse`] and pass
    /// it to [`MandateLayer::with_audience`] to handle it as an error.
    pub fn audience(self, origin: &str) -> MandateLayer<M> {
        #[allow(clippy::expect_used)]
        let audience = Audience::parse(origin).expect("an origin: http[s]://HOST[:PORT]");
        self.with_audience(audience)
    }

    /// [`MandateLayer::audience`] with an audience already parsed.
    pub fn with_audience(self, audience: Audience) -> MandateLayer<M> {
        let verifier = self
            .shared
            .verifier
            .clone()
            .with_policy_note(&format!("proof audience {audience}"));
        MandateLayer {
            shared: Arc::new(Shared {
                verifier,
                mapper: self.shared.mapper.clone(),
                audience: Some(audience),
                cold: self.shared.cold.clone(),
                resource_metadata: self.shared.resource_metadata.clone(),
            }),
        }
    }

    /// Where cold decisions run (default: [`ColdDecisions::per_core`]).
    /// Share one [`ColdDecisions`] between several layers of one process to
    /// bound them together.
    pub fn cold_decisions(self, cold: ColdDecisions) -> MandateLayer<M> {
        MandateLayer {
            shared: Arc::new(Shared {
                verifier: self.shared.verifier.clone(),
                mapper: self.shared.mapper.clone(),
                audience: self.shared.audience.clone(),
                cold,
                resource_metadata: self.shared.resource_metadata.clone(),
            }),
        }
    }

    /// The URL of this resource's protected-resource metadata (RFC 9728),
    /// named as `resource_metadata` in every `WWW-Authenticate` challenge
    /// (401 and 403, RFC 6750 §3) so that a client can find out how to get
    /// a token. Default: none. Text that cannot be a header value (a control
    /// character, a quote) is refused.
    pub fn resource_metadata(self, url: &str) -> Result<MandateLayer<M>, MapError> {
        let value = super::response::challenge_url(url)?;
        Ok(MandateLayer {
            shared: Arc::new(Shared {
                verifier: self.shared.verifier.clone(),
                mapper: self.shared.mapper.clone(),
                audience: self.shared.audience.clone(),
                cold: self.shared.cold.clone(),
                resource_metadata: Some(value),
            }),
        })
    }

    /// The verifier in use (with the mapping in its policy hash).
    pub fn verifier(&self) -> &Verifier {
        &self.shared.verifier
    }
}

impl<S, M> Layer<S> for MandateLayer<M> {
    type Service = Mandate<S, M>;

    fn layer(&self, inner: S) -> Mandate<S, M> {
        Mandate {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`MandateLayer`] produces.
pub struct Mandate<S, M> {
    inner: S,
    shared: Arc<Shared<M>>,
}

impl<S: Clone, M> Clone for Mandate<S, M> {
    fn clone(&self) -> Self {
        Mandate {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, M> std::fmt::Debug for Mandate<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mandate")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for Mandate<S, M>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    M: MapRequest,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness handles this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture {
            inner: Box::pin(handle(shared, inner, req)),
        }
    }
}

async fn handle<S, M, ReqBody, ResBody>(
    shared: Arc<Shared<M>>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    M: MapRequest,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let mapper = &*shared.mapper;
    let refuse = |json: Option<&serde_json::Value>, refusal: Refusal<'_>| {
        refusal_response(mapper, json, refusal, shared.resource_metadata.as_ref())
    };
    // 1. The body, when the mapping reads fields from it or a proof of
    //    possession covers it (bounded either way).
    let has_proof = parts.headers.contains_key(PROOF_HEADER);
    let wants_json = mapper.body_limit(&parts);
    let (body, bytes) = if wants_json.is_some() || has_proof {
        let limit = wants_json.unwrap_or_else(|| mapper.max_body());
        match read_body(&parts, body, limit).await {
            Ok(bytes) => (Body::from(bytes.clone()), Some(bytes)),
            Err(e) => return Ok(refuse(None, Refusal::Error(e.status, &e.message))),
        }
    } else {
        (Body::new(body), None)
    };
    // 2. The request the verifier decides, and what it must pass (a large
    //    body parsed off the executor: it is work a client without a token
    //    can cause). Without a token that verifies, a large body is not
    //    parsed at all: the request is denied as what it is on its face.
    let large = bytes.as_ref().is_some_and(|b| b.len() > INLINE_BODY_BYTES);
    if large && !verified_token(&shared, &parts).await {
        let request = mandate_spec::Request::new(
            format!("http.{}", parts.method.as_str().to_ascii_lowercase()),
            request_target(&parts)
                .split('?')
                .next()
                .unwrap_or("/")
                .to_string(),
        );
        let decision = decide(
            &shared.verifier,
            &parts,
            request,
            Check::Grant,
            None,
            shared.audience.as_ref(),
            &shared.cold,
        )
        .await;
        if let Err(e) = shared.verifier.audit_durable().await {
            let message = format!("audit log unavailable ({e}); retry later");
            return Ok(refuse(
                None,
                Refusal::Error(StatusCode::SERVICE_UNAVAILABLE, &message),
            ));
        }
        return Ok(refuse(None, Refusal::Denied(&decision)));
    }
    let (json, request, check) =
        match map_request(&shared, &parts, bytes.as_ref(), wants_json.is_some()).await {
            Ok(mapped) => mapped,
            Err((json, e)) => {
                return Ok(refuse(json.as_ref(), Refusal::Error(e.status, &e.message)))
            }
        };
    let verifier = &shared.verifier;
    // 3. Decide (every decision, with or without a token, is audited).
    let decision = decide(
        verifier,
        &parts,
        request,
        check,
        bytes.as_ref(),
        shared.audience.as_ref(),
        &shared.cold,
    )
    .await;
    // No decision is acted on (or answered) before its record is durable:
    // awaited, so concurrent requests share one synced write.
    if let Err(e) = verifier.audit_durable().await {
        let message = format!("audit log unavailable ({e}); retry later");
        return Ok(refuse(
            json.as_ref(),
            Refusal::Error(StatusCode::SERVICE_UNAVAILABLE, &message),
        ));
    }
    if !decision.is_allowed() {
        let mut response = refuse(json.as_ref(), Refusal::Denied(&decision));
        // For a layer around this one (the gateway's hold for approval):
        // the decision itself, never re-read from the body.
        response.extensions_mut().insert(Denied(Arc::new(decision)));
        return Ok(response);
    }
    parts.extensions.insert(Authorized(Arc::new(decision)));
    let response = inner.call(Request::from_parts(parts, body)).await?;
    Ok(response.map(Body::new))
}

/// Whether the request carries a bearer token that verifies (signatures
/// and chain; checked on the cold-decision threads, then cached): what a
/// large body must come with to be parsed.
async fn verified_token<M>(shared: &Arc<Shared<M>>, parts: &Parts) -> bool {
    let Some(token) = bearer(&parts.headers).and_then(|t| mandate_spec::token_from_text(t).ok())
    else {
        return false;
    };
    let verifier = shared.verifier.clone();
    shared
        .cold
        .run(move || verifier.verifies(&token))
        .await
        .unwrap_or(false)
}

/// A request's JSON body (when the mapping reads it) and its mapping.
type Mapped = (Option<serde_json::Value>, mandate_spec::Request, Check);
/// A mapping error, with the body's JSON when it was read.
type Unmapped = (Option<serde_json::Value>, MapError);

/// Reads the JSON body (when `wants_json`) and maps the request: inline
/// for a body up to [`INLINE_BODY_BYTES`], else on the cold-decision
/// threads (`ColdDecisions`), where parsing a large body — which any
/// client, token or not, can send — uses only the cycles requests leave.
async fn map_request<M: MapRequest>(
    shared: &Arc<Shared<M>>,
    parts: &Parts,
    bytes: Option<&Bytes>,
    wants_json: bool,
) -> Result<Mapped, Unmapped> {
    match bytes {
        Some(b) if b.len() > INLINE_BODY_BYTES => {
            let head = head_of(parts);
            let mapper = shared.mapper.clone();
            let b = b.clone();
            shared
                .cold
                .run(move || map_with(&*mapper, &head, Some(&b), wants_json))
                .await
                .unwrap_or_else(|| {
                    Err((
                        None,
                        MapError {
                            status: StatusCode::SERVICE_UNAVAILABLE,
                            message: "shutting down: the request could not be read".into(),
                        },
                    ))
                })
        }
        _ => map_with(&*shared.mapper, parts, bytes, wants_json),
    }
}

fn map_with<M: MapRequest + ?Sized>(
    mapper: &M,
    parts: &Parts,
    bytes: Option<&Bytes>,
    wants_json: bool,
) -> Result<Mapped, Unmapped> {
    let json = match (wants_json, bytes) {
        (true, Some(b)) => Some(super::mapping::json_body(parts, b).map_err(|e| (None, e))?),
        _ => None,
    };
    match mapper.map_check(parts, json.as_ref()) {
        Ok((request, check)) => Ok((json, request, check)),
        Err(e) => Err((json, e)),
    }
}

/// What the mapping reads of a request (method, URI, version, headers, and
/// the path as sent when a router nested the service), owned.
fn head_of(parts: &Parts) -> Parts {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = parts.method.clone();
    head.uri = parts.uri.clone();
    head.version = parts.version;
    head.headers = parts.headers.clone();
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        head.extensions.insert(original.clone());
    }
    head
}

/// The response refusing a request: the status and challenge of the
/// refusal (RFC 6750), with the mapper's body when it writes one (e.g. a
/// JSON-RPC error), else the decision JSON or `{"error": …}`.
fn refusal_response<M: MapRequest + ?Sized>(
    mapper: &M,
    json: Option<&serde_json::Value>,
    refusal: Refusal<'_>,
    resource_metadata: Option<&HeaderValue>,
) -> Response<Body> {
    let mut response = match refusal {
        Refusal::Denied(decision) => denial_response(decision),
        Refusal::Error(status, message) => error_response(status, message),
    };
    super::response::add_challenge(&mut response, refusal, resource_metadata);
    if let Some(body) = mapper.refusal_body(json, refusal) {
        *response.body_mut() = Body::from(serde_json::to_vec(&body).unwrap_or_default());
    }
    response
}

/// Decides `request`, mapped from the request of `parts`, with its bearer
/// token and, when it carries one, its proof of possession over `body` (the
/// bytes read, when a proof or the mapping needed them), the request-target
/// as sent ([`request_target`]) and this server's `audience`. Every decision
/// is recorded. This is the one call to the verifier for an HTTP request,
/// used by the middleware and by the gateway alike.
///
/// A cheap decision (the token's verification cached, a low cost bound, no
/// synced write) runs inline; any other runs on the blocking pool under
/// `cold`'s limit, never on the async executor's threads (SPEC §13).
pub async fn decide(
    verifier: &Verifier,
    parts: &Parts,
    request: mandate_spec::Request,
    check: Check,
    body: Option<&Bytes>,
    audience: Option<&Audience>,
    cold: &ColdDecisions,
) -> Decision {
    let deny =
        |kind, why: String| verifier.deny_and_record(request.clone(), Denial::new(kind, why));
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
    let proof = match parts.headers.get(PROOF_HEADER) {
        None => None,
        Some(h) => match h
            .to_str()
            .map_err(|_| "proof of possession: the header is not text".to_string())
            .and_then(|t| HolderProof::parse(t).map_err(|e| e.to_string()))
        {
            Ok(p) => Some(p),
            Err(e) => return deny(DenialKind::ProofInvalid, e),
        },
    };
    let method = parts.method.as_str().to_string();
    let target = request_target(parts);
    let audience = audience.cloned();
    let body = body.cloned().unwrap_or_default();
    // Hashing a large body for a proof is work too: inline only small ones.
    if body.len() <= INLINE_BODY_BYTES {
        let presented = Presented::new(&method, &body, proof.clone()).at(audience.clone(), &target);
        if let Some(d) = verifier.try_decide_inline(&token, &request, &presented, check) {
            return d;
        }
    }
    let v = verifier.clone();
    let r = request.clone();
    let decided = cold
        .run(move || {
            let presented = Presented::new(&method, &body, proof).at(audience, target);
            v.decide_presented(&token, &r, &presented, check)
        })
        .await;
    match decided {
        Some(d) => d,
        None => deny(
            DenialKind::Evaluation,
            "the verifier is shutting down: the decision could not run; denied".into(),
        ),
    }
}

/// Bodies up to this size are hashed inline for a proof of possession.
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// The request-target a proof of possession covers: the path as the client
/// sent it (axum's `OriginalUri`, when a router nested this service under a
/// prefix, else the URI's) and then, byte for byte, the query the mapping
/// reads (`?` and the query, when there is one; a fragment never reaches a
/// server). So the query signed is exactly the query decided on.
pub fn request_target(parts: &Parts) -> String {
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(parts.uri.path(), |o| o.0.path());
    match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// The token of `Authorization: Bearer <token>`, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    mandate_spec::bearer_token(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// Reads at most `limit` bytes of the body.
async fn read_body<B>(parts: &Parts, body: B, limit: usize) -> Result<Bytes, MapError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || MapError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body larger than {limit} bytes"),
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(MapError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// The body as JSON, for a mapping that reads its fields.
/// The future [`Mandate`] returns.
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// How an HTTP request becomes the request the verifier decides. Implemented
/// by [`super::RouteMap`] (the configurable default) and by closures
/// `Fn(&Parts) -> Result<mandate_spec::Request, MapError>` (which never read
/// the body).
pub trait MapRequest: Send + Sync + 'static {
    /// How many body bytes to read for this request, when the mapping needs
    /// the body (`None`: it does not; the body is passed on unread).
    fn body_limit(&self, _parts: &Parts) -> Option<usize> {
        None
    }

    /// The request to decide; `body` is the JSON body when
    /// [`MapRequest::body_limit`] asked for it.
    fn map(
        &self,
        parts: &Parts,
        body: Option<&serde_json::Value>,
    ) -> Result<mandate_spec::Request, MapError>;

    /// A description of the mapping for the policy hash of audit records.
    fn describe(&self) -> String {
        "custom mapping".into()
    }

    /// The request to decide and what it must pass: by default
    /// [`MapRequest::map`]'s request, checked against the grants. A
    /// protocol's housekeeping (e.g. an MCP `ping`) may ask for
    /// [`Check::Token`] only.
    fn map_check(
        &self,
        parts: &Parts,
        body: Option<&serde_json::Value>,
    ) -> Result<(mandate_spec::Request, Check), MapError> {
        Ok((self.map(parts, body)?, Check::Grant))
    }

    /// The most body bytes read for a proof of possession when the mapping
    /// itself reads none (default [`DEFAULT_BODY_LIMIT`]).
    fn max_body(&self) -> usize {
        DEFAULT_BODY_LIMIT
    }

    /// The body of a refusal in the protocol the client speaks (e.g. a
    /// JSON-RPC error response naming the request's id); `body` is the
    /// request's JSON when it was read. `None` (the default): the decision
    /// JSON, or `{"error": …}`. The status and headers are the
    /// middleware's either way.
    fn refusal_body(
        &self,
        _body: Option<&serde_json::Value>,
        _refusal: Refusal<'_>,
    ) -> Option<serde_json::Value> {
        None
    }
}

/// Why the middleware answers a request itself.
#[derive(Debug, Clone, Copy)]
pub enum Refusal<'a> {
    /// The verifier denied it.
    Denied(&'a Decision),
    /// It could not be mapped or read, or cannot be decided now (the
    /// audit log is unavailable): a status and the reason.
    Error(StatusCode, &'a str),
}

impl Refusal<'_> {
    /// The HTTP status the refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Denied(d) => d
                .denial
                .as_ref()
                .map_or(StatusCode::FORBIDDEN, |d| super::denial_status(d.kind)),
            Refusal::Error(status, _) => *status,
        }
    }

    /// The reason in words.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Denied(d) => d.denial.as_ref().map_or("denied", |d| d.reason.as_str()),
            Refusal::Error(_, message) => message,
        }
    }
}

impl<F> MapRequest for F
where
    F: Fn(&Parts) -> Result<mandate_spec::Request, MapError> + Send + Sync + 'static,
{
    fn map(
        &self,
        parts: &Parts,
        _body: Option<&serde_json::Value>,
    ) -> Result<mandate_spec::Request, MapError> {
        self(parts)
    }
}
