//! The crate's one error type.

use std::time::Duration;

use crate::Message;

/// A boxed error from a lower layer (I/O, TLS, the WebSocket protocol), kept as
/// `source()` so third-party types stay out of our signatures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which way a message was going when a size limit refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A message the application tried to send.
    Outgoing,
    /// A message the peer sent to us.
    Incoming,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        })
    }
}

/// Everything that can go wrong in `steward-ws`.
///
/// URLs in messages have their query string and user info removed: API keys
/// sometimes travel there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (bad URL, header, limit or timeout).
    #[error("invalid WebSocket configuration: {what}")]
    Config {
        /// What is wrong, naming the field.
        what: String,
        /// The underlying parse error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A wss:// URL was given but no root certificate is trusted.
    #[error(
        "no trusted root certificates for {url}: enable the `native-roots` or `webpki-roots` feature or add a root certificate"
    )]
    NoRoots {
        /// The URL (without query).
        url: String,
    },
    /// A PEM or DER root certificate could not be read.
    #[error("cannot read root certificate {what}")]
    Certificate {
        /// Which certificate (path or position).
        what: String,
        /// The reason.
        #[source]
        source: BoxError,
    },
    /// Connecting (TCP, TLS and the HTTP upgrade) took longer than the connect timeout.
    #[error("connecting to {url} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The URL (without query).
        url: String,
        /// The configured connect timeout.
        timeout: Duration,
    },
    /// Connecting failed.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL (without query).
        url: String,
        /// The I/O, TLS or handshake error.
        #[source]
        source: BoxError,
    },
    /// The server answered the upgrade request with an HTTP error status.
    #[error("{url} refused the WebSocket upgrade with HTTP {status}")]
    Http {
        /// The URL (without query).
        url: String,
        /// The HTTP status code (401 for a bad API key, say).
        status: u16,
    },
    /// A message is larger than the configured limit. Outgoing ones are refused
    /// before they are queued; an incoming one ends the link with close code 1009.
    #[error("{direction} message of {size} bytes exceeds the limit of {limit} bytes on {url}")]
    MessageTooLarge {
        /// The URL (without query).
        url: String,
        /// Which way the message was going.
        direction: Direction,
        /// The message's size in bytes (for incoming ones, the size announced by the frame header).
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// `try_send` found the outbound queue full; the message is handed back.
    #[error("outbound queue to {url} is full ({limit_messages} messages or {limit_bytes} bytes)")]
    Full {
        /// The URL (without query).
        url: String,
        /// The queue's message limit.
        limit_messages: usize,
        /// The queue's byte limit.
        limit_bytes: usize,
        /// The message that was not queued.
        message: Message,
    },
    /// `send_on`/`try_send_on` named a link that is no longer up (it was
    /// lost, and a reconnect may already have made the next one); the
    /// message is handed back, never written to another link.
    #[error("WebSocket link {connection} to {url} is gone; the message was not queued")]
    LinkGone {
        /// The URL (without query).
        url: String,
        /// The link the message was meant for (as in `Event::Connected`).
        connection: u64,
        /// The message that was not queued.
        message: Message,
    },
    /// The session is shut down or gave up reconnecting; a message that could
    /// not be queued is handed back.
    #[error("WebSocket session to {url} is closed")]
    Closed {
        /// The URL (without query).
        url: String,
        /// The message that was not queued, if this came from a send.
        message: Option<Message>,
    },
    /// The peer closed the connection with a close frame.
    #[error("{url} closed the connection with code {code}{}", fmt_reason(reason))]
    ClosedByPeer {
        /// The URL (without query).
        url: String,
        /// The close code (1000 normal, 1001 going away, 1009 too big, ...).
        code: u16,
        /// The reason text the peer gave.
        reason: String,
    },
    /// The TCP connection ended without a close frame.
    #[error("{url} dropped the connection without a close frame")]
    ConnectionLost {
        /// The URL (without query).
        url: String,
    },
    /// No frame of any kind (data, pong) came back within the pong timeout after a ping.
    #[error("{url} is not answering: no frame within {timeout:?} after a ping")]
    DeadPeer {
        /// The URL (without query).
        url: String,
        /// The configured pong timeout.
        timeout: Duration,
    },
    /// Reading from or writing to the connection failed.
    #[error("WebSocket connection to {url} failed")]
    Io {
        /// The URL (without query).
        url: String,
        /// The I/O or protocol error.
        #[source]
        source: BoxError,
    },
    /// A realtime-API event could not be encoded or decoded.
    #[error("realtime event {event_type}: cannot {action}")]
    Codec {
        /// The event's `type` field (or `?` when there is none).
        event_type: String,
        /// `decode` or `encode`.
        action: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Base64 audio could not be decoded.
    #[error("invalid base64 audio: {what}")]
    Audio {
        /// What is wrong.
        what: String,
        /// The base64 error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

fn fmt_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

impl Error {
    /// Takes back the message a failed `send`/`try_send` did not queue.
    pub fn into_message(self) -> Option<Message> {
        match self {
            Error::Full { message, .. } | Error::LinkGone { message, .. } => Some(message),
            Error::Closed { message, .. } => message,
            _ => None,
        }
    }

    /// True for errors retrying cannot fix (bad configuration, HTTP 4xx
    /// other than 408 and 429): the reconnect loop gives up on them at once.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Config { .. } | Error::NoRoots { .. } | Error::Certificate { .. } => true,
            Error::Http { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            _ => false,
        }
    }
}
