#!/usr/bin/env bash
# Run jobstack on this machine: install what is missing, build the plugins and
# the binary, then start the daemon on http://127.0.0.1:8080 with the embedded
# SQLite store in ./jobstack-data, its own in-process agent, and the bundled
# plugins (netscan, snmp, esx, deploy, mailconfig, and the hello example)
# deployed. The admin token and the agents' enrollment secret are printed once,
# at the first start. Extra arguments go to `jobstack serve` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."

# Running needs only the wasm target; the test peers are for scripts/test.sh.
scripts/install-deps.sh --build-only
scripts/build-plugins.sh
cargo build --locked -p jobstack

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
jobstack="$target_dir/debug/jobstack"

# The bundle: every plugin of plugins/ (the daemon skips the fixture_* ones)
# and the hello example, gathered in one directory.
bundle="$target_dir/bundled-plugins"
rm -rf "$bundle"
mkdir -p "$bundle"
cp plugins/target/wasm32-wasip2/release/*.wasm "$bundle"/
cp examples/hello-plugin/target/wasm32-wasip2/release/hello_plugin.wasm "$bundle"/

echo "jobstack: admin CLI: $jobstack --help   (token: printed below at the first start)" >&2
exec "$jobstack" serve --bundled-plugins "$bundle" "$@"
