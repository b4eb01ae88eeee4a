//! The issuer HTTP service (`mandate serve`): mints root tokens for callers
//! holding an admin Mandate token, records them in the [`Registry`],
//! revokes, restricts live delegations (SPEC §19), publishes its root public
//! keys, and embeds a verifier that shares the revocation store (the
//! one-machine default).
//!
//! | route | admin token must allow | answers |
//! |---|---|---|
//! | `POST /v1/tokens` | `mint` on `/v1/tokens` for each minted alternative × action (`mint-admin` when it reaches `/v1/…` or `/ui/…`) | 201, the minted token |
//! | `POST /v1/revocations` | `revoke` on `/v1/revocations` | 200, what was revoked |
//! | `POST /v1/restrictions` | `restrict` on `/v1/restrictions` (target, rules, reason: SERVICE.md S2) | 200, the live restriction as stored |
//! | `POST /v1/restrictions/{id}/lift` | `lift` on `/v1/restrictions` | 200, the restriction and its lift |
//! | `GET /v1/restrictions` | `review` on `/v1/restrictions` | the restrictions in effect (`?all=true`: every one) |
//! | `GET /v1/keys` | — | the root public keys and their ids |
//! | `GET /v1/keys/revocation` | — | the revocation public keys (feed entries' signers) and their ids |
//! | `POST /v1/authorize` | — | the embedded verifier's decision: 200 allow, 403 deny |
//! | `POST /v1/approvals` | — (the agent's own token) | 201, the queued approval request |
//! | `GET /v1/approvals` | `review` on `/v1/approvals` | the queue, with chains |
//! | `GET /v1/approvals/{id}[?wait=30s]` | — | one request; its approval block once approved (`wait`: once decided, or after the wait, at most 60 s: wait.rs) |
//! | `POST /v1/approvals/{id}/approve` | `approve` on `/v1/approvals` (`approver` and the request's fields) | the signed approval |
//! | `POST /v1/approvals/{id}/deny` | `approve` on `/v1/approvals` | denied |
//! | `GET /ui/decisions` | `review` on `/ui/decisions` (header or `mandate_admin` cookie) | HTML: recent decisions with their chains |
//! | `GET /ui/approvals`, `POST /ui/approvals/{id}/approve\|deny`, `POST /ui/session[/end]` | a valid token to open; `approve` on `/v1/approvals` per request (desk.rs) | HTML: the approval desk |
//! | `GET /healthz` | — | 200 when the revocation list answers (store readable, feed not stale) |
//! | `GET /metrics` | — | Prometheus text ([`Service::with_metrics`]; the table in `spec/SERVICE.md` S3) |
//!
//! Every admin request carries every field of the operation's effect as a
//! parameter (`spec/SERVICE.md` S2), so admin tokens narrow on each.
//!
//! Errors are `{"error": "..."}` with 400 (bad JSON, invalid grant), 401
//! (missing or unreadable admin token), 403 (admin token does not allow it,
//! with the verifier's denial), 404, 413 (body over [`MAX_BODY_BYTES`]), 415,
//! 500 (internal, logged, never detailed) or 503. The protocol is written
//! down in `spec/SERVICE.md`.

mod admin;
mod approvals;
mod config;
mod desk;
mod error;
mod extract;
mod handlers;
mod metrics;
mod mint_decision;
mod notify;
mod restrictions;
mod sink;
mod ui;
mod wait;

pub use approvals::{ApprovalQueue, ApprovalRecord, ApprovalStatus};
pub use config::{
    ApproverFile, RootKeyFile, ServiceConfig, WebhookFormat, DEFAULT_LISTEN,
    DEFAULT_MAX_PENDING_PER_FAMILY,
};
pub use error::ServiceError;
pub use metrics::describe as describe_metrics;
pub use sink::{FeedSink, RevocationSink};

