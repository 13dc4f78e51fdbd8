//! Playback: PCM16 24 kHz mono in, device audio out.
//!
//! Path: `write` appends PCM16 bytes to a bounded queue (waiting when it is
//! full: backpressure instead of the unbounded queue the Python assistant
//! had). The stream's own thread resamples what the device can take next
//! into a 200 ms lock-free ring, topping it up when the callback wakes it
//! (the ring below half with audio waiting); the audio callback pops from the ring,
//! upmixes to the device's channels and sample type, and plays silence
//! (counted) when the ring runs dry. `clear()` empties the queue at once and
//! tells the callback to drop its ring on its next run (barge-in).
//!
//! Shedding (memory pressure) keeps the newest `floor` of queued audio: the
//! handle drops the oldest part of the queue under its lock; what must go
//! beyond that (the floor is shorter than what already left the queue) is a
//! frame count handed to the stream thread through an atomic, which drops
//! it from its staging buffer and hands the ring's share to the callback
//! through another atomic. The callback skips that many frames with the
//! ring's own read: no lock, no allocation.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait as _, StreamTrait as _};
use parking_lot::Mutex;

use crate::config::{AudioConfig, AudioHost, DeviceFormat, SampleFormat};
use crate::convert::{PcmSample, PlaybackConverter};
use crate::error::{Error, Result};
use crate::stats::{Counters, Stats, bump};
use crate::stream::{
    Direction, ErrorSink, Event, IDLE_WAKE, LogLimiter, Notify, Opened, Presence, Pump, Status,
    Worker, block_on_with_timeout, callback_hook, drain_errors, find_device, open_host,
    pick_format, stream_config, stream_device,
};

/// After the writer pauses this long, the resampler's held-back tail is
/// pushed out (padded with silence) so the end of an utterance is heard.
const IDLE_FLUSH: Duration = Duration::from_millis(40);

#[derive(Debug)]
struct State {
    /// PCM16LE bytes waiting for the stream thread.
    input: VecDeque<u8>,
    capacity: usize,
    writer: Option<Waker>,
    drainer: Option<Waker>,
    /// Everything written has been handed to the device.
    idle: bool,
    status: Status,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    counters: Arc<Counters>,
    /// Bumped by `clear()` (under the state lock).
    generation: AtomicU64,
    /// The callback empties its ring when `flush_req != flush_ack`.
    flush_req: AtomicU64,
    flush_ack: AtomicU64,
    /// Frames (PCM16 rate) not yet in the ring: queued, staged or held by
    /// the resampler. The callback reads it to tell a gap from an idle end,
    /// and to wake the stream thread when the ring runs low.
    upstream: AtomicU64,
    /// Frames (PCM16 rate) staged or held by the resampler (see
    /// [`Shared::downstream`]).
    staged: AtomicU64,
    /// PCM16-rate frames pushed into the ring (the segments' count, added
    /// before the audio is), and those that left it (played, shed, cleared
    /// or stale, added before they leave): the ring holds the difference.
    ring_in: AtomicU64,
    ring_out: AtomicU64,
    /// Wakes the stream thread.
    notify: Arc<Notify>,
    drain_requested: AtomicBool,
    /// Frames (PCM16 rate) to drop downstream of the queue, oldest first:
    /// set by `shed_queued`, taken by the stream thread.
    shed_downstream: AtomicU64,
    /// Device frames the callback skips at the front of the ring (a shed).
    ring_skip: AtomicU64,
    /// PCM16-rate frames consumed: played by the callback or dropped by a
    /// shed (`played_frames`). Only ever added to.
    consumed: AtomicU64,
    /// The reference for the instants kept as nanoseconds below.
    epoch: Instant,
    /// The last clear the callback applied, behind a sequence lock (odd
    /// while the callback writes it; the callback is the only writer).
    cleared_seq: AtomicU64,
    cleared_generation: AtomicU64,
    cleared_at_ns: AtomicU64,
    cleared_played: AtomicU64,
}

/// The most recent [`Playback::clear`] the audio callback has applied
/// ([`Playback::last_cleared`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    /// Which clear: 1 for the first `clear()` call, and so on
    /// ([`Playback::clear_generation`]).
    pub generation: u64,
    /// When the callback wrote its first silent sample for it: the start of
    /// the callback that dropped the audio queued before the clear.
    pub at: Instant,
    /// [`Playback::played_frames`] at that moment. Nothing written before
    /// the clear is played after it.
    pub played_frames: u64,
}

/// A run of device frames in the ring and the PCM16-rate frames they carry.
/// The stream thread pushes it before the audio itself, so the callback
/// always knows what the frames it reads stand for.
#[derive(Debug, Clone, Copy, Default)]
struct Segment {
    /// Device frames.
    dev: u64,
    /// PCM16-rate frames.
    src: u64,
    /// The clear generation the audio was written in.
    generation: u64,
}

