//! Server-sent events: the parser of the `text/event-stream` format and the
//! typed stream of the daemon's [`Event`]s (`GET /api/v1/events`).
//!
//! Only what the daemon sends is interpreted (`id`, `event`, `data`, comments
//! for keep-alives); `retry` is ignored because reconnecting is the caller's
//! decision (the CLI falls back to polling).

use futures_util::{Stream, StreamExt};

use super::{ApiClient, ClientError};
use crate::protocol::Event;

/// One message of an event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// Its `id:` field, if any.
    pub id: Option<String>,
    /// Its `event:` field (the daemon sends `entity.kind`, e.g. `part.state`).
    pub event: Option<String>,
    /// Its `data:` lines joined with `\n`.
    pub data: String,
}

/// Cuts a byte stream into [`SseMessage`]s. Chunks may split lines and even
/// UTF-8 characters anywhere; bytes are kept until their line is complete.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    current: SseMessage,
    has_field: bool,
    data_lines: usize,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.pending.extend_from_slice(bytes);
        let mut messages = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + offset;
            let mut line = &self.pending[start..end];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            let line = String::from_utf8_lossy(line).into_owned();
            if let Some(message) = self.line(&line) {
                messages.push(message);
            }
            start = end + 1;
        }
        self.pending.drain(..start);
        messages
    }

    fn line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            // A blank line ends the message (if it had any field).
            if !self.has_field {
                return None;
            }
            self.has_field = false;
            self.data_lines = 0;
            return Some(std::mem::take(&mut self.current));
        }
        if line.starts_with(':') {
            return None; // a comment: the daemon's keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "id" => self.current.id = Some(value.to_string()),
            "event" => self.current.event = Some(value.to_string()),
            "data" => {
                // Lines after the first are joined with `\n` (even empty ones).
                if self.data_lines > 0 {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.data_lines += 1;
            }
            _ => return None, // `retry` and unknown fields
        }
        self.has_field = true;
        None
    }
}

impl ApiClient {
    /// The daemon's events, from the one after `after` (only new ones when
    /// `None`), as they happen. The stream ends with an error when the
    /// connection drops; reconnect with the last id seen to miss nothing.
    pub async fn events(
        &self, after: Option<i64>,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + use<>, ClientError> {
        let path = match after {
            Some(id) => format!("/events?after={id}"),
            None => "/events".to_string(),
        };
        let bytes = self.get_stream(&path).await?;
        let mut parser = SseParser::new();
        let messages = bytes.flat_map(move |chunk| {
            let items: Vec<Result<SseMessage, ClientError>> = match chunk {
                Ok(chunk) => parser.push(&chunk).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures_util::stream::iter(items)
        });
        Ok(messages.map(|message| {
            let message = message?;
            serde_json::from_str::<Event>(&message.data).map_err(|e| {
                ClientError::Decode(format!("an event from the daemon is not valid: {e}"))
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_across_chunks() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"id: 7\nevent: part.st").is_empty());
        let done = parser.push(b"ate\ndata: {\"a\":1}\n\n: keep-alive\n\nid:8\r\ndata:x\r\n");
        assert_eq!(
            done,
            vec![SseMessage {
                id: Some("7".into()),
                event: Some("part.state".into()),
                data: "{\"a\":1}".into()
            }]
        );
        let done = parser.push(b"\r\n");
        assert_eq!(done, vec![SseMessage { id: Some("8".into()), event: None, data: "x".into() }]);
    }

    #[test]
    fn multiline_data_is_joined() {
        let mut parser = SseParser::new();
        let done = parser.push(b"data: one\ndata: two\n\ndata:\ndata: three\n\n");
        assert_eq!(done[0].data, "one\ntwo");
        assert_eq!(done[1].data, "\nthree");
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let mut parser = SseParser::new();
        let text = "data: é\n\n".as_bytes();
        assert!(parser.push(&text[..7]).is_empty());
        assert_eq!(parser.push(&text[7..])[0].data, "é");
    }
}
