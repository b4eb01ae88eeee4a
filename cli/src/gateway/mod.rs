//! `mandate gateway`: a verifying reverse proxy in front of APIs (and MCP
//! tool servers) that cannot embed the verifier. Each request is decided by
//! the same verifier as the middleware (revocation list or feed,
//! verification cache, signed audit log); an allowed one is forwarded to its
//! route's upstream with the Mandate token removed and the upstream's own
//! credential injected — a secret the agent never sees.

mod config;
mod hold;
mod proxy;

use crate::args::GatewayArgs;
use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::Json;
use config::Config;
use mandate_verifier::{
    audit::AuditLog,
    feed::{spawn_feed, FeedConfig},
    replay::ReplayGuard,
    revocation::RevocationStore,
    spend_bucket::{FleetSingleUse, SpendBucketConfig},
    usage::bucket::{FleetUsage, UsageBucketConfig},
    usage::UsageStore,
    CacheOptions, RootKeys, Verifier,
};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `mandate_upstream_duration_seconds{route}`: time to the upstream's
/// response head.
pub(crate) const UPSTREAM_DURATION: &str = "mandate_upstream_duration_seconds";
/// `mandate_upstream_errors_total{route,error}`: `timeout` or
/// `unreachable` (refused, reset, broken).
pub(crate) const UPSTREAM_ERRORS: &str = "mandate_upstream_errors_total";
/// `mandate_gateway_held_requests`: requests held for approval now.
pub(crate) const HELD: &str = "mandate_gateway_held_requests";
/// `mandate_gateway_holds_total{route,outcome}`: how holds ended
/// (`approved`, `denied`, `timeout`, `cancelled`, `error`).
pub(crate) const HOLDS: &str = "mandate_gateway_holds_total";

