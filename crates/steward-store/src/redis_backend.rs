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
//! removes it publishes [`Change::Expired`](crate::Change::Expired) exactly once.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::RedisError;
use ::redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_pool::{Pool, Pooled, Stats};

use crate::error::{Error, Result};
use crate::limits::encode_value;
use crate::subscribe::Hub;

mod batch;
mod changes;
mod config;
mod connect;
mod replace;
mod scripts;
mod seam;

use batch::{Failure, Mode, WriteOp, WriteQueue, classify};
pub use config::{RedisBuilder, RedisConfig};
pub use connect::{RedisConnection, RedisManager};
use scripts::{Keys, READ_SCRIPT};

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
    pub pool: Stats,
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

    /// Counters, with the pool's stats.
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
            pool: self.inner.pool.stats(),
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
    /// removed their values already) and publishes [`Change::Expired`](crate::Change::Expired) for
    /// each; returns how many.
    pub async fn sweep_expired(&self) -> Result<usize> {
        self.count("s").await
    }

    /// The selected entries as the `<memory>` prompt element.
    pub async fn render_prompt<P: AsRef<str>>(&self, patterns: &[P]) -> Result<String> {
        let map: serde_json::Map<String, Value> = self.entries().await?.into_iter().collect();
        Ok(crate::prompt::render_prompt(&map, patterns))
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

#[cfg(test)]
mod tests;
