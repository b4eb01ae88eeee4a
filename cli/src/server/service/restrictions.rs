//! Live restrictions at the issuer service (specification §19, SERVICE.md
//! S3): admin tokens add rules to a live delegation — a hop, a token family,
//! an agent key, a principal — and lift them, through the same sink as
//! revocations (the local store, and with `--nats` the revocation feed,
//! signed).
//!
//! | route | admin token must allow | answers |
//! |---|---|---|
//! | `POST /v1/restrictions` | `restrict` on `/v1/restrictions` | 200, the restriction as stored |
//! | `POST /v1/restrictions/{id}/lift` | `lift` on `/v1/restrictions` | 200, the restriction and its lift |
//! | `GET /v1/restrictions[?all=true]` | `review` on `/v1/restrictions` | those in effect (with `all`: lifted, expired, lone lifts too) |
//!
//! Whose tokens a restriction reaches is a parameter of the decision
//! (`principal`, `token_id`) only when the service knows it without
//! disclosing anything: the target is a principal, or the caller presents
//! the token itself (verified under the service's root keys). The registry
//! is read only after the admin token is allowed, as for revocations.

use super::admin::{authorize_admin, Admin};
use super::error::ApiError;
use super::extract::{ApiJson, Bearer};
use super::handlers::blocking;
use super::{AppState, ServiceError};
use axum::extract::{Path, Query, State};
use axum::Json;
use mandate_spec::{
    format_public_key, parse_public_key, Chain, Lift, Restriction, RestrictionEntry,
    RestrictionRule, RestrictionTarget, SpecError, Value,
};
use mandate_verifier::revocation::{RestrictionApplied, RestrictionRecord};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest reason accepted, in bytes (as a revocation's).
const MAX_REASON_LEN: usize = 1024;
/// Longest `by`, in bytes (as a revocation's).
const MAX_BY_LEN: usize = 256;
/// Longest note the service writes on a restriction, in bytes.
const MAX_NOTE_LEN: usize = 1024;

/// `POST /v1/restrictions`: exactly one target, at least one rule, a
/// reason, optionally who, and optionally the id (to retry one the feed did
/// not acknowledge).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestrictBody {
    /// A token (URL-safe base64): its family, or with `hop` that hop.
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    hop: Option<usize>,
    #[serde(default)]
    revocation_id: Option<String>,
    #[serde(default)]
    token_id: Option<String>,
    #[serde(default)]
    agent_key: Option<String>,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    require_approval: Vec<String>,
    #[serde(default, rename = "where")]
    where_: Vec<String>,
    #[serde(default)]
    limits: Vec<String>,
    #[serde(default)]
    budgets: Vec<String>,
    reason: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

/// `POST /v1/restrictions/{id}/lift`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiftBody {
    reason: String,
    #[serde(default)]
    by: Option<String>,
    /// A token whose chain the restriction's target is in: the decision then
    /// knows whose tokens the restriction reaches (`principal`, `token_id`).
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// Where a restriction stands (as `mandate restrictions --json` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Standing {
    InEffect,
    Expired,
    Lifted,
    LiftOnly,
}

/// One restriction as answered: its record as stored, its rules as text,
/// and for a write what it did.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    id: String,
    state: Standing,
    /// `added`, `lifted`, `lift_recorded` or `unchanged` (writes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'static str>,
    /// The rules as text (`deny send:/api/email/**`).
    rules: Vec<String>,
    #[serde(flatten)]
    record: RestrictionRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

impl Listed {
    fn of(record: RestrictionRecord, now: OffsetDateTime) -> Listed {
        let state = match (&record.restriction, &record.lifted) {
            (None, _) => Standing::LiftOnly,
            (Some(_), Some(_)) => Standing::Lifted,
            (Some(r), None) if r.expires_at.is_some_and(|t| t <= now) => Standing::Expired,
            (Some(_), None) => Standing::InEffect,
        };
        let id = match (&record.restriction, &record.lifted) {
            (Some(r), _) => r.id.clone(),
            (None, Some(l)) => l.id.clone(),
            (None, None) => String::new(),
        };
        let rules = record
            .restriction
            .as_ref()
            .map(|r| r.rules.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        Listed {
            id,
            state,
            applied: None,
            rules,
            record,
            warning: None,
        }
    }

    fn at(&self) -> OffsetDateTime {
        match (&self.record.restriction, &self.record.lifted) {
            (Some(r), _) => r.restricted_at,
            (None, Some(l)) => l.lifted_at,
            (None, None) => OffsetDateTime::UNIX_EPOCH,
        }
    }
}

fn applied_word(a: RestrictionApplied) -> &'static str {
    match a {
        RestrictionApplied::Added => "added",
        RestrictionApplied::Lifted => "lifted",
        RestrictionApplied::LiftRecorded => "lift_recorded",
        RestrictionApplied::Unchanged => "unchanged",
    }
}

