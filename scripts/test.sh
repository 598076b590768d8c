#!/usr/bin/env bash
# The whole test suite: install what is missing, build the plugins and the
# binary, check formatting, run every test of the workspace (unit, engine,
# end-to-end). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-plugins.sh

cargo fmt --all -- --check
# Unit tests of the bundled plugins run on the host target (their logic does not
# need the Wasm runtime; their end-to-end tests below run them in it).
(cd plugins && env -u CARGO_TARGET_DIR cargo test --locked -p netscan -p snmp -p mailconfig --target x86_64-unknown-linux-gnu)
# The end-to-end tests start the real binary; build it before they run.
cargo build --locked --workspace --bins
cargo test --locked --workspace -- --test-threads 2
