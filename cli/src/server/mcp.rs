//! The gateway's MCP dialect (SPEC §17): the request a JSON-RPC message (MCP
//! over streamable HTTP) asks the verifier to decide and what it must pass,
//! the JSON-RPC error a refusal is answered with, the binding of sessions to
//! the token family that opened them, and the filtering of `tools/list`
//! answers to what the token allows. Public so that the fuzz target and the
//! tests run this very code.

use hmac::{Hmac, Mac};
use http::request::Parts;
use http::StatusCode;
use mandate_spec::{Capability, Value};
use mandate_verifier::http::{MapError, MapRequest, Refusal};
use mandate_verifier::{Check, DenialKind};
use serde_json::{json, Map, Value as Json};

/// The JSON-RPC methods that act on nothing (SPEC §17): on the route's
/// exact path they need a valid, unrevoked token but no grant. The
/// [`CLIENT_NOTIFICATIONS`] and every response from the client belong here
/// too.
pub const HOUSEKEEPING: [&str; 9] = [
    "initialize",
    "ping",
    "server/discover",
    "logging/setLevel",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "subscriptions/listen",
];

/// Whether a request announces a body (a length above zero, or chunked).
fn carries_body(parts: &Parts) -> bool {
    parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// The resource a 2026-07-28 `subscriptions/listen` subscribes to
/// (`params.notifications.resourceSubscriptions`): `None` when none, one URI
/// decided like `resources/subscribe`; several are refused (one decision
/// per request).
fn listened_resources(params: Option<&Map<String, Json>>) -> Result<Option<&str>, MapError> {
    let list = params
        .and_then(|p| p.get("notifications"))
        .and_then(|n| n.get("resourceSubscriptions"));
    match list {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Array(a)) if a.is_empty() => Ok(None),
        Some(Json::Array(a)) if a.len() == 1 => a[0].as_str().map(Some).ok_or_else(|| {
            MapError::bad_request("invalid params: a resource subscription is a URI string")
        }),
        Some(_) => Err(MapError::bad_request(
            "invalid params: subscribe to one resource per subscriptions/listen (each is \
             decided on its URI)",
        )),
    }
}

/// The notifications a client sends in the MCP revisions the gateway reads
/// (SPEC §17): housekeeping on the route's exact path. Any other
/// notification (a server's own) is decided on its grant: an unknown
/// message may act.
pub const CLIENT_NOTIFICATIONS: [&str; 5] = [
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

/// The action a client's JSON-RPC response (to a server's request) is
/// recorded as.
pub const RESPONSE_ACTION: &str = "mcp.response";

/// Headers a 2026-07-28 client repeats from the body; the gateway refuses a
/// request whose headers and body disagree (the server could route on one
/// and the decision read the other).
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";

/// The stable JSON-RPC error code of each denial kind (SPEC §17), in the
/// implementation-defined server-error range, clear of the codes the MCP
/// SDKs and specification use (-32000 to -32002, -32020 to -32022, -32042).
pub fn denial_code(kind: DenialKind) -> i64 {
    match kind {
        DenialKind::InvalidRequest => -32070,
        DenialKind::MissingToken => -32071,
        DenialKind::MalformedToken => -32072,
        DenialKind::BadSignature => -32073,
        DenialKind::UnknownRootKey => -32074,
        DenialKind::BrokenChain => -32075,
        DenialKind::DepthExceeded => -32076,
        DenialKind::Expired => -32077,
        DenialKind::Revoked => -32078,
        DenialKind::RevocationUnavailable => -32079,
        DenialKind::NotAllowed => -32080,
        DenialKind::Evaluation => -32081,
        DenialKind::NeedsApproval => -32082,
        DenialKind::ApprovalMismatch => -32083,
        DenialKind::ApprovalExpired => -32084,
        DenialKind::ApprovalWrongApprover => -32085,
        DenialKind::ApprovalReplayed => -32086,
        DenialKind::ProofMissing => -32087,
        DenialKind::ProofInvalid => -32088,
        DenialKind::ReplayRecordUnavailable => -32089,
        DenialKind::LimitExceeded => -32094,
        DenialKind::LimitUnavailable => -32095,
        DenialKind::Restricted => -32096,
        // A kind added later: its own code is assigned with it (SPEC §17).
        _ => OTHER_DENIAL,
    }
}

/// A denial of a kind without a code of its own yet.
pub const OTHER_DENIAL: i64 = -32069;
/// A session id that is not bound to the presented token (SPEC §17).
pub const SESSION_NOT_FOUND: i64 = -32090;
/// The audit log cannot record the decision: nothing is forwarded.
pub const AUDIT_UNAVAILABLE: i64 = -32091;
/// The upstream could not be reached or broke the connection (502).
pub const UPSTREAM_UNREACHABLE: i64 = -32092;
/// The upstream did not answer within the route's timeout (504).
pub const UPSTREAM_TIMEOUT: i64 = -32093;
/// JSON-RPC 2.0: the message is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0: invalid method parameters (e.g. a non-integral number).
pub const INVALID_PARAMS: i64 = -32602;

/// What one JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Message<'a> {
    /// A request: it has a method and an id, and waits for a response.
    Request {
        /// Its id (a string or a number).
        id: &'a Json,
        /// Its method.
        method: &'a str,
        /// Its `params`, when an object.
        params: Option<&'a Map<String, Json>>,
    },
    /// A notification: a method and no id. JSON-RPC 2.0 (§4.1) makes it
    /// a request whose answer is omitted: a server may act on it as on
    /// the request.
    Notification {
        /// Its method.
        method: &'a str,
        /// Its `params`, when an object.
        params: Option<&'a Map<String, Json>>,
    },
    /// The client's response to a server's request: an id and a `result`
    /// or an `error`, no method.
    Response,
}

