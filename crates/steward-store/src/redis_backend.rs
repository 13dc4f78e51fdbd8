//! The Redis backend (feature `redis`): one namespace of a shared Redis
//! server, with the file store's semantics.
//!
//! # Layout in Redis
//!
//! For namespace `ns`, every key of the namespace starts with
//! `steward:{ns}:` (the braces make it one cluster hash slot):
//!
//! | Redis key | type | holds |
//! | --- | --- | --- |
//! | `steward:{ns}:v:<key>` | string | the entry's value as compact JSON; `PEXPIRE`d for TTL entries |
//! | `steward:{ns}:order` | sorted set | every entry's key, scored by its insertion sequence |
//! | `steward:{ns}:seq` | string | the sequence (`INCR`), never reset |
//! | `steward:{ns}:op:<client>:<n>` | string | the answers of the last batch sent on pooled connection `n` of one client, kept a short while so a resent write is not applied twice |
//!
//! and changes are published on channel `steward:{ns}:changes`.
//!
//! Every write runs inside a Lua script, so it is atomic against every
//! other client: `create` checks and inserts in one step (exactly one of
//! racing creators wins), the insertion index changes with the value, and
//! the change is published by the same script (each change once, in order).
//!
//! An entry whose value key expired natively stays in the order index until
//! a script notices (any read or write of it, a listing, or
//! [`RedisStore::sweep_expired`]): reads skip it at once, and the script that
//! removes it publishes [`Change::Expired`] exactly once.
//!
//! # Batches
//!
//! A lone write is sent at once, as a script of its own. Writes that arrive
//! while [`RedisConfig::batches_in_flight`] scripts are already on their
//! way queue, and the next free slot sends all of them (up to 64 writes or
//! 256 KiB) as one script run, applied in the order they were called, each
//! with its own answer: concurrent writers share round trips and the
//! script's fixed cost (group commit). A write the server refuses (a value
//! key of the wrong type, say) fails alone; the rest of its batch stands.
//! [`RedisStats::batches`] counts script runs.
//!
//! A script run costs the server more than a bare `SET` (each command a
//! script calls takes the server's full command path), so a lone writer
//! waiting on every round trip is somewhat slower than one doing bare
//! `SET`s; writers that overlap are faster, since a batch pays that cost
//! once. The store's bench measures both against the raw client.
//!
//! # Lost connections
//!
//! Every pooled connection owns one record key, and every batch carries a
//! number unique to its client; the script stores `<number>:<answers>` in
//! the connection's record (in the same atomic step) before returning.
//! Batches on one pooled connection run one at a time, so one key per
//! connection is enough — not one per write, which would leave a key for
//! every write of the last minute on the server. When the connection is
//! lost after a batch was sent, the client reconnects and sends the same
//! batch again, naming the lost connection's record: if the first send was
//! applied (even if it runs late, after the resend), the script finds its
//! number there and returns the recorded answers instead of applying the
//! writes twice. So a write either returns its true answer, or — if the server
//! stays unreachable for
//! [`RedisConfig::retry_for`] — [`Error::RedisWriteUnknown`] (it may have
//! been applied) or [`Error::RedisWriteNotApplied`] (it never reached the
//! server, or the server refused it). Never a false success. Reads are
//! retried the same way and fail with [`Error::RedisUnavailable`].
//! With [`RedisConfig::dedupe_writes`] off there is no record: a write
//! whose connection was lost after sending fails at once with
//! [`Error::RedisWriteUnknown`], and only writes that certainly did not
//! reach the server are retried.
//!
//! Durability is the server's: run it with `appendonly yes` and
//! `appendfsync always` for acknowledged writes to survive a server crash.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, ErrorKind, RedisError, Script, ServerErrorKind};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_pool::{Manager, Metrics, Pool, PoolConfig, Pooled};

use steward_redact::redact_url;

use crate::backend::{Backend, BoxFuture};
use crate::error::{Error, Result};
use crate::store::encode_value;
use crate::subscribe::{Change, DEFAULT_SUBSCRIPTION_CAPACITY, Hub, SubQueue, Subscription};

/// Settings of a [`RedisStore`]. Plain data (serde).
///
/// `Debug` and `Serialize` show the URL as [`steward_redact::redact_url`]
/// does (no user info, so no password; no query): a serialized config is
/// for showing and holds no secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    pub retry_for: Duration,
    /// Bound on one request's reply. Default 5 s.
    pub response_timeout: Duration,
    /// Bound on connecting. Default 5 s.
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

fn serialize_redacted<S: serde::Serializer>(
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
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            namespace: String::new(),
            pool: PoolConfig {
                name: "steward-store redis".into(),
                // Idle connections are checked with PING before reuse.
                recent_window: Duration::from_secs(1),
                ..PoolConfig::default()
            },
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
    config: RedisConfig,
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

/// The protocol client for `target`: TLS (rustls, ring) for `rediss://`,
/// with the roots of [`RedisConfig::tls_ca_file`] when set.
fn client(target: &Target, config: &RedisConfig) -> Result<::redis::Client> {
    let bad_url = |e: RedisError| Error::BadUrl {
        url: redact_url(&config.url),
        reason: e.to_string(),
    };
    if target.tls {
        ensure_crypto_provider();
    }
    // Parses the URL (no connection yet).
    let client = ::redis::Client::open(target.client_url.as_str()).map_err(bad_url)?;
    let Some(path) = config.tls_ca_file.as_ref() else {
        return Ok(client);
    };
    if !target.tls {
        return Err(Error::Config(format!(
            "tls_ca_file {} needs a rediss:// URL",
            path.display()
        )));
    }
    let ca_file = |reason: String| Error::RedisCaFile {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_file(e.to_string()))?;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(ca_file("no PEM certificate in it".into()));
    }
    let certificates = ::redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    // The URL parsed above: what fails here is the roots.
    ::redis::Client::build_with_tls(target.client_url.as_str(), certificates)
        .map_err(|e| ca_file(e.to_string()))
}

/// The redis client builds its rustls config with the process's default
/// crypto provider: ring (the one steward-ws uses) unless the program
/// installed one already.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one meanwhile, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// What the URL says, split for the client and for messages.
struct Target {
    /// The URL without our `ns` parameter.
    client_url: String,
    /// `host:port/db` (or the socket path): named in errors, never a password.
    server: String,
    ns: Option<String>,
    /// The database number (for the server's keyspace event channel).
    db: u32,
    /// `rediss://`: TLS.
    tls: bool,
}

