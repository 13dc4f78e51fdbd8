//! The monitor's configuration: plain data.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::level::Thresholds;
use crate::trend::TrendConfig;

/// The longest sampling interval accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// The largest event buffer accepted.
const MAX_EVENT_CAPACITY: usize = 1 << 16;

/// How the monitor samples, classifies and cleans up. Durations are
/// milliseconds when serialised (`"interval_ms": 2000`).
///
/// ```
/// let config: steward_monitor::MonitorConfig = serde_json::from_str(
///     r#"{"interval_ms": 500, "thresholds": {"moderate": {"fraction": 0.6}}}"#,
/// ).unwrap();
/// assert_eq!(config.interval.as_millis(), 500);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// Time between two samples, at most one day. Default 2 s.
    #[serde(
        rename = "interval_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub interval: Duration,
    /// How long the raw level must stay below the reported one before the
    /// reported level falls by one. Default 10 s.
    #[serde(
        rename = "cooldown_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub cooldown: Duration,
    /// While `Critical`, run the critical handlers again this often. Default 10 s.
    #[serde(
        rename = "critical_renotify_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub critical_renotify: Duration,
    /// Longest a single cleanup handler may run before it is cancelled. Default 5 s.
    #[serde(
        rename = "handler_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub handler_timeout: Duration,
    /// Level thresholds.
    pub thresholds: Thresholds,
    /// After the handlers ran, call glibc's `malloc_trim(0)` to return freed
    /// heap to the OS (Linux with glibc only; a no-op elsewhere). Default off.
    pub malloc_trim: bool,
    /// Also call `malloc_trim(0)` this often, whatever the level: glibc
    /// keeps memory a multi-threaded process freed, and over hours that
    /// retention grows the RSS like a slow leak. `None` (the default) or
    /// zero: never on a schedule.
    #[serde(
        rename = "trim_every_ms",
        with = "serde_with::As::<Option<serde_with::DurationMilliSeconds<u64>>>"
    )]
    pub trim_every: Option<Duration>,
    /// Capacity of the event broadcast channel (1 to 65536); slow
    /// subscribers lag and skip events. Default 64.
    pub event_capacity: usize,
    /// The leak trend: growth rate over a sliding window after a warm-up,
    /// and when to raise `Growing`.
    pub trend: TrendConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            cooldown: Duration::from_secs(10),
            critical_renotify: Duration::from_secs(10),
            handler_timeout: Duration::from_secs(5),
            thresholds: Thresholds::default(),
            malloc_trim: false,
            trim_every: None,
            event_capacity: 64,
            trend: TrendConfig::default(),
        }
    }
}

impl MonitorConfig {
    /// Checks every range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and explaining its units.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("interval_ms", self.interval),
            ("critical_renotify_ms", self.critical_renotify),
            ("handler_timeout_ms", self.handler_timeout),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(Error::invalid(
                    field,
                    "0",
                    "a duration in milliseconds, above 0",
                ));
            }
        }
        if self.interval > MAX_INTERVAL {
            return Err(Error::invalid(
                "interval_ms",
                self.interval.as_millis(),
                "a duration in milliseconds, at most one day (86400000)",
            ));
        }
        if !(1..=MAX_EVENT_CAPACITY).contains(&self.event_capacity) {
            return Err(Error::invalid(
                "event_capacity",
                self.event_capacity,
                format!("the number of events buffered for subscribers, 1 to {MAX_EVENT_CAPACITY}"),
            ));
        }
        self.thresholds.validate()?;
        self.trend.validate()
    }
}
