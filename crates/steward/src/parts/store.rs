//! The store (feature `store`): any backend's expired entries are swept at
//! `Moderate`, then a file store's log is compacted into its snapshot; the
//! store's stats and the backend's location join [`Health`] and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use steward_monitor::{BoxError, Level, Monitor};
use steward_store::{Backend, Store};

use super::{Parts, as_u64, on};
use crate::error::Error;
use crate::health::Health;
use crate::metrics::{Out, f};
use crate::{Steward, StewardBuilder};

/// Handler names, as listed by [`Monitor::handlers`] and in reports.
const STORE_COMPACT: &str = "steward.store.compact";
const STORE_SWEEP: &str = "steward.store.sweep_expired";

/// What the builder collected.
#[derive(Default)]
pub(crate) struct Pending {
    store: Option<Store>,
    backend: Option<Arc<dyn Backend>>,
}

/// The store and backend handed in, and what their handlers did.
pub(crate) struct StorePart {
    store: Option<Store>,
    backend: Option<Arc<dyn Backend>>,
    /// Log size right after our last compaction: no new write, no compaction.
    log_after_compaction: AtomicU64,
    compactions: AtomicU64,
    compaction_failures: AtomicU64,
    expired_swept: AtomicU64,
}

impl StorePart {
    pub(crate) fn new(pending: Pending) -> Self {
        Self {
            store: pending.store,
            backend: pending.backend,
            log_after_compaction: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            compaction_failures: AtomicU64::new(0),
            expired_swept: AtomicU64::new(0),
        }
    }

    /// The store's stats, the backend's location, the handlers' counts.
    pub(crate) fn health(&self, h: &mut Health) {
        h.store = self.store.as_ref().map(StoreHealth::of);
        h.memory = self.backend.as_ref().map(|b| memory_shown(&b.location()));
        h.cleanup.store_compactions = self.compactions.load(Relaxed);
        h.cleanup.store_compaction_failures = self.compaction_failures.load(Relaxed);
        h.cleanup.store_expired_swept = self.expired_swept.load(Relaxed);
    }
}

/// Expired TTL entries go first, so the compaction that follows writes a
/// snapshot without them.
pub(crate) fn register(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
    let s = &parts.store;
    if s.store.is_some() || s.backend.is_some() {
        on(monitor, parts, Level::Moderate, 90, STORE_SWEEP, |p, _| {
            sweep(p)
        })?;
    }
    if s.store.is_some() {
        on(
            monitor,
            parts,
            Level::Moderate,
            100,
            STORE_COMPACT,
            |p, _| compact(p),
        )?;
    }
    Ok(())
}

/// Removes expired TTL entries for good (they are invisible already; this
/// frees their memory). Disk work happens on the store's writer thread.
async fn sweep(p: Arc<Parts>) -> Result<u64, BoxError> {
    let s = &p.store;
    let mut swept = 0;
    if let Some(store) = s.store.as_ref() {
        swept += store.sweep_expired().await?;
    }
    if let Some(backend) = s.backend.as_ref() {
        swept += backend.sweep_expired().await?;
    }
    s.expired_swept.fetch_add(as_u64(swept), Relaxed);
    Ok(0)
}

/// Folds the store's log into its snapshot, when something was written
/// since the last time. Disk work happens on the store's writer thread.
async fn compact(p: Arc<Parts>) -> Result<u64, BoxError> {
    let s = &p.store;
    let Some(store) = s.store.as_ref() else {
        return Ok(0);
    };
    let log_bytes = store.stats().log_bytes;
    if log_bytes == 0 || log_bytes == s.log_after_compaction.load(Relaxed) {
        return Ok(0);
    }
    match store.compact().await {
        Ok(_) => {
            s.compactions.fetch_add(1, Relaxed);
            s.log_after_compaction
                .store(store.stats().log_bytes, Relaxed);
            Ok(0)
        }
        Err(e) => {
            s.compaction_failures.fetch_add(1, Relaxed);
            Err(Box::new(e))
        }
    }
}

/// A store's file and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// The snapshot's file name (not the whole path).
    pub file: String,
    /// Its counters.
    pub stats: steward_store::Stats,
}

impl StoreHealth {
    fn of(store: &Store) -> Self {
        let file = store
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            file,
            stats: store.stats(),
        }
    }
}

/// A backend's location fit for `/health`: a URL as the backend shows it
/// (no password), a file path by its name only (no paths on the endpoint).
fn memory_shown(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    std::path::Path::new(location)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The `steward_store_*` families, labelled with the snapshot's file name.
pub(crate) fn metrics(o: &mut Out, h: &Health) {
    let Some(s) = &h.store else {
        return;
    };
    let label = s.file.as_str();
    let st = &s.stats;
    let rows: [(&str, &str, &str, u64); 9] = [
        (
            "steward_store_keys",
            "gauge",
            "Keys in the store.",
            as_u64(st.keys),
        ),
        (
            "steward_store_log_bytes",
            "gauge",
            "Bytes in the store's log.",
            st.log_bytes,
        ),
        (
            "steward_store_snapshot_bytes",
            "gauge",
            "Size of the last snapshot written.",
            st.snapshot_bytes,
        ),
        (
            "steward_store_writes_total",
            "counter",
            "Durable writes that changed something.",
            st.writes,
        ),
        (
            "steward_store_batches_total",
            "counter",
            "Group-commit batches (one fsync each).",
            st.batches,
        ),
        (
            "steward_store_compactions_total",
            "counter",
            "Compactions of the log into the snapshot.",
            st.compactions,
        ),
        (
            "steward_store_failed_batches_total",
            "counter",
            "Batches that failed to reach the disk.",
            st.failed_batches,
        ),
        (
            "steward_store_keys_refused_total",
            "counter",
            "Writes refused because they would create a key beyond the key cap.",
            st.keys_refused,
        ),
        (
            "steward_store_queue_full_total",
            "counter",
            "Async writes refused because the write queue was full.",
            st.queue_full,
        ),
    ];
    for (name, kind, help, v) in rows {
        o.family(name, kind, help);
        o.sample(name, &[("store", label)], f(v));
    }
}

impl StewardBuilder {
    /// The store compacts at `Moderate` and its stats join [`Health`].
    pub fn store(mut self, store: Store) -> Self {
        self.parts.store.store = Some(store);
        self
    }

    /// Any store [`Backend`] (a Redis namespace, say): its expired entries
    /// are swept at `Moderate` (counted with the file store's in
    /// `store_expired_swept`) and its location joins [`Health`] (`memory`).
    /// A file [`Store`] is better handed to [`store`](Self::store), which
    /// also compacts it.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.parts.store.backend = Some(backend);
        self
    }
}

impl Steward {
    /// The store handed in.
    #[must_use]
    pub fn store(&self) -> Option<&Store> {
        self.parts().store.store.as_ref()
    }
}
