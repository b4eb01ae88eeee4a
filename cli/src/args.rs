//! The command line: `mandate` and its subcommands. Each subcommand's flags
//! are in its own file beside its `run` (keygen.rs, verify.rs, …); the
//! servers' are still here.
//!
//! This is a contract other tools script against: keep flag names stable.

use crate::approve::ApproveArgs;
use crate::attach_approval::AttachApprovalArgs;
use crate::attenuate::AttenuateArgs;
use crate::audit::AuditArgs;
use crate::inspect::InspectArgs;
use crate::issue::IssueArgs;
use crate::keygen::KeygenArgs;
use crate::prove::ProveArgs;
use crate::request_approval::RequestApprovalArgs;
use crate::restrict::RestrictArgs;
use crate::restrictions::RestrictionsArgs;
use crate::revocations::RevocationsArgs;
use crate::revoke::RevokeArgs;
use crate::verify::VerifyArgs;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Mandate: delegation-chain capability tokens for AI agents.
#[derive(Debug, Parser)]
#[command(name = "mandate", version, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Every subcommand, in the order of the groups `mandate --help` shows them
/// in (help.rs): the first line of each doc comment is its entry there.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    // Tokens.
    /// Generate a key pair; print its public key (ed25519/<hex>).
    ///
    /// With --out FILE the private key is written to FILE (mode 0600) and the
    /// public key printed; without, the private key goes to standard output
    /// and the public key to standard error.
    Keygen(KeygenArgs),
    /// Mint a root token for a principal and a first agent.
    ///
    /// Prints the token (base64).
    Issue(IssueArgs),
    /// Delegate: append a hop signed by the holder's key.
    ///
    /// Prints the new token (base64); the hop can only narrow what the token
    /// allows.
    Attenuate(AttenuateArgs),
    /// Show a token's delegation chain, hop by hop.
    Inspect(InspectArgs),
    /// Decide one request with a token.
    ///
    /// Exit 0 allowed, 1 denied, 2 bad input, 3 needs approval.
    Verify(VerifyArgs),

    // Approvals and proofs.
    /// Review a request that needs approval; sign the approval.
    ///
    /// Shows the request and the chain it would be made through, as
    /// verified from the token with the root key. Prints the approval block
    /// (base64), for `mandate attach-approval`.
    Approve(ApproveArgs),
    /// Append an approval block to a token (prints the new token).
    AttachApproval(AttachApprovalArgs),
    /// Ask the issuer service for a person's approval; wait and attach it.
    ///
    /// Files the request with the agent's token (POST /v1/approvals) and
    /// prints its id; with --wait, waits for the decision: approved, prints
    /// the token with the approval attached; denied, the approver's reason
    /// (exit 1); still pending, exit 3.
    RequestApproval(RequestApprovalArgs),
    /// Make a proof of possession for one request.
    ///
    /// Prints the Mandate-Proof header value.
    Prove(ProveArgs),

    // Revocation and live restrictions.
    /// Revoke a token, a hop or an agent key; synced before it prints.
    ///
    /// Adds to a revocation list (a RocksDB directory), and with --nats
    /// publishes to the revocation feed.
    Revoke(RevokeArgs),
    /// List or prune a revocation list; show or set its feed position.
    Revocations(RevocationsArgs),
    /// Restrict a live token, hop, agent key or principal; or lift one.
    ///
    /// Adds a live restriction (deny, require approval, tighten, limit) to a
    /// revocation list, synced before it prints; with --nats publishes it to
    /// the revocation feed. It applies to the target and everything derived
    /// from it, until lifted or expired with its target.
    Restrict(RestrictArgs),
    /// List the live restrictions of a revocation list (--all: lifted too).
    Restrictions(RestrictionsArgs),

    // Audit.
    /// Export, verify or collect verifiers' signed audit logs.
    Audit(AuditArgs),

    // Servers.
    /// Run the issuer HTTP service with its embedded verifier.
    ///
    /// One process, one data directory: minting, revocation, the approvals
    /// desk and /ui/decisions.
    Serve(ServeArgs),
    /// Run a verifier: HTTP decisions, revocations from the NATS feed.
    ///
    /// An HTTP authorization endpoint with a local RocksDB revocation list
    /// fed by the NATS JetStream revocation feed.
    Verifierd(VerifierdArgs),
    /// Run a verifying reverse proxy in front of APIs and MCP servers.
    ///
    /// Decides each request, strips the token, injects the upstream's
    /// credential.
    Gateway(GatewayArgs),

    // Shell integration.
    /// Print a shell's completion script for mandate.
    Completions(crate::completions::CompletionsArgs),
    /// Write mandate's man pages (or print mandate(1)).
    Man(crate::man::ManArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The configuration file (TOML: listen, public_key, revocation_db,
    /// nats, audit_dir, audit_key_file, [[routes]]).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// Log format on standard error (level from RUST_LOG, default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
}

/// `mandate serve`: flags override the configuration file's settings.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML configuration file (listen, data_dir, current_key_id,
    /// [[root_keys]] id + file, [[approvers]] name + file, audit_key).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// The data directory: revocations/ and registry/ (RocksDB), created if
    /// missing.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A root private key FILE and its root key id, as ID=FILE (repeatable;
    /// replaces the configuration file's list). Keys only from files.
    #[arg(long = "root-key", value_name = "ID=FILE")]
    pub(crate) root_key: Vec<String>,
    /// The revocation feed: with --nats, every revocation is published to it
    /// (acknowledged only once the local store has synced it and JetStream
    /// has acknowledged it), and the embedded verifier follows it, so
    /// several issuer services see each other's revocations.
    #[command(flatten)]
    pub(crate) feed: NatsArgs,
    /// With --nats: deny everything after this long without word from the feed.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub(crate) staleness: String,
    /// A revocation private key FILE and its id, as ID=FILE (repeatable;
    /// replaces the configuration file's [[revocation_keys]]). The current
    /// one signs every entry published to the feed; all are trusted.
    /// Required with --nats.
    #[arg(long = "revocation-key-file", value_name = "ID=FILE")]
    pub(crate) revocation_key_file: Vec<String>,
    /// The id of the revocation key that signs (required with several).
    #[arg(long, value_name = "N")]
    pub(crate) current_revocation_key_id: Option<u32>,
    /// More revocation public keys the embedded verifier trusts on the feed
    /// (e.g. another issuer service's), beside its own.
    #[command(flatten)]
    pub(crate) trust: crate::feed::TrustArgs,
    /// The id of the root key that signs (required with several keys).
    #[arg(long, value_name = "N")]
    pub(crate) current_key_id: Option<u32>,
    /// An approver key FILE the service signs approvals with, as NAME=FILE
    /// (repeatable; replaces the configuration file's list).
    #[arg(long = "approver", value_name = "NAME=FILE")]
    pub(crate) approver: Vec<String>,
    /// Sign every decision into an audit log (DATA_DIR/audit) with the key
    /// in FILE, and list them at GET /ui/decisions.
    #[arg(long, value_name = "FILE")]
    pub(crate) audit_key: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) audit_publish: AuditPublishArgs,
    /// Log format on standard error (level from RUST_LOG, default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
}

