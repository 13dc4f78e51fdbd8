//! The per-kind registry and its lock-free counters.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use parking_lot::Mutex;

use crate::{Budget, Error, KindStats, Totals};

/// Most kinds one tracker holds. Kinds are a small vocabulary; a fixed table
/// lets a record name its kind with a `u16` and find it without a lock.
pub(crate) const MAX_KINDS: usize = 256;

/// "No limit" in the atomic budget fields.
const UNLIMITED: u64 = u64::MAX;

/// Counters written on every track and release, alone on their cache lines
/// so that reading budgets does not contend with them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Hot {
    pub(crate) live_count: AtomicU64,
    pub(crate) live_bytes: AtomicU64,
    pub(crate) peak_count: AtomicU64,
    pub(crate) peak_bytes: AtomicU64,
    pub(crate) tracked_count: AtomicU64,
    pub(crate) tracked_bytes: AtomicU64,
}

/// Raises `peak` to `value` if it is higher. The load first keeps the cache
/// line shared in the common case (no new peak).
#[inline]
fn raise(peak: &AtomicU64, value: u64) {
    if peak.load(Relaxed) < value {
        peak.fetch_max(value, Relaxed);
    }
}

impl Hot {
    /// Adds `count` resources of `bytes`, returns the new live bytes.
    #[inline]
    pub(crate) fn add(&self, count: u64, bytes: u64) -> u64 {
        if count > 0 {
            let live = self.live_count.fetch_add(count, Relaxed) + count;
            self.tracked_count.fetch_add(count, Relaxed);
            raise(&self.peak_count, live);
        }
        let live = self
            .live_bytes
            .fetch_add(bytes, Relaxed)
            .wrapping_add(bytes);
        self.tracked_bytes.fetch_add(bytes, Relaxed);
        raise(&self.peak_bytes, live);
        live
    }

    /// Removes `count` resources of `bytes`, returns the new live bytes.
    #[inline]
    pub(crate) fn sub(&self, count: u64, bytes: u64) -> u64 {
        if count > 0 {
            self.live_count.fetch_sub(count, Relaxed);
        }
        self.live_bytes
            .fetch_sub(bytes, Relaxed)
            .wrapping_sub(bytes)
    }

    pub(crate) fn totals(&self) -> Totals {
        let live_count = self.live_count.load(Relaxed);
        let live_bytes = self.live_bytes.load(Relaxed);
        let tracked_count = self.tracked_count.load(Relaxed);
        let tracked_bytes = self.tracked_bytes.load(Relaxed);
        Totals {
            live_count,
            live_bytes,
            peak_count: self.peak_count.load(Relaxed),
            peak_bytes: self.peak_bytes.load(Relaxed),
            tracked_count,
            tracked_bytes,
            released_count: tracked_count.saturating_sub(live_count),
            released_bytes: tracked_bytes.saturating_sub(live_bytes),
        }
    }
}

/// Global live counters (tracked totals are summed over kinds instead, which
/// saves two contended atomic operations per track).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Global {
    pub(crate) live_count: AtomicU64,
    pub(crate) live_bytes: AtomicU64,
    pub(crate) peak_count: AtomicU64,
    pub(crate) peak_bytes: AtomicU64,
}

impl Global {
    #[inline]
    pub(crate) fn add(&self, count: u64, bytes: u64) {
        if count > 0 {
            let live = self.live_count.fetch_add(count, Relaxed) + count;
            raise(&self.peak_count, live);
        }
        let live = self
            .live_bytes
            .fetch_add(bytes, Relaxed)
            .wrapping_add(bytes);
        raise(&self.peak_bytes, live);
    }

    #[inline]
    pub(crate) fn sub(&self, count: u64, bytes: u64) {
        if count > 0 {
            self.live_count.fetch_sub(count, Relaxed);
        }
        self.live_bytes.fetch_sub(bytes, Relaxed);
    }
}

