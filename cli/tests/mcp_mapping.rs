//! The gateway's MCP dialect as a library (`mandate_server::mcp`, SPEC §17),
//! attacked without processes: reading one JSON-RPC message (requests,
//! notifications, client responses; batches, malformed messages and ids a
//! server would echo otherwise refused with why); what each message is
//! decided as and what it must pass (`Check::Token` only for housekeeping;
//! the route serves its exact path only, anything below it is 404); tool
//! arguments as parameters (`2.0` is 2; `2.5`, `1e300` and integers beyond
//! ±2^53 refused); keys a case-insensitive decoder merges (Unicode); the
//! `Mcp-Method` / `Mcp-Name` headers; session ids bound to their owner;
//! JSON-RPC error bodies and their stable codes; `tools/list`
//! filtering against real tokens and a real verifier; event-stream
//! rewriting; and the whole mapping behind the middleware.
#![allow(clippy::unwrap_used, missing_docs)]

use axum::body::Body;
use axum::routing::any as any_method_route;
use axum::Router;
use biscuit_auth::KeyPair;
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use mandate_attenuate::{delegate, read_chain, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_server::mcp::{
    denial_code, error_body, filter_tools, parameter, rewrite_sse, McpMap, Message, Sessions,
    AUDIT_UNAVAILABLE, CLIENT_NOTIFICATIONS, HOUSEKEEPING, INVALID_PARAMS, INVALID_REQUEST,
    OTHER_DENIAL, RESPONSE_ACTION, SESSION_NOT_FOUND, UPSTREAM_TIMEOUT, UPSTREAM_UNREACHABLE,
};
use mandate_spec::{token_to_text, Capability, Grant, Value};
use mandate_verifier::http::{MandateLayer, MapError, MapRequest, Refusal};
use mandate_verifier::{
    CacheOptions, Check, Decision, Denial, DenialKind, Outcome, Presented, RootKeys, Verifier,
};
use proptest::prelude::*;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::time::Duration;
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// Helpers

fn parts(method: &str, uri: &str, headers: &[(&str, &[u8])]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        b = b.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    b.body(()).unwrap().into_parts().0
}

/// 2^53: every integer up to it is exact in a double.
const EXACT: i64 = 1 << 53;

/// The mapping of an MCP route at `/mcp`, deciding its exact path on
/// `/srv/mail`.
fn mail() -> McpMap {
    McpMap::new("/mcp", Some("/srv/mail"), 1 << 20)
}

fn map_post(
    m: &McpMap,
    uri: &str,
    body: &Json,
) -> Result<(mandate_spec::Request, Check), MapError> {
    m.map_check(&parts("POST", uri, &[]), Some(body))
}

fn request(id: Json, method: &str, params: Json) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn notification(method: &str) -> Json {
    json!({"jsonrpc": "2.0", "method": method})
}

fn call(name: &str, arguments: Json) -> Json {
    request(
        json!(1),
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
}

/// Asserts a 400 refusal whose message holds every one of `words`.
fn refused<T: std::fmt::Debug>(r: Result<T, MapError>, words: &[&str]) -> String {
    let e = r.expect_err("refused");
    assert_eq!(e.status, StatusCode::BAD_REQUEST, "{e:?}");
    for w in words {
        assert!(e.message.contains(w), "{w:?} not in {:?}", e.message);
    }
    e.message
}

// ---------------------------------------------------------------------------
// Message::read

#[test]
fn message_read_tells_requests_notifications_and_responses_apart() {
    let m = request(json!(7), "tools/call", json!({"name": "x"}));
    let Message::Request { id, method, params } = Message::read(&m).unwrap() else {
        panic!("a request")
    };
    assert_eq!((id, method), (&json!(7), "tools/call"));
    assert_eq!(params.unwrap()["name"], "x");
    assert_eq!(Message::read(&m).unwrap().method(), Some("tools/call"));
    // String ids, and integers within ±2^53 written as integers, are ids.
    for id in [
        json!("abc"),
        json!(""),
        json!("1.0"),
        json!(-3),
        json!(0),
        json!(EXACT),
        json!(-EXACT),
    ] {
        let m = request(id.clone(), "ping", json!({}));
        assert!(
            matches!(Message::read(&m).unwrap(), Message::Request { id: i, .. } if *i == id),
            "{m}"
        );
    }
    // Positional params are not an object: none.
    let m = request(json!(1), "ping", json!([1, 2]));
    assert!(matches!(
        Message::read(&m).unwrap(),
        Message::Request { params: None, .. }
    ));
    let m = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert!(matches!(
        Message::read(&m).unwrap(),
        Message::Request { params: None, .. }
    ));
    // No id: a notification.
    let m = notification("notifications/cancelled");
    assert_eq!(
        Message::read(&m).unwrap(),
        Message::Notification {
            method: "notifications/cancelled",
            params: None,
        }
    );
    // An id and a result or an error, no method: the client's response.
    for m in [
        json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
        json!({"jsonrpc": "2.0", "id": "s-1", "result": null}),
        json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -1, "message": "no"}}),
    ] {
        assert_eq!(Message::read(&m).unwrap(), Message::Response, "{m}");
        assert_eq!(Message::read(&m).unwrap().method(), None);
    }
}

#[test]
fn message_read_refuses_what_is_not_one_json_rpc_message_saying_why() {
    let cases = [
        (json!([]), "batches are not accepted"),
        (
            json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
            "batches are not accepted",
        ),
        (json!("ping"), "not a JSON-RPC message"),
        (json!(1), "not a JSON-RPC message"),
        (json!(null), "not a JSON-RPC message"),
        (json!(true), "not a JSON-RPC message"),
        (
            json!({"id": 1, "method": "ping"}),
            "\"jsonrpc\": \"2.0\" is missing",
        ),
        (
            json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
            "\"jsonrpc\": \"2.0\" is missing",
        ),
        (
            json!({"jsonrpc": 2.0, "id": 1, "method": "ping"}),
            "\"jsonrpc\": \"2.0\" is missing",
        ),
        (
            json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
            "id is a string or an integer",
        ),
        (
            json!({"jsonrpc": "2.0", "id": true, "method": "ping"}),
            "id is a string or an integer",
        ),
        (
            json!({"jsonrpc": "2.0", "id": {}, "method": "ping"}),
            "id is a string or an integer",
        ),
        (
            json!({"jsonrpc": "2.0", "id": [1], "result": {}}),
            "id is a string or an integer",
        ),
        (
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
            "method is a string",
        ),
        (
            json!({"jsonrpc": "2.0", "method": null}),
            "method is a string",
        ),
        (
            json!({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1}}),
            "needs a method",
        ),
        (json!({"jsonrpc": "2.0", "id": 1}), "needs a method"),
        (json!({"jsonrpc": "2.0", "result": {}}), "needs a method"),
        (json!({"jsonrpc": "2.0"}), "needs a method"),
    ];
    for (m, why) in cases {
        let msg = refused(Message::read(&m), &[why]);
        // Through the mapping, the same refusal.
        assert_eq!(refused(map_post(&mail(), "/mcp", &m), &[why]), msg, "{m}");
    }
}

/// An id a server reads as a double and echoes in its shortest form (`1.0`
/// → `1`, `-0` → `0`, `2^53 + 1` → `2^53`) would not match the request's:
/// the answer could not be told apart (the `tools/list` filter matched by
/// id). Such ids are refused, requests and responses alike.
#[test]
fn an_id_a_server_would_echo_otherwise_is_refused() {
    let why = "a JSON-RPC id is a string or an integer";
    let mut ids: Vec<Json> = vec![
        json!(1.0),
        json!(-0.0),
        json!(1.5),
        json!(EXACT + 1),
        json!(-EXACT - 1),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
    ];
    for text in [
        "1.0",
        "1e0",
        "10E-1",
        "-0",
        "-0.0",
        "9007199254740993",
        "-9007199254740993",
        "18446744073709551616",
    ] {
        ids.push(serde_json::from_str(text).unwrap());
    }
    for id in ids {
        for m in [
            request(id.clone(), "ping", json!({})),
            request(id.clone(), "tools/list", json!({})),
            json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        ] {
            let msg = refused(Message::read(&m), &[why, "2^53"]);
            assert_eq!(refused(map_post(&mail(), "/mcp", &m), &[why]), msg, "{m}");
        }
    }
}

// ---------------------------------------------------------------------------
// McpMap::map_check

#[test]
fn get_and_delete_on_the_exact_path_are_token_only_every_other_http_method_is_granted() {
    for (map, exact_resource) in [
        (mail(), "/srv/mail"),
        (McpMap::new("/mcp", None, 1 << 20), "/mcp"),
    ] {
        for (method, path, action, resource, check) in [
            ("GET", "/mcp", "http.get", exact_resource, Check::Token),
            (
                "DELETE",
                "/mcp",
                "http.delete",
                exact_resource,
                Check::Token,
            ),
            ("HEAD", "/mcp", "http.head", exact_resource, Check::Grant),
            ("PUT", "/mcp", "http.put", exact_resource, Check::Grant),
            (
                "OPTIONS",
                "/mcp",
                "http.options",
                exact_resource,
                Check::Grant,
            ),
            ("PATCH", "/mcp", "http.patch", exact_resource, Check::Grant),
        ] {
            let (r, c) = map.map_check(&parts(method, path, &[]), None).unwrap();
            assert_eq!(
                (r.action.as_str(), r.resource.as_str(), c),
                (action, resource, check),
                "{method} {path}"
            );
            assert!(r.params.is_empty());
            // A length of zero is no body.
            let (r2, c2) = map
                .map_check(&parts(method, path, &[("content-length", b"0")]), None)
                .unwrap();
            assert_eq!((r2.action, c2), (r.action, c));
        }
        // Anything but the exact path: not the endpoint (404), whatever the
        // method; servers resolve `/mcp/` and `/MCP` as `/mcp`, so a grant
        // on a sub-path would open the endpoint itself.
        for method in ["GET", "DELETE", "HEAD", "PUT"] {
            for path in ["/mcp/", "/mcp/x", "/mcp/x/y", "/MCP", "/mcpx", "/"] {
                below_the_route(map.map_check(&parts(method, path, &[]), None));
            }
        }
        // Only a POST's body is read, up to the route's limit.
        assert_eq!(map.body_limit(&parts("POST", "/mcp", &[])), Some(1 << 20));
        assert_eq!(map.body_limit(&parts("GET", "/mcp", &[])), None);
        assert_eq!(map.body_limit(&parts("DELETE", "/mcp", &[])), None);
        assert_eq!(map.max_body(), 1 << 20);
    }
}

