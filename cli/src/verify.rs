//! `mandate verify`: decide one request with a token.

use crate::io::{read_private_key, read_token};
use crate::out::unless_closed;
use crate::{EXIT_BAD_INPUT, EXIT_DENIED, EXIT_LIMIT_EXCEEDED};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mandate_spec::display::text;
use mandate_spec::{
    parse_duration, parse_public_key, Audience, HolderProof, ProofSubject, Request, Value,
};
use mandate_verifier::{
    replay::ReplayGuard,
    revocation::{RevocationStore, Target},
    usage::UsageStore,
    Decision, DenialKind, Presented, RootKeys, Verifier,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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
    /// Count usage limits (--limit, --budget) in this directory (RocksDB):
    /// needed to allow a request with a token that sets limits; an allowed
    /// request is charged against every limit on its path. Without it such
    /// requests are denied (limit_unavailable).
    #[arg(long, value_name = "DIR")]
    pub(crate) usage_db: Option<PathBuf>,
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

pub(crate) fn run(a: VerifyArgs) -> Result<ExitCode> {
    let key = parse_public_key(&a.public_key).context("--public-key")?;
    let request = request_of(&a)?;
    let token = read_token(&a.token)?;
    let skew = parse_duration(&a.proof_skew).context("--proof-skew")?;
    let mut verifier = Verifier::new(RootKeys::single(key)).with_proof_skew(skew);
    if let Some(dir) = &a.replay_db {
        verifier = verifier.with_replay_guard(std::sync::Arc::new(ReplayGuard::open(dir)?));
    }
    if let Some(dir) = &a.usage_db {
        verifier = verifier.with_usage(std::sync::Arc::new(UsageStore::open(dir)?));
    }
    let presented = presented(&a, &request, &token)?;
    let verifier = with_revocation_db(verifier, a.revocation_db.as_deref());
    let decision = verifier.authorize_presented(&token, &request, &presented);
    report(&decision, a.json)
}

/// The request to decide: `--action`, `--resource`, each `--param` and
/// `--time`, checked (§5.1).
fn request_of(a: &VerifyArgs) -> Result<Request> {
    let mut request = Request::new(a.action.clone(), a.resource.clone());
    for p in &a.param {
        let (name, value) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--param expects NAME=VALUE, got {p:?}"))?;
        request = request.try_param(name, Value::infer(value))?;
    }
    if let Some(t) = &a.time {
        let at = OffsetDateTime::parse(t, &Rfc3339)
            .map_err(|_| anyhow!("--time expects an RFC 3339 instant, got {t:?}"))?;
        request.time = SystemTime::from(at);
    }
    request.validate()?;
    Ok(request)
}

/// What comes with the token: the method, body, audience and target a
/// proof of possession covers, and the proof (`--proof`, or one made now
/// with `--proof-key`).
fn presented(a: &VerifyArgs, request: &Request, token: &[u8]) -> Result<Presented> {
    let body = match &a.body {
        Some(f) => std::fs::read(f).with_context(|| format!("--body: reading {}", f.display()))?,
        None => Vec::new(),
    };
    let method = a.method.clone().unwrap_or_else(|| request.action.clone());
    let audience = match &a.audience {
        Some(text) => Some(Audience::parse(text).context("--audience")?),
        None => None,
    };
    let target = a.target.clone().unwrap_or_else(|| request.resource.clone());
    let proof = match (&a.proof, &a.proof_key) {
        (Some(text), _) => Some(HolderProof::parse(text).context("--proof")?),
        (None, Some(file)) => {
            let holder = read_private_key(file).context("--proof-key")?;
            let Some(audience) = &audience else {
                bail!("--proof-key needs --audience: the origin the proof is made for");
            };
            let subject = ProofSubject {
                method: &method,
                audience,
                target: &target,
                body_digest: ProofSubject::digest(&body),
                token,
            };
            Some(HolderProof::sign(&holder, &subject, SystemTime::now()).context("--target")?)
        }
        (None, None) => None,
    };
    Ok(Presented::new(&method, &body, proof).at(audience, target))
}

/// `verifier`, consulting the revocation list in `dir` when one is given.
pub(crate) fn with_revocation_db(verifier: Verifier, dir: Option<&Path>) -> Verifier {
    let Some(dir) = dir else {
        return verifier;
    };
    match RevocationStore::open_read_only(dir) {
        Ok(store) => verifier.with_revocations(store),
        // Fail closed: a list that cannot be read denies every request.
        Err(e) => verifier.with_revocations(move |_: &[Target]| Err(e.clone())),
    }
}

/// Prints the decision (as JSON with `json`, else a line saying why) and
/// returns its exit code.
fn report(decision: &Decision, json: bool) -> Result<ExitCode> {
    // The exit code is the decision: a reader that went away changes
    // nothing (a denial stays exit 1).
    if json {
        unless_closed(outln!("{}", serde_json::to_string_pretty(decision)?))?;
    }
    let Some(denial) = &decision.denial else {
        if !json {
            match &decision.chain {
                Some(chain) => unless_closed(outln!("allowed: {chain}"))?,
                None => unless_closed(outln!("allowed"))?,
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    if decision.needs_approval() {
        if !json {
            eprintln!("needs approval: {}", text(&denial.reason));
            eprintln!(
                "(ask the approver: `mandate verify --json … > request.json`, then \
                 `mandate approve --key APPROVER_KEY --public-key ROOT_PUBKEY --token TOKEN \
                 request.json`)"
            );
        }
        return Ok(ExitCode::from(crate::EXIT_NEEDS_APPROVAL));
    }
    if !json {
        eprintln!("denied: {}", text(&denial.reason));
    }
    let code = match denial.kind {
        DenialKind::MalformedToken
        | DenialKind::BadSignature
        | DenialKind::UnknownRootKey
        | DenialKind::InvalidRequest => EXIT_BAD_INPUT,
        // HTTP's 429: the same request may be allowed once the window ends.
        DenialKind::LimitExceeded => EXIT_LIMIT_EXCEEDED,
        _ => EXIT_DENIED,
    };
    Ok(ExitCode::from(code))
}
