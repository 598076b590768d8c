//! The daemon's OpenAPI document, as its clients' tools read it: it passes
//! Redocly's linter, and the TypeScript types openapi-typescript makes of it
//! type-check the agent client in `scripts/openapi/` (scripts/openapi-check.sh).
//! The contract every other end-to-end test's answers are checked against is
//! checked here against answers known to break it.

use std::process::Command;

use jobstack_e2e::contract::Exchange;
use jobstack_e2e::daemon::{Body, Daemon};
use jobstack_e2e::repo_root;

#[test]
fn the_document_lints_and_types_the_agent_client() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    let answer = daemon.request("GET", "/openapi.json", None, Body::None);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    std::fs::write(&document, &answer.text).unwrap();
    let script = repo_root().join("scripts/openapi-check.sh");
    let output = Command::new(&script)
        .arg(&document)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{} failed ({}):\n{printed}", script.display(), output.status);
    assert!(printed.contains("[openapi-check] ok"), "{printed}");
}

fn exchange<'a>(method: &'a str, path: &'a str, status: u16, body: &'a str) -> Exchange<'a> {
    let content_type = (!body.is_empty()).then_some("application/json");
    Exchange { method, path, status, content_type, body }
}

/// Whether the contract refuses the exchange (it panics, naming why).
fn refused(daemon: &Daemon, exchange: &Exchange) -> bool {
    let contract = daemon.contract();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| contract.check(exchange))).is_err()
}

#[test]
fn the_contract_refuses_answers_the_document_does_not_describe() {
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    let error = r#"{"error": {"code": "not_found", "message": "run 7 not found"}}"#;
    assert!(!refused(&daemon, &exchange("GET", "/api/v1/runs/7", 404, error)));
    assert!(!refused(&daemon, &exchange("POST", "/api/v1/agent/lease", 204, "")));
    let heartbeat =
        r#"{"extended": [], "revoked": [{"part_id": 1, "attempt": 1}], "superseded": []}"#;
    assert!(!refused(&daemon, &exchange("POST", "/api/v1/agent/heartbeat", 200, heartbeat)));
    // A field of the wrong type, a missing required field, an error without its code.
    let bad_heartbeat =
        r#"{"extended": [], "revoked": [{"part_id": "1", "attempt": 1}], "superseded": []}"#;
    assert!(refused(&daemon, &exchange("POST", "/api/v1/agent/heartbeat", 200, bad_heartbeat)));
    assert!(refused(&daemon, &exchange("POST", "/api/v1/agent/heartbeat", 200, "{}")));
    let bad_error = r#"{"error": {"message": "no code"}}"#;
    assert!(refused(&daemon, &exchange("GET", "/api/v1/runs/7", 404, bad_error)));
    // A body where none is documented, a route the document does not know,
    // a content type it does not list.
    assert!(refused(&daemon, &exchange("POST", "/api/v1/agent/lease", 204, "{}")));
    assert!(refused(&daemon, &exchange("GET", "/api/v1/nothing", 200, "{}")));
    let html =
        Exchange { content_type: Some("text/html"), ..exchange("GET", "/api/v1/runs", 200, "<p>") };
    assert!(refused(&daemon, &html));
}