/// A body on any method but POST (GET, the event stream; DELETE, the
/// session's end) would reach the server undecided: refused before any
/// decision, however it is announced.
#[test]
fn a_body_on_get_or_delete_is_refused() {
    let map = mail();
    for method in ["GET", "DELETE", "HEAD", "PUT", "OPTIONS"] {
        for header in [
            ("content-length", b"5".as_slice()),
            ("content-length", b"268435456"),
            ("content-length", b"00"),
            ("transfer-encoding", b"chunked"),
            ("transfer-encoding", b"identity"),
        ] {
            refused(
                map.map_check(&parts(method, "/mcp", &[header]), None),
                &[&format!("an MCP {method} carries no body")],
            );
        }
    }
    // A POST's body is the message, read and decided.
    let p = parts("POST", "/mcp", &[("content-length", b"5")]);
    let (_, c) = map
        .map_check(&p, Some(&request(json!(1), "ping", json!({}))))
        .unwrap();
    assert_eq!(c, Check::Token);
}

/// Asserts the 404 of a path other than the route's own.
fn below_the_route<T: std::fmt::Debug>(r: Result<T, MapError>) {
    let e = r.expect_err("refused");
    assert_eq!(e.status, StatusCode::NOT_FOUND, "{e:?}");
    assert!(e.message.contains("exact path only (/mcp)"), "{e:?}");
}

#[test]
fn housekeeping_notifications_and_responses_are_token_only_on_the_exact_path_only() {
    let map = mail();
    let mut token_only: Vec<(Json, String)> = HOUSEKEEPING
        .iter()
        .map(|m| (request(json!(1), m, json!({})), m.replace('/', ".")))
        .collect();
    for n in CLIENT_NOTIFICATIONS {
        token_only.push((notification(n), n.replace('/', ".")));
    }
    for r in [
        json!({"jsonrpc": "2.0", "id": 3, "result": {"roots": []}}),
        json!({"jsonrpc": "2.0", "id": "s", "error": {"code": -1, "message": "declined"}}),
    ] {
        token_only.push((r, RESPONSE_ACTION.to_string()));
    }
    for (msg, action) in &token_only {
        let (r, c) = map_post(&map, "/mcp", msg).unwrap();
        assert_eq!(c, Check::Token, "{msg}");
        assert_eq!(
            (r.action.as_str(), r.resource.as_str()),
            (action.as_str(), "/srv/mail")
        );
        assert!(r.params.is_empty(), "{msg}");
        // Below the route: not the endpoint, refused (404) undecided.
        for path in ["/mcp/", "/mcp/sub", "/mcp/sub/deeper"] {
            below_the_route(map_post(&map, path, msg));
        }
    }
}

#[test]
fn every_other_message_is_decided_on_its_grant() {
    let map = mail();
    for (msg, action) in [
        (notification("ping"), "ping"),
        // A server's own notifications, or unknown ones, may act.
        (
            notification("notifications/message"),
            "notifications.message",
        ),
        (
            notification("notifications/resources/updated"),
            "notifications.resources.updated",
        ),
        (
            notification("notifications/anything"),
            "notifications.anything",
        ),
        (notification("notifications/"), "notifications."),
        (
            notification("notifications/Cancelled"),
            "notifications.Cancelled",
        ),
        (notification("notification/x"), "notification.x"),
        // A "notification" method sent as a request (with an id).
        (
            request(json!(1), "notifications/cancelled", json!({})),
            "notifications.cancelled",
        ),
        (
            request(json!(1), "completion/complete", json!({})),
            "completion.complete",
        ),
        (request(json!(1), "tasks/get", json!({})), "tasks.get"),
        (
            request(json!(1), "sampling/createMessage", json!({})),
            "sampling.createMessage",
        ),
        (request(json!(1), "Ping", json!({})), "Ping"),
        (request(json!(1), "tools/list/", json!({})), "tools.list."),
        (request(json!(1), "", json!({})), ""),
    ] {
        let (r, c) = map_post(&map, "/mcp", &msg).unwrap();
        assert_eq!(c, Check::Grant, "{msg}");
        assert_eq!(
            (r.action.as_str(), r.resource.as_str()),
            (action, "/srv/mail")
        );
    }
    // A POST without a body read is refused, not decided.
    refused(
        map.map_check(&parts("POST", "/mcp", &[]), None),
        &["carries a JSON-RPC message"],
    );
}

/// JSON-RPC 2.0 (§4.1) makes a notification a request whose answer is
/// omitted, and servers act on one: a `tools/call` without an id may run the
/// tool. Found by the fuzzer: it was decided as action `tools.call` with no
/// parameters, not as the tool it names. Every notification but the
/// client's listed ones is mapped as the request with its method and
/// params, and checked against the grants (housekeeping is never waived
/// for one).
#[test]
fn a_notification_is_decided_as_the_request_it_would_be_with_an_id() {
    let map = mail();
    let without_id = |msg: Json| {
        let mut msg = msg;
        msg.as_object_mut().unwrap().remove("id");
        msg
    };
    for (msg, action, params) in [
        (
            call("send", json!({"to": "bob@company.com", "n": 5})),
            "send",
            vec![
                ("n", Value::Int(5)),
                ("to", Value::Str("bob@company.com".into())),
            ],
        ),
        (
            request(json!(1), "resources/read", json!({"uri": "file:///a"})),
            "resources.read",
            vec![("uri", Value::Str("file:///a".into()))],
        ),
        (
            request(json!(1), "prompts/get", json!({"name": "p"})),
            "prompts.get",
            vec![("name", Value::Str("p".into()))],
        ),
        (
            request(
                json!(1),
                "subscriptions/listen",
                json!({"notifications": {"resourceSubscriptions": ["file:///b"]}}),
            ),
            "resources.subscribe",
            vec![("uri", Value::Str("file:///b".into()))],
        ),
    ] {
        let with_id = map_post(&map, "/mcp", &msg).unwrap();
        let (r, c) = map_post(&map, "/mcp", &without_id(msg.clone())).unwrap();
        let (w, wc) = &with_id;
        assert_eq!(
            (&r.action, &r.resource, &r.params, c),
            (&w.action, &w.resource, &w.params, *wc),
            "{msg}"
        );
        assert_eq!(c, Check::Grant, "{msg}");
        assert_eq!(r.action, action, "{msg}");
        let got: Vec<(&str, Value)> = r
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(got, params, "{msg}");
    }
    // What a request would be refused for, its notification is too.
    for msg in [
        notification("tools/call"),
        without_id(call("send", json!([1]))),
        without_id(request(json!(1), "resources/read", json!({}))),
    ] {
        assert_eq!(
            map_post(&map, "/mcp", &msg).unwrap_err().status,
            StatusCode::BAD_REQUEST,
            "{msg}"
        );
    }
    // Housekeeping as a notification is not waived: decided on the grant.
    for m in HOUSEKEEPING {
        let (r, c) = map_post(&map, "/mcp", &notification(m)).unwrap();
        assert_eq!(c, Check::Grant, "{m}");
        assert_eq!(r.action, m.replace('/', "."));
    }
}