impl<'a> Message<'a> {
    /// Reads one message; a batch or anything that is not a JSON-RPC 2.0
    /// message is refused (400).
    pub fn read(msg: &'a Json) -> Result<Message<'a>, MapError> {
        let bad = |m: &str| MapError::bad_request(m);
        let obj = match msg {
            Json::Object(o) => o,
            Json::Array(_) => {
                return Err(bad(
                    "JSON-RPC batches are not accepted: send one message per request",
                ))
            }
            _ => return Err(bad("the body is not a JSON-RPC message (an object)")),
        };
        if obj.get("jsonrpc").and_then(Json::as_str) != Some("2.0") {
            return Err(bad(
                "not a JSON-RPC 2.0 message: \"jsonrpc\": \"2.0\" is missing",
            ));
        }
        one_reading(obj)?;
        let id = match obj.get("id") {
            None => None,
            Some(id @ Json::String(_)) => Some(id),
            // An id written otherwise than as an exact integer (`1.0`,
            // `1e0`, beyond 2^53) comes back from servers as another
            // spelling: the answer could not be matched to the request.
            Some(id @ Json::Number(n)) if exact_integer(n).is_some() => Some(id),
            Some(_) => {
                return Err(bad(
                    "a JSON-RPC id is a string or an integer (within 2^53, written as one)",
                ))
            }
        };
        match (obj.get("method"), id) {
            (Some(Json::String(method)), Some(id)) => Ok(Message::Request {
                id,
                method,
                params: obj.get("params").and_then(Json::as_object),
            }),
            (Some(Json::String(method)), None) => Ok(Message::Notification {
                method,
                params: obj.get("params").and_then(Json::as_object),
            }),
            (Some(_), _) => Err(bad("a JSON-RPC method is a string")),
            (None, Some(_)) if obj.contains_key("result") ^ obj.contains_key("error") => {
                Ok(Message::Response)
            }
            (None, _) => Err(bad(
                "a JSON-RPC message needs a method (a request or notification) or an id \
                 with a result or an error (a response)",
            )),
        }
    }

    /// The method, for a request or a notification.
    pub fn method(&self) -> Option<&'a str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response => None,
        }
    }
}

/// The members of a JSON-RPC 2.0 message.
const ENVELOPE: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// The members of `params` the decision reads.
const DECIDED_PARAMS: [&str; 4] = ["name", "uri", "arguments", "notifications"];

/// The members of `params.notifications` the decision reads.
const DECIDED_NOTIFICATIONS: [&str; 1] = ["resourceSubscriptions"];

/// A key as a case-insensitive JSON decoder matches it (Go's
/// `encoding/json` folds each rune to its Unicode simple-fold class: `S`,
/// `s` and `ſ` alike, `é` and `É`, `µ`, `μ` and `Μ`). Here: each character
/// lower-cased after upper-casing, when both are single characters — the
/// same classes, or coarser (a coarser class only refuses more).
fn folded(key: &str) -> std::borrow::Cow<'_, str> {
    // Most keys fold to themselves: no allocation for them.
    if key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return std::borrow::Cow::Borrowed(key);
    }
    std::borrow::Cow::Owned(key.chars().map(fold_char).collect())
}

fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    fn one(mut it: impl Iterator<Item = char>) -> Option<char> {
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }
    let upper = one(c.to_uppercase()).unwrap_or(c);
    one(upper.to_lowercase())
        .or_else(|| one(c.to_lowercase()))
        .unwrap_or(c)
}

/// Refuses what a server could read otherwise than the decision (SPEC
/// §17): a member outside the JSON-RPC envelope; in any object, two keys
/// a case-insensitive decoder takes for one (`method` and `METHOD`, `to`
/// and `To`); in `params`, a spelling of `name`, `uri` or `arguments`
/// other than the exact one (`Arguments` is `arguments` to such a server,
/// and nothing to the decision).
fn one_reading(obj: &Map<String, Json>) -> Result<(), MapError> {
    if let Some(k) = obj.keys().find(|k| !ENVELOPE.contains(&k.as_str())) {
        return Err(MapError::bad_request(format!(
            "member {k:?} is not part of a JSON-RPC message (a server could read it as one)"
        )));
    }
    if let Some(Json::Object(params)) = obj.get("params") {
        exact_spelling(params, &DECIDED_PARAMS, "params")?;
        if let Some(Json::Object(n)) = params.get("notifications") {
            exact_spelling(n, &DECIDED_NOTIFICATIONS, "params.notifications")?;
        }
    }
    no_folded_duplicates_in(obj)
}

/// In `obj`, a key that folds like one of `decided` is spelled exactly as
/// it: a case-insensitive server reads `Arguments` as `arguments`, which
/// the decision would not.
fn exact_spelling(obj: &Map<String, Json>, decided: &[&str], at: &str) -> Result<(), MapError> {
    for k in obj.keys() {
        let f = folded(k);
        if let Some(d) = decided.iter().find(|d| folded(d) == f) {
            if k != d {
                return Err(MapError::bad_request(format!(
                    "{at} member {k:?}: a server could read it as {d:?}; spell it exactly"
                )));
            }
        }
    }
    Ok(())
}

/// No object in `v` has two keys that fold to the same ([`folded`]).
fn no_folded_duplicates(v: &Json) -> Result<(), MapError> {
    match v {
        Json::Object(o) => no_folded_duplicates_in(o),
        Json::Array(a) => a.iter().try_for_each(no_folded_duplicates),
        _ => Ok(()),
    }
}

fn no_folded_duplicates_in(o: &Map<String, Json>) -> Result<(), MapError> {
    let mut seen = std::collections::HashMap::new();
    for (k, inner) in o {
        if let Some(first) = seen.insert(folded(k), k) {
            return Err(MapError::bad_request(format!(
                "keys {first:?} and {k:?} differ only in letter case: a server could read \
                 either"
            )));
        }
        no_folded_duplicates(inner)?;
    }
    Ok(())
}

/// How an MCP route's requests become the requests the verifier decides:
/// the [`MapRequest`] of the gateway's MCP routes.
#[derive(Debug, Clone)]
pub struct McpMap {
    route_path: String,
    resource: Option<String>,
    max_body: usize,
}

impl McpMap {
    /// The mapping of a route at `route_path` (exact), deciding requests to
    /// that path on `resource` (else the path itself), reading bodies up to
    /// `max_body` bytes.
    pub fn new(route_path: &str, resource: Option<&str>, max_body: usize) -> McpMap {
        McpMap {
            route_path: route_path.to_string(),
            resource: resource.map(str::to_string),
            max_body,
        }
    }

    /// The resource a request on `path` (the route's exact path: nothing
    /// else is mapped) is decided on: the route's `resource`, else the path.
    pub fn resource_for(&self, path: &str) -> String {
        match &self.resource {
            Some(r) => r.clone(),
            None => path.to_string(),
        }
    }
}

impl MapRequest for McpMap {
    fn body_limit(&self, parts: &Parts) -> Option<usize> {
        (parts.method == http::Method::POST).then_some(self.max_body)
    }

    fn max_body(&self) -> usize {
        self.max_body
    }

    fn map(&self, parts: &Parts, body: Option<&Json>) -> Result<mandate_spec::Request, MapError> {
        self.map_check(parts, body).map(|(r, _)| r)
    }

