//! The service's configuration: a TOML file, overridden by flags.
//!
//! ```toml
//! listen = "127.0.0.1:8080"          # default
//! data_dir = "/var/lib/mandate"      # required: revocations/ and registry/ live here
//! current_key_id = 1                 # required when there is more than one key
//! public_url = "https://issuer.example" # the desk links in notifications
//! max_pending_per_family = 20        # default: pending approval requests per token family
//!
//! [[root_keys]]                      # at least one; every listed key verifies
//! id = 0
//! file = "/etc/mandate/root-0.key"   # ed25519-private/<hex>, mode 0600
//!
//! [[root_keys]]
//! id = 1
//! file = "/etc/mandate/root-1.key"
//!
//! [[revocation_keys]]                # required with --nats: signs the feed's entries
//! id = 0
//! file = "/etc/mandate/revocation-0.key"
//! # current_revocation_key_id = 0    # required when there is more than one
//!
//! [[approvers]]                      # keys the service approves with
//! name = "finance"
//! file = "/etc/mandate/finance.key"
//! webhook_url = "https://hooks.example/mandate"   # optional: notified of requests
//! webhook_secret_file = "/etc/mandate/finance.webhook" # HMAC-SHA256 key
//! webhook_format = "json"            # or "slack" (an incoming webhook's {"text"})
//! ```
//!
//! Private keys come only from files. Relative paths in the file are relative
//! to the file's directory. Unknown settings are refused, so a misspelt one
//! is an error rather than a silent default.

use super::error::ServiceError;
use biscuit_auth::KeyPair;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The listen address when none is configured: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Everything `mandate serve` needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where to listen. Default [`DEFAULT_LISTEN`].
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The data directory: `revocations/` (the verifier's revocation store)
    /// and `registry/` (what was minted), both RocksDB. Required.
    pub data_dir: Option<PathBuf>,
    /// The root key files. The current one signs; the others still verify
    /// (admin tokens, `GET /v1/keys`) until removed from the list.
    #[serde(default)]
    pub root_keys: Vec<RootKeyFile>,
    /// The id of the signing key. Default: the only key, when there is one;
    /// required when there are several.
    pub current_key_id: Option<u32>,
    /// Approver keys the service signs approvals with when a person
    /// approves a request (`POST /v1/approvals/{id}/approve`). Default: none.
    #[serde(default)]
    pub approvers: Vec<ApproverFile>,
    /// The private key file the service signs its audit log with (its own
    /// key, not a root key). Set: every decision of the embedded verifier is
    /// recorded in `DATA_DIR/audit` and listed at `GET /ui/decisions`.
    /// Default: no audit log.
    #[serde(default)]
    pub audit_key: Option<PathBuf>,
    /// The revocation key files (not root keys): the current one signs every
    /// entry published to the revocation feed; every listed key is trusted
    /// by the embedded verifier and listed at `GET /v1/keys/revocation`.
    /// Required with a feed. Default: none.
    #[serde(default)]
    pub revocation_keys: Vec<RootKeyFile>,
    /// The id of the revocation key that signs. Default: the only one;
    /// required when there are several.
    pub current_revocation_key_id: Option<u32>,
    /// Where people reach this service (e.g. `https://issuer.example`):
    /// webhook notifications link to the approval desk under it
    /// (`/ui/approvals#ID`). Required when an approver has a webhook.
    #[serde(default)]
    pub public_url: Option<String>,
    /// At most this many approval requests of one token family (a root
    /// token and every token delegated from it) wait for a decision at
    /// once; more are answered 429 until one is decided or expires, so one
    /// agent cannot flood the approval desk and the approvers' webhooks.
    /// Default [`DEFAULT_MAX_PENDING_PER_FAMILY`].
    #[serde(default = "default_max_pending_per_family")]
    pub max_pending_per_family: usize,
}

/// Pending approval requests one token family may have at once, by default.
pub const DEFAULT_MAX_PENDING_PER_FAMILY: usize = 20;

fn default_max_pending_per_family() -> usize {
    DEFAULT_MAX_PENDING_PER_FAMILY
}

/// One approver: the name approval rules use, and its private key file;
/// optionally, where it is told of the requests that need it (SERVICE.md
/// S3, approval notifications).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverFile {
    /// The approver's name (e.g. `finance`).
    pub name: String,
    /// The private key file (`ed25519-private/<hex>`).
    pub file: PathBuf,
    /// An `http` or `https` URL POSTed to when a request needs this
    /// approver, and when it is decided. Default: no notification.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The file holding the webhook's HMAC-SHA256 key (its content, trimmed,
    /// at least 16 bytes): each notification is signed with it
    /// (`Mandate-Signature`). Required for the `json` format.
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    /// The body's form. Default `json`.
    #[serde(default)]
    pub webhook_format: WebhookFormat,
}

