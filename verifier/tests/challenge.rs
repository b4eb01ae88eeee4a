//! The middleware's `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9728
//! §5.1) through axum `oneshot`: no token → 401 with no error code; an
//! unreadable or unverifiable token → 401 `error="invalid_token"`; a token
//! without the grant → 403 `error="insufficient_scope"`; a malformed
//! request → 400 `error="invalid_request"`; `resource_metadata` named in
//! each when configured, and refused at configuration when it could not
//! stand in a quoted string. Every `error_description` holds only the
//! characters §3 allows, whatever the reason says (quotes, backslashes,
//! control characters, non-ASCII: a property over reasons built from the
//! request's action).
#![allow(clippy::unwrap_used, missing_docs)]

use axum::body::Body;
use axum::routing::any;
use axum::Router;
use biscuit_auth::KeyPair;
use http::request::Parts;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{token_to_text, Grant};
use mandate_verifier::http::{MandateLayer, MapError};
use mandate_verifier::{CacheOptions, RootKeys, Verifier};
use proptest::prelude::*;
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;

const METADATA: &str = "https://gw.example.com/.well-known/oauth-protected-resource/mcp";

struct Api {
    token: Vec<u8>,
    verifier: Verifier,
}

impl Api {
    /// A token that reads customers, and a verifier trusting its issuer.
    fn new() -> Api {
        let issuer = Issuer::new(KeyPair::new());
        let token = issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "support-agent".into(),
                agent_key: KeyPair::new().public(),
                grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
            .token;
        let (id, key) = issuer.keys().public_keys()[0];
        let verifier =
            Verifier::new(RootKeys::new().with(id, key)).with_cache(CacheOptions::default());
        Api { token, verifier }
    }

    /// Every path served; the request decided is `<action>` on
    /// `/api/customers/42`, the action hex-encoded in the path's last
    /// segment (`/do/<hex>`), so that a test can put any text in it; `/long`
    /// reads a resource long enough for a reason over 200 characters;
    /// `/boom` is a mapping error.
    fn app(&self, metadata: Option<&str>) -> Router {
        let layer = MandateLayer::new(self.verifier.clone(), map);
        let layer = match metadata {
            Some(url) => layer.resource_metadata(url).unwrap(),
            None => layer,
        };
        Router::new()
            .route("/{*rest}", any(|| async { "handled" }))
            .layer(layer)
    }
}

fn map(parts: &Parts) -> Result<mandate_spec::Request, MapError> {
    let path = parts.uri.path();
    if path == "/long" {
        let resource = format!("/api/orders/{}", "a".repeat(200));
        return Ok(mandate_spec::Request::new("read", resource));
    }
    if path == "/boom" {
        return Err(MapError::bad_request(
            "the \"boom\" path \\ maps to nothing",
        ));
    }
    let action = match path.strip_prefix("/do/") {
        Some(hex_action) => String::from_utf8_lossy(&hex::decode(hex_action).unwrap()).into_owned(),
        None => "read".to_string(),
    };
    Ok(mandate_spec::Request::new(action, "/api/customers/42"))
}

fn path_for(action: &str) -> String {
    format!("/do/{}", hex::encode(action.as_bytes()))
}

fn req(path: &str, auth: Option<&str>, proof: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    if let Some(p) = proof {
        b = b.header("mandate-proof", p);
    }
    b.body(Body::empty()).unwrap()
}

fn bearer(token: &[u8]) -> String {
    format!("Bearer {}", token_to_text(token))
}

