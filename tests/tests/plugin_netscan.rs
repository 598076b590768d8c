//! netscan through `jobstack exec` against real listeners, compared with what
//! Debian's nmap (`nmap -sT -Pn`) reports for the same addresses and ports.
//!
//! The test binds listeners on a few 127.x.y.z addresses picked from its process
//! id (not 127.0.0.1, where other tests and services come and go), and a port list
//! made of those listeners' ports (each open on some addresses, closed on the
//! others) plus ports known closed, and one port whose accept queue the test
//! filled so that it answers nothing (filtered). Every address of the scan is
//! loopback.
//!
//! The same comparison runs through a real `jobstack serve` and `jobstack
//! agent`: the daemon splits the task into blocks, the agent (on 127.0.0.0/8)
//! leases them, is granted each part's targets and sends the records back.

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::{exec, plugin_wasm, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// What one address looks like, from the plugin or from nmap.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostView {
    answered: bool,
    open: BTreeSet<u16>,
    closed: u64,
    filtered: u64,
}

/// The scanned addresses, each with its listeners (kept open until dropped).
struct Scene {
    addresses: Vec<Ipv4Addr>,
    ports: Vec<u16>,
    _listeners: Vec<TcpListener>,
}

/// Five addresses: listeners on the first three (2, 1 and 3 of them), none on the
/// last two; the port list also holds two ports nothing listens on.
/// Each scene of this process gets its own aligned /29 (the tests run in
/// parallel and must not see each other's listeners).
fn scene() -> Scene {
    static SCENES: AtomicU8 = AtomicU8::new(0);
    let n = SCENES.fetch_add(1, Ordering::SeqCst);
    assert!(n < 32, "at most 32 scenes per test process");
    let pid = std::process::id();
    let (b, c) = (100 + (pid % 100) as u8, ((pid / 100) % 250) as u8);
    let addresses: Vec<Ipv4Addr> = (1..=5).map(|d| Ipv4Addr::new(127, b, c, n * 8 + d)).collect();
    let mut listeners = Vec::new();
    for (addr, count) in addresses.iter().zip([2, 1, 3]) {
        for _ in 0..count {
            listeners.push(TcpListener::bind((*addr, 0)).expect("bind a loopback listener"));
        }
    }
    let mut ports: BTreeSet<u16> =
        listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    // Ports that were free a moment ago and that nothing listens on now.
    for _ in 0..2 {
        let l = TcpListener::bind((addresses[4], 0)).unwrap();
        ports.insert(l.local_addr().unwrap().port());
    }
    Scene { addresses, ports: ports.into_iter().collect(), _listeners: listeners }
}

fn port_list(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// Run `nmap -sT -Pn -n -p PORTS ADDRS -oX -` and read each host from its XML.
fn nmap(addresses: &[Ipv4Addr], ports: &[u16]) -> BTreeMap<String, HostView> {
    let which = Command::new("sh").args(["-c", "command -v nmap"]).output().expect("run sh");
    assert!(
        which.status.success(),
        "nmap is missing: run scripts/install-deps.sh (Debian package nmap)"
    );
    let output = Command::new("nmap")
        .args(["-sT", "-Pn", "-n", "-p", &port_list(ports), "-oX", "-"])
        .args(addresses.iter().map(Ipv4Addr::to_string))
        .output()
        .expect("run nmap");
    assert!(output.status.success(), "nmap failed: {}", String::from_utf8_lossy(&output.stderr));
    let xml = String::from_utf8(output.stdout).expect("nmap XML is UTF-8");
    // nmap's report starts with `<!DOCTYPE nmaprun>` (no entities).
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&xml, options).expect("nmap XML parses");
    let mut hosts = BTreeMap::new();
    for host in doc.descendants().filter(|n| n.has_tag_name("host")) {
        let address = host
            .children()
            .find(|n| n.has_tag_name("address"))
            .and_then(|n| n.attribute("addr"))
            .expect("host has an address")
            .to_string();
        let mut view = HostView { answered: false, open: BTreeSet::new(), closed: 0, filtered: 0 };
        let mut count = |state: &str, n: u64, port: Option<u16>| match state {
            "open" => {
                view.open.insert(port.expect("open ports are listed one by one"));
            }
            "closed" => view.closed += n,
            "filtered" => view.filtered += n,
            other => panic!("unexpected nmap port state {other:?} for {address}"),
        };
        for node in host.descendants() {
            if node.has_tag_name("port") {
                let port = node.attribute("portid").unwrap().parse().unwrap();
                let state = node
                    .children()
                    .find(|n| n.has_tag_name("state"))
                    .and_then(|n| n.attribute("state"))
                    .unwrap();
                count(state, 1, Some(port));
            } else if node.has_tag_name("extraports") {
                let n = node.attribute("count").unwrap().parse().unwrap();
                count(node.attribute("state").unwrap(), n, None);
            }
        }
        // With -Pn nmap marks every host up; a host answered when a port was
        // open or refused, as the plugin counts it.
        view.answered = !view.open.is_empty() || view.closed > 0;
        hosts.insert(address, view);
    }
    hosts
}

