//! The [`Tracker`], the [`Tracked`] guard and subscriptions.

use crate::id_hash::IdHash;
use std::cell::Cell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::RwLock;

use crate::clock::{TimeSource, duration_ms};
use crate::kinds::{Crossing, Global, Kinds};
use crate::record::{Record, next_id};
use crate::{Budget, Error, Event, KindStats, ResourceInfo, Snapshot, Totals, TrackerConfig};

/// The largest size one resource is accounted with (256 TiB): larger sizes
/// are clamped, so that sums of sizes cannot wrap around in practice.
pub const MAX_SIZE: u64 = 1 << 48;

#[inline]
fn clamp(size: u64) -> u64 {
    size.min(MAX_SIZE)
}

/// The id of a tracked resource: unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(u64);

impl ResourceId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// An entry of the by-id map.
#[derive(Debug)]
struct ById {
    id: u64,
    record: Arc<Record>,
}

/// The shared state behind every handle and guard.
pub(crate) struct Inner {
    global: Global,
    kinds: Kinds,
    /// Guard-owned resources, by id.
    map: DashMap<u64, Arc<Record>, IdHash>,
    /// Resources tracked by the caller's key.
    by_key: DashMap<Box<str>, ById>,
    clock: TimeSource,
    top_n: usize,
    leak_after_ms: AtomicU64,
    closed: AtomicBool,
    unknown_ids: AtomicU64,
    leaks_reported: AtomicU64,
    subscribers: RwLock<Vec<(u64, Callback)>>,
    next_subscriber: AtomicU64,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("live", &self.map.len().saturating_add(self.by_key.len()))
            .field("closed", &self.closed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// Closes the shared state when the last [`Tracker`] handle goes: guards
/// still alive then release into nothing.
struct Handle {
    inner: Arc<Inner>,
    /// Reference holders for guards, one per thread slot: a guard clones the
    /// stripe of the thread that tracks it instead of `inner`, which would
    /// make every tracking thread write the same reference count.
    stripes: Box<[Arc<Stripe>]>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The stripes only repeat `inner`.
        self.inner.fmt(f)
    }
}

/// A reference to the shared state that guards clone; alone on its cache
/// lines (the `Arc` counts sit right before it).
#[derive(Debug)]
#[repr(align(128))]
struct Stripe {
    inner: Arc<Inner>,
}

/// How many stripes a tracker has (threads share them beyond that).
const STRIPES: usize = 8;

/// This thread's stripe slot, handed out round-robin on first use.
#[inline]
fn stripe_slot() -> usize {
    static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.try_with(|slot| {
        let mut s = slot.get();
        if s == usize::MAX {
            s = NEXT_SLOT.fetch_add(1, Relaxed) % STRIPES;
            slot.set(s);
        }
        s
    })
    // During thread teardown: any stripe is correct, only slower.
    .unwrap_or(0)
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.closed.store(true, Release);
        // Frees the records the map holds; guards keep only their own.
        self.inner.map.clear();
        self.inner.by_key.clear();
    }
}

/// Keeps track of live resources: what is alive, how big, since when, made
/// where, and whether each kind stays within its budget.
///
/// Cheap to clone (`Send + Sync`); clones share everything. When the last
/// clone is dropped the tracker closes: guards still alive stay sound and
/// release into nothing.
#[derive(Debug, Clone)]
pub struct Tracker {
    handle: Arc<Handle>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// A tracker with the default configuration and the monotonic clock.
    pub fn new() -> Self {
        Self::with_parts(&TrackerConfig::default(), TimeSource::coarse())
    }

    pub(crate) fn with_parts(config: &TrackerConfig, clock: TimeSource) -> Self {
        let inner = Inner {
            global: Global::default(),
            kinds: Kinds::new(),
            map: DashMap::with_hasher(IdHash),
            by_key: DashMap::new(),
            clock,
            top_n: config.top_n,
            leak_after_ms: AtomicU64::new(config.leak_after.map_or(u64::MAX, duration_ms)),
            closed: AtomicBool::new(false),
            unknown_ids: AtomicU64::new(0),
            leaks_reported: AtomicU64::new(0),
            subscribers: RwLock::new(Vec::new()),
            next_subscriber: AtomicU64::new(0),
        };
        let inner = Arc::new(inner);
        let stripes = (0..STRIPES)
            .map(|_| {
                Arc::new(Stripe {
                    inner: Arc::clone(&inner),
                })
            })
            .collect();
        Self {
            handle: Arc::new(Handle { inner, stripes }),
        }
    }

