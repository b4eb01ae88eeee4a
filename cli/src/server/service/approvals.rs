//! Human approval at the issuer service (specification §14, SERVICE.md S5):
//! agents submit requests that need approval, people review them with their
//! chains and approve or deny from one place; the service signs approvals
//! with the approver keys it is configured with.
//!
//! | route | who | does |
//! |---|---|---|
//! | `POST /v1/approvals` | the agent, with its own Mandate token | 201: queued (the service decides the request itself: it must need approval) |
//! | `GET /v1/approvals[?status=pending]` | admin token allowing `review` on `/v1/approvals` | the queue, with chains |
//! | `GET /v1/approvals/{id}[?wait=30s]` | anyone with the id | status, and the approval block once approved; with `wait`, once decided or after the wait (wait.rs) |
//! | `POST /v1/approvals/{id}/approve` | admin token allowing `approve` on `/v1/approvals` (parameters `approver`, `valid_seconds` and the request's fields, SERVICE.md S2) | signs with that approver's key |
//! | `POST /v1/approvals/{id}/deny` | the same | marks it denied, with a reason |
//!
//! A request queued, approved or denied is notified to its approvers'
//! webhooks (notify.rs); a decision wakes the requests waiting for it.

use super::admin::authorize_admin;
use super::error::ApiError;
use super::extract::{ApiJson, Bearer};
use super::handlers::blocking;
use super::{AppState, Inner};
use crate::approval_bucket::{ApprovalBucket, Written};
use crate::ServiceError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use mandate_spec::{parse_duration, Request, Value};
use mandate_verifier::{ApprovalNeeded, Outcome};
use rocksdb::{IteratorMode, Options, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest validity an approval can be given here.
const MAX_VALIDITY_SECS: u64 = 24 * 3600;

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a person.
    Pending,
    /// Approved: the approval block is ready to attach.
    Approved,
    /// Denied.
    Denied,
}

/// One approval request, as stored and as answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Its id (UUID v4).
    pub id: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// When the agent submitted it.
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    /// The request to approve, as the service decided it.
    pub request: Request,
    /// Whom the token's rules ask, the digest, the token's third-party request.
    pub approval: ApprovalNeeded,
    /// The delegation chain the request came through.
    pub chain: serde_json::Value,
    /// Why the verifier asked for approval, in words.
    pub reason: String,
    /// Who approved or denied it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When it was decided.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub decided_at: Option<OffsetDateTime>,
    /// A denial's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_because: Option<String>,
    /// The approval block (base64), once approved: append it to the token
    /// (`mandate attach-approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_block: Option<String>,
    /// The agent's token (base64), kept while the request is pending so
    /// that it is decided again before a person is shown it or approves it
    /// (the approval desk, `/ui/approvals`). Stored, never answered: every
    /// route answers [`ApprovalRecord::answered`]; dropped once decided.
    /// Absent from requests queued before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl ApprovalRecord {
    /// The record as a route answers it: without the agent's token.
    pub fn answered(mut self) -> ApprovalRecord {
        self.token = None;
        self
    }
}

/// The approval queue: on disk (`DATA_DIR/approvals`, RocksDB, synced on
/// every write) for one issuer service, or shared by a fleet of them
/// ([`ApprovalBucket`], `mandate serve --nats`). Either way a request is
/// decided once: approving or denying writes only over the pending record
/// that was read.
pub struct ApprovalQueue(Backend);

enum Backend {
    Local(Arc<LocalQueue>),
    Fleet(Arc<ApprovalBucket>),
}

struct LocalQueue {
    db: DB,
    path: std::path::PathBuf,
    sync: WriteOptions,
    /// Held from the re-read of a pending record to its decided write.
    deciding: Mutex<()>,
    /// The pending requests by token family, with their approval's
    /// suggested end: what the family quota counts, kept with every write
    /// (and read once when opened), so that filing does not read every
    /// record ever queued.
    waiting: Mutex<HashMap<String, Vec<(String, OffsetDateTime)>>>,
}

impl std::fmt::Debug for ApprovalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Backend::Local(q) => f
                .debug_struct("ApprovalQueue")
                .field("path", &q.path)
                .finish(),
            Backend::Fleet(b) => f.debug_tuple("ApprovalQueue").field(b).finish(),
        }
    }
}

