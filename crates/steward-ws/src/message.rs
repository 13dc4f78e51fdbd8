//! Messages and what `shutdown` does with the queued ones.

use std::fmt;

use tokio_tungstenite::tungstenite::{self, Bytes};

/// A WebSocket data message. Control frames (ping, pong, close) are handled by
/// the session and never reach the application.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message (realtime-API events are text).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(bytes: impl Into<Vec<u8>>) -> Self {
        Message::Binary(bytes.into())
    }

    /// The payload size in bytes (what the size limits compare).
    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
        }
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Converts to the protocol type without copying the payload.
    pub(crate) fn into_wire(self) -> tungstenite::Message {
        match self {
            Message::Text(t) => tungstenite::Message::Text(t.into()),
            Message::Binary(b) => tungstenite::Message::Binary(Bytes::from(b)),
        }
    }

    /// Converts back from the protocol type; `None` for control frames.
    pub(crate) fn from_wire(msg: tungstenite::Message) -> Option<Self> {
        match msg {
            tungstenite::Message::Text(t) => Some(Message::Text(t.as_str().to_owned())),
            tungstenite::Message::Binary(b) => Some(Message::Binary(Vec::from(b))),
            _ => None,
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(bytes)
    }
}

/// Shows the kind, the size and a short prefix: messages can hold 15 MiB of
/// base64 audio, and logs must stay readable.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        match self {
            Message::Text(t) => {
                let mut end = t.len().min(SHOWN);
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                let more = if end < t.len() { "…" } else { "" };
                write!(f, "Text({} bytes: {:?}{more})", t.len(), &t[..end])
            }
            Message::Binary(b) => {
                let shown = &b[..b.len().min(16)];
                let more = if shown.len() < b.len() { "…" } else { "" };
                write!(f, "Binary({} bytes: {shown:02x?}{more})", b.len())
            }
        }
    }
}

/// What [`Session::shutdown`](crate::Session::shutdown) does with queued messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShutdownMode {
    /// Write every queued message first (bounded by the drain timeout), then
    /// close with code 1000.
    #[default]
    Drain,
    /// Close with code 1000 at once; queued messages are handed back.
    Abandon,
}
