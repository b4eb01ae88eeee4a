//! Reading tokens and keys, writing key files.

use anyhow::{bail, Context, Result};
use biscuit_auth::KeyPair;
use std::io::Read;
use std::path::Path;

/// Reads a token from FILE or `-` (standard input) and decodes its base64.
pub(crate) fn read_token(source: &str) -> Result<Vec<u8>> {
    let text = if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_string(&mut s)
            .context("reading the token from standard input")?;
        s
    } else {
        read_small_file(Path::new(source))
            .with_context(|| format!("reading token file {source}"))?
    };
    Ok(mandate_spec::token_from_text(&text)?)
}

/// Reads text from FILE or `-` (standard input, at most 1 MiB).
pub(crate) fn read_text(source: &str) -> Result<String> {
    if source == "-" {
        let mut s = String::new();
        std::io::stdin().take(1 << 20).read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))
    }
}

/// Reads a private key file (`ed25519-private/<hex>`).
pub(crate) fn read_private_key(path: &Path) -> Result<KeyPair> {
    let text =
        read_small_file(path).with_context(|| format!("reading key file {}", path.display()))?;
    warn_if_readable_by_others(path);
    mandate_spec::parse_private_key(&text).with_context(|| format!("key file {}", path.display()))
}

/// Writes a private key file with mode 0600, refusing to overwrite unless `force`.
pub(crate) fn write_private_key(path: &Path, key: &KeyPair, force: bool) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!(
                "{} already exists (use --force to overwrite)",
                path.display()
            )
        }
        _ => anyhow::anyhow!("cannot write {}: {e}", path.display()),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{}", mandate_spec::format_private_key(key))?;
    f.sync_all()?;
    Ok(())
}

/// Writes a token (base64 and a line end) to `path`, replacing it, mode
/// 0600: a token is a bearer credential.
pub(crate) fn write_token(path: &Path, token: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{token}")?;
    f.sync_all()?;
    Ok(())
}

fn read_small_file(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > 1 << 20 {
        bail!("{} is larger than 1 MiB", path.display());
    }
    Ok(std::fs::read_to_string(path)?)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "warning: key file {} is accessible by other users (chmod 600 it)",
                    path.display()
                );
            }
        }
    }
}