/// The target a body selects, with what the decision may know of it.
struct Selected {
    /// The selector as given: `token`, `revocation_id`, `token_id`,
    /// `agent_key`, `principal`.
    selector: &'static str,
    target: RestrictionTarget,
    /// With a presented token: its verified chain, and the hop given.
    chain: Option<(Chain, Option<usize>)>,
}

/// Reads the one selector of `b` (400 on anything malformed). A token must
/// verify under the service's root keys (signatures and chain): its
/// principal and family then become decision parameters.
async fn select(s: &AppState, b: &RestrictBody) -> Result<Selected, ApiError> {
    let given = [
        b.token.is_some(),
        b.revocation_id.is_some(),
        b.token_id.is_some(),
        b.agent_key.is_some(),
        b.principal.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::BadRequest(
            "give exactly one of token (with hop, optionally), revocation_id, token_id, \
             agent_key, principal"
                .into(),
        ));
    }
    if b.hop.is_some() && b.token.is_none() {
        return Err(ApiError::BadRequest(
            "hop: only with token (a hop of that token)".into(),
        ));
    }
    if let Some(text) = &b.token {
        let chain = verified_chain(s, text, "token").await?;
        let Some(n) = b.hop else {
            let target = RestrictionTarget::Token(chain.token_id.clone());
            return Ok(Selected {
                selector: "token",
                target,
                chain: Some((chain, None)),
            });
        };
        let hop = chain.hops.get(n).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "hop {n}: the token has hops 0 to {}",
                chain.depth()
            ))
        })?;
        let target = RestrictionTarget::Block(hop.revocation_id.to_ascii_lowercase());
        return Ok(Selected {
            selector: "token",
            target,
            chain: Some((chain, Some(n))),
        });
    }
    let (selector, target) = if let Some(id) = &b.revocation_id {
        let bytes = hex::decode(id.trim()).map_err(|_| {
            ApiError::BadRequest("revocation_id: expected hex (128 hex digits)".into())
        })?;
        if bytes.len() != 64 {
            return Err(ApiError::BadRequest(format!(
                "revocation_id: a revocation id is 64 bytes (128 hex digits), got {}",
                bytes.len()
            )));
        }
        (
            "revocation_id",
            RestrictionTarget::Block(hex::encode(bytes)),
        )
    } else if let Some(id) = &b.token_id {
        let uuid = Uuid::parse_str(id.trim())
            .map_err(|_| ApiError::BadRequest("token_id: expected a UUID".into()))?;
        ("token_id", RestrictionTarget::Token(uuid.to_string()))
    } else if let Some(key) = &b.agent_key {
        let key =
            parse_public_key(key).map_err(|e| ApiError::BadRequest(format!("agent_key: {e}")))?;
        (
            "agent_key",
            RestrictionTarget::Agent(hex::encode(key.to_bytes())),
        )
    } else {
        match &b.principal {
            Some(p) if !p.trim().is_empty() => {
                ("principal", RestrictionTarget::Principal(p.clone()))
            }
            _ => return Err(ApiError::BadRequest("principal: must not be empty".into())),
        }
    };
    target
        .validate()
        .map_err(|e| ApiError::BadRequest(format!("{selector}: {e}")))?;
    Ok(Selected {
        selector,
        target,
        chain: None,
    })
}