    #[inline]
    fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// Tracks a resource of `kind` and `size_bytes`, owned by the returned
    /// guard: dropping it releases the resource. The caller's location is
    /// recorded as the creation site (mark wrappers `#[track_caller]` too).
    ///
    /// Fails with [`Error::OverBudget`] when a hard budget of `kind` would be
    /// exceeded, and with [`Error::TooManyKinds`] past 256 kinds. Sizes above
    /// [`MAX_SIZE`] are accounted as `MAX_SIZE`.
    #[track_caller]
    #[inline]
    pub fn track(&self, kind: &str, size_bytes: u64) -> Result<Tracked, Error> {
        let site = Location::caller();
        let size_bytes = clamp(size_bytes);
        let inner = self.inner();
        let index = inner.kinds.index(kind)?;
        inner.account_new(index, size_bytes)?;
        let record = Record::new_shared(index, size_bytes, inner.clock.now_ms(), site);
        let id = next_id();
        inner.map.insert(id, Arc::clone(&record));
        let stripe = match self.handle.stripes.get(stripe_slot()) {
            Some(stripe) => Arc::clone(stripe),
            None => Arc::new(Stripe {
                inner: Arc::clone(inner),
            }),
        };
        Ok(Tracked {
            stripe,
            id,
            record: Some(record),
        })
    }

    /// Tracks a resource under the caller's `key` (the by-id API for
    /// resources no scope owns). Release it with [`Tracker::release_id`].
    ///
    /// Fails with [`Error::DuplicateId`] if `key` is live already, and like
    /// [`Tracker::track`] otherwise.
    #[track_caller]
    pub fn track_id(&self, key: &str, kind: &str, size_bytes: u64) -> Result<ResourceId, Error> {
        let site = Location::caller();
        let size_bytes = clamp(size_bytes);
        let inner = self.inner();
        let index = inner.kinds.index(kind)?;
        let crossing = {
            let entry = match inner.by_key.entry(key.into()) {
                dashmap::Entry::Occupied(_) => {
                    return Err(Error::DuplicateId {
                        key: key.to_string(),
                    });
                }
                dashmap::Entry::Vacant(v) => v,
            };
            let crossing = inner.kinds_admit(index, 1, size_bytes)?;
            let record = Record::new_shared(index, size_bytes, inner.clock.now_ms(), site);
            let id = next_id();
            entry.insert(ById { id, record });
            (id, crossing)
        };
        // Events are emitted with no map lock held: subscribers may call us.
        inner.emit_crossing(crossing.1);
        Ok(ResourceId(crossing.0))
    }

    /// Releases the resource tracked under `key`. A key that is not tracked
    /// (never was, or released already) is reported — error, counter,
    /// `tracing` and subscribers — and changes no total.
    pub fn release_id(&self, key: &str) -> Result<(), Error> {
        let inner = self.inner();
        let Some((_, entry)) = inner.by_key.remove(key) else {
            return Err(inner.unknown("release", key));
        };
        let crossing = inner.account_release(&entry.record);
        Record::recycle(entry.record);
        inner.emit_crossing(crossing);
        Ok(())
    }

    /// Marks the resource tracked under `key` as used now.
    pub fn touch_id(&self, key: &str) -> Result<(), Error> {
        let inner = self.inner();
        let Some(entry) = inner.by_key.get(key) else {
            return Err(inner.unknown("touch", key));
        };
        entry.record.touch(inner.clock.now_ms());
        Ok(())
    }

    /// Changes the size of the resource tracked under `key`; refused by a
    /// hard byte budget like [`Tracked::resize`].
    pub fn resize_id(&self, key: &str, size_bytes: u64) -> Result<(), Error> {
        let inner = self.inner();
        let size_bytes = clamp(size_bytes);
        let crossing = {
            // The entry's write lock serialises this with `release_id`.
            let Some(entry) = inner.by_key.get_mut(key) else {
                return Err(inner.unknown("resize", key));
            };
            inner.account_resize(&entry.record, size_bytes)?
        };
        inner.emit_crossing(crossing);
        Ok(())
    }

    /// Sets metadata on the resource tracked under `key`.
    pub fn set_meta_id(&self, key: &str, meta_key: &str, value: &str) -> Result<(), Error> {
        let inner = self.inner();
        let Some(entry) = inner.by_key.get(key) else {
            return Err(inner.unknown("set_meta", key));
        };
        entry.record.set_meta(meta_key, value);
        Ok(())
    }