/// Read one emitted host record.
fn host_view(record: &serde_json::Value) -> (String, HostView) {
    let view = HostView {
        answered: record["answered"].as_bool().unwrap(),
        open: record["open"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as u16)
            .collect(),
        closed: record["closed"].as_u64().unwrap(),
        filtered: record["filtered"].as_u64().unwrap(),
    };
    (record["address"].as_str().unwrap().to_string(), view)
}

/// Split `params`, then execute every part with the network grant limited to
/// the part's own targets, as an agent does. Returns every emitted host record.
fn netscan(params: &serde_json::Value) -> BTreeMap<String, HostView> {
    let wasm = plugin_wasm("netscan");
    let params = params.to_string();
    let split = exec(&wasm, &["--params", &params]);
    assert_eq!(split.status(), "finished", "split: {:?}", split.json);
    let parts = split.json["output"].as_array().expect("parts").clone();
    let mut hosts = BTreeMap::new();
    for part in parts {
        let mut args =
            vec!["--params".to_string(), params.clone(), "--part".into(), part.to_string()];
        for target in part["targets"].as_array().unwrap() {
            let target = target.as_str().unwrap();
            args.push("--allow-net".into());
            args.push(if target.contains('/') {
                target.to_string()
            } else {
                format!("{target}/32")
            });
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = exec(&wasm, &args);
        assert_eq!(run.status(), "finished", "part {}: {:?}", part, run.json);
        let summary = &run.json["output"];
        let emitted = run.json["emitted"].as_array().unwrap();
        assert_eq!(summary["hosts"].as_u64().unwrap() as usize, emitted.len());
        assert_eq!(summary["stopped"], false);
        let total = run.json["progress"]["total"].as_u64().unwrap();
        assert_eq!(run.json["progress"]["done"].as_u64(), Some(total));
        for record in emitted {
            let (address, view) = host_view(record);
            assert!(hosts.insert(address.clone(), view).is_none(), "{address} reported twice");
        }
    }
    hosts
}

/// A listener that never accepts, with its accept queue filled by the test's
/// own connections: the kernel then drops every new SYN, so a scanner's
/// connection gets no answer — the port is "filtered", without any firewall.
struct Saturated {
    port: u16,
    _listener: TcpListener,
    _clients: Vec<TcpStream>,
}

fn saturate(addr: Ipv4Addr) -> Saturated {
    let listener = TcpListener::bind((addr, 0)).unwrap();
    let target = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    // std's backlog is 128: the queue holds about that many; the first connect
    // that gets no answer within a second (a loopback handshake takes
    // microseconds) proves it is full.
    for _ in 0..4096 {
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Ok(c) => clients.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Saturated { port: target.port(), _listener: listener, _clients: clients };
            }
            Err(e) => panic!("filling the accept queue of {target}: {e}"),
        }
    }
    panic!("the accept queue of {target} never filled");
}

#[test]
fn scan_equals_nmap_connect_scan() {
    let mut scene = scene();
    // One port that answers nothing, on the fourth address.
    let saturated = saturate(scene.addresses[3]);
    scene.ports.push(saturated.port);
    scene.ports.sort_unstable();
    let expected = nmap(&scene.addresses, &scene.ports);
    assert_eq!(expected.len(), scene.addresses.len(), "nmap: {expected:?}");
    // The scene itself, so a wrong nmap reading cannot pass unnoticed.
    let open: Vec<usize> =
        scene.addresses.iter().map(|a| expected[&a.to_string()].open.len()).collect();
    assert_eq!(open, [2, 1, 3, 0, 0]);
    let filtered: Vec<u64> =
        scene.addresses.iter().map(|a| expected[&a.to_string()].filtered).collect();
    assert_eq!(filtered, [0, 0, 0, 1, 0], "nmap: {expected:?}");

    let first = scene.addresses[0];
    let last = scene.addresses[4];
    let found = netscan(&serde_json::json!({
        "targets": [format!("{first}-{last}")],
        "ports": port_list(&scene.ports),
        "block_size": 2,
        "timeout_ms": 2000,
    }));
    assert_eq!(found, expected);
}

