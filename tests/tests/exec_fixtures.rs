//! `jobstack exec` on every engine fixture, in both modes: each ends the way the
//! engine promises, and the process always exits normally with one JSON object.

use jobstack_e2e::{exec, part_json, plugin_wasm};
use std::net::TcpListener;
use std::time::Instant;

const MODES: [&str; 2] = ["pooled", "dedicated"];

fn any_part() -> String {
    part_json("only", &[], &serde_json::json!({}))
}

#[test]
fn spinner_times_out_near_its_deadline() {
    for mode in MODES {
        let started = Instant::now();
        let run = exec(
            &plugin_wasm("fixture-spin"),
            &["--part", &any_part(), "--timeout", "2s", "--mode", mode],
        );
        let took = started.elapsed().as_secs_f64();
        assert_eq!(run.status(), "timeout", "{mode}: {:?}", run.json);
        assert_eq!(run.code, Some(1), "{mode}");
        assert!(run.error().starts_with("timed out"), "{mode}: {}", run.error());
        assert!((1.0..4.0).contains(&took), "{mode}: took {took:.2}s for a 2s deadline");
    }
}

#[test]
fn sleeper_times_out_at_its_wall_clock_deadline() {
    for mode in MODES {
        let run = exec(
            &plugin_wasm("fixture-sleeper"),
            &["--part", &any_part(), "--timeout", "1500ms", "--mode", mode],
        );
        assert_eq!(run.status(), "timeout", "{mode}: {:?}", run.json);
        assert!(run.error().contains("wall-clock deadline of 1s 500ms"), "{mode}: {}", run.error());
        let ms = run.json["duration_ms"].as_f64().unwrap();
        assert!((1500.0..2500.0).contains(&ms), "{mode}: ended after {ms} ms");
    }
}

#[test]
fn memory_hog_fails_naming_the_memory_limit() {
    for mode in MODES {
        let run = exec(
            &plugin_wasm("fixture-hog"),
            &["--part", &any_part(), "--memory-mib", "64", "--mode", mode],
        );
        assert_eq!(run.status(), "failed", "{mode}: {:?}", run.json);
        assert_eq!(run.code, Some(1));
        assert!(run.error().contains("memory limit exceeded"), "{mode}: {}", run.error());
        assert!(run.error().contains("the limit is 64 MiB"), "{mode}: {}", run.error());
    }
}

#[test]
fn deep_recursion_fails_naming_the_stack() {
    for mode in MODES {
        let run = exec(&plugin_wasm("fixture-recursion"), &["--part", &any_part(), "--mode", mode]);
        assert_eq!(run.status(), "failed", "{mode}: {:?}", run.json);
        assert!(run.error().contains("wasm stack exhausted"), "{mode}: {}", run.error());
    }
}

#[test]
fn trap_fails_as_a_trap() {
    for mode in MODES {
        let run = exec(&plugin_wasm("fixture-trap"), &["--part", &any_part(), "--mode", mode]);
        assert_eq!(run.status(), "failed", "{mode}: {:?}", run.json);
        assert!(run.error().starts_with("plugin trapped"), "{mode}: {}", run.error());
    }
}

#[test]
fn filesystem_escape_is_denied_while_the_grant_works() {
    let granted = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "not for plugins").unwrap();
    let dir_arg = format!("{}::/data", granted.path().display());
    let params = serde_json::json!({
        "write": "/data/ok.txt",
        "read": [secret.to_str().unwrap(), "/data/../etc/passwd", "/etc/passwd", "/data/ok.txt"],
    })
    .to_string();
    for mode in MODES {
        let run = exec(
            &plugin_wasm("fixture-fs-escape"),
            &["--part", &any_part(), "--params", &params, "--dir", &dir_arg, "--mode", mode],
        );
        assert_eq!(run.status(), "finished", "{mode}: {:?}", run.json);
        let out = &run.json["output"];
        assert_eq!(out["write"], "ok", "{mode}: {out}");
        assert_eq!(out["read"]["/data/ok.txt"], "ok", "{mode}: {out}");
        for escape in [secret.to_str().unwrap(), "/data/../etc/passwd", "/etc/passwd"] {
            let got = out["read"][escape].as_str().unwrap();
            assert!(got.starts_with("denied"), "{mode}: {escape} -> {got}");
        }
        assert_eq!(
            std::fs::read_to_string(granted.path().join("ok.txt")).unwrap(),
            "written by fixture"
        );
    }
}

