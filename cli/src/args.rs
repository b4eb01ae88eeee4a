//! The command line: every subcommand and flag of `mandate`.
//!
//! This is a contract other tools script against: keep flag names stable.

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
    /// Make a proof of possession for one request.
    ///
    /// Prints the Mandate-Proof header value.
    Prove(ProveArgs),

    // Revocation.
    /// Revoke a token, a hop or an agent key; synced before it prints.
    ///
    /// Adds to a revocation list (a RocksDB directory), and with --nats
    /// publishes to the revocation feed.
    Revoke(RevokeArgs),
    /// List or prune a revocation list; show or set its feed position.
    Revocations(RevocationsArgs),

    // Audit.
    /// Export or verify a verifier's signed audit log.
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

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    pub(crate) command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Write the log's records as JSON lines on standard output.
    Export(AuditExportArgs),
    /// Check every signature and the hash chain; exit 1 naming the first
    /// record altered, removed or reordered.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AuditExportArgs {
    /// The audit log directory (RocksDB; opened read-only, works beside a
    /// running verifier).
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// Start at the first record decided at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub(crate) since: Option<String>,
    /// Start at this sequence number.
    #[arg(long, value_name = "N")]
    pub(crate) since_seq: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["db", "file"])))]
pub(crate) struct AuditVerifyArgs {
    /// The audit log directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) db: Option<PathBuf>,
    /// An exported file (JSON lines), or - for standard input. It must
    /// start at record 1 unless --partial-from states where it starts.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<String>,
    /// The file is a partial export (`audit export --since…`) that must
    /// start at exactly record N.
    #[arg(long, value_name = "N", requires = "file", conflicts_with = "db")]
    pub(crate) partial_from: Option<u64>,
    /// The hash of record N-1 (kept from an earlier check, e.g. its head
    /// hash): ties a partial export to the records before it.
    #[arg(long, value_name = "HEX", requires = "partial_from")]
    pub(crate) prev_hash: Option<String>,
    /// The verifier's audit public key, ed25519/<hex>: the signatures must
    /// be its.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: String,
    /// Print the result as one JSON object on standard output: {"status":
    /// "ok", "records", "first_seq", "last_seq", "head_hash", "source",
    /// "partial_from", "prev_hash_checked"} or {"status": "tampered" |
    /// "empty", "problem", "source"} (exit 1).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `mandate serve`: flags override the configuration file's settings.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML configuration file (listen, data_dir, current_key_id,
    /// [[root_keys]] id + file).
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
    /// Log format on standard error (level from RUST_LOG, default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["id", "token", "agent_key", "ids_from"])))]
pub(crate) struct RevokeArgs {
    /// The revocation list directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// A block's revocation id (hex, as `inspect` shows it).
    #[arg(long, value_name = "HEX")]
    pub(crate) id: Option<String>,
    /// A token file: revokes its whole family, or with --hop N that hop and
    /// everything derived from it.
    #[arg(long, value_name = "FILE")]
    pub(crate) token: Option<String>,
    /// With --token: the hop to revoke (0 = the root block).
    #[arg(long, value_name = "N", requires = "token")]
    pub(crate) hop: Option<usize>,
    /// An agent key (ed25519/<hex>): every chain through that agent.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) agent_key: Option<String>,
    /// Revocation ids, one hex id per line, from FILE or - (standard input);
    /// prints `revoked <id>` as each one is synced.
    #[arg(long, value_name = "FILE")]
    pub(crate) ids_from: Option<String>,
    /// Why (recorded and shown in every denial it causes).
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
    /// Who revokes (default: $USER).
    #[arg(long, value_name = "WHO")]
    pub(crate) by: Option<String>,
    /// With --nats: also publish to the revocation feed, waiting for the
    /// server's acknowledgement.
    #[command(flatten)]
    pub(crate) feed: NatsArgs,
    /// Print each entry revoked as a JSON line: the object `revocations
    /// --json` lists, plus "feed_sequence" (the feed's sequence with --nats,
    /// else null).
    #[arg(long)]
    pub(crate) json: bool,
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

#[derive(Debug, Args)]
pub(crate) struct RevocationsArgs {
    /// The revocation list directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) db: PathBuf,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Delete entries whose target has expired (they can no longer matter),
    /// then compact. Entries without an expiry are kept.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Print where this list stands in the revocation feed: the last stream
    /// sequence applied and the stream it counts in.
    #[arg(long, conflicts_with_all = ["prune", "set_feed_position"])]
    pub(crate) feed_position: bool,
    /// Recovery for a stuck feed (stop the verifier first): resume the feed
    /// after stream sequence N (0: from the start of the stream) in whichever
    /// stream the server has. Entries already applied stay.
    #[arg(long, value_name = "N", conflicts_with = "prune")]
    pub(crate) set_feed_position: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Write the private key to FILE (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print one JSON object on standard output: {"public_key",
    /// "private_key_file"} with --out, else {"public_key", "private_key"}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The grant flags shared by `issue` and `attenuate`.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// Allowed actions on a resource pattern: ACTION[,ACTION…]:PATTERN,
    /// e.g. read,list:/api/customers/*  (repeat for alternatives).
    #[arg(long, value_name = "ACTIONS:PATTERN")]
    pub(crate) allow: Vec<String>,
    /// A constraint every alternative must meet: PARAM<=N, PARAM>=N, PARAM<N,
    /// PARAM>N, PARAM=VALUE, 'PARAM starts-with TEXT', 'PARAM ends-with TEXT',
    /// 'PARAM in A|B', time>=RFC3339, time<=RFC3339 (repeatable).
    #[arg(long = "where", value_name = "CONSTRAINT")]
    pub(crate) where_: Vec<String>,
    /// A raw Datalog check (`check if …`) added as is: the escape hatch.
    #[arg(long, value_name = "CHECK")]
    pub(crate) datalog: Vec<String>,
    /// Why this token or hop exists.
    #[arg(long, value_name = "TEXT")]
    pub(crate) purpose: Option<String>,
    /// An approval rule: 'ACTIONS when PARAM>N[ and …] by NAME=PUBKEY', e.g.
    /// 'pay when amount>100 by finance=ed25519/…': those requests also need
    /// an approval signed by that key (repeatable).
    #[arg(long, value_name = "RULE")]
    pub(crate) approval: Vec<String>,
    /// Every request must carry a fresh proof signed by the final holder's
    /// key (holder binding).
    #[arg(long)]
    pub(crate) require_proof: bool,
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// The issuer's root private key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The root key id written into the token (for key rotation).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) key_id: u32,
    /// Who the token acts for, e.g. user:alice.
    #[arg(long, value_name = "ID")]
    pub(crate) principal: String,
    /// The first agent's id.
    #[arg(long, value_name = "AGENT_ID")]
    pub(crate) to: String,
    /// The first agent's public key, ed25519/<hex>.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) to_key: String,
    #[command(flatten)]
    pub(crate) grant: GrantArgs,
    /// How long the token lives: 30s, 10m, 1h, 7d.
    #[arg(long, value_name = "DURATION")]
    pub(crate) ttl: String,
    /// Most delegation hops allowed below the root.
    #[arg(long, value_name = "N")]
    pub(crate) max_depth: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct AttenuateArgs {
    /// The holder agent's private key file (signs the hop).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The next agent's id.
    #[arg(long, value_name = "AGENT_ID")]
    pub(crate) to: String,
    /// The next agent's public key, ed25519/<hex>.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) to_key: String,
    #[command(flatten)]
    pub(crate) grant: GrantArgs,
    /// How long the hop lives (never past the chain's expiry; default: until it).
    #[arg(long, value_name = "DURATION")]
    pub(crate) ttl: Option<String>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Verify the signatures with this root public key (else they are not verified).
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: Option<String>,
    /// Also write the chain as a self-contained HTML page to FILE.
    #[arg(long, value_name = "OUT.html")]
    pub(crate) html: Option<PathBuf>,
    /// Mark the hops this revocation list revokes (a RocksDB directory,
    /// opened read-only).
    #[arg(long, value_name = "DIR")]
    pub(crate) revocation_db: Option<PathBuf>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The issuer's root public key, ed25519/<hex>.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: String,
    /// The request's action, e.g. read.
    #[arg(long, value_name = "A")]
    pub(crate) action: String,
    /// The request's resource, e.g. /api/customers/42.
    #[arg(long, value_name = "R")]
    pub(crate) resource: String,
    /// A request parameter NAME=VALUE; VALUE is an integer if it parses as
    /// one, else a string (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    pub(crate) param: Vec<String>,
    /// Decide as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub(crate) time: Option<String>,
    /// Consult this revocation list (a RocksDB directory, opened read-only).
    /// If it cannot be opened, the request is denied.
    #[arg(long, value_name = "DIR")]
    pub(crate) revocation_db: Option<PathBuf>,
    /// Print the decision as JSON on standard output (for a needs-approval
    /// decision: what `mandate approve` takes).
    #[arg(long)]
    pub(crate) json: bool,
    /// Record used approvals and proof nonces in this directory (RocksDB):
    /// needed to accept an approval or a proof, each only once.
    #[arg(long, value_name = "DIR")]
    pub(crate) replay_db: Option<PathBuf>,
    /// A proof of possession (the Mandate-Proof header value, from
    /// `mandate prove`).
    #[arg(long, value_name = "PROOF", conflicts_with = "proof_key")]
    pub(crate) proof: Option<String>,
    /// Make a fresh proof of possession now with this holder key FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) proof_key: Option<PathBuf>,
    /// How far a proof's timestamp may be from the verifier's clock.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub(crate) proof_skew: String,
    /// The method the proof covers [default: the action].
    #[arg(long, value_name = "METHOD")]
    pub(crate) method: Option<String>,
    /// This verifier's audience, the origin proofs must be made for
    /// (http[s]://HOST[:PORT]). Without it every proof is refused.
    #[arg(long, value_name = "URL")]
    pub(crate) audience: Option<String>,
    /// The request-target the proof covers, path and query exactly as sent
    /// [default: the resource].
    #[arg(long, value_name = "TARGET")]
    pub(crate) target: Option<String>,
    /// The request body the proof covers (a file; default: empty).
    #[arg(long, value_name = "FILE")]
    pub(crate) body: Option<PathBuf>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The approver's private key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// How long the approval stays valid (short: 30s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub(crate) valid: String,
    /// Only show the request and its chain; sign nothing.
    #[arg(long)]
    pub(crate) show: bool,
    /// Approve without asking (required when standard input is not a terminal).
    #[arg(long)]
    pub(crate) yes: bool,
    /// The issuer's root public key, ed25519/<hex>: the token is verified
    /// with it, and only what it proves is shown.
    #[arg(long, value_name = "PUBKEY")]
    pub(crate) public_key: String,
    /// The token the approval is for (a file holding base64, or -): the
    /// chain shown and the block signed are read from it.
    #[arg(long, value_name = "FILE")]
    pub(crate) token: String,
    /// A revocation list to consult (a revoked chain is not approved).
    #[arg(long, value_name = "DIR")]
    pub(crate) revocation_db: Option<PathBuf>,
    /// The request to approve, as JSON: a needs-approval decision
    /// (`mandate verify --json`; only its `request` is read) or a bare
    /// `{"action", "resource", "params"}`: a file, or - for standard input.
    #[arg(value_name = "REQUEST", default_value = "-")]
    pub(crate) request: String,
}

#[derive(Debug, Args)]
pub(crate) struct AttachApprovalArgs {
    /// The approval block (base64, from `mandate approve`): a file or - .
    #[arg(long, value_name = "FILE")]
    pub(crate) approval: String,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}

#[derive(Debug, Args)]
pub(crate) struct ProveArgs {
    /// The final holder's private key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The request's method (HTTP), e.g. POST.
    #[arg(long, value_name = "METHOD")]
    pub(crate) method: String,
    /// The URL the request is sent to, exactly as sent, e.g.
    /// https://api.example.com/transfer?amount=5: its origin is the audience,
    /// its path and query the target.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with_all = ["audience", "target"],
        required_unless_present_all = ["audience", "target"]
    )]
    pub(crate) url: Option<String>,
    /// The audience, the origin the request is sent to
    /// (http[s]://HOST[:PORT]); with --target, instead of --url.
    #[arg(long, value_name = "URL", requires = "target")]
    pub(crate) audience: Option<String>,
    /// The request-target, path and query exactly as sent, e.g.
    /// /transfer?amount=5; with --audience, instead of --url.
    #[arg(long, value_name = "TARGET", requires = "audience")]
    pub(crate) target: Option<String>,
    /// The request body (a file; default: empty).
    #[arg(long, value_name = "FILE")]
    pub(crate) body: Option<PathBuf>,
    /// The token: a file holding base64, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) token: String,
}
