//! The crate's error, and the service's `error` events typed by code.

use serde::{Deserialize, Serialize};

/// What can go wrong in steward-realtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    #[error("realtime config: {field} {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The WebSocket link failed (connecting, or sending); steward-ws's
    /// message names the URL (without query string).
    #[error("realtime link: {source}")]
    Link {
        /// What steward-ws said.
        #[source]
        source: steward_ws::Error,
    },
    /// The session is closed: its task ended.
    #[error("the realtime session is closed")]
    Closed,
    /// A tool output or user message was refused: the text already
    /// waiting for the session task reached
    /// [`RealtimeConfig::text_queue_bytes`](crate::RealtimeConfig::text_queue_bytes).
    /// Nothing of it was sent; counted in
    /// [`RealtimeStats::texts_refused`](crate::RealtimeStats::texts_refused).
    #[error(
        "the realtime session's command queue is full: a {what} of {bytes} bytes refused \
         ({queued_bytes} bytes of text wait for the session task, limit {limit_bytes})"
    )]
    QueueFull {
        /// What was refused (`tool output`, `user message`).
        what: &'static str,
        /// Its bytes.
        bytes: u64,
        /// Text waiting when it came.
        queued_bytes: u64,
        /// The bound.
        limit_bytes: u64,
    },
    /// The session task panicked.
    #[error("the realtime session task failed: {message}")]
    Task {
        /// What the runtime said.
        message: String,
    },
}

/// The code of a service `error` event, typed where the client acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerErrorCode {
    /// The session reached its maximum length; the service closes it.
    SessionExpired,
    /// Too many requests or tokens.
    RateLimitExceeded,
    /// A parameter's value is not accepted (a truncation past the audio, ...).
    InvalidValue,
    /// `response.cancel` with no response in progress (an expected race when
    /// the service already cancelled on speech).
    ResponseCancelNotActive,
    /// `input_audio_buffer.commit` of an empty buffer.
    InputAudioBufferCommitEmpty,
    /// An item id the service does not know.
    ItemNotFound,
    /// Any other code, as sent.
    Other(String),
    /// No code at all.
    None,
}

impl ServerErrorCode {
    /// Parses the wire code.
    #[must_use]
    pub fn parse(code: Option<&str>) -> Self {
        match code {
            None => ServerErrorCode::None,
            Some("session_expired") => ServerErrorCode::SessionExpired,
            Some("rate_limit_exceeded") => ServerErrorCode::RateLimitExceeded,
            Some("invalid_value") => ServerErrorCode::InvalidValue,
            Some("response_cancel_not_active") => ServerErrorCode::ResponseCancelNotActive,
            Some("input_audio_buffer_commit_empty") => ServerErrorCode::InputAudioBufferCommitEmpty,
            Some("item_not_found") => ServerErrorCode::ItemNotFound,
            Some(other) => ServerErrorCode::Other(other.chars().take(64).collect()),
        }
    }

    /// The code as the service writes it (`"none"` when absent).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            ServerErrorCode::SessionExpired => "session_expired",
            ServerErrorCode::RateLimitExceeded => "rate_limit_exceeded",
            ServerErrorCode::InvalidValue => "invalid_value",
            ServerErrorCode::ResponseCancelNotActive => "response_cancel_not_active",
            ServerErrorCode::InputAudioBufferCommitEmpty => "input_audio_buffer_commit_empty",
            ServerErrorCode::ItemNotFound => "item_not_found",
            ServerErrorCode::Other(s) => s,
            ServerErrorCode::None => "none",
        }
    }
}

/// A service `error` event, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServerError {
    /// The code.
    pub code: ServerErrorCode,
    /// The class (`invalid_request_error`, `server_error`, ...).
    pub kind: Option<String>,
    /// The service's message (at most 512 characters kept).
    pub message: String,
    /// The client event that caused it, when the service says.
    pub event_id: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service error {}: {}", self.code.as_str(), self.message)
    }
}
