//! The SQLite store's webhooks: [`crate::store::outbox_store`]'s reads on the
//! read pool, each write plan on the writer.

use super::rows;
use super::writer::ops;
use crate::store::outbox_sql::Done;

crate::store::outbox_store::outbox_store!(super::SqliteStore, reader, sqlx::Sqlite);

impl super::SqliteStore {
    async fn run_outbox_plan(&self, plan: Plan) -> StoreResult<Done> {
        self.writer.write(move |conn| ops::outbox::run_plan(conn, &plan)).await
    }
}