impl Target {
    fn parse(raw: &str) -> Result<Target> {
        let bad = |reason: &str| Error::BadUrl {
            url: redact_url(raw),
            reason: reason.to_string(),
        };
        let mut url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let mut ns = None;
        let rest: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(k, v)| {
                if k == "ns" {
                    ns = Some(v.into_owned());
                    None
                } else {
                    Some((k.into_owned(), v.into_owned()))
                }
            })
            .collect();
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
        let (server, db) = match url.scheme() {
            "redis" | "rediss" => {
                let host = url.host_str().ok_or_else(|| bad("no host"))?;
                let port = url.port().unwrap_or(6379);
                let db = url.path().trim_start_matches('/');
                let db = if db.is_empty() { "0" } else { db };
                (format!("{host}:{port}/{db}"), db.to_string())
            }
            "unix" | "redis+unix" => {
                let db = url
                    .query_pairs()
                    .find(|(k, _)| k == "db")
                    .map_or_else(|| "0".to_string(), |(_, v)| v.into_owned());
                (url.path().to_string(), db)
            }
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let db: u32 = db
            .parse()
            .map_err(|_| bad(&format!("database {db:?} is not a number")))?;
        if ns.as_deref().is_some_and(str::is_empty) {
            return Err(bad("empty namespace (ns=)"));
        }
        Ok(Target {
            tls: url.scheme() == "rediss",
            client_url: url.to_string(),
            server,
            ns,
            db,
        })
    }
}

fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.finish()
}

/// Redis key names of one namespace.
struct Keys {
    order: String,
    seq: String,
    value_prefix: String,
    op_prefix: String,
    channel: String,
    /// The server's own channel for keys that expired in our database
    /// (sent only when its `notify-keyspace-events` includes `Ex`).
    expired: String,
}

impl Keys {
    fn new(ns: &str, db: u32) -> Keys {
        let base = format!("steward:{{{ns}}}:");
        Keys {
            order: format!("{base}order"),
            seq: format!("{base}seq"),
            value_prefix: format!("{base}v:"),
            op_prefix: format!("{base}op:"),
            channel: format!("{base}changes"),
            expired: format!("__keyevent@{db}__:expired"),
        }
    }

    fn value(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.value_prefix.len() + key.len());
        k.extend_from_slice(self.value_prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }
}

