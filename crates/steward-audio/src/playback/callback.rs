//! The playback audio callback's side: the ring of device frames, the
//! segments that say which PCM16 frames they carry, and the callback itself
//! (runs on the audio thread: no allocation, no lock, no wait).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::Shared;
use crate::convert::PcmSample;
use crate::stats::bump;
use crate::stream::callback_hook;

/// A run of device frames in the ring and the PCM16-rate frames they carry.
/// The stream thread pushes it before the audio itself, so the callback
/// always knows what the frames it reads stand for.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Segment {
    /// Device frames.
    pub(super) dev: u64,
    /// PCM16-rate frames.
    pub(super) src: u64,
    /// The clear generation the audio was written in.
    pub(super) generation: u64,
}

/// Segments in flight between the stream thread and the callback: one per
/// push into the ring, so a handful is enough (the thread waits for room).
pub(super) const SEGMENT_RING: usize = 64;

/// The callback's place in the segment it is reading.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    seg: Segment,
    dev_done: u64,
    src_done: u64,
}

impl Cursor {
    fn exhausted(&self) -> bool {
        self.dev_done >= self.seg.dev
    }

    /// Moves over up to `frames` device frames; returns (device frames
    /// moved, PCM16-rate frames they carry). Proportional within the
    /// segment from the cumulative count, so rounding does not add up.
    fn advance(&mut self, frames: u64) -> (u64, u64) {
        let take = frames.min(self.seg.dev.saturating_sub(self.dev_done));
        self.dev_done += take;
        let src_done = if self.seg.dev == 0 {
            self.seg.src
        } else {
            let scaled =
                u128::from(self.seg.src) * u128::from(self.dev_done) / u128::from(self.seg.dev);
            u64::try_from(scaled).unwrap_or(self.seg.src)
        };
        let src = src_done.saturating_sub(self.src_done);
        self.src_done = src_done;
        (take, src)
    }
}

/// The callback's reader of the segments describing the ring.
struct SegmentReader {
    segments: rtrb::Consumer<Segment>,
    cursor: Cursor,
}

impl SegmentReader {
    /// The segment the front of the ring belongs to, if one was pushed.
    fn front(&mut self) -> Option<&Cursor> {
        if self.cursor.exhausted() {
            let seg = self.segments.pop().ok()?;
            self.cursor = Cursor {
                seg,
                ..Cursor::default()
            };
        }
        Some(&self.cursor)
    }

    /// Moves over `frames` device frames at the front of the ring; returns
    /// the PCM16-rate frames they carry.
    fn advance(&mut self, mut frames: u64) -> u64 {
        let mut src = 0;
        while frames > 0 && self.front().is_some() {
            let (moved, s) = self.cursor.advance(frames);
            frames -= moved;
            src += s;
        }
        src
    }
}

/// The callback's end of the ring and of the segments that describe it.
struct RingReader {
    consumer: rtrb::Consumer<f32>,
    segs: SegmentReader,
}

impl RingReader {
    /// Drops up to `n` device frames from the front of the ring; returns
    /// how many. The PCM16-rate frames they carried are added to `consumed`
    /// when given (a shed), before the frames leave the ring.
    fn skip(&mut self, n: usize, consumed: Option<&AtomicU64>, out: &AtomicU64) -> usize {
        let n = n.min(self.consumer.slots());
        if n == 0 {
            return 0;
        }
        let src = self.segs.advance(n as u64);
        if let Some(c) = consumed {
            c.fetch_add(src, SeqCst);
        }
        out.fetch_add(src, SeqCst);
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            chunk.commit_all();
        }
        n
    }

    /// Drops the ring's frames written before the clear `generation` (a
    /// push that raced a clear); returns the device frames dropped.
    fn drop_stale(&mut self, generation: u64, out: &AtomicU64) -> usize {
        let mut dropped = 0;
        while let Some(c) = self.segs.front()
            && c.seg.generation < generation
        {
            let left = usize::try_from(c.seg.dev - c.dev_done).unwrap_or(usize::MAX);
            let n = self.skip(left, None, out);
            if n == 0 {
                // Its audio is not in the ring yet: dropped on a later run.
                break;
            }
            dropped += n;
        }
        dropped
    }
}

/// The callback's state: everything preallocated.
pub(super) struct OutputCallback {
    ring: RingReader,
    channels: usize,
    shared: Arc<Shared>,
    seen_flush: u64,
    /// The last clear generation published for `last_cleared`.
    reported_generation: u64,
    /// Below this many frames in the ring, with audio waiting upstream,
    /// the callback wakes the stream thread to top it up.
    low_water: usize,
}

