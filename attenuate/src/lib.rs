//! # mandate-attenuate
//!
//! Offline delegation. The agent holding a Mandate token appends a
//! **delegation hop**: a Biscuit third-party block signed with the holder's
//! own key, naming the next agent and its key, a narrower grant, an expiry no
//! later than the chain's, and a purpose. No network call, no root key needed.
//!
//! [`narrow`] appends a plain first-party block instead: it restricts the
//! token further but delegates to no one.
//!
//! ```
//! use mandate_attenuate::{delegate, Delegation};
//! use mandate_issuer::{Issuer, MintRequest};
//! use mandate_spec::Grant;
//! use biscuit_auth::KeyPair;
//! use std::time::Duration;
//!
//! let issuer = Issuer::new(KeyPair::new());
//! let (support, research) = (KeyPair::new(), KeyPair::new());
//! let root = issuer.mint(&MintRequest {
//!     principal: "user:alice".into(),
//!     agent: "support".into(),
//!     agent_key: support.public(),
//!     grant: Grant::parse(&["read,list:/api/customers/*"], &[] as &[&str]).unwrap(),
//!     ttl: Duration::from_secs(3600),
//!     purpose: None,
//!     max_depth: None,
//! }).unwrap();
//!
//! let child = delegate(&root.token, &support, &Delegation {
//!     agent: "research".into(),
//!     agent_key: research.public(),
//!     grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
//!     ttl: Some(Duration::from_secs(600)),
//!     purpose: Some("summarise customer 42".into()),
//! }).unwrap();
//! assert_eq!(child.chain.depth(), 1);
//! assert_eq!(child.chain.holder().agent, "research");
//! ```

mod approval;
mod error;

pub use approval::{approve, attach_approval};
pub use error::AttenuateError;

use biscuit_auth::{KeyPair, PublicKey, UnverifiedBiscuit};
use mandate_spec::{decode_blocks, hop_block, narrowing_block, Chain, Grant, HopContent};
use std::time::{Duration, SystemTime};

/// A delegation hop to append.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// The next agent's id.
    pub agent: String,
    /// The next agent's Ed25519 public key.
    pub agent_key: PublicKey,
    /// What the next agent may do. Empty = everything the chain already
    /// allows (the hop then only shortens the expiry).
    pub grant: Grant,
    /// How long the hop lives; `None` (or longer than the chain) means until
    /// the chain's current expiry.
    pub ttl: Option<Duration>,
    /// Why the hop is made.
    pub purpose: Option<String>,
}

/// A token with a new block appended, and the chain it now forms.
#[derive(Debug, Clone)]
pub struct Attenuated {
    /// The new token's bytes.
    pub token: Vec<u8>,
    /// The new chain (read without verifying the root signature).
    pub chain: Chain,
    /// The revocation id of the appended block, hex.
    pub revocation_id: String,
}

impl Attenuated {
    /// The token as URL-safe base64.
    pub fn to_base64(&self) -> String {
        mandate_spec::token_to_text(&self.token)
    }
}

/// Appends a delegation hop signed by `holder`, which must be the key the
/// chain's last hop delegated to.
pub fn delegate(
    token: &[u8],
    holder: &KeyPair,
    d: &Delegation,
) -> Result<Attenuated, AttenuateError> {
    delegate_at(token, holder, d, SystemTime::now())
}

/// [`delegate`] as of `now`.
pub fn delegate_at(
    token: &[u8],
    holder: &KeyPair,
    d: &Delegation,
    now: SystemTime,
) -> Result<Attenuated, AttenuateError> {
    let chain = read_chain(token)?;
    let current = chain.holder();
    let holder_key = holder.public().to_string();
    if holder_key != current.agent_key {
        return Err(AttenuateError::NotHolder {
            holder_agent: current.agent.clone(),
            holder_key: current.agent_key.clone(),
            given: holder_key,
        });
    }
    if let Some(max) = chain.max_depth {
        if chain.depth() + 1 > max as usize {
            return Err(AttenuateError::DepthExceeded { max });
        }
    }
    let expires = expiry(&chain, d.ttl, now)?;
    let block = hop_block(&HopContent {
        agent: &d.agent,
        agent_key: &d.agent_key,
        purpose: d.purpose.as_deref(),
        grant: &d.grant,
        expires,
    })?;
    let biscuit = parse(token)?;
    let request = biscuit.third_party_request().map_err(biscuit_err)?;
    let signed = request
        .create_block(&holder.private(), block)
        .map_err(biscuit_err)?;
    let out = biscuit
        .append_third_party(&signed.serialize().map_err(biscuit_err)?)
        .map_err(biscuit_err)?;
    finish(out)
}

/// Appends a first-party block that only narrows: a grant and/or an expiry,
/// no delegate. Anyone holding the token can do this.
pub fn narrow(
    token: &[u8],
    grant: &Grant,
    ttl: Option<Duration>,
) -> Result<Attenuated, AttenuateError> {
    let chain = read_chain(token)?;
    let expires = match ttl {
        Some(_) => Some(expiry(&chain, ttl, SystemTime::now())?),
        None => None,
    };
    if grant.is_empty() && expires.is_none() {
        return Err(AttenuateError::NothingToNarrow);
    }
    let block = narrowing_block(grant, expires)?;
    let out = parse(token)?.append(block).map_err(biscuit_err)?;
    finish(out)
}

/// Reads the chain of a token without verifying the root signature (the
/// holder may not know the root key).
pub fn read_chain(token: &[u8]) -> Result<Chain, AttenuateError> {
    let biscuit = parse(token)?;
    let blocks = decode_blocks(token)?;
    Ok(Chain::from_blocks(&blocks, biscuit.root_key_id())?)
}

fn expiry(
    chain: &Chain,
    ttl: Option<Duration>,
    now: SystemTime,
) -> Result<SystemTime, AttenuateError> {
    let parent: Option<SystemTime> = chain.expires_at.map(SystemTime::from);
    if let Some(p) = parent {
        if p <= now {
            return Err(AttenuateError::Expired);
        }
    }
    let wanted = ttl.map(|t| now + t);
    match (wanted, parent) {
        (Some(w), Some(p)) => Ok(w.min(p)),
        (Some(w), None) => Ok(w),
        (None, Some(p)) => Ok(p),
        // Issuer-minted roots always expire; a chain without any expiry is
        // not Mandate's, and a hop must carry one.
        (None, None) => Err(AttenuateError::Spec(mandate_spec::SpecError::Token(
            "the chain states no expiry; give --ttl".into(),
        ))),
    }
}

fn parse(token: &[u8]) -> Result<UnverifiedBiscuit, AttenuateError> {
    UnverifiedBiscuit::from(token).map_err(biscuit_err)
}

fn finish(out: UnverifiedBiscuit) -> Result<Attenuated, AttenuateError> {
    let token = out.to_vec().map_err(biscuit_err)?;
    let chain = read_chain(&token)?;
    let revocation_id = out
        .revocation_identifiers()
        .last()
        .map(hex::encode)
        .unwrap_or_default();
    Ok(Attenuated {
        token,
        chain,
        revocation_id,
    })
}

fn biscuit_err(e: biscuit_auth::error::Token) -> AttenuateError {
    AttenuateError::Biscuit(e.to_string())
}
