//! `GET /ui/decisions`: a page listing recent decisions of the service's
//! verifier with their chains, filterable by principal, agent and decision,
//! read from its signed audit log. Self-contained HTML (no script, no
//! external asset), built with maud through [`crate::html`]: every value
//! from a token, a request or the log is spliced as [`shown`]. The log is
//! read by position (an [`AuditTail`] kept open, newest record first, at
//! most [`SCAN`] records a page), never whole. The caller needs an
//! admin token allowing `review` on `/ui/decisions`, as `Authorization:
//! Bearer` or in the `mandate_admin` cookie (for a browser).

use super::admin::authorize_admin;
use super::error::ApiError;
use super::handlers::blocking;
use super::AppState;
use crate::html::{page, shown};
use crate::ServiceError;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use mandate_verifier::{
    audit::{AuditRecord, AuditTail},
    Outcome,
};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

/// Most decisions shown at once.
const MAX_ROWS: usize = 500;

/// Most records a page reads, newest first, to find the rows it shows: a
/// page costs at most this, whatever the log's length (older decisions are
/// for `mandate audit export`).
const SCAN: usize = 20_000;

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Filter {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub(crate) async fn decisions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Result<Response, ApiError> {
    let token = admin_token(&headers).ok_or_else(|| {
        ApiError::Unauthorized(
            "send an admin token allowing review on /ui/decisions (Authorization: Bearer, or \
             the mandate_admin cookie)"
                .into(),
        )
    })?;
    // The filters decide what is disclosed: each one given is a parameter,
    // so a reviewer narrowed on `principal` must filter by it.
    let mut params = Vec::new();
    for (name, v) in [
        ("principal", &f.principal),
        ("agent", &f.agent),
        ("decision", &f.decision),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            params.push((name, mandate_spec::Value::Str(v.to_string())));
        }
    }
    params.push((
        "limit",
        mandate_spec::Value::Int(f.limit.unwrap_or(100).min(MAX_ROWS) as i64),
    ));
    authorize_admin(
        &s,
        super::extract::Bearer(token),
        "review",
        "/ui/decisions",
        params,
    )
    .await?;
    let Some(path) = s.audit_path.clone() else {
        return Err(ApiError::NotFound(
            "this service keeps no audit log (start it with --audit-key)".into(),
        ));
    };
    if let Some(log) = &s.audit {
        // What was decided so far is on disk before the page reads it.
        let log = log.clone();
        blocking(move || log.flush().map(|_| ()).map_err(ServiceError::from)).await?;
    }
    let tail = audit_tail(&s, path).await?;
    let (records, total) = blocking(move || {
        // Only what the writer added since the last page is read in, and
        // then only the newest records, by position (never the whole log).
        tail.catch_up()?;
        let total = tail.last_seq()?;
        let records = tail
            .newest(None, SCAN)?
            .into_iter()
            .filter_map(|(_, e)| e.ok().map(|e| e.record))
            .collect::<Vec<AuditRecord>>();
        Ok((records, total))
    })
    .await?;
    let limit = f.limit.unwrap_or(100).min(MAX_ROWS);
    let shown: Vec<&AuditRecord> = records.iter().filter(|r| keep(r, &f)).take(limit).collect();
    Ok(Html(render(
        &shown,
        usize::try_from(total).unwrap_or(usize::MAX),
        &f,
    ))
    .into_response())
}

/// The service's reader of its audit log, opened once.
async fn audit_tail(s: &AppState, path: std::path::PathBuf) -> Result<Arc<AuditTail>, ApiError> {
    if let Some(t) = s.audit_tail.lock().ok().and_then(|t| t.clone()) {
        return Ok(t);
    }
    let tail = Arc::new(blocking(move || Ok(AuditTail::open(path)?)).await?);
    if let Ok(mut slot) = s.audit_tail.lock() {
        return Ok(slot.get_or_insert(tail).clone());
    }
    Ok(tail)
}

/// The admin token of a page's request: `Authorization: Bearer`, else the
/// `mandate_admin` cookie.
pub(super) fn admin_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(mandate_spec::bearer_token)
        .map(str::to_string);
    let cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == "mandate_admin")
            .map(|(_, v)| v.to_string())
    };
    let text = bearer.or_else(cookie)?;
    mandate_spec::token_from_text(&text).ok()
}

