#!/usr/bin/env bash
# Checks the release `mandate` binary's size (issue 13: at most 50 MB) and
# that it still has line tables for backtraces (panic messages carry
# file:line without any debug info). Prints the size and the largest
# sections. Usage: ./scripts/check-size.sh [MAX_MB, default 50]
# Needs the binary built: cargo build --release -p mandate
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
max_mb="${1:-50}"
bin="$CARGO_TARGET_DIR/release/mandate"
[ -x "$bin" ] || { echo "check-size: $bin is not built (cargo build --release -p mandate)" >&2; exit 2; }
bytes=$(stat -c %s "$bin")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "mandate binary: $mb MB ($bytes bytes), limit $max_mb MB"
if command -v readelf >/dev/null; then
    # Section sizes (hex) of the biggest parts, for the record.
    readelf -S -W "$bin" | sed -n 's/^ *\[ *[0-9]*\] *\(\.[^ ]*\) *[A-Z_]* *[0-9a-f]* *[0-9a-f]* *\([0-9a-f]*\) .*/\1 \2/p' \
        | while read -r name size; do echo "$((16#$size)) $name"; done \
        | sort -n -r | head -5 | awk '{ printf "  %-22s %8.1f MB\n", $2, $1 / 1048576 }'
    sections="$(readelf -S -W "$bin")"
    grep -q '\.debug_line' <<<"$sections" \
        || { echo "check-size: no .debug_line: backtraces would lose file:line" >&2; exit 1; }
fi
if ((bytes > max_mb * 1048576)); then
    echo "check-size: the binary is larger than $max_mb MB" >&2
    exit 1
fi