/// Shared by both scripts. `note` publishes one change as
/// `<op><key length>:<key><value json>`; `vanished` drops an order entry
/// whose value key expired and publishes that once.
const PRELUDE: &str = r"
local function note(op, key, payload)
  redis.call('PUBLISH', ARGV[1], op .. #key .. ':' .. key .. (payload or ''))
end
local function vanished(k)
  if redis.call('ZREM', KEYS[1], k) == 1 then note('X', k) end
end
";

/// Writes: a batch of one or more, applied in order. KEYS: order, seq,
/// record key, then each write's value key. ARGV: channel, value prefix,
/// record ms (0: no record), batch number, most keys (a create beyond it
/// fails with the `TOO_MANY_KEYS` refusal), then per write: mode (c create,
/// u update, s upsert, d delete, r reset), key, value JSON, ttl ms (0:
/// none). Returns one answer per write: 0 unchanged, 1 replaced / deleted /
/// reset, 2 added, or `E<message>` for a write the server refused (each
/// write runs under `pcall`, so one refusal does not stop the others).
///
/// The record is read on every send, the first included: a first send
/// delayed in the network may run after its resend, and must then answer
/// from the record (`<number>:<answers, comma-separated, -1 refused>`, a
/// string reply) rather than apply again. An upsert learns whether the key
/// existed from its own `SET ... GET`: a batch costs the record's GET and
/// SET, and each upsert of an existing key its SET and PUBLISH.
const WRITE: &str = r"
local tag = ARGV[4] .. ':'
if ARGV[3] ~= '0' then
  local done = redis.call('GET', KEYS[3])
  if done and string.sub(done, 1, #tag) == tag then
    return string.sub(done, #tag + 1)
  end
end
local cap = tonumber(ARGV[5])
local function apply(vkey, mode, key, json, ttl)
  if (mode == 'c' or mode == 's') and redis.call('ZCARD', KEYS[1]) >= cap
      and redis.call('EXISTS', vkey) == 0 then
    error({err = 'TOO_MANY_KEYS'})
  end
  if mode == 'r' then
    local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
    for _, k in ipairs(keys) do redis.call('DEL', ARGV[2] .. k) end
    redis.call('DEL', KEYS[1])
    note('R', '')
    return 1
  end
  local exists
  if mode == 's' then
    local old
    if ttl ~= '0' then
      old = redis.call('SET', vkey, json, 'PX', ttl, 'GET')
    else
      old = redis.call('SET', vkey, json, 'GET')
    end
    exists = old ~= false
  elseif mode == 'd' then
    exists = redis.call('DEL', vkey) == 1
  else
    exists = redis.call('EXISTS', vkey) == 1
  end
  if not exists then vanished(key) end
  if mode == 'd' then
    if not exists then return 0 end
    redis.call('ZREM', KEYS[1], key)
    note('D', key)
    return 1
  end
  if mode == 'c' and exists then return 0 end
  if mode == 'u' and not exists then return 0 end
  if not exists then
    redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), key)
  end
  if mode ~= 's' then
    if ttl ~= '0' then
      redis.call('SET', vkey, json, 'PX', ttl)
    else
      redis.call('SET', vkey, json)
    end
  end
  note('S', key, json)
  if exists then return 1 end
  return 2
end
local out, rec = {}, {}
for i = 1, (#ARGV - 5) / 4 do
  local a = 4 * i + 1
  local ok, r = pcall(apply, KEYS[3 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  if ok then
    out[i], rec[i] = r, r
  else
    if type(r) == 'table' then r = r.err end
    out[i], rec[i] = 'E' .. tostring(r), -1
  end
end
if ARGV[3] ~= '0' then
  redis.call('SET', KEYS[3], tag .. table.concat(rec, ','), 'PX', ARGV[3])
end
return out
";

/// Reads. KEYS: order, value key. ARGV: channel, value prefix, mode (g get,
/// e entries, t entries with their PTTL, k keys, n count, s sweep), key.
/// Entries whose value expired are dropped from the order index on the way
/// (and published once).
const READ: &str = r"
local mode = ARGV[3]
if mode == 'g' then
  local v = redis.call('GET', KEYS[2])
  if not v then vanished(ARGV[4]) end
  return v
end
local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
local out, n, gone = {}, 0, 0
for _, k in ipairs(keys) do
  local v
  if mode == 'e' or mode == 't' then
    v = redis.call('GET', ARGV[2] .. k)
  else
    v = redis.call('EXISTS', ARGV[2] .. k) == 1
  end
  if v then
    n = n + 1
    if mode == 'e' or mode == 't' then
      out[#out + 1] = k
      out[#out + 1] = v
      if mode == 't' then out[#out + 1] = tostring(redis.call('PTTL', ARGV[2] .. k)) end
    elseif mode == 'k' then
      out[#out + 1] = k
    end
  else
    vanished(k)
    gone = gone + 1
  end
end
if mode == 'n' then return n end
if mode == 's' then return gone end
return out
";

static WRITE_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&format!("{PRELUDE}{WRITE}")));
static READ_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&format!("{PRELUDE}{READ}")));

/// Creates and checks the pooled connections of a [`RedisStore`]: create
/// connects (the client sends AUTH and SELECT from the URL), recycle sends
/// PING (only for connections idle longer than the pool's `recent_window`).
pub struct RedisManager {
    client: ::redis::Client,
    config: AsyncConnectionConfig,
    server: Arc<str>,
    /// `steward:{ns}:op:<random>:`; connection `n`'s record adds `n`.
    record_prefix: String,
    serial: AtomicU64,
}

impl std::fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisManager")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Manager for RedisManager {
    type Object = RedisConnection;
    type Error = Error;

    async fn create(&self) -> Result<RedisConnection> {
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| Error::RedisUnavailable {
                server: self.server.to_string(),
                source: Box::new(e),
            })?;
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        Ok(RedisConnection {
            conn,
            server: Arc::clone(&self.server),
            record: format!("{}{n:x}", self.record_prefix).into(),
        })
    }

    async fn recycle(&self, obj: &mut RedisConnection) -> Result<()> {
        obj.command("PING", &[]).await.map(|_| ())
    }
}

/// One pooled connection to the server.
pub struct RedisConnection {
    conn: MultiplexedConnection,
    server: Arc<str>,
    /// The key where writes on this connection record their answers.
    record: Arc<str>,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Sends one raw command (e.g. `SET k v`, for baselines and tools) and
    /// returns a bulk-string reply's bytes (`None` for any other reply).
    pub async fn command(&mut self, name: &str, args: &[&[u8]]) -> Result<Option<Vec<u8>>> {
        let mut cmd = ::redis::cmd(name);
        for a in args {
            cmd.arg(*a);
        }
        let reply: ::redis::Value =
            cmd.query_async(&mut self.conn)
                .await
                .map_err(|e| Error::Redis {
                    server: self.server.to_string(),
                    op: "command",
                    key: String::new(),
                    source: Box::new(e),
                })?;
        Ok(match reply {
            ::redis::Value::BulkString(b) => Some(b),
            _ => None,
        })
    }
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    unchanged: AtomicU64,
    batches: AtomicU64,
    reads: AtomicU64,
    retries: AtomicU64,
    write_unknown: AtomicU64,
    write_not_applied: AtomicU64,
    keys_refused: AtomicU64,
    read_failures: AtomicU64,
    subscription_gaps: AtomicU64,
}

/// Counters of a [`RedisStore`] (this process's view), with its pool's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RedisStats {
    /// Writes that changed something.
    pub writes: u64,
    /// Writes that changed nothing (create of an existing key, ...).
    pub unchanged: u64,
    /// Write scripts the server ran: concurrent writes share one, so
    /// `(writes + unchanged) / batches` is the mean batch size.
    pub batches: u64,
    /// Writes queued for the next batch right now (every batch slot busy).
    pub queued_writes: u64,
    /// Reads (scripts and listings).
    pub reads: u64,
    /// Requests sent again after a lost connection or a busy server.
    pub retries: u64,
    /// Writes that failed with [`Error::RedisWriteUnknown`].
    pub write_unknown: u64,
    /// Writes that failed with [`Error::RedisWriteNotApplied`].
    pub write_not_applied: u64,
    /// Writes refused with [`Error::TooManyKeys`] (not applied).
    pub keys_refused: u64,
    /// Reads that failed.
    pub read_failures: u64,
    /// Times a subscription's connection was lost and re-established
    /// (changes published meanwhile were missed).
    pub subscription_gaps: u64,
    /// The connection pool.
    pub pool: Metrics,
}

struct Inner {
    pool: Pool<RedisManager>,
    client: ::redis::Client,
    server: Arc<str>,
    location: String,
    keys: Keys,
    config: RedisConfig,
    counters: Counters,
    op_counter: AtomicU64,
    closed: AtomicBool,
    hub: Hub,
    /// Writes waiting for a batch.
    queue: std::sync::Mutex<WriteQueue>,
    /// One permit per batch in flight ([`RedisConfig::batches_in_flight`]).
    leaders: Arc<tokio::sync::Semaphore>,
}

impl Inner {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, WriteQueue> {
        // A panic elsewhere cannot leave the queue half-changed.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One namespace of a Redis server as a store: the file
/// [`Store`](crate::Store)'s semantics, shared by every process that opens
/// the same namespace. Cheap to clone; clones share one connection pool.
///
/// All methods are async (Tokio). Cancel safety: a cancelled write may
/// or may not have been applied.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

/// Which write the script does.
#[derive(Clone, Copy)]
enum Mode {
    Create,
    Update,
    Upsert,
    Delete,
    Reset,
}

impl Mode {
    fn code(self) -> &'static str {
        match self {
            Mode::Create => "c",
            Mode::Update => "u",
            Mode::Upsert => "s",
            Mode::Delete => "d",
            Mode::Reset => "r",
        }
    }

    /// The caller's answer from the script's (0 unchanged, 1 replaced or
    /// removed, 2 added).
    fn answer(self, r: i64) -> bool {
        match self {
            Mode::Create | Mode::Upsert => r == 2,
            Mode::Update | Mode::Delete | Mode::Reset => r == 1,
        }
    }
}

/// Most writes one batch carries, and most bytes of values beyond its
/// first write: a batch is one script run, and the server serves no one
/// else meanwhile.
const BATCH_WRITES: usize = 64;
const BATCH_BYTES: usize = 256 * 1024;

/// One write, as the script takes it.
struct WriteOp {
    mode: Mode,
    key: String,
    json: Vec<u8>,
    ttl_ms: u64,
}

/// A write waiting for a batch, and where its answer goes.
struct Queued {
    id: u64,
    op: WriteOp,
    answer: tokio::sync::oneshot::Sender<Result<i64>>,
}

/// Writes waiting to be sent, oldest first.
#[derive(Default)]
struct WriteQueue {
    waiting: std::collections::VecDeque<Queued>,
    next_id: u64,
}

impl WriteQueue {
    fn push(&mut self, op: WriteOp, answer: tokio::sync::oneshot::Sender<Result<i64>>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Queued { id, op, answer });
        id
    }

    /// The oldest writes, up to one batch's limits (at least one).
    fn take(&mut self) -> Vec<Queued> {
        let (mut n, mut bytes) = (0, 0);
        for q in &self.waiting {
            bytes += q.op.json.len() + q.op.key.len();
            if n == BATCH_WRITES || (n > 0 && bytes > BATCH_BYTES) {
                break;
            }
            n += 1;
        }
        self.waiting.drain(..n).collect()
    }
}

/// Takes a cancelled caller's write back out of the queue, so it is never
/// sent after its caller gave up waiting for a leader slot.
struct Unqueue<'a> {
    inner: &'a Inner,
    id: u64,
    /// Still queued, as far as this caller knows.
    armed: bool,
}

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.lock_queue().waiting.retain(|q| q.id != self.id);
        }
    }
}