/// The chain of a token given as text, once it verifies under the service's
/// root keys (signatures and chain; not expiry or revocation: restricting a
/// dead token is harmless). 400 otherwise.
async fn verified_chain(s: &AppState, text: &str, field: &str) -> Result<Chain, ApiError> {
    let bytes = mandate_spec::token_from_text(text.trim())
        .map_err(|e| ApiError::BadRequest(format!("{field}: unreadable token: {e}")))?;
    let st = s.clone();
    let field = field.to_string();
    tokio::task::spawn_blocking(move || {
        if !st.verifier.verifies(&bytes) {
            return Err(ApiError::BadRequest(format!(
                "{field}: not a token of this service (its signatures or chain do not verify \
                 under the service's root keys); select the target by revocation_id, token_id, \
                 agent_key or principal instead"
            )));
        }
        mandate_attenuate::read_chain(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal("reading a token", e))?
}

/// The rules of a body, in the order deny, where, require-approval, limits,
/// budgets (as `mandate restrict` orders them). A rule's own keyword may
/// lead its text (`deny send:/x`, as the service answers it).
fn rules(b: &RestrictBody) -> Result<Vec<RestrictionRule>, ApiError> {
    type Parse = fn(&str) -> Result<RestrictionRule, SpecError>;
    let kinds: [(&str, &str, &[String], Parse); 5] = [
        ("deny", "deny ", &b.deny, RestrictionRule::parse_deny),
        ("where", "only ", &b.where_, RestrictionRule::parse_only),
        (
            "require_approval",
            "require-approval ",
            &b.require_approval,
            RestrictionRule::parse_require_approval,
        ),
        ("limits", "count ", &b.limits, RestrictionRule::parse_limit),
        (
            "budgets",
            "budget ",
            &b.budgets,
            RestrictionRule::parse_budget,
        ),
    ];
    let mut out = Vec::new();
    for (field, keyword, texts, parse) in kinds {
        for t in texts {
            let body = t.trim();
            let body = body.strip_prefix(keyword).unwrap_or(body).trim();
            out.push(parse(body).map_err(|e| ApiError::BadRequest(format!("{field} {t:?}: {e}")))?);
        }
    }
    if out.is_empty() {
        return Err(ApiError::BadRequest(
            "give at least one rule: deny, where, require_approval, limits or budgets".into(),
        ));
    }
    Ok(out)
}

/// The reason (trimmed, required) and `by` (when given), bounded as a
/// revocation's.
fn reason_and_by(reason: &str, by: Option<&String>) -> Result<(String, Option<String>), ApiError> {
    let reason = reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::BadRequest("reason: say why".into()));
    }
    let by = by.map(|b| b.trim().to_string()).filter(|b| !b.is_empty());
    if reason.len() > MAX_REASON_LEN || by.as_ref().is_some_and(|b| b.len() > MAX_BY_LEN) {
        return Err(ApiError::BadRequest(format!(
            "reason is at most {MAX_REASON_LEN} bytes, by at most {MAX_BY_LEN}"
        )));
    }
    Ok((reason, by))
}

/// The name a target's value goes under among the decision's parameters.
fn target_param(t: &RestrictionTarget) -> (&'static str, String) {
    match t {
        RestrictionTarget::Block(h) => ("revocation_id", h.clone()),
        RestrictionTarget::Token(id) => ("token_id", id.clone()),
        RestrictionTarget::Agent(h) => (
            "agent_key",
            mandate_spec::public_key_from_bytes(&hex::decode(h).unwrap_or_default())
                .map(|k| format_public_key(&k))
                .unwrap_or_else(|_| format!("ed25519/{h}")),
        ),
        RestrictionTarget::Principal(p) => ("principal", p.clone()),
    }
}

/// `target_kind`, the target's value under its name, and — from a
/// principal target or a verified chain — `principal` and `token_id`.
fn target_params(target: &RestrictionTarget, chain: Option<&Chain>) -> Vec<(String, Value)> {
    let (name, value) = target_param(target);
    let mut out = vec![
        ("target_kind".to_string(), Value::Str(target.kind().into())),
        (name.to_string(), Value::Str(value)),
    ];
    if let Some(c) = chain {
        for (name, value) in [("principal", &c.principal), ("token_id", &c.token_id)] {
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.to_string(), Value::Str(value.clone())));
            }
        }
    }
    out
}

