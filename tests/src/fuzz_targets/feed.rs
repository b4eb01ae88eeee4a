//! Revocation feed entries: how a NATS message payload becomes a
//! [`Revocation`] and is applied to a verifier's store.

use mandate_verifier::revocation::{Revocation, RevocationStore};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// A message payload decoded as the feed decodes it (`serde_json` into a
/// [`Revocation`]), then applied to a RocksDB store with the next stream
/// sequence, as the feed applies it.
///
/// Properties: a decoded entry re-encodes to JSON that decodes to the same
/// entry; every entry that decodes can be applied (one that could not would
/// stall the feed for every verifier); the store then answers the entry for
/// its target, and its feed position is that sequence.
pub fn feed_entry(data: &[u8]) {
    let Ok(entry) = serde_json::from_slice::<Revocation>(data) else {
        return;
    };
    let json = serde_json::to_vec(&entry).expect("an entry serializes");
    let again: Revocation = serde_json::from_slice(&json).expect("a re-encoded entry decodes");
    assert_eq!(again, entry, "an entry does not survive re-encoding");
    let _ = entry.target.to_string();
    let mut guard = store().lock().unwrap_or_else(|p| p.into_inner());
    let (store, seq) = &mut *guard;
    *seq += 1;
    if let Err(e) = store.apply_feed(std::slice::from_ref(&entry), *seq) {
        panic!("a decoded entry cannot be applied (the feed would stall): {e}; {entry:?}");
    }
    let stored = store.get(&entry.target).expect("the store answers");
    assert_eq!(
        stored.as_ref(),
        Some(&entry),
        "the store holds another entry"
    );
    assert_eq!(store.feed_position().expect("the store answers"), *seq);
}

/// The store entries are applied to: one per process, in the temporary
/// directory (stores left by processes that have ended are removed first).
fn store() -> &'static Mutex<(RevocationStore, u64)> {
    static S: OnceLock<Mutex<(RevocationStore, u64)>> = OnceLock::new();
    S.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let prefix = "mandate-fuzz-feed-";
        for dir in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(prefix) {
                if !PathBuf::from(format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(dir.path());
                }
            }
        }
        let path = tmp.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let store = RevocationStore::open(&path).expect("a revocation store opens");
        Mutex::new((store, 0))
    })
}
