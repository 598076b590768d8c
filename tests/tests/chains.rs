//! Discovery feeding inventory, end to end through the real binary: a
//! netscan task over a loopback /28 triggers an snmp task whose selector
//! picks, from the inventory, the address where Debian's snmpd answers.
//! Then the rules around it: a selector that selects nothing, a canceled
//! upstream run, and the bad definitions refused with a 4xx that change
//! nothing.

use serde_json::{Value, json};
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::snmpd::Snmpd;
use jobstack_e2e::{plugin_wasm, wait_until};

const PATIENCE: Duration = Duration::from_secs(120);

/// A /28 of loopback of this test's own (the other tests use others).
fn block(salt: u32) -> (Ipv4Addr, impl Fn(u8) -> Ipv4Addr) {
    let pid = std::process::id() + salt;
    let (b, c) = (10 + (pid % 90) as u8, ((pid / 90) % 250) as u8);
    (Ipv4Addr::new(127, b, c, 32), move |d: u8| Ipv4Addr::new(127, b, c, 32 + d))
}

/// A daemon with the netscan and snmp plugins.
fn daemon() -> Daemon {
    let daemon = Daemon::start();
    for plugin in ["netscan", "snmp"] {
        daemon.upload_plugin(&plugin_wasm(plugin));
    }
    daemon
}

fn create(daemon: &Daemon, task: Value, secrets: Value) -> Value {
    daemon.post("/tasks", &json!({"task": task, "secrets": secrets})).expect_ok("create task")
}

fn run_state(daemon: &Daemon, id: i64) -> Value {
    daemon.get(&format!("/runs/{id}")).expect_ok("show run")
}

/// Wait until run `id` ended; the run.
fn ended(daemon: &Daemon, id: i64) -> Value {
    wait_until(&format!("run {id} to end"), PATIENCE, || {
        let run = run_state(daemon, id);
        matches!(run["state"].as_str(), Some("finished" | "failed" | "canceled")).then_some(run)
    })
}

/// The runs of task `name`, newest first.
fn runs_of(daemon: &Daemon, name: &str) -> Vec<Value> {
    let task = daemon.get(&format!("/tasks/{name}")).expect_ok("show task");
    let runs = daemon.get(&format!("/runs?task={}", task["id"])).expect_ok("runs");
    runs.as_array().unwrap().clone()
}

#[test]
fn discovery_triggers_an_snmp_inventory_of_the_device_it_found() {
    let (net, at) = block(0);
    let (device, other) = (at(1), at(2));
    let snmpd = Snmpd::start_with_tcp(&device.to_string(), "rack 12");
    let on_other = TcpListener::bind((other, 0)).unwrap();
    let other_port = on_other.local_addr().unwrap().port();

    let daemon = daemon();
    create(
        &daemon,
        json!({"name": "scan", "plugin": "netscan", "frequency": {"kind": "manual"},
               "params": {"targets": [format!("{net}/28")],
                          "ports": format!("{},{other_port}", snmpd.port), "timeout_ms": 500}}),
        json!({}),
    );
    let selector = json!({"into": "devices", "kind": "host", "cidr": format!("{net}/28"),
                          "attr": [format!("tcp_open[]={}", snmpd.port)], "seen_within": "1h"});
    let snmp = create(
        &daemon,
        json!({"name": "snmp-found", "plugin": "snmp", "frequency": {"kind": "manual"},
               "params": {"devices": [], "port": snmpd.port}, "select": selector,
               "after": {"task": "scan", "on": "finished"}}),
        json!({"community": snmpd.community}),
    );
    assert_eq!(snmp["spec"]["select"]["into"], "devices", "the task shows its selector: {snmp}");
    assert_eq!(snmp["spec"]["after"]["task"], "scan");

    let scan = daemon.post("/tasks/scan/run", &json!({})).expect_ok("run scan");
    let scan_id = scan["id"].as_i64().unwrap();
    assert_eq!(ended(&daemon, scan_id)["state"], "finished");

    // The chained run starts once the scan's results are in the inventory.
    let chained = wait_until("the chained snmp run", PATIENCE, || {
        runs_of(&daemon, "snmp-found").into_iter().next()
    });
    assert_eq!(chained["cause"], "chained", "{chained}");
    assert_eq!(chained["caused_by"], scan_id, "{chained}");
    assert_eq!(chained["selected"], json!([device.to_string()]), "exactly the device: {chained}");
    assert_eq!(chained["spec"]["params"]["devices"], json!([device.to_string()]));
    let chained_id = chained["id"].as_i64().unwrap();
    assert_eq!(ended(&daemon, chained_id)["state"], "finished");

    // One asset for the device, discovered by netscan and refined by snmp.
    let merged = wait_until("the device refined by snmp", PATIENCE, || {
        let page = daemon.get(&format!("/assets?cidr={device}")).expect_ok("assets");
        let asset = page["assets"].as_array().unwrap().first().cloned()?;
        // The snmp records may be processed in more than one batch: wait
        // for the last (the kind comes with the device's own records).
        let refined =
            asset["attributes"]["sysLocation"] == "rack 12" && asset["kind"] == "network_device";
        refined.then_some(asset)
    });
    assert_eq!(merged["kind"], "network_device", "{merged}");
    assert_eq!(merged["attributes"]["tcp_open"], json!([snmpd.port]), "{merged}");
    let all = daemon.get(&format!("/assets?cidr={net}/28&kind=network_device")).expect_ok("assets");
    assert_eq!(all["assets"].as_array().unwrap().len(), 1, "{all}");

    // The chain is visible from both ends.
    let chain = daemon.get("/tasks/scan/chain").expect_ok("chain");
    assert_eq!(chain["downstream"][0]["spec"]["name"], "snmp-found", "{chain}");
    assert_eq!(chain["downstream"][0]["latest_run"]["id"], chained_id, "{chain}");
    let chain = daemon.get("/tasks/snmp-found/chain").expect_ok("chain");
    assert_eq!(chain["upstream"]["latest_run"]["id"], scan_id, "{chain}");

    // The scan ran once: one chained run, however many sweeps pass.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs_of(&daemon, "snmp-found").len(), 1);
    drop(on_other);
}

