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
declare -A packages=()
# esx: the vSphere simulator (scripts/peers/vcsim) is built offline with Go.
packages[go]=golang-go
# Packages that install no command: a path each provides -> package.
declare -A package_paths=()
# esx: govmomi's sources (the simulator), used by Go in GOPATH mode.
package_paths[/usr/share/gocode/src/github.com/vmware/govmomi/simulator]=golang-github-vmware-govmomi-dev
missing=()
for cmd in "${!packages[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
for path in "${!package_paths[@]}"; do
    [ -e "$path" ] || missing+=("${package_paths[$path]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
