//! The per-resource record shared by the map and the guard.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::Duration;

use parking_lot::Mutex;

use crate::ResourceInfo;

/// Name and metadata, allocated only when one is set.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    pub(crate) name: Option<Box<str>>,
    pub(crate) meta: Vec<(Box<str>, Box<str>)>,
}

/// What the tracker keeps per live resource (56 bytes; the id is the map key).
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) size: AtomicU64,
    /// Milliseconds since the tracker's epoch.
    pub(crate) last_used_ms: AtomicU64,
    pub(crate) created_ms: u64,
    pub(crate) site: &'static Location<'static>,
    pub(crate) kind: u16,
    pub(crate) leak_reported: AtomicBool,
    pub(crate) extra: Mutex<Option<Box<Extra>>>,
}

impl Record {
    pub(crate) fn new(kind: u16, size: u64, now_ms: u64, site: &'static Location<'static>) -> Self {
        Self {
            size: AtomicU64::new(size),
            last_used_ms: AtomicU64::new(now_ms),
            created_ms: now_ms,
            site,
            kind,
            leak_reported: AtomicBool::new(false),
            extra: Mutex::new(None),
        }
    }

    /// A shared record, reusing a spare allocation of this thread if any:
    /// saves a malloc/free pair per resource in track-and-drop churn.
    #[inline]
    pub(crate) fn new_shared(
        kind: u16,
        size: u64,
        now_ms: u64,
        site: &'static Location<'static>,
    ) -> Arc<Self> {
        let fresh = Self::new(kind, size, now_ms, site);
        let spare = SPARE
            .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut v| v.pop()))
            .ok()
            .flatten();
        match spare {
            Some(mut arc) => match Arc::get_mut(&mut arc) {
                Some(slot) => {
                    *slot = fresh;
                    arc
                }
                None => Arc::new(fresh),
            },
            None => Arc::new(fresh),
        }
    }

    /// Keeps a released record's allocation for this thread's next one, if
    /// nobody else holds it (a snapshot may, briefly) and the pool has room.
    #[inline]
    pub(crate) fn recycle(mut record: Arc<Self>) {
        let Some(r) = Arc::get_mut(&mut record) else {
            return;
        };
        // Do not keep names and metadata alive in the pool.
        if r.extra.get_mut().is_some() {
            *r.extra.get_mut() = None;
        }
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut v) = spare.try_borrow_mut()
                && v.len() < SPARE_MAX
            {
                v.push(record);
            }
        });
    }

    /// Lock-free; skips the store when the value is unchanged so that a hot
    /// resource touched many times per millisecond keeps its line shared.
    #[inline]
    pub(crate) fn touch(&self, now_ms: u64) {
        if self.last_used_ms.load(Relaxed) != now_ms {
            self.last_used_ms.store(now_ms, Relaxed);
        }
    }

    pub(crate) fn set_name(&self, name: &str) {
        let mut extra = self.extra.lock();
        extra.get_or_insert_with(Box::default).name = Some(name.into());
    }

    pub(crate) fn set_meta(&self, key: &str, value: &str) {
        let mut guard = self.extra.lock();
        let extra = guard.get_or_insert_with(Box::default);
        match extra.meta.iter_mut().find(|(k, _)| &**k == key) {
            Some((_, v)) => *v = value.into(),
            None => extra.meta.push((key.into(), value.into())),
        }
    }

    pub(crate) fn name(&self) -> Option<String> {
        self.extra
            .lock()
            .as_ref()
            .and_then(|e| e.name.as_deref().map(str::to_string))
    }

    pub(crate) fn meta(&self, key: &str) -> Option<String> {
        let guard = self.extra.lock();
        let extra = guard.as_ref()?;
        extra
            .meta
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v.to_string())
    }

    pub(crate) fn info(&self, id: u64, key: Option<&str>, kind: &str, now_ms: u64) -> ResourceInfo {
        let (name, metadata) = match self.extra.lock().as_deref() {
            Some(e) => (
                e.name.as_deref().map(str::to_string),
                e.meta
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            None => (None, BTreeMap::new()),
        };
        ResourceInfo {
            id,
            key: key.map(str::to_string),
            kind: kind.to_string(),
            name,
            size_bytes: self.size.load(Relaxed),
            age: Duration::from_millis(now_ms.saturating_sub(self.created_ms)),
            idle: Duration::from_millis(now_ms.saturating_sub(self.last_used_ms.load(Relaxed))),
            site: format!("{}:{}", self.site.file(), self.site.line()),
            metadata,
        }
    }
}

/// Ids come from one process-wide counter in blocks, so that threads do not
/// contend on it: unique across all trackers.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
const BLOCK: u64 = 1024;

/// Spare record allocations per thread (at most `SPARE_MAX` × 72 bytes).
const SPARE_MAX: usize = 64;

thread_local! {
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    static SPARE: RefCell<Vec<Arc<Record>>> = const { RefCell::new(Vec::new()) };
}

#[inline]
pub(crate) fn next_id() -> u64 {
    IDS.try_with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Relaxed);
            end = next + BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
    // During thread teardown: take a whole block and use its first id.
    .unwrap_or_else(|_| NEXT_BLOCK.fetch_add(BLOCK, Relaxed))
}
