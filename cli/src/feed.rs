//! The revocation feed flags (`--nats`, credentials, TLS) turned into the
//! library's [`FeedConfig`], the revocation keys (trusted by verifiers,
//! signing for publishers), and a blocking publisher for one-shot commands.

use crate::args::NatsArgs;
use anyhow::{Context, Result};
use clap::Args;
use mandate_spec::RestrictionEntry;
use mandate_verifier::{
    feed::{FeedConfig, FeedCredentials, FeedPublisher, RevocationKeys, RevocationSigner},
    revocation::Revocation,
};
use std::path::{Path, PathBuf};

/// The issuer's revocation public keys a feed consumer trusts.
#[derive(Debug, Args, Default)]
pub(crate) struct TrustArgs {
    /// A revocation public key of the issuer, as ID=ed25519/<hex>
    /// (repeatable: every listed key is trusted, e.g. during a rotation;
    /// the issuer service lists them at GET /v1/keys/revocation). Required
    /// with --nats: only feed entries signed by one of them are applied.
    #[arg(long = "revocation-key", value_name = "ID=PUBKEY")]
    pub(crate) revocation_key: Vec<String>,
}

/// The trusted revocation keys `ID=ed25519/<hex>` describe.
pub(crate) fn trusted(specs: &[String], flag: &str) -> Result<RevocationKeys> {
    let mut keys = RevocationKeys::new();
    for spec in specs {
        if spec.contains("ed25519-private/") {
            // Never echo it: a secret that just landed in shell history.
            anyhow::bail!("{flag} takes the PUBLIC key (ed25519/<hex>), not a private key");
        }
        keys.insert_spec(spec)
            .map_err(|e| anyhow::anyhow!("{flag} {spec}: {e}"))?;
    }
    Ok(keys)
}

/// The revocation key a publisher signs with (`mandate revoke --nats`).
#[derive(Debug, Args)]
pub(crate) struct SignerArgs {
    /// The issuer's revocation private key FILE (ed25519-private/<hex>):
    /// with --nats, every entry published is signed with it.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub(crate) revocation_key_file: Option<PathBuf>,
    /// The id verifiers know that key by.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "revocation_key_file"
    )]
    pub(crate) revocation_key_id: u32,
}

/// The signer a key file and its id describe.
pub(crate) fn signer(file: &Path, id: u32) -> Result<RevocationSigner> {
    let key = crate::io::read_private_key(file).context("--revocation-key-file")?;
    RevocationSigner::new(id, &key).map_err(|e| anyhow::anyhow!("--revocation-key-file: {e}"))
}

/// The signer the flags describe; with `--nats`, the key file is required.
pub(crate) fn signer_for(nats: &NatsArgs, a: &SignerArgs) -> Result<Option<RevocationSigner>> {
    match (&nats.nats, &a.revocation_key_file) {
        (None, _) => Ok(None),
        (Some(_), None) => anyhow::bail!(
            "--nats publishes signed entries: give the issuer's revocation key with \
             --revocation-key-file FILE (and --revocation-key-id N, default 0)"
        ),
        (Some(_), Some(file)) => Ok(Some(signer(file, a.revocation_key_id)?)),
    }
}

/// The feed configuration the flags describe, or `None` without `--nats`.
/// Secret files are read here; their contents never reach a log or an error.
pub(crate) fn config(a: &NatsArgs) -> Result<Option<FeedConfig>> {
    let Some(url) = &a.nats else {
        return Ok(None);
    };
    let mut cfg = FeedConfig::new(url.clone());
    if let Some(creds) = &a.nats_creds {
        if !creds.is_file() {
            anyhow::bail!("--nats-creds: no file at {}", creds.display());
        }
        cfg.credentials = Some(FeedCredentials::CredsFile(creds.clone()));
    }
    if let (Some(user), Some(file)) = (&a.nats_user, &a.nats_password_file) {
        cfg.credentials = Some(FeedCredentials::UserPassword {
            user: user.clone(),
            password: secret(file, "--nats-password-file")?,
        });
    }
    if let Some(file) = &a.nats_token_file {
        cfg.credentials = Some(FeedCredentials::Token(secret(file, "--nats-token-file")?));
    }
    if let Some(ca) = &a.nats_ca {
        if !ca.is_file() {
            anyhow::bail!("--nats-ca: no file at {}", ca.display());
        }
        cfg.tls_ca = Some(ca.clone());
    }
    Ok(Some(cfg))
}

/// A secret's file contents without the trailing newline.
fn secret(path: &Path, flag: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    let text = text.trim_end_matches(['\r', '\n']).to_string();
    if text.is_empty() {
        anyhow::bail!("{flag}: {} is empty", path.display());
    }
    Ok(text)
}

/// A blocking handle on the feed publisher, for commands without a runtime.
pub(crate) struct BlockingPublisher {
    runtime: tokio::runtime::Runtime,
    publisher: FeedPublisher,
}

impl BlockingPublisher {
    pub(crate) fn connect(cfg: FeedConfig, signer: RevocationSigner) -> Result<BlockingPublisher> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let url = mandate_verifier::feed::redact_url(&cfg.url);
        let publisher = runtime
            .block_on(FeedPublisher::connect(cfg, signer))
            .with_context(|| format!("connecting to the revocation feed at {url}"))?;
        Ok(BlockingPublisher { runtime, publisher })
    }

    /// Publishes one entry; returns once JetStream acknowledged it.
    pub(crate) fn publish(&self, e: &Revocation) -> Result<u64> {
        Ok(self.runtime.block_on(self.publisher.publish(e))?)
    }

    /// Publishes one restriction or lift (SPEC §19); returns once JetStream
    /// acknowledged it.
    pub(crate) fn publish_restriction(&self, e: &RestrictionEntry) -> Result<u64> {
        Ok(self
            .runtime
            .block_on(self.publisher.publish_restriction(e))?)
    }
}