    /// - `GET` (the server's event stream) and `DELETE` (end of session) on
    ///   the exact path: housekeeping, as action `http.get` / `http.delete`;
    ///   any other method, or a sub-path: decided as `http.<method>`.
    /// - A `POST` carries one JSON-RPC message: `tools/call` is decided as
    ///   action = the tool, parameters = its string and integer arguments;
    ///   `resources/read|subscribe|unsubscribe` as `resources.read` … with
    ///   parameter `uri`; `prompts/get` as `prompts.get` with parameter
    ///   `name`; a housekeeping method ([`HOUSEKEEPING`]), a client's
    ///   notification ([`CLIENT_NOTIFICATIONS`]) or a client's response on
    ///   the exact path needs the token only; any other method is decided
    ///   as itself with `/` as `.`. Any other notification is mapped as the
    ///   request with its method and params (a `tools/call` without an id
    ///   is decided on the tool and its arguments) and checked against the
    ///   grants.
    fn map_check(
        &self,
        parts: &Parts,
        body: Option<&Json>,
    ) -> Result<(mandate_spec::Request, Check), MapError> {
        // The decision reads the JSON-RPC body; a query string would reach
        // the server undecided (a second parser): refused.
        if parts.uri.query().is_some() {
            return Err(MapError::bad_request(
                "an MCP route takes no query string: it would reach the server without \
                 being decided",
            ));
        }
        let path = parts.uri.path();
        // The streamable HTTP transport has one endpoint. A path below it
        // is refused: servers resolve `/mcp/` (and `/MCP`) as `/mcp`, so a
        // grant on a sub-path would open the endpoint itself.
        if path != self.route_path {
            return Err(MapError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "an MCP route serves its exact path only ({}), as the transport has \
                     one endpoint",
                    self.route_path
                ),
            });
        }
        let resource = self.resource_for(path);
        if parts.method != http::Method::POST {
            // GET (the event stream) and DELETE (end of session) carry no
            // message: a body would reach the server undecided.
            if carries_body(parts) {
                return Err(MapError::bad_request(format!(
                    "an MCP {} carries no body: it would reach the server undecided",
                    parts.method
                )));
            }
            let action = format!("http.{}", parts.method.as_str().to_ascii_lowercase());
            let housekeeping =
                parts.method == http::Method::GET || parts.method == http::Method::DELETE;
            return Ok((
                mandate_spec::Request::new(action, resource),
                if housekeeping {
                    Check::Token
                } else {
                    Check::Grant
                },
            ));
        }
        let msg =
            body.ok_or_else(|| MapError::bad_request("an MCP POST carries a JSON-RPC message"))?;
        let message = Message::read(msg)?;
        headers_agree(parts, &message)?;
        let token_only = |action: String| -> (mandate_spec::Request, Check) {
            (
                mandate_spec::Request::new(action, resource.clone()),
                Check::Token,
            )
        };
        let (method, params, notification) = match message {
            Message::Response => return Ok(token_only(RESPONSE_ACTION.to_string())),
            Message::Notification { method, .. } if CLIENT_NOTIFICATIONS.contains(&method) => {
                return Ok(token_only(action_of(method)))
            }
            Message::Notification { method, params } => (method, params, true),
            Message::Request { method, params, .. } => (method, params, false),
        };
        let (request, check) = match method {
            "tools/call" => (tool_call(params, resource)?, Check::Grant),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => (
                with_string_param(action_of(method), resource, params, "uri")?,
                Check::Grant,
            ),
            "prompts/get" => (
                with_string_param(action_of(method), resource, params, "name")?,
                Check::Grant,
            ),
            "subscriptions/listen" => match listened_resources(params)? {
                // The 2026-07-28 stream: housekeeping unless it subscribes
                // to a resource, which is decided as resources/subscribe.
                None => token_only(action_of(method)),
                Some(uri) => {
                    let mut r = mandate_spec::Request::new("resources.subscribe", resource);
                    r.params.insert("uri".into(), Value::Str(uri.to_string()));
                    (r, Check::Grant)
                }
            },
            m if HOUSEKEEPING.contains(&m) => token_only(action_of(m)),
            m => (
                mandate_spec::Request::new(action_of(m), resource),
                Check::Grant,
            ),
        };
        // Any other notification is mapped as the request it would be with
        // an id (JSON-RPC 2.0 §4.1: a notification is a request whose answer
        // is omitted, and servers act on it; a `tools/call` without an id
        // may run the tool), so the id never changes what is decided. It is
        // never housekeeping: only the client's notifications listed are.
        Ok((request, if notification { Check::Grant } else { check }))
    }

    fn describe(&self) -> String {
        format!(
            "mcp v2 route={:?} resource={:?} max_body={} housekeeping={HOUSEKEEPING:?} \
             notifications={CLIENT_NOTIFICATIONS:?}",
            self.route_path, self.resource, self.max_body
        )
    }

    fn refusal_body(&self, body: Option<&Json>, refusal: Refusal<'_>) -> Option<Json> {
        Some(error_body(body, refusal))
    }
}

