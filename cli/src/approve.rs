//! `mandate approve`: human approval of one request from the command line
//! (SPEC §14).

use crate::io::{read_private_key, read_text, read_token};
use crate::verify::with_revocation_db;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mandate_attenuate::approve as sign_approval;
use mandate_spec::display::{self, quoted, word};
use mandate_spec::{parse_duration, parse_public_key, Chain, Request, Value};
use mandate_verifier::{ApprovalNeeded, Decision, Denial, DenialKind, Outcome, RootKeys, Verifier};
use serde::Deserialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
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
/// are recomputed from the token) or a bare request. One struct, not an
/// untagged enum: that would hide why a request was refused (a parameter
/// given twice) behind "did not match any variant".
#[derive(Deserialize)]
struct Asked {
    request: Option<RequestJson>,
    action: Option<String>,
    resource: Option<String>,
    #[serde(default, deserialize_with = "mandate_spec::unique_params")]
    params: std::collections::BTreeMap<String, Value>,
}

/// A request as JSON (§5.1), without its time: an approval is decided now.
#[derive(Deserialize)]
struct RequestJson {
    action: String,
    resource: String,
    #[serde(default, deserialize_with = "mandate_spec::unique_params")]
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
    let request = asked_request(&a.request)?;
    let key = read_private_key(&a.key)?;
    let valid = parse_duration(&a.valid).context("--valid")?;
    let root = parse_public_key(&a.public_key).context("--public-key")?;
    let token = read_token(&a.token)?;
    // A revocation list that cannot be opened makes every lookup fail: a
    // revoked chain is never approved.
    let verifier = with_revocation_db(
        Verifier::new(RootKeys::single(root)),
        a.revocation_db.as_deref(),
    );
    let pending = Pending::of(verifier.decide_for_approver(&token, &request))?;
    if !a.show {
        may_approve(&pending.needed, &key.public().to_string(), a.yes)?;
    }
    let out = std::io::stderr();
    let mut err = out.lock();
    pending.show(&mut err, &request)?;
    if a.show {
        return Ok(ExitCode::SUCCESS);
    }
    if !a.yes && !confirmed(&mut err, &a.valid)? {
        writeln!(err, "not approved")?;
        return Ok(ExitCode::from(crate::EXIT_DENIED));
    }
    let block = sign_approval(
        &pending.needed.third_party_request,
        &request,
        SystemTime::now() + valid,
        &key,
    )?;
    outln!("{block}")?;
    Ok(ExitCode::SUCCESS)
}

/// The request asked about, read from `source` (a file or `-`): only the
/// request itself, checked (§5.1).
pub(crate) fn asked_request(source: &str) -> Result<Request> {
    let text = read_text(source)?;
    let asked: Asked = serde_json::from_str(&text).map_err(|e| {
        anyhow!("{source}: not a request or a needs-approval decision (mandate verify --json): {e}")
    })?;
    let r = match asked {
        Asked {
            request: Some(r), ..
        } => r,
        Asked {
            action: Some(action),
            resource: Some(resource),
            params,
            ..
        } => RequestJson {
            action,
            resource,
            params,
        },
        _ => bail!(
            "{source}: not a request or a needs-approval decision (mandate verify --json): \
             it has no `request`, nor an `action` and a `resource`"
        ),
    };
    let mut request = Request::new(r.action, r.resource);
    request.params = r.params;
    request.validate()?;
    Ok(request)
}

/// A request that needs an approval, as the verifier says of this token:
/// what must be approved and by whom, through which chain, and why.
struct Pending {
    needed: ApprovalNeeded,
    chain: Arc<Chain>,
    reason: String,
}

impl Pending {
    /// The approval `decision` asks for; or why there is none to give: the
    /// request is allowed as it is, the token does not verify, or it does
    /// not allow the request even with an approval.
    fn of(decision: Decision) -> Result<Pending> {
        match (decision.decision, decision.approval, decision.chain) {
            (Outcome::NeedsApproval, Some(needed), Some(chain)) => {
                let reason = decision.denial.map(|d| d.reason).unwrap_or_default();
                Ok(Pending {
                    needed,
                    chain,
                    reason,
                })
            }
            (Outcome::Allow, _, _) => {
                bail!(
                    "this request needs no approval: the token allows it as it is; nothing signed"
                )
            }
            _ => Err(not_approvable(decision.denial)),
        }
    }

    /// Writes the request, its chain, why it needs approval, the approvers
    /// asked and the digest to `err`.
    fn show(&self, err: &mut impl Write, request: &Request) -> Result<()> {
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
        let hops: Vec<String> = self
            .chain
            .hops
            .iter()
            .map(|h| match &h.purpose {
                Some(p) => format!("{} ({})", word(&h.agent), quoted(p)),
                None => word(&h.agent).to_string(),
            })
            .collect();
        writeln!(err, "  on behalf of: {}", word(&self.chain.principal))?;
        writeln!(err, "  through:  {}", hops.join(" -> "))?;
        writeln!(err, "  why:      {}", display::text(&self.reason))?;
        let names: Vec<String> = self
            .needed
            .approvers
            .iter()
            .map(|p| format!("{} ({})", word(&p.name), word(&p.key)))
            .collect();
        writeln!(err, "  approvers asked: {}", names.join(", "))?;
        writeln!(err, "  digest:   {}", self.needed.digest)?;
        Ok(())
    }
}

/// Why a decision that is neither allowed nor pending an approval has
/// nothing to approve: a token that does not verify is neither shown nor
/// signed for.
fn not_approvable(denial: Option<Denial>) -> anyhow::Error {
    let denial = denial.unwrap_or_else(|| Denial::new(DenialKind::NotAllowed, "denied"));
    match denial.kind {
        DenialKind::MalformedToken
        | DenialKind::BadSignature
        | DenialKind::UnknownRootKey
        | DenialKind::BrokenChain => anyhow!(
            "the token does not verify with this root key: {}; nothing shown or signed",
            denial.reason
        ),
        _ => anyhow!(
            "the token does not allow this request, with or without an approval: {}; \
             nothing signed",
            denial.reason
        ),
    }
}

/// Whether this key (`mine`) may sign: it is one of the approvers asked,
/// and a person is there to confirm (or `--yes` was given).
fn may_approve(needed: &ApprovalNeeded, mine: &str, yes: bool) -> Result<()> {
    if !needed.approvers.iter().any(|p| p.key == mine) {
        bail!("this key ({mine}) is not one of the approvers this request asks for");
    }
    if !yes && !std::io::stdin().is_terminal() {
        bail!("refusing to approve without a person: run in a terminal, or pass --yes");
    }
    Ok(())
}

/// Asks the person at the terminal; only `y`, `Y` or `yes` approves.
fn confirmed(err: &mut impl Write, valid: &str) -> Result<bool> {
    write!(err, "Approve this exact request for {valid}? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