    /// Sets (or replaces) the budget of `kind`. Takes effect for the next
    /// track or resize; what is live already is never evicted.
    pub fn set_budget(&self, kind: &str, budget: Budget) -> Result<(), Error> {
        if let Some(reason) = budget.problem() {
            return Err(Error::InvalidBudget {
                kind: kind.to_string(),
                reason,
            });
        }
        let inner = self.inner();
        let index = inner.kinds.index(kind)?;
        if let Some(state) = inner.kinds.get(index) {
            state.set_budget(budget);
        }
        Ok(())
    }

    /// Changes the leak age (`None`: never report leaks).
    pub fn set_leak_after(&self, age: Option<Duration>) {
        let ms = age.map(duration_ms).unwrap_or(u64::MAX);
        self.inner().leak_after_ms.store(ms, Relaxed);
    }

    /// Totals over all kinds. Cheap: no resource is visited.
    pub fn totals(&self) -> Totals {
        self.inner().totals()
    }

    /// The counters and budget of one kind, if it was ever used.
    pub fn kind(&self, kind: &str) -> Option<KindStats> {
        self.inner()
            .kinds
            .iter()
            .find(|k| &*k.name == kind)
            .map(|k| k.stats())
    }

    /// Number of live resources.
    pub fn len(&self) -> usize {
        let inner = self.inner();
        inner.map.len().saturating_add(inner.by_key.len())
    }

    /// Whether no resource is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A plain serde view: totals, per kind, and the `top_n` largest and
    /// oldest resources. Visits every live resource once.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner();
        let _span = tracing::debug_span!("tracker_snapshot").entered();
        let now = inner.clock.now_ms();
        let n = inner.top_n;
        let mut largest: BinaryHeap<Reverse<Ranked>> = BinaryHeap::new();
        let mut oldest: BinaryHeap<Ranked> = BinaryHeap::new();
        inner.for_each(|id, key, record| {
            if n == 0 {
                return;
            }
            largest.push(Reverse(Ranked::new(
                record.size.load(Relaxed),
                // Equal sizes: the lower id ranks larger (listed first).
                u64::MAX - id,
                id,
                key,
                record,
            )));
            if largest.len() > n {
                largest.pop();
            }
            oldest.push(Ranked::new(record.created_ms, id, id, key, record));
            if oldest.len() > n {
                oldest.pop();
            }
        });
        // Largest first: ascending order of Reverse(rank).
        let largest = largest
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(r)| inner.describe(&r, now))
            .collect();
        // Oldest first: ascending (created, id).
        let oldest = oldest
            .into_sorted_vec()
            .into_iter()
            .map(|r| inner.describe(&r, now))
            .collect();
        Snapshot {
            at: Duration::from_millis(now),
            totals: inner.totals(),
            kinds: inner.kinds.iter().map(|k| k.stats()).collect(),
            largest,
            oldest,
            unknown_ids: inner.unknown_ids.load(Relaxed),
            rejected: inner.kinds.iter().map(|k| k.rejected.load(Relaxed)).sum(),
            leaks_reported: inner.leaks_reported.load(Relaxed),
        }
    }

    /// Resources not touched for at least `idle_for`, longest idle first:
    /// what memory-pressure cleanup handlers act on.
    pub fn stale(&self, idle_for: Duration) -> Vec<ResourceInfo> {
        let inner = self.inner();
        let _span = tracing::debug_span!("tracker_stale").entered();
        let now = inner.clock.now_ms();
        let idle_ms = duration_ms(idle_for);
        let mut out = Vec::new();
        inner.for_each(|id, key, record| {
            let last = record.last_used_ms.load(Relaxed);
            if now.saturating_sub(last) >= idle_ms {
                let kind = inner.kind_name(record.kind);
                out.push(record.info(id, key, kind, now));
            }
        });
        out.sort_by(|a, b| b.idle.cmp(&a.idle).then(a.id.cmp(&b.id)));
        out
    }

    /// Reports every resource older than the leak age that was not reported
    /// before: to `tracing` (warn), to subscribers, and in the returned list
    /// (oldest first). Each resource is reported at most once.
    pub fn check_leaks(&self) -> Vec<ResourceInfo> {
        self.inner().check_leaks()
    }

    /// Calls [`Tracker::check_leaks`] every `every` on a background thread,
    /// so that leaks reach `tracing` and subscribers without polling. The
    /// thread stops when the returned watcher is dropped or the tracker
    /// closes (it holds only a weak reference).
    pub fn spawn_leak_watcher(&self, every: Duration) -> Result<LeakWatcher, Error> {
        let weak = Arc::downgrade(self.inner());
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("steward-leak-watch".into())
            .spawn(move || {
                // Any message or a dropped sender ends the loop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let Some(inner) = weak.upgrade() else { break };
                    if inner.closed.load(Acquire) {
                        break;
                    }
                    inner.check_leaks();
                }
            })
            .map_err(|e| Error::Spawn {
                what: "leak watcher",
                source: Arc::new(e),
            })?;
        Ok(LeakWatcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Calls `f` with every event (budget crossings, leaks, unknown ids)
    /// until the returned subscription is dropped. `f` runs on the thread
    /// that caused the event, with no tracker lock held (it may call the
    /// tracker); keep it short and do not panic in it.
    pub fn subscribe<F>(&self, f: F) -> Subscription
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        let inner = self.inner();
        let id = inner.next_subscriber.fetch_add(1, Relaxed);
        inner.subscribers.write().push((id, Arc::new(f)));
        Subscription {
            inner: Arc::downgrade(inner),
            id,
        }
    }
}

