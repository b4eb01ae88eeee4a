//! The one start-up path of the three server subcommands (`serve`,
//! `verifierd`, `gateway`): logging, the metrics recorder, the async
//! runtime, the configuration logged at start (secrets never; insecure
//! settings at WARN), `GET /metrics`, and serving until SIGTERM or SIGINT,
//! then draining (stop accepting, finish the requests in flight) and
//! flushing the audit log.

use anyhow::{Context, Result};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use mandate_verifier::audit::AuditLog;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// Upper bounds of the latency histograms' buckets, in seconds (+Inf is
/// implicit): from a cached decision (~10 µs) to a slow upstream.
const BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 1.0, 5.0,
];

/// How long the requests in flight get after SIGTERM/SIGINT by default.
pub(crate) const DRAIN: Duration = Duration::from_secs(30);

/// The longest drain any server waits (the gateway waits for its slowest
/// route, up to this): under a service manager's default stop timeout
/// (systemd's 90 s), so the audit log is always flushed and the exit is 0.
pub(crate) const MAX_DRAIN: Duration = Duration::from_secs(60);

/// A server being started: logging and metrics are set up.
pub(crate) struct Server {
    name: &'static str,
    metrics: PrometheusHandle,
}

/// Sets up logging (`text` or `json` on standard error; the level from
/// `RUST_LOG`, default info; no colours when `NO_COLOR` is set or standard
/// error is not a terminal) and the metrics recorder, before anything is
/// opened (the stores report their first figures on opening).
pub(crate) fn init(name: &'static str, log_format: &str) -> Result<Server> {
    init_logging(log_format);
    let metrics = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .context("metrics buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    mandate_verifier::metrics::describe();
    if name == "serve" {
        mandate_server::describe_metrics();
    }
    Ok(Server { name, metrics })
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        // JSON strings escape line breaks and control characters themselves.
        builder.json().try_init()
    } else {
        builder.fmt_fields(escaping_fields()).try_init()
    };
}

/// How the text log writes each field: through the text outputs' display
/// rule (`mandate_spec::display::text`), whatever the field. Many fields
/// carry what a request said (a revocation's reason, an action, a
/// resource, an approver's name): escaped here, none of them can start a
/// forged log line, move a terminal's cursor or reorder the text around it
/// (line breaks, ANSI and bidi controls are shown as escapes).
fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let shown = format!("{value:?}");
        let shown = mandate_spec::display::text(&shown);
        if field.name() == "message" {
            write!(w, "{shown}")
        } else {
            write!(w, "{}={shown}", field.name())
        }
    })
    .delimited(" ")
}

/// Colours only on a terminal, and never when `NO_COLOR` is set to anything
/// but the empty string (no-color.org).
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

impl Server {
    /// The multi-threaded runtime (`workers` threads, default one per core).
    pub(crate) fn runtime(&self, workers: Option<usize>) -> Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = workers {
            builder.worker_threads(n);
        }
        builder
            .enable_all()
            .build()
            .context("starting the async runtime")
    }

    /// Logs the configuration at start, one INFO line (`settings`: what
    /// was configured; paths of key files, never key material or
    /// credentials), then one WARN line per insecure setting.
    pub(crate) fn log_config(&self, settings: &[(&str, String)], insecure: &[String]) {
        let config = settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!(server = self.name, version = env!("CARGO_PKG_VERSION"), %config, "configuration");
        for warning in insecure {
            tracing::warn!(server = self.name, "INSECURE: {warning}");
        }
    }

    /// Renders the metrics (Prometheus text).
    pub(crate) fn render(&self) -> mandate_server::RenderMetrics {
        let handle = self.metrics.clone();
        std::sync::Arc::new(move || handle.render())
    }

    /// `GET /metrics` (Prometheus text), to merge into a server's router.
    pub(crate) fn metrics_route<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let render = self.render();
        Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move {
                    (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render(),
                    )
                        .into_response()
                }
            }),
        )
    }

    /// Serves `app` on `listener` (after printing `listening on http://ADDR`
    /// on standard output, the line scripts wait for) until SIGTERM or
    /// SIGINT; then stops accepting (new connections are refused), lets
    /// the requests in flight finish for up to `drain`, and flushes `audit`.
    /// Must run inside the runtime.
    pub(crate) async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        app: Router,
        audit: Option<AuditLog>,
        drain: Duration,
    ) -> Result<()> {
        // Signal handlers first: once "listening" is said, SIGTERM drains.
        let signal = shutdown_signal();
        let addr = listener.local_addr()?;
        tracing::info!(server = self.name, %addr, "listening");
        // A server keeps serving when nobody reads its standard output.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "listening on http://{addr}").and_then(|()| stdout.flush());
        // Histograms keep their samples until upkeep folds them in.
        let handle = self.metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
        let conns = accept_until_signal(listener, app, signal).await;
        // Every connection is told to finish: idle ones close at once, one
        // with a request in flight closes after answering it; a client that
        // never completes its request head is cut by HEADER_READ_TIMEOUT.
        tokio::select! {
            () = conns.shutdown() => {}
            () = tokio::time::sleep(drain) => tracing::warn!(
                server = self.name,
                limit_s = drain.as_secs_f64(),
                "connections still open after the drain limit (requests in flight, or a \
                 client that never finished its request): stopping anyway"
            ),
        }
        if let Some(log) = audit {
            let seq = tokio::task::spawn_blocking(move || log.flush())
                .await
                .context("flushing the audit log")??;
            tracing::info!(server = self.name, last_seq = seq, "audit log flushed");
        }
        tracing::info!(server = self.name, "stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
/// How long a client gets to send a request's head (request line and
/// headers), on every server: a client that sends it slowly or never holds
/// no connection (nor, at shutdown, the drain) longer than this.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on every connection `listener` accepts, until `signal`
/// (SIGTERM or SIGINT); then the listener is closed (new connections are refused) and
/// the connections still open are returned, to be drained.
async fn accept_until_signal(
    listener: tokio::net::TcpListener,
    app: Router,
    signal: impl std::future::Future<Output = ()>,
) -> hyper_util::server::graceful::GracefulShutdown {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conns = hyper_util::server::graceful::GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment and go on accepting.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        // No Nagle delay: answers are small and a proxy adds a hop.
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        // No protocol upgrades (WebSocket): none of the servers speaks one.
        let conn = http.serve_connection(TokioIo::new(tcp), service);
        let conn = conns.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    conns
}

/// SIGTERM or SIGINT, as a future. The handlers are installed when this is
/// called, not when the future is first polled: a signal sent as soon as a
/// server says it is listening is caught (not the default action, which
/// kills the process before the audit log is flushed).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(int) => {},
                () = wait(term) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: no new connections; finishing the requests in flight");
    }
}

