//! The batch's rules against a real PostgreSQL server (a scratch database
//! per test; `JOBSTACK_TEST_POSTGRES` or the local server that
//! `scripts/postgres.sh` starts).

use super::*;
use crate::scheduler::{
    AgentRegistration, Frequency, NewPart, Run, Scheduler, Splitter, State, SystemClock, TaskSpec,
};
use crate::store::postgres::{PostgresStore, ScratchDatabase};
use crate::store::{PluginRecord, Store, StoreReads};
use async_trait::async_trait;
use std::sync::Arc;

/// Splits a run into `params.parts` parts labelled `p0`, `p1`, ...
struct Numbered;

#[async_trait]
impl Splitter for Numbered {
    async fn split(&self, _: &str, params: &serde_json::Value) -> Result<Vec<NewPart>, String> {
        let n = params["parts"].as_u64().unwrap_or(0);
        Ok((0..n)
            .map(|i| NewPart { label: format!("p{i}"), targets: vec![], payload: String::new() })
            .collect())
    }
}

struct Fixture {
    store: PostgresStore,
    sched: Scheduler,
    db: ScratchDatabase,
}

impl Fixture {
    async fn new() -> Self {
        let url = std::env::var("JOBSTACK_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let db = ScratchDatabase::create(&url, "jobstack_finish_batch").await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} unavailable (run scripts/postgres.sh): {e}")
        });
        let store = PostgresStore::connect(&db.url()).await.expect("open store");
        let sched =
            Scheduler::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(Numbered));
        for plugin in ["alpha", "beta"] {
            store
                .put_plugin(&PluginRecord {
                    sha256: format!("{plugin:0>64}"),
                    name: plugin.into(),
                    version: "1".into(),
                    manifest: serde_json::json!({}),
                    size: 1,
                    uploaded_at: sched.now(),
                    retired_at: None,
                })
                .await
                .expect("plugin");
        }
        Self { store, sched, db }
    }

    async fn agent(&self, name: &str, plugins: &[&str]) -> Agent {
        let registration = AgentRegistration {
            name: name.into(),
            networks: vec![],
            plugins: plugins.iter().map(|p| p.to_string()).collect(),
            pooled_slots: 1,
            dedicated_slots: 0,
        };
        self.store
            .register_agent(&registration, &format!("token-{name}"), self.sched.now())
            .await
            .expect("agent")
    }

    async fn run(&self, name: &str, plugin: &str, parts: u64) -> Run {
        let mut spec = TaskSpec::new(name, plugin);
        spec.params = serde_json::json!({ "parts": parts });
        spec.frequency = Frequency::Manual;
        let task = self.sched.create_task(&spec, &serde_json::json!({})).await.expect("task");
        self.sched.force_run(&task).await.expect("run")
    }

    async fn lease(&self, agent: &Agent) -> Lease {
        self.store.lease(agent, self.sched.now()).await.expect("lease").expect("a part to lease")
    }

    /// Apply the finished results of `held` as one batch; each caller's
    /// answer, in order.
    async fn finish(&self, held: &[(&Agent, &Lease)]) -> Vec<Answer> {
        let mut answers = Vec::new();
        let batch = held
            .iter()
            .map(|(agent, lease)| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Finish {
                    agent: (*agent).clone(),
                    submission: finished(lease.part_id, lease.attempt),
                    now: self.sched.now(),
                    reply,
                }
            })
            .collect();
        apply(self.store.pool(), batch).await;
        let mut out = Vec::new();
        for answer in answers {
            out.push(answer.await.expect("every caller is answered"));
        }
        out
    }

    /// Agents `a` and `b`, each holding a part of a new five-part run.
    async fn two_holding(&self) -> ((Agent, Lease), (Agent, Lease)) {
        self.run("alpha-run", "alpha", 5).await;
        let a = self.agent("a", &[]).await;
        let b = self.agent("b", &[]).await;
        let la = self.lease(&a).await;
        let lb = self.lease(&b).await;
        ((a, la), (b, lb))
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.store.pool()).await.expect(sql)
    }

    async fn close(self) {
        self.store.close().await;
        self.db.drop_now().await.expect("drop scratch database");
    }
}

fn finished(part_id: i64, attempt: u32) -> Submission {
    Submission {
        part_id,
        attempt,
        status: ResultStatus::Finished,
        output: Some(serde_json::json!({ "part": part_id })),
        error: None,
        emitted: vec![],
        logs: vec![],
        started_at: None,
        duration_ms: 3,
    }
}

fn applied(answer: Answer) -> Option<Lease> {
    match answer {
        Ok((ResultAck::Applied, lease)) => lease,
        other => panic!("expected an applied result, got {other:?}"),
    }
}

fn request(agent_id: i64, part_id: i64) -> Finish {
    let (reply, _) = oneshot::channel();
    Finish {
        agent: Agent {
            id: agent_id,
            registration: AgentRegistration {
                name: format!("agent-{agent_id}"),
                networks: Vec::new(),
                plugins: Vec::new(),
                pooled_slots: 1,
                dedicated_slots: 0,
            },
            last_seen: DateTime::UNIX_EPOCH,
            down_since: None,
        },
        submission: finished(part_id, 1),
        now: DateTime::UNIX_EPOCH,
        reply,
    }
}

fn parts(requests: &[Finish]) -> Vec<i64> {
    requests.iter().map(|r| r.submission.part_id).collect()
}

#[test]
fn a_batch_takes_one_request_per_agent_in_arrival_order() {
    let mut waiting: VecDeque<Finish> = [(1, 10), (2, 20), (1, 11), (3, 30), (2, 21), (1, 12)]
        .into_iter()
        .map(|(agent, part)| request(agent, part))
        .collect();
    assert_eq!(parts(&take_batch(&mut waiting)), [10, 20, 30]);
    assert_eq!(parts(&take_batch(&mut waiting)), [11, 21]);
    assert_eq!(parts(&take_batch(&mut waiting)), [12]);
    assert!(waiting.is_empty());
}

