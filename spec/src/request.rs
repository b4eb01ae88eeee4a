//! The request a verifier decides: one action, one resource, typed
//! parameters and the current time (specification §5).

use crate::grant::{clip, validate_name, Value, MAX_NAME_LEN, MAX_VALUE_LEN};
use crate::{vocab, SpecError};
use biscuit_auth::builder::{bytes, date, fact, int, string, Fact, Term};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most parameters one request may carry.
pub const MAX_PARAMS: usize = 64;

/// One request, as the verifier sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The action, e.g. `read`.
    pub action: String,
    /// The resource, e.g. `/api/customers/42`.
    pub resource: String,
    /// Typed parameters, e.g. `rows = 100`: each name at most once (§5.1);
    /// reading JSON that gives a name twice is refused ([`unique_params`]).
    #[serde(default, deserialize_with = "unique_params")]
    pub params: BTreeMap<String, Value>,
    /// When the request is made (seconds precision; Biscuit dates are seconds).
    #[serde(with = "unix_seconds")]
    pub time: SystemTime,
}

impl Request {
    /// A request at the current time with no parameters.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Request {
        Request {
            action: action.into(),
            resource: resource.into(),
            params: BTreeMap::new(),
            time: SystemTime::now(),
        }
    }

    /// Adds a typed parameter, replacing any earlier value of the same name:
    /// for requests built by a program. Outside input (a command line, a
    /// wire format) goes through [`Request::try_param`], which refuses a
    /// repeated name (§5.1).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<Value>) -> Request {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Adds a typed parameter, refusing a name the request already carries:
    /// a request carries each parameter at most once (§5.1), as a token's
    /// checks are existential and would pass on either of two values.
    pub fn try_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<Request, SpecError> {
        let name = name.into();
        if self.params.contains_key(&name) {
            return Err(SpecError::Request(given_twice(&name)));
        }
        self.params.insert(name, value.into());
        Ok(self)
    }

    /// Sets the request time.
    pub fn at(mut self, time: SystemTime) -> Request {
        self.time = time;
        self
    }

    /// SHA-256 over a domain prefix and the canonical JSON of the request's
    /// action, resource and parameters (not its time): what an approval
    /// names, binding it to this exact action (§14).
    pub fn approval_digest(&self) -> [u8; 32] {
        #[derive(Serialize)]
        struct Bound<'a> {
            action: &'a str,
            resource: &'a str,
            params: &'a BTreeMap<String, Value>,
        }
        let json = serde_json::to_vec(&Bound {
            action: &self.action,
            resource: &self.resource,
            params: &self.params,
        })
        .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"mandate-approval-v1\n");
        h.update(json);
        h.finalize().into()
    }

    /// The `request_digest` fact the verifier adds for tokens with approval
    /// rules.
    pub fn digest_fact(&self) -> Fact {
        fact(vocab::REQUEST_DIGEST, &[bytes(&self.approval_digest())])
    }

    /// The request time as Unix seconds.
    pub fn time_unix(&self) -> i64 {
        match self.time.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }

    /// Checks the request against §5: action and parameter names in the name
    /// alphabet, a canonical resource, bounded sizes.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name("action", &self.action).map_err(|e| SpecError::Request(strip_prefix(e)))?;
        check_resource(&self.resource)?;
        if self.params.len() > MAX_PARAMS {
            return Err(SpecError::Request(format!(
                "more than {MAX_PARAMS} parameters"
            )));
        }
        for (name, value) in &self.params {
            validate_name("parameter name", name)
                .map_err(|e| SpecError::Request(strip_prefix(e)))?;
            if name == "time" {
                return Err(SpecError::Request(
                    "`time` is reserved: the verifier supplies the request time".into(),
                ));
            }
            if let Value::Str(s) = value {
                if s.len() > MAX_VALUE_LEN {
                    return Err(SpecError::Request(format!(
                        "parameter {name} is longer than {MAX_VALUE_LEN} bytes"
                    )));
                }
            }
        }
        if self.time.duration_since(UNIX_EPOCH).is_err() {
            return Err(SpecError::Request("request time before 1970".into()));
        }
        Ok(())
    }

    /// The facts the verifier adds to the authorizer for this request:
    /// `operation`, `resource($r)`, `resource($dir, $name)` (when the resource
    /// is a path with a non-empty last segment), one `param` per parameter
    /// and `time`.
    pub fn facts(&self) -> Vec<Fact> {
        let mut facts = Vec::with_capacity(4 + self.params.len());
        facts.push(fact(vocab::OPERATION, &[string(&self.action)]));
        facts.push(fact(vocab::RESOURCE, &[string(&self.resource)]));
        if let Some(dir) = crate::grant::resource_parent(&self.resource) {
            let name = &self.resource[dir.len()..];
            facts.push(fact(vocab::RESOURCE, &[string(dir), string(name)]));
        }
        for (name, value) in &self.params {
            let term: Term = match value {
                Value::Int(i) => int(*i),
                Value::Str(s) => string(s),
            };
            facts.push(fact(vocab::PARAM, &[string(name), term]));
        }
        facts.push(fact(vocab::TIME, &[date(&self.time)]));
        facts
    }
}

/// Why a parameter name given twice is refused, naming it.
fn given_twice(name: &str) -> String {
    if validate_name("parameter name", name).is_ok() {
        format!("parameter {name} given twice")
    } else {
        format!("parameter {:?} given twice", clip(name))
    }
}

