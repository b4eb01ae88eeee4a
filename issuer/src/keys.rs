//! The issuer's root keys: one current signing key plus older keys that still
//! verify, each with a numeric root key id carried in the tokens it signs.

use crate::IssueError;
use biscuit_auth::{KeyPair, PublicKey};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A set of root key pairs by id, one of them current (used to sign).
#[derive(Clone)]
pub struct SigningKeys {
    keys: BTreeMap<u32, Arc<KeyPair>>,
    current: u32,
}

impl SigningKeys {
    /// A set holding one key, current, under `id`.
    pub fn new(id: u32, key: KeyPair) -> SigningKeys {
        SigningKeys {
            keys: BTreeMap::from([(id, Arc::new(key))]),
            current: id,
        }
    }

    /// A set holding `keys`, with `current` as the signing key: the form a
    /// configuration file gives (every key still trusted, one of them signs).
    /// Fails when `keys` is empty, an id repeats, or `current` is not among them.
    pub fn from_keys(
        keys: impl IntoIterator<Item = (u32, KeyPair)>,
        current: u32,
    ) -> Result<SigningKeys, IssueError> {
        let mut map = BTreeMap::new();
        for (id, key) in keys {
            if map.insert(id, Arc::new(key)).is_some() {
                return Err(IssueError::Keys(format!("root key id {id} is given twice")));
            }
        }
        if map.is_empty() {
            return Err(IssueError::Keys("no root key given".into()));
        }
        if !map.contains_key(&current) {
            return Err(IssueError::Keys(format!(
                "the current key id {current} is not among the root keys ({})",
                map.keys()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(SigningKeys { keys: map, current })
    }

    /// Adds a key under `id` and makes it the current signing key (rotation).
    /// Older keys stay until [`SigningKeys::retire`] removes them.
    pub fn rotate(&mut self, id: u32, key: KeyPair) -> Result<(), IssueError> {
        if self.keys.contains_key(&id) {
            return Err(IssueError::Keys(format!(
                "root key id {id} is already in use"
            )));
        }
        self.keys.insert(id, Arc::new(key));
        self.current = id;
        Ok(())
    }

    /// Removes a non-current key: tokens it signed stop verifying.
    pub fn retire(&mut self, id: u32) -> Result<(), IssueError> {
        if id == self.current {
            return Err(IssueError::Keys(
                "cannot retire the current signing key".into(),
            ));
        }
        self.keys
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| IssueError::Keys(format!("no root key with id {id}")))
    }

    /// The current key id and key pair.
    pub fn current(&self) -> (u32, &KeyPair) {
        // `current` always names a key: `new` and `rotate` insert it, and
        // `retire` refuses to remove it.
        (self.current, &self.keys[&self.current])
    }

    /// Every key's id and public half, for verifiers (`GET /v1/keys`).
    pub fn public_keys(&self) -> Vec<(u32, PublicKey)> {
        self.keys.iter().map(|(id, k)| (*id, k.public())).collect()
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private keys.
        f.debug_struct("SigningKeys")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}