/// A leader slot held by a caller sending its own write: handed on when
/// dropped — by a cancelled caller too — so writes queued behind it are
/// always sent.
struct Slot<'a> {
    store: &'a RedisStore,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.store.hand_off(permit);
        }
    }
}

/// The script's refusal of a write beyond [`RedisConfig::max_keys`].
const TOO_MANY_KEYS: &str = "TOO_MANY_KEYS";

/// One write's answer from a batch reply: the script's code, or the
/// server's refusal of that write.
type Answer = std::result::Result<i64, String>;

/// How a whole batch failed.
enum BatchError {
    /// The store was closed.
    Closed,
    /// The server refused the script before it ran: nothing was written.
    Refused(Arc<RedisError>),
    /// Retries were spent; `maybe_sent` if the batch may have run.
    GaveUp {
        maybe_sent: bool,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl BatchError {
    fn gave_up(maybe_sent: bool, last: RedisErrorOr) -> BatchError {
        let source: Arc<dyn std::error::Error + Send + Sync> = match last {
            RedisErrorOr::Redis(e) => Arc::new(e),
            RedisErrorOr::Other(e) => Arc::new(e),
        };
        BatchError::GaveUp { maybe_sent, source }
    }

    /// The writes may or may not have been applied, for `why`.
    fn unknown(why: &'static str) -> BatchError {
        BatchError::GaveUp {
            maybe_sent: true,
            source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(why)),
        }
    }
}

/// The script ran but its reply does not fit the batch.
const SHORT_REPLY: &str = "the server's reply does not match the writes sent";

/// A batch reply: an array of codes and `E<message>` refusals, or (when the
/// record shows the batch already ran) the recorded codes, comma-separated,
/// `-1` for a refusal.
fn parse_answers(
    reply: ::redis::Value,
    writes: usize,
) -> std::result::Result<Vec<Answer>, BatchError> {
    let answers: Vec<Answer> = match reply {
        ::redis::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                ::redis::Value::Int(n) => Ok(n),
                ::redis::Value::BulkString(b) => {
                    Err(String::from_utf8_lossy(b.strip_prefix(b"E").unwrap_or(&b)).into_owned())
                }
                other => Err(format!("unexpected answer {other:?}")),
            })
            .collect(),
        ::redis::Value::BulkString(b) => String::from_utf8_lossy(&b)
            .split(',')
            .map(|code| match code.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n),
                _ => Err("the server refused this write when it was first sent".to_string()),
            })
            .collect(),
        _ => return Err(BatchError::unknown(SHORT_REPLY)),
    };
    if answers.len() != writes {
        return Err(BatchError::unknown(SHORT_REPLY));
    }
    Ok(answers)
}

/// How a failed request ended.
enum Failure {
    /// The server answered with an error: the script did not run (or wrote
    /// nothing). Not retried.
    Refused(RedisError),
    /// The server answered "not now" (loading, try again): nothing ran.
    Busy(RedisError),
    /// The connection failed after the request may have been sent.
    Lost(RedisError),
}

fn classify(e: RedisError) -> Failure {
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown,
        ) => Failure::Busy(e),
        ErrorKind::Server(_) | ErrorKind::Extension => Failure::Refused(e),
        _ => Failure::Lost(e),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(6)).min(500))
}