/// The rules' canonical texts, sorted bytewise and joined with `; `; and
/// their kinds (`deny`, `only`, `require-approval`, `count`, `budget`),
/// distinct, sorted, joined with `,`.
fn rules_params(rules: &[RestrictionRule]) -> [(String, Value); 2] {
    let mut texts: Vec<String> = rules.iter().map(ToString::to_string).collect();
    texts.sort();
    let mut kinds: Vec<&str> = texts
        .iter()
        .map(|t| t.split(' ').next().unwrap_or_default())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let kinds = kinds.join(",");
    [
        ("rules".to_string(), Value::Str(texts.join("; "))),
        ("rule_kinds".to_string(), Value::Str(kinds)),
    ]
}

pub(crate) async fn restrict(
    State(s): State<AppState>,
    bearer: Bearer,
    ApiJson(body): ApiJson<RestrictBody>,
) -> Result<Json<Listed>, ApiError> {
    let (reason, by) = reason_and_by(&body.reason, body.by.as_ref())?;
    let rules = rules(&body)?;
    let id = match &body.id {
        Some(id) => Uuid::parse_str(id.trim())
            .map_err(|_| ApiError::BadRequest("id: a restriction id is a UUID".into()))?
            .hyphenated()
            .to_string(),
        None => Uuid::new_v4().hyphenated().to_string(),
    };
    let selected = select(&s, &body).await?;
    // Checked whole before the admin token is decided (bounds, limits).
    let mut restriction = Restriction {
        id: id.clone(),
        target: selected.target.clone(),
        rules,
        restricted_at: OffsetDateTime::now_utc(),
        by: by.clone().unwrap_or_default(),
        reason: reason.clone(),
        expires_at: None,
        note: None,
    };
    restriction
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;

    // Every field of the entry is decided on (SERVICE.md S2).
    let chain = selected.chain.as_ref().map(|(c, _)| c);
    let mut params = vec![
        ("id".to_string(), Value::Str(id.clone())),
        ("selector".to_string(), Value::Str(selected.selector.into())),
    ];
    params.extend(target_params(&selected.target, chain));
    if let Some((_, Some(hop))) = &selected.chain {
        params.push((
            "hop".to_string(),
            Value::Int(i64::try_from(*hop).unwrap_or(i64::MAX)),
        ));
    }
    params.extend(rules_params(&restriction.rules));
    params.push(("reason".to_string(), Value::Str(reason.clone())));
    if let Some(by) = &by {
        params.push(("by".to_string(), Value::Str(by.clone())));
    }
    let admin = authorize_admin(&s, bearer, "restrict", "/v1/restrictions", params).await?;
    if by.is_none() {
        restriction.by = admin.who.clone();
    }

    let st = s.clone();
    let (record, applied) = blocking(move || {
        let (expires_at, note) = st.describe(&selected)?;
        restriction.expires_at = expires_at;
        restriction.note = note;
        // A retry names the id: the restriction stored under it is sent
        // again (so the feed gets it), never a different one.
        if let Some(stored) = st.store.restriction_record(&restriction.id)? {
            match &stored.restriction {
                _ if stored.lifted.is_some() => {
                    return Ok(Err(ApiError::Conflict(format!(
                        "restriction {} was lifted (lifts are final): make a new one, without \
                         an id",
                        restriction.id
                    ))))
                }
                Some(r) if r.target == restriction.target && r.rules == restriction.rules => {
                    restriction = r.clone();
                }
                _ => {
                    return Ok(Err(ApiError::Conflict(format!(
                        "id {} already names another restriction",
                        restriction.id
                    ))))
                }
            }
        }
        st.write(RestrictionEntry::Restrict(restriction))
    })
    .await??;
    let mut listed = Listed::of(record, OffsetDateTime::now_utc());
    listed.applied = Some(applied_word(applied));
    if let Some(r) = &listed.record.restriction {
        log_written(
            "restricted",
            r.id.as_str(),
            &admin,
            applied,
            &r.reason,
            &r.by,
        );
        tracing::info!(id = %r.id, target = %r.target, rules = ?listed.rules, "restriction in effect");
    }
    Ok(Json(listed))
}