impl ApprovalQueue {
    /// Opens (creating) the queue at `path`.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<ApprovalQueue, ServiceError> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, &path).map_err(|e| storage(&path, e))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let queue = LocalQueue {
            db,
            path,
            sync,
            deciding: Mutex::new(()),
            waiting: Mutex::default(),
        };
        let now = OffsetDateTime::now_utc();
        for r in queue.all()? {
            if r.status == ApprovalStatus::Pending && r.approval.expires_at > now {
                queue.index(&r);
            }
        }
        Ok(ApprovalQueue(Backend::Local(Arc::new(queue))))
    }

    /// The queue the issuer services of a fleet share.
    pub fn shared(bucket: Arc<ApprovalBucket>) -> ApprovalQueue {
        ApprovalQueue(Backend::Fleet(bucket))
    }

    /// Copies every record of this (local) queue into `bucket` that is not
    /// there yet, so requests queued before the service joined a fleet are
    /// not lost from view; how many were copied.
    pub async fn copy_into(&self, bucket: &ApprovalBucket) -> Result<usize, ServiceError> {
        let mut copied = 0;
        for r in self.all().await? {
            if bucket.create(&r).await? == Written::Yes {
                copied += 1;
            }
        }
        Ok(copied)
    }

    /// Adds a new request.
    async fn create(&self, r: &ApprovalRecord) -> Result<(), ServiceError> {
        match &self.0 {
            Backend::Local(q) => {
                let (q, r) = (q.clone(), r.clone());
                run_blocking(move || q.put(&r)).await
            }
            Backend::Fleet(b) => match b.create(r).await? {
                Written::Yes => Ok(()),
                Written::Conflict => Err(ServiceError::Fleet(format!(
                    "approval request id {} is already taken",
                    r.id
                ))),
            },
        }
    }

    /// One request (in a fleet: its decision when there is one).
    pub(super) async fn get(&self, id: &str) -> Result<Option<ApprovalRecord>, ServiceError> {
        // Ids are UUIDs: anything else names nothing (and never reaches a
        // bucket key).
        if Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        match &self.0 {
            Backend::Local(q) => {
                let (q, id) = (q.clone(), id.to_string());
                run_blocking(move || q.get(&id)).await
            }
            Backend::Fleet(b) => b.get(id).await,
        }
    }

    /// Records `r` (approved or denied) only if the request is still
    /// pending (re-read under a lock locally; in a fleet, its decision key
    /// is created once).
    async fn decide(&self, r: &ApprovalRecord) -> Result<Written, ServiceError> {
        match &self.0 {
            Backend::Local(q) => {
                let (q, r) = (q.clone(), r.clone());
                run_blocking(move || {
                    let _one_at_a_time = q.deciding.lock().unwrap_or_else(|p| p.into_inner());
                    match q.get(&r.id)? {
                        Some(stored) if stored.status == ApprovalStatus::Pending => {
                            q.put(&r)?;
                            Ok(Written::Yes)
                        }
                        _ => Ok(Written::Conflict),
                    }
                })
                .await
            }
            Backend::Fleet(b) => b.decide(r).await,
        }
    }

    /// The approval's suggested ends of the requests of token family
    /// `family` still waiting at `now` (pending, before that end): locally
    /// from the queue's index, in a fleet from the shared queue.
    async fn waiting(
        &self,
        family: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<OffsetDateTime>, ServiceError> {
        match &self.0 {
            Backend::Local(q) => Ok(q.waiting(family, now)),
            Backend::Fleet(b) => Ok(family_waiting(&b.all().await?, family, now)),
        }
    }

    /// Every request, oldest first.
    pub(super) async fn all(&self) -> Result<Vec<ApprovalRecord>, ServiceError> {
        match &self.0 {
            Backend::Local(q) => {
                let q = q.clone();
                run_blocking(move || q.all()).await
            }
            Backend::Fleet(b) => b.all().await,
        }
    }
}

impl LocalQueue {
    fn put(&self, r: &ApprovalRecord) -> Result<(), ServiceError> {
        let value = serde_json::to_vec(r).map_err(|e| storage(&self.path, e))?;
        self.db
            .put_opt(r.id.as_bytes(), value, &self.sync)
            .map_err(|e| storage(&self.path, e))?;
        self.index(r);
        Ok(())
    }

