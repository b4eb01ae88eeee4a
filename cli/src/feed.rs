//! The revocation feed flags (`--nats`, credentials, TLS) turned into the
//! library's [`FeedConfig`], and a blocking publisher for one-shot commands.

use crate::args::NatsArgs;
use anyhow::{Context, Result};
use mandate_verifier::{
    feed::{FeedConfig, FeedCredentials, FeedPublisher},
    revocation::Revocation,
};
use std::path::Path;

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
    pub(crate) fn connect(cfg: FeedConfig) -> Result<BlockingPublisher> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let url = mandate_verifier::feed::redact_url(&cfg.url);
        let publisher = runtime
            .block_on(FeedPublisher::connect(cfg))
            .with_context(|| format!("connecting to the revocation feed at {url}"))?;
        Ok(BlockingPublisher { runtime, publisher })
    }

    /// Publishes one entry; returns once JetStream acknowledged it.
    pub(crate) fn publish(&self, e: &Revocation) -> Result<u64> {
        Ok(self.runtime.block_on(self.publisher.publish(e))?)
    }
}
