//! The daemon as operators see it: graceful shutdown lets running parts finish;
//! secrets never show in listings, events or logs, only in the owning agent's
//! lease; health, readiness, metrics and the OpenAPI document answer.

use serde_json::{Value, json};
use std::time::Duration;

use jobstack_e2e::daemon::{ADMIN_TOKEN, Body, Daemon, ENROLL_SECRET};
use jobstack_e2e::{plugin_wasm, wait_until};

const PATIENCE: Duration = Duration::from_secs(120);

fn steps_task(name: &str, parts: u64, ms: u64, agents: &[&str]) -> Value {
    json!({"task": {
        "name": name, "plugin": "fixture-steps",
        "params": {"parts": parts, "ms": ms},
        "frequency": {"kind": "manual"},
        "targeting": {"agents": agents},
    }})
}

#[test]
fn sigterm_lets_the_local_agents_running_part_finish() {
    let data = tempfile::tempdir().unwrap();
    let mut daemon =
        Daemon::builder().data_dir(data.path()).arg("--shutdown-grace").arg("20s").start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    daemon.post("/tasks", &steps_task("slow", 1, 3000, &["local"])).expect_ok("create task");
    let run = daemon.post("/tasks/slow/run", &json!({})).expect_ok("run");
    let run_id = run["id"].as_i64().unwrap();
    wait_until("the local agent to start the part", PATIENCE, || {
        let parts = daemon.get(&format!("/runs/{run_id}/parts")).expect_ok("parts");
        (parts[0]["state"] == "running" && parts[0]["owner"] == "local").then_some(())
    });
    let status = daemon.terminate();
    assert!(status.success(), "graceful shutdown exit: {status:?}");

    // What was acknowledged before the exit is there after a restart.
    let daemon = Daemon::builder().data_dir(data.path()).arg("--no-local-agent").start();
    let shown = daemon.get(&format!("/runs/{run_id}")).expect_ok("run");
    assert_eq!(shown["state"], "finished", "{shown}");
    let results = daemon.get(&format!("/runs/{run_id}/results")).expect_ok("results");
    assert_eq!(results["results"][0]["status"], "finished", "{results}");
    assert_eq!(results["results"][0]["agent"], "local");
}

#[test]
fn secrets_reach_only_the_owning_agent() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemon.log");
    let daemon =
        Daemon::builder().arg("--no-local-agent").env("RUST_LOG", "debug").log_to(&log).start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let secret = "s3cr3t-community-4711";
    let mut task = steps_task("secret", 1, 10, &["owner"]);
    task["secrets"] = json!({"community": secret});
    let created = daemon.post("/tasks", &task).expect_ok("create task");
    assert!(!created.to_string().contains(secret), "{created}");
    assert_eq!(created["has_secrets"], true);
    daemon.post("/tasks/secret/run", &json!({})).expect_ok("run");

    let register = |name: &str| {
        let answer = daemon.request(
            "POST",
            "/agent/register",
            Some(ENROLL_SECRET),
            Body::Json(&json!({"name": name, "networks": ["127.0.0.0/8"]})),
        );
        answer.expect_ok("register")["token"].as_str().unwrap().to_string()
    };
    let owner = register("owner");
    let stranger = register("stranger");
    let lease = |token: &str| {
        daemon.request("POST", "/agent/lease", Some(token), Body::Json(&json!({"wait_ms": 0})))
    };
    assert_eq!(lease(&stranger).status, 204, "the stranger is not targeted");
    let leased = lease(&owner).expect_ok("lease");
    assert_eq!(leased["secrets"]["community"], secret, "the owning agent gets the secret");

    let mut seen = String::new();
    for path in ["/tasks", "/tasks/secret", "/runs", "/agents", "/plugins"] {
        seen.push_str(&daemon.get(path).text);
    }
    let run_id = leased["run_id"].as_i64().unwrap();
    seen.push_str(&daemon.get(&format!("/runs/{run_id}")).text);
    seen.push_str(&daemon.get(&format!("/runs/{run_id}/parts")).text);
    // The event stream, read from the start for a moment.
    let events = read_events_for(&daemon, Duration::from_secs(2));
    assert!(events.contains("data:"), "events were read: {events}");
    seen.push_str(&events);
    assert!(!seen.contains(secret), "a secret leaked into a listing or event");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("lease") || logged.contains("agent"), "the log was written: {logged}");
    assert!(!logged.contains(secret), "a secret leaked into the daemon's log");
}

