//! Pressure levels, thresholds and the hysteresis state machine.
//!
//! [`LevelMachine`] is pure: it is fed a raw level and a time and says what
//! the reported level is and whether to notify, so it is tested on its own
//! with scripted sequences and made-up instants.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Error;
use crate::sample::Sample;

/// Memory pressure, in the spirit of Chromium's memory pressure levels and
/// Android's `onTrimMemory`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No pressure.
    #[default]
    None,
    /// Free what is cheap to rebuild (caches, idle connections).
    Moderate,
    /// Free everything that can go; the process is close to its limit.
    Critical,
}

impl Level {
    /// The level just below this one (`None` stays `None`).
    #[must_use]
    pub fn below(self) -> Self {
        match self {
            Self::Critical => Self::Moderate,
            Self::Moderate | Self::None => Self::None,
        }
    }

    /// `"none"`, `"moderate"` or `"critical"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Moderate => "moderate",
            Self::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When one level is reached. Every criterion that is set counts on its own
/// (any one reached is enough); a level with no criterion set is never
/// reached.
///
/// The byte and fraction criteria compare the process's RSS. The memory
/// cgroup's own usage (`CgroupMemory::usage_bytes`) is reported in the
/// sample but not compared: it counts page cache the kernel reclaims first
/// and every other process of the cgroup. PSI criteria are off by default;
/// they see the whole machine (or the whole v2 cgroup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LevelThresholds {
    /// RSS as a fraction of the limit, 0.0–1.0 (0.8 means 80 %), where the
    /// limit is the smaller of the cgroup limit and physical memory.
    pub fraction: Option<f64>,
    /// RSS in bytes.
    pub bytes: Option<u64>,
    /// PSI `some avg10`: percent (0–100) of the last 10 s in which some
    /// task stalled on memory.
    pub psi_some_avg10: Option<f64>,
    /// PSI `full avg10`: percent (0–100) of the last 10 s in which all
    /// non-idle tasks stalled on memory at once.
    pub psi_full_avg10: Option<f64>,
}

impl LevelThresholds {
    /// Whether `sample` reaches this level.
    #[must_use]
    pub fn reached_by(&self, sample: &Sample) -> bool {
        let by_fraction = self
            .fraction
            .is_some_and(|f| sample.limit_bytes > 0 && sample.fraction() >= f);
        let by_bytes = self.bytes.is_some_and(|b| sample.rss_bytes >= b);
        let psi = sample.psi.as_ref();
        let by_some = self
            .psi_some_avg10
            .is_some_and(|t| psi.is_some_and(|p| p.some.avg10 >= t));
        let by_full = self.psi_full_avg10.is_some_and(|t| {
            psi.and_then(|p| p.full.as_ref())
                .is_some_and(|full| full.avg10 >= t)
        });
        by_fraction || by_bytes || by_some || by_full
    }

    fn validate(&self, level: &'static str) -> Result<(), Error> {
        let field = |name: &'static str| -> &'static str {
            match (level, name) {
                ("moderate", "fraction") => "moderate.fraction",
                ("moderate", "bytes") => "moderate.bytes",
                ("moderate", "psi_some_avg10") => "moderate.psi_some_avg10",
                ("moderate", "psi_full_avg10") => "moderate.psi_full_avg10",
                ("critical", "fraction") => "critical.fraction",
                ("critical", "bytes") => "critical.bytes",
                ("critical", "psi_some_avg10") => "critical.psi_some_avg10",
                _ => "critical.psi_full_avg10",
            }
        };
        if let Some(f) = self.fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(Error::invalid(
                field("fraction"),
                f,
                "a fraction of the memory limit must be above 0.0 and at most 1.0 \
                 (0.8 means 80 % of the limit; it is not a percentage)",
            ));
        }
        if self.bytes == Some(0) {
            return Err(Error::invalid(
                field("bytes"),
                0,
                "an absolute threshold is RSS in bytes and must be above 0",
            ));
        }
        for (name, value) in [
            ("psi_some_avg10", self.psi_some_avg10),
            ("psi_full_avg10", self.psi_full_avg10),
        ] {
            if let Some(v) = value
                && !(v > 0.0 && v <= 100.0)
            {
                return Err(Error::invalid(
                    field(name),
                    v,
                    "a PSI threshold is a percentage of stalled time, above 0 and at most 100 \
                     (the kernel's avg10 unit)",
                ));
            }
        }
        Ok(())
    }
}

/// Thresholds for both levels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Thresholds {
    /// When `Moderate` is reached. Default: 70 % of the limit.
    pub moderate: LevelThresholds,
    /// When `Critical` is reached. Default: 85 % of the limit.
    pub critical: LevelThresholds,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            moderate: LevelThresholds {
                fraction: Some(0.70),
                ..LevelThresholds::default()
            },
            critical: LevelThresholds {
                fraction: Some(0.85),
                ..LevelThresholds::default()
            },
        }
    }
}

