//! What the tracker tells: totals, snapshots, resource descriptions, events.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Budget;

/// The serde form of a duration in a report: an integer of milliseconds.
type Millis = serde_with::As<serde_with::DurationMilliSeconds<u64>>;

/// Counters of one kind, or of the whole tracker.
///
/// `released_*` are derived (`tracked - live`): bytes released by shrinking a
/// resource count as released, bytes added by growing it as tracked.
/// `#[non_exhaustive]`: outside this crate build one with
/// `Totals::default()` and assign fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Resources alive now.
    pub live_count: u64,
    /// Bytes alive now.
    pub live_bytes: u64,
    /// The most resources ever alive at once.
    pub peak_count: u64,
    /// The most bytes ever alive at once.
    pub peak_bytes: u64,
    /// Resources ever tracked.
    pub tracked_count: u64,
    /// Bytes ever tracked (including growth by resizing).
    pub tracked_bytes: u64,
    /// Resources ever released.
    pub released_count: u64,
    /// Bytes ever released (including shrinking by resizing).
    pub released_bytes: u64,
}

/// The counters and budget of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KindStats {
    /// The kind's name.
    pub kind: String,
    /// Its counters.
    #[serde(flatten)]
    pub totals: Totals,
    /// Its budget.
    pub budget: Budget,
    /// Whether live bytes are above the soft budget now.
    pub over_soft_budget: bool,
    /// How many `track`/`resize` calls its hard budget refused.
    pub rejected: u64,
}

/// One live resource, as reports describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceInfo {
    /// Its id (unique within the process).
    pub id: u64,
    /// The caller's key, for resources tracked by id.
    pub key: Option<String>,
    /// Its kind.
    pub kind: String,
    /// Its name, if one was set.
    pub name: Option<String>,
    /// Its size now.
    pub size_bytes: u64,
    /// Time since it was tracked (millisecond resolution; `"age_ms"`
    /// serialized).
    #[serde(rename = "age_ms", with = "Millis")]
    pub age: Duration,
    /// Time since it was last touched or tracked (millisecond resolution;
    /// `"idle_ms"` serialized).
    #[serde(rename = "idle_ms", with = "Millis")]
    pub idle: Duration,
    /// Where it was tracked: `file:line`.
    pub site: String,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
}

/// A point-in-time view of a tracker. Counters are read one by one without
/// stopping the world: under concurrent use they are each exact but not all
/// from the same instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// When it was taken: time since the tracker's epoch (millisecond
    /// resolution; `"at_ms"` serialized).
    #[serde(rename = "at_ms", with = "Millis")]
    pub at: Duration,
    /// All kinds together (peaks are of the sum, not sums of peaks).
    pub totals: Totals,
    /// Per kind, in order of first use.
    pub kinds: Vec<KindStats>,
    /// The largest live resources, largest first.
    pub largest: Vec<ResourceInfo>,
    /// The oldest live resources, oldest first.
    pub oldest: Vec<ResourceInfo>,
    /// By-id releases, touches or resizes of keys that were not tracked.
    pub unknown_ids: u64,
    /// Requests refused by hard budgets.
    pub rejected: u64,
    /// Leaks reported so far.
    pub leaks_reported: u64,
}

/// What subscribers and `tracing` are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Live bytes of a kind went above its soft budget.
    SoftBudgetExceeded {
        /// The kind.
        kind: String,
        /// Its live bytes just after crossing.
        live_bytes: u64,
        /// The soft budget.
        soft_bytes: u64,
    },
    /// Live bytes of a kind fell back to or below its soft budget.
    SoftBudgetRecovered {
        /// The kind.
        kind: String,
        /// Its live bytes just after crossing.
        live_bytes: u64,
        /// The soft budget.
        soft_bytes: u64,
    },
    /// A resource has lived longer than the configured leak age. Reported
    /// once per resource.
    Leak {
        /// The resource.
        resource: ResourceInfo,
    },
    /// A by-id operation named a key that is not tracked (never tracked or
    /// released already).
    UnknownId {
        /// What was attempted: `release`, `touch` or `resize`.
        op: String,
        /// The key.
        key: String,
    },
}
