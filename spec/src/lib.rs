//! # mandate-spec
//!
//! The vocabulary of Mandate tokens as code: [`Grant`]s (what a hop allows),
//! [`Request`]s (what the verifier decides), the Datalog they become, the
//! blocks of a token and the delegation [`Chain`] read back from them.
//! The normative text is `spec/SPEC.md`; this crate and that document change
//! together.
//!
//! Every other Mandate crate builds on this one: the issuer and the
//! attenuator write blocks with [`root_block`] and [`hop_block`]; the verifier
//! and `mandate inspect` read them with [`decode_blocks`] and
//! [`Chain::from_blocks`].
//!
//! ```
//! use mandate_spec::{Grant, Request, Value};
//!
//! let grant = Grant::parse(&["read,list:/api/customers/*"], &["rows<=100"]).unwrap();
//! let ok = Request::new("read", "/api/customers/42").param("rows", 50);
//! let too_many = Request::new("read", "/api/customers/42").param("rows", 500);
//! assert!(grant.alternatives[0].allows(&ok));
//! assert!(!grant.alternatives[0].allows(&too_many));
//! assert_eq!(Value::infer("42"), Value::Int(42));
//! ```

mod blocks;
mod chain;
mod cost;
mod datalog;
pub mod display;
mod duration;
mod effective;
mod encoding;
mod error;
mod grant;
mod keys;
mod proof;
mod request;
pub mod vocab;

pub use blocks::{hop_block, narrowing_block, root_block, HopContent, RootContent};
pub use chain::{
    decode_blocks, decode_verified_blocks, Approval, BlockContent, Chain, ChainError,
    ChainErrorKind, Hop, Narrowing, Signer,
};
pub use cost::{block_count, cost_bound, cost_of, Cost, MAX_BLOCKS, MAX_COST, MAX_SYMBOLS};
pub use datalog::{decode_check, grant_checks, is_holder_check, is_limits_check, DecodedCheck};
pub use duration::parse_duration;
pub use effective::{effective_capabilities, Capability, PathLimit};
pub use encoding::{bearer_token, token_from_text, token_to_text, MAX_TOKEN_BYTES};
pub use error::SpecError;
pub use grant::{
    resource_parent, validate_limits, window_text, Alternative, ApprovalRule, Constraint, Grant,
    IntCmp, Lift, Limit, Metered, ResourcePattern, Restriction, RestrictionEntry, RestrictionRule,
    RestrictionTarget, Value, MAX_LIMIT, MAX_LIMITS_PER_BLOCK, MAX_NAME_LEN, MAX_RESTRICTION_RULES,
    MAX_RESTRICTION_TEXT, MAX_VALUE_LEN, MAX_WINDOW_SECS,
};
pub use keys::{
    format_private_key, format_public_key, parse_private_key, parse_public_key,
    public_key_from_bytes,
};
pub use proof::{Audience, HolderProof, ProofSubject, MAX_TARGET_LEN, PROOF_HEADER, PROOF_VERSION};
pub use request::{check_canonical, check_resource, unique_params, Request, MAX_PARAMS};

/// Re-export of the biscuit-auth version this crate is built on, so users
/// name the same types.
pub use biscuit_auth;
