//! Reading plugins, modules, agents, tasks and the event log (written by
//! the writer: `writer::ops::catalog`, `writer::ops::agents`).

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{ms, rows};
use crate::scheduler::{Agent, Event, Task};
use crate::store::{PluginRecord, StoreError, StoreResult};

pub async fn plugins(pool: &SqlitePool) -> StoreResult<Vec<PluginRecord>> {
    let sql = format!(
        "SELECT {} FROM plugins ORDER BY id DESC",
        rows::PLUGIN_COLUMNS
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::plugin)
        .collect()
}

pub async fn plugin(pool: &SqlitePool, sha256: &str) -> StoreResult<Option<PluginRecord>> {
    let sql = format!(
        "SELECT {} FROM plugins WHERE sha256 = ?",
        rows::PLUGIN_COLUMNS
    );
    sqlx::query(&sql)
        .bind(sha256)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::plugin)
        .transpose()
}

pub async fn latest_plugin(pool: &SqlitePool, name: &str) -> StoreResult<Option<PluginRecord>> {
    let sql = format!(
        "SELECT {} FROM plugins WHERE name = ? ORDER BY id DESC LIMIT 1",
        rows::PLUGIN_COLUMNS
    );
    sqlx::query(&sql)
        .bind(name)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::plugin)
        .transpose()
}

pub async fn agent_by_token(pool: &SqlitePool, token_hash: &str) -> StoreResult<Option<Agent>> {
    let sql = format!(
        "SELECT {} FROM agents WHERE token_hash = ?",
        rows::AGENT_COLUMNS
    );
    sqlx::query(&sql)
        .bind(token_hash)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::agent)
        .transpose()
}

pub async fn agents(pool: &SqlitePool) -> StoreResult<Vec<Agent>> {
    let sql = format!("SELECT {} FROM agents ORDER BY name", rows::AGENT_COLUMNS);
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::agent)
        .collect()
}

pub async fn task(pool: &SqlitePool, id: i64) -> StoreResult<Option<Task>> {
    let sql = format!("SELECT {} FROM tasks WHERE id = ?", rows::TASK_COLUMNS);
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::task)
        .transpose()
}

pub async fn task_by_name(pool: &SqlitePool, name: &str) -> StoreResult<Option<Task>> {
    let sql = format!("SELECT {} FROM tasks WHERE name = ?", rows::TASK_COLUMNS);
    sqlx::query(&sql)
        .bind(name)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::task)
        .transpose()
}

pub async fn tasks(pool: &SqlitePool) -> StoreResult<Vec<Task>> {
    let sql = format!("SELECT {} FROM tasks ORDER BY id", rows::TASK_COLUMNS);
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::task)
        .collect()
}

pub async fn task_secrets(pool: &SqlitePool, id: i64) -> StoreResult<serde_json::Value> {
    let text: Option<String> = sqlx::query_scalar("SELECT secrets FROM tasks WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let text = text.ok_or(StoreError::NotFound {
        what: "task",
        id: id.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("tasks.secrets: {e}")))
}

pub async fn due_tasks(pool: &SqlitePool, now: DateTime<Utc>) -> StoreResult<Vec<Task>> {
    let sql = format!(
        "SELECT {} FROM tasks WHERE next_run_at IS NOT NULL AND next_run_at <= ? \
         ORDER BY next_run_at, id",
        rows::TASK_COLUMNS
    );
    sqlx::query(&sql)
        .bind(ms(now))
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::task)
        .collect()
}

pub async fn events(pool: &SqlitePool, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
    let sql = format!(
        "SELECT {} FROM events WHERE id > ? ORDER BY id LIMIT ?",
        rows::EVENT_COLUMNS
    );
    sqlx::query(&sql)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::event)
        .collect()
}

pub async fn module(pool: &SqlitePool, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT bytes FROM modules WHERE sha256 = ?")
            .bind(sha256)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn has_module(pool: &SqlitePool, sha256: &str) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM modules WHERE sha256 = ?)")
            .bind(sha256)
            .fetch_one(pool)
            .await?,
    )
}
