#!/usr/bin/env bash
# Install what building and testing jobstack needs, idempotently: the wasm32-wasip2
# Rust target and the Debian packages the test peers come from. Safe to re-run;
# does nothing when everything is present. With --build-only, only what building
# and running needs (the wasm target), not the test peers.
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
if [ "${1:-}" = "--build-only" ]; then
    exit 0
fi

# Debian packages: name of a command each provides -> package.
declare -A packages=(
    # The PostgreSQL store's tests (scripts/postgres.sh starts it).
    [pg_ctlcluster]=postgresql
    # esx: the vSphere simulator (scripts/peers/vcsim) is built offline with Go.
    [go]=golang-go
    # netscan's end-to-end test compares its result with nmap -sT.
    [nmap]=nmap
    # snmp: the test peer (snmpd) and the reference client (snmpget, snmpwalk).
    [snmpd]=snmpd
    [snmpget]=snmp
    # mailconfig: doveadm verifies stored passwords, postmap reads the map.
    [doveadm]=dovecot-core
    [postmap]=postfix
    # The management UI's browser test: headless Chromium driven over WebDriver.
    [chromium]=chromium
    [chromedriver]=chromium-driver
    # The OpenAPI document's check (scripts/openapi-check.sh): Node.js and npm
    # run the linter, the TypeScript generator and the compiler it pins.
    [npm]=npm
)
# Packages that install no command: a path each provides -> package.
declare -A package_paths=()
# esx: govmomi's sources (the simulator), used by Go in GOPATH mode.
package_paths[/usr/share/gocode/src/github.com/vmware/govmomi/simulator]=golang-github-vmware-govmomi-dev
# Daemons these packages would start on their standard ports: the tests run their
# own instances on run-time ports, so none may stay running after an install.
daemons=(snmpd dovecot postfix)
missing=()
for cmd in "${!packages[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
for path in "${!package_paths[@]}"; do
    [ -e "$path" ] || missing+=("${package_paths[$path]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix asks how to configure itself; "No configuration" leaves it unconfigured.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep the packages' daemons from starting during the install (invoke-rc.d
    # honours policy-rc.d); an existing policy is left as it is.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    # Another apt run (a parallel install) holds the lock: wait for it, not fail.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
    # Stop whatever started anyway (a systemd that ignores policy-rc.d).
    for d in "${daemons[@]}"; do
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$d" 2>/dev/null; then
            log "stopping $d started by its package"
            systemctl stop "$d" || true
            systemctl disable "$d" >/dev/null 2>&1 || true
        fi
    done
fi
