//! The OpenAPI 3.1 document of the API, the operations endpoints and the UI.
//!
//! It is generated, never written: each handler's `#[utoipa::path]` gives its
//! operation, the wire types' `ToSchema` derives give the schemas, and
//! [`super::registrations`] registers each handler on the router and in the
//! document at once. This module adds what is common to every operation: the
//! security schemes and the error answers.

use std::sync::LazyLock;

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

use crate::protocol::{API_PREFIX, ErrorBody};

/// The name of the shared error answer in `components/responses`.
const ERROR_RESPONSE: &str = "Error";

/// The parts of the document no handler owns: info, servers, tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jobstack",
        description = "The REST/JSON API of the jobstack daemon: the agent protocol, the admin \
                       API, the operations endpoints and the management UI's files.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "The daemon that serves this document")),
    tags(
        (name = "agent", description = "The agent protocol: register, lease, heartbeat, progress, results, downloads"),
        (name = "plugins", description = "Plugin components"),
        (name = "artifacts", description = "Files deploy tasks install"),
        (name = "tasks", description = "Task definitions"),
        (name = "runs", description = "Runs of tasks, their parts and results"),
        (name = "inventory", description = "Assets, their changes and the processing of results"),
        (name = "agents", description = "Registered agents"),
        (name = "webhooks", description = "Webhook subscriptions and dead letters"),
        (name = "events", description = "The event log as server-sent events"),
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
        (name = "ui", description = "The management UI's static files (no token, no data)"),
    ),
    components(schemas(ErrorBody)),
)]
struct Base;

/// The document's frame, before the routes are registered in it.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The whole document, built once from the registrations.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
        let mut document = super::registrations().into_openapi();
        add_security_schemes(&mut document);
        add_error_answers(&mut document);
        document
    });
    &DOCUMENT
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", operation_id = "openapi", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)),
)]
pub async fn serve() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

/// The bearer tokens the handlers' `security(...)` name.
fn add_security_schemes(document: &mut utoipa::openapi::OpenApi) {
    let components = document.components.get_or_insert_with(Default::default);
    for (name, what) in [
        ("adminToken", "An admin token (`--admin-token`)"),
        ("agentToken", "The agent's own token, answered by registration"),
        ("enrollmentSecret", "The enrollment secret agents register with (`--enroll-secret`)"),
    ] {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(what.to_string());
        components.add_security_scheme(name, SecurityScheme::Http(scheme));
    }
}

/// Every API operation may be refused (4XX) or fail (5XX) with an
/// [`ErrorBody`] (the operations endpoints and the UI say their own).
fn add_error_answers(document: &mut utoipa::openapi::OpenApi) {
    let components = document.components.get_or_insert_with(Default::default);
    let schema = Ref::from_schema_name(<ErrorBody as utoipa::ToSchema>::name());
    let error = ResponseBuilder::new()
        .description("Refused or failed: a stable code and a message")
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
        .build();
    components.responses.insert(ERROR_RESPONSE.to_string(), RefOr::T(error));
    let api = document.paths.paths.iter_mut().filter(|(path, _)| path.starts_with(API_PREFIX));
    for (_, item) in api {
        for operation in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten()
        {
            for range in ["4XX", "5XX"] {
                add_error(operation, range);
            }
        }
    }
}

fn add_error(operation: &mut Operation, range: &str) {
    operation
        .responses
        .responses
        .entry(range.to_string())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(ERROR_RESPONSE)));
}
