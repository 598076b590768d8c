//! The SQLite store's inventory: the portable reads on the read pool, the
//! writes on the writer ([`super::writer::ops::inventory`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::writer::ops;
use crate::inventory::store::{IngestReport, InventoryStore, ProcessedResult};
use crate::store::StoreResult;

#[async_trait]
impl InventoryStore for SqliteStore {
    async fn ingest(&self, processed: Vec<ProcessedResult>) -> StoreResult<IngestReport> {
        self.writer.write(move |conn| ops::inventory::ingest(conn, &processed)).await
    }

    async fn sweep(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<usize> {
        self.writer.write(move |conn| ops::inventory::sweep(conn, run_id, now)).await
    }

    async fn retry_processing(&self, run_id: i64) -> StoreResult<u64> {
        self.writer.write(move |conn| ops::inventory::retry_processing(conn, run_id)).await
    }
}
