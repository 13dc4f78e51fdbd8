//! Time sources: the process's coarse monotonic clock, or a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A clock that only moves when told to, for tests and simulations: stale and
/// leak reports can then be checked without sleeping.
///
/// Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// let clock = steward_tracker::ManualClock::new();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (millisecond resolution, saturating).
    pub fn advance(&self, by: Duration) {
        let add = duration_ms(by);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ms| {
                Some(ms.saturating_add(add))
            });
    }

    /// Sets the clock. Moving it backwards is allowed; ages then read as zero
    /// rather than negative.
    pub fn set(&self, to: Duration) {
        self.ms.store(duration_ms(to), Ordering::Release);
    }

    /// The time since the clock's zero.
    pub fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms())
    }

    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::Acquire)
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The time source of one tracker, in milliseconds since the tracker's epoch.
#[derive(Debug, Clone)]
pub(crate) enum TimeSource {
    /// `CLOCK_MONOTONIC_COARSE` (a few ms resolution, ~6 ns per read, no
    /// shared cache line written): cheap enough for `touch()`.
    Coarse(coarsetime::Instant),
    /// A test clock.
    Manual(ManualClock),
}

impl TimeSource {
    pub(crate) fn coarse() -> Self {
        Self::Coarse(coarsetime::Instant::now_without_cache_update())
    }

    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            Self::Coarse(epoch) => coarsetime::Instant::now_without_cache_update()
                .duration_since(*epoch)
                .as_millis(),
            Self::Manual(clock) => clock.now_ms(),
        }
    }
}
