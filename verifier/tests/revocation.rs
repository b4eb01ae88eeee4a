//! The RocksDB revocation list through the library: granular revocation
//! (one hop, a token family, an agent key), durability across reopen,
//! pruning, and failing closed when the store is missing, corrupt, locked or
//! on a full disk.
#![allow(clippy::unwrap_used, missing_docs)]

use biscuit_auth::KeyPair;
use mandate_attenuate::{delegate, Delegation};
use mandate_issuer::{Issuer, MintRequest};
use mandate_spec::{Grant, Request};
use mandate_verifier::{
    revocation::{Revocation, RevocationStore, Target},
    DenialKind, RootKeys, Verifier, VerifierError,
};
use std::time::Duration;
use time::OffsetDateTime;

struct World {
    issuer: Issuer,
    agents: Vec<(String, KeyPair)>,
}

impl World {
    fn new() -> World {
        World {
            issuer: Issuer::new(KeyPair::new()),
            agents: (0..6)
                .map(|i| (format!("agent-{i}"), KeyPair::new()))
                .collect(),
        }
    }

    fn keys(&self) -> RootKeys {
        let (id, key) = self.issuer.keys().public_keys()[0];
        RootKeys::new().with(id, key)
    }

    fn root(&self) -> Vec<u8> {
        self.issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: self.agents[0].0.clone(),
                agent_key: self.agents[0].1.public(),
                grant: Grant::parse(&["read:/api/customers/*"], &[] as &[&str]).unwrap(),
                ttl: Duration::from_secs(3600),
                purpose: None,
                max_depth: None,
            })
            .unwrap()
            .token
    }

    /// Delegates from the holder `from` (index into agents) to `to`.
    fn hop(&self, token: &[u8], from: usize, to: usize) -> Vec<u8> {
        delegate(
            token,
            &self.agents[from].1,
            &Delegation {
                agent: self.agents[to].0.clone(),
                agent_key: self.agents[to].1.public(),
                grant: Grant::default(),
                ttl: None,
                purpose: None,
            },
        )
        .unwrap()
        .token
    }
}

fn read() -> Request {
    Request::new("read", "/api/customers/42")
}

fn entry(target: Target) -> Revocation {
    Revocation {
        target,
        revoked_at: OffsetDateTime::now_utc(),
        reason: "compromised laptop".into(),
        by: "security-team".into(),
        expires_at: None,
        note: None,
    }
}

fn block_id(token: &[u8], block: usize) -> Vec<u8> {
    biscuit_auth::UnverifiedBiscuit::from(token)
        .unwrap()
        .revocation_identifiers()[block]
        .clone()
}

#[test]
fn revoking_one_hop_kills_it_and_below_but_not_its_parent_or_siblings() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(RevocationStore::open(dir.path()).unwrap());
    let v = Verifier::new(w.keys()).with_revocations(store.clone());

    let root = w.root();
    let hop1 = w.hop(&root, 0, 1); // agent-0 → agent-1
    let hop2 = w.hop(&hop1, 1, 2); // agent-1 → agent-2
    let sibling = w.hop(&root, 0, 3); // agent-0 → agent-3
    for t in [&root, &hop1, &hop2, &sibling] {
        assert!(v.authorize(t, &read()).is_allowed());
    }

    store
        .revoke(&[entry(Target::Block(block_id(&hop1, 1)))])
        .unwrap();

    for t in [&hop1, &hop2] {
        let d = v.authorize(t, &read());
        let denial = d.denial.unwrap();
        assert_eq!(denial.kind, DenialKind::Revoked);
        assert_eq!(denial.hop, Some(1));
        assert_eq!(denial.agent.as_deref(), Some("agent-1"));
        assert!(
            denial.reason.contains("hop 1 (agent \"agent-1\""),
            "{}",
            denial.reason
        );
        assert!(
            denial.reason.contains("compromised laptop"),
            "{}",
            denial.reason
        );
        assert!(denial.reason.contains("security-team"), "{}", denial.reason);
    }
    assert!(
        v.authorize(&root, &read()).is_allowed(),
        "the parent keeps working"
    );
    assert!(
        v.authorize(&sibling, &read()).is_allowed(),
        "a sibling keeps working"
    );
}

#[test]
fn revoking_a_token_family_kills_every_derived_token() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(RevocationStore::open(dir.path()).unwrap());
    let v = Verifier::new(w.keys()).with_revocations(store.clone());
    let root = w.root();
    let other_family = w.root();
    let hop1 = w.hop(&root, 0, 1);
    let chain = mandate_attenuate::read_chain(&root).unwrap();
    store
        .revoke(&[entry(Target::Token(chain.token_id.clone()))])
        .unwrap();
    for t in [&root, &hop1] {
        let denial = v.authorize(t, &read()).denial.unwrap();
        assert_eq!(denial.kind, DenialKind::Revoked);
        assert!(denial
            .reason
            .contains(&format!("token family {}", chain.token_id)));
    }
    assert!(v.authorize(&other_family, &read()).is_allowed());
}

