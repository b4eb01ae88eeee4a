#!/usr/bin/env bash
# Runs the whole test suite several times in a row (default 3) while every
# core is saturated by busy-loop processes, to show that no test depends on
# the machine being idle: decisions are bounded by the token's structure
# (SPEC §6 rule 1c), and wall-clock limits are only a backstop.
# Usage: ./scripts/overload-test.sh [RUNS] [BUSY_PROCESSES]
# (BUSY_PROCESSES defaults to the number of cores). Prints one line per run
# and exits non-zero on the first failing run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
busy="${2:-$(nproc)}"
pids=()
stop_busy() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap stop_busy EXIT
for _ in $(seq "$busy"); do
    # A pure CPU spinner at normal priority, competing with every test.
    bash -c 'while :; do :; done' &
    pids+=("$!")
done
echo "overload: $busy busy-loop processes on $(nproc) cores; $runs runs of ./scripts/test.sh"
for i in $(seq "$runs"); do
    start=$(date +%s)
    log="${TMPDIR:-/tmp}/mandate-overload-run-$i.log"
    if ./scripts/test.sh >"$log" 2>&1; then
        echo "run $i: passed in $(($(date +%s) - start)) s (log: $log)"
    else
        echo "run $i: FAILED after $(($(date +%s) - start)) s; last lines of $log:"
        tail -40 "$log"
        exit 1
    fi
done
echo "overload: all $runs runs passed"
