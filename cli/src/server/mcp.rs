//! The gateway's MCP mapping: the request a JSON-RPC message (MCP over
//! streamable HTTP) asks the verifier to decide, or none for a public one.
//! Public so that the fuzz target (`mandate-tests`) runs this very code.

use http::request::Parts;
use mandate_spec::Value;
use mandate_verifier::http::{strict_json, MapError};

/// What an MCP route forwards without a decision: to its exact path only,
/// the listed JSON-RPC methods (in a `POST`) and HTTP methods.
#[derive(Debug, Clone, Copy)]
pub struct Public<'a> {
    /// The route's exact path.
    pub route_path: &'a str,
    /// Public JSON-RPC methods.
    pub methods: &'a [String],
    /// Public HTTP methods (compared exactly).
    pub http_methods: &'a [http::Method],
    /// The resource decided on the exact path (else the path itself).
    pub resource: Option<&'a str>,
}

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
        // GET (the server's event stream) and DELETE (end of session) carry
        // no call: public on the exact path when listed in
        // public_http_methods (compared exactly: HTTP methods are
        // case-sensitive), else decided as action `http.get` / `http.delete`.
        if exact && public.http_methods.contains(&parts.method) {
            return Ok(None);
        }
        return Ok(Some(mandate_spec::Request::new(
            format!("http.{}", parts.method.as_str().to_ascii_lowercase()),
            resource,
        )));
    }
    // No key given twice: the decision and the server must read one value.
    let msg = strict_json(body).map_err(|e| bad(&format!("the JSON-RPC message {e}")))?;
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
