//! The REST/JSON API: the agent protocol, the admin API and the operations
//! endpoints, served by axum on one port. [`crate::protocol`] holds every route
//! and body; [`app`] builds the router so tests can drive it in-process, from
//! the registrations the OpenAPI document is made of.

mod admin_routes;
pub mod agent_cache;
mod agent_routes;
mod artifacts;
pub mod auth;
mod error;
mod events;
mod inventory_routes;
pub mod metrics;
mod openapi;
mod ops;
mod params;
pub mod state;
mod webhook_routes;

#[cfg(test)]
mod tests;

pub use error::{ApiError, ApiResult};
pub use state::{
    ApiState, LEASE_RECHECK, MAX_JSON_BYTES, MAX_LEASE_WAIT, MAX_UPLOAD_BYTES, SweepHandle,
    Webhooks,
};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The whole API as one router.
pub fn app(state: ApiState) -> Router {
    Router::from(registrations())
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every route, registered once for both the router and the OpenAPI document
/// ([`openapi::document`]): a handler is served where it is documented.
fn registrations() -> OpenApiRouter<ApiState> {
    use admin_routes as admin;
    use agent_routes as agent;
    use inventory_routes as inventory;
    // Plugin uploads are larger than the JSON bodies every other route takes.
    let plugins = OpenApiRouter::new()
        .routes(routes!(admin::upload_plugin, admin::list_plugins))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES));
    let api = OpenApiRouter::new()
        .routes(routes!(agent::register))
        .routes(routes!(agent::lease))
        .routes(routes!(agent::heartbeat))
        .routes(routes!(agent::progress))
        .routes(routes!(agent::result))
        .routes(routes!(agent::module))
        .routes(routes!(artifacts::download_artifact))
        .routes(routes!(artifacts::upload_artifact, artifacts::list_artifacts))
        .merge(plugins)
        .routes(routes!(admin::retire_plugin))
        .routes(routes!(admin::create_task, admin::list_tasks))
        .routes(routes!(admin::show_task, admin::edit_task))
        .routes(routes!(admin::force_run))
        .routes(routes!(admin::task_chain))
        .routes(routes!(admin::task_results))
        .routes(routes!(admin::list_runs))
        .routes(routes!(admin::show_run))
        .routes(routes!(admin::run_parts))
        .routes(routes!(admin::run_results))
        .routes(routes!(admin::suspend_run))
        .routes(routes!(admin::resume_run))
        .routes(routes!(admin::cancel_run))
        .routes(routes!(admin::rerun))
        .routes(routes!(inventory::processing_failures))
        .routes(routes!(inventory::reprocess))
        .routes(routes!(inventory::list_assets))
        .routes(routes!(inventory::show_asset))
        .routes(routes!(inventory::asset_glpi))
        .routes(routes!(inventory::list_changes))
        .routes(routes!(inventory::stream_changes))
        .routes(routes!(admin::list_agents))
        .routes(routes!(webhook_routes::list, webhook_routes::create))
        .routes(routes!(webhook_routes::dead_letters))
        .routes(routes!(webhook_routes::delete))
        .routes(routes!(webhook_routes::resend))
        .routes(routes!(events::stream_events))
        .routes(routes!(openapi::serve));
    OpenApiRouter::with_openapi(openapi::base())
        .nest(crate::protocol::API_PREFIX, api)
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .merge(crate::web::routes())
}