/// A JSON-RPC method as an action: `/` becomes `.` (`resources/read` →
/// `resources.read`).
fn action_of(method: &str) -> String {
    method.replace('/', ".")
}

/// `tools/call`: action = `params.name`, parameters = its arguments.
fn tool_call(
    params: Option<&Map<String, Json>>,
    resource: String,
) -> Result<mandate_spec::Request, MapError> {
    let name = params
        .and_then(|p| p.get("name"))
        .and_then(Json::as_str)
        .ok_or_else(|| MapError::bad_request("tools/call needs params.name (a string)"))?;
    let mut request = mandate_spec::Request::new(name, resource);
    if let Some(args) = params
        .and_then(|p| p.get("arguments"))
        .filter(|a| !a.is_null())
    {
        let Some(args) = args.as_object() else {
            return Err(MapError::bad_request(
                "invalid params: tools/call arguments must be an object",
            ));
        };
        // Arguments that are not parameters (booleans, null, arrays,
        // objects) are still part of what is done: one parameter carries
        // them, so an approval's digest binds them and an approver sees
        // them (SPEC §17).
        let mut others = Map::new();
        for (k, v) in args {
            match parameter(k, v)? {
                Some(value) => {
                    request.params.insert(k.clone(), value);
                }
                None => {
                    others.insert(k.clone(), v.clone());
                }
            }
        }
        if !others.is_empty() {
            if args.contains_key(OTHER_ARGUMENTS) {
                return Err(MapError::bad_request(format!(
                    "invalid params: the argument name {OTHER_ARGUMENTS:?} is reserved"
                )));
            }
            request.params.insert(
                OTHER_ARGUMENTS.into(),
                Value::Str(mandate_verifier::http::other_fields(&others)),
            );
        }
    }
    Ok(request)
}

/// The parameter carrying a tool call's arguments that are not parameters.
pub const OTHER_ARGUMENTS: &str = "mcp.other_arguments";

/// The largest integer every integer below is exact in a double: 2^53.
const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0;

/// `n` when written as an integer within ±2^53, the integers every JSON
/// reader (a JavaScript server's doubles included) reads alike.
fn exact_integer(n: &serde_json::Number) -> Option<i64> {
    n.as_i64()
        .filter(|i| i.unsigned_abs() <= EXACT_IN_F64 as u64)
}

/// A tool argument as a parameter: a string, or an integral number (`2`
/// and `2.0` alike, within ±2^53: beyond, readers disagree on the value). Booleans, null, arrays and objects are
/// not parameters (a constraint on them denies: the parameter is missing;
/// together they are the one parameter [`OTHER_ARGUMENTS`]);
/// a number that is not an integer is refused, since no constraint could
/// be decided on it.
pub fn parameter(name: &str, v: &Json) -> Result<Option<Value>, MapError> {
    match v {
        Json::String(s) => Ok(Some(Value::Str(s.clone()))),
        Json::Number(n) => {
            if let Some(i) = exact_integer(n) {
                return Ok(Some(Value::Int(i)));
            }
            // An integral number written as a float (2.0, -5e3): its
            // integer, while every integer up to it is exact in a double
            // (2^53), so the server reads the same number. An integer
            // literal beyond 2^53 is not read again as a double (it would
            // round into range).
            match n.as_f64().filter(|_| n.is_f64()) {
                Some(f) if f.fract() == 0.0 && (-EXACT_IN_F64..=EXACT_IN_F64).contains(&f) => {
                    Ok(Some(Value::Int(f as i64)))
                }
                _ => Err(MapError::bad_request(format!(
                    "invalid params: argument {name:?} is {n}, not an integer within ±2^53 \
                     (beyond, servers read another number): Mandate parameters are strings \
                     and integers"
                ))),
            }
        }
        _ => Ok(None),
    }
}

/// A request whose one parameter `param` is the string `params.<param>`.
fn with_string_param(
    action: String,
    resource: String,
    params: Option<&Map<String, Json>>,
    param: &str,
) -> Result<mandate_spec::Request, MapError> {
    let value = params
        .and_then(|p| p.get(param))
        .and_then(Json::as_str)
        .ok_or_else(|| {
            MapError::bad_request(format!(
                "invalid params: {action} needs params.{param} (a string)"
            ))
        })?;
    let mut request = mandate_spec::Request::new(action, resource);
    request
        .params
        .insert(param.to_string(), Value::Str(value.to_string()));
    Ok(request)
}

