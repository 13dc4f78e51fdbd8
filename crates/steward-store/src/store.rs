//! The store: an in-memory map, a writer thread that group-commits to the
//! log, and compaction into the Python-format snapshot.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::files::{self, Paths};
use crate::json;
use crate::limits::encode_value;
use crate::prompt;
use crate::subscribe::{DEFAULT_SUBSCRIPTION_CAPACITY, Hub, SubQueue, Subscription};

mod backlog;
mod builder;
mod clock;
mod commit;
mod compact;
mod config;
mod keycap;
mod recovery;
mod replace;
mod seam;
mod writer;

pub use builder::StoreBuilder;
pub use clock::{Clock, ManualClock, SystemClock};
pub use commit::WriteFuture;
use compact::finish_renames;
pub(crate) use compact::rename_staged;
pub use config::StoreConfig;
pub(crate) use recovery::take_lock;

use commit::{Kind, Reply, Request, Slot, WriteOp, lead_commits, ready};
use writer::Writer;

/// A handle to an open store. Cheap to clone; all clones share one map, one
/// writer thread and one lock. `Send + Sync`.
///
/// Reads come from memory and never wait for disk. Every write returns only
/// once it is durable (its log record fsynced); concurrent writers share
/// fsyncs (group commit). The map changes only after the fsync, so a read
/// never shows a write that a crash could still take back. Each write is
/// async under its plain name ([`upsert`](Self::upsert)): it returns a
/// [`WriteFuture`] and never blocks the runtime (the disk work happens on
/// the store's writer thread, or a blocked caller's). Its `_blocking` form
/// ([`upsert_blocking`](Self::upsert_blocking)) waits on the calling
/// thread, for threads outside an async runtime.
///
/// Dropping the last handle waits for queued writes, stops the writer
/// thread and releases the lock; it does not compact (the log is
/// replayed at the next open). [`Store::close`] compacts.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.handle.shared.paths.snapshot)
            .field("keys", &self.len())
            .finish()
    }
}

/// Owns the writer thread: the last handle's drop stops and joins it.
struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.queue.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        self.shared.hub.close();
        // `shared` drops right after this, with the writer and its lock.
    }
}

struct Shared {
    map: RwLock<Map<String, Value>>,
    /// Expiry times of TTL entries. Locked after `map` (never before), and
    /// changed only with `map` write-locked, so a reader holding `map` sees
    /// both consistent.
    expires: RwLock<files::Expiries>,
    clock: Arc<dyn Clock>,
    queue: Mutex<Queue>,
    /// Wakes the writer thread (it waits on `queue`).
    wake: Condvar,
    /// Only the current leader locks it, so it is never contended.
    writer: Mutex<Writer>,
    paths: Paths,
    /// All file I/O goes through it (the real disk outside tests).
    disk: Arc<dyn Disk>,
    config: StoreConfig,
    counters: Counters,
    /// Change subscribers, fed by whoever commits.
    hub: Hub,
}

/// Group commit: whoever finds no leader when queuing a write becomes the
/// leader and commits everything queued, in one batch per round. A blocking
/// caller leads on its own thread (no hand-off to another thread for a lone
/// writer); an async caller hands leadership to the writer thread.
#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
    /// Someone is committing (or about to): new requests just wait.
    leader: bool,
    /// Leadership was handed to the writer thread.
    thread_wanted: bool,
    shutdown: bool,
    closed: bool,
    /// Bytes (log records) of the queued writes.
    queued_bytes: usize,
    /// Async writes were refused since the queue was last taken.
    refusing: bool,
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    unchanged: AtomicU64,
    batches: AtomicU64,
    largest_batch: AtomicU64,
    compactions: AtomicU64,
    log_bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    failed_batches: AtomicU64,
    expired: AtomicU64,
    keys_refused: AtomicU64,
    queue_full: AtomicU64,
}

/// Counters of a store, as a plain snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Keys in the store.
    pub keys: usize,
    /// Writes that changed something and were made durable.
    pub writes: u64,
    /// Writes that changed nothing (create of an existing key, update or
    /// delete of a missing one).
    pub unchanged: u64,
    /// Group-commit batches written (one fsync each).
    pub batches: u64,
    /// Most writes seen in one batch.
    pub largest_batch: u64,
    /// Compactions into the snapshot.
    pub compactions: u64,
    /// Bytes in the log right now (header included).
    pub log_bytes: u64,
    /// Size of the last snapshot written by this store (0 before the first).
    pub snapshot_bytes: u64,
    /// Batches that failed to reach the disk (nothing of them was applied).
    pub failed_batches: u64,
    /// TTL entries (live or expired but not swept yet).
    pub ttl_entries: usize,
    /// Expired entries removed by sweeps and compactions.
    pub expired: u64,
    /// Writes refused because they would have created a key beyond
    /// [`StoreConfig::max_keys`].
    pub keys_refused: u64,
    /// Async writes refused because the queue held
    /// [`StoreConfig::max_queued_writes`] or
    /// [`StoreConfig::max_queued_bytes`].
    pub queue_full: u64,
}

