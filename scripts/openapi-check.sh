#!/usr/bin/env bash
# Check an OpenAPI document of the daemon with the tools its clients use:
# Redocly's linter, then openapi-typescript's types, against which the agent
# client in scripts/openapi/ must type-check (tsc --strict).
#
# Usage: scripts/openapi-check.sh DOCUMENT.json  (e.g. the daemon's
# /api/v1/openapi.json saved to a file). The tools are pinned in
# scripts/openapi/package-lock.json and installed there with `npm ci` when
# node_modules is missing or older than the lock file.
set -euo pipefail

log() { printf '[openapi-check] %s\n' "$*" >&2; }

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    log "usage: $0 DOCUMENT.json"
    exit 2
fi
document="$(realpath "$1")"
dir="$(cd "$(dirname "$0")/openapi" && pwd)"

if ! command -v npm >/dev/null 2>&1; then
    log "npm is missing: scripts/install-deps.sh installs Node.js and npm"
    exit 1
fi
# npm writes node_modules/.package-lock.json at each install: older than the
# lock file means the pins changed since.
installed="$dir/node_modules/.package-lock.json"
if [ ! -f "$installed" ] || [ "$dir/package-lock.json" -nt "$installed" ]; then
    log "installing the pinned tools (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts)
fi
bin="$dir/node_modules/.bin"
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

log "redocly lint"
"$bin/redocly" lint --config "$dir/redocly.yaml" "$document"
log "openapi-typescript"
"$bin/openapi-typescript" "$document" --output "$dir/schema.d.ts"
log "tsc --strict: the agent client against the generated types"
"$bin/tsc" --project "$dir/tsconfig.json"
log "ok"
