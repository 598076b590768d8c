//! The agent loop in-process against a scripted link: the daemon "away" while
//! the module downloads and while the result is sent must cost the part
//! nothing; the result reaches the scheduler exactly as executed, and the spool
//! is empty afterwards. A refused result is dropped, not retried forever. A
//! result's answer that brings the next part has it run on the same slot.
//!
//! Uses the `fixture-steps` plugin built in `plugins/` (scripts/build-plugins.sh).

mod common;

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobstack::agent::{AgentLink, AgentLoop, AgentSettings, LinkError, Spool};
use jobstack::artifacts::ArtifactStore;
use jobstack::engine::{Engine, EngineConfig, Sha256};
use jobstack::protocol::{HeartbeatAck, Lease, LeaseRef, ResultAck, ResultAnswer, Submission};
use jobstack::scheduler::{NewPart, ResultStatus};

fn steps_wasm() -> Vec<u8> {
    common::plugin_bytes("fixture-steps")
}

/// A link that hands out one lease, fails the first calls of each kind as a
/// daemon that is away would, and records what it was sent.
struct ScriptedLink {
    wasm: Vec<u8>,
    lease: Mutex<Option<Lease>>,
    module_failures: Mutex<u32>,
    submit_failures: Mutex<u32>,
    refuse_results: bool,
    submitted: Mutex<Vec<Submission>>,
    /// Leases answered with results that ask for the next part (last first).
    chained: Mutex<Vec<Lease>>,
    /// Whether each delivered result asked for the next part.
    asked_for_next: Mutex<Vec<bool>>,
}

