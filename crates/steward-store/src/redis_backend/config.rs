//! [`RedisConfig`] (plain data, shown without secrets) and [`RedisBuilder`],
//! which checks it and connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use ::redis::AsyncConnectionConfig;
use serde::{Deserialize, Serialize};
use steward_pool::{Pool, PoolConfig};
use steward_redact::redact_url;

use super::connect::{RedisManager, Target, client, random_seed};
use super::scripts::Keys;
use super::{Counters, Inner, RedisStore};
use crate::error::{Error, Result};
use crate::subscribe::{DEFAULT_SUBSCRIPTION_CAPACITY, Hub};

/// Settings of a [`RedisStore`]. Plain data (serde): build one with
/// `RedisConfig::default()` and assign fields, or load it from a config
/// file (a missing setting takes its default, an unknown one is an error;
/// durations are integers of milliseconds, `retry_for_ms`).
///
/// `Debug` and `Serialize` show the URL as [`steward_redact::redact_url`]
/// does (no user info, so no password; no query): a serialized config is
/// for showing and holds no secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db][?ns=name]`, or `rediss://`
    /// for TLS (rustls; the server's certificate is checked against
    /// [`tls_ca_file`](Self::tls_ca_file), or the system's roots). An `ns`
    /// query parameter sets [`namespace`](Self::namespace) unless that is
    /// set explicitly by [`RedisBuilder::namespace`].
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// The namespace (one per assistant or user): stores with different
    /// namespaces on one server never see each other's keys. Default `default`.
    pub namespace: String,
    /// The connection pool.
    pub pool: PoolConfig,
    /// How long a read, or a write whose outcome is not known yet, keeps
    /// retrying (reconnecting) before it fails. Default 10 s.
    #[serde(
        rename = "retry_for_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub retry_for: Duration,
    /// Bound on one request's reply. Default 5 s.
    #[serde(
        rename = "response_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub response_timeout: Duration,
    /// Bound on connecting. Default 5 s.
    #[serde(
        rename = "connect_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub connect_timeout: Duration,
    /// Longest key, in UTF-8 bytes. Default 4 KiB (as the file store).
    pub max_key_bytes: usize,
    /// Largest value, as compact JSON bytes. Default 1 MiB.
    pub max_value_bytes: usize,
    /// Most keys in the namespace: a write that would create one more is
    /// refused with [`Error::TooManyKeys`] and changes nothing, checked
    /// inside the write script (atomic across processes). An entry whose
    /// TTL ran out counts until a read or a sweep notices it. Default
    /// 100,000 (as the file store).
    pub max_keys: usize,
    /// Changes a subscription buffers before dropping new ones.
    pub subscription_capacity: usize,
    /// Record each write's answer (one small key per pooled connection,
    /// kept `2 × retry_for + 30 s` after its last write), so a write whose
    /// connection was lost is resent safely and returns its true answer.
    /// Off: such a write fails at once with [`Error::RedisWriteUnknown`]
    /// (cheaper for the server; writes are retried only when they certainly
    /// did not reach it). Default on.
    pub dedupe_writes: bool,
    /// Most write batches sent at once. Concurrent writes that find every
    /// slot busy queue and go together in the next batch: one script run
    /// and one round trip for all of them. The server runs scripts one at a
    /// time, so a few slots keep it busy while writes gather; more only
    /// make smaller batches. Default 4.
    pub batches_in_flight: usize,
    /// For `rediss://`: a PEM file of the certificates that may sign the
    /// server's (a private CA), trusted instead of the system's roots.
    /// `None` (the default): the system's roots. Refused with a `redis://`
    /// URL.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

pub(super) fn serialize_redacted<S: serde::Serializer>(
    url: &str,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("pool", &self.pool)
            .field("retry_for", &self.retry_for)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_key_bytes", &self.max_key_bytes)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_keys", &self.max_keys)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("dedupe_writes", &self.dedupe_writes)
            .field("batches_in_flight", &self.batches_in_flight)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        let store = crate::StoreConfig::default();
        let mut pool = PoolConfig::default();
        pool.name = "steward-store redis".into();
        // Idle connections are checked with PING before reuse.
        pool.recent_window = Duration::from_secs(1);
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            namespace: String::new(),
            pool,
            retry_for: Duration::from_secs(10),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_key_bytes: store.max_key_bytes,
            max_value_bytes: store.max_value_bytes,
            max_keys: store.max_keys,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            dedupe_writes: true,
            batches_in_flight: 4,
            tls_ca_file: None,
        }
    }
}

