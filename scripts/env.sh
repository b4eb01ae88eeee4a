# Shared settings for Mandate's scripts (sourced, not run).
# One target directory outside the clone, so repeated runs (and CI) reuse
# compiled dependencies; override with CARGO_TARGET_DIR.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mandate/target}"
# Tests and benches share the release profile: dependencies compile once.
MANDATE_PROFILE_FLAGS=(--release)