#[test]
fn revoking_an_agent_key_kills_every_chain_through_it() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(RevocationStore::open(dir.path()).unwrap());
    let v = Verifier::new(w.keys()).with_revocations(store.clone());
    // Two independent families, both passing through agent-2.
    let a = w.hop(&w.hop(&w.root(), 0, 1), 1, 2);
    let b = w.hop(&w.hop(&w.root(), 0, 2), 2, 4);
    let clean = w.hop(&w.root(), 0, 5);
    store
        .revoke(&[entry(Target::Agent(
            w.agents[2].1.public().to_bytes().to_vec(),
        ))])
        .unwrap();
    let da = v.authorize(&a, &read()).denial.unwrap();
    assert_eq!((da.kind, da.hop), (DenialKind::Revoked, Some(2)));
    assert!(da.reason.contains("agent \"agent-2\""), "{}", da.reason);
    let db = v.authorize(&b, &read()).denial.unwrap();
    assert_eq!((db.kind, db.hop), (DenialKind::Revoked, Some(1)));
    assert!(v.authorize(&clean, &read()).is_allowed());
}

#[test]
fn revocations_survive_reopening_and_can_be_listed() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 64]).collect();
    {
        let store = RevocationStore::open(dir.path()).unwrap();
        for id in &ids {
            store.revoke(&[entry(Target::Block(id.clone()))]).unwrap();
        }
    }
    let store = RevocationStore::open_existing(dir.path()).unwrap();
    for id in &ids {
        let e = store.get(&Target::Block(id.clone())).unwrap().unwrap();
        assert_eq!(e.reason, "compromised laptop");
    }
    assert_eq!(store.list().unwrap().len(), 100);
}

#[test]
fn prune_drops_only_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = RevocationStore::open(dir.path()).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut dead = entry(Target::Block(vec![1; 64]));
    dead.expires_at = Some(now - time::Duration::hours(1));
    let mut live = entry(Target::Block(vec![2; 64]));
    live.expires_at = Some(now + time::Duration::hours(1));
    let forever = entry(Target::Agent(vec![3; 32]));
    store.revoke(&[dead, live, forever]).unwrap();
    assert_eq!(store.prune_expired(now).unwrap(), 1);
    assert!(store.get(&Target::Block(vec![1; 64])).unwrap().is_none());
    assert!(store.get(&Target::Block(vec![2; 64])).unwrap().is_some());
    assert!(store.get(&Target::Agent(vec![3; 32])).unwrap().is_some());
}

#[test]
fn a_missing_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let err = RevocationStore::open_existing(&path).unwrap_err();
    assert!(matches!(err, VerifierError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("no revocation store"));
    assert!(matches!(
        RevocationStore::open_read_only(&path).unwrap_err(),
        VerifierError::Missing { .. }
    ));
}

#[test]
fn a_locked_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RevocationStore::open(dir.path()).unwrap();
    let err = RevocationStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, VerifierError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked by another process"));
    // A read-only open takes no lock and still works.
    RevocationStore::open_read_only(dir.path()).unwrap();
}

#[test]
fn a_corrupt_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RevocationStore::open(dir.path()).unwrap();
        store.revoke(&[entry(Target::Block(vec![7; 64]))]).unwrap();
    }
    // Damage every file RocksDB relies on to open.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("MANIFEST") || name == "CURRENT" {
            std::fs::write(&p, b"garbage garbage garbage").unwrap();
        }
    }
    let err = RevocationStore::open_existing(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifierError::Corrupt { .. } | VerifierError::Store { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn an_unreadable_list_denies_every_request() {
    let w = World::new();
    let v = Verifier::new(w.keys()).with_revocations(|_: &[Target]| {
        Err(VerifierError::Corrupt {
            path: "/revocations".into(),
            detail: "checksum mismatch".into(),
        })
    });
    let denial = v.authorize(&w.root(), &read()).denial.unwrap();
    assert_eq!(denial.kind, DenialKind::RevocationUnavailable);
    assert!(denial.reason.contains("fail closed"), "{}", denial.reason);
    assert!(
        denial.reason.contains("checksum mismatch"),
        "{}",
        denial.reason
    );
}

#[test]
fn a_full_disk_refuses_the_revocation_clearly() {
    // Needs a small filesystem: a 2 MiB tmpfs (root only). Elsewhere the
    // test says so and passes without checking.
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let result = (|| {
        let store = RevocationStore::open(dir.path().join("db"))?;
        let big = "x".repeat(64 * 1024);
        for i in 0..1000u32 {
            let mut e = entry(Target::Block(
                [i.to_be_bytes().to_vec(), vec![0; 60]].concat(),
            ));
            e.reason = big.clone();
            store.revoke(&[e])?;
        }
        Ok::<_, VerifierError>(())
    })();
    let _ = std::process::Command::new("umount")
        .arg(dir.path())
        .status();
    let err = result.expect_err("2 MiB cannot hold 64 MiB of revocations");
    assert!(
        matches!(err, VerifierError::NoSpace { .. }),
        "expected NoSpace, got {err:?}"
    );
    assert!(err.to_string().contains("no space left"), "{err}");
}

#[test]
fn a_store_from_before_the_feed_opens_and_upgrades() {
    // The layout of the first version: no `meta` column family.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        rocksdb::DB::open_cf(&opts, dir.path(), ["block", "token", "agent"]).unwrap();
    }
    let ro = RevocationStore::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.feed_position().unwrap(), 0);
    drop(ro);
    let store = RevocationStore::open_existing(dir.path()).unwrap();
    store
        .apply_feed(&[entry(Target::Block(vec![9; 64]))], 7)
        .unwrap();
    assert_eq!(store.feed_position().unwrap(), 7);
}
