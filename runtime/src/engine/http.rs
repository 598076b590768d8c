//! Outgoing HTTP (`wasi:http/outgoing-handler`) for plugins that declare the
//! `http` capability: deny by default, grant by host.
//!
//! [`HttpPolicy`] is the hook wasmtime-wasi-http calls for every request a plugin
//! sends. It owns three decisions:
//!
//! - **Who may be reached.** Only the hosts the execution was granted
//!   ([`Grants::allow_http_host`](super::Grants::allow_http_host)): `host` allows
//!   any port of that host, `host:port` that port only. Anything else is refused
//!   with `http-request-denied` before a connection is made, and the refusal is
//!   written to the execution's logs with the list of granted hosts.
//! - **Whom to trust.** HTTPS verifies the server's certificate against Mozilla's
//!   root certificates (webpki-roots), like a browser. A task may choose
//!   ([`Grants::accept_self_signed_tls`](super::Grants::accept_self_signed_tls))
//!   to accept any certificate, as real ESX hosts ship self-signed ones; the
//!   handshake signatures are still checked, so the peer must hold the key of the
//!   certificate it shows.
//! - **How much and how long.** A connection must be up within
//!   [`HTTP_CONNECT_TIMEOUT`] (or the plugin's own shorter timeout); a response
//!   body larger than [`MAX_HTTP_RESPONSE_BODY_BYTES`] fails the read. The
//!   execution's wall-clock deadline bounds everything else.
//!
//! HTTP/1.1 only (what ESX hosts and artifact servers speak); no proxy, no
//! redirects (a plugin follows them itself, to granted hosts only).

use bytes::Bytes;
use http::Uri;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// How long a plugin's request may wait for its TCP connection and TLS handshake.
/// A plugin may ask for less (`request-options.connect-timeout`), never more: an
/// unreachable host fails the request quickly, not at the execution's deadline.
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body a plugin may read, in bytes: the size of the largest
/// artifact a deploy may fetch (the daemon's artifact store has the same bound).
/// Past it the body read fails with `http-response-body-size`.
pub const MAX_HTTP_RESPONSE_BODY_BYTES: u64 = 512 << 20;

/// A host a plugin may send HTTP requests to: `host` (any port) or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHost {
    /// Host name or IP address, lowercase, IPv6 without brackets.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

impl std::str::FromStr for HttpHost {
    type Err = String;

    /// Parse `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a host or host:port");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if text.matches(':').count() == 1 {
            let (host, port) = text.split_once(':').ok_or_else(bad)?;
            (host, Some(port))
        } else {
            (text, None)
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
            None => None,
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        if !valid_host {
            return Err(bad());
        }
        Ok(HttpHost { host: host.to_ascii_lowercase(), port })
    }
}

impl fmt::Display for HttpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

impl HttpHost {
    fn allows(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

/// The outgoing-request hook of one execution. See the module docs.
pub(crate) struct HttpPolicy {
    hosts: Arc<[HttpHost]>,
    accept_self_signed: bool,
    /// Refusals and TLS failures explained for the execution's logs (the plugin
    /// itself only sees an error code).
    notes: Arc<Mutex<Vec<String>>>,
}

impl HttpPolicy {
    /// A policy allowing `hosts` (unparsable entries allow nothing).
    pub(crate) fn new(hosts: &[String], accept_self_signed: bool) -> Self {
        HttpPolicy {
            hosts: hosts.iter().filter_map(|h| h.parse().ok()).collect(),
            accept_self_signed,
            notes: Arc::default(),
        }
    }

    /// Take the explanations gathered so far.
    pub(crate) fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().expect("http notes lock"))
    }

    /// The authority to connect to, or why the request is refused.
    fn check(&self, uri: &Uri) -> Result<Target, String> {
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let host =
            uri.host().ok_or_else(|| format!("outgoing HTTP refused: {uri} names no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if self.hosts.iter().any(|g| g.allows(&host, port)) {
            return Ok(Target { host, port, tls });
        }
        let granted = if self.hosts.is_empty() {
            "none".to_string()
        } else {
            let names: Vec<String> = self.hosts.iter().map(ToString::to_string).collect();
            names.join(", ")
        };
        Err(format!(
            "outgoing HTTP to {host}:{port} refused: that host is not granted to this \
             execution (granted: {granted})"
        ))
    }
}

/// Where a granted request goes.
struct Target {
    host: String,
    port: u16,
    tls: bool,
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self, request: http::Request<WasiBody>, options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let decision = self.check(request.uri());
        let notes = self.notes.clone();
        let accept_self_signed = self.accept_self_signed;
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .map_or(HTTP_CONNECT_TIMEOUT, |t| t.min(HTTP_CONNECT_TIMEOUT));
        Box::new(async move {
            let target = match decision {
                Ok(t) => t,
                Err(why) => {
                    notes.lock().expect("http notes lock").push(why);
                    return Err(HttpError::HttpRequestDenied);
                }
            };
            let result = send(request, &target, accept_self_signed, connect_timeout).await;
            if let Err(Failure::Explained(why, _)) = &result {
                notes.lock().expect("http notes lock").push(why.clone());
            }
            result.map_err(Failure::into_error)
        })
    }
}

/// A failed send, with an explanation for the logs when there is one worth giving.
enum Failure {
    Plain(HttpError),
    Explained(String, HttpError),
}

impl Failure {
    fn into_error(self) -> HttpError {
        match self {
            Failure::Plain(e) | Failure::Explained(_, e) => e,
        }
    }
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        Failure::Plain(e)
    }
}

