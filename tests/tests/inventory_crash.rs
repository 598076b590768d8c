//! The data processor survives a crash: a daemon SIGKILLed while a large
//! run's results are being processed resumes after its restart, and every
//! result is processed exactly once: the inventory ends with the same assets
//! and the same changes (each host appeared once, nothing else) as without
//! the crash. And a stage that fails marks its result failed, with the reason
//! the CLI shows, and is retried on request.

use serde_json::{Value, json};
use std::time::Duration;

use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::{plugin_wasm, wait_until};

/// Parts of the run, and observed hosts per part.
const PARTS: u64 = 200;
const RECORDS: u64 = 500;
const HOSTS: usize = (PARTS * RECORDS) as usize;

fn changes(daemon: &Daemon) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = daemon.get(&format!("/changes?after={after}&limit=1000")).expect_ok("changes");
        all.extend(page["changes"].as_array().unwrap().iter().cloned());
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return all,
        }
    }
}

#[test]
fn a_daemon_killed_while_processing_processes_every_result_once_after_its_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::builder().data_dir(data.path()).start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let task = json!({"task": {
        "name": "many", "plugin": "fixture-steps",
        "params": {"parts": PARTS, "ms": 0, "observe": true, "records": RECORDS, "tag": "crash"},
        "frequency": {"kind": "manual"}, "timeout_ms": 30000,
    }});
    daemon.post("/tasks", &task).expect_ok("create task");
    let run =
        daemon.post("/tasks/many/run", &json!({})).expect_ok("force-run")["id"].as_i64().unwrap();
    // Killed once processing is under way and far from done.
    wait_until("processing to start", Duration::from_secs(120), || {
        let seen = daemon.get("/changes?limit=1000").expect_ok("changes")["changes"]
            .as_array()
            .unwrap()
            .len();
        (seen > 0).then_some(())
    });
    daemon.kill();
    let merged_before =
        changes(&Daemon::builder().data_dir(data.path()).arg("--no-local-agent").start()).len();
    assert!(merged_before < HOSTS, "the crash came after every result was processed");

    let daemon = Daemon::builder().data_dir(data.path()).start();
    wait_until(
        "the run to finish and every result to be processed",
        Duration::from_secs(300),
        || {
            let state = daemon.get(&format!("/runs/{run}")).expect_ok("run")["state"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(state != "failed" && state != "canceled", "the run ended {state}");
            (state == "finished" && changes(&daemon).len() >= HOSTS).then_some(())
        },
    );
    // The processor rests when its queue is empty: let it show anything more.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.get(&format!("/runs/{run}/processing")).expect_ok("processing"), json!([]));
    let changes = changes(&daemon);
    assert_eq!(changes.len(), HOSTS, "one change per host, as without the crash");
    assert!(changes.iter().all(|c| c["kind"] == "appeared"), "only appearances");
    let mut hosts = std::collections::BTreeSet::new();
    let mut after = 0;
    loop {
        let page =
            daemon.get(&format!("/assets?kind=host&limit=1000&after={after}")).expect_ok("assets");
        for asset in page["assets"].as_array().unwrap() {
            hosts.insert(asset["keys"]["step"][0].as_str().unwrap().to_string());
        }
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(hosts.len(), HOSTS, "every host once");
}

#[test]
fn a_failing_stage_is_shown_with_its_reason_and_retried_on_request() {
    let daemon = Daemon::start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let task = json!({"task": {
        "name": "bad-stage", "plugin": "fixture-steps",
        "params": {"parts": 2, "ms": 0, "observe": true, "fail_stage": true},
        "frequency": {"kind": "manual"},
    }});
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post("/tasks/bad-stage/run", &json!({})).expect_ok("force-run")["id"]
        .as_i64()
        .unwrap();
    let failed = wait_until("both results to fail processing", Duration::from_secs(60), || {
        let failed = daemon.get(&format!("/runs/{run}/processing")).expect_ok("processing");
        (failed.as_array().unwrap().len() == 2).then_some(failed)
    });
    assert!(failed[0]["reason"].as_str().unwrap().contains("asked to fail"), "{failed}");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(jobstack_e2e::jobstack_bin())
            .args(args)
            .args(["--server", &daemon.url, "--token", jobstack_e2e::daemon::ADMIN_TOKEN])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let shown = cli(&["inventory", "failures", &run.to_string()]);
    assert!(shown.contains("asked to fail"), "{shown}");
    // Retried: the stage runs again (and fails again, the same way).
    let retried = cli(&["inventory", "reprocess", &run.to_string()]);
    assert!(retried.contains("2 results"), "{retried}");
    wait_until("the retried results to fail again", Duration::from_secs(60), || {
        let failed = daemon.get(&format!("/runs/{run}/processing")).expect_ok("processing");
        (failed.as_array().unwrap().len() == 2).then_some(())
    });
    assert!(changes(&daemon).is_empty(), "a failed stage merges nothing");
}