pub(crate) fn run(a: GatewayArgs) -> Result<ExitCode> {
    let config = Config::read(&a.config)?;
    let server = crate::startup::init("gateway", &a.log_format)?;
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Time to the upstream's response head, by route."
    );
    metrics::describe_counter!(
        UPSTREAM_ERRORS,
        "Requests the upstream did not answer, by route and error (timeout, unreachable)."
    );
    metrics::describe_gauge!(HELD, "Requests held open for a person's approval now.");
    metrics::describe_counter!(
        HOLDS,
        "Requests held for approval, by route and how the hold ended (approved, denied, \
         timeout, cancelled, error)."
    );
    log_config(&server, &a, &config);
    let runtime = server.runtime(config.workers)?;
    runtime.block_on(async move {
        let mut verifier =
            Verifier::new(RootKeys::single(config.public_key)).with_cache(CacheOptions::default());
        if let Some(dir) = &config.replay_db {
            let guard = Arc::new(ReplayGuard::open(dir)?);
            verifier = match (&config.spend_bucket, &config.nats) {
                (Some((bucket, nonces)), Some(url)) => {
                    let mut cfg = SpendBucketConfig::new(bucket.clone());
                    cfg.nonces = *nonces;
                    let record = FleetSingleUse::new(guard, FeedConfig::new(url.clone()), cfg)?;
                    verifier.with_single_use(Arc::new(record))
                }
                _ => verifier.with_replay_guard(guard),
            };
        }
        if let Some(dir) = &config.usage_db {
            verifier = verifier.with_usage(Arc::new(UsageStore::open(dir)?));
        }
        let mut fleet_usage = None;
        if let (Some((bucket, lease)), Some(url)) = (&config.usage_bucket, &config.nats) {
            let mut cfg = UsageBucketConfig::new(bucket.clone());
            cfg.lease = lease.clone();
            cfg.key_file = config.usage_key_file.clone();
            let meter = Arc::new(FleetUsage::new(FeedConfig::new(url.clone()), cfg)?);
            verifier = verifier.with_usage(meter.clone());
            fleet_usage = Some(meter);
        }
        let mut _feed = None;
        if let Some(dir) = &config.revocation_db {
            let store = Arc::new(RevocationStore::open(dir)?);
            match &config.nats {
                Some(url) => {
                    let mut cfg = FeedConfig::new(url.clone());
                    cfg.staleness = config.staleness;
                    cfg.revocation_keys = config.revocation_keys.clone();
                    let (list, handle) = spawn_feed(store, cfg)?;
                    _feed = Some(handle);
                    verifier = verifier.with_revocations(list);
                }
                None => verifier = verifier.with_revocations(store),
            }
        }
        let mut audit = None;
        if let Some((dir, key)) = &config.audit {
            let key = crate::io::read_private_key(key).context("audit_key_file")?;
            let log = AuditLog::open(dir, &key, crate::audit::options(config.audit_async))?;
            if let (Some((stream, records)), Some(url)) = (&config.audit_publish, &config.nats) {
                let log_key = format!("ed25519/{}", hex::encode(key.public().to_bytes()));
                let mut nats = FeedConfig::new(url.clone());
                nats.revocation_keys = config.revocation_keys.clone();
                crate::audit::spawn_publisher(stream, *records, dir, &log_key, &nats)?;
            }
            verifier = verifier.with_audit(log.clone());
            audit = Some(log);
        }
        // The drain waits for the slowest upstream the routes allow, up to
        // MAX_DRAIN: a client that never finishes its request must not hold
        // the shutdown past a service manager's stop timeout (systemd: 90 s).
        let drain = config
            .routes
            .iter()
            .map(|r| r.timeout + Duration::from_secs(5))
            .fold(crate::startup::DRAIN, Duration::max)
            .min(crate::startup::MAX_DRAIN);
        let health = verifier.clone();
        let session_key = match config.session_key {
            Some(k) => k,
            None => random_key()?,
        };
        for (route, rule) in held_rules_reading_no_body(&config.routes) {
            tracing::warn!(
                route = %route,
                rule = %rule,
                "this held route's rule reads no body (no body_params): a body sent with it is \
                 forwarded, yet no approval binds it and no approver sees it"
            );
        }
        let holds = match &config.approval_service {
            Some(url) => Some(hold::Holds::new(url).map_err(|e| anyhow::anyhow!(e))?),
            None => None,
        };
        let options = proxy::Options {
            session_key,
            issuer_url: config.issuer_url.clone(),
            holds,
        };
        let gateway = Arc::new(proxy::Gateway::new(verifier, config.routes, options));
        // GET /healthz and GET /metrics are the gateway's own, matched
        // before any route (a `/` route included) and never forwarded; the
        // configuration refuses a route at or under them.
        let app = axum::Router::new()
            .route(
                config::OWN_PATHS[0],
                axum::routing::get(move || healthz(health.clone())),
            )
            .merge(server.metrics_route())
            .fallback(move |req: axum::extract::Request| {
                let gateway = gateway.clone();
                async move { gateway.handle(req).await }
            });
        let listener = crate::startup::bind(config.listen).await?;
        let served = server.serve(listener, app, audit, drain).await;
        // What the leases did not spend goes back to the fleet.
        if let Some(Err(e)) = fleet_usage.map(|f| f.close()) {
            tracing::warn!(error = %e, "usage leases not given back: stranded until their window ends");
        }
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

/// 32 random bytes: the key MCP session ids are bound under when no
/// `session_key_file` is configured (sessions then end with the process).
fn random_key() -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| anyhow::anyhow!("no random key: {e}"))?;
    Ok(key)
}

/// `GET /healthz`: 200 while decisions can be made (the revocation list
/// answers, the feed is not stale, the audit log writes), else 503 and why.
async fn healthz(verifier: Verifier) -> (StatusCode, Json<serde_json::Value>) {
    let problem = verifier
        .revocations_ready()
        .and_then(|()| verifier.audit_health())
        .err();
    match problem {
        None => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": e.to_string() })),
        ),
    }
}

