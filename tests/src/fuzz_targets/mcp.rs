//! MCP (JSON-RPC over HTTP) requests → the request the gateway decides.
//!
//! The gateway's mapping (`mcp_request` in `cli/src/gateway/proxy.rs`) is a
//! private function of the `mandate` binary, which no other crate can call.
//! Until it moves behind a public seam (e.g. `mandate_verifier::http`),
//! [`mcp_request`] here is a line-for-line copy of it, fuzzed together with
//! what the gateway does next (the verifier's decision). Keep the two in
//! step; the copy is what this target tests.

use super::http_map::{tokens, RawRequest};
use super::{check_decision, ring_verifier};
use http::request::Parts;
use mandate_spec::Value;
use mandate_verifier::http::MapError;
use mandate_verifier::Verifier;
use std::sync::OnceLock;

/// The methods a route lists as public in this target.
const PUBLIC: [&str; 3] = ["initialize", "notifications/initialized", "tools/list"];

/// An HTTP request (see [`RawRequest`]; its body is the JSON-RPC message)
/// mapped as an MCP route on `/mcp` does (public: three JSON-RPC methods and
/// `GET`), with and without a configured resource, then decided with
/// `$TOKEN` when the route decides.
///
/// Properties: only a public method on the route's exact path goes
/// undecided; every other message is decided on the route's resource (on
/// the exact path) or the path itself, with the JSON-RPC method as action
/// (`tools/call`: the tool's name); the verifier's decision on it is well
/// formed.
pub fn mcp_jsonrpc(data: &[u8]) {
    let Some(raw) = RawRequest::parse(data) else {
        return;
    };
    let Some(req) = raw.to_http() else { return };
    let (parts, _) = req.into_parts();
    let methods: Vec<String> = PUBLIC.iter().map(|s| s.to_string()).collect();
    let http_methods = [http::Method::GET];
    for resource in [None, Some("/mcp/tools")] {
        let public = Public {
            route_path: "/mcp",
            methods: &methods,
            http_methods: &http_methods,
            resource,
        };
        let path = parts.uri.path();
        let exact = path == public.route_path;
        let mapped = mcp_request(&parts, &raw.body, &public);
        let Ok(mapped) = mapped else { continue };
        let Some(request) = mapped else {
            // Forwarded undecided: only public methods on the exact path.
            assert!(exact, "{path} forwarded without a decision");
            if parts.method == http::Method::POST {
                let msg: serde_json::Value =
                    serde_json::from_slice(&raw.body).expect("a forwarded body is JSON");
                let method = msg["method"].as_str().unwrap_or_default();
                assert!(methods.iter().any(|m| m == method), "{method} not public");
            } else {
                assert!(http_methods.contains(&parts.method));
            }
            continue;
        };
        let expected = match resource {
            Some(r) if exact => r,
            _ => path,
        };
        assert_eq!(request.resource, expected, "decided on another resource");
        if parts.method == http::Method::POST {
            let msg: serde_json::Value =
                serde_json::from_slice(&raw.body).expect("a decided body is JSON");
            let method = msg["method"].as_str().expect("a decided body has a method");
            assert!(
                !exact || !methods.iter().any(|p| p == method),
                "public {method} decided on the exact path"
            );
            if method == "tools/call" {
                assert_eq!(
                    Some(request.action.as_str()),
                    msg["params"]["name"].as_str()
                );
            }
        }
        let token = mandate_spec::token_from_text(tokens().0).expect("the fuzz token decodes");
        let decision = verifier().authorize(&token, &request);
        check_decision(&token, &request, &decision);
    }
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(ring_verifier)
}

/// What an MCP route forwards without a decision (a copy of the gateway's
/// `Public`): to its exact path only, the listed JSON-RPC methods (in a
/// `POST`) and HTTP methods.
#[derive(Debug, Clone, Copy)]
pub struct Public<'a> {
    /// The route's exact path.
    pub route_path: &'a str,
    /// Public JSON-RPC methods.
    pub methods: &'a [String],
    /// Public HTTP methods.
    pub http_methods: &'a [http::Method],
    /// The resource decided on the exact path (else the path itself).
    pub resource: Option<&'a str>,
}

/// A copy of the gateway's `mcp_request` (see the module docs).
///
/// The request a JSON-RPC (MCP) body asks the verifier to decide:
/// `tools/call` → action = the tool's name, parameters = its scalar
/// arguments; a public method on the route's exact path → `None` (forwarded
/// without a decision); any other method → action = the method with `/` as
/// `.` (e.g. `resources.read`). The resource is the route's `resource` on its
/// exact path, else the path itself (a sub-path is decided on what is acted
/// on).
pub fn mcp_request(
    parts: &Parts,
    body: &[u8],
    public: &Public<'_>,
) -> Result<Option<mandate_spec::Request>, MapError> {
    let bad = |m: &str| MapError::bad_request(m);
    let path = parts.uri.path();
    let exact = path == public.route_path;
    let resource = match public.resource {
        Some(r) if exact => r.to_string(),
        _ => path.to_string(),
    };
    if parts.method != http::Method::POST {
        if exact && public.http_methods.contains(&parts.method) {
            return Ok(None);
        }
        return Ok(Some(mandate_spec::Request::new(
            format!("http.{}", parts.method.as_str().to_ascii_lowercase()),
            resource,
        )));
    }
    let msg: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("not a JSON-RPC message: {e}")))?;
    let Some(obj) = msg.as_object() else {
        return Err(bad(
            "JSON-RPC batches are not accepted: send one message per request",
        ));
    };
    let method = obj
        .get("method")
        .and_then(|m| m.as_str())
        .ok_or_else(|| bad("a JSON-RPC request needs a method"))?;
    if exact && public.methods.iter().any(|m| m == method) {
        return Ok(None);
    }
    if method != "tools/call" {
        return Ok(Some(mandate_spec::Request::new(
            method.replace('/', "."),
            resource,
        )));
    }
    let params = obj.get("params").and_then(|p| p.as_object());
    let name = params
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("tools/call needs params.name"))?;
    let mut request = mandate_spec::Request::new(name, resource);
    if let Some(args) = params
        .and_then(|p| p.get("arguments"))
        .and_then(|a| a.as_object())
    {
        for (k, v) in args {
            let value = match v {
                serde_json::Value::String(s) => Value::Str(s.clone()),
                serde_json::Value::Number(n) if n.is_i64() => {
                    Value::Int(n.as_i64().unwrap_or_default())
                }
                // Other shapes are not parameters: a constraint on them denies.
                _ => continue,
            };
            request.params.insert(k.clone(), value);
        }
    }
    Ok(Some(request))
}
