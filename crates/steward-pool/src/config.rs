//! Plain-data configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which idle object a checkout takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueMode {
    /// The most recently returned: keeps a hot set warm and lets the rest
    /// expire by `idle_timeout` (the default).
    #[default]
    Lifo,
    /// The least recently returned: spreads use over all idle objects.
    Fifo,
}

/// The serde form of every duration here: an integer of milliseconds.
type Millis = serde_with::As<serde_with::DurationMilliSeconds<u64>>;
/// The same for an optional limit: absent or `null` switches it off.
type OptionMillis = serde_with::As<Option<serde_with::DurationMilliSeconds<u64>>>;

/// Configuration of a [`crate::Pool`] (and of each sub-pool of a
/// [`crate::KeyedPool`]).
///
/// Serialized, a duration is an integer of milliseconds under its name with
/// `_ms` appended (`"wait_timeout_ms": 30000`); `null` switches a limit off.
/// A missing field takes its default, an unknown one is an error. Build one
/// in code with `PoolConfig::default()` and assign fields (the struct is
/// `#[non_exhaustive]`), or use [`crate::Pool::builder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// A name for logs, errors and metrics. Default `"pool"`.
    pub name: String,
    /// Most live objects (idle + in use). At least 1. Default 16.
    pub max_size: usize,
    /// How long `get` waits for a free slot. `None` waits forever.
    /// Default 30 s.
    #[serde(rename = "wait_timeout_ms", with = "OptionMillis")]
    pub wait_timeout: Option<Duration>,
    /// Bound on the manager's `create`. Default 30 s.
    #[serde(rename = "create_timeout_ms", with = "OptionMillis")]
    pub create_timeout: Option<Duration>,
    /// Bound on the manager's `recycle` (health check). Default 5 s.
    #[serde(rename = "recycle_timeout_ms", with = "OptionMillis")]
    pub recycle_timeout: Option<Duration>,
    /// Objects older than this are closed, even when in constant use: on
    /// checkout, on return and by the reaper. Checkouts and returns judge it
    /// by the pool's coarse clock (advanced by reaper passes, creates and
    /// every 16th return of an object: a clock read costs as much as a whole
    /// checkout on some machines), so it holds within one reaper interval.
    /// Default 30 min.
    #[serde(rename = "max_lifetime_ms", with = "OptionMillis")]
    pub max_lifetime: Option<Duration>,
    /// Idle objects unused for this long are closed by the reaper (never
    /// below `min_idle`). Return times come from the coarse clock (see
    /// `max_lifetime`): within one reaper interval. Default 10 min.
    #[serde(rename = "idle_timeout_ms", with = "OptionMillis")]
    pub idle_timeout: Option<Duration>,
    /// Idle objects the reaper keeps ready (created ahead of demand).
    /// Default 0.
    pub min_idle: usize,
    /// How often the background reaper runs. `None`: no reaper task (call
    /// [`crate::Pool::reap_idle`] yourself). Default 30 s.
    #[serde(rename = "reaper_interval_ms", with = "OptionMillis")]
    pub reaper_interval: Option<Duration>,
    /// Run the manager's `recycle` on checkout. Default `true`.
    pub health_check: bool,
    /// Skip the health check for objects returned less than this long ago.
    /// Zero (the default) checks every time.
    #[serde(rename = "recent_window_ms", with = "Millis")]
    pub recent_window: Duration,
    /// Which idle object a checkout takes. Default [`QueueMode::Lifo`].
    pub queue_mode: QueueMode,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            name: "pool".into(),
            max_size: 16,
            wait_timeout: Some(Duration::from_secs(30)),
            create_timeout: Some(Duration::from_secs(30)),
            recycle_timeout: Some(Duration::from_secs(5)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            min_idle: 0,
            reaper_interval: Some(Duration::from_secs(30)),
            health_check: true,
            recent_window: Duration::ZERO,
            queue_mode: QueueMode::Lifo,
        }
    }
}

impl PoolConfig {
    /// Checks the limits fit together; returns what is wrong.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.max_size == 0 {
            return Some("max_size must be at least 1".into());
        }
        if self.min_idle > self.max_size {
            return Some(format!(
                "min_idle ({}) exceeds max_size ({})",
                self.min_idle, self.max_size
            ));
        }
        if self.reaper_interval.is_some_and(|d| d.is_zero()) {
            return Some("reaper_interval must be positive (or None)".into());
        }
        None
    }
}

/// Configuration of a [`crate::KeyedPool`], serialized like
/// [`PoolConfig`] (unknown fields are an error). Build one in code with
/// `KeyedPoolConfig::default()` and assign fields, or use
/// [`crate::KeyedPool::builder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyedPoolConfig {
    /// Settings of every per-key sub-pool; its `max_size` is the per-key cap.
    /// Its `reaper_interval` drives the one reaper of the keyed pool.
    /// Default: [`PoolConfig::default`] named `"keyed"` with `max_size` 4.
    pub per_key: PoolConfig,
    /// Most live objects across all keys. At least 1. Default 64.
    pub max_total: usize,
}

impl Default for KeyedPoolConfig {
    fn default() -> Self {
        Self {
            per_key: PoolConfig {
                name: "keyed".into(),
                max_size: 4,
                ..PoolConfig::default()
            },
            max_total: 64,
        }
    }
}
