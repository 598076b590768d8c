//! snmp through `jobstack exec` against Debian's snmpd (started by
//! scripts/peers/snmpd.sh on a run-time loopback UDP port with a test
//! community): every value must equal what Debian's `snmpget`/`snmpwalk`
//! (`-On -Oe -Ox -Ot`) read from the same agent.
//!
//! sysUpTime, ifInOctets and ifOutOctets move while the test runs (time passes,
//! loopback carries other tests' traffic), so for them the plugin's value must
//! lie between a reading taken just before and one taken just after it; every
//! other value must be equal.
//!
//! SNMP v3 at the authPriv level (SHA and SHA-256 with AES) reads the same
//! values; wrong v3 credentials end with a message naming which one.
//!
//! The same runs through a real `jobstack serve` and `jobstack agent`, with the
//! community stored as the task's secret.

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::snmpd::Snmpd;
use jobstack_e2e::{exec, plugin_wasm, wait_until};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

const SYSTEM: [(&str, &str); 6] = [
    ("sysDescr", "1.3.6.1.2.1.1.1.0"),
    ("sysObjectID", "1.3.6.1.2.1.1.2.0"),
    ("sysUpTime", "1.3.6.1.2.1.1.3.0"),
    ("sysContact", "1.3.6.1.2.1.1.4.0"),
    ("sysName", "1.3.6.1.2.1.1.5.0"),
    ("sysLocation", "1.3.6.1.2.1.1.6.0"),
];
const IF_COLUMNS: [(&str, u32); 10] = [
    ("ifIndex", 1),
    ("ifDescr", 2),
    ("ifType", 3),
    ("ifMtu", 4),
    ("ifSpeed", 5),
    ("ifPhysAddress", 6),
    ("ifAdminStatus", 7),
    ("ifOperStatus", 8),
    ("ifInOctets", 10),
    ("ifOutOctets", 16),
];
/// The v3 user of the test agent (and `-sha256` for SHA-256) and its passphrases.
const V3_USER: &str = "jobstack";
const V3_AUTH: &str = "auth-pass-7391";
const V3_PRIV: &str = "priv-pass-2846";

/// Values that change between two readings.
const MOVING: [&str; 3] = ["sysUpTime", "ifInOctets", "ifOutOctets"];

/// The test agent: snmpd on 127.0.0.1 with the v3 users.
fn start_agent() -> Snmpd {
    Snmpd::start("127.0.0.1", None, "jobstack test rack 7", &[V3_USER, V3_AUTH, V3_PRIV])
}

/// Run a net-snmp tool with `security` (`-v2c -c COMMUNITY`, or v3 flags).
fn snmp_tool(
    tool: &str, address: &str, security: &[&str], oids: &[&str], extra: &[&str],
) -> std::process::Output {
    Command::new(tool)
        .args(security)
        .args(["-On", "-Oe", "-Ox", "-Ot"])
        .args(extra)
        .arg(address)
        .args(oids)
        .env("MIBS", "")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): run scripts/install-deps.sh (Debian package snmp)")
        })
}

/// One value as net-snmp prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    Bytes(Vec<u8>),
    Oid(String),
    Number(i128),
    Absent,
}

/// Parse `-On -Oe -Ox -Ot` output: `.OID = TYPE: value`, hex strings wrapped
/// over several lines.
fn parse_output(text: &str) -> BTreeMap<String, Reading> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some((oid, value)) = line.strip_prefix('.').and_then(|l| l.split_once(" = ")) {
            entries.push((oid.to_string(), value.to_string()));
        } else if let Some(last) = entries.last_mut() {
            last.1.push(' ');
            last.1.push_str(line);
        }
    }
    entries
        .into_iter()
        .map(|(oid, value)| {
            let value = value.trim();
            let reading = if let Some(hex) = value.strip_prefix("Hex-STRING:") {
                Reading::Bytes(
                    hex.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect(),
                )
            } else if let Some(s) = value.strip_prefix("STRING:") {
                Reading::Bytes(s.trim().trim_matches('"').as_bytes().to_vec())
            } else if value == "\"\"" {
                Reading::Bytes(Vec::new())
            } else if let Some(o) = value.strip_prefix("OID: .") {
                Reading::Oid(o.to_string())
            } else if value.starts_with("No Such") || value.starts_with("No more") {
                Reading::Absent
            } else {
                let number = value.rsplit(": ").next().unwrap();
                Reading::Number(
                    number
                        .parse()
                        .unwrap_or_else(|_| panic!("unexpected net-snmp value {value:?} of {oid}")),
                )
            };
            (oid, reading)
        })
        .collect()
}