/// One kind: its counters, budget and soft-budget state.
#[derive(Debug)]
pub(crate) struct KindState {
    pub(crate) hot: Hot,
    pub(crate) name: Box<str>,
    soft_bytes: AtomicU64,
    hard_bytes: AtomicU64,
    hard_count: AtomicU64,
    over_soft: AtomicBool,
    pub(crate) rejected: AtomicU64,
}

/// A soft-budget crossing, emitted once the caller holds no lock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Crossing {
    Exceeded {
        kind: u16,
        live_bytes: u64,
        soft_bytes: u64,
    },
    Recovered {
        kind: u16,
        live_bytes: u64,
        soft_bytes: u64,
    },
}

fn limit(v: Option<u64>) -> u64 {
    v.unwrap_or(UNLIMITED)
}

fn unlimit(v: u64) -> Option<u64> {
    (v != UNLIMITED).then_some(v)
}

impl KindState {
    fn new(name: &str) -> Self {
        Self {
            hot: Hot::default(),
            name: name.into(),
            soft_bytes: AtomicU64::new(UNLIMITED),
            hard_bytes: AtomicU64::new(UNLIMITED),
            hard_count: AtomicU64::new(UNLIMITED),
            over_soft: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
        }
    }

    pub(crate) fn budget(&self) -> Budget {
        Budget {
            soft_bytes: unlimit(self.soft_bytes.load(Relaxed)),
            hard_bytes: unlimit(self.hard_bytes.load(Relaxed)),
            hard_count: unlimit(self.hard_count.load(Relaxed)),
        }
    }

    pub(crate) fn set_budget(&self, budget: Budget) {
        self.soft_bytes.store(limit(budget.soft_bytes), Relaxed);
        self.hard_bytes.store(limit(budget.hard_bytes), Relaxed);
        self.hard_count.store(limit(budget.hard_count), Relaxed);
    }

    pub(crate) fn stats(&self) -> KindStats {
        KindStats {
            kind: self.name.to_string(),
            totals: self.hot.totals(),
            budget: self.budget(),
            over_soft_budget: self.over_soft.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
        }
    }

    fn over_budget(&self, unit: &'static str, live: u64, requested: u64, limit: u64) -> Error {
        self.rejected.fetch_add(1, Relaxed);
        Error::OverBudget {
            kind: self.name.to_string(),
            unit,
            live,
            requested,
            limit,
        }
    }

    /// Reserves `add` under the hard limit `max` of `counter`, or refuses
    /// with the live value seen.
    fn reserve(counter: &AtomicU64, add: u64, max: u64) -> Result<(), u64> {
        counter
            .fetch_update(Relaxed, Relaxed, |live| {
                live.checked_add(add).filter(|new| *new <= max)
            })
            .map(|_| ())
    }

    /// Accounts `count` (0 or 1) new resources of `bytes` to this kind and
    /// to `global`, unless a hard budget refuses.
    #[inline]
    pub(crate) fn admit(
        &self,
        index: u16,
        global: &Global,
        count: u64,
        bytes: u64,
    ) -> Result<Option<Crossing>, Error> {
        let hard_count = self.hard_count.load(Relaxed);
        let hard_bytes = self.hard_bytes.load(Relaxed);
        if hard_count != UNLIMITED || hard_bytes != UNLIMITED {
            self.admit_limited(count, bytes, hard_count, hard_bytes)?;
            // The live counters were reserved; account the rest.
            self.hot.tracked_count.fetch_add(count, Relaxed);
            self.hot.tracked_bytes.fetch_add(bytes, Relaxed);
            let live_count = self.hot.live_count.load(Relaxed);
            raise(&self.hot.peak_count, live_count);
            let live_bytes = self.hot.live_bytes.load(Relaxed);
            raise(&self.hot.peak_bytes, live_bytes);
            global.add(count, bytes);
            return Ok(self.check_soft_up(index, live_bytes));
        }
        let live_bytes = self.hot.add(count, bytes);
        global.add(count, bytes);
        Ok(self.check_soft_up(index, live_bytes))
    }

