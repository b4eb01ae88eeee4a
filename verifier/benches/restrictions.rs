//! What live restrictions (SPEC §19) add to a warm authorization: one 2-hop
//! token, already in the verification cache, decided by a verifier whose
//! RocksDB `RevocationStore` holds 0, 1 000 or 100 000 restrictions on
//! OTHER targets (random revocation ids, token families, agent keys and
//! principals, a quarter each), and, as separate cases, the same stores plus
//! one restriction on the token's own root block that does not deny the
//! request (`deny delete:/api/customers/*`; the request reads). All stores
//! are built in the same process, before anything is measured.
//!
//! Criterion group `restrictions/warm_2hop`: `others/N` and `own_allowing/N`
//! (the whole warm decision), and `lookup/...` (only the store's index
//! lookup the pipeline makes for this chain: its 3 blocks, its family, its
//! 3 agent keys and its principal).
//! Then a paired measure, robust to a busy machine: rounds of warm
//! decisions on the store without restrictions and on each other case,
//! alternating which goes first; printed as ns per decision (median over the
//! rounds) and the added % over `others/0` (median of the per-round ratios).
//!
//! Run with: `cargo bench -p mandate-verifier --bench restrictions`
//! (`MANDATE_BENCH_SIZES=0,1000,100000` sets the sizes; under `cargo test`
//! it runs 0 and 1 000 only.)
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use criterion::{black_box, Criterion};
use mandate_spec::{Request, Restriction, RestrictionEntry, RestrictionRule, RestrictionTarget};
use mandate_verifier::{
    revocation::{revocation_targets, RevocationStore},
    CacheOptions, RootKeys, Verifier,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const DEFAULT_SIZES: [u64; 3] = [0, 1_000, 100_000];

fn sizes() -> Vec<u64> {
    match std::env::var("MANDATE_BENCH_SIZES") {
        Ok(s) => s.split(',').map(|n| n.trim().parse().unwrap()).collect(),
        // `cargo test` runs benches once as a smoke test: keep it small.
        Err(_) if !bench_mode() => vec![0, 1_000],
        Err(_) => DEFAULT_SIZES.to_vec(),
    }
}

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// splitmix64: a seeded stream of random-looking values, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn hex(&mut self, bytes: usize) -> String {
        let raw: Vec<u8> = (0..bytes.div_ceil(8))
            .flat_map(|_| self.next_u64().to_le_bytes())
            .take(bytes)
            .collect();
        hex::encode(raw)
    }

    fn uuid(&mut self) -> String {
        let hi = u128::from(self.next_u64()) << 64;
        uuid::Uuid::from_u128(hi | u128::from(self.next_u64()))
            .hyphenated()
            .to_string()
    }
}

fn restriction(id: String, target: RestrictionTarget, rule: &str) -> Restriction {
    Restriction {
        id,
        target,
        rules: vec![RestrictionRule::parse_deny(rule).unwrap()],
        restricted_at: OffsetDateTime::now_utc(),
        by: "bench".into(),
        reason: "bench".into(),
        expires_at: None,
        note: None,
    }
}

/// `n` restrictions on targets no token of this bench has: random
/// revocation ids, families, agent keys and principals in turn.
fn others(n: u64, seed: u64) -> impl Iterator<Item = Restriction> {
    let mut rng = Rng(seed);
    (0..n).map(move |i| {
        let target = match i % 4 {
            0 => RestrictionTarget::Block(rng.hex(64)),
            1 => RestrictionTarget::Token(rng.hex(16)),
            2 => RestrictionTarget::Agent(rng.hex(32)),
            _ => RestrictionTarget::Principal(format!("user:{}", rng.hex(8))),
        };
        restriction(rng.uuid(), target, "send:/api/slack/**")
    })
}

/// A warm verifier over a store of its own holding `n` other restrictions,
/// and (with `own`) one on the token's root block that does not deny
/// `request`.
struct Case {
    name: String,
    verifier: Verifier,
    store: Arc<RevocationStore>,
}

