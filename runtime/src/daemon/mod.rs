//! `jobstack serve`: the daemon. One process hosts the scheduler, the API (and
//! the UI) on one port, the background sweep, and optionally its own
//! in-process agent.
//!
//! Start-up, in order: open the data directory and the store (migrating it):
//! the embedded SQLite file, or with `database = "postgres://..."` a PostgreSQL
//! database that several daemons share (each then also listens for the others'
//! work announcements),
//! the engine (module store and compiled-artifact cache in the data directory),
//! the credentials, deploy the bundled plugins, start the sweep, the data
//! processor ([`processor`]) and the webhooks' feeder and deliverer
//! ([`notifier`]), listen.
//! Shutdown (SIGTERM or Ctrl-C): stop accepting requests and leasing, let
//! running parts finish within the grace period; the rest of their leases
//! expire and are regenerated, so nothing is lost.

mod bundled;
pub mod config;
mod credentials;
mod local_agent;
mod notifier;
pub mod processor;
mod splitter;
pub mod tls;

pub use config::{ServeConfig, ServeSettings, TlsFiles};
pub use local_agent::LocalLink;
pub use splitter::EngineSplitter;

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

use crate::agent::AgentSettings;
use crate::api::{self, ApiState, SweepHandle, Webhooks, metrics::Metrics};
use crate::artifacts::ArtifactStore;
use crate::engine::{Engine, EngineConfig};
use crate::inventory::InventorySelection;
use crate::module_catalog::ModuleCatalog;
use crate::notify::delivery::Deliverer;
use crate::notify::feed::Feeder;
use crate::scheduler::{Scheduler, SystemClock};
use crate::store;

/// How often the sweep runs (lease expiry, recurrence) when nothing wakes it.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Run the daemon until SIGTERM or Ctrl-C.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // Bad TLS files are refused before anything else starts.
    let tls_config = match &config.tls {
        Some(files) => Some(tls::server_config(&files.cert, &files.key)?),
        None => None,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let opened =
        store::open(config.database.as_deref(), &config.data_dir).await.with_context(|| {
            match &config.database {
                Some(_) => "cannot open the PostgreSQL database".to_string(),
                None => "cannot open the SQLite database".to_string(),
            }
        })?;
    keep_private(&config.data_dir);
    let store = opened.store.clone();
    let engine = Engine::new(EngineConfig {
        data_dir: Some(config.data_dir.join("engine")),
        ..EngineConfig::default()
    })
    .context("cannot start the engine")?;
    let credentials = credentials::load_or_create(
        &config.data_dir,
        config.admin_token.as_deref(),
        config.enroll_secret.as_deref(),
    )?;
    let modules = ModuleCatalog::new(engine.clone(), store.clone());
    let shared =
        modules.share_cached().await.context("cannot put this daemon's modules into the store")?;
    if shared > 0 {
        tracing::info!(modules = shared, "cached modules put into the store");
    }
    let selection = Arc::new(InventorySelection::new(opened.inventory.clone()));
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(EngineSplitter::new(modules.clone())),
    )
    .with_selection(selection)
    .with_agent_down_after(config.agent_down_after)
    .with_lease_grace(config.lease_grace);
    let deliverer = Deliverer::new(
        opened.outbox.clone(),
        config.webhook_allow.clone(),
        Arc::new(SystemClock),
        config.webhook_retry,
    );
    if let Some(dir) = &config.bundled_plugins {
        let deployed = bundled::deploy(&modules, store.as_ref(), dir, scheduler.now()).await?;
        if !deployed.is_empty() {
            tracing::info!(plugins = ?deployed, "bundled plugins deployed");
        }
    }
    let state = ApiState {
        scheduler: scheduler.clone(),
        modules: modules.clone(),
        credentials: Arc::new(credentials),
        agents: Arc::default(),
        metrics: Arc::new(Metrics::new()),
        artifacts: ArtifactStore::open(config.data_dir.join("artifacts")).with_context(|| {
            format!("cannot open the artifact store in {}", config.data_dir.display())
        })?,
        sweep: Arc::default(),
        inventory: opened.inventory.clone(),
        webhooks: Webhooks {
            outbox: opened.outbox.clone(),
            deliverer: deliverer.clone(),
            allow: config.webhook_allow.clone(),
        },
    };
    let (shutdown_tx, shutdown) = watch::channel(false);
    let sweep = tokio::spawn(run_sweep(state.clone(), shutdown.clone()));
    let processor =
        processor::Processor::new(modules.clone(), opened.inventory.clone(), Arc::new(SystemClock));
    let processor = tokio::spawn(processor.run(shutdown.clone()));
    let feeder = Feeder::new(
        store.clone(),
        opened.inventory.clone(),
        opened.outbox.clone(),
        Arc::new(SystemClock),
    );
    let fed = Arc::new(Notify::new());
    let feeding = tokio::spawn(notifier::feed(feeder, fed.clone(), shutdown.clone()));
    let delivering = tokio::spawn(notifier::deliver(deliverer, fed, shutdown.clone()));
    // Several daemons on one database: wake our long-polls on their work too.
    let work_listener = opened
        .postgres
        .clone()
        .map(|pg| tokio::spawn(pg.listen_for_work(scheduler.work_signal().clone())));
    let local_agent = if config.local_agent {
        let settings = AgentSettings {
            stop_grace: config.shutdown_grace,
            heartbeat_interval: scheduler.heartbeat_interval(),
            policy: crate::agent::OperatorPolicy {
                allow_net: vec!["127.0.0.0/8".parse()?, "::1/128".parse()?],
                ..Default::default()
            },
            ..AgentSettings::default()
        };
        let link = LocalLink::register(
            scheduler.clone(),
            modules.clone(),
            state.artifacts.clone(),
            &settings,
        )
        .await
        .context("cannot register the local agent")?;
        Some(link.spawn(settings, shutdown_signal(shutdown.clone())))
    } else {
        None
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let scheme = if tls_config.is_some() { "https" } else { "http" };
    // A line for people and for scripts that started us on port 0.
    println!("jobstack: listening on {scheme}://{address}");
    println!("jobstack: management UI at {scheme}://{address}/ (sign in with the admin token)");
    tracing::info!(%address, data_dir = %config.data_dir.display(), "daemon started");

    let app = api::app(state);
    let stopping = async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    };
    match tls_config {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(stopping)
            .await
            .context("server failed")?,
        Some(tls_config) => {
            let tls = tls::TlsListener::new(listener, tls_config)?;
            axum::serve(tls, app).with_graceful_shutdown(stopping).await.context("server failed")?
        }
    }
    // The local agent lets its running parts finish within the grace period,
    // then stops the rest and delivers their results.
    if let Some(agent) = local_agent {
        let _ = tokio::time::timeout(config.shutdown_grace * 2, agent).await;
    }
    let _ = tokio::time::timeout(config.shutdown_grace, sweep).await;
    let _ = tokio::time::timeout(config.shutdown_grace, processor).await;
    let _ = tokio::time::timeout(config.shutdown_grace, feeding).await;
    let _ = tokio::time::timeout(config.shutdown_grace, delivering).await;
    if let Some(listener) = work_listener {
        listener.abort();
    }
    if let Some(pg) = &opened.postgres {
        pg.close().await;
    }
    Ok(())
}

