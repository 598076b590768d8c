//! A small blocking HTTP/1.1 client over `wasi:http/outgoing-handler` (feature
//! `http`), for plugins that declare the `http` capability.
//!
//! The host sends the requests: it allows only the part's target hosts, verifies
//! TLS certificates unless the task accepts self-signed ones, and bounds
//! connection time and response size. A refused request comes back as an error
//! saying so, never as a hang.
//!
//! Built on the Bytecode Alliance's `wasip2` bindings rather than an async
//! client: a plugin does one thing at a time and blocking calls keep it simple.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// How long a connection may take before the request fails, in nanoseconds
/// (the host may cut it shorter).
const CONNECT_TIMEOUT_NS: u64 = 10_000_000_000;

/// Largest chunk `blocking-write-and-flush` accepts.
const WRITE_CHUNK: usize = 4096;

/// Bytes asked for per read of a response body.
const READ_CHUNK: u64 = 64 << 10;

/// A URL split into what `wasi:http` wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `true` for https.
    pub https: bool,
    /// `host` or `host:port` as written.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse `http://host[:port][/path]` or `https://...`.
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{text:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let valid = authority.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
        if authority.is_empty() || !valid {
            return Err(format!("{text:?} has no valid host"));
        }
        Ok(Url { https, authority: authority.to_string(), path: path.to_string() })
    }

    /// `host:port` with the scheme's default port filled in: what the host's
    /// grant is checked against.
    pub fn host_port(&self) -> String {
        let has_port = match self.authority.rfind(']') {
            Some(i) => self.authority[i..].contains(':'),
            None => self.authority.contains(':'),
        };
        if has_port {
            self.authority.clone()
        } else {
            format!("{}:{}", self.authority, if self.https { 443 } else { 80 })
        }
    }
}

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of header `name` (lowercase), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of header `name`, as text.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status and headers.
    pub head: Head,
    /// The body.
    pub body: Vec<u8>,
}

/// Send a request and read the whole response body into memory.
pub fn request(
    method: &str, url: &Url, headers: &[(&str, &str)], body: &[u8],
) -> Result<Response, String> {
    let mut collected = Vec::new();
    let head = request_streaming(method, url, headers, body, |chunk| {
        collected.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(Response { head, body: collected })
}

/// Send a request and hand the response body to `sink` chunk by chunk (for
/// bodies too large to hold in memory). A `sink` error stops the read.
pub fn request_streaming(
    method: &str, url: &Url, headers: &[(&str, &str)], body: &[u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<Head, String> {
    let target = url.host_port();
    let fail = |what: &str, detail: String| format!("HTTP {method} {target}: {what}{detail}");
    let fields: Vec<(String, Vec<u8>)> =
        headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
    let fields = Fields::from_list(&fields).map_err(|e| fail("bad header: ", format!("{e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };
    let scheme = if url.https { Scheme::Https } else { Scheme::Http };
    let set = request
        .set_method(&method)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(&url.authority)))
        .and(request.set_path_with_query(Some(&url.path)));
    set.map_err(|()| fail("invalid request line", String::new()))?;
    let outgoing = request.body().map_err(|()| fail("no request body", String::new()))?;
    let options = RequestOptions::new();
    // A host may not support the option; its own bound applies then.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let pending =
        outgoing_handler::handle(request, Some(options)).map_err(|e| fail("", describe(&e)))?;
    let sent = (|| {
        {
            let stream = outgoing.write().map_err(|()| fail("no request stream", String::new()))?;
            for chunk in body.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| fail("sending the body: ", stream_error(e)))?;
            }
        }
        OutgoingBody::finish(outgoing, None).map_err(|e| fail("", describe(&e)))
    })();

    let response = loop {
        match pending.get() {
            Some(r) => break r,
            None => pending.subscribe().block(),
        }
    };
    let response = response.map_err(|()| fail("response already taken", String::new()))?;
    // A host that refuses the request (a host not granted), or a peer that
    // fails it, drops its body, so writing the body can fail first: the
    // response says why, the body's error only that it was cut off.
    let response = match (sent, response) {
        (_, Err(e)) => return Err(fail("", describe(&e))),
        (Err(cut_off), Ok(_)) => return Err(cut_off),
        (Ok(()), Ok(response)) => response,
    };
    let head = Head {
        status: response.status(),
        headers: response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect(),
    };
    let incoming = response.consume().map_err(|()| fail("no response body", String::new()))?;
    {
        let stream = incoming.stream().map_err(|()| fail("no response stream", String::new()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(bytes) => sink(&bytes)?,
                Err(StreamError::Closed) => break,
                Err(e) => return Err(fail("reading the response: ", stream_error(e))),
            }
        }
    }
    let _ = IncomingBody::finish(incoming);
    Ok(head)
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "stream closed".to_string(),
        StreamError::LastOperationFailed(err) => match wasip2::http::types::http_error_code(&err) {
            Some(code) => describe(&code),
            None => err.to_debug_string(),
        },
    }
}

/// An error code in words, with what to do for the ones a task can fix.
pub fn describe(e: &ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => {
            "request denied by the host: this host is not granted to the task (HTTP is \
             allowed only to the part's targets)"
                .to_string()
        }
        ErrorCode::TlsCertificateError => {
            "the server's TLS certificate was rejected (self-signed? the task may accept \
             self-signed certificates)"
                .to_string()
        }
        ErrorCode::ConnectionRefused => "connection refused".to_string(),
        ErrorCode::ConnectionTimeout => "connection timed out".to_string(),
        ErrorCode::HttpResponseBodySize(n) => {
            format!("response body too large (limit {} bytes)", n.unwrap_or(0))
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let u = Url::parse("https://127.0.0.1:8989/sdk?x=1").unwrap();
        assert!(u.https);
        assert_eq!(u.authority, "127.0.0.1:8989");
        assert_eq!(u.path, "/sdk?x=1");
        assert_eq!(u.host_port(), "127.0.0.1:8989");
        let u = Url::parse("http://files.example").unwrap();
        assert_eq!((u.path.as_str(), u.host_port()), ("/", "files.example:80".into()));
        assert_eq!(Url::parse("https://[::1]/a").unwrap().host_port(), "[::1]:443");
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http:///x").is_err());
    }
}