/// A candidate for a snapshot's top-N lists, ordered by `(primary, tie)`.
struct Ranked {
    primary: u64,
    tie: u64,
    id: u64,
    key: Option<Box<str>>,
    record: Arc<Record>,
}

impl Ranked {
    fn new(primary: u64, tie: u64, id: u64, key: Option<&str>, rec: &Arc<Record>) -> Self {
        Self {
            primary,
            tie,
            id,
            key: key.map(Into::into),
            record: Arc::clone(rec),
        }
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.primary, self.tie).cmp(&(other.primary, other.tie))
    }
}

impl Inner {
    fn check_leaks(self: &Arc<Self>) -> Vec<ResourceInfo> {
        let inner = self;
        let leak_after = inner.leak_after_ms.load(Relaxed);
        if leak_after == u64::MAX {
            return Vec::new();
        }
        let _span = tracing::debug_span!("tracker_check_leaks").entered();
        let now = inner.clock.now_ms();
        let mut leaks = Vec::new();
        inner.for_each(|id, key, record| {
            if now.saturating_sub(record.created_ms) < leak_after {
                return;
            }
            // swap: exactly one caller reports each resource.
            if record.leak_reported.swap(true, AcqRel) {
                return;
            }
            let kind = inner.kind_name(record.kind);
            leaks.push(record.info(id, key, kind, now));
        });
        leaks.sort_by(|a, b| b.age.cmp(&a.age).then(a.id.cmp(&b.id)));
        inner.leaks_reported.fetch_add(leaks.len() as u64, Relaxed);
        for leak in &leaks {
            tracing::warn!(
                id = leak.id,
                key = leak.key.as_deref(),
                kind = %leak.kind,
                name = leak.name.as_deref(),
                size_bytes = leak.size_bytes,
                age_ms = duration_ms(leak.age),
                site = %leak.site,
                "resource alive longer than the leak age"
            );
            inner.notify(&Event::Leak {
                resource: leak.clone(),
            });
        }
        leaks
    }

    fn kind_name(&self, index: u16) -> &str {
        self.kinds.get(index).map_or("?", |k| &k.name)
    }

    fn totals(&self) -> Totals {
        let mut t = Totals {
            live_count: self.global.live_count.load(Relaxed),
            live_bytes: self.global.live_bytes.load(Relaxed),
            peak_count: self.global.peak_count.load(Relaxed),
            peak_bytes: self.global.peak_bytes.load(Relaxed),
            ..Totals::default()
        };
        for kind in self.kinds.iter() {
            t.tracked_count = t
                .tracked_count
                .saturating_add(kind.hot.tracked_count.load(Relaxed));
            t.tracked_bytes = t
                .tracked_bytes
                .saturating_add(kind.hot.tracked_bytes.load(Relaxed));
        }
        t.released_count = t.tracked_count.saturating_sub(t.live_count);
        t.released_bytes = t.tracked_bytes.saturating_sub(t.live_bytes);
        t
    }

    fn describe(&self, r: &Ranked, now: u64) -> ResourceInfo {
        r.record
            .info(r.id, r.key.as_deref(), self.kind_name(r.record.kind), now)
    }

