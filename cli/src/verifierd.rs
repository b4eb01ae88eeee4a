//! `mandate verifierd`: a verifier process for API servers that are not in
//! Rust, and for tests: `POST /v1/authorize` decides with the embedded
//! verifier; its revocation list is kept current by the revocation feed.

use crate::args::VerifierdArgs;
use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mandate_spec::{parse_duration, parse_public_key};
use mandate_verifier::{
    audit::AuditLog,
    feed::{spawn_feed, FeedList},
    replay::{ReplayGuard, SingleUse},
    revocation::RevocationStore,
    spend_bucket::{FleetSingleUse, SpendBucketConfig},
    usage::bucket::{FleetUsage, LeaseConfig, UsageBucketConfig},
    usage::{UsageMeter, UsageStore},
    AuthorizeRequest, CacheOptions, RootKeys, Verifier,
};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Clone)]
struct App {
    verifier: Verifier,
    feed: Option<FeedList>,
    store: Arc<RevocationStore>,
}

pub(crate) fn run(a: VerifierdArgs) -> Result<ExitCode> {
    let key = parse_public_key(&a.public_key).context("--public-key")?;
    let staleness = parse_duration(&a.staleness).context("--staleness")?;
    let revocation_keys = crate::feed::trusted(&a.trust.revocation_key, "--revocation-key")?;
    let feed_config = crate::feed::config(&a.feed)?.map(|mut cfg| {
        cfg.staleness = staleness;
        cfg.insecure_fail_open_when_stale = a.insecure_fail_open_when_stale;
        cfg.revocation_keys = revocation_keys;
        cfg
    });
    if feed_config
        .as_ref()
        .is_some_and(|c| c.revocation_keys.is_empty())
    {
        anyhow::bail!(
            "--nats needs the issuer's revocation public keys: --revocation-key \
             ID=ed25519/<hex> (repeatable; the issuer service lists them at \
             GET /v1/keys/revocation). Unsigned feed entries are never applied"
        );
    }
    if a.audit_publish.audit_publish && a.audit_db.is_none() {
        anyhow::bail!("--audit-publish needs an audit log: --audit-db DIR --audit-key FILE");
    }
    let server = crate::startup::init("verifierd", &a.log_format)?;
    log_config(&server, &a, feed_config.as_ref());
    let store = Arc::new(RevocationStore::open(&a.data_dir)?);
    let mut audit_log_key = None;
    let audit = match (&a.audit_db, &a.audit_key) {
        (Some(db), Some(key)) => {
            let key = crate::io::read_private_key(key).context("--audit-key")?;
            audit_log_key = Some(format!("ed25519/{}", hex::encode(key.public().to_bytes())));
            Some(AuditLog::open(
                db,
                &key,
                crate::audit::options(a.audit_async),
            )?)
        }
        _ => None,
    };
    let single_use = single_use(&a, feed_config.as_ref())?;
    let fleet_usage = fleet_usage(&a, feed_config.as_ref())?;
    let usage: Option<Arc<dyn UsageMeter>> = match (&a.usage_db, &fleet_usage) {
        (Some(dir), _) => Some(Arc::new(UsageStore::open(dir)?)),
        (None, Some(fleet)) => Some(fleet.clone()),
        (None, None) => None,
    };
    let runtime = server.runtime(None)?;
    runtime.block_on(async move {
        let mut verifier = Verifier::new(RootKeys::single(key)).with_cache(CacheOptions::default());
        if let Some(record) = single_use {
            verifier = verifier.with_single_use(record);
        }
        if let Some(usage) = usage {
            verifier = verifier.with_usage(usage);
        }
        if let Some(audit) = &audit {
            verifier = verifier.with_audit(audit.clone());
        }
        if let (Some(db), Some(log_key), Some(cfg)) =
            (&a.audit_db, &audit_log_key, feed_config.as_ref())
        {
            if a.audit_publish.audit_publish {
                let p = &a.audit_publish;
                crate::audit::spawn_publisher(
                    &p.audit_stream,
                    p.audit_publish_records,
                    db,
                    log_key,
                    cfg,
                )?;
            }
        }
        let mut feed = None;
        if let Some(cfg) = feed_config {
            let (list, _handle) = spawn_feed(store.clone(), cfg)?;
            verifier = verifier.with_revocations(list.clone());
            feed = Some(list);
        } else {
            verifier = verifier.with_revocations(store.clone());
        }
        let app = App {
            verifier,
            feed,
            store,
        };
        let router = Router::new()
            .route("/v1/authorize", post(authorize))
            .route("/healthz", get(healthz))
            .layer(axum::extract::DefaultBodyLimit::max(128 * 1024))
            .with_state(app)
            .merge(server.metrics_route());
        let listener = crate::startup::bind(&a.listen).await?;
        server
            .serve(listener, router, audit, crate::startup::DRAIN)
            .await
    })?;
    // What the leases did not spend goes back to the fleet.
    if let Some(Err(e)) = fleet_usage.map(|f| f.close()) {
        tracing::warn!(error = %e, "usage leases not given back: stranded until their window ends");
    }
    Ok(ExitCode::SUCCESS)
}