#[test]
fn network_escape_is_denied_while_the_granted_address_connects() {
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = TcpListener::bind("127.0.0.2:0").unwrap();
    let allowed_addr = allowed.local_addr().unwrap().to_string();
    let denied_addr = denied.local_addr().unwrap().to_string();
    let params = serde_json::json!({ "connect": [allowed_addr, denied_addr] }).to_string();
    // The part targets 127.0.0.1: sockets reach it alone, although the
    // allowed network holds both addresses (as on an agent).
    let part = part_json("only", &["127.0.0.1"], &serde_json::json!({}));
    for mode in MODES {
        let run = exec(
            &plugin_wasm("fixture-net-escape"),
            &["--part", &part, "--params", &params, "--allow-net", "127.0.0.0/8", "--mode", mode],
        );
        assert_eq!(run.status(), "finished", "{mode}: {:?}", run.json);
        assert_eq!(
            run.json["output"][&allowed_addr], "connected",
            "{mode}: {}",
            run.json["output"]
        );
        let got = run.json["output"][&denied_addr].as_str().unwrap();
        assert!(got.starts_with("denied"), "{mode}: {got}");
        // The log names the grant that was missing.
        assert!(
            run.stderr.contains("plugin socket denied")
                && run.stderr.contains("not among the part's targets")
                && run.stderr.contains("127.0.0.1/32"),
            "{mode}: {}",
            run.stderr
        );
    }
    // A part without targets reaches nothing, whatever --allow-net says.
    let run = exec(
        &plugin_wasm("fixture-net-escape"),
        &["--part", &any_part(), "--params", &params, "--allow-net", "127.0.0.0/8"],
    );
    assert!(
        run.json["output"][&allowed_addr].as_str().unwrap().starts_with("denied"),
        "{}",
        run.json
    );
}

#[test]
fn emitter_reports_progress_logs_stdio_and_records() {
    for mode in MODES {
        let run = exec(
            &plugin_wasm("fixture-emitter"),
            &["--part", &any_part(), "--params", r#"{"records":4}"#, "--mode", mode],
        );
        assert_eq!(run.status(), "finished", "{mode}: {:?}", run.json);
        assert_eq!(run.code, Some(0));
        assert_eq!(run.json["output"], serde_json::json!({"emitted": 4}));
        assert_eq!(run.json["progress"], serde_json::json!({"done": 4, "total": 4}));
        let emitted = run.json["emitted"].as_array().unwrap();
        let indexes: Vec<u64> = emitted.iter().map(|r| r["index"].as_u64().unwrap()).collect();
        assert_eq!(indexes, [0, 1, 2, 3]);
        let logs = run.json["logs"].as_array().unwrap();
        let has = |source: &str, text: &str| {
            logs.iter()
                .any(|l| l["source"] == source && l["message"].as_str().unwrap().contains(text))
        };
        assert!(has("plugin", "emitting 4 records"), "{logs:?}");
        assert!(has("stdout", "hello from stdout"), "{logs:?}");
        assert!(has("stderr", "hello from stderr"), "{logs:?}");
    }
}

#[test]
fn split_without_part_prints_the_parts() {
    let run = exec(&plugin_wasm("fixture-emitter"), &["--params", r#"{"records":3}"#]);
    assert_eq!(run.status(), "finished", "{:?}", run.json);
    let labels: Vec<&str> = run.json["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["record 0", "record 1", "record 2"]);
}

#[test]
fn a_spinning_split_is_stopped_by_the_split_budget() {
    let run = exec(&plugin_wasm("fixture-spin"), &[]);
    assert_eq!(run.status(), "timeout", "{:?}", run.json);
}

#[test]
fn params_outside_the_plugins_schema_are_refused_as_task_create_refuses_them() {
    let wasm = plugin_wasm("netscan");
    let part = any_part();
    for args in [
        vec!["--params", r#"{"targets": [], "ports": "22"}"#],
        vec![
            "--params",
            r#"{"targets": ["127.0.0.1"], "ports": "22", "colour": 1}"#,
            "--part",
            &part,
        ],
    ] {
        let output = std::process::Command::new(jobstack_e2e::jobstack_bin())
            .arg("exec")
            .arg(&wasm)
            .args(&args)
            .output()
            .expect("run jobstack exec");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("do not match the schema of plugin netscan"), "{stderr}");
        assert!(
            output.stdout.is_empty(),
            "nothing ran: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}