#[test]
fn tools_call_is_decided_as_the_tool_with_its_string_and_integer_arguments() {
    let map = mail();
    let args = json!({
        "to": "bob@company.com",
        "n": 5,
        "float_int": 2.0,
        "neg": -5e3,
        "zero": -0.0,
        "exp": 2e0,
        "top": 9007199254740992.0,
        "low": -9007199254740992.0,
        "top_int": EXACT,
        "low_int": -EXACT,
        "flag": true,
        "nothing": null,
        "list": [1, 2],
        "obj": {"k": 1},
        "empty": "",
    });
    let (r, c) = map_post(&map, "/mcp", &call("send_email", args)).unwrap();
    assert_eq!(c, Check::Grant);
    assert_eq!(
        (r.action.as_str(), r.resource.as_str()),
        ("send_email", "/srv/mail")
    );
    let want: BTreeMap<String, Value> = [
        ("to", Value::Str("bob@company.com".into())),
        ("n", Value::Int(5)),
        ("float_int", Value::Int(2)),
        ("neg", Value::Int(-5000)),
        ("zero", Value::Int(0)),
        ("exp", Value::Int(2)),
        ("top", Value::Int(1 << 53)),
        ("low", Value::Int(-(1 << 53))),
        ("top_int", Value::Int(EXACT)),
        ("low_int", Value::Int(-EXACT)),
        ("empty", Value::Str(String::new())),
        // The arguments that are not parameters, together: bound by an
        // approval's digest, shown to the approver.
        (
            "mcp.other_arguments",
            Value::Str(r#"{"flag":true,"list":[1,2],"nothing":null,"obj":{"k":1}}"#.into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(r.params, want);
    // No arguments at all: no parameters.
    let m = request(json!(1), "tools/call", json!({"name": "search"}));
    let (r, _) = map_post(&map, "/mcp", &m).unwrap();
    assert_eq!(r.action, "search");
    assert!(r.params.is_empty());
    // On a sub-path: no decision at all (the second door is closed).
    below_the_route(map_post(&map, "/mcp/x", &call("search", json!({}))));
    below_the_route(map_post(&map, "/mcp/", &call("search", json!({}))));
}

#[test]
fn a_number_that_is_not_an_integer_is_refused_as_invalid_params() {
    let map = mail();
    for (v, text) in [
        (json!(2.5), "2.5"),
        (json!(1e300), "1e300"),
        (json!(-0.5), "-0.5"),
        (json!(9007199254740994.0), "9007199254740994"),
        (json!(-9007199254740994.0), "-9007199254740994"),
        (json!(u64::MAX), "18446744073709551615"),
        (json!(1e19), "1e19"),
        // Integers a double cannot hold, even written as integers: a
        // JavaScript server would act on a neighbour.
        (json!(EXACT + 2), "9007199254740994"),
        (json!(-EXACT - 2), "-9007199254740994"),
        (json!(i64::MAX), "9223372036854775807"),
        (json!(i64::MIN), "-9223372036854775808"),
    ] {
        let msg = refused(
            map_post(&map, "/mcp", &call("pay", json!({"amount": v}))),
            &[
                "invalid params",
                "\"amount\"",
                "not an integer within ±2^53",
            ],
        );
        assert!(msg.starts_with("invalid params"), "{msg}");
        let e = parameter("amount", &v).unwrap_err();
        assert_eq!(e.message, msg, "{text}");
    }
    // Straight from the JSON text, as a client writes it.
    for text in [
        "2.5",
        "1e300",
        "9007199254740994.0",
        "18446744073709551616",
        "9223372036854775807",
        "-9007199254740994",
    ] {
        let v: Json = serde_json::from_str(text).unwrap();
        refused(parameter("a", &v), &["invalid params", "not an integer"]);
    }
    for (text, want) in [
        ("2.0", 2),
        ("2e0", 2),
        ("-5E3", -5000),
        ("1.0e1", 10),
        ("9007199254740992.0", EXACT),
        ("9007199254740992", EXACT),
        ("-9007199254740992", -EXACT),
        ("-0", 0),
    ] {
        let v: Json = serde_json::from_str(text).unwrap();
        assert_eq!(
            parameter("a", &v).unwrap(),
            Some(Value::Int(want)),
            "{text}"
        );
    }
    for v in [json!(true), json!(null), json!([1]), json!({"a": 1})] {
        assert_eq!(parameter("a", &v).unwrap(), None, "{v}");
    }
}

#[test]
fn a_malformed_tools_call_is_refused_saying_why() {
    let map = mail();
    for (params, why) in [
        (json!({}), "tools/call needs params.name"),
        (json!({"name": 5}), "tools/call needs params.name"),
        (json!({"name": null}), "tools/call needs params.name"),
        (json!(["send_email"]), "tools/call needs params.name"),
        (
            json!({"name": "x", "arguments": [1]}),
            "invalid params: tools/call arguments must be an object",
        ),
        (
            json!({"name": "x", "arguments": "to=bob"}),
            "invalid params: tools/call arguments must be an object",
        ),
    ] {
        refused(
            map_post(&map, "/mcp", &request(json!(1), "tools/call", params)),
            &[why],
        );
    }
    refused(
        map_post(
            &map,
            "/mcp",
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}),
        ),
        &["tools/call needs params.name"],
    );
}

#[test]
fn resources_and_prompts_are_decided_with_their_uri_and_name() {
    let map = mail();
    for method in [
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
    ] {
        let m = request(
            json!(1),
            method,
            json!({"uri": "file:///inbox/1", "name": "n"}),
        );
        let (r, c) = map_post(&map, "/mcp", &m).unwrap();
        assert_eq!(c, Check::Grant);
        assert_eq!(r.action, method.replace('/', "."));
        assert_eq!(r.resource, "/srv/mail");
        assert_eq!(
            r.params,
            BTreeMap::from([("uri".to_string(), Value::Str("file:///inbox/1".into()))])
        );
        for params in [json!({}), json!({"uri": 1}), json!({"name": "file:///x"})] {
            refused(
                map_post(&map, "/mcp", &request(json!(1), method, params)),
                &["invalid params", "needs params.uri"],
            );
        }
    }
    let m = request(
        json!(1),
        "prompts/get",
        json!({"name": "summarize", "arguments": {}}),
    );
    let (r, c) = map_post(&map, "/mcp", &m).unwrap();
    assert_eq!(c, Check::Grant);
    assert_eq!(
        (r.action.as_str(), r.resource.as_str()),
        ("prompts.get", "/srv/mail")
    );
    assert_eq!(
        r.params,
        BTreeMap::from([("name".to_string(), Value::Str("summarize".into()))])
    );
    refused(
        map_post(
            &map,
            "/mcp",
            &request(json!(1), "prompts/get", json!({"uri": "x"})),
        ),
        &["invalid params: prompts.get needs params.name"],
    );
}

/// A 2026-07-28 `subscriptions/listen` naming resources in
/// `params.notifications.resourceSubscriptions` subscribes to them (it
/// replaces `resources/subscribe`): decided like it, on the URI; without
/// resources it is housekeeping.
#[test]
fn subscriptions_listen_is_decided_on_the_resource_it_subscribes_to() {
    let map = mail();
    let listen = |params: Json| request(json!(1), "subscriptions/listen", params);
    let (r, c) = map_post(
        &map,
        "/mcp",
        &listen(
            json!({"notifications": {"resourceSubscriptions": ["file:///etc/secret"],
                                         "toolsListChanged": true}}),
        ),
    )
    .unwrap();
    assert_eq!(c, Check::Grant);
    assert_eq!(
        (r.action.as_str(), r.resource.as_str()),
        ("resources.subscribe", "/srv/mail")
    );
    assert_eq!(
        r.params,
        BTreeMap::from([("uri".to_string(), Value::Str("file:///etc/secret".into()))])
    );
    // Decided exactly as resources/subscribe on the same URI.
    let (s, sc) = map_post(
        &map,
        "/mcp",
        &request(
            json!(2),
            "resources/subscribe",
            json!({"uri": "file:///etc/secret"}),
        ),
    )
    .unwrap();
    assert_eq!(
        (s.action, s.resource, s.params, sc),
        (r.action, r.resource, r.params, c)
    );
    // No resources: housekeeping (the stream of list changes).
    for params in [
        json!({}),
        json!({"notifications": {}}),
        json!({"notifications": {"toolsListChanged": true}}),
        json!({"notifications": {"resourceSubscriptions": []}}),
        json!({"notifications": {"resourceSubscriptions": null}}),
    ] {
        let (r, c) = map_post(&map, "/mcp", &listen(params.clone())).unwrap();
        assert_eq!(
            (r.action.as_str(), c),
            ("subscriptions.listen", Check::Token),
            "{params}"
        );
        assert!(r.params.is_empty());
    }
    // Several (one decision per request), or not URIs: invalid params.
    for params in [
        json!({"notifications": {"resourceSubscriptions": ["file:///a", "file:///b"]}}),
        json!({"notifications": {"resourceSubscriptions": ["file:///a", "file:///a"]}}),
        json!({"notifications": {"resourceSubscriptions": [1]}}),
        json!({"notifications": {"resourceSubscriptions": [["file:///a"]]}}),
        json!({"notifications": {"resourceSubscriptions": "file:///a"}}),
        json!({"notifications": {"resourceSubscriptions": {"uri": "file:///a"}}}),
    ] {
        let msg = refused(
            map_post(&map, "/mcp", &listen(params.clone())),
            &["invalid params"],
        );
        assert!(msg.starts_with("invalid params"), "{params}: {msg}");
    }
}

#[test]
fn a_query_string_is_refused_on_every_path_and_method() {
    let map = mail();
    for uri in ["/mcp?x=1", "/mcp?", "/mcp/sub?a", "/mcp?sessionId=1"] {
        for method in ["GET", "DELETE", "POST", "PUT"] {
            let p = parts(method, uri, &[]);
            if p.uri.query().is_none() {
                // `http` drops an empty query: nothing reaches the server
                // undecided.
                assert_eq!(uri, "/mcp?");
                continue;
            }
            refused(
                map.map_check(&p, Some(&request(json!(1), "ping", json!({})))),
                &["no query string"],
            );
        }
    }
}

#[test]
fn mcp_method_and_mcp_name_headers_must_say_what_the_body_says() {
    let map = mail();
    let post = |headers: &[(&str, &[u8])], body: &Json| {
        map.map_check(&parts("POST", "/mcp", headers), Some(body))
    };
    let send = call("send_email", json!({"to": "a@company.com"}));
    // Agreeing headers (any letter case of the name) pass.
    for headers in [
        vec![("mcp-method", b"tools/call".as_slice())],
        vec![
            ("Mcp-Method", b"tools/call".as_slice()),
            ("MCP-NAME", b"send_email"),
        ],
        vec![("mcp-name", b"send_email".as_slice())],
    ] {
        let (r, _) = post(&headers, &send).unwrap();
        assert_eq!(r.action, "send_email");
    }
    let read = request(json!(1), "resources/read", json!({"uri": "file:///a"}));
    post(&[("mcp-name", b"file:///a")], &read).unwrap();
    let ping = request(json!(1), "ping", json!({}));
    post(&[("mcp-method", b"ping")], &ping).unwrap();
    let n = notification("notifications/cancelled");
    post(&[("mcp-method", b"notifications/cancelled")], &n).unwrap();

    // Disagreeing: refused, naming the header.
    for (headers, body, why) in [
        (
            vec![("mcp-method", b"tools/list".as_slice())],
            &send,
            "header Mcp-Method \"tools/list\" does not match",
        ),
        (
            vec![("mcp-method", b"tools/call ".as_slice())],
            &send,
            "does not match the body's method",
        ),
        (
            vec![("mcp-method", b"TOOLS/CALL".as_slice())],
            &send,
            "does not match the body's method",
        ),
        (
            vec![("mcp-name", b"search".as_slice())],
            &send,
            "header Mcp-Name \"search\" does not match",
        ),
        (
            vec![("mcp-name", b"file:///b".as_slice())],
            &read,
            "does not match the body's name or uri",
        ),
        (
            vec![("mcp-name", b"ping".as_slice())],
            &ping,
            "does not match the body's name or uri",
        ),
        (
            vec![("mcp-name", b"x".as_slice())],
            &n,
            "does not match the body's name or uri",
        ),
        (
            vec![("mcp-method", b"ping".as_slice())],
            &json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
            "does not match the body's method",
        ),
        (
            vec![
                ("mcp-method", b"tools/call".as_slice()),
                ("mcp-method", b"tools/call"),
            ],
            &send,
            "header mcp-method given twice",
        ),
        (
            vec![
                ("mcp-name", b"send_email".as_slice()),
                ("mcp-name", b"search"),
            ],
            &send,
            "header mcp-name given twice",
        ),
        (
            vec![("mcp-method", b"tools/call\xff".as_slice())],
            &send,
            "header mcp-method is not text",
        ),
    ] {
        refused(post(&headers, body), &[why]);
    }
}

/// A resource read whose `Mcp-Name` names another resource than the `uri`
/// decided: a server routing on the header (2026-07-28) would read what was
/// never decided. Regression: the header was compared with `params.name`
/// first, which a `resources/read` does not use.
#[test]
fn mcp_name_of_a_resource_read_is_compared_with_the_uri_decided() {
    let map = mail();
    let smuggle = request(
        json!(1),
        "resources/read",
        json!({"uri": "file:///public/readme", "name": "file:///secret/keys"}),
    );
    let (r, _) = map
        .map_check(&parts("POST", "/mcp", &[]), Some(&smuggle))
        .unwrap();
    assert_eq!(r.params["uri"], Value::Str("file:///public/readme".into()));
    refused(
        map.map_check(
            &parts("POST", "/mcp", &[("mcp-name", b"file:///secret/keys")]),
            Some(&smuggle),
        ),
        &["Mcp-Name", "does not match"],
    );
    map.map_check(
        &parts("POST", "/mcp", &[("mcp-name", b"file:///public/readme")]),
        Some(&smuggle),
    )
    .unwrap();
}

/// Keys that differ from JSON-RPC's and MCP's own only in letter case (or
/// by a Unicode character that folds to ASCII: `ſ`, `K`) are read as those
/// fields by case-insensitive decoders (Go's `encoding/json`; the Go MCP SDK
/// before its fix for CVE-2026-27896): the gateway decided one message, such
/// a server would run another. A message holding them must be refused.
#[test]
fn keys_that_differ_only_in_letter_case_are_refused() {
    let map = mail();
    for smuggle in [
        // A tools/call dressed as a client response: token-only.
        json!({"jsonrpc": "2.0", "id": 1, "result": {}, "Method": "tools/call",
               "Params": {"name": "delete_inbox"}}),
        // tools/list decided, tools/call run.
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "METHOD": "tools/call",
               "params": {"name": "delete_inbox"}}),
        // search decided, delete_inbox run.
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "search", "Name": "delete_inbox"}}),
        // Arguments decided, other arguments run.
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "pay", "arguments": {"amount": 5},
                          "Arguments": {"amount": 5000}}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
               "params": {"uri": "file:///public", "URI": "file:///secret"}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
               "method\u{17f}": "tools/call"}),
    ] {
        refused(map_post(&map, "/mcp", &smuggle), &[]);
    }
}