impl Store {
    /// Opens (or creates) the store whose snapshot is `path`, with default
    /// settings. A missing file is an empty store; a missing folder is
    /// created. See [`StoreBuilder::build`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Store> {
        StoreBuilder::new(path).build()
    }

    /// A builder with non-default settings.
    pub fn builder(path: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder::new(path)
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The snapshot's path (`memory.json`; a symlink is resolved to its target).
    pub fn path(&self) -> &Path {
        &self.shared().paths.snapshot
    }

    /// The log's path (the snapshot's path with `.log` appended).
    pub fn log_path(&self) -> &Path {
        &self.shared().paths.log
    }

    /// The settings in force.
    pub fn config(&self) -> &StoreConfig {
        &self.shared().config
    }

    // ---------------------------------------------------------------- reads

    /// Whether `key`'s entry has a TTL that ran out (call with `map` held).
    fn expired(&self, key: &str) -> bool {
        let e = self.shared().expires.read();
        !e.is_empty()
            && e.get(key)
                .is_some_and(|&t| self.shared().clock.now_ms() >= t)
    }

    /// Calls `f` with the map and the keys in it whose TTL ran out (none
    /// while nothing expired): they come from the expiry index, so reads
    /// cost nothing extra while no entry has expired, and never a copy of
    /// the map when some have.
    fn with_expired<R>(&self, f: impl FnOnce(&Map<String, Value>, &HashSet<&str>) -> R) -> R {
        let shared = self.shared();
        let map = shared.map.read();
        let e = shared.expires.read();
        let now = if e.is_empty() {
            0
        } else {
            shared.clock.now_ms()
        };
        let doomed: HashSet<&str> = match e.expired_count(now) {
            0 => HashSet::new(),
            _ => e.expired_keys(now).collect(),
        };
        f(&map, &doomed)
    }

    /// Calls `f` with the live entries: the map itself, or a copy of the
    /// live entries while some TTL entry has expired unswept.
    fn with_live<R>(&self, f: impl FnOnce(&Map<String, Value>) -> R) -> R {
        self.with_expired(|map, doomed| {
            if doomed.is_empty() {
                return f(map);
            }
            let live: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !doomed.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            f(&live)
        })
    }

    /// The value of `key`, or `None` (also once its TTL ran out).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.with(key, |v| v.cloned())
    }

    /// Calls `f` with the value of `key` without cloning it. Keep `f` short
    /// (writes wait while it runs) and do not write to the store inside it
    /// (that would deadlock).
    pub fn with<R>(&self, key: &str, f: impl FnOnce(Option<&Value>) -> R) -> R {
        let map = self.shared().map.read();
        if self.expired(key) {
            return f(None);
        }
        f(map.get(key))
    }

    /// The value of `key` converted to `T` through serde.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.with(key, |v| {
            let Some(v) = v else {
                return Ok(None);
            };
            T::deserialize(v).map(Some).map_err(|source| Error::Json {
                key: key.to_string(),
                source,
            })
        })
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.with(key, |v| v.is_some())
    }

    /// Number of keys. O(1) (amortized): the expired entries are counted
    /// from the expiry index, whatever their number.
    pub fn len(&self) -> usize {
        let shared = self.shared();
        let map = shared.map.read();
        let e = shared.expires.read();
        if e.is_empty() {
            return map.len();
        }
        map.len()
            .saturating_sub(e.expired_count(shared.clock.now_ms()))
    }

    /// Whether the store has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All keys in insertion order (an updated key keeps its place; a deleted
    /// and re-added key goes last).
    pub fn list_keys(&self) -> Vec<String> {
        self.with_expired(|m, doomed| {
            m.keys()
                .filter(|k| !doomed.contains(k.as_str()))
                .cloned()
                .collect()
        })
    }

    /// The entries, in order, as of this call (a copy: later writes do not
    /// show up, and no lock is held while iterating).
    pub fn iter(&self) -> std::vec::IntoIter<(String, Value)> {
        self.with_expired(|m, doomed| {
            m.iter()
                .filter(|(k, _)| !doomed.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
                .into_iter()
        })
    }

    /// The live entries, in order, with the time each TTL entry has left
    /// by the store's clock (for copying a memory elsewhere without making
    /// its TTL entries permanent).
    pub fn entries_with_ttl(&self) -> Vec<crate::Entry> {
        let shared = self.shared();
        let map = shared.map.read();
        let expires = shared.expires.read();
        let entries = map.iter().map(|(k, v)| (k.clone(), v.clone()));
        files::with_ttl(entries, &expires, shared.clock.now_ms())
    }

    /// A copy of the whole map, in order.
    pub fn to_map(&self) -> Map<String, Value> {
        self.with_live(Map::clone)
    }

    /// The map as Python's `json.dump(m, f, indent=2)` writes it.
    pub fn to_python_json(&self) -> String {
        self.with_live(json::to_python_json)
    }

    /// The selected entries as a `<memory>` XML element for the prompt.
    /// See [`render_prompt`](crate::render_prompt) for patterns and format.
    pub fn render_prompt<P: AsRef<str>>(&self, patterns: &[P]) -> String {
        self.with_live(|m| prompt::render_prompt(m, patterns))
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared().counters;
        Stats {
            keys: self.len(),
            writes: c.writes.load(Ordering::Relaxed),
            unchanged: c.unchanged.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            log_bytes: c.log_bytes.load(Ordering::Relaxed),
            snapshot_bytes: c.snapshot_bytes.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            ttl_entries: self.shared().expires.read().len(),
            expired: c.expired.load(Ordering::Relaxed),
            keys_refused: c.keys_refused.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
        }
    }

    // --------------------------------------------------------------- writes

    /// Validates and encodes a value (work done on the caller's thread, so
    /// concurrent writers encode in parallel).
    fn encode(&self, key: &str, value: &Value) -> Result<Vec<u8>> {
        let c = &self.shared().config;
        encode_value(c.max_key_bytes, c.max_value_bytes, key, value)
    }

    fn prepare_set(
        &self,
        key: &str,
        value: Value,
        make: fn(String, Value, Vec<u8>) -> WriteOp,
    ) -> Result<WriteOp> {
        let json = self.encode(key, &value)?;
        Ok(make(key.to_string(), value, json))
    }

    /// Queues a request. Returns its slot and whether the caller must now
    /// lead (`Some(true)`: lead on this thread) — or `None` if the store is
    /// closed (the slot holds the error already).
    fn submit(&self, kind: Kind, blocking: bool) -> (Arc<Slot>, bool) {
        let slot = Arc::new(Slot::default());
        let shared = self.shared();
        let mut q = shared.queue.lock();
        if q.closed {
            drop(q);
            slot.complete(Err(Error::Closed {
                path: shared.paths.snapshot.clone(),
            }));
            return (slot, false);
        }
        let cost = match &kind {
            Kind::Write(w) => w.cost(),
            _ => 0,
        };
        if !blocking && let Err(e) = self.admit(&mut q, cost) {
            drop(q);
            slot.complete(Err(e));
            return (slot, false);
        }
        q.queued_bytes += cost;
        q.requests.push(Request {
            kind,
            reply: Reply {
                slot: Some(Arc::clone(&slot)),
                path: shared.paths.snapshot.clone(),
            },
        });
        if q.leader {
            return (slot, false);
        }
        q.leader = true;
        if blocking {
            return (slot, true);
        }
        q.thread_wanted = true;
        drop(q);
        shared.wake.notify_all();
        (slot, false)
    }

    /// Checks the bound on queued async writes; counts and logs a refusal
    /// (once until the queue empties).
    fn admit(&self, q: &mut Queue, cost: usize) -> Result<()> {
        let shared = self.shared();
        let refused = backlog::admit(
            &shared.config,
            &shared.paths.snapshot,
            q.requests.len(),
            q.queued_bytes,
            cost,
        );
        if refused.is_err() {
            let total = shared.counters.queue_full.fetch_add(1, Ordering::Relaxed) + 1;
            if !std::mem::replace(&mut q.refusing, true) {
                tracing::warn!(
                    total,
                    queued = q.requests.len(),
                    "async writes refused: the write queue is full (await earlier writes)"
                );
            }
        }
        refused
    }

    fn run_blocking(&self, kind: Kind) -> Result<bool> {
        let (slot, lead) = self.submit(kind, true);
        if lead {
            lead_commits(self.shared(), Some(&slot));
        }
        slot.wait()
    }

    fn run_async(&self, kind: Kind) -> WriteFuture {
        WriteFuture {
            slot: self.submit(kind, false).0,
        }
    }

    fn write_blocking(&self, w: Result<WriteOp>) -> Result<bool> {
        self.run_blocking(Kind::Write(w?))
    }

    fn write_async(&self, w: Result<WriteOp>) -> WriteFuture {
        match w {
            Ok(w) => self.run_async(Kind::Write(w)),
            Err(e) => ready(Err(e)),
        }
    }

    /// Adds `key` only if it is absent. Resolves to `false` (and changes
    /// nothing) if the key exists, like the Python assistant's `create`.
    ///
    /// Queued when called; cancel safety as for every write: see
    /// [`WriteFuture`] (dropping it does not cancel the write).
    pub fn create(&self, key: &str, value: impl Into<Value>) -> WriteFuture {
        self.write_async(self.prepare_set(key, value.into(), WriteOp::Create))
    }

    /// [`create`](Self::create), blocking the calling thread until the
    /// write is durable: for threads outside an async runtime.
    pub fn create_blocking(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.write_blocking(self.prepare_set(key, value.into(), WriteOp::Create))
    }

    /// Replaces the value of an existing key (it keeps its place).
    /// Resolves to `false` (and changes nothing) if the key is missing.
    /// Dropping the future does not cancel the write ([`WriteFuture`]).
    pub fn update(&self, key: &str, value: impl Into<Value>) -> WriteFuture {
        self.write_async(self.prepare_set(key, value.into(), WriteOp::Update))
    }

    /// [`update`](Self::update), blocking until durable.
    pub fn update_blocking(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.write_blocking(self.prepare_set(key, value.into(), WriteOp::Update))
    }

    /// Sets `key` whether or not it exists. Resolves to `true` if the key
    /// was new (it goes last), `false` if an existing value was replaced.
    /// Dropping the future does not cancel the write ([`WriteFuture`]).
    pub fn upsert(&self, key: &str, value: impl Into<Value>) -> WriteFuture {
        self.write_async(self.prepare_set(key, value.into(), WriteOp::Upsert))
    }

    /// [`upsert`](Self::upsert), blocking until durable.
    pub fn upsert_blocking(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.write_blocking(self.prepare_set(key, value.into(), WriteOp::Upsert))
    }

    /// Upserts any serializable value. Dropping the future does not cancel
    /// the write ([`WriteFuture`]).
    pub fn set_as<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> WriteFuture {
        match to_value(key, value) {
            Ok(v) => self.upsert(key, v),
            Err(e) => ready(Err(e)),
        }
    }

    /// [`set_as`](Self::set_as), blocking until durable.
    pub fn set_as_blocking<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<bool> {
        let v = to_value(key, value)?;
        self.upsert_blocking(key, v)
    }

    fn prepare_ttl(&self, key: &str, value: Value, ttl: std::time::Duration) -> Result<WriteOp> {
        let json = self.encode(key, &value)?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(WriteOp::UpsertTtl(key.to_string(), value, json, ms))
    }

    /// Upserts an entry that expires `ttl` (at least 1 ms) after the write
    /// commits; resolves to whether the key was new. Once expired, the entry
    /// is invisible to every read at once; it is removed for good by
    /// [`sweep_expired`](Self::sweep_expired) or the next compaction. A
    /// later plain write of the key makes it permanent. Dropping the future
    /// does not cancel the write ([`WriteFuture`]).
    ///
    /// On disk the expiry time (wall clock, ms since the Unix epoch, by the
    /// store's [`Clock`]) is a log record, and after compaction an entry of
    /// `memory.json.ttl` (`{key: [ms, fingerprint of the value]}`; an expiry
    /// whose value was rewritten in `memory.json` is ignored) beside the snapshot: `memory.json`
    /// itself stays a plain `{key: value}` object the Python assistant
    /// reads (it sees a TTL entry as an ordinary one until a compaction
    /// after its expiry drops it).
    pub fn upsert_with_ttl(
        &self,
        key: &str,
        value: impl Into<Value>,
        ttl: std::time::Duration,
    ) -> WriteFuture {
        self.write_async(self.prepare_ttl(key, value.into(), ttl))
    }

    /// [`upsert_with_ttl`](Self::upsert_with_ttl), blocking until durable.
    pub fn upsert_with_ttl_blocking(
        &self,
        key: &str,
        value: impl Into<Value>,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        self.write_blocking(self.prepare_ttl(key, value.into(), ttl))
    }

    /// Removes expired entries for good (durably: one delete record each)
    /// and resolves to how many; subscribers get [`Change::Expired`](crate::Change::Expired) for each.
    /// They are invisible already; this frees their memory. The steward
    /// facade's monitor cleanup is meant to call it periodically.
    ///
    /// Cancel safety: the sweep is queued when this is called; dropping the
    /// future does not cancel it, only its count is lost.
    pub fn sweep_expired(&self) -> impl Future<Output = Result<usize>> + Send + 'static {
        let count = Arc::new(AtomicU64::new(0));
        let f = self.run_async(Kind::Sweep(Arc::clone(&count)));
        async move {
            f.await?;
            Ok(count.load(Ordering::Relaxed) as usize)
        }
    }

    /// [`sweep_expired`](Self::sweep_expired), blocking until durable.
    pub fn sweep_expired_blocking(&self) -> Result<usize> {
        let count = Arc::new(AtomicU64::new(0));
        self.run_blocking(Kind::Sweep(Arc::clone(&count)))?;
        Ok(count.load(Ordering::Relaxed) as usize)
    }

    /// Removes `key`. Resolves to `false` if it was missing. Dropping the
    /// future does not cancel the write ([`WriteFuture`]).
    pub fn delete(&self, key: &str) -> WriteFuture {
        self.write_async(Ok(WriteOp::Delete(key.to_string())))
    }

    /// [`delete`](Self::delete), blocking until durable.
    pub fn delete_blocking(&self, key: &str) -> Result<bool> {
        self.write_blocking(Ok(WriteOp::Delete(key.to_string())))
    }

    /// Removes every key (durably; the snapshot becomes `{}` at the next
    /// compaction). Resolves to `true`. Dropping the future does not cancel
    /// the reset ([`WriteFuture`]).
    pub fn reset(&self) -> WriteFuture {
        self.write_async(Ok(WriteOp::Reset))
    }

    /// [`reset`](Self::reset), blocking until durable.
    pub fn reset_blocking(&self) -> Result<()> {
        self.write_blocking(Ok(WriteOp::Reset)).map(|_| ())
    }

    /// Writes the whole map into the snapshot (Python format) and starts an
    /// empty log, on the store's writer thread. Crash-safe at every step.
    /// Resolves to `true`. Dropping the future does not cancel the
    /// compaction ([`WriteFuture`]).
    pub fn compact(&self) -> WriteFuture {
        self.run_async(Kind::Compact)
    }

    /// [`compact`](Self::compact), blocking the calling thread until done.
    pub fn compact_blocking(&self) -> Result<bool> {
        self.run_blocking(Kind::Compact)
    }

    /// Finishes queued writes, compacts (unless
    /// [`StoreConfig::compact_on_close`] is off) and removes the log, so
    /// `memory.json` alone holds everything, then releases the lock. Every
    /// clone of this handle is closed: later writes fail with
    /// [`Error::Closed`]; reads still see the final contents. Closing twice
    /// is `Ok`. The writer thread exits on its own; nothing blocks the
    /// runtime.
    ///
    /// Cancel safety: nothing happens until the future is first polled;
    /// from then on the close is queued and completes even if the future is
    /// dropped (only its result is lost).
    pub async fn close(&self) -> Result<()> {
        let r = self.run_async(Kind::Close).await;
        closed_ok(r)
    }

    /// [`close`](Self::close), blocking the calling thread until the store
    /// is closed and its writer thread has exited.
    pub fn close_blocking(&self) -> Result<()> {
        let r = self.run_blocking(Kind::Close);
        self.join();
        closed_ok(r)
    }

    /// Subscribes to changes of the keys matching `pattern` (`*` matches
    /// any run of characters) made through this store (any clone) after
    /// this returns: each once, in commit order. Buffers up to
    /// [`DEFAULT_SUBSCRIPTION_CAPACITY`] changes; see [`Subscription`].
    /// Ends (yields `None`) when the store is closed or dropped.
    pub fn subscribe(&self, pattern: &str) -> Subscription {
        self.subscribe_with_capacity(pattern, DEFAULT_SUBSCRIPTION_CAPACITY)
    }

    /// [`subscribe`](Self::subscribe) with a buffer of `capacity` changes.
    pub fn subscribe_with_capacity(&self, pattern: &str, capacity: usize) -> Subscription {
        let q = SubQueue::new(pattern, capacity);
        // Under the queue's lock: a concurrent close either comes first (seen
        // here) or closes the hub after this subscriber joined it.
        let queue = self.shared().queue.lock();
        if queue.closed {
            q.close();
        } else {
            self.shared().hub.add(&q);
        }
        drop(queue);
        Subscription::new(q, None)
    }

    fn join(&self) {
        if let Some(t) = self.handle.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn closed_ok(r: Result<bool>) -> Result<()> {
    match r {
        Ok(_) | Err(Error::Closed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn to_value<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|source| Error::Json {
        key: key.to_string(),
        source,
    })
}