/// A 2026-07-28 client repeats the method (`Mcp-Method`) and the tool name
/// or resource URI (`Mcp-Name`) in headers; a server may route on them. When
/// sent, they must say what the body says (the decision reads the body).
fn headers_agree(parts: &Parts, message: &Message<'_>) -> Result<(), MapError> {
    let header = |name: &str| -> Result<Option<&str>, MapError> {
        let mut values = parts.headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(MapError::bad_request(format!("header {name} given twice")));
        }
        first
            .to_str()
            .map(Some)
            .map_err(|_| MapError::bad_request(format!("header {name} is not text")))
    };
    if let Some(sent) = header(METHOD_HEADER)? {
        if Some(sent) != message.method() {
            return Err(MapError::bad_request(format!(
                "header Mcp-Method {sent:?} does not match the body's method"
            )));
        }
    }
    if let Some(sent) = header(NAME_HEADER)? {
        // The field the decision reads: a resource's `uri`, else `name`
        // (never the other one, which the decision did not read).
        let named = match message {
            Message::Request {
                method,
                params: Some(p),
                ..
            } => {
                let field = if method.starts_with("resources/") {
                    "uri"
                } else {
                    "name"
                };
                p.get(field).and_then(Json::as_str)
            }
            _ => None,
        };
        if named != Some(sent) {
            return Err(MapError::bad_request(format!(
                "header Mcp-Name {sent:?} does not match the body's name or uri"
            )));
        }
    }
    Ok(())
}

/// The JSON-RPC error response for a refusal: the request's id (none for a
/// notification or a response, as the transport allows), a stable code
/// ([`denial_code`], or JSON-RPC's own for a malformed message), the reason
/// in words as `message`, and the decision (or the HTTP status) as `data`.
pub fn error_body(body: Option<&Json>, refusal: Refusal<'_>) -> Json {
    let reason = refusal.reason();
    let (code, data) = match refusal {
        Refusal::Denied(decision) => {
            let code = decision
                .denial
                .as_ref()
                .map_or(denial_code(DenialKind::NotAllowed), |d| denial_code(d.kind));
            let mut data = serde_json::to_value(decision).unwrap_or(Json::Null);
            if let Json::Object(o) = &mut data {
                o.insert("reason".into(), Json::String(reason.to_string()));
            }
            (code, data)
        }
        Refusal::Error(status, _) => (
            error_code(status, reason),
            json!({ "status": status.as_u16(), "reason": reason }),
        ),
    };
    let mut out = json!({
        "jsonrpc": "2.0",
        "error": { "code": code, "message": reason, "data": data },
    });
    let id = body.and_then(|b| match Message::read(b) {
        Ok(Message::Request { id, .. }) => Some(id.clone()),
        _ => None,
    });
    if let (Some(id), Json::Object(o)) = (id, &mut out) {
        o.insert("id".into(), id);
    }
    out
}

/// The code of a refusal that is not a denial, by its status.
fn error_code(status: StatusCode, reason: &str) -> i64 {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => AUDIT_UNAVAILABLE,
        StatusCode::BAD_GATEWAY => UPSTREAM_UNREACHABLE,
        StatusCode::GATEWAY_TIMEOUT => UPSTREAM_TIMEOUT,
        StatusCode::NOT_FOUND if reason.contains("session") => SESSION_NOT_FOUND,
        _ if reason.starts_with("invalid params") => INVALID_PARAMS,
        _ => INVALID_REQUEST,
    }
}

/// Binds MCP session ids to their owner (SPEC §17: the route, the token
/// family and the delegation chain of the token that opened them): the
/// client sees `<upstream id>.<tag>`, where the tag is a MAC over the owner
/// and the upstream's id under a key only gateways hold. A request
/// presenting the id with another owner's token (or a forged tag) is
/// refused; the binding needs no memory, and gateways sharing the key share
/// sessions.
#[derive(Clone)]
pub struct Sessions {
    key: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(<key>)")
    }
}

/// Bytes of the tag (hex in the id): 128 bits.
const TAG_BYTES: usize = 16;

impl Sessions {
    /// Sessions bound under `key`.
    pub fn new(key: [u8; 32]) -> Sessions {
        Sessions { key }
    }

    fn mac(&self, owner: &str, upstream: &str) -> Hmac<sha2::Sha256> {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(b"mandate mcp session v1\0");
        mac.update(owner.as_bytes());
        mac.update(b"\0");
        mac.update(upstream.as_bytes());
        mac
    }

