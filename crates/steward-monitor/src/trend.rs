//! Leak trend: the growth rate of process memory over a sliding window, and
//! the `Growing` signal with hysteresis.
//!
//! [`TrendMachine`] is pure, like [`crate::LevelMachine`]: it is fed a
//! figure in bytes and an instant, so it is tested on its own with made-up
//! instants. The monitor feeds it the anonymous resident memory of every
//! check (RSS when the platform cannot tell the anonymous part).
//!
//! **Estimator.** The slope is the Theil–Sen slope ([`crate::theil_sen`]):
//! the median of the slopes between every pair of points, so spikes (up to
//! about 29 % of the points) and a one-off step do not make a trend. Its cost
//! is O(n²) in the number of points, so `n` is bounded: the window keeps at
//! most [`TrendConfig::capacity`] points, **at least `window / capacity`
//! apart** (a sample closer than that to the last kept one is not kept; with
//! the defaults, 30 min and 120 points, one every 15 s). With the default
//! capacity an estimate is 7,140 slopes and one selection, tens of
//! microseconds, done only when a point is added; the scratch buffers are
//! allocated once.
//!
//! **When it speaks.** Nothing is kept during the warm-up (the first
//! [`TrendConfig::warmup`] after the first sample: code paged in, caches and
//! pools filling). A slope is published once the kept points span at least
//! half the window. `Growing` is raised when the slope has stayed at or
//! above [`TrendConfig::growing_bytes_per_hour`] for
//! [`TrendConfig::growing_for`] (every check in that time), and cleared when
//! it has stayed below [`TrendConfig::clear_bytes_per_hour`] for
//! [`TrendConfig::clear_for`].
//!
//! **Steps.** Theil–Sen shrugs off spikes but not a lasting step (a cache
//! filled once, a buffer grown once): while the step is inside the window,
//! the pairs across it tilt the slope, and with noise the median can stay
//! above the rate for most of the window. A step tilts it **only while it
//! is inside the window**, so with `growing_for` at least the window (the
//! default) a lone step, or steps further apart than the window, never
//! raise `Growing`; a staircase of steps closer together is growth, and is
//! raised.
//!
//! **Detection bound.** A leak at a steady rate well above the growing rate
//! (twice or more, with noise a small share of what it leaks per window)
//! that runs from the start is raised at most `warmup + window / 2 +
//! window / capacity + growing_for + interval` after the first sample; one
//! that starts later, at most `window + growing_for + interval` after it
//! started (by then the whole window grows). The defaults give 55 min and
//! 60 min. The integration tests check both bounds.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Error;

/// The largest window capacity accepted (the estimate is O(capacity²)).
const MAX_CAPACITY: usize = 1024;
/// The smallest window capacity accepted.
const MIN_CAPACITY: usize = 4;

/// The leak trend's settings: plain data. Durations are milliseconds when
/// serialised (`"window_ms": 1800000`).
///
/// ```
/// let t: steward_monitor::TrendConfig =
///     serde_json::from_str(r#"{"window_ms": 600000, "growing_bytes_per_hour": 262144,
///                              "clear_bytes_per_hour": 131072}"#).unwrap();
/// assert_eq!(t.window.as_secs(), 600);
/// assert!(t.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrendConfig {
    /// Whether the monitor estimates the trend at all. Default on.
    pub enabled: bool,
    /// Samples in this long after the first are not used. Default 10 min.
    #[serde(
        rename = "warmup_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub warmup: Duration,
    /// The sliding window the slope is estimated over. Default 30 min.
    #[serde(
        rename = "window_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub window: Duration,
    /// Most points kept in the window (4 to 1024), at least `window /
    /// capacity` apart. Default 120.
    pub capacity: usize,
    /// `Growing` is raised when the slope stays at or above this many bytes
    /// per hour. Default 1 MiB/h.
    pub growing_bytes_per_hour: u64,
    /// ... for this long. Default 30 min, the window: at least the window
    /// keeps a lone step from raising it (see the module docs).
    #[serde(
        rename = "growing_for_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub growing_for: Duration,
    /// `Growing` is cleared when the slope stays below this many bytes per
    /// hour (at most `growing_bytes_per_hour`). Default 512 KiB/h.
    pub clear_bytes_per_hour: u64,
    /// ... for this long. Default 10 min.
    #[serde(
        rename = "clear_for_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub clear_for: Duration,
}

impl Default for TrendConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            warmup: Duration::from_secs(600),
            window: Duration::from_secs(1800),
            capacity: 120,
            growing_bytes_per_hour: 1 << 20,
            growing_for: Duration::from_secs(1800),
            clear_bytes_per_hour: 512 << 10,
            clear_for: Duration::from_secs(600),
        }
    }
}

