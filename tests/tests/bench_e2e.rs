//! `jobstack bench e2e`: the end-to-end benchmark itself works and checks what
//! it claims, on both stores, at a size that fits the test suite (the figures
//! come from scripts/bench.sh, not from here).

use jobstack_e2e::postgres::server_url;
use jobstack_e2e::{jobstack, repo_root};

fn plugin_dir() -> String {
    repo_root().join("plugins/target/wasm32-wasip2/release").display().to_string()
}

/// Every figure is there and positive, and every part was applied once.
fn assert_report(report: &serde_json::Value, parts: u64) {
    for figure in [
        "split_store_ms",
        "http_lease_complete_per_s",
        "http_lease_p50_us",
        "http_lease_p99_us",
        "parts_per_s",
        "force_run_wake_ms",
        "enqueue_to_start_p50_ms",
        "enqueue_to_start_p99_ms",
        "run_s",
    ] {
        let value = report[figure].as_f64().unwrap_or(-1.0);
        assert!(value > 0.0, "{figure} = {value} in {report}");
    }
    assert_eq!(report["parts"], parts, "{report}");
    assert_eq!(report["results_checked"], parts, "{report}");
}

/// `jobstack bench e2e --json` on a small plan, `store` naming the daemons
/// and their store; checks what every report must hold.
fn small_bench(store: &[&str], parts: u64, agents: u64) -> serde_json::Value {
    let dir = plugin_dir();
    let (parts_arg, agents_arg) = (parts.to_string(), agents.to_string());
    let mut args = vec!["bench", "e2e", "--json"];
    args.extend_from_slice(store);
    args.extend([
        "--parts",
        &parts_arg,
        "--agents",
        &agents_arg,
        "--slots",
        "2",
        "--wake-samples",
        "5",
        "--plugin-dir",
        &dir,
    ]);
    let run = jobstack(&args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_report(&run.json, parts);
    run.json
}

#[test]
fn one_daemon_on_sqlite() {
    let report = small_bench(&[], 200, 3);
    assert_eq!(report["store"], "sqlite");
    assert_eq!(report["daemons"], 1);
}

#[test]
fn two_daemons_on_postgres_with_webhooks() {
    let server = server_url();
    let report = small_bench(&["--daemons", "2", "--database", &server, "--webhooks"], 300, 4);
    assert_eq!(report["store"], "postgres");
    assert_eq!(report["daemons"], 2);
    // Each part's asset appeared, and the run finished: all delivered, in order.
    let delivered = report["webhook_events_delivered"].as_u64().unwrap_or(0);
    assert!(delivered > 300, "each part's asset appeared, and the run finished: {report}");
    for figure in ["parts_per_s_without_webhooks", "webhook_delivery_p50_ms"] {
        assert!(report[figure].as_f64().unwrap_or(-1.0) > 0.0, "{figure} in {report}");
    }
}

#[test]
fn several_daemons_without_a_shared_store_are_refused() {
    let run_output = std::process::Command::new(jobstack_e2e::jobstack_bin())
        .args(["bench", "e2e", "--daemons", "2"])
        .output()
        .expect("start jobstack");
    assert_eq!(run_output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run_output.stderr);
    assert!(stderr.contains("give --database postgres://"), "unclear refusal: {stderr}");
}