    #[cold]
    fn admit_limited(
        &self,
        count: u64,
        bytes: u64,
        hard_count: u64,
        hard_bytes: u64,
    ) -> Result<(), Error> {
        if count > 0 {
            Self::reserve(&self.hot.live_count, count, hard_count)
                .map_err(|live| self.over_budget("resources", live, count, hard_count))?;
        }
        if let Err(live) = Self::reserve(&self.hot.live_bytes, bytes, hard_bytes) {
            if count > 0 {
                self.hot.live_count.fetch_sub(count, Relaxed);
            }
            return Err(self.over_budget("bytes", live, bytes, hard_bytes));
        }
        Ok(())
    }

    /// Accounts the release of `count` resources of `bytes`.
    #[inline]
    pub(crate) fn release(
        &self,
        index: u16,
        global: &Global,
        count: u64,
        bytes: u64,
    ) -> Option<Crossing> {
        let live_bytes = self.hot.sub(count, bytes);
        global.sub(count, bytes);
        self.check_soft_down(index, live_bytes)
    }

    #[inline]
    fn check_soft_up(&self, index: u16, live_bytes: u64) -> Option<Crossing> {
        let soft_bytes = self.soft_bytes.load(Relaxed);
        if live_bytes <= soft_bytes || self.over_soft.load(Relaxed) {
            return None;
        }
        // Only the thread that flips the flag reports: once per crossing.
        (!self.over_soft.swap(true, AcqRel)).then_some(Crossing::Exceeded {
            kind: index,
            live_bytes,
            soft_bytes,
        })
    }

    #[inline]
    fn check_soft_down(&self, index: u16, live_bytes: u64) -> Option<Crossing> {
        if !self.over_soft.load(Relaxed) {
            return None;
        }
        let soft_bytes = self.soft_bytes.load(Relaxed);
        if live_bytes > soft_bytes {
            return None;
        }
        self.over_soft
            .swap(false, AcqRel)
            .then_some(Crossing::Recovered {
                kind: index,
                live_bytes,
                soft_bytes,
            })
    }
}

/// The fixed table of kinds, appended to under a mutex, read without one.
#[derive(Debug)]
pub(crate) struct Kinds {
    slots: Box<[OnceLock<Box<KindState>>]>,
    len: AtomicUsize,
    register: Mutex<()>,
}

impl Kinds {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..MAX_KINDS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            register: Mutex::new(()),
        }
    }

    /// The kind at `index`. Indices come from [`Kinds::index`], so the slot
    /// is always set; `None` only guards against misuse.
    #[inline]
    pub(crate) fn get(&self, index: u16) -> Option<&KindState> {
        self.slots.get(usize::from(index))?.get().map(|b| &**b)
    }

    fn find(&self, name: &str) -> Option<u16> {
        let len = self.len.load(Acquire);
        self.slots[..len.min(MAX_KINDS)]
            .iter()
            .position(|slot| slot.get().is_some_and(|k| &*k.name == name))
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The index of kind `name`, registering it on first use.
    #[inline]
    pub(crate) fn index(&self, name: &str) -> Result<u16, Error> {
        if let Some(i) = self.find(name) {
            return Ok(i);
        }
        self.register(name)
    }

    #[cold]
    fn register(&self, name: &str) -> Result<u16, Error> {
        let _only_writer = self.register.lock();
        if let Some(i) = self.find(name) {
            return Ok(i);
        }
        let len = self.len.load(Acquire);
        let too_many = || Error::TooManyKinds {
            kind: name.to_string(),
            max: MAX_KINDS,
        };
        let slot = self.slots.get(len).ok_or_else(too_many)?;
        let index = u16::try_from(len).map_err(|_| too_many())?;
        // The slot is empty: `len` only grows under this mutex.
        let _ = slot.set(Box::new(KindState::new(name)));
        self.len.store(len + 1, Release);
        Ok(index)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &KindState> {
        let len = self.len.load(Acquire);
        self.slots[..len.min(MAX_KINDS)]
            .iter()
            .filter_map(|slot| slot.get().map(|b| &**b))
    }
}