impl OutputCallback {
    /// The callback reading device frames from `consumer` and what they
    /// carry from `segments`, for a device with `channels` channels; it
    /// wakes the stream thread below `low_water` frames.
    pub(super) fn new(
        consumer: rtrb::Consumer<f32>,
        segments: rtrb::Consumer<Segment>,
        channels: usize,
        shared: Arc<Shared>,
        low_water: usize,
    ) -> Self {
        Self {
            ring: RingReader {
                consumer,
                segs: SegmentReader {
                    segments,
                    cursor: Cursor::default(),
                },
            },
            channels,
            seen_flush: shared.flush_req.load(SeqCst),
            reported_generation: shared.generation.load(SeqCst),
            shared,
            low_water,
        }
    }

    /// Runs on the audio thread: no allocation, no lock, no wait.
    /// `latency`: how long until the first frame written here is heard,
    /// when the host says.
    #[inline]
    pub(super) fn on_data<T: PcmSample>(&mut self, out: &mut [T], latency: Option<Duration>) {
        let _scope = callback_hook::Scope::enter();
        let shared = &*self.shared;
        let counters = &shared.counters;
        bump(&counters.callbacks, 1);
        let ring_before = self.ring.consumer.slots();
        let mut wake = false;
        if let Some(l) = latency {
            let us = u64::try_from(l.as_micros()).unwrap_or(u64::MAX - 1);
            counters
                .output_latency_us_plus_one
                .store(us.saturating_add(1), SeqCst);
        }
        let req = shared.flush_req.load(SeqCst);
        // Read after `flush_req`: at least the clear that raised it.
        let generation = shared.generation.load(SeqCst);
        // A new generation alone is a clear too (`clear()` bumps it before
        // `flush_req`): everything in the ring predates it, since the
        // stream thread pushes new audio only once the flush is acknowledged.
        if req != self.seen_flush || generation != self.reported_generation {
            let at = Instant::now();
            // Barge-in: drop everything queued here, at once.
            let n = self.ring.skip(usize::MAX, None, &shared.ring_out);
            bump(&counters.cleared_device_frames, n);
            // The thread waits for this acknowledgement to push new audio.
            wake = true;
            // The ring is empty: a pending skip would eat post-clear audio.
            shared.ring_skip.store(0, SeqCst);
            self.seen_flush = req;
            shared.flush_ack.store(req, SeqCst);
            if generation > self.reported_generation {
                shared.publish_clear(generation, at);
                self.reported_generation = generation;
            }
        }
        // Audio a push slipped in after the clear: never played.
        let stale = self.ring.drop_stale(generation, &shared.ring_out);
        bump(&counters.cleared_device_frames, stale);
        if shared.ring_skip.load(SeqCst) > 0 {
            // A shed: the oldest frames of the ring go unplayed.
            let skip = shared.ring_skip.swap(0, SeqCst);
            let n = self.ring.skip(
                usize::try_from(skip).unwrap_or(usize::MAX),
                Some(&shared.consumed),
                &shared.ring_out,
            );
            bump(&counters.shed_device_frames, n);
        }
        let frames = out.len() / self.channels;
        let avail = self.ring.consumer.slots().min(frames);
        let mut written = 0;
        if avail > 0
            && let Ok(chunk) = self.ring.consumer.read_chunk(avail)
        {
            let (a, b) = chunk.as_slices();
            for (frame, &s) in out.chunks_exact_mut(self.channels).zip(a.iter().chain(b)) {
                frame.fill(T::from_f32(s));
            }
            // Counted before the frames leave the ring: a ring seen empty
            // (a finished `drain`) has all its frames counted.
            let src = self.ring.segs.advance(avail as u64);
            shared.consumed.fetch_add(src, SeqCst);
            shared.ring_out.fetch_add(src, SeqCst);
            chunk.commit_all();
            written = avail;
        }
        out[written * self.channels..].fill(T::SILENCE);
        bump(&counters.frames_out, written);
        if written < frames {
            let gap = frames - written;
            bump(&counters.silence_frames, gap);
            if written > 0 || shared.upstream.load(SeqCst) > 0 {
                bump(&counters.underruns, 1);
                bump(&counters.underrun_frames, gap);
            }
        }
        // Wake the stream thread (an atomic swap, a futex wake at most; no
        // lock, no allocation) when the ring runs low with audio waiting,
        // or has just run dry (a drain may be done).
        let ring_after = self.ring.consumer.slots();
        if wake
            || (ring_after < self.low_water && shared.upstream.load(SeqCst) > 0)
            || (ring_before > 0 && ring_after == 0)
        {
            shared.notify.notify();
        }
    }
}
