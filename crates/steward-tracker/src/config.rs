//! Plain-data configuration: [`TrackerConfig`] and per-kind [`Budget`]s.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits for one kind of resource. Every limit is optional.
///
/// - crossing `soft_bytes` upwards emits one [`Event::SoftBudgetExceeded`]
///   (and falling back to or below it one [`Event::SoftBudgetRecovered`],
///   which re-arms the soft budget);
/// - `hard_bytes` and `hard_count` make `track` and `resize` fail with
///   [`Error::OverBudget`] instead of going over.
///
/// [`Event::SoftBudgetExceeded`]: crate::Event::SoftBudgetExceeded
/// [`Event::SoftBudgetRecovered`]: crate::Event::SoftBudgetRecovered
/// [`Error::OverBudget`]: crate::Error::OverBudget
///
/// An unknown field is a deserialization error. `#[non_exhaustive]`: build
/// one with [`Budget::new`] and the `with_*` methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Budget {
    /// Live bytes above which an event is emitted.
    pub soft_bytes: Option<u64>,
    /// Live bytes that may never be exceeded.
    pub hard_bytes: Option<u64>,
    /// Live resources that may never be exceeded.
    pub hard_count: Option<u64>,
}

impl Budget {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the soft byte budget.
    #[must_use]
    pub fn with_soft_bytes(mut self, bytes: u64) -> Self {
        self.soft_bytes = Some(bytes);
        self
    }

    /// Sets the hard byte budget.
    #[must_use]
    pub fn with_hard_bytes(mut self, bytes: u64) -> Self {
        self.hard_bytes = Some(bytes);
        self
    }

    /// Sets the hard budget on the number of live resources.
    #[must_use]
    pub fn with_hard_count(mut self, count: u64) -> Self {
        self.hard_count = Some(count);
        self
    }

    /// Why this budget is unusable, if it is.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        match (self.soft_bytes, self.hard_bytes) {
            (Some(soft), Some(hard)) if soft > hard => {
                Some("the soft byte budget is above the hard byte budget")
            }
            (Some(u64::MAX), _) | (_, Some(u64::MAX)) => {
                Some("u64::MAX bytes is reserved to mean `no budget`")
            }
            _ if self.hard_count == Some(u64::MAX) => {
                Some("u64::MAX resources is reserved to mean `no budget`")
            }
            _ => None,
        }
    }
}

/// Everything a [`Tracker`](crate::Tracker) can be configured with, as plain
/// data (serde, `Default`).
///
/// Serialized, the leak age is an integer of milliseconds,
/// `"leak_after_ms"`; a missing field takes its default, an unknown one is an
/// error. `#[non_exhaustive]`: build one with `TrackerConfig::default()` and
/// assign fields, or use [`Tracker::builder`](crate::Tracker::builder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrackerConfig {
    /// How many of the largest and of the oldest resources a
    /// [`Snapshot`](crate::Snapshot) lists. Default 10.
    pub top_n: usize,
    /// A resource alive this long is reported as a leak, once, by
    /// [`Tracker::check_leaks`](crate::Tracker::check_leaks) (millisecond
    /// resolution). `None` (the default; absent or `null` when serialized)
    /// never reports leaks.
    #[serde(
        rename = "leak_after_ms",
        with = "serde_with::As::<Option<serde_with::DurationMilliSeconds<u64>>>"
    )]
    pub leak_after: Option<Duration>,
    /// Budgets by kind name. Default none.
    pub budgets: BTreeMap<String, Budget>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            top_n: 10,
            leak_after: None,
            budgets: BTreeMap::new(),
        }
    }
}