impl RedisStore {
    /// A builder for the server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder::new(url)
    }

    /// Opens namespace `ns` of the server at `url` with default settings.
    pub async fn open(url: &str, ns: &str) -> Result<RedisStore> {
        RedisBuilder::new(url).namespace(ns).build().await
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.config.namespace
    }

    /// `host:port/db` of the server (no password).
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// `redis://host:port/db?ns=name` (no password).
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The settings in force.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The connection pool (e.g. for raw commands through
    /// [`RedisConnection::command`] on the same connections).
    pub fn pool(&self) -> &Pool<RedisManager> {
        &self.inner.pool
    }

    /// Counters, with the pool's metrics.
    pub fn stats(&self) -> RedisStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisStats {
            writes: l(&c.writes),
            unchanged: l(&c.unchanged),
            batches: l(&c.batches),
            queued_writes: self.inner.lock_queue().waiting.len() as u64,
            reads: l(&c.reads),
            retries: l(&c.retries),
            write_unknown: l(&c.write_unknown),
            write_not_applied: l(&c.write_not_applied),
            keys_refused: l(&c.keys_refused),
            read_failures: l(&c.read_failures),
            subscription_gaps: l(&c.subscription_gaps),
            pool: self.inner.pool.metrics(),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::RedisClosed {
                location: self.inner.location.clone(),
            });
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.read_request("ping", "", |mut conn| async move {
            ::redis::cmd("PING")
                .query_async::<::redis::Value>(&mut conn)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Runs a read, retrying on lost connections and busy servers until
    /// [`RedisConfig::retry_for`] is spent.
    async fn read_request<T, F>(
        &self,
        op: &'static str,
        key: &str,
        run: impl Fn(MultiplexedConnection) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, RedisError>>,
    {
        self.check_open()?;
        let inner = &*self.inner;
        inner.counters.reads.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + inner.config.retry_for;
        let mut attempt = 0u32;
        loop {
            let last: Error = match inner.pool.get().await {
                Err(e) => self.pool_error(e),
                Ok(conn) => match run(conn.conn.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => match classify(e) {
                        Failure::Refused(e) => {
                            inner.counters.read_failures.fetch_add(1, Ordering::Relaxed);
                            return Err(self.redis_error(op, key, e));
                        }
                        Failure::Busy(e) => self.unavailable(e),
                        Failure::Lost(e) => {
                            Pooled::discard(conn);
                            self.unavailable(e)
                        }
                    },
                },
            };
            if Instant::now() >= deadline {
                inner.counters.read_failures.fetch_add(1, Ordering::Relaxed);
                return Err(last);
            }
            attempt += 1;
            inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(server = %inner.server, op, attempt, error = %last, "retrying a read");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    fn unavailable(&self, e: RedisError) -> Error {
        Error::RedisUnavailable {
            server: self.inner.server.to_string(),
            source: Box::new(e),
        }
    }

    fn redis_error(&self, op: &'static str, key: &str, e: RedisError) -> Error {
        Error::Redis {
            server: self.inner.server.to_string(),
            op,
            key: key.to_string(),
            source: Box::new(e),
        }
    }

    fn pool_error(&self, e: steward_pool::Error<Error>) -> Error {
        match e {
            steward_pool::Error::Create { source, .. } => source,
            steward_pool::Error::Closed { .. } => Error::RedisClosed {
                location: self.inner.location.clone(),
            },
            other => Error::RedisUnavailable {
                server: self.inner.server.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// Queues one write and waits for its answer (group commit). A caller
    /// that finds a free leader slot sends what is queued — usually just
    /// its own write, sent from here with no task hop; otherwise a task
    /// with a slot sends it in the next batch, together with every write
    /// that queued meanwhile, so concurrent writers share script runs and
    /// round trips. Slots are few (see [`RedisConfig::batches_in_flight`]):
    /// the server runs scripts one at a time anyway, and writes that wait
    /// make the batches that save its time.
    async fn write(&self, op: WriteOp) -> Result<bool> {
        self.check_open()?;
        let inner = &*self.inner;
        let mode = op.mode;
        let key = op.key.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut queued = Unqueue {
            inner,
            id: inner.lock_queue().push(op, tx),
            armed: true,
        };
        if let Ok(permit) = Arc::clone(&inner.leaders).try_acquire_owned() {
            let batch = inner.lock_queue().take();
            if batch.is_empty() {
                // A draining task took this write meanwhile.
                queued.armed = false;
                self.hand_off(permit);
            } else if batch.len() == 1 && batch[0].id == queued.id {
                // Alone: cancelling this call cancels only this write, and
                // the slot still passes to whatever queued meanwhile.
                queued.armed = false;
                let slot = Slot {
                    store: self,
                    permit: Some(permit),
                };
                self.run_batch(batch).await;
                drop(slot);
            } else {
                // Other callers' writes: a task of their own, so
                // cancelling this call cannot strand them.
                self.spawn_drain(batch, permit);
            }
        }
        let answer = rx.await;
        queued.armed = false;
        match answer {
            Ok(r) => r.map(|r| mode.answer(r)),
            // Only when the runtime shuts down under a running batch.
            Err(_) => Err(self.batch_error(
                &key,
                &BatchError::unknown("the write's batch ended before its answer"),
            )),
        }
    }

    /// Sends `first`, then batches of whatever queued meanwhile, until the
    /// queue is empty.
    async fn drain(self, first: Vec<Queued>, permit: tokio::sync::OwnedSemaphorePermit) {
        let mut batch = first;
        while !batch.is_empty() {
            self.run_batch(batch).await;
            batch = self.inner.lock_queue().take();
        }
        self.hand_off(permit);
    }

    /// Gives up a leader slot, or hands it to a draining task if writes are
    /// queued. A writer that queued just before the slot came free found
    /// no slot and relies on this check to be sent.
    fn hand_off(&self, mut permit: tokio::sync::OwnedSemaphorePermit) {
        let inner = &*self.inner;
        if inner.lock_queue().waiting.is_empty() {
            drop(permit);
            if inner.lock_queue().waiting.is_empty() {
                return;
            }
            match Arc::clone(&inner.leaders).try_acquire_owned() {
                Ok(p) => permit = p,
                // Another holder will drain.
                Err(_) => return,
            }
        }
        let batch = inner.lock_queue().take();
        self.spawn_drain(batch, permit);
    }

    fn spawn_drain(&self, batch: Vec<Queued>, permit: tokio::sync::OwnedSemaphorePermit) {
        // No runtime means it is shutting down: the queued callers are gone.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(self.clone().drain(batch, permit));
        }
    }

    /// Sends one batch and hands every write its answer.
    async fn run_batch(&self, batch: Vec<Queued>) {
        let (ops, senders): (Vec<WriteOp>, Vec<_>) =
            batch.into_iter().map(|q| (q.op, q.answer)).unzip();
        // A span, as a batch may ride out a server restart (retry_for).
        let span = tracing::debug_span!("redis_write_batch", writes = ops.len());
        let outcome = tracing::Instrument::instrument(self.send_batch(&ops), span).await;
        let results: Vec<Result<i64>> = match outcome {
            // `parse_answers` checked there is one answer per write.
            Ok(answers) => ops
                .iter()
                .zip(answers)
                .map(|(op, a)| self.write_result(&op.key, a))
                .collect(),
            Err(e) => ops
                .iter()
                .map(|op| Err(self.batch_error(&op.key, &e)))
                .collect(),
        };
        for (tx, r) in senders.into_iter().zip(results) {
            // The caller may be gone (cancelled); its write stands anyway.
            let _ = tx.send(r);
        }
    }

    /// One write's answer from a batch that ran, counted.
    fn write_result(&self, key: &str, answer: Answer) -> Result<i64> {
        let counters = &self.inner.counters;
        match answer {
            Ok(r) => {
                let c = if r != 0 {
                    &counters.writes
                } else {
                    &counters.unchanged
                };
                c.fetch_add(1, Ordering::Relaxed);
                Ok(r)
            }
            Err(message) if message == TOO_MANY_KEYS => {
                let total = counters.keys_refused.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    key,
                    total,
                    limit = self.inner.config.max_keys,
                    "write refused: the namespace holds its key cap"
                );
                Err(crate::store::keycap::refusal(
                    self.inner.location.clone(),
                    key,
                    self.inner.config.max_keys,
                ))
            }
            Err(message) => {
                counters.write_not_applied.fetch_add(1, Ordering::Relaxed);
                Err(Error::RedisWriteNotApplied {
                    server: self.inner.server.to_string(),
                    key: key.to_string(),
                    source: message.into(),
                })
            }
        }
    }

    /// Runs one batch's script. Retries while the batch certainly did not
    /// run (no connection, server loading) and — thanks to the op record —
    /// also after a lost connection, until [`RedisConfig::retry_for`].
    async fn send_batch(&self, ops: &[WriteOp]) -> std::result::Result<Vec<Answer>, BatchError> {
        let inner = &*self.inner;
        let k = &inner.keys;
        let number = format!("{:x}", inner.op_counter.fetch_add(1, Ordering::Relaxed));
        let dedupe = inner.config.dedupe_writes;
        let record_ms = if dedupe {
            (inner.config.retry_for * 2 + Duration::from_secs(30)).as_millis() as u64
        } else {
            0
        };
        let value_keys: Vec<Vec<u8>> = ops.iter().map(|o| k.value(&o.key)).collect();
        let invocation = |record: &str| {
            let mut inv = WRITE_SCRIPT.prepare_invoke();
            inv.key(&k.order).key(&k.seq).key(record);
            for v in &value_keys {
                inv.key(v);
            }
            inv.arg(&k.channel)
                .arg(&k.value_prefix)
                .arg(record_ms)
                .arg(&number)
                .arg(inner.config.max_keys);
            for o in ops {
                inv.arg(o.mode.code())
                    .arg(&o.key)
                    .arg(&o.json)
                    .arg(o.ttl_ms);
            }
            inv
        };
        let deadline = Instant::now() + inner.config.retry_for;
        // After a lost connection every resend names that connection's
        // record, where the first send (if it ran, or runs late) answers.
        let mut lost_record: Option<Arc<str>> = None;
        let mut maybe_sent = false;
        let mut attempt = 0u32;
        loop {
            let last: RedisErrorOr = match inner.pool.get().await {
                Err(e) => RedisErrorOr::Other(self.pool_error(e)),
                Ok(mut conn) => match invocation(lost_record.as_deref().unwrap_or(&conn.record))
                    .invoke_async::<::redis::Value>(&mut conn.conn)
                    .await
                {
                    Ok(reply) => {
                        inner.counters.batches.fetch_add(1, Ordering::Relaxed);
                        return parse_answers(reply, ops.len());
                    }
                    Err(e) => match classify(e) {
                        Failure::Refused(e) => return Err(BatchError::Refused(Arc::new(e))),
                        Failure::Busy(e) => RedisErrorOr::Redis(e),
                        Failure::Lost(e) => {
                            maybe_sent = true;
                            if lost_record.is_none() {
                                lost_record = Some(Arc::clone(&conn.record));
                            }
                            Pooled::discard(conn);
                            if !dedupe {
                                // Resending could apply it twice.
                                return Err(BatchError::gave_up(true, RedisErrorOr::Redis(e)));
                            }
                            RedisErrorOr::Redis(e)
                        }
                    },
                },
            };
            if matches!(last, RedisErrorOr::Other(Error::RedisClosed { .. })) {
                return Err(BatchError::Closed);
            }
            if Instant::now() >= deadline {
                return Err(BatchError::gave_up(maybe_sent, last));
            }
            attempt += 1;
            inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                server = %inner.server,
                writes = ops.len(),
                attempt,
                maybe_sent,
                "retrying a write"
            );
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// The error one write of a failed batch reports.
    fn batch_error(&self, key: &str, e: &BatchError) -> Error {
        let inner = &*self.inner;
        let server = inner.server.to_string();
        let key = key.to_string();
        let (maybe_sent, source): (bool, Box<dyn std::error::Error + Send + Sync>) = match e {
            BatchError::Closed => {
                return Error::RedisClosed {
                    location: inner.location.clone(),
                };
            }
            BatchError::Refused(e) => (false, Box::new(Arc::clone(e))),
            BatchError::GaveUp { maybe_sent, source } => {
                tracing::warn!(server = %server, key = %key, maybe_sent, error = %source, "giving up a write");
                (*maybe_sent, Box::new(Arc::clone(source)))
            }
        };
        if maybe_sent {
            inner.counters.write_unknown.fetch_add(1, Ordering::Relaxed);
            Error::RedisWriteUnknown {
                server,
                key,
                source,
            }
        } else {
            inner
                .counters
                .write_not_applied
                .fetch_add(1, Ordering::Relaxed);
            Error::RedisWriteNotApplied {
                server,
                key,
                source,
            }
        }
    }

    fn encode(&self, key: &str, value: &Value) -> Result<Vec<u8>> {
        let c = &self.inner.config;
        encode_value(c.max_key_bytes, c.max_value_bytes, key, value)
    }

    async fn set(&self, mode: Mode, key: &str, value: Value, ttl_ms: u64) -> Result<bool> {
        let json = self.encode(key, &value)?;
        self.write(WriteOp {
            mode,
            key: key.to_string(),
            json,
            ttl_ms,
        })
        .await
    }

    /// Adds `key` only if it is absent, atomically across all clients;
    /// `false` if it exists.
    pub async fn create(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.set(Mode::Create, key, value.into(), 0).await
    }

    /// Replaces an existing key's value; `false` if it is missing.
    pub async fn update(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.set(Mode::Update, key, value.into(), 0).await
    }

    /// Sets `key`; `true` if it was new. Makes a TTL entry permanent.
    pub async fn upsert(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.set(Mode::Upsert, key, value.into(), 0).await
    }

    /// Sets `key` to expire `ttl` from now (native `PX` expiry, at least
    /// 1 ms); `true` if it was new.
    pub async fn upsert_with_ttl(
        &self,
        key: &str,
        value: impl Into<Value>,
        ttl: Duration,
    ) -> Result<bool> {
        let ms = (ttl.as_millis() as u64).max(1);
        self.set(Mode::Upsert, key, value.into(), ms).await
    }

    /// Removes `key`; `false` if it was missing.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.encode(key, &Value::Null)?;
        self.write(WriteOp {
            mode: Mode::Delete,
            key: key.to_string(),
            json: Vec::new(),
            ttl_ms: 0,
        })
        .await
    }

    /// Removes every key of the namespace.
    pub async fn reset(&self) -> Result<()> {
        self.write(WriteOp {
            mode: Mode::Reset,
            key: String::new(),
            json: Vec::new(),
            ttl_ms: 0,
        })
        .await
        .map(|_| ())
    }

    async fn read_script(&self, mode: &'static str, key: &str) -> Result<::redis::Value> {
        let k = &self.inner.keys;
        let mut inv = READ_SCRIPT.prepare_invoke();
        inv.key(&k.order)
            .key(k.value(key))
            .arg(&k.channel)
            .arg(&k.value_prefix)
            .arg(mode)
            .arg(key);
        let inv = &inv;
        self.read_request("read", key, move |mut conn| async move {
            inv.invoke_async::<::redis::Value>(&mut conn).await
        })
        .await
    }

    fn unexpected(&self, op: &'static str, key: &str, what: String) -> Error {
        Error::Redis {
            server: self.inner.server.to_string(),
            op,
            key: key.to_string(),
            source: what.into(),
        }
    }

    fn parse_value(&self, key: &str, bytes: &[u8]) -> Result<Value> {
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            key: key.to_string(),
            source,
        })
    }

    /// The value of `key`, or `None` (also once expired).
    pub async fn get(&self, key: &str) -> Result<Option<Value>> {
        match self.read_script("g", key).await? {
            ::redis::Value::Nil => Ok(None),
            ::redis::Value::BulkString(b) => self.parse_value(key, &b).map(Some),
            other => Err(self.unexpected("get", key, format!("unexpected reply {other:?}"))),
        }
    }

    /// The value of `key` converted to `T`.
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        crate::BackendExt::get_as(self, key).await
    }

    /// Upserts any serializable value; `true` if the key was new.
    pub async fn set_as<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<bool> {
        crate::BackendExt::set_as(self, key, value).await
    }

    fn bulk_list(&self, reply: ::redis::Value) -> Result<Vec<Vec<u8>>> {
        let ::redis::Value::Array(items) = reply else {
            return Err(self.unexpected("list", "", format!("unexpected reply {reply:?}")));
        };
        items
            .into_iter()
            .map(|v| match v {
                ::redis::Value::BulkString(b) => Ok(b),
                other => Err(self.unexpected("list", "", format!("unexpected item {other:?}"))),
            })
            .collect()
    }

    fn key_string(&self, b: Vec<u8>) -> Result<String> {
        String::from_utf8(b)
            .map_err(|e| self.unexpected("list", "", format!("a key is not UTF-8: {e}")))
    }

    /// Every live entry, in insertion order (one consistent view).
    pub async fn entries(&self) -> Result<Vec<(String, Value)>> {
        let entries = self.read_entries(false).await?;
        Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
    }

    /// Every live entry, in insertion order, with the time each TTL entry
    /// has left (read in the same atomic step as the values).
    pub async fn entries_with_ttl(&self) -> Result<Vec<crate::Entry>> {
        self.read_entries(true).await
    }

    /// The read script's entry listing: key, value and (with `ttl`) the
    /// value key's PTTL per entry; without it every `ttl` is `None`.
    async fn read_entries(&self, ttl: bool) -> Result<Vec<crate::Entry>> {
        let mode = if ttl { "t" } else { "e" };
        let items = self.bulk_list(self.read_script(mode, "").await?)?;
        let mut out = Vec::with_capacity(items.len() / if ttl { 3 } else { 2 });
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = self.key_string(k)?;
            let value = self.parse_value(&key, &v)?;
            let ttl = if ttl {
                self.time_left(&key, it.next())?
            } else {
                None
            };
            out.push(crate::Entry { key, value, ttl });
        }
        Ok(out)
    }

    /// An entry's PTTL reply as the time it has left: -1 no expiry; ms left
    /// otherwise (the script skipped missing values, so never -2). 0 ms
    /// left still counts as a TTL entry: 1 ms.
    fn time_left(&self, key: &str, pttl: Option<Vec<u8>>) -> Result<Option<Duration>> {
        let ms = pttl.and_then(|b| std::str::from_utf8(&b).ok()?.parse::<i64>().ok());
        match ms {
            Some(-1) => Ok(None),
            Some(ms) if ms >= 0 => Ok(Some(Duration::from_millis(ms.unsigned_abs().max(1)))),
            other => {
                let what = format!("unexpected PTTL reply {other:?}");
                Err(self.unexpected("entries", key, what))
            }
        }
    }

    /// Every live key, in insertion order.
    pub async fn list_keys(&self) -> Result<Vec<String>> {
        self.bulk_list(self.read_script("k", "").await?)?
            .into_iter()
            .map(|k| self.key_string(k))
            .collect()
    }

    async fn count(&self, mode: &'static str) -> Result<usize> {
        match self.read_script(mode, "").await? {
            ::redis::Value::Int(n) => Ok(usize::try_from(n).unwrap_or(0)),
            other => Err(self.unexpected("count", "", format!("unexpected reply {other:?}"))),
        }
    }

    /// Number of live keys.
    pub async fn len(&self) -> Result<usize> {
        self.count("n").await
    }

    /// Whether there is no live key.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Drops expired entries from the insertion-order index (Redis has
    /// removed their values already) and publishes [`Change::Expired`] for
    /// each; returns how many.
    pub async fn sweep_expired(&self) -> Result<usize> {
        self.count("s").await
    }

    /// The selected entries as the `<memory>` prompt element.
    pub async fn render_prompt<P: AsRef<str>>(&self, patterns: &[P]) -> Result<String> {
        let map: serde_json::Map<String, Value> = self.entries().await?.into_iter().collect();
        Ok(crate::prompt::render_prompt(&map, patterns))
    }

    /// Subscribes to the namespace's changes of keys matching `pattern`,
    /// over a dedicated pub/sub connection: changes made by any client
    /// (any process) after this returns are delivered, once each and in
    /// order. A lost pub/sub connection is re-established in the background;
    /// changes published meanwhile are missed and counted by
    /// [`Subscription::dropped`] (at least one per gap).
    ///
    /// [`Change::Expired`] comes as soon as the server expires the entry if
    /// the server announces expiries (`notify-keyspace-events Ex`: the
    /// subscription listens for them and has the entry tidied); otherwise
    /// when any client next touches the entry, lists the entries, or calls
    /// [`RedisStore::sweep_expired`].
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.check_open()?;
        if self.announces_expiries().await == Some(false) {
            tracing::info!(
                server = %self.inner.server,
                "the server does not announce expiries (notify-keyspace-events Ex): \
                 expiry changes arrive when an expired entry is next touched"
            );
        }
        let queue = SubQueue::new(pattern, self.inner.config.subscription_capacity);
        let stream = self.open_pubsub().await?;
        self.inner.hub.add(&queue);
        let task = tokio::spawn(pump(self.clone(), Arc::clone(&queue), stream));
        Ok(Subscription::new(
            queue,
            Some(Box::new(AbortOnDrop(task.abort_handle()))),
        ))
    }

    /// The store key of `redis_key` if it is one of this namespace's values.
    fn own_key(&self, redis_key: &[u8]) -> Option<String> {
        let key = redis_key.strip_prefix(self.inner.keys.value_prefix.as_bytes())?;
        std::str::from_utf8(key).ok().map(str::to_string)
    }

    /// The server expired `key`'s value: read it, so the read script drops
    /// it from the order index and publishes [`Change::Expired`] — once,
    /// whichever client gets there first.
    async fn notice_expired(&self, key: &str) {
        if let Err(e) = self.read_script("g", key).await {
            tracing::debug!(server = %self.inner.server, key, error = %e.chain(), "noticing an expiry failed");
        }
    }

    /// Whether the server announces expiries (`notify-keyspace-events`
    /// with `E` and `x`, or `A`); `None` if it will not say (`CONFIG` may
    /// be forbidden to this user).
    async fn announces_expiries(&self) -> Option<bool> {
        let reply = self
            .read_request("config", "", |mut conn| async move {
                ::redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            })
            .await
            .ok()?;
        let flags = reply.get(1)?;
        Some(flags.contains('E') && (flags.contains('x') || flags.contains('A')))
    }

    async fn open_pubsub(&self) -> Result<::redis::aio::PubSubStream> {
        let inner = &*self.inner;
        let fail = |e: RedisError| Error::RedisUnavailable {
            server: inner.server.to_string(),
            source: Box::new(e),
        };
        let connect = async {
            let mut ps = inner.client.get_async_pubsub().await.map_err(fail)?;
            ps.subscribe(&inner.keys.channel).await.map_err(fail)?;
            ps.subscribe(&inner.keys.expired).await.map_err(fail)?;
            Ok(ps.into_on_message())
        };
        match tokio::time::timeout(inner.config.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(Error::RedisUnavailable {
                server: inner.server.to_string(),
                source: "subscribing timed out".into(),
            }),
        }
    }

    /// Closes the pool and ends every subscription; later calls fail with
    /// [`Error::RedisClosed`]. The data stays on the server.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.pool.close();
        self.inner.hub.close();
        Ok(())
    }
}

