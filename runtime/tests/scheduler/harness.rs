//! The test harness: a real store with its migrations applied, a manual clock,
//! and a splitter that takes the parts from the task parameters.
//!
//! Every test is an `async fn(Backend)`; [`store_tests!`] instantiates it once
//! per store, so the SQLite and PostgreSQL backends pass one suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobstack::inventory::{InventorySelection, InventoryStore};
use jobstack::notify::OutboxStore;
use jobstack::scheduler::{
    Agent, AgentRegistration, Lease, ManualClock, NewPart, Priority, ResultStatus, Run, Scheduler,
    Splitter, State, Submission, Task, TaskSpec,
};
use jobstack::store::postgres::{PgSettings, ScratchDatabase};
use jobstack::store::{PluginRecord, PostgresStore, SqliteStore, Store};
use sha2::{Digest, Sha256};

/// Which store a test runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// The embedded default: a fresh file in a temporary directory.
    Sqlite,
    /// A fresh database on the server of [`postgres_url`], dropped at the end.
    Postgres,
}

/// The PostgreSQL server tests use: `JOBSTACK_TEST_POSTGRES`, else the local
/// one that `scripts/postgres.sh` starts.
pub fn postgres_url() -> String {
    std::env::var("JOBSTACK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Connections per test store: tests run in parallel against one server.
const TEST_POOL: u32 = 4;

/// A fresh, empty database on the test server (dropped with the guard).
/// Fails loudly when the server cannot be reached.
pub async fn scratch_database() -> ScratchDatabase {
    let url = postgres_url();
    ScratchDatabase::create(&url, "jobstack_test").await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} unavailable (run scripts/postgres.sh): {e}")
    })
}

/// A migrated PostgreSQL store in a fresh database (which the returned guard
/// drops). Fails loudly when the server cannot be reached.
pub async fn postgres_store() -> (PostgresStore, ScratchDatabase) {
    let db = scratch_database().await;
    let settings = PgSettings { max_connections: TEST_POOL, ..PgSettings::default() };
    let store =
        PostgresStore::connect_with(&db.url(), &settings).await.expect("open postgres store");
    (store, db)
}

/// The record of a plugin `name` uploaded at `now`, whose module hash is
/// derived from `version` (no module bytes: the scheduler never reads them).
pub fn plugin_record(name: &str, version: &str, now: DateTime<Utc>) -> PluginRecord {
    PluginRecord {
        sha256: hex::encode(Sha256::digest(format!("{name}@{version}"))),
        name: name.to_string(),
        version: version.to_string(),
        manifest: serde_json::json!({ "name": name, "version": version }),
        size: 1,
        uploaded_at: now,
        retired_at: None,
    }
}

/// Instantiate each named test once per backend.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Splits a run from its parameters: `{"parts": [{"label", "targets"}...]}`, or
/// fails with `{"fail": "message"}`. Stands in for a plugin's `split`, which the
/// scheduler only takes as data.
pub struct ParamsSplitter;

#[async_trait]
impl Splitter for ParamsSplitter {
    async fn split(
        &self, _plugin_sha256: &str, params: &serde_json::Value,
    ) -> Result<Vec<NewPart>, String> {
        if let Some(message) = params["fail"].as_str() {
            return Err(message.to_string());
        }
        let parts = params["parts"].as_array().cloned().unwrap_or_default();
        Ok(parts
            .iter()
            .map(|p| NewPart {
                label: p["label"].as_str().unwrap_or("part").to_string(),
                targets: p["targets"]
                    .as_array()
                    .map(|t| t.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
                payload: p.to_string(),
            })
            .collect())
    }
}

/// A scheduler over a fresh store.
pub struct Harness {
    /// The scheduler under test.
    pub sched: Scheduler,
    /// Its clock.
    pub clock: ManualClock,
    /// Its store.
    pub store: Arc<dyn Store>,
    /// The same store's inventory.
    pub inventory: Arc<dyn InventoryStore>,
    /// The same store's webhook outbox.
    pub outbox: Arc<dyn OutboxStore>,
    // Dropped after the store's users: the database goes with its connections.
    _db: Option<ScratchDatabase>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A scheduler over a fresh, migrated store of `backend`.
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        type Ports = (Arc<dyn Store>, Arc<dyn InventoryStore>, Arc<dyn OutboxStore>);
        let ((store, inventory, outbox), db): (Ports, _) = match backend {
            Backend::Sqlite => {
                let store = Arc::new(SqliteStore::open_in(dir.path()).await.expect("open sqlite"));
                ((store.clone(), store.clone(), store), None)
            }
            Backend::Postgres => {
                let (store, db) = postgres_store().await;
                let store = Arc::new(store);
                ((store.clone(), store.clone(), store), Some(db))
            }
        };
        let clock = ManualClock::fixed();
        let sched =
            Scheduler::new(store.clone(), Arc::new(clock.clone()), Arc::new(ParamsSplitter))
                .with_selection(Arc::new(InventorySelection::new(inventory.clone())));
        Self { sched, clock, store, inventory, outbox, _db: db, _dir: dir }
    }

