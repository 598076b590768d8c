#!/usr/bin/env bash
# The whole test suite: install what is missing, build the plugins and the
# binary, check formatting, run every test of the workspace (unit, engine,
# end-to-end). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-plugins.sh
# The scheduler tests also run against PostgreSQL (fresh databases on it).
scripts/postgres.sh

cargo fmt --all -- --check
# Plugin unit tests: their logic is plain Rust, so they run natively (the wasm
# exports are only exercised by the end-to-end tests, through the engine).
host_target="$(rustc -vV | sed -n 's/^host: //p')"
(cd plugins && env -u CARGO_TARGET_DIR cargo test --locked --target "$host_target" --workspace)
# The end-to-end tests start the real binary; build it before they run.
cargo build --locked --workspace --bins
cargo test --locked --workspace -- --test-threads 2
