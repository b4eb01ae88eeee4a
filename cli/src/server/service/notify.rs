//! Approval notifications (SERVICE.md S3): a webhook per approver, told
//! when a request needs it (`approval_requested`) and when that request is
//! decided (`approval_decided`), with a link to the approval desk.
//!
//! - **Who.** Each approver a request asks for that this service holds the
//!   key of (same name and public key) and that has a `webhook_url`.
//! - **Signed.** `Mandate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256
//!   over "<t>.<body>">` with the approver's `webhook_secret_file` (Stripe's
//!   form); each attempt is signed at its own time. `Mandate-Delivery` (and
//!   the JSON body's `delivery`) is the same on every attempt of one
//!   notification (receivers drop duplicates by it).
//! - **Delivered in the background**, never delaying the request that
//!   caused it: up to [`MAX_ATTEMPTS`] attempts, exponential backoff with
//!   jitter from 0.5 s to 30 s, at most [`MAX_SPAN`] in all; 2xx is
//!   delivered; 3xx (never followed), 4xx other than 408 and 429 fail at
//!   once; anything else is retried. Each attempt has [`ATTEMPT_TIMEOUT`].
//!   At most [`MAX_OUTSTANDING`] notifications are in flight; more are
//!   dropped. Counted in `mandate_approval_notifications_total{event,
//!   outcome}` (`delivered`, `failed`, `dropped`) and
//!   `mandate_approval_notification_retries_total`; a final failure is
//!   logged at WARN.
//! - **Kept until delivered** ([`Outbox`], `DATA_DIR/notifications`,
//!   RocksDB): each notification is written (to RocksDB's write-ahead log)
//!   before the request that caused it is answered, and removed once
//!   delivered or given up; a service restarted after a crash (SIGKILL)
//!   sends again, with the same `Mandate-Delivery`, every notification it
//!   had not finished, if younger than [`MAX_KEPT`]. Not fsynced: a power
//!   cut may lose notifications in flight (the queue and the desk stay the
//!   record).
//! - **Plain client.** HTTP/1.1, one connection per attempt; `https` with
//!   the system's CA certificates (TLS 1.3); the URL is never logged (a
//!   Slack webhook's path is its secret): its host is.

use super::approvals::{ApprovalRecord, ApprovalStatus};
use super::config::{ApproverFile, ServiceConfig, WebhookFormat};
use super::error::ServiceError;
use super::Inner;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The most attempts of one notification.
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// The longest one notification is tried for, from its first attempt.
pub(crate) const MAX_SPAN: Duration = Duration::from_secs(600);

/// The longest one attempt takes: connecting, TLS, sending, and the
/// response's head.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most notifications in flight (waiting to be retried included).
pub(crate) const MAX_OUTSTANDING: usize = 10_000;

/// The first retry's delay (before jitter); doubled each time.
const FIRST_DELAY: Duration = Duration::from_millis(500);

/// The longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The counter of notifications, by event and outcome.
pub(crate) const NOTIFICATIONS: &str = "mandate_approval_notifications_total";

/// The counter of retried attempts.
pub(crate) const RETRIES: &str = "mandate_approval_notification_retries_total";

/// The oldest notification sent again after a restart.
pub(crate) const MAX_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The shortest webhook secret, in bytes.
const MIN_SECRET: usize = 16;