/// The agent's system group and ifTable, by name: `system.NAME` and
/// `NAME.INDEX`.
fn reference(agent: &Snmpd) -> BTreeMap<String, Reading> {
    let mut all = BTreeMap::new();
    let oids: Vec<&str> = SYSTEM.iter().map(|(_, o)| *o).collect();
    let v2c = ["-v2c", "-c", agent.community.as_str()];
    let out = snmp_tool("snmpget", &agent.target(), &v2c, &oids, &[]);
    assert!(out.status.success(), "snmpget: {out:?}");
    let got = parse_output(&String::from_utf8_lossy(&out.stdout));
    for (name, oid) in SYSTEM {
        all.insert(format!("system.{name}"), got[oid].clone());
    }
    for (name, column) in IF_COLUMNS {
        let oid = format!("1.3.6.1.2.1.2.2.1.{column}");
        let out = snmp_tool("snmpwalk", &agent.target(), &v2c, &[&oid], &[]);
        assert!(out.status.success(), "snmpwalk {oid}: {out:?}");
        for (full, reading) in parse_output(&String::from_utf8_lossy(&out.stdout)) {
            let index = full.strip_prefix(&format!("{oid}.")).expect("walk stays in its column");
            all.insert(format!("{name}.{index}"), reading);
        }
    }
    all
}

/// The plugin's inventory in the same shape.
fn plugin_view(output: &serde_json::Value) -> BTreeMap<String, Reading> {
    let as_reading = |name: &str, v: &serde_json::Value| -> Reading {
        match (name, v) {
            (_, serde_json::Value::Null) => Reading::Absent,
            ("sysObjectID", v) => Reading::Oid(v.as_str().unwrap().to_string()),
            ("ifPhysAddress", v) => Reading::Bytes(
                v.as_str()
                    .unwrap()
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(|b| u8::from_str_radix(b, 16).unwrap())
                    .collect(),
            ),
            (_, serde_json::Value::String(s)) => Reading::Bytes(s.as_bytes().to_vec()),
            (_, n) => Reading::Number(
                n.as_i64()
                    .map(i128::from)
                    .unwrap_or_else(|| i128::from(n.as_u64().expect("a number"))),
            ),
        }
    };
    let mut all = BTreeMap::new();
    for (name, _) in SYSTEM {
        all.insert(format!("system.{name}"), as_reading(name, &output["system"][name]));
    }
    for row in output["interfaces"].as_array().unwrap() {
        let index = row["ifIndex"].as_u64().unwrap();
        for (name, _) in IF_COLUMNS {
            all.insert(format!("{name}.{index}"), as_reading(name, &row[name]));
        }
    }
    all
}

fn run_plugin(params: serde_json::Value, community: &str) -> jobstack_e2e::Run {
    let params = params.to_string();
    let wasm = plugin_wasm("snmp");
    let split = exec(&wasm, &["--params", &params]);
    assert_eq!(split.status(), "finished", "{:?}", split.json);
    let parts = split.json["output"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "one part per device");
    assert_eq!(parts[0]["targets"], serde_json::json!(["127.0.0.1"]));
    let secrets = serde_json::json!({ "community": community }).to_string();
    exec(
        &wasm,
        &[
            "--params",
            &params,
            "--part",
            &parts[0].to_string(),
            "--secrets",
            &secrets,
            "--allow-net",
            "127.0.0.1/32",
            "--timeout",
            "30s",
        ],
    )
}

/// Every value of the plugin's `output` equals the reference, moving ones lie
/// between the readings before and after.
fn assert_same_inventory(
    output: &serde_json::Value, before: &BTreeMap<String, Reading>,
    after: &BTreeMap<String, Reading>,
) {
    let found = plugin_view(output);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the same objects and interfaces"
    );
    for (key, value) in &found {
        let name = key.split('.').next().unwrap();
        let name = if name == "system" { &key[7..] } else { name };
        if MOVING.contains(&name) {
            let (lo, hi) = (number(&before[key]), number(&after[key]));
            let v = number(value);
            assert!(lo <= v && v <= hi, "{key}: {v} not within [{lo}, {hi}]");
        } else {
            assert_eq!(value, &before[key], "{key}");
        }
    }
}

