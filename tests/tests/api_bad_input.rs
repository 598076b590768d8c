//! Bad input to the daemon's API, each answered with a clear 4xx and
//! changing nothing: a non-component upload, an oversize upload, an unknown
//! plugin, parameters failing the schema, malformed JSON, a result for a part
//! the agent never leased, a wrong or missing token.

use serde_json::{Value, json};

use jobstack_e2e::daemon::{ADMIN_TOKEN, Answer, Body, Daemon, ENROLL_SECRET};
use jobstack_e2e::{hello_wasm, plugin_wasm};

/// Everything the admin can see, to compare before and after a refused call.
fn snapshot(daemon: &Daemon) -> Value {
    json!({
        "plugins": daemon.get("/plugins").expect_ok("plugins"),
        "tasks": daemon.get("/tasks").expect_ok("tasks"),
        "runs": daemon.get("/runs").expect_ok("runs"),
        "agents": daemon.get("/agents").expect_ok("agents"),
    })
}

fn assert_refused(answer: &Answer, status: u16, code: &str, words: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.error_code(), code, "{answer:?}");
    let message = answer.json()["error"]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains(words), "message {message:?} lacks {words:?}");
}

fn register(daemon: &Daemon, name: &str) -> String {
    let body = json!({"name": name, "networks": ["127.0.0.0/8"]});
    let answer = daemon.request("POST", "/agent/register", Some(ENROLL_SECRET), Body::Json(&body));
    answer.expect_ok("register")["token"].as_str().expect("token").to_string()
}

#[test]
fn uploads_that_are_not_plugins_are_refused() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    let before = snapshot(&daemon);

    let core_module = b"\0asm\x01\0\0\0";
    let answer = daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(core_module));
    assert_refused(&answer, 400, "invalid_plugin", "core webassembly module");

    let random = b"this is not webassembly at all";
    let answer = daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(random));
    assert_refused(&answer, 400, "invalid_plugin", "not a webassembly");

    let oversize = vec![0u8; (64 << 20) + 1];
    let answer = daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(&oversize));
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.error_code(), "too_large", "{answer:?}");

    assert_eq!(snapshot(&daemon), before);
}

#[test]
fn a_plugin_version_is_immutable() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    let bytes = std::fs::read(hello_wasm()).unwrap();
    let first = daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(&bytes));
    assert_eq!((first.status, first.json()["created"].as_bool()), (201, Some(true)), "{first:?}");
    let again = daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(&bytes));
    assert_eq!((again.status, again.json()["created"].as_bool()), (200, Some(false)), "{again:?}");
    let before = snapshot(&daemon);
    // The same plugin (name, version, code) with one more custom section:
    // other bytes under a taken version.
    let mut changed = bytes.clone();
    changed.extend_from_slice(&[0, 6, 4, b'n', b'o', b't', b'e', 1]);
    let answer = daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(&changed));
    assert_refused(&answer, 409, "conflict", "bump the version");
    assert_eq!(snapshot(&daemon), before);
}

#[test]
fn a_plugin_version_is_retired_only_when_nothing_uses_it() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&hello_wasm());
    let steps = std::fs::read(plugin_wasm("fixture-steps")).unwrap();
    daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(&steps)).expect_ok("upload");
    let greet = json!({"task": {"name": "greet", "plugin": "hello", "params": {"name": "x"}, "frequency": {"kind": "manual"}}});
    daemon.post("/tasks", &greet).expect_ok("greet");
    let retire = |name: &str, version: &str| {
        daemon.request(
            "POST",
            &format!("/plugins/{name}/{version}/retire"),
            Some(ADMIN_TOKEN),
            Body::None,
        )
    };
    let before = snapshot(&daemon);
    // A task would have no version left to run.
    let hello =
        before["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "hello").unwrap();
    let version = hello["version"].as_str().unwrap().to_string();
    assert_refused(&retire("hello", &version), 409, "conflict", "only version task \"greet\"");
    assert_refused(&retire("hello", "9.9.9"), 404, "not_found", "hello 9.9.9");
    assert_eq!(snapshot(&daemon), before);

    // Nothing uses fixture-steps: retired, listed so, and no new task may use it.
    let retired = retire("fixture-steps", "0.1.0").expect_ok("retire");
    assert!(retired["retired_at"].is_string(), "{retired}");
    let steps_task = |name: &str| json!({"task": {"name": name, "plugin": "fixture-steps", "params": {"parts": 1, "ms": 1}, "frequency": {"kind": "manual"}}});
    assert_refused(
        &daemon.post("/tasks", &steps_task("steps")),
        400,
        "unknown_plugin",
        "fixture-steps",
    );
    // The same bytes again put it back in service.
    let again = daemon.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(&steps));
    assert_eq!((again.status, again.json()["created"].as_bool()), (200, Some(false)), "{again:?}");
    assert!(again.json()["plugin"].get("retired_at").is_none(), "{again:?}");
    daemon.post("/tasks", &steps_task("steps")).expect_ok("a task of the restored version");
    // A run that has not ended (no agent takes it) keeps it in service.
    let run = daemon.post("/tasks/steps/run", &json!({})).expect_ok("run");
    let answer = retire("fixture-steps", "0.1.0");
    assert_refused(&answer, 409, "conflict", &format!("run {}", run["id"]));
}