    /// The id the client is given for the upstream's session `upstream`,
    /// opened by `owner`.
    pub fn wrap(&self, owner: &str, upstream: &str) -> String {
        let tag = self.mac(owner, upstream).finalize().into_bytes();
        format!("{upstream}.{}", hex::encode(&tag[..TAG_BYTES]))
    }

    /// The upstream's session id in `presented`, when it was given to
    /// `owner`; `None` otherwise (another owner, a forged or bare id).
    pub fn unwrap<'a>(&self, owner: &str, presented: &'a str) -> Option<&'a str> {
        let (upstream, tag) = presented.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        self.mac(owner, upstream)
            .verify_truncated_left(&tag)
            .ok()
            .map(|()| upstream)
    }
}

/// Narrows a `tools/list` result (`message.result.tools`) to the tools
/// `capability` could allow on `resource` (SPEC §17), and appends to each
/// listed tool's description what the token requires of its arguments.
/// Filtering shows an agent what it may do; every call is still decided.
/// Returns how many tools were removed.
pub fn filter_tools(message: &mut Json, capability: &Capability, resource: &str) -> usize {
    let Some(tools) = message
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Json::as_array_mut)
    else {
        return 0;
    };
    let before = tools.len();
    tools.retain_mut(|tool| {
        let Some(name) = tool.get("name").and_then(Json::as_str) else {
            return false;
        };
        match allowance(capability, name, resource) {
            None => false,
            Some(words) => {
                if let (Some(words), Json::Object(t)) = (words, &mut *tool) {
                    let described = match t.get("description").and_then(Json::as_str) {
                        Some(d) if !d.is_empty() => format!("{d}\n\n{words}"),
                        _ => words,
                    };
                    t.insert("description".into(), Json::String(described));
                }
                true
            }
        }
    });
    before - tools.len()
}

/// Whether `capability` could allow tool `name` on `resource`: `None` if
/// not, else what it requires of the call in words (`None` inside: nothing
/// beyond the name).
fn allowance(capability: &Capability, name: &str, resource: &str) -> Option<Option<String>> {
    if capability.nothing {
        return None;
    }
    let mut extra = Vec::new();
    if !capability.datalog.is_empty() {
        extra.push("further Datalog checks of the token apply".to_string());
    }
    if capability.holder_bound {
        extra.push("each call needs a proof of possession".to_string());
    }
    if capability.alternatives.is_empty() {
        // Only raw Datalog restricts the token: it cannot be read here.
        return Some((!extra.is_empty()).then(|| format!("Mandate: {}.", extra.join("; "))));
    }
    let mut ways = Vec::new();
    for alt in capability
        .alternatives
        .iter()
        .filter(|a| a.actions.contains(name) && a.resource.matches(resource))
    {
        let mut way: Vec<String> = alt.constraints.iter().map(|c| c.to_string()).collect();
        if let Some(rule) = &alt.approval {
            let when: Vec<String> = rule.when.iter().map(|c| c.to_string()).collect();
            way.push(if when.is_empty() {
                format!("with an approval by {}", rule.approver)
            } else {
                format!(
                    "with an approval by {} when {}",
                    rule.approver,
                    when.join(" and ")
                )
            });
        }
        ways.push(way);
    }
    if ways.is_empty() {
        return None;
    }
    if ways.iter().any(Vec::is_empty) && extra.is_empty() {
        return Some(None);
    }
    let mut words: Vec<String> = ways
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| w.join(" and "))
        .collect();
    if ways.iter().any(Vec::is_empty) {
        words.clear();
    }
    let mut text = String::from("Mandate: your token allows this tool");
    if !words.is_empty() {
        text.push_str(&format!(" only where {}", words.join(", or where ")));
    }
    if !extra.is_empty() {
        text.push_str(&format!("; {}", extra.join("; ")));
    }
    text.push('.');
    Some(Some(text))
}

/// Splits a `text/event-stream` body into events as its bytes arrive
/// (the WHATWG event-stream rules the SDKs follow): lines end with `\r\n`,
/// `\n` or `\r`; a blank line ends an event; one leading byte-order mark is
/// dropped, as clients drop it.
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: Vec<u8>,
    lines: Vec<String>,
    started: bool,
    /// The last line ended with `\r`: a `\n` starting the next chunk is
    /// the rest of that line end.
    after_cr: bool,
}

/// The most bytes one event may hold before the stream is refused.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