    /// Visits guard-owned then by-key resources. Holds one shard read lock at
    /// a time: `f` must not call back into the maps.
    fn for_each(&self, mut f: impl FnMut(u64, Option<&str>, &Arc<Record>)) {
        for entry in &self.map {
            f(*entry.key(), None, entry.value());
        }
        for entry in &self.by_key {
            f(entry.id, Some(entry.key()), &entry.record);
        }
    }

    #[inline]
    fn kinds_admit(&self, index: u16, count: u64, bytes: u64) -> Result<Option<Crossing>, Error> {
        let Some(kind) = self.kinds.get(index) else {
            return Ok(None);
        };
        kind.admit(index, &self.global, count, bytes)
    }

    /// Accounts a new resource; emits a soft-budget crossing right away
    /// (guards hold no map lock at this point).
    #[inline]
    fn account_new(&self, index: u16, bytes: u64) -> Result<(), Error> {
        let crossing = self.kinds_admit(index, 1, bytes)?;
        self.emit_crossing(crossing);
        Ok(())
    }

    #[inline]
    fn account_release(&self, record: &Record) -> Option<Crossing> {
        let kind = self.kinds.get(record.kind)?;
        kind.release(record.kind, &self.global, 1, record.size.load(Relaxed))
    }

    /// Moves `record` to `new` bytes. The caller guarantees no concurrent
    /// release or resize of the same record (`&mut` guard, or the by-key
    /// entry's write lock).
    fn account_resize(&self, record: &Record, new: u64) -> Result<Option<Crossing>, Error> {
        let Some(kind) = self.kinds.get(record.kind) else {
            return Ok(None);
        };
        let old = record.size.load(Relaxed);
        let crossing = match new.cmp(&old) {
            Ordering::Equal => None,
            Ordering::Greater => kind.admit(record.kind, &self.global, 0, new - old)?,
            Ordering::Less => kind.release(record.kind, &self.global, 0, old - new),
        };
        record.size.store(new, Relaxed);
        Ok(crossing)
    }

    #[cold]
    fn unknown(&self, op: &'static str, key: &str) -> Error {
        self.unknown_ids.fetch_add(1, Relaxed);
        tracing::warn!(op, key, "by-id operation on a key that is not tracked");
        self.notify(&Event::UnknownId {
            op: op.to_string(),
            key: key.to_string(),
        });
        Error::UnknownId {
            key: key.to_string(),
        }
    }

    #[inline]
    fn emit_crossing(&self, crossing: Option<Crossing>) {
        if let Some(c) = crossing {
            self.emit_crossing_slow(c);
        }
    }

    #[cold]
    fn emit_crossing_slow(&self, crossing: Crossing) {
        let event = match crossing {
            Crossing::Exceeded {
                kind,
                live_bytes,
                soft_bytes,
            } => {
                let kind = self.kind_name(kind).to_string();
                tracing::warn!(%kind, live_bytes, soft_bytes, "kind over its soft budget");
                Event::SoftBudgetExceeded {
                    kind,
                    live_bytes,
                    soft_bytes,
                }
            }
            Crossing::Recovered {
                kind,
                live_bytes,
                soft_bytes,
            } => {
                let kind = self.kind_name(kind).to_string();
                tracing::info!(%kind, live_bytes, soft_bytes, "kind back within its soft budget");
                Event::SoftBudgetRecovered {
                    kind,
                    live_bytes,
                    soft_bytes,
                }
            }
        };
        self.notify(&event);
    }

    fn notify(&self, event: &Event) {
        // Copy the callbacks out so that none runs under the lock.
        let callbacks: Vec<Callback> = self
            .subscribers
            .read()
            .iter()
            .map(|(_, f)| Arc::clone(f))
            .collect();
        for f in callbacks {
            f(event);
        }
    }
}

