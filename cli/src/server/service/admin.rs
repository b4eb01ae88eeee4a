//! Deciding whether an admin token allows an operation, with the service's
//! own verifier: its root keys, its revocation store.
//!
//! An operation is one or more Mandate requests like any other (action
//! `mint`, `mint-admin`, `revoke`, `approve`, `review` on the service's own
//! resources) whose parameters carry every field of the operation's effect,
//! so an admin token can be narrowed on each (e.g. `--where 'principal
//! starts-with team:support:'`, `--where 'grant_resource starts-with
//! /api/support/'`, `--where 'max.rows<=100'`). A parameter a grant
//! constrains but the request does not carry denies. The parameters of each
//! operation are listed in `spec/SERVICE.md` S2; a mint's are built in
//! `mint_decision.rs`.
//!
//! Decisions run on a blocking thread: verifying a token the cache does not
//! hold checks signatures, and a mint may need many decisions.

use super::error::ApiError;
use super::extract::Bearer;
use super::metrics::Source;
use super::mint_decision::MintDecision;
use super::{AppState, Inner};
use mandate_spec::{Request, Value};
use mandate_verifier::DenialKind;
use std::time::Instant;

/// Who an admin token speaks for, once it is allowed.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    /// `PRINCIPAL via AGENT` (the token's principal and final holder).
    pub(crate) who: String,
    /// The admin token's id (its family), for the logs.
    pub(crate) token_id: String,
}

/// Decides `action` on `resource` with `params` for the bearer's token, on a
/// blocking thread: 401 when the token cannot be read or its signature or
/// root key is wrong, 403 with the denial when it is read but does not allow
/// it.
pub(crate) async fn authorize_admin<K: Into<String>>(
    s: &AppState,
    bearer: Bearer,
    action: &'static str,
    resource: &'static str,
    params: impl IntoIterator<Item = (K, Value)>,
) -> Result<Admin, ApiError> {
    let mut request = Request::new(action, resource);
    for (name, value) in params {
        request.params.insert(name.into(), value);
    }
    let st = s.clone();
    tokio::task::spawn_blocking(move || st.decide_admin(&bearer.0, &request, ""))
        .await
        .map_err(|e| ApiError::internal("admin decision task", e))?
}

/// Decides every request of a mint, in order, on a blocking thread; the
/// first refusal answers, naming the alternative and action it decided.
pub(crate) async fn authorize_mint(
    s: &AppState,
    bearer: Bearer,
    decisions: Vec<MintDecision>,
) -> Result<Admin, ApiError> {
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let mut admin = None;
        for d in &decisions {
            let label = format!(" for {}", d.label);
            admin = Some(st.decide_admin(&bearer.0, &d.request(), &label)?);
        }
        admin.ok_or_else(|| ApiError::BadRequest("a mint needs at least one alternative".into()))
    })
    .await
    .map_err(|e| ApiError::internal("admin decision task", e))?
}

impl Inner {
    /// One admin decision; `what` is appended to the refusal's subject
    /// (e.g. ` for alternative 1 of 2 (…), action "read"`).
    fn decide_admin(&self, token: &[u8], request: &Request, what: &str) -> Result<Admin, ApiError> {
        let started = Instant::now();
        let decision = self.verifier.authorize(token, request);
        self.metrics
            .decided(Source::Admin, &decision, started.elapsed());
        // Acted on only once its audit record is durable (a blocking task).
        if let Err(e) = self.verifier.audit_durable().wait() {
            return Err(ApiError::Unavailable(format!(
                "audit log unavailable ({e}); retry later"
            )));
        }
        let Some(denial) = decision.denial else {
            let Some(chain) = decision.chain else {
                return Err(ApiError::Internal("allowed without a chain".into()));
            };
            return Ok(Admin {
                who: format!("{} via {}", chain.principal, chain.holder().agent),
                token_id: chain.token_id.clone(),
            });
        };
        let (action, resource) = (&request.action, &request.resource);
        let token_id = decision.chain.as_ref().map(|c| c.token_id.as_str());
        tracing::warn!(
            action = %action,
            resource = %resource,
            what,
            admin_token_id = token_id,
            kind = ?denial.kind,
            reason = %denial.reason,
            "admin token refused"
        );
        Err(match denial.kind {
            DenialKind::MalformedToken | DenialKind::BadSignature | DenialKind::UnknownRootKey => {
                ApiError::Unauthorized(format!("admin token not accepted: {}", denial.reason))
            }
            DenialKind::RevocationUnavailable => ApiError::Unavailable(denial.reason),
            DenialKind::InvalidRequest => ApiError::BadRequest(denial.reason),
            _ => ApiError::Forbidden(
                format!(
                    "admin token does not allow {action} on {resource}{what}: {}",
                    denial.reason
                ),
                Box::new(denial),
            ),
        })
    }
}
