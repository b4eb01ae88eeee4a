//! Turning an HTTP request into the (action, resource, parameters) the
//! verifier decides: the default mapping and per-route overrides.

use super::MapRequest;
use http::request::Parts;
use http::{Method, StatusCode};
use mandate_spec::{Request, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Why a request could not be mapped: answered with `status` and a JSON
/// `{"error": message}` body, before any authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// 400 (ambiguous or ill-typed input), 413 (body over the limit), 415.
    pub status: StatusCode,
    /// What is wrong, for the client.
    pub message: String,
}

impl MapError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> MapError {
        MapError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// The parameter carrying a JSON body's fields that no body parameter of
/// its route reads (SPEC §5.1): together, so that an approval's digest binds
/// every field forwarded and a person approving sees them.
pub const OTHER_BODY: &str = "http.other_body";

/// Default largest JSON body read for body parameters: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The configurable mapping: a default for every request, and routes that
/// override it.
///
/// **Default**: the action is the method's (`GET`/`HEAD` → `read`, `POST` →
/// `create`, `PUT`/`PATCH` → `update`, `DELETE` → `delete`, any other →
/// the method in lower case); the resource is the request path exactly as
/// received (a non-canonical path is refused by the verifier, SPEC §5.2);
/// each query parameter becomes a typed parameter (an integer when it is
/// one, else a string; a name given twice is refused with 400).
///
/// **Routes** are tried in the order added; the first whose method and
/// path pattern match applies. A path pattern is made of literal segments,
/// `{name}` (one segment) and a final `{*name}` (the rest of the path). A
/// route can set the action, set the resource from a template naming the
/// pattern's captures, read parameters from JSON body fields (the body is
/// then read, up to the body limit), and turn query parameters off.
///
/// ```
/// use mandate_verifier::http::{Route, RouteMap};
///
/// let map = RouteMap::new()
///     .route("GET", "/api/customers", Route::new().action("list").resource("/api/customers/*"))
///     .route("POST", "/api/payments", Route::new().action("pay").body_param("amount", "amount"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RouteMap {
    routes: Vec<(Option<Method>, PathPattern, Route)>,
    body_limit: Option<usize>,
}

/// What a matching route changes from the default mapping.
#[derive(Debug, Clone, Default)]
pub struct Route {
    action: Option<String>,
    resource: Option<String>,
    body_params: Vec<(String, String)>,
    no_query_params: bool,
}

impl Route {
    /// A route that changes nothing yet.
    pub fn new() -> Route {
        Route::default()
    }

    /// The action for requests on this route.
    pub fn action(mut self, action: impl Into<String>) -> Route {
        self.action = Some(action.into());
        self
    }

    /// The resource, a template: `{name}` is replaced by what the pattern's
    /// `{name}` or `{*name}` captured, e.g. `/customers/{id}`.
    pub fn resource(mut self, template: impl Into<String>) -> Route {
        self.resource = Some(template.into());
        self
    }

    /// Parameter `param` from the JSON body's top-level field `field`
    /// (an integer or a string; absent when the field is absent). A body
    /// that is not a JSON object is refused with 400.
    pub fn body_param(mut self, param: impl Into<String>, field: impl Into<String>) -> Route {
        self.body_params.push((param.into(), field.into()));
        self
    }

    /// Ignore the query string on this route.
    pub fn without_query_params(mut self) -> Route {
        self.no_query_params = true;
        self
    }
}

impl RouteMap {
    /// The default mapping, with no routes.
    pub fn new() -> RouteMap {
        RouteMap::default()
    }

    /// Adds a route for `method` (`"*"`: any) and `pattern`.
    ///
    /// # Panics
    /// On a method that is not a valid HTTP method or a pattern that does not
    /// start with `/` or has `{*name}` before its last segment: a programming
    /// error in the route table, found at start-up.
    pub fn route(mut self, method: &str, pattern: &str, route: Route) -> RouteMap {
        let method = if method == "*" {
            None
        } else {
            #[allow(clippy::expect_used)]
            Some(Method::from_bytes(method.as_bytes()).expect("a valid HTTP method"))
        };
        #[allow(clippy::expect_used)]
        let pattern = PathPattern::parse(pattern).expect("a valid route pattern");
        self.routes.push((method, pattern, route));
        self
    }

    /// The largest body read for body parameters (default
    /// [`DEFAULT_BODY_LIMIT`]); a larger body is refused with 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> RouteMap {
        self.body_limit = Some(bytes);
        self
    }

    fn find(&self, parts: &Parts) -> Option<(&Route, Vec<(&str, String)>)> {
        self.routes.iter().find_map(|(method, pattern, route)| {
            if method.as_ref().is_some_and(|m| m != parts.method) {
                return None;
            }
            pattern.captures(parts.uri.path()).map(|c| (route, c))
        })
    }
}

