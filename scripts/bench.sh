#!/usr/bin/env bash
# The measurements behind the figures in docs/performance.md, in one run: the
# engine (trivial plugin per mode, naive embedding, native call, 10,000 parked
# executions) and the scheduler on SQLite and, when PostgreSQL answers, on
# PostgreSQL; then the whole system from outside (`bench e2e`: daemons as
# processes, agents over HTTP), one daemon on SQLite and two daemons on
# PostgreSQL. Built with the `measure` profile (the dev profile with
# jobstack's own crate optimised too). Prints JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --build-only
scripts/build-plugins.sh
cargo build --locked --profile measure -p jobstack

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
jobstack="$target_dir/measure/jobstack"

echo "{\"engine\": $("$jobstack" bench engine --json)}"
database="${JOBSTACK_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
postgres=yes
scripts/postgres.sh >/dev/null 2>&1 || postgres=no
[ "$postgres" = yes ] || echo "bench: PostgreSQL not reachable; skipped its figures" >&2

echo "{\"scheduler_sqlite\": $("$jobstack" bench scheduler --json)}"
if [ "$postgres" = yes ]; then
    echo "{\"scheduler_postgres\": $("$jobstack" bench scheduler --json --database "$database")}"
fi
echo "{\"e2e_sqlite\": $("$jobstack" bench e2e --json)}"
if [ "$postgres" = yes ]; then
    echo "{\"e2e_postgres\": $("$jobstack" bench e2e --json --daemons 2 --database "$database")}"
fi