/// What the event stream sends from the first event, for `time` (it never ends
/// by itself).
fn read_events_for(daemon: &Daemon, time: Duration) -> String {
    use std::io::Read;
    let url = format!("{}/api/v1/events?after=0", daemon.url);
    let response = ureq::get(&url)
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .timeout(time)
        .call()
        .expect("open the event stream");
    let mut bytes = Vec::new();
    // Ends with the timeout; what arrived until then is kept.
    let _ = response.into_reader().read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn health_readiness_metrics_and_openapi_answer() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    let none = None;
    assert_eq!(daemon.request("GET", "//healthz", none, Body::None).status, 200);
    assert_eq!(daemon.request("GET", "//readyz", none, Body::None).status, 200);
    let metrics = daemon.request("GET", "//metrics", none, Body::None);
    assert_eq!(metrics.status, 200);
    assert!(metrics.text.contains("# TYPE"), "{}", metrics.text);
    for gauge in [
        "jobstack_long_polls_waiting 0",
        "jobstack_agents_down 0",
        "jobstack_parts_unassignable 0",
        "jobstack_assets_disappeared 0",
        "jobstack_webhook_dead_letters 0",
    ] {
        assert!(metrics.text.contains(gauge), "{gauge}: {}", metrics.text);
    }
    // An agent waiting for work shows as a waiting long-poll.
    let token = daemon
        .request(
            "POST",
            "/agent/register",
            Some(ENROLL_SECRET),
            Body::Json(&json!({"name": "idle", "networks": []})),
        )
        .expect_ok("register")["token"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::scope(|s| {
        let poll = s.spawn(|| {
            daemon.request(
                "POST",
                "/agent/lease",
                Some(&token),
                Body::Json(&json!({"wait_ms": 5_000})),
            )
        });
        wait_until("the long-poll in the metrics", PATIENCE, || {
            let text = daemon.request("GET", "//metrics", none, Body::None).text;
            text.contains("jobstack_long_polls_waiting 1").then_some(())
        });
        assert_eq!(poll.join().unwrap().status, 204, "no work came");
    });
    // A lease request's only field has a default: no body is a request too.
    let bare = daemon.request("POST", "/agent/lease", Some(&token), Body::None);
    assert_eq!(bare.status, 204, "{}", bare.text);
    let bad = daemon.request("POST", "/agent/lease", Some(&token), Body::Raw("{\"wait\":"));
    assert_eq!((bad.status, bad.error_code().as_str()), (400, "invalid_json"), "{}", bad.text);
    let openapi = daemon.request("GET", "/openapi.json", none, Body::None).json();
    assert!(openapi["openapi"].as_str().unwrap_or("").starts_with("3."), "{openapi}");
    for path in [
        "/agent/lease",
        "/agent/results",
        "/plugins",
        "/tasks",
        "/runs/{run}/parts",
        "/artifacts",
        "/tasks/{task}/chain",
        "/webhooks",
        "/webhooks/{id}/dead-letters/{event}/resend",
    ] {
        let full = format!("/api/v1{path}");
        assert!(openapi["paths"][&full].is_object(), "OpenAPI lacks {full}");
    }
}

#[test]
fn json_logs_on_request_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon::builder()
        .arg("--log-format")
        .arg("json")
        .env("RUST_LOG", "info")
        .log_to(&log)
        .start();
    daemon.get("/runs").expect_ok("runs");
    assert!(daemon.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "no log line at info");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["fields"].is_object()), "{text}");
}

#[test]
fn the_data_directory_is_the_daemons_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // As an earlier version left it: world-readable.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::builder().data_dir(&data).start();
    daemon.get("/runs").expect_ok("runs");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("jobstack.db")), 0o600);
}
