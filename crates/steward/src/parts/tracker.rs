//! The tracker (feature `tracker`): at `Moderate` it reports resources idle
//! past `stale_after`; its snapshot and the last stale report join
//! [`Health`] and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use steward_monitor::{Level, Monitor};
use steward_tracker::{ResourceInfo, Tracker};

use super::{Parts, as_u64, on};
use crate::error::Error;
use crate::health::Health;
use crate::metrics::{Out, f};
use crate::{Steward, StewardBuilder};

/// Handler name, as listed by [`Monitor::handlers`] and in reports.
const TRACKER_STALE: &str = "steward.tracker.stale";

/// The tracker handed in and its stale reports.
pub(crate) struct TrackerPart {
    tracker: Option<Tracker>,
    /// The last stale report, longest idle first.
    last_stale: Mutex<Vec<ResourceInfo>>,
    reports: AtomicU64,
    stale: AtomicU64,
}

impl TrackerPart {
    pub(crate) fn new(tracker: Option<Tracker>) -> Self {
        Self {
            tracker,
            last_stale: Mutex::new(Vec::new()),
            reports: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self) -> Option<&Tracker> {
        self.tracker.as_ref()
    }

    /// The snapshot and the last stale report.
    pub(crate) fn health(&self, h: &mut Health) {
        h.tracker = self.tracker.as_ref().map(Tracker::snapshot);
        h.cleanup.stale_reports = self.reports.load(Relaxed);
        h.cleanup.stale_resources = self.stale.load(Relaxed);
        h.cleanup.stale = self.last_stale.lock().clone();
    }
}

/// Reporting comes after the in-memory and disk work at `Moderate`.
pub(crate) fn register(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
    if parts.tracker.tracker.is_none() {
        return Ok(());
    }
    on(
        monitor,
        parts,
        Level::Moderate,
        200,
        TRACKER_STALE,
        |p, _| async move {
            report_stale(&p);
            Ok(0)
        },
    )
}

/// Lists resources idle past `stale_after`, keeps the longest idle for
/// [`Health`] and logs a summary (kinds and counts, no names or metadata:
/// those may be user data).
fn report_stale(p: &Parts) {
    let t = &p.tracker;
    let Some(tracker) = t.tracker.as_ref() else {
        return;
    };
    // Sessions and streams with traffic since the last look are not stale.
    p.refresh_entries();
    let mut stale = tracker.stale(p.config.stale_after);
    let count = as_u64(stale.len());
    t.reports.fetch_add(1, Relaxed);
    t.stale.store(count, Relaxed);
    if count > 0 {
        let bytes: u64 = stale.iter().map(|r| r.size_bytes).sum();
        let oldest_idle_ms = stale
            .first()
            .map_or(0, |r| u64::try_from(r.idle.as_millis()).unwrap_or(u64::MAX));
        tracing::warn!(
            count,
            bytes,
            oldest_idle_ms,
            "stale resources under memory pressure"
        );
    }
    stale.truncate(p.config.stale_report_max);
    *t.last_stale.lock() = stale;
}

/// The `steward_tracker_*` families, one row per kind (kind names are
/// unique within a tracker).
pub(crate) fn metrics(o: &mut Out, h: &Health) {
    let Some(s) = &h.tracker else {
        return;
    };
    type Get = fn(&steward_tracker::KindStats) -> u64;
    let families: &[(&str, &str, &str, Get)] = &[
        (
            "steward_tracker_live_resources",
            "gauge",
            "Live tracked resources, by kind.",
            |k| k.totals.live_count,
        ),
        (
            "steward_tracker_live_bytes",
            "gauge",
            "Bytes of live tracked resources, by kind.",
            |k| k.totals.live_bytes,
        ),
        (
            "steward_tracker_peak_bytes",
            "gauge",
            "Most live bytes seen, by kind.",
            |k| k.totals.peak_bytes,
        ),
        (
            "steward_tracker_tracked_total",
            "counter",
            "Resources ever tracked, by kind.",
            |k| k.totals.tracked_count,
        ),
        (
            "steward_tracker_released_total",
            "counter",
            "Resources released, by kind.",
            |k| k.totals.released_count,
        ),
        (
            "steward_tracker_released_bytes_total",
            "counter",
            "Bytes released, by kind.",
            |k| k.totals.released_bytes,
        ),
        (
            "steward_tracker_rejected_total",
            "counter",
            "Tracks refused by a hard budget, by kind.",
            |k| k.rejected,
        ),
    ];
    let rows: Vec<(&str, &steward_tracker::KindStats)> =
        s.kinds.iter().map(|k| (k.kind.as_str(), k)).collect();
    crate::metrics::per_row(o, "kind", &rows, families);
    o.single(
        "steward_tracker_leaks_reported_total",
        "counter",
        "Resources reported as leaks.",
        f(s.leaks_reported),
    );
    o.single(
        "steward_tracker_unknown_ids_total",
        "counter",
        "By-key operations on unknown keys.",
        f(s.unknown_ids),
    );
}

impl StewardBuilder {
    /// The tracker reports stale resources at `Moderate`, its snapshot joins
    /// [`Health`], and [`Steward::tracked_manager`] (feature `pool`) tracks
    /// pooled objects with it.
    pub fn tracker(mut self, tracker: Tracker) -> Self {
        self.parts.tracker = Some(tracker);
        self
    }
}

impl Steward {
    /// The tracker handed in.
    #[must_use]
    pub fn tracker(&self) -> Option<&Tracker> {
        self.parts().tracker.get()
    }
}