use crate::fleet::MintFleet;
use crate::registry::Registry;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use biscuit_auth::KeyPair;
use mandate_issuer::{Issuer, SigningKeys};
use mandate_verifier::{
    audit::{AuditLog, AuditOptions},
    revocation::{RevocationList, RevocationStore},
    Verifier,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

/// Largest request body accepted, in bytes (64 KiB); larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The issuer service, ready to be turned into a router or served.
pub struct Service {
    issuer: Issuer,
    verifier: Verifier,
    store: Arc<RevocationStore>,
    registry: Arc<Registry>,
    fleet: Option<Arc<MintFleet>>,
    sink: Arc<dyn RevocationSink>,
    approvals: Option<ApprovalQueue>,
    approvers: BTreeMap<String, KeyPair>,
    audit: Option<AuditLog>,
    render_metrics: Option<RenderMetrics>,
    /// Revocation keys, the current (signing) one first.
    revocation_keys: Vec<mandate_verifier::feed::RevocationSigner>,
    notifier: Option<Arc<notify::Notifier>>,
    waiters: Arc<wait::Waiters>,
    max_pending_per_family: usize,
    secure_cookies: bool,
}

/// Renders the installed metrics recorder's state for `GET /metrics`.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("keys", self.issuer.keys())
            .field("store", &self.store)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Shared by every request.
pub(crate) struct Inner {
    pub(crate) issuer: Issuer,
    pub(crate) verifier: Verifier,
    pub(crate) store: Arc<RevocationStore>,
    pub(crate) registry: Arc<Registry>,
    /// In a fleet: the mint stream every issuer service shares.
    pub(crate) fleet: Option<Arc<MintFleet>>,
    pub(crate) sink: Arc<dyn RevocationSink>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) approvals: Option<ApprovalQueue>,
    pub(crate) approvers: BTreeMap<String, KeyPair>,
    pub(crate) audit: Option<AuditLog>,
    pub(crate) audit_path: Option<std::path::PathBuf>,
    /// The decisions page's reader of the audit log, opened on first use
    /// (reads by position: ui.rs).
    pub(crate) audit_tail: std::sync::Mutex<Option<Arc<mandate_verifier::audit::AuditTail>>>,
    pub(crate) render_metrics: Option<RenderMetrics>,
    /// (id, public key, current) of each revocation key.
    pub(crate) revocation_keys: Vec<(u32, String, bool)>,
    /// Approvers' webhooks (notify.rs), if any.
    pub(crate) notifier: Option<Arc<notify::Notifier>>,
    /// Requests waiting for a decision (`?wait=`, wait.rs).
    pub(crate) waiters: Arc<wait::Waiters>,
    /// Pending approval requests one token family may have (approvals.rs).
    pub(crate) max_pending_per_family: usize,
    /// The desk's session cookie is marked `Secure` (the service is reached
    /// over https: `public_url`).
    pub(crate) secure_cookies: bool,
    /// Held from counting a family's pending requests to queueing one more,
    /// so concurrent submissions at this service cannot pass the count
    /// together.
    pub(crate) filing: tokio::sync::Mutex<()>,
}

pub(crate) type AppState = Arc<Inner>;