impl From<hyper::Error> for Failure {
    fn from(e: hyper::Error) -> Self {
        Failure::Plain(e.into())
    }
}

async fn send(
    mut request: http::Request<WasiBody>, target: &Target, accept_self_signed: bool,
    connect_timeout: Duration,
) -> Result<
    (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
    Failure,
> {
    let authority = HttpHost { host: target.host.clone(), port: Some(target.port) }.to_string();
    let connect = async {
        let tcp = TcpStream::connect(&authority).await.map_err(HttpError::Connect)?;
        if !target.tls {
            return Ok::<_, Failure>(TokioIo::new(Box::new(tcp) as Box<dyn Stream>));
        }
        let name = server_name(&target.host)?;
        let config = if accept_self_signed { ANY_CERT.clone() } else { VERIFIED.clone() };
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| tls_failure(e, &authority))?;
        Ok(TokioIo::new(Box::new(tls) as Box<dyn Stream>))
    };
    let io = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;

    // The request carries scheme and authority; on the wire only the path goes
    // (absolute URIs are for proxies).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    // Drive the connection while waiting for the response head.
    let mut conn = Box::pin(conn);
    let mut response = Box::pin(sender.send_request(request));
    let mut conn_done = false;
    let response = loop {
        tokio::select! {
            r = &mut response => break r?,
            c = &mut conn, if !conn_done => {
                c?;
                conn_done = true;
            }
        }
    };
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > MAX_HTTP_RESPONSE_BODY_BYTES
    {
        return Err(Failure::Explained(
            format!(
                "response from {authority} announces {length} bytes, over the \
                 {} MiB limit",
                MAX_HTTP_RESPONSE_BODY_BYTES >> 20
            ),
            HttpError::HttpResponseBodySize(Some(length)),
        ));
    }
    let response = response.map(|incoming| {
        http_body_util::BodyExt::boxed_unsync(Bounded {
            inner: incoming,
            left: MAX_HTTP_RESPONSE_BODY_BYTES,
        })
    });
    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async move {
        if !conn_done {
            conn.await?;
        }
        Ok(())
    });
    Ok((response, io))
}

/// The byte stream under a connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Failure> {
    use rustls::pki_types::ServerName;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(host.to_string())
        .map_err(|_| Failure::Plain(HttpError::HttpRequestUriInvalid))
}

/// Name certificate failures (the usual one: a self-signed certificate without
/// the task's permission) so the logs say what to do.
fn tls_failure(e: std::io::Error, authority: &str) -> Failure {
    let is_cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if is_cert {
        return Failure::Explained(
            format!(
                "TLS certificate of {authority} rejected ({e}); if this host uses a \
                 self-signed certificate, the task must accept self-signed TLS"
            ),
            HttpError::TlsCertificateError,
        );
    }
    Failure::Explained(format!("TLS with {authority} failed: {e}"), HttpError::Tls(e))
}

/// A response body that fails past [`MAX_HTTP_RESPONSE_BODY_BYTES`].
struct Bounded {
    inner: hyper::body::Incoming,
    left: u64,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>, cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.left {
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            MAX_HTTP_RESPONSE_BODY_BYTES,
                        )))));
                    }
                    self.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Normal verification: Mozilla's roots, host name checked.
static VERIFIED: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
});

/// Any certificate accepted (signatures of the handshake still checked).
static ANY_CERT: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    Arc::new(config)
});

/// The verifier behind "accept self-signed": trusts whatever certificate the
/// server shows, but still requires the handshake to be signed with its key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self, _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>, _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self, message: &[u8], cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self, message: &[u8], cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_with_and_without_ports() {
        let h: HttpHost = "ESX01.example.com:443".parse().unwrap();
        assert_eq!(h.to_string(), "esx01.example.com:443");
        let h: HttpHost = "10.0.0.5".parse().unwrap();
        assert_eq!(h.port, None);
        let h: HttpHost = "[::1]:8443".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", Some(8443)));
        let h: HttpHost = "::1".parse().unwrap();
        assert_eq!(h.to_string(), "[::1]");
        for bad in ["", "host:notaport", "a b", "10.0.0.0/24", "[::1"] {
            assert!(bad.parse::<HttpHost>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_granted_hosts_and_ports_pass_the_check() {
        let policy = HttpPolicy::new(&["127.0.0.1:8443".into(), "esx01".into()], false);
        let ok = |u: &str| policy.check(&u.parse().unwrap()).is_ok();
        assert!(ok("https://127.0.0.1:8443/sdk"));
        assert!(!ok("https://127.0.0.1:8444/sdk"));
        assert!(!ok("https://127.0.0.1/sdk"));
        assert!(ok("http://ESX01/"));
        assert!(ok("https://esx01:9443/"));
        assert!(!ok("https://esx02/"));
    }

    #[test]
    fn a_refusal_names_the_host_and_what_was_granted() {
        let none = HttpPolicy::new(&[], false);
        let why = none.check(&"http://10.1.2.3:8080/x".parse().unwrap()).err().unwrap();
        assert!(why.contains("10.1.2.3:8080"), "{why}");
        assert!(why.contains("granted: none"), "{why}");
        let one = HttpPolicy::new(&["a.example:80".into()], false);
        let why = one.check(&"http://b.example/".parse().unwrap()).err().unwrap();
        assert!(why.contains("granted: a.example:80"), "{why}");
    }
}
