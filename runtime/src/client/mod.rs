//! [`ApiClient`]: the one HTTP client of the daemon's REST API, used by the
//! agent and by the admin CLI.
//!
//! Paths are relative to `/api/v1` (routes and bodies in [`crate::protocol`]).
//! Every failure is a [`ClientError`]: the daemon's own `{"error": {...}}`
//! answers become [`ClientError::Api`] with its code and message; an unreachable
//! daemon, a timeout or a TLS failure becomes [`ClientError::Transport`] with a
//! message saying what to check; [`ClientError::is_transient`] tells a caller
//! whether retrying may help.
//!
//! TLS is rustls with the usual public roots plus, for a daemon with its own
//! certificate, the CA given in [`ClientTls::ca_file`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobstack::client::ClientError> {
//! use jobstack::protocol::TaskView;
//! use jobstack::client::{ApiClient, ClientTls};
//! let client = ApiClient::new("http://127.0.0.1:8080", ClientTls::default())?.with_token("...");
//! let tasks: Vec<TaskView> = client.get_json("/tasks").await?;
//! # Ok(()) }
//! ```

mod error;
mod sse;

pub use error::ClientError;
pub use sse::{SseMessage, SseParser};

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::API_PREFIX;

/// How long a request may take, answer included, unless changed with
/// [`ApiClient::with_timeout`]: generous for an upload of a large plugin on a
/// slow link, short enough that a hung daemon is reported. Long-polls must set
/// more than their wait (the daemon holds a lease request up to
/// [`MAX_LEASE_WAIT`](crate::api::MAX_LEASE_WAIT)).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a connection (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings of the client.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// A PEM file of CA certificates trusted besides the public roots, for a
    /// daemon whose certificate is signed by its own CA (or self-signed).
    pub ca_file: Option<PathBuf>,
}

/// A client of one daemon. Cheap to clone (connections are shared).
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// `scheme://host:port[/prefix]` without the trailing slash or `/api/v1`.
    base: String,
    token: Option<HeaderValue>,
    timeout: Duration,
}

impl ApiClient {
    /// A client of the daemon at `base_url` (e.g. `http://127.0.0.1:8080`;
    /// a trailing `/api/v1` is accepted and ignored). No token, timeout
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str, tls: ClientTls) -> Result<Self, ClientError> {
        let base = normalize_base(base_url)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("jobstack/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &tls.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Config(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::Config(format!(
                    "the CA file {} is not PEM certificates: {e}",
                    path.display()
                ))
            })?;
            if certificates.is_empty() {
                return Err(ClientError::Config(format!(
                    "the CA file {} holds no certificate",
                    path.display()
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self { http, base, token: None, timeout: DEFAULT_TIMEOUT })
    }

    /// The same client sending `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl AsRef<str>) -> Self {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_ref().trim()))
            // A token with control characters cannot be sent; send none so
            // the daemon answers 401 with its hint rather than failing here.
            .ok();
        if let Some(value) = &mut value {
            value.set_sensitive(true);
        }
        self.token = value;
        self
    }

    /// The same client with another per-request timeout (answer included).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The daemon's base URL, as given (normalized).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The full URL of an API path (`/tasks` -> `http://host/api/v1/tasks`).
    pub fn url(&self, path: &str) -> String {
        let path = path.strip_prefix('/').unwrap_or(path);
        format!("{}{API_PREFIX}/{path}", self.base)
    }

    /// `GET path`, the answer decoded from JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send(self.request(Method::GET, path)).await?;
        decode(response).await
    }

    /// `POST path` with a JSON body; `None` when the daemon answers 204 No
    /// Content (e.g. a lease request that found no work).
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self, path: &str, body: &B,
    ) -> Result<Option<T>, ClientError> {
        let response = self.send(self.request(Method::POST, path).json(body)).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        decode(response).await.map(Some)
    }

    /// `POST path` without a body (force-run, suspend, resume, cancel).
    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send(self.request(Method::POST, path)).await?;
        decode(response).await
    }

    /// A request whose answer has no body (204): `DELETE path`, or `POST
    /// path` without a body (a dead letter's re-send).
    pub async fn send_empty(&self, method: Method, path: &str) -> Result<(), ClientError> {
        self.send(self.request(method, path)).await.map(|_| ())
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self, path: &str, body: &B,
    ) -> Result<T, ClientError> {
        let response = self.send(self.request(Method::PUT, path).json(body)).await?;
        decode(response).await
    }

    /// `POST path` with raw bytes (a plugin upload), the answer decoded from JSON.
    pub async fn post_bytes<T: DeserializeOwned>(
        &self, path: &str, bytes: impl Into<Bytes>, content_type: &str,
    ) -> Result<T, ClientError> {
        let request =
            self.request(Method::POST, path).header(CONTENT_TYPE, content_type).body(bytes.into());
        let response = self.send(request).await?;
        decode(response).await
    }

    /// `GET path`, the raw body (a module download).
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, ClientError> {
        let url = self.url(path);
        let response = self.send(self.request(Method::GET, path)).await?;
        response.bytes().await.map_err(|e| ClientError::transport(&url, &e))
    }

    /// `GET path` as a stream of body chunks with no overall timeout (a
    /// server-sent events stream stays open); only the connection and the
    /// answer's status are awaited here. See [`ApiClient::events`] for the
    /// daemon's event stream, parsed.
    pub async fn get_stream(
        &self, path: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        let url = self.url(path);
        let mut request = self.http.get(&url).header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        let response = self.send(request).await?;
        Ok(response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| ClientError::transport(&url, &e))))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self.http.request(method, self.url(path)).timeout(self.timeout);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        request
    }

    /// Send and turn an error status into [`ClientError::Api`].
    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::transport(&self.base, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(ClientError::from_answer(status, &body))
    }
}

