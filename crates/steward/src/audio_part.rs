//! Audio streams under the wiring (playback and capture): their stats join
//! [`crate::Health`], each stream's queued audio is tracked without the user
//! writing it, and at `Critical` it is shed down to the stream's floor.

use std::sync::{Arc, Weak};

use serde::Serialize;
use steward_audio::{Capture, Playback, Stats};

use crate::part_entry::PartEntry;

/// Tracker kind of a playback stream's queued audio.
pub const AUDIO_PLAYBACK_KIND: &str = "audio.playback";

/// Tracker kind of a capture stream's queued audio.
pub const AUDIO_CAPTURE_KIND: &str = "audio.capture";

/// What the wiring needs of a stream.
pub(crate) trait Stream: Send + Sync + 'static {
    /// Its tracker kind.
    const KIND: &'static str;
    fn stats(&self) -> Stats;
    /// Drops queued audio beyond the stream's configured floor; frames.
    fn shed(&self) -> usize;
    /// A counter that moves when audio moves (touches the tracker entry).
    fn progress(stats: &Stats) -> u64;
}

impl Stream for Playback {
    const KIND: &'static str = AUDIO_PLAYBACK_KIND;

    fn stats(&self) -> Stats {
        Playback::stats(self)
    }

    fn shed(&self) -> usize {
        self.shed_queued()
    }

    /// New audio written.
    fn progress(stats: &Stats) -> u64 {
        stats.frames_in
    }
}

impl Stream for Capture {
    const KIND: &'static str = AUDIO_CAPTURE_KIND;

    fn stats(&self) -> Stats {
        Capture::stats(self)
    }

    fn shed(&self) -> usize {
        self.shed_queued()
    }

    /// New chunks cut.
    fn progress(stats: &Stats) -> u64 {
        stats.frames_out
    }
}

/// One stream as the wiring holds it: weakly, so the steward never keeps a
/// device open.
pub(crate) struct StreamPart<S> {
    name: String,
    stream: Weak<S>,
    /// Tracked by queued audio; moving audio touches the entry.
    entry: PartEntry,
}

impl<S: Stream> StreamPart<S> {
    pub(crate) fn new(
        name: &str,
        stream: &Arc<S>,
        #[cfg(feature = "tracker")] tracker: Option<&steward_tracker::Tracker>,
    ) -> Self {
        let entry = PartEntry::new(
            S::KIND,
            name,
            queued_bytes(&stream.stats()),
            #[cfg(feature = "tracker")]
            tracker,
        );
        Self {
            name: name.to_owned(),
            stream: Arc::downgrade(stream),
            entry,
        }
    }

    /// Whether the stream is gone (its last `Arc` dropped).
    pub(crate) fn is_gone(&self) -> bool {
        self.stream.strong_count() == 0
    }

    /// The stream's stats, refreshing its tracker entry on the way (size =
    /// bytes of PCM16 queued, touched when audio moved). `None` once the
    /// stream is gone.
    pub(crate) fn health(&self) -> Option<AudioHealth> {
        let stats = self.stream.upgrade()?.stats();
        self.entry
            .refresh(queued_bytes(&stats), S::progress(&stats));
        Some(AudioHealth {
            name: self.name.clone(),
            stats,
        })
    }

    /// Sheds the stream to its floor; frames dropped (0 once it is gone).
    pub(crate) fn shed(&self) -> usize {
        let Some(stream) = self.stream.upgrade() else {
            return 0;
        };
        let frames = stream.shed();
        // The tracker entry shrinks with the queue.
        let stats = stream.stats();
        self.entry
            .refresh(queued_bytes(&stats), S::progress(&stats));
        frames
    }
}

/// PCM16 mono: two bytes a frame.
fn queued_bytes(stats: &Stats) -> u64 {
    stats.queued_frames.saturating_mul(2)
}

/// An audio stream's name and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AudioHealth {
    /// The name it was added under.
    pub name: String,
    /// Its counters (underruns or overflows, queued frames, shed frames,
    /// errors, device lost).
    pub stats: Stats,
}
