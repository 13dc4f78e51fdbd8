//! The audio devices across a lost device: when the output or input device
//! goes away (unplugged, its module unloaded), the stream is reopened on the
//! host's default device and the run goes on; each reopening is counted in
//! the report, the status line and (as the stream's `reopens`) the health.
//!
//! The conversation writes to one [`Speaker`] for its whole life; the
//! playback stream under it is swapped when reopened, with the played
//! position and the clear generations carried over so that they never go
//! back.

use std::sync::Arc;

use parking_lot::Mutex;
use steward::audio::{Capture, Error as AudioError, Playback};
use steward::realtime::{ClearedAt, Playout, PlayoutError};

use super::input::Source;
use super::run::Run;

/// The steward's names for the streams.
pub(super) const SPEAKER: &str = "speaker";
pub(super) const MICROPHONE: &str = "microphone";

/// The playout the conversation writes to: the current playback stream,
/// replaced by a reopened one when its device is lost.
pub(crate) struct Speaker {
    state: Mutex<SpeakerState>,
}

struct SpeakerState {
    current: Arc<Playback>,
    /// Frames the earlier streams consumed: played, or lost with their
    /// device (counted as consumed, as a shed is, so the position never
    /// waits for audio that will not play).
    frames_before: u64,
    /// Clears made on the earlier streams.
    clears_before: u64,
    /// Underruns of the earlier streams.
    underruns_before: u64,
}

impl Speaker {
    pub(crate) fn new(playback: Arc<Playback>) -> Self {
        Self {
            state: Mutex::new(SpeakerState {
                current: playback,
                frames_before: 0,
                clears_before: 0,
                underruns_before: 0,
            }),
        }
    }

    /// The stream playing now.
    pub(crate) fn current(&self) -> Arc<Playback> {
        Arc::clone(&self.state.lock().current)
    }

    /// Underruns over every stream so far.
    pub(crate) fn underruns(&self) -> u64 {
        let st = self.state.lock();
        st.underruns_before + st.current.stats().underruns
    }

    /// Puts `reopened` in place of the current (closed) stream.
    fn replace(&self, reopened: Arc<Playback>) {
        let mut st = self.state.lock();
        let old = st.current.stats();
        // What was accepted and not cleared was played or is lost with
        // the device: either way it is behind us.
        let consumed = Playback::played_frames(&st.current)
            .max(old.frames_in.saturating_sub(old.cleared_frames));
        st.frames_before += consumed;
        st.clears_before += st.current.clear_generation();
        st.underruns_before += old.underruns;
        st.current = reopened;
    }
}

impl Playout for Speaker {
    fn try_write(&self, pcm16: &[u8]) -> Result<usize, PlayoutError> {
        // Named: the trait's method on `Arc<Playback>` would shadow it.
        match Playback::try_write(&self.state.lock().current, pcm16) {
            Ok(n) => Ok(n),
            // Lost, or closed for a reopen: nothing fits until the new
            // stream is in; the conversation keeps the audio (bounded).
            Err(AudioError::DeviceLost { .. } | AudioError::Closed { .. }) => Ok(0),
            Err(e) => Err(PlayoutError::new(e.to_string())),
        }
    }

    fn played_frames(&self) -> u64 {
        let st = self.state.lock();
        st.frames_before + Playback::played_frames(&st.current)
    }

    fn clear(&self) -> u64 {
        let st = self.state.lock();
        Playback::clear(&st.current);
        st.clears_before + st.current.clear_generation()
    }

    fn last_cleared(&self) -> Option<ClearedAt> {
        let st = self.state.lock();
        Playback::last_cleared(&st.current).map(|c| {
            ClearedAt::new(st.clears_before + c.generation, c.at)
                .with_played_frames(st.frames_before + c.played_frames)
        })
    }
}

impl Run {
    /// Reopens on the default device a playback or capture stream whose
    /// device was lost (retried every poll until it works).
    pub(super) async fn recover_devices(&mut self) {
        if let Some(speaker) = self.playback.clone()
            && speaker.current().stats().device_lost
        {
            let old = speaker.current();
            match super::off_runtime(move || old.reopen_on_default()).await {
                Some(Ok(p)) => {
                    let p = Arc::new(p);
                    tracing::warn!(
                        device = p.device(),
                        host = %p.host(),
                        "the output device was lost: playing on the default output now"
                    );
                    self.steward.add_playback(SPEAKER, &p);
                    speaker.replace(p);
                    self.report.audio_reopens += 1;
                }
                Some(Err(e)) => self.error(format!("output device lost, reopening failed: {e}")),
                None => self.error("the playback reopen thread panicked".into()),
            }
        }
        let lost = match &self.source {
            Some(Source::Device(c)) if c.stats().device_lost => Some(Arc::clone(c)),
            _ => self.lost_capture.take(),
        };
        if let Some(old) = lost {
            self.reopen_capture(old).await;
        }
    }

    /// Whether the capture device was lost (its reads now fail).
    pub(super) fn capture_lost(&self) -> bool {
        matches!(&self.source, Some(Source::Device(c)) if c.stats().device_lost)
    }

    /// Reopens the lost capture on the default input; when that fails,
    /// input stops until a later poll retries.
    pub(super) async fn reopen_capture(&mut self, old: Arc<Capture>) {
        let closing = Arc::clone(&old);
        match super::off_runtime(move || closing.reopen_on_default()).await {
            Some(Ok(c)) => {
                let c = Arc::new(c);
                tracing::warn!(
                    device = c.device(),
                    host = %c.host(),
                    "the input device was lost: capturing from the default input now"
                );
                self.steward.add_capture(MICROPHONE, &c);
                self.source = Some(Source::Device(c));
                self.report.audio_reopens += 1;
            }
            failed => {
                match failed {
                    Some(Err(e)) => {
                        self.error(format!("input device lost, reopening failed: {e}"));
                    }
                    _ => self.error("the capture reopen thread panicked".into()),
                }
                // No reads of a dead stream meanwhile (they fail at once).
                if matches!(&self.source, Some(Source::Device(c)) if Arc::ptr_eq(c, &old)) {
                    self.source = None;
                }
                self.lost_capture = Some(old);
            }
        }
    }
}
