//! The store: an in-memory map, a writer thread that group-commits to the
//! log, and compaction into the Python-format snapshot.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::disk::{Disk, DiskFile, LockHold, Perms, StdDisk};
use crate::error::{Error, Result};
use crate::files::{self, Paths};
use crate::json;
use crate::log::{self, SnapshotId};
use crate::prompt;
use crate::subscribe::{Change, DEFAULT_SUBSCRIPTION_CAPACITY, Hub, SubQueue, Subscription};

mod backlog;
pub(crate) mod keycap;
mod replace;

/// Settings of a store. Plain data: build one with `Default` and struct
/// update syntax, or load it from a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Longest key, in UTF-8 bytes. Default 4 KiB.
    pub max_key_bytes: usize,
    /// Largest value, as compact JSON bytes. Default 1 MiB.
    pub max_value_bytes: usize,
    /// The log is compacted into the snapshot once it holds this many bytes
    /// of records. Default 4 MiB.
    pub compact_log_bytes: u64,
    /// Whether [`Store::close`] compacts (and removes the log, so only
    /// `memory.json` remains for the Python assistant). Default true.
    pub compact_on_close: bool,
    /// Largest group-commit batch in bytes: more waiting writes go into the
    /// next batch. Default 8 MiB.
    pub max_batch_bytes: usize,
    /// Most keys the store holds: a write that would create one more is
    /// refused with [`Error::TooManyKeys`] and changes nothing (replacing
    /// and deleting keys still work; expired entries do not count). A
    /// memory opened with more keys keeps them. Default 100,000.
    pub max_keys: usize,
    /// Most writes the `_async` methods may have queued and not yet
    /// taken by the writer: one more is refused with
    /// [`Error::QueueFull`] (nothing applied; await earlier writes).
    /// Blocking writes wait instead. Default 65,536.
    pub max_queued_writes: usize,
    /// Most bytes (log records) those queued writes may hold, the same
    /// way; a lone write of any size passes. Default 64 MiB.
    pub max_queued_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            compact_log_bytes: 4 << 20,
            compact_on_close: true,
            max_batch_bytes: 8 << 20,
            max_keys: 100_000,
            max_queued_writes: 1 << 16,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// The wall clock TTL entries are judged by, in ms since the Unix epoch.
/// Injected with [`StoreBuilder::clock`] so tests control time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in ms since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told (tests). Cheap to clone; clones share
/// the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Log records must fit a u32 length with room to spare.
const MAX_LIMIT: usize = 1 << 30;

impl StoreConfig {
    fn validate(&self) -> Result<()> {
        if self.max_key_bytes == 0 || self.max_value_bytes == 0 || self.max_batch_bytes == 0 {
            return Err(Error::Config("limits must be at least 1 byte".into()));
        }
        if self.max_keys == 0 || self.max_queued_writes == 0 || self.max_queued_bytes == 0 {
            return Err(Error::Config(
                "max_keys, max_queued_writes and max_queued_bytes must be at least 1".into(),
            ));
        }
        if self.max_key_bytes > MAX_LIMIT
            || self.max_value_bytes > MAX_LIMIT
            || self.max_batch_bytes > MAX_LIMIT
        {
            return Err(Error::Config(format!(
                "key, value and batch limits must be at most {MAX_LIMIT} bytes"
            )));
        }
        Ok(())
    }
}

/// Builds a [`Store`] with non-default settings.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = steward_store::StoreBuilder::new(dir.path().join("memory.json"))
///     .max_value_bytes(64)
///     .build()?;
/// assert!(store.upsert("k", "x".repeat(100)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreBuilder {
    path: PathBuf,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    disk: Arc<dyn Disk>,
}