    /// Keeps the index of waiting requests up to date with `r` (written).
    fn index(&self, r: &ApprovalRecord) {
        let family = r.chain["token_id"].as_str().unwrap_or_default();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let list = waiting.entry(family.to_string()).or_default();
        list.retain(|(id, _)| *id != r.id);
        if r.status == ApprovalStatus::Pending {
            list.push((r.id.clone(), r.approval.expires_at));
        }
        if list.is_empty() {
            waiting.remove(family);
        }
    }

    /// [`ApprovalQueue::waiting`] from the index (those ended are dropped).
    fn waiting(&self, family: &str, now: OffsetDateTime) -> Vec<OffsetDateTime> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() > 4096 {
            // Families that stopped filing keep their ended entries until
            // swept: the index holds what still waits, not the history.
            waiting.retain(|_, list| {
                list.retain(|(_, end)| *end > now);
                !list.is_empty()
            });
        }
        let Some(list) = waiting.get_mut(family) else {
            return Vec::new();
        };
        list.retain(|(_, end)| *end > now);
        let ends = list.iter().map(|(_, end)| *end).collect();
        if list.is_empty() {
            waiting.remove(family);
        }
        ends
    }

    fn get(&self, id: &str) -> Result<Option<ApprovalRecord>, ServiceError> {
        self.db
            .get_pinned(id.as_bytes())
            .map_err(|e| storage(&self.path, e))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| storage(&self.path, e)))
            .transpose()
    }

    fn all(&self) -> Result<Vec<ApprovalRecord>, ServiceError> {
        let mut out = Vec::new();
        for item in self.db.iterator(IteratorMode::Start) {
            let (_, v) = item.map_err(|e| storage(&self.path, e))?;
            out.push(serde_json::from_slice(&v).map_err(|e| storage(&self.path, e))?);
        }
        out.sort_by_key(|r: &ApprovalRecord| r.submitted_at);
        Ok(out)
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Config(format!("approval queue task failed: {e}")))?
}

/// A queue error as the API answers it: the shared queue unreachable is 503
/// with the reason, as `blocking` answers.
pub(super) fn api(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Fleet(why) => ApiError::UnavailableBecause(why),
        e => ApiError::from(e),
    }
}

