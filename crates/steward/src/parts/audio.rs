//! Audio streams (feature `audio`, playback and capture): held weakly,
//! their queued audio tracked as `audio.playback` / `audio.capture`, shed
//! to the stream's floor at `Critical`; their stats join [`Health`] and
//! `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde::Serialize;
use steward_audio::{Capture, Playback, Stats};

use super::Tracker;
use super::entry::PartEntry;
use crate::health::Health;
use crate::metrics::{Out, f, unique};
use crate::{Steward, StewardBuilder};

/// Tracker kind of a playback stream's queued audio.
pub const AUDIO_PLAYBACK_KIND: &str = "audio.playback";

/// Tracker kind of a capture stream's queued audio.
pub const AUDIO_CAPTURE_KIND: &str = "audio.capture";

/// What the wiring needs of a stream.
trait Stream: Send + Sync + 'static {
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
struct StreamPart<S> {
    name: String,
    stream: Weak<S>,
    /// Tracked by queued audio; moving audio touches the entry.
    entry: PartEntry,
}

impl<S: Stream> StreamPart<S> {
    fn new(name: &str, stream: &Arc<S>, tracker: Option<&Tracker>) -> Self {
        let entry = PartEntry::new(S::KIND, name, queued_bytes(&stream.stats()), tracker);
        Self {
            name: name.to_owned(),
            stream: Arc::downgrade(stream),
            entry,
        }
    }

    /// Whether the stream is gone (its last `Arc` dropped).
    fn is_gone(&self) -> bool {
        self.stream.strong_count() == 0
    }

    /// The stream's stats, refreshing its tracker entry on the way (size =
    /// bytes of PCM16 queued, touched when audio moved). `None` once the
    /// stream is gone.
    fn health(&self) -> Option<AudioHealth> {
        let stats = self.stream.upgrade()?.stats();
        self.entry
            .refresh(queued_bytes(&stats), S::progress(&stats));
        Some(AudioHealth {
            name: self.name.clone(),
            stats,
        })
    }

