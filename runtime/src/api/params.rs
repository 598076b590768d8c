//! Task parameters checked before a task is saved: against the plugin's JSON
//! Schema, then by the plugin's own `split`, so that parameters every run
//! would fail on are refused at once. The plugin is the newest upload (the one
//! the next run will use). Remote `$ref`s are not resolved. A task whose
//! targets come from the inventory is checked with its selector's parameter
//! holding one address, as a run will hold the addresses selected.

use super::ApiState;
use super::error::{ApiError, ApiResult};
use crate::engine::{self, ParamsError};
use crate::scheduler::TaskSpec;

/// `Ok` if `spec.params` satisfies the schema of `spec.plugin` and its split.
pub async fn check_params(state: &ApiState, spec: &TaskSpec) -> ApiResult<()> {
    let plugin = state.scheduler.store().latest_plugin(&spec.plugin).await?.ok_or_else(|| {
        ApiError::bad_request(
            "unknown_plugin",
            format!("unknown plugin {:?}: upload it first", spec.plugin),
        )
    })?;
    let params = match &spec.select {
        // TEST-NET-1 (RFC 5737): an address that stands for any.
        Some(select) => select.fill(&spec.params, &["192.0.2.1".to_string()]),
        None => spec.params.clone(),
    };
    engine::check_params(&plugin.manifest["params_schema"], &params).map_err(|e| match e {
        ParamsError::UnusableSchema(why) => ApiError::bad_request(
            "invalid_plugin_schema",
            format!(
                "plugin {} {} has an unusable parameter schema: {why}",
                plugin.name, plugin.version
            ),
        ),
        ParamsError::Invalid(_) => ApiError::bad_request(
            "invalid_params",
            format!("parameters do not match the schema of plugin {}: {e}", plugin.name),
        ),
    })?;
    state.scheduler.check_split(&plugin.sha256, &params).await.map_err(|why| {
        ApiError::bad_request(
            "split_failed",
            format!("split failed: {why} (plugin {} {})", plugin.name, plugin.version),
        )
    })?;
    Ok(())
}
