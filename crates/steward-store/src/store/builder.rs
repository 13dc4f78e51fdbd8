//! [`StoreBuilder`]: a store's settings, and opening it (lock, recovery,
//! the writer thread).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::{Condvar, Mutex, RwLock};

use super::commit::writer_thread;
use super::recovery::{recover, take_lock};
use super::writer::Writer;
use super::{Clock, StoreConfig, SystemClock};
use super::{Counters, Handle, Queue, Shared, Store};
use crate::disk::{Disk, StdDisk};
use crate::error::{Error, Result};
use crate::files::{self, Paths};
use crate::subscribe::Hub;

/// Builds a [`Store`] with non-default settings.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = steward_store::StoreBuilder::new(dir.path().join("memory.json"))
///     .max_value_bytes(64)
///     .build()?;
/// assert!(store.upsert_blocking("k", "x".repeat(100)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreBuilder {
    pub(super) path: PathBuf,
    pub(super) config: StoreConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) disk: Arc<dyn Disk>,
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
    /// pass a [`ManualClock`](crate::ManualClock).
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
        let disk = self.disk;
        crate::folder::ensure(&*disk, &paths.dir)?;
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
