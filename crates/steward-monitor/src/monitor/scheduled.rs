//! `malloc_trim(0)` as the monitor runs it: after the handlers of a level
//! (`MonitorConfig::malloc_trim`) and on a schedule
//! (`MonitorConfig::trim_every`). glibc keeps memory freed by the process
//! for reuse; in a long run with several threads that retention, not a
//! leak, is what makes the RSS creep, and a periodic trim hands it back.

use std::time::Duration;

use tokio::time::Instant;

use super::{Event, HandlerReport, Outcome, Shared, micros, panic_message};
use crate::level::{Level, Reason};

/// What one trim did.
struct Trimmed {
    outcome: Outcome,
    freed_bytes: u64,
    duration: Duration,
}

impl Shared {
    /// The built-in action after a level's handlers, as a handler report.
    pub(super) async fn trim(&self, level: Level, reason: Reason) -> Option<HandlerReport> {
        let Trimmed {
            outcome,
            freed_bytes,
            duration,
        } = self.trim_measured().await?;
        let report = HandlerReport {
            name: "malloc_trim".into(),
            handler_level: Level::Moderate,
            level,
            reason,
            outcome,
            freed_bytes,
            duration_us: micros(duration),
        };
        let _ = self.events.send(Event::HandlerRan(report.clone()));
        Some(report)
    }

    /// A trim on the schedule: counted with the others, no handler report
    /// (no level asked for it).
    pub(super) async fn scheduled_trim(&self) {
        if let Some(t) = self.trim_measured().await {
            self.stats.lock().scheduled_trims += 1;
            if let Outcome::Panicked { message } = t.outcome {
                tracing::warn!(message, "scheduled malloc_trim(0) panicked");
            }
        }
    }

    /// `malloc_trim(0)` with the RSS drop measured and counted; `None` where
    /// glibc is not the C library.
    async fn trim_measured(&self) -> Option<Trimmed> {
        if !crate::trim::SUPPORTED {
            return None;
        }
        let started = Instant::now();
        let before = self.rss.lock().rss();
        // It walks every arena: milliseconds on a large heap, so off the
        // runtime's threads.
        let trimmed = tokio::task::spawn_blocking(crate::trim::malloc_trim).await;
        let after = self.rss.lock().rss();
        let freed_bytes = match (before, after) {
            (Some(b), Some(a)) => b.saturating_sub(a),
            _ => 0,
        };
        let outcome = match trimmed {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Panicked {
                message: panic_message(e),
            },
        };
        {
            let mut stats = self.stats.lock();
            stats.malloc_trims += 1;
            stats.malloc_trim_freed_bytes =
                stats.malloc_trim_freed_bytes.saturating_add(freed_bytes);
        }
        let duration = started.elapsed();
        tracing::debug!(freed_bytes, ?duration, "malloc_trim(0) ran");
        Some(Trimmed {
            outcome,
            freed_bytes,
            duration,
        })
    }
}

/// The trim schedule of the background loop: never due when off.
pub(super) struct Trims(Option<tokio::time::Interval>);

impl Trims {
    pub(super) fn new(every: Option<Duration>) -> Self {
        Self(every.filter(|d| !d.is_zero()).map(|every| {
            let mut i = tokio::time::interval_at(Instant::now() + every, every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        }))
    }

    /// Resolves when the next trim is due. Cancel safe (a tick not taken
    /// stays due).
    pub(super) async fn due(&mut self) {
        match &mut self.0 {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }
}
