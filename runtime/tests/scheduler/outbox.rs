//! The webhooks' outbox on each backend: the feeder takes each wanted event
//! once and in order, two feeders never feed the same events, a
//! subscription is delivered by one daemon at a time, and what delivery
//! gave up on is kept as a dead letter.

use std::sync::Arc;

use chrono::TimeDelta;
use jobstack::notify::feed::Feeder;
use jobstack::notify::store::DeliveryRecord;
use jobstack::notify::{DeadLetter, EventKind, FeedPosition};

use crate::harness::{Backend, Harness, finished};
use crate::store_tests;

store_tests!(
    the_feeder_appends_each_wanted_event_once_in_order,
    one_daemon_delivers_a_subscription_and_gives_up_into_dead_letters,
);

fn feeder(h: &Harness) -> Feeder {
    Feeder::new(h.store.clone(), h.inventory.clone(), h.outbox.clone(), Arc::new(h.clock.clone()))
}

async fn the_feeder_appends_each_wanted_event_once_in_order(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut feeder = feeder(&h);
    // Nobody listens: the feed skips ahead, appending nothing.
    h.plugin("early", "1.0.0").await;
    assert_eq!(feeder.feed().await.unwrap().appended, 0);
    let kinds = [EventKind::RunFinished, EventKind::PluginUploaded];
    let sub = h
        .outbox
        .create_subscription("http://127.0.0.1:9/h", &kinds, "s", h.sched.now())
        .await
        .unwrap();
    assert_eq!(sub.cursor, 0);

    let agent = h.agent("a", &[]).await;
    let run = h.run_of(&h.spec("job", Harness::labels(2))).await; // uploads plugin `test`
    while let Some(lease) = h.sched.lease(&agent).await.unwrap() {
        h.sched.submit(&agent, &finished(&lease)).await.unwrap();
    }
    assert_eq!(feeder.feed().await.unwrap().appended, 2);
    assert_eq!(feeder.feed().await.unwrap().appended, 0, "fed once");
    let outbox = h.outbox.outbox(0, 100).await.unwrap();
    let got: Vec<(i64, EventKind)> = outbox.iter().map(|e| (e.id, e.kind)).collect();
    assert_eq!(got, [(1, EventKind::PluginUploaded), (2, EventKind::RunFinished)]);
    let body: serde_json::Value = serde_json::from_str(&outbox[1].body).unwrap();
    assert_eq!((body["id"].as_i64(), body["data"]["run_id"].as_i64()), (Some(2), Some(run.id)));
    assert!(!outbox[1].body.contains("s3cret"), "a run's secrets never travel");

    // A feeder that read an old position writes nothing.
    let stale = FeedPosition { events_after: 0, changes_after: 0, next_id: 1 };
    let moved = h.outbox.feed_position().await.unwrap();
    assert!(!h.outbox.append(stale, moved, &[]).await.unwrap());
    assert_eq!(h.outbox.feed_position().await.unwrap(), moved);
}

async fn one_daemon_delivers_a_subscription_and_gives_up_into_dead_letters(backend: Backend) {
    let h = Harness::new(backend).await;
    let now = h.sched.now();
    let sub = h
        .outbox
        .create_subscription("http://127.0.0.1:9/h", &[EventKind::PluginUploaded], "s", now)
        .await
        .unwrap();
    assert_eq!(h.outbox.subscription_secret(sub.id).await.unwrap().as_deref(), Some("s"));
    h.plugin("p", "1.0.0").await;
    assert_eq!(feeder(&h).feed().await.unwrap().appended, 1);
    let event = h.outbox.outbox(0, 10).await.unwrap().remove(0);

    let until = now + TimeDelta::seconds(30);
    assert!(h.outbox.claim_subscription(sub.id, "daemon-a", until, now).await.unwrap());
    assert!(!h.outbox.claim_subscription(sub.id, "daemon-b", until, now).await.unwrap());
    assert!(h.outbox.claim_subscription(sub.id, "daemon-a", until, now).await.unwrap(), "renewed");
    let later = until + TimeDelta::seconds(1);
    assert!(
        h.outbox.claim_subscription(sub.id, "daemon-b", later, later).await.unwrap(),
        "expired"
    );

    let dead = DeadLetter {
        subscription_id: sub.id,
        event: event.clone(),
        attempts: 3,
        error: "HTTP 500".into(),
        at: now,
    };
    let record = DeliveryRecord {
        cursor: event.id,
        delivered: 0,
        attempts: 0,
        next_attempt_at: None,
        last_error: Some("HTTP 500".into()),
        dead: Some(dead),
    };
    h.outbox.record_delivery(sub.id, "daemon-a", &record).await.unwrap();
    assert!(h.outbox.dead_letters(None).await.unwrap().is_empty(), "daemon-a lost its claim");
    h.outbox.record_delivery(sub.id, "daemon-b", &record).await.unwrap();
    let letters = h.outbox.dead_letters(Some(sub.id)).await.unwrap();
    assert_eq!((letters.len(), letters[0].event.id, letters[0].attempts), (1, event.id, 3));
    let listed = h.outbox.subscriptions().await.unwrap();
    assert_eq!((listed[0].cursor, listed[0].last_error.as_deref()), (event.id, Some("HTTP 500")));

    assert!(h.outbox.remove_dead_letter(sub.id, event.id).await.unwrap());
    assert!(h.outbox.dead_letters(None).await.unwrap().is_empty());
    assert!(h.outbox.delete_subscription(sub.id).await.unwrap());
    assert!(!h.outbox.delete_subscription(sub.id).await.unwrap());
    assert!(h.outbox.subscriptions().await.unwrap().is_empty());
}
