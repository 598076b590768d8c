//! End to end with real processes on loopback: one `jobstack serve`, several
//! `jobstack agent`s, the `fixture-steps` plugin (many parts of a set duration).
//!
//! - the FusionInventory scenario: B is cut off (its connection through a
//!   proxy the test controls) and frozen with SIGSTOP while it holds a part;
//!   its lease expires, A gets B's part, B comes back and its late result is
//!   accepted, C and B then get the next parts; every part is applied once;
//! - an agent killed with results in its spool delivers them after a restart;
//! - a daemon killed with SIGKILL and restarted loses no acknowledged result
//!   and the run completes;
//! - a new plugin version uploaded during a run: that run keeps its sha256,
//!   the next one uses the new module.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::proxy::Proxy;
use jobstack_e2e::{plugin_wasm, wait_until};

/// Generous bound for anything the test waits on (lease expiry takes ~40 s).
const PATIENCE: Duration = Duration::from_secs(180);

/// Create a manual task of `fixture-steps` and force-run it; returns the run.
fn start_run(
    daemon: &Daemon, name: &str, parts: u64, ms: u64, timeout_ms: u64, agents: &[&str],
) -> Value {
    let task = json!({
        "task": {
            "name": name,
            "plugin": "fixture-steps",
            "params": {"parts": parts, "ms": ms},
            "frequency": {"kind": "manual"},
            "timeout_ms": timeout_ms,
            "retries": 3,
            "targeting": {"agents": agents},
        }
    });
    daemon.post("/tasks", &task).expect_ok("create task");
    daemon.post(&format!("/tasks/{name}/run"), &json!({})).expect_ok("force-run")
}

fn parts(daemon: &Daemon, run_id: i64) -> Vec<Value> {
    daemon
        .get(&format!("/runs/{run_id}/parts"))
        .expect_ok("list parts")
        .as_array()
        .expect("parts array")
        .clone()
}

