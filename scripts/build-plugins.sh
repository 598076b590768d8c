#!/usr/bin/env bash
# Build every plugin (plugins/ workspace, bundled plugins and test fixtures) and
# the hello example into their own target directories:
#   plugins/target/wasm32-wasip2/release/*.wasm
#   examples/hello-plugin/target/wasm32-wasip2/release/hello_plugin.wasm
set -euo pipefail
cd "$(dirname "$0")/.."

# A CARGO_TARGET_DIR meant for the runtime must not redirect the plugins.
unset CARGO_TARGET_DIR
# Cargo reads .cargo/config.toml (which selects the wasm32-wasip2 target) from the
# current directory, not from --manifest-path: build from inside each workspace.
(cd plugins && cargo build --release --locked)
(cd examples/hello-plugin && cargo build --release --locked)