/// Segments in flight between the stream thread and the callback: one per
/// push into the ring, so a handful is enough (the thread waits for room).
const SEGMENT_RING: usize = 64;

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

/// A running playback stream: PCM16LE mono at [`AudioConfig::sample_rate`]
/// in, device audio out.
///
/// How audio moves: [`write`](Self::write) appends to a bounded queue
/// ([`AudioConfig::playback_queue_ms`]) and waits while it is full
/// (backpressure). The stream's own thread resamples what the device can
/// take next into a 200 ms lock-free ring; the audio callback pops from it,
/// upmixes to the device's channels and sample type, and plays silence when
/// it runs dry (counted in [`Stats::silence_frames`] and, when audio was
/// flowing, [`Stats::underruns`]). [`clear`](Self::clear) empties the queue
/// at once and has the callback drop its ring on its next run (barge-in).
///
/// Methods take `&self`: share it in an `Arc` between the task that writes
/// and the one that barges in. Dropping it (or [`close`](Self::close)) stops
/// the device stream and joins its thread.
///
/// ```no_run
/// # async fn run(deltas: Vec<String>) -> steward_audio::Result<()> {
/// use std::sync::Arc;
/// use steward_audio::{Playback, base64_to_pcm16};
/// let speaker = Arc::new(Playback::builder().build()?);
/// for delta in deltas {
///     // response.audio.delta payloads
///     speaker.write(&base64_to_pcm16(&delta)?).await?;
/// }
/// speaker.drain().await?; // wait until it has all been played
/// speaker.clear(); // or: the user started talking
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Playback {
    shared: Arc<Shared>,
    worker: Mutex<Worker>,
    opened: Opened,
    config: AudioConfig,
}

/// Builds a [`Playback`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PlaybackBuilder {
    config: AudioConfig,
}

impl PlaybackBuilder {
    /// Starts from `config` (its output fields).
    pub fn config(mut self, config: AudioConfig) -> Self {
        self.config = config;
        self
    }

    /// Plays on the device with this name (see [`list_devices`](crate::list_devices)).
    pub fn device(mut self, name: impl Into<String>) -> Self {
        self.config.output_device = Some(name.into());
        self
    }

    /// Uses this audio host (default: [`AudioHost::Default`]).
    pub fn host(mut self, host: AudioHost) -> Self {
        self.config.host = host;
        self
    }

    /// The device buffer (one callback period); see
    /// [`AudioConfig::output_buffer_ms`]. `None`: the host's default.
    pub fn buffer(mut self, d: Option<Duration>) -> Self {
        self.config.output_buffer_ms =
            d.map(|d| u32::try_from(d.as_millis().max(1)).unwrap_or(u32::MAX));
        self
    }

    /// Audio accepted ahead of the device before `write` waits.
    pub fn queue(mut self, d: Duration) -> Self {
        let ms = d.as_millis().clamp(1, 600_000);
        self.config.playback_queue_ms = u32::try_from(ms).unwrap_or(600_000);
        self
    }

    /// Forces the device-side rate, channels and sample type.
    pub fn device_format(mut self, rate: u32, channels: u16, format: SampleFormat) -> Self {
        self.config.device_sample_rate = Some(rate);
        self.config.device_channels = Some(channels);
        self.config.device_sample_format = Some(format);
        self
    }

