//! The engine in-process: loading and its cache, validation of what is not a
//! plugin, starvation, stop and cancel, and survival after every kind of failure.
//!
//! Uses the fixtures built in `plugins/` (scripts/build-plugins.sh).

mod common;

use jobstack::engine::{
    Engine, EngineConfig, ExecutionLimits, ExecutionRequest, LoadError, Mode, Part, Status,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    common::plugin_bytes(name)
}

fn small_engine(data_dir: Option<PathBuf>) -> Engine {
    Engine::new(EngineConfig {
        data_dir,
        pooled_slots: 300,
        dedicated_slots: 4,
        pooled_threads: 2,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn part() -> Part {
    Part { label: "only".into(), targets: vec![], payload: "{}".into() }
}

fn request(params: &str, timeout: Duration) -> ExecutionRequest {
    ExecutionRequest::new(params, part()).limits(ExecutionLimits::with_timeout(timeout))
}

#[tokio::test]
async fn a_second_load_of_the_same_module_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fixture("fixture-emitter");

    let first = small_engine(Some(dir.path().to_path_buf()));
    let a = first.load(&bytes).await.unwrap();
    let again = first.load(&bytes).await.unwrap();
    assert!(Arc::ptr_eq(&a, &again), "the same engine hands back the loaded plugin");
    assert_eq!(first.compilations(), 1);
    drop(first);

    // A restart: a new engine on the same data directory uses the cached artifact.
    let second = small_engine(Some(dir.path().to_path_buf()));
    let b = second.load_stored(a.sha256()).await.unwrap();
    assert_eq!(second.compilations(), 0, "the cached artifact was reused");
    assert_eq!(b.manifest(), a.manifest());
    let outcome = second.execute(&b, request(r#"{"records":1}"#, Duration::from_secs(5))).await;
    assert_eq!(outcome.status, Status::Finished, "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_of_one_module_that_arrive_together_compile_it_once() {
    // Every slot of a fresh agent leasing its first parts of a new plugin.
    let bytes = Arc::new(fixture("fixture-trivial"));
    let engine = small_engine(None);
    let loads: Vec<_> = (0..8)
        .map(|_| {
            let (engine, bytes) = (engine.clone(), bytes.clone());
            tokio::spawn(async move { engine.load(&bytes).await.unwrap() })
        })
        .collect();
    let mut plugins = Vec::new();
    for load in loads {
        plugins.push(load.await.unwrap());
    }
    assert_eq!(engine.compilations(), 1);
    assert!(plugins.iter().all(|p| Arc::ptr_eq(p, &plugins[0])));
}

#[tokio::test]
async fn a_corrupt_cached_artifact_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fixture("fixture-trivial");
    let first = small_engine(Some(dir.path().to_path_buf()));
    let plugin = first.load(&bytes).await.unwrap();
    let artifact = first.module_store().unwrap().compiled_path(plugin.sha256());
    drop(first);
    std::fs::write(&artifact, b"garbage").unwrap();

    let second = small_engine(Some(dir.path().to_path_buf()));
    second.load(&bytes).await.unwrap();
    assert_eq!(second.compilations(), 1);
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_naming_the_missing_export() {
    let engine = small_engine(None);
    let other_world = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func (export "hello") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let err = engine.load(&other_world).await.unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld(_)), "{err}");
    assert!(err.to_string().contains("manifest"), "{err}");
}

#[tokio::test]
async fn a_component_importing_what_the_host_lacks_is_refused_naming_the_import() {
    let engine = small_engine(None);
    let bad_import =
        wat::parse_str(r#"(component (import "acme:secret/backdoor" (instance)))"#).unwrap();
    let err = engine.load(&bad_import).await.unwrap_err();
    assert!(matches!(err, LoadError::UnsupportedImport(_)), "{err}");
    assert!(err.to_string().contains("acme:secret/backdoor"), "{err}");
}

#[tokio::test]
async fn truncated_and_core_and_random_files_are_refused_clearly() {
    let engine = small_engine(None);
    let bytes = fixture("fixture-trivial");
    let truncated = engine.load(&bytes[..bytes.len() / 2]).await.unwrap_err();
    assert!(matches!(truncated, LoadError::Invalid(_)), "{truncated}");
    let core = engine.load(&wat::parse_str("(module)").unwrap()).await.unwrap_err();
    assert!(matches!(core, LoadError::CoreModule), "{core}");
    let random = engine.load(&[7u8; 64]).await.unwrap_err();
    assert!(matches!(random, LoadError::NotWasm), "{random}");
}

#[tokio::test]
async fn a_spinner_does_not_starve_200_trivial_pooled_executions_on_2_threads() {
    let engine = small_engine(None);
    let spin = engine.load(&fixture("fixture-spin")).await.unwrap();
    let trivial = engine.load(&fixture("fixture-trivial")).await.unwrap();

    let spinner = engine.start(&spin, request("{}", Duration::from_secs(60)).mode(Mode::Pooled));
    let spinner_control = spinner.control().clone();
    let spinner_done = tokio::spawn(spinner.wait());

    let handles: Vec<_> =
        (0..200).map(|_| engine.start(&trivial, request("{}", Duration::from_secs(60)))).collect();
    let all = futures_join(handles);
    let outcomes = tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("the trivial executions were starved by the spinner");
    assert_eq!(outcomes.len(), 200);
    assert!(outcomes.iter().all(|o| o.status == Status::Finished));
    assert!(!spinner_done.is_finished(), "the spinner is still running");

    spinner_control.cancel();
    let spun = spinner_done.await.unwrap();
    assert_eq!(spun.status, Status::Canceled, "{spun:?}");
}

async fn futures_join(
    handles: Vec<jobstack::engine::ExecutionHandle>,
) -> Vec<jobstack::engine::ExecutionOutcome> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.wait().await);
    }
    out
}

#[tokio::test]
async fn cancel_interrupts_a_spinner_at_once_in_both_modes() {
    let engine = small_engine(None);
    let spin = engine.load(&fixture("fixture-spin")).await.unwrap();
    for mode in [Mode::Pooled, Mode::Dedicated] {
        let handle = engine.start(&spin, request("{}", Duration::from_secs(60)).mode(mode));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        handle.control().cancel();
        let outcome = handle.wait().await;
        assert_eq!(outcome.status, Status::Canceled, "{mode:?}: {outcome:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{mode:?}: cancel took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn stop_lets_a_cooperative_plugin_finish_within_the_grace_period() {
    let engine = small_engine(None);
    let sleeper = engine.load(&fixture("fixture-sleeper")).await.unwrap();
    for mode in [Mode::Pooled, Mode::Dedicated] {
        let params = r#"{"secs": 3600, "poll_stop": true}"#;
        let handle = engine.start(&sleeper, request(params, Duration::from_secs(60)).mode(mode));
        tokio::time::sleep(Duration::from_millis(100)).await;
        handle.control().stop(Duration::from_secs(10));
        let outcome = handle.wait().await;
        assert_eq!(outcome.status, Status::Finished, "{mode:?}: {outcome:?}");
        assert_eq!(outcome.output, Some(serde_json::json!({"slept": "stopped"})));
    }
}

#[tokio::test]
async fn stop_cancels_a_plugin_that_ignores_it_after_the_grace_period() {
    let engine = small_engine(None);
    let sleeper = engine.load(&fixture("fixture-sleeper")).await.unwrap();
    let handle = engine.start(&sleeper, request(r#"{"secs": 3600}"#, Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    handle.control().stop(Duration::from_millis(300));
    let outcome = handle.wait().await;
    assert_eq!(outcome.status, Status::Canceled, "{outcome:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn the_engine_survives_every_failing_fixture_and_runs_the_next_execution() {
    let engine = small_engine(None);
    let trivial = engine.load(&fixture("fixture-trivial")).await.unwrap();
    for (name, expected) in [
        ("fixture-hog", Status::Failed),
        ("fixture-trap", Status::Failed),
        ("fixture-recursion", Status::Failed),
        ("fixture-spin", Status::Timeout),
        ("fixture-sleeper", Status::Timeout),
    ] {
        let plugin = engine.load(&fixture(name)).await.unwrap();
        for mode in [Mode::Pooled, Mode::Dedicated] {
            let limits = ExecutionLimits {
                memory: 32 << 20,
                ..ExecutionLimits::with_timeout(Duration::from_millis(300))
            };
            let outcome = engine
                .execute(&plugin, ExecutionRequest::new("{}", part()).limits(limits).mode(mode))
                .await;
            assert_eq!(outcome.status, expected, "{name} {mode:?}: {outcome:?}");
            let next =
                engine.execute(&trivial, request("{}", Duration::from_secs(5)).mode(mode)).await;
            assert_eq!(next.status, Status::Finished, "after {name} {mode:?}: {next:?}");
        }
    }
}

#[tokio::test]
async fn a_plugin_error_from_init_or_execute_is_a_failure_with_its_message() {
    let engine = small_engine(None);
    let sleeper = engine.load(&fixture("fixture-sleeper")).await.unwrap();
    let outcome = engine.execute(&sleeper, request("not json", Duration::from_secs(5))).await;
    assert_eq!(outcome.status, Status::Failed);
    assert!(outcome.error.as_deref().unwrap().starts_with("init: invalid params"), "{outcome:?}");
}

#[tokio::test]
async fn a_plugin_built_against_contract_0_1_0_runs_and_has_no_stage() {
    let engine = small_engine(None);
    let legacy = engine.load(&fixture("fixture-trivial")).await.unwrap();
    assert_eq!(legacy.contract(), "0.1.0");
    let parts = engine.split(&legacy, "{}").await.unwrap();
    assert_eq!(parts.len(), 1);
    let outcome = engine.execute(&legacy, request("{}", Duration::from_secs(5))).await;
    assert_eq!(outcome.status, Status::Finished, "{outcome:?}");
    let records = vec!["{}".to_string()];
    assert!(engine.stage(&legacy, &records, "a", &[]).await.unwrap().is_empty());
    let current = engine.load(&fixture("fixture-steps")).await.unwrap();
    assert_eq!(current.contract(), "0.2.0");
}

#[tokio::test]
async fn stage_maps_records_to_observations_in_the_sandbox() {
    let engine = small_engine(None);
    let steps = engine.load(&fixture("fixture-steps")).await.unwrap();
    let records = [
        r#"{"index": 3, "tag": "t", "attempt": 1, "observe": true}"#,
        r#"{"index": 4, "tag": "t", "attempt": 1}"#,
    ]
    .map(String::from);
    let observations = engine.stage(&steps, &records, "a", &[]).await.unwrap();
    assert_eq!(observations.len(), 1, "only the record that asks to be observed");
    let observation: serde_json::Value = serde_json::from_str(&observations[0]).unwrap();
    assert_eq!(observation["keys"]["step"], "t#3.0");
}

#[tokio::test]
async fn a_stage_that_spins_or_traps_fails_with_the_reason() {
    let engine = small_engine(None);
    let records = vec!["{}".to_string()];
    let spin = engine.load(&fixture("fixture-spin")).await.unwrap();
    let started = std::time::Instant::now();
    let err = engine.stage(&spin, &records, "a", &[]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "the stage budget bounds it");
    assert!(err.to_string().contains("stage timeout") || err.to_string().contains("fuel"), "{err}");
    let trap = engine.load(&fixture("fixture-trap")).await.unwrap();
    let err = engine.stage(&trap, &records, "a", &[]).await.unwrap_err();
    assert!(err.to_string().contains("trapped"), "{err}");
    // The engine goes on.
    let steps = engine.load(&fixture("fixture-steps")).await.unwrap();
    assert!(engine.stage(&steps, &records[..0], "a", &[]).await.unwrap().is_empty());
}
