//! The backend seam: one async interface over the file store and the
//! Redis backend, with the same semantics on both.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::subscribe::Subscription;

/// A boxed future, as the object-safe [`Backend`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One live entry with the time it has left, as
/// [`Backend::entries_with_ttl`] lists them (for copying a memory without
/// making its TTL entries permanent).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Time left until the entry expires; `None` for a permanent entry.
    pub ttl: Option<Duration>,
}

impl Entry {
    /// An entry to hand to `replace_all` (of a `StoreBuilder` or a `RedisStore`): `ttl` is the time it
    /// will have left, `None` for a permanent one.
    pub fn new(key: impl Into<String>, value: Value, ttl: Option<Duration>) -> Self {
        Self {
            key: key.into(),
            value,
            ttl,
        }
    }
}

/// What every store backend does, with the same semantics: the file
/// [`Store`](crate::Store) and, with feature `redis`, `RedisStore`.
///
/// Object safe: hold a `Box<dyn Backend>` / `Arc<dyn Backend>` chosen at run
/// time (see [`open_backend`](crate::open_backend)). Typed access is in [`BackendExt`].
///
/// Semantics (the Python assistant's dict):
/// - keys keep insertion order; an updated key keeps its place, a deleted
///   (or expired) and re-added key goes last;
/// - [`create`](Self::create) refuses an existing key, atomically even
///   across processes (Redis) — exactly one of racing creators gets `true`;
/// - [`update`](Self::update) refuses a missing key;
/// - [`upsert`](Self::upsert) returns whether the key was new;
/// - an entry written by [`upsert_with_ttl`](Self::upsert_with_ttl) is
///   invisible to every read at once when its time runs out; any later
///   plain write of the key makes it permanent again;
/// - every write has returned `Ok` only once it is durable (file: fsynced
///   log; Redis: acknowledged by the server, durable as its `appendfsync`
///   setting makes it).
///
/// Cancel safety: dropping a write's future may or may not cancel the write
/// (the file store finishes it in the background; Redis may have received
/// it); re-read to know.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the data lives, for messages: the snapshot path, or
    /// `redis://host:port/db?ns=name` (never a password).
    fn location(&self) -> String;

    /// The value of `key`, or `None` (also when it expired).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>>>;

    /// Every live entry, in order.
    fn entries(&self) -> BoxFuture<'_, Result<Vec<(String, Value)>>>;

    /// Every live entry, in order, with the time each TTL entry has left
    /// (one consistent reading).
    fn entries_with_ttl(&self) -> BoxFuture<'_, Result<Vec<Entry>>>;

    /// Every live key, in order.
    fn list_keys(&self) -> BoxFuture<'_, Result<Vec<String>>>;

    /// Number of live keys.
    fn len(&self) -> BoxFuture<'_, Result<usize>>;

    /// Whether there is no live key.
    fn is_empty(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move { Ok(self.len().await? == 0) })
    }

    /// Adds `key` only if absent; `false` (nothing changed) if it exists.
    fn create<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>>;

    /// Replaces an existing key's value; `false` if the key is missing.
    fn update<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>>;

    /// Sets `key` whether or not it exists; `true` if it was new.
    fn upsert<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>>;

    /// [`upsert`](Self::upsert) of an entry that expires `ttl` from now
    /// (at least 1 ms). Returns whether the key was new.
    fn upsert_with_ttl<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Removes `key`; `false` if it was missing.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Removes every key.
    fn reset(&self) -> BoxFuture<'_, Result<()>>;

    /// Removes expired entries for good (they are invisible already) and
    /// returns how many. The file store needs it called now and then (the
    /// facade's monitor cleanup does); Redis expires natively and this only
    /// tidies its insertion-order index.
    fn sweep_expired(&self) -> BoxFuture<'_, Result<usize>>;

    /// Subscribes to changes of the keys matching `pattern` (`*` matches any
    /// run of characters). Changes made after this returns are delivered;
    /// on Redis, also those made by other processes.
    fn subscribe<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Subscription>>;

    /// The selected entries as the `<memory>` prompt element; see
    /// [`render_prompt`](crate::render_prompt).
    fn render_prompt<'a>(&'a self, patterns: &'a [String]) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let map: Map<String, Value> = self.entries().await?.into_iter().collect();
            Ok(crate::prompt::render_prompt(&map, patterns))
        })
    }

    /// Closes this backend (the file store compacts and unlocks; Redis
    /// closes its pool). Later calls fail.
    fn close(&self) -> BoxFuture<'_, Result<()>>;
}

/// Typed access on any [`Backend`] (serde), implemented for all of them.
pub trait BackendExt: Backend {
    /// The value of `key` converted to `T`.
    fn get_as<'a, T: DeserializeOwned + 'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<Option<T>>> + Send + 'a {
        async move {
            let Some(v) = self.get(key).await? else {
                return Ok(None);
            };
            T::deserialize(v).map(Some).map_err(|source| Error::Json {
                key: key.to_string(),
                source,
            })
        }
    }

    /// Upserts any serializable value; `true` if the key was new.
    fn set_as<'a, T: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        value: &T,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        let v = serde_json::to_value(value).map_err(|source| Error::Json {
            key: key.to_string(),
            source,
        });
        async move { self.upsert(key, v?).await }
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}