    /// Opens the stream and starts it (it plays silence until written to).
    ///
    /// # Errors
    /// See [`Playback::open`].
    pub fn build(self) -> Result<Playback> {
        Playback::open(&self.config)
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
struct OutputCallback {
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
    /// Runs on the audio thread: no allocation, no lock, no wait.
    /// `latency`: how long until the first frame written here is heard,
    /// when the host says.
    #[inline]
    fn on_data<T: PcmSample>(&mut self, out: &mut [T], latency: Option<Duration>) {
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

impl Shared {
    /// Frames (PCM16 rate) past the queue: staged, held by the resampler
    /// or in the ring.
    fn downstream(&self) -> u64 {
        // `ring_out` first: it never runs ahead of `ring_in`.
        let out = self.ring_out.load(SeqCst);
        let ring = self.ring_in.load(SeqCst).saturating_sub(out);
        self.staged.load(SeqCst) + ring
    }

    /// Publishes the clear the callback just applied (sequence lock; the
    /// callback is the only writer).
    fn publish_clear(&self, generation: u64, at: Instant) {
        let at_ns =
            u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.cleared_seq.fetch_add(1, SeqCst);
        self.cleared_generation.store(generation, SeqCst);
        self.cleared_at_ns.store(at_ns, SeqCst);
        self.cleared_played
            .store(self.consumed.load(SeqCst), SeqCst);
        self.cleared_seq.fetch_add(1, SeqCst);
    }

    /// Reads what [`publish_clear`](Self::publish_clear) wrote.
    fn last_cleared(&self) -> Option<Cleared> {
        loop {
            let before = self.cleared_seq.load(SeqCst);
            if before % 2 == 1 {
                // The callback is between two stores: a few atomics away.
                std::thread::yield_now();
                continue;
            }
            let generation = self.cleared_generation.load(SeqCst);
            let at_ns = self.cleared_at_ns.load(SeqCst);
            let played_frames = self.cleared_played.load(SeqCst);
            if self.cleared_seq.load(SeqCst) != before {
                continue;
            }
            return (generation > 0).then(|| Cleared {
                generation,
                at: self.epoch + Duration::from_nanos(at_ns),
                played_frames,
            });
        }
    }
}

/// The stream thread's state.
struct PlaybackPump {
    // Field order matters: the stream drops first, stopping callbacks.
    // `None` once the device is lost: nothing moves after that.
    stream: Option<cpal::Stream>,
    presence: Presence,
    producer: rtrb::Producer<f32>,
    ring_capacity: usize,
    errors: rtrb::Consumer<cpal::Error>,
    log: LogLimiter,
    converter: PlaybackConverter,
    /// Device-rate audio waiting for room in the ring.
    staged: Vec<f32>,
    /// What `staged` carries, front first: (device frames, PCM16 frames).
    staged_segments: VecDeque<(u64, u64)>,
    /// PCM16 frames handed to the converter that no output carries yet
    /// (held back by the resampler); the next output carries them.
    carry_src: u64,
    segments: rtrb::Producer<Segment>,
    scratch: Vec<u8>,
    generation: u64,
    /// The resampler holds input since the last flush.
    dirty: bool,
    last_input: Instant,
    src_rate: u64,
    dev_rate: u64,
    shared: Arc<Shared>,
    device: String,
}

impl PlaybackPump {
    fn dev_to_src(&self, frames: usize) -> u64 {
        frames as u64 * self.src_rate / self.dev_rate.max(1)
    }

    fn src_to_dev(&self, frames: u64) -> usize {
        let dev = frames.saturating_mul(self.dev_rate) / self.src_rate.max(1);
        usize::try_from(dev).unwrap_or(usize::MAX)
    }

    /// Drops `frames` (PCM16 rate) of the oldest audio past the queue: the
    /// ring's (by the callback, on its next run), then the staging buffer's.
    fn shed_downstream(&mut self, frames: u64) {
        let mut dev = self.src_to_dev(frames);
        let in_ring = self.ring_capacity - self.producer.slots();
        let from_ring = dev.min(in_ring);
        if from_ring > 0 {
            self.shared.ring_skip.fetch_add(from_ring as u64, SeqCst);
        }
        dev -= from_ring;
        let from_staged = dev.min(self.staged.len());
        if from_staged > 0 {
            self.staged.drain(..from_staged);
            let src = self.take_staged_segments(from_staged as u64);
            self.shared.counters.shed_frames.fetch_add(src, SeqCst);
            self.shared.consumed.fetch_add(src, SeqCst);
        }
        tracing::debug!(
            device = %self.device,
            ring = from_ring,
            staged = from_staged,
            "playback shed past the queue"
        );
    }

    /// Takes `dev` device frames off the front of `staged_segments`;
    /// returns the PCM16-rate frames they carry (a segment cut in two
    /// shares its frames in proportion, the remainder keeps the rest).
    fn take_staged_segments(&mut self, mut dev: u64) -> u64 {
        let mut src = 0;
        while dev > 0 {
            let Some(front) = self.staged_segments.front_mut() else {
                break;
            };
            if front.0 <= dev {
                dev -= front.0;
                src += front.1;
                self.staged_segments.pop_front();
            } else {
                let part =
                    u64::try_from(u128::from(front.1) * u128::from(dev) / u128::from(front.0))
                        .unwrap_or(front.1);
                front.0 -= dev;
                front.1 -= part;
                src += part;
                dev = 0;
            }
        }
        src
    }

    /// Appends converter output to `staged`, carrying the PCM16 frames fed
    /// since the last output (none for the silence a flush pads with).
    fn stage(&mut self, flush: bool) {
        let before = self.staged.len();
        let staged = &mut self.staged;
        let mut sink = |s: &[f32]| staged.extend_from_slice(s);
        if flush {
            self.converter.flush(&mut sink);
        } else {
            self.converter.push_pcm16(&self.scratch, &mut sink);
        }
        let dev = (self.staged.len() - before) as u64;
        if dev > 0 {
            self.staged_segments.push_back((dev, self.carry_src));
            self.carry_src = 0;
        }
    }

    fn take_input(&mut self) -> usize {
        let free = self.producer.slots();
        let budget = if self.staged.is_empty() {
            (self.dev_to_src(free) as usize) * 2
        } else {
            0
        };
        let mut st = self.shared.state.lock();
        let generation = self.shared.generation.load(SeqCst);
        if generation != self.generation {
            // clear() happened: what we staged or hold is stale.
            self.generation = generation;
            self.converter.reset();
            bump(
                &self.shared.counters.cleared_device_frames,
                self.staged.len(),
            );
            self.staged.clear();
            self.staged_segments.clear();
            self.carry_src = 0;
            self.dirty = false;
        }
        let take = budget.min(st.input.len()) & !1;
        if take > 0 {
            self.scratch.extend(st.input.drain(..take));
            // Under the lock, so queue + downstream never misses these
            // frames (what `stats` and `shed_queued_to` read); the end of
            // the tick stores the exact figure.
            self.shared.staged.fetch_add((take / 2) as u64, SeqCst);
            if let Some(w) = st.writer.take() {
                w.wake();
            }
        }
        st.input.len()
    }

    fn push_staged(&mut self) {
        if self.staged.is_empty()
            || self.shared.flush_ack.load(SeqCst) != self.shared.flush_req.load(SeqCst)
        {
            return;
        }
        if self.shared.generation.load(SeqCst) != self.generation {
            // Cleared since we staged: the next tick resets.
            return;
        }
        // The segment goes first: the callback never reads audio it cannot
        // account for.
        let n = self.staged.len().min(self.producer.slots());
        if n == 0 || self.segments.slots() == 0 {
            return;
        }
        let src = self.take_staged_segments(n as u64);
        let seg = Segment {
            dev: n as u64,
            src,
            generation: self.generation,
        };
        if self.segments.push(seg).is_err() {
            return;
        }
        // In the ring's count before the audio is in the ring; out of the
        // staged count (only this thread writes it; the tick's end stores
        // the exact figure).
        self.shared.ring_in.fetch_add(src, SeqCst);
        let staged = self.shared.staged.load(SeqCst);
        self.shared.staged.store(staged.saturating_sub(src), SeqCst);
        let (pushed, _) = self.producer.push_partial_slice(&self.staged[..n]);
        let n = pushed.len();
        self.staged.drain(..n);
        if n > 0 && self.shared.generation.load(SeqCst) != self.generation {
            // A clear() slipped in between the check and the push: have the
            // callback drop the ring again, stale audio included.
            self.shared.flush_req.fetch_add(1, SeqCst);
        }
    }
}

impl Pump for PlaybackPump {
    fn tick(&mut self) -> Duration {
        if self.stream.is_none() {
            return IDLE_WAKE;
        }
        self.move_audio();
        let presence = self.presence.until_next();
        if self.dirty {
            // The resampler's tail goes out IDLE_FLUSH after the last input.
            let flush_at = self.last_input + IDLE_FLUSH;
            presence.min(flush_at.saturating_duration_since(Instant::now()))
        } else {
            presence
        }
    }
}

impl PlaybackPump {
    fn move_audio(&mut self) {
        let mut events = Vec::new();
        if !self.errors.is_empty() {
            events = drain_errors(&mut self.errors, &self.device, &mut self.log);
        }
        events.extend(self.presence.check());
        if !events.is_empty() {
            let mut st = self.shared.state.lock();
            if st.status.apply(events) {
                if let Some(w) = st.writer.take() {
                    w.wake();
                }
                if let Some(w) = st.drainer.take() {
                    w.wake();
                }
                drop(st);
                // Lost: stop playing (a server may have moved the stream to
                // another device, which is not where it was asked to play).
                self.stream = None;
                return;
            }
        }
        let shed = self.shared.shed_downstream.swap(0, SeqCst);
        if shed > 0 {
            self.shed_downstream(shed);
        }
        let remaining = self.take_input();
        let now = Instant::now();
        if !self.scratch.is_empty() {
            self.last_input = now;
            self.dirty = !self.converter.is_passthrough();
            self.carry_src += (self.scratch.len() / 2) as u64;
            self.stage(false);
            self.scratch.clear();
        }
        let drain = self.shared.drain_requested.load(SeqCst);
        if self.dirty && remaining == 0 && (drain || now - self.last_input >= IDLE_FLUSH) {
            self.stage(true);
            self.dirty = false;
        }
        self.push_staged();

        let in_ring = self.ring_capacity - self.producer.slots();
        let upstream = self.dev_to_src(self.staged.len()) + self.converter.pending_frames() as u64;
        self.shared
            .upstream
            .store(upstream + remaining as u64 / 2, SeqCst);
        self.shared.staged.store(upstream, SeqCst);
        let idle = remaining == 0 && self.staged.is_empty() && !self.dirty && in_ring == 0;
        if idle {
            let mut st = self.shared.state.lock();
            // A write may have landed since take_input: only idle if still empty.
            if st.input.is_empty() && !st.idle {
                st.idle = true;
                self.shared.drain_requested.store(false, SeqCst);
                if let Some(w) = st.drainer.take() {
                    w.wake();
                }
            }
        }
    }
}

impl Drop for PlaybackPump {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.status.finished = true;
        for w in [
            st.writer.take(),
            st.drainer.take(),
            st.status.event_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

fn build_output<T>(
    device: &cpal::Device,
    name: &str,
    cfg: cpal::StreamConfig,
    mut cb: OutputCallback,
    mut errs: ErrorSink,
) -> Result<cpal::Stream>
where
    T: PcmSample + cpal::SizedSample,
{
    device
        .build_output_stream::<T, _, _>(
            cfg,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
                let ts = info.timestamp();
                cb.on_data(data, ts.playback.checked_duration_since(ts.callback));
            },
            move |e| errs.record(e),
            None,
        )
        .map_err(|e| Error::backend(name, "open the output stream", &e))
}

fn setup(config: AudioConfig, shared: Arc<Shared>) -> Result<(PlaybackPump, Opened)> {
    let (host, host_kind) = open_host(config.host)?;
    let (device, name) = find_device(&host, Direction::Output, config.output_device.as_deref())?;
    let (format, buffers) = pick_format(&device, &name, Direction::Output, &config)?;
    let device = stream_device(host_kind, device, &name, Direction::Output)?;
    drop(host);
    let converter = PlaybackConverter::new(config.sample_rate, format.sample_rate)?;
    // 200 ms of mono audio at the device rate.
    let ring_capacity = (format.sample_rate as usize / 5).max(256);
    let (producer, consumer) = rtrb::RingBuffer::new(ring_capacity);
    let (seg_producer, seg_consumer) = rtrb::RingBuffer::new(SEGMENT_RING);
    let cb = OutputCallback {
        ring: RingReader {
            consumer,
            segs: SegmentReader {
                segments: seg_consumer,
                cursor: Cursor::default(),
            },
        },
        channels: usize::from(format.channels.max(1)),
        shared: Arc::clone(&shared),
        seen_flush: shared.flush_req.load(SeqCst),
        reported_generation: shared.generation.load(SeqCst),
        // Half the ring: woken about every 100 ms while audio plays.
        low_water: ring_capacity / 2,
    };
    let (errs, errors) = ErrorSink::new(Arc::clone(&shared.counters), Arc::clone(&shared.notify));
    let cfg = stream_config(format, buffers, Direction::Output, &config);
    let opened = Opened::new(format, name.clone(), host_kind, &cfg);
    let stream = match format.sample_format {
        SampleFormat::I8 => build_output::<i8>(&device, &name, cfg, cb, errs),
        SampleFormat::I16 => build_output::<i16>(&device, &name, cfg, cb, errs),
        SampleFormat::I32 => build_output::<i32>(&device, &name, cfg, cb, errs),
        SampleFormat::U8 => build_output::<u8>(&device, &name, cfg, cb, errs),
        SampleFormat::U16 => build_output::<u16>(&device, &name, cfg, cb, errs),
        SampleFormat::U32 => build_output::<u32>(&device, &name, cfg, cb, errs),
        SampleFormat::F32 => build_output::<f32>(&device, &name, cfg, cb, errs),
        SampleFormat::F64 => build_output::<f64>(&device, &name, cfg, cb, errs),
    }?;
    stream
        .play()
        .map_err(|e| Error::backend(&name, "start the output stream", &e))?;
    tracing::info!(
        device = %name,
        host = %host_kind,
        rate = format.sample_rate,
        channels = format.channels,
        sample_format = %format.sample_format,
        buffer_frames = ?opened.buffer_frames,
        "playback started"
    );
    Ok((
        PlaybackPump {
            stream: Some(stream),
            presence: Presence::new(host_kind, &name, Direction::Output),
            producer,
            ring_capacity,
            errors,
            log: LogLimiter::new(),
            converter,
            staged: Vec::with_capacity(ring_capacity),
            staged_segments: VecDeque::with_capacity(16),
            carry_src: 0,
            segments: seg_producer,
            scratch: Vec::new(),
            generation: shared.generation.load(SeqCst),
            dirty: false,
            last_input: Instant::now(),
            src_rate: u64::from(config.sample_rate),
            dev_rate: u64::from(format.sample_rate),
            shared,
            device: name,
        },
        opened,
    ))
}

impl Playback {
    /// A builder starting from [`AudioConfig::default`].
    pub fn builder() -> PlaybackBuilder {
        PlaybackBuilder::default()
    }

    /// Opens `config.output_device` (default: the default output) and starts it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], [`Error::DeviceNotFound`],
    /// [`Error::UnsupportedConfig`], [`Error::HostUnavailable`] or
    /// [`Error::Backend`] naming the device.
    pub fn open(config: &AudioConfig) -> Result<Self> {
        config.validate()?;
        let capacity = config.ms_to_frames(config.playback_queue_ms).max(1) * 2;
        let notify = Arc::new(Notify::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                input: VecDeque::with_capacity(capacity),
                capacity,
                writer: None,
                drainer: None,
                idle: true,
                status: Status::default(),
            }),
            counters: Arc::new(Counters::default()),
            generation: AtomicU64::new(0),
            flush_req: AtomicU64::new(0),
            flush_ack: AtomicU64::new(0),
            upstream: AtomicU64::new(0),
            staged: AtomicU64::new(0),
            ring_in: AtomicU64::new(0),
            ring_out: AtomicU64::new(0),
            notify: Arc::clone(&notify),
            drain_requested: AtomicBool::new(false),
            shed_downstream: AtomicU64::new(0),
            ring_skip: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            epoch: Instant::now(),
            cleared_seq: AtomicU64::new(0),
            cleared_generation: AtomicU64::new(0),
            cleared_at_ns: AtomicU64::new(0),
            cleared_played: AtomicU64::new(0),
        });
        let hint = config
            .output_device
            .clone()
            .unwrap_or_else(|| "default".into());
        let cfg = config.clone();
        let sh = Arc::clone(&shared);
        let (worker, opened) = Worker::spawn("steward-audio-playback", &hint, notify, move || {
            setup(cfg, sh)
        })?;
        Ok(Self {
            shared,
            worker: Mutex::new(worker),
            opened,
            config: config.clone(),
        })
    }

    /// Closes this stream and opens a new one with its configuration: the
    /// same host and device name (or the default output device). For a
    /// lost device that came back, or after an [`Event::DeviceLost`] when
    /// the configuration names no device: the default then is the new one.
    /// Queued audio is dropped; counters start again from zero.
    ///
    /// # Errors
    /// As [`open`](Self::open); the old stream is closed either way.
    pub fn reopen(&self) -> Result<Self> {
        let _ = self.close();
        self.counted(Self::open(&self.config))
    }

    /// Like [`reopen`](Self::reopen), but on the host's current default
    /// output device whatever the configuration names: where to go when
    /// the named device is gone for good.
    ///
    /// # Errors
    /// As [`open`](Self::open); the old stream is closed either way.
    pub fn reopen_on_default(&self) -> Result<Self> {
        let _ = self.close();
        self.counted(Self::open(&AudioConfig {
            output_device: None,
            ..self.config.clone()
        }))
    }

    /// A reopened stream counts one reopen more than this one.
    fn counted(&self, reopened: Result<Self>) -> Result<Self> {
        reopened.map(|mut s| {
            s.opened.reopens = self.opened.reopens + 1;
            s
        })
    }

    /// The device's name.
    #[must_use]
    pub fn device(&self) -> &str {
        &self.opened.device
    }

    /// The audio host the stream runs on.
    #[must_use]
    pub fn host(&self) -> AudioHost {
        self.opened.host
    }

    /// What the device runs at.
    #[must_use]
    pub fn device_format(&self) -> DeviceFormat {
        self.opened.format
    }

    /// The configuration this stream was opened with.
    #[must_use]
    pub fn config(&self) -> &AudioConfig {
        &self.config
    }

    /// Queues PCM16LE mono audio at `sample_rate`, waiting while the queue
    /// is full.
    ///
    /// Cancel safety: when `pcm16` fits in the queue it is queued whole or
    /// not at all. A buffer larger than the whole queue is queued in pieces,
    /// so dropping the future midway leaves a prefix queued.
    ///
    /// # Errors
    /// [`Error::OddPcm16Length`], [`Error::DeviceLost`], [`Error::Closed`].
    pub async fn write(&self, pcm16: &[u8]) -> Result<()> {
        check_even(pcm16)?;
        let mut offset = 0;
        std::future::poll_fn(|cx| self.poll_write(pcm16, &mut offset, cx.waker())).await
    }

    /// Like [`write`](Self::write), blocking this thread up to `timeout`;
    /// `Ok(false)` if it passed before everything was queued.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_blocking(&self, pcm16: &[u8], timeout: Duration) -> Result<bool> {
        check_even(pcm16)?;
        let mut offset = 0;
        block_on_with_timeout(timeout, |cx| {
            self.poll_write(pcm16, &mut offset, cx.waker())
        })
        .transpose()
        .map(|done| done.is_some())
    }

    fn poll_write(&self, pcm16: &[u8], offset: &mut usize, waker: &Waker) -> Poll<Result<()>> {
        let mut st = self.shared.state.lock();
        if let Some(e) = st.status.dead(&self.opened.device) {
            return Poll::Ready(Err(e));
        }
        let rest = &pcm16[*offset..];
        if rest.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let free = st.capacity.saturating_sub(st.input.len());
        // Whole or nothing when it can fit at all (cancel safety).
        let take = if pcm16.len() <= st.capacity {
            if free >= rest.len() { rest.len() } else { 0 }
        } else {
            free.min(rest.len()) & !1
        };
        if take > 0 {
            let was_empty = st.input.is_empty();
            st.input.extend(&rest[..take]);
            st.idle = false;
            *offset += take;
            bump(&self.shared.counters.frames_in, take / 2);
            if was_empty {
                // A queue already holding audio has the thread's attention
                // (the callback wakes it when the ring runs low).
                self.shared.notify.notify();
            }
        }
        if *offset == pcm16.len() {
            return Poll::Ready(Ok(()));
        }
        st.writer = Some(waker.clone());
        Poll::Pending
    }

    /// Queues as much of `pcm16` as fits now (whole samples); returns the
    /// number of bytes taken.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn try_write(&self, pcm16: &[u8]) -> Result<usize> {
        check_even(pcm16)?;
        let mut st = self.shared.state.lock();
        if let Some(e) = st.status.dead(&self.opened.device) {
            return Err(e);
        }
        let take = st.capacity.saturating_sub(st.input.len()).min(pcm16.len()) & !1;
        if take > 0 {
            let was_empty = st.input.is_empty();
            st.input.extend(&pcm16[..take]);
            st.idle = false;
            bump(&self.shared.counters.frames_in, take / 2);
            if was_empty {
                self.shared.notify.notify();
            }
        }
        Ok(take)
    }

