//! The esx and deploy plugins the way users run them: a `jobstack serve`
//! (without its local agent) and a real `jobstack agent` on loopback. The
//! daemon splits, the agent leases the part and runs it with the grants the
//! task and its operator give (HTTP to the part's host, self-signed TLS,
//! a directory, a granted artifact fetched from the daemon's store).

use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::{ADMIN_TOKEN, Body, Daemon};
use jobstack_e2e::vcsim::{HOST_FIELDS, PASSWORD, USER, VM_FIELDS, Vcsim, project};
use jobstack_e2e::{plugin_wasm, wait_until};

/// Bound on a run of one part on loopback (the first one compiles the plugin).
const PATIENCE: Duration = Duration::from_secs(120);

/// Create a manual task, force-run it and wait for the run to end; returns
/// the run's state and its applied results.
fn run_task(daemon: &Daemon, task: Value) -> (String, Vec<Value>) {
    let name = task["task"]["name"].as_str().unwrap().to_string();
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post(&format!("/tasks/{name}/run"), &json!({})).expect_ok("force-run");
    let id = run["id"].as_i64().unwrap();
    let state = wait_until("the run to end", PATIENCE, || {
        let state = daemon.get(&format!("/runs/{id}")).expect_ok("show run")["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        matches!(state.as_str(), "finished" | "failed" | "canceled").then_some(state)
    });
    let results = daemon.get(&format!("/runs/{id}/results")).expect_ok("results")["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["applied"] == true)
        .cloned()
        .collect();
    (state, results)
}

fn daemon_with(plugin: &str) -> Daemon {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&plugin_wasm(plugin));
    daemon
}

#[test]
fn an_esx_inventory_runs_on_an_agent_and_lists_the_simulators_inventory() {
    let sim = Vcsim::start(&["-hosts", "2", "-cluster-hosts", "2", "-vms", "2"]);
    let daemon = daemon_with("esx");
    let state = tempfile::tempdir().unwrap();
    let _agent = AgentProcess::start(&daemon.url, "agent-esx", state.path(), &[]);

    let task = |name: &str, password: &str, self_signed: bool| {
        json!({
            "task": {
                "name": name,
                "plugin": "esx",
                "params": {"hosts": [sim.url], "user": USER},
                "frequency": {"kind": "manual"},
                "targeting": {"agents": ["agent-esx"]},
                "retries": 0,
                "grants": {"tls_accept_self_signed": self_signed}
            },
            "secrets": {"password": password}
        })
    };

    let (state_ok, results) = run_task(&daemon, task("esx-lab", PASSWORD, true));
    assert_eq!(state_ok, "finished", "{results:?}");
    assert_eq!(results.len(), 1);
    let emitted = results[0]["emitted"].as_array().unwrap();
    assert_eq!(
        project(emitted, Some("host"), &HOST_FIELDS),
        project(&sim.hosts, None, &HOST_FIELDS)
    );
    assert_eq!(project(emitted, Some("vm"), &VM_FIELDS), project(&sim.vms, None, &VM_FIELDS));
    // The password went to the agent only: never into the task as listed.
    let listed = daemon.get("/tasks/esx-lab").expect_ok("show task").to_string();
    assert!(!listed.contains(PASSWORD), "{listed}");

    // The task did not accept self-signed certificates: the part fails, saying why.
    let (state, results) = run_task(&daemon, task("esx-strict", PASSWORD, false));
    assert_eq!(state, "failed");
    let error = results[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("TLS certificate was rejected"), "{error}");

    // A wrong password: the server's fault.
    let (state, results) = run_task(&daemon, task("esx-wrong", "nope", true));
    assert_eq!(state, "failed");
    let error = results[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("InvalidLogin"), "{error}");
}

#[test]
fn a_deploy_fetches_a_granted_artifact_and_unpacks_it_on_the_agents_machine() {
    let daemon = daemon_with("deploy");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("app/bin")).unwrap();
    std::fs::write(src.join("app/bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(src.join("app/VERSION"), "3.0.1\n").unwrap();
    let archive = work.path().join("app.tar.gz");
    let status = Command::new("tar")
        .current_dir(&src)
        .args(["-czf", archive.to_str().unwrap(), "app"])
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&archive).unwrap();
    let sha = daemon
        .request("POST", "/artifacts", Some(ADMIN_TOKEN), Body::Bytes(&bytes))
        .expect_ok("upload artifact")["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    let target = work.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let dir_flag = format!("target={}:rw", target.display());
    let state = tempfile::tempdir().unwrap();
    let _agent =
        AgentProcess::start(&daemon.url, "agent-deploy", state.path(), &["--dir", &dir_flag]);

    let task = json!({
        "task": {
            "name": "deploy-app",
            "plugin": "deploy",
            "params": {
                "source": {"artifact": sha},
                "dir": "/target",
                "actions": [
                    {"action": "unpack", "path": "opt"},
                    {"action": "write", "path": "etc/app.conf", "content": "port = 8080\n"}
                ]
            },
            "frequency": {"kind": "manual"},
            "targeting": {"agents": ["agent-deploy"], "each_agent": true},
            "retries": 0,
            "grants": {"dirs": ["target"], "artifacts": [sha]}
        }
    });
    let (state, results) = run_task(&daemon, task);
    assert_eq!(state, "finished", "{results:?}");
    assert_eq!(results[0]["output"]["sha256"], sha);
    assert_eq!(
        std::fs::read(target.join("opt/app/bin/run.sh")).unwrap(),
        std::fs::read(src.join("app/bin/run.sh")).unwrap()
    );
    assert_eq!(std::fs::read_to_string(target.join("opt/app/VERSION")).unwrap(), "3.0.1\n");
    assert_eq!(std::fs::read_to_string(target.join("etc/app.conf")).unwrap(), "port = 8080\n");
    // What was applied where: packages installed on the agent's host.
    let packages = wait_until("the deployment in the inventory", PATIENCE, || {
        let page = daemon.get("/assets?kind=package").expect_ok("assets");
        let found = page["assets"].as_array().unwrap().clone();
        (!found.is_empty()).then_some(found)
    });
    assert!(packages.iter().all(|p| p["attributes"]["sha256"] == sha), "{packages:#?}");
    let detail = daemon.get(&format!("/assets/{}", packages[0]["id"])).expect_ok("package");
    let host = &detail["relations"][0];
    assert_eq!(
        (host["relation"].as_str(), host["other"].as_str()),
        (Some("installed_on"), Some("host"))
    );
    let agent_host = daemon.get(&format!("/assets/{}", host["to_id"])).expect_ok("host");
    assert_eq!(agent_host["keys"]["agent"], json!(["agent-deploy"]));
}