#[test]
fn task_definitions_that_cannot_run_are_refused() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&hello_wasm());
    let before = snapshot(&daemon);

    let unknown = json!({"task": {"name": "t", "plugin": "nope"}});
    assert_refused(&daemon.post("/tasks", &unknown), 400, "unknown_plugin", "nope");

    let schema = json!({"task": {"name": "t", "plugin": "hello", "params": {"count": 2}}});
    assert_refused(&daemon.post("/tasks", &schema), 400, "invalid_params", "name");

    let malformed = daemon.request("POST", "/tasks", Some(ADMIN_TOKEN), Body::Raw("{\"task\": "));
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert!(!malformed.error_code().is_empty(), "{malformed:?}");

    let unknown_field = json!({"task": {"name": "t", "plugin": "hello", "colour": "red"}});
    assert_eq!(daemon.post("/tasks", &unknown_field).status / 100, 4);

    // Numbers past their documented bounds (such values once stopped the
    // background sweep, or every lease of their part).
    let hello = |extra: Value| {
        let mut task = json!({"name": "t", "plugin": "hello", "params": {"name": "x"}});
        task.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "task": task })
    };
    for (extra, words) in [
        (json!({"frequency": {"kind": "every", "seconds": 9_300_000_000_000_000u64}}), "interval"),
        (json!({"timeout_ms": 10_000_000_000_000_000u64}), "timeout_ms"),
        (json!({"retry_backoff_ms": 600_001}), "retry_backoff_ms"),
        (json!({"lease_grace_ms": 0}), "lease_grace_ms"),
    ] {
        assert_refused(&daemon.post("/tasks", &hello(extra)), 400, "invalid_task", words);
    }

    assert_eq!(snapshot(&daemon), before);
    let ready = daemon.request("GET", "//readyz", None, Body::None);
    assert_eq!(ready.status, 200, "the daemon stays ready: {ready:?}");
}

#[test]
fn wrong_or_missing_tokens_are_refused() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    let before = snapshot(&daemon);
    // A small body: the daemon answers 401 before reading an upload, and a
    // client still sending a large one would see the connection close.
    let wasm = &std::fs::read(hello_wasm()).unwrap()[..64];
    for token in [None, Some("wrong-token"), Some(ENROLL_SECRET)] {
        let answer = daemon.request("POST", "/plugins", token, Body::Bytes(wasm));
        assert_eq!(answer.status, 401, "token {token:?}: {answer:?}");
        assert_eq!(answer.error_code(), "unauthorized");
        let answer = daemon.request("GET", "/tasks", token, Body::None);
        assert_eq!(answer.status, 401, "token {token:?}: {answer:?}");
    }
    // Nobody may register as the daemon's own agent.
    let local = json!({"name": "local"});
    let answer = daemon.request("POST", "/agent/register", Some(ENROLL_SECRET), Body::Json(&local));
    assert_refused(&answer, 400, "invalid_agent", "reserved");
    // An admin token is not an enrollment secret, nor an agent token.
    let body = json!({"name": "x"});
    let answer = daemon.request("POST", "/agent/register", Some(ADMIN_TOKEN), Body::Json(&body));
    assert_eq!(answer.status, 401, "{answer:?}");
    let answer = daemon.request("POST", "/agent/lease", Some(ADMIN_TOKEN), Body::Json(&json!({})));
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(snapshot(&daemon), before);
}