#[test]
fn a_selection_of_nothing_finishes_at_once_and_a_canceled_upstream_starts_nothing() {
    let (net, _) = block(7);
    let daemon = daemon();
    create(
        &daemon,
        json!({"name": "wide-scan", "plugin": "netscan", "frequency": {"kind": "manual"},
               "timeout_ms": 600000,
               "params": {"targets": [format!("{net}/28")], "ports": "1-65535", "timeout_ms": 2000}}),
        json!({}),
    );
    create(
        &daemon,
        json!({"name": "nothing-there", "plugin": "snmp", "frequency": {"kind": "manual"},
               "params": {"devices": []},
               "select": {"into": "devices", "kind": "printer", "cidr": format!("{net}/28")},
               "after": {"task": "wide-scan", "on": "any"}}),
        json!({"community": "public"}),
    );
    // Forced, the selector finds no printer: the run ends at once, saying so.
    let run = daemon.post("/tasks/nothing-there/run", &json!({})).expect_ok("force-run");
    assert_eq!(run["state"], "finished", "{run}");
    assert_eq!(run["selected"], json!([]), "{run}");

    let before = runs_of(&daemon, "nothing-there").len();
    let scan = daemon.post("/tasks/wide-scan/run", &json!({})).expect_ok("run");
    let scan_id = scan["id"].as_i64().unwrap();
    daemon.post(&format!("/runs/{scan_id}/cancel"), &json!({})).expect_ok("cancel");
    assert_eq!(ended(&daemon, scan_id)["state"], "canceled");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs_of(&daemon, "nothing-there").len(), before, "a canceled run starts nothing");
}

#[test]
fn bad_selectors_and_triggers_are_refused_and_change_nothing() {
    let daemon = daemon();
    let task = |name: &str, extra: Value| {
        let mut t = json!({"name": name, "plugin": "netscan", "frequency": {"kind": "manual"},
                           "params": {"targets": ["127.0.0.1"], "ports": "1"}});
        t.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"task": t})
    };
    daemon.post("/tasks", &task("a", json!({}))).expect_ok("a");
    daemon.post("/tasks", &task("b", json!({"after": {"task": "a"}}))).expect_ok("b");
    daemon.post("/tasks", &task("c", json!({"after": {"task": "b"}}))).expect_ok("c");
    let tasks_before = daemon.get("/tasks").expect_ok("tasks");

    let refused = [
        (
            task("d", json!({"select": {"into": "targets", "colour": "red"}})),
            "unknown field `colour`",
        ),
        (task("d", json!({"select": {"into": "targets", "cidr": "ten"}})), "cidr"),
        (task("d", json!({"select": {"into": "targets", "attr": ["x"]}})), "attr"),
        (task("d", json!({"after": {"task": "nobody"}})), "no task named"),
        (task("d", json!({"after": {"task": "a", "on": "sometimes"}})), "unknown variant"),
        (
            task("d", json!({"after": {"task": "a"}, "frequency": {"kind": "once"}})),
            "frequency manual",
        ),
    ];
    for (body, expected) in refused {
        let answer = daemon.post("/tasks", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert!(answer.text.contains(expected), "{body}: {}", answer.text);
    }
    // a following c would close a → b → c → a.
    let answer = daemon.put("/tasks/a", &task("a", json!({"after": {"task": "c"}})));
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (400, "trigger_cycle"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("a → c → b → a"), "{}", answer.text);
    // b is followed by name: renaming it would cut the chain.
    let answer = daemon.put("/tasks/b", &task("b2", json!({"after": {"task": "a"}})));
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.text.contains("follows this task by its name"), "{}", answer.text);
    assert_eq!(daemon.get("/tasks").expect_ok("tasks"), tasks_before, "nothing changed");

    // Parameters the plugin's split refuses are refused when the task is
    // defined or edited, saying so once with the plugin's reason.
    let reversed = json!({"params": {"targets": ["10.0.0.9-10.0.0.1"], "ports": "1"}});
    daemon.post("/tasks", &task("plain", json!({}))).expect_ok("plain");
    let tasks_before = daemon.get("/tasks").expect_ok("tasks");
    for answer in [
        daemon.post("/tasks", &task("reversed", reversed.clone())),
        daemon.put("/tasks/plain", &task("plain", reversed)),
    ] {
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (400, "split_failed"),
            "{}",
            answer.text
        );
        let error = answer.json()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(error.matches("split failed").count(), 1, "{error}");
        assert!(error.starts_with("split failed: ") && error.contains("10.0.0.9"), "{error}");
    }
    assert_eq!(daemon.get("/tasks").expect_ok("tasks"), tasks_before, "nothing changed");
}
