//! The JSON form of "decide this request with this token", shared by every
//! HTTP endpoint that exposes the verifier (`mandate verifierd` and the
//! issuer service's `POST /v1/authorize`).

use crate::{Decision, Verifier};
use mandate_spec::{Request, Value};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The body of `POST /v1/authorize`: a token (URL-safe base64) and the
/// request it is used for. There is no time field: the request time is
/// always the verifier's own clock, never the caller's (specification §11).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The token, URL-safe base64.
    pub token: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// Typed parameters (JSON integers and strings).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
}

impl AuthorizeRequest {
    /// Decides it with `verifier`, now.
    pub fn decide(self, verifier: &Verifier) -> Decision {
        let mut request = Request::new(self.action, self.resource);
        request.params = self.params;
        verifier.authorize_base64(&self.token, &request)
    }
}
