//! MCP (JSON-RPC over HTTP) requests → the request the gateway decides.
//!
//! The gateway's own mapping (`mandate_server::mcp::mcp_request`, in the
//! `mandate` crate's library), fuzzed together with what the gateway does
//! next (the verifier's decision).

use super::http_map::{tokens, RawRequest};
use super::{check_decision, ring_verifier};
use mandate_server::mcp::{McpMap, Message, CLIENT_NOTIFICATIONS, HOUSEKEEPING};
use mandate_verifier::http::{strict_json, MapRequest};
use mandate_verifier::{Check, Verifier};
use std::sync::OnceLock;

/// An HTTP request (see [`RawRequest`]; its body is the JSON-RPC message)
/// mapped as an MCP route on `/mcp` does, with and without a configured
/// resource, then decided with `$TOKEN` as the gateway would.
///
/// Properties: nothing but the route's exact path is mapped; only
/// housekeeping (GET, DELETE, a housekeeping method, a client's
/// notification or response) is checked on the token alone; every other
/// message is decided on the route's resource or its path, with the
/// JSON-RPC method as action (`tools/call`: the tool's name); the
/// verifier's decision on it is well formed.
pub fn mcp_jsonrpc(data: &[u8]) {
    let Some(raw) = RawRequest::parse(data) else {
        return;
    };
    let Some(req) = raw.to_http() else { return };
    let (parts, _) = req.into_parts();
    let json = if parts.method == http::Method::POST {
        match strict_json(&raw.body) {
            Ok(v) => Some(v),
            Err(_) => return,
        }
    } else {
        None
    };
    for resource in [None, Some("/mcp/tools")] {
        let map = McpMap::new("/mcp", resource, 1 << 20);
        let path = parts.uri.path();
        let exact = path == "/mcp";
        let Ok((request, check)) = map.map_check(&parts, json.as_ref()) else {
            continue;
        };
        assert!(exact, "{path} mapped below the route's exact path");
        let expected = resource.unwrap_or(path);
        assert_eq!(request.resource, expected, "decided on another resource");
        if let Some(msg) = &json {
            let message = Message::read(msg).expect("a mapped body is a JSON-RPC message");
            let housekeeping = match message {
                Message::Response => true,
                Message::Notification { method, .. } => CLIENT_NOTIFICATIONS.contains(&method),
                // subscriptions/listen naming a resource is decided on it.
                Message::Request {
                    method: "subscriptions/listen",
                    ..
                } => check == Check::Token,
                Message::Request { method, .. } => HOUSEKEEPING.contains(&method),
            };
            assert_eq!(
                check == Check::Token,
                exact && housekeeping,
                "{message:?} on {path}: {check:?}"
            );
            if message.method() == Some("tools/call") {
                assert_eq!(
                    Some(request.action.as_str()),
                    msg["params"]["name"].as_str()
                );
            }
        } else {
            let gd = parts.method == http::Method::GET || parts.method == http::Method::DELETE;
            assert_eq!(
                check == Check::Token,
                exact && gd,
                "{} {path}",
                parts.method
            );
        }
        let token = mandate_spec::token_from_text(tokens().0).expect("the fuzz token decodes");
        let presented = mandate_verifier::Presented::default();
        let decision = verifier().decide_presented(&token, &request, &presented, check);
        if check == Check::Grant {
            check_decision(&token, &request, &decision);
        } else {
            // A token-only allow says the token is valid, nothing about
            // its grants.
            assert_eq!(decision.is_allowed(), decision.denial.is_none());
            assert_eq!(decision.request, request);
        }
    }
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(ring_verifier)
}
