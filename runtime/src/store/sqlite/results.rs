//! Reading results (written by the writer: `writer::ops::submit`).

use sqlx::SqlitePool;

use super::rows;
use crate::scheduler::StoredResult;
use crate::store::StoreResult;

pub async fn results(pool: &SqlitePool, run_id: i64) -> StoreResult<Vec<StoredResult>> {
    let sql = format!(
        "SELECT {} FROM results WHERE run_id = ? ORDER BY part_id, attempt",
        rows::RESULT_COLUMNS
    );
    sqlx::query(&sql)
        .bind(run_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::result)
        .collect()
}