impl ScriptedLink {
    /// A link serving `wasm` that hands out `lease`, failing no call.
    fn new(wasm: Vec<u8>, lease: Lease) -> Self {
        Self {
            wasm,
            lease: Mutex::new(Some(lease)),
            module_failures: Mutex::new(0),
            submit_failures: Mutex::new(0),
            refuse_results: false,
            submitted: Mutex::new(Vec::new()),
            chained: Mutex::new(Vec::new()),
            asked_for_next: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl AgentLink for ScriptedLink {
    async fn lease(&self, wait: Duration) -> Result<Option<Lease>, LinkError> {
        let lease = self.lease.lock().unwrap().take();
        if lease.is_none() {
            tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
        }
        Ok(lease)
    }

    async fn heartbeat(&self, leases: &[LeaseRef]) -> Result<HeartbeatAck, LinkError> {
        Ok(HeartbeatAck { extended: leases.to_vec(), ..HeartbeatAck::default() })
    }

    async fn progress(&self, _: LeaseRef, _: u64, _: u64) -> Result<(), LinkError> {
        Ok(())
    }

    async fn submit(
        &self, result: &Submission, lease_next: bool,
    ) -> Result<ResultAnswer, LinkError> {
        let mut failures = self.submit_failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(LinkError::Unavailable("connection refused".into()));
        }
        self.submitted.lock().unwrap().push(result.clone());
        self.asked_for_next.lock().unwrap().push(lease_next);
        if self.refuse_results {
            return Err(LinkError::Refused { status: 403, message: "not leased".into() });
        }
        let lease = if lease_next { self.chained.lock().unwrap().pop() } else { None };
        Ok(ResultAnswer { ack: ResultAck::Applied, lease })
    }

    async fn module(&self, _: &str) -> Result<Vec<u8>, LinkError> {
        let mut failures = self.module_failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(LinkError::Unavailable("connection refused".into()));
        }
        Ok(self.wasm.clone())
    }

    async fn artifact(&self, sha256: &str) -> Result<Vec<u8>, LinkError> {
        Err(LinkError::Refused { status: 404, message: format!("artifact {sha256} not found") })
    }
}

fn lease_of(wasm: &[u8]) -> Lease {
    serde_json::from_value(serde_json::json!({
        "part_id": 7, "run_id": 1, "task_id": 1, "attempt": 2,
        "expires_at": "2030-01-01T00:00:00Z",
        "plugin": "fixture-steps",
        "plugin_sha256": Sha256::of(wasm).as_str(),
        "params": {"parts": 1, "ms": 20, "tag": "in-process"},
        "secrets": {},
        "part": NewPart { label: "step 0".into(), targets: vec![], payload: "{\"index\":0}".into() },
        "timeout_ms": 30_000,
        "mode": "pooled",
        "grants": {}
    }))
    .expect("a lease")
}

/// Run the loop until `done` says so (bounded), then shut it down.
async fn run_until(
    link: Arc<ScriptedLink>, done: impl Fn(&ScriptedLink) -> bool,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig {
        data_dir: Some(dir.path().join("engine")),
        pooled_slots: 4,
        dedicated_slots: 1,
        pooled_threads: 2,
        ..EngineConfig::default()
    })
    .unwrap();
    let settings = AgentSettings {
        slots: 1,
        lease_wait: Duration::from_millis(50),
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(40),
        ..AgentSettings::default()
    };
    let agent = AgentLoop::new(
        link.clone(),
        engine,
        Spool::open(&dir.path().join("spool")).unwrap(),
        ArtifactStore::open(dir.path().join("artifacts")).unwrap(),
        settings,
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent.run(async {
        let _ = stop_rx.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(&link) {
        assert!(tokio::time::Instant::now() < deadline, "the agent did not get there in 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(());
    running.await.unwrap().unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_away_during_download_and_delivery_costs_the_part_nothing() {
    let wasm = steps_wasm();
    let link = Arc::new(ScriptedLink {
        module_failures: Mutex::new(3),
        submit_failures: Mutex::new(3),
        ..ScriptedLink::new(wasm.clone(), lease_of(&wasm))
    });
    let dir = run_until(link.clone(), |l| !l.submitted.lock().unwrap().is_empty()).await;

    let submitted = link.submitted.lock().unwrap().clone();
    assert_eq!(submitted.len(), 1, "delivered once: {submitted:#?}");
    let result = &submitted[0];
    assert_eq!((result.part_id, result.attempt), (7, 2));
    assert_eq!(result.status, ResultStatus::Finished, "{result:#?}");
    assert_eq!(result.output.as_ref().unwrap()["tag"], "in-process");
    assert_eq!(result.emitted.len(), 1);
    assert_eq!(*link.module_failures.lock().unwrap(), 0, "the download was retried");
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    assert!(spool.pending().unwrap().is_empty(), "the spool is empty once delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_is_dropped_not_retried_forever() {
    let wasm = steps_wasm();
    let link = Arc::new(ScriptedLink {
        refuse_results: true,
        ..ScriptedLink::new(wasm.clone(), lease_of(&wasm))
    });
    let dir = run_until(link.clone(), |l| !l.submitted.lock().unwrap().is_empty()).await;
    // Shutting down ends with a last delivery pass over the spool: a result
    // still spooled would have been sent a second time.
    assert_eq!(link.submitted.lock().unwrap().len(), 1, "sent once, then dropped");
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    assert!(spool.pending().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_comes_with_a_results_answer_runs_next_on_the_same_slot() {
    let wasm = steps_wasm();
    let with_id = |part_id: i64| Lease { part_id, ..lease_of(&wasm) };
    let link = Arc::new(ScriptedLink {
        // Popped from the end: part 8 comes with part 7's result, 9 with 8's.
        chained: Mutex::new(vec![with_id(9), with_id(8)]),
        ..ScriptedLink::new(wasm.clone(), with_id(7))
    });
    run_until(link.clone(), |l| l.submitted.lock().unwrap().len() >= 3).await;

    let submitted = link.submitted.lock().unwrap().clone();
    let parts: Vec<i64> = submitted.iter().map(|r| r.part_id).collect();
    // One slot: each part ran after the one whose answer brought it.
    assert_eq!(parts, [7, 8, 9], "{submitted:#?}");
    for result in &submitted {
        assert_eq!(result.status, ResultStatus::Finished, "{result:#?}");
        assert_eq!(result.output.as_ref().unwrap()["tag"], "in-process");
    }
    // Every result asked for the next part; the last got none, and the loop
    // went back to leasing (the scripted link had no more).
    assert_eq!(*link.asked_for_next.lock().unwrap(), [true, true, true]);
    assert!(link.chained.lock().unwrap().is_empty());
}