/// The default action for a method.
pub fn default_action(method: &Method) -> String {
    match *method {
        Method::GET | Method::HEAD => "read".into(),
        Method::POST => "create".into(),
        Method::PUT | Method::PATCH => "update".into(),
        Method::DELETE => "delete".into(),
        ref other => other.as_str().to_ascii_lowercase(),
    }
}

/// Query parameters as typed parameters; a name given twice is refused
/// (checks are existential: two values would let either satisfy a check).
pub fn query_params(query: Option<&str>) -> Result<BTreeMap<String, Value>, MapError> {
    // `;` separates parameters for some servers (older Rack, Python's
    // `parse_qs` before 3.10) and not for this parser: `?to=bob;to=eve`
    // would be decided as one value and acted on as two. Refused.
    if query.is_some_and(|q| q.contains(';')) {
        return Err(MapError::bad_request(
            "a query string may not contain ';' (servers disagree on whether it separates \
             parameters)",
        ));
    }
    let mut params = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if params
            .insert(name.to_string(), Value::infer(&value))
            .is_some()
        {
            return Err(MapError::bad_request(format!(
                "query parameter {name:?} is given more than once"
            )));
        }
    }
    Ok(params)
}

impl MapRequest for RouteMap {
    fn max_body(&self) -> usize {
        self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT)
    }

    fn body_limit(&self, parts: &Parts) -> Option<usize> {
        match self.find(parts) {
            Some((route, _)) if !route.body_params.is_empty() => {
                Some(self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT))
            }
            _ => None,
        }
    }

    fn map(&self, parts: &Parts, body: Option<&serde_json::Value>) -> Result<Request, MapError> {
        let found = self.find(parts);
        let route = found.as_ref().map(|(r, _)| *r);
        let action = route
            .and_then(|r| r.action.clone())
            .unwrap_or_else(|| default_action(&parts.method));
        let resource = match found.as_ref() {
            Some((
                Route {
                    resource: Some(t), ..
                },
                captures,
            )) => fill(t, captures),
            _ => parts.uri.path().to_string(),
        };
        let mut request = Request::new(action, resource);
        if !route.is_some_and(|r| r.no_query_params) {
            request.params = query_params(parts.uri.query())?;
        }
        if let Some(route) = route.filter(|r| !r.body_params.is_empty()) {
            let object = match body {
                Some(serde_json::Value::Object(o)) => o,
                Some(_) | None => {
                    return Err(MapError::bad_request(
                        "the request body must be a JSON object",
                    ))
                }
            };
            for (param, field) in &route.body_params {
                let value = match object.get(field) {
                    None => continue,
                    Some(serde_json::Value::String(s)) => Value::Str(s.clone()),
                    Some(serde_json::Value::Number(n)) if n.is_i64() => {
                        Value::Int(n.as_i64().unwrap_or_default())
                    }
                    Some(_) => {
                        return Err(MapError::bad_request(format!(
                            "body field {field:?} must be an integer or a string"
                        )))
                    }
                };
                if request.params.insert(param.clone(), value).is_some() {
                    return Err(MapError::bad_request(format!(
                        "parameter {param:?} is given both in the query and in the body"
                    )));
                }
            }
            let others: serde_json::Map<String, serde_json::Value> = object
                .iter()
                .filter(|(field, _)| !route.body_params.iter().any(|(_, f)| f == *field))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if request.params.contains_key(OTHER_BODY) {
                return Err(MapError::bad_request(format!(
                    "parameter {OTHER_BODY:?} is reserved (the body's fields no parameter reads)"
                )));
            }
            if !others.is_empty() {
                request
                    .params
                    .insert(OTHER_BODY.into(), Value::Str(other_fields(&others)));
            }
        }
        Ok(request)
    }

    fn describe(&self) -> String {
        // v2: a JSON body's unread fields are the parameter `http.other_body`.
        let mut out = String::from("route-map v2");
        for (method, pattern, route) in &self.routes {
            let _ = write!(
                out,
                "\n{} {} action={:?} resource={:?} body={:?} query={}",
                method.as_ref().map_or("*", |m| m.as_str()),
                pattern.text,
                route.action,
                route.resource,
                route.body_params,
                !route.no_query_params
            );
        }
        let _ = write!(
            out,
            "\nbody_limit={}",
            self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT)
        );
        out
    }
}

