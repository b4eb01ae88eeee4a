//! `mandate serve`: the issuer HTTP service and its embedded verifier in one
//! process, sharing one data directory; with `--nats`, revocations are also
//! published to the revocation feed for every other verifier, and the
//! embedded verifier follows the feed (revocations made at other issuer
//! services reach it; a stale feed makes it deny), and the service joins the
//! fleet of issuer services on that server: its mints are published to the
//! `MANDATE_MINTS` stream and everyone's are followed into its registry
//! (`mandate_server::MintFleet`; SERVICE.md S6).

use crate::args::ServeArgs;
use anyhow::{bail, Context, Result};
use mandate_server::{RootKeyFile, Service, ServiceConfig};
use std::process::ExitCode;

pub(crate) fn serve(a: ServeArgs) -> Result<ExitCode> {
    let config = config(&a)?;
    let mut feed_config = crate::feed::config(&a.feed)?;
    let staleness = mandate_spec::parse_duration(&a.staleness).context("--staleness")?;
    // Checked before anything starts (a private key given by mistake).
    crate::feed::trusted(&a.trust.revocation_key, "--revocation-key")?;
    if feed_config.is_some() && config.revocation_keys.is_empty() {
        bail!(
            "--nats publishes signed revocation entries: give the revocation key with \
             --revocation-key-file ID=FILE or [[revocation_keys]] in the configuration \
             (`mandate keygen --out revocation.key` makes one; it is not a root key)"
        );
    }
    let server = crate::startup::init("serve", &a.log_format)?;
    let mut service = Service::open(&config)?.with_metrics(server.render());
    let signer = service.revocation_signer().cloned();
    if let Some(cfg) = &mut feed_config {
        // The embedded verifier trusts the service's own revocation keys,
        // and any others given.
        let mut trusted = service.trusted_revocation_keys();
        for spec in &a.trust.revocation_key {
            trusted
                .insert_spec(spec)
                .map_err(|e| anyhow::anyhow!("--revocation-key {spec}: {e}"))?;
        }
        cfg.revocation_keys = trusted;
    }
    let (current, _) = service.keys().current();
    log_config(&server, &config, feed_config.as_ref(), staleness, current)?;
    let audit = service.audit_log().cloned();
    // Publishing the embedded verifier's audit checkpoints (SPEC §12.4).
    let publish = match (&audit, &feed_config) {
        _ if !a.audit_publish.audit_publish => None,
        (Some(log), Some(nats)) => {
            let file = config
                .audit_key
                .as_ref()
                .context("--audit-publish needs the audit key")?;
            let key = crate::io::read_private_key(file).context("audit key")?;
            let log_key = format!("ed25519/{}", hex::encode(key.public().to_bytes()));
            Some((log.path().to_path_buf(), log_key, nats.clone()))
        }
        _ => bail!("--audit-publish needs an audit log (--audit-key FILE) and --nats"),
    };
    let runtime = server.runtime(None)?;
    runtime.block_on(async move {
        if let Some((db, log_key, nats)) = &publish {
            let p = &a.audit_publish;
            crate::audit::spawn_publisher(
                &p.audit_stream,
                p.audit_publish_records,
                db,
                log_key,
                nats,
            )?;
        }
        let mut _feed_handle = None;
        if let (Some(mut feed_config), Some(signer)) = (feed_config, signer) {
            feed_config.staleness = staleness;
            let url = crate::startup::redact_url(&feed_config.url);
            // The fleet's mint stream, on the same server, its records
            // signed and checked with the same revocation keys.
            let fleet = mandate_server::MintFleet::start(
                mandate_server::MintFleetConfig::new(feed_config.clone()),
                signer.clone(),
                service.registry().clone(),
            )
            .await
            .with_context(|| format!("joining the issuer services' mint stream at {url}"))?;
            service = service.with_mint_fleet(fleet);
            // The approval queue every issuer service shares.
            let bucket = mandate_server::ApprovalBucket::open(&feed_config, signer.clone())
                .await
                .with_context(|| format!("opening the shared approval queue at {url}"))?;
            service = service
                .with_shared_approvals(std::sync::Arc::new(bucket))
                .await
                .context("sharing the approval queue")?;
            let publisher =
                mandate_verifier::feed::FeedPublisher::connect(feed_config.clone(), signer)
                    .await
                    .with_context(|| format!("connecting to the revocation feed at {url}"))?;
            let store = service.store().clone();
            // The embedded verifier follows the feed into the same store.
            let (list, handle) = mandate_verifier::feed::spawn_feed(store.clone(), feed_config)?;
            _feed_handle = Some(handle);
            let runtime = tokio::runtime::Handle::current();
            // Revocations and live restrictions: local synced write first
            // (the embedded verifier sees it at once), then the feed's
            // acknowledgement; only then does the client get its 200.
            service = service
                .with_revocation_list(list)
                .with_sink(mandate_server::FeedSink::new(store, publisher, runtime));
        }
        // Agents waiting for a decision are answered at once on SIGTERM or
        // SIGINT, so they do not hold the drain.
        service = service.end_waits_on(stop_signal());
        let listener = crate::startup::bind(config.listen).await?;
        server
            .serve(
                listener,
                service.into_router(),
                audit,
                crate::startup::DRAIN,
            )
            .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The configuration line at start (key files by path, never their
/// contents), and what is insecure about it.
fn log_config(
    server: &crate::startup::Server,
    config: &ServiceConfig,
    feed: Option<&mandate_verifier::feed::FeedConfig>,
    staleness: std::time::Duration,
    current: u32,
) -> Result<()> {
    let mut settings: Vec<(&str, String)> = vec![
        ("listen", config.listen.to_string()),
        ("data_dir", config.data_dir()?.display().to_string()),
        (
            "root_keys",
            config
                .root_keys
                .iter()
                .map(|k| format!("{}={}", k.id, k.file.display()))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("current_key_id", current.to_string()),
        (
            "audit_key",
            config
                .audit_key
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string()),
        ),
        (
            "approvers",
            config
                .approvers
                .iter()
                .map(|a| format!("{}={}", a.name, a.file.display()))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    let mut insecure = Vec::new();
    // Webhooks by host only: a Slack webhook's path is its secret.
    let mut hooks = Vec::new();
    for a in &config.approvers {
        let Some(url) = &a.webhook_url else { continue };
        let uri: Option<http::Uri> = url.parse().ok();
        let host = uri.as_ref().and_then(|u| u.host()).unwrap_or("?");
        hooks.push(format!("{}={host}", a.name));
        let loopback = matches!(host, "localhost" | "[::1]") || host.starts_with("127.");
        if uri.as_ref().and_then(|u| u.scheme_str()) == Some("http") && !loopback {
            insecure.push(format!(
                "approver {:?}: webhook over plain http to {host} (signed, not private)",
                a.name
            ));
        }
    }
    settings.push(("webhooks", hooks.join(",")));
    settings.push((
        "public_url",
        config.public_url.clone().unwrap_or_else(|| "none".into()),
    ));
    let feed = feed.map(|f| {
        let mut f = f.clone();
        f.staleness = staleness;
        f
    });
    crate::startup::feed_settings(feed.as_ref(), &mut settings, &mut insecure);
    if config.audit_key.is_none() {
        insecure.push(
            "no audit log (--audit-key): decisions are not recorded, /ui/decisions is empty".into(),
        );
    }
    if let Some(w) = crate::startup::listen_warning(config.listen) {
        insecure.push(w);
    }
    server.log_config(&settings, &insecure);
    Ok(())
}

/// SIGTERM or SIGINT (another listener than the server's drain).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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
            .map(|s| key_file_arg(s, "--root-key"))
            .collect::<Result<_>>()?;
    }
    if let Some(id) = a.current_key_id {
        config.current_key_id = Some(id);
    }
    if !a.revocation_key_file.is_empty() {
        config.revocation_keys = a
            .revocation_key_file
            .iter()
            .map(|s| key_file_arg(s, "--revocation-key-file"))
            .collect::<Result<_>>()?;
    }
    if let Some(id) = a.current_revocation_key_id {
        config.current_revocation_key_id = Some(id);
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
                Ok(mandate_server::ApproverFile {
                    name: name.trim().to_string(),
                    file: file.into(),
                    ..Default::default()
                })
            })
            .collect::<Result<_>>()?;
    }
    Ok(config)
}

/// `ID=FILE` of `--root-key` and `--revocation-key-file`.
fn key_file_arg(arg: &str, flag: &str) -> Result<RootKeyFile> {
    let Some((id, file)) = arg.split_once('=') else {
        bail!("{flag} expects ID=FILE, e.g. 0=key-0.key");
    };
    let id: u32 = id
        .trim()
        .parse()
        .with_context(|| format!("{flag}: the id {id:?} is not a number"))?;
    if file.trim_start().starts_with("ed25519-private/") {
        // Never echo it: it is a secret that just landed in shell history.
        bail!("{flag} takes a key FILE, not the key itself: private keys never go on the command line");
    }
    if file.is_empty() {
        bail!("{flag} {id}=: no file given");
    }
    Ok(RootKeyFile {
        id,
        file: file.into(),
    })
}
