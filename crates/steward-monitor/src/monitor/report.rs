//! What the monitor reports: handler listings and runs, events, check
//! results and counters. Plain data, apart from the task that fills it.

use serde::Serialize;

use crate::level::{Level, Reason};
use crate::sample::Sample;
use crate::trend::Trend;

/// A registered handler, as listed by [`Monitor::handlers`](super::Monitor::handlers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandlerInfo {
    /// Its id.
    pub id: HandlerId,
    /// Its name.
    pub name: String,
    /// The lowest level it runs at.
    pub level: Level,
    /// Smaller runs first.
    pub priority: i32,
}

/// Identifies a registered handler, to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct HandlerId(pub(super) u64);

/// How one handler run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// It returned `Ok(bytes)`.
    Ok,
    /// It returned an error.
    Failed {
        /// The error, with its sources.
        error: String,
    },
    /// It panicked; the monitor carries on.
    Panicked {
        /// The panic message, when it was a string.
        message: String,
    },
    /// It ran past the handler timeout and was cancelled.
    TimedOut,
}

/// One handler run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandlerReport {
    /// The handler's name (`malloc_trim` for the built-in action).
    pub name: String,
    /// The level it was registered for.
    pub handler_level: Level,
    /// The level being notified.
    pub level: Level,
    /// Why it ran.
    pub reason: Reason,
    /// How it ended.
    pub outcome: Outcome,
    /// Bytes it says it freed (for `malloc_trim`: the measured RSS drop).
    pub freed_bytes: u64,
    /// How long it ran, in microseconds.
    pub duration_us: u64,
}

/// Something the monitor did, on the broadcast channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The reported level changed.
    LevelChanged {
        /// Before.
        from: Level,
        /// After.
        to: Level,
        /// The sample that caused it.
        sample: Box<Sample>,
    },
    /// A cleanup handler ran.
    HandlerRan(HandlerReport),
    /// Taking a sample failed.
    SampleFailed {
        /// The error, with its sources.
        error: String,
    },
    /// The leak trend's slope stayed at or above the growing rate for the
    /// configured time: memory keeps growing.
    Growing {
        /// The trend at that moment (slope, window, threshold).
        trend: Trend,
        /// The sample that raised it.
        sample: Box<Sample>,
    },
    /// The slope stayed below the clear rate for the configured time.
    GrowthCleared {
        /// The trend at that moment.
        trend: Trend,
    },
}

/// The result of one [`Monitor::check_now`](super::Monitor::check_now).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// The sample taken.
    pub sample: Sample,
    /// The level the sample reaches on its own.
    pub raw_level: Level,
    /// The reported level after hysteresis.
    pub level: Level,
    /// `Some((from, to))` when the reported level changed.
    pub change: Option<(Level, Level)>,
    /// Why handlers ran, when they did.
    pub reason: Option<Reason>,
    /// The handler runs, in order.
    pub handlers: Vec<HandlerReport>,
}

/// Counters since start, as a plain snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The reported level.
    pub level: Level,
    /// The raw level of the last sample.
    pub raw_level: Level,
    /// Samples taken (checks and `sample_now`).
    pub samples: u64,
    /// Samples that failed.
    pub sample_errors: u64,
    /// Checks done (background ticks and `check_now`).
    pub checks: u64,
    /// Changes of the reported level.
    pub level_changes: u64,
    /// Cleanup rounds (rising notifications plus re-notifications).
    pub notifications: u64,
    /// Of which critical re-notifications.
    pub renotifications: u64,
    /// Handler runs, all outcomes.
    pub handler_runs: u64,
    /// Handlers that returned an error.
    pub handler_failures: u64,
    /// Handlers that panicked.
    pub handler_panics: u64,
    /// Handlers cancelled at the timeout.
    pub handler_timeouts: u64,
    /// Sum of the bytes handlers said they freed.
    pub freed_bytes_reported: u64,
    /// `malloc_trim` calls (after handlers and on the schedule).
    pub malloc_trims: u64,
    /// Of those, the ones `MonitorConfig::trim_every` ran.
    pub scheduled_trims: u64,
    /// Sum of the RSS drops measured around `malloc_trim`.
    pub malloc_trim_freed_bytes: u64,
    /// The last sample taken.
    pub last_sample: Option<Sample>,
    /// The leak trend: growth rate over the window, the `Growing` signal.
    pub trend: Trend,
}
