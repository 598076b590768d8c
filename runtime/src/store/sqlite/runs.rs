//! Reading runs and their parts (written by the writer:
//! `writer::ops::runs`, `writer::ops::admin`).

use sqlx::SqlitePool;

use super::rows;
use crate::scheduler::{Part, Run};
use crate::store::{StoreError, StoreResult};

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: "run",
        id: id.to_string(),
    }
}

pub async fn run(pool: &SqlitePool, id: i64) -> StoreResult<Option<Run>> {
    let sql = format!("SELECT {} FROM runs WHERE id = ?", rows::RUN_COLUMNS);
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::run)
        .transpose()
}

pub async fn runs(pool: &SqlitePool, task_id: Option<i64>) -> StoreResult<Vec<Run>> {
    let sql = format!(
        "SELECT {} FROM runs WHERE ?1 IS NULL OR task_id = ?1 ORDER BY id DESC",
        rows::RUN_COLUMNS
    );
    sqlx::query(&sql)
        .bind(task_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::run)
        .collect()
}

pub async fn active_runs(pool: &SqlitePool, task_id: i64) -> StoreResult<Vec<Run>> {
    let sql = format!(
        "SELECT {} FROM runs WHERE task_id = ? \
         AND state NOT IN ('finished', 'failed', 'canceled') ORDER BY id",
        rows::RUN_COLUMNS
    );
    sqlx::query(&sql)
        .bind(task_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::run)
        .collect()
}

pub async fn created_runs(pool: &SqlitePool) -> StoreResult<Vec<Run>> {
    let sql = format!(
        "SELECT {} FROM runs WHERE state = 'created' ORDER BY id",
        rows::RUN_COLUMNS
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::run)
        .collect()
}

pub async fn run_secrets(pool: &SqlitePool, run_id: i64) -> StoreResult<serde_json::Value> {
    let text: Option<String> = sqlx::query_scalar("SELECT secrets FROM runs WHERE id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await?;
    let text = text.ok_or_else(|| not_found(run_id))?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("runs.secrets: {e}")))
}

pub async fn parts(pool: &SqlitePool, run_id: i64) -> StoreResult<Vec<Part>> {
    let sql = format!(
        "SELECT {} FROM parts WHERE run_id = ? ORDER BY seq",
        rows::PART_COLUMNS
    );
    sqlx::query(&sql)
        .bind(run_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::part)
        .collect()
}

pub async fn part(pool: &SqlitePool, part_id: i64) -> StoreResult<Option<Part>> {
    let sql = format!("SELECT {} FROM parts WHERE id = ?", rows::PART_COLUMNS);
    sqlx::query(&sql)
        .bind(part_id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::part)
        .transpose()
}