    /// Sheds the stream to its floor; frames dropped (0 once it is gone).
    fn shed(&self) -> usize {
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

type Streams<S> = Mutex<Vec<Arc<StreamPart<S>>>>;

/// What the builder collected: strong handles, dropped once built.
#[derive(Default)]
pub(crate) struct Pending {
    playbacks: Vec<(String, Arc<Playback>)>,
    captures: Vec<(String, Arc<Capture>)>,
}

/// The streams under the wiring and what the shed dropped.
#[derive(Default)]
pub(crate) struct AudioParts {
    playbacks: Streams<Playback>,
    captures: Streams<Capture>,
    shed_frames: AtomicU64,
}

impl AudioParts {
    pub(crate) fn add_pending(&self, pending: Pending, tracker: Option<&Tracker>) {
        for (name, playback) in &pending.playbacks {
            add(&self.playbacks, name, playback, tracker);
        }
        for (name, capture) in &pending.captures {
            add(&self.captures, name, capture, tracker);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.playbacks.lock().len() + self.captures.lock().len()
    }

    /// Refreshes every stream's tracker entry.
    #[cfg(feature = "tracker")]
    pub(crate) fn refresh(&self) {
        for stream in live(&self.playbacks) {
            let _ = stream.health();
        }
        for stream in live(&self.captures) {
            let _ = stream.health();
        }
    }

    /// Sheds every stream to its floor; PCM16 bytes dropped.
    pub(crate) fn shed(&self) -> u64 {
        let frames: usize = live(&self.playbacks)
            .iter()
            .map(|s| s.shed())
            .sum::<usize>()
            + live(&self.captures).iter().map(|s| s.shed()).sum::<usize>();
        let frames = super::as_u64(frames);
        self.shed_frames.fetch_add(frames, Relaxed);
        if frames > 0 {
            tracing::warn!(
                frames,
                "critical pressure: audio queues shed to their floor"
            );
        }
        frames.saturating_mul(2)
    }

    /// The streams' stats (refreshing their tracker entries) and the
    /// shed's count.
    pub(crate) fn health(&self, h: &mut Health) {
        h.audio = live(&self.playbacks)
            .iter()
            .filter_map(|s| s.health())
            .collect();
        h.capture = live(&self.captures)
            .iter()
            .filter_map(|s| s.health())
            .collect();
        h.cleanup.audio_shed_frames = self.shed_frames.load(Relaxed);
    }
}

fn add<S: Stream>(streams: &Streams<S>, name: &str, stream: &Arc<S>, tracker: Option<&Tracker>) {
    streams
        .lock()
        .push(Arc::new(StreamPart::new(name, stream, tracker)));
}

/// The streams still alive; those whose last `Arc` was dropped leave.
fn live<S: Stream>(streams: &Streams<S>) -> Vec<Arc<StreamPart<S>>> {
    let mut streams = streams.lock();
    streams.retain(|s| !s.is_gone());
    streams.clone()
}

impl StewardBuilder {
    /// The playback stream's stats join [`Health`] under `name`, and (with a
    /// tracker) its queued audio is tracked as `audio.playback`. The steward
    /// holds it weakly: dropping your last `Arc` closes the device as usual
    /// and the stream leaves the wiring. More can be added later with
    /// [`Steward::add_playback`].
    pub fn playback(mut self, name: &str, playback: &Arc<Playback>) -> Self {
        let pending = &mut self.parts.audio.playbacks;
        pending.push((name.to_owned(), Arc::clone(playback)));
        self
    }

    /// The capture stream's stats join [`Health::capture`] under `name`,
    /// (with a tracker) its queued chunks are tracked as `audio.capture`,
    /// and at `Critical` it keeps only the newest
    /// `AudioConfig::shed_floor_ms` of them. Held weakly like playback; read
    /// it through the shared-reference methods (`Capture::recv_chunk`).
    /// More can be added later with [`Steward::add_capture`].
    pub fn capture(mut self, name: &str, capture: &Arc<Capture>) -> Self {
        let pending = &mut self.parts.audio.captures;
        pending.push((name.to_owned(), Arc::clone(capture)));
        self
    }
}

impl Steward {
    /// Puts a playback stream under the wiring (see
    /// [`StewardBuilder::playback`]).
    pub fn add_playback(&self, name: &str, playback: &Arc<Playback>) {
        let parts = self.parts();
        add(&parts.audio.playbacks, name, playback, parts.tracker());
        self.ensure_shed();
    }

    /// Puts a capture stream under the wiring (see
    /// [`StewardBuilder::capture`]).
    pub fn add_capture(&self, name: &str, capture: &Arc<Capture>) {
        let parts = self.parts();
        add(&parts.audio.captures, name, capture, parts.tracker());
        self.ensure_shed();
    }
}

type AudioGet = fn(&steward_audio::Stats) -> u64;

/// The audio host a stream runs on, as a label value.
fn audio_host(s: &steward_audio::Stats) -> &'static str {
    s.host.map_or("unknown", steward_audio::AudioHost::as_str)
}

/// One family per row of `families`, one sample per stream, labelled with
/// the stream's name and the audio host it runs on.
fn audio_families(o: &mut Out, streams: &[AudioHealth], families: &[(&str, &str, &str, AudioGet)]) {
    if streams.is_empty() {
        return;
    }
    let names = unique(streams.iter().map(|a| a.name.clone()));
    for &(name, kind, help, get) in families {
        o.family(name, kind, help);
        for (stream, a) in names.iter().zip(streams) {
            let labels = [("stream", stream.as_str()), ("host", audio_host(&a.stats))];
            o.sample(name, &labels, f(get(&a.stats)));
        }
    }
}

/// The `steward_audio_*` families, one row per stream.
pub(crate) fn metrics(o: &mut Out, h: &Health) {
    o.single(
        "steward_cleanup_audio_shed_frames_total",
        "counter",
        "Queued audio frames (PCM16 rate) dropped beyond their floor under critical pressure.",
        f(h.cleanup.audio_shed_frames),
    );
    let families: [(&str, &str, &str, AudioGet); 9] = [
        (
            "steward_audio_queued_frames",
            "gauge",
            "PCM16 frames waiting to be played.",
            |s| s.queued_frames,
        ),
        (
            "steward_audio_device_lost",
            "gauge",
            "1 once the device was lost.",
            |s| u64::from(s.device_lost),
        ),
        (
            "steward_audio_frames_in_total",
            "counter",
            "PCM16 frames accepted by write.",
            |s| s.frames_in,
        ),
        (
            "steward_audio_underruns_total",
            "counter",
            "Callbacks that ran out of audio while it was flowing.",
            |s| s.underruns,
        ),
        (
            "steward_audio_underrun_frames_total",
            "counter",
            "Device frames of silence played by underruns.",
            |s| s.underrun_frames,
        ),
        (
            "steward_audio_cleared_frames_total",
            "counter",
            "PCM16 frames dropped by clear (barge-in).",
            |s| s.cleared_frames,
        ),
        (
            "steward_audio_shed_frames_total",
            "counter",
            "PCM16 frames dropped beyond the floor (memory pressure).",
            |s| s.shed_frames,
        ),
        (
            "steward_audio_errors_total",
            "counter",
            "Errors the audio backend reported.",
            |s| s.errors,
        ),
        (
            "steward_audio_reopens_total",
            "counter",
            "Times the stream was reopened (after a lost device, say).",
            |s| s.reopens,
        ),
    ];
    audio_families(o, &h.audio, &families);
    // Only the streams whose host reports it.
    let latency: Vec<_> = h
        .audio
        .iter()
        .zip(unique(h.audio.iter().map(|a| a.name.clone())))
        .filter_map(|(a, name)| Some((name, a.stats.output_latency_us?, audio_host(&a.stats))))
        .collect();
    if !latency.is_empty() {
        let name = "steward_audio_output_latency_seconds";
        o.family(
            name,
            "gauge",
            "Output latency the audio host last reported (callback to heard).",
        );
        for (stream, us, host) in latency {
            #[allow(clippy::cast_precision_loss)]
            let secs = us as f64 / 1e6;
            o.sample(name, &[("stream", &stream), ("host", host)], secs);
        }
    }
    let capture: [(&str, &str, &str, AudioGet); 8] = [
        (
            "steward_audio_capture_queued_frames",
            "gauge",
            "PCM16 frames captured and waiting for the reader.",
            |s| s.queued_frames,
        ),
        (
            "steward_audio_capture_device_lost",
            "gauge",
            "1 once the device was lost.",
            |s| u64::from(s.device_lost),
        ),
        (
            "steward_audio_capture_frames_total",
            "counter",
            "PCM16 frames cut into chunks.",
            |s| s.frames_out,
        ),
        (
            "steward_audio_capture_overflow_frames_total",
            "counter",
            "PCM16 frames dropped, oldest first, because the reader fell behind.",
            |s| s.overflow_frames,
        ),
        (
            "steward_audio_capture_ring_overrun_frames_total",
            "counter",
            "Device frames the callback could not store (the stream thread stalled).",
            |s| s.ring_overrun_frames,
        ),
        (
            "steward_audio_capture_shed_frames_total",
            "counter",
            "PCM16 frames dropped beyond the floor (memory pressure).",
            |s| s.shed_frames,
        ),
        (
            "steward_audio_capture_errors_total",
            "counter",
            "Errors the audio backend reported.",
            |s| s.errors,
        ),
        (
            "steward_audio_capture_reopens_total",
            "counter",
            "Times the stream was reopened (after a lost device, say).",
            |s| s.reopens,
        ),
    ];
    audio_families(o, &h.capture, &capture);
}
