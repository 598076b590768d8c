//! The daemon's artifact store through its API: admins upload and list,
//! agents download by sha256, tasks may grant only stored artifacts.

use std::io::{Read, Write};
use std::net::TcpStream;

use jobstack_e2e::daemon::{ADMIN_TOKEN, Body, Daemon, ENROLL_SECRET};
use jobstack_e2e::plugin_wasm;
use serde_json::json;

/// Some bytes worth streaming (a little over 1 MiB), and their sha256.
fn artifact() -> (Vec<u8>, String) {
    let bytes: Vec<u8> = (0..(1 << 20) + 123)
        .map(|i: u32| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[(i % 37) as usize])
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a");
    std::fs::write(&file, &bytes).unwrap();
    let out = std::process::Command::new("sha256sum").arg(&file).output().unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    (bytes, sha)
}

fn agent_token(daemon: &Daemon, name: &str) -> String {
    let answer = daemon.request(
        "POST",
        "/agent/register",
        Some(ENROLL_SECRET),
        Body::Json(&json!({"name": name})),
    );
    answer.expect_ok("register")["token"].as_str().unwrap().to_string()
}

#[test]
fn an_uploaded_artifact_is_stored_by_sha256_listed_and_downloadable_by_agents() {
    let daemon = Daemon::start();
    let (bytes, sha) = artifact();

    let first = daemon.request("POST", "/artifacts", Some(ADMIN_TOKEN), Body::Bytes(&bytes));
    assert_eq!(first.status, 201, "{}", first.text);
    let info = first.json();
    assert_eq!(info["sha256"], sha);
    assert_eq!(info["size"], bytes.len());
    assert!(info["created"].is_string());
    let again = daemon.request("POST", "/artifacts", Some(ADMIN_TOKEN), Body::Bytes(&bytes));
    assert_eq!(again.status, 200, "the same bytes twice are one artifact");
    assert_eq!(again.json(), info);

    let on_disk = daemon.data_dir.join("artifacts").join(&sha);
    assert_eq!(std::fs::read(&on_disk).unwrap(), bytes);
    let listed = daemon.get("/artifacts").expect_ok("list");
    assert_eq!(listed, json!([info]));

    let token = agent_token(&daemon, "agent-a");
    let download =
        daemon.request("GET", &format!("/agent/artifacts/{sha}"), Some(&token), Body::None);
    assert_eq!(download.status, 200);
    assert_eq!(download.text.as_bytes(), bytes.as_slice());

    // Who may do what, and what is not there.
    let path = format!("/agent/artifacts/{sha}");
    assert_eq!(daemon.request("GET", &path, Some(ADMIN_TOKEN), Body::None).status, 401);
    assert_eq!(daemon.request("GET", &path, None, Body::None).status, 401);
    assert_eq!(daemon.request("GET", "/artifacts", Some(&token), Body::None).status, 401);
    let missing = daemon.request(
        "GET",
        &format!("/agent/artifacts/{}", "0".repeat(64)),
        Some(&token),
        Body::None,
    );
    assert_eq!((missing.status, missing.error_code().as_str()), (404, "not_found"));
    let bad = daemon.request("GET", "/agent/artifacts/not-a-sha", Some(&token), Body::None);
    assert_eq!((bad.status, bad.error_code().as_str()), (400, "invalid_sha256"));
    let empty = daemon.request("POST", "/artifacts", Some(ADMIN_TOKEN), Body::Bytes(&[]));
    assert_eq!((empty.status, empty.error_code().as_str()), (400, "invalid_artifact"));

    let openapi = daemon.get("/openapi.json").expect_ok("openapi");
    assert!(openapi["paths"]["/api/v1/artifacts"]["post"].is_object());
    assert!(openapi["paths"]["/api/v1/agent/artifacts/{sha256}"]["get"].is_object());
}

#[test]
fn an_upload_announcing_more_than_the_limit_is_refused_at_once() {
    let daemon = Daemon::start();
    let address = daemon.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    let request = format!(
        "POST /api/v1/artifacts HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\nonly a few bytes",
        1u64 << 40
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
    assert!(daemon.get("/artifacts").expect_ok("list").as_array().unwrap().is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(daemon.data_dir.join("artifacts")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_task_may_grant_only_stored_artifacts() {
    let daemon = Daemon::start();
    daemon.upload_plugin(&plugin_wasm("deploy"));
    let (bytes, sha) = artifact();
    daemon
        .request("POST", "/artifacts", Some(ADMIN_TOKEN), Body::Bytes(&bytes))
        .expect_ok("upload");
    let task = |name: &str, artifact: &str| {
        json!({"task": {
            "name": name,
            "plugin": "deploy",
            "params": {"source": {"artifact": artifact}, "actions": [{"action": "write", "path": "app.bin"}]},
            "targeting": {"agents": ["agent-a"], "each_agent": true},
            "grants": {"dirs": ["target"], "artifacts": [artifact]}
        }})
    };
    let unknown = "f".repeat(64);

    let refused = daemon.post("/tasks", &task("deploy-x", &unknown));
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (400, "unknown_artifact"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains(&unknown), "{}", refused.text);
    assert!(daemon.get("/tasks").expect_ok("list").as_array().unwrap().is_empty());

    let created = daemon.post("/tasks", &task("deploy-app", &sha));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["spec"]["grants"]["artifacts"], json!([sha]));

    let edit = daemon.put("/tasks/deploy-app", &task("deploy-app", &unknown));
    assert_eq!(
        (edit.status, edit.error_code().as_str()),
        (400, "unknown_artifact"),
        "{}",
        edit.text
    );
    let shown = daemon.get("/tasks/deploy-app").expect_ok("show");
    assert_eq!(shown["spec"]["grants"]["artifacts"], json!([sha]), "{shown}");
}

#[test]
fn the_admin_cli_pushes_and_lists_artifacts() {
    let daemon = Daemon::start();
    let (bytes, sha) = artifact();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.tar.gz");
    std::fs::write(&file, &bytes).unwrap();
    let server = ["--server", &daemon.url, "--token", ADMIN_TOKEN, "--json"];

    let mut push = vec!["artifact", "push", file.to_str().unwrap()];
    push.extend_from_slice(&server);
    let pushed = jobstack_e2e::jobstack(&push);
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);
    assert_eq!(pushed.json["sha256"], sha);
    assert_eq!(pushed.json["size"], bytes.len());

    let mut list = vec!["artifact", "list"];
    list.extend_from_slice(&server);
    let listed = jobstack_e2e::jobstack(&list);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert_eq!(listed.json, json!([pushed.json]));
}
