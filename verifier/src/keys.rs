//! Root public keys by root key id, so the issuer can rotate keys.

use biscuit_auth::{error::Format, PublicKey, RootKeyProvider};
use std::collections::BTreeMap;

/// The root public keys a verifier trusts.
///
/// A token names the id of the root key that signed it; the verifier looks
/// the key up here. A token naming an unknown id is denied
/// ([`crate::DenialKind::UnknownRootKey`]). [`RootKeys::single`] trusts one
/// key whatever id the token names (one issuer key, no rotation).
#[derive(Debug, Clone, Default)]
pub struct RootKeys {
    by_id: BTreeMap<u32, PublicKey>,
    any_id: Option<PublicKey>,
}

impl RootKeys {
    /// No keys yet: add them with [`RootKeys::with`].
    pub fn new() -> RootKeys {
        RootKeys::default()
    }

    /// Trusts one key for every token, whatever root key id it names.
    pub fn single(key: PublicKey) -> RootKeys {
        RootKeys {
            by_id: BTreeMap::new(),
            any_id: Some(key),
        }
    }

    /// Trusts `key` for tokens naming root key id `id`.
    pub fn with(mut self, id: u32, key: PublicKey) -> RootKeys {
        self.by_id.insert(id, key);
        self
    }

    /// Stops trusting the key with this id (retired by configuration).
    pub fn retire(&mut self, id: u32) {
        self.by_id.remove(&id);
    }

    /// The trusted keys in a stable text form (for the policy hash).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(k) = &self.any_id {
            out.push_str(&format!("root_key any {k}\n"));
        }
        for (id, k) in &self.by_id {
            out.push_str(&format!("root_key {id} {k}\n"));
        }
        out
    }

    /// The key for a token naming `id` (or no id).
    pub fn get(&self, id: Option<u32>) -> Option<&PublicKey> {
        if let Some(k) = &self.any_id {
            return Some(k);
        }
        id.and_then(|id| self.by_id.get(&id))
    }
}

impl RootKeyProvider for &RootKeys {
    fn choose(&self, key_id: Option<u32>) -> Result<PublicKey, Format> {
        self.get(key_id).copied().ok_or(Format::UnknownPublicKey)
    }
}
