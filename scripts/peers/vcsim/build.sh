#!/usr/bin/env bash
# Build the vSphere test peer (main.go beside this script) offline, from Debian's
# packaged govmomi sources (golang-github-vmware-govmomi-dev) in GOPATH mode: no
# module proxy, no network. The binary is cached outside the clone and rebuilt
# when missing or older than main.go. Prints the binary's path on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${JOBSTACK_PEER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/jobstack/peers}"
bin="$cache/vcsim-peer"
mkdir -p "$cache"

if [ ! -x "$bin" ] || [ "$here/main.go" -nt "$bin" ]; then
    if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/vmware/govmomi ]; then
        echo "build.sh: go or govmomi sources missing: run scripts/install-deps.sh" >&2
        exit 1
    fi
    # GOPATH mode resolves imports from Debian's /usr/share/gocode/src; the build
    # cache must be writable, so it lives beside the binary.
    (cd "$here" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
        GOCACHE="$cache/go-build" go build -o "$bin.tmp" . >&2)
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
