#!/usr/bin/env bash
# Make sure the PostgreSQL server the tests use is running and reachable:
# JOBSTACK_TEST_POSTGRES if set (only checked), else the machine's server on
# 127.0.0.1:5432, installed (Debian package `postgresql`) and started if needed.
# Idempotent; exits non-zero, saying why, when the server cannot be reached.
set -euo pipefail

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

url="${JOBSTACK_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
reachable() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }
# The maintenance database of the server in $url (the tests create their own).
admin_url() { printf '%s' "$url" | sed -E 's#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/postgres#'; }

if [ -n "${JOBSTACK_TEST_POSTGRES:-}" ]; then
    if ! command -v psql >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends postgresql-client
    fi
    reachable "$(admin_url)" || die "JOBSTACK_TEST_POSTGRES=$url cannot be reached"
    log "using $url"
    exit 0
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL (Debian package postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends postgresql
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    cluster="$(pg_lsclusters --no-header 2>/dev/null | awk '$3 == 5432 { print $1 " " $2; exit }')"
    if [ -z "$cluster" ]; then
        version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
        log "creating cluster $version/main on port 5432"
        as_root pg_createcluster "$version" main --port 5432
        cluster="$version main"
    fi
    log "starting cluster $cluster"
    # pg_ctlcluster works with or without systemd (containers, CI).
    as_root pg_ctlcluster $cluster start || true
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 1
    done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL did not start on 127.0.0.1:5432 (see /var/log/postgresql/)"
fi

if ! reachable "$(admin_url)"; then
    # A fresh Debian cluster asks a password on TCP; the tests connect as the
    # postgres user from loopback only.
    hba="$(as_root runuser -u postgres -- psql -Atqc 'SHOW hba_file' 2>/dev/null || true)"
    if [ -n "$hba" ] && ! as_root grep -q 'jobstack scripts/postgres.sh' "$hba"; then
        log "allowing the postgres user from 127.0.0.1 without password ($hba)"
        as_root sed -i '1i host all postgres 127.0.0.1/32 trust # jobstack scripts/postgres.sh' "$hba"
        as_root runuser -u postgres -- psql -Atqc 'SELECT pg_reload_conf()' >/dev/null
        sleep 1
    fi
fi
reachable "$(admin_url)" || die "PostgreSQL on 127.0.0.1:5432 is running but $url cannot connect"
log "PostgreSQL ready at $url"