fn keep(r: &AuditRecord, f: &Filter) -> bool {
    let chain = r.chain.as_ref();
    fn want(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    if let Some(p) = want(&f.principal) {
        if chain.is_none_or(|c| c.principal != p) {
            return false;
        }
    }
    if let Some(a) = want(&f.agent) {
        if chain.is_none_or(|c| !c.hops.iter().any(|h| h.agent == a)) {
            return false;
        }
    }
    if let Some(d) = want(&f.decision) {
        if outcome(r.decision) != d {
            return false;
        }
    }
    true
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
        Outcome::NeedsApproval => "needs_approval",
    }
}

fn render(rows: &[&AuditRecord], total: usize, f: &Filter) -> String {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let selected = |d: &str| f.decision.as_deref() == Some(d);
    let body = html! {
        h1 { "Recent decisions" }
        div.meta { (rows.len()) " shown of " (total) " in the signed audit log, newest first" }
        form method="get" action="/ui/decisions" {
            label { "principal " input name="principal" value=(shown(&value(&f.principal))); }
            label { "agent " input name="agent" value=(shown(&value(&f.agent))); }
            label {
                "decision "
                select name="decision" {
                    option value="" { "any" }
                    option selected[selected("allow")] { "allow" }
                    option selected[selected("deny")] { "deny" }
                    option selected[selected("needs_approval")] { "needs_approval" }
                }
            }
            button type="submit" { "filter" }
        }
        table #decisions {
            thead {
                tr {
                    th { "#" } th { "decided at" } th { "decision" }
                    th { "request" } th { "chain" } th { "reason" }
                }
            }
            tbody { @for r in rows { (row(r)) } }
        }
    };
    page("Mandate decisions", body)
}