/// An error from the client, or one of ours (pool, closed).
enum RedisErrorOr {
    Redis(RedisError),
    Other(Error),
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decodes one published change: `<op><key length>:<key><value json>`.
fn decode_change(payload: &[u8]) -> Option<(String, Change)> {
    let (&op, rest) = payload.split_first()?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let rest = &rest[colon + 1..];
    let key = std::str::from_utf8(rest.get(..len)?).ok()?.to_string();
    let body = &rest[len..];
    let change = match op {
        b'S' => Change::Set(serde_json::from_slice(body).ok()?),
        b'D' => Change::Deleted,
        b'X' => Change::Expired,
        b'R' => Change::Reset,
        _ => return None,
    };
    Some((key, change))
}

/// Moves published changes into the subscription's queue, reconnecting
/// when the pub/sub connection is lost, until the store is closed.
async fn pump(store: RedisStore, queue: Arc<SubQueue>, mut stream: ::redis::aio::PubSubStream) {
    let mut attempt = 0u32;
    loop {
        while let Some(msg) = stream.next().await {
            attempt = 0;
            if msg.get_channel_name() == store.inner.keys.expired {
                // Other namespaces' expiries come too; ours are noticed in a
                // task, so a slow server does not hold up the changes.
                if let Some(key) = store.own_key(msg.get_payload_bytes()) {
                    let store = store.clone();
                    tokio::spawn(async move { store.notice_expired(&key).await });
                }
                continue;
            }
            match decode_change(msg.get_payload_bytes()) {
                Some((k, c)) => queue.push(&k, &c),
                None => tracing::warn!(server = %store.inner.server, "undecodable change message"),
            }
        }
        if store.inner.closed.load(Ordering::Acquire) {
            queue.close();
            return;
        }
        store
            .inner
            .counters
            .subscription_gaps
            .fetch_add(1, Ordering::Relaxed);
        queue.note_gap();
        loop {
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
            if store.inner.closed.load(Ordering::Acquire) {
                queue.close();
                return;
            }
            match store.open_pubsub().await {
                Ok(s) => {
                    stream = s;
                    break;
                }
                Err(e) => tracing::debug!(error = %e.chain(), "re-subscribing failed"),
            }
        }
    }
}

impl Backend for RedisStore {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>>> {
        Box::pin(RedisStore::get(self, key))
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<(String, Value)>>> {
        Box::pin(RedisStore::entries(self))
    }

