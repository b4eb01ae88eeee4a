//! `GET /ui/approvals`: the approval desk, for people. The pending approval
//! requests an approver may decide, newest first, each in words (what is
//! asked, on whose behalf, through which agents and why each hop exists,
//! the rule that asks for approval, how long it has waited), with an
//! approve and a deny form (SERVICE.md S3, "The approval desk").
//!
//! - **Session**: the admin token as `Authorization: Bearer` or in the
//!   `mandate_admin` cookie (as `/ui/decisions`); `POST /ui/session` sets
//!   that cookie from a sign-in form (`HttpOnly`, `SameSite=Strict`, path
//!   `/ui`; `Secure` when `public_url` is https), `POST /ui/session/end`
//!   clears it. Opening the desk is a
//!   token-only decision (`open` on `/ui/approvals`: signatures, expiry,
//!   revocation, the holder's proof) recorded in the audit log.
//! - **What is shown**: a request appears only if the admin token would be
//!   allowed to approve it as one of the approvers it asks for that the
//!   service holds a key of (the approve decision of `approvals.rs`,
//!   previewed with [`mandate_verifier::Verifier::decide_for_approver`]:
//!   nothing recorded), and only once the request itself has been decided
//!   again with its kept token ([`approvals::recheck`]): the chain, the
//!   approvers and the reason come from that verification, not from the
//!   stored record. A request whose token no longer verifies or no longer
//!   needs that approval is listed as no longer approvable, with the
//!   verifier's reason, without its details. Decided requests and those
//!   past their approval's suggested end (`approval.expires_at`) are gone.
//! - **Acting**: the forms post to `/ui/approvals/{id}/approve|deny`, which
//!   run the JSON routes' own functions ([`approvals::approve_as`],
//!   [`approvals::deny_as`]: the same admin decision, recorded durably in the
//!   audit log; the same record of who decided and when), then answer 303
//!   back to the desk naming the request decided.
//! - **Forgery**: every form carries a token derived from the session's
//!   admin token (SHA-256 under a domain of its own; a page on another
//!   origin can neither read it nor compute it without the admin token),
//!   and a form a browser says came from another origin (`Sec-Fetch-Site`
//!   other than `same-origin` or `none`) is refused. Pages forbid framing.
//!
//! Every value from a token, a request or a store is spliced as [`shown`].

use super::approvals::{self, ApprovalRecord, ApprovalStatus, Recheck, Rechecked};
use super::error::{too_large_message, ApiError};
use super::extract::Bearer;
use super::ui::admin_token;
use super::{AppState, Inner};
use crate::html::{page, shown};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use mandate_spec::{Chain, Request};
use mandate_verifier::{Check, DenialKind, Outcome, Presented};
use maud::{html, Markup};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Most requests shown at once (the newest); the page says how many more
/// wait.
const MAX_ROWS: usize = 100;

/// The validities an approver may choose, and the default.
const VALIDITIES: [(&str, u64); 3] = [("5m", 300), ("10m", 600), ("1h", 3600)];
const DEFAULT_VALIDITY: &str = "10m";

/// Longest admin token kept in a cookie (browsers keep about 4 KiB per
/// cookie): a longer one is refused at sign-in rather than silently lost.
const MAX_COOKIE_TOKEN: usize = 3800;

/// The cookie the desk and `/ui/decisions` read.
const COOKIE: &str = "mandate_admin";

/// What every page of the desk forbids: scripts, any asset from elsewhere,
/// being framed, forms posting elsewhere.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

#[derive(Debug, Deserialize, Default)]
pub(crate) struct DeskQuery {
    /// The request just approved here (after the 303).
    #[serde(default)]
    approved: Option<String>,
    /// The request just denied here.
    #[serde(default)]
    denied: Option<String>,
}

/// `GET /ui/approvals`.
pub(crate) async fn desk(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DeskQuery>,
) -> Response {
    match show(&s, &headers, &q).await {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(e) => failure(e),
    }
}