#[test]
fn results_for_parts_an_agent_never_leased_are_refused() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("daemon.log");
    let daemon =
        Daemon::builder().arg("--no-local-agent").env("RUST_LOG", "warn").log_to(&log).start();
    daemon.upload_plugin(&hello_wasm());
    let task = json!({"task": {"name": "greet", "plugin": "hello", "params": {"name": "x", "count": 2}, "frequency": {"kind": "manual"}}});
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post("/tasks/greet/run", &json!({})).expect_ok("force-run");
    let run_id = run["id"].as_i64().unwrap();
    let holder = register(&daemon, "holder");
    let other = register(&daemon, "other");
    let lease = daemon
        .request("POST", "/agent/lease", Some(&holder), Body::Json(&json!({"wait_ms": 5000})))
        .expect_ok("lease");
    let part_id = lease["part_id"].as_i64().unwrap();
    let before = daemon.get(&format!("/runs/{run_id}/parts")).expect_ok("parts");

    let result = |part_id: i64, attempt: u32| json!({"part_id": part_id, "attempt": attempt, "status": "finished", "output": {"forged": true}});
    // Another agent reports the holder's part.
    let answer =
        daemon.request("POST", "/agent/results", Some(&other), Body::Json(&result(part_id, 1)));
    assert_refused(&answer, 403, "forbidden", "not leased");
    // The same, asking for the next part: refused, and nothing leased to it.
    let answer = daemon.request(
        "POST",
        "/agent/results?lease_next=true",
        Some(&other),
        Body::Json(&result(part_id, 1)),
    );
    assert_refused(&answer, 403, "forbidden", "not leased");
    // The holder's own result under a malformed query: refused before it is
    // applied.
    let answer = daemon.request(
        "POST",
        "/agent/results?lease_next=maybe",
        Some(&holder),
        Body::Json(&result(part_id, 1)),
    );
    assert_refused(&answer, 400, "invalid_query", "lease_next");
    // The holder reports an attempt it was never given, and a part it never leased.
    let answer =
        daemon.request("POST", "/agent/results", Some(&holder), Body::Json(&result(part_id, 2)));
    assert_refused(&answer, 403, "forbidden", "not leased");
    let waiting = before
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"].as_i64() != Some(part_id))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let answer =
        daemon.request("POST", "/agent/results", Some(&holder), Body::Json(&result(waiting, 1)));
    assert_refused(&answer, 403, "forbidden", "not leased");
    // One agent cannot make the writer work for the others: a heartbeat of
    // thousands of made-up leases, a registration of thousands of networks.
    let fake: Vec<Value> =
        (0..3000).map(|i| json!({"part_id": 1_000_000 + i, "attempt": 1})).collect();
    let answer = daemon.request(
        "POST",
        "/agent/heartbeat",
        Some(&other),
        Body::Json(&json!({"leases": fake})),
    );
    assert_refused(&answer, 400, "invalid_heartbeat", "at most 2048 leases");
    let networks: Vec<String> =
        (0..1025).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
    let body = json!({"name": "greedy", "networks": networks});
    let answer = daemon.request("POST", "/agent/register", Some(ENROLL_SECRET), Body::Json(&body));
    assert_refused(&answer, 400, "invalid_agent", "at most 1024 networks");
    let agents = daemon.get("/agents").expect_ok("agents");
    assert!(agents.as_array().unwrap().iter().all(|a| a["name"] != "greedy"), "{agents}");
    // Progress and heartbeats on someone else's part change nothing either.
    let progress = json!({"part_id": part_id, "attempt": 1, "done": 1, "total": 1});
    let answer = daemon.request("POST", "/agent/progress", Some(&other), Body::Json(&progress));
    assert_eq!(answer.status, 403, "{answer:?}");
    // A malformed result body.
    let answer =
        daemon.request("POST", "/agent/results", Some(&holder), Body::Raw("{\"part_id\": 1,"));
    assert_eq!(answer.status, 400, "{answer:?}");

    assert_eq!(daemon.get(&format!("/runs/{run_id}/parts")).expect_ok("parts"), before);
    let results = daemon.get(&format!("/runs/{run_id}/results")).expect_ok("results");
    assert_eq!(results["results"], json!([]), "nothing recorded");
    // Each refusal is a line of the log at the default level, without the
    // colour codes a terminal would get.
    let text = std::fs::read_to_string(&log).unwrap();
    let refused: Vec<&str> = text.lines().filter(|l| l.contains("result refused")).collect();
    assert_eq!(refused.len(), 4, "{text}");
    assert!(
        refused.iter().all(|l| l.contains("agent=other") || l.contains("agent=holder")),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "colour codes in a log file: {text}");

    // The holder's own result, asking for its next part: applied, and the
    // answer carries the run's other part.
    let answer = daemon
        .request(
            "POST",
            "/agent/results?lease_next=true",
            Some(&holder),
            Body::Json(&result(part_id, 1)),
        )
        .expect_ok("result with the next lease");
    assert_eq!(answer["ack"], "applied", "{answer}");
    assert_eq!(answer["lease"]["part_id"].as_i64(), Some(waiting), "{answer}");
    let parts = daemon.get(&format!("/runs/{run_id}/parts")).expect_ok("parts");
    let states: Vec<(i64, &str, &str)> = parts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["id"].as_i64().unwrap();
            (id, p["state"].as_str().unwrap(), p["owner"].as_str().unwrap())
        })
        .collect();
    let mut expected = vec![(part_id, "finished", "holder"), (waiting, "running", "holder")];
    expected.sort();
    let mut states = states;
    states.sort();
    assert_eq!(states, expected);
}