impl TrendConfig {
    /// Checks every range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and explaining its units.
    pub fn validate(&self) -> Result<(), Error> {
        if self.window.is_zero() {
            return Err(Error::invalid(
                "trend.window_ms",
                0,
                "a duration in milliseconds, above 0",
            ));
        }
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(Error::invalid(
                "trend.capacity",
                self.capacity,
                format!(
                    "the number of points kept in the window, {MIN_CAPACITY} to {MAX_CAPACITY}"
                ),
            ));
        }
        if self.growing_bytes_per_hour == 0 {
            return Err(Error::invalid(
                "trend.growing_bytes_per_hour",
                0,
                "a growth rate in bytes per hour, above 0",
            ));
        }
        if self.clear_bytes_per_hour > self.growing_bytes_per_hour {
            return Err(Error::invalid(
                "trend.clear_bytes_per_hour",
                self.clear_bytes_per_hour,
                format!(
                    "bytes per hour, at most growing_bytes_per_hour ({})",
                    self.growing_bytes_per_hour
                ),
            ));
        }
        Ok(())
    }

    /// The least time between two kept points: `window / capacity`.
    #[must_use]
    pub fn spacing(&self) -> Duration {
        let capacity = u32::try_from(self.capacity.max(1)).unwrap_or(u32::MAX);
        self.window / capacity
    }
}

/// Where the trend estimate is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendPhase {
    /// Disabled in the config.
    Off,
    /// No sample yet, or still in the warm-up.
    #[default]
    WarmingUp,
    /// After the warm-up, but the points do not span half the window yet.
    Collecting,
    /// A slope is published.
    Ready,
}

/// Which figure the trend follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendMetric {
    /// Anonymous resident memory (heap, stacks): RSS minus file-backed and
    /// shared pages, where a leak shows.
    #[default]
    Anon,
    /// The whole RSS (where the anonymous part is not known).
    Rss,
}

/// The published trend: plain data, in [`crate::Stats`] and the `Growing`
/// events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Trend {
    /// Where the estimate is.
    pub phase: TrendPhase,
    /// Which figure is followed.
    pub metric: TrendMetric,
    /// The Theil–Sen slope over the window, bytes per hour (negative when
    /// shrinking); `None` until [`TrendPhase::Ready`].
    pub bytes_per_hour: Option<i64>,
    /// Whether the `Growing` signal is raised.
    pub growing: bool,
    /// How long the slope has stayed at or above the growing rate, in
    /// milliseconds (0 when it is below).
    pub above_for_ms: u64,
    /// `Growing` signals raised so far.
    pub raised: u64,
    /// Points in the window.
    pub points: usize,
    /// Time between the first and the last point in the window, in
    /// milliseconds.
    pub span_ms: u64,
    /// The figure's last value, in bytes.
    pub last_bytes: u64,
    /// The rate that raises `Growing`, in bytes per hour (from the config).
    pub growing_bytes_per_hour: u64,
}

/// A change of the `Growing` signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrowthChange {
    /// The slope stayed above the growing rate for `growing_for`.
    Raised,
    /// The slope stayed below the clear rate for `clear_for`.
    Cleared,
}

/// What one observation did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TrendStep {
    /// The trend after it.
    pub trend: Trend,
    /// `Some` when the `Growing` signal was raised or cleared.
    pub change: Option<GrowthChange>,
}

/// The trend's state machine: a bounded window of points, the Theil–Sen
/// slope over them and the `Growing` signal with hysteresis (see the module
/// docs of this file, reproduced in the crate docs).
///
/// ```
/// use std::time::Duration;
/// use steward_monitor::{GrowthChange, TrendConfig, TrendMachine};
/// use tokio::time::Instant;
///
/// let mut config = TrendConfig::default();
/// config.warmup = Duration::ZERO;
/// config.window = Duration::from_secs(3600);
/// config.growing_for = Duration::from_secs(600);
/// let mut m = TrendMachine::new(config);
/// let t0 = Instant::now();
/// let mut raised = None;
/// for minute in 0..120u32 {
///     // 4 MiB an hour.
///     let step = m.observe(t0 + Duration::from_secs(60 * u64::from(minute)), (100 << 20) + u64::from(minute) * (4 << 20) / 60);
///     if step.change == Some(GrowthChange::Raised) && raised.is_none() {
///         raised = Some(minute);
///     }
/// }
/// // Published at half the window (30 min), raised 10 min later.
/// assert_eq!(raised, Some(40));
/// let rate = m.trend().bytes_per_hour.unwrap();
/// assert!((rate - (4 << 20)).abs() < 1 << 10, "{rate}");
/// ```
#[derive(Clone, Debug)]
pub struct TrendMachine {
    config: TrendConfig,
    first: Option<Instant>,
    points: VecDeque<(Instant, u64)>,
    slope: Option<f64>,
    growing: bool,
    above_since: Option<Instant>,
    below_since: Option<Instant>,
    raised: u64,
    last_bytes: u64,
    last_at: Option<Instant>,
    xy: Vec<(f64, f64)>,
    slopes: Vec<f64>,
}

impl TrendMachine {
    /// An empty machine.
    #[must_use]
    pub fn new(config: TrendConfig) -> Self {
        let capacity = config.capacity.clamp(MIN_CAPACITY, MAX_CAPACITY);
        Self {
            config,
            first: None,
            points: VecDeque::with_capacity(capacity),
            slope: None,
            growing: false,
            above_since: None,
            below_since: None,
            raised: 0,
            last_bytes: 0,
            last_at: None,
            xy: Vec::with_capacity(capacity),
            slopes: Vec::with_capacity(capacity * (capacity - 1) / 2),
        }
    }