/// Binds `addr`, naming it in the error.
pub(crate) async fn bind(
    addr: impl tokio::net::ToSocketAddrs + std::fmt::Display,
) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Why listening on `addr` is insecure, if it is: plain HTTP reachable
/// from other hosts (tokens and decisions cross the network in clear).
pub(crate) fn listen_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "plain HTTP on {addr}, reachable from other hosts: tokens cross the network in \
             clear unless TLS is terminated in front"
        )
    })
}

/// The feed settings for the configuration line: the URL without any
/// user or password, and which credential and CA files are used.
pub(crate) fn feed_settings(
    cfg: Option<&mandate_verifier::feed::FeedConfig>,
    settings: &mut Vec<(&'static str, String)>,
    insecure: &mut Vec<String>,
) {
    use mandate_verifier::feed::FeedCredentials;
    let Some(cfg) = cfg else {
        settings.push(("nats", "none".into()));
        return;
    };
    settings.push(("nats", redact_url(&cfg.url)));
    settings.push(("staleness", format!("{}s", cfg.staleness.as_secs_f64())));
    let creds = match &cfg.credentials {
        None => "none".to_string(),
        Some(FeedCredentials::CredsFile(p)) => format!("creds-file:{}", p.display()),
        Some(FeedCredentials::UserPassword { user, .. }) => format!("user:{user}+password"),
        Some(FeedCredentials::Token(_)) => "token".to_string(),
        Some(_) => "other".to_string(),
    };
    settings.push(("nats_credentials", creds));
    settings.push((
        "revocation_keys",
        cfg.revocation_keys
            .ids()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ));
    if let Some(ca) = &cfg.tls_ca {
        settings.push(("nats_ca", ca.display().to_string()));
    }
    if let Some(w) = nats_warning(&cfg.url, cfg.tls_ca.is_some()) {
        insecure.push(w);
    }
    if cfg.insecure_fail_open_when_stale {
        insecure.push(
            "--insecure-fail-open-when-stale: requests are allowed while the revocation feed \
             is stale or stuck; revocations may be missed"
                .into(),
        );
    }
}

/// Plain NATS (no TLS) to a host other than this one: revocations cross
/// the network unencrypted.
fn nats_warning(url: &str, tls_ca: bool) -> Option<String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    if tls_ca || scheme.eq_ignore_ascii_case("tls") {
        return None;
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_port.split(':').next().unwrap_or(host_port),
    };
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!local).then(|| {
        format!(
            "the revocation feed at {} is plain NATS to another host: revocations cross the \
             network unencrypted (use tls:// or --nats-ca)",
            redact_url(url)
        )
    })
}

/// `url` without the user information (`user:password@`), which may hold
/// a credential: the verifier library's redaction, used for every URL the
/// servers log or put in an error.
pub(crate) fn redact_url(url: &str) -> String {
    mandate_verifier::feed::redact_url(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A value from a request cannot forge a log line or reach the
    /// terminal as a control sequence.
    #[test]
    fn every_text_log_field_is_escaped() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .fmt_fields(escaping_fields())
            .finish();
        let evil = "x\n2026-11-30T10:00:00Z  INFO mandate_server: approved\u{1b}[2J\u{202e}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(reason = %evil, by = ?evil, "revoked {}", evil);
        });
        let line = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202e}'),
            "{line:?}"
        );
        assert!(line.contains("reason=x\\n2026"), "{line:?}");
    }

    #[test]
    fn user_information_never_reaches_the_log() {
        assert_eq!(
            redact_url("nats://alice:s3cret@feed.example:4222"),
            "nats://***@feed.example:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        let w = nats_warning("nats://alice:s3cret@feed.example:4222", false).unwrap_or_default();
        assert!(!w.contains("s3cret"), "{w}");
    }

    #[test]
    fn plain_nats_to_another_host_is_insecure() {
        assert!(nats_warning("nats://127.0.0.1:4222", false).is_none());
        assert!(nats_warning("nats://localhost:4222", false).is_none());
        assert!(nats_warning("nats://[::1]:4222", false).is_none());
        assert!(nats_warning("nats://feed.example:4222", false).is_some());
        assert!(nats_warning("nats://10.0.0.7:4222", true).is_none());
        assert!(nats_warning("tls://feed.example:4222", false).is_none());
    }

    #[test]
    fn listening_beyond_loopback_is_insecure() {
        assert!(listen_warning("127.0.0.1:8181".parse().unwrap()).is_none());
        assert!(listen_warning("0.0.0.0:8181".parse().unwrap()).is_some());
    }
}
