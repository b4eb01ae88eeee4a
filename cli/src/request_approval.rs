//! `mandate request-approval`: an agent asks the issuer service for a
//! person's approval of one request (SERVICE.md S3 Approvals), optionally
//! waits for the decision and attaches the approval to its token (SPEC §14).

use crate::approval_client::{ApprovalService, Decision, Filed};
use crate::io::{read_token, write_token};
use crate::{EXIT_DENIED, EXIT_NEEDS_APPROVAL};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use http::StatusCode;
use mandate_spec::display::text;
use mandate_spec::{parse_duration, Request, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The longest `--wait`.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Args)]
pub(crate) struct RequestApprovalArgs {
    /// The issuer service, https://HOST[:PORT] (or http:// on loopback; it
    /// holds the approval queue).
    #[arg(long, value_name = "URL")]
    pub(crate) service: String,
    /// The agent's token (a file holding base64, or -): sent as the
    /// bearer of the request, and the token the approval is attached to.
    #[arg(long, value_name = "FILE")]
    pub(crate) token: String,
    /// The action of the request to approve, e.g. pay.
    #[arg(long, value_name = "A", required_unless_present_any = ["id", "decision"], requires = "resource")]
    pub(crate) action: Option<String>,
    /// Its resource, e.g. /api/payments.
    #[arg(long, value_name = "R", requires = "action")]
    pub(crate) resource: Option<String>,
    /// A parameter NAME=VALUE; VALUE is an integer if it parses as one,
    /// else a string (repeatable).
    #[arg(long, value_name = "NAME=VALUE", requires = "action")]
    pub(crate) param: Vec<String>,
    /// The request as JSON instead: a needs-approval decision (`mandate
    /// verify --json`; only its `request` is read) or `{"action",
    /// "resource", "params"}`: a file, or - .
    #[arg(long, value_name = "FILE", conflicts_with_all = ["action", "id"])]
    pub(crate) decision: Option<String>,
    /// Do not file: wait for the request filed before with this id.
    #[arg(long, value_name = "ID", requires = "wait", conflicts_with = "action")]
    pub(crate) id: Option<String>,
    /// Wait up to this long for a person's decision (e.g. 2m); approved,
    /// print the token with the approval attached.
    #[arg(long, value_name = "DURATION")]
    pub(crate) wait: Option<String>,
    /// Write the approved token to FILE (mode 0600) instead of standard
    /// output.
    #[arg(long, value_name = "FILE", requires = "wait")]
    pub(crate) out: Option<PathBuf>,
}

/// Files the request (unless `--id`); prints its id, or with `--wait`
/// waits: approved, the token with the approval block attached (stdout or
/// `--out`), exit 0; denied, the approver's reason, exit 1; still pending
/// at the end of the wait, exit 3 (wait again with `--id`).
pub(crate) fn run(a: RequestApprovalArgs) -> Result<ExitCode> {
    if a.token == "-" && a.decision.as_deref() == Some("-") {
        bail!("--token and --decision cannot both come from standard input");
    }
    let service = ApprovalService::new(&a.service)
        .map_err(|e| anyhow!(e))
        .context("--service")?;
    let wait = match &a.wait {
        None => None,
        Some(w) => {
            let d = parse_duration(w).context("--wait")?;
            if d.is_zero() || d > MAX_WAIT {
                bail!("--wait: from 1s to 24h");
            }
            Some(d)
        }
    };
    let request = match (&a.id, &a.decision) {
        (Some(_), _) => None,
        (None, Some(source)) => Some(crate::approve::asked_request(source)?),
        (None, None) => Some(request_of(&a)?),
    };
    let token = read_token(&a.token)?;
    let token_text = mandate_spec::token_to_text(&token);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    runtime.block_on(async move {
        let id = match (&a.id, request) {
            (Some(id), _) => id.clone(),
            (None, Some(request)) => match file(&service, &token_text, &request).await? {
                Ok(id) => id,
                Err(code) => return Ok(code),
            },
            (None, None) => bail!("nothing to file: give --action and --resource, or --decision"),
        };
        let Some(wait) = wait else {
            eprintln!(
                "approval requested: {id}; wait for it with `mandate request-approval --id {id} \
                 --wait 2m …`"
            );
            outln!("{id}")?;
            return Ok(ExitCode::SUCCESS);
        };
        eprintln!(
            "approval requested: {id}; waiting up to {}",
            a.wait.as_deref().unwrap_or_default()
        );
        let decided = service
            .wait(&id, Instant::now() + wait)
            .await
            .with_context(|| format!("waiting for approval request {id}"))?;
        match decided {
            Decision::Approved { block, by } => {
                let approved = mandate_attenuate::attach_approval(&token, &block)
                    .context("attaching the approval block the service sent")?;
                let text = approved.to_base64();
                match &a.out {
                    Some(path) => {
                        write_token(path, &text)?;
                        eprintln!(
                            "approved by {}: the token with the approval attached is in {}",
                            text_of(&by),
                            path.display()
                        );
                    }
                    None => {
                        eprintln!("approved by {}", text_of(&by));
                        outln!("{text}")?;
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Decision::Denied { by, reason } => {
                eprintln!(
                    "denied by {}: {} (approval request {id})",
                    text_of(&by),
                    text(&reason)
                );
                Ok(ExitCode::from(EXIT_DENIED))
            }
            Decision::Pending { last_error } => {
                match last_error {
                    Some(e) => eprintln!(
                        "still pending (id {id}): the service could not be asked ({})",
                        text(&e)
                    ),
                    None => eprintln!(
                        "still pending (id {id}): wait again with `mandate request-approval \
                         --id {id} --wait …`"
                    ),
                }
                Ok(ExitCode::from(EXIT_NEEDS_APPROVAL))
            }
        }
    })
}

/// Files `request`: its id, or the exit code of a refusal (already
/// explained on standard error).
async fn file(
    service: &ApprovalService,
    token: &str,
    request: &Request,
) -> Result<Result<String, ExitCode>> {
    match service.file(token, request).await.context("filing")? {
        Filed::Queued(id) => Ok(Ok(id)),
        Filed::Refused(StatusCode::FORBIDDEN, why) => {
            eprintln!("denied: {}", text(&why));
            Ok(Err(ExitCode::from(EXIT_DENIED)))
        }
        Filed::Refused(StatusCode::CONFLICT, why) => {
            bail!("nothing to approve: {why}")
        }
        Filed::Throttled {
            reason,
            retry_after,
        } => bail!(
            "the service does not queue it now: {}; retry in {retry_after} s",
            text(&reason)
        ),
        Filed::Refused(status, why) => bail!("the service refused it ({status}): {why}"),
    }
}

/// The request of `--action`, `--resource` and each `--param`, checked
/// (§5.1).
fn request_of(a: &RequestApprovalArgs) -> Result<Request> {
    let (Some(action), Some(resource)) = (&a.action, &a.resource) else {
        bail!("give --action and --resource, or --decision");
    };
    let mut request = Request::new(action.clone(), resource.clone());
    for p in &a.param {
        let (name, value) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--param expects NAME=VALUE, got {p:?}"))?;
        request = request.try_param(name, Value::infer(value))?;
    }
    request.validate()?;
    Ok(request)
}

/// A name the service sent, escaped; `unknown` when empty.
fn text_of(by: &str) -> String {
    if by.is_empty() {
        "unknown".into()
    } else {
        text(by).to_string()
    }
}
