//! The daemon's OpenAPI document as a contract: every answer the end-to-end
//! tests get through [`Daemon::request`](crate::daemon::Daemon::request) is
//! checked against it, so a wire type and its documented schema cannot part.
//!
//! The operation is found by method and path template; the response by its
//! status (exact, then its `4XX`-style range, then `default`). A JSON body must
//! validate against the response's schema (JSON Schema 2020-12, as OpenAPI 3.1
//! says, `$ref`s resolved in the document); any other body must have a
//! documented content type; an empty one, a response documented without
//! content. Answers of the router itself to a path or method it does not serve
//! (404, 405) are held to the error schema. Anything else panics, naming the
//! route, the status, the body and what is wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonschema::{Draft, Validator};
use serde_json::Value;

/// The base URI the document is registered under, so that schema `$ref`s
/// (`#/components/schemas/...`) resolve inside it.
const DOCUMENT_URI: &str = "urn:jobstack:openapi";

/// The most characters of a body a failure quotes.
const EXCERPT: usize = 2_000;

/// A checked OpenAPI document, with the validators built so far.
pub struct Contract {
    document: Value,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").finish_non_exhaustive()
    }
}

/// One answer, as the client saw it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The request's method, e.g. `GET`.
    pub method: &'a str,
    /// The request's path from the root, query string included or not.
    pub path: &'a str,
    /// The answer's status.
    pub status: u16,
    /// The answer's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The answer's body.
    pub body: &'a str,
}

impl Contract {
    /// The contract of `document` (an OpenAPI 3.1 document).
    pub fn new(document: Value) -> Self {
        assert!(
            document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
            "not an OpenAPI 3.1 document: {}",
            excerpt(&document.to_string())
        );
        Contract { document, validators: Mutex::default() }
    }

    /// The document.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Check one answer; panics when the document does not describe it.
    pub fn check(&self, exchange: &Exchange) {
        if let Err(why) = self.verdict(exchange) {
            panic!(
                "the answer to {} {} breaks the OpenAPI document: HTTP {} ({}) {}\n{why}",
                exchange.method,
                exchange.path,
                exchange.status,
                exchange.content_type.unwrap_or("no content type"),
                excerpt(exchange.body),
            );
        }
    }

    fn verdict(&self, exchange: &Exchange) -> Result<(), String> {
        let path = exchange.path.split(['?', '#']).next().unwrap_or_default();
        let method = exchange.method.to_ascii_lowercase();
        let Some(template) = self.template(path, &method) else {
            return self.unrouted(exchange);
        };
        let operation = ["paths", template.as_str(), method.as_str()];
        let responses = pointer(&operation) + "/responses";
        let status = exchange.status.to_string();
        let range = format!("{}XX", &status[..1]);
        let chosen = [status.as_str(), range.as_str(), "default"]
            .into_iter()
            .map(|key| format!("{responses}/{}", escape(key)))
            .find(|at| self.document.pointer(at).is_some())
            .ok_or_else(|| format!("{method} {template} documents no response {status}"))?;
        let response = self.dereference(&chosen)?;
        self.check_content(exchange, &response)
    }

    /// What the router answers itself, to a path or method no handler
    /// serves: the fallback's 404 (an error body), or a bodiless 405.
    fn unrouted(&self, exchange: &Exchange) -> Result<(), String> {
        match exchange.status {
            404 | 405 if exchange.body.is_empty() => Ok(()),
            404 => self.check_content(exchange, "/components/responses/Error"),
            _ => Err("no operation of the document matches this method and path".into()),
        }
    }

    /// The pointer of the response object at `at`, following a `$ref` to
    /// `components/responses`.
    fn dereference(&self, at: &str) -> Result<String, String> {
        let response = &self.document.pointer(at).expect("found above");
        match response.get("$ref").and_then(Value::as_str) {
            Some(target) => {
                let inner = target.strip_prefix('#').ok_or(format!("external $ref {target}"))?;
                self.document.pointer(inner).ok_or(format!("dangling $ref {target}"))?;
                Ok(inner.to_string())
            }
            None => Ok(at.to_string()),
        }
    }

    fn check_content(&self, exchange: &Exchange, response: &str) -> Result<(), String> {
        let content = self.document.pointer(&format!("{response}/content"));
        let media = content.and_then(Value::as_object);
        let documented: Vec<&String> = media.map(|m| m.keys().collect()).unwrap_or_default();
        if exchange.body.is_empty() && exchange.content_type.is_none() {
            return if documented.is_empty() {
                Ok(())
            } else {
                Err(format!("an empty answer where the document has content {documented:?}"))
            };
        }
        let essence = |t: &str| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let actual = essence(exchange.content_type.unwrap_or_default());
        let key = documented
            .iter()
            .find(|k| essence(k) == actual)
            .ok_or_else(|| format!("content type {actual:?} is not among {documented:?}"))?;
        if actual != "application/json" {
            return Ok(());
        }
        let body: Value = serde_json::from_str(exchange.body)
            .map_err(|e| format!("the body is not JSON though typed so: {e}"))?;
        let at = format!("{response}/content/{}/schema", escape(key));
        self.document.pointer(&at).ok_or_else(|| format!("{key} has no schema"))?;
        let validator = self.validator(&at)?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("  at {:?}: {e}", e.instance_path.to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("the body does not match {at}:\n{}", errors.join("\n")))
        }
    }

    /// The validator of the schema at pointer `at` of the document.
    fn validator(&self, at: &str) -> Result<Arc<Validator>, String> {
        let mut validators = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = validators.get(at) {
            return Ok(v.clone());
        }
        let schema = serde_json::json!({ "$ref": format!("{DOCUMENT_URI}#{}", fragment(at)) });
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .with_resource(DOCUMENT_URI, Draft::Draft202012.create_resource(self.document.clone()))
            .build(&schema)
            .map_err(|e| format!("the schema at {at} does not compile: {e}"))?;
        let validator = Arc::new(validator);
        validators.insert(at.to_string(), validator.clone());
        Ok(validator)
    }

    /// The path template of the document that `path` matches and that has
    /// `method`: literal segments win over parameters, as in the router.
    fn template(&self, path: &str, method: &str) -> Option<String> {
        let paths = self.document["paths"].as_object()?;
        let segments: Vec<&str> = path.split('/').collect();
        paths
            .iter()
            .filter(|(_, item)| item.get(method).is_some())
            .filter_map(|(template, _)| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && part.ends_with('}') {
                        if segment.is_empty() {
                            return None;
                        }
                    } else if part == segment {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, template)| template.clone())
    }
}

/// A JSON pointer to `tokens`.
fn pointer(tokens: &[&str]) -> String {
    tokens.iter().map(|t| format!("/{}", escape(t))).collect()
}

/// A JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: path templates' braces percent-encoded.
fn fragment(pointer: &str) -> String {
    let mut out = String::new();
    for byte in pointer.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
