#!/usr/bin/env bash
# Load benchmark of the HTTP middleware with wrk, on loopback, against the
# customer API example (examples/examples/customer_api.rs), in one run:
#   1. no auth            the same routes without the middleware
#   2. warm (Datalog)     the middleware, one 2-hop token whose hop carries
#                         an always-true raw Datalog check: decided on the
#                         Datalog world loaded once (the baseline of 2.)
#   2b. warm              the middleware, one 2-hop token (cache hits; all
#                         its checks Mandate's own: decided natively)
#   3. warm + audit       the same, each answer after its record is durable
#                         (group commit: one synced write per batch, one
#                         signed checkpoint per 100 ms or when the writer
#                         runs out of records; the default)
#   3b. + ckpt per batch  the same, a checkpoint signed with every batch
#                         (--audit-checkpoint-every-batch: as before)
#   4. warm + async audit the same, answered before the record is written
#                         (--audit-async; a crash loses the queued records)
#   5. warm + old audit   as before checkpoints: answered before the write,
#                         every record signed (--audit-async
#                         --audit-sign-records)
#   6. cold               the middleware, a fresh 2-hop token per request
# Prints requests/s, p50/p99 latency and the server's CPU time per request
# (user + system from /proc/PID/stat over the run: less sensitive to a busy
# machine than requests/s) for each, each audited mode's share of no-auth
# requests/s, and how fast `mandate audit verify` checks the logs written
# (records/s).
# Usage: [ROUNDS=3] ./scripts/bench-http.sh [SECONDS per run, default 10]
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
conns=32

cargo build -q -p mandate "${MANDATE_PROFILE_FLAGS[@]}"
cargo build -q -p mandate-examples --example customer_api "${MANDATE_PROFILE_FLAGS[@]}"
mandate="$CARGO_TARGET_DIR/release/mandate"
api="$CARGO_TARGET_DIR/release/examples/customer_api"
work="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

root_pub="$("$mandate" keygen --out "$work/root.key")"
"$api" tokens --key "$work/root.key" --count 1 > "$work/warm.tok"
"$api" tokens --key "$work/root.key" --count 1 --datalog 'check if time($t)' > "$work/datalog.tok"
# Enough fresh tokens that none repeats within a run (cold ~3-5k req/s here).
cold_count=$((secs * 6000))
echo "minting $cold_count fresh 2-hop tokens for the cold run..." >&2
"$api" tokens --key "$work/root.key" --count "$cold_count" > "$work/cold.tok"

cat > "$work/tokens.lua" <<'LUA'
-- Each request carries the next token of TOKENS (a file, one per line);
-- each wrk thread starts at its own offset.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local counter = 0
local offset = 0
local n = 0
setup = function(thread)
  thread:set("offset", n * 1000003)
  n = n + 1