async fn show(s: &AppState, headers: &HeaderMap, q: &DeskQuery) -> Result<String, ApiError> {
    let token = admin_token(headers).ok_or_else(no_session)?;
    let who = open_desk(s, token.clone()).await?;
    let queue = s.queue().map_err(approvals::api)?;
    let now = OffsetDateTime::now_utc();
    let mut waiting: Vec<ApprovalRecord> = queue
        .all()
        .await
        .map_err(approvals::api)?
        .into_iter()
        .filter(|r| r.status == ApprovalStatus::Pending && r.approval.expires_at > now)
        .collect();
    waiting.sort_by_key(|r| std::cmp::Reverse(r.submitted_at));
    let notice = notice(s, q).await;
    let csrf = csrf(&token);
    let st = s.clone();
    let (rows, more) = tokio::task::spawn_blocking(move || rows(&st, &token, waiting))
        .await
        .map_err(|e| ApiError::internal("approval desk task", e))?;
    Ok(render(&Desk {
        who,
        rows,
        more,
        notice,
        csrf,
        now,
    }))
}

/// The token-only decision that opens the desk (and signs in), recorded
/// and durable before anything is shown; who the token speaks for.
async fn open_desk(s: &AppState, token: Vec<u8>) -> Result<String, ApiError> {
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let request = Request::new("open", "/ui/approvals");
        let decision =
            st.verifier
                .decide_presented(&token, &request, &Presented::default(), Check::Token);
        if let Err(e) = st.verifier.audit_durable().wait() {
            return Err(ApiError::Unavailable(format!(
                "audit log unavailable ({e}); retry later"
            )));
        }
        match (decision.denial, decision.chain) {
            (None, Some(chain)) => Ok(format!("{} via {}", chain.principal, chain.holder().agent)),
            (None, None) => Err(ApiError::Internal("allowed without a chain".into())),
            (Some(denial), _) => {
                tracing::warn!(kind = ?denial.kind, reason = %denial.reason, "approval desk refused a token");
                Err(match denial.kind {
                    DenialKind::MalformedToken
                    | DenialKind::BadSignature
                    | DenialKind::UnknownRootKey => ApiError::Unauthorized(format!(
                        "admin token not accepted: {}",
                        denial.reason
                    )),
                    DenialKind::RevocationUnavailable => ApiError::Unavailable(denial.reason),
                    _ => ApiError::Forbidden(
                        format!("this token cannot open the approval desk: {}", denial.reason),
                        Box::new(denial),
                    ),
                })
            }
        }
    })
    .await
    .map_err(|e| ApiError::internal("approval desk task", e))?
}