/// Reads a request's parameters from a serde map (a JSON object), refusing a
/// name given twice (§5.1) where serde would keep the last value: use it as
/// `#[serde(deserialize_with = "mandate_spec::unique_params")]` on every wire
/// format that carries parameters.
pub fn unique_params<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Value>, D::Error> {
    use serde::de::{MapAccess, Visitor};
    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = BTreeMap<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of parameters")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let value: Value = map.next_value()?;
                if out.contains_key(&name) {
                    return Err(serde::de::Error::custom(given_twice(&name)));
                }
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

fn strip_prefix(e: SpecError) -> String {
    match e {
        SpecError::Grant(m) => m,
        other => other.to_string(),
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

/// Checks that `resource` is canonical (§5.2): 1–256 bytes, and
/// [`check_canonical`]'s rules.
pub fn check_resource(resource: &str) -> Result<(), SpecError> {
    let bad = |why: &str| {
        Err(SpecError::Request(format!(
            "resource {:?} {why}",
            clip(resource)
        )))
    };
    if resource.is_empty() {
        return bad("is empty");
    }
    if resource.len() > MAX_NAME_LEN {
        return bad("is longer than 256 bytes");
    }
    check_canonical(resource).or_else(|why| bad(&why))
}

/// The rules of §5.2 at any length, for a resource or a request path: no
/// control character or backslash; a `%` only as the start of a
/// percent-encoding (two hex digits) of a byte that is not an unreserved
/// character (letters, digits, `-._~`: RFC 3986 §6.2.2.2 makes those
/// equivalent to the character itself) and not `/`, `\`, NUL, `%` (a double
/// encoding) or `;`; and for a path (starting with `/`): no empty segment
/// except a trailing one, no `.` or `..` segment, and no `;` (path
/// parameters: servers strip them before routing, so `/a/..;/b` reaches
/// `/b`). Each such form could be resolved by the server behind the verifier
/// to another resource than the one decided on, so it is refused, never
/// normalized. The error says why, in words.
pub fn check_canonical(resource: &str) -> Result<(), String> {
    if resource.chars().any(|c| c.is_control() || c == '\\') {
        return Err("contains a control character or a backslash".into());
    }
    let bytes = resource.as_bytes();
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'%') {
        let at = i + at;
        // Exactly two hex digits: `u8::from_str_radix` alone would also
        // take `+A` (a sign) as the byte 0x0A.
        let hex = bytes
            .get(at + 1..at + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        let Some(byte) = hex else {
            return Err("has a % that does not start a percent-encoding (%XX)".into());
        };
        if byte.is_ascii_alphanumeric() || b"-._~/\\\0%;".contains(&byte) {
            return Err(format!(
                "contains %{:02X}, an encoding of {:?} that servers may decode before \
                 routing: write it as such, or not at all",
                byte,
                char::from(byte)
            ));
        }
        i = at + 3;
    }
    if let Some(path) = resource.strip_prefix('/') {
        if path.is_empty() {
            return Ok(());
        }
        if path.contains(';') {
            return Err("has a ; (path parameters are stripped by servers before routing)".into());
        }
        let segments: Vec<&str> = path.split('/').collect();
        let last = segments.len() - 1;
        for (i, seg) in segments.iter().enumerate() {
            if seg.is_empty() && i != last {
                return Err("has an empty path segment (//)".into());
            }
            if *seg == "." || *seg == ".." {
                return Err("has a . or .. segment".into());
            }
        }
    }
    Ok(())
}

mod unix_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        s.serialize_u64(secs)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs = u64::deserialize(d)?;
        UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| serde::de::Error::custom("request time out of range"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_resources_only() {
        for ok in [
            "/",
            "/api/customers/42",
            "/api/customers/",
            "urn:x:y",
            "/a/b.c",
        ] {
            assert!(check_resource(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/api/customers/../admin",
            "/api/./x",
            "/api//x",
            "/api/%2e%2e/x",
            "/api/x%2Fy",
            "/api/x\\y",
            "/api/x\ny",
        ] {
            assert!(check_resource(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_parameter_refused_by_try_param() {
        let r = Request::new("read", "/x").try_param("rows", 5).unwrap();
        let err = r.clone().try_param("rows", 500).unwrap_err();
        assert_eq!(
            err,
            SpecError::Request("parameter rows given twice".into()),
            "{err}"
        );
        // Another name is fine; `param` still overwrites (programmatic use).
        assert!(r.clone().try_param("cols", 1).is_ok());
        assert_eq!(r.param("rows", 500).params["rows"], Value::Int(500));
    }

    #[test]
    fn duplicate_parameter_refused_in_request_json() {
        let json = r#"{"action":"read","resource":"/x","params":{"rows":5,"rows":500},"time":0}"#;
        let err = serde_json::from_str::<Request>(json).unwrap_err();
        assert!(
            err.to_string().contains("parameter rows given twice"),
            "{err}"
        );
        let ok = r#"{"action":"read","resource":"/x","params":{"rows":5},"time":0}"#;
        let r: Request = serde_json::from_str(ok).unwrap();
        assert_eq!(r.params["rows"], Value::Int(5));
        let none = r#"{"action":"read","resource":"/x","time":0}"#;
        assert!(serde_json::from_str::<Request>(none)
            .unwrap()
            .params
            .is_empty());
    }

    #[test]
    fn request_validation() {
        assert!(Request::new("read", "/x").validate().is_ok());
        assert!(Request::new("re\"ad", "/x").validate().is_err());
        assert!(Request::new("read", "/x")
            .param("time", 1)
            .validate()
            .is_err());
    }
}
