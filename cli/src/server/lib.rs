//! # mandate_server
//!
//! What runs as a process, in one place: the library of the `mandate`
//! crate, which the `mandate` binary's server subcommands run.
//!
//! - the issuer HTTP service ([`Service`], `mandate serve`; protocol in
//!   `spec/SERVICE.md`): minting for admin tokens decided by the embedded
//!   verifier, a RocksDB [`Registry`] of what was minted, revocations through
//!   a [`RevocationSink`], approvals, the root public keys, `/ui/decisions`,
//!   `/healthz` and `/metrics`;
//! - [`mcp`]: the gateway's MCP mapping (a JSON-RPC message → the request
//!   decided);
//! - [`html`]: Mandate's HTML pages, built with maud (escapes by default):
//!   the chain page of `mandate inspect --html` and `/ui/decisions`.
//!
//! The libraries it runs — `mandate-spec`, `mandate-issuer`,
//! `mandate-attenuate`, `mandate-verifier` — hold no server code.

mod approval_bucket;
mod fleet;
pub mod html;
pub mod mcp;
mod registry;
mod service;
mod signed_record;
pub mod tls;

pub use approval_bucket::{ApprovalBucket, APPROVAL_BUCKET, APPROVAL_DOMAIN, APPROVAL_REJECTED};
pub use fleet::{MintFleet, MintFleetConfig, MINT_DOMAIN, MINT_REJECTED};
pub use registry::{Applied, Registry, TokenRecord};
pub use service::{
    describe_metrics, ApprovalQueue, ApprovalRecord, ApprovalStatus, ApproverFile, FeedSink,
    RenderMetrics, RevocationSink, RootKeyFile, Service, ServiceConfig, ServiceError,
    WebhookFormat, DEFAULT_LISTEN, DEFAULT_MAX_PENDING_PER_FAMILY, MAX_BODY_BYTES,
};
