//! `GET /ui/decisions`: a page listing recent decisions of the service's
//! verifier with their chains, filterable by principal, agent and decision,
//! read from its signed audit log. Self-contained HTML (no script, no
//! external asset); every value from a token is escaped. The caller needs an
//! admin token allowing `review` on `/ui/decisions`, as `Authorization:
//! Bearer` or in the `mandate_admin` cookie (for a browser).

use super::admin::authorize_admin;
use super::error::ApiError;
use super::handlers::blocking;
use super::AppState;
use crate::ServiceError;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use mandate_spec::html::{escape, page};
use mandate_verifier::{read_audit_store, AuditRecord, Outcome};
use serde::Deserialize;

/// Most decisions shown at once.
const MAX_ROWS: usize = 500;

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
    let records = blocking(move || {
        let entries = read_audit_store(&path)?;
        Ok(entries
            .into_iter()
            .filter_map(|(_, e)| e.ok().map(|e| e.record))
            .collect::<Vec<AuditRecord>>())
    })
    .await?;
    let limit = f.limit.unwrap_or(100).min(MAX_ROWS);
    let shown: Vec<&AuditRecord> = records
        .iter()
        .rev()
        .filter(|r| keep(r, &f))
        .take(limit)
        .collect();
    Ok(Html(render(&shown, records.len(), &f)).into_response())
}

fn admin_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
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
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    let selected = |d: &str| {
        if f.decision.as_deref() == Some(d) {
            " selected"
        } else {
            ""
        }
    };
    let mut body = format!(
        "<h1>Recent decisions</h1><div class=\"meta\">{} shown of {} in the signed audit log, newest first</div>\n\
         <form method=\"get\" action=\"/ui/decisions\">\
         <label>principal <input name=\"principal\" value=\"{}\"></label>\
         <label>agent <input name=\"agent\" value=\"{}\"></label>\
         <label>decision <select name=\"decision\"><option value=\"\">any</option>\
         <option{}>allow</option><option{}>deny</option><option{}>needs_approval</option></select></label>\
         <button type=\"submit\">filter</button></form>\n",
        rows.len(),
        total,
        value(&f.principal),
        value(&f.agent),
        selected("allow"),
        selected("deny"),
        selected("needs_approval"),
    );
    body.push_str(
        "<table id=\"decisions\"><thead><tr><th>#</th><th>decided at</th><th>decision</th>\
         <th>request</th><th>chain</th><th>reason</th></tr></thead><tbody>\n",
    );
    for r in rows {
        let chain = match &r.chain {
            Some(c) => {
                let mut path = vec![format!("<b>{}</b>", escape(&c.principal))];
                path.extend(c.hops.iter().map(|h| {
                    format!(
                        "<span title=\"{} · signed by {}\">{}</span>",
                        escape(&h.agent_key),
                        escape(&h.signed_by),
                        escape(&h.agent)
                    )
                }));
                path.join(" → ")
            }
            None => "(token not readable)".into(),
        };
        let params: Vec<String> = r
            .request
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let d = outcome(r.decision);
        body.push_str(&format!(
            "<tr class=\"row\" data-decision=\"{d}\"><td>{}</td><td>{}</td><td class=\"{d}\">{d}</td>\
             <td>{} {}{}</td><td>{}</td><td>{}</td></tr>\n",
            r.seq,
            escape(
                &r.decided_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
            escape(&r.request.action),
            escape(&r.request.resource),
            if params.is_empty() {
                String::new()
            } else {
                format!(" <small>{}</small>", escape(&params.join(", ")))
            },
            chain,
            escape(r.denial.as_ref().map_or("", |d| d.reason.as_str())),
        ));
    }
    body.push_str("</tbody></table>\n");
    page("Mandate decisions", &body)
}