fn run_state(daemon: &Daemon, run_id: i64) -> String {
    daemon.get(&format!("/runs/{run_id}")).expect_ok("show run")["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn results(daemon: &Daemon, run_id: i64) -> Vec<Value> {
    daemon.get(&format!("/runs/{run_id}/results")).expect_ok("results")["results"]
        .as_array()
        .expect("results array")
        .clone()
}

/// Wait for the run to finish; then every part must have exactly one applied
/// success, with the part's own index (other applied results can only be
/// failures that were retried). Returns the applied successes by part.
fn assert_finished_exactly_once(
    daemon: &Daemon, run_id: i64, parts_expected: usize,
) -> BTreeMap<i64, Value> {
    wait_until("the run to finish", PATIENCE, || {
        let state = run_state(daemon, run_id);
        assert!(
            state != "failed" && state != "canceled",
            "run ended {state}: {:#?}",
            parts(daemon, run_id)
        );
        (state == "finished").then_some(())
    });
    let mut applied: BTreeMap<i64, Value> = BTreeMap::new();
    for r in results(daemon, run_id) {
        if r["applied"] == json!(true) && r["status"] == "finished" {
            let part = r["part_id"].as_i64().expect("part id");
            if let Some(first) = applied.insert(part, r.clone()) {
                panic!("part {part} applied twice:\n{first:#}\n{r:#}");
            }
        }
    }
    let parts = parts(daemon, run_id);
    assert_eq!(parts.len(), parts_expected);
    assert_eq!(applied.len(), parts_expected, "one applied result per part");
    for part in &parts {
        let id = part["id"].as_i64().expect("part id");
        let result = &applied[&id];
        assert_eq!(result["status"], "finished", "{result}");
        let index: Value = serde_json::from_str(part["payload"].as_str().unwrap()).unwrap();
        assert_eq!(
            result["output"]["index"], index["index"],
            "part {id} got another part's output"
        );
        assert_eq!(part["state"], "finished");
    }
    applied
}

fn part_by_id(daemon: &Daemon, run_id: i64, id: i64) -> Value {
    parts(daemon, run_id).into_iter().find(|p| p["id"].as_i64() == Some(id)).expect("part exists")
}

#[test]
fn fusioninventory_scenario_with_real_agents() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let state = tempfile::tempdir().unwrap();
    let fast = ["--max-retry-delay", "500ms"];
    let mut a = AgentProcess::start(&daemon.url, "A", &state.path().join("a"), &fast);
    let proxy = Proxy::start(daemon.addr());
    let b = AgentProcess::start(&proxy.url, "B", &state.path().join("b"), &fast);
    // 1.5 s parts (A holds B's part long enough to be frozen with it) with a
    // 10 s timeout (room for a loaded machine): a lease lives 40 s without
    // heartbeats; A does about 30 parts meanwhile.
    let run = start_run(&daemon, "scan", 60, 1500, 10_000, &["A", "B", "C"]);
    let run_id = run["id"].as_i64().unwrap();

    // B asks and gets a part; it is cut off from the server while it works.
    let b_part = wait_until("B to hold a part and have the plugin", PATIENCE, || {
        parts(&daemon, run_id)
            .into_iter()
            .find(|p| p["owner"] == "B" && p["state"] == "running" && b.has_a_module())
    });
    proxy.cut();
    let b_part_id = b_part["id"].as_i64().unwrap();
    assert_eq!(b_part["attempt"], 1);
    // B finishes the job but cannot update the server: it saves the result.
    wait_until("B to spool its result", PATIENCE, || {
        b.spooled().contains(&(b_part_id, 1)).then_some(())
    });
    b.freeze();

    // The server times out B's job and regenerates it; A gets it (attempt 2).
    let regenerated = wait_until("A to get B's part", PATIENCE, || {
        let p = part_by_id(&daemon, run_id, b_part_id);
        (p["owner"] == "A" && p["attempt"] == 2 && p["state"] == "running").then_some(p)
    });
    assert!(regenerated["error"].as_str().unwrap_or("").contains("expired"), "{regenerated}");
    // Hold A while B comes back, so B's result arrives while A works on it.
    a.freeze();
    let leased_before: i64 = parts(&daemon, run_id)
        .iter()
        .filter(|p| p["attempt"].as_u64() > Some(0))
        .map(|p| p["seq"].as_i64().unwrap())
        .max()
        .unwrap();

    // B reconnects and updates the server with its job's status: accepted.
    b.thaw();
    proxy.restore();
    wait_until("B's late result to be accepted", PATIENCE, || {
        let p = part_by_id(&daemon, run_id, b_part_id);
        (p["state"] == "finished").then_some(())
    });
    assert_eq!(part_by_id(&daemon, run_id, b_part_id)["owner"], "B");
    a.thaw();

    // C joins; C and B get the next parts.
    let _c = AgentProcess::start(&daemon.url, "C", &state.path().join("c"), &fast);
    let applied = assert_finished_exactly_once(&daemon, run_id, 60);

    let late = &applied[&b_part_id];
    let history: Vec<Value> = results(&daemon, run_id)
        .into_iter()
        .filter(|r| r["part_id"].as_i64() == Some(b_part_id))
        .collect();
    assert_eq!(
        (late["agent"].as_str(), late["attempt"].as_u64()),
        (Some("B"), Some(1)),
        "B's late result is not the one applied; results of part {b_part_id}: {history:#?}"
    );
    // A's own result for the superseded attempt 2, if it sent one, changed nothing.
    for r in results(&daemon, run_id) {
        if r["part_id"].as_i64() == Some(b_part_id) && r["attempt"] == 2 {
            assert_eq!((r["agent"].as_str(), r["applied"].as_bool()), (Some("A"), Some(false)));
        }
    }
    let later_owners: Vec<String> = parts(&daemon, run_id)
        .iter()
        .filter(|p| p["seq"].as_i64().unwrap() > leased_before)
        .map(|p| p["owner"].as_str().unwrap_or_default().to_string())
        .collect();
    for agent in ["B", "C"] {
        assert!(
            later_owners.iter().any(|o| o == agent),
            "{agent} got no later part: {later_owners:?}"
        );
    }
    a.kill();
}

#[test]
fn an_agent_killed_with_spooled_results_delivers_them_after_restart() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("a");
    let proxy = Proxy::start(daemon.addr());
    let mut a = AgentProcess::start(&proxy.url, "A", &dir, &["--max-retry-delay", "500ms"]);
    let run = start_run(&daemon, "spool", 3, 600, 60_000, &["A"]);
    let run_id = run["id"].as_i64().unwrap();
    let held = wait_until("A to hold a part and have the plugin", PATIENCE, || {
        parts(&daemon, run_id)
            .into_iter()
            .find(|p| p["owner"] == "A" && p["state"] == "running" && a.has_a_module())
    });
    proxy.cut();
    let held_id = held["id"].as_i64().unwrap();
    wait_until("A to spool its result", PATIENCE, || {
        a.spooled().contains(&(held_id, 1)).then_some(())
    });
    a.kill();
    assert_eq!(part_by_id(&daemon, run_id, held_id)["state"], "running", "nothing delivered yet");

    // Restarted on the same state directory, straight to the daemon.
    let _a = AgentProcess::start(&daemon.url, "A", &dir, &["--max-retry-delay", "500ms"]);
    let applied = assert_finished_exactly_once(&daemon, run_id, 3);
    assert_eq!(applied[&held_id]["attempt"], 1, "the spooled attempt was delivered");
    wait_until("the spool to empty", PATIENCE, || _a.spooled().is_empty().then_some(()));
}