#[test]
fn result_does_not_depend_on_concurrency_or_target_form() {
    let scene = scene();
    let list: Vec<String> = scene.addresses.iter().map(Ipv4Addr::to_string).collect();
    let one_at_a_time = netscan(&serde_json::json!({
        "targets": list,
        "ports": scene.ports,
        "concurrency": 1,
    }));
    let a = scene.addresses[0].octets();
    let cidr = netscan(&serde_json::json!({
        // The scene's /29 holds its five addresses and three more, which answer
        // too (loopback) with every port closed.
        "targets": [format!("{}.{}.{}.{}/29", a[0], a[1], a[2], a[3] - 1)],
        "ports": port_list(&scene.ports),
        "concurrency": 3,
        "block_size": 3,
    }));
    assert_eq!(cidr.len(), 8);
    for (address, view) in &one_at_a_time {
        assert_eq!(cidr.get(address), Some(view), "{address}");
    }
    assert_eq!(one_at_a_time, nmap(&scene.addresses, &scene.ports));
}

#[test]
fn a_part_outside_the_granted_network_fails_naming_the_address() {
    let scene = scene();
    let [a, b] = [scene.addresses[0], scene.addresses[1]];
    let params =
        serde_json::json!({"targets": [a.to_string(), b.to_string()], "ports": [scene.ports[0]]});
    let part = serde_json::json!({
        "label": "two",
        "targets": [a.to_string(), b.to_string()],
        "payload": serde_json::json!({"targets": [a.to_string(), b.to_string()]}).to_string(),
    });
    let run = exec(
        &plugin_wasm("netscan"),
        &[
            "--params",
            &params.to_string(),
            "--part",
            &part.to_string(),
            "--allow-net",
            &format!("{a}/32"),
        ],
    );
    assert_eq!(run.status(), "failed", "{:?}", run.json);
    assert!(run.error().contains(&format!("does not allow connecting to {b}")), "{}", run.error());
}

#[test]
fn bad_params_are_refused_by_split() {
    for (params, needle) in [
        (serde_json::json!({"targets": ["10.0.0.0/8"], "ports": "22"}), "at most 65536"),
        (serde_json::json!({"targets": ["127.0.0.1"], "ports": "0-10"}), "outside 1-65535"),
        (serde_json::json!({"targets": ["localhost"], "ports": "22"}), "\"localhost\""),
    ] {
        let run = exec(&plugin_wasm("netscan"), &["--params", &params.to_string()]);
        assert_eq!(run.status(), "failed", "{params}: {:?}", run.json);
        assert!(run.error().contains(needle), "{params}: {}", run.error());
    }
}

#[test]
fn scan_through_daemon_and_agent_equals_nmap() {
    let scene = scene();
    let expected = nmap(&scene.addresses, &scene.ports);
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&plugin_wasm("netscan"));
    let state = tempfile::tempdir().unwrap();
    // Automatic targeting: the agent's network (127.0.0.0/8) holds every block.
    let _agent = AgentProcess::start(&daemon.url, "scanner", state.path(), &[]);
    let (first, last) = (scene.addresses[0], scene.addresses[4]);
    let task = serde_json::json!({"task": {
        "name": "scan",
        "plugin": "netscan",
        "params": {
            "targets": [format!("{first}-{last}")],
            "ports": port_list(&scene.ports),
            "block_size": 2,
        },
        "frequency": {"kind": "manual"},
        "timeout_ms": 60000,
    }});
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post("/tasks/scan/run", &serde_json::json!({})).expect_ok("force-run");
    let run_id = run["id"].as_i64().unwrap();
    wait_until("the scan to finish", Duration::from_secs(120), || {
        let state = daemon.get(&format!("/runs/{run_id}")).expect_ok("show run")["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(state != "failed" && state != "canceled", "run ended {state}");
        (state == "finished").then_some(())
    });
    let parts = daemon.get(&format!("/runs/{run_id}/parts")).expect_ok("parts");
    let targets: Vec<&serde_json::Value> =
        parts.as_array().unwrap().iter().map(|p| &p["targets"]).collect();
    assert_eq!(targets.len(), 3, "five addresses in blocks of two: {targets:?}");
    let results = daemon.get(&format!("/runs/{run_id}/results")).expect_ok("results");
    let mut found = BTreeMap::new();
    for r in results["results"].as_array().unwrap() {
        if r["applied"] != serde_json::json!(true) {
            continue;
        }
        assert_eq!(r["status"], "finished", "{r}");
        assert_eq!(r["agent"], "scanner");
        for record in r["emitted"].as_array().unwrap() {
            let (address, view) = host_view(record);
            assert!(found.insert(address.clone(), view).is_none(), "{address} twice");
        }
    }
    assert_eq!(found, expected);
}
