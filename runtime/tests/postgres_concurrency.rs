//! Two daemons on one PostgreSQL database: two schedulers, each with its own
//! connection pool (as two `jobstack serve` processes would have), driving
//! sweeps, leases and results at the same time. Time comes from one manual
//! clock, so expiry and recurrence happen when the test says, not by sleeping.
//!
//! Promises checked: no recurring run created twice, no expired lease
//! regenerated twice, no part leased twice, every result applied once,
//! work created by one daemon wakes the agents waiting on the other, a
//! run's lease mark never passes a part made waiting while it advanced, and
//! daemons opening one database at once all open it, each putting back the
//! functions of its `migrations/postgres/functions/`.

#[allow(dead_code)]
#[path = "scheduler/harness.rs"]
mod harness;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use harness::{Harness, ParamsSplitter, finished, postgres_store, scratch_database};
use jobstack::scheduler::{
    Agent, AgentRegistration, Frequency, ManualClock, ResultAck, Scheduler, State, TaskSpec,
};
use jobstack::store::postgres::{PgSettings, ScratchDatabase};
use jobstack::store::{PostgresStore, Store};

/// Two schedulers ("daemons") over one fresh database, sharing a clock.
struct TwoDaemons {
    a: Scheduler,
    b: Scheduler,
    /// The second daemon's store, to listen for the first one's work.
    store_b: jobstack::store::PostgresStore,
    /// The first daemon's store, for SQL of the tests' own.
    store_a: jobstack::store::PostgresStore,
    clock: ManualClock,
    _db: ScratchDatabase,
}

impl TwoDaemons {
    async fn new() -> Self {
        let (store_a, db) = postgres_store().await;
        let store_b =
            jobstack::store::PostgresStore::connect(&db.url()).await.expect("second daemon's pool");
        let clock = ManualClock::fixed();
        let daemon = |store: Arc<dyn Store>| {
            Scheduler::new(store, Arc::new(clock.clone()), Arc::new(ParamsSplitter))
        };
        Self {
            a: daemon(Arc::new(store_a.clone())),
            b: daemon(Arc::new(store_b.clone())),
            store_b,
            store_a,
            clock,
            _db: db,
        }
    }

    /// A task of plugin `test` with `n` parts.
    async fn task(&self, name: &str, n: usize, frequency: Frequency) -> i64 {
        let store = self.a.store();
        if store.latest_plugin("test").await.unwrap().is_none() {
            let record = harness::plugin_record("test", "1", self.a.now());
            store.put_plugin(&record).await.unwrap();
        }
        let mut spec = TaskSpec::new(name, "test");
        spec.params = serde_json::json!({ "parts": Harness::labels(n) });
        spec.timeout_ms = 60_000;
        spec.retries = 3;
        spec.frequency = frequency;
        self.a.create_task(&spec, &serde_json::json!({})).await.unwrap().id
    }

