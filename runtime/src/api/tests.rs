//! The router against its OpenAPI document, in-process: every documented
//! operation reaches a handler, every route serves only documented methods,
//! and the document holds what clients and linters rely on.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use utoipa::openapi::path::{Operation, PathItem};

use super::auth::{Credentials, hash_token};
use super::metrics::Metrics;
use super::{ApiState, Webhooks, app, openapi};
use crate::artifacts::ArtifactStore;
use crate::engine::{Engine, EngineConfig};
use crate::module_catalog::ModuleCatalog;
use crate::notify::delivery::{Deliverer, RetryPolicy};
use crate::scheduler::{NewPart, Scheduler, Splitter, SystemClock};

/// Runs are not split here (the daemon's engine splitter lives in `daemon`,
/// which depends on this module).
struct NoParts;

#[async_trait::async_trait]
impl Splitter for NoParts {
    async fn split(&self, _: &str, _: &serde_json::Value) -> Result<Vec<NewPart>, String> {
        Ok(Vec::new())
    }
}

/// A daemon's state on a fresh SQLite store in `dir`, without its sweeps.
async fn state(dir: &std::path::Path) -> ApiState {
    let opened = crate::store::open(None, dir).await.expect("open the store");
    let engine = Engine::new(EngineConfig::default()).expect("start the engine");
    let modules = ModuleCatalog::new(engine, opened.store.clone());
    let clock = Arc::new(SystemClock);
    let scheduler = Scheduler::new(opened.store.clone(), clock.clone(), Arc::new(NoParts));
    let allow = crate::notify::AllowList::default();
    ApiState {
        scheduler,
        modules,
        credentials: Arc::new(Credentials {
            admin_hashes: vec![hash_token("admin")],
            enroll_hash: hash_token("enroll"),
        }),
        agents: Arc::default(),
        metrics: Arc::new(Metrics::new()),
        artifacts: ArtifactStore::open(dir.join("artifacts")).expect("open the artifacts"),
        sweep: Arc::default(),
        inventory: opened.inventory.clone(),
        webhooks: Webhooks {
            outbox: opened.outbox.clone(),
            deliverer: Deliverer::new(
                opened.outbox.clone(),
                allow.clone(),
                clock,
                RetryPolicy::default(),
            ),
            allow,
        },
    }
}

/// Each operation of the document: method, path template, operation.
fn operations() -> Vec<(&'static str, String, Operation)> {
    let mut all = Vec::new();
    for (path, item) in &openapi::document().paths.paths {
        for (method, operation) in methods(item) {
            all.push((method, path.clone(), operation.clone()));
        }
    }
    all
}

fn methods(item: &PathItem) -> Vec<(&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
    .collect()
}

/// A concrete path for a template: each parameter a plausible value.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{sha256}" => "0".repeat(64),
            "{task}" => "no-such-task".to_string(),
            "{file}" => "app.js".to_string(),
            s if s.starts_with('{') => "1".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The app's answer to `method path` without a token: status and body.
async fn answer(state: &ApiState, method: &str, path: &str) -> (StatusCode, String) {
    let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn every_documented_operation_reaches_its_handler() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let operations = operations();
    assert!(operations.len() >= 45, "only {} operations documented", operations.len());
    for (method, template, _) in &operations {
        let path = concrete(template);
        let (status, body) = answer(&state, method, &path).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{template}: {body}");
        assert!(!body.contains("no such route"), "{method} {template} is not routed: {body}");
    }
}

#[tokio::test]
async fn routes_serve_no_undocumented_method() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let operations = operations();
    let templates: BTreeSet<&String> = operations.iter().map(|(_, t, _)| t).collect();
    for template in templates {
        let documented: Vec<&str> =
            operations.iter().filter(|(_, t, _)| t == template).map(|(m, _, _)| *m).collect();
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            if documented.contains(&method) {
                continue;
            }
            let (status, body) = answer(&state, method, &concrete(template)).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {template} is served but not documented: {body}"
            );
        }
    }
}

#[tokio::test]
async fn paths_outside_the_document_reach_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    for path in ["/api/v1/nothing", "/api/v1/tasks/1/nothing", "/api/v2/tasks", "/nothing"] {
        let (status, body) = answer(&state, "GET", path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body.contains("no such route"), "{path}: {body}");
    }
}

#[test]
fn every_operation_is_identified_summarised_secured_and_answered() {
    let mut ids = BTreeSet::new();
    for (method, template, operation) in operations() {
        let name = format!("{method} {template}");
        let id = operation.operation_id.clone().unwrap_or_else(|| panic!("{name}: no operationId"));
        assert!(ids.insert(id.clone()), "{name}: operationId {id} is used twice");
        assert!(operation.summary.as_deref().is_some_and(|s| !s.is_empty()), "{name}: no summary");
        assert!(operation.security.is_some(), "{name}: no security requirement");
        assert!(operation.tags.as_ref().is_some_and(|t| !t.is_empty()), "{name}: no tag");
        let responses = &operation.responses.responses;
        assert!(responses.keys().any(|k| k.starts_with('2') || k == "304"), "{name}: no success");
        if template.starts_with(crate::protocol::API_PREFIX) {
            assert!(responses.contains_key("4XX"), "{name}: no error answer");
        }
    }
}

#[test]
fn the_agent_protocol_documents_its_bodies_and_lease_next() {
    let json = serde_json::to_value(openapi::document()).unwrap();
    assert_eq!(json["openapi"], "3.1.0");
    let results = &json["paths"]["/api/v1/agent/results"]["post"];
    let lease_next =
        results["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "lease_next");
    assert_eq!(lease_next.expect("lease_next is documented")["in"], "query");
    assert!(results["requestBody"]["content"]["application/json"]["schema"].is_object());
    let lease = &json["paths"]["/api/v1/agent/lease"]["post"]["responses"];
    assert!(lease["200"]["content"]["application/json"]["schema"].is_object(), "{lease}");
    assert!(lease["204"]["content"].is_null(), "{lease}");
    for schema in ["Lease", "Submission", "ResultAnswer", "HeartbeatAck", "ErrorBody", "TaskSpec"] {
        assert!(json["components"]["schemas"][schema].is_object(), "no schema {schema}");
    }
    let security = &json["components"]["securitySchemes"];
    for scheme in ["adminToken", "agentToken", "enrollmentSecret"] {
        assert_eq!(security[scheme]["scheme"], "bearer", "{scheme}");
    }
}