    /// The config.
    #[must_use]
    pub fn config(&self) -> &TrendConfig {
        &self.config
    }

    /// The slope in bytes per hour, unrounded; `None` until ready.
    #[must_use]
    pub fn slope(&self) -> Option<f64> {
        self.slope
    }

    /// The points in the window, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = (Instant, u64)> + '_ {
        self.points.iter().copied()
    }

    /// The published trend.
    #[must_use]
    pub fn trend(&self) -> Trend {
        let phase = if !self.config.enabled {
            TrendPhase::Off
        } else if self.slope.is_some() {
            TrendPhase::Ready
        } else if self.points.is_empty() {
            TrendPhase::WarmingUp
        } else {
            TrendPhase::Collecting
        };
        let span = match (self.points.front(), self.points.back()) {
            (Some(a), Some(b)) => b.0.saturating_duration_since(a.0),
            _ => Duration::ZERO,
        };
        let above_for = match (self.above_since, self.last_at) {
            (Some(since), Some(now)) => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        };
        Trend {
            phase,
            metric: TrendMetric::default(),
            // Saturating float-to-int cast; rounding to a byte is plenty.
            #[allow(clippy::cast_possible_truncation)]
            bytes_per_hour: self.slope.map(|s| s.round() as i64),
            growing: self.growing,
            above_for_ms: millis_of(above_for),
            raised: self.raised,
            points: self.points.len(),
            span_ms: millis_of(span),
            last_bytes: self.last_bytes,
            growing_bytes_per_hour: self.config.growing_bytes_per_hour,
        }
    }

    /// Feeds the figure observed at `now`. Instants must not go backwards;
    /// an earlier one counts as `now` = the last one.
    pub fn observe(&mut self, now: Instant, bytes: u64) -> TrendStep {
        let now = match self.last_at {
            Some(last) if now < last => last,
            _ => now,
        };
        self.last_at = Some(now);
        self.last_bytes = bytes;
        if !self.config.enabled {
            return self.step(None);
        }
        let first = *self.first.get_or_insert(now);
        if now.saturating_duration_since(first) < self.config.warmup {
            return self.step(None);
        }
        self.add_point(now, bytes);
        let change = self.signal(now);
        self.step(change)
    }

    fn step(&self, change: Option<GrowthChange>) -> TrendStep {
        TrendStep {
            trend: self.trend(),
            change,
        }
    }

    /// Keeps the point when far enough from the last one, drops the points
    /// that left the window and estimates again when anything changed.
    fn add_point(&mut self, now: Instant, bytes: u64) {
        let window = self.config.window;
        let mut changed = false;
        while let Some(&(at, _)) = self.points.front() {
            if now.saturating_duration_since(at) > window {
                self.points.pop_front();
                changed = true;
            } else {
                break;
            }
        }
        let far_enough = self
            .points
            .back()
            .is_none_or(|&(at, _)| now.saturating_duration_since(at) >= self.config.spacing());
        if far_enough {
            if self.points.len() >= self.config.capacity {
                self.points.pop_front();
            }
            self.points.push_back((now, bytes));
            changed = true;
        }
        if changed {
            self.estimate();
        }
    }

    fn estimate(&mut self) {
        self.slope = None;
        let (Some(&(t0, _)), Some(&(t1, _))) = (self.points.front(), self.points.back()) else {
            return;
        };
        if self.points.len() < 3 || t1.saturating_duration_since(t0) < self.config.window / 2 {
            return;
        }
        self.xy.clear();
        // Hours since the first point, bytes: the slope is bytes per hour.
        #[allow(clippy::cast_precision_loss)]
        self.xy.extend(self.points.iter().map(|&(at, bytes)| {
            (
                at.saturating_duration_since(t0).as_secs_f64() / 3600.0,
                bytes as f64,
            )
        }));
        self.slope = crate::theil_sen::slope_with(&self.xy, &mut self.slopes);
    }

    /// The hysteresis of the `Growing` signal.
    fn signal(&mut self, now: Instant) -> Option<GrowthChange> {
        let Some(slope) = self.slope else {
            // Not enough points (a gap emptied the window): no evidence
            // either way, the timers start again.
            self.above_since = None;
            self.below_since = None;
            return None;
        };
        #[allow(clippy::cast_precision_loss)]
        let (grow, clear) = (
            self.config.growing_bytes_per_hour as f64,
            self.config.clear_bytes_per_hour as f64,
        );
        if slope >= grow {
            let since = *self.above_since.get_or_insert(now);
            if !self.growing && now.saturating_duration_since(since) >= self.config.growing_for {
                self.growing = true;
                self.below_since = None;
                self.raised += 1;
                return Some(GrowthChange::Raised);
            }
        } else {
            self.above_since = None;
        }
        if self.growing {
            if slope < clear {
                let since = *self.below_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.config.clear_for {
                    self.growing = false;
                    self.below_since = None;
                    return Some(GrowthChange::Cleared);
                }
            } else {
                self.below_since = None;
            }
        }
        None
    }
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
