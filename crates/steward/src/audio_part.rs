//! Playback streams under the wiring: their stats join [`crate::Health`]
//! and each stream's queued audio is tracked without the user writing it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use serde::Serialize;
use steward_audio::Playback;

/// Tracker kind of a playback stream's queued audio.
pub const AUDIO_PLAYBACK_KIND: &str = "audio.playback";

/// One playback stream as the wiring holds it: weakly, so the steward never
/// keeps a device open.
pub(crate) struct PlaybackPart {
    name: String,
    playback: Weak<Playback>,
    #[cfg(feature = "tracker")]
    tracked: parking_lot::Mutex<Option<steward_tracker::Tracked>>,
    /// Frames written at the last look: new audio touches the entry.
    last_frames_in: AtomicU64,
}

impl PlaybackPart {
    pub(crate) fn new(
        name: &str,
        playback: &Arc<Playback>,
        #[cfg(feature = "tracker")] tracker: Option<&steward_tracker::Tracker>,
    ) -> Self {
        #[cfg(feature = "tracker")]
        let tracked = tracker.and_then(|t| {
            let bytes = queued_bytes(&playback.stats());
            match t.track(AUDIO_PLAYBACK_KIND, bytes) {
                Ok(guard) => Some(guard.with_name(name)),
                Err(error) => {
                    tracing::warn!(%error, stream = name, "the tracker refused a playback stream");
                    None
                }
            }
        });
        Self {
            name: name.to_owned(),
            playback: Arc::downgrade(playback),
            #[cfg(feature = "tracker")]
            tracked: parking_lot::Mutex::new(tracked),
            last_frames_in: AtomicU64::new(0),
        }
    }

    /// Whether the stream is gone (its last `Arc` dropped).
    pub(crate) fn is_gone(&self) -> bool {
        self.playback.strong_count() == 0
    }

    /// The stream's stats, refreshing its tracker entry on the way (size =
    /// bytes of PCM16 queued, touched when new audio was written). `None`
    /// once the stream is gone.
    pub(crate) fn health(&self) -> Option<AudioHealth> {
        let stats = self.playback.upgrade()?.stats();
        let moved = self.last_frames_in.swap(stats.frames_in, Relaxed) != stats.frames_in;
        #[cfg(feature = "tracker")]
        if let Some(guard) = self.tracked.lock().as_mut() {
            // Over a budget: keep the old size, the tracker reports it.
            let _ = guard.resize(queued_bytes(&stats));
            if moved {
                guard.touch();
            }
        }
        #[cfg(not(feature = "tracker"))]
        let _ = moved;
        Some(AudioHealth {
            name: self.name.clone(),
            stats,
        })
    }
}

/// PCM16 mono: two bytes a frame.
#[cfg(feature = "tracker")]
fn queued_bytes(stats: &steward_audio::Stats) -> u64 {
    stats.queued_frames.saturating_mul(2)
}

/// An audio stream's name and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AudioHealth {
    /// The name it was added under.
    pub name: String,
    /// Its counters (underruns, queued frames, errors, device lost).
    pub stats: steward_audio::Stats,
}