end
request = function()
  counter = counter + 1
  local t = tokens[((offset + counter) % #tokens) + 1]
  return wrk.format("GET", "/api/customers/42", { ["Authorization"] = "Bearer " .. t })
end
LUA

start() {
    # Emptied first: the server's shell truncates it only once it runs, and
    # the previous server's "listening on" must not be read meanwhile.
    : > "$work/server.out"
    "$api" serve --listen 127.0.0.1:0 --public-key "$root_pub" "$@" > "$work/server.out" &
    server=$!
    # Up to 30 s: opening the audit log on a loaded machine can take a while.
    for _ in $(seq 600); do
        grep -q "listening on" "$work/server.out" 2>/dev/null && break
        sleep 0.05
    done
    addr="$(grep "listening on" "$work/server.out" | sed 's#.*http://##')"
    [ -n "$addr" ] || { echo "the server did not start: $*" >&2; exit 1; }
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

run() {
    local name="$1" tokens="$2"
    local out cpu0 cpu1
    cpu0="$(cpu_ticks)"
    out="$(TOKENS="$tokens" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency \
        -s "$work/tokens.lua" "http://$addr/api/customers/42")"
    cpu1="$(cpu_ticks)"
    local rps p50 p99 non2xx total us
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    # Server CPU (user + system) per request over the run, in µs: less
    # sensitive to a busy machine than requests/s.
    total="$(awk '/requests in/ {print $1}' <<<"$out")"
    us="$(echo "($cpu1 - $cpu0) * 1000000 / $(getconf CLK_TCK) / $total" | bc -l)"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
    printf '| %-17s | %10s | %8s | %8s | %8.1f | %s |\n' "$name" "$rps" "$p50" "$p99" "$us" "${non2xx:-0}"
    rps_of[$name]="$rps"
    cpu_of[$name]+="$us "
}
declare -A rps_of cpu_of
# utime + stime of the server, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }

# `mandate audit verify` of the log a run wrote (the audit key is printed
# by the server): records/s.
verify_cost() {
    local name="$1" dir="$2" pub t0 t1 records
    pub="$(sed -n 's/^audit key //p' "$work/server.out.$name")"
    t0=$(date +%s.%N)
    records="$("$mandate" audit verify --db "$dir" --public-key "$pub" --json \
        | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["records"], v["checkpoints"], v["status"])')"
    t1=$(date +%s.%N)
    read -r n cps status <<<"$records"
    printf '| %-17s | %9s | %11s | %6s | %8.2f | %10.0f |\n' "$name" "$n" "$cps" "$status" \
        "$(echo "$t1 - $t0" | bc)" "$(echo "$n / ($t1 - $t0)" | bc -l)"
}

audited() {
    local name="$1" dir="$2"; shift 2
    start --audit-dir "$dir" "$@"; run "$name" "$work/warm.tok"
    cp "$work/server.out" "$work/server.out.$name"; stop
}

# The machine's speed drifts between runs (no auth alone has ranged from
# 97 k to 125 k req/s on the 2-core VM within minutes): every mode is run
# once per round, rounds interleave the modes, and each share is the median
# of the rounds' shares (each against the same round's no auth).
rounds="${ROUNDS:-3}"
echo "# wrk -t$threads -c$conns -d${secs}s, GET /api/customers/42, loopback, $(nproc) cores, $rounds rounds"
printf '| %-17s | %10s | %8s | %8s | %8s | %s |\n' "mode" "req/s" "p50" "p99" "µs CPU" "non-2xx"
printf '|-------------------|-----------:|---------:|---------:|---------:|---|\n'
declare -A shares
# Every mode but no auth, in the order of the summaries.
modes=("warm (Datalog)" "warm" "warm + audit" "+ ckpt per batch" "warm + async audit" "warm + old audit")
for round in $(seq "$rounds"); do
    start --no-auth;                         run "no auth" "$work/warm.tok";       stop
    start;                                   run "warm (Datalog)" "$work/datalog.tok"; stop
    start;                                   run "warm" "$work/warm.tok";          stop
    rm -rf "$work"/audit-*
    audited "warm + audit" "$work/audit-durable"
    audited "+ ckpt per batch" "$work/audit-per-batch" --audit-checkpoint-every-batch
    audited "warm + async audit" "$work/audit-async" --audit-async
    audited "warm + old audit" "$work/audit-old" --audit-async --audit-sign-records
    start;                                   run "cold" "$work/cold.tok";          stop
    for m in "${modes[@]}"; do
        shares[$m]+="$(echo "100 * ${rps_of[$m]} / ${rps_of["no auth"]}" | bc -l) "
    done
    printf '|-------------------|-----------:|---------:|---------:|---------:|---|\n'
done

echo
echo "# share of no-auth req/s: median of $rounds rounds (each round's shares)"
for m in "${modes[@]}"; do
    read -r -a xs <<<"${shares[$m]}"
    median="$(printf '%s\n' "${xs[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
    printf '%-19s %5.1f %%   (%s)\n' "$m" "$median" "$(printf '%.1f ' "${xs[@]}")"
done
echo
echo "# server CPU µs per request (user + system, /proc/PID/stat over the run): median of $rounds rounds"
for m in "no auth" "${modes[@]}"; do
    read -r -a xs <<<"${cpu_of[$m]}"
    median="$(printf '%s\n' "${xs[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
    printf '%-19s %6.1f µs   (%s)\n' "$m" "$median" "$(printf '%.1f ' "${xs[@]}")"
done

echo
echo "# mandate audit verify --db (chain + checkpoint signatures; old: a signature per record)"
printf '| %-17s | %9s | %11s | %6s | %8s | %10s |\n' "log" "records" "checkpoints" "status" "seconds" "records/s"
printf '|-------------------|----------:|------------:|--------|---------:|-----------:|\n'
verify_cost "warm + audit" "$work/audit-durable"
verify_cost "+ ckpt per batch" "$work/audit-per-batch"
verify_cost "warm + async audit" "$work/audit-async"
verify_cost "warm + old audit" "$work/audit-old"
