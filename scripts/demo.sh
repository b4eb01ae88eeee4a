#!/usr/bin/env bash
# The end-to-end demo, on the embedded default (no servers): an issuer mints a
# token for a support agent, the agent delegates read-only access to a
# sub-agent offline, and a verifier decides three requests, showing the chain
# and the reasons. Usage: ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh

cargo build -q -p mandate "${MANDATE_PROFILE_FLAGS[@]}"
mandate="$CARGO_TARGET_DIR/release/mandate"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
show() { printf '$ mandate %s\n' "$*"; }

say "Three Ed25519 keys: the issuer's root key, the support agent's, the sub-agent's"
show "keygen --out issuer.key"
issuer_pub="$("$mandate" keygen --out issuer.key)"; echo "$issuer_pub"
show "keygen --out support.key"
support_pub="$("$mandate" keygen --out support.key)"; echo "$support_pub"
show "keygen --out sub.key"
sub_pub="$("$mandate" keygen --out sub.key)"; echo "$sub_pub"

say "The issuer mints a token for alice's support agent: read/list customers, at most 100 rows"
show "issue --key issuer.key --principal user:alice --to support-agent --to-key \$SUPPORT_PUB --allow 'read,list:/api/customers/*' --where 'rows<=100' --ttl 1h --max-depth 2 --purpose 'answer support tickets' > support.tok"
"$mandate" issue --key issuer.key --principal user:alice \
    --to support-agent --to-key "$support_pub" \
    --allow 'read,list:/api/customers/*' --where 'rows<=100' \
    --ttl 1h --max-depth 2 --purpose 'answer support tickets' > support.tok
echo "($(wc -c < support.tok) characters of base64)"

say "Offline, the support agent delegates read-only access to a sub-agent, signing the hop with its own key"
show "attenuate --key support.key --to sub-agent --to-key \$SUB_PUB --allow 'read:/api/customers/*' --ttl 10m --purpose 'look up customer 42' support.tok > sub.tok"
"$mandate" attenuate --key support.key --to sub-agent --to-key "$sub_pub" \
    --allow 'read:/api/customers/*' --ttl 10m --purpose 'look up customer 42' \
    support.tok > sub.tok
echo "($(wc -c < sub.tok) characters of base64)"

say "An auditor reads the chain"
show "inspect --public-key \$ISSUER_PUB sub.tok"
"$mandate" inspect --public-key "$issuer_pub" sub.tok

verify() {
    show "verify --public-key \$ISSUER_PUB $* sub.tok"
    set +e
    "$mandate" verify --public-key "$issuer_pub" "$@" sub.tok 2>&1
    local code=$?
    set -e
    echo "(exit $code)"
    return 0
}

say "The API server decides: the sub-agent reads customer 42 (allowed)"
verify --action read --resource /api/customers/42 --param rows=10
say "The sub-agent tries to delete customer 42 (denied, with the reason)"
verify --action delete --resource /api/customers/42 --param rows=10
say "The sub-agent asks for 500 rows (denied: the root allows 100)"
verify --action read --resource /api/customers/42 --param rows=500

say "Security revokes the sub-agent's hop in the revocation list (RocksDB, synced before it answers)"
show "revoke --db revocations --token sub.tok --hop 1 --reason 'task finished' --by security"
"$mandate" revoke --db revocations --token sub.tok --hop 1 --reason 'task finished' --by security
show "revocations --db revocations"
"$mandate" revocations --db revocations

say "The sub-agent's token is now denied; the support agent's own token still works"
verify --action read --resource /api/customers/42 --param rows=10 --revocation-db revocations
show "verify --public-key \$ISSUER_PUB --action read --resource /api/customers/42 --param rows=10 --revocation-db revocations support.tok"
"$mandate" verify --public-key "$issuer_pub" --action read --resource /api/customers/42 \
    --param rows=10 --revocation-db revocations support.tok

say "An API server embedding the verifier as middleware: a customer API, the same kind of chain, a signed audit log"
printf '$ cargo run --release -p mandate-examples --example customer_api\n'
cd - >/dev/null
cargo build -q -p mandate-examples --example customer_api "${MANDATE_PROFILE_FLAGS[@]}"
"$CARGO_TARGET_DIR/release/examples/customer_api"
