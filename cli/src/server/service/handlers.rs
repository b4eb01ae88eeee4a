//! One handler per route; see the table in `mod.rs` and `spec/SERVICE.md`.

use super::admin::{authorize_admin, authorize_mint, Admin};
use super::error::ApiError;
use super::extract::{ApiJson, Bearer};
use super::metrics::Source;
use super::mint_decision::{mint_decisions, Minting};
use super::{AppState, ServiceError};
use crate::registry::TokenRecord;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use biscuit_auth::PublicKey;
use mandate_issuer::{IssueError, MintRequest};
use mandate_spec::{format_public_key, parse_duration, parse_public_key, Grant, Value};
use mandate_verifier::{
    revocation::{Revocation, Target},
    AuthorizeRequest, Decision,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest revocation reason accepted, in bytes.
const MAX_REASON_LEN: usize = 1024;

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintBody {
    principal: String,
    agent: String,
    agent_key: String,
    allow: Vec<String>,
    #[serde(default, rename = "where")]
    where_: Vec<String>,
    ttl: String,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    max_depth: Option<u32>,
    /// Approval rules (`pay when amount>100 by finance=ed25519/…`).
    #[serde(default)]
    approval: Vec<String>,
    /// Every request must carry a proof of possession.
    #[serde(default)]
    require_proof: bool,
    /// Usage limits (`send_email 10/1h`, SPEC §18.1), shared by every
    /// request made with the token or anything delegated from it.
    #[serde(default)]
    limits: Vec<String>,
    /// Budgets (`pay amount 5000/1d`, SPEC §18.1).
    #[serde(default)]
    budgets: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Minted {
    token: String,
    token_id: String,
    revocation_ids: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    root_key_id: u32,
}

pub(crate) async fn mint(
    State(s): State<AppState>,
    bearer: Bearer,
    ApiJson(body): ApiJson<MintBody>,
) -> Result<(StatusCode, Json<Minted>), ApiError> {
    let (agent_key, grant, ttl) = mint_terms(&body)?;
    // Everything the token will carry is decided on (SERVICE.md S2).
    let decisions = mint_decisions(&Minting {
        principal: &body.principal,
        agent: &body.agent,
        agent_key: &agent_key,
        ttl,
        max_depth: body.max_depth,
        purpose: body.purpose.as_deref(),
        grant: &grant,
    })
    .map_err(ApiError::BadRequest)?;
    let admin = authorize_mint(&s, bearer, decisions).await?;

    let started = Instant::now();
    // Whole seconds, as the token carries them.
    let now = OffsetDateTime::now_utc();
    let minted_at = now.replace_nanosecond(0).unwrap_or(now);
    let request = MintRequest {
        principal: body.principal,
        agent: body.agent,
        agent_key,
        grant,
        ttl,
        purpose: body.purpose,
        max_depth: body.max_depth,
    };
    let minted = s
        .issuer
        .mint_at(&request, minted_at.into())
        .map_err(|e| match e {
            IssueError::Spec(_) | IssueError::Ttl(_) => bad(e),
            other => ApiError::internal("minting", other),
        })?;
    let record = TokenRecord {
        token_id: minted.token_id.to_string(),
        principal: request.principal,
        agent: request.agent,
        agent_key: format_public_key(&request.agent_key),
        revocation_ids: minted.revocation_ids.clone(),
        root_key_id: minted.root_key_id,
        minted_at,
        expires_at: minted.expires_at,
        minted_by: admin.who.clone(),
    };
    // Recorded (and synced) before the token is returned: every token a
    // caller holds is in the registry. In a fleet, then published to the
    // mint stream and acknowledged: if that fails, the mint fails (503), so
    // no token is handed out that revocation by principal would miss.
    let st = s.clone();
    let rec = record.clone();
    blocking(move || {
        st.registry.record(&rec)?;
        if let Some(fleet) = &st.fleet {
            fleet
                .publish(&rec)
                .map_err(|e| ServiceError::Fleet(format!("no token minted: {e}")))?;
        }
        Ok(())
    })
    .await?;
    s.metrics.minted(started.elapsed());
    log_minted(&record, &admin);
    Ok((
        StatusCode::CREATED,
        Json(Minted {
            token: minted.to_base64(),
            token_id: record.token_id,
            revocation_ids: minted.revocation_ids,
            expires_at: minted.expires_at,
            root_key_id: minted.root_key_id,
        }),
    ))
}

/// What a mint request asks for, read and checked: the agent's key, the
/// grant (alternatives, constraints, approval rules, holder binding, usage
/// limits) and the time to live.
fn mint_terms(body: &MintBody) -> Result<(PublicKey, Grant, Duration), ApiError> {
    let agent_key = parse_public_key(&body.agent_key)
        .map_err(|e| ApiError::BadRequest(format!("agent_key: {e}")))?;
    if body.allow.is_empty() {
        return Err(ApiError::BadRequest(
            "allow: a root token needs at least one ACTIONS:PATTERN".into(),
        ));
    }
    let mut grant = Grant::parse(&body.allow, &body.where_).map_err(bad)?;
    for rule in &body.approval {
        grant = grant
            .with_approval(rule)
            .map_err(|e| ApiError::BadRequest(format!("approval: {e}")))?;
    }
    grant.holder_bound = body.require_proof;
    for text in &body.limits {
        grant = grant
            .with_limit(text)
            .map_err(|e| ApiError::BadRequest(format!("limits: {e}")))?;
    }
    for text in &body.budgets {
        grant = grant
            .with_budget(text)
            .map_err(|e| ApiError::BadRequest(format!("budgets: {e}")))?;
    }
    // A limit on an action no alternative allows would count nothing: a
    // typo (`send_mail`) that leaves the real action unlimited.
    for limit in &grant.limits {
        let allowed = |a: &String| grant.alternatives.iter().any(|alt| alt.actions.contains(a));
        if let Some(a) = limit.actions.iter().find(|a| !allowed(a)) {
            let field = if limit.param.is_some() {
                "budgets"
            } else {
                "limits"
            };
            return Err(ApiError::BadRequest(format!(
                "{field}: {limit}: no alternative allows action {a:?}, so it would never be counted"
            )));
        }
    }
    let ttl = parse_duration(&body.ttl).map_err(|e| ApiError::BadRequest(format!("ttl: {e}")))?;
    Ok((agent_key, grant, ttl))
}

fn log_minted(record: &TokenRecord, admin: &Admin) {
    tracing::info!(
        token_id = %record.token_id,
        principal = %record.principal,
        agent = %record.agent,
        root_key_id = record.root_key_id,
        expires_at = %rfc3339(record.expires_at),
        minted_by = %admin.who,
        admin_token_id = %admin.token_id,
        "minted root token"
    );
}

/// `POST /v1/revocations`: exactly one selector, a reason, optionally who.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    #[serde(default)]
    revocation_id: Option<String>,
    #[serde(default)]
    token_id: Option<String>,
    #[serde(default)]
    agent_key: Option<String>,
    #[serde(default)]
    principal: Option<String>,
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

/// What a revocation request selects, parsed.
enum Selector {
    Block(Vec<u8>),
    Token(String),
    Agent(Vec<u8>),
    Principal(String),
}

impl Selector {
    fn parse(b: &RevokeBody) -> Result<Selector, ApiError> {
        let given = [
            b.revocation_id.is_some(),
            b.token_id.is_some(),
            b.agent_key.is_some(),
            b.principal.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(ApiError::BadRequest(
                "give exactly one of revocation_id, token_id, agent_key, principal".into(),
            ));
        }
        if let Some(id) = &b.revocation_id {
            let bytes = hex::decode(id.trim()).map_err(|_| {
                ApiError::BadRequest("revocation_id: expected hex (128 hex digits)".into())
            })?;
            if bytes.len() != 64 {
                return Err(ApiError::BadRequest(format!(
                    "revocation_id: a revocation id is 64 bytes (128 hex digits), got {}",
                    bytes.len()
                )));
            }
            return Ok(Selector::Block(bytes));
        }
        if let Some(id) = &b.token_id {
            let uuid = Uuid::parse_str(id.trim())
                .map_err(|_| ApiError::BadRequest("token_id: expected a UUID".into()))?;
            return Ok(Selector::Token(uuid.to_string()));
        }
        if let Some(key) = &b.agent_key {
            let key = parse_public_key(key)
                .map_err(|e| ApiError::BadRequest(format!("agent_key: {e}")))?;
            return Ok(Selector::Agent(key.to_bytes().to_vec()));
        }
        match &b.principal {
            Some(p) if !p.trim().is_empty() => Ok(Selector::Principal(p.clone())),
            _ => Err(ApiError::BadRequest("principal: must not be empty".into())),
        }
    }

    /// The selected value, canonical: lowercase hex, the UUID, the
    /// `ed25519/<hex>` key, the principal.
    fn value(&self) -> String {
        match self {
            Selector::Block(id) => hex::encode(id),
            Selector::Token(id) => id.clone(),
            Selector::Agent(key) => mandate_spec::public_key_from_bytes(key)
                .map(|k| format_public_key(&k))
                .unwrap_or_else(|_| hex::encode(key)),
            Selector::Principal(p) => p.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Selector::Block(_) => "revocation_id",
            Selector::Token(_) => "token_id",
            Selector::Agent(_) => "agent_key",
            Selector::Principal(_) => "principal",
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Revoked {
    revoked: Vec<Revocation>,
}

pub(crate) async fn revoke(
    State(s): State<AppState>,
    bearer: Bearer,
    ApiJson(body): ApiJson<RevokeBody>,
) -> Result<Json<Revoked>, ApiError> {
    let reason = body.reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::BadRequest("reason: say why".into()));
    }
    if reason.len() > MAX_REASON_LEN || body.by.as_ref().is_some_and(|b| b.len() > 256) {
        return Err(ApiError::BadRequest(format!(
            "reason is at most {MAX_REASON_LEN} bytes, by at most 256"
        )));
    }
    let selector = Selector::parse(&body)?;
    // Every field of the revocation entries is decided on: the selector and
    // its value, the reason, and `by` when given (else it is the admin
    // token's own `PRINCIPAL via AGENT`).
    let mut params = vec![
        ("selector", Value::Str(selector.name().into())),
        (selector.name(), Value::Str(selector.value())),
        ("reason", Value::Str(reason.clone())),
    ];
    if let Some(by) = body.by.as_ref().filter(|b| !b.trim().is_empty()) {
        params.push(("by", Value::Str(by.clone())));
    }
    let admin = authorize_admin(&s, bearer, "revoke", "/v1/revocations", params).await?;
    let by = body
        .by
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| admin.who.clone());

    let st = s.clone();
    let entries = blocking(move || {
        let entries = st.entries_for(selector, &reason, &by)?;
        if !entries.is_empty() {
            st.sink.revoke(&entries)?;
        }
        Ok(entries)
    })
    .await?;
    if entries.is_empty() {
        // Only a principal selects nothing: it has no live token here.
        return Err(ApiError::NotFound(format!(
            "no live token of {:?} in the registry: nothing revoked",
            body.principal.unwrap_or_default()
        )));
    }
    for e in &entries {
        s.metrics.revoked(&e.target);
        tracing::info!(
            target_kind = kind_of(&e.target),
            revoked = %e.target,
            reason = %e.reason,
            by = %e.by,
            admin = %admin.who,
            admin_token_id = %admin.token_id,
            "revoked"
        );
    }
    Ok(Json(Revoked { revoked: entries }))
}

fn kind_of(t: &Target) -> &'static str {
    match t {
        Target::Block(_) => "block",
        Target::Token(_) => "token",
        Target::Agent(_) => "agent",
    }
}

impl super::Inner {
    /// The entries a selector revokes, with expiry and a note from the
    /// registry when this issuer minted the target (runs on a blocking thread).
    fn entries_for(
        &self,
        selector: Selector,
        reason: &str,
        by: &str,
    ) -> Result<Vec<Revocation>, ServiceError> {
        let now = OffsetDateTime::now_utc();
        let entry = |target, rec: Option<&TokenRecord>, what: &str| Revocation {
            target,
            revoked_at: now,
            reason: reason.to_string(),
            by: by.to_string(),
            expires_at: rec.map(|r| r.expires_at),
            note: rec.map(|r| {
                format!(
                    "{what} of token {} for {:?} (agent {:?})",
                    r.token_id, r.principal, r.agent
                )
            }),
        };
        Ok(match selector {
            Selector::Block(id) => {
                let rec = self.registry.by_revocation_id(&id)?;
                vec![entry(Target::Block(id), rec.as_ref(), "root block")]
            }
            Selector::Token(id) => {
                let rec = self.registry.get(&id)?;
                vec![entry(Target::Token(id), rec.as_ref(), "family")]
            }
            Selector::Agent(key) => vec![entry(Target::Agent(key), None, "")],
            Selector::Principal(p) => {
                // In a fleet: every mint acknowledged anywhere before now
                // is applied here first, or the request fails (503).
                if let Some(fleet) = &self.fleet {
                    fleet.barrier().map_err(|e| {
                        ServiceError::Fleet(format!(
                            "revocation by principal refused (it could miss tokens minted \
                             by other issuer services): {e}"
                        ))
                    })?;
                }
                self.registry
                    .live_tokens_of(&p, now)?
                    .iter()
                    .map(|r| entry(Target::Token(r.token_id.clone()), Some(r), "family"))
                    .collect()
            }
        })
    }
}

/// `GET /v1/keys`.
#[derive(Debug, Serialize)]
pub(crate) struct KeyInfo {
    id: u32,
    public_key: String,
    current: bool,
}

pub(crate) async fn keys(State(s): State<AppState>) -> Json<Vec<KeyInfo>> {
    let (current, _) = s.issuer.keys().current();
    Json(
        s.issuer
            .keys()
            .public_keys()
            .into_iter()
            .map(|(id, key)| KeyInfo {
                id,
                public_key: format_public_key(&key),
                current: id == current,
            })
            .collect(),
    )
}

/// `GET /v1/keys/revocation`: the keys revocation-feed entries are signed
/// with (the current one signs; verifiers trust every listed one).
pub(crate) async fn revocation_keys(State(s): State<AppState>) -> Json<Vec<KeyInfo>> {
    Json(
        s.revocation_keys
            .iter()
            .map(|(id, key, current)| KeyInfo {
                id: *id,
                public_key: key.clone(),
                current: *current,
            })
            .collect(),
    )
}

/// `POST /v1/authorize`: the embedded verifier over HTTP. The request time
/// is the service's clock; a caller cannot choose it.
pub(crate) async fn authorize(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<AuthorizeRequest>,
) -> Result<(StatusCode, Json<Decision>), ApiError> {
    let started = Instant::now();
    // Signature checks are CPU work (~0.1 ms per hop): off the async workers.
    let verifier = s.verifier.clone();
    let decision = tokio::task::spawn_blocking(move || body.decide(&verifier))
        .await
        .map_err(|e| ApiError::internal("authorize task", e))?;
    s.metrics
        .decided(Source::Authorize, &decision, started.elapsed());
    tracing::debug!(
        allowed = decision.is_allowed(),
        kind = ?decision.denial.as_ref().map(|d| d.kind),
        token_id = decision.chain.as_ref().map(|c| c.token_id.as_str()),
        "decided"
    );
    let status = if decision.is_allowed() {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    Ok((status, Json(decision)))
}

/// `GET /healthz`: 200 when the revocation store answers a read and the
/// embedded verifier's revocation list is usable (with a feed: not stale).
pub(crate) async fn healthz(
    State(s): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let st = s.clone();
    blocking(move || {
        st.store.get(&Target::Token(String::new()))?;
        Ok(st.verifier.revocations_ready()?)
    })
    .await
    .map_err(|e| match e {
        ApiError::Internal(detail) => ApiError::Unavailable(detail),
        other => other,
    })?;
    Ok(Json(json!({ "status": "ok" })))
}

/// `GET /metrics`: the installed recorder's rendering, or 404 without one.
pub(crate) async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let render = s
        .render_metrics
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("no metrics recorder in this service".into()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    ))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// Runs storage work (synced RocksDB writes) off the async executor. A sink
/// failure is 503 (retry later); any other storage failure is 500.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(ServiceError::Sink(detail))) => Err(ApiError::Unavailable(detail)),
        Ok(Err(ServiceError::Fleet(why))) => Err(ApiError::UnavailableBecause(why)),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(e) => Err(ApiError::internal("blocking task", e)),
    }
}