    /// Barge-in: drops all queued audio at once. The device plays silence
    /// from its next callback on (what the device's own buffer already holds,
    /// a period or two, still plays). Returns the frames dropped from the
    /// queue; [`Stats::cleared_frames`] also counts those dropped later in
    /// the stream thread and the callback.
    pub fn clear(&self) -> usize {
        let mut st = self.shared.state.lock();
        let frames = st.input.len() / 2;
        st.input.clear();
        // Everything goes anyway; a pending shed must not eat new audio.
        self.shared.shed_downstream.store(0, SeqCst);
        self.shared.generation.fetch_add(1, SeqCst);
        self.shared.flush_req.fetch_add(1, SeqCst);
        bump(&self.shared.counters.cleared_frames, frames);
        if let Some(w) = st.writer.take() {
            w.wake();
        }
        // The thread drops what it staged.
        self.shared.notify.notify();
        tracing::debug!(device = %self.opened.device, frames, "playback cleared");
        frames
    }

    /// How many [`clear`](Self::clear) calls so far: the clear generation.
    /// Audio written after the `n`-th clear belongs to generation `n`.
    #[must_use]
    pub fn clear_generation(&self) -> u64 {
        self.shared.generation.load(SeqCst)
    }

    /// PCM16-rate frames ([`AudioConfig::sample_rate`]) consumed since the
    /// stream opened: audio the callback played (silence not counted) plus
    /// audio dropped by a shed ([`shed_queued_to`](Self::shed_queued_to)).
    /// Audio dropped by [`clear`](Self::clear) is not counted. Monotonic,
    /// and never more than what was written.
    ///
    /// Exact, not a rate conversion of device frames: every run of device
    /// frames the callback reads carries the count of PCM16 frames it was
    /// made from (spread over the run in proportion), so the silence a
    /// resampler pads with counts nothing and rounding does not add up.
    /// The resampler's delay (a few ms) makes it run slightly ahead of what
    /// was heard. For barge-in: sample it when an answer's audio starts and
    /// compare with [`last_cleared`](Self::last_cleared) to learn how much
    /// of the answer was played.
    #[must_use]
    pub fn played_frames(&self) -> u64 {
        self.shared.consumed.load(SeqCst)
    }

