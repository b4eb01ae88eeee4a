//! Deciding whether an admin token allows an operation, with the service's
//! own verifier: its root keys, its revocation store.
//!
//! The operation is a Mandate request like any other: action `mint` on
//! `/v1/tokens`, or `revoke` on `/v1/revocations`, with parameters taken from
//! the body, so an admin token can be narrowed like any token (e.g.
//! `--where 'principal starts-with team:support:'` or `--where
//! 'ttl_seconds<=3600'`). A parameter a grant constrains but the request
//! does not carry denies.

use super::error::ApiError;
use super::extract::Bearer;
use super::metrics::Source;
use super::Inner;
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

impl Inner {
    /// Decides `action` on `resource` with `params` for the bearer's token:
    /// 401 when the token cannot be read or its signature or root key is
    /// wrong, 403 with the denial when it is read but does not allow it.
    pub(crate) fn authorize_admin(
        &self,
        bearer: &Bearer,
        action: &str,
        resource: &str,
        params: impl IntoIterator<Item = (&'static str, Value)>,
    ) -> Result<Admin, ApiError> {
        let mut request = Request::new(action, resource);
        for (name, value) in params {
            request.params.insert(name.to_string(), value);
        }
        let started = Instant::now();
        let decision = self.verifier.authorize(&bearer.0, &request);
        self.metrics
            .decided(Source::Admin, &decision, started.elapsed());
        let Some(denial) = decision.denial else {
            let Some(chain) = decision.chain else {
                return Err(ApiError::Internal("allowed without a chain".into()));
            };
            return Ok(Admin {
                who: format!("{} via {}", chain.principal, chain.holder().agent),
                token_id: chain.token_id.clone(),
            });
        };
        let token_id = decision.chain.as_ref().map(|c| c.token_id.as_str());
        tracing::warn!(
            action,
            resource,
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
                    "admin token does not allow {action} on {resource}: {}",
                    denial.reason
                ),
                Box::new(denial),
            ),
        })
    }
}