/// One decision: when, what was asked, through which chain, and why not.
fn row(r: &AuditRecord) -> Markup {
    let d = outcome(r.decision);
    let decided_at = r
        .decided_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let params: Vec<String> = r
        .request
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    html! {
        tr.row data-decision=(d) {
            td { (r.seq) }
            td { (shown(&decided_at)) }
            td class=(d) { (d) }
            td {
                (shown(&r.request.action)) " " (shown(&r.request.resource))
                @if !params.is_empty() { " " small { (shown(&params.join(", "))) } }
            }
            td {
                @match &r.chain {
                    Some(c) => {
                        b { (shown(&c.principal)) }
                        @for h in &c.hops {
                            " → "
                            span title=(shown(&format!("{} · signed by {}", h.agent_key, h.signed_by))) {
                                (shown(&h.agent))
                            }
                        }
                    }
                    None => { "(token not readable)" }
                }
            }
            td { (shown(r.denial.as_ref().map_or("", |d| d.reason.as_str()))) }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::html::testing::{nasty, skeleton, unescape, ATTACKS};
    use mandate_spec::display::{is_hidden, text};
    use mandate_spec::{Request, Value};
    use mandate_verifier::{
        audit::{AuditChain, AuditHop},
        Denial, DenialKind,
    };
    use proptest::prelude::*;
    use time::OffsetDateTime;

    /// A decision whose every string (principal, agents, keys, signer,
    /// action, resource, parameter name and value, reason) is `s`.
    fn record(s: &str, decision: Outcome) -> AuditRecord {
        let mut request = Request::new(s, s).param(s, Value::Str(s.into()));
        request.time = std::time::UNIX_EPOCH;
        let hop = |n| AuditHop {
            hop: n,
            agent: s.into(),
            agent_key: s.into(),
            signed_by: s.into(),
            revocation_id: s.into(),
        };
        AuditRecord {
            seq: 7,
            decided_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            request,
            decision,
            denial: Some(Denial {
                kind: DenialKind::InvalidRequest,
                hop: Some(1),
                block: Some(1),
                agent: Some(s.into()),
                reason: s.into(),
                limit: None,
                restriction: None,
            }),
            chain: Some(AuditChain {
                token_id: s.into(),
                principal: s.into(),
                root_key_id: Some(0),
                hops: vec![hop(0), hop(1)],
                approvals: Vec::new(),
            }),
            revocation_position: None,
            restrictions: Vec::new(),
            policy_hash: s.into(),
            prev_hash: s.into(),
        }
    }

    fn filter(s: &str) -> Filter {
        Filter {
            principal: Some(s.into()),
            agent: Some(s.into()),
            decision: Some(s.into()),
            limit: None,
        }
    }

    fn between<'p>(page: &'p str, open: &str, close: &str) -> Vec<&'p str> {
        page.split(open)
            .skip(1)
            .filter_map(|rest| rest.find(close).map(|end| &rest[..end]))
            .collect()
    }

    fn assert_safe(s: &str) {
        let records = [record(s, Outcome::Deny), record(s, Outcome::Allow)];
        let rows: Vec<&AuditRecord> = records.iter().collect();
        let page = render(&rows, 9, &filter(s));
        let benign = [record("a", Outcome::Deny), record("a", Outcome::Allow)];
        let baseline = render(&benign.iter().collect::<Vec<_>>(), 9, &filter("a"));
        assert_eq!(skeleton(&page), skeleton(&baseline), "{s:?}:\n{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.chars().any(|c| c != '\n' && is_hidden(c)), "{page:?}");
        assert_eq!(page.matches('\n').count(), baseline.matches('\n').count());
        let shown = text(s).to_string();
        // The filter fields, the principal, each agent, the reason.
        for value in between(&page, "<input name=\"principal\" value=\"", "\"")
            .into_iter()
            .chain(between(&page, "<input name=\"agent\" value=\"", "\""))
            .chain(between(&page, "<b>", "</b>"))
            .chain(between(&page, "\">", "</span>"))
        {
            if value.contains('<') {
                continue; // an element's content other than a value
            }
            assert_eq!(unescape(value), shown, "{page}");
        }
        for title in between(&page, "<span title=\"", "\"") {
            assert_eq!(
                unescape(title),
                text(&format!("{s} · signed by {s}")).to_string()
            );
        }
        let cells: Vec<&str> = page.split("</td></tr>").collect();
        let reasons: Vec<&str> = cells[..cells.len() - 1]
            .iter()
            .map(|r| r.rsplit("<td>").next().unwrap())
            .collect();
        assert_eq!(reasons.len(), 2, "{page}");
        for reason in reasons {
            assert_eq!(unescape(reason), shown, "{page}");
        }
        // No filter value selected an option it does not name.
        if !["allow", "deny", "needs_approval"].contains(&s) {
            assert!(!page.contains("<option selected"), "{page}");
        }
    }

    /// Every field of a decision that reaches `/ui/decisions`, and the
    /// filter values echoed in the form, given each attack: only text.
    #[test]
    fn hostile_decision_strings_are_only_text_on_the_decisions_page() {
        for attack in ATTACKS {
            assert_safe(attack);
        }
    }

    #[test]
    fn the_decisions_page_keeps_its_structure() {
        let records = [record("agent-1", Outcome::Deny)];
        let mut f = filter("user:alice");
        f.decision = Some("deny".into());
        let page = render(&records.iter().collect::<Vec<_>>(), 3, &f);
        for needle in [
            "<title>Mandate decisions</title>",
            "<div class=\"meta\">1 shown of 3 in the signed audit log, newest first</div>",
            "<form method=\"get\" action=\"/ui/decisions\">",
            "<input name=\"principal\" value=\"user:alice\">",
            "<option value=\"\">any</option><option>allow</option><option selected>deny</option>",
            "<table id=\"decisions\"><thead><tr><th>#</th>",
            "<tr class=\"row\" data-decision=\"deny\"><td>7</td><td>2027-01-15T08:00:00Z</td><td class=\"deny\">deny</td>",
            "<td>agent-1 agent-1 <small>agent-1=&quot;agent-1&quot;</small></td>",
            "<td><b>agent-1</b> → <span title=\"agent-1 · signed by agent-1\">agent-1</span> → <span",
        ] {
            assert!(page.contains(needle), "{needle}\nnot in:\n{page}");
        }
        let mut unreadable = record("x", Outcome::Allow);
        unreadable.chain = None;
        let page = render(&[&unreadable], 1, &Filter::default());
        assert!(page.contains("<td>(token not readable)</td>"), "{page}");
    }

    proptest! {
        #[test]
        fn any_decision_strings_are_only_text(s in nasty()) {
            assert_safe(&s);
        }
    }
}
