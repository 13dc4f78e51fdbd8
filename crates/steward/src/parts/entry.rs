//! The tracker entry a wired part (WebSocket session, playback stream)
//! keeps: sized by its queued bytes, touched when traffic moved.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One part's tracker entry and the progress counter seen at the last look.
pub(crate) struct PartEntry {
    #[cfg(feature = "tracker")]
    tracked: parking_lot::Mutex<Option<steward_tracker::Tracked>>,
    last_progress: AtomicU64,
}

impl PartEntry {
    /// Tracks the part under `kind` when a tracker is given; a refusal (a
    /// hard budget) is logged and the part simply goes untracked.
    pub(crate) fn new(
        kind: &'static str,
        name: &str,
        queued_bytes: u64,
        tracker: Option<&super::Tracker>,
    ) -> Self {
        #[cfg(not(feature = "tracker"))]
        let _ = (kind, name, queued_bytes, tracker);
        #[cfg(feature = "tracker")]
        let tracked = tracker.and_then(|t| match t.track(kind, queued_bytes) {
            Ok(guard) => Some(guard.with_name(name)),
            Err(error) => {
                tracing::warn!(%error, kind, part = name, "the tracker refused a part");
                None
            }
        });
        Self {
            #[cfg(feature = "tracker")]
            tracked: parking_lot::Mutex::new(tracked),
            last_progress: AtomicU64::new(0),
        }
    }

    /// Resizes the entry to `queued_bytes` and touches it when `progress`
    /// (a monotonic traffic counter) moved since the last look.
    pub(crate) fn refresh(&self, queued_bytes: u64, progress: u64) {
        let moved = self.last_progress.swap(progress, Relaxed) != progress;
        #[cfg(feature = "tracker")]
        if let Some(guard) = self.tracked.lock().as_mut() {
            // Over a budget: keep the old size, the tracker reports it.
            let _ = guard.resize(queued_bytes);
            if moved {
                guard.touch();
            }
        }
        #[cfg(not(feature = "tracker"))]
        let _ = (queued_bytes, moved);
    }
}
