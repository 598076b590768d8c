//! The webhooks' part of `jobstack bench e2e --webhooks`: a receiver on a
//! loopback port that checks each signature and records each event's id and
//! its delivery latency (the event's time, as the daemon committed it, to
//! its arrival), and the check that every event of the run was delivered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};

use crate::client::ApiClient;
use crate::notify::signature::{SIGNATURE_HEADER, verify};
use crate::notify::{EventKind, NewSubscription, Subscription};
use crate::protocol::WebhookCreated;

/// The secret the bench's subscription signs with.
const SECRET: &str = "jobstack-bench-webhook-secret";

/// How long the daemons may take to deliver the last event.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(300);

/// What the receiver got: each event's id and latency, ms.
type Received = Arc<Mutex<Vec<(i64, f64)>>>;

/// The bench's receiver, stopped when dropped.
pub struct Receiver {
    url: String,
    received: Received,
    server: tokio::task::JoinHandle<()>,
}

/// The webhook figures of a run.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// Distinct events delivered (every one from the first to the last id).
    pub events: usize,
    /// Median delivery latency, ms.
    pub p50_ms: f64,
}

impl Receiver {
    /// Listen on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let received = Received::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(received.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, received, server })
    }

    /// Subscribe it to every event kind.
    pub async fn subscribe(&self, admin: &ApiClient) -> anyhow::Result<Subscription> {
        let new = NewSubscription {
            url: self.url.clone(),
            events: EventKind::ALL.iter().map(|k| k.as_str().to_string()).collect(),
            secret: Some(SECRET.to_string()),
        };
        let created: WebhookCreated = admin
            .post_json("/webhooks", &new)
            .await?
            .context("the daemon answered no subscription")?;
        Ok(created.subscription)
    }

    /// Wait until subscription `id` delivered every event fed to it (its
    /// cursor settled), and check that the receiver holds each id from the
    /// first to the cursor exactly in order.
    pub async fn all_delivered(&self, admin: &ApiClient, id: i64) -> anyhow::Result<Delivered> {
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        let mut settled = None;
        loop {
            let subs: Vec<Subscription> = admin.get_json("/webhooks").await?;
            let sub = subs.into_iter().find(|s| s.id == id).context("the subscription is gone")?;
            let last = self.received.lock().expect("receiver lock").last().map(|(id, _)| *id);
            let caught_up = sub.attempts == 0 && last == Some(sub.cursor);
            // The cursor has stopped moving for a second: everything is fed.
            match settled {
                Some((cursor, since)) if caught_up && cursor == sub.cursor => {
                    if Instant::now().duration_since(since) >= Duration::from_secs(1) {
                        break;
                    }
                }
                _ => settled = caught_up.then_some((sub.cursor, Instant::now())),
            }
            if Instant::now() > deadline {
                bail!("webhook events still undelivered after {DELIVERY_DEADLINE:?}: {sub:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let received = self.received.lock().expect("receiver lock").clone();
        let mut ids: Vec<i64> = received.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        let first = ids.first().copied().unwrap_or(0);
        let expected: Vec<i64> = (first..first + ids.len() as i64).collect();
        ensure!(ids == expected, "webhook events missing or out of order: {ids:?}");
        let latencies: Vec<f64> = received.iter().map(|(_, ms)| *ms).collect();
        Ok(Delivered { events: ids.len(), p50_ms: super::percentile(&latencies, 0.5) })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One delivery: refused (400) unless its signature holds.
async fn receive(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if verify(SECRET, signature, &body).is_none() {
        return StatusCode::BAD_REQUEST;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = event["id"].as_i64().unwrap_or(-1);
    let at = event["at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok());
    let latency =
        at.map_or(f64::NAN, |at| (Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1e3);
    received.lock().expect("receiver lock").push((id, latency));
    StatusCode::OK
}
