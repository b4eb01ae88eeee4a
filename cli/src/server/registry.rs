//! The issuer's registry of what it minted: a small RocksDB database beside
//! the revocation store, so the service can revoke "every live token of
//! `user:alice`" and say what a revoked id belonged to.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `tokens` | token id (UUID text) | a [`TokenRecord`], JSON |
//! | `by_principal` | principal length (u16, big-endian) ‖ principal ‖ token id | empty |
//! | `by_revocation_id` | the root block's revocation id (64 bytes) | token id |
//! | `meta` | `mint_position`, `mint_stream` | the fleet's mint stream: last sequence applied (u64 BE), the stream's identity |
//!
//! The length prefix keeps one principal's keys contiguous and apart from a
//! longer principal that shares its prefix (`user:al` and `user:alice`).
//! A mint is recorded in one batch, synced to disk before the token is
//! returned: a token the caller holds is always in the registry.
//!
//! In a fleet (`mandate serve --nats`), every issuer service also applies
//! the mints of the others from the `MANDATE_MINTS` stream
//! ([`crate::MintFleet`]): each record is written in the same batch as the
//! stream sequence it came at, so a restart resumes exactly where it stopped.

use crate::ServiceError;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

const CF_TOKENS: &str = "tokens";
const CF_BY_PRINCIPAL: &str = "by_principal";
const CF_BY_REVOCATION_ID: &str = "by_revocation_id";
const CF_META: &str = "meta";
const CFS: [&str; 4] = [CF_TOKENS, CF_BY_PRINCIPAL, CF_BY_REVOCATION_ID, CF_META];
const MINT_POSITION: &[u8] = b"mint_position";
const MINT_STREAM: &[u8] = b"mint_stream";

/// What applying a record from the mint stream did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Recorded (or already recorded, identical: e.g. this service's own mint).
    Recorded,
    /// Not recorded: the token id is already recorded with other content
    /// (first record wins; token ids are random UUIDs, so this is an error
    /// or an attack). Only the position moved.
    Conflict(Box<TokenRecord>),
}

/// What the registry remembers about one minted root token (never the token
/// itself: the registry is not a bearer-token store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token id (UUID), shared by every token derived from it.
    pub token_id: String,
    /// Who the token acts for.
    pub principal: String,
    /// The first agent's id.
    pub agent: String,
    /// The first agent's key, `ed25519/<hex>`.
    pub agent_key: String,
    /// The root token's revocation ids, hex (one per block: one for a root).
    pub revocation_ids: Vec<String>,
    /// The root key id that signed it.
    pub root_key_id: u32,
    /// When it was minted.
    #[serde(with = "time::serde::rfc3339")]
    pub minted_at: OffsetDateTime,
    /// When it expires; after that it is not "live".
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Who asked for it: the admin token's principal and holder agent.
    pub minted_by: String,
}

/// The registry on disk. Opened by one process at a time (RocksDB's lock).
pub struct Registry {
    db: DB,
    path: PathBuf,
    sync: WriteOptions,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish()
    }
}