/// One request on the desk.
struct Row {
    record: ApprovalRecord,
    /// The request decided again with its token.
    state: Recheck,
    /// Each approver the admin token may approve as, with the validities
    /// it may give.
    may: Vec<(String, Vec<&'static str>)>,
}

/// The requests of `waiting` (newest first) `admin` may approve, each
/// decided again; and how many more there are (a blocking call).
fn rows(s: &Inner, admin: &[u8], waiting: Vec<ApprovalRecord>) -> (Vec<Row>, usize) {
    let mut out = Vec::new();
    let mut more = 0;
    for record in waiting {
        let may = may_approve(s, admin, &record);
        if may.is_empty() {
            continue;
        }
        if out.len() == MAX_ROWS {
            more += 1;
            continue;
        }
        let state = approvals::recheck(s, &record);
        out.push(Row { record, state, may });
    }
    (out, more)
}

/// The approvers `record` asks for (and the service holds a key of) that
/// `admin` would be allowed to approve it as, with the validities allowed:
/// the approve route's own decision (its parameters from
/// [`approvals::approve_params`]), previewed without being recorded.
fn may_approve(
    s: &Inner,
    admin: &[u8],
    record: &ApprovalRecord,
) -> Vec<(String, Vec<&'static str>)> {
    approvals::candidates(s, record)
        .into_iter()
        .filter_map(|name| {
            let valid: Vec<&'static str> = VALIDITIES
                .iter()
                .filter(|(_, secs)| {
                    let mut request = Request::new("approve", "/v1/approvals");
                    request
                        .params
                        .extend(approvals::approve_params(record, &name, *secs));
                    s.verifier.decide_for_approver(admin, &request).decision == Outcome::Allow
                })
                .map(|(text, _)| *text)
                .collect();
            (!valid.is_empty()).then_some((name, valid))
        })
        .collect()
}

/// What the page says about a request just decided here: the record
/// stored, read back by its id (a UUID; anything else names nothing).
async fn notice(s: &AppState, q: &DeskQuery) -> Option<String> {
    let (id, status) = match (&q.approved, &q.denied) {
        (Some(id), _) => (id, ApprovalStatus::Approved),
        (None, Some(id)) => (id, ApprovalStatus::Denied),
        (None, None) => return None,
    };
    let r = s.queue().ok()?.get(id).await.ok()??;
    if r.status != status {
        return None;
    }
    let what = request_words(&r.request);
    let by = r.decided_by.clone().unwrap_or_default();
    Some(match status {
        ApprovalStatus::Approved => format!("Approved: {what} (request {}), by {by}.", r.id),
        _ => format!(
            "Denied: {what} (request {}), by {by}, because: {}",
            r.id,
            r.denied_because.as_deref().unwrap_or_default()
        ),
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    approver: Option<String>,
    #[serde(default)]
    valid: Option<String>,
}

/// `POST /ui/approvals/{id}/approve` (form): [`approvals::approve_as`].
pub(crate) async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ApproveForm>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(e) => return failure(ApiError::BadRequest(e.body_text())),
    };
    let token = match session(&headers, &f.csrf) {
        Ok(t) => t,
        Err(e) => return failure(e),
    };
    let approver = f.approver.filter(|a| !a.is_empty());
    let valid = f.valid.as_deref().filter(|v| !v.is_empty());
    match approvals::approve_as(&s, Bearer(token), &id, approver, valid).await {
        Ok(r) => {
            tracing::info!(id = %r.id, by = ?r.decided_by, "approval desk: approved");
            see_other(&format!("/ui/approvals?approved={}", r.id))
        }
        Err(e) => failure(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DenyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/approvals/{id}/deny` (form): [`approvals::deny_as`].
pub(crate) async fn deny(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DenyForm>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(e) => return failure(ApiError::BadRequest(e.body_text())),
    };
    let token = match session(&headers, &f.csrf) {
        Ok(t) => t,
        Err(e) => return failure(e),
    };
    match approvals::deny_as(&s, Bearer(token), &id, &f.reason).await {
        Ok(r) => {
            tracing::info!(id = %r.id, by = ?r.decided_by, reason = ?r.denied_because, "approval desk: denied");
            see_other(&format!("/ui/approvals?denied={}", r.id))
        }
        Err(e) => failure(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/session` (form): keeps a verified admin token in the
/// `mandate_admin` cookie, then back to the desk.
pub(crate) async fn sign_in(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    if let Err(e) = same_origin(&headers) {
        return failure(e);
    }
    let Form(f) = match form {
        Ok(f) => f,
        Err(e) => return failure(ApiError::BadRequest(e.body_text())),
    };
    let Ok(token) = mandate_spec::token_from_text(f.token.trim()) else {
        return failure(ApiError::Unauthorized(
            "that is not a Mandate token (URL-safe base64)".into(),
        ));
    };
    let text = mandate_spec::token_to_text(&token);
    if text.len() > MAX_COOKIE_TOKEN {
        return failure(ApiError::BadRequest(format!(
            "this token ({} characters) is too long for a browser cookie (at most \
             {MAX_COOKIE_TOKEN}): use a token with fewer hops",
            text.len()
        )));
    }
    if let Err(e) = open_desk(&s, token).await {
        return failure(e);
    }
    let mut r = see_other("/ui/approvals");
    let secure = if s.secure_cookies { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={text}; Path=/ui; HttpOnly; SameSite=Strict{secure}"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /ui/session/end`: forgets the cookie.
pub(crate) async fn sign_out(headers: HeaderMap) -> Response {
    if let Err(e) = same_origin(&headers) {
        return failure(e);
    }
    let mut r = see_other("/ui/approvals");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mandate_admin=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    r
}

/// The admin token of a desk form, once the form is known to come from the
/// desk: not from another origin, and carrying the session's form token.
fn session(headers: &HeaderMap, given: &str) -> Result<Vec<u8>, ApiError> {
    same_origin(headers)?;
    let token = admin_token(headers).ok_or_else(no_session)?;
    if !same_bytes(csrf(&token).as_bytes(), given.trim().as_bytes()) {
        tracing::warn!("approval desk: a form without this session's form token was refused");
        return Err(forged());
    }
    Ok(token)
}

/// Refuses what a browser says it sent from another origin (same-site
/// included: a sibling host is not this desk).
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => {
            tracing::warn!("approval desk: a form sent from another origin was refused");
            Err(forged())
        }
    }
}

fn forged() -> ApiError {
    ApiError::Forbidden(
        "refused: this form did not come from this approval desk (reload the desk and \
         decide there)"
            .into(),
        Box::new(mandate_verifier::Denial::new(
            DenialKind::InvalidRequest,
            "cross-site form",
        )),
    )
}

fn no_session() -> ApiError {
    ApiError::Unauthorized(
        "sign in with an admin token (or send it as Authorization: Bearer, or in the \
         mandate_admin cookie)"
            .into(),
    )
}

/// The form token of a session: SHA-256 over a domain of its own and the
/// admin token, hex. Only a page that knows the admin token (this desk,
/// served to its holder) can put it in a form.
fn csrf(admin: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"mandate-desk-form-v1\n");
    h.update(admin);
    hex::encode(h.finalize())
}

/// Compares without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A desk page: HTML, no framing, no script, no asset from elsewhere.
fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// An error as a desk page with its status: the sign-in form for 401,
/// else the message and the way back. Internal details are logged, never
/// shown (as the JSON routes answer them).
fn failure(e: ApiError) -> Response {
    let (status, message) = match e {
        ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        ApiError::Unauthorized(m) => {
            return html_response(StatusCode::UNAUTHORIZED, sign_in_page(&m));
        }
        ApiError::Forbidden(m, _) => (StatusCode::FORBIDDEN, m),
        ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
        ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, too_large_message()),
        ApiError::TooManyRequests(m, _) => (StatusCode::TOO_MANY_REQUESTS, m),
        ApiError::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        // Unavailable, or internal: said as the JSON routes say it.
        e => {
            let generic = match &e {
                ApiError::UnavailableBecause(why) => format!("{why}; retry later"),
                ApiError::Unavailable(_) => "service temporarily unavailable; retry later".into(),
                _ => "internal error (logged by the service)".into(),
            };
            // Logged as the JSON routes log it.
            let status = e.into_response().status();
            (status, generic)
        }
    };
    let body = html! {
        main.desk {
            h1 { "Approval desk: not done" }
            p.error role="alert" { (shown(&message)) }
            p { a href="/ui/approvals" { "Back to the approval desk" } }
        }
    };
    html_response(status, page("Mandate approval desk", body))
}

fn sign_in_page(message: &str) -> String {
    let body = html! {
        main.desk {
            h1 { "Approval desk: sign in" }
            p.error role="alert" { (shown(message)) }
            form.signin method="post" action="/ui/session" {
                label for="token" { "Admin token" }
                input #token type="password" name="token" required autocomplete="off";
                button type="submit" { "Sign in" }
            }
            p.meta {
                "The token is kept in a cookie of this browser for this service's /ui pages \
                 only (HttpOnly, SameSite=Strict) until you sign out or close the browser."
            }
        }
    };
    page("Mandate approval desk: sign in", body)
}

/// What the page shows.
struct Desk {
    who: String,
    rows: Vec<Row>,
    more: usize,
    notice: Option<String>,
    csrf: String,
    now: OffsetDateTime,
}

fn render(d: &Desk) -> String {
    let approvable: Vec<(&Row, &Rechecked)> = d
        .rows
        .iter()
        .filter_map(|r| match &r.state {
            Recheck::Valid(v) => Some((r, &**v)),
            _ => None,
        })
        .collect();
    let stale: Vec<&Row> = d
        .rows
        .iter()
        .filter(|r| !matches!(r.state, Recheck::Valid(_)))
        .collect();
    let body = html! {
        main.desk {
            h1 { "Approval desk" }
            p.meta {
                "Signed in as " b { (shown(&d.who)) } ". "
                (approvable.len()) " request(s) waiting for you, newest first. Each was \
                 decided again just now with its own token: what you read comes from \
                 that verification."
            }
            form.signout method="post" action="/ui/session/end" {
                button type="submit" { "Sign out" }
            }
            @if let Some(n) = &d.notice {
                p.notice role="status" { (shown(n)) }
            }
            @if approvable.is_empty() {
                p #empty { "Nothing waits for your approval." }
            }
            ol #requests aria-label="Requests waiting for your approval" {
                @for (row, fresh) in &approvable {
                    (request_item(row, fresh, &d.csrf, d.now))
                }
            }
            @if !stale.is_empty() {
                h2 { "No longer approvable" }
                ul #stale {
                    @for row in &stale {
                        li.stale id=(shown(&row.record.id)) data-id=(shown(&row.record.id)) {
                            "Request " span.key { (shown(&row.record.id)) }
                            " (waited " (waited(&row.record, d.now)) "): "
                            @match &row.state {
                                Recheck::NoLonger(why) => { "no longer valid: " (shown(why)) }
                                _ => {
                                    "queued before this service kept requests' tokens, so it \
                                     cannot be verified again here: decide it with the JSON \
                                     API or `mandate approve`"
                                }
                            }
                        }
                    }
                }
            }
            @if d.more > 0 {
                p.meta { (d.more) " more waiting, not shown: decide these first." }
            }
        }
    };
    page("Mandate approval desk", body)
}

