#!/usr/bin/env bash
# Runs Mandate's whole test suite: formatting and clippy, unit, doc (with the
# docs' Rust examples), end-to-end (library and CLI binary), property tests,
# the browser and other-language agent tests, the benches in test mode (each
# runs once), every shell example of README.md and docs/, the release
# binary's size, and the demo. Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
# The Python and JavaScript agents (examples/python-agent, examples/js-agent)
# run in the suite: a virtualenv and `npm ci`; their tests must not skip here.
eval "$(./scripts/setup-agents.sh)"
export MANDATE_AGENTS_REQUIRED=1

cargo fmt --all -- --check
# Clippy in the tests' profile, so RocksDB's C++ is built once for both.
cargo clippy --workspace --all-targets "${MANDATE_PROFILE_FLAGS[@]}" -- -D warnings
# The verifier builds without RocksDB (an embedder with its own revocation list).
cargo clippy -p mandate-verifier --no-default-features --features http "${MANDATE_PROFILE_FLAGS[@]}" -- -D warnings
cargo test --workspace --all-targets "${MANDATE_PROFILE_FLAGS[@]}"
cargo test --workspace --doc "${MANDATE_PROFILE_FLAGS[@]}"
./scripts/check-size.sh
./scripts/demo.sh >/dev/null
echo "demo: ok"
# Every shell block of README.md and docs/*.md, run as written: with the
# CLI (built by demo.sh) and the examples on PATH.
cargo build -q -p mandate-examples --examples "${MANDATE_PROFILE_FLAGS[@]}"
./scripts/docs-test.sh
# A bounded fuzz smoke run (20 s per target) where nightly and cargo-fuzz exist.
if cargo +nightly fuzz --version >/dev/null 2>&1; then ./scripts/fuzz.sh 20; else echo "fuzz smoke: skipped (no nightly)"; fi