/// Decode a success answer's JSON body.
async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let url = response.url().to_string();
    let body = response.bytes().await.map_err(|e| ClientError::transport(&url, &e))?;
    serde_json::from_slice(&body).map_err(|e| {
        ClientError::Decode(format!(
            "unexpected answer from {url}: {e} (is the server a jobstack daemon of the same version?)"
        ))
    })
}

/// Check a base URL and cut it to `scheme://host[:port][/prefix]`.
fn normalize_base(base_url: &str) -> Result<String, ClientError> {
    let trimmed = base_url.trim();
    let url = reqwest::Url::parse(trimmed).map_err(|e| {
        ClientError::Config(format!(
            "invalid daemon URL {trimmed:?}: {e} (expected e.g. http://127.0.0.1:8080)"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ClientError::Config(format!(
            "invalid daemon URL {trimmed:?}: use http://HOST:PORT or https://HOST:PORT"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Config(format!(
            "invalid daemon URL {trimmed:?}: no query or fragment"
        )));
    }
    let mut base = url.as_str().trim_end_matches('/').to_string();
    if let Some(stripped) = base.strip_suffix(API_PREFIX) {
        base = stripped.trim_end_matches('/').to_string();
    }
    Ok(base)
}

/// Percent-encode one path segment (a task name in `/tasks/{name}`), so names
/// with spaces, slashes or `?` reach the daemon intact.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalized() {
        let cases = [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("https://jobs.example/api/v1/", "https://jobs.example"),
            ("http://proxy/jobstack/", "http://proxy/jobstack"),
        ];
        for (given, expected) in cases {
            assert_eq!(normalize_base(given).unwrap(), expected, "{given}");
        }
        for bad in ["127.0.0.1:8080", "ftp://host", "http://host/?x=1", ""] {
            assert!(matches!(normalize_base(bad), Err(ClientError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn urls_are_under_the_api_prefix() {
        let client = ApiClient::new("http://127.0.0.1:8080/", ClientTls::default()).unwrap();
        assert_eq!(client.url("/tasks"), "http://127.0.0.1:8080/api/v1/tasks");
        assert_eq!(client.url("runs/3"), "http://127.0.0.1:8080/api/v1/runs/3");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("scan-office_1.x"), "scan-office_1.x");
        assert_eq!(segment("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn missing_or_bad_ca_file_is_a_config_error() {
        let missing = ClientTls { ca_file: Some("/nonexistent/ca.pem".into()) };
        let e = ApiClient::new("https://h", missing).unwrap_err();
        assert!(e.to_string().contains("cannot read the CA file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let e = ApiClient::new("https://h", ClientTls { ca_file: Some(path) }).unwrap_err();
        assert!(matches!(e, ClientError::Config(_)), "{e}");
    }

    #[tokio::test]
    async fn refused_connection_says_what_to_check() {
        // A port just released: nothing listens there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client =
            ApiClient::new(&format!("http://127.0.0.1:{port}"), ClientTls::default()).unwrap();
        let e = client.get_json::<serde_json::Value>("/tasks").await.unwrap_err();
        assert!(e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("cannot reach the daemon at http://127.0.0.1:")
                && text.contains("connection refused")
                && text.contains("jobstack serve"),
            "{text}"
        );
    }
}
