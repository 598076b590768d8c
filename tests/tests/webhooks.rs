//! Webhooks end to end through the real binary, with a real receiver that
//! checks every signature: every event is delivered, in order, with no id
//! missing, while the receiver is away for a while and across a SIGKILL of
//! the daemon with undelivered events in the outbox; events delivery gave up
//! on are dead letters an admin can re-send; and bad subscriptions are
//! refused with a 4xx that changes nothing.

use serde_json::{Value, json};
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::receiver::Receiver;
use jobstack_e2e::{plugin_wasm, wait_until};

const PATIENCE: Duration = Duration::from_secs(120);
const SECRET: &str = "webhook-test-secret-0123456789";
const EVERY_KIND: [&str; 9] = [
    "run.finished",
    "run.failed",
    "part.failed",
    "asset.appeared",
    "asset.changed",
    "asset.disappeared",
    "agent.down",
    "agent.up",
    "plugin.uploaded",
];

fn subscribe(daemon: &Daemon, url: &str, events: &[&str]) -> Value {
    let body = json!({"url": url, "events": events, "secret": SECRET});
    daemon.post("/webhooks", &body).expect_ok("subscribe")
}

/// A scan of one loopback address with a listener: a run that finishes and
/// an asset that appears.
fn scan(daemon: &Daemon, name: &str, address: Ipv4Addr, port: u16) -> i64 {
    let task = json!({"task": {"name": name, "plugin": "netscan", "frequency": {"kind": "manual"},
        "params": {"targets": [address.to_string()], "ports": port.to_string()}}});
    daemon.post("/tasks", &task).expect_ok("create scan");
    let run = daemon.post(&format!("/tasks/{name}/run"), &json!({})).expect_ok("run scan");
    let id = run["id"].as_i64().unwrap();
    wait_until(&format!("run {id} to finish"), PATIENCE, || {
        let run = daemon.get(&format!("/runs/{id}")).expect_ok("run");
        (run["state"] == "finished").then_some(())
    });
    id
}

/// The subscription as listed.
fn subscription(daemon: &Daemon, id: i64) -> Value {
    let all = daemon.get("/webhooks").expect_ok("webhooks");
    all.as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap()
}

/// Wait until the receiver holds `count` events of each kind given, the
/// subscription has delivered everything fed so far, and the receiver holds
/// every id from 1 to its cursor, in order; those ids' kinds.
fn all_delivered(
    daemon: &Daemon, receiver: &Receiver, id: i64, count: &[(&str, usize)],
) -> Vec<String> {
    wait_until("every event delivered", PATIENCE, || {
        let sub = subscription(daemon, id);
        let cursor = sub["cursor"].as_i64().unwrap();
        let received = receiver.received();
        assert!(received.iter().all(|d| d.verified), "a signature did not hold: {received:?}");
        // At least once: drop repeats, keep the order of first arrival.
        let mut seen: Vec<i64> = Vec::new();
        let mut kinds = Vec::new();
        for d in &received {
            if !seen.contains(&d.id) {
                assert_eq!(d.body["id"], d.id, "the body names its id: {:?}", d.body);
                assert_eq!(d.body["kind"], d.kind.as_str());
                seen.push(d.id);
                kinds.push(d.kind.clone());
            }
        }
        let counted =
            count.iter().all(|(kind, n)| kinds.iter().filter(|k| k == kind).count() >= *n);
        let done = counted && cursor > 0 && sub["attempts"] == 0 && seen.last() == Some(&cursor);
        if !done {
            return None;
        }
        let expected: Vec<i64> = (1..=cursor).collect();
        assert_eq!(seen, expected, "in order, none missing");
        Some(kinds)
    })
}

