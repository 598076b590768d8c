//! The daemon over HTTPS with its own certificate (made at run time for
//! 127.0.0.1): the admin CLI and an agent trust it with `--ca-file` and are
//! refused without it; the agent runs a part end to end over TLS.

use std::process::Command;
use std::time::Duration;

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::{ADMIN_TOKEN, Daemon};
use jobstack_e2e::{jobstack_bin, plugin_wasm, wait_until};

fn cli(url: &str, ca: Option<&std::path::Path>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(jobstack_bin());
    command.args(args).args(["--server", url, "--token", ADMIN_TOKEN]);
    if let Some(ca) = ca {
        command.arg("--ca-file").arg(ca);
    }
    command.output().expect("run the CLI")
}

#[test]
fn daemon_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();

    let daemon = Daemon::builder()
        .arg("--no-local-agent")
        .arg("--tls-cert")
        .arg(cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(key.to_str().unwrap())
        .start();
    assert!(daemon.url.starts_with("https://"), "{}", daemon.url);

    let refused = cli(&daemon.url, None, &["plugin", "list"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(stderr.contains("certificate") || stderr.contains("ca-file"), "{stderr}");

    let steps = plugin_wasm("fixture-steps");
    let pushed = cli(&daemon.url, Some(&cert), &["plugin", "push", steps.to_str().unwrap()]);
    assert!(pushed.status.success(), "{pushed:?}");
    let created = cli(
        &daemon.url,
        Some(&cert),
        &[
            "task",
            "create",
            "--name",
            "tls",
            "--plugin",
            "fixture-steps",
            "--params",
            r#"{"parts": 2, "ms": 50}"#,
            "--manual",
            "--agents",
            "secure",
        ],
    );
    assert!(created.status.success(), "{created:?}");

    let _agent = AgentProcess::start(
        &daemon.url,
        "secure",
        &dir.path().join("agent"),
        &["--ca-file", cert.to_str().unwrap()],
    );
    let run = cli(&daemon.url, Some(&cert), &["task", "run", "tls", "--json"]);
    assert!(run.status.success(), "{run:?}");
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let run_id = run["id"].as_i64().unwrap();
    wait_until("the run to finish over TLS", Duration::from_secs(120), || {
        let shown = cli(
            &daemon.url,
            Some(&cert),
            &["results", "tls", "--run", &run_id.to_string(), "--json"],
        );
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).ok()?;
        (shown["run"]["state"] == "finished").then_some(())
    });
}