/// The fleet's usage counters: --usage-bucket on --nats, leased with
/// --usage-lease.
fn fleet_usage(
    a: &VerifierdArgs,
    feed: Option<&mandate_verifier::feed::FeedConfig>,
) -> Result<Option<Arc<FleetUsage>>> {
    let (Some(bucket), Some(nats)) = (&a.usage_bucket, feed) else {
        return Ok(None);
    };
    let mut cfg = UsageBucketConfig::new(bucket.clone());
    cfg.key_file = a.usage_key_file.clone();
    cfg.lease = a.usage_lease.map(|slice| {
        let mut lease = LeaseConfig::new(slice);
        lease.fleet_size = a.usage_fleet_size;
        lease
    });
    let meter = FleetUsage::new(nats.clone(), cfg).context("--usage-bucket")?;
    Ok(Some(Arc::new(meter)))
}

/// The record of used approvals and nonces: --replay-db alone, or the
/// fleet's bucket (--spend-bucket) with --replay-db as its cache.
fn single_use(
    a: &VerifierdArgs,
    feed: Option<&mandate_verifier::feed::FeedConfig>,
) -> Result<Option<Arc<dyn SingleUse>>> {
    let Some(dir) = &a.replay_db else {
        return Ok(None);
    };
    let guard = Arc::new(ReplayGuard::open(dir)?);
    let (Some(bucket), Some(nats)) = (&a.spend_bucket, feed) else {
        return Ok(Some(guard));
    };
    let mut cfg = SpendBucketConfig::new(bucket.clone());
    cfg.nonces = a.spend_nonces;
    let record = FleetSingleUse::new(guard, nats.clone(), cfg).context("--spend-bucket")?;
    Ok(Some(Arc::new(record)))
}

/// The configuration line at start, and what is insecure about it.
fn log_config(
    server: &crate::startup::Server,
    a: &VerifierdArgs,
    feed: Option<&mandate_verifier::feed::FeedConfig>,
) {
    let mut settings: Vec<(&str, String)> = vec![
        ("listen", a.listen.clone()),
        ("data_dir", a.data_dir.display().to_string()),
        ("public_key", a.public_key.trim().to_string()),
    ];
    let mut insecure = Vec::new();
    crate::startup::feed_settings(feed, &mut settings, &mut insecure);
    if let Some(dir) = &a.replay_db {
        settings.push(("replay_db", dir.display().to_string()));
    }
    if let Some(dir) = &a.usage_db {
        settings.push(("usage_db", dir.display().to_string()));
    }
    if let Some(b) = &a.usage_bucket {
        let mode = match a.usage_lease {
            Some(n) => format!(" (leases of up to {n}, fleet of {})", a.usage_fleet_size),
            None => " (exact)".into(),
        };
        settings.push(("usage_bucket", format!("{b}{mode}")));
    }
    match &a.spend_bucket {
        Some(b) => settings.push((
            "spend_bucket",
            format!("{b}{}", if a.spend_nonces { " (and nonces)" } else { "" }),
        )),
        None if a.replay_db.is_some() => insecure.push(
            "no --spend-bucket: approvals and proof nonces are used once at THIS verifier; \
             another verifier accepts them again"
                .into(),
        ),
        None => {}
    }
    if feed.is_none() {
        insecure.push(format!(
            "no revocation feed (--nats): only revocations written to {} on this host are \
             seen; revocations made at the issuer never reach this verifier",
            a.data_dir.display()
        ));
    }
    match (&a.audit_db, &a.audit_key) {
        (Some(db), Some(key)) => {
            settings.push(("audit_db", db.display().to_string()));
            settings.push(("audit_key", key.display().to_string()));
            if a.audit_async {
                insecure.push(crate::audit::options(true).loss_window());
            }
        }
        _ => insecure
            .push("no audit log (--audit-db, --audit-key): decisions are not recorded".into()),
    }
    let addr = a.listen.parse().ok();
    if let Some(w) = addr.and_then(crate::startup::listen_warning) {
        insecure.push(w);
    }
    server.log_config(&settings, &insecure);
}

async fn authorize(
    State(app): State<App>,
    body: Result<Json<AuthorizeRequest>, axum::extract::rejection::JsonRejection>,
) -> (StatusCode, Json<serde_json::Value>) {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.body_text() })),
            )
        }
    };
    let verifier = app.verifier.clone();
    // Signature checks are CPU work: keep them off the async workers.
    let decision = tokio::task::spawn_blocking(move || body.decide(&verifier)).await;
    // No decision is answered before its record is durable (as the
    // middleware and the gateway): awaited, so concurrent decisions share
    // one synced write; an allow the audit log could not keep is not given.
    if let Err(e) = app.verifier.audit_durable().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("audit log unavailable ({e}); retry later") })),
        );
    }
    match decision {
        Ok(d) => {
            let status = if d.is_allowed() {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            (status, Json(serde_json::to_value(&d).unwrap_or_default()))
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "internal error" })),
        ),
    }
}

async fn healthz(State(app): State<App>) -> (StatusCode, Json<serde_json::Value>) {
    let position = match &app.feed {
        Some(f) => f.state().applied_seq(),
        None => app.store.feed_position().unwrap_or(0),
    };
    let (stale, silent_ms, behind_ms) = match &app.feed {
        Some(f) => (
            f.stale_because(),
            f.state().silent_for().map(|d| d.as_millis() as u64),
            f.state().behind_for().map(|d| d.as_millis() as u64),
        ),
        None => (None, None, None),
    };
    // Decisions are refused while the audit log cannot record them.
    let audit = app.verifier.audit_health().err().map(|e| e.to_string());
    let status = if stale.is_some() || audit.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({
            "feed_position": position,
            "stale": stale.is_some(),
            "stale_because": stale,
            "silent_ms": silent_ms,
            "behind_ms": behind_ms,
            "audit_error": audit,
        })),
    )
}