/// Builds a [`RedisStore`].
///
/// ```no_run
/// # async fn demo() -> Result<(), steward_store::Error> {
/// use steward_store::RedisStore;
/// let alice = RedisStore::builder("redis://127.0.0.1:6379/0")
///     .namespace("alice")
///     .pool_size(8)
///     .build()
///     .await?;
/// alice.upsert("user_name", "Alice").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisBuilder {
    pub(super) config: RedisConfig,
}

impl RedisBuilder {
    /// A builder for the server at `url` (see [`RedisConfig::url`]).
    pub fn new(url: impl Into<String>) -> Self {
        RedisBuilder {
            config: RedisConfig {
                url: url.into(),
                ..RedisConfig::default()
            },
        }
    }

    /// Replaces all settings.
    pub fn config(mut self, config: RedisConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`RedisConfig::namespace`].
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.config.namespace = ns.into();
        self
    }

    /// Most pooled connections. Default 16.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.config.pool.max_size = n;
        self
    }

    /// See [`RedisConfig::retry_for`].
    pub fn retry_for(mut self, d: Duration) -> Self {
        self.config.retry_for = d;
        self
    }

    /// See [`RedisConfig::response_timeout`].
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.config.response_timeout = d;
        self
    }

    /// See [`RedisConfig::dedupe_writes`].
    pub fn dedupe_writes(mut self, yes: bool) -> Self {
        self.config.dedupe_writes = yes;
        self
    }

    /// See [`RedisConfig::batches_in_flight`].
    pub fn batches_in_flight(mut self, n: usize) -> Self {
        self.config.batches_in_flight = n;
        self
    }

    /// See [`RedisConfig::tls_ca_file`].
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.tls_ca_file = Some(path.into());
        self
    }

    /// See [`RedisConfig::max_value_bytes`].
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.config.max_value_bytes = n;
        self
    }

    /// See [`RedisConfig::max_keys`].
    pub fn max_keys(mut self, n: usize) -> Self {
        self.config.max_keys = n;
        self
    }

    /// Connects (one PING, so a wrong address fails here) and returns the
    /// store. Needs a Tokio runtime (time and I/O enabled).
    ///
    /// Errors: [`Error::BadUrl`] for a URL the client cannot use,
    /// [`Error::Config`] for bad limits (or a CA file without `rediss://`),
    /// [`Error::RedisCaFile`] for a CA file that cannot be read or used,
    /// [`Error::RedisUnavailable`] if the server cannot be reached (or its
    /// certificate is not trusted) within [`RedisConfig::retry_for`].
    pub async fn build(self) -> Result<RedisStore> {
        let mut config = self.config;
        let target = Target::parse(&config.url)?;
        if config.namespace.is_empty() {
            config.namespace = target.ns.clone().unwrap_or_else(|| "default".into());
        }
        if config.max_key_bytes == 0 || config.max_value_bytes == 0 {
            return Err(Error::Config("limits must be at least 1 byte".into()));
        }
        if config.batches_in_flight == 0 {
            return Err(Error::Config("batches_in_flight must be at least 1".into()));
        }
        let client = client(&target, &config)?;
        let server: Arc<str> = target.server.into();
        let keys = Keys::new(&config.namespace, target.db);
        let mut conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout));
        conn_config = conn_config.set_pipeline_buffer_size(64);
        let manager = RedisManager {
            client: client.clone(),
            config: conn_config,
            server: Arc::clone(&server),
            record_prefix: format!("{}{:016x}:", keys.op_prefix, random_seed()),
            serial: AtomicU64::new(0),
        };
        let mut pool_config = config.pool.clone();
        pool_config.name = format!("{} {server}", pool_config.name);
        let pool = Pool::builder(manager)
            .config(pool_config)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        let scheme = if target.tls { "rediss" } else { "redis" };
        let location = format!("{scheme}://{server}?ns={}", config.namespace);
        let inner = Arc::new(Inner {
            // Before `config` moves in.
            leaders: Arc::new(tokio::sync::Semaphore::new(config.batches_in_flight)),
            pool,
            client,
            server,
            location,
            keys,
            config,
            counters: Counters::default(),
            op_counter: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            hub: Hub::default(),
            queue: std::sync::Mutex::default(),
        });
        let store = RedisStore { inner };
        store.ping().await?;
        tracing::debug!(location = %store.inner.location, "redis store open");
        Ok(store)
    }
}