fn storage(path: &std::path::Path, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Registry {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The body of `POST /v1/approvals`: the request the agent wants to make.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitBody {
    action: String,
    resource: String,
    #[serde(default, deserialize_with = "mandate_spec::unique_params")]
    params: BTreeMap<String, Value>,
}

pub(crate) async fn submit(
    State(s): State<AppState>,
    Bearer(token): Bearer,
    ApiJson(body): ApiJson<SubmitBody>,
) -> Result<(StatusCode, Json<ApprovalRecord>), ApiError> {
    let mut request = Request::new(body.action, body.resource);
    request.params = body.params;
    unreadable_to_a_person(&request)?;
    let kept = mandate_spec::token_to_text(&token);
    let st = s.clone();
    // As an approver will see it: a holder-bound token's proof is the
    // request's business when it is made, not the submission's.
    let decision = blocking(move || Ok(st.verifier.decide_for_approver(&token, &request))).await?;
    match decision.decision {
        Outcome::NeedsApproval => {}
        Outcome::Allow => {
            return Err(ApiError::Conflict(
                "this request needs no approval: the token allows it as it is".into(),
            ))
        }
        Outcome::Deny => {
            let denial = decision.denial.unwrap_or_else(|| {
                mandate_verifier::Denial::new(mandate_verifier::DenialKind::NotAllowed, "denied")
            });
            return Err(ApiError::Forbidden(
                format!("the token does not allow this request: {}", denial.reason),
                Box::new(denial),
            ));
        }
    }
    let (Some(approval), Some(chain)) = (decision.approval, decision.chain) else {
        return Err(ApiError::Internal(
            "needs approval without its details".into(),
        ));
    };
    let family = chain.token_id.clone();
    let record = ApprovalRecord {
        id: Uuid::new_v4().to_string(),
        status: ApprovalStatus::Pending,
        submitted_at: OffsetDateTime::now_utc(),
        request: decision.request,
        approval,
        chain: serde_json::to_value(&*chain).unwrap_or_default(),
        reason: decision.denial.map(|d| d.reason).unwrap_or_default(),
        decided_by: None,
        decided_at: None,
        denied_because: None,
        approval_block: None,
        token: Some(kept),
    };
    let queue = s.queue().map_err(api)?;
    {
        // One family's pending requests counted and one added under one
        // lock: concurrent submissions here cannot pass the count together.
        let _filing = s.filing.lock().await;
        let waiting = queue
            .waiting(&family, record.submitted_at)
            .await
            .map_err(api)?;
        within_family_quota(&waiting, s.max_pending_per_family, record.submitted_at)?;
        queue.create(&record).await.map_err(api)?;
    }
    tracing::info!(id = %record.id, principal = ?record.chain["principal"], action = %record.request.action, "approval requested");
    super::notify::requested(&s, &record);
    Ok((StatusCode::CREATED, Json(record.answered())))
}

/// The parameters a mapping fills with what no other parameter carries,
/// as canonical JSON up to 1 KiB, else only `sha256:` and its hash: an MCP
/// call's non-parameter arguments (`mcp.other_arguments`), a JSON body's
/// unmapped fields (`http.other_body`).
const CARRYING_THE_REST: [&str; 2] = [crate::mcp::OTHER_ARGUMENTS, "http.other_body"];

/// Refuses a request a person could not read: one of
/// [`CARRYING_THE_REST`] given only as a hash (`sha256:…`), so the desk
/// and the notifications would show the approver a hash while the
/// approval binds, and the gateway forwards, what nobody saw (e.g. the
/// recipients of a payment).
fn unreadable_to_a_person(request: &Request) -> Result<(), ApiError> {
    for name in CARRYING_THE_REST {
        if let Some(Value::Str(v)) = request.params.get(name) {
            if v.starts_with("sha256:") {
                return Err(ApiError::BadRequest(format!(
                    "this request cannot be shown to a person for approval: its parameter \
                     {name} is a SHA-256 of what it carries (over 1 KiB), not the content \
                     itself; send it within 1 KiB, or as parameters of its own"
                )));
            }
        }
    }
    Ok(())
}

/// The approval's suggested ends of the requests of token family `family`
/// among `all` still waiting at `now`: pending and before that end.
fn family_waiting(
    all: &[ApprovalRecord],
    family: &str,
    now: OffsetDateTime,
) -> Vec<OffsetDateTime> {
    all.iter()
        .filter(|r| {
            r.status == ApprovalStatus::Pending
                && r.approval.expires_at > now
                && r.chain["token_id"].as_str() == Some(family)
        })
        .map(|r| r.approval.expires_at)
        .collect()
}

/// Refuses one more pending request of a token family when `max` of its
/// requests already wait for a decision (`waiting`: the suggested ends of
/// those pending and not past it), with the seconds until the first of
/// them ends. One agent (and the agents it delegated to) cannot flood the
/// desk and the approvers' webhooks; other families are unaffected. In a
/// fleet the count is of the shared queue; two services filing for one
/// family at the same instant may each pass it once. Locally the count
/// comes from the queue's index, not from reading every record ever queued
/// (a filing took 91 ms at 8 000 records, under the lock every filing
/// shares).
fn within_family_quota(
    waiting: &[OffsetDateTime],
    max: usize,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    if waiting.len() < max {
        return Ok(());
    }
    let first_end = waiting.iter().min().copied().unwrap_or(now);
    let retry_after = u64::try_from((first_end - now).whole_seconds())
        .unwrap_or(0)
        .max(1);
    Err(ApiError::TooManyRequests(
        format!(
            "this token family already has {} approval requests waiting for a decision \
             (at most {max}); retry once one is decided or in {retry_after} s, when the \
             first of them expires",
            waiting.len()
        ),
        retry_after,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<ApprovalStatus>,
}

pub(crate) async fn list(
    State(s): State<AppState>,
    bearer: Bearer,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ApprovalRecord>>, ApiError> {
    // The whole queue is disclosed, or the part of one status.
    let status = q.status.map(|st| {
        let name = serde_json::to_value(st)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        ("status", Value::Str(name))
    });
    authorize_admin(&s, bearer, "review", "/v1/approvals", status).await?;
    let all = s.queue().map_err(api)?.all().await.map_err(api)?;
    Ok(Json(
        all.into_iter()
            .filter(|r| q.status.is_none_or(|want| r.status == want))
            .map(ApprovalRecord::answered)
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct GetQuery {
    /// Wait up to this long for a pending request to be decided (wait.rs).
    wait: Option<String>,
}

pub(crate) async fn get_one(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Json<ApprovalRecord>, ApiError> {
    let wait = q.wait.as_deref().map(super::wait::parse_wait).transpose()?;
    let queue = s.queue().map_err(api)?;
    let record = match wait {
        Some(wait) if !wait.is_zero() => {
            s.waiters
                .until_decided(&id, wait, || queue.get(&id))
                .await?
        }
        _ => queue.get(&id).await.map_err(api)?,
    };
    record
        .map(|r| Json(r.answered()))
        .ok_or_else(|| ApiError::NotFound(format!("no approval request {id:?}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    /// Which configured approver signs (default: the only one the request
    /// asks for that the service holds).
    #[serde(default)]
    approver: Option<String>,
    /// How long the approval stays valid (default 10m, at most 24h).
    #[serde(default)]
    valid: Option<String>,
}

pub(crate) async fn approve(
    State(s): State<AppState>,
    bearer: Bearer,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<ApprovalRecord>, ApiError> {
    let record = approve_as(&s, bearer, &id, body.approver, body.valid.as_deref()).await?;
    Ok(Json(record.answered()))
}

/// Approves request `id` for the bearer's admin token (this route and the
/// approval desk): as `approver` (default: the only one the request asks
/// for that the service holds), valid for `valid` (default 10m, at most
/// 24h). The admin decision first; then the request decided again with its
/// token: no approval is signed for a token that no longer verifies, or no
/// longer needs exactly the approval it was queued for (409).
pub(super) async fn approve_as(
    s: &AppState,
    bearer: Bearer,
    id: &str,
    approver: Option<String>,
    valid: Option<&str>,
) -> Result<ApprovalRecord, ApiError> {
    let mut record = pending(s, id).await?;
    let valid = parse_duration(valid.unwrap_or("10m"))
        .map_err(|e| ApiError::BadRequest(format!("valid: {e}")))?;
    if valid.as_secs() > MAX_VALIDITY_SECS {
        return Err(ApiError::BadRequest("valid: at most 24h".into()));
    }
    let candidates = candidates(s, &record);
    let name = match (approver, candidates.as_slice()) {
        (Some(n), c) if c.contains(&n) => n,
        (Some(n), _) => {
            return Err(ApiError::BadRequest(format!(
            "approver {n:?}: this request does not ask for it, or the service holds no key for it"
        )))
        }
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(ApiError::Conflict(
                "the service holds no key of the approvers this request asks for".into(),
            ))
        }
        (None, _) => return Err(ApiError::BadRequest("several approvers: name one".into())),
    };
    let params = approve_params(&record, &name, valid.as_secs());
    let admin = authorize_admin(s, bearer, "approve", "/v1/approvals", params).await?;
    let (st, queued) = (s.clone(), record.clone());
    if let Recheck::NoLonger(why) = blocking(move || Ok(recheck(&st, &queued))).await? {
        return Err(ApiError::Conflict(format!(
            "approval request {id} cannot be approved any more: {why}"
        )));
    }
    let Some(key) = s.approvers.get(&name) else {
        return Err(ApiError::Internal("approver key vanished".into()));
    };
    let expires = distinct_expiry(&record, SystemTime::now() + valid);
    let block = mandate_attenuate::approve(
        &record.approval.third_party_request,
        &record.request,
        expires,
        key,
    )
    .map_err(|e| ApiError::internal("signing the approval", e))?;
    record.status = ApprovalStatus::Approved;
    record.decided_by = Some(format!("{} as {name}", admin.who));
    record.decided_at = Some(OffsetDateTime::now_utc());
    record.approval_block = Some(block);
    record.token = None;
    store(s, &record).await?;
    tracing::info!(id = %record.id, approver = %name, by = %admin.who, "approved");
    Ok(record)
}

/// The expiry of an approval of `record`: `wanted`, or a second past the
/// last one this service gave the same request on the same token. An
/// approval is the approver's (deterministic) signature over the token's
/// last block and `approval(digest, expiry)`, so two approvals of one
/// request for one token with the same expiry second are the same bytes,
/// and the second would count as already used (SPEC §14.4).
fn distinct_expiry(record: &ApprovalRecord, wanted: SystemTime) -> SystemTime {
    use sha2::Digest as _;
    static ISSUED: Mutex<BTreeMap<[u8; 32], u64>> = Mutex::new(BTreeMap::new());
    let key: [u8; 32] = sha2::Sha256::new()
        .chain_update(record.approval.third_party_request.as_bytes())
        .chain_update(b"\n")
        .chain_update(record.approval.digest.as_bytes())
        .finalize()
        .into();
    let wanted_secs = wanted
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut issued = ISSUED.lock().unwrap_or_else(|e| e.into_inner());
    if issued.len() >= 10_000 {
        // Entries matter for a second or so: a full map is simply cleared.
        issued.clear();
    }
    let secs = match issued.get(&key) {
        Some(&last) if last >= wanted_secs => last + 1,
        _ => wanted_secs,
    };
    issued.insert(key, secs);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// The approvers request `record` asks for that the service holds a key
/// of: those it can approve as.
pub(super) fn candidates(s: &Inner, record: &ApprovalRecord) -> Vec<String> {
    record
        .approval
        .approvers
        .iter()
        .filter(|a| {
            s.approvers
                .get(&a.name)
                .is_some_and(|k| k.public().to_string() == a.key)
        })
        .map(|a| a.name.clone())
        .collect()
}

/// The parameters of approving `record` as `approver` for `valid_seconds`
/// (SERVICE.md S2).
pub(super) fn approve_params(
    record: &ApprovalRecord,
    approver: &str,
    valid_seconds: u64,
) -> Vec<(String, Value)> {
    let mut params = decided_params(record);
    params.push(("approver".into(), Value::Str(approver.to_string())));
    params.push((
        "valid_seconds".into(),
        Value::Int(i64::try_from(valid_seconds).unwrap_or(i64::MAX)),
    ));
    params
}

/// A pending request decided again now with its kept token, as an approver
/// is shown it ([`mandate_verifier::Verifier::decide_for_approver`]: nothing
/// spent, nothing recorded).
pub(super) enum Recheck {
    /// It still needs exactly the approval it was queued for: what this
    /// verification shows.
    Valid(Box<Rechecked>),
    /// It does not any more: why (revoked, expired, restricted, allowed
    /// without approval, other approvers asked).
    NoLonger(String),
    /// Queued before tokens were kept: not decided again.
    NotKept,
}

/// What deciding a pending request again shows.
pub(super) struct Rechecked {
    /// The delegation chain, from this verification.
    pub(super) chain: Arc<mandate_spec::Chain>,
    /// Who must approve, from this verification (the same as queued).
    pub(super) approval: ApprovalNeeded,
    /// Why approval is needed, in words (the rule and its approver).
    pub(super) reason: String,
}

/// Decides `record`'s request again, now, with its kept token (a blocking
/// call: the token's signatures may be checked).
pub(super) fn recheck(s: &Inner, record: &ApprovalRecord) -> Recheck {
    let Some(text) = &record.token else {
        return Recheck::NotKept;
    };
    let Ok(token) = mandate_spec::token_from_text(text) else {
        return Recheck::NoLonger("its token cannot be read".into());
    };
    let mut request = record.request.clone();
    request.time = SystemTime::now();
    let decision = s.verifier.decide_for_approver(&token, &request);
    let reason = decision.denial.map(|d| d.reason).unwrap_or_default();
    match (decision.decision, decision.approval, decision.chain) {
        (Outcome::NeedsApproval, Some(approval), Some(chain)) => {
            let queued = &record.approval;
            if approval.digest != queued.digest
                || approval.third_party_request != queued.third_party_request
                || approval.approvers != queued.approvers
            {
                return Recheck::NoLonger(
                    "it now needs another approval than the one it was queued for (other \
                     approvers): the agent must ask again"
                        .into(),
                );
            }
            Recheck::Valid(Box::new(Rechecked {
                chain,
                approval,
                reason,
            }))
        }
        (Outcome::Allow, ..) => {
            Recheck::NoLonger("it needs no approval any more: the token allows it as it is".into())
        }
        (Outcome::Deny, ..) => Recheck::NoLonger(reason),
        (Outcome::NeedsApproval, ..) => {
            Recheck::NoLonger("needs approval, without its details".into())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenyBody {
    reason: String,
}

pub(crate) async fn deny(
    State(s): State<AppState>,
    bearer: Bearer,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DenyBody>,
) -> Result<Json<ApprovalRecord>, ApiError> {
    let record = deny_as(&s, bearer, &id, &body.reason).await?;
    Ok(Json(record.answered()))
}

/// Denies request `id` for the bearer's admin token, with `reason` (this
/// route and the approval desk).
pub(super) async fn deny_as(
    s: &AppState,
    bearer: Bearer,
    id: &str,
    reason: &str,
) -> Result<ApprovalRecord, ApiError> {
    let mut record = pending(s, id).await?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest("reason: say why".into()));
    }
    let name = record
        .approval
        .approvers
        .first()
        .map(|a| a.name.clone())
        .unwrap_or_default();
    let mut params = decided_params(&record);
    params.push(("approver".into(), Value::Str(name)));
    params.push(("reason".into(), Value::Str(reason.to_string())));
    let admin = authorize_admin(s, bearer, "approve", "/v1/approvals", params).await?;
    record.status = ApprovalStatus::Denied;
    record.decided_by = Some(admin.who.clone());
    record.decided_at = Some(OffsetDateTime::now_utc());
    record.denied_because = Some(reason.to_string());
    record.token = None;
    store(s, &record).await?;
    tracing::info!(id = %record.id, by = %admin.who, "approval denied");
    Ok(record)
}

/// What an approval or a denial decides on, besides the approver: the
/// record's id, the principal of its chain and the request approved (action,
/// resource, and each parameter `p` as `request.p`), so an approver token
/// can be narrowed on them (SERVICE.md S2).
fn decided_params(record: &ApprovalRecord) -> Vec<(String, Value)> {
    let mut out = vec![
        ("id".to_string(), Value::Str(record.id.clone())),
        (
            "principal".to_string(),
            Value::Str(
                record.chain["principal"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
        ),
        (
            "request_action".to_string(),
            Value::Str(record.request.action.clone()),
        ),
        (
            "request_resource".to_string(),
            Value::Str(record.request.resource.clone()),
        ),
    ];
    for (name, value) in &record.request.params {
        out.push((format!("request.{name}"), value.clone()));
    }
    out
}

async fn pending(s: &AppState, id: &str) -> Result<ApprovalRecord, ApiError> {
    let record = s
        .queue()
        .map_err(api)?
        .get(id)
        .await
        .map_err(api)?
        .ok_or_else(|| ApiError::NotFound(format!("no approval request {id:?}")))?;
    if record.status != ApprovalStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "approval request {id} is already {:?}",
            record.status
        )));
    }
    Ok(record)
}

/// Records a decision over the pending record read; a decision taken
/// meanwhile (here or at another issuer service) wins, and
/// this one is refused (409): its approval block is never handed out.
async fn store(s: &AppState, record: &ApprovalRecord) -> Result<(), ApiError> {
    match s.queue().map_err(api)?.decide(record).await.map_err(api)? {
        Written::Yes => {
            s.waiters.wake(&record.id);
            super::notify::decided(s, record);
            Ok(())
        }
        Written::Conflict => Err(ApiError::Conflict(format!(
            "approval request {} was decided meanwhile by someone else: this decision is \
             not recorded",
            record.id
        ))),
    }
}

impl super::Inner {
    /// The approval queue, or why there is none.
    pub(super) fn queue(&self) -> Result<&ApprovalQueue, ServiceError> {
        self.approvals.as_ref().ok_or_else(|| {
            ServiceError::Config("this service keeps no approval queue (no data directory)".into())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mandate_verifier::Approver;

    fn record(tpr: &str) -> ApprovalRecord {
        ApprovalRecord {
            id: Uuid::new_v4().to_string(),
            status: ApprovalStatus::Pending,
            submitted_at: OffsetDateTime::UNIX_EPOCH,
            request: Request::new("pay", "/api/payments").param("amount", 150),
            approval: ApprovalNeeded {
                approvers: vec![Approver {
                    name: "finance".into(),
                    key: "ed25519/00".into(),
                    hop: 0,
                }],
                digest: "ab".repeat(32),
                expires_at: OffsetDateTime::UNIX_EPOCH,
                third_party_request: tpr.into(),
            },
            chain: serde_json::Value::Null,
            reason: String::new(),
            decided_by: None,
            decided_at: None,
            denied_because: None,
            approval_block: None,
            token: None,
        }
    }

    /// Two approvals of one request on one token in the same second were
    /// the same bytes (deterministic signature): the second was refused as
    /// already used.
    #[test]
    fn two_approvals_of_one_request_on_one_token_get_distinct_expiries() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
        let (a, b) = (record("tpr-1"), record("tpr-1"));
        let first = distinct_expiry(&a, at);
        let second = distinct_expiry(&b, at);
        assert_eq!(first, at);
        assert_eq!(second, at + std::time::Duration::from_secs(1));
        // Another token: its own expiries.
        assert_eq!(distinct_expiry(&record("tpr-2"), at), at);
    }

    /// Only a family's requests still waiting count: decided ones, expired
    /// ones and other families' do not; the retry is when the first of the
    /// family's waiting requests ends.
    #[test]
    fn the_family_quota_counts_only_the_familys_waiting_requests() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_000);
        let of = |family: &str, status: ApprovalStatus, ends_in: i64| {
            let mut r = record("tpr");
            r.status = status;
            r.chain = serde_json::json!({ "token_id": family });
            r.approval.expires_at = now + time::Duration::seconds(ends_in);
            r
        };
        let mut all = vec![
            of("a", ApprovalStatus::Pending, 300),
            of("a", ApprovalStatus::Pending, 120),
            of("a", ApprovalStatus::Approved, 600),
            of("a", ApprovalStatus::Denied, 600),
            of("a", ApprovalStatus::Pending, 0),
            of("a", ApprovalStatus::Pending, -5),
            of("b", ApprovalStatus::Pending, 600),
            of("b", ApprovalStatus::Pending, 600),
        ];
        let quota = |all: &[ApprovalRecord], family: &str, max: usize| {
            within_family_quota(&family_waiting(all, family, now), max, now)
        };
        assert!(quota(&all, "a", 3).is_ok());
        assert!(quota(&all, "b", 3).is_ok());
        assert!(quota(&all, "c", 1).is_ok());
        all.push(of("a", ApprovalStatus::Pending, 400));
        match quota(&all, "a", 3) {
            Err(ApiError::TooManyRequests(why, retry_after)) => {
                assert_eq!(retry_after, 120);
                assert!(
                    why.contains("already has 3 approval requests waiting"),
                    "{why}"
                );
            }
            other => panic!("not refused: {other:?}"),
        }
        assert!(quota(&all, "b", 3).is_ok());
    }

    /// The local queue counts a family's waiting requests from an index
    /// kept with every write and read once when opened (a filing read every
    /// record ever queued): the same count as reading them all.
    #[test]
    fn the_local_queue_indexes_the_waiting_requests_by_family() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let of = |family: &str, ends_in: i64| {
            let mut r = record("tpr");
            r.chain = serde_json::json!({ "token_id": family });
            r.approval.expires_at = now + time::Duration::seconds(ends_in);
            r
        };
        let local = |q: &ApprovalQueue| match &q.0 {
            Backend::Local(l) => l.clone(),
            Backend::Fleet(_) => unreachable!(),
        };
        let mut written = Vec::new();
        {
            let queue = ApprovalQueue::open(dir.path().join("q")).unwrap();
            let q = local(&queue);
            for r in [of("a", 300), of("a", 120), of("a", -5), of("b", 600)] {
                q.put(&r).unwrap();
                written.push(r);
            }
            // Decided: no longer waiting.
            let mut decided = written[1].clone();
            decided.status = ApprovalStatus::Denied;
            q.put(&decided).unwrap();
            written[1] = decided;
            for family in ["a", "b", "c"] {
                assert_eq!(
                    q.waiting(family, now),
                    family_waiting(&written, family, now),
                    "{family}"
                );
            }
            assert_eq!(q.waiting("a", now).len(), 1);
        }
        // Opened again: the index is read from the records.
        let queue = ApprovalQueue::open(dir.path().join("q")).unwrap();
        let q = local(&queue);
        for family in ["a", "b", "c"] {
            assert_eq!(
                q.waiting(family, now),
                family_waiting(&written, family, now),
                "{family}"
            );
        }
        // Past their ends, none waits.
        assert!(q
            .waiting("a", now + time::Duration::seconds(301))
            .is_empty());
    }
}