impl Service {
    /// Opens the service the configuration describes: reads the root key
    /// files, creates the data directory if needed, and opens the revocation
    /// store (`DATA_DIR/revocations`) and the registry (`DATA_DIR/registry`).
    /// Every failure is one line naming the setting or file at fault.
    pub fn open(config: &ServiceConfig) -> Result<Service, ServiceError> {
        let keys = config.load_keys()?;
        let data_dir = config.data_dir()?;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ServiceError::Config(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let store = Arc::new(RevocationStore::open(data_dir.join("revocations"))?);
        let registry = Registry::open(data_dir.join("registry"))?;
        let approvals = ApprovalQueue::open(data_dir.join("approvals"))?;
        let approvers = config.load_approvers()?;
        let mut service = Service::new(keys, store, registry).with_approvals(approvals, approvers);
        service.revocation_keys = config.load_revocation_keys()?;
        service.notifier = match notify::Notifier::from_config(config)? {
            Some(n) => {
                let outbox = notify::Outbox::open(&data_dir.join("notifications"))?;
                Some(Arc::new(n.with_outbox(outbox)))
            }
            None => None,
        };
        service = service.with_max_pending_per_family(config.max_pending_per_family)?;
        // Reached over https (TLS ends at a proxy in front): the browser
        // sends the desk's session cookie over https only.
        service.secure_cookies = config
            .public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
        if let Some(key) = config.load_audit_key()? {
            let log = AuditLog::open(data_dir.join("audit"), &key, AuditOptions::default())?;
            service = service.with_audit(log);
        }
        Ok(service)
    }

    /// Records every decision of the embedded verifier (admin tokens and
    /// `POST /v1/authorize`) in `log`, and shows them at `GET /ui/decisions`.
    pub fn with_audit(mut self, log: AuditLog) -> Service {
        self.verifier = self.verifier.with_audit(log.clone());
        self.audit = Some(log);
        self
    }

    /// In a fleet of issuer services: approval requests go to the queue
    /// they share (`bucket`), so any of them answers for all; requests in
    /// this service's local queue are copied into it first (a WARN says
    /// how many).
    pub async fn with_shared_approvals(
        mut self,
        bucket: Arc<crate::ApprovalBucket>,
    ) -> Result<Service, ServiceError> {
        if let Some(local) = &self.approvals {
            let copied = local.copy_into(&bucket).await?;
            if copied > 0 {
                tracing::warn!(
                    copied,
                    "approval requests of the local queue copied into the shared queue"
                );
            }
        }
        // A decision taken at another service wakes the requests waiting here.
        wait::follow(bucket.clone(), &self.waiters);
        self.approvals = Some(ApprovalQueue::shared(bucket));
        Ok(self)
    }

    /// At most `max` requests wait for a decision at once (`GET
    /// /v1/approvals/{id}?wait=`; more are answered 503). Default 1 000.
    /// Before [`Service::with_shared_approvals`], which links the waiters
    /// to the fleet's decisions.
    pub fn with_max_waiting(mut self, max: usize) -> Service {
        self.waiters = Arc::new(wait::Waiters::new(max));
        self
    }

    /// At most `max` approval requests of one token family wait for a
    /// decision at once (`POST /v1/approvals` answers 429 beyond). Default
    /// [`config::DEFAULT_MAX_PENDING_PER_FAMILY`]; 0 is refused.
    pub fn with_max_pending_per_family(mut self, max: usize) -> Result<Service, ServiceError> {
        if max == 0 {
            return Err(ServiceError::Config(
                "max_pending_per_family must be at least 1 (0 would refuse every approval request)"
                    .into(),
            ));
        }
        self.max_pending_per_family = max;
        Ok(self)
    }

    /// Once `signal` completes (the server is shutting down), requests
    /// waiting for a decision are answered at once with the request as it
    /// stands, so they do not hold the drain. Must be called in the runtime.
    pub fn end_waits_on(self, signal: impl Future<Output = ()> + Send + 'static) -> Service {
        let waiters = Arc::downgrade(&self.waiters);
        tokio::spawn(async move {
            signal.await;
            if let Some(w) = waiters.upgrade() {
                w.close();
            }
        });
        self
    }

    /// Takes approval requests into `queue`, and signs approvals with
    /// `approvers` (name → key) when a person approves one.
    pub fn with_approvals(
        mut self,
        queue: ApprovalQueue,
        approvers: BTreeMap<String, KeyPair>,
    ) -> Service {
        self.approvals = Some(queue);
        self.approvers = approvers;
        self
    }

    /// A service signing with `keys`, verifying with every key of `keys`,
    /// consulting and writing `store` (the embedded default sink), and
    /// recording mints in `registry`.
    pub fn new(keys: SigningKeys, store: Arc<RevocationStore>, registry: Registry) -> Service {
        let mut trusted = mandate_verifier::RootKeys::new();
        for (id, key) in keys.public_keys() {
            trusted = trusted.with(id, key);
        }
        let verifier = Verifier::new(trusted)
            .with_revocations(store.clone())
            .with_cache(mandate_verifier::CacheOptions::default());
        Service {
            issuer: Issuer::with_keys(keys),
            verifier,
            sink: store.clone(),
            store,
            registry: Arc::new(registry),
            fleet: None,
            approvals: None,
            approvers: BTreeMap::new(),
            audit: None,
            render_metrics: None,
            revocation_keys: Vec::new(),
            notifier: None,
            waiters: Arc::new(wait::Waiters::new(wait::MAX_WAITING)),
            max_pending_per_family: config::DEFAULT_MAX_PENDING_PER_FAMILY,
            secure_cookies: false,
        }
    }

    /// The revocation key that signs the entries this service publishes
    /// (the configured current one), if any.
    pub fn revocation_signer(&self) -> Option<&mandate_verifier::feed::RevocationSigner> {
        self.revocation_keys.first()
    }

    /// Every configured revocation key's public half: what the embedded
    /// verifier trusts on the feed.
    pub fn trusted_revocation_keys(&self) -> mandate_verifier::feed::RevocationKeys {
        let mut keys = mandate_verifier::feed::RevocationKeys::new();
        for s in &self.revocation_keys {
            // The service's own keys: parsed back from the form it wrote.
            let _ = keys.insert(s.id(), &s.public_key());
        }
        keys
    }

    /// Answers `GET /metrics` with `render()` (Prometheus text: the
    /// embedder installs a `metrics` recorder, e.g.
    /// `metrics-exporter-prometheus`, and passes its rendering). Without
    /// it, `GET /metrics` answers 404: the metrics go to whatever recorder
    /// the embedder installed, or nowhere.
    pub fn with_metrics(mut self, render: RenderMetrics) -> Service {
        self.render_metrics = Some(render);
        self
    }

    /// Sends revocations and live restrictions to `sink` instead of the
    /// local store (e.g. a [`FeedSink`], or a feed publisher whose consumer
    /// fills the local store). The embedded verifier keeps reading the local
    /// store. A sink that does not implement
    /// [`RevocationSink::restrict`] refuses restrictions (503).
    pub fn with_sink(mut self, sink: impl RevocationSink + 'static) -> Service {
        self.sink = Arc::new(sink);
        self
    }

    /// The embedded verifier consults `list` instead of the store directly:
    /// e.g. a `mandate_verifier::feed::FeedList` over the same store, which also
    /// denies while the revocation feed is stale. `GET /healthz` then answers
    /// 503 while the list refuses.
    pub fn with_revocation_list(mut self, list: impl RevocationList + 'static) -> Service {
        self.verifier = self.verifier.with_revocations(list);
        self
    }

    /// The registry of what was minted (shared with a [`MintFleet`]).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// In a fleet of issuer services: every mint is published to `fleet`'s
    /// stream before the token is returned (or the mint fails), and a
    /// revocation by principal first waits for the local registry to hold
    /// every mint the stream acknowledged (or fails). `fleet` must follow
    /// into this service's [`Service::registry`].
    pub fn with_mint_fleet(mut self, fleet: Arc<MintFleet>) -> Service {
        self.fleet = Some(fleet);
        self
    }

    /// The audit log decisions are recorded in, if any (to flush on
    /// shutdown).
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// The service's own revocation store (read by its embedded verifier).
    pub fn store(&self) -> &Arc<RevocationStore> {
        &self.store
    }

    /// The root key set (public halves for `GET /v1/keys`).
    pub fn keys(&self) -> &SigningKeys {
        self.issuer.keys()
    }

    /// The router with every route and layer: body limit, JSON error
    /// bodies, response counting and request tracing.
    pub fn into_router(self) -> Router {
        // Notifications kept from before a stop are sent again (when built
        // in a runtime, as serving is).
        if let (Some(n), Ok(_)) = (&self.notifier, tokio::runtime::Handle::try_current()) {
            n.resume();
        }
        let state: AppState = Arc::new(Inner {
            issuer: self.issuer,
            verifier: self.verifier,
            store: self.store,
            registry: self.registry,
            fleet: self.fleet,
            sink: self.sink,
            metrics: metrics::Metrics,
            approvals: self.approvals,
            approvers: self.approvers,
            audit_path: self.audit.as_ref().map(|a| a.path().to_path_buf()),
            audit: self.audit,
            audit_tail: Default::default(),
            render_metrics: self.render_metrics,
            revocation_keys: self
                .revocation_keys
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id(), s.public_key(), i == 0))
                .collect(),
            notifier: self.notifier,
            waiters: self.waiters,
            max_pending_per_family: self.max_pending_per_family,
            secure_cookies: self.secure_cookies,
            filing: tokio::sync::Mutex::new(()),
        });
        Router::new()
            .route("/v1/tokens", post(handlers::mint))
            .route("/v1/revocations", post(handlers::revoke))
            .route(
                "/v1/restrictions",
                post(restrictions::restrict).get(restrictions::list),
            )
            .route("/v1/restrictions/{id}/lift", post(restrictions::lift))
            .route("/v1/keys", get(handlers::keys))
            .route("/v1/keys/revocation", get(handlers::revocation_keys))
            .route("/v1/authorize", post(handlers::authorize))
            .route(
                "/v1/approvals",
                post(approvals::submit).get(approvals::list),
            )
            .route("/v1/approvals/{id}", get(approvals::get_one))
            .route("/v1/approvals/{id}/approve", post(approvals::approve))
            .route("/v1/approvals/{id}/deny", post(approvals::deny))
            .route("/ui/decisions", get(ui::decisions))
            .route("/ui/approvals", get(desk::desk))
            .route("/ui/approvals/{id}/approve", post(desk::approve))
            .route("/ui/approvals/{id}/deny", post(desk::deny))
            .route("/ui/session", post(desk::sign_in))
            .route("/ui/session/end", post(desk::sign_out))
            .route("/healthz", get(handlers::healthz))
            .route("/metrics", get(handlers::metrics))
            .with_state(state.clone())
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
            .layer(axum::middleware::map_response_with_state(
                state,
                finish_response,
            ))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
            )
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the
    /// requests in flight.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.into_router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Counts every response, marks it `Cache-Control: no-store` (bodies carry
/// tokens), and gives the framework's own error responses (unknown route,
/// wrong method, the body limit's 413) a JSON body like the handlers' errors.
async fn finish_response(
    axum::extract::State(state): axum::extract::State<AppState>,
    response: Response,
) -> Response {
    let status = response.status();
    state.metrics.responded(status.as_u16());
    // The handlers' own bodies: JSON, or the HTML pages of /ui (desk.rs).
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    let mut out = if (status.is_client_error() || status.is_server_error()) && !is_json {
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => error::too_large_message(),
            StatusCode::NOT_FOUND => "no such route".to_string(),
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_string(),
            other => other
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase(),
        };
        let mut json =
            (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
        if let Some(allow) = response.headers().get(header::ALLOW) {
            json.headers_mut().insert(header::ALLOW, allow.clone());
        }
        json
    } else {
        response
    };
    out.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}
