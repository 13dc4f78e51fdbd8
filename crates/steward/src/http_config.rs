//! [`HttpConfig`]: the HTTP endpoint's limits, plain data that
//! [`StewardConfig`](crate::StewardConfig) holds with or without the `http`
//! feature.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The HTTP endpoint's limits. Durations are milliseconds when serialised.
///
/// The endpoint has no authentication. It serves counters, levels, sizes
/// and the names parts were registered under; it never serves memory
/// contents (no store keys or values, no queued messages or audio).
///
/// ```
/// let config: steward::HttpConfig =
///     serde_json::from_str(r#"{"max_connections": 8, "write_timeout_ms": 2000}"#).unwrap();
/// assert_eq!(config.max_connections, 8);
/// assert!(!config.allow_remote);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Most connections served at once; a connection beyond it gets a
    /// `503` and is closed (within a second, or at once in a flood).
    /// Default 32.
    pub max_connections: usize,
    /// A client must send a request's headers within this. Default 10 s.
    #[serde(
        rename = "header_read_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub header_read_timeout: Duration,
    /// A connection that sends nothing for this long while the endpoint
    /// waits for it (idle keep-alive included) is closed. Default 30 s.
    #[serde(
        rename = "read_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub read_timeout: Duration,
    /// A connection whose answer makes no progress for this long (a
    /// client that does not read, pipelined requests piling up) is
    /// closed. Default 10 s.
    #[serde(
        rename = "write_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub write_timeout: Duration,
    /// A connection older than this finishes its request in flight and is
    /// closed (cut a few seconds later if it does not). Default 10 min.
    #[serde(
        rename = "max_connection_age_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub max_connection_age: Duration,
    /// Lets [`StewardConfig::http_addr`](crate::StewardConfig::http_addr) be a non-loopback address.
    /// Default off: `build` refuses one.
    pub allow_remote: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 32,
            header_read_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(600),
            allow_remote: false,
        }
    }
}
