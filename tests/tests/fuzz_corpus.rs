//! The fuzz corpora on the stable toolchain: every committed seed
//! (`fuzz/corpus/<target>/`) and every crash the fuzzers found
//! (`fuzz/regressions/<target>/`) replayed through the same target
//! functions libFuzzer runs (`mandate_tests::fuzz_targets`), which panic on
//! any broken invariant; and the seeds are exactly what their generator
//! writes. The fuzzers themselves run under `scripts/fuzz.sh` (nightly).
//!
//! Regenerate the seeds with
//! `cargo test --release -p mandate-tests --test fuzz_corpus -- --ignored write_fuzz_seeds`.
#![allow(clippy::unwrap_used)]

use mandate_tests::fuzz_targets::{seeds, TARGETS};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../fuzz")
}

/// Every file of `fuzz/<kind>/<target>/`, sorted.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `target` on every corpus and regression file; fails naming each
/// file that panicked. Returns how many corpus files there were.
fn replay(target: &str) -> usize {
    let run = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap();
    let corpus = files("corpus", target);
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&files("regressions", target)) {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target} panicked on {failed:#?}");
    corpus.len()
}

macro_rules! replays {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            let n = replay(stringify!($target));
            assert!(n > 0, "no committed corpus for {}", stringify!($target));
        }
    )*};
}

mod every_committed_input_replays_without_panic {
    use super::replay;
    replays!(
        token_bytes,
        token_signed,
        grant_text,
        http_request,
        mcp_jsonrpc,
        audit_export,
        feed_entry
    );
}

#[test]
fn every_target_has_a_test_above() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "token_bytes",
            "token_signed",
            "grant_text",
            "http_request",
            "mcp_jsonrpc",
            "audit_export",
            "feed_entry"
        ]
    );
}

fn seed_path(target: &str, name: &str) -> PathBuf {
    fuzz_dir()
        .join("corpus")
        .join(target)
        .join(format!("seed-{name}"))
}

#[test]
fn the_committed_seeds_are_what_the_generator_writes() {
    let seeds = seeds();
    for (target, name, content) in &seeds {
        let path = seed_path(target, name);
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run write_fuzz_seeds", path.display()));
        assert!(
            committed == *content,
            "{} differs from its generator; run write_fuzz_seeds",
            path.display()
        );
    }
    // No stale seed files either.
    for (target, _) in TARGETS {
        for path in files("corpus", target) {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(name) = file.strip_prefix("seed-") {
                assert!(
                    seeds.iter().any(|(t, n, _)| t == target && n == name),
                    "{} is not generated any more",
                    path.display()
                );
            }
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*: run by hand after changing the generator"]
fn write_fuzz_seeds() {
    for (target, _) in TARGETS {
        for path in files("corpus", target) {
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    for (target, name, content) in seeds() {
        let path = seed_path(target, &name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
}