/// One request to decide, from its verification (`fresh`): the sentence,
/// the details, the two forms.
fn request_item(row: &Row, fresh: &Rechecked, csrf: &str, now: OffsetDateTime) -> Markup {
    let r = &row.record;
    let chain = &*fresh.chain;
    let id = &r.id;
    let title = format!("request-{id}");
    let words = sentence_text(&r.request, chain);
    let submitted = r.submitted_at.format(&Rfc3339).unwrap_or_default();
    let validities: Vec<&'static str> = VALIDITIES
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| row.may.iter().any(|(_, ok)| ok.contains(v)))
        .collect();
    let default = if validities.contains(&DEFAULT_VALIDITY) {
        DEFAULT_VALIDITY
    } else {
        validities.first().copied().unwrap_or(DEFAULT_VALIDITY)
    };
    html! {
        li.request id=(shown(id)) data-id=(shown(id)) {
            article aria-labelledby=(shown(&title)) {
                h2.sentence id=(shown(&title)) { (sentence(&r.request, chain)) }
                dl {
                    dt { "Asked" }
                    dd { b { (shown(&r.request.action)) } " on " b { (shown(&r.request.resource)) } }
                    dt { "Parameters" }
                    dd {
                        @if r.request.params.is_empty() { "none" }
                        @else {
                            ul.params {
                                @for (name, value) in &r.request.params {
                                    li { (shown(name)) " = " b { (shown(&value.to_string())) } }
                                }
                            }
                        }
                    }
                    dt { "On behalf of" }
                    dd { b { (shown(&chain.principal)) } }
                    dt { "Through" }
                    dd {
                        ol.hops {
                            @for hop in &chain.hops {
                                li {
                                    b { (shown(&hop.agent)) } ": "
                                    @match &hop.purpose {
                                        Some(p) => { "purpose " i { (shown(p)) } }
                                        None => { "no purpose given" }
                                    }
                                    " " span.key { (shown(&hop.agent_key)) }
                                }
                            }
                        }
                    }
                    dt { "Why approval" }
                    dd {
                        @for rule in rules(r, fresh) { (shown(&rule)) br; }
                        (shown(&fresh.reason))
                    }
                    dt { "Approvers asked" }
                    dd {
                        @for (i, a) in fresh.approval.approvers.iter().enumerate() {
                            @if i > 0 { ", " }
                            b { (shown(&a.name)) } " " span.key { (shown(&a.key)) }
                        }
                    }
                    dt { "Waited" }
                    dd { time datetime=(shown(&submitted)) { (waited(r, now)) } }
                    dt { "Request" }
                    dd { span.key { (shown(id)) } }
                }
                div.actions {
                    form.approve method="post" action=(shown(&format!("/ui/approvals/{id}/approve"))) {
                        input type="hidden" name="csrf" value=(shown(csrf));
                        @if let [(name, _)] = row.may.as_slice() {
                            input type="hidden" name="approver" value=(shown(name));
                        } @else {
                            label for=(shown(&format!("approver-{id}"))) { "Approve as" }
                            select id=(shown(&format!("approver-{id}"))) name="approver" {
                                @for (name, _) in &row.may {
                                    option value=(shown(name)) { (shown(name)) }
                                }
                            }
                        }
                        label for=(shown(&format!("valid-{id}"))) { "Approval valid for" }
                        select id=(shown(&format!("valid-{id}"))) name="valid" {
                            @for v in &validities {
                                option value=(v) selected[*v == default] { (v) }
                            }
                        }
                        button type="submit" aria-label=(shown(&format!("Approve: {words}"))) {
                            "Approve"
                        }
                    }
                    form.deny method="post" action=(shown(&format!("/ui/approvals/{id}/deny"))) {
                        input type="hidden" name="csrf" value=(shown(csrf));
                        label for=(shown(&format!("reason-{id}"))) { "Reason for denying" }
                        input type="text" id=(shown(&format!("reason-{id}"))) name="reason"
                            required maxlength="500" autocomplete="off";
                        button type="submit" aria-label=(shown(&format!("Deny: {words}"))) {
                            "Deny"
                        }
                    }
                }
            }
        }
    }
}