    /// A fresh harness with agent `a`, the first run of a task `job` of
    /// `parts` parts, and `a`'s lease of the run's first part.
    pub async fn leased(backend: Backend, parts: usize) -> (Self, Agent, Run, Lease) {
        let h = Self::new(backend).await;
        let agent = h.agent("a", &[]).await;
        let run = h.run_of(&h.spec("job", Self::labels(parts))).await;
        let lease = h.lease(&agent).await;
        (h, agent, run, lease)
    }

    /// The SQLite store's database file (`None` on PostgreSQL).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        self._db.is_none().then(|| self._dir.path().join(jobstack::store::sqlite::DATABASE_FILE))
    }

    /// Upload a plugin `name` whose module hash is derived from `version`.
    pub async fn plugin(&self, name: &str, version: &str) -> PluginRecord {
        let record = plugin_record(name, version, self.sched.now());
        self.store.put_plugin(&record).await.expect("put plugin");
        record
    }

    /// Register agents of these names, without networks.
    pub async fn agents<const N: usize>(&self, names: [&str; N]) -> [Agent; N] {
        let mut agents = Vec::with_capacity(N);
        for name in names {
            agents.push(self.agent(name, &[]).await);
        }
        agents.try_into().unwrap_or_else(|_| unreachable!("one agent per name"))
    }

    /// Register an agent with networks (CIDRs).
    pub async fn agent(&self, name: &str, networks: &[&str]) -> Agent {
        self.agent_serving(name, networks, &[]).await
    }

    /// Register an agent with networks (CIDRs) that serves only `plugins`
    /// (every plugin when empty).
    pub async fn agent_serving(&self, name: &str, networks: &[&str], plugins: &[&str]) -> Agent {
        let registration = AgentRegistration {
            name: name.to_string(),
            networks: networks.iter().map(|n| n.parse().expect("CIDR")).collect(),
            plugins: plugins.iter().map(|p| p.to_string()).collect(),
            pooled_slots: 4,
            dedicated_slots: 1,
        };
        self.store
            .register_agent(&registration, &format!("token-of-{name}"), self.sched.now())
            .await
            .expect("register agent")
    }

    /// A task spec of plugin `test` (uploaded on first use) with these parts.
    pub fn spec(&self, name: &str, parts: serde_json::Value) -> TaskSpec {
        let mut spec = TaskSpec::new(name, "test");
        spec.params = serde_json::json!({ "parts": parts });
        spec.timeout_ms = 60_000;
        spec
    }

    /// Create a task (uploading plugin `test` if needed).
    pub async fn task(&self, spec: &TaskSpec) -> Task {
        if self.store.latest_plugin(&spec.plugin).await.unwrap().is_none() {
            self.plugin(&spec.plugin, "1.0.0").await;
        }
        self.sched
            .create_task(spec, &serde_json::json!({ "community": "s3cret" }))
            .await
            .expect("create task")
    }

    /// Create a task and its first run (by the sweep), returning the run.
    pub async fn run_of(&self, spec: &TaskSpec) -> Run {
        let task = self.task(spec).await;
        let report = self.sched.tick().await.expect("tick");
        let runs = self.store.runs(Some(task.id)).await.unwrap();
        assert_eq!(runs.len(), 1, "one run after the first tick: {report:?}");
        runs.into_iter().next().unwrap()
    }

    /// `parts` labelled `p0`, `p1`, ... without targets.
    pub fn labels(n: usize) -> serde_json::Value {
        serde_json::Value::Array(
            (0..n).map(|i| serde_json::json!({ "label": format!("p{i}") })).collect(),
        )
    }

    /// Lease for `agent`, expecting a part; returns the lease.
    pub async fn lease(&self, agent: &Agent) -> Lease {
        self.sched
            .lease(agent)
            .await
            .expect("lease")
            .unwrap_or_else(|| panic!("agent {} got no part", agent.registration.name))
    }

    /// Lease for `agent`, expecting nothing.
    pub async fn lease_none(&self, agent: &Agent) {
        let got = self.sched.lease(agent).await.expect("lease");
        assert!(
            got.is_none(),
            "agent {} got {:?}",
            agent.registration.name,
            got.map(|l| l.part.label)
        );
    }

    /// Run `id`'s state now.
    pub async fn run_state(&self, id: i64) -> State {
        let run = self.store.run(id).await.expect("read the run");
        run.unwrap_or_else(|| panic!("run {id} not found")).state
    }

    /// Move the clock.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// A result for `lease` with `status`.
pub fn result(lease: &Lease, status: ResultStatus) -> Submission {
    Submission {
        part_id: lease.part_id,
        attempt: lease.attempt,
        status,
        output: (status == ResultStatus::Finished)
            .then(|| serde_json::json!({ "label": lease.part.label })),
        error: (status != ResultStatus::Finished).then(|| "it broke".to_string()),
        emitted: vec![serde_json::json!({ "found": lease.part.label })],
        logs: Vec::new(),
        started_at: None,
        duration_ms: 5,
    }
}

/// A finished result for `lease`.
pub fn finished(lease: &Lease) -> Submission {
    result(lease, ResultStatus::Finished)
}

/// Shorthand for a priority in specs.
pub fn prio(p: &str) -> Priority {
    p.parse().expect("priority")
}