fn case(
    dir: &std::path::Path,
    keys: &RootKeys,
    n: u64,
    own: Option<&str>,
    token: &[u8],
    request: &Request,
) -> Case {
    let kind = if own.is_some() {
        "own_allowing"
    } else {
        "others"
    };
    let name = format!("{kind}/{n}");
    let store = Arc::new(RevocationStore::open(dir.join(name.replace('/', "-"))).unwrap());
    let started = Instant::now();
    assert_eq!(store.bulk_load_restrictions(others(n, n)).unwrap(), n);
    if n > 0 {
        eprintln!(
            "{name}: loaded {n} restrictions in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(root_block) = own {
        let mut rng = Rng(!n);
        let mine = restriction(
            rng.uuid(),
            RestrictionTarget::Block(root_block.to_string()),
            "delete:/api/customers/*",
        );
        store.restrict(&RestrictionEntry::Restrict(mine)).unwrap();
    }
    let expected = n + u64::from(own.is_some());
    assert_eq!(store.restrictions_in_effect() as u64, expected);
    let verifier = Verifier::new(keys.clone())
        .with_revocations(store.clone())
        .with_cache(CacheOptions::default());
    // Warm: the token is in the cache; every case is allowed, and exactly
    // the own restriction is reported in effect.
    for _ in 0..3 {
        let d = verifier.authorize(token, request);
        assert!(d.is_allowed(), "{name}: {d}");
        assert_eq!(d.restrictions.len(), usize::from(own.is_some()), "{name}");
    }
    Case {
        name,
        verifier,
        store,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rounds of `per_round` warm decisions on `base` and on `other`, alternating
/// which goes first: (base ns/decision, other ns/decision, added %), medians
/// over the rounds.
fn paired(base: &Case, other: &Case, token: &[u8], request: &Request) -> (f64, f64, f64) {
    let (rounds, per_round) = if bench_mode() { (40, 2_000) } else { (2, 10) };
    let per = |c: &Case| {
        let start = Instant::now();
        for _ in 0..per_round {
            black_box(c.verifier.authorize(black_box(token), black_box(request)));
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(per_round)
    };
    let (mut a, mut b, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = per(base);
            (x, per(other))
        } else {
            let y = per(other);
            (per(base), y)
        };
        a.push(x);
        b.push(y);
        added.push((y / x - 1.0) * 100.0);
    }
    (median(&mut a), median(&mut b), median(&mut added))
}

fn main() {
    let chain = common::chain(2);
    let token = chain.tokens[2].clone();
    let request = common::allowed_request();
    let keys = RootKeys::new().with(chain.root_key_id, chain.root_key);
    let root_block = Verifier::new(keys.clone())
        .authorize(&token, &request)
        .chain
        .unwrap()
        .hops[0]
        .revocation_id
        .clone();
    // What the pipeline looks restrictions up with (as `revocation_targets`
    // in the verifier): every block, the family, every hop's agent key.
    let parsed = mandate_attenuate::read_chain(&token).unwrap();
    let ids = biscuit_auth::UnverifiedBiscuit::from(&token)
        .unwrap()
        .revocation_identifiers();
    let blocks = ids.len();
    let targets = revocation_targets(ids, &parsed);
    let agents = blocks + 1..blocks + 1 + parsed.hops.len();
    let dir = tempfile::tempdir().unwrap();
    let sizes = sizes();
    let mut cases: Vec<Case> = sizes
        .iter()
        .map(|&n| case(dir.path(), &keys, n, None, &token, &request))
        .collect();
    let own_sizes = if sizes.len() == 1 {
        vec![sizes[0]]
    } else {
        vec![sizes[0], sizes[sizes.len() - 1]]
    };
    for n in own_sizes {
        let own = Some(root_block.as_str());
        cases.push(case(dir.path(), &keys, n, own, &token, &request));
    }

    let mut c = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("restrictions/warm_2hop");
    for case in &cases {
        let (store, agents) = (&case.store, agents.clone());
        group.bench_function(format!("lookup/{}", case.name), |b| {
            b.iter(|| {
                store.restrictions_for(
                    black_box(&targets),
                    black_box(agents.clone()),
                    &parsed.principal,
                )
            })
        });
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                case.verifier
                    .authorize(black_box(&token), black_box(&request))
            })
        });
    }
    group.finish();
    c.final_summary();

    let base = &cases[0];
    println!(
        "\n# Warm 2-hop authorize, restrictions in the store (paired rounds against {})\n",
        base.name
    );
    println!("| case | ns/decision | {} ns/decision | added |", base.name);
    println!("|---|---:|---:|---:|");
    for other in &cases[1..] {
        let (x, y, added) = paired(base, other, &token, &request);
        println!("| {} | {y:.0} | {x:.0} | {added:+.1} % |", other.name);
    }
}
