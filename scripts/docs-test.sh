#!/usr/bin/env bash
# Runs every ```sh block of README.md and docs/*.md, so the docs cannot drift
# from the code. Usage: ./scripts/docs-test.sh [FILE.md ...]
#
# Per file, in order: the blocks share one bash session (variables and
# functions carry over from block to block) and one fresh temporary working
# directory, which holds symlinks to the repository's examples/ and scripts/
# so paths written from the repository root work. Each block runs under
# `set -euo pipefail`; the first failing command stops the file and is
# reported as FILE:LINE (the line of the command in the Markdown file) with
# the block's output. The built `mandate` binary and the built examples
# (customer_api, support_delegation) come first on PATH: build them first
# (scripts/test.sh and scripts/demo.sh do). Servers a block starts in the
# background are stopped when its file is done (the file runs in its own
# process group).
#
# Fences: ```sh blocks run; ```sh no-run blocks are shown, not run (each says
# why in a comment); any other info string (toml, json, text, rust, …) is not
# shell. Rust blocks are doctests, compiled by cargo elsewhere.
#
# Environment: DOCS_TEST_TIMEOUT (seconds per file, default 600),
# DOCS_TEST_KEEP=1 keeps the working directories.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/env.sh
bin="$CARGO_TARGET_DIR/release"
[ -x "$bin/mandate" ] || {
    echo "docs-test: $bin/mandate is not built (cargo build --release -p mandate -p mandate-examples --examples)" >&2
    exit 2
}
for tool in curl python3 nats-server; do
    command -v "$tool" >/dev/null || { echo "docs-test: the docs need $tool (apt-get install $tool)" >&2; exit 2; }
done
timeout_s=${DOCS_TEST_TIMEOUT:-600}

if (($#)); then files=("$@"); else files=(README.md docs/*.md); fi

# Writes FILE's runnable blocks as one bash script on stdout, and the map
# "script line -> markdown line" to $2. Each block is preceded by a marker
# (block start line) so a failure names its block.
extract() {
    awk -v map="$2" -v file="$1" '
        function emit(s, mdline) { out++; print s; if (mdline) print out " " mdline > map }
        BEGIN { out = 0; inblk = 0 }
        {
            if (!inblk && $0 ~ /^```sh( |$)/) {
                info = substr($0, 6)
                inblk = 1; run = (info !~ /(^| )no-run( |$)/); start = NR
                if (run) { blocks++; emit("__docs_block " start, 0) }
                next
            }
            if (inblk && $0 ~ /^```[ \t]*$/) { inblk = 0; next }
            if (inblk && run) emit($0, NR)
        }
        END {
            if (inblk) { print file ":" start ": unterminated ```sh block" > "/dev/stderr"; exit 3 }
            print blocks + 0 > (map ".count")
        }' "$1"
}

total=0 passed=0 failed=()
for md in "${files[@]}"; do
    [ -f "$md" ] || { echo "docs-test: no such file $md" >&2; failed+=("$md"); continue; }
    work=$(mktemp -d "${TMPDIR:-/tmp}/mandate-docs.XXXXXX")
    ln -s "$repo/examples" "$work/examples"
    ln -s "$repo/scripts" "$work/scripts"
    meta=$(mktemp -d "${TMPDIR:-/tmp}/mandate-docs-meta.XXXXXX")
    extract "$md" "$meta/map" > "$meta/body.sh"
    n=$(cat "$meta/map.count")
    if [ "$n" -eq 0 ]; then echo "docs-test: $md: no sh blocks"; rm -rf "$meta" "$work"; continue; fi
    # The session: strict mode, an ERR trap naming the script line that
    # failed, and a marker per block (its Markdown start line and number).
    {
        echo 'set -Eeuo pipefail'
        echo "export PATH='$bin:$bin/examples':\"\$PATH\""
        echo "cd '$work'"
        echo "__docs_n=0"
        echo "__docs_block() { __docs_n=\$((__docs_n + 1)); echo \"\$1\" > '$meta/current'; echo \$__docs_n > '$meta/done'; }"
        echo "trap 'echo \$LINENO > \"$meta/failed_line\"' ERR"
    } > "$meta/session.sh"
    header=$(wc -l < "$meta/session.sh")
    cat "$meta/body.sh" >> "$meta/session.sh"
    echo "echo \$__docs_n > '$meta/finished'" >> "$meta/session.sh"

    # Its own process group, so whatever a block left running is stopped.
    setsid bash "$meta/session.sh" > "$meta/out" 2>&1 < /dev/null &
    pid=$!
    waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < timeout_s * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    timed_out=0
    if kill -0 "$pid" 2>/dev/null; then timed_out=1; fi
    kill -TERM -- "-$pid" 2>/dev/null || true
    status=0
    wait "$pid" 2>/dev/null || status=$?
    sleep 0.2
    kill -KILL -- "-$pid" 2>/dev/null || true

    total=$((total + n))
    if [ -f "$meta/finished" ] && [ "$status" -eq 0 ] && [ "$timed_out" -eq 0 ]; then
        passed=$((passed + n))
        echo "docs-test: $md: $n blocks ok"
    else
        ran=$(cat "$meta/done" 2>/dev/null || echo 0)
        passed=$((passed + (ran > 0 ? ran - 1 : 0)))
        block=$(cat "$meta/current" 2>/dev/null || echo "?")
        where="$md:$block (block)"
        if [ -f "$meta/failed_line" ]; then
            sl=$(($(cat "$meta/failed_line") - header))
            ml=$(awk -v l="$sl" '$1 == l { print $2 }' "$meta/map")
            [ -n "$ml" ] && where="$md:$ml (block at line $block)"
        fi
        if [ "$timed_out" -eq 1 ]; then why="timed out after ${timeout_s}s"; else why="exit $status"; fi
        echo "docs-test: FAILED $where: $why; output of the file's session (last 40 lines):" >&2
        tail -n 40 "$meta/out" | sed 's/^/    /' >&2
        failed+=("$where")
    fi
    if [ -n "${DOCS_TEST_KEEP:-}" ]; then echo "docs-test: $md ran in $work (output: $meta/out)"; else rm -rf "$work" "$meta"; fi
done

echo "docs-test: $passed of $total blocks passed"
if ((${#failed[@]})); then
    printf 'docs-test: failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