/// The value of a parameter standing for JSON fields no other parameter
/// reads (`http.other_body` here, the MCP mapping's `mcp.other_arguments`):
/// their canonical JSON (keys sorted, no whitespace) up to 1 024 bytes,
/// else `sha256:` and its hash: either way the same fields give the same
/// value, other fields another.
pub fn other_fields(others: &serde_json::Map<String, serde_json::Value>) -> String {
    use sha2::Digest as _;
    let json = serde_json::to_string(others).unwrap_or_default();
    if json.len() <= 1024 {
        json
    } else {
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(json.as_bytes()))
        )
    }
}

/// Replaces each `{name}` of `template` by its capture, in one pass (a
/// captured value is never itself substituted into).
fn fill(template: &str, captures: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match captures.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone)]
struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    One(String),
    Rest(String),
}

impl PathPattern {
    fn parse(text: &str) -> Result<PathPattern, String> {
        let Some(path) = text.strip_prefix('/') else {
            return Err(format!("route pattern {text:?} must start with /"));
        };
        let parts: Vec<&str> = path.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let seg = if let Some(name) = p.strip_prefix("{*").and_then(|p| p.strip_suffix('}')) {
                if i + 1 != parts.len() {
                    return Err(format!("{{*{name}}} must be the last segment of {text:?}"));
                }
                Segment::Rest(name.to_string())
            } else if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Segment::One(name.to_string())
            } else {
                Segment::Literal(p.to_string())
            };
            segments.push(seg);
        }
        Ok(PathPattern {
            text: text.to_string(),
            segments,
        })
    }

    /// The captures when `path` matches.
    fn captures<'a>(&'a self, path: &str) -> Option<Vec<(&'a str, String)>> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let mut captures = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Rest(name) => {
                    let tail = parts.get(i..)?.join("/");
                    if tail.is_empty() {
                        return None;
                    }
                    captures.push((name.as_str(), tail));
                    return Some(captures);
                }
                Segment::Literal(l) => {
                    if parts.get(i)? != l {
                        return None;
                    }
                }
                Segment::One(name) => {
                    let p = parts.get(i)?;
                    if p.is_empty() {
                        return None;
                    }
                    captures.push((name.as_str(), p.to_string()));
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(captures)
    }
}

/// A request body as JSON, as the mapping reads it: declared as JSON
/// (`application/json` or `…+json`, else 415) and parsed strictly — an
/// object with a key given twice, at any depth, is refused (400), since
/// parsers disagree on which of the two values counts (the decision would
/// see one, the server might act on the other).
pub fn json_body(parts: &Parts, bytes: &[u8]) -> Result<serde_json::Value, MapError> {
    let is_json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json")
        });
    if !is_json {
        return Err(MapError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "this route reads its body: send Content-Type: application/json".into(),
        });
    }
    strict_json(bytes).map_err(|e| MapError::bad_request(format!("the request body {e}")))
}