/// Where approvers are told of requests, and how.
pub(crate) struct Notifier {
    hooks: BTreeMap<String, Arc<Hook>>,
    /// The desk's URL, `<public_url>/ui/approvals`.
    desk: String,
    outstanding: Arc<Semaphore>,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Where notifications not yet delivered are kept, if anywhere.
    outbox: Option<Arc<Outbox>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("approvers", &self.hooks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One approver's webhook.
struct Hook {
    https: bool,
    /// Host (without brackets) and port to connect to.
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// Path and query.
    target: String,
    secret: Option<Vec<u8>>,
    format: WebhookFormat,
}

impl Notifier {
    /// The notifier `config` describes, or `None` when no approver has a
    /// webhook. Checks every setting (URLs, secrets, `public_url`) and reads
    /// the secrets; one line naming the setting at fault otherwise.
    pub(crate) fn from_config(config: &ServiceConfig) -> Result<Option<Notifier>, ServiceError> {
        let mut hooks = BTreeMap::new();
        for a in &config.approvers {
            if let Some(hook) = hook(a)? {
                hooks.insert(a.name.clone(), Arc::new(hook));
            }
        }
        if hooks.is_empty() {
            return Ok(None);
        }
        let Some(public) = &config.public_url else {
            return Err(ServiceError::Config(
                "an approver has a webhook_url: set public_url (e.g. \"https://issuer.example\"), \
                 the base of the desk links notifications carry"
                    .into(),
            ));
        };
        let uri: http::Uri = public
            .parse()
            .map_err(|e| ServiceError::Config(format!("public_url {public:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https"))
            || uri.host().is_none()
            || uri.query().is_some()
            || uri.authority().is_some_and(|a| a.as_str().contains('@'))
        {
            return Err(ServiceError::Config(format!(
                "public_url {public:?}: expected http(s)://HOST[:PORT][/PATH], without query or \
                 credentials"
            )));
        }
        let tls = if hooks.values().any(|h| h.https) {
            Some(tls_connector()?)
        } else {
            None
        };
        Ok(Some(Notifier {
            hooks,
            desk: format!("{}/ui/approvals", public.trim_end_matches('/')),
            outstanding: Arc::new(Semaphore::new(MAX_OUTSTANDING)),
            tls,
            outbox: None,
        }))
    }

    /// Keeps every notification in `outbox` until delivered or given up.
    pub(crate) fn with_outbox(mut self, outbox: Outbox) -> Notifier {
        self.outbox = Some(Arc::new(outbox));
        self
    }

    /// Sends again every notification the outbox kept (the service stopped
    /// before they were delivered): those younger than [`MAX_KEPT`] whose
    /// approver still has a webhook; the others are removed. Must be called
    /// in the runtime.
    pub(crate) fn resume(&self) {
        let Some(outbox) = &self.outbox else { return };
        let now = unix_now();
        let mut resumed = 0;
        for (key, kept) in outbox.all() {
            let hook = self.hooks.get(&kept.approver).cloned();
            let event = match kept.event.as_str() {
                "approval_requested" => Some(Event::Requested),
                "approval_decided" => Some(Event::Decided),
                _ => None,
            };
            let young = now.saturating_sub(kept.created) <= MAX_KEPT.as_secs();
            let (Some(hook), Some(event), true) = (hook, event, young) else {
                outbox.remove(&key);
                continue;
            };
            let Ok(permit) = self.outstanding.clone().try_acquire_owned() else {
                break;
            };
            let delivery = Delivery {
                hook,
                tls: self.tls.clone(),
                body: Bytes::from(kept.body.into_bytes()),
                event,
                id: kept.id,
                approver: kept.approver,
                delivery: key,
                outbox: Some(outbox.clone()),
            };
            resumed += 1;
            tokio::spawn(async move {
                let _permit = permit;
                delivery.run().await;
            });
        }
        if resumed > 0 {
            tracing::info!(
                resumed,
                "approval notifications not delivered before the last stop: sending them again"
            );
        }
    }

    /// The desk link of request `id`.
    fn desk_url(&self, id: &str) -> String {
        format!("{}#{id}", self.desk)
    }

    /// Sends `event` about `record` to each approver it asks for that this
    /// service holds the key of and that has a webhook.
    fn send(&self, s: &Inner, record: &ApprovalRecord, event: Event) {
        let mut told = Vec::new();
        for a in &record.approval.approvers {
            if told.contains(&a.name) {
                continue;
            }
            let held = s
                .approvers
                .get(&a.name)
                .is_some_and(|k| k.public().to_string() == a.key);
            let Some(hook) = self.hooks.get(&a.name).filter(|_| held) else {
                continue;
            };
            told.push(a.name.clone());
            let delivery = uuid::Uuid::new_v4().to_string();
            let body = match hook.format {
                WebhookFormat::Json => json_body(self, record, event, &a.name, &delivery),
                WebhookFormat::Slack => slack_body(self, record, event, &a.name),
            };
            let Ok(permit) = self.outstanding.clone().try_acquire_owned() else {
                metrics::counter!(NOTIFICATIONS, "event" => event.name(), "outcome" => "dropped")
                    .increment(1);
                tracing::warn!(
                    id = %record.id,
                    approver = %a.name,
                    event = event.name(),
                    "approval notification dropped: {MAX_OUTSTANDING} already in flight"
                );
                continue;
            };
            if let Some(outbox) = &self.outbox {
                outbox.keep(
                    &delivery,
                    &Kept {
                        id: record.id.clone(),
                        approver: a.name.clone(),
                        event: event.name().to_string(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                        created: unix_now(),
                    },
                );
            }
            let delivery = Delivery {
                hook: hook.clone(),
                tls: self.tls.clone(),
                body: Bytes::from(body),
                event,
                id: record.id.clone(),
                approver: a.name.clone(),
                delivery,
                outbox: self.outbox.clone(),
            };
            tokio::spawn(async move {
                let _permit = permit;
                delivery.run().await;
            });
        }
    }
}

/// What happened to a request.
#[derive(Debug, Clone, Copy)]
enum Event {
    Requested,
    Decided,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Requested => "approval_requested",
            Event::Decided => "approval_decided",
        }
    }
}

/// Tells the approvers of `record` (just queued) that it needs them.
pub(crate) fn requested(s: &Inner, record: &ApprovalRecord) {
    if let Some(n) = &s.notifier {
        n.send(s, record, Event::Requested);
    }
}

/// Tells the approvers of `record` (just approved or denied) it is decided.
pub(crate) fn decided(s: &Inner, record: &ApprovalRecord) {
    if let Some(n) = &s.notifier {
        n.send(s, record, Event::Decided);
    }
}

/// `a`'s webhook, checked, its secret read; `None` without `webhook_url`.
fn hook(a: &ApproverFile) -> Result<Option<Hook>, ServiceError> {
    let err = |m: String| ServiceError::Config(format!("approver {:?}: {m}", a.name));
    let Some(url) = &a.webhook_url else {
        if a.webhook_secret_file.is_some() {
            return Err(err("webhook_secret_file without webhook_url".into()));
        }
        return Ok(None);
    };
    // Never echo the URL: a Slack webhook's path is its secret.
    let lower = url.trim().to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(err("webhook_url: only http and https URLs".into()));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| err(format!("webhook_url is not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(err("webhook_url: only http and https URLs".into())),
    };
    let Some(authority) = uri.authority() else {
        return Err(err("webhook_url: no host".into()));
    };
    if authority.as_str().contains('@') {
        return Err(err(
            "webhook_url: no credentials in the URL (the notifications are signed with \
             webhook_secret_file)"
                .into(),
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(err("webhook_url: no host".into()));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let target = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let secret = match &a.webhook_secret_file {
        Some(file) => {
            Some(read_secret(file).map_err(|m| err(format!("webhook_secret_file: {m}")))?)
        }
        None if a.webhook_format == WebhookFormat::Json => {
            return Err(err(
                "webhook_secret_file is required: the receiver checks each notification's \
                 signature with it (e.g. `openssl rand -hex 32 > finance.webhook`)"
                    .into(),
            ))
        }
        None => None,
    };
    Ok(Some(Hook {
        https,
        host: host.to_string(),
        port,
        authority: authority.as_str().to_string(),
        target: if target.is_empty() {
            "/".into()
        } else {
            target
        },
        secret,
        format: a.webhook_format,
    }))
}

/// A webhook secret: the file's content without surrounding whitespace,
/// used as bytes (a hex string is used as text, as the receiver configures
/// it), at least [`MIN_SECRET`] bytes.
fn read_secret(file: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if meta.len() > 4096 {
        return Err(format!("{}: larger than 4 KiB", file.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                "webhook secret file is accessible by other users (chmod 600 it)"
            );
        }
    }
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let trimmed = bytes.trim_ascii().to_vec();
    if trimmed.len() < MIN_SECRET {
        return Err(format!(
            "{}: shorter than {MIN_SECRET} bytes (e.g. `openssl rand -hex 32`)",
            file.display()
        ));
    }
    Ok(trimmed)
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, ServiceError> {
    let config =
        crate::tls::client_config("an approver's webhook_url").map_err(ServiceError::Config)?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `Mandate-Signature` of `body` at `t` (unix seconds) with `secret`.
pub(crate) fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn json_body(
    n: &Notifier,
    r: &ApprovalRecord,
    event: Event,
    approver: &str,
    delivery: &str,
) -> Vec<u8> {
    let agents: Vec<serde_json::Value> = r.chain["hops"]
        .as_array()
        .map(|hops| {
            hops.iter()
                .map(|h| serde_json::json!({ "agent": h["agent"], "purpose": h["purpose"] }))
                .collect()
        })
        .unwrap_or_default();
    let mut body = serde_json::json!({
        "event": event.name(),
        "delivery": delivery,
        "id": r.id,
        "approver": approver,
        "request": {
            "action": r.request.action,
            "resource": r.request.resource,
            "params": r.request.params,
        },
        "principal": r.chain["principal"],
        "agents": agents,
        "reason": r.reason,
        "desk_url": n.desk_url(&r.id),
        "submitted_at": rfc3339(r.submitted_at),
        "expires_at": rfc3339(r.approval.expires_at),
    });
    if let Event::Decided = event {
        body["status"] = serde_json::to_value(r.status).unwrap_or_default();
        body["decided_by"] = r.decided_by.clone().into();
        body["decided_at"] = r.decided_at.map(rfc3339).into();
        if let Some(why) = &r.denied_because {
            body["denied_because"] = why.clone().into();
        }
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn slack_body(n: &Notifier, r: &ApprovalRecord, event: Event, approver: &str) -> Vec<u8> {
    let mut sentence = format!(
        "{} {} to {}",
        slack(&r.request.action),
        r.request
            .params
            .iter()
            .map(|(k, v)| slack(&format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(", "),
        slack(&r.request.resource)
    );
    sentence = sentence.replace("  ", " ");
    if let Some(p) = r.chain["principal"].as_str() {
        sentence.push_str(&format!(" for {}", slack(p)));
    }
    if let Some(hops) = r.chain["hops"].as_array() {
        let via: Vec<String> = hops
            .iter()
            .map(|h| {
                let agent = slack(h["agent"].as_str().unwrap_or("?"));
                match h["purpose"].as_str() {
                    Some(p) => format!("{agent} (purpose {})", slack(p)),
                    None => agent,
                }
            })
            .collect();
        if !via.is_empty() {
            sentence.push_str(&format!(" via {}", via.join(" → ")));
        }
    }
    let link = format!("<{}|open the approval desk>", n.desk_url(&r.id));
    let text = match (event, r.status) {
        (Event::Requested, _) => format!(
            "Approval needed from {}: {sentence}. Reason: {}. {link}",
            slack_plain(approver),
            slack(&r.reason)
        ),
        (Event::Decided, ApprovalStatus::Denied) => format!(
            "Denied by {}: {sentence}. Because: {}. {link}",
            slack_plain(r.decided_by.as_deref().unwrap_or("?")),
            slack(r.denied_because.as_deref().unwrap_or(""))
        ),
        (Event::Decided, status) => format!(
            "{} by {}: {sentence}. {link}",
            if status == ApprovalStatus::Approved {
                "Approved"
            } else {
                "Decided"
            },
            slack_plain(r.decided_by.as_deref().unwrap_or("?"))
        ),
    };
    serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default()
}

/// A value as Slack text: in an inline code span (Slack neither links a
/// bare URL nor formats `*bold*`, `_`, `~` there; a backquote in the value
/// becomes `ˋ` so it cannot end the span), `&`, `<`, `>` escaped (no link
/// or mention can be made of it), hidden characters (controls, bidi
/// controls, invisible format characters) escaped as the text outputs show
/// them (`\n`, `\u{202e}`), at most 200 characters.
fn slack(v: &str) -> String {
    format!("`{}`", slack_plain(&v.replace('`', "ˋ")))
}

/// A value from the service's own configuration or an admin (an approver's
/// name, who decided) as Slack text: escaped as [`slack`] does, without
/// the code span.
fn slack_plain(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // The one display rule (SPEC §16): every hidden character shown
            // escaped, `\u{200b}`, never passed on (a line break, a bidi
            // mark) nor dropped (a value differing by an invisible
            // character would read the same).
            c if mandate_spec::display::is_hidden(c) => {
                let mut one = [0u8; 4];
                out.push_str(&mandate_spec::display::text(c.encode_utf8(&mut one)).to_string());
            }
            c => out.push(c),
        }
    }
    out
}

/// One notification to one approver, tried until delivered or given up.
struct Delivery {
    hook: Arc<Hook>,
    tls: Option<tokio_rustls::TlsConnector>,
    body: Bytes,
    event: Event,
    id: String,
    approver: String,
    delivery: String,
    /// Where it is kept until it ends (its key is `delivery`).
    outbox: Option<Arc<Outbox>>,
}

/// A notification as the outbox keeps it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Kept {
    /// The approval request's id.
    id: String,
    approver: String,
    event: String,
    /// The body, as first made (JSON or Slack's JSON: UTF-8).
    body: String,
    /// When it was made (unix seconds).
    created: u64,
}

/// Notifications not yet delivered (`DATA_DIR/notifications`, RocksDB),
/// by delivery id. Written before the request that caused them is
/// answered; an error is logged, never fails that request (the queue is
/// the record; the notification is then only not kept).
pub(crate) struct Outbox {
    db: rocksdb::DB,
    path: std::path::PathBuf,
}

impl Outbox {
    /// Opens (creating) the outbox at `path`.
    pub(crate) fn open(path: &Path) -> Result<Outbox, ServiceError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = rocksdb::DB::open(&opts, path).map_err(|e| ServiceError::Registry {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(Outbox {
            db,
            path: path.to_path_buf(),
        })
    }

    fn keep(&self, delivery: &str, kept: &Kept) {
        let written = serde_json::to_vec(kept)
            .map_err(|e| e.to_string())
            .and_then(|v| self.db.put(delivery, v).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, "approval notification not kept");
        }
    }

    fn remove(&self, delivery: &str) {
        if let Err(e) = self.db.delete(delivery) {
            tracing::error!(path = %self.path.display(), error = %e, "approval notification not removed");
        }
    }

    /// Every notification kept (unreadable entries are removed).
    fn all(&self) -> Vec<(String, Kept)> {
        let mut out = Vec::new();
        for item in self.db.iterator(rocksdb::IteratorMode::Start) {
            let Ok((k, v)) = item else { break };
            let key = String::from_utf8_lossy(&k).into_owned();
            match serde_json::from_slice::<Kept>(&v) {
                Ok(kept) => out.push((key, kept)),
                Err(e) => {
                    tracing::warn!(delivery = %key, error = %e, "unreadable kept notification removed");
                    self.remove(&key);
                }
            }
        }
        out
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What one attempt found.
enum Attempt {
    Delivered,
    /// Not worth retrying (a redirect, a 4xx): why.
    Refused(String),
    /// Worth retrying: why.
    Failed(String),
}

impl Delivery {
    async fn run(self) {
        self.try_all().await;
        if let Some(outbox) = &self.outbox {
            outbox.remove(&self.delivery);
        }
    }

    async fn try_all(&self) {
        let started = Instant::now();
        let mut attempt = 1;
        let why = loop {
            let why = match self.attempt().await {
                Attempt::Delivered => {
                    metrics::counter!(NOTIFICATIONS, "event" => self.event.name(), "outcome" => "delivered")
                        .increment(1);
                    tracing::debug!(id = %self.id, approver = %self.approver, attempt, "approval notification delivered");
                    return;
                }
                Attempt::Refused(why) => break why,
                Attempt::Failed(why) => why,
            };
            let delay = backoff(attempt);
            if attempt >= MAX_ATTEMPTS || started.elapsed() + delay > MAX_SPAN {
                break why;
            }
            tracing::debug!(id = %self.id, approver = %self.approver, attempt, %why, "approval notification failed: retrying");
            metrics::counter!(RETRIES).increment(1);
            tokio::time::sleep(delay).await;
            attempt += 1;
        };
        metrics::counter!(NOTIFICATIONS, "event" => self.event.name(), "outcome" => "failed")
            .increment(1);
        tracing::warn!(
            id = %self.id,
            approver = %self.approver,
            event = self.event.name(),
            webhook_host = %self.hook.host,
            attempts = attempt,
            %why,
            "approval notification not delivered: given up"
        );
    }

    async fn attempt(&self) -> Attempt {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.post()).await {
            Err(_) => Attempt::Failed(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
            Ok(Err(why)) => Attempt::Failed(why),
            Ok(Ok(status)) if status.is_success() => Attempt::Delivered,
            Ok(Ok(status)) if status.is_redirection() => Attempt::Refused(format!(
                "answered {status}: redirects are not followed (configure the final URL)"
            )),
            Ok(Ok(status))
                if status.is_client_error()
                    && status != http::StatusCode::REQUEST_TIMEOUT
                    && status != http::StatusCode::TOO_MANY_REQUESTS =>
            {
                Attempt::Refused(format!("answered {status}"))
            }
            Ok(Ok(status)) => Attempt::Failed(format!("answered {status}")),
        }
    }

    /// One POST: the response's status.
    async fn post(&self) -> Result<http::StatusCode, String> {
        let hook = &self.hook;
        let mut req = http::Request::post(hook.target.as_str())
            .header(http::header::HOST, hook.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("mandate/", env!("CARGO_PKG_VERSION")),
            )
            .header("Mandate-Event", self.event.name())
            .header("Mandate-Delivery", self.delivery.as_str());
        if let Some(secret) = &hook.secret {
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            req = req.header("Mandate-Signature", signature(secret, t, &self.body));
        }
        let req = req
            .body(Full::new(self.body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        let tcp = tokio::net::TcpStream::connect((hook.host.as_str(), hook.port))
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !hook.https {
            return exchange(hyper_util::rt::TokioIo::new(tcp), req).await;
        }
        let Some(tls) = &self.tls else {
            return Err("no TLS configuration".into());
        };
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(hook.host.clone())
            .map_err(|e| format!("TLS server name: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(hyper_util::rt::TokioIo::new(stream), req).await
    }
}

/// Sends `req` on `io` (HTTP/1.1): the response's status (its body unread).
async fn exchange<T>(io: T, req: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let mut conn = std::pin::pin!(conn);
    let send = sender.send_request(req);
    let mut send = std::pin::pin!(send);
    tokio::select! {
        biased;
        r = &mut send => return r.map(|res| res.status()).map_err(|e| format!("HTTP: {e}")),
        _ = &mut conn => {}
    }
    // The connection ended first: its response, if one came, is waiting.
    send.await
        .map(|res| res.status())
        .map_err(|e| format!("HTTP: {e}"))
}

/// The delay after failed attempt `n` (1-based): 0.5 s doubled each time,
/// at most 30 s, half of it random.
fn backoff(n: u32) -> Duration {
    let full = FIRST_DELAY
        .saturating_mul(1u32 << (n - 1).min(16))
        .min(MAX_DELAY);
    let mut r = [0u8; 4];
    let _ = getrandom::getrandom(&mut r);
    let frac = f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX);
    full / 2 + full.mul_f64(frac / 2.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_t_dot_body() {
        // RFC 4231-style check against an independent computation.
        let sig = signature(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000,v1={want}"));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for n in 1..=MAX_ATTEMPTS {
            let full = FIRST_DELAY * (1 << (n - 1));
            let full = full.min(MAX_DELAY);
            let d = backoff(n);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
        assert!(backoff(40) <= MAX_DELAY);
    }

    #[test]
    fn slack_text_cannot_make_links_or_mentions() {
        assert_eq!(
            slack("<https://evil|click> <!channel> a&b"),
            "`&lt;https://evil|click&gt; &lt;!channel&gt; a&amp;b`"
        );
        assert_eq!(
            slack("a\u{202e}b\u{0}c\nd\u{2028}e\u{61c}f\u{200b}g"),
            r"`a\u{202e}b\u{0}c\nd\u{2028}e\u{61c}f\u{200b}g`"
        );
        assert_eq!(slack(&"x".repeat(300)).chars().count(), 203);
        // A bare URL or formatting stays in the code span; a backquote
        // cannot end it.
        assert_eq!(slack("https://evil *x* `y"), "`https://evil *x* ˋy`");
    }
}