#[test]
fn a_daemon_killed_and_restarted_loses_no_acknowledged_result() {
    let data = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::builder().data_dir(data.path()).arg("--no-local-agent").start();
    let addr = daemon.addr().to_string();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let state = tempfile::tempdir().unwrap();
    let fast = ["--max-retry-delay", "500ms"];
    let _a = AgentProcess::start(&daemon.url, "A", &state.path().join("a"), &fast);
    let _b = AgentProcess::start(&daemon.url, "B", &state.path().join("b"), &fast);
    let run = start_run(&daemon, "restart", 30, 300, 60_000, &["A", "B"]);
    let run_id = run["id"].as_i64().unwrap();
    let acknowledged = wait_until("some results", PATIENCE, || {
        let r = results(&daemon, run_id);
        (r.len() >= 8).then_some(r)
    });
    daemon.kill();

    let daemon =
        Daemon::builder().data_dir(data.path()).listen(&addr).arg("--no-local-agent").start();
    let after = results(&daemon, run_id);
    for r in &acknowledged {
        assert!(
            after.iter().any(|x| x["part_id"] == r["part_id"]
                && x["attempt"] == r["attempt"]
                && x["applied"] == r["applied"]),
            "acknowledged result lost: {r}"
        );
    }
    assert_finished_exactly_once(&daemon, run_id, 30);
}

/// The same plugin under another version: the manifest's version string
/// (after the plugin's name in the data segment, once) replaced by one of the
/// same length, so the component stays valid and only its manifest changes.
fn as_version(wasm: &[u8], name: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "versions of the same length");
    let needle = [name.as_bytes(), from.as_bytes()].concat();
    let at: Vec<usize> = wasm
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{name}{from} once in the module");
    let mut out = wasm.to_vec();
    out[at[0] + name.len()..at[0] + needle.len()].copy_from_slice(to.as_bytes());
    out
}

#[test]
fn a_plugin_uploaded_during_a_run_is_used_by_the_next_run_only() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    let old = daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let state = tempfile::tempdir().unwrap();
    let a = AgentProcess::start(&daemon.url, "A", &state.path().join("a"), &[]);
    let run1 = start_run(&daemon, "deploy", 8, 400, 60_000, &["A"]);
    let run1_id = run1["id"].as_i64().unwrap();
    wait_until("the first run to start", PATIENCE, || {
        parts(&daemon, run1_id).iter().any(|p| p["state"] == "running").then_some(())
    });

    let bytes = std::fs::read(plugin_wasm("fixture-steps")).unwrap();
    let newer = as_version(&bytes, "fixture-steps", "0.1.0", "0.2.0");
    let uploaded = daemon.request(
        "POST",
        "/plugins",
        Some(jobstack_e2e::daemon::ADMIN_TOKEN),
        jobstack_e2e::daemon::Body::Bytes(&newer),
    );
    let new = uploaded.expect_ok("upload the new version");
    assert_ne!(old["sha256"], new["sha256"]);
    let run2 = daemon.post("/tasks/deploy/run", &json!({})).expect_ok("second run");

    assert_finished_exactly_once(&daemon, run1_id, 8);
    assert_finished_exactly_once(&daemon, run2["id"].as_i64().unwrap(), 8);
    let run1 = daemon.get(&format!("/runs/{run1_id}")).expect_ok("run 1");
    assert_eq!(run1["plugin_sha256"], old["sha256"], "the run in flight kept its module");
    assert_eq!(run2["plugin_sha256"], new["sha256"], "the next run uses the new module");
    // The agent fetched and ran both modules.
    let modules = a.state_dir.join("engine/modules");
    for sha in [&old["sha256"], &new["sha256"]] {
        let sha = sha.as_str().unwrap();
        let present = std::fs::read_dir(&modules)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(sha));
        assert!(present, "module {sha} not in the agent's cache {}", modules.display());
    }
}
