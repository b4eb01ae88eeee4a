//! # mandate-verifier
//!
//! The library an API server embeds to decide requests made with Mandate
//! tokens. Per request: parse the token and verify every signature (Biscuit)
//! → rebuild the delegation chain and check its integrity (each hop signed by
//! the key the previous hop named, depth limit) → look up every block's
//! revocation id, the token family and every agent key in the revocation
//! list ([`revocation::RevocationStore`], RocksDB) → run the Datalog
//! authorizer with exactly one action, one resource, the typed parameters and
//! the time → a [`Decision`] with the reason in words and the chain.
//!
//! The root holds what every embedder uses: [`Verifier`] and its
//! configuration ([`RootKeys`], [`Limits`], [`CacheOptions`]), what a request
//! presents ([`Presented`]) and what comes back ([`Decision`], [`Denial`],
//! [`DenialKind`]). The rest, by concern:
//!
//! | module | what |
//! |---|---|
//! | [`revocation`] | the [`revocation::RevocationList`] trait, revocation targets and entries, the RocksDB [`revocation::RevocationStore`] (feature `rocksdb`, default) |
//! | `feed` | the NATS JetStream feed keeping a store current across a fleet (feature `feed`) |
//! | [`replay`] | single use of approvals and proof nonces: [`replay::SingleUse`], the RocksDB [`replay::ReplayGuard`] |
//! | `spend_bucket` | single use across a fleet: a JetStream key-value bucket in front of the local guard (feature `feed`) |
//! | [`usage`] | usage limits (SPEC §18): the [`usage::UsageMeter`] trait and the counters' rules |
//! | [`audit`] | the signed, hash-chained decision log and its verification |
//! | `http` | the tower/axum middleware, the request mapping, cold-decision threads (feature `http`) |
//! | [`metrics`] | the metric names the verifier emits through the `metrics` facade |
//!
//! Without the default feature `rocksdb` nothing is built from C++: bring a
//! [`revocation::RevocationList`] (a closure will do) and, to accept
//! approvals or proofs, a [`replay::SingleUse`].
//!
//! ```
//! use mandate_attenuate::{delegate, Delegation};
//! use mandate_issuer::{Issuer, MintRequest};
//! use mandate_spec::{Grant, Request};
//! use mandate_verifier::{RootKeys, Verifier};
//! use biscuit_auth::KeyPair;
//! use std::time::Duration;
//!
//! let issuer = Issuer::new(KeyPair::new());
//! let (support, sub) = (KeyPair::new(), KeyPair::new());
//! let root = issuer.mint(&MintRequest {
//!     principal: "user:alice".into(),
//!     agent: "support".into(),
//!     agent_key: support.public(),
//!     grant: Grant::parse(&["read,list:/api/customers/*"], &["rows<=100"]).unwrap(),
//!     ttl: Duration::from_secs(3600),
//!     purpose: None,
//!     max_depth: Some(2),
//! }).unwrap();
//! let child = delegate(&root.token, &support, &Delegation {
//!     agent: "sub".into(),
//!     agent_key: sub.public(),
//!     grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
//!     ttl: None,
//!     purpose: Some("look up one customer".into()),
//! }).unwrap();
//!
//! let (id, key) = issuer.keys().public_keys()[0];
//! let verifier = Verifier::new(RootKeys::new().with(id, key));
//! let read = Request::new("read", "/api/customers/42").param("rows", 1);
//! assert!(verifier.authorize(&child.token, &read).is_allowed());
//!
//! // The root allows `list`; hop 1 narrowed it away.
//! let list = Request::new("list", "/api/customers/42").param("rows", 1);
//! let d = verifier.authorize(&child.token, &list);
//! assert!(!d.is_allowed());
//! let denial = d.denial.unwrap();
//! assert_eq!(denial.hop, Some(1));
//! assert!(denial.reason.contains("action \"list\" is not allowed"), "{}", denial.reason);
//! ```

mod approval;
pub mod audit;
mod cache;
mod decision;
mod error;
mod explain;
#[cfg(feature = "feed")]
pub mod feed;
mod holder;
#[cfg(feature = "http")]
pub mod http;
mod keys;
mod limits;
pub mod metrics;
mod prepared;
pub mod replay;
mod restriction;
pub mod revocation;
#[cfg(feature = "feed")]
pub mod spend_bucket;
pub mod usage;
mod verifier;
mod wire;

pub use cache::CacheOptions;
pub use decision::{
    ApprovalNeeded, Approver, Decision, Denial, DenialKind, LimitDenial, LimitKind, Outcome,
    RestrictionDenial,
};
pub use error::VerifierError;
pub use holder::{Presented, DEFAULT_PROOF_SKEW};
pub use keys::RootKeys;
pub use limits::Limits;
pub use verifier::{Check, Verifier, INLINE_COST};
pub use wire::AuthorizeRequest;
