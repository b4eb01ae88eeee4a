#!/usr/bin/env bash
# Runs Mandate's whole test suite: unit, doc, end-to-end (library and CLI
# binary), property tests, the benches in test mode (each runs once), and
# the demo. Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh

cargo fmt --all -- --check
cargo test --workspace --all-targets "${MANDATE_PROFILE_FLAGS[@]}"
cargo test --workspace --doc "${MANDATE_PROFILE_FLAGS[@]}"
./scripts/demo.sh >/dev/null
echo "demo: ok"