pub(crate) async fn lift(
    State(s): State<AppState>,
    bearer: Bearer,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LiftBody>,
) -> Result<Json<Listed>, ApiError> {
    let (reason, by) = reason_and_by(&body.reason, body.by.as_ref())?;
    let id = Uuid::parse_str(id.trim())
        .map_err(|_| ApiError::BadRequest(format!("{id:?}: a restriction id is a UUID")))?
        .hyphenated()
        .to_string();
    let chain = match &body.token {
        Some(t) => Some(verified_chain(&s, t, "token").await?),
        None => None,
    };
    let st = s.clone();
    let rid = id.clone();
    let stored = blocking(move || Ok(st.store.restriction_record(&rid)?)).await?;
    // What the lift decides on: the id, the restriction's target and who
    // made it (when known here), whose tokens it reaches (a principal
    // target, or the presented token whose chain holds the target), the
    // reason and `by`.
    let mut params = vec![("id".to_string(), Value::Str(id.clone()))];
    let restriction = stored.as_ref().and_then(|r| r.restriction.as_ref());
    if let Some(r) = restriction {
        let reached = match &chain {
            Some(c) if reaches(c, &r.target) => Some(c),
            Some(_) => {
                return Err(ApiError::BadRequest(format!(
                    "token: restriction {id} is on {}, which is not in this token's chain",
                    r.target
                )))
            }
            None => None,
        };
        params.extend(target_params(&r.target, reached));
        params.push(("restricted_by".to_string(), Value::Str(r.by.clone())));
    } else if chain.is_some() {
        return Err(ApiError::BadRequest(format!(
            "token: no restriction {id} is known here, so its target cannot be checked \
             against the token; lift it without the token"
        )));
    }
    params.push(("reason".to_string(), Value::Str(reason.clone())));
    if let Some(by) = &by {
        params.push(("by".to_string(), Value::Str(by.clone())));
    }
    let admin = authorize_admin(&s, bearer, "lift", "/v1/restrictions", params).await?;
    let lift = Lift {
        id: id.clone(),
        lifted_at: OffsetDateTime::now_utc(),
        by: by.unwrap_or_else(|| admin.who.clone()),
        reason,
    };
    let st = s.clone();
    let (record, applied) = blocking(move || {
        // Lifted already: the stored lift is sent again (a retry after a
        // feed that did not acknowledge), nothing changes.
        let lift = match st.store.restriction_record(&lift.id)? {
            Some(RestrictionRecord {
                lifted: Some(before),
                ..
            }) => before,
            _ => lift,
        };
        st.write(RestrictionEntry::Lift(lift))
    })
    .await??;
    let mut listed = Listed::of(record, OffsetDateTime::now_utc());
    listed.applied = Some(applied_word(applied));
    if listed.record.restriction.is_none() {
        listed.warning = Some(format!(
            "no restriction {id} is known here: the lift is recorded, so a restriction with \
             that id will never apply (check the id with GET /v1/restrictions?all=true)"
        ));
    }
    if let Some(l) = &listed.record.lifted {
        log_written("lifted restriction", &id, &admin, applied, &l.reason, &l.by);
    }
    Ok(Json(listed))
}