/// The configuration line at start (credential header names, never their
/// values), and what is insecure about it.
fn log_config(server: &crate::startup::Server, a: &GatewayArgs, config: &Config) {
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or("none".to_string(), |p| p.display().to_string())
    };
    let routes = config
        .routes
        .iter()
        .map(|r| {
            let mode = match &r.mode {
                config::Mode::Rest(_) => "rest",
                config::Mode::Mcp { .. } => "mcp",
            };
            let credential = r
                .credential
                .as_ref()
                .map_or("none".to_string(), |(h, _)| format!("header:{h}"));
            let hold = r.hold.map_or(String::new(), |h| {
                format!(",hold_for_approval={}s", h.as_secs())
            });
            format!(
                "{}->{}({mode},timeout={}s,credential={credential}{hold})",
                proxy::route_label(&r.prefix),
                r.upstream,
                r.timeout.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut settings: Vec<(&str, String)> = vec![
        ("config", a.config.display().to_string()),
        ("listen", config.listen.to_string()),
        ("revocation_db", path(&config.revocation_db)),
        ("replay_db", path(&config.replay_db)),
        ("usage_db", path(&config.usage_db)),
        (
            "usage_bucket",
            config
                .usage_bucket
                .as_ref()
                .map_or("none".to_string(), |(b, lease)| match lease {
                    Some(l) => format!(
                        "{b} (leases of up to {}, fleet of {})",
                        l.slice, l.fleet_size
                    ),
                    None => format!("{b} (exact)"),
                }),
        ),
        (
            "spend_bucket",
            config
                .spend_bucket
                .as_ref()
                .map_or("none".to_string(), |(b, _)| b.clone()),
        ),
        (
            "audit",
            config.audit.as_ref().map_or("none".to_string(), |(d, k)| {
                format!("{} (key {})", d.display(), k.display())
            }),
        ),
        ("routes", routes),
        (
            "approval_service",
            config
                .approval_service
                .clone()
                .unwrap_or_else(|| "none".into()),
        ),
    ];
    let mut insecure = Vec::new();
    let feed = config.nats.as_ref().map(|url| {
        let mut cfg = FeedConfig::new(url.clone());
        cfg.staleness = config.staleness;
        cfg
    });
    crate::startup::feed_settings(feed.as_ref(), &mut settings, &mut insecure);
    if config.revocation_db.is_none() {
        insecure.push("no revocation_db: revoked tokens are allowed until they expire".into());
    } else if config.nats.is_none() {
        insecure.push(
            "no nats: only revocations written to revocation_db on this host are seen".into(),
        );
    }
    if config.audit.is_none() {
        insecure.push("no audit_dir: decisions are not recorded".into());
    } else if config.audit_async {
        insecure.push(crate::audit::options(true).loss_window());
    }
    if config.replay_db.is_some() {
        for r in config.routes.iter().filter(|r| r.audience.is_none()) {
            insecure.push(format!(
                "route {}: no public_url, so every proof of possession on it is refused",
                proxy::route_label(&r.prefix)
            ));
        }
    }
    for r in &config.routes {
        if matches!(r.mode, config::Mode::Mcp { .. })
            && r.audience.is_some()
            && config.issuer_url.is_none()
        {
            insecure.push(format!(
                "route {}: no issuer_url, so its protected-resource metadata lists no \
                 authorization_servers, which MCP clients require",
                proxy::route_label(&r.prefix)
            ));
        }
        if matches!(r.mode, config::Mode::Mcp { .. }) && r.audience.is_none() {
            insecure.push(format!(
                "route {}: no public_url, so no protected-resource metadata (RFC 9728) is \
                 served and challenges do not name it",
                proxy::route_label(&r.prefix)
            ));
        }
    }
    if config.session_key.is_none()
        && config
            .routes
            .iter()
            .any(|r| matches!(r.mode, config::Mode::Mcp { .. }))
    {
        settings.push((
            "session_key",
            "random (MCP sessions end with this process; set session_key_file to share \
             them between gateways)"
                .into(),
        ));
    }
    if let Some(w) = crate::startup::listen_warning(config.listen) {
        insecure.push(w);
    }
    server.log_config(&settings, &insecure);
}

/// The rules of held REST routes that read no body (no `body_params`) for a
/// method that may carry one: what a person approves there is the request
/// as mapped (SPEC §17.1), so a body sent with it is forwarded unbound and
/// unseen. (route prefix, "METHOD PATTERN") of each.
fn held_rules_reading_no_body(routes: &[config::Route]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for route in routes.iter().filter(|r| r.hold.is_some()) {
        if let config::Mode::Rest(rules) = &route.mode {
            for rule in rules {
                let method = rule.method.to_ascii_uppercase();
                if rule.body_params.is_empty() && !matches!(method.as_str(), "GET" | "HEAD") {
                    out.push((route.prefix.clone(), format!("{method} {}", rule.pattern)));
                }
            }
        }
    }
    out
}
