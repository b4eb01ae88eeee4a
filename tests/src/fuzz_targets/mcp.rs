//! MCP (JSON-RPC over HTTP) requests → the request the gateway decides.
//!
//! The gateway's own mapping (`mandate_server::mcp::mcp_request`, in the
//! `mandate` crate's library), fuzzed together with what the gateway does
//! next (the verifier's decision).

use super::http_map::{tokens, RawRequest};
use super::{check_decision, ring_verifier};
use mandate_server::mcp::{mcp_request, Public};
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
