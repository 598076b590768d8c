//! [`ClientError`]: every way a call to the daemon's API can fail, split so a
//! caller knows whether to retry ([`ClientError::is_transient`]) and a user
//! reads what to do about it.

use reqwest::StatusCode;

use crate::protocol::ErrorBody;

/// The longest part of a non-JSON error body kept in a message: enough for a
/// proxy's one-line explanation, not a whole HTML page.
const MAX_RAW_ERROR_CHARS: usize = 300;

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with an error status. `code` and `message` come from
    /// its `{"error": {"code", "message"}}` body (or describe the status when a
    /// proxy answered with something else).
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's stable code, e.g. `invalid_params`, `not_found`, `unauthorized`.
        code: String,
        /// What went wrong, for people.
        message: String,
    },
    /// The daemon could not be reached or the exchange broke off: connection
    /// refused, timeout, TLS failure, a stream cut in the middle.
    #[error("{0}")]
    Transport(String),
    /// The daemon answered success with a body that is not what the route
    /// documents (a version mismatch, or not a jobstack daemon).
    #[error("{0}")]
    Decode(String),
    /// The client could not be set up: a bad base URL, an unreadable CA file.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Whether trying the same call again later may succeed: the daemon was
    /// unreachable, or a proxy or the daemon said it is temporarily unable
    /// (502, 503, 504). Everything else will fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => matches!(status, 502..=504),
            ClientError::Decode(_) | ClientError::Config(_) => false,
        }
    }

    /// The HTTP status, for an error the daemon answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code, for an error the daemon answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The error of a non-success answer, from its body.
    pub(crate) fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            return ClientError::Api {
                status: status.as_u16(),
                code: parsed.error.code,
                message: parsed.error.message,
            };
        }
        // Not the daemon's error body: a proxy, or another server on the port.
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let reason = status.canonical_reason().unwrap_or("error");
        let message = if text.is_empty() {
            format!("the server answered {} {reason}", status.as_u16())
        } else {
            let short: String = text.chars().take(MAX_RAW_ERROR_CHARS).collect();
            format!("the server answered {} {reason}: {short}", status.as_u16())
        };
        ClientError::Api {
            status: status.as_u16(),
            code: format!("http_{}", status.as_u16()),
            message,
        }
    }

    /// A transport failure of a request to `url`, with what the user can do.
    pub(crate) fn transport(url: &str, error: &reqwest::Error) -> Self {
        let cause = root_cause(error);
        let message = if error.is_timeout() {
            format!("the daemon at {url} did not answer in time ({cause})")
        } else if error.is_connect() {
            let lower = cause.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
            {
                format!(
                    "TLS with the daemon at {url} failed: {cause}; if the daemon has its own certificate, pass its CA with --ca-file"
                )
            } else {
                format!("cannot reach the daemon at {url}: {cause}; is `jobstack serve` running?")
            }
        } else {
            format!("the exchange with the daemon at {url} failed: {cause}")
        };
        ClientError::Transport(message)
    }
}

/// The innermost error's message ("connection refused" rather than "error
/// sending request"), with the OS error number dropped.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    let text = current.to_string();
    // io::Error renders "Connection refused (os error 111)".
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_body_is_parsed() {
        let body = br#"{"error":{"code":"not_found","message":"task \"x\" not found"}}"#;
        let e = ClientError::from_answer(StatusCode::NOT_FOUND, body);
        assert_eq!(
            e,
            ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: "task \"x\" not found".into()
            }
        );
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "task \"x\" not found");
    }

    #[test]
    fn foreign_error_body_is_described() {
        let e = ClientError::from_answer(StatusCode::BAD_GATEWAY, b"<html>upstream down</html>");
        assert_eq!(e.code(), Some("http_502"));
        assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
        assert!(e.to_string().contains("upstream down"), "{e}");
        assert!(e.is_transient());
        let empty = ClientError::from_answer(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(empty.to_string(), "the server answered 503 Service Unavailable");
    }

    #[test]
    fn transient_only_for_transport_and_gateway_statuses() {
        let api = |status| ClientError::Api { status, code: String::new(), message: String::new() };
        assert!(ClientError::Transport("x".into()).is_transient());
        for status in [502, 503, 504] {
            assert!(api(status).is_transient(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 500] {
            assert!(!api(status).is_transient(), "{status}");
        }
        assert!(!ClientError::Decode("x".into()).is_transient());
    }

    #[test]
    fn root_cause_drops_os_error_number() {
        // ECONNREFUSED on Linux renders "Connection refused (os error 111)".
        let io = std::io::Error::from_raw_os_error(111);
        assert_eq!(root_cause(&io), "connection refused");
    }
}
