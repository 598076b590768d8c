//! The REST/JSON API: the agent protocol, the admin API and the operations
//! endpoints, served by axum on one port. [`crate::protocol`] holds every route
//! and body; [`app`] builds the router so tests can drive it in-process.

mod admin_routes;
pub mod agent_cache;
mod agent_routes;
mod artifacts;
pub mod auth;
mod error;
mod events;
mod inventory_routes;
pub mod metrics;
mod ops;
mod params;
pub mod state;
mod webhook_routes;

pub use error::{ApiError, ApiResult};
pub use state::{
    ApiState, LEASE_RECHECK, MAX_JSON_BYTES, MAX_LEASE_WAIT, MAX_UPLOAD_BYTES, SweepHandle,
    Webhooks,
};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

/// The whole API as one router.
pub fn app(state: ApiState) -> Router {
    use admin_routes as admin;
    use agent_routes as agent;
    use inventory_routes as inventory;
    let api = Router::new()
        .route("/agent/register", post(agent::register))
        .route("/agent/lease", post(agent::lease))
        .route("/agent/heartbeat", post(agent::heartbeat))
        .route("/agent/progress", post(agent::progress))
        .route("/agent/results", post(agent::result))
        .route("/agent/modules/{sha256}", get(agent::module))
        .route("/agent/artifacts/{sha256}", get(artifacts::download_artifact))
        .route("/artifacts", post(artifacts::upload_artifact).get(artifacts::list_artifacts))
        .route(
            "/plugins",
            post(admin::upload_plugin)
                .get(admin::list_plugins)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/plugins/{name}/{version}/retire", post(admin::retire_plugin))
        .route("/tasks", post(admin::create_task).get(admin::list_tasks))
        .route("/tasks/{task}", get(admin::show_task).put(admin::edit_task))
        .route("/tasks/{task}/run", post(admin::force_run))
        .route("/tasks/{task}/chain", get(admin::task_chain))
        .route("/tasks/{task}/results", get(admin::task_results))
        .route("/runs", get(admin::list_runs))
        .route("/runs/{run}", get(admin::show_run))
        .route("/runs/{run}/parts", get(admin::run_parts))
        .route("/runs/{run}/results", get(admin::run_results))
        .route("/runs/{run}/suspend", post(admin::suspend_run))
        .route("/runs/{run}/resume", post(admin::resume_run))
        .route("/runs/{run}/cancel", post(admin::cancel_run))
        .route("/runs/{run}/rerun", post(admin::rerun))
        .route("/runs/{run}/processing", get(inventory::processing_failures))
        .route("/runs/{run}/reprocess", post(inventory::reprocess))
        .route("/assets", get(inventory::list_assets))
        .route("/assets/{id}", get(inventory::show_asset))
        .route("/assets/{id}/glpi", get(inventory::asset_glpi))
        .route("/changes", get(inventory::list_changes))
        .route("/changes/stream", get(inventory::stream_changes))
        .route("/agents", get(admin::list_agents))
        .route("/webhooks", get(webhook_routes::list).post(webhook_routes::create))
        .route("/webhooks/dead-letters", get(webhook_routes::dead_letters))
        .route("/webhooks/{id}", axum::routing::delete(webhook_routes::delete))
        .route("/webhooks/{id}/dead-letters/{event}/resend", post(webhook_routes::resend))
        .route("/events", get(events::stream_events))
        .route("/openapi.json", get(ops::openapi));
    Router::new()
        .nest(crate::protocol::API_PREFIX, api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(crate::web::routes())
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