/// "pay 150 to /api/payments for org:acme via payments-agent (purpose pay
/// suppliers)": every value from the request or the chain in bold, so a
/// value cannot pass for the sentence's own words.
fn sentence(request: &Request, chain: &Chain) -> Markup {
    html! {
        b { (shown(&request.action)) }
        @for value in request.params.values() { " " b { (shown(&value.to_string())) } }
        " to " b { (shown(&request.resource)) }
        " for " b { (shown(&chain.principal)) }
        " via "
        @for (i, hop) in chain.hops.iter().enumerate() {
            @if i > 0 { " → " }
            b { (shown(&hop.agent)) }
            @match &hop.purpose {
                Some(p) => { " (purpose " i { (shown(p)) } ")" }
                None => { " (no purpose given)" }
            }
        }
    }
}

/// [`sentence`] as plain text (the buttons' labels).
fn sentence_text(request: &Request, chain: &Chain) -> String {
    let mut s = request_words(request);
    s.push_str(" for ");
    s.push_str(&chain.principal);
    s.push_str(" via ");
    for (i, hop) in chain.hops.iter().enumerate() {
        if i > 0 {
            s.push_str(" → ");
        }
        s.push_str(&hop.agent);
        match &hop.purpose {
            Some(p) => s.push_str(&format!(" (purpose {p})")),
            None => s.push_str(" (no purpose given)"),
        }
    }
    s
}