impl Registry {
    /// Opens the registry at `path`, creating it if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Registry, ServiceError> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        opts.set_keep_log_file_num(4);
        let cfs = CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| storage(&path, e))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(Registry { db, path, sync })
    }

    /// The directory of the registry.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a minted token and its indexes in one batch, synced to disk
    /// before returning.
    pub fn record(&self, rec: &TokenRecord) -> Result<(), ServiceError> {
        let mut batch = WriteBatch::default();
        self.put_record(&mut batch, rec)?;
        self.db
            .write_opt(batch, &self.sync)
            .map_err(|e| storage(&self.path, e))
    }

    /// Applies the mint stream's message at `seq`: `rec` (a verified record,
    /// or `None` for a message that was rejected) and the position, in one
    /// synced batch. A record whose token id is already recorded with other
    /// content is not applied ([`Applied::Conflict`]).
    pub fn apply_mint(&self, rec: Option<&TokenRecord>, seq: u64) -> Result<Applied, ServiceError> {
        let mut batch = WriteBatch::default();
        let mut applied = Applied::Recorded;
        if let Some(rec) = rec {
            match self.conflicting(rec)? {
                Some(known) => applied = Applied::Conflict(Box::new(known)),
                None => self.put_record(&mut batch, rec)?,
            }
        }
        batch.put_cf(self.cf(CF_META)?, MINT_POSITION, seq.to_be_bytes());
        self.db
            .write_opt(batch, &self.sync)
            .map_err(|e| storage(&self.path, e))?;
        Ok(applied)
    }

    /// A recorded token that `rec` contradicts: the same token id with
    /// other content, or one of `rec`'s revocation ids indexed to another
    /// token.
    fn conflicting(&self, rec: &TokenRecord) -> Result<Option<TokenRecord>, ServiceError> {
        if let Some(known) = self.get(&rec.token_id)? {
            return Ok((&known != rec).then_some(known));
        }
        for rid in &rec.revocation_ids {
            let Ok(bytes) = hex::decode(rid) else {
                continue;
            };
            if let Some(known) = self.by_revocation_id(&bytes)? {
                if known.token_id != rec.token_id {
                    return Ok(Some(known));
                }
            }
        }
        Ok(None)
    }

    /// Records that the mint stream is applied up to `seq` (messages that
    /// changed nothing here), synced.
    pub fn set_mint_position(&self, seq: u64) -> Result<(), ServiceError> {
        self.db
            .put_cf_opt(
                self.cf(CF_META)?,
                MINT_POSITION,
                seq.to_be_bytes(),
                &self.sync,
            )
            .map_err(|e| storage(&self.path, e))
    }

    /// The last mint-stream sequence applied (0: none).
    pub fn mint_position(&self) -> Result<u64, ServiceError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_META)?, MINT_POSITION)
            .map_err(|e| storage(&self.path, e))?;
        Ok(raw
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// The identity of the mint stream the position counts in, once known.
    pub fn mint_stream(&self) -> Result<Option<String>, ServiceError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_META)?, MINT_STREAM)
            .map_err(|e| storage(&self.path, e))?;
        Ok(raw.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the identity of the mint stream (first contact).
    pub fn set_mint_stream(&self, identity: &str) -> Result<(), ServiceError> {
        self.db
            .put_cf_opt(self.cf(CF_META)?, MINT_STREAM, identity, &self.sync)
            .map_err(|e| storage(&self.path, e))
    }

    fn put_record(&self, batch: &mut WriteBatch, rec: &TokenRecord) -> Result<(), ServiceError> {
        let value = serde_json::to_vec(rec).map_err(|e| self.corrupt(e))?;
        batch.put_cf(self.cf(CF_TOKENS)?, rec.token_id.as_bytes(), value);
        batch.put_cf(
            self.cf(CF_BY_PRINCIPAL)?,
            principal_key(&rec.principal, &rec.token_id),
            b"",
        );
        for rid in &rec.revocation_ids {
            if let Ok(bytes) = hex::decode(rid) {
                batch.put_cf(
                    self.cf(CF_BY_REVOCATION_ID)?,
                    bytes,
                    rec.token_id.as_bytes(),
                );
            }
        }
        Ok(())
    }

    /// The record of one token id, if this issuer minted it.
    pub fn get(&self, token_id: &str) -> Result<Option<TokenRecord>, ServiceError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_TOKENS)?, token_id.as_bytes())
            .map_err(|e| storage(&self.path, e))?;
        raw.map(|v| serde_json::from_slice(&v).map_err(|e| self.corrupt(e)))
            .transpose()
    }

    /// The token whose root block has this revocation id, if minted here.
    pub fn by_revocation_id(&self, id: &[u8]) -> Result<Option<TokenRecord>, ServiceError> {
        let raw = self
            .db
            .get_pinned_cf(self.cf(CF_BY_REVOCATION_ID)?, id)
            .map_err(|e| storage(&self.path, e))?;
        match raw {
            None => Ok(None),
            Some(token_id) => self.get(&String::from_utf8_lossy(&token_id)),
        }
    }

    /// Every token minted for `principal`, oldest token id first.
    pub fn tokens_of(&self, principal: &str) -> Result<Vec<TokenRecord>, ServiceError> {
        let prefix = principal_key(principal, "");
        let cf = self.cf(CF_BY_PRINCIPAL)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&prefix, Direction::Forward))
        {
            let (key, _) = item.map_err(|e| storage(&self.path, e))?;
            let Some(token_id) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            // The record itself must name the principal (an index entry is
            // never trusted alone).
            if let Some(rec) = self
                .get(&String::from_utf8_lossy(token_id))?
                .filter(|r| r.principal == principal)
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The tokens minted for `principal` that have not expired at `now`.
    pub fn live_tokens_of(
        &self,
        principal: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<TokenRecord>, ServiceError> {
        let mut all = self.tokens_of(principal)?;
        all.retain(|r| r.expires_at > now);
        Ok(all)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, ServiceError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| ServiceError::Registry {
                path: self.path.clone(),
                detail: format!("column family {name} missing: not a Mandate token registry"),
            })
    }

    fn corrupt(&self, e: serde_json::Error) -> ServiceError {
        ServiceError::Registry {
            path: self.path.clone(),
            detail: format!("undecodable record: {e}"),
        }
    }
}

