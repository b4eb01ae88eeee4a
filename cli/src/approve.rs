//! `mandate approve`: human approval of one request from the command line
//! (SPEC §14).

use crate::io::{read_private_key, read_text, read_token};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mandate_attenuate::approve as sign_approval;
use mandate_spec::display::{self, quoted, word};
use mandate_spec::{parse_duration, parse_public_key, Request, Value};
use mandate_verifier::{
    revocation::{RevocationStore, Target},
    Denial, DenialKind, Outcome, RootKeys, Verifier,
};
use serde::Deserialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

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

/// The request an approver is asked about: a needs-approval decision (only
/// its `request` is read: its chain, reason and approvers are claims, and
/// are recomputed from the token) or a bare request.
#[derive(Deserialize)]
#[serde(untagged)]
enum Asked {
    Decision { request: RequestJson },
    Bare(RequestJson),
}

/// A request as JSON (§5.1), without its time: an approval is decided now.
#[derive(Deserialize)]
struct RequestJson {
    action: String,
    resource: String,
    #[serde(default)]
    params: std::collections::BTreeMap<String, Value>,
}

/// `mandate approve`: shows a request and the chain it would be made
/// through, as verified from the token itself with the root key, and signs
/// an approval block bound to that token and that request's digest.
///
/// Nothing shown comes from the JSON it is handed but the request itself,
/// which is what the digest is computed from: the chain (principal, agents,
/// purposes), why approval is needed and by whom are what the verifier says
/// of this token now, and the block signed extends this token.
pub(crate) fn run(a: ApproveArgs) -> Result<ExitCode> {
    if a.request == "-" && a.token == "-" {
        bail!("the request and --token cannot both come from standard input");
    }
    let text = read_text(&a.request)?;
    let asked: Asked = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: not a request or a needs-approval decision (mandate verify --json): {e}",
            a.request
        )
    })?;
    let (Asked::Decision { request: r } | Asked::Bare(r)) = asked;
    let mut request = Request::new(r.action, r.resource);
    request.params = r.params;
    request.validate()?;
    let key = read_private_key(&a.key)?;
    let valid = parse_duration(&a.valid).context("--valid")?;
    let root = parse_public_key(&a.public_key).context("--public-key")?;
    let token = read_token(&a.token)?;
    let mut verifier = Verifier::new(RootKeys::single(root));
    if let Some(dir) = &a.revocation_db {
        verifier = match RevocationStore::open_read_only(dir) {
            Ok(store) => verifier.with_revocations(store),
            Err(e) => verifier.with_revocations(move |_: &[Target]| Err(e.clone())),
        };
    }
    let decision = verifier.decide_for_approver(&token, &request);
    let (needed, chain, reason) = match (decision.decision, decision.approval, decision.chain) {
        (Outcome::NeedsApproval, Some(needed), Some(chain)) => {
            let reason = decision.denial.map(|d| d.reason).unwrap_or_default();
            (needed, chain, reason)
        }
        (Outcome::Allow, _, _) => {
            bail!("this request needs no approval: the token allows it as it is; nothing signed")
        }
        _ => {
            let denial = decision
                .denial
                .unwrap_or_else(|| Denial::new(DenialKind::NotAllowed, "denied"));
            match denial.kind {
                DenialKind::MalformedToken
                | DenialKind::BadSignature
                | DenialKind::UnknownRootKey
                | DenialKind::BrokenChain => bail!(
                    "the token does not verify with this root key: {}; nothing shown or signed",
                    denial.reason
                ),
                _ => bail!(
                    "the token does not allow this request, with or without an approval: {}; \
                     nothing signed",
                    denial.reason
                ),
            }
        }
    };
    let mine = key.public().to_string();
    if !a.show {
        if !needed.approvers.iter().any(|p| p.key == mine) {
            bail!("this key ({mine}) is not one of the approvers this request asks for");
        }
        if !a.yes && !std::io::stdin().is_terminal() {
            bail!("refusing to approve without a person: run in a terminal, or pass --yes");
        }
    }
    let out = std::io::stderr();
    let mut err = out.lock();
    writeln!(err, "Approval requested (chain verified with the root key)")?;
    // Every string below is escaped (SPEC §16): a token or a request
    // cannot draw lines or move text on the approver's screen.
    writeln!(
        err,
        "  request:  {} {}",
        word(&request.action),
        word(&request.resource)
    )?;
    for (k, v) in &request.params {
        writeln!(err, "            {} = {v}", word(k))?;
    }
    let hops: Vec<String> = chain
        .hops
        .iter()
        .map(|h| match &h.purpose {
            Some(p) => format!("{} ({})", word(&h.agent), quoted(p)),
            None => word(&h.agent).to_string(),
        })
        .collect();
    writeln!(err, "  on behalf of: {}", word(&chain.principal))?;
    writeln!(err, "  through:  {}", hops.join(" -> "))?;
    writeln!(err, "  why:      {}", display::text(&reason))?;
    let names: Vec<String> = needed
        .approvers
        .iter()
        .map(|p| format!("{} ({})", word(&p.name), word(&p.key)))
        .collect();
    writeln!(err, "  approvers asked: {}", names.join(", "))?;
    writeln!(err, "  digest:   {}", needed.digest)?;
    if a.show {
        return Ok(ExitCode::SUCCESS);
    }
    if !a.yes {
        write!(err, "Approve this exact request for {}? [y/N] ", a.valid)?;
        err.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            writeln!(err, "not approved")?;
            return Ok(ExitCode::from(crate::EXIT_DENIED));
        }
    }
    let block = sign_approval(
        &needed.third_party_request,
        &request,
        SystemTime::now() + valid,
        &key,
    )?;
    outln!("{block}")?;
    Ok(ExitCode::SUCCESS)
}
