//! The playback side, reached through a small trait.
//!
//! steward-realtime never depends on an audio stack: [`Playout`] is what it
//! needs of one (write, the played position, clear). With the `audio`
//! feature steward-audio's `Playback` implements it.

use std::time::Instant;

/// A clear that reached the audio callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClearedAt {
    /// Which clear (see [`Playout::clear`]).
    pub generation: u64,
    /// When the callback wrote its first silent sample for it.
    pub at: Instant,
    /// [`Playout::played_frames`] at that moment, when the playout knows
    /// it: what had been played when the queued audio was dropped.
    pub played_frames: Option<u64>,
}

impl ClearedAt {
    /// A clear `generation` applied at `at`.
    #[must_use]
    pub fn new(generation: u64, at: Instant) -> Self {
        Self {
            generation,
            at,
            played_frames: None,
        }
    }

    /// The same clear, applied with the playout at `frames` played.
    #[must_use]
    pub fn with_played_frames(mut self, frames: u64) -> Self {
        self.played_frames = Some(frames);
        self
    }
}

/// Why the playout refused audio.
#[derive(Debug, thiserror::Error)]
#[error("playout: {message}")]
#[non_exhaustive]
pub struct PlayoutError {
    /// What the audio stack said.
    pub message: String,
}

impl PlayoutError {
    /// An error with this message.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Where model audio (PCM16 mono 24 kHz, little-endian) is played.
///
/// Positions are frames at 24 kHz. Implementations must be cheap to call
/// from an async task: none of these methods may block.
pub trait Playout: Send + Sync + 'static {
    /// Queues as much of `pcm16` as fits now (whole samples) and returns the
    /// bytes taken.
    ///
    /// # Errors
    /// When the device is gone for good.
    fn try_write(&self, pcm16: &[u8]) -> Result<usize, PlayoutError>;

    /// Frames consumed so far: played by the device callback (silence not
    /// counted) or dropped by the stack itself (shedding). Never decreases.
    fn played_frames(&self) -> u64;

    /// Drops everything queued at once (barge-in) and returns the clear's
    /// generation.
    fn clear(&self) -> u64;

    /// The latest clear the callback has applied.
    fn last_cleared(&self) -> Option<ClearedAt>;
}

impl<P: Playout> Playout for std::sync::Arc<P> {
    fn try_write(&self, pcm16: &[u8]) -> Result<usize, PlayoutError> {
        (**self).try_write(pcm16)
    }
    fn played_frames(&self) -> u64 {
        (**self).played_frames()
    }
    fn clear(&self) -> u64 {
        (**self).clear()
    }
    fn last_cleared(&self) -> Option<ClearedAt> {
        (**self).last_cleared()
    }
}

#[cfg(feature = "audio")]
impl Playout for steward_audio::Playback {
    fn try_write(&self, pcm16: &[u8]) -> Result<usize, PlayoutError> {
        steward_audio::Playback::try_write(self, pcm16)
            .map_err(|e| PlayoutError::new(e.to_string()))
    }

    fn played_frames(&self) -> u64 {
        steward_audio::Playback::played_frames(self)
    }

    fn clear(&self) -> u64 {
        steward_audio::Playback::clear(self);
        self.clear_generation()
    }

    fn last_cleared(&self) -> Option<ClearedAt> {
        steward_audio::Playback::last_cleared(self)
            .map(|c| ClearedAt::new(c.generation, c.at).with_played_frames(c.played_frames))
    }
}
