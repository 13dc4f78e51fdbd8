//! The monitor's leak trend as the steward shows it, with the tracker's
//! per-kind totals attached to the `Growing` signal.
//!
//! A task follows the monitor's events (it holds a receiver and the parts,
//! never the monitor, so it ends when the monitor does). At the end of the
//! trend's warm-up it notes every tracked kind's live count and bytes; when
//! the monitor raises `Growing`, it attaches each kind's totals then and
//! their change since that baseline, largest byte growth first, so the user
//! sees which kind of resource grew with the process.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use steward_monitor::{Event, Monitor, TrendMetric, TrendPhase};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

use crate::parts::Parts;

/// The leak trend in [`crate::Health`]: the monitor's slope and the
/// `Growing` signal.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GrowthHealth {
    /// Where the estimate is (warming up, collecting, ready, off).
    pub phase: TrendPhase,
    /// Which figure is followed (anonymous resident memory, or RSS).
    pub metric: TrendMetric,
    /// The Theil–Sen slope over the monitor's window, bytes per hour;
    /// `None` until ready.
    pub bytes_per_hour: Option<i64>,
    /// Whether the `Growing` signal is raised.
    pub growing: bool,
    /// The rate that raises it, bytes per hour.
    pub growing_bytes_per_hour: u64,
    /// `Growing` signals raised since the start.
    pub raised: u64,
    /// The signal while it is raised, with the tracker's kinds.
    pub signal: Option<GrowingSignal>,
}

/// A raised `Growing` signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GrowingSignal {
    /// When it was raised, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The slope that raised it, bytes per hour.
    pub bytes_per_hour: Option<i64>,
    /// The memory figure then, bytes.
    pub bytes: u64,
    /// Every tracked kind's totals then and their change since the end of
    /// the warm-up, largest byte growth first (empty without a tracker).
    pub kinds: Vec<KindGrowth>,
}

/// One tracked kind when `Growing` was raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KindGrowth {
    /// The kind, e.g. `ws.session`.
    pub kind: String,
    /// Live resources then.
    pub live_count: u64,
    /// Their bytes then.
    pub live_bytes: u64,
    /// Live resources then minus at the end of the warm-up.
    pub count_change: i64,
    /// Live bytes then minus at the end of the warm-up.
    pub bytes_change: i64,
}

/// The signal state the task keeps for [`crate::Steward::health`].
#[derive(Default)]
pub(crate) struct GrowthState {
    /// `(kind, live_count, live_bytes)` at the end of the warm-up.
    baseline: Mutex<Option<Vec<(String, u64, u64)>>>,
    signal: Mutex<Option<GrowingSignal>>,
}

impl GrowthState {
    pub(crate) fn health(&self, trend: &steward_monitor::Trend) -> GrowthHealth {
        GrowthHealth {
            phase: trend.phase,
            metric: trend.metric,
            bytes_per_hour: trend.bytes_per_hour,
            growing: trend.growing,
            growing_bytes_per_hour: trend.growing_bytes_per_hour,
            raised: trend.raised,
            signal: if trend.growing {
                self.signal.lock().clone()
            } else {
                None
            },
        }
    }
}

/// `(kind, live_count, live_bytes)` of every kind the tracker knows.
fn kind_totals(parts: &Parts) -> Vec<(String, u64, u64)> {
    #[cfg(feature = "tracker")]
    if let Some(tracker) = parts.tracker.get() {
        return tracker
            .snapshot()
            .kinds
            .into_iter()
            .map(|k| (k.kind, k.totals.live_count, k.totals.live_bytes))
            .collect();
    }
    let _ = parts;
    Vec::new()
}

fn signed_change(now: u64, then: u64) -> i64 {
    if now >= then {
        i64::try_from(now - then).unwrap_or(i64::MAX)
    } else {
        i64::try_from(then - now).map_or(i64::MIN, |d| -d)
    }
}

/// Each kind now, with its change since `baseline` (a kind absent from it
/// started at zero), largest byte growth first.
pub(crate) fn kinds_against(
    now: Vec<(String, u64, u64)>,
    baseline: &[(String, u64, u64)],
) -> Vec<KindGrowth> {
    let mut kinds: Vec<KindGrowth> = now
        .into_iter()
        .map(|(kind, live_count, live_bytes)| {
            let (count0, bytes0) = baseline
                .iter()
                .find(|(k, ..)| *k == kind)
                .map_or((0, 0), |(_, c, b)| (*c, *b));
            KindGrowth {
                count_change: signed_change(live_count, count0),
                bytes_change: signed_change(live_bytes, bytes0),
                kind,
                live_count,
                live_bytes,
            }
        })
        .collect();
    kinds.sort_by(|a, b| {
        b.bytes_change
            .cmp(&a.bytes_change)
            .then(b.count_change.cmp(&a.count_change))
    });
    kinds
}

/// The task that follows the trend's events: aborted when dropped, so it
/// stops with the `Steward` that owns it.
pub(crate) struct Watch(tokio::task::JoinHandle<()>);

impl Watch {
    /// Aborts the task and waits until it has ended.
    pub(crate) async fn stop(mut self) {
        self.0.abort();
        // Cancelled is the expected outcome; the task never panics on
        // purpose, and a panic has been reported by the runtime already.
        let _ = (&mut self.0).await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the task that follows the monitor's trend events.
pub(crate) fn watch(monitor: &Monitor, parts: &Arc<Parts>) -> Watch {
    let mut events = monitor.subscribe();
    let config = monitor.config();
    // The monitor's trend starts at its first check, one interval after
    // it was built.
    let warmup = config.trend.warmup + config.interval;
    let parts = Arc::clone(parts);
    let span = tracing::info_span!("steward_growth_watch");
    let task = tokio::spawn(
        async move {
            let baseline_at = tokio::time::sleep(warmup);
            tokio::pin!(baseline_at);
            let mut baseline_taken = false;
            loop {
                tokio::select! {
                    () = &mut baseline_at, if !baseline_taken => {
                        baseline_taken = true;
                        *parts.growth.baseline.lock() = Some(kind_totals(&parts));
                    }
                    event = events.recv() => match event {
                        Ok(Event::Growing { trend, sample }) => {
                            on_growing(&parts, &trend, &sample);
                        }
                        Ok(Event::GrowthCleared { .. }) => {
                            *parts.growth.signal.lock() = None;
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => break,
                    },
                }
            }
        }
        .instrument(span),
    );
    Watch(task)
}

fn on_growing(parts: &Parts, trend: &steward_monitor::Trend, sample: &steward_monitor::Sample) {
    let baseline = parts.growth.baseline.lock().clone().unwrap_or_default();
    let kinds = kinds_against(kind_totals(parts), &baseline);
    let top: Vec<String> = kinds
        .iter()
        .filter(|k| k.bytes_change > 0 || k.count_change > 0)
        .take(3)
        .map(|k| {
            format!(
                "{} {:+} bytes, {:+} live",
                k.kind, k.bytes_change, k.count_change
            )
        })
        .collect();
    tracing::warn!(
        bytes_per_hour = trend.bytes_per_hour,
        grew = ?top,
        "memory keeps growing; tracked kinds since the warm-up"
    );
    let (bytes, _) = sample.trend_bytes();
    *parts.growth.signal.lock() = Some(GrowingSignal {
        unix_ms: sample.unix_ms,
        bytes_per_hour: trend.bytes_per_hour,
        bytes,
        kinds,
    });
}