/// A live resource owned by a scope: released when dropped.
///
/// Dropping it after the tracker itself was dropped is fine: it releases
/// into nothing.
#[must_use = "dropping the guard releases the resource at once"]
pub struct Tracked {
    /// Keeps the shared state alive through a per-thread stripe, so that
    /// threads tracking at once do not bounce one reference count.
    stripe: Arc<Stripe>,
    id: u64,
    /// `None` only while dropping (the record goes back to a spare pool).
    record: Option<Arc<Record>>,
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("id", &self.id)
            .field("kind", &self.kind())
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl Tracked {
    /// The resource's id.
    pub fn id(&self) -> ResourceId {
        ResourceId(self.id)
    }

    /// The resource's kind.
    pub fn kind(&self) -> &str {
        self.rec()
            .map_or("?", |r| self.stripe.inner.kind_name(r.kind))
    }

    #[inline]
    fn rec(&self) -> Option<&Record> {
        self.record.as_deref()
    }

    /// Its size in bytes now.
    pub fn size(&self) -> u64 {
        self.rec().map_or(0, |r| r.size.load(Relaxed))
    }

    /// Time since it was tracked, on the tracker's clock.
    pub fn age(&self) -> Duration {
        let now = self.stripe.inner.clock.now_ms();
        let created = self.rec().map_or(now, |r| r.created_ms);
        Duration::from_millis(now.saturating_sub(created))
    }

    /// Time since it was last touched (or tracked), on the tracker's clock.
    pub fn idle(&self) -> Duration {
        let now = self.stripe.inner.clock.now_ms();
        let last = self.rec().map_or(now, |r| r.last_used_ms.load(Relaxed));
        Duration::from_millis(now.saturating_sub(last))
    }

    /// Marks the resource as used now. Lock-free, a few nanoseconds.
    #[inline]
    pub fn touch(&self) {
        if let Some(r) = self.rec() {
            r.touch(self.stripe.inner.clock.now_ms());
        }
    }

    /// Changes its size. Growing past a hard byte budget fails with
    /// [`Error::OverBudget`] and leaves the size unchanged.
    pub fn resize(&mut self, size_bytes: u64) -> Result<(), Error> {
        let size_bytes = clamp(size_bytes);
        let Some(record) = self.rec() else {
            return Ok(());
        };
        if self.stripe.inner.closed.load(Acquire) {
            record.size.store(size_bytes, Relaxed);
            return Ok(());
        }
        let crossing = self.stripe.inner.account_resize(record, size_bytes)?;
        self.stripe.inner.emit_crossing(crossing);
        Ok(())
    }

    /// Sets its name (shown in reports).
    pub fn set_name(&self, name: &str) {
        if let Some(r) = self.rec() {
            r.set_name(name);
        }
    }

    /// Sets its name, builder style.
    pub fn with_name(self, name: &str) -> Self {
        self.set_name(name);
        self
    }

    /// Its name, if set.
    pub fn name(&self) -> Option<String> {
        self.rec().and_then(Record::name)
    }

    /// Sets one metadata entry (replacing the value of an existing key).
    /// Meant for a few small entries.
    pub fn set_meta(&self, key: &str, value: &str) {
        if let Some(r) = self.rec() {
            r.set_meta(key, value);
        }
    }

    /// Sets one metadata entry, builder style.
    pub fn with_meta(self, key: &str, value: &str) -> Self {
        self.set_meta(key, value);
        self
    }

    /// One metadata value.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.rec().and_then(|r| r.meta(key))
    }

    /// Releases now (same as dropping).
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Tracked {
    #[inline]
    fn drop(&mut self) {
        let Some(record) = self.record.take() else {
            return;
        };
        if self.stripe.inner.closed.load(Acquire) {
            return;
        }
        // Only the guard removes its id, so this runs once per resource and
        // never underflows a total.
        let Some((_, in_map)) = self.stripe.inner.map.remove(&self.id) else {
            return;
        };
        drop(in_map);
        let crossing = self.stripe.inner.account_release(&record);
        Record::recycle(record);
        self.stripe.inner.emit_crossing(crossing);
    }
}

/// Keeps a [`Tracker::subscribe`] callback registered; dropping it
/// unsubscribes.
#[must_use = "dropping the subscription unsubscribes at once"]
#[derive(Debug)]
pub struct Subscription {
    inner: Weak<Inner>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.subscribers.write().retain(|(id, _)| *id != self.id);
        }
    }
}

/// The background thread of [`Tracker::spawn_leak_watcher`]; dropping it
/// stops the thread and waits for it.
#[must_use = "dropping the watcher stops it at once"]
#[derive(Debug)]
pub struct LeakWatcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LeakWatcher {
    fn drop(&mut self) {
        // Disconnecting wakes the thread at once.
        drop(self.stop.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Dropped from its own thread (inside a subscriber): it ends by itself.
        if thread.thread().id() != std::thread::current().id() {
            let _ = thread.join();
        }
    }
}
