//! What the state machine decides, as plain data: a [`Step`] after a server
//! event, a [`BargeIn`] after the user spoke over an answer, and the
//! [`TruncationCheck`] that compares a truncation with what was heard.

use steward_ws::realtime::ClientEvent;

use super::RealtimeEvent;

/// What to do after a server event.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Step {
    /// Model audio to play, with its item id.
    pub play: Option<(String, Vec<u8>)>,
    /// The user started speaking: call [`Conversation::barge_in`](super::Conversation::barge_in) now.
    pub barge_in: bool,
    /// Client events to send.
    pub send: Vec<ClientEvent>,
    /// For the application.
    pub notice: Option<RealtimeEvent>,
    /// The service said the session expired.
    pub expired: bool,
    /// `session.created` with the service's `expires_at` (unix seconds).
    pub created: Option<Option<u64>>,
}

/// What a barge-in decided.
#[derive(Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct BargeIn {
    /// Clear the playout now (audio of an answer is waiting or playing).
    pub clear: bool,
    /// Client events to send (cancel, truncate, delete).
    pub send: Vec<ClientEvent>,
    /// Whether this was a barge-in at all (an answer playing or coming).
    pub happened: bool,
    /// The truncation's `audio_end_ms`, if one was sent.
    pub truncated_ms: Option<u64>,
    /// Whether a cancel was sent.
    pub cancelled: bool,
    /// One per truncation sent: how it compares with what was heard once
    /// the clear reached the playout.
    pub checks: Vec<TruncationCheck>,
}

/// A truncation's `audio_end_ms` beside the audio of its item that the
/// playout went on to play before the clear took effect (the callback
/// running at the onset finishes its buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncationCheck {
    pub(super) sent_frames: u64,
    pub(super) passed: u64,
    pub(super) runs: Vec<(u64, u64)>,
}

impl TruncationCheck {
    /// The truncation's `audio_end_ms`, in frames.
    #[must_use]
    pub fn sent_frames(&self) -> u64 {
        self.sent_frames
    }

    /// Frames of the item played with the playout at `played_frames`.
    #[must_use]
    pub fn heard_frames(&self, played_frames: u64) -> u64 {
        played(self.passed, &self.runs, played_frames)
    }
}

pub(super) fn played(passed: u64, runs: &[(u64, u64)], played_now: u64) -> u64 {
    let runs: u64 = runs
        .iter()
        .map(|&(start, n)| played_now.saturating_sub(start).min(n))
        .sum();
    passed + runs
}
