#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz + libFuzzer, nightly) for
# SECONDS each, one after another, and prints per target: executions,
# executions per second, coverage (libFuzzer's cov: edges and ft: features),
# corpus size, the slowest input, and crashes. Exits 1 if any target crashed.
#
# Usage: ./scripts/fuzz.sh [SECONDS]          (default 600 per target)
#   FUZZ_TARGETS="token_bytes grant_text"      only these targets
#   FUZZ_SANITIZER=address                     default none (2x the executions;
#                                              our crates forbid unsafe code)
#
# Corpora grow in ~/.cache/mandate/fuzz/corpus/<target>, seeded from the
# committed fuzz/corpus/<target> (never written to); crashing inputs land in
# ~/.cache/mandate/fuzz/artifacts/<target>/, logs in .../logs/ (one per run
# and target; runs may share the corpora at the same time). A crash, once
# fixed, is committed under fuzz/regressions/<target>/, which the stable
# test suite replays (tests/tests/fuzz_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi
work="${MANDATE_FUZZ_DIR:-$HOME/.cache/mandate/fuzz}"
target_dir="${MANDATE_FUZZ_TARGET_DIR:-$HOME/.cache/mandate/fuzz-target}"
sanitizer="${FUZZ_SANITIZER:-none}"
all=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml)
targets="${FUZZ_TARGETS:-$all}"

# Release build with debug assertions and overflow checks (cargo-fuzz's
# default); its own target directory, never the main one.
(cd fuzz && cargo +nightly fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir")
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"
# Each target binary is ~450 MB (RocksDB inside): drop the copies earlier
# builds left in deps/ (the current one is hard-linked from $bin_dir).
for t in $all; do
    find "$bin_dir/deps" -maxdepth 1 -type f -name "$t-*" ! -name '*.d' -links 1 -delete
done

crashed=0
report=()
for t in $targets; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
    # One log per run: a smoke run of the test suite may run beside this one.
    log="$work/logs/$t-$(date +%Y%m%d-%H%M%S)-$$.log"
    dict=()
    [[ -f "fuzz/dict/$t.dict" ]] && dict=(-dict="fuzz/dict/$t.dict")
    status=0
    "$bin_dir/$t" "$work/corpus/$t" "fuzz/corpus/$t" "${dict[@]}" \
        -max_total_time="$secs" -timeout=10 -report_slow_units=1 -rss_limit_mb=2048 \
        -max_len=16384 -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
        >"$log" 2>&1 || status=$?
    # The last status line (DONE, or the last before a crash) and the final stats.
    last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -1 || true)
    final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    field() { sed -n "s/.* $1: *\([^ ]*\).*/\1/p" <<<"$last"; }
    slowest=$(final_stat slowest_unit_time_sec)
    corpus=$(field corp) # units/size libFuzzer keeps (seeds and grown inputs)
    if ((status != 0)); then
        crashed=1
        result="CRASH (exit $status): see $log and $work/artifacts/$t/"
    else
        result="ok"
    fi
    report+=("$(printf '%-13s %12s %8s %7s %7s %14s %9s  %s' "$t" "$(final_stat number_of_executed_units)" \
        "$(final_stat average_exec_per_sec)" "$(field cov)" "$(field ft)" "$corpus" "${slowest:-?}s" "$result")")
done

printf '%-13s %12s %8s %7s %7s %14s %9s  %s\n' target executions exec/s cov ft corpus slowest result
printf '%s\n' "${report[@]}"
exit "$crashed"