/// Go's `encoding/json` matches a key to a field by Unicode simple case
/// folding (every rune of one fold orbit alike: `k`, `K` and the Kelvin
/// sign; `s`, `S` and `ſ`; `é` and `É`; `µ`, `μ` and `Μ`; `ß` and `ẞ`):
/// two keys of one orbit in one object are one field to such a server, the
/// last one winning. Refused wherever they are, saying why; keys that only
/// look alike (`é` and `e`, `ß` and `ss`: no simple fold) are distinct.
#[test]
fn keys_a_unicode_case_insensitive_decoder_merges_are_refused() {
    let map = mail();
    let pairs = [
        ("amount", "AMOUNT"),
        ("k", "\u{212a}"),
        ("s", "\u{17f}"),
        ("S", "\u{17f}"),
        ("é", "É"),
        ("µ", "μ"),
        ("µ", "Μ"),
        ("μ", "Μ"),
        ("å", "\u{212b}"),
        ("ω", "\u{2126}"),
        ("ß", "ẞ"),
        ("größe", "GRÖẞE"),
        ("ǆ", "ǅ"),
        ("ǅ", "Ǆ"),
        ("σ", "ς"),
        ("θ", "ϑ"),
        ("ᾳ", "ᾼ"),
        ("ж", "Ж"),
        ("ꭰ", "Ꭰ"),
    ];
    for (a, b) in pairs {
        let (ka, kb) = (format!("to{a}"), format!("to{b}"));
        for msg in [
            call("pay", json!({ka.clone(): 1, kb.clone(): 1000})),
            call(
                "pay",
                json!({"x": [{"deep": {ka.clone(): 1, kb.clone(): 2}}]}),
            ),
            request(json!(1), "ping", json!({ka.clone(): "a", kb.clone(): "b"})),
        ] {
            refused(
                map_post(&map, "/mcp", &msg),
                &["differ only in letter case", &ka, &kb],
            );
        }
    }
    for (a, b) in [("é", "e"), ("ß", "ss"), ("größe", "GRÖSSE"), ("ä", "a")] {
        let (r, _) = map_post(&map, "/mcp", &call("pay", json!({a: 1, b: 2}))).unwrap();
        assert_eq!(r.params.len(), 2, "{a:?} {b:?}: {r:?}");
    }
}

// ---------------------------------------------------------------------------
// The property: token-only only for housekeeping, on the exact path only.

fn any_method() -> impl Strategy<Value = String> {
    let known: Vec<String> = HOUSEKEEPING
        .iter()
        .chain(CLIENT_NOTIFICATIONS.iter())
        .copied()
        .chain([
            "tools/call",
            "resources/read",
            "resources/subscribe",
            "prompts/get",
            "notifications/message",
            "notifications/",
            "completion/complete",
            "tasks/get",
            "Ping",
            "initialize ",
            "ping/",
        ])
        .map(str::to_string)
        .collect();
    prop_oneof![
        3 => proptest::sample::select(known),
        1 => "[a-zA-Z/_. ]{0,16}",
    ]
}

fn any_scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        (-1000i64..1000).prop_map(|i| json!(i as f64)),
        "[a-z@.]{0,8}".prop_map(Json::from),
        any::<bool>().prop_map(Json::from),
        Just(Json::Null),
        Just(json!([1])),
    ]
}