/// "pay 150 to /api/payments".
fn request_words(request: &Request) -> String {
    let mut s = request.action.clone();
    for value in request.params.values() {
        s.push(' ');
        s.push_str(&value.to_string());
    }
    s.push_str(" to ");
    s.push_str(&request.resource);
    s
}

/// The approval rules asking for this approval, as written in the chain
/// verified: each alternative of an asking hop (or of its narrowing) whose
/// rule names an approver asked and covers the action, e.g.
/// `pay:/api/payments where amount<=1000, approval by finance when
/// amount>100 (hop 0, payments-agent)`. None for a live restriction's rule
/// (the reason names it).
fn rules(r: &ApprovalRecord, fresh: &Rechecked) -> Vec<String> {
    let mut out = Vec::new();
    for a in &fresh.approval.approvers {
        let Some(hop) = fresh.chain.hops.get(a.hop) else {
            continue;
        };
        let grants = std::iter::once(&hop.grant).chain(hop.narrowing.iter().map(|n| &n.grant));
        for alt in grants.flat_map(|g| &g.alternatives) {
            let asks = alt
                .approval
                .as_ref()
                .is_some_and(|rule| rule.key == a.key && alt.actions.contains(&r.request.action));
            let text = format!("{alt} (hop {}, {})", hop.hop, hop.agent);
            if asks && !out.contains(&text) {
                out.push(text);
            }
        }
    }
    out
}