#[derive(Debug, Args)]
pub(crate) struct VerifierdArgs {
    /// Directory of this verifier's revocation list (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// The issuer's root public key, ed25519/<hex>.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: String,
    /// The revocation feed this verifier follows. Without --nats the local
    /// list is used as is.
    #[command(flatten)]
    pub(crate) feed: NatsArgs,
    /// The issuer's revocation keys whose signed feed entries are applied.
    #[command(flatten)]
    pub(crate) trust: crate::feed::TrustArgs,
    /// Deny everything after this long without word from the feed.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub(crate) staleness: String,
    /// INSECURE: keep allowing when the feed is stale or stuck (revocations
    /// may be missed). Logged loudly at start.
    #[arg(long)]
    pub(crate) insecure_fail_open_when_stale: bool,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8181")]
    pub(crate) listen: String,
    /// Record every decision in a signed audit log at DIR (RocksDB).
    #[arg(long, value_name = "DIR", requires = "audit_key")]
    pub(crate) audit_db: Option<PathBuf>,
    /// The private key FILE that signs audit records (this verifier's own
    /// key; `mandate keygen --out FILE` makes one).
    #[arg(long, value_name = "FILE", requires = "audit_db")]
    pub(crate) audit_key: Option<PathBuf>,
    /// Answer decisions before their audit records are durable
    /// (asynchronous audit): faster, but a crash loses the records still
    /// queued (the window is logged at start). Default: every answer
    /// waits for its record's synced write (shared by concurrent ones).
    #[arg(long, requires = "audit_db")]
    pub(crate) audit_async: bool,
    #[command(flatten)]
    pub(crate) audit_publish: AuditPublishArgs,
    /// Accept approvals and proofs of possession, each once, recording
    /// their use at DIR (RocksDB). Without it, such requests are denied
    /// (replay_record_unavailable).
    #[arg(long, value_name = "DIR")]
    pub(crate) replay_db: Option<PathBuf>,
    /// Spend approvals once across every verifier on --nats, in this
    /// JetStream key-value bucket (e.g. MANDATE_SPENT), --replay-db serving
    /// as the local cache. Unreachable bucket: approvals are denied.
    #[arg(long, value_name = "NAME", requires_all = ["nats", "replay_db"])]
    pub(crate) spend_bucket: Option<String>,
    /// With --spend-bucket: spend proof-of-possession nonces fleet-wide too
    /// (bucket NAME_NONCES; a NATS round trip per holder-bound request).
    #[arg(long, requires = "spend_bucket")]
    pub(crate) spend_nonces: bool,
    /// Count usage limits (SPEC §18) at DIR (RocksDB, this verifier only):
    /// needed to allow requests with tokens that set limits. Without it
    /// such requests are denied (limit_unavailable).
    #[arg(long, value_name = "DIR")]
    pub(crate) usage_db: Option<PathBuf>,
    /// Count usage limits across every verifier on --nats instead, in this
    /// JetStream key-value bucket (e.g. MANDATE_USAGE): exact, by
    /// compare-and-set, a NATS round trip per limited request. NATS
    /// unreachable: such requests are denied (limit_unavailable).
    #[arg(
        long,
        value_name = "NAME",
        requires = "nats",
        requires = "usage_key_file",
        conflicts_with = "usage_db"
    )]
    pub(crate) usage_bucket: Option<String>,
    /// With --usage-bucket (required): the fleet key authenticating the
    /// counters, hexadecimal, at least 32 bytes, the same on every verifier
    /// of the bucket (make one: `head -c 32 /dev/urandom | xxd -p > FILE`).
    #[arg(long, value_name = "FILE", requires = "usage_bucket")]
    pub(crate) usage_key_file: Option<PathBuf>,
    /// With --usage-bucket: reserve up to N units of a counter at a time
    /// and spend them here without a round trip; what is left goes back
    /// after 5 s unused and at shutdown (other verifiers cannot use it
    /// meanwhile).
    #[arg(long, value_name = "N", requires = "usage_bucket",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) usage_lease: Option<u64>,
    /// With --usage-lease: how many verifiers share the counters; a lease
    /// takes at most 1/(2K) of what a counter has left.
    #[arg(long, value_name = "K", requires = "usage_lease", default_value = "4",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) usage_fleet_size: u64,
    /// Log format on standard error (level from RUST_LOG, default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
}

