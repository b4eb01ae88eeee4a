#!/usr/bin/env bash
# Load benchmark of `mandate gateway` with wrk, on loopback, in one run: the
# upstream (the customer API example, no auth) directly, then through the
# gateway with a warm token (cache hits), with the upstream credential
# injected. Prints requests/s, p50 and p99 for both, and what the gateway
# adds. Usage: ./scripts/bench-gateway.sh [SECONDS per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
command -v wrk >/dev/null || {
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get install -y -qq wrk >/dev/null
}
secs="${1:-10}"
threads=1
conns="${MANDATE_BENCH_CONNS:-16}"

cargo build -q -p mandate "${MANDATE_PROFILE_FLAGS[@]}"
cargo build -q -p mandate-examples --example customer_api "${MANDATE_PROFILE_FLAGS[@]}"
mandate="$CARGO_TARGET_DIR/release/mandate"
api="$CARGO_TARGET_DIR/release/examples/customer_api"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start() { # start NAME CMD... ; sets $addr
    local name="$1"; shift
    "$@" > "$work/$name.out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q "listening on" "$work/$name.out" 2>/dev/null && break
        sleep 0.05
    done
    addr="$(grep "listening on" "$work/$name.out" | sed 's#.*http://##')"
}

root_pub="$("$mandate" keygen --out "$work/root.key")"
agent_pub="$("$mandate" keygen --out "$work/agent.key")"
token="$("$mandate" issue --key "$work/root.key" --principal user:bench --to bench-agent \
    --to-key "$agent_pub" --allow 'read,list:/api/customers/*' --ttl 1h)"
echo "upstream-secret" > "$work/upstream.secret"

start upstream "$api" serve --listen 127.0.0.1:0 --no-auth
upstream="$addr"
cat > "$work/gateway.toml" <<TOML
listen = "127.0.0.1:0"
public_key = "$root_pub"
[[routes]]
prefix = "/api/"
upstream = "http://$upstream"
timeout = "5s"
credential = { header = "authorization", prefix = "Bearer ", file = "upstream.secret" }
TOML
start gateway "$mandate" gateway --config "$work/gateway.toml"
gateway="$addr"

run() {
    local name="$1" url="$2"; shift 2
    local out rps p50 p99 non2xx
    out="$(wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$@" "$url")"
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
    printf '| %-22s | %10s | %8s | %8s | %s |\n' "$name" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

echo "# wrk -t$threads -c$conns -d${secs}s, GET /api/customers/42, loopback, $(nproc) cores"
printf '| %-22s | %10s | %8s | %8s | %s |\n' "path" "req/s" "p50" "p99" "non-2xx"
printf '|------------------------|-----------:|---------:|---------:|---|\n'
run "upstream directly" "http://$upstream/api/customers/42"
run "through the gateway" "http://$gateway/api/customers/42" -H "Authorization: Bearer $token"
run "upstream directly (2)" "http://$upstream/api/customers/42"