    fn entries_with_ttl(&self) -> BoxFuture<'_, Result<Vec<crate::Entry>>> {
        Box::pin(RedisStore::entries_with_ttl(self))
    }

    fn list_keys(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(RedisStore::list_keys(self))
    }

    fn len(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(RedisStore::len(self))
    }

    fn create<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::create(self, key, value))
    }

    fn update<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::update(self, key, value))
    }

    fn upsert<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::upsert(self, key, value))
    }

    fn upsert_with_ttl<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::upsert_with_ttl(self, key, value, ttl))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::delete(self, key))
    }

    fn reset(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(RedisStore::reset(self))
    }

    fn sweep_expired(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(RedisStore::sweep_expired(self))
    }

    fn subscribe<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(RedisStore::subscribe(self, pattern))
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(RedisStore::close(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_server_without_password() {
        let t = Target::parse("redis://:secret@10.0.0.1:7000/3?ns=alice").unwrap();
        assert_eq!(t.server, "10.0.0.1:7000/3");
        assert_eq!(t.ns.as_deref(), Some("alice"));
        assert!(!t.client_url.contains("ns="));
        let t = Target::parse("redis://localhost").unwrap();
        assert_eq!((t.server.as_str(), t.ns), ("localhost:6379/0", None));
        assert!(Target::parse("http://x").is_err());
        let e = Target::parse("redis://u:secret@/x?ns=")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[tokio::test]
    async fn passwords_with_reserved_characters_never_show() {
        for password in [
            "hunter2",
            "hun/ter2",
            "hun?ter2#x",
            "hun@ter2",
            "h/u?n#t@er2",
        ] {
            let url = format!("redis://bob:{password}@127.0.0.1:1/0?ns=alice&x=qkey");
            let builder = RedisStore::builder(url.as_str()).retry_for(Duration::from_millis(10));
            let shown = format!("{builder:?}");
            let json = serde_json::to_string(&builder.config).expect("json");
            // Nothing listens on port 1: every URL is refused or unreachable.
            let Err(err) = builder.build().await else {
                panic!("nothing listens on port 1");
            };
            let mut text = format!("{shown} {json} {err} {err:?}");
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                text.push_str(&format!(" {s} {s:?}"));
                source = s.source();
            }
            assert!(
                !text.contains("ter2") && !text.contains("qkey"),
                "{password}: {text}"
            );
        }
    }

    #[test]
    fn changes_round_trip() {
        assert_eq!(
            decode_change(b"S5:a:b:c{\"x\":1}"),
            Some(("a:b:c".into(), Change::Set(serde_json::json!({"x": 1}))))
        );
        assert_eq!(decode_change("D4:café".as_bytes()), None);
        assert_eq!(
            decode_change("D5:café".as_bytes()),
            Some(("café".into(), Change::Deleted))
        );
        assert_eq!(decode_change(b"R0:"), Some((String::new(), Change::Reset)));
        assert_eq!(decode_change(b"X9:a"), None);
    }
}