/// Publishing the audit log's signed checkpoints (SPEC §12.4).
#[derive(Debug, Args)]
pub(crate) struct AuditPublishArgs {
    /// Publish this verifier's signed audit checkpoints to the audit stream
    /// on --nats (subjects mandate.audit.<log-id>.checkpoints), so an
    /// auditor can tell records cut off the log's end (`mandate audit
    /// verify --nats`). Never delays a decision: unpublished checkpoints
    /// wait in the local log until NATS is back.
    #[arg(long, requires = "nats")]
    pub(crate) audit_publish: bool,
    /// With --audit-publish: publish the records too (subject
    /// mandate.audit.<log-id>.records), for `mandate audit collect`.
    #[arg(long, requires = "audit_publish")]
    pub(crate) audit_publish_records: bool,
    /// With --audit-publish: the JetStream stream.
    #[arg(long, value_name = "NAME", default_value = "MANDATE_AUDIT")]
    pub(crate) audit_stream: String,
}

/// Where the revocation feed is and how to reach it. Secrets only from files.
#[derive(Debug, Args)]
pub(crate) struct NatsArgs {
    /// The NATS server carrying the revocation feed (JetStream), e.g.
    /// nats://127.0.0.1:4222.
    #[arg(long, value_name = "URL")]
    pub(crate) nats: Option<String>,
    /// A NATS credentials file (.creds: user JWT and NKey seed).
    #[arg(long, value_name = "FILE", requires = "nats", conflicts_with_all = ["nats_user", "nats_token_file"])]
    pub(crate) nats_creds: Option<PathBuf>,
    /// A NATS user name; the password is read from --nats-password-file.
    #[arg(long, value_name = "USER", requires_all = ["nats", "nats_password_file"], conflicts_with = "nats_token_file")]
    pub(crate) nats_user: Option<String>,
    /// The file holding the NATS user's password.
    #[arg(long, value_name = "FILE", requires = "nats_user")]
    pub(crate) nats_password_file: Option<PathBuf>,
    /// A file holding a NATS authentication token.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub(crate) nats_token_file: Option<PathBuf>,
    /// Require TLS, with the server's certificate chaining to a CA in this
    /// PEM file.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub(crate) nats_ca: Option<PathBuf>,
}