    /// The most recent [`clear`](Self::clear) the audio callback has
    /// applied: its generation, the instant the callback wrote its first
    /// silent sample for it (the start of the callback that dropped the
    /// audio queued before it) and [`played_frames`](Self::played_frames)
    /// at that moment. `None` before the first one. `at` minus the instant
    /// `clear()` was called is how long the clear took to reach the device
    /// callback; nothing written before the clear plays after `at`.
    #[must_use]
    pub fn last_cleared(&self) -> Option<Cleared> {
        self.shared.last_cleared()
    }

    /// Memory pressure: keeps the newest [`AudioConfig::shed_floor_ms`] of
    /// queued audio and drops the rest. See [`shed_queued_to`](Self::shed_queued_to).
    pub fn shed_queued(&self) -> usize {
        let floor = Duration::from_millis(u64::from(self.config.shed_floor_ms));
        self.shed_queued_to(floor)
    }

    /// Memory pressure: keeps the newest `keep` of queued audio (the end of
    /// what was written) and drops the older part, oldest first, counted in
    /// [`Stats::shed_frames`]. Unlike [`clear`](Self::clear) playback goes
    /// on: the device jumps ahead to the audio kept. Returns the frames
    /// (PCM16 rate) to drop: those in the queue are gone when it returns;
    /// those already past it (staged or in the device ring, at most a few
    /// hundred ms) are dropped by the stream thread and the callback on
    /// their next run, without a lock or an allocation in the callback. A
    /// writer waiting for room is woken. Never blocks on the device.
    pub fn shed_queued_to(&self, keep: Duration) -> usize {
        let keep = self.config.duration_to_frames(keep);
        let mut st = self.shared.state.lock();
        let queued = st.input.len() / 2;
        let downstream = usize::try_from(self.shared.downstream()).unwrap_or(usize::MAX);
        // The newest audio is at the queue's end: it stays first.
        let from_queue = queued.saturating_sub(keep);
        let from_downstream = downstream.saturating_sub(keep.saturating_sub(queued));
        if from_queue > 0 {
            st.input.drain(..from_queue * 2);
            bump(&self.shared.counters.shed_frames, from_queue);
            bump(&self.shared.consumed, from_queue);
            if let Some(w) = st.writer.take() {
                w.wake();
            }
        }
        if from_downstream > 0 {
            self.shared
                .shed_downstream
                .fetch_add(from_downstream as u64, SeqCst);
            self.shared.notify.notify();
        }
        drop(st);
        let frames = from_queue + from_downstream;
        if frames > 0 {
            tracing::info!(
                device = %self.opened.device,
                frames,
                keep_frames = keep,
                "playback audio beyond the floor dropped"
            );
        }
        frames
    }

