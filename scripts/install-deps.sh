#!/usr/bin/env bash
# Install what building and testing jobstack needs, idempotently: the wasm32-wasip2
# Rust target and the Debian packages the test peers come from. Safe to re-run;
# does nothing when everything is present.
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is missing: install the stable Rust toolchain (rustup) first"
    exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

# Debian packages: name of a command each provides -> package.
# (Test peers of the plugins are added here as the plugins land.)
declare -A packages=(
    [pg_ctlcluster]=postgresql # the PostgreSQL store's tests (scripts/postgres.sh starts it)
)
missing=()
for cmd in "${!packages[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
