//! The UI routes in-process: content types, security headers, caching, 404.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;

async fn get_with(path: &str, if_none_match: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(IF_NONE_MATCH, tag);
    }
    axum::Router::from(routes::<()>()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
}

async fn get(path: &str) -> Response {
    get_with(path, None).await
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response.headers().get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

async fn body(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn index_is_served_at_the_root_as_html_with_a_strict_policy() {
    let response = get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/html; charset=utf-8");
    let csp = header(&response, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(header(&response, "cache-control"), "no-cache");
    let html = body(response).await;
    assert!(html.contains(r#"<script type="module" src="/ui/app.js">"#), "{html}");
}

#[tokio::test]
async fn the_page_has_no_inline_script_or_style() {
    let html = body(get("/").await).await;
    for tag in html.split("<script").skip(1) {
        assert!(tag.contains("src=\"/ui/"), "inline script: <script{tag}");
    }
    assert!(!html.contains("<style"), "inline <style> in the page");
    assert!(!html.contains("style=\""), "inline style attribute in the page");
    // An inline handler is an attribute ` on<event>=`.
    for (at, _) in html.match_indices(" on") {
        let rest = &html[at + 3..];
        let word: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        assert!(!rest[word.len()..].starts_with('='), "inline event handler on{word}= in the page");
    }
}

#[tokio::test]
async fn assets_have_their_content_types() {
    for (path, expected) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/tasks.js", "text/javascript; charset=utf-8"),
        ("/ui/inventory.js", "text/javascript; charset=utf-8"),
        ("/ui/webhooks.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
        ("/ui/index.html", "text/html; charset=utf-8"),
    ] {
        let response = get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "content-type"), expected, "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert!(!body(response).await.is_empty(), "{path} is empty");
    }
}

#[tokio::test]
async fn every_module_an_asset_imports_is_served() {
    let mut checked = 0;
    for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
        let text = std::str::from_utf8(asset.body).unwrap();
        // `import ... from './x.js';`, possibly over several lines.
        for line in text
            .lines()
            .filter(|l| (l.starts_with("import ") || l.starts_with('}')) && l.contains(" from '"))
        {
            let target = line
                .rsplit("from ")
                .next()
                .unwrap()
                .trim_matches(|c| c == '\'' || c == '"' || c == ';' || c == ' ');
            let name = target.trim_start_matches("./");
            let response = get(&format!("/ui/{name}")).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{} imports {target}, which is not served",
                asset.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} imports found: is the parsing broken?");
}

#[tokio::test]
async fn every_view_of_the_navigation_is_routed_and_its_module_served() {
    let html = body(get("/").await).await;
    let app = body(get("/ui/app.js").await).await;
    // `href="#/webhooks"`, `href="#/tasks/new"`: the view is the first segment.
    let views: Vec<&str> = html
        .split("href=\"#/")
        .skip(1)
        .map(|rest| rest.split(['"', '/', '?']).next().unwrap())
        .collect();
    for expected in ["tasks", "inventory", "agents", "plugins", "webhooks"] {
        assert!(views.contains(&expected), "no #/{expected} in the navigation: {views:?}");
    }
    for view in &views {
        assert!(app.contains(&format!("a === '{view}'")), "app.js does not route #/{view}");
    }
    for module in ["inventory.js", "webhooks.js"] {
        assert!(app.contains(&format!("from './{module}'")), "app.js does not import {module}");
        let response = get(&format!("/ui/{module}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{module}");
        assert_eq!(header(&response, "content-type"), JS, "{module}");
    }
}

#[tokio::test]
async fn unknown_asset_is_404_with_the_policy() {
    for path in ["/ui/nope.js", "/ui/..%2Fmod.rs", "/ui/mod.rs"] {
        let response = get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(header(&response, "content-security-policy").contains("default-src 'none'"));
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    }
}

#[tokio::test]
async fn a_matching_etag_answers_not_modified() {
    let first = get("/ui/app.css").await;
    let etag = header(&first, "etag").to_string();
    let again = get_with("/ui/app.css", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "etag"), etag);
    assert!(body(again).await.is_empty());
    let other = get_with("/ui/app.css", Some("\"something-else\"")).await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[test]
fn no_script_parses_strings_as_html() {
    // Names, labels, errors and outputs are attacker-controlled: the scripts
    // build nodes and text, never markup.
    for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
        let text = std::str::from_utf8(asset.body).unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!text.contains(sink), "{} uses {sink}", asset.name);
        }
    }
}
