#!/usr/bin/env bash
# Installs what Mandate's build, demo and tests need on a fresh Debian machine
# with the Rust toolchain. Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v c++ >/dev/null 2>&1 || need+=(g++)
# RocksDB (the revocation list) builds from C++ source; bindgen needs libclang.
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
# The revocation feed's tests run a real NATS server with JetStream.
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
# The Python and JavaScript agent examples run in the suite.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The HTML views are tested in a real headless browser (driven by WebDriver).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# The docs' shell examples (scripts/docs-test.sh) call the servers with curl;
# scripts/check-size.sh reads the binary's sections with readelf.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v readelf >/dev/null 2>&1 || need+=(binutils)

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
