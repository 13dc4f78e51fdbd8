//! Playback streams under the wiring: their stats join [`crate::Health`]
//! and each stream's queued audio is tracked without the user writing it.

use std::sync::{Arc, Weak};

use serde::Serialize;
use steward_audio::Playback;

use crate::part_entry::PartEntry;

/// Tracker kind of a playback stream's queued audio.
pub const AUDIO_PLAYBACK_KIND: &str = "audio.playback";

/// One playback stream as the wiring holds it: weakly, so the steward never
/// keeps a device open.
pub(crate) struct PlaybackPart {
    name: String,
    playback: Weak<Playback>,
    /// Tracked by queued audio; new audio (frames in) touches the entry.
    entry: PartEntry,
}

impl PlaybackPart {
    pub(crate) fn new(
        name: &str,
        playback: &Arc<Playback>,
        #[cfg(feature = "tracker")] tracker: Option<&steward_tracker::Tracker>,
    ) -> Self {
        let entry = PartEntry::new(
            AUDIO_PLAYBACK_KIND,
            name,
            queued_bytes(&playback.stats()),
            #[cfg(feature = "tracker")]
            tracker,
        );
        Self {
            name: name.to_owned(),
            playback: Arc::downgrade(playback),
            entry,
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
        self.entry.refresh(queued_bytes(&stats), stats.frames_in);
        Some(AudioHealth {
            name: self.name.clone(),
            stats,
        })
    }
}

/// PCM16 mono: two bytes a frame.
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
