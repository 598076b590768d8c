//! What several test crates share: the plugins built by
//! `scripts/build-plugins.sh`.

use std::path::PathBuf;

/// The bytes of the built plugin `name` (`fixture-steps` reads
/// `fixture_steps.wasm`); panics saying how to build it when it is missing.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; build the plugins with scripts/build-plugins.sh", path.display())
    })
}