/// Only the daemon's user may enter the data directory (tokens' hashes, task
/// secrets, modules), and the database files are its alone: 0700 and 0600,
/// also for a directory an earlier version made world-readable. A directory
/// the daemon does not own stays as it is, with a warning saying so.
fn keep_private(data_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &std::path::Path, mode: u32| {
        if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot make it private: give the daemon's user the data directory (chmod {mode:o})"
            );
        }
    };
    set(data_dir, 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let file = data_dir.join(format!("{}{suffix}", store::sqlite::DATABASE_FILE));
        if file.exists() {
            set(&file, 0o600);
        }
    }
}

/// Resolves once shutdown began.
async fn shutdown_signal(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// The background sweep: expiry, recurrence, stale splits. Errors are logged
/// and retried at the next pass (the database may be away for a while); a
/// pass that panics is [`supervised`]: the sweep goes on.
async fn run_sweep(state: ApiState, shutdown: watch::Receiver<bool>) {
    let stopping = shutdown_signal(shutdown);
    tokio::pin!(stopping);
    loop {
        let scheduler = state.scheduler.clone();
        match supervised(&state.sweep, async move { scheduler.tick().await }).await {
            Some(Ok(report)) => {
                state.metrics.expiries.inc_by(report.expired.len() as u64);
                if !report.expired.is_empty() {
                    tracing::info!(expired = report.expired.len(), "leases expired");
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "sweep failed; retrying"),
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = state.sweep.wake.notified() => {}
            _ = &mut stopping => return,
        }
    }
}

/// Run one sweep pass in a task of its own, so that a pass that panics is
/// logged and marks the sweep failing (`/readyz` answers 503) instead of
/// ending the sweep; the next completed pass clears the mark.
async fn supervised<T: Send + 'static>(
    sweep: &SweepHandle, pass: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    match tokio::spawn(pass).await {
        Ok(done) => {
            sweep.set_failing(false);
            Some(done)
        }
        Err(e) => {
            sweep.set_failing(true);
            tracing::error!(error = %e, "a sweep pass panicked; the next pass starts as usual");
            None
        }
    }
}

/// Resolves at SIGTERM or Ctrl-C (the daemon's and the agent's shutdown).
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_pass_marks_the_sweep_failing_until_one_completes() {
        let sweep = SweepHandle::default();
        let panicked = supervised(&sweep, async { panic!("a pass that panics") }).await;
        assert_eq!(panicked, None::<()>);
        assert!(sweep.is_failing());
        assert_eq!(supervised(&sweep, async { 7 }).await, Some(7));
        assert!(!sweep.is_failing());
    }
}
