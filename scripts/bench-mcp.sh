#!/usr/bin/env bash
# Latency added by `mandate gateway` to one MCP call: the official TypeScript
# SDK calls tools/call get-sum on the reference server (server-everything,
# streamable HTTP) directly and through the gateway (an MCP route, a token
# allowing get-sum), one session each, in the same run (tests/mcp-sdk/
# bench.mjs, blocks interleaved). Prints p50/p99/mean per target and the
# difference. Not part of the test suite.
# Usage: ./scripts/bench-mcp.sh [CALLS per target, default 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
calls="${1:-2000}"
eval "$(./scripts/setup-agents.sh)"
cargo build -q -p mandate "${MANDATE_PROFILE_FLAGS[@]}"
mandate="$CARGO_TARGET_DIR/release/mandate"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2; return 1
}

upstream_port="$(free_port)"
PORT="$upstream_port" node "$MANDATE_MCP_SDK_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js" \
    streamableHttp > "$work/everything.log" 2>&1 &
pids+=($!)
wait_port "$upstream_port"

root_pub="$("$mandate" keygen --out "$work/root.key")"
agent_pub="$("$mandate" keygen --out "$work/agent.key")"
"$mandate" issue --key "$work/root.key" --principal user:bench --to bench-agent --to-key "$agent_pub" \
    --allow 'get-sum:/mcp' --ttl 1h > "$work/agent.tok"
gateway_port="$(free_port)"
cat > "$work/gateway.toml" <<TOML
listen = "127.0.0.1:$gateway_port"
public_key = "$root_pub"
public_url = "http://127.0.0.1:$gateway_port"
[[routes]]
prefix = "/mcp"
upstream = "http://127.0.0.1:$upstream_port"
mode = "mcp"
TOML
"$mandate" gateway --config "$work/gateway.toml" > "$work/gateway.out" 2> "$work/gateway.log" &
pids+=($!)
wait_port "$gateway_port"

(cd "$MANDATE_MCP_SDK_DIR" && node bench.mjs --direct "http://127.0.0.1:$upstream_port/mcp" \
    --gateway "http://127.0.0.1:$gateway_port/mcp" --token "$work/agent.tok" --calls "$calls")

# A client with a fresh (cold) valid token while other clients flood the
# gateway with 1 MiB bodies, without a token and with one that does not
# verify: its latency in each phase (printed by the test, not asserted).
echo
echo "cold valid token under 1 MiB floods (cli/tests/mcp_attacks2.rs):"
cargo test -q -p mandate --test mcp_attacks2 "${MANDATE_PROFILE_FLAGS[@]}" \
    large_bodies_without_a_valid_token_and_valid_cold_tokens -- --ignored --nocapture 2>&1 \
    | grep -E '^fresh valid token'
