#!/usr/bin/env bash
# Legitimate requests while hostile tokens are being decided (issue 12): the
# customer API example (the middleware, with the verification cache) is
# loaded by wrk with a legitimate 2-hop token, first alone (baseline), then
# while a second wrk sends, on more connections, a hostile token: the most
# expensive one the verifier's cost bound accepts (SPEC §6 rule 1c; every
# request with it is denied after that work). Both measured in one run.
# Prints the legitimate requests' req/s, p50 and p99 in each phase, the
# hostile load's req/s, and the p99 ratio (aim: at most 2x the baseline).
# Usage: ./scripts/bench-hostile.sh [SECONDS per phase, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
command -v wrk >/dev/null || {
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get install -y -qq wrk >/dev/null
}
secs="${1:-10}"

cargo build -q -p mandate "${MANDATE_PROFILE_FLAGS[@]}"
cargo build -q -p mandate-examples --example customer_api "${MANDATE_PROFILE_FLAGS[@]}"
mandate="$CARGO_TARGET_DIR/release/mandate"
api="$CARGO_TARGET_DIR/release/examples/customer_api"
work="$(mktemp -d)"
server=""
hostile_pid=""
cleanup() {
    [ -n "$hostile_pid" ] && kill "$hostile_pid" 2>/dev/null
    [ -n "$server" ] && kill "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

root_pub="$("$mandate" keygen --out "$work/root.key")"
legit="$("$api" tokens --key "$work/root.key" --count 1)"
hostile="${HOSTILE_TOKEN:-$("$api" tokens --key "$work/root.key" --hostile)}"

"$api" serve --listen 127.0.0.1:0 --public-key "$root_pub" > "$work/server.out" &
server=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/server.out" 2>/dev/null && break
    sleep 0.05
done
addr="$(grep "listening on" "$work/server.out" | sed 's#.*http://##')"
url="http://$addr/api/customers/42"

# One request each first: both tokens are then in the verification cache.
curl -s -o /dev/null -H "Authorization: Bearer $legit" "$url"
curl -s -o /dev/null -H "Authorization: Bearer $hostile" "$url"

legit_run() {
    local name="$1" out
    out="$(wrk -t1 -c8 -d"${secs}s" --latency -H "Authorization: Bearer $legit" "$url")"
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    printf '| %-26s | %10s | %8s | %8s |\n' "$name" "$rps" "$p50" "$p99"
}
to_us() { # wrk latency (e.g. 1.23ms, 456.00us, 1.01s) in microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1000000 }'
}

echo "# legitimate: wrk -t1 -c8 -d${secs}s; hostile: wrk -t1 -c32; loopback, $(nproc) cores"
printf '| %-26s | %10s | %8s | %8s |\n' "legitimate requests" "req/s" "p50" "p99"
printf '|----------------------------|-----------:|---------:|---------:|\n'
legit_run "alone (baseline)"
base_p99="$p99"
wrk -t1 -c32 -d"$((secs + 4))s" -H "Authorization: Bearer $hostile" "$url" > "$work/hostile.out" &
hostile_pid=$!
sleep 2
legit_run "during the hostile load"
loaded_p99="$p99"
wait "$hostile_pid" || true
hostile_pid=""
echo
echo "hostile load: $(awk '/Requests\/sec/ {print $2}' "$work/hostile.out") req/s (each denied after the work its token asks for)"
ratio="$(awk -v a="$(to_us "$loaded_p99")" -v b="$(to_us "$base_p99")" 'BEGIN { printf "%.2f", a / b }')"
echo "legitimate p99 during / alone: $ratio (aim: at most 2)"