    /// Waits until everything written has been handed to the device (the
    /// resampler's tail included). Cancel safe.
    ///
    /// # Errors
    /// [`Error::DeviceLost`], [`Error::Closed`].
    pub async fn drain(&self) -> Result<()> {
        self.shared.drain_requested.store(true, SeqCst);
        self.shared.notify.notify();
        std::future::poll_fn(|cx| self.poll_drain(cx.waker())).await
    }

    /// Like [`drain`](Self::drain), blocking up to `timeout`; `Ok(false)`
    /// if it passed first.
    ///
    /// # Errors
    /// As [`drain`](Self::drain).
    pub fn drain_blocking(&self, timeout: Duration) -> Result<bool> {
        self.shared.drain_requested.store(true, SeqCst);
        self.shared.notify.notify();
        block_on_with_timeout(timeout, |cx| self.poll_drain(cx.waker()))
            .transpose()
            .map(|done| done.is_some())
    }

    fn poll_drain(&self, waker: &Waker) -> Poll<Result<()>> {
        let mut st = self.shared.state.lock();
        if st.idle && st.input.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = st.status.dead(&self.opened.device) {
            return Poll::Ready(Err(e));
        }
        st.drainer = Some(waker.clone());
        Poll::Pending
    }

    /// The next event, waiting for one. Ends with `None` once the stream is
    /// closed and no event is left. Cancel safe.
    pub async fn next_event(&self) -> Option<Event> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared.state.lock();
            if let Some(e) = st.status.events.pop_front() {
                return Poll::Ready(Some(e));
            }
            if st.status.finished {
                return Poll::Ready(None);
            }
            st.status.event_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// An event if one is queued.
    #[must_use]
    pub fn try_next_event(&self) -> Option<Event> {
        self.shared.state.lock().status.events.pop_front()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut s = self.opened.stats();
        self.shared.counters.fill(&mut s, self.config.sample_rate);
        let st = self.shared.state.lock();
        s.queued_frames = st.input.len() as u64 / 2 + self.shared.downstream();
        s.last_error.clone_from(&st.status.last_error);
        s.device_lost = st.status.lost.is_some();
        s
    }

    /// Stops the stream (queued audio is dropped; [`drain`](Self::drain)
    /// first to hear it), joins its thread, and returns the final counters.
    /// Idempotent.
    ///
    /// # Errors
    /// [`Error::Thread`] if the stream thread had panicked.
    pub fn close(&self) -> Result<Stats> {
        let ok = self.worker.lock().stop();
        let stats = self.stats();
        tracing::info!(device = %self.opened.device, frames = stats.frames_out, "playback closed");
        if ok {
            Ok(stats)
        } else {
            Err(Error::Thread {
                device: self.opened.device.clone(),
                message: "the playback thread panicked".into(),
            })
        }
    }
}

fn check_even(pcm16: &[u8]) -> Result<()> {
    if pcm16.len().is_multiple_of(2) {
        Ok(())
    } else {
        Err(Error::OddPcm16Length { len: pcm16.len() })
    }
}
