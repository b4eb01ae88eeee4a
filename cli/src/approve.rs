//! `mandate approve`, `mandate attach-approval` and `mandate prove`: human
//! approval and proof of possession from the command line (SPEC §14, §15).

use crate::args::{ApproveArgs, AttachApprovalArgs, ProveArgs};
use crate::io::{read_private_key, read_token};
use anyhow::{anyhow, bail, Context, Result};
use mandate_attenuate::{approve as sign_approval, attach_approval};
use mandate_spec::{parse_duration, Audience, HolderProof, ProofSubject, Request};
use mandate_verifier::ApprovalNeeded;
use serde::Deserialize;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::SystemTime;

/// The parts of a needs-approval decision the approver works from.
#[derive(Deserialize)]
struct NeedsApproval {
    request: Request,
    approval: ApprovalNeeded,
    #[serde(default)]
    chain: Option<serde_json::Value>,
    #[serde(default)]
    denial: Option<serde_json::Value>,
}

fn read_text(source: &str) -> Result<String> {
    if source == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))
    }
}

pub(crate) fn approve(a: ApproveArgs) -> Result<ExitCode> {
    let text = read_text(&a.request)?;
    let asked: NeedsApproval = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: not a needs-approval decision (mandate verify --json): {e}",
            a.request
        )
    })?;
    let key = read_private_key(&a.key)?;
    let valid = parse_duration(&a.valid).context("--valid")?;
    // What is signed is what is shown: the digest is computed from the
    // request, and must be the one the verifier asked for.
    let digest = hex::encode(asked.request.approval_digest());
    if digest != asked.approval.digest {
        bail!(
            "the request shown does not match the digest asked for ({} vs {}): refusing to sign",
            &digest[..12],
            &asked.approval.digest[..asked.approval.digest.len().min(12)]
        );
    }
    let mine = key.public().to_string();
    if !a.show {
        if !asked.approval.approvers.iter().any(|p| p.key == mine) {
            bail!("this key ({mine}) is not one of the approvers this request asks for");
        }
        if !a.yes && !std::io::stdin().is_terminal() {
            bail!("refusing to approve without a person: run in a terminal, or pass --yes");
        }
    }
    let out = std::io::stderr();
    let mut err = out.lock();
    writeln!(err, "Approval requested")?;
    writeln!(
        err,
        "  request:  {} {}",
        asked.request.action, asked.request.resource
    )?;
    for (k, v) in &asked.request.params {
        writeln!(err, "            {k} = {v}")?;
    }
    if let Some(chain) = &asked.chain {
        let hops: Vec<String> = chain["hops"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                let purpose = h["purpose"]
                    .as_str()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                format!("{}{purpose}", h["agent"].as_str().unwrap_or("?"))
            })
            .collect();
        writeln!(
            err,
            "  on behalf of: {}",
            chain["principal"].as_str().unwrap_or("?")
        )?;
        writeln!(err, "  through:  {}", hops.join(" -> "))?;
    }
    if let Some(reason) = asked.denial.as_ref().and_then(|d| d["reason"].as_str()) {
        writeln!(err, "  why:      {reason}")?;
    }
    let names: Vec<String> = asked
        .approval
        .approvers
        .iter()
        .map(|p| format!("{} ({})", p.name, p.key))
        .collect();
    writeln!(err, "  approvers asked: {}", names.join(", "))?;
    writeln!(err, "  digest:   {}", asked.approval.digest)?;
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
        &asked.approval.third_party_request,
        &asked.request,
        SystemTime::now() + valid,
        &key,
    )?;
    println!("{block}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn attach(a: AttachApprovalArgs) -> Result<ExitCode> {
    if a.approval == "-" && a.token == "-" {
        bail!("--approval and the token cannot both come from standard input");
    }
    let approval = read_text(&a.approval)?;
    let token = read_token(&a.token)?;
    let out = attach_approval(&token, &approval)?;
    println!("{}", out.to_base64());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn prove(a: ProveArgs) -> Result<ExitCode> {
    let key = read_private_key(&a.key)?;
    let token = read_token(&a.token)?;
    let body = match &a.body {
        Some(f) => std::fs::read(f).with_context(|| format!("--body: reading {}", f.display()))?,
        None => Vec::new(),
    };
    let (audience, target) = match (&a.url, &a.audience, &a.target) {
        (Some(url), _, _) => Audience::split_url(url).context("--url")?,
        (None, Some(audience), Some(target)) => (
            Audience::parse(audience).context("--audience")?,
            target.clone(),
        ),
        _ => bail!("give --url, or --audience and --target"),
    };
    let proof = HolderProof::sign(
        &key,
        &ProofSubject {
            method: &a.method,
            audience: &audience,
            target: &target,
            body_digest: ProofSubject::digest(&body),
            token: &token,
        },
        SystemTime::now(),
    )
    .context("--target")?;
    println!("{}", proof.to_header());
    Ok(ExitCode::SUCCESS)
}
