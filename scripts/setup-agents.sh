#!/usr/bin/env bash
# Sets up the other-language agents the test suite runs (examples/python-agent
# and examples/js-agent): a Python virtualenv with biscuit-python under
# $HOME/.cache/mandate/pyvenv, and `npm ci` in examples/js-agent; and the
# official MCP SDKs with the reference server (tests/mcp-sdk, for
# cli/tests/mcp_sdk.rs): a second virtualenv under $HOME/.cache/mandate/mcpvenv
# (its own: the SDK's pins must not move the agent's) and `npm ci` there.
# Idempotent. Prints the variables the tests read; source-safe:
#   eval "$(./scripts/setup-agents.sh)"
set -euo pipefail
# The repository, also when called through a symlinked scripts/ (docs-test.sh).
cd "$(dirname "$(readlink -f "$0")")/.."
venv="${MANDATE_PYVENV:-$HOME/.cache/mandate/pyvenv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r examples/python-agent/requirements.txt >&2
if [ ! -d examples/js-agent/node_modules/@biscuit-auth/biscuit-wasm ] \
    || [ examples/js-agent/package-lock.json -nt examples/js-agent/node_modules ]; then
    (cd examples/js-agent && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
mcpvenv="${MANDATE_MCPVENV:-$HOME/.cache/mandate/mcpvenv}"
if [ ! -x "$mcpvenv/bin/python" ]; then
    python3 -m venv "$mcpvenv" >&2
fi
"$mcpvenv/bin/pip" install -q --disable-pip-version-check -r tests/mcp-sdk/requirements.txt >&2
if [ ! -d tests/mcp-sdk/node_modules/@modelcontextprotocol/server-everything ] \
    || [ tests/mcp-sdk/package-lock.json -nt tests/mcp-sdk/node_modules ]; then
    (cd tests/mcp-sdk && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "export MANDATE_PYTHON='$venv/bin/python'"
echo "export MANDATE_JS_AGENT_DIR='$PWD/examples/js-agent'"
echo "export MANDATE_MCP_PYTHON='$mcpvenv/bin/python'"
echo "export MANDATE_MCP_SDK_DIR='$PWD/tests/mcp-sdk'"
