//! Bad input to the plugin-author commands: a clear message and a failing exit.

use jobstack_e2e::{jobstack_bin, plugin_wasm};
use std::process::Command;

fn run_err(args: &[&str]) -> (i32, String) {
    let out = Command::new(jobstack_bin()).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn inspect_prints_manifest_sha256_size_and_contract() {
    let wasm = plugin_wasm("fixture-emitter");
    let run = jobstack_e2e::jobstack(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert_eq!(run.code, Some(0));
    assert_eq!(run.json["manifest"]["name"], "fixture-emitter");
    assert_eq!(run.json["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(run.json["size"].as_u64().unwrap(), std::fs::metadata(&wasm).unwrap().len());
    assert_eq!(run.json["contract"], "0.2.0");
    // A plugin built against the first contract says so, and still loads.
    let legacy = plugin_wasm("fixture-trivial");
    let run = jobstack_e2e::jobstack(&["plugin", "inspect", legacy.to_str().unwrap()]);
    assert_eq!((run.code, run.json["contract"].as_str()), (Some(0), Some("0.1.0")));
}

#[test]
fn inspect_names_what_is_wrong_with_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("random.wasm", b"this is not wasm at all".to_vec(), "not a WebAssembly file"),
        ("core.wasm", b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module, not a component"),
        ("empty.wasm", Vec::new(), "the file is empty"),
        (
            "truncated.wasm",
            std::fs::read(plugin_wasm("fixture-emitter")).unwrap()[..2000].to_vec(),
            "invalid component",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, stderr) = run_err(&["plugin", "inspect", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[test]
fn exec_refuses_malformed_json_arguments() {
    let wasm = plugin_wasm("fixture-emitter");
    let (code, stderr) = run_err(&["exec", wasm.to_str().unwrap(), "--params", "{nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--params is not valid JSON"), "{stderr}");
    let (code, stderr) = run_err(&["exec", wasm.to_str().unwrap(), "--part", "[]"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--part is not a part object"), "{stderr}");
}