fn principal_key(principal: &str, token_id: &str) -> Vec<u8> {
    // Principals are at most 256 bytes (§3.5), well within a u16.
    let len = u16::try_from(principal.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(2 + principal.len() + token_id.len());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(principal.as_bytes());
    key.extend_from_slice(token_id.as_bytes());
    key
}

fn storage(path: &Path, e: rocksdb::Error) -> ServiceError {
    let detail = e.to_string();
    let detail = if detail.to_ascii_lowercase().contains("lock") {
        format!("locked by another process (is another `mandate serve` running on this data directory?): {detail}")
    } else {
        detail
    };
    ServiceError::Registry {
        path: path.to_path_buf(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::Duration;

    fn record(principal: &str, id: &str, expires_in: Duration) -> TokenRecord {
        let now = OffsetDateTime::now_utc();
        TokenRecord {
            token_id: id.into(),
            principal: principal.into(),
            agent: "agent".into(),
            agent_key: "ed25519/00".into(),
            revocation_ids: vec![hex::encode(id.bytes().cycle().take(64).collect::<Vec<_>>())],
            root_key_id: 0,
            minted_at: now.replace_nanosecond(0).unwrap(),
            expires_at: (now + expires_in).replace_nanosecond(0).unwrap(),
            minted_by: "test".into(),
        }
    }

    #[test]
    fn principal_index_keeps_principals_apart() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let a1 = record("user:alice", "a1", Duration::hours(1));
        let a2 = record("user:alice", "a2", Duration::hours(-1));
        let b = record("user:al", "b1", Duration::hours(1));
        let c = record("user:alicia", "c1", Duration::hours(1));
        for r in [&a1, &a2, &b, &c] {
            reg.record(r).unwrap();
        }
        assert_eq!(reg.tokens_of("user:alice").unwrap(), vec![a1.clone(), a2]);
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            reg.live_tokens_of("user:alice", now).unwrap(),
            vec![a1.clone()]
        );
        assert_eq!(reg.tokens_of("user:al").unwrap(), vec![b]);
        assert!(reg.tokens_of("user:bob").unwrap().is_empty());
        assert_eq!(reg.get("a1").unwrap(), Some(a1.clone()));
        let rid = hex::decode(&a1.revocation_ids[0]).unwrap();
        assert_eq!(rid.len(), 64);
        assert_eq!(reg.by_revocation_id(&rid).unwrap(), Some(a1));
        assert_eq!(reg.by_revocation_id(&[9; 64]).unwrap(), None);
    }

    /// A record from the mint stream whose token id is already recorded for
    /// another principal must not replace it (it would hide the token from
    /// revocation by its principal); the position still moves.
    #[test]
    fn a_conflicting_stream_record_never_replaces_a_recorded_token() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let real = record("user:alice", "t1", Duration::hours(1));
        reg.record(&real).unwrap();
        assert_eq!(reg.apply_mint(Some(&real), 1).unwrap(), Applied::Recorded);
        let mut fake = real.clone();
        fake.principal = "user:mallory".into();
        assert_eq!(
            reg.apply_mint(Some(&fake), 2).unwrap(),
            Applied::Conflict(Box::new(real.clone()))
        );
        assert_eq!(reg.mint_position().unwrap(), 2);
        assert_eq!(reg.tokens_of("user:alice").unwrap(), vec![real.clone()]);
        assert!(reg.tokens_of("user:mallory").unwrap().is_empty());
        // Nor may another token id take over its revocation id's index entry
        // (a revocation by that id would carry the other record's expiry).
        let mut thief = record("user:mallory", "t2", Duration::minutes(1));
        thief.revocation_ids = real.revocation_ids.clone();
        assert_eq!(
            reg.apply_mint(Some(&thief), 3).unwrap(),
            Applied::Conflict(Box::new(real.clone()))
        );
        let rid = hex::decode(&real.revocation_ids[0]).unwrap();
        assert_eq!(reg.by_revocation_id(&rid).unwrap(), Some(real));
        assert_eq!(reg.get("t2").unwrap(), None);
        assert_eq!(reg.apply_mint(None, 4).unwrap(), Applied::Recorded);
        assert_eq!(reg.mint_position().unwrap(), 4);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let r = record("user:alice", "x1", Duration::hours(1));
        Registry::open(dir.path()).unwrap().record(&r).unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.get("x1").unwrap(), Some(r));
    }
}