/// The body of an approval notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The event as JSON (SERVICE.md S3).
    #[default]
    Json,
    /// A Slack-compatible incoming webhook: `{"text": "..."}`.
    Slack,
}

/// One root key: its id (written into the tokens it signs) and its file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootKeyFile {
    /// The root key id.
    pub id: u32,
    /// The private key file (`ed25519-private/<hex>`).
    pub file: PathBuf,
}

fn default_listen() -> SocketAddr {
    // A constant that parses.
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            listen: default_listen(),
            data_dir: None,
            root_keys: Vec::new(),
            current_key_id: None,
            approvers: Vec::new(),
            audit_key: None,
            revocation_keys: Vec::new(),
            current_revocation_key_id: None,
            public_url: None,
            max_pending_per_family: DEFAULT_MAX_PENDING_PER_FAMILY,
        }
    }
}

impl ServiceConfig {
    /// Parses a configuration from TOML text (paths are kept as written).
    pub fn from_toml(text: &str) -> Result<ServiceConfig, ServiceError> {
        toml::from_str(text).map_err(|e| {
            // toml's messages span several lines (with a source excerpt):
            // keep the one that says what is wrong, and where.
            let msg = e.message().trim().to_string();
            match e.span() {
                // A span over the whole document (e.g. an unknown field of the
                // top-level table) says nothing about where.
                Some(span) if span.start > 0 || span.end < text.len() => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    ServiceError::Config(format!("line {line}: {msg}"))
                }
                _ => ServiceError::Config(msg),
            }
        })
    }

    /// Reads a configuration file; relative paths in it are resolved against
    /// the file's directory.
    pub fn read(path: &Path) -> Result<ServiceConfig, ServiceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServiceError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config = ServiceConfig::from_toml(&text).map_err(|e| match e {
            ServiceError::Config(m) => ServiceError::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(d) = &mut config.data_dir {
            *d = base.join(&*d);
        }
        for k in &mut config.root_keys {
            k.file = base.join(&k.file);
        }
        for a in &mut config.approvers {
            a.file = base.join(&a.file);
            if let Some(f) = &mut a.webhook_secret_file {
                *f = base.join(&*f);
            }
        }
        for k in &mut config.revocation_keys {
            k.file = base.join(&k.file);
        }
        if let Some(k) = &mut config.audit_key {
            *k = base.join(&*k);
        }
        Ok(config)
    }

    /// The data directory, or the error saying it is missing.
    pub fn data_dir(&self) -> Result<&Path, ServiceError> {
        self.data_dir.as_deref().ok_or_else(|| {
            ServiceError::Config("no data directory: set data_dir or --data-dir".into())
        })
    }

    /// The id of the signing key.
    pub fn current_key_id(&self) -> Result<u32, ServiceError> {
        match (self.current_key_id, self.root_keys.as_slice()) {
            (_, []) => Err(ServiceError::Config(
                "no root key: add [[root_keys]] with id and file, or --root-key ID=FILE".into(),
            )),
            (Some(id), keys) if keys.iter().any(|k| k.id == id) => Ok(id),
            (Some(id), keys) => Err(ServiceError::Config(format!(
                "current_key_id {id} is not among the root keys ({})",
                ids(keys)
            ))),
            (None, [only]) => Ok(only.id),
            (None, keys) => Err(ServiceError::Config(format!(
                "several root keys ({}): set current_key_id to the one that signs",
                ids(keys)
            ))),
        }
    }

    /// Checks the settings and reads every key file: the root key set, the
    /// current key first among its checks.
    pub(crate) fn load_keys(&self) -> Result<mandate_issuer::SigningKeys, ServiceError> {
        let current = self.current_key_id()?;
        let mut keys = Vec::with_capacity(self.root_keys.len());
        for k in &self.root_keys {
            if keys.iter().any(|(id, _)| *id == k.id) {
                return Err(ServiceError::Config(format!(
                    "root key id {} is given twice",
                    k.id
                )));
            }
            keys.push((k.id, read_key_file(k)?));
        }
        mandate_issuer::SigningKeys::from_keys(keys, current)
            .map_err(|e| ServiceError::Config(e.to_string()))
    }
}