impl StoreBuilder {
    /// A builder for the store whose snapshot is `path` (e.g. `memory.json`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreBuilder {
            path: path.into(),
            config: StoreConfig::default(),
            clock: Arc::new(SystemClock),
            disk: Arc::new(StdDisk),
        }
    }

    /// Tests only (feature `fault-injection`): the store does all its file
    /// I/O through `disk` instead of the real one (a disk that fails a
    /// chosen call, or simulates a power loss).
    #[cfg(feature = "fault-injection")]
    pub fn disk(mut self, disk: Arc<dyn Disk>) -> Self {
        self.disk = disk;
        self
    }

    /// Replaces all settings.
    pub fn config(mut self, config: StoreConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`StoreConfig::max_key_bytes`].
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.config.max_key_bytes = n;
        self
    }

    /// See [`StoreConfig::max_value_bytes`].
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.config.max_value_bytes = n;
        self
    }

    /// See [`StoreConfig::max_keys`].
    pub fn max_keys(mut self, n: usize) -> Self {
        self.config.max_keys = n;
        self
    }

    /// See [`StoreConfig::max_queued_writes`] and
    /// [`StoreConfig::max_queued_bytes`].
    pub fn max_queued(mut self, writes: usize, bytes: usize) -> Self {
        self.config.max_queued_writes = writes;
        self.config.max_queued_bytes = bytes;
        self
    }

    /// See [`StoreConfig::compact_log_bytes`].
    pub fn compact_log_bytes(mut self, n: u64) -> Self {
        self.config.compact_log_bytes = n;
        self
    }

    /// The clock TTL entries are judged by (default [`SystemClock`]); tests
    /// pass a [`ManualClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// See [`StoreConfig::compact_on_close`].
    pub fn compact_on_close(mut self, yes: bool) -> Self {
        self.config.compact_on_close = yes;
        self
    }

    /// Opens the store: takes the lock, reads the snapshot, replays the log
    /// (cutting off a torn last record) and starts the writer thread.
    ///
    /// Errors: [`Error::Locked`] if another process has it open,
    /// [`Error::Corrupt`] / [`Error::Unsupported`] /
    /// [`Error::SnapshotChanged`] for damaged files (left untouched),
    /// [`Error::Io`] for the rest.
    pub fn build(self) -> Result<Store> {
        self.config.validate()?;
        let span = tracing::info_span!("store_open", path = %self.path.display());
        let _g = span.enter();
        let paths = Paths::new(&self.path);
        crate::folder::ensure(&paths.dir)?;
        let disk = self.disk;
        let perms = files::perms_of(&*disk, &paths.snapshot)?;
        let lock = take_lock(&*disk, &paths.lock, perms)?;
        let opened = recover(&*disk, &paths, perms)?;
        let counters = Counters::default();
        counters.log_bytes.store(opened.log_len, Ordering::Relaxed);
        let writer = Writer {
            log: opened.log,
            log_len: opened.log_len,
            file_len: opened.file_len,
            snapshot: opened.snapshot,
            next_compact_at: self.config.compact_log_bytes,
            poisoned: false,
            lock: Some(lock),
        };
        let shared = Arc::new(Shared {
            map: RwLock::new(opened.map),
            expires: RwLock::new(opened.expires),
            clock: self.clock,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            writer: Mutex::new(writer),
            paths: paths.clone(),
            disk,
            config: self.config,
            counters,
            hub: Hub::default(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("steward-store-writer".into())
            .spawn(move || writer_thread(&for_thread))
            .map_err(|e| Error::io("starting the writer thread for", &paths.snapshot, e))?;
        tracing::debug!(keys = shared.map.read().len(), "store open");
        Ok(Store {
            handle: Arc::new(Handle {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }
}

pub(crate) fn take_lock(disk: &dyn Disk, path: &Path, perms: Perms) -> Result<LockHold> {
    match disk.lock(path, perms) {
        Ok(Some(hold)) => Ok(hold),
        Ok(None) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(Error::io("locking", path, e)),
    }
}

struct Opened {
    map: Map<String, Value>,
    expires: files::Expiries,
    log: Box<dyn DiskFile>,
    log_len: u64,
    /// The log file's size (frames plus preallocated zeros).
    file_len: u64,
    /// The snapshot on disk as loaded.
    snapshot: SnapshotId,
}

/// Finishes an interrupted compaction, cuts a torn tail, and opens the log
/// for appending (creating it if needed). Called with the lock held.
fn recover(disk: &dyn Disk, paths: &Paths, perms: Perms) -> Result<Opened> {
    let loaded = files::load_files_on(disk, paths)?;
    if loaded.roll_forward {
        tracing::info!(log = %paths.log.display(), "finishing an interrupted compaction");
        finish_renames(disk, paths)?;
    } else {
        remove_leftovers(disk, paths)?;
    }
    let reuse = match &loaded.log {
        Some(l) if !l.stale && !loaded.roll_forward => Some((l.valid_len, l.torn_at, l.file_len)),
        _ => None,
    };
    let Some((valid_len, torn_at, file_len)) = reuse else {
        let log = if loaded.roll_forward {
            open_log(disk, &paths.log)?
        } else {
            new_log(disk, paths, loaded.snapshot_id, perms)?
        };
        return Ok(Opened {
            map: loaded.map,
            expires: loaded.expires,
            file_len: file_size(&*log, &paths.log)?,
            log,
            log_len: log::HEADER_LEN as u64,
            snapshot: loaded.snapshot_id,
        });
    };
    let mut log = open_log(disk, &paths.log)?;
    let mut file_len = file_len;
    if let Some(at) = torn_at {
        tracing::warn!(
            log = %paths.log.display(),
            offset = at,
            cut_bytes = file_len - valid_len,
            "cutting off a torn last record (an unacknowledged write)"
        );
        log.set_len(valid_len)
            .map_err(|e| Error::io("truncating", &paths.log, e))?;
        // Not needed for durability: the next append's fdatasync makes the
        // cut durable too, and a torn tail that comes back is cut again.
        log.sync_all(std::panic::Location::caller())
            .map_err(|e| Error::io("fsync of", &paths.log, e))?;
        file_len = valid_len;
    }
    Ok(Opened {
        map: loaded.map,
        expires: loaded.expires,
        log,
        log_len: valid_len,
        file_len,
        snapshot: loaded.snapshot_id,
    })
}

/// The renames after a compaction's snapshot rename: the expiry file,
/// then the log, each made durable before the next. The log's rename must
/// come last: once it is durable, nothing tells a later open that a
/// compaction was under way, so an expiry file still waiting would be
/// forgotten (TTL entries made permanent, or an old expiry applied).
fn finish_renames(disk: &dyn Disk, paths: &Paths) -> Result<()> {
    if files::exists(disk, &paths.ttl_tmp)? {
        files::rename(disk, &paths.ttl_tmp, &paths.ttl)?;
        files::sync_dir(disk, &paths.dir)?;
    }
    files::rename(disk, &paths.log_tmp, &paths.log)?;
    files::sync_dir(disk, &paths.dir)
}

/// Removes the temporary files of a compaction that did not get to its
/// snapshot rename, durably: a temporary log that came back after a power
/// loss could name the snapshot in force (a compaction that changed
/// nothing) and would then be rolled forward over the writes logged since.
fn remove_leftovers(disk: &dyn Disk, paths: &Paths) -> Result<()> {
    let mut removed = false;
    for tmp in [&paths.log_tmp, &paths.ttl_tmp, &paths.snapshot_tmp] {
        removed |= files::remove_if_exists(disk, tmp)?;
    }
    if removed {
        files::sync_dir(disk, &paths.dir)?;
    }
    Ok(())
}

fn file_size(file: &dyn DiskFile, path: &Path) -> Result<u64> {
    file.size()
        .map_err(|e| Error::io("reading metadata of", path, e))
}

/// Zeros written ahead of the frames at a time (see [`Writer::append`]).
const PREALLOCATE: u64 = 1 << 20;

fn open_log(disk: &dyn Disk, path: &Path) -> Result<Box<dyn DiskFile>> {
    disk.open(path).map_err(|e| Error::io("opening", path, e))
}

/// Writes a fresh log (header only) for `snapshot` through a temporary file
/// and renames it into place, so the log file always has a whole header.
fn new_log(
    disk: &dyn Disk,
    paths: &Paths,
    snapshot: SnapshotId,
    perms: Perms,
) -> Result<Box<dyn DiskFile>> {
    // This fsync is not needed for durability: the first append's
    // fdatasync writes the header too, and a log whose header never
    // reached the disk holds nothing and is made again.
    files::write_synced(disk, &paths.log_tmp, &log::encode_header(snapshot), perms)?;
    files::rename(disk, &paths.log_tmp, &paths.log)?;
    files::sync_dir(disk, &paths.dir)?;
    open_log(disk, &paths.log)
}

/// A handle to an open store. Cheap to clone; all clones share one map, one
/// writer thread and one lock. `Send + Sync`.
///
/// Reads come from memory and never wait for disk. Every write returns only
/// once it is durable (its log record fsynced); concurrent writers share
/// fsyncs (group commit). The map changes only after the fsync, so a read
/// never shows a write that a crash could still take back. Each write has a blocking form for threads and an
/// `_async` form for async code that never blocks the runtime.
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

/// One queued write, already validated and encoded by the caller.
enum WriteOp {
    Create(String, Value, Vec<u8>),
    Update(String, Value, Vec<u8>),
    Upsert(String, Value, Vec<u8>),
    /// Upsert that expires this many ms after it is committed.
    UpsertTtl(String, Value, Vec<u8>, u64),
    Delete(String),
    Reset,
}

impl WriteOp {
    fn cost(&self) -> usize {
        match self {
            WriteOp::Create(k, _, j) | WriteOp::Update(k, _, j) | WriteOp::Upsert(k, _, j) => {
                k.len() + j.len() + 9
            }
            WriteOp::UpsertTtl(k, _, j, _) => 2 * k.len() + j.len() + 22,
            WriteOp::Delete(k) => k.len() + 5,
            WriteOp::Reset => 1,
        }
    }

    /// The key written (empty for reset).
    fn key(&self) -> &str {
        match self {
            WriteOp::Create(k, ..)
            | WriteOp::Update(k, ..)
            | WriteOp::Upsert(k, ..)
            | WriteOp::UpsertTtl(k, ..)
            | WriteOp::Delete(k) => k,
            WriteOp::Reset => "",
        }
    }
}

enum Kind {
    Write(WriteOp),
    Compact,
    /// Sweep expired entries; the count goes into the cell.
    Sweep(Arc<AtomicU64>),
    Close,
}

struct Request {
    kind: Kind,
    reply: Reply,
}

/// The writer's end of a [`Slot`]. If it is dropped unanswered (the writer
/// thread is unwinding from a bug), the waiter gets an error instead of
/// waiting forever.
struct Reply {
    slot: Option<Arc<Slot>>,
    path: PathBuf,
}

impl Reply {
    fn complete(mut self, result: Result<bool>) {
        if let Some(slot) = self.slot.take() {
            slot.complete(result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Err(Error::Closed {
                path: std::mem::take(&mut self.path),
            }));
        }
    }
}

/// Where the writer thread leaves one request's result, for a blocked
/// thread (condvar) or a future (waker).
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Default)]
struct SlotState {
    result: Option<Result<bool>>,
    waker: Option<Waker>,
}

impl Slot {
    fn complete(&self, result: Result<bool>) {
        let waker = {
            let mut s = self.state.lock();
            s.result = Some(result);
            s.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn is_done(&self) -> bool {
        self.state.lock().result.is_some()
    }

    fn wait(&self) -> Result<bool> {
        let mut s = self.state.lock();
        loop {
            if let Some(r) = s.result.take() {
                return r;
            }
            self.ready.wait(&mut s);
        }
    }
}

/// The result of an `_async` write: resolves once the write is durable.
///
/// The write is queued when the `_async` method is called, not when this is
/// first polled. Cancel safety: dropping it does not cancel the write, which
/// still completes (or fails) in the background; you only lose its result.
#[must_use = "the write is queued already; await this to know it is durable"]
pub struct WriteFuture {
    slot: Arc<Slot>,
}

impl std::fmt::Debug for WriteFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFuture").finish_non_exhaustive()
    }
}

impl Future for WriteFuture {
    type Output = Result<bool>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.state.lock();
        if let Some(r) = s.result.take() {
            return Poll::Ready(r);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn ready(result: Result<bool>) -> WriteFuture {
    let slot = Arc::new(Slot::default());
    slot.complete(result);
    WriteFuture { slot }
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
    pub fn read(&self, key: &str) -> Option<Value> {
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

    /// Adds `key` only if it is absent. Returns `false` (and changes
    /// nothing) if the key exists, like the Python assistant's `create`.
    pub fn create(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.write_blocking(self.prepare_set(key, value.into(), WriteOp::Create))
    }

    /// [`create`](Self::create) for async code.
    pub fn create_async(&self, key: &str, value: impl Into<Value>) -> WriteFuture {
        self.write_async(self.prepare_set(key, value.into(), WriteOp::Create))
    }

    /// Replaces the value of an existing key (it keeps its place). Returns
    /// `false` (and changes nothing) if the key is missing.
    pub fn update(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.write_blocking(self.prepare_set(key, value.into(), WriteOp::Update))
    }

    /// [`update`](Self::update) for async code.
    pub fn update_async(&self, key: &str, value: impl Into<Value>) -> WriteFuture {
        self.write_async(self.prepare_set(key, value.into(), WriteOp::Update))
    }

    /// Sets `key` whether or not it exists. Returns `true` if the key was
    /// new (it goes last), `false` if an existing value was replaced.
    pub fn upsert(&self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.write_blocking(self.prepare_set(key, value.into(), WriteOp::Upsert))
    }

    /// [`upsert`](Self::upsert) for async code.
    pub fn upsert_async(&self, key: &str, value: impl Into<Value>) -> WriteFuture {
        self.write_async(self.prepare_set(key, value.into(), WriteOp::Upsert))
    }

    /// Upserts any serializable value.
    pub fn set_as<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<bool> {
        let v = to_value(key, value)?;
        self.upsert(key, v)
    }

    /// [`set_as`](Self::set_as) for async code.
    pub fn set_as_async<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> WriteFuture {
        match to_value(key, value) {
            Ok(v) => self.upsert_async(key, v),
            Err(e) => ready(Err(e)),
        }
    }

    fn prepare_ttl(&self, key: &str, value: Value, ttl: std::time::Duration) -> Result<WriteOp> {
        let json = self.encode(key, &value)?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(WriteOp::UpsertTtl(key.to_string(), value, json, ms))
    }

    /// Upserts an entry that expires `ttl` (at least 1 ms) after the write
    /// commits; returns whether the key was new. Once expired, the entry
    /// is invisible to every read at once; it is removed for good by
    /// [`sweep_expired`](Self::sweep_expired) or the next compaction. A
    /// later plain write of the key makes it permanent.
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
    ) -> Result<bool> {
        self.write_blocking(self.prepare_ttl(key, value.into(), ttl))
    }

    /// [`upsert_with_ttl`](Self::upsert_with_ttl) for async code.
    pub fn upsert_with_ttl_async(
        &self,
        key: &str,
        value: impl Into<Value>,
        ttl: std::time::Duration,
    ) -> WriteFuture {
        self.write_async(self.prepare_ttl(key, value.into(), ttl))
    }

    /// Removes expired entries for good (durably: one delete record each)
    /// and returns how many; subscribers get [`Change::Expired`] for each.
    /// They are invisible already; this frees their memory. The steward
    /// facade's monitor cleanup is meant to call it periodically.
    pub fn sweep_expired(&self) -> Result<usize> {
        let count = Arc::new(AtomicU64::new(0));
        self.run_blocking(Kind::Sweep(Arc::clone(&count)))?;
        Ok(count.load(Ordering::Relaxed) as usize)
    }

    /// [`sweep_expired`](Self::sweep_expired) for async code.
    pub fn sweep_expired_async(&self) -> impl Future<Output = Result<usize>> + Send + 'static {
        let count = Arc::new(AtomicU64::new(0));
        let f = self.run_async(Kind::Sweep(Arc::clone(&count)));
        async move {
            f.await?;
            Ok(count.load(Ordering::Relaxed) as usize)
        }
    }

    /// Removes `key`. Returns `false` if it was missing.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.write_blocking(Ok(WriteOp::Delete(key.to_string())))
    }

    /// [`delete`](Self::delete) for async code.
    pub fn delete_async(&self, key: &str) -> WriteFuture {
        self.write_async(Ok(WriteOp::Delete(key.to_string())))
    }

    /// Removes every key (durably; the snapshot becomes `{}` at the next
    /// compaction).
    pub fn reset(&self) -> Result<()> {
        self.write_blocking(Ok(WriteOp::Reset)).map(|_| ())
    }

    /// [`reset`](Self::reset) for async code.
    pub fn reset_async(&self) -> WriteFuture {
        self.write_async(Ok(WriteOp::Reset))
    }

    /// Writes the whole map into the snapshot (Python format) and starts an
    /// empty log. Crash-safe at every step. Returns `true`.
    pub fn compact(&self) -> Result<bool> {
        self.run_blocking(Kind::Compact)
    }

    /// [`compact`](Self::compact) for async code.
    pub fn compact_async(&self) -> WriteFuture {
        self.run_async(Kind::Compact)
    }

    /// Finishes queued writes, compacts (unless
    /// [`StoreConfig::compact_on_close`] is off) and removes the log, so
    /// `memory.json` alone holds everything, then releases the lock. Every
    /// clone of this handle is closed: later writes fail with
    /// [`Error::Closed`]; reads still see the final contents. Closing twice
    /// is `Ok`.
    pub fn close(&self) -> Result<()> {
        let r = self.run_blocking(Kind::Close);
        self.join();
        closed_ok(r)
    }

    /// [`close`](Self::close) for async code. The writer thread exits on its
    /// own; nothing blocks the runtime.
    pub async fn close_async(&self) -> Result<()> {
        let r = self.run_async(Kind::Close).await;
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

/// Checks a key and value against the limits and encodes the value as
/// compact JSON (shared by both backends, so they refuse the same things).
pub(crate) fn encode_value(
    max_key_bytes: usize,
    max_value_bytes: usize,
    key: &str,
    value: &Value,
) -> Result<Vec<u8>> {
    if key.len() > max_key_bytes {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            limit: max_key_bytes,
            prefix: key.chars().take(32).collect(),
        });
    }
    // One level is the snapshot's own top-level object.
    if json::deeper_than(value, json::MAX_DEPTH - 1) {
        return Err(Error::ValueTooDeep {
            key: key.to_string(),
            limit: json::MAX_DEPTH - 1,
        });
    }
    let bytes = serde_json::to_vec(value).map_err(|source| Error::Json {
        key: key.to_string(),
        source,
    })?;
    if bytes.len() > max_value_bytes {
        return Err(Error::ValueTooLarge {
            key: key.to_string(),
            len: bytes.len(),
            limit: max_value_bytes,
        });
    }
    Ok(bytes)
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

/// Leads group commits until the queue is empty, or — for a blocking
/// caller (`own`) — until its own request is answered, then hands the rest
/// to the writer thread so no caller leads for long.
fn lead_commits(shared: &Shared, own: Option<&Slot>) {
    loop {
        let requests = {
            let mut q = shared.queue.lock();
            if q.requests.is_empty() || q.closed {
                q.leader = false;
                return;
            }
            if own.is_some_and(Slot::is_done) {
                q.thread_wanted = true;
                drop(q);
                shared.wake.notify_all();
                return;
            }
            q.queued_bytes = 0;
            q.refusing = false;
            std::mem::take(&mut q.requests)
        };
        let closed = shared.writer.lock().handle(shared, requests);
        if closed {
            shared.queue.lock().leader = false;
            shared.wake.notify_all();
            return;
        }
    }
}

/// The writer thread: leads when an async caller (or a blocking leader
/// handing over) asks it to; exits when the store is closed or dropped.
fn writer_thread(shared: &Shared) {
    loop {
        {
            let mut q = shared.queue.lock();
            while !q.thread_wanted && !q.closed && !q.shutdown {
                shared.wake.wait(&mut q);
            }
            if !q.thread_wanted {
                return;
            }
            q.thread_wanted = false;
        }
        lead_commits(shared, None);
    }
}

/// The log and lock: only the current leader touches them, and only the
/// leader changes the map.
struct Writer {
    log: Box<dyn DiskFile>,
    /// End of the last frame: where the next one goes.
    log_len: u64,
    /// The file's size: zeros from `log_len` to here.
    file_len: u64,
    /// The snapshot this store last read or wrote: compaction refuses to
    /// replace a snapshot someone else rewrote meanwhile.
    snapshot: SnapshotId,
    next_compact_at: u64,
    poisoned: bool,
    /// Held for the thread's life; dropping it releases the lock.
    lock: Option<LockHold>,
}

impl Writer {
    /// Processes requests in order; returns `true` once the store is closed.
    fn handle(&mut self, shared: &Shared, requests: Vec<Request>) -> bool {
        let mut batch: Vec<(WriteOp, Reply)> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut requests = requests.into_iter();
        while let Some(req) = requests.next() {
            match req.kind {
                Kind::Write(w) => {
                    let cost = w.cost();
                    if !batch.is_empty() && batch_bytes + cost > shared.config.max_batch_bytes {
                        self.commit(shared, std::mem::take(&mut batch));
                        batch_bytes = 0;
                    }
                    batch_bytes += cost;
                    batch.push((w, req.reply));
                }
                Kind::Compact => {
                    self.commit(shared, std::mem::take(&mut batch));
                    batch_bytes = 0;
                    req.reply.complete(self.compact(shared).map(|()| true));
                }
                Kind::Sweep(count) => {
                    self.commit(shared, std::mem::take(&mut batch));
                    batch_bytes = 0;
                    let r = self.sweep(shared).map(|n| {
                        count.store(n, Ordering::Relaxed);
                        true
                    });
                    req.reply.complete(r);
                }
                Kind::Close => {
                    self.commit(shared, std::mem::take(&mut batch));
                    self.close(shared, req.reply, requests.collect());
                    return true;
                }
            }
        }
        self.commit(shared, batch);
        if self.log_len >= self.next_compact_at
            && let Err(e) = self.compact(shared)
        {
            // The log still holds everything; try again after more growth.
            tracing::warn!(error = %e.chain(), "automatic compaction failed");
            self.next_compact_at = self.log_len + shared.config.compact_log_bytes;
        }
        false
    }

    fn close(&mut self, shared: &Shared, reply: Reply, rest: Vec<Request>) {
        let result = if self.poisoned {
            Err(Error::Poisoned {
                path: shared.paths.log.clone(),
            })
        } else if shared.config.compact_on_close {
            self.compact(shared).and_then(|()| {
                // The snapshot holds everything: the empty log can go.
                let disk = &*shared.disk;
                files::remove_if_exists(disk, &shared.paths.log)?;
                // Not needed for durability: should the removal be lost,
                // the empty log that comes back names this snapshot.
                files::sync_dir(disk, &shared.paths.dir)
            })
        } else {
            Ok(())
        };
        let late = {
            let mut q = shared.queue.lock();
            q.closed = true;
            std::mem::take(&mut q.requests)
        };
        // Release the lock before anyone hears the store is closed.
        self.lock = None;
        shared.hub.close();
        let path = &shared.paths.snapshot;
        for r in rest.into_iter().chain(late) {
            r.reply.complete(Err(Error::Closed { path: path.clone() }));
        }
        reply.complete(result.map(|()| true));
    }

    /// Validates a batch against the map, writes it as one frame, fsyncs,
    /// then applies it and answers every writer.
    fn commit(&mut self, shared: &Shared, batch: Vec<(WriteOp, Reply)>) {
        if batch.is_empty() {
            return;
        }
        if self.poisoned {
            for (_, slot) in batch {
                slot.complete(Err(Error::Poisoned {
                    path: shared.paths.log.clone(),
                }));
            }
            return;
        }
        let now = shared.clock.now_ms();
        let (payload, effects) = self.encode_batch(shared, &batch, now);
        let (batch, effects) = refuse_beyond_cap(shared, batch, effects);
        if !payload.is_empty()
            && let Err(e) = self.append(shared, &payload)
        {
            shared
                .counters
                .failed_batches
                .fetch_add(1, Ordering::Relaxed);
            if matches!(e, Error::WriteUnknown { .. }) {
                tracing::error!(error = %e.chain(), writes = batch.len(), "write batch fsync failed; outcome unknown, store poisoned");
            } else {
                tracing::error!(error = %e.chain(), writes = batch.len(), "write batch failed; nothing applied");
            }
            for (_, slot) in batch {
                slot.complete(Err(e.duplicate()));
            }
            return;
        }
        let c = &shared.counters;
        let applied = effects.iter().filter(|e| e.changed).count() as u64;
        c.writes.fetch_add(applied, Ordering::Relaxed);
        c.unchanged
            .fetch_add(batch.len() as u64 - applied, Ordering::Relaxed);
        c.largest_batch
            .fetch_max(batch.len() as u64, Ordering::Relaxed);
        let mut replies = Vec::with_capacity(batch.len());
        let watched = !shared.hub.is_empty();
        let mut changes = Vec::new();
        {
            let mut map = shared.map.write();
            let mut expires = shared.expires.write();
            for ((w, slot), effect) in batch.into_iter().zip(effects) {
                if watched && effect.revive {
                    changes.push((w.key().to_string(), Change::Expired));
                }
                if watched && effect.changed {
                    changes.push(change_of(&w));
                }
                // Upsert answers "was the key new"; the others "did it change".
                let answer =
                    apply_write(&mut map, &mut expires, w, effect).unwrap_or(effect.changed);
                replies.push((slot, answer));
            }
        }
        // Published before the writers hear back: a writer that then tells
        // another task "go look" cannot overtake its own change.
        shared.hub.publish(&changes);
        for (slot, answer) in replies {
            slot.complete(Ok(answer));
        }
    }

    /// Decides each write's effect (against the map plus earlier writes of
    /// this batch, expired entries counting as absent at `now`) and
    /// encodes the effective ones. Re-adding an expired key is logged as a
    /// delete then a set, so replay puts it last as the map does.
    fn encode_batch(
        &self,
        shared: &Shared,
        batch: &[(WriteOp, Reply)],
        now: u64,
    ) -> (Vec<u8>, Vec<Effect>) {
        let map = shared.map.read();
        let expires = shared.expires.read();
        let mut overlay: HashMap<&str, bool> = HashMap::new();
        let mut reset = false;
        let mut payload = Vec::new();
        let mut effects = Vec::with_capacity(batch.len());
        let mut cap = keycap::KeyCap::new(shared.config.max_keys, map.len(), batch.len(), || {
            expires.expired_count(now)
        });
        for (w, _) in batch {
            let key = w.key();
            let in_map = !reset && !overlay.contains_key(key) && map.contains_key(key);
            let stale = in_map && expires.get(key).is_some_and(|&t| now >= t);
            let exists = match overlay.get(key) {
                Some(&e) => e,
                None => in_map && !stale,
            };
            let mut effect = Effect::default();
            if !cap.admits(w, exists) {
                effect.refused = true;
                effects.push(effect);
                continue;
            }
            let set = |payload: &mut Vec<u8>, effect: &mut Effect, j: &[u8]| {
                if stale {
                    log::encode_delete(payload, key);
                    effect.revive = true;
                }
                log::encode_set(payload, key, j);
                effect.changed = true;
            };
            match w {
                WriteOp::Create(_, _, j) if !exists => set(&mut payload, &mut effect, j),
                WriteOp::Update(_, _, j) if exists => set(&mut payload, &mut effect, j),
                WriteOp::Upsert(_, _, j) => set(&mut payload, &mut effect, j),
                WriteOp::UpsertTtl(_, _, j, ttl) => {
                    set(&mut payload, &mut effect, j);
                    let at = now.saturating_add(*ttl);
                    log::encode_expire(&mut payload, key, at);
                    effect.expires_at = Some(at);
                }
                WriteOp::Delete(_) if exists => {
                    log::encode_delete(&mut payload, key);
                    effect.changed = true;
                }
                WriteOp::Reset => {
                    log::encode_reset(&mut payload);
                    overlay.clear();
                    reset = true;
                    effect.changed = true;
                }
                _ => {}
            }
            if effect.changed && !matches!(w, WriteOp::Reset) {
                overlay.insert(key, !matches!(w, WriteOp::Delete(_)));
            }
            if effect.changed {
                cap.applied(w, exists);
            }
            effects.push(effect);
        }
        (payload, effects)
    }

    /// Removes the entries expired at `now` durably (delete records), tells
    /// subscribers, and returns how many.
    fn sweep(&mut self, shared: &Shared) -> Result<u64> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: shared.paths.log.clone(),
            });
        }
        let now = shared.clock.now_ms();
        let doomed: Vec<String> = {
            let expires = shared.expires.read();
            expires
                .iter()
                .filter(|&(_, &t)| now >= t)
                .map(|(k, _)| k.clone())
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut payload = Vec::new();
        for k in &doomed {
            log::encode_delete(&mut payload, k);
        }
        self.append(shared, &payload)?;
        self.drop_entries(shared, &doomed);
        Ok(doomed.len() as u64)
    }

    /// Drops expired entries from memory and publishes `Expired` for each.
    fn drop_entries(&self, shared: &Shared, doomed: &[String]) {
        {
            let mut map = shared.map.write();
            let mut expires = shared.expires.write();
            for k in doomed {
                map.shift_remove(k);
                expires.remove(k);
            }
        }
        shared
            .counters
            .expired
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        let changes: Vec<(String, Change)> = doomed
            .iter()
            .map(|k| (k.clone(), Change::Expired))
            .collect();
        shared.hub.publish(&changes);
    }

    /// Appends one frame and fsyncs it (`fdatasync`). The file is kept
    /// preallocated with zeros ahead of the frames, so that fsync has no
    /// file size to update, which makes it cheaper. On a failed write the
    /// file is cut back so the next batch does not follow garbage; on a
    /// failed fsync the store stops accepting writes (the page cache can no
    /// longer be trusted to match the disk).
    fn append(&mut self, shared: &Shared, payload: &[u8]) -> Result<()> {
        let path = &shared.paths.log;
        let frame = log::frame(payload);
        let end = self.log_len + frame.len() as u64;
        // A huge frame is simply appended: no point zero-filling for it.
        if end > self.file_len && frame.len() as u64 <= PREALLOCATE / 2 {
            self.preallocate(path, end + PREALLOCATE);
        }
        if let Err(e) = self.log.write_at(self.log_len, &frame) {
            if self.log.set_len(self.log_len).is_err() {
                self.poisoned = true;
            }
            self.file_len = self.log_len;
            return Err(Error::io("appending to", path, e));
        }
        if let Err(source) = self.log.sync_data(std::panic::Location::caller()) {
            // The record was written: it may be on disk or not, and a
            // retried fsync could report success for pages the kernel has
            // already dropped. Never retried; the next open replays the
            // record if it is there.
            self.poisoned = true;
            return Err(Error::WriteUnknown {
                path: path.to_path_buf(),
                offset: self.log_len,
                source,
            });
        }
        self.log_len = end;
        self.file_len = self.file_len.max(end);
        let c = &shared.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.log_bytes.store(self.log_len, Ordering::Relaxed);
        Ok(())
    }

    /// Best effort: extends the file with zeros up to `to` and fsyncs it.
    /// On failure (a full disk) the extension is undone and appends simply
    /// grow the file.
    fn preallocate(&mut self, path: &Path, to: u64) {
        let zeros = vec![0u8; (to - self.file_len) as usize];
        // This fsync is not needed for durability, only for speed: each
        // append's fdatasync then has no file size to update.
        let done = self
            .log
            .write_at(self.file_len, &zeros)
            .and_then(|()| self.log.sync_all(std::panic::Location::caller()));
        match done {
            Ok(()) => self.file_len = to,
            Err(e) => {
                tracing::debug!(log = %path.display(), error = %e, "could not preallocate the log");
                let _ = self.log.set_len(self.file_len);
            }
        }
    }

    /// Snapshot to a temporary file (fsync), new empty log naming it to a
    /// temporary file (fsync), rename the snapshot (fsync dir), then the
    /// expiry file and the log (see [`finish_renames`]). A crash before the
    /// snapshot rename keeps the old pair; after it, opening finds the new
    /// log waiting and finishes the job. Every file gets the snapshot's
    /// mode and owner ([`files::perms_of`]).
    fn compact(&mut self, shared: &Shared) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: shared.paths.log.clone(),
            });
        }
        let span = tracing::debug_span!("store_compact", log_bytes = self.log_len);
        let _g = span.enter();
        let p = &shared.paths;
        let disk = &*shared.disk;
        // Someone (the Python assistant?) rewrote the snapshot while we had
        // it open: replacing it would silently drop their change.
        let on_disk = SnapshotId::of(files::read_optional_on(disk, &p.snapshot)?.as_deref());
        if on_disk != self.snapshot {
            return Err(Error::SnapshotModified {
                snapshot: p.snapshot.clone(),
            });
        }
        // Expired entries do not go into the snapshot (Python would see them).
        let now = shared.clock.now_ms();
        let doomed: Vec<String> = shared
            .expires
            .read()
            .iter()
            .filter(|&(_, &t)| now >= t)
            .map(|(k, _)| k.clone())
            .collect();
        if !doomed.is_empty() {
            self.drop_entries(shared, &doomed);
        }
        let text = json::to_python_json(&shared.map.read());
        let id = SnapshotId::of(Some(text.as_bytes()));
        // The expiries go beside the snapshot; the sidecar is rewritten (or
        // emptied) whenever there is one, so it always matches the snapshot.
        // Each expiry carries its value's fingerprint: should someone rewrite
        // the key in the snapshot, the expiry no longer applies to it.
        let ttl_text = {
            let map = shared.map.read();
            let expires = shared.expires.read();
            let keep = !expires.is_empty() || files::exists(disk, &p.ttl)?;
            keep.then(|| files::encode_expiries(&map, &expires))
        };
        let perms = files::perms_of(disk, &p.snapshot)?;
        let staged = files::write_synced(disk, &p.snapshot_tmp, text.as_bytes(), perms)
            .and_then(|()| match &ttl_text {
                Some(t) => files::write_synced(disk, &p.ttl_tmp, t.as_bytes(), perms),
                None => Ok(()),
            })
            .and_then(|()| files::write_synced(disk, &p.log_tmp, &log::encode_header(id), perms))
            // The new log's name must be durable before the snapshot rename
            // can be: a file system may reorder directory changes, and a new
            // snapshot without its new log beside it turns the old log's
            // records into a conflict (SnapshotChanged) at the next open.
            .and_then(|()| files::sync_dir(disk, &p.dir));
        if let Err(e) = staged {
            self.discard_staged(shared);
            return Err(e);
        }
        // From the snapshot rename on, the next open replays the new log,
        // not the one this writer holds: a write appended to the old one
        // now would be acknowledged and then dropped. So any failure from
        // here on stops all writes; the next open finishes the compaction.
        if let Err(e) = self.swap_in(shared, id) {
            self.poisoned = true;
            tracing::error!(error = %e.chain(), "compaction failed after its snapshot rename; store poisoned, reopen it to finish the compaction");
            return Err(e);
        }
        self.log_len = log::HEADER_LEN as u64;
        self.file_len = self.log_len;
        self.next_compact_at = shared.config.compact_log_bytes;
        let c = &shared.counters;
        c.compactions.fetch_add(1, Ordering::Relaxed);
        c.log_bytes.store(self.log_len, Ordering::Relaxed);
        c.snapshot_bytes.store(text.len() as u64, Ordering::Relaxed);
        tracing::debug!(snapshot_bytes = text.len(), "compacted");
        Ok(())
    }

    /// The staged files' renames and the switch to the new log.
    fn swap_in(&mut self, shared: &Shared, id: SnapshotId) -> Result<()> {
        let (p, disk) = (&shared.paths, &*shared.disk);
        files::rename(disk, &p.snapshot_tmp, &p.snapshot)?;
        self.snapshot = id;
        files::sync_dir(disk, &p.dir)?;
        finish_renames(disk, p)?;
        self.log = open_log(disk, &p.log)?;
        Ok(())
    }

    /// Removes a failed compaction's temporary files, durably (see
    /// [`remove_leftovers`]); if that fails too, writes stop.
    fn discard_staged(&mut self, shared: &Shared) {
        if let Err(e) = remove_leftovers(&*shared.disk, &shared.paths) {
            self.poisoned = true;
            tracing::error!(error = %e.chain(), "could not remove a failed compaction's files; store poisoned");
        }
    }
}

