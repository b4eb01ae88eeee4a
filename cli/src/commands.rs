//! One function per subcommand.

use crate::args::{AttenuateArgs, GrantArgs, InspectArgs, IssueArgs, KeygenArgs, VerifyArgs};
use crate::io::{read_private_key, read_token, write_private_key};
use crate::out::{unless_closed, Out};
use crate::{EXIT_BAD_INPUT, EXIT_DENIED};
use anyhow::{anyhow, bail, Context, Result};
use biscuit_auth::{Biscuit, KeyPair, UnverifiedBiscuit};
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest, SigningKeys as IssuerKeys};
use mandate_spec::display::{quoted, text, word};
use mandate_spec::{
    decode_blocks, effective_capabilities, format_public_key, parse_duration, parse_public_key,
    Audience, Chain, Grant, HolderProof, ProofSubject, Request, Value,
};
use mandate_verifier::{
    DenialKind, Presented, ReplayGuard, RevocationStore, RootKeys, Target, Verifier,
};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(crate) fn keygen(a: KeygenArgs) -> Result<ExitCode> {
    let key = KeyPair::new();
    let public = format_public_key(&key.public());
    match &a.out {
        Some(path) => {
            write_private_key(path, &key, a.force)?;
            if a.json {
                let out = json!({ "public_key": public, "private_key_file": path });
                outln!("{out}")?;
            } else {
                outln!("{public}")?;
            }
        }
        None => {
            let private = mandate_spec::format_private_key(&key);
            if a.json {
                outln!(
                    "{}",
                    json!({ "public_key": public, "private_key": private })
                )?;
            } else {
                // No file: the private key goes to standard output (for a
                // secret store), the public key to standard error.
                outln!("{private}")?;
                eprintln!("public key: {public}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn grant(g: &GrantArgs) -> Result<Grant> {
    let mut grant = Grant::parse(&g.allow, &g.where_)?;
    for rule in &g.approval {
        grant = grant.with_approval(rule).context("--approval")?;
    }
    grant.datalog = g.datalog.clone();
    grant.holder_bound = g.require_proof;
    Ok(grant)
}

pub(crate) fn issue(a: IssueArgs) -> Result<ExitCode> {
    let root = read_private_key(&a.key)?;
    let agent_key = parse_public_key(&a.to_key).context("--to-key")?;
    let ttl = parse_duration(&a.ttl).context("--ttl")?;
    let grant = grant(&a.grant)?;
    if grant.alternatives.is_empty() {
        bail!("a root token needs at least one --allow ACTIONS:PATTERN");
    }
    let issuer = Issuer::with_keys(IssuerKeys::new(a.key_id, root));
    let minted = issuer.mint(&MintRequest {
        principal: a.principal,
        agent: a.to,
        agent_key,
        grant,
        ttl,
        purpose: a.grant.purpose,
        max_depth: a.max_depth,
    })?;
    outln!("{}", minted.to_base64())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn attenuate(a: AttenuateArgs) -> Result<ExitCode> {
    let token = read_token(&a.token)?;
    let holder = read_private_key(&a.key)?;
    let agent_key = parse_public_key(&a.to_key).context("--to-key")?;
    let ttl = a
        .ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("--ttl")?;
    let out = delegate(
        &token,
        &holder,
        &Delegation {
            agent: a.to,
            agent_key,
            grant: grant(&a.grant)?,
            ttl,
            purpose: a.grant.purpose,
        },
    )?;
    outln!("{}", out.to_base64())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let token = read_token(&a.token)?;
    let root_key_id = match &a.public_key {
        Some(pk) => {
            let key = parse_public_key(pk).context("--public-key")?;
            Biscuit::from(&token, key)
                .map_err(|e| anyhow!("signatures do not verify with {pk}: {e}"))?
                .root_key_id()
        }
        None => UnverifiedBiscuit::from(&token)
            .map_err(|e| anyhow!("not a valid token: {e}"))?
            .root_key_id(),
    };
    let verified = a.public_key.is_some();
    let blocks = decode_blocks(&token)?;
    let chain =
        Chain::from_blocks(&blocks, root_key_id).map_err(|e| anyhow!("invalid chain: {e}"))?;
    let effective = effective_capabilities(&chain);
    let revoked = match &a.revocation_db {
        Some(dir) => revoked_hops(&chain, &RevocationStore::open_read_only(dir)?)?,
        None => vec![None; chain.hops.len()],
    };
    if let Some(out) = &a.html {
        std::fs::write(
            out,
            mandate_issuer::html::chain_page(&chain, verified, &revoked),
        )
        .with_context(|| format!("--html: writing {}", out.display()))?;
    }
    let mut out = Out::new();
    if a.json {
        let value = json!({
            "signatures_verified": verified,
            "root_key_id": root_key_id,
            "size_bytes": token.len(),
            "blocks": blocks.len(),
            "chain": chain,
            "effective": effective,
            "revoked": revoked,
        });
        // Rendered first: serde_json's writer would hide a closed pipe.
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Every token-derived string below is escaped (SPEC §16).
    writeln!(
        out,
        "token {} for principal {}",
        word(&chain.token_id),
        quoted(&chain.principal)
    )?;
    writeln!(out, "issued: {}", rfc3339(chain.issued_at))?;
    match &chain.expires_at {
        Some(e) => writeln!(out, "expires: {} (earliest along the chain)", rfc3339(*e))?,
        None => writeln!(out, "expires: never")?,
    }
    if verified {
        writeln!(out, "signatures: verified with the given root key")?;
    } else {
        writeln!(
            out,
            "signatures: NOT verified (pass --public-key to verify them)"
        )?;
    }
    if let Some(d) = chain.max_depth {
        writeln!(out, "max depth: {d} delegation hop(s)")?;
    }
    writeln!(out, "chain: {chain}")?;
    writeln!(out)?;
    for ((hop, cap), revoked) in chain.hops.iter().zip(&effective).zip(&revoked) {
        write!(out, "{hop}")?;
        writeln!(out, "  effective here: {}", cap.describe())?;
        if let Some(why) = revoked {
            writeln!(out, "  REVOKED: {}", text(why))?;
        }
    }
    for approval in &chain.approvals {
        write!(out, "{approval}")?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let key = parse_public_key(&a.public_key).context("--public-key")?;
    let mut request = Request::new(a.action, a.resource);
    for p in &a.param {
        let (name, value) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--param expects NAME=VALUE, got {p:?}"))?;
        request.params.insert(name.to_string(), Value::infer(value));
    }
    if let Some(t) = &a.time {
        let at = OffsetDateTime::parse(t, &Rfc3339)
            .map_err(|_| anyhow!("--time expects an RFC 3339 instant, got {t:?}"))?;
        request.time = SystemTime::from(at);
    }
    request.validate()?;
    let token = read_token(&a.token)?;
    let skew = parse_duration(&a.proof_skew).context("--proof-skew")?;
    let mut verifier = Verifier::new(RootKeys::single(key)).with_proof_skew(skew);
    if let Some(dir) = &a.replay_db {
        verifier = verifier.with_replay_guard(std::sync::Arc::new(ReplayGuard::open(dir)?));
    }
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
                token: &token,
            };
            Some(HolderProof::sign(&holder, &subject, SystemTime::now()).context("--target")?)
        }
        (None, None) => None,
    };
    let presented = Presented::new(&method, &body, proof).at(audience, target);
    if let Some(dir) = &a.revocation_db {
        verifier = match RevocationStore::open_read_only(dir) {
            Ok(store) => verifier.with_revocations(store),
            // Fail closed: a list that cannot be read denies every request.
            Err(e) => verifier.with_revocations(move |_: &[Target]| Err(e.clone())),
        };
    }
    let decision = verifier.authorize_presented(&token, &request, &presented);
    // The exit code is the decision: a reader that went away changes
    // nothing (a denial stays exit 1).
    if a.json {
        unless_closed(outln!("{}", serde_json::to_string_pretty(&decision)?))?;
    }
    let Some(denial) = &decision.denial else {
        if !a.json {
            match &decision.chain {
                Some(chain) => unless_closed(outln!("allowed: {chain}"))?,
                None => unless_closed(outln!("allowed"))?,
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    if decision.needs_approval() {
        if !a.json {
            eprintln!("needs approval: {}", text(&denial.reason));
            eprintln!(
                "(ask the approver: `mandate verify --json … > request.json`, then \
                 `mandate approve --key APPROVER_KEY request.json`)"
            );
        }
        return Ok(ExitCode::from(crate::EXIT_NEEDS_APPROVAL));
    }
    if !a.json {
        eprintln!("denied: {}", text(&denial.reason));
    }
    let bad_input = matches!(
        denial.kind,
        DenialKind::MalformedToken
            | DenialKind::BadSignature
            | DenialKind::UnknownRootKey
            | DenialKind::InvalidRequest
    );
    Ok(ExitCode::from(if bad_input {
        EXIT_BAD_INPUT
    } else {
        EXIT_DENIED
    }))
}

/// For each hop, why it is revoked (its block, the token family, its agent
/// key, or an earlier hop's, which kills everything below it), if it is.
fn revoked_hops(chain: &Chain, store: &RevocationStore) -> Result<Vec<Option<String>>> {
    let family = store.get(&Target::Token(chain.token_id.clone()))?;
    let mut out: Vec<Option<String>> = Vec::new();
    let mut above: Option<String> = None;
    for hop in &chain.hops {
        let own = store
            .get(&Target::Block(hex::decode(&hop.revocation_id)?))?
            .map(|e| format!("hop {} revoked", hop.hop) + &why(&e))
            .or(store
                .get(&Target::Agent(hop.agent_public_key.to_bytes().to_vec()))?
                .map(|e| format!("agent key {} revoked", hop.agent_key) + &why(&e)))
            .or(family
                .as_ref()
                .map(|e| "token family revoked".to_string() + &why(e)));
        let this = own.clone().or(above.clone());
        if above.is_none() {
            above = own.map(|w| format!("{w} (an earlier hop)"));
        }
        out.push(this);
    }
    Ok(out)
}

fn why(e: &mandate_verifier::Revocation) -> String {
    format!(
        " at {} by {}: {}",
        rfc3339(e.revoked_at),
        quoted(&e.by),
        quoted(&e.reason)
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
