#!/usr/bin/env bash
# Build every plugin (plugins/ workspace, bundled plugins and test fixtures) and
# the hello example into their own target directories:
#   plugins/target/wasm32-wasip2/release/*.wasm
#   examples/hello-plugin/target/wasm32-wasip2/release/hello_plugin.wasm
set -euo pipefail
cd "$(dirname "$0")/.."

# A CARGO_TARGET_DIR meant for the runtime must not redirect the plugins.
unset CARGO_TARGET_DIR
cargo build --release --locked --manifest-path plugins/Cargo.toml
cargo build --release --locked --manifest-path examples/hello-plugin/Cargo.toml