impl ServiceConfig {
    /// Reads the revocation key files: every key (the current one first),
    /// or none when none is configured.
    pub(crate) fn load_revocation_keys(
        &self,
    ) -> Result<Vec<mandate_verifier::feed::RevocationSigner>, ServiceError> {
        let keys = &self.revocation_keys;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let current = match (self.current_revocation_key_id, keys.as_slice()) {
            (Some(id), keys) if keys.iter().any(|k| k.id == id) => id,
            (Some(id), keys) => {
                return Err(ServiceError::Config(format!(
                    "current_revocation_key_id {id} is not among the revocation keys ({})",
                    ids(keys)
                )))
            }
            (None, [only]) => only.id,
            (None, keys) => {
                return Err(ServiceError::Config(format!(
                    "several revocation keys ({}): set current_revocation_key_id to the one \
                     that signs",
                    ids(keys)
                )))
            }
        };
        let mut out: Vec<mandate_verifier::feed::RevocationSigner> = Vec::new();
        for k in keys {
            if out.iter().any(|s| s.id() == k.id) {
                return Err(ServiceError::Config(format!(
                    "revocation key id {} is given twice",
                    k.id
                )));
            }
            let pair = read_key_file(k)
                .map_err(|e| ServiceError::Config(format!("revocation key: {e}")))?;
            let signer = mandate_verifier::feed::RevocationSigner::new(k.id, &pair)
                .map_err(|e| ServiceError::Config(format!("revocation key {}: {e}", k.id)))?;
            if k.id == current {
                out.insert(0, signer);
            } else {
                out.push(signer);
            }
        }
        Ok(out)
    }

    /// Reads the audit key file, if one is configured.
    pub(crate) fn load_audit_key(&self) -> Result<Option<KeyPair>, ServiceError> {
        self.audit_key
            .as_ref()
            .map(|file| {
                read_key_file(&RootKeyFile {
                    id: u32::MAX,
                    file: file.clone(),
                })
                .map_err(|e| ServiceError::Config(format!("audit key: {e}")))
            })
            .transpose()
    }

    /// Reads every approver key file: name → key.
    pub(crate) fn load_approvers(
        &self,
    ) -> Result<std::collections::BTreeMap<String, KeyPair>, ServiceError> {
        let mut out = std::collections::BTreeMap::new();
        for a in &self.approvers {
            let key = read_key_file(&RootKeyFile {
                id: u32::MAX,
                file: a.file.clone(),
            })
            .map_err(|e| ServiceError::Config(format!("approver {:?}: {e}", a.name)))?;
            if out.insert(a.name.clone(), key).is_some() {
                return Err(ServiceError::Config(format!(
                    "approver {:?} is given twice",
                    a.name
                )));
            }
        }
        Ok(out)
    }
}

fn ids(keys: &[RootKeyFile]) -> String {
    keys.iter()
        .map(|k| k.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_key_file(k: &RootKeyFile) -> Result<KeyPair, ServiceError> {
    let err = |detail: String| ServiceError::KeyFile {
        id: k.id,
        path: k.file.clone(),
        detail,
    };
    let meta = std::fs::metadata(&k.file).map_err(|e| err(e.to_string()))?;
    if meta.len() > 4096 {
        return Err(err("larger than a key file (4 KiB)".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                key_id = k.id,
                file = %k.file.display(),
                "root key file is accessible by other users (chmod 600 it)"
            );
        }
    }
    let text = std::fs::read_to_string(&k.file).map_err(|e| err(e.to_string()))?;
    // The parser's message never quotes the key material.
    mandate_spec::parse_private_key(&text).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c = ServiceConfig::from_toml(
            r#"
            listen = "127.0.0.1:9000"
            data_dir = "data"
            current_key_id = 1
            [[root_keys]]
            id = 0
            file = "k0"
            [[root_keys]]
            id = 1
            file = "k1"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.root_keys.len(), 2);
        assert_eq!(c.current_key_id().unwrap(), 1);
    }

    #[test]
    fn refuses_unknown_settings_and_inline_keys() {
        let e =
            ServiceConfig::from_toml("data_dir = \"d\"\nprivate_key = \"ed25519-private/00\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown field `private_key`"), "{e}");
        let e = ServiceConfig::from_toml("listen = 8080\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config: line 1: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn current_key_rules() {
        let key = |id| RootKeyFile {
            id,
            file: "f".into(),
        };
        let mut c = ServiceConfig::default();
        assert!(c
            .current_key_id()
            .unwrap_err()
            .to_string()
            .contains("no root key"));
        c.root_keys = vec![key(3)];
        assert_eq!(c.current_key_id().unwrap(), 3);
        c.root_keys.push(key(4));
        assert!(c
            .current_key_id()
            .unwrap_err()
            .to_string()
            .contains("set current_key_id"));
        c.current_key_id = Some(5);
        assert!(c
            .current_key_id()
            .unwrap_err()
            .to_string()
            .contains("not among"));
        c.current_key_id = Some(4);
        assert_eq!(c.current_key_id().unwrap(), 4);
    }
}
