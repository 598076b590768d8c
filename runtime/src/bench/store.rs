//! The store a bench works in, made for the run and gone after it: a SQLite
//! file in a temporary directory, or a scratch PostgreSQL database (so a
//! bench never touches a real database's rows); with the `bench` plugin and
//! agents every bench of the scheduler needs.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use crate::inventory::InventoryStore;
use crate::scheduler::{Agent, AgentRegistration};
use crate::store::postgres::{PgSettings, ScratchDatabase};
use crate::store::{PluginRecord, PostgresStore, SqliteStore, Store};

/// A bench's store. [`BenchStore::close`] it once its users are dropped.
pub(super) struct BenchStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The same store's inventory.
    pub inventory: Arc<dyn InventoryStore>,
    /// The same store when it is PostgreSQL.
    pub pg: Option<PostgresStore>,
    /// `sqlite` or `postgres`.
    pub name: &'static str,
    scratch: Option<ScratchDatabase>,
    _dir: tempfile::TempDir,
}

impl BenchStore {
    /// A fresh store: in a scratch database of the PostgreSQL server at
    /// `database` (pools of `connections`), else SQLite. The plugin `bench`
    /// is uploaded.
    pub async fn open(database: Option<&str>, connections: u32) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let opened = match database {
            None => {
                let store = Arc::new(SqliteStore::open_in(dir.path()).await?);
                BenchStore {
                    store: store.clone(),
                    inventory: store,
                    pg: None,
                    name: "sqlite",
                    scratch: None,
                    _dir: dir,
                }
            }
            Some(url) => {
                let db = ScratchDatabase::create(url, "jobstack_bench").await?;
                let settings = PgSettings { max_connections: connections, ..PgSettings::default() };
                let store = PostgresStore::connect_with(&db.url(), &settings).await?;
                let shared = Arc::new(store.clone());
                BenchStore {
                    store: shared.clone(),
                    inventory: shared,
                    pg: Some(store),
                    name: "postgres",
                    scratch: Some(db),
                    _dir: dir,
                }
            }
        };
        let plugin = PluginRecord {
            sha256: "be".repeat(32),
            name: "bench".into(),
            version: "1".into(),
            manifest: serde_json::json!({}),
            size: 1,
            uploaded_at: Utc::now(),
            retired_at: None,
        };
        opened.store.put_plugin(&plugin).await?;
        Ok(opened)
    }

    /// Register agent `name`, serving every network.
    pub async fn agent(&self, name: &str, now: DateTime<Utc>) -> anyhow::Result<Agent> {
        let registration = AgentRegistration {
            name: name.into(),
            networks: vec!["0.0.0.0/0".parse()?],
            plugins: vec![],
            pooled_slots: 1,
            dedicated_slots: 0,
        };
        Ok(self.store.register_agent(&registration, &format!("bench-token-{name}"), now).await?)
    }

    /// Close the pool and drop the scratch database.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.store);
        drop(self.inventory);
        if let Some(pg) = self.pg {
            pg.close().await;
        }
        if let Some(db) = self.scratch {
            db.drop_now().await?;
        }
        Ok(())
    }
}
