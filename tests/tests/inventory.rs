//! The inventory end to end, with the real peers and through a daemon and an
//! agent: a netscan task over a loopback /28 with listeners, an snmp task
//! against Debian's snmpd on one of those addresses, an esx task against the
//! vSphere simulator. The inventory holds exactly the expected assets: the
//! snmpd address is one asset with its open ports, its SNMP attributes and
//! interfaces; every VM is related to its host. Then a listener stops on the
//! snmpd address, the only listener of another address stops, and snmpd's
//! sysLocation changes: the next runs record exactly three changes.

use serde_json::{Value, json};
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::snmpd::Snmpd;
use jobstack_e2e::vcsim::{PASSWORD, USER, Vcsim};
use jobstack_e2e::{plugin_wasm, wait_until};

const PATIENCE: Duration = Duration::from_secs(120);

/// Create a manual task and return its name.
fn task(daemon: &Daemon, name: &str, plugin: &str, params: Value, secrets: Value) -> String {
    let mut task = json!({
        "task": {"name": name, "plugin": plugin, "params": params,
                 "frequency": {"kind": "manual"}, "timeout_ms": 60000, "retries": 0},
        "secrets": secrets,
    });
    if plugin == "esx" {
        task["task"]["grants"] = json!({"tls_accept_self_signed": true});
    }
    daemon.post("/tasks", &task).expect_ok("create task");
    name.to_string()
}

/// Force-run a task, wait until its run finished; the run's id.
fn run(daemon: &Daemon, name: &str) -> i64 {
    let run = daemon.post(&format!("/tasks/{name}/run"), &json!({})).expect_ok("force-run");
    let id = run["id"].as_i64().unwrap();
    wait_until(&format!("run {id} of {name} to end"), PATIENCE, || {
        let state = daemon.get(&format!("/runs/{id}")).expect_ok("show run")["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(state != "failed" && state != "canceled", "{name}: run {id} ended {state}");
        (state == "finished").then_some(id)
    })
}

/// Every asset (all pages).
fn assets(daemon: &Daemon, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page =
            daemon.get(&format!("/assets?limit=1000&after={after}{query}")).expect_ok("assets");
        all.extend(page["assets"].as_array().unwrap().iter().cloned());
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return all,
        }
    }
}

/// The changes recorded after change `after`.
fn changes_after(daemon: &Daemon, after: i64) -> Vec<Value> {
    daemon.get(&format!("/changes?after={after}&limit=1000")).expect_ok("changes")["changes"]
        .as_array()
        .unwrap()
        .clone()
}

fn last_change(daemon: &Daemon) -> i64 {
    changes_after(daemon, 0).last().map_or(0, |c| c["id"].as_i64().unwrap())
}