pub(crate) async fn list(
    State(s): State<AppState>,
    bearer: Bearer,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Listed>>, ApiError> {
    let all = q.all.then_some(("all", Value::Int(1)));
    authorize_admin(&s, bearer, "review", "/v1/restrictions", all).await?;
    let st = s.clone();
    let records = blocking(move || Ok(st.store.restriction_records()?)).await?;
    let now = OffsetDateTime::now_utc();
    let mut listed: Vec<Listed> = records
        .into_iter()
        .map(|r| Listed::of(r, now))
        .filter(|l| q.all || l.state == Standing::InEffect)
        .collect();
    listed.sort_by(|x, y| x.at().cmp(&y.at()).then_with(|| x.id.cmp(&y.id)));
    Ok(Json(listed))
}

/// Whether `target` is in `chain`: one of its blocks, its family, one of
/// its hops' agent keys, or its principal.
fn reaches(chain: &Chain, target: &RestrictionTarget) -> bool {
    match target {
        RestrictionTarget::Block(h) => chain
            .hops
            .iter()
            .any(|hop| hop.revocation_id.eq_ignore_ascii_case(h)),
        RestrictionTarget::Token(t) => &chain.token_id == t,
        RestrictionTarget::Agent(k) => chain
            .hops
            .iter()
            .any(|hop| hex::encode(hop.agent_public_key.to_bytes()) == *k),
        RestrictionTarget::Principal(p) => &chain.principal == p,
    }
}

fn log_written(
    what: &str,
    id: &str,
    admin: &Admin,
    applied: RestrictionApplied,
    reason: &str,
    by: &str,
) {
    tracing::info!(
        id,
        applied = applied_word(applied),
        reason,
        by,
        admin = %admin.who,
        admin_token_id = %admin.token_id,
        "{what}"
    );
}

impl super::Inner {
    /// Sends `entry` to the sink and reads back its record. A sink that did
    /// not acknowledge is 503 naming what to retry (the entry may already
    /// apply at this service); its detail is logged.
    fn write(
        &self,
        entry: RestrictionEntry,
    ) -> Result<Result<(RestrictionRecord, RestrictionApplied), ApiError>, ServiceError> {
        let applied = match self.sink.restrict(&entry) {
            Ok(applied) => applied,
            Err(ServiceError::Sink(detail)) => {
                tracing::error!(id = %entry.id(), %detail, "restriction entry not acknowledged by the sink");
                let retry = match &entry {
                    RestrictionEntry::Restrict(_) => {
                        format!("retry with the same body and \"id\": \"{}\"", entry.id())
                    }
                    RestrictionEntry::Lift(_) => "retry the lift".to_string(),
                };
                return Ok(Err(ApiError::UnavailableBecause(format!(
                    "restriction {} was not acknowledged by the revocation sink (it may already \
                     apply at this service): {retry}",
                    entry.id()
                ))));
            }
            Err(e) => return Err(e),
        };
        let record = match self.store.restriction_record(entry.id())? {
            Some(record) => record,
            // A sink that does not write the local store (its feed consumer
            // will): the entry as acknowledged.
            None => match entry {
                RestrictionEntry::Restrict(r) => RestrictionRecord {
                    restriction: Some(r),
                    lifted: None,
                },
                RestrictionEntry::Lift(l) => RestrictionRecord {
                    restriction: None,
                    lifted: Some(l),
                },
            },
        };
        Ok(Ok((record, applied)))
    }

    /// When the restriction's target expires and what it was, from the
    /// presented chain or the registry (read only now, the admin token
    /// allowed).
    fn describe(
        &self,
        selected: &Selected,
    ) -> Result<(Option<OffsetDateTime>, Option<String>), ServiceError> {
        let family = |r: &crate::registry::TokenRecord, what: &str| {
            Some(clip(format!(
                "{what} of token {} for {:?} (agent {:?})",
                r.token_id, r.principal, r.agent
            )))
        };
        Ok(match (&selected.chain, &selected.target) {
            (Some((chain, None)), _) => (
                chain.hops.first().and_then(|h| h.expires_at),
                Some(clip(format!(
                    "token family of {:?} ({} hop{}, agent {:?})",
                    chain.principal,
                    chain.hops.len(),
                    if chain.hops.len() == 1 { "" } else { "s" },
                    chain.holder().agent
                ))),
            ),
            (Some((chain, Some(n))), _) => {
                let n = *n;
                let expires = chain.hops[..=n].iter().filter_map(|h| h.expires_at).min();
                let note = format!(
                    "hop {n} (agent {:?}) of token {} for {:?}",
                    chain.hops[n].agent, chain.token_id, chain.principal
                );
                (expires, Some(clip(note)))
            }
            (None, RestrictionTarget::Block(h)) => {
                let rec = self
                    .registry
                    .by_revocation_id(&hex::decode(h).unwrap_or_default())?;
                (
                    rec.as_ref().map(|r| r.expires_at),
                    rec.as_ref().and_then(|r| family(r, "root block")),
                )
            }
            (None, RestrictionTarget::Token(id)) => {
                let rec = self.registry.get(id)?;
                (
                    rec.as_ref().map(|r| r.expires_at),
                    rec.as_ref().and_then(|r| family(r, "family")),
                )
            }
            (None, _) => (None, None),
        })
    }
}

/// A note within bounds (cut on a character boundary, with an ellipsis).
fn clip(mut note: String) -> String {
    if note.len() > MAX_NOTE_LEN {
        let mut end = MAX_NOTE_LEN - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}
