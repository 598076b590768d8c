//! What a plugin author reads compiles: the bindings block of the hello
//! plugin's README is the one its `src/lib.rs` compiles with (the example is
//! built by `scripts/build-plugins.sh` before the tests run).

use jobstack_e2e::repo_root;

/// The first ```rust block after `marker` in `text`.
fn rust_block_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let after = &text[text.find(marker).unwrap_or_else(|| panic!("no {marker:?}"))..];
    let start = after.find("```rust\n").expect("a rust block after the marker") + "```rust\n".len();
    let end = after[start..].find("```").expect("the block's end");
    &after[start..start + end]
}

#[test]
fn the_readmes_bindings_are_the_compiled_ones() {
    let example = repo_root().join("examples/hello-plugin");
    let readme = std::fs::read_to_string(example.join("README.md")).unwrap();
    let source = std::fs::read_to_string(example.join("src/lib.rs")).unwrap();
    let block = rust_block_after(&readme, "<!-- bindings:");
    assert!(block.contains("wit_bindgen::generate!"), "{block}");
    assert!(source.contains(block), "the README's bindings are not in src/lib.rs:\n{block}");
    // The version the README names is the one the example builds with.
    let manifest = std::fs::read_to_string(example.join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("wit-bindgen = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("wit-bindgen in Cargo.toml");
    assert!(readme.contains(&format!("`wit-bindgen` {version}")), "README names another version");
    assert!(
        repo_root().join(example.join("target/wasm32-wasip2/release/hello_plugin.wasm")).exists(),
        "the hello example was not built: run scripts/build-plugins.sh"
    );
}