/// Wait until the processor has processed every result of `run_id` (its
/// changes stop coming).
fn processed(daemon: &Daemon, run_id: i64) {
    wait_until(&format!("run {run_id}'s results to be processed"), PATIENCE, || {
        let failures = daemon.get(&format!("/runs/{run_id}/processing")).expect_ok("processing");
        assert_eq!(failures, json!([]), "run {run_id}'s processing failed");
        let results = daemon.get(&format!("/runs/{run_id}/results")).expect_ok("results");
        let expected =
            results["results"].as_array().unwrap().iter().filter(|r| r["applied"] == true).count();
        let seen = daemon.get(&format!("/changes?run={run_id}&limit=1000")).expect_ok("changes");
        // Every run here changes something, and the sweep comes last: settle.
        (expected > 0 && !seen["changes"].as_array().unwrap().is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
}

fn ip_of(asset: &Value) -> Vec<String> {
    asset["keys"]["ip"]
        .as_array()
        .map(|ips| ips.iter().map(|i| i.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn discovery_snmp_and_esx_feed_one_inventory_and_its_changes() {
    // An aligned /28 of its own: the other tests' listeners are elsewhere.
    let pid = std::process::id();
    let (b, c) = (10 + (pid % 90) as u8, ((pid / 90) % 250) as u8);
    let net = Ipv4Addr::new(127, b, c, 16);
    let at = |d: u8| Ipv4Addr::new(127, b, c, 16 + d);
    let (device, single, other) = (at(1), at(2), at(3));
    let mut on_device =
        vec![TcpListener::bind((device, 0)).unwrap(), TcpListener::bind((device, 0)).unwrap()];
    let mut on_single = Some(TcpListener::bind((single, 0)).unwrap());
    let on_other = TcpListener::bind((other, 0)).unwrap();
    let port = |l: &TcpListener| l.local_addr().unwrap().port().to_string();
    let ports = [
        port(&on_device[0]),
        port(&on_device[1]),
        port(on_single.as_ref().unwrap()),
        port(&on_other),
    ];
    let snmpd = Snmpd::start(&device.to_string(), None, "rack 7", &[]);
    let sim = Vcsim::start(&["-hosts", "2", "-cluster-hosts", "2", "-vms", "2"]);

    let daemon = Daemon::builder().arg("--no-local-agent").start();
    for plugin in ["netscan", "snmp", "esx"] {
        daemon.upload_plugin(&plugin_wasm(plugin));
    }
    let state = tempfile::tempdir().unwrap();
    let _agent = AgentProcess::start(&daemon.url, "inventory-agent", state.path(), &[]);
    let scan = task(
        &daemon,
        "scan",
        "netscan",
        json!({"targets": [format!("{net}/28")], "ports": ports.join(","), "timeout_ms": 500}),
        json!({}),
    );
    let snmp = task(
        &daemon,
        "snmp",
        "snmp",
        json!({"devices": [snmpd.target()]}),
        json!({"community": snmpd.community}),
    );
    let esx = task(
        &daemon,
        "esx",
        "esx",
        json!({"hosts": [sim.url], "user": USER}),
        json!({"password": PASSWORD}),
    );

    for name in [&scan, &snmp, &esx] {
        let id = run(&daemon, name);
        processed(&daemon, id);
    }

    // Exactly the expected assets.
    let hosts = assets(&daemon, &format!("&cidr={net}/28"));
    let mut addresses: Vec<String> = hosts.iter().flat_map(ip_of).collect();
    addresses.sort();
    assert_eq!(addresses, [device, single, other].map(|a| a.to_string()), "{hosts:#?}");
    let switch = hosts.iter().find(|a| ip_of(a) == [device.to_string()]).unwrap();
    assert_eq!(switch["kind"], "network_device", "snmp refined the scanned host: {switch}");
    let mut open = vec![ports[0].parse::<u16>().unwrap(), ports[1].parse().unwrap()];
    open.sort();
    assert_eq!(switch["attributes"]["tcp_open"], json!(open));
    assert_eq!(switch["attributes"]["sysLocation"], "rack 7");
    assert_eq!(switch["name"], "jobstack-test-agent");
    let id = switch["id"].as_i64().unwrap();
    let detail = daemon.get(&format!("/assets/{id}")).expect_ok("asset");
    let interfaces: Vec<&Value> = detail["relations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relation"] == "part_of" && r["to_id"] == id)
        .collect();
    assert!(!interfaces.is_empty(), "the device's interfaces are part of it: {detail:#}");
    let sources: Vec<&str> = detail["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["plugin"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"netscan") && sources.contains(&"snmp"), "{sources:?}");
    let all_interfaces = assets(&daemon, "&kind=interface");
    assert_eq!(all_interfaces.len(), interfaces.len(), "every interface is the device's");
    let hypervisors = assets(&daemon, "&kind=hypervisor");
    let vms = assets(&daemon, "&kind=vm");
    assert_eq!((hypervisors.len(), vms.len()), (sim.hosts.len(), sim.vms.len()));
    for h in &hypervisors {
        let serial = h["attributes"]["serial"].as_str().unwrap_or_default();
        assert!(!serial.is_empty(), "a hypervisor with its serial (ServiceTag): {h}");
    }
    for vm in &vms {
        let detail = daemon.get(&format!("/assets/{}", vm["id"])).expect_ok("vm");
        let host =
            detail["relations"].as_array().unwrap().iter().find(|r| r["relation"] == "runs_on");
        let host = host.unwrap_or_else(|| panic!("VM without its host: {detail:#}"));
        assert!(hypervisors.iter().any(|h| h["id"] == host["to_id"]), "{detail:#}");
    }
    let total = assets(&daemon, "").len();
    assert_eq!(total, 3 + all_interfaces.len() + hypervisors.len() + vms.len());

    // The changes feed as server-sent events, from the first change on.
    let first: Vec<i64> =
        changes_after(&daemon, 0).iter().take(3).map(|c| c["id"].as_i64().unwrap()).collect();
    let stream = ureq::get(&format!("{}/api/v1/changes/stream?after=0", daemon.url))
        .set("Authorization", &format!("Bearer {}", jobstack_e2e::daemon::ADMIN_TOKEN))
        .call()
        .unwrap();
    let mut ids = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stream.into_reader())) {
        if let Some(id) = line.unwrap().strip_prefix("id:") {
            ids.push(id.trim().parse::<i64>().unwrap());
            if ids.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(ids, first, "the stream sends the changes in order, with their ids");

    // The GLPI export: one document per device, hypervisor and discovered
    // host, each valid against GLPI's schema.
    let out = tempfile::tempdir().unwrap();
    let export = std::process::Command::new(jobstack_e2e::jobstack_bin())
        .args(["inventory", "export", "--format", "glpi", "--out"])
        .arg(out.path())
        .args(["--server", &daemon.url, "--token", jobstack_e2e::daemon::ADMIN_TOKEN])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    assert!(stderr.contains("GLPI documents written"), "{stderr}");
    let schema_path =
        jobstack_e2e::repo_root().join("runtime/tests/data/glpi/inventory.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    let mut kinds = Vec::new();
    for file in std::fs::read_dir(out.path()).unwrap() {
        let path = file.unwrap().path();
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&document).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}\n{document:#}", path.display());
        kinds.push(document["itemtype"].as_str().unwrap().to_string());
    }
    kinds.sort();
    let mut expected = vec!["NetworkEquipment".to_string(), "Unmanaged".into(), "Unmanaged".into()];
    expected.extend(hypervisors.iter().map(|_| "Computer".to_string()));
    expected.sort();
    assert_eq!(kinds, expected);

    // A listener of the device stops, the other address's only listener
    // stops, sysLocation changes: exactly three changes.
    let before = last_change(&daemon);
    drop(on_device.pop());
    drop(on_single.take());
    let port = snmpd.port;
    drop(snmpd);
    let snmpd = Snmpd::start(&device.to_string(), Some(port), "rack 9", &[]);
    for name in [&scan, &snmp] {
        let id = run(&daemon, name);
        processed(&daemon, id);
    }
    let mut seen: Vec<(i64, String, String)> = changes_after(&daemon, before)
        .iter()
        .map(|c| {
            (
                c["asset_id"].as_i64().unwrap(),
                c["kind"].as_str().unwrap().to_string(),
                c["subject"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    seen.sort();
    let gone =
        hosts.iter().find(|a| ip_of(a) == [single.to_string()]).unwrap()["id"].as_i64().unwrap();
    let mut expected = vec![
        (id, "changed".to_string(), "tcp_open".to_string()),
        (id, "changed".to_string(), "sysLocation".to_string()),
        (gone, "disappeared".to_string(), String::new()),
    ];
    expected.sort();
    assert_eq!(seen, expected, "{:#?}", changes_after(&daemon, before));
    let switch = daemon.get(&format!("/assets/{id}")).expect_ok("asset");
    assert_eq!(switch["attributes"]["sysLocation"], "rack 9");
    drop(snmpd);
}
