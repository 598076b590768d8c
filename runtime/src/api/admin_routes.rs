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

/// Upload a plugin component (the body is the `.wasm` file).
///
/// Validated, compiled, manifest read; the same bytes twice answer 200 with
/// `created: false`.
#[utoipa::path(
    post, path = "/plugins", tag = "plugins", security(("adminToken" = [])),
    request_body(content = [u8], content_type = "application/wasm", description = "The component"),
    responses(
        (status = 201, description = "Stored", body = PluginUploaded),
        (status = 200, description = "Already stored", body = PluginUploaded),
    ),
)]
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

/// Retire a plugin version: no new run uses it.
///
/// Refused (409) while a run that has not ended uses it, or a task would have
/// no version left to run. The version is marked, not deleted; uploading the
/// same file again puts it back in service.
#[utoipa::path(
    post, path = "/plugins/{name}/{version}/retire", tag = "plugins",
    security(("adminToken" = [])),
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("version" = String, Path, description = "The version to retire"),
    ),
    responses((status = 200, description = "The version, retired", body = PluginRecord)),
)]
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

/// List the plugins and their versions.
#[utoipa::path(
    get, path = "/plugins", tag = "plugins", security(("adminToken" = [])),
    responses((status = 200, description = "The plugins", body = Vec<PluginRecord>)),
)]
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

/// Create a task.
#[utoipa::path(
    post, path = "/tasks", tag = "tasks", security(("adminToken" = [])), request_body = TaskInput,
    responses((status = 201, description = "Created", body = Task)),
)]
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

/// Edit a task; runs already created keep their snapshot.
#[utoipa::path(
    put, path = "/tasks/{task}", tag = "tasks", security(("adminToken" = [])), params(("task" = String, Path, description = "The task's id or name")), request_body = TaskInput,
    responses((status = 200, description = "Edited", body = Task)),
)]
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

/// List the tasks with their latest run.
#[utoipa::path(
    get, path = "/tasks", tag = "tasks", security(("adminToken" = [])),
    responses((status = 200, description = "The tasks", body = Vec<TaskView>)),
)]
pub async fn list_tasks(State(state): State<ApiState>, _: Admin) -> ApiResult<Json<Vec<TaskView>>> {
    let mut views = Vec::new();
    for task in state.scheduler.store().tasks().await? {
        views.push(view(&state, task).await?);
    }
    Ok(Json(views))
}

/// Show a task (by id or name) with its latest run.
#[utoipa::path(
    get, path = "/tasks/{task}", tag = "tasks", security(("adminToken" = [])), params(("task" = String, Path, description = "The task's id or name")),
    responses((status = 200, description = "The task", body = TaskView)),
)]
pub async fn show_task(
    State(state): State<ApiState>, _: Admin, Path(key): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let task = find_task(&state, &key).await?;
    Ok(Json(view(&state, task).await?))
}

/// The task it follows and those that follow it, each with its newest run.
#[utoipa::path(
    get, path = "/tasks/{task}/chain", tag = "tasks", security(("adminToken" = [])), params(("task" = String, Path, description = "The task's id or name")),
    responses((status = 200, description = "The chain", body = ChainView)),
)]
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

/// Force a run above every priority.
#[utoipa::path(
    post, path = "/tasks/{task}/run", tag = "tasks", security(("adminToken" = [])), params(("task" = String, Path, description = "The task's id or name")),
    responses((status = 201, description = "The new run", body = Run)),
)]
pub async fn force_run(
    State(state): State<ApiState>, _: Admin, Path(key): Path<String>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let task = find_task(&state, &key).await?;
    Ok((StatusCode::CREATED, Json(state.scheduler.force_run(&task).await?)))
}

/// The results of the task's latest run.
#[utoipa::path(
    get, path = "/tasks/{task}/results", tag = "tasks", security(("adminToken" = [])), params(("task" = String, Path, description = "The task's id or name")),
    responses((status = 200, description = "The run and its results", body = RunResults)),
)]
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only this task's runs (its id or name).
    task: Option<String>,
}

/// List the runs, newest first.
#[utoipa::path(
    get, path = "/runs", tag = "runs", security(("adminToken" = [])), params(RunsQuery),
    responses((status = 200, description = "The runs", body = Vec<Run>)),
)]
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

/// Show a run.
#[utoipa::path(
    get, path = "/runs/{run}", tag = "runs", security(("adminToken" = [])), params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The run", body = Run)),
)]
pub async fn show_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(find_run(&state, id).await?))
}

/// The run's parts with owners, attempts, progress and errors.
#[utoipa::path(
    get, path = "/runs/{run}/parts", tag = "runs", security(("adminToken" = [])), params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The parts", body = Vec<Part>)),
)]
pub async fn run_parts(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Part>>> {
    find_run(&state, id).await?;
    Ok(Json(state.scheduler.parts(id).await?))
}

/// The results of a run.
#[utoipa::path(
    get, path = "/runs/{run}/results", tag = "runs", security(("adminToken" = [])), params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The run and its results", body = RunResults)),
)]
pub async fn run_results(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<RunResults>> {
    let run = find_run(&state, id).await?;
    let results = state.scheduler.store().results(id).await?;
    Ok(Json(RunResults { run, results }))
}

/// Suspend a run.
#[utoipa::path(
    post, path = "/runs/{run}/suspend", tag = "runs", security(("adminToken" = [])), params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The run", body = Run)),
)]
pub async fn suspend_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(state.scheduler.suspend(id).await?))
}

/// Resume a suspended run.
#[utoipa::path(
    post, path = "/runs/{run}/resume", tag = "runs", security(("adminToken" = [])), params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The run", body = Run)),
)]
pub async fn resume_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(state.scheduler.resume(id).await?))
}

/// Cancel a run.
#[utoipa::path(
    post, path = "/runs/{run}/cancel", tag = "runs", security(("adminToken" = [])), params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The run", body = Run)),
)]
pub async fn cancel_run(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<Run>> {
    Ok(Json(state.scheduler.cancel(id).await?))
}

/// Run a run again, or only its failed parts.
#[utoipa::path(
    post, path = "/runs/{run}/rerun", tag = "runs", security(("adminToken" = [])), params(("run" = i64, Path, description = "The run's id")),
    request_body(content = Option<RerunRequest>, description = "Which parts; may be empty"),
    responses((status = 201, description = "The new run", body = Run)),
)]
pub async fn rerun(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>, body: Option<Json<RerunRequest>>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let request = body.map(|Json(r)| r).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(state.scheduler.rerun(id, request.failed_only).await?)))
}

/// List the agents (`down_since`: the monitor finds one down).
#[utoipa::path(
    get, path = "/agents", tag = "agents", security(("adminToken" = [])),
    responses((status = 200, description = "The agents", body = Vec<Agent>)),
)]
pub async fn list_agents(State(state): State<ApiState>, _: Admin) -> ApiResult<Json<Vec<Agent>>> {
    Ok(Json(state.scheduler.store().agents().await?))
}