/// Parses JSON, refusing an object that gives a key twice (at any depth).
/// The error reads after "the body …".
pub fn strict_json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Strict(serde_json::Value);
    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
            d.deserialize_any(StrictVisitor)
        }
    }
    struct StrictVisitor;
    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Strict;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
            Ok(Strict(
                serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into),
            ))
        }
        fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_string<E>(self, v: String) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_unit<E>(self) -> Result<Strict, E> {
            Ok(Strict(serde_json::Value::Null))
        }
        fn visit_none<E>(self) -> Result<Strict, E> {
            Ok(Strict(serde_json::Value::Null))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
            let mut out = Vec::new();
            while let Some(Strict(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(Strict(out.into()))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let Strict(value) = map.next_value()?;
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "gives the key {key:?} twice"
                    )));
                }
                out.insert(key, value);
            }
            Ok(Strict(out.into()))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(value) = Strict::deserialize(&mut de).map_err(|e| format!("is not JSON: {e}"))?;
    de.end().map_err(|e| format!("is not JSON: {e}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(method: &str, uri: &str) -> Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn default_mapping_follows_the_method_and_path() {
        let map = RouteMap::new();
        let r = map
            .map(&parts("GET", "/api/customers/42?rows=10&q=x"), None)
            .unwrap();
        assert_eq!(
            (r.action.as_str(), r.resource.as_str()),
            ("read", "/api/customers/42")
        );
        assert_eq!(r.params["rows"], Value::Int(10));
        assert_eq!(r.params["q"], Value::Str("x".into()));
        for (m, a) in [
            ("POST", "create"),
            ("PUT", "update"),
            ("PATCH", "update"),
            ("DELETE", "delete"),
            ("HEAD", "read"),
            ("OPTIONS", "options"),
        ] {
            assert_eq!(map.map(&parts(m, "/x"), None).unwrap().action, a);
        }
    }

    #[test]
    fn a_query_parameter_given_twice_is_refused() {
        let e = RouteMap::new()
            .map(&parts("GET", "/x?rows=1&rows=1000"), None)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("more than once"), "{}", e.message);
    }

    #[test]
    fn routes_override_action_resource_and_read_body_fields() {
        let map = RouteMap::new()
            .route(
                "GET",
                "/api/customers",
                Route::new().action("list").resource("/api/customers/*"),
            )
            .route(
                "DELETE",
                "/api/customers/{id}",
                Route::new().action("erase").resource("/customers/{id}"),
            )
            .route(
                "POST",
                "/api/payments",
                Route::new()
                    .action("pay")
                    .body_param("amount", "amount")
                    .body_param("to", "payee"),
            )
            .route(
                "*",
                "/files/{*path}",
                Route::new().resource("/f/{path}").without_query_params(),
            );
        let list = map.map(&parts("GET", "/api/customers"), None).unwrap();
        assert_eq!(
            (list.action.as_str(), list.resource.as_str()),
            ("list", "/api/customers/*")
        );
        let del = map.map(&parts("DELETE", "/api/customers/7"), None).unwrap();
        assert_eq!(
            (del.action.as_str(), del.resource.as_str()),
            ("erase", "/customers/7")
        );
        // The method must match too: GET on the same path is the default.
        assert_eq!(
            map.map(&parts("GET", "/api/customers/7"), None)
                .unwrap()
                .action,
            "read"
        );
        let p = parts("POST", "/api/payments");
        assert_eq!(MapRequest::body_limit(&map, &p), Some(DEFAULT_BODY_LIMIT));
        let body = serde_json::json!({"amount": 150, "payee": "acme", "memo": 1.5});
        let pay = map.map(&p, Some(&body)).unwrap();
        assert_eq!(pay.params["amount"], Value::Int(150));
        assert_eq!(pay.params["to"], Value::Str("acme".into()));
        // A field no parameter reads is in `http.other_body`, with any other.
        assert!(!pay.params.contains_key("memo"));
        assert_eq!(pay.params[OTHER_BODY], Value::Str(r#"{"memo":1.5}"#.into()));
        let float = serde_json::json!({"amount": 150.5});
        assert!(map
            .map(&p, Some(&float))
            .unwrap_err()
            .message
            .contains("integer or a string"));
        assert!(map.map(&p, Some(&serde_json::json!([1]))).is_err());
        let f = map.map(&parts("GET", "/files/a/b/c?x=1"), None).unwrap();
        assert_eq!(f.resource, "/f/a/b/c");
        assert!(f.params.is_empty());
        assert_eq!(
            MapRequest::body_limit(&map, &parts("GET", "/files/a")),
            None
        );
    }

    /// An approval binds the request's parameters: a body field no
    /// parameter read was neither bound nor shown to the approver, yet
    /// forwarded (a payment's recipients). Every such field is now in
    /// `http.other_body` (canonical: key order and spacing do not matter;
    /// past 1 KiB its SHA-256), and no body may name that parameter.
    #[test]
    fn the_fields_no_parameter_reads_are_one_parameter() {
        let map = RouteMap::new().route(
            "POST",
            "/api/payments",
            Route::new().action("pay").body_param("amount", "amount"),
        );
        let p = parts("POST", "/api/payments");
        let pay = |body: serde_json::Value| map.map(&p, Some(&body)).unwrap().params;
        let only = pay(serde_json::json!({"amount": 150}));
        assert!(!only.contains_key(OTHER_BODY), "{only:?}");
        let a = pay(serde_json::json!({"amount": 150, "to": ["x"], "note": {"b": 1, "a": null}}));
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "note": {"a": null, "b": 1}, "to": ["x"], "amount": 150 }"#)
                .unwrap();
        assert_eq!(a, pay(b));
        assert_eq!(
            a[OTHER_BODY],
            Value::Str(r#"{"note":{"a":null,"b":1},"to":["x"]}"#.into())
        );
        assert_ne!(
            a,
            pay(serde_json::json!({"amount": 150, "to": ["y"], "note": {"b": 1, "a": null}}))
        );
        let long = pay(serde_json::json!({"amount": 1, "memo": "m".repeat(2000)}));
        let Value::Str(v) = &long[OTHER_BODY] else {
            panic!("{long:?}")
        };
        assert!(v.starts_with("sha256:") && v.len() == 7 + 64, "{v}");
        let q = parts("POST", "/api/payments?http.other_body=x");
        for body in [
            serde_json::json!({"amount": 1, "to": "y"}),
            serde_json::json!({"amount": 1}),
        ] {
            let e = map.map(&q, Some(&body)).unwrap_err();
            assert!(e.message.contains("reserved"), "{}", e.message);
        }
    }
}