/// The change a durable write makes, for subscribers.
fn change_of(w: &WriteOp) -> (String, Change) {
    match w {
        WriteOp::Create(k, v, _)
        | WriteOp::Update(k, v, _)
        | WriteOp::Upsert(k, v, _)
        | WriteOp::UpsertTtl(k, v, ..) => (k.clone(), Change::Set(v.clone())),
        WriteOp::Delete(k) => (k.clone(), Change::Deleted),
        WriteOp::Reset => (String::new(), Change::Reset),
    }
}

/// What one write does, decided before it is logged.
#[derive(Debug, Clone, Copy, Default)]
struct Effect {
    /// It changes the map.
    changed: bool,
    /// It re-adds a key whose entry had expired (removed first, goes last).
    revive: bool,
    /// Its new expiry time (TTL upsert).
    expires_at: Option<u64>,
    /// Refused by the key cap: nothing of it is applied.
    refused: bool,
}

/// Answers the writes the key cap refused and returns the rest (their
/// effects are empty, so the batch's payload does not hold them).
fn refuse_beyond_cap(
    shared: &Shared,
    batch: Vec<(WriteOp, Reply)>,
    effects: Vec<Effect>,
) -> (Vec<(WriteOp, Reply)>, Vec<Effect>) {
    if effects.iter().all(|e| !e.refused) {
        return (batch, effects);
    }
    let (mut writes, mut kept) = (Vec::new(), Vec::new());
    let mut refused = 0u64;
    let limit = shared.config.max_keys;
    for ((w, reply), effect) in batch.into_iter().zip(effects) {
        if effect.refused {
            refused += 1;
            let location = shared.paths.snapshot.display().to_string();
            reply.complete(Err(keycap::refusal(location, w.key(), limit)));
        } else {
            writes.push((w, reply));
            kept.push(effect);
        }
    }
    let total = shared
        .counters
        .keys_refused
        .fetch_add(refused, Ordering::Relaxed)
        + refused;
    tracing::warn!(
        refused,
        total,
        limit = shared.config.max_keys,
        "writes refused: they would create keys beyond the store's key cap"
    );
    (writes, kept)
}

/// Applies one durable write; returns the caller's answer if it differs
/// from `changed` (upsert answers "was it new").
fn apply_write(
    map: &mut Map<String, Value>,
    expires: &mut files::Expiries,
    w: WriteOp,
    effect: Effect,
) -> Option<bool> {
    if !effect.changed {
        return None;
    }
    if effect.revive {
        map.shift_remove(w.key());
    }
    match w {
        WriteOp::Create(k, v, _) | WriteOp::Update(k, v, _) => {
            expires.remove(&k);
            map.insert(k, v);
            None
        }
        WriteOp::Upsert(k, v, _) => {
            expires.remove(&k);
            Some(map.insert(k, v).is_none())
        }
        WriteOp::UpsertTtl(k, v, _, _) => {
            if let Some(at) = effect.expires_at {
                expires.insert(k.clone(), at);
            }
            Some(map.insert(k, v).is_none())
        }
        WriteOp::Delete(k) => {
            expires.remove(&k);
            map.shift_remove(&k);
            None
        }
        WriteOp::Reset => {
            expires.clear();
            map.clear();
            None
        }
    }
}
