//! `Client`: a checked configuration that opens sessions, and the
//! [`ClientBuilder`] that makes one.

use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::config::{ClientConfig, ReconnectConfig};
use crate::connect::Connector;
use crate::session::Session;
use crate::shed::ShedFloor;

/// A checked configuration that opens [`Session`]s. Cheap to clone.
///
/// Built by [`ClientBuilder`]; holds the TLS roots, so building it once and
/// connecting many times is cheaper than building per connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Connector>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder for `url`; shorthand for [`ClientBuilder::new`].
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Opens the first connection and starts the session's I/O task.
    ///
    /// The first connection is tried once: an unreachable server or a refused
    /// upgrade (HTTP 401 for a bad key) is reported here. Later losses are
    /// handled by the reconnect policy and reported as [`Event`](crate::Event)s.
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`Error::ConnectTimeout`], [`Error::Connect`] or [`Error::Http`].
    pub async fn connect(&self) -> Result<Session, Error> {
        let ws = self.inner.open().await?;
        Ok(Session::start(self.inner.clone(), ws))
    }
}

/// Builds a [`Client`]: start from a URL or a [`ClientConfig`], adjust, then
/// [`build`](Self::build), which checks everything and loads the TLS roots.
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
    extra_roots_der: Vec<Vec<u8>>,
    extra_roots_pem: Vec<Vec<u8>>,
}

impl ClientBuilder {
    /// A builder for `url` with the default settings.
    pub fn new(url: impl Into<String>) -> Self {
        Self::from_config(ClientConfig {
            url: url.into(),
            ..ClientConfig::default()
        })
    }

    /// A builder starting from a full configuration.
    pub fn from_config(config: ClientConfig) -> Self {
        Self {
            config,
            extra_roots_der: Vec::new(),
            extra_roots_pem: Vec::new(),
        }
    }

    /// Adds a request header (e.g. `Authorization`). Its value is never logged.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: impl AsRef<str>) -> Self {
        let value = format!("Bearer {}", token.as_ref());
        self.header("Authorization", value)
    }

    /// See [`ClientConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets the ping interval and the pong timeout (see [`ClientConfig::pong_timeout`]).
    pub fn heartbeat(mut self, ping_interval: Duration, pong_timeout: Duration) -> Self {
        self.config.ping_interval = ping_interval;
        self.config.pong_timeout = pong_timeout;
        self
    }

    /// See [`ClientConfig::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// See [`ClientConfig::drain_timeout`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// Largest message either way, and largest incoming frame, in bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Largest incoming frame payload in bytes.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Outbound queue limits (messages, bytes).
    pub fn outbound_queue(mut self, messages: usize, bytes: usize) -> Self {
        self.config.outbound_queue_messages = messages;
        self.config.outbound_queue_bytes = bytes;
        self
    }

    /// Inbound queue limits (messages, bytes).
    pub fn inbound_queue(mut self, messages: usize, bytes: usize) -> Self {
        self.config.inbound_queue_messages = messages;
        self.config.inbound_queue_bytes = bytes;
        self
    }

    /// Event queue limits (events, bytes of undelivered messages they hold).
    pub fn event_queue(mut self, events: usize, bytes: usize) -> Self {
        self.config.event_queue = events;
        self.config.event_queue_bytes = bytes;
        self
    }

    /// Replaces the reconnect policy.
    pub fn reconnect(mut self, reconnect: ReconnectConfig) -> Self {
        self.config.reconnect = reconnect;
        self
    }

    /// See [`ClientConfig::shed_floor`].
    pub fn shed_floor(mut self, floor: ShedFloor) -> Self {
        self.config.shed_floor = floor;
        self
    }

    /// Turns reconnecting off: the first lost link ends the session.
    pub fn no_reconnect(mut self) -> Self {
        self.config.reconnect.enabled = false;
        self
    }

    /// Trusts an extra root certificate given as DER bytes (for wss://).
    pub fn add_root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_der.push(der.into());
        self
    }

    /// Trusts the root certificates in a PEM text (for wss://).
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_pem.push(pem.into());
        self
    }

    /// Checks the configuration, loads TLS roots for wss:// URLs and returns
    /// the client.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad field, [`Error::Certificate`] for an
    /// unreadable root certificate, [`Error::NoRoots`] for a wss:// URL with
    /// nothing trusted.
    pub fn build(self) -> Result<Client, Error> {
        let connector = Connector::new(self.config, &self.extra_roots_pem, &self.extra_roots_der)?;
        Ok(Client {
            inner: Arc::new(connector),
        })
    }
}