impl Thresholds {
    /// The raw level of one sample: the highest level it reaches.
    ///
    /// ```
    /// use steward_monitor::{Level, Sample, Thresholds};
    /// let t = Thresholds::default();
    /// assert_eq!(t.classify(&Sample::with_rss(50, 100)), Level::None);
    /// assert_eq!(t.classify(&Sample::with_rss(70, 100)), Level::Moderate);
    /// assert_eq!(t.classify(&Sample::with_rss(90, 100)), Level::Critical);
    /// ```
    #[must_use]
    pub fn classify(&self, sample: &Sample) -> Level {
        if self.critical.reached_by(sample) {
            Level::Critical
        } else if self.moderate.reached_by(sample) {
            Level::Moderate
        } else {
            Level::None
        }
    }

    /// Checks ranges and that `critical` is not below `moderate`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and its units.
    pub fn validate(&self) -> Result<(), Error> {
        self.moderate.validate("moderate")?;
        self.critical.validate("critical")?;
        let (m, c) = (&self.moderate, &self.critical);
        if let (Some(m), Some(c)) = (m.fraction, c.fraction)
            && c < m
        {
            return Err(Error::invalid(
                "critical.fraction",
                c,
                format!("must not be below moderate.fraction ({m}); both are fractions 0.0–1.0"),
            ));
        }
        if let (Some(m), Some(c)) = (m.bytes, c.bytes)
            && c < m
        {
            return Err(Error::invalid(
                "critical.bytes",
                c,
                format!("must not be below moderate.bytes ({m}); both are RSS in bytes"),
            ));
        }
        Ok(())
    }
}

/// Why cleanup handlers are asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The level just rose.
    Rising,
    /// Still `Critical` after the re-notify interval.
    Renotify,
}

/// What one step of the state machine decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// The reported level after this step.
    pub level: Level,
    /// `Some((from, to))` when the reported level changed.
    pub change: Option<(Level, Level)>,
    /// `Some(reason)` when the handlers for `level` should run.
    pub notify: Option<Reason>,
}

/// The hysteresis state machine.
///
/// - A rise is reported at once, to the raw level (it may jump from `None`
///   to `Critical`), and notifies.
/// - A fall goes down **one level at a time**, each step only after the raw
///   level has stayed below the reported level for a whole `cooldown`
///   (counted from the first such sample, and never from before the last
///   change). So `Critical` to `None` takes two cooldowns. Falls do not
///   notify.
/// - While the raw level is `Critical` and so is the reported level, it
///   re-notifies every `renotify` (measured from the last notification).
///   During a cooldown out of `Critical` it does not: pressure is easing.
///
/// ```
/// use std::time::Duration;
/// use steward_monitor::{Level, LevelMachine, Reason};
/// use tokio::time::Instant;
///
/// let s = Duration::from_secs(1);
/// let mut m = LevelMachine::new(10 * s, 30 * s);
/// let t0 = Instant::now();
/// assert_eq!(m.step(Level::Critical, t0).notify, Some(Reason::Rising));
/// assert_eq!(m.step(Level::None, t0 + s).level, Level::Critical);
/// assert_eq!(m.step(Level::None, t0 + 11 * s).level, Level::Moderate);
/// assert_eq!(m.step(Level::None, t0 + 21 * s).level, Level::None);
/// ```
#[derive(Clone, Debug)]
pub struct LevelMachine {
    cooldown: Duration,
    renotify: Duration,
    level: Level,
    /// First sample of the current run of raw levels below `level`.
    below_since: Option<Instant>,
    last_notify: Option<Instant>,
}

impl LevelMachine {
    /// A machine at `Level::None`.
    #[must_use]
    pub fn new(cooldown: Duration, renotify: Duration) -> Self {
        Self {
            cooldown,
            renotify,
            level: Level::None,
            below_since: None,
            last_notify: None,
        }
    }

    /// The reported level.
    #[must_use]
    pub fn level(&self) -> Level {
        self.level
    }

    /// Feeds one raw level observed at `now` (times must not go backwards;
    /// if they do, the step counts as no time elapsed).
    pub fn step(&mut self, raw: Level, now: Instant) -> Step {
        let from = self.level;
        if raw > from {
            self.level = raw;
            self.below_since = None;
            self.last_notify = Some(now);
            return Step {
                level: raw,
                change: Some((from, raw)),
                notify: Some(Reason::Rising),
            };
        }
        if raw == from {
            self.below_since = None;
            let due = self
                .last_notify
                .is_none_or(|t| now.saturating_duration_since(t) >= self.renotify);
            let notify = (from == Level::Critical && due).then(|| {
                self.last_notify = Some(now);
                Reason::Renotify
            });
            return Step {
                level: from,
                change: None,
                notify,
            };
        }
        // raw < level: cool down.
        let since = *self.below_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.cooldown {
            return Step {
                level: from,
                change: None,
                notify: None,
            };
        }
        let to = from.below();
        self.level = to;
        // The next step down needs a full cooldown of its own.
        self.below_since = (raw < to).then_some(now);
        Step {
            level: to,
            change: Some((from, to)),
            notify: None,
        }
    }
}