prop_compose! {
    fn any_message()(
        kind in 0..4u8,
        method in any_method(),
        id in prop_oneof![
            4 => (-EXACT..=EXACT).prop_map(Json::from),
            1 => any::<i64>().prop_map(Json::from),
            3 => "[a-z0-9]{0,6}".prop_map(Json::from),
        ],
        name in prop_oneof![Just("send_email".to_string()), "[a-zA-Z_.:/ -]{0,12}"],
        args in proptest::collection::btree_map("[a-z]{1,4}", any_scalar(), 0..4),
        uri in "[a-z:/]{0,12}",
    ) -> Json {
        let args: serde_json::Map<String, Json> = args.into_iter().collect();
        let params = json!({"name": name, "uri": uri, "arguments": args});
        match kind {
            0 => request(id, &method, params),
            1 => json!({"jsonrpc": "2.0", "method": method, "params": params}),
            2 => json!({"jsonrpc": "2.0", "id": id, "result": params}),
            _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": 1, "message": "m"}}),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn token_only_is_housekeeping_on_the_exact_path_and_tools_call_is_its_tool(
        msg in any_message(),
        path in proptest::sample::select(vec!["/mcp", "/mcp/", "/mcp/x", "/MCP", "/other", "/mcp/tools"]),
        http_method in proptest::sample::select(vec!["POST", "POST", "POST", "GET", "DELETE", "PUT", "HEAD"]),
        resource in proptest::sample::select(vec![None, Some("/srv/mail")]),
    ) {
        let map = McpMap::new("/mcp", resource, 1 << 20);
        let p = parts(http_method, path, &[]);
        let body = (http_method == "POST").then_some(&msg);
        let (r, check) = match map.map_check(&p, body) {
            // Any other path than the route's: not the endpoint.
            Err(e) if path != "/mcp" => {
                prop_assert_eq!(e.status, StatusCode::NOT_FOUND);
                prop_assert!(e.message.contains("exact path only"), "{}", e.message);
                return Ok(());
            }
            Ok(_) if path != "/mcp" => {
                return Err(TestCaseError::fail(format!("{http_method} {path} decided")));
            }
            // Refusals are only for what cannot be decided: an id a server
            // would echo otherwise, or a message whose decided members are
            // wrong.
            Err(e) => {
                prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                match Message::read(&msg) {
                    Err(_) => {
                        prop_assert!(
                            msg["id"].as_i64().is_some_and(|i| i.unsigned_abs() > EXACT as u64),
                            "refused {msg}: {}", e.message
                        );
                        prop_assert!(e.message.contains("JSON-RPC id"), "{}", e.message);
                    }
                    Ok(m) => prop_assert!(matches!(
                        m.method(),
                        Some("tools/call" | "resources/read" | "resources/subscribe" | "prompts/get")
                    ), "refused {msg}: {}", e.message),
                }
                return Ok(());
            }
            Ok(decided) => decided,
        };
        prop_assert_eq!(r.resource.as_str(), resource.unwrap_or(path));
        let housekeeping = match body {
            None => http_method == "GET" || http_method == "DELETE",
            Some(m) => match Message::read(m).unwrap() {
                Message::Response => true,
                Message::Notification { method, .. } => CLIENT_NOTIFICATIONS.contains(&method),
                Message::Request { method, .. } => HOUSEKEEPING.contains(&method),
            },
        };
        prop_assert_eq!(check == Check::Token, housekeeping, "{} {} {}", http_method, path, msg);
        if check == Check::Token {
            prop_assert!(r.params.is_empty());
        }
        if let Some(m) = body {
            match Message::read(m).unwrap() {
                // A request or a notification alike.
                msg if msg.method() == Some("tools/call") => {
                    prop_assert_eq!(Some(r.action.as_str()), m["params"]["name"].as_str());
                    // Every parameter is an argument, as a string or an
                    // integer, but the one carrying the others together.
                    for (k, v) in &r.params {
                        if k == "mcp.other_arguments" {
                            continue;
                        }
                        let arg = &m["params"]["arguments"][k];
                        match v {
                            Value::Str(s) => prop_assert_eq!(arg.as_str(), Some(s.as_str())),
                            Value::Int(i) => {
                                prop_assert!(i.unsigned_abs() <= EXACT as u64, "{}", i);
                                prop_assert_eq!(arg.as_f64(), Some(*i as f64));
                            }
                        }
                    }
                }
                Message::Response => prop_assert_eq!(r.action.as_str(), RESPONSE_ACTION),
                m => prop_assert_eq!(r.action, m.method().unwrap().replace('/', ".")),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Sessions

#[test]
fn a_session_id_round_trips_for_its_family_only() {
    let s = Sessions::new([7; 32]);
    let fam = "0f8fad5b-d9cb-469f-a165-70867728950e";
    for upstream in [
        "abc",
        "",
        "a.b.c",
        "1.2.",
        ".",
        "550e8400-e29b-41d4-a716-446655440000",
    ] {
        let id = s.wrap(fam, upstream);
        let (u, tag) = id.rsplit_once('.').unwrap();
        assert_eq!(u, upstream);
        assert_eq!(tag.len(), 32, "{id}");
        assert!(tag
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(s.unwrap(fam, &id), Some(upstream), "{id}");
        // Stateless: another gateway with the key makes the same id.
        assert_eq!(Sessions::new([7; 32]).wrap(fam, upstream), id);
        assert_eq!(Sessions::new([7; 32]).unwrap(fam, &id), Some(upstream));
        assert_eq!(Sessions::new([8; 32]).unwrap(fam, &id), None);
        assert_eq!(s.unwrap("another-family", &id), None);
        // The upstream's own id, unwrapped: not a session of ours.
        assert_eq!(s.unwrap(fam, upstream), None);
    }
    let long = "0".repeat(33);
    for forged in ["", ".", "abc.", "abc.zz", "abc.0011", long.as_str()] {
        assert_eq!(s.unwrap(fam, forged), None, "{forged}");
    }
    // The key stays out of debug output.
    assert_eq!(format!("{s:?}"), "Sessions(<key>)");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_session_id_does_not_unwrap_for_anything_else(
        key in any::<[u8; 32]>(),
        key2 in any::<[u8; 32]>(),
        family in "[0-9a-f-]{1,36}",
        other_family in "[0-9a-f-]{1,36}",
        upstream in "[!-~]{0,40}",
        other_upstream in "[!-~]{0,40}",
        at in any::<proptest::sample::Index>(),
        with in proptest::sample::select("0123456789abcdef".chars().collect::<Vec<_>>()),
    ) {
        let s = Sessions::new(key);
        let id = s.wrap(&family, &upstream);
        prop_assert_eq!(s.unwrap(&family, &id), Some(upstream.as_str()));
        prop_assert!(http::HeaderValue::from_str(&id).is_ok());
        let (_, tag) = id.rsplit_once('.').unwrap();
        // Another family.
        if other_family != family {
            prop_assert_eq!(s.unwrap(&other_family, &id), None);
        }
        // Another key.
        if key2 != key {
            prop_assert_eq!(Sessions::new(key2).unwrap(&family, &id), None);
        }
        // One tag character changed.
        let i = at.index(tag.len());
        let old = tag.as_bytes()[i] as char;
        if old != with {
            let mut t: Vec<char> = tag.chars().collect();
            t[i] = with;
            let flipped = format!("{upstream}.{}", t.into_iter().collect::<String>());
            prop_assert_eq!(s.unwrap(&family, &flipped), None);
        }
        // Truncated or extended tags.
        for cut in 1..=3 {
            prop_assert_eq!(s.unwrap(&family, &id[..id.len() - cut]), None);
        }
        let extended = format!("{id}00");
        prop_assert_eq!(s.unwrap(&family, &extended), None);
        // Another upstream id with this tag.
        if other_upstream != upstream {
            let moved = format!("{other_upstream}.{tag}");
            prop_assert_eq!(s.unwrap(&family, &moved), None);
        }
        // The tag moved across a dot of the upstream id.
        let doubled = format!("{upstream}.{tag}.{tag}");
        prop_assert_eq!(s.unwrap(&family, &doubled), None);
    }
}

// ---------------------------------------------------------------------------
// Denial codes and error bodies

/// Every `DenialKind` variant, read from the verifier's source so that a
/// kind added later without a code of its own fails here.
fn all_kinds() -> Vec<DenialKind> {
    let src = include_str!("../../verifier/src/decision.rs");
    let start = src.find("pub enum DenialKind {").unwrap();
    let body = &src[start..];
    let body = &body[..body.find("\n}").unwrap()];
    let kinds: Vec<DenialKind> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && l.ends_with(',') && !l.contains(' '))
        .map(|l| {
            let name = l.trim_end_matches(',');
            let mut snake = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            serde_json::from_value(Json::String(snake)).unwrap()
        })
        .collect();
    assert!(kinds.len() >= 20, "{kinds:?}");
    kinds
}

/// Codes the JSON-RPC and MCP specifications and SDKs use themselves.
fn reserved(code: i64) -> bool {
    (-32002..=-32000).contains(&code)
        || (-32022..=-32020).contains(&code)
        || code == -32042
        || (-32700..=-32600).contains(&code)
}

#[test]
fn every_denial_kind_has_its_own_code_clear_of_the_reserved_ones() {
    let kinds = all_kinds();
    let mut codes: Vec<i64> = kinds.iter().map(|k| denial_code(*k)).collect();
    for (k, c) in kinds.iter().zip(&codes) {
        assert_ne!(*c, OTHER_DENIAL, "{k:?} has no code of its own");
        assert!(!reserved(*c), "{k:?}: {c}");
        // JSON-RPC's implementation-defined server errors.
        assert!((-32099..=-32000).contains(c), "{k:?}: {c}");
    }
    let others = [
        OTHER_DENIAL,
        SESSION_NOT_FOUND,
        AUDIT_UNAVAILABLE,
        UPSTREAM_UNREACHABLE,
        UPSTREAM_TIMEOUT,
    ];
    for c in others {
        assert!(!reserved(c) && (-32099..=-32000).contains(&c), "{c}");
    }
    codes.extend(others);
    let n = codes.len();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), n, "two kinds share a code");
    assert_eq!((INVALID_REQUEST, INVALID_PARAMS), (-32600, -32602));
    // The table of SPEC §17.
    assert_eq!(denial_code(DenialKind::InvalidRequest), -32070);
    assert_eq!(denial_code(DenialKind::NotAllowed), -32080);
    assert_eq!(denial_code(DenialKind::ReplayRecordUnavailable), -32089);
    assert_eq!(denial_code(DenialKind::LimitExceeded), -32094);
    assert_eq!(denial_code(DenialKind::LimitUnavailable), -32095);
}

fn decision(kind: DenialKind, reason: &str) -> Decision {
    Decision {
        decision: if kind == DenialKind::NeedsApproval {
            Outcome::NeedsApproval
        } else {
            Outcome::Deny
        },
        denial: Some(Denial {
            kind,
            hop: Some(1),
            block: Some(1),
            agent: Some("sub-agent".into()),
            reason: reason.into(),
            limit: None,
            restriction: None,
        }),
        request: mandate_spec::Request::new("send_email", "/srv/mail").param("to", "x"),
        chain: None,
        approval: None,
        restrictions: Vec::new(),
    }
}

#[test]
fn a_denial_is_a_json_rpc_error_with_the_request_id_its_code_and_its_reason() {
    let ids = [json!(7), json!("req-\"7\""), json!(-EXACT), json!(-1)];
    for kind in all_kinds() {
        let reason = format!("hop 1 (agent \"sub-agent\"): {} \\ é", kind.as_str());
        let d = decision(kind, &reason);
        for id in &ids {
            let body = call("send_email", json!({"to": "x"}));
            let mut body = body;
            body["id"] = id.clone();
            let e = error_body(Some(&body), Refusal::Denied(&d));
            assert_eq!(e["jsonrpc"], "2.0");
            assert_eq!(&e["id"], id, "{kind:?}");
            assert_eq!(e["error"]["code"], denial_code(kind), "{kind:?}");
            assert_eq!(e["error"]["message"], reason.as_str());
            assert_eq!(e["error"]["data"]["reason"], reason.as_str());
            assert_eq!(e["error"]["data"]["denial"]["kind"], kind.as_str());
            assert_eq!(e["error"]["data"]["denial"]["hop"], 1);
            assert_eq!(e["error"]["data"]["request"]["action"], "send_email");
            assert!(e.get("result").is_none());
            assert_eq!(Refusal::Denied(&d).reason(), reason);
        }
        // No id to answer: a notification, a response, nothing read, not a
        // message at all.
        for body in [
            Some(notification("notifications/cancelled")),
            Some(json!({"jsonrpc": "2.0", "id": 3, "result": {}})),
            Some(json!([call("x", json!({}))])),
            Some(json!({"id": 3, "method": "ping"})),
            Some(json!({"jsonrpc": "2.0", "id": null, "method": "ping"})),
            // An id that is not one (a server would echo it otherwise).
            Some(json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"})),
            Some(json!({"jsonrpc": "2.0", "id": EXACT + 1, "method": "ping"})),
            None,
        ] {
            let e = error_body(body.as_ref(), Refusal::Denied(&d));
            assert!(e.get("id").is_none(), "{body:?}: {e}");
            assert_eq!(e["error"]["code"], denial_code(kind));
        }
    }
    // A decision without a denial (cannot happen, but): not allowed.
    let mut d = decision(DenialKind::Revoked, "x");
    d.denial = None;
    let e = error_body(None, Refusal::Denied(&d));
    assert_eq!(e["error"]["code"], denial_code(DenialKind::NotAllowed));
    assert_eq!(e["error"]["message"], "denied");
}

#[test]
fn a_refusal_that_is_not_a_denial_has_the_code_of_its_status() {
    let body = request(json!("a"), "tools/call", json!({"name": "x"}));
    for (status, reason, code) in [
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "audit log unavailable",
            AUDIT_UNAVAILABLE,
        ),
        (
            StatusCode::BAD_GATEWAY,
            "upstream broke",
            UPSTREAM_UNREACHABLE,
        ),
        (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream slow",
            UPSTREAM_TIMEOUT,
        ),
        (
            StatusCode::NOT_FOUND,
            "no such MCP session",
            SESSION_NOT_FOUND,
        ),
        (
            StatusCode::BAD_REQUEST,
            "invalid params: argument \"a\" is 2.5",
            INVALID_PARAMS,
        ),
        (
            StatusCode::BAD_REQUEST,
            "an MCP route takes no query string",
            INVALID_REQUEST,
        ),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body larger than 10 bytes",
            INVALID_REQUEST,
        ),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json",
            INVALID_REQUEST,
        ),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "undecided",
            INVALID_REQUEST,
        ),
    ] {
        let refusal = Refusal::Error(status, reason);
        assert_eq!(refusal.status(), status);
        for (b, with_id) in [(Some(&body), true), (None, false)] {
            let e = error_body(b, refusal);
            assert_eq!(e["error"]["code"], code, "{status} {reason}");
            assert_eq!(e["error"]["message"], reason);
            assert_eq!(
                e["error"]["data"],
                json!({"status": status.as_u16(), "reason": reason})
            );
            assert_eq!(e.get("id"), with_id.then_some(&json!("a")));
        }
    }
}

