//! Counters and the serde snapshot of them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CloseReason;

/// The serde form of a wait time: an integer of microseconds (milliseconds
/// would lose the 100 µs bucket), under a name ending in `_us`.
type Micros = serde_with::As<serde_with::DurationMicroSeconds<u64>>;
/// The same for a bucket's bound: `null` for the last, unbounded bucket.
type OptionMicros = serde_with::As<Option<serde_with::DurationMicroSeconds<u64>>>;

/// Upper bounds (inclusive) of the wait-time histogram buckets, in
/// microseconds; a last bucket catches everything slower.
pub const WAIT_BUCKETS_US: [u64; 7] = [
    100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 60_000_000,
];

/// Objects closed, by reason. `#[non_exhaustive]`: a new reason is not a
/// breaking change (`Default` then field assignment builds one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// Failed health check, recycle timeout or discarded by the holder.
    pub broken: u64,
    /// Idle longer than `idle_timeout`.
    pub idle: u64,
    /// Older than `max_lifetime`.
    pub lifetime: u64,
    /// Over the size limit after a resize, or shrunk to `min_idle`.
    pub shrink: u64,
    /// The pool was closed or dropped.
    pub closed: u64,
    /// Evicted to make room for another key (keyed pools).
    pub evicted: u64,
    /// Rejected by a `retain` predicate.
    pub removed: u64,
}

impl ClosedCounts {
    /// All closes together.
    pub fn total(&self) -> u64 {
        self.broken
            + self.idle
            + self.lifetime
            + self.shrink
            + self.closed
            + self.evicted
            + self.removed
    }

    fn add(&mut self, other: &ClosedCounts) {
        self.broken += other.broken;
        self.idle += other.idle;
        self.lifetime += other.lifetime;
        self.shrink += other.shrink;
        self.closed += other.closed;
        self.evicted += other.evicted;
        self.removed += other.removed;
    }
}

/// One bucket of the wait-time histogram. Serialized, the bound is an
/// integer of microseconds under `le_us` (`null` for the last bucket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WaitBucket {
    /// Upper bound (inclusive) of the bucket; `None` for the last one.
    #[serde(rename = "le_us", default, with = "OptionMicros")]
    pub le: Option<Duration>,
    /// Waits that fell in it.
    pub count: u64,
}

/// A snapshot of a pool's state and counters. Sizes are a moment's view;
/// counters only grow. `#[non_exhaustive]`: outside this crate build one
/// with `Stats::default()` (no object, every wait bucket empty) and
/// assign fields. Serialized, the wait times are integers of microseconds
/// (`le_us`, `wait_time_sum_us`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// The pool's name.
    pub name: String,
    /// The size limit (0 once closed).
    pub max_size: usize,
    /// Live objects: idle plus in use.
    pub size: usize,
    /// Live objects waiting in the pool.
    pub idle: usize,
    /// Checkouts in progress or held.
    pub in_use: usize,
    /// Callers waiting for a slot right now.
    pub waiters: usize,
    /// Objects the manager created.
    pub created: u64,
    /// Checkouts that reused an idle object.
    pub recycled: u64,
    /// Objects added from outside with `add`.
    pub added: u64,
    /// Objects detached with `take`.
    pub taken: u64,
    /// Objects closed, by reason.
    pub closed: ClosedCounts,
    /// Failed or timed-out creates.
    pub create_errors: u64,
    /// Checkouts that had to wait for a slot.
    pub wait_count: u64,
    /// Of those, how many gave up at the wait timeout.
    pub wait_timeouts: u64,
    /// How long the waiting checkouts waited: one wait in 8 is timed and
    /// counts 8 times (a clock read is not free), so the buckets add up to
    /// about `wait_count`.
    pub wait_time: Vec<WaitBucket>,
    /// The sum of those waits, weighted like the buckets (a Prometheus
    /// histogram's `_sum`); whole microseconds.
    #[serde(rename = "wait_time_sum_us", default, with = "Micros")]
    pub wait_time_sum: Duration,
}

impl Default for Stats {
    /// An unnamed pool with nothing in it: every counter zero, one empty
    /// bucket per [`WAIT_BUCKETS_US`] bound plus the last.
    fn default() -> Self {
        Self {
            name: String::new(),
            max_size: 0,
            size: 0,
            idle: 0,
            in_use: 0,
            waiters: 0,
            created: 0,
            recycled: 0,
            added: 0,
            taken: 0,
            closed: ClosedCounts::default(),
            create_errors: 0,
            wait_count: 0,
            wait_timeouts: 0,
            wait_time: WAIT_BUCKETS_US
                .iter()
                .map(|le| Some(Duration::from_micros(*le)))
                .chain(std::iter::once(None))
                .map(|le| WaitBucket { le, count: 0 })
                .collect(),
            wait_time_sum: Duration::ZERO,
        }
    }
}

impl Stats {
    /// Adds the counters and sizes of `other` into `self` (for keyed pools).
    pub(crate) fn merge(&mut self, other: &Stats) {
        self.size += other.size;
        self.idle += other.idle;
        self.in_use += other.in_use;
        self.waiters += other.waiters;
        self.created += other.created;
        self.recycled += other.recycled;
        self.added += other.added;
        self.taken += other.taken;
        self.closed.add(&other.closed);
        self.create_errors += other.create_errors;
        self.wait_count += other.wait_count;
        self.wait_timeouts += other.wait_timeouts;
        for (mine, theirs) in self.wait_time.iter_mut().zip(&other.wait_time) {
            mine.count += theirs.count;
        }
        self.wait_time_sum = self.wait_time_sum.saturating_add(other.wait_time_sum);
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) created: AtomicU64,
    pub(crate) recycled: AtomicU64,
    pub(crate) added: AtomicU64,
    pub(crate) taken: AtomicU64,
    pub(crate) closed: [AtomicU64; 7],
    pub(crate) create_errors: AtomicU64,
    pub(crate) wait_count: AtomicU64,
    pub(crate) wait_timeouts: AtomicU64,
    pub(crate) wait_hist: [AtomicU64; WAIT_BUCKETS_US.len() + 1],
    pub(crate) wait_sum_us: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        if let Some(c) = self.closed.get(reason.index()) {
            Self::bump(c);
        }
    }

    pub(crate) fn waited(&self, waited: Duration, weight: u64) {
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        let bucket = WAIT_BUCKETS_US
            .iter()
            .position(|le| us <= *le)
            .unwrap_or(WAIT_BUCKETS_US.len());
        if let Some(c) = self.wait_hist.get(bucket) {
            c.fetch_add(weight, Relaxed);
        }
        self.wait_sum_us
            .fetch_add(us.saturating_mul(weight), Relaxed);
    }

    pub(crate) fn closed_counts(&self) -> ClosedCounts {
        let get = |r: CloseReason| self.closed.get(r.index()).map_or(0, |c| c.load(Relaxed));
        ClosedCounts {
            broken: get(CloseReason::Broken),
            idle: get(CloseReason::IdleTimeout),
            lifetime: get(CloseReason::Lifetime),
            shrink: get(CloseReason::Shrink),
            closed: get(CloseReason::Closed),
            evicted: get(CloseReason::Evicted),
            removed: get(CloseReason::Removed),
        }
    }

    pub(crate) fn wait_buckets(&self) -> Vec<WaitBucket> {
        self.wait_hist
            .iter()
            .enumerate()
            .map(|(i, c)| WaitBucket {
                le: WAIT_BUCKETS_US.get(i).map(|le| Duration::from_micros(*le)),
                count: c.load(Relaxed),
            })
            .collect()
    }
}
