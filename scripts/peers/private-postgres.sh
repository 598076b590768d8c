#!/usr/bin/env bash
# A private PostgreSQL instance for tests that stop and restart the database
# (never the machine's shared server, which other test runs use):
#
#   private-postgres.sh start DIR PORT   initdb DIR if new, start on 127.0.0.1:PORT,
#                                         wait until ready; prints the URL
#   private-postgres.sh stop DIR         fast shutdown (clients disconnected)
#   private-postgres.sh destroy DIR      stop if running and delete DIR
#
# DIR must not be inside a directory the postgres user cannot enter (use a fresh
# path under /tmp). As root, the server runs as the `postgres` user (initdb
# refuses root). Needs the Debian package postgresql (scripts/postgres.sh).
set -euo pipefail

die() { printf '[private-postgres] %s\n' "$*" >&2; exit 1; }

bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -n "$bin" ] && [ -x "$bin/initdb" ] || die "PostgreSQL server binaries not found: run scripts/postgres.sh"

cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start DIR PORT | stop DIR | destroy DIR"

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
    port="${3:-}"; [ -n "$port" ] || die "start needs a port"
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir"
        chmod 700 "$dir"
        as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null \
            || die "initdb $dir failed"
    fi
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=60" >/dev/null \
        || { cat "$dir/server.log" >&2; die "cannot start PostgreSQL in $dir"; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    as_owner "$bin/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null || die "cannot stop PostgreSQL in $dir"
    ;;
destroy)
    if [ -f "$dir/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    die "unknown command $cmd"
    ;;
esac