async fn send(app: &Router, r: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let resp: Response<Body> = app.clone().oneshot(r).await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .count();
    assert!(challenge <= 1, "one challenge at most");
    let challenge = resp.headers().get(header::WWW_AUTHENTICATE).map(|v| {
        v.to_str()
            .expect("a challenge is visible ASCII")
            .to_string()
    });
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// The characters RFC 6750 §3 allows in `error_description`:
/// `%x20-21 / %x23-5B / %x5D-7E`.
fn allowed(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

/// A Bearer challenge's parameters, in order, read strictly: the scheme,
/// then `name="value"` pairs separated by `, `, each value a quoted string
/// without quotes or backslashes inside (what the middleware writes; any
/// other shape fails the test).
fn parse_challenge(h: &str) -> Vec<(String, String)> {
    let mut rest = h
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a Bearer challenge: {h}"));
    let mut out = Vec::new();
    loop {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("no name=\"value\" at {rest:?} in {h}"));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "parameter name {name:?} in {h}"
        );
        let (value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("unterminated quoted string in {h}"));
        assert!(!value.contains('\\'), "a backslash in {h}");
        out.push((name.to_string(), value.to_string()));
        if after.is_empty() {
            return out;
        }
        rest = after
            .strip_prefix(", ")
            .unwrap_or_else(|| panic!("unexpected {after:?} after a parameter in {h}"));
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Checks a challenge: realm first, the error code wanted (or none), an
/// `error_description` of allowed characters with an error, and the
/// metadata URL when configured. Returns the description.
fn check_challenge(h: &str, error: Option<&str>, metadata: Option<&str>) -> Option<String> {
    let params = parse_challenge(h);
    assert_eq!(params[0], ("realm".into(), "mandate".into()), "{h}");
    assert_eq!(param(&params, "error"), error, "{h}");
    let description = param(&params, "error_description");
    assert_eq!(description.is_some(), error.is_some(), "{h}");
    if let Some(d) = description {
        assert!(d.chars().all(allowed), "error_description {d:?}");
        assert!(d.chars().count() <= 200, "error_description {d:?}");
    }
    assert_eq!(param(&params, "resource_metadata"), metadata, "{h}");
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a parameter given twice: {h}");
    description.map(str::to_string)
}

#[tokio::test]
async fn no_token_is_a_401_challenge_without_an_error_code() {
    let api = Api::new();
    for metadata in [None, Some(METADATA)] {
        let app = api.app(metadata);
        for auth in [
            None,
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer"),
            Some("Bearer   "),
        ] {
            let (status, challenge, body) = send(&app, req("/x", auth, None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(body["denial"]["kind"], "missing_token", "{auth:?}");
            let challenge = challenge.expect("a 401 carries a challenge");
            check_challenge(&challenge, None, metadata);
            match metadata {
                None => assert_eq!(challenge, "Bearer realm=\"mandate\""),
                Some(m) => assert_eq!(
                    challenge,
                    format!("Bearer realm=\"mandate\", resource_metadata=\"{m}\"")
                ),
            }
        }
    }
}

#[tokio::test]
async fn an_unreadable_or_unverifiable_token_is_a_401_invalid_token() {
    let api = Api::new();
    let other = Api::new(); // another issuer: its token's signature fails here
    for metadata in [None, Some(METADATA)] {
        let app = api.app(metadata);
        let cases = [
            (bearer(b"garbage bytes"), "malformed_token"),
            ("Bearer not\"base64\\at-all".to_string(), "malformed_token"),
            (bearer(&other.token), "bad_signature"),
        ];
        for (auth, kind) in cases {
            let (status, challenge, body) = send(&app, req("/x", Some(&auth), None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth}");
            assert_eq!(body["denial"]["kind"], kind, "{auth}");
            let d = check_challenge(&challenge.unwrap(), Some("invalid_token"), metadata).unwrap();
            assert!(!d.is_empty());
            // The description is the reason, as far as it can be said.
            let reason = body["reason"].as_str().unwrap();
            if reason.chars().all(allowed) && reason.chars().count() <= 200 {
                assert_eq!(d, reason);
            }
        }
        // A proof of possession that cannot be read: 401 invalid_token too.
        let (status, challenge, body) = send(
            &app,
            req("/x", Some(&bearer(&api.token)), Some("v=9;\"x\"")),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["denial"]["kind"], "proof_invalid");
        check_challenge(&challenge.unwrap(), Some("invalid_token"), metadata);
    }
}

#[tokio::test]
async fn a_token_without_the_grant_is_a_403_insufficient_scope() {
    let api = Api::new();
    for metadata in [None, Some(METADATA)] {
        let app = api.app(metadata);
        let (status, challenge, body) = send(
            &app,
            req(&path_for("delete"), Some(&bearer(&api.token)), None),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["denial"]["kind"], "not_allowed");
        let d = check_challenge(&challenge.unwrap(), Some("insufficient_scope"), metadata).unwrap();
        // The reason quotes the action: its quotes become apostrophes.
        assert!(d.contains("'delete'"), "{d}");
        assert!(
            body["reason"].as_str().unwrap().contains("\"delete\""),
            "{body}"
        );
        // Allowed: no challenge.
        let (status, challenge, _) = send(
            &app,
            req(&path_for("read"), Some(&bearer(&api.token)), None),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(challenge, None);
    }
}

#[tokio::test]
async fn a_malformed_request_is_a_400_invalid_request_and_a_mapping_error_has_no_challenge() {
    let api = Api::new();
    let app = api.app(Some(METADATA));
    let (status, challenge, body) = send(
        &app,
        req(&path_for("bad \"action\""), Some(&bearer(&api.token)), None),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["denial"]["kind"], "invalid_request");
    let d = check_challenge(&challenge.unwrap(), Some("invalid_request"), Some(METADATA)).unwrap();
    assert!(d.contains("bad /'action/'"), "{d}");
    // A request the mapping refuses is not a denial: no challenge.
    let (status, challenge, body) = send(&app, req("/boom", Some(&bearer(&api.token)), None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(challenge, None);
    assert_eq!(body["error"], "the \"boom\" path \\ maps to nothing");
}

#[tokio::test]
async fn a_long_reason_is_cut_to_200_characters_ending_in_dots() {
    let api = Api::new();
    let app = api.app(None);
    let (status, challenge, body) = send(&app, req("/long", Some(&bearer(&api.token)), None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.chars().count() > 200, "{reason}");
    let d = check_challenge(&challenge.unwrap(), Some("insufficient_scope"), None).unwrap();
    assert_eq!(d.chars().count(), 200, "{d}");
    assert!(d.ends_with("..."), "{d}");
    assert_eq!(d[..197], reason.replace('"', "'")[..197]);
    // Non-ASCII characters become `?`, one for one.
    let action = "é".repeat(20);
    let (_, challenge, body) = send(
        &app,
        req(&path_for(&action), Some(&bearer(&api.token)), None),
    )
    .await;
    let reason = body["reason"].as_str().unwrap();
    let d = check_challenge(&challenge.unwrap(), Some("invalid_request"), None).unwrap();
    assert!(reason.contains(&action), "{reason}");
    assert!(d.contains(&"?".repeat(20)), "{d}");
    assert_eq!(d.chars().count(), reason.chars().count());
}

#[test]
fn resource_metadata_that_cannot_stand_in_a_quoted_string_is_refused() {
    let api = Api::new();
    let layer = || MandateLayer::new(api.verifier.clone(), map);
    for bad in [
        "bad\"url",
        "https://gw.example.com/\"quoted\"",
        "https://gw.example.com/back\\slash",
        "https://gw.example.com/a b",
        "https://gw.example.com/\ttab",
        "https://gw.example.com/\r\nX-Injected: 1",
        "https://gw.example.com/é",
        "ftp://gw.example.com/meta",
        "/.well-known/oauth-protected-resource",
        "",
    ] {
        let e = layer().resource_metadata(bad).err().unwrap_or_else(|| {
            panic!("resource_metadata({bad:?}) accepted");
        });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("resource_metadata"), "{}", e.message);
    }
    for good in [
        METADATA,
        "http://127.0.0.1:8080/.well-known/oauth-protected-resource",
        "https://gw.example.com/.well-known/oauth-protected-resource/mcp?x=1&y=%22",
    ] {
        assert!(layer().resource_metadata(good).is_ok(), "{good}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the reason holds — here the request's action, quoted in
    /// it: quotes, backslashes, control characters, non-ASCII — the
    /// challenge parses as the middleware means it and its description
    /// holds only the characters RFC 6750 allows.
    #[test]
    fn every_error_description_holds_only_allowed_characters(
        action in prop_oneof![
            proptest::arbitrary::any::<String>(),
            "[a-z\"\\\\ \\t\\x00-\\x1f\\x7f-\\u{ff}é😀]{1,80}",
            "[a-z]{1,10}",
        ]
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (api, app) = fixture();
        let (status, challenge, body) = rt.block_on(send(
            app,
            req(&path_for(&action), Some(&bearer(&api.token)), None),
        ));
        prop_assert!(status != StatusCode::OK, "nothing grants {action:?}");
        let error = match status {
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::FORBIDDEN => "insufficient_scope",
            s => panic!("unexpected status {s}"),
        };
        let challenge = challenge.unwrap();
        let d = check_challenge(&challenge, Some(error), None).unwrap();
        // The description is the reason, character for character, with
        // what §3 forbids replaced.
        let reason = body["reason"].as_str().unwrap();
        let want: String = reason
            .chars()
            .take(200)
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                c if allowed(c) => c,
                _ => '?',
            })
            .collect();
        if reason.chars().count() <= 200 {
            prop_assert_eq!(d, want);
        } else {
            prop_assert_eq!(&d[..197], &want[..197]);
            prop_assert!(d.ends_with("..."));
        }
    }
}

/// One issuer, token and router for the property (the token's
/// verification cached across cases).
fn fixture() -> &'static (Api, Router) {
    static F: std::sync::OnceLock<(Api, Router)> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let api = Api::new();
        let app = api.app(None);
        (api, app)
    })
}