// ---------------------------------------------------------------------------
// rewrite_sse

/// An event stream read as a client does (line ends `\r\n`, `\n`, `\r`;
/// an event ends at a blank line): each event's fields in order, comments
/// kept as field `:`; a last event without its blank line is marked.
fn sse_events(text: &str) -> Vec<Vec<(String, String)>> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut current = Vec::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let complete = lines.last() == Some(&"");
    if complete {
        lines.pop();
    }
    for line in lines {
        if line.is_empty() {
            if !current.is_empty() {
                events.push(std::mem::take(&mut current));
            }
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some(("", rest)) => (":", rest),
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        current.push((field.to_string(), value.to_string()));
    }
    if !current.is_empty() {
        current.push(("<incomplete>".into(), String::new()));
        events.push(current);
    }
    events
}

/// Events with each JSON `data` value written canonically (whatever the
/// order of its keys).
fn canonical(events: Vec<Vec<(String, String)>>) -> Vec<Vec<(String, String)>> {
    events
        .into_iter()
        .map(|e| {
            e.into_iter()
                .map(|(f, v)| match serde_json::from_str::<Json>(&v) {
                    Ok(j) if f == "data" => (f, j.to_string()),
                    _ => (f, v),
                })
                .collect()
        })
        .collect()
}

/// The events the gateway passes on of `events` (as [`sse_events`] reads
/// them): an unfinished last event and events whose data is not JSON are
/// dropped (SPEC §17).
fn passed(events: Vec<Vec<(String, String)>>) -> Vec<Vec<(String, String)>> {
    events
        .into_iter()
        .filter(|e| !e.iter().any(|(f, _)| f == "<incomplete>"))
        .filter(|e| {
            let data: Vec<&str> = e
                .iter()
                .filter(|(f, _)| f == "data")
                .map(|(_, v)| v.as_str())
                .collect();
            data.is_empty() || serde_json::from_str::<Json>(&data.join("\n")).is_ok()
        })
        .collect()
}

/// The JSON-RPC id of a message, for the rewriters below.
fn id_of(msg: &Json) -> Option<i64> {
    msg.get("id").and_then(Json::as_i64)
}

#[test]
fn rewrite_sse_changes_only_the_events_rewritten() {
    let body =
        "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n\
                : keep-alive comment\n\n\
                event: message\nid: 2\ndata:{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n\
                data: not json at all\n\n\
                data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{\"multi\":true}}\n\n\
                retry: 5000\n\n";
    // Nothing rewritten: the same events, but for the one whose data is
    // not JSON (dropped: a client's parser might read it otherwise).
    let same = rewrite_sse(body.as_bytes(), |_| false).unwrap();
    let same = String::from_utf8(same).unwrap();
    assert_eq!(sse_events(&same), passed(sse_events(body)));
    assert!(!same.contains("not json at all"));
    // Messages with id 1 rewritten: those events carry one data line with
    // the new JSON, their other lines kept; every other event unchanged.
    let mut seen = Vec::new();
    let out = rewrite_sse(body.as_bytes(), |msg| {
        seen.push(msg.clone());
        if id_of(msg) == Some(1) {
            msg["result"]["rewritten"] = json!(true);
            true
        } else {
            false
        }
    })
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    // The rewriter saw every JSON event, the multi-line one joined.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2]["result"]["multi"], true);
    let expected = "event: message\nid: 1\ndata: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"rewritten\":true,\"tools\":[]}}\n\n\
                    : keep-alive comment\n\n\
                    event: message\nid: 2\ndata:{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n\
                    data: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"multi\":true,\"rewritten\":true}}\n\n\
                    retry: 5000\n\n";
    assert_eq!(
        canonical(sse_events(&out)),
        canonical(sse_events(expected)),
        "{out}\n---\n{expected}"
    );
    // The rewritten events' JSON reads back as rewritten.
    let datas: Vec<Json> = sse_events(&out)
        .iter()
        .filter_map(|e| e.iter().find(|(f, _)| f == "data"))
        .filter_map(|(_, d)| serde_json::from_str(d).ok())
        .collect();
    assert_eq!(
        datas
            .iter()
            .filter(|d| d["result"]["rewritten"] == true)
            .count(),
        2
    );
}

#[test]
fn rewrite_sse_reads_crlf_and_cr_line_ends_and_keeps_each_event_as_a_client_reads_it() {
    let body = "event: message\r\nid: 9\r\ndata: {\"id\":1,\"result\":{}}\r\n\r\n\
                data: {\"id\":2,\"result\":{}}\r\r\
                : comment\r\n\r\n";
    let out = rewrite_sse(body.as_bytes(), |msg| {
        msg["result"]["seen"] = json!(true);
        id_of(msg) == Some(1)
    })
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    let events = sse_events(&out);
    assert_eq!(events.len(), 3, "{out:?}");
    assert_eq!(events[0][0], ("event".into(), "message".into()));
    assert_eq!(events[0][1], ("id".into(), "9".into()));
    let first: Json = serde_json::from_str(&events[0][2].1).unwrap();
    assert_eq!(first["result"]["seen"], true);
    assert_eq!(
        events[1],
        vec![("data".into(), "{\"id\":2,\"result\":{}}".into())]
    );
    assert_eq!(events[2], vec![(":".into(), " comment".into())]);
    // Nothing rewritten: the same events (line ends may be normalized).
    let same = rewrite_sse(body.as_bytes(), |_| false).unwrap();
    assert_eq!(
        sse_events(std::str::from_utf8(&same).unwrap()),
        sse_events(body)
    );
}

#[test]
fn rewrite_sse_refuses_a_body_that_is_not_utf8_and_drops_an_unterminated_event() {
    assert_eq!(rewrite_sse(b"data: \xff\n\n", |_| true), None);
    assert_eq!(rewrite_sse(b"", |_| true).unwrap(), b"");
    // The last event without its blank line: a client never dispatches
    // it, and it is not passed on.
    let out = rewrite_sse(b"data: {\"id\":0}\n\ndata: {\"id\":1}", |m| {
        m["x"] = json!(1);
        true
    })
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, "data: {\"id\":0,\"x\":1}\n\n");
    assert_eq!(rewrite_sse(b"data: {\"id\":1}", |_| false).unwrap(), b"");
    // A leading byte-order mark is dropped, as clients drop it.
    let out = rewrite_sse("\u{feff}data: {\"id\":1}\n\n".as_bytes(), |_| false).unwrap();
    assert_eq!(out, b"data: {\"id\":1}\n\n");
}

