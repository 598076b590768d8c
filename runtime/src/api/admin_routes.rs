//! The admin API: plugins, tasks, runs, results, agents. Every route needs an
//! admin token; secrets are write-only (never in an answer).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::artifacts::check_task_artifacts;
use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::params::check_params;
use crate::module_catalog::CatalogError;
use crate::protocol::{
    Agent, ChainView, Part, PluginRecord, PluginUploaded, RerunRequest, Run, RunResults, Task,
    TaskInput, TaskView,
};

/// `POST /api/v1/plugins`: the body is the component. Validated, compiled,
/// manifest read; the same bytes twice answer 200 with `created: false`.
pub async fn upload_plugin(
    State(state): State<ApiState>, _: Admin, body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PluginUploaded>)> {
    let bytes = body?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_plugin",
            "empty upload: send the .wasm file as the body",
        ));
    }
    let plugin = state.modules.add(&bytes).await.map_err(|e| match e {
        CatalogError::Load(e) => ApiError::bad_request("invalid_plugin", e.to_string()),
        other => ApiError::Internal(format!("keeping the module: {other}")),
    })?;
    let manifest = plugin.manifest();
    let record = PluginRecord {
        sha256: plugin.sha256().to_string(),
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        manifest: serde_json::to_value(manifest).expect("manifest serializes"),
        size: plugin.size() as u64,
        uploaded_at: state.scheduler.now(),
        retired_at: None,
    };
    let created = state.scheduler.store().put_plugin(&record).await?;
    let stored = state.scheduler.store().plugin(&record.sha256).await?.unwrap_or(record);
    tracing::info!(plugin = %stored.name, version = %stored.version, sha256 = %stored.sha256, created, "plugin uploaded");
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(PluginUploaded { plugin: stored, created })))
}

/// `POST /api/v1/plugins/{name}/{version}/retire`: no new run uses the
/// version; refused (409) while something still does.
pub async fn retire_plugin(
    State(state): State<ApiState>, _: Admin, Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<PluginRecord>> {
    let store = state.scheduler.store();
    let sha256 = store.retire_plugin(&name, &version, state.scheduler.now()).await?;
    let record = store
        .plugin(&sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("plugin {name} {version} not found")))?;
    tracing::info!(plugin = %name, %version, "plugin retired");
    Ok(Json(record))
}

/// `GET /api/v1/plugins`.
pub async fn list_plugins(
    State(state): State<ApiState>, _: Admin,
) -> ApiResult<Json<Vec<PluginRecord>>> {
    Ok(Json(state.scheduler.store().plugins().await?))
}

/// Find a task by id or by name.
pub async fn find_task(state: &ApiState, key: &str) -> ApiResult<Task> {
    let store = state.scheduler.store();
    let found = match key.parse::<i64>() {
        Ok(id) => store.task(id).await?,
        Err(_) => store.task_by_name(key).await?,
    };
    found.ok_or_else(|| ApiError::NotFound(format!("task {key:?} not found")))
}

async fn view(state: &ApiState, task: Task) -> ApiResult<TaskView> {
    let latest_run = state.scheduler.store().runs(Some(task.id)).await?.into_iter().next();
    Ok(TaskView { task, latest_run })
}

/// `POST /api/v1/tasks`.
pub async fn create_task(
    State(state): State<ApiState>, _: Admin, body: Result<Json<TaskInput>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Task>)> {
    let Json(input) = body?;
    check_params(&state, &input.task).await?;
    check_task_artifacts(&state, &input.task).await?;
    let secrets = input.secrets.unwrap_or_else(|| serde_json::json!({}));
    let task = state.scheduler.create_task(&input.task, &secrets).await?;
    state.sweep.notify_one();
    Ok((StatusCode::CREATED, Json(task)))
}

/// `PUT /api/v1/tasks/{id or name}`.
pub async fn edit_task(
    State(state): State<ApiState>, _: Admin, Path(key): Path<String>,
    body: Result<Json<TaskInput>, JsonRejection>,
) -> ApiResult<Json<Task>> {
    let Json(input) = body?;
    let task = find_task(&state, &key).await?;
    check_params(&state, &input.task).await?;
    check_task_artifacts(&state, &input.task).await?;
    let updated = state.scheduler.update_task(task.id, &input.task, input.secrets.as_ref()).await?;
    state.sweep.notify_one();
    Ok(Json(updated))
}

