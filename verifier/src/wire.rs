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
    /// Typed parameters (JSON integers and strings), each name at most
    /// once: an object giving a name twice is refused (§5.1).
    #[serde(default, deserialize_with = "mandate_spec::unique_params")]
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `{"rows":5,"rows":500}` was read as rows=500 (serde keeps the last
    /// key); a verifier supplying both facts would allow: refused (§5.1).
    #[test]
    fn duplicate_parameter_refused_in_authorize_body() {
        let body = r#"{"token":"x","action":"read","resource":"/api/c/42",
                       "params":{"rows":5,"rows":500}}"#;
        let err = serde_json::from_str::<AuthorizeRequest>(body).unwrap_err();
        assert!(
            err.to_string().contains("parameter rows given twice"),
            "{err}"
        );
        let body = r#"{"token":"x","action":"read","resource":"/api/c/42",
                       "params":{"rows":5,"cols":"a"}}"#;
        let ok: AuthorizeRequest = serde_json::from_str(body).unwrap();
        assert_eq!(ok.params.len(), 2);
        let body = r#"{"token":"x","action":"read","resource":"/api/c/42"}"#;
        assert!(serde_json::from_str::<AuthorizeRequest>(body)
            .unwrap()
            .params
            .is_empty());
    }
}
