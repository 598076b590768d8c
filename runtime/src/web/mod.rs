//! The management UI: static HTML, CSS and JavaScript modules embedded in the
//! binary and served at `/` (the page) and `/ui/{file}` (its assets).
//!
//! The files hold no data and need no token: every view fetches its data from
//! the admin API with the token the operator types in the page. Because task
//! names, labels, errors and outputs are attacker-controlled, the page is
//! served with a strict Content-Security-Policy (scripts only from this origin,
//! no inline script or style, no framing) and `nosniff`; the scripts build DOM
//! nodes and never use `innerHTML` with data.
//!
//! Assets are not fingerprinted, so they are served with `Cache-Control:
//! no-cache` and an `ETag` (the SHA-256 of the file): the browser revalidates
//! and gets `304 Not Modified` until the binary changes.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The policy of every UI answer: only this origin's scripts, styles, images
/// and API; nothing inline, no plugins, no framing, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// Revalidate every time (the assets' names do not change with their content).
const CACHE_CONTROL_VALUE: &str = "no-cache";

/// One embedded file.
struct Asset {
    /// Its name below `/ui/`.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!("assets/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the UI. `index.html` is also served at `/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("events.js", JS),
    asset!("tasks.js", JS),
    asset!("task.js", JS),
    asset!("run.js", JS),
    asset!("agents.js", JS),
    asset!("inventory.js", JS),
    asset!("plugins.js", JS),
    asset!("webhooks.js", JS),
    asset!("form.js", JS),
];

/// The ETag of each asset, in [`ASSETS`] order, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS.iter().map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..16]))).collect()
});

/// The UI's routes, to merge into the API router (and its OpenAPI document).
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(ui_index))
        .routes(routes!(ui_slash_index))
        .routes(routes!(asset))
}

/// The management UI's page.
#[utoipa::path(
    get, path = "/", tag = "ui", operation_id = "ui_page", security(()),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 304, description = "Not modified since the `ETag` sent in `If-None-Match`"),
    ),
)]
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// The management UI's page, at `/ui` too.
#[utoipa::path(
    get, path = "/ui", tag = "ui", operation_id = "ui_page_at_ui", security(()),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 304, description = "Not modified since the `ETag` sent in `If-None-Match`"),
    ),
)]
async fn ui_index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// The management UI's page, at `/ui/` too.
#[utoipa::path(
    get, path = "/ui/", tag = "ui", operation_id = "ui_page_at_ui_slash", security(()),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 304, description = "Not modified since the `ETag` sent in `If-None-Match`"),
    ),
)]
async fn ui_slash_index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// A file of the management UI: a script, the style sheet, the icon.
#[utoipa::path(
    get, path = "/ui/{file}", tag = "ui", operation_id = "ui_file", security(()),
    params(("file" = String, Path, description = "The file's name, e.g. `app.js`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/svg+xml"),
            (String = "text/html"),
        )),
        (status = 304, description = "Not modified since the `ETag` sent in `If-None-Match`"),
        (status = 404, description = "No such file in the UI", body = String, content_type = "text/plain"),
    ),
)]
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        let mut response = (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the UI\n",
        )
            .into_response();
        security_headers(response.headers_mut());
        return response;
    };
    let asset = &ASSETS[index];
    let etag = ETAGS[index].as_str();
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE));
    headers.insert(ETAG, HeaderValue::from_str(etag).expect("hex ETag is a valid header"));
    security_headers(headers);
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests;