fn number(r: &Reading) -> i128 {
    match r {
        Reading::Number(n) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn inventory_equals_snmpget_and_snmpwalk() {
    let agent = start_agent();
    let before = reference(&agent);
    let bulk = run_plugin(
        serde_json::json!({"devices": [agent.target()], "max_repetitions": 3}),
        &agent.community,
    );
    let next = run_plugin(
        serde_json::json!({"devices": [agent.target()], "bulk": false}),
        &agent.community,
    );
    let after = reference(&agent);
    assert!(
        before.keys().any(|k| k.starts_with("ifDescr.")),
        "the agent lists interfaces: {before:?}"
    );
    for run in [&bulk, &next] {
        assert_eq!(run.status(), "finished", "{:?}", run.json);
        assert_same_inventory(&run.json["output"], &before, &after);
        // The stream carries the same inventory: the system record, then one
        // record per interface.
        let emitted = run.json["emitted"].as_array().unwrap();
        let interfaces = run.json["output"]["interfaces"].as_array().unwrap();
        assert_eq!(emitted.len(), 1 + interfaces.len());
        assert_eq!(emitted[0]["kind"], "system");
        assert_eq!(emitted[0]["sysName"], run.json["output"]["system"]["sysName"]);
        assert_eq!(emitted[1]["kind"], "interface");
        assert_eq!(emitted[1]["ifDescr"], interfaces[0]["ifDescr"]);
        assert_eq!(run.json["progress"]["done"], 2);
    }
    // The values the test configured, read through the plugin.
    let system = &bulk.json["output"]["system"];
    assert_eq!(system["sysName"], "jobstack-test-agent");
    assert_eq!(system["sysLocation"], "jobstack test rack 7");
}

#[test]
fn a_wrong_community_fails_clearly_after_the_retries() {
    let agent = start_agent();
    let run = run_plugin(
        serde_json::json!({"devices": [agent.target()], "timeout_ms": 200, "retries": 2}),
        "not-the-community",
    );
    // "failed", not "timeout": the plugin gave up by itself, long before the
    // 30 s deadline of the execution.
    assert_eq!(run.status(), "failed", "{:?}", run.json);
    let error = run.error();
    assert!(
        error.contains(&format!("no answer from {} after 3 attempts of 200 ms", agent.target())),
        "{error}"
    );
    assert!(error.contains("community is probably wrong"), "{error}");
    assert!(!error.contains("not-the-community"), "the secret leaked: {error}");
    assert!(run.json["duration_ms"].as_f64().unwrap() >= 600.0);
    assert!(run.json["emitted"].as_array().unwrap().is_empty());
}

#[test]
fn a_port_without_agent_and_an_ungranted_device_fail_naming_the_cause() {
    let agent = start_agent();
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let wasm = plugin_wasm("snmp");
    let secrets = serde_json::json!({"community": agent.community}).to_string();
    for (device, allow, needle) in [
        (closed.to_string(), "127.0.0.1/32", "nothing listens on udp"),
        (agent.target(), "127.0.0.2/32", "does not allow UDP to"),
    ] {
        let params = serde_json::json!({"devices": [device], "timeout_ms": 200}).to_string();
        let part = serde_json::json!({
            "label": device,
            "targets": ["127.0.0.1"],
            "payload": serde_json::json!({"device": device}).to_string(),
        })
        .to_string();
        let run = exec(
            &wasm,
            &["--params", &params, "--part", &part, "--secrets", &secrets, "--allow-net", allow],
        );
        assert_eq!(run.status(), "failed", "{device}: {:?}", run.json);
        assert!(run.error().contains(needle), "{device}: {}", run.error());
    }
}

#[test]
fn missing_secrets_are_refused_before_any_request() {
    let wasm = plugin_wasm("snmp");
    let params = serde_json::json!({"devices": ["127.0.0.1:9"]}).to_string();
    let part = serde_json::json!({
        "label": "x", "targets": ["127.0.0.1"],
        "payload": serde_json::json!({"device": "127.0.0.1:9"}).to_string(),
    })
    .to_string();
    let run = exec(&wasm, &["--params", &params, "--part", &part, "--allow-net", "127.0.0.1/32"]);
    assert_eq!(run.status(), "failed", "{:?}", run.json);
    assert!(run.error().contains("invalid secrets"), "{}", run.error());
}

/// Create a manual task with `params` and `community` as its secret, force-run
/// it and wait until the run ends; the run's state and its parts' results.
fn daemon_run(
    daemon: &Daemon, name: &str, params: serde_json::Value, community: &str,
) -> (String, Vec<serde_json::Value>) {
    let task = serde_json::json!({
        "task": {
            "name": name,
            "plugin": "snmp",
            "params": params,
            "frequency": {"kind": "manual"},
            "timeout_ms": 30000,
            "retries": 0,
        },
        "secrets": {"community": community},
    });
    daemon.post("/tasks", &task).expect_ok("create task");
    let run =
        daemon.post(&format!("/tasks/{name}/run"), &serde_json::json!({})).expect_ok("force-run");
    let run_id = run["id"].as_i64().unwrap();
    let state = wait_until("the run to end", Duration::from_secs(120), || {
        let state = daemon.get(&format!("/runs/{run_id}")).expect_ok("show run")["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ["finished", "failed", "canceled"].contains(&state.as_str()).then_some(state)
    });
    let results = daemon.get(&format!("/runs/{run_id}/results")).expect_ok("results")["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["applied"] == serde_json::json!(true))
        .cloned()
        .collect();
    (state, results)
}

#[test]
fn inventory_through_daemon_and_agent_with_the_community_as_secret() {
    let agent = start_agent();
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&plugin_wasm("snmp"));
    let state = tempfile::tempdir().unwrap();
    let _worker = AgentProcess::start(&daemon.url, "inventory-agent", state.path(), &[]);

    let before = reference(&agent);
    let (state, results) = daemon_run(
        &daemon,
        "inventory",
        serde_json::json!({"devices": [agent.target()]}),
        &agent.community,
    );
    let after = reference(&agent);
    assert_eq!(state, "finished", "{results:?}");
    assert_eq!(results.len(), 1, "one part per device");
    assert_eq!(results[0]["status"], "finished");
    assert_same_inventory(&results[0]["output"], &before, &after);
    let emitted = results[0]["emitted"].as_array().unwrap();
    assert_eq!(emitted[0]["kind"], "system");

    // A wrong community: the part fails by itself, with the plugin's message.
    let (state, results) = daemon_run(
        &daemon,
        "wrong-community",
        serde_json::json!({"devices": [agent.target()], "timeout_ms": 200, "retries": 1}),
        "not-the-community",
    );
    assert_eq!(state, "failed", "{results:?}");
    let error = results[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("community is probably wrong"), "{error}");
    assert!(!error.contains("not-the-community"), "{error}");
}

fn run_v3(agent: &Snmpd, auth_protocol: &str, secrets: serde_json::Value) -> jobstack_e2e::Run {
    let params = serde_json::json!({
        "devices": [agent.target()],
        "version": "3",
        "auth_protocol": auth_protocol,
        "timeout_ms": 300,
        "retries": 1,
    })
    .to_string();
    let part = serde_json::json!({
        "label": agent.target(),
        "targets": ["127.0.0.1"],
        "payload": serde_json::json!({"device": agent.target()}).to_string(),
    })
    .to_string();
    exec(
        &plugin_wasm("snmp"),
        &[
            "--params",
            &params,
            "--part",
            &part,
            "--secrets",
            &secrets.to_string(),
            "--allow-net",
            "127.0.0.1/32",
            "--timeout",
            "30s",
        ],
    )
}

#[test]
fn v3_auth_priv_inventory_equals_snmpget_and_snmpwalk() {
    let agent = start_agent();
    // net-snmp itself reads the agent with the same v3 user.
    let v3 = snmp_tool(
        "snmpget",
        &agent.target(),
        &[
            "-v3", "-l", "authPriv", "-u", V3_USER, "-a", "SHA", "-A", V3_AUTH, "-x", "AES", "-X",
            V3_PRIV,
        ],
        &[SYSTEM[4].1],
        &[],
    );
    assert!(v3.status.success(), "snmpget -v3: {v3:?}");
    for (user, protocol) in [(V3_USER.to_string(), "SHA"), (format!("{V3_USER}-sha256"), "SHA-256")]
    {
        let before = reference(&agent);
        let run = run_v3(
            &agent,
            protocol,
            serde_json::json!({"user": user, "auth_password": V3_AUTH, "priv_password": V3_PRIV}),
        );
        let after = reference(&agent);
        assert_eq!(run.status(), "finished", "{protocol}: {:?}", run.json);
        assert_same_inventory(&run.json["output"], &before, &after);
    }
}

#[test]
fn v3_wrong_credentials_fail_naming_which() {
    let agent = start_agent();
    for (secrets, needle) in [
        (
            serde_json::json!({"user": V3_USER, "auth_password": "wrong-auth-pass", "priv_password": V3_PRIV}),
            "wrong authentication password",
        ),
        (
            serde_json::json!({"user": "nobody", "auth_password": V3_AUTH, "priv_password": V3_PRIV}),
            "does not know the user \"nobody\"",
        ),
        (
            serde_json::json!({"user": V3_USER, "auth_password": V3_AUTH, "priv_password": "wrong-priv-pass"}),
            "privacy password is probably wrong",
        ),
    ] {
        let run = run_v3(&agent, "SHA", secrets.clone());
        assert_eq!(run.status(), "failed", "{secrets}: {:?}", run.json);
        assert!(run.error().contains(needle), "{secrets}: {}", run.error());
        assert!(
            !run.error().contains("wrong-auth-pass") && !run.error().contains("wrong-priv-pass")
        );
    }
}
