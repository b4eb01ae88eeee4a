//! `mandate serve`: the issuer HTTP service and its embedded verifier in one
//! process, sharing one data directory; with `--nats`, revocations are also
//! published to the revocation feed for every other verifier, and the
//! embedded verifier follows the feed (revocations made at other issuer
//! services reach it; a stale feed makes it deny).

use crate::args::ServeArgs;
use anyhow::{bail, Context, Result};
use mandate_issuer::{RootKeyFile, Service, ServiceConfig};
use std::io::Write;
use std::process::ExitCode;

pub(crate) fn serve(a: ServeArgs) -> Result<ExitCode> {
    let config = config(&a)?;
    let feed_config = crate::feed::config(&a.feed)?;
    let staleness = mandate_spec::parse_duration(&a.staleness).context("--staleness")?;
    init_logging(&a.log_format);
    let mut service = Service::open(&config)?;
    let (current, _) = service.keys().current();
    let key_ids: Vec<u32> = service
        .keys()
        .public_keys()
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut _feed_handle = None;
        if let Some(mut feed_config) = feed_config {
            feed_config.staleness = staleness;
            let url = feed_config.url.clone();
            let publisher = mandate_verifier::FeedPublisher::connect(feed_config.clone())
                .await
                .with_context(|| format!("connecting to the revocation feed at {url}"))?;
            let store = service.store().clone();
            // The embedded verifier follows the feed into the same store.
            let (list, handle) = mandate_verifier::spawn_feed(store.clone(), feed_config)?;
            _feed_handle = Some(handle);
            let runtime = tokio::runtime::Handle::current();
            // Called on a blocking thread: local synced write first (the
            // embedded verifier sees it at once), then the feed's
            // acknowledgement; only then does the client get its 200.
            service = service.with_revocation_list(list).with_sink(
                move |entries: &[mandate_verifier::Revocation]| {
                    store.revoke(entries)?;
                    for e in entries {
                        runtime
                            .block_on(publisher.publish(e))
                            .map_err(|err| mandate_issuer::ServiceError::Sink(err.to_string()))?;
                    }
                    Ok(())
                },
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            root_key_ids = ?key_ids,
            current_key_id = current,
            data_dir = %config.data_dir()?.display(),
            "mandate serve listening"
        );
        // The one line on standard output: scripts read the address from it
        // (useful with --listen 127.0.0.1:0).
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        service
            .serve(listener, shutdown_signal())
            .await
            .context("serving")
    })?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The configuration file (if any), then the flags over it.
fn config(a: &ServeArgs) -> Result<ServiceConfig> {
    let mut config = match &a.config {
        Some(path) => ServiceConfig::read(path)?,
        None => ServiceConfig::default(),
    };
    if let Some(listen) = a.listen {
        config.listen = listen;
    }
    if let Some(dir) = &a.data_dir {
        config.data_dir = Some(dir.clone());
    }
    if !a.root_key.is_empty() {
        config.root_keys = a
            .root_key
            .iter()
            .map(|s| root_key(s))
            .collect::<Result<_>>()?;
    }
    if let Some(id) = a.current_key_id {
        config.current_key_id = Some(id);
    }
    if let Some(k) = &a.audit_key {
        config.audit_key = Some(k.clone());
    }
    if !a.approver.is_empty() {
        config.approvers = a
            .approver
            .iter()
            .map(|s| {
                let (name, file) = s
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--approver expects NAME=FILE"))?;
                if file.trim_start().starts_with("ed25519-private/") {
                    bail!("--approver takes a key FILE, not the key itself");
                }
                Ok(mandate_issuer::ApproverFile {
                    name: name.trim().to_string(),
                    file: file.into(),
                })
            })
            .collect::<Result<_>>()?;
    }
    Ok(config)
}

fn root_key(arg: &str) -> Result<RootKeyFile> {
    let Some((id, file)) = arg.split_once('=') else {
        bail!("--root-key expects ID=FILE, e.g. 0=root.key");
    };
    let id: u32 = id
        .trim()
        .parse()
        .with_context(|| format!("--root-key: the id {id:?} is not a number"))?;
    if file.trim_start().starts_with("ed25519-private/") {
        // Never echo it: it is a secret that just landed in shell history.
        bail!("--root-key takes a key FILE, not the key itself: private keys never go on the command line");
    }
    if file.is_empty() {
        bail!("--root-key {id}=: no file given");
    }
    Ok(RootKeyFile {
        id,
        file: file.into(),
    })
}

pub(crate) fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Completes on Ctrl-C or SIGTERM: the server then finishes the requests in
/// flight and stops.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