/// How long a request has waited, in words: "less than a minute", "3 min",
/// "2 h 5 min", "3 d 4 h".
fn waited(r: &ApprovalRecord, now: OffsetDateTime) -> String {
    let secs = (now - r.submitted_at).whole_seconds().max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => "less than a minute".into(),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_form_token_is_bound_to_the_admin_token() {
        assert_eq!(csrf(b"a"), csrf(b"a"));
        assert_ne!(csrf(b"a"), csrf(b"b"));
        assert_eq!(csrf(b"a").len(), 64);
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
    }

    #[test]
    fn forms_a_browser_says_came_from_elsewhere_are_refused() {
        let mut h = HeaderMap::new();
        assert!(
            same_origin(&h).is_ok(),
            "no header: not a browser's fetch metadata"
        );
        for (site, ok) in [
            ("same-origin", true),
            ("none", true),
            ("same-site", false),
            ("cross-site", false),
            ("bogus", false),
        ] {
            h.insert("sec-fetch-site", HeaderValue::from_static(site));
            assert_eq!(same_origin(&h).is_ok(), ok, "{site}");
        }
    }

    #[test]
    fn waiting_reads_in_minutes_hours_and_days() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let json = serde_json::json!({
            "id": "x", "status": "pending", "submitted_at": "2027-01-15T08:00:00Z",
            "request": {"action": "pay", "resource": "/api/payments", "params": {"amount": 150},
                        "time": 1_800_000_000},
            "approval": {"approvers": [], "digest": "", "expires_at": "2027-01-15T08:10:00Z",
                         "third_party_request": ""},
            "chain": {}, "reason": "",
        });
        let r: ApprovalRecord = serde_json::from_value(json).unwrap();
        let at = |s: i64| waited(&r, t0 + time::Duration::seconds(s));
        assert_eq!(at(-5), "less than a minute");
        assert_eq!(at(59), "less than a minute");
        assert_eq!(at(180), "3 min");
        assert_eq!(at(7200), "2 h");
        assert_eq!(at(7500), "2 h 5 min");
        assert_eq!(at(3 * 86_400 + 4 * 3600 + 60), "3 d 4 h");
        assert_eq!(request_words(&r.request), "pay 150 to /api/payments");
    }
}
