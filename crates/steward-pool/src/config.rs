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

/// Configuration of a [`crate::Pool`] (and of each sub-pool of a
/// [`crate::KeyedPool`]). Durations are serialized as
/// `{"secs": .., "nanos": ..}`; `None` switches a limit off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolConfig {
    /// A name for logs, errors and metrics.
    pub name: String,
    /// Most live objects (idle + in use). At least 1.
    pub max_size: usize,
    /// How long `get` waits for a free slot. `None` waits forever.
    pub wait_timeout: Option<Duration>,
    /// Bound on the manager's `create`.
    pub create_timeout: Option<Duration>,
    /// Bound on the manager's `recycle` (health check).
    pub recycle_timeout: Option<Duration>,
    /// Objects older than this are closed, even when in constant use: on
    /// checkout, on return and by the reaper. Checkouts and returns judge it
    /// by the pool's coarse clock (advanced by reaper passes, creates and
    /// every 16th return of an object: a clock read costs as much as a whole
    /// checkout on some machines), so it holds within one reaper interval.
    pub max_lifetime: Option<Duration>,
    /// Idle objects unused for this long are closed by the reaper (never
    /// below `min_idle`). Return times come from the coarse clock (see
    /// `max_lifetime`): within one reaper interval.
    pub idle_timeout: Option<Duration>,
    /// Idle objects the reaper keeps ready (created ahead of demand).
    pub min_idle: usize,
    /// How often the background reaper runs. `None`: no reaper task (call
    /// [`crate::Pool::reap_idle`] yourself).
    pub reaper_interval: Option<Duration>,
    /// Run the manager's `recycle` on checkout.
    pub health_check: bool,
    /// Skip the health check for objects returned less than this long ago.
    /// Zero checks every time.
    pub recent_window: Duration,
    /// Which idle object a checkout takes.
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

/// Configuration of a [`crate::KeyedPool`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyedPoolConfig {
    /// Settings of every per-key sub-pool; its `max_size` is the per-key cap.
    /// Its `reaper_interval` drives the one reaper of the keyed pool.
    pub per_key: PoolConfig,
    /// Most live objects across all keys.
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
