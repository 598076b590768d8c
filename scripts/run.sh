#!/usr/bin/env bash
# Run jobstack on this machine. Until the daemon lands, this builds everything
# and runs the hello example plugin through `jobstack exec`: split, then each
# part, printing the outcomes.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-plugins.sh
cargo build --locked -p jobstack

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
jobstack="$target_dir/debug/jobstack"
hello=examples/hello-plugin/target/wasm32-wasip2/release/hello_plugin.wasm
params='{"name":"world","count":3}'

"$jobstack" plugin inspect "$hello"
echo "--- split"
parts=$("$jobstack" exec "$hello" --params "$params")
echo "$parts"
echo "--- execute each part"
python3 -c 'import json,sys; [print(json.dumps(p)) for p in json.loads(sys.argv[1])["output"]]' "$parts" |
while read -r part; do
    "$jobstack" exec "$hello" --params "$params" --part "$part"
done