impl EventSplitter {
    /// Takes `chunk` in; the events it completes (their lines joined with
    /// `\n`). An error when the stream is not UTF-8 or an event grows past
    /// [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(chunk);
        if !self.started {
            if self.buf.len() < 3 && b"\xef\xbb\xbf".starts_with(&self.buf) {
                return Ok(Vec::new());
            }
            if self.buf.starts_with(b"\xef\xbb\xbf") {
                self.buf.drain(..3);
            }
            self.started = true;
        }
        let mut events = Vec::new();
        let mut pos = 0;
        // (An empty chunk changes nothing: the `\n` may still come.)
        if !self.buf.is_empty() {
            if self.after_cr && self.buf[0] == b'\n' {
                pos = 1;
            }
            self.after_cr = false;
        }
        while let Some((len, next)) = line_end(&self.buf[pos..]) {
            let line = &self.buf[pos..pos + len];
            self.after_cr = self.buf[pos + len] == b'\r' && next == len + 1;
            if line.is_empty() {
                if !self.lines.is_empty() {
                    events.push(std::mem::take(&mut self.lines).join("\n"));
                }
            } else {
                let line = std::str::from_utf8(line)
                    .map_err(|_| "the event stream is not UTF-8".to_string())?;
                self.lines.push(line.to_string());
            }
            pos += next;
        }
        self.buf.drain(..pos);
        let pending = self.buf.len() + self.lines.iter().map(String::len).sum::<usize>();
        if pending > MAX_EVENT_BYTES {
            return Err(format!("an event is larger than {MAX_EVENT_BYTES} bytes"));
        }
        Ok(events)
    }
}

/// The length of the first line of `buf` and where the next starts; `None`
/// when no line end is there yet. A `\r` ends a line at once (a `\n` after
/// it, maybe in the next chunk, belongs to it), as clients read it.
fn line_end(buf: &[u8]) -> Option<(usize, usize)> {
    let i = buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
    match (buf[i], buf.get(i + 1)) {
        (b'\r', Some(b'\n')) => Some((i, i + 2)),
        _ => Some((i, i + 1)),
    }
}

/// One event (its lines) as it is passed on: its data's JSON message
/// changed by `rewrite` (written back when it returns `true`), other lines
/// kept; an event without data as it is. `None`: the event is dropped — its
/// data is not a JSON message the gateway can read (a client's parser might
/// read it otherwise: `1e400`, a lone surrogate, deep nesting).
pub fn filter_event(event: &str, rewrite: &mut impl FnMut(&mut Json) -> bool) -> Option<String> {
    let data: Vec<&str> = event
        .lines()
        .filter(|l| *l == "data" || l.starts_with("data:"))
        .map(|l| l.strip_prefix("data").unwrap_or(l))
        .map(|d| d.strip_prefix(':').unwrap_or(d))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return Some(format!("{event}\n\n"));
    }
    let mut msg: Json = serde_json::from_str(&data.join("\n")).ok()?;
    if !rewrite(&mut msg) {
        return Some(format!("{event}\n\n"));
    }
    let mut out = String::new();
    for line in event
        .lines()
        .filter(|l| !(*l == "data" || l.starts_with("data:")))
    {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&msg.to_string());
    out.push_str("\n\n");
    Some(out)
}

/// Narrows every message of `msg` that lists tools (`result.tools`, an
/// array; a batch, element by element) to what `capability` allows on
/// `resource` ([`filter_tools`]); `true` when one was found.
pub fn narrow_listing(msg: &mut Json, capability: &Capability, resource: &str) -> bool {
    match msg {
        Json::Array(batch) => batch.iter_mut().fold(false, |found, m| {
            narrow_listing(m, capability, resource) | found
        }),
        _ => {
            let lists = msg
                .get("result")
                .and_then(|r| r.get("tools"))
                .is_some_and(Json::is_array);
            if lists {
                filter_tools(msg, capability, resource);
            }
            lists
        }
    }
}

/// A whole `text/event-stream` body passed through [`EventSplitter`] and
/// [`filter_event`]: every event whose data is a JSON message `rewrite`
/// changes written back, events without data kept, events whose data is
/// not JSON dropped, a last event without its blank line dropped (a client
/// never dispatches it); line ends made `\n`. `None` when the body is not
/// UTF-8 or an event is too large.
pub fn rewrite_sse(body: &[u8], mut rewrite: impl FnMut(&mut Json) -> bool) -> Option<Vec<u8>> {
    let events = EventSplitter::default().push(body).ok()?;
    let mut out = String::with_capacity(body.len());
    for event in events {
        if let Some(e) = filter_event(&event, &mut rewrite) {
            out.push_str(&e);
        }
    }
    Some(out.into_bytes())
}
