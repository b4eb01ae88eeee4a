//! `mandate gateway`: a verifying reverse proxy in front of APIs (and MCP
//! tool servers) that cannot embed the verifier. Each request is decided by
//! the same verifier as the middleware (revocation list or feed,
//! verification cache, signed audit log); an allowed one is forwarded to its
//! route's upstream with the Mandate token removed and the upstream's own
//! credential injected — a secret the agent never sees.

mod config;
mod proxy;

use crate::args::GatewayArgs;
use anyhow::{Context, Result};
use config::Config;
use mandate_verifier::{
    spawn_feed, AuditLog, AuditOptions, CacheOptions, FeedConfig, ReplayGuard, RevocationStore,
    RootKeys, Verifier,
};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

pub(crate) fn run(a: GatewayArgs) -> Result<ExitCode> {
    let config = Config::read(&a.config)?;
    crate::serve::init_logging("text");
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.workers {
        builder.worker_threads(n);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut verifier =
            Verifier::new(RootKeys::single(config.public_key)).with_cache(CacheOptions::default());
        if let Some(dir) = &config.replay_db {
            verifier = verifier.with_replay_guard(Arc::new(ReplayGuard::open(dir)?));
        }
        let mut _feed = None;
        if let Some(dir) = &config.revocation_db {
            let store = Arc::new(RevocationStore::open(dir)?);
            match &config.nats {
                Some(url) => {
                    let mut cfg = FeedConfig::new(url.clone());
                    cfg.staleness = config.staleness;
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
            let log = AuditLog::open(dir, &key, AuditOptions::default())?;
            verifier = verifier.with_audit(log.clone());
            audit = Some(log);
        }
        if config.replay_db.is_some() {
            for r in config.routes.iter().filter(|r| r.audience.is_none()) {
                tracing::warn!(
                    route = if r.prefix.is_empty() {
                        "/"
                    } else {
                        r.prefix.as_str()
                    },
                    "no public_url: every proof of possession on this route is refused"
                );
            }
        }
        let gateway = Arc::new(proxy::Gateway::new(verifier, config.routes));
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let gateway = gateway.clone();
            async move { gateway.handle(req).await }
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        println!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        // A proxy adds a hop: no Nagle delay on it.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        if let Some(log) = &audit {
            log.flush()?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