    async fn agent(&self, name: &str) -> Agent {
        let registration = AgentRegistration {
            name: name.into(),
            networks: vec![],
            plugins: vec![],
            pooled_slots: 1,
            dedicated_slots: 0,
        };
        self.a
            .store()
            .register_agent(&registration, &format!("token-{name}"), self.a.now())
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recurring_run_is_created_by_one_daemon() {
    let d = TwoDaemons::new().await;
    // No parts: each run finishes as soon as it is split, so the next
    // occurrence is never held back by an active run.
    let task = d.task("every-minute", 0, Frequency::Every { seconds: 60 }).await;
    let rounds = 30;
    let mut scheduled = Vec::new();
    for _ in 0..rounds {
        let (ra, rb) = tokio::join!(d.a.tick(), d.b.tick());
        scheduled.extend(ra.unwrap().scheduled);
        scheduled.extend(rb.unwrap().scheduled);
        d.clock.advance(Duration::from_secs(60));
    }
    let runs = d.a.store().runs(Some(task)).await.unwrap();
    assert_eq!(runs.len(), rounds, "one run per occurrence");
    assert_eq!(scheduled.len(), rounds, "each created by exactly one daemon");
    let distinct: HashSet<i64> = scheduled.iter().copied().collect();
    assert_eq!(distinct.len(), rounds);
    assert!(runs.iter().all(|r| r.state == State::Finished));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_expired_lease_is_regenerated_by_one_daemon() {
    let d = TwoDaemons::new().await;
    let parts = 300;
    d.task("expiring", parts, Frequency::Once { at: None }).await;
    d.a.tick().await.unwrap();
    // One agent per part (one part per run per agent), leasing through both.
    let mut leased = Vec::new();
    for i in 0..parts {
        let agent = d.agent(&format!("agent-{i}")).await;
        let sched = if i % 2 == 0 { &d.a } else { &d.b };
        leased.push(sched.lease(&agent).await.unwrap().expect("a part"));
    }
    d.clock.advance(Duration::from_secs(3600));
    let (ra, rb) = tokio::join!(d.a.tick(), d.b.tick());
    let mut expired = ra.unwrap().expired;
    expired.extend(rb.unwrap().expired);
    assert_eq!(expired.len(), parts, "every lease expired once");
    let distinct: HashSet<i64> = expired.iter().map(|l| l.part_id).collect();
    assert_eq!(distinct.len(), parts, "no lease expired twice");
    let run_id = leased[0].run_id;
    for part in d.a.store().parts(run_id).await.unwrap() {
        assert_eq!(part.state, State::Waiting, "part {} retried", part.id);
        assert_eq!(part.attempt, 1, "part {} counted once", part.id);
    }
    let requeued =
        d.a.store()
            .events(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.from == Some(State::Running) && e.to == Some(State::Waiting))
            .count();
    assert_eq!(requeued, parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_part_is_leased_twice_and_every_result_applies_once() {
    let d = Arc::new(TwoDaemons::new().await);
    let parts = 2000;
    d.task("busy", parts, Frequency::Once { at: None }).await;
    d.a.tick().await.unwrap();
    let mut workers = Vec::new();
    for i in 0..8 {
        let agent = d.agent(&format!("worker-{i}")).await;
        let d = d.clone();
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                // Alternate daemons; sweeps run meanwhile on both.
                let (mine, other) =
                    if done.len() % 2 == i % 2 { (&d.a, &d.b) } else { (&d.b, &d.a) };
                let Some(lease) = mine.lease(&agent).await.unwrap() else {
                    break;
                };
                let result = finished(&lease);
                // The same result sent to both daemons at once: one applies it.
                let (x, y) =
                    tokio::join!(mine.submit(&agent, &result), other.submit(&agent, &result));
                let mut acks = [x.unwrap(), y.unwrap()];
                acks.sort_by_key(|a| format!("{a:?}"));
                assert_eq!(acks, [ResultAck::Applied, ResultAck::Duplicate]);
                if done.len() % 50 == 0 {
                    let (ta, tb) = tokio::join!(mine.tick(), other.tick());
                    assert!(ta.unwrap().expired.is_empty() && tb.unwrap().expired.is_empty());
                }
                done.push(lease.part_id);
            }
            done
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    assert_eq!(all.len(), parts, "every part leased");
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), parts, "no part leased twice");
    let run = &d.a.store().runs(None).await.unwrap()[0];
    assert_eq!(run.state, State::Finished);
    assert_eq!(run.parts.finished, parts as u64);
    let results = d.a.store().results(run.id).await.unwrap();
    assert_eq!(results.len(), parts, "one result per part");
    assert!(results.iter().all(|r| r.applied && r.submission.attempt == 1));
    assert!(
        d.a.store()
            .parts(run.id)
            .await
            .unwrap()
            .iter()
            .all(|p| p.attempt == 1 && p.state == State::Finished)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_made_by_one_daemon_wakes_the_other() {
    let d = TwoDaemons::new().await;
    let task = d.task("wake", 3, Frequency::Manual).await;
    let task = d.a.store().task(task).await.unwrap().unwrap();
    let agent = d.agent("waiting-on-b").await;
    // A long-poll of the agent on daemon B, between two looks.
    let mut waiter = d.b.work_signal().waiter(agent.id);
    waiter.look().found(false);
    let listener = tokio::spawn(d.store_b.clone().listen_for_work(d.b.work_signal().clone()));
    // The listener wakes every waiter once when it is connected (announcements
    // made before were missed): wait for that, then for daemon A's run.
    tokio::time::timeout(Duration::from_secs(30), waiter.woken())
        .await
        .expect("listener connected");
    waiter.look().found(false);
    d.a.force_run(&task).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), waiter.woken())
        .await
        .expect("daemon B woken by daemon A's NOTIFY");
    let look = waiter.look();
    let lease = d.b.lease(&agent).await.unwrap();
    assert!(lease.is_some());
    look.found(true);
    listener.abort();
}

/// The lease marks (`jobstack_advance_lease_mark` and the trigger
/// `parts_lower_lease_mark`), raced directly in SQL: an advance (in one
/// daemon's transaction) and a part made waiting below it (in another's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_mark_never_passes_a_part_made_waiting_meanwhile() {
    let d = TwoDaemons::new().await;
    d.task("marked", 1_000, Frequency::Once { at: None }).await;
    d.a.tick().await.unwrap();
    let held = d.a.lease(&d.agent("holder").await).await.unwrap().unwrap();
    let (a, b) = (d.store_a.pool(), d.store_b.pool());
    let (run, rank): (i64, i64) = sqlx::query_as("SELECT id, rank FROM runs WHERE id = $1")
        .bind(held.run_id)
        .fetch_one(a)
        .await
        .unwrap();
    // Parts 1 to 499 done (as if leased and finished); part 0 still held.
    sqlx::query("UPDATE parts SET state = 'finished' WHERE run_id = $1 AND seq BETWEEN 1 AND 499")
        .bind(run)
        .execute(a)
        .await
        .unwrap();
    let mark = || async {
        sqlx::query_scalar::<_, i64>("SELECT seq FROM lease_marks WHERE run_id = $1")
            .bind(run)
            .fetch_optional(a)
            .await
            .unwrap()
    };
    let advance = "SELECT jobstack_advance_lease_mark($1, $2)";
    let make_waiting = "UPDATE parts SET state = 'waiting' WHERE run_id = $1 AND seq = $2";

    // An advance holds its transaction open; meanwhile part 0 is made
    // waiting: that waits for the advance, then lowers the advanced mark.
    let mut advancing = a.begin().await.unwrap();
    sqlx::query(advance).bind(run).bind(rank).execute(&mut *advancing).await.unwrap();
    let lowering = tokio::spawn({
        let b = b.clone();
        async move {
            sqlx::query(make_waiting).bind(run).bind(0_i64).execute(&b).await.unwrap();
        }
    });
    wait_for_a_blocked_advisory_lock(a).await;
    advancing.commit().await.unwrap();
    lowering.await.unwrap();
    assert_eq!(mark().await, Some(0), "the lowering came after the advance");

    // Parts 0 to 499 done again; an advance moves the mark to 500.
    sqlx::query("UPDATE parts SET state = 'finished' WHERE run_id = $1 AND seq = 0")
        .bind(run)
        .execute(a)
        .await
        .unwrap();
    sqlx::query(advance).bind(run).bind(rank).execute(a).await.unwrap();
    assert_eq!(mark().await, Some(500));

    // A lowering holds its transaction open (part 7 made waiting); an
    // advance meanwhile gives up rather than read past part 7.
    let mut lowering = b.begin().await.unwrap();
    sqlx::query(make_waiting).bind(run).bind(7_i64).execute(&mut *lowering).await.unwrap();
    sqlx::query(advance).bind(run).bind(rank).execute(a).await.unwrap();
    lowering.commit().await.unwrap();
    assert_eq!(mark().await, Some(7));
    // And the next lease takes part 7 first.
    let next = d.b.lease(&d.agent("next").await).await.unwrap().unwrap();
    assert_eq!(next.part.label, "p7");
}

/// Wait until a session of this database waits for a lease mark's advisory
/// lock (a lowering queued behind an advance), polling the lock table.
async fn wait_for_a_blocked_advisory_lock(pool: &sqlx::PgPool) {
    for _ in 0..10_000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = 27252 AND database = \
             (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the lowering never waited for the advance's lock");
}

/// The functions and the trigger the store applies at every open, after the
/// migrations.
const FUNCTIONS: [&str; 7] = [
    "jobstack_advance_lease_mark",
    "jobstack_finish_and_lease",
    "jobstack_lease",
    "jobstack_lease_in",
    "jobstack_lower_lease_mark",
    "jobstack_submit",
    "jobstack_submit_and_lease",
];

/// Daemons starting together on a fresh database: every open migrates (once,
/// under sqlx's lock) and replaces every function (under the store's lock of
/// its own); none fails. A function or trigger changed in the database since
/// is put back by the next open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_opening_one_database_at_once_all_open_it() {
    let db = scratch_database().await;
    let settings = PgSettings { max_connections: 2, ..PgSettings::default() };
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (url, settings) = (db.url(), settings.clone());
        opening.spawn(async move { PostgresStore::connect_with(&url, &settings).await });
    }
    let mut stores = Vec::new();
    while let Some(opened) = opening.join_next().await {
        stores.push(opened.unwrap().expect("every daemon opens the database"));
    }
    let pool = stores[0].pool();
    let texts = |sql: &'static str| async move {
        sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await.unwrap()
    };
    let functions = || {
        texts(
            "SELECT proname::TEXT FROM pg_proc \
             WHERE pronamespace = 'public'::regnamespace ORDER BY proname",
        )
    };
    let trigger = || {
        texts(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger \
             WHERE tgrelid = 'parts'::regclass AND NOT tgisinternal",
        )
    };
    let advance_body =
        || texts("SELECT prosrc FROM pg_proc WHERE proname = 'jobstack_advance_lease_mark'");
    assert_eq!(functions().await, FUNCTIONS);
    let live_trigger = trigger().await;
    assert_eq!(live_trigger.len(), 1, "{live_trigger:?}");
    assert!(
        live_trigger[0].contains("parts_lower_lease_mark AFTER UPDATE OF state ON public.parts"),
        "{live_trigger:?}"
    );
    let live_body = advance_body().await;
    assert_eq!(live_body.len(), 1, "one jobstack_advance_lease_mark: {live_body:?}");
    assert!(live_body[0].contains("pg_try_advisory_xact_lock(27252"));

    // Someone changes a function and drops the trigger; the next open puts
    // both back as their files have them.
    sqlx::raw_sql(
        "CREATE OR REPLACE FUNCTION jobstack_advance_lease_mark(p_run BIGINT, p_rank BIGINT) \
         RETURNS VOID LANGUAGE plpgsql AS $$ BEGIN END $$; \
         DROP TRIGGER parts_lower_lease_mark ON parts;",
    )
    .execute(pool)
    .await
    .unwrap();
    assert!(trigger().await.is_empty());
    let reopened = PostgresStore::connect_with(&db.url(), &settings).await.expect("open again");
    assert_eq!(advance_body().await, live_body);
    assert_eq!(trigger().await, live_trigger);
    assert_eq!(functions().await, FUNCTIONS);
    reopened.close().await;
    for store in stores {
        store.close().await;
    }
}