/// `GET /api/v1/tasks`.
pub async fn list_tasks(State(state): State<ApiState>, _: Admin) -> ApiResult<Json<Vec<TaskView>>> {
    let mut views = Vec::new();
    for task in state.scheduler.store().tasks().await? {
        views.push(view(&state, task).await?);
    }
    Ok(Json(views))
}

/// `GET /api/v1/tasks/{id or name}`.
pub async fn show_task(
    State(state): State<ApiState>, _: Admin, Path(key): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let task = find_task(&state, &key).await?;
    Ok(Json(view(&state, task).await?))
}

/// `GET /api/v1/tasks/{id or name}/chain`: the task it follows and those
/// that follow it, each with its newest run.
pub async fn task_chain(
    State(state): State<ApiState>, _: Admin, Path(key): Path<String>,
) -> ApiResult<Json<ChainView>> {
    let task = find_task(&state, &key).await?;
    let store = state.scheduler.store();
    let upstream = match &task.spec.after {
        Some(trigger) => match store.task_by_name(&trigger.task).await? {
            Some(up) => Some(view(&state, up).await?),
            None => None,
        },
        None => None,
    };
    let mut downstream = Vec::new();
    for follower in store.followers().await? {
        if follower.spec.after.as_ref().is_some_and(|t| t.task == task.spec.name) {
            downstream.push(view(&state, follower).await?);
        }
    }
    Ok(Json(ChainView { upstream, downstream }))
}

/// `POST /api/v1/tasks/{id or name}/run`: force-run.
pub async fn force_run(
    State(state): State<ApiState>, _: Admin, Path(key): Path<String>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let task = find_task(&state, &key).await?;
    Ok((StatusCode::CREATED, Json(state.scheduler.force_run(&task).await?)))
}

/// `GET /api/v1/tasks/{id or name}/results`: the latest run's results.
pub async fn task_results(
    State(state): State<ApiState>, _: Admin, Path(key): Path<String>,
) -> ApiResult<Json<RunResults>> {
    let task = find_task(&state, &key).await?;
    let run = state
        .scheduler
        .store()
        .runs(Some(task.id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("task {key:?} has no run yet")))?;
    let results = state.scheduler.store().results(run.id).await?;
    Ok(Json(RunResults { run, results }))
}

/// Query of `GET /api/v1/runs`.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    task: Option<String>,
}

/// `GET /api/v1/runs?task=`.
pub async fn list_runs(
    State(state): State<ApiState>, _: Admin,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<Run>>> {
    let Query(query) = query?;
    let task_id = match &query.task {
        Some(key) => Some(find_task(&state, key).await?.id),
        None => None,
    };
    Ok(Json(state.scheduler.store().runs(task_id).await?))
}

async fn find_run(state: &ApiState, id: i64) -> ApiResult<Run> {
    state
        .scheduler
        .store()
        .run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} not found")))
}

/// `GET /api/v1/runs/{id}`.
pub async fn show_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(find_run(&state, id).await?))
}

/// `GET /api/v1/runs/{id}/parts`.
pub async fn run_parts(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Part>>> {
    find_run(&state, id).await?;
    Ok(Json(state.scheduler.parts(id).await?))
}

/// `GET /api/v1/runs/{id}/results`.
pub async fn run_results(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<RunResults>> {
    let run = find_run(&state, id).await?;
    let results = state.scheduler.store().results(id).await?;
    Ok(Json(RunResults { run, results }))
}

/// `POST /api/v1/runs/{id}/suspend`.
pub async fn suspend_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(state.scheduler.suspend(id).await?))
}

/// `POST /api/v1/runs/{id}/resume`.
pub async fn resume_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(state.scheduler.resume(id).await?))
}

/// `POST /api/v1/runs/{id}/cancel`.
pub async fn cancel_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(state.scheduler.cancel(id).await?))
}

/// `POST /api/v1/runs/{id}/rerun`.
pub async fn rerun(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>, body: Option<Json<RerunRequest>>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let request = body.map(|Json(r)| r).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(state.scheduler.rerun(id, request.failed_only).await?)))
}

/// `GET /api/v1/agents`.
pub async fn list_agents(State(state): State<ApiState>, _: Admin) -> ApiResult<Json<Vec<Agent>>> {
    Ok(Json(state.scheduler.store().agents().await?))
}