fn any_event() -> impl Strategy<Value = Vec<String>> {
    let line = prop_oneof![
        (0i64..6).prop_map(|i| format!("data: {{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{}}}}")),
        (0i64..6).prop_map(|i| format!("data:{{\"id\":{i},\n  \"result\":[1,2]}}")),
        Just("data: plain text".to_string()),
        Just("data:".to_string()),
        Just("event: message".to_string()),
        (0u32..100).prop_map(|i| format!("id: {i}")),
        Just(": ping".to_string()),
        Just("retry: 10".to_string()),
    ];
    proptest::collection::vec(line, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Events are kept as a client reads them unless rewritten (whatever
    /// the line ends), but for those the gateway drops (unfinished, data
    /// not JSON); rewritten events carry the rewritten JSON.
    #[test]
    fn rewrite_sse_keeps_every_event_it_does_not_rewrite(
        events in proptest::collection::vec(any_event(), 0..6),
        crlf in any::<bool>(),
        terminated in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut body = String::new();
        for (i, e) in events.iter().enumerate() {
            // A multi-line JSON's own newline becomes a continuation line.
            let text = e.join("\n").replace("\n  ", "\ndata:   ");
            body.push_str(&text.replace('\n', eol));
            if i + 1 < events.len() || terminated {
                body.push_str(eol);
                body.push_str(eol);
            }
        }
        let untouched = rewrite_sse(body.as_bytes(), |_| false).unwrap();
        prop_assert_eq!(
            sse_events(std::str::from_utf8(&untouched).unwrap()),
            passed(sse_events(&body))
        );
        // Rewrite the even ids.
        let out = rewrite_sse(body.as_bytes(), |m| {
            if id_of(m).is_some_and(|i| i % 2 == 0) {
                m["rewritten"] = json!(true);
                true
            } else {
                false
            }
        })
        .unwrap();
        let before = passed(sse_events(&body));
        let after = sse_events(std::str::from_utf8(&out).unwrap());
        prop_assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            let data: Vec<&str> = b.iter().filter(|(f, _)| f == "data").map(|(_, v)| v.as_str()).collect();
            let json: Option<Json> = (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).ok()).flatten();
            match json.filter(|j| id_of(j).is_some_and(|i| i % 2 == 0)) {
                Some(mut j) => {
                    j["rewritten"] = json!(true);
                    let others: Vec<_> = b.iter().filter(|(f, _)| f != "data").collect();
                    let a_others: Vec<_> = a.iter().filter(|(f, _)| f != "data").collect();
                    prop_assert_eq!(others, a_others);
                    let a_data: Vec<_> = a.iter().filter(|(f, _)| f == "data").collect();
                    prop_assert_eq!(a_data.len(), 1);
                    let got: Json = serde_json::from_str(&a_data[0].1).unwrap();
                    prop_assert_eq!(got, j);
                }
                None => prop_assert_eq!(b, a),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// filter_tools, with real tokens

struct Mint {
    issuer: Issuer,
    agent: KeyPair,
    sub: KeyPair,
    verifier: Verifier,
}

impl Mint {
    fn new() -> Mint {
        let issuer = Issuer::new(KeyPair::new());
        let (id, key) = issuer.keys().public_keys()[0];
        let verifier =
            Verifier::new(RootKeys::new().with(id, key)).with_cache(CacheOptions::default());
        Mint {
            issuer,
            agent: KeyPair::new(),
            sub: KeyPair::new(),
            verifier,
        }
    }

    fn root(&self, grant: Grant) -> Vec<u8> {
        self.issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "mail-agent".into(),
                agent_key: self.agent.public(),
                grant,
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
            .token
    }

    fn hop(&self, token: &[u8], grant: Grant) -> Vec<u8> {
        delegate(
            token,
            &self.agent,
            &Delegation {
                agent: "sub-agent".into(),
                agent_key: self.sub.public(),
                grant,
                ttl: None,
                purpose: None,
            },
        )
        .unwrap()
        .token
    }
}

/// A grant of several alternatives, each `ACTIONS:PATTERN[ where C]…` (its
/// own constraints, unlike `Grant::parse`'s shared ones).
fn grant(alternatives: &[&str]) -> Grant {
    let mut g = Grant::default();
    for a in alternatives {
        let mut parts = a.split(" where ");
        let allow = parts.next().unwrap();
        let wheres: Vec<&str> = parts.collect();
        g.alternatives
            .extend(Grant::parse(&[allow], &wheres).unwrap().alternatives);
    }
    g
}

fn capability(token: &[u8]) -> Capability {
    mandate_spec::effective_capabilities(&read_chain(token).unwrap())
        .pop()
        .unwrap()
}

fn tools_list(names: &[&str]) -> Json {
    let tools: Vec<Json> = names
        .iter()
        .map(|n| json!({"name": n, "description": format!("The {n} tool."), "inputSchema": {"type": "object"}}))
        .collect();
    json!({"jsonrpc": "2.0", "id": 4, "result": {"tools": tools, "nextCursor": "c"}})
}

fn listed(msg: &Json) -> Vec<(String, String)> {
    msg["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn filter_tools_keeps_what_the_token_allows_and_says_what_it_requires() {
    let m = Mint::new();
    let token = m.root(grant(&[
        "send_email:/srv/mail where to ends-with @company.com",
        "search,read_inbox:/srv/mail",
        "delete_inbox:/srv/other",
    ]));
    let cap = capability(&token);
    let mut msg = tools_list(&[
        "send_email",
        "search",
        "read_inbox",
        "delete_inbox",
        "archive",
    ]);
    let tools = msg["result"]["tools"].as_array_mut().unwrap();
    tools.push(json!({"description": "no name"}));
    tools.push(json!({"name": 5}));
    tools.push(json!({"name": "search", "description": ""}));
    tools.push(json!({"name": "read_inbox"}));
    let removed = filter_tools(&mut msg, &cap, "/srv/mail");
    assert_eq!(removed, 4, "{msg}");
    assert_eq!(
        listed(&msg),
        vec![
            (
                "send_email".to_string(),
                "The send_email tool.\n\nMandate: your token allows this tool only where to \
                 ends-with \"@company.com\"."
                    .to_string()
            ),
            ("search".into(), "The search tool.".into()),
            ("read_inbox".into(), "The read_inbox tool.".into()),
            ("search".into(), "".into()),
            ("read_inbox".into(), "".into()),
        ]
    );
    // Everything else of the message is kept.
    assert_eq!(msg["result"]["nextCursor"], "c");
    assert_eq!(msg["id"], 4);
    assert_eq!(
        msg["result"]["tools"][0]["inputSchema"],
        json!({"type": "object"})
    );

    // On another resource, only what is granted there.
    let mut msg = tools_list(&["send_email", "search", "delete_inbox"]);
    assert_eq!(filter_tools(&mut msg, &cap, "/srv/other"), 2);
    assert_eq!(listed(&msg)[0].0, "delete_inbox");

    // A hop narrowing to search: send_email is gone.
    let narrowed = m.hop(&token, grant(&["search:/srv/mail"]));
    let mut msg = tools_list(&["send_email", "search", "read_inbox"]);
    assert_eq!(
        filter_tools(&mut msg, &capability(&narrowed), "/srv/mail"),
        2
    );
    assert_eq!(
        listed(&msg),
        vec![("search".to_string(), "The search tool.".to_string())]
    );

    // A hop allowing nothing in common with the root: every tool is gone.
    let nothing = m.hop(&token, grant(&["pay:/srv/bank"]));
    let cap = capability(&nothing);
    assert!(cap.nothing);
    let mut msg = tools_list(&["send_email", "search", "pay"]);
    assert_eq!(filter_tools(&mut msg, &cap, "/srv/mail"), 3);
    assert!(listed(&msg).is_empty());
}

#[test]
fn filter_tools_names_approvals_proofs_and_datalog() {
    let m = Mint::new();
    let finance = KeyPair::new();
    let mut g = Grant::parse(&["pay,refund:/srv/mail"], &["amount<=1000"])
        .unwrap()
        .with_approval(&format!(
            "pay when amount>100 by finance={}",
            finance.public()
        ))
        .unwrap();
    g.holder_bound = true;
    let token = m.root(g);
    let mut msg = tools_list(&["pay", "refund"]);
    assert_eq!(filter_tools(&mut msg, &capability(&token), "/srv/mail"), 0);
    let l = listed(&msg);
    assert!(
        l[0].1
            .contains("only where amount<=1000 and with an approval by finance when amount>100"),
        "{}",
        l[0].1
    );
    assert!(
        l[0].1.contains("each call needs a proof of possession"),
        "{}",
        l[0].1
    );
    assert!(l[1].1.contains("only where amount<=1000;"), "{}", l[1].1);
    assert!(!l[1].1.contains("approval"), "{}", l[1].1);

    // Two ways to call search, one of them unconstrained: nothing to say.
    let token = m.root(grant(&["search:/srv/mail where q=x", "search:/srv/mail"]));
    let mut msg = tools_list(&["search"]);
    filter_tools(&mut msg, &capability(&token), "/srv/mail");
    assert_eq!(listed(&msg)[0].1, "The search tool.");
    // Two constrained ways: both said.
    let token = m.root(grant(&[
        "search:/srv/mail where q=x",
        "search:/srv/mail where n<=3",
    ]));
    let mut msg = tools_list(&["search"]);
    filter_tools(&mut msg, &capability(&token), "/srv/mail");
    assert!(
        listed(&msg)[0]
            .1
            .ends_with("only where q=\"x\", or where n<=3."),
        "{}",
        listed(&msg)[0].1
    );

    // Raw Datalog in a hop: kept, and said.
    let root = m.root(grant(&["search:/srv/mail"]));
    let mut g = Grant::default();
    g.datalog
        .push("check if time($t), $t < 2999-01-01T00:00:00Z".to_string());
    let hop = m.hop(&root, g);
    let mut msg = tools_list(&["search", "send_email"]);
    assert_eq!(filter_tools(&mut msg, &capability(&hop), "/srv/mail"), 1);
    assert!(
        listed(&msg)[0]
            .1
            .contains("further Datalog checks of the token apply"),
        "{}",
        listed(&msg)[0].1
    );
}

#[test]
fn filter_tools_leaves_what_is_not_a_tools_list_alone() {
    let m = Mint::new();
    let cap = capability(&m.root(grant(&["search:/srv/mail"])));
    for msg in [
        json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -1, "message": "no"}}),
        json!({"jsonrpc": "2.0", "id": 4, "result": {}}),
        json!({"jsonrpc": "2.0", "id": 4, "result": {"tools": "x"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress"}),
        json!([1, 2]),
    ] {
        let mut copy = msg.clone();
        assert_eq!(filter_tools(&mut copy, &cap, "/srv/mail"), 0);
        assert_eq!(copy, msg);
    }
}

/// One way to pick a grant alternative: actions from the tools, a pattern
/// that may or may not cover `/mcp`, one optional constraint.
fn any_alternative() -> impl Strategy<Value = String> {
    (
        proptest::sample::subsequence(vec!["alpha", "beta", "gamma", "delta"], 1..=3),
        proptest::sample::select(vec!["/mcp", "/mcp/*", "/**", "/other", "/mcp/**"]),
        proptest::sample::select(vec![
            "",
            " where n<=10",
            " where n>=100",
            " where n<50",
            " where s=abc",
            " where s starts-with ab",
            " where s in abc|xyz",
            " where n>5 where n<=10",
        ]),
    )
        .prop_map(|(actions, pattern, constraint)| {
            format!("{}:{pattern}{constraint}", actions.join(","))
        })
}

fn mint() -> &'static Mint {
    static M: std::sync::OnceLock<Mint> = std::sync::OnceLock::new();
    M.get_or_init(Mint::new)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A tool `filter_tools` removes is never allowed by the verifier (nor
    /// allowed with an approval) for any of a set of argument choices;
    /// equivalently, a tool the verifier allows for some arguments is
    /// always listed.
    #[test]
    fn filter_tools_never_hides_a_tool_the_verifier_allows(
        root_alts in proptest::collection::vec(any_alternative(), 1..4),
        hop_alts in proptest::option::of(proptest::collection::vec(any_alternative(), 0..3)),
        approval in any::<bool>(),
    ) {
        let m = mint();
        let alts: Vec<&str> = root_alts.iter().map(String::as_str).collect();
        let mut root_grant = grant(&alts);
        if approval {
            let key = KeyPair::new().public();
            if let Ok(g) = root_grant.clone().with_approval(&format!("beta when n>5 by finance={key}")) {
                root_grant = g;
            }
        }
        let mut token = m.root(root_grant);
        if let Some(hop) = &hop_alts {
            let alts: Vec<&str> = hop.iter().map(String::as_str).collect();
            token = m.hop(&token, grant(&alts));
        }
        let tools = ["alpha", "beta", "gamma", "delta", "epsilon"];
        let mut msg = tools_list(&tools);
        filter_tools(&mut msg, &capability(&token), "/mcp");
        let kept: Vec<String> = listed(&msg).into_iter().map(|(n, _)| n).collect();
        let ns = [None, Some(0), Some(5), Some(6), Some(10), Some(11), Some(49), Some(50), Some(100), Some(150)];
        let ss = [None, Some("abc"), Some("abd"), Some("xyz"), Some("q")];
        for tool in tools {
            let mut allowed_with = None;
            for n in ns {
                for s in ss {
                    let mut r = mandate_spec::Request::new(tool, "/mcp");
                    if let Some(n) = n {
                        r = r.param("n", n);
                    }
                    if let Some(s) = s {
                        r = r.param("s", s);
                    }
                    let d = m.verifier.decide_presented(&token, &r, &Presented::default(), Check::Grant);
                    if d.is_allowed() || d.needs_approval() {
                        allowed_with.get_or_insert((n, s, d.decision));
                    }
                }
            }
            if let Some(how) = allowed_with {
                prop_assert!(
                    kept.iter().any(|k| k == tool),
                    "{} removed, but allowed with {:?}; token {:?} / {:?}",
                    tool, how, root_alts, hop_alts
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The mapping behind the middleware

async fn send_mcp(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&Json>,
    content_type: &str,
) -> (StatusCode, Option<String>, Json) {
    let mut b = http::Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(j) => {
            b = b.header("content-type", content_type);
            Body::from(serde_json::to_vec(j).unwrap())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(b.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    )
}

#[tokio::test]
async fn behind_the_middleware_refusals_are_json_rpc_errors_and_housekeeping_needs_only_a_token() {
    let m = Mint::new();
    let token = token_to_text(&m.root(grant(&["search:/mcp where q=x"])));
    assert_eq!(
        grant(&["search:/mcp where q=x"]).alternatives[0]
            .constraints
            .len(),
        1
    );
    let layer = MandateLayer::new(m.verifier.clone(), McpMap::new("/mcp", None, 4096))
        .resource_metadata("https://gw.example.com/.well-known/oauth-protected-resource/mcp")
        .unwrap();
    let app = Router::new()
        .route("/mcp", any_method_route(|| async { "forwarded" }))
        .route("/mcp/{*rest}", any_method_route(|| async { "forwarded" }))
        .layer(layer);
    let t = Some(token.as_str());
    let json = "application/json";
    let search = request(
        json!(7),
        "tools/call",
        json!({"name": "search", "arguments": {"q": "x"}}),
    );

    // Allowed: a granted call, housekeeping with no grant, the client's
    // response, a notification, the event stream, the session's end.
    for (method, uri, body) in [
        ("POST", "/mcp", Some(&search)),
        ("POST", "/mcp", Some(&request(json!(1), "ping", json!({})))),
        (
            "POST",
            "/mcp",
            Some(&request(json!(1), "tools/list", json!({}))),
        ),
        (
            "POST",
            "/mcp",
            Some(&json!({"jsonrpc": "2.0", "id": 0, "result": {}})),
        ),
        (
            "POST",
            "/mcp",
            Some(&notification("notifications/cancelled")),
        ),
        ("GET", "/mcp", None),
        ("DELETE", "/mcp", None),
    ] {
        let (status, _, _) = send_mcp(&app, method, uri, t, body, json).await;
        assert_eq!(status, StatusCode::OK, "{method} {uri} {body:?}");
    }
    // The same without a token: 401 with the challenge, a JSON-RPC error
    // answering the request's id.
    let (status, challenge, e) = send_mcp(&app, "POST", "/mcp", None, Some(&search), json).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = challenge.unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"mandate\""),
        "{challenge}"
    );
    assert!(!challenge.contains("error="), "{challenge}");
    assert!(
        challenge.contains("resource_metadata=\"https://gw.example.com/"),
        "{challenge}"
    );
    assert_eq!(e["id"], 7);
    assert_eq!(e["error"]["code"], denial_code(DenialKind::MissingToken));
    for (method, body) in [("GET", None), ("DELETE", None)] {
        let (status, _, e) = send_mcp(&app, method, "/mcp", None, body, json).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
        assert!(e.get("id").is_none());
    }
    // A garbage token: invalid_token.
    let (status, challenge, e) =
        send_mcp(&app, "POST", "/mcp", Some("AAAA"), Some(&search), json).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    assert_eq!(e["error"]["code"], denial_code(DenialKind::MalformedToken));
    assert_eq!(e["id"], 7);
    // Not granted: 403 insufficient_scope, the reason as the message.
    let other = request(
        json!("x"),
        "tools/call",
        json!({"name": "search", "arguments": {"q": "y"}}),
    );
    let (status, challenge, e) = send_mcp(&app, "POST", "/mcp", t, Some(&other), json).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\""));
    assert_eq!(e["id"], "x");
    assert_eq!(e["error"]["code"], denial_code(DenialKind::NotAllowed));
    assert_eq!(e["error"]["message"], e["error"]["data"]["reason"]);
    assert!(e["error"]["message"].as_str().unwrap().contains("q"), "{e}");
    // Below the route: not the endpoint (404), a granted call included,
    // answered as a JSON-RPC error.
    for (uri, body) in [
        ("/mcp/x", request(json!(2), "ping", json!({}))),
        ("/mcp/", search.clone()),
    ] {
        let (status, _, e) = send_mcp(&app, "POST", uri, t, Some(&body), json).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(e["id"], body["id"], "{uri}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("exact path only"), "{uri}: {e}");
    }
    for method in ["GET", "DELETE"] {
        let (status, _, _) = send_mcp(&app, method, "/mcp/x", t, None, json).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    // Refusals before any decision: no challenge, JSON-RPC codes.
    let half = request(
        json!(3),
        "tools/call",
        json!({"name": "search", "arguments": {"q": 2.5}}),
    );
    let (status, challenge, e) = send_mcp(&app, "POST", "/mcp", t, Some(&half), json).await;
    assert_eq!((status, challenge), (StatusCode::BAD_REQUEST, None));
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(3), json!(INVALID_PARAMS))
    );
    let (status, _, e) = send_mcp(&app, "POST", "/mcp?x=1", t, Some(&search), json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["code"], INVALID_REQUEST);
    let (status, _, e) = send_mcp(&app, "POST", "/mcp", t, Some(&search), "text/plain").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(e["error"]["code"], INVALID_REQUEST);
    assert!(e.get("id").is_none());
    let big = request(
        json!(4),
        "tools/call",
        json!({"name": "search", "arguments": {"q": "x".repeat(5000)}}),
    );
    let (status, _, e) = send_mcp(&app, "POST", "/mcp", t, Some(&big), json).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(e["error"]["code"], INVALID_REQUEST);
}

#[test]
fn an_unknown_http_method_is_decided_as_itself() {
    // `http` keeps unknown methods as sent: decided as themselves.
    let map = mail();
    let p = parts("PROPFIND", "/mcp", &[]);
    assert_eq!(p.method, Method::from_bytes(b"PROPFIND").unwrap());
    let (r, c) = map.map_check(&p, None).unwrap();
    assert_eq!((r.action.as_str(), c), ("http.propfind", Check::Grant));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The gateway splits an event stream as its bytes arrive: however the
    /// body is cut into chunks (a `\r\n` cut in two included), the same
    /// events come out as from the whole body at once.
    #[test]
    fn events_are_the_same_however_the_stream_is_chunked(
        events in proptest::collection::vec(any_event(), 0..6),
        eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        cuts in proptest::collection::vec(0usize..400, 0..8),
    ) {
        let mut body = String::new();
        for e in &events {
            body.push_str(&e.join("\n").replace("\n  ", "\ndata:   ").replace('\n', eol));
            body.push_str(eol);
            body.push_str(eol);
        }
        let bytes = body.as_bytes();
        let whole = mandate_server::mcp::EventSplitter::default().push(bytes).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut splitter = mandate_server::mcp::EventSplitter::default();
        let mut chunked = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            chunked.extend(splitter.push(&bytes[at..c]).unwrap());
            at = c;
        }
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(whole.len(), events.len());
    }
}