#[test]
fn every_event_is_delivered_in_order_across_an_outage_and_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let start = |data: &std::path::Path| {
        Daemon::builder().data_dir(data).arg("--webhook-allow").arg("127.0.0.1").start()
    };
    let mut daemon = start(data.path());
    let mut receiver = Receiver::start(SECRET);
    let sub = subscribe(&daemon, &receiver.url(), &EVERY_KIND);
    let sub_id = sub["subscription"]["id"].as_i64().unwrap();
    assert_eq!(sub["secret"], SECRET);
    assert!(!daemon.get("/webhooks").text.contains(SECRET), "listings never hold the secret");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    daemon.upload_plugin(&plugin_wasm("netscan"));
    scan(&daemon, "scan-1", Ipv4Addr::LOCALHOST, port);
    let first = [("plugin.uploaded", 1), ("run.finished", 1), ("asset.appeared", 1)];
    all_delivered(&daemon, &receiver, sub_id, &first);

    // The receiver is away while more happens; then it comes back.
    receiver.stop();
    scan(&daemon, "scan-2", Ipv4Addr::LOCALHOST, port);
    wait_until("a failed delivery", PATIENCE, || {
        (subscription(&daemon, sub_id)["attempts"].as_i64().unwrap() > 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    receiver.restart();
    let kinds = all_delivered(&daemon, &receiver, sub_id, &[("run.finished", 2)]);
    assert_eq!(kinds.iter().filter(|k| *k == "run.finished").count(), 2, "{kinds:?}");

    // Undelivered events in the outbox when the daemon is killed: delivered
    // after its restart.
    receiver.stop();
    scan(&daemon, "scan-3", Ipv4Addr::LOCALHOST, port);
    wait_until("a failed delivery", PATIENCE, || {
        (subscription(&daemon, sub_id)["attempts"].as_i64().unwrap() > 0).then_some(())
    });
    daemon.kill();
    receiver.restart();
    daemon = start(data.path());
    let kinds = all_delivered(&daemon, &receiver, sub_id, &[("run.finished", 3)]);
    assert_eq!(kinds.iter().filter(|k| *k == "run.finished").count(), 3, "{kinds:?}");
    drop(listener);
}

#[test]
fn given_up_events_are_dead_letters_an_admin_resends() {
    let daemon = Daemon::builder()
        .arg("--webhook-allow")
        .arg("127.0.0.1")
        .arg("--webhook-attempts")
        .arg("2")
        .start();
    let mut receiver = Receiver::start(SECRET);
    receiver.stop();
    let sub = subscribe(&daemon, &receiver.url(), &["plugin.uploaded"]);
    let sub_id = sub["subscription"]["id"].as_i64().unwrap();
    daemon.upload_plugin(&plugin_wasm("netscan"));
    let dead = wait_until("a dead letter", PATIENCE, || {
        let dead = daemon.get("/webhooks/dead-letters").expect_ok("dead letters");
        dead.as_array().unwrap().first().cloned()
    });
    assert_eq!(
        (dead["subscription_id"].as_i64(), dead["attempts"].as_i64()),
        (Some(sub_id), Some(2))
    );
    assert_eq!(dead["event"]["kind"], "plugin.uploaded", "{dead}");
    let event = dead["event"]["id"].as_i64().unwrap();
    let resend = format!("/webhooks/{sub_id}/dead-letters/{event}/resend");
    let refused = daemon.post(&resend, &json!({}));
    assert_eq!(refused.status, 502, "still away: {}", refused.text);
    receiver.restart();
    let sent = daemon.post(&resend, &json!({}));
    assert_eq!(sent.status, 204, "{}", sent.text);
    let got = receiver.received();
    assert_eq!((got.len(), got[0].id, got[0].verified), (1, event, true), "{got:?}");
    assert_eq!(daemon.get("/webhooks/dead-letters").expect_ok("dead letters"), json!([]));
}

#[test]
fn bad_subscriptions_are_refused_and_change_nothing() {
    let daemon =
        Daemon::builder().arg("--webhook-allow").arg("127.0.0.1,hooks.example.org").start();
    subscribe(&daemon, "http://127.0.0.1:9/hook", &["run.failed"]);
    let before = daemon.get("/webhooks").expect_ok("webhooks");
    let refused = [
        (json!({"url": "http://10.9.9.9/hook", "events": ["run.failed"]}), "allow-list"),
        (json!({"url": "http://169.254.169.254/latest", "events": ["run.failed"]}), "allow-list"),
        (json!({"url": "file:///etc/passwd", "events": ["run.failed"]}), "not http"),
        (json!({"url": "http://127.0.0.1:9/", "events": ["run.exploded"]}), "unknown event kind"),
        (json!({"url": "http://127.0.0.1:9/", "events": []}), "at least one"),
        (
            json!({"url": "http://127.0.0.1:9/", "events": ["run.failed"], "secret": "short"}),
            "16 characters",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "events": ["run.failed"], "colour": 1}),
            "unknown field",
        ),
    ];
    for (body, expected) in refused {
        let answer = daemon.post("/webhooks", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert!(answer.text.contains(expected), "{body}: {}", answer.text);
    }
    assert_eq!(daemon.get("/webhooks").expect_ok("webhooks"), before, "nothing changed");
    assert_eq!(
        daemon
            .request(
                "DELETE",
                "/webhooks/999",
                Some(jobstack_e2e::daemon::ADMIN_TOKEN),
                jobstack_e2e::daemon::Body::None
            )
            .status,
        404
    );
}
