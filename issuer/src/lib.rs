//! # mandate-issuer
//!
//! Mints Mandate root tokens: a token id, the principal it acts for, the
//! first agent and its key, a grant, an expiry and an optional depth limit,
//! signed by the issuer's current root key and naming that key's id so
//! verifiers can look it up across rotations.
//!
//! A pure library: no server, no storage, nothing built from C++. The issuer
//! HTTP service that runs it (`mandate serve`) is in the `mandate` crate's
//! library, `mandate_server`, with the other servers.
//!
//! ```
//! use mandate_issuer::{Issuer, MintRequest};
//! use mandate_spec::Grant;
//! use biscuit_auth::KeyPair;
//! use std::time::Duration;
//!
//! let issuer = Issuer::new(KeyPair::new());
//! let agent = KeyPair::new();
//! let minted = issuer.mint(&MintRequest {
//!     principal: "user:alice".into(),
//!     agent: "support-agent".into(),
//!     agent_key: agent.public(),
//!     grant: Grant::parse(&["read,list:/api/customers/*"], &["rows<=100"]).unwrap(),
//!     ttl: Duration::from_secs(3600),
//!     purpose: Some("answer support tickets".into()),
//!     max_depth: Some(3),
//! }).unwrap();
//! assert_eq!(minted.revocation_ids.len(), 1);
//! ```

mod error;
mod keys;

pub use error::IssueError;
pub use keys::SigningKeys;

use biscuit_auth::{KeyPair, PublicKey};
use mandate_spec::{root_block, token_to_text, Grant, HopContent, RootContent};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest time-to-live a root token may have.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

/// What to mint.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// Who the token acts for, e.g. `user:alice`.
    pub principal: String,
    /// The first agent's id.
    pub agent: String,
    /// The first agent's Ed25519 public key.
    pub agent_key: PublicKey,
    /// What the token allows (at least one alternative).
    pub grant: Grant,
    /// How long the token lives (at most [`MAX_TTL`]).
    pub ttl: Duration,
    /// Why it is issued.
    pub purpose: Option<String>,
    /// Most delegation hops allowed below the root, if limited.
    pub max_depth: Option<u32>,
}

/// A freshly minted root token.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The token's bytes.
    pub token: Vec<u8>,
    /// The token id (UUID v4), shared by every token derived from it.
    pub token_id: Uuid,
    /// The revocation ids of its blocks, hex (one for a root token).
    pub revocation_ids: Vec<String>,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    /// The root key id that signed it.
    pub root_key_id: u32,
}

impl Minted {
    /// The token as URL-safe base64, the form agents pass around.
    pub fn to_base64(&self) -> String {
        token_to_text(&self.token)
    }
}

/// Mints root tokens with the current key of a [`SigningKeys`] set.
#[derive(Debug, Clone)]
pub struct Issuer {
    keys: SigningKeys,
}

impl Issuer {
    /// An issuer with a single root key, id 0.
    pub fn new(root: KeyPair) -> Issuer {
        Issuer {
            keys: SigningKeys::new(0, root),
        }
    }

    /// An issuer signing with the current key of `keys`.
    pub fn with_keys(keys: SigningKeys) -> Issuer {
        Issuer { keys }
    }

    /// The root key set (public halves: [`SigningKeys::public_keys`]).
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Mints a root token.
    pub fn mint(&self, req: &MintRequest) -> Result<Minted, IssueError> {
        self.mint_at(req, SystemTime::now())
    }

    /// Mints a root token as of `now` (tests and replays).
    pub fn mint_at(&self, req: &MintRequest, now: SystemTime) -> Result<Minted, IssueError> {
        if req.ttl.is_zero() || req.ttl > MAX_TTL {
            return Err(IssueError::Ttl(req.ttl));
        }
        // Biscuit dates are whole seconds: start from a whole second so the
        // issue time and expiry reported here are the ones the token carries.
        let now = UNIX_EPOCH
            + Duration::from_secs(now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        let token_id = Uuid::new_v4();
        let id_text = token_id.to_string();
        let expires = now + req.ttl;
        let root = RootContent {
            token_id: &id_text,
            principal: &req.principal,
            issued_at: now,
            max_depth: req.max_depth,
        };
        let hop = HopContent {
            agent: &req.agent,
            agent_key: &req.agent_key,
            purpose: req.purpose.as_deref(),
            grant: &req.grant,
            expires,
        };
        let (key_id, key) = self.keys.current();
        if key.algorithm() != biscuit_auth::format::schema::public_key::Algorithm::Ed25519 {
            return Err(IssueError::Keys(
                "root keys must be Ed25519 (specification §8)".into(),
            ));
        }
        let token = root_block(&root, &hop)?
            .root_key_id(key_id)
            .build(key)
            .map_err(|e| IssueError::Biscuit(e.to_string()))?;
        let revocation_ids = token
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect();
        let bytes = token
            .to_vec()
            .map_err(|e| IssueError::Biscuit(e.to_string()))?;
        Ok(Minted {
            token: bytes,
            token_id,
            revocation_ids,
            expires_at: OffsetDateTime::from(expires),
            root_key_id: key_id,
        })
    }
}
