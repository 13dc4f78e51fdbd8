//! Counters (atomics the callback bumps) and their plain snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::config::{AudioHost, DeviceFormat};

/// A snapshot of one stream's counters. Plain data.
///
/// Units: `frames_in`/`frames_out` are described per direction below; the
/// other `*_frames` fields are at the rate named in their docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// The device's name.
    pub device: String,
    /// The audio host the stream runs on (never `default`: the one chosen).
    pub host: Option<AudioHost>,
    /// What the device runs at.
    pub format: Option<DeviceFormat>,
    /// The device buffer (callback period) asked of the host, in device
    /// frames; `None`: the host's default size.
    pub buffer_frames: Option<u32>,
    /// Playback: the output latency the host last reported, in µs: from the
    /// callback to the moment its first frame is heard (cpal's playback
    /// timestamp minus its callback timestamp). `None` before the first
    /// callback or when the host does not say.
    pub output_latency_us: Option<u64>,
    /// Audio callbacks run so far.
    pub callbacks: u64,
    /// Capture: frames the device delivered (device rate). Playback: frames
    /// accepted by `write` (PCM16 rate).
    pub frames_in: u64,
    /// Capture: frames put into chunks (PCM16 rate). Playback: frames of
    /// audio the device played (device rate), silence not included.
    pub frames_out: u64,
    /// Capture: PCM16-rate frames dropped from the OLDEST end of the chunk
    /// queue because the reader fell behind.
    pub overflow_frames: u64,
    /// Capture: device frames the callback could not store because the
    /// stream's own thread fell behind by a whole ring (one second); these
    /// are the newest frames (the callback cannot touch the oldest).
    pub ring_overrun_frames: u64,
    /// Playback: callbacks that ran out of audio while audio was flowing
    /// (the buffer ran dry within the callback, or audio was still waiting
    /// upstream). The natural end of a stretch of audio counts once too.
    pub underruns: u64,
    /// Playback: device frames of silence played by those underruns.
    pub underrun_frames: u64,
    /// Playback: all device frames of silence played (idle included).
    pub silence_frames: u64,
    /// Playback: PCM16-rate frames dropped by `clear()`.
    pub cleared_frames: u64,
    /// PCM16-rate frames dropped by `shed_queued` (memory pressure): the
    /// oldest queued audio beyond the floor. Playback counts what the stream
    /// thread and the callback drop when they get to it.
    pub shed_frames: u64,
    /// Capture: chunks waiting for the reader, in PCM16-rate frames.
    /// Playback: audio waiting to be played, in PCM16-rate frames.
    pub queued_frames: u64,
    /// Errors the backend reported.
    pub errors: u64,
    /// The last one, as text.
    pub last_error: Option<String>,
    /// The device was lost; the stream delivers no more audio.
    pub device_lost: bool,
    /// How many times this stream was reopened (`reopen` or
    /// `reopen_on_default`, counted along the chain: a stream reopened from
    /// one that was reopened once says 2). The other counters start again
    /// from zero with each new stream.
    #[serde(default)]
    pub reopens: u64,
}

/// The live counters. Only `fetch_add`/`load` with relaxed ordering: the
/// callback bumps them without locking.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) callbacks: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) overflow_frames: AtomicU64,
    pub(crate) ring_overrun_frames: AtomicU64,
    pub(crate) underruns: AtomicU64,
    pub(crate) underrun_frames: AtomicU64,
    pub(crate) silence_frames: AtomicU64,
    pub(crate) cleared_frames: AtomicU64,
    /// Device-rate frames the callback dropped on `clear()`.
    pub(crate) cleared_device_frames: AtomicU64,
    pub(crate) shed_frames: AtomicU64,
    /// Device-rate frames the callback skipped for a shed.
    pub(crate) shed_device_frames: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Playback: the latest output latency in µs, plus one (0: unknown).
    pub(crate) output_latency_us_plus_one: AtomicU64,
}

#[inline]
pub(crate) fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Relaxed);
}

impl Counters {
    pub(crate) fn fill(&self, s: &mut Stats, rate: u32) {
        s.callbacks = self.callbacks.load(Relaxed);
        s.frames_in = self.frames_in.load(Relaxed);
        s.frames_out = self.frames_out.load(Relaxed);
        s.overflow_frames = self.overflow_frames.load(Relaxed);
        s.ring_overrun_frames = self.ring_overrun_frames.load(Relaxed);
        s.underruns = self.underruns.load(Relaxed);
        s.underrun_frames = self.underrun_frames.load(Relaxed);
        s.silence_frames = self.silence_frames.load(Relaxed);
        let at_rate = |dev: u64| match s.format {
            Some(f) if f.sample_rate > 0 => {
                dev.saturating_mul(u64::from(rate)) / u64::from(f.sample_rate)
            }
            _ => dev,
        };
        s.cleared_frames =
            self.cleared_frames.load(Relaxed) + at_rate(self.cleared_device_frames.load(Relaxed));
        s.shed_frames =
            self.shed_frames.load(Relaxed) + at_rate(self.shed_device_frames.load(Relaxed));
        s.errors = self.errors.load(Relaxed);
        s.output_latency_us = self.output_latency_us_plus_one.load(Relaxed).checked_sub(1);
    }
}