#[test]
fn a_batch_is_bounded() {
    let total = MAX_BATCH as i64 + 5;
    let mut waiting: VecDeque<Finish> = (0..total).map(|agent| request(agent, agent)).collect();
    assert_eq!(take_batch(&mut waiting).len(), MAX_BATCH);
    let left: Vec<Finish> = waiting.into();
    assert_eq!(parts(&left), (MAX_BATCH as i64..total).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_applies_each_result_and_leases_each_agent_its_own_next_part() {
    let f = Fixture::new().await;
    let alpha = f.run("alpha-run", "alpha", 6).await;
    let beta = f.run("beta-run", "beta", 3).await;
    let any = f.agent("any", &[]).await;
    let only_beta = f.agent("only-beta", &["beta"]).await;
    let also_any = f.agent("also-any", &[]).await;
    let first = [f.lease(&any).await, f.lease(&only_beta).await, f.lease(&also_any).await];
    let runs: Vec<i64> = first.iter().map(|l| l.run_id).collect();
    assert_eq!(runs, [alpha.id, beta.id, alpha.id]);

    let answers =
        f.finish(&[(&any, &first[0]), (&only_beta, &first[1]), (&also_any, &first[2])]).await;
    let next: Vec<Lease> = answers.into_iter().map(|a| applied(a).expect("a next lease")).collect();
    // Each takes the next part in split order of a run it may take from.
    let labels: Vec<&str> = next.iter().map(|l| l.part.label.as_str()).collect();
    assert_eq!(labels, ["p2", "p1", "p3"]);
    assert_eq!(next[1].run_id, beta.id);
    assert_eq!(next[1].plugin, "beta");
    assert!(next.iter().all(|l| l.attempt == 1));

    let recorded =
        f.count("SELECT count(*) FROM results WHERE status = 'finished' AND applied").await;
    assert_eq!(recorded, 3);
    let ended = f
        .count("SELECT count(*) FROM leases WHERE end_reason = 'result' AND ended_at IS NOT NULL")
        .await;
    assert_eq!(ended, 3);
    let running = f.count("SELECT count(*) FROM parts WHERE state = 'running'").await;
    assert_eq!(running, 3);
    let moves = f
        .count(
            "SELECT count(*) FROM events WHERE entity = 'part' \
             AND from_state = 'running' AND to_state = 'finished'",
        )
        .await;
    assert_eq!(moves, 3);
    for lease in &next {
        let part = f.store.part(lease.part_id).await.unwrap().unwrap();
        assert_eq!(part.attempt, 1);
    }
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_not_held_as_assumed_is_judged_alone_and_its_neighbours_applied() {
    let f = Fixture::new().await;
    let ((a, la), (b, lb)) = f.two_holding().await;
    // b reports on a's part: the batch's compare-and-set fails for it.
    let answers = f.finish(&[(&a, &la), (&b, &la)]).await;
    let mut answers = answers.into_iter();
    assert!(applied(answers.next().unwrap()).is_some());
    match answers.next().unwrap() {
        Err(StoreError::NotLeased { part_id, agent, .. }) => {
            assert_eq!((part_id, agent.as_str()), (la.part_id, "b"));
        }
        other => panic!("expected NotLeased, got {other:?}"),
    }
    // b's own lease is untouched.
    let part = f.store.part(lb.part_id).await.unwrap().unwrap();
    assert_eq!(part.owner.as_deref(), Some("b"));
    let recorded = f.count("SELECT count(*) FROM results").await;
    assert_eq!(recorded, 1);
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_already_recorded_undoes_the_batch_and_each_item_is_applied_alone() {
    let f = Fixture::new().await;
    let ((a, la), (b, lb)) = f.two_holding().await;
    // A copy of b's result got in first, leaving the part running (as a
    // result recorded without a change does): the batch's insert meets it.
    sqlx::query(
        "INSERT INTO results (part_id, attempt, run_id, agent, status, emitted, logs, \
         duration_ms, applied, received_at) \
         SELECT id, attempt, run_id, owner, 'finished', '[]', '[]', 0, false, 0 \
         FROM parts WHERE id = $1",
    )
    .bind(lb.part_id)
    .execute(f.store.pool())
    .await
    .unwrap();
    let answers = f.finish(&[(&a, &la), (&b, &lb)]).await;
    let mut answers = answers.into_iter();
    assert!(applied(answers.next().unwrap()).is_some());
    match answers.next().unwrap() {
        Ok((ResultAck::Duplicate, None)) => {}
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // a's result once, b's the copy only; a's next lease once.
    let results = f.count("SELECT count(*) FROM results").await;
    assert_eq!(results, 2);
    let leases = f.count("SELECT count(*) FROM leases").await;
    assert_eq!(leases, 3);
    let finished = f.count("SELECT count(*) FROM parts WHERE state = 'finished'").await;
    assert_eq!(finished, 1);
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_finishing_a_runs_last_parts_ends_the_run() {
    let f = Fixture::new().await;
    let run = f.run("alpha-run", "alpha", 2).await;
    let a = f.agent("a", &[]).await;
    let b = f.agent("b", &[]).await;
    let la = f.lease(&a).await;
    let lb = f.lease(&b).await;
    let answers = f.finish(&[(&a, &la), (&b, &lb)]).await;
    for answer in answers {
        assert!(applied(answer).is_none(), "nothing is left to lease");
    }
    let run = f.store.run(run.id).await.unwrap().unwrap();
    assert_eq!(run.state, State::Finished);
    f.close().await;
}
