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

use parking_lot::Mutex;

use crate::config::{AudioConfig, AudioHost, DeviceFormat, SampleFormat};
use crate::error::{Error, Result};
use crate::stats::{Counters, Stats, bump};
use crate::stream::{
    Direction, Event, Notify, Opened, Side, Status, StreamHandle, block_on_with_timeout,
};

mod callback;
mod pump;

use pump::PlaybackPump;

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

impl Side for Shared {
    const DIRECTION: Direction = Direction::Output;
    type State = State;
    type Pump = PlaybackPump;

    fn new(config: &AudioConfig, notify: Arc<Notify>) -> Self {
        let capacity = config.ms_to_frames(config.playback_queue_ms).max(1) * 2;
        Shared {
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
            notify,
            drain_requested: AtomicBool::new(false),
            shed_downstream: AtomicU64::new(0),
            ring_skip: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            epoch: Instant::now(),
            cleared_seq: AtomicU64::new(0),
            cleared_generation: AtomicU64::new(0),
            cleared_at_ns: AtomicU64::new(0),
            cleared_played: AtomicU64::new(0),
        }
    }

    fn setup(config: AudioConfig, shared: Arc<Self>) -> Result<(PlaybackPump, Opened)> {
        pump::setup(config, shared)
    }

    fn state(&self) -> &Mutex<State> {
        &self.state
    }

    fn status(state: &mut State) -> &mut Status {
        &mut state.status
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn queued_frames(&self, state: &State) -> u64 {
        state.input.len() as u64 / 2 + self.downstream()
    }
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
    stream: StreamHandle<Shared>,
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
        StreamHandle::open(config).map(|stream| Self { stream })
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
        self.stream.reopen(false).map(|stream| Self { stream })
    }

    /// Like [`reopen`](Self::reopen), but on the host's current default
    /// output device whatever the configuration names: where to go when
    /// the named device is gone for good.
    ///
    /// # Errors
    /// As [`open`](Self::open); the old stream is closed either way.
    pub fn reopen_on_default(&self) -> Result<Self> {
        self.stream.reopen(true).map(|stream| Self { stream })
    }

    /// The device's name.
    #[must_use]
    pub fn device(&self) -> &str {
        self.stream.device()
    }

    /// The audio host the stream runs on.
    #[must_use]
    pub fn host(&self) -> AudioHost {
        self.stream.host()
    }

    /// What the device runs at.
    #[must_use]
    pub fn device_format(&self) -> DeviceFormat {
        self.stream.device_format()
    }

    /// The configuration this stream was opened with.
    #[must_use]
    pub fn config(&self) -> &AudioConfig {
        self.stream.config()
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
        let mut st = self.stream.shared.state.lock();
        if let Some(e) = self.stream.dead(&mut st) {
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
            bump(&self.stream.shared.counters.frames_in, take / 2);
            if was_empty {
                // A queue already holding audio has the thread's attention
                // (the callback wakes it when the ring runs low).
                self.stream.shared.notify.notify();
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
        let mut st = self.stream.shared.state.lock();
        if let Some(e) = self.stream.dead(&mut st) {
            return Err(e);
        }
        let take = st.capacity.saturating_sub(st.input.len()).min(pcm16.len()) & !1;
        if take > 0 {
            let was_empty = st.input.is_empty();
            st.input.extend(&pcm16[..take]);
            st.idle = false;
            bump(&self.stream.shared.counters.frames_in, take / 2);
            if was_empty {
                self.stream.shared.notify.notify();
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
        let mut st = self.stream.shared.state.lock();
        let frames = st.input.len() / 2;
        st.input.clear();
        // Everything goes anyway; a pending shed must not eat new audio.
        self.stream.shared.shed_downstream.store(0, SeqCst);
        self.stream.shared.generation.fetch_add(1, SeqCst);
        self.stream.shared.flush_req.fetch_add(1, SeqCst);
        bump(&self.stream.shared.counters.cleared_frames, frames);
        if let Some(w) = st.writer.take() {
            w.wake();
        }
        // The thread drops what it staged.
        self.stream.shared.notify.notify();
        tracing::debug!(device = %self.stream.opened.device, frames, "playback cleared");
        frames
    }

    /// How many [`clear`](Self::clear) calls so far: the clear generation.
    /// Audio written after the `n`-th clear belongs to generation `n`.
    #[must_use]
    pub fn clear_generation(&self) -> u64 {
        self.stream.shared.generation.load(SeqCst)
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
        self.stream.shared.consumed.load(SeqCst)
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
        self.stream.shared.last_cleared()
    }

    /// Memory pressure: keeps the newest [`AudioConfig::shed_floor_ms`] of
    /// queued audio and drops the rest. See [`shed_queued_to`](Self::shed_queued_to).
    pub fn shed_queued(&self) -> usize {
        let floor = Duration::from_millis(u64::from(self.stream.config.shed_floor_ms));
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
        let keep = self.stream.config.duration_to_frames(keep);
        let mut st = self.stream.shared.state.lock();
        let queued = st.input.len() / 2;
        let downstream = usize::try_from(self.stream.shared.downstream()).unwrap_or(usize::MAX);
        // The newest audio is at the queue's end: it stays first.
        let from_queue = queued.saturating_sub(keep);
        let from_downstream = downstream.saturating_sub(keep.saturating_sub(queued));
        if from_queue > 0 {
            st.input.drain(..from_queue * 2);
            bump(&self.stream.shared.counters.shed_frames, from_queue);
            bump(&self.stream.shared.consumed, from_queue);
            if let Some(w) = st.writer.take() {
                w.wake();
            }
        }
        if from_downstream > 0 {
            self.stream
                .shared
                .shed_downstream
                .fetch_add(from_downstream as u64, SeqCst);
            self.stream.shared.notify.notify();
        }
        drop(st);
        let frames = from_queue + from_downstream;
        if frames > 0 {
            tracing::info!(
                device = %self.stream.opened.device,
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
        self.stream.shared.drain_requested.store(true, SeqCst);
        self.stream.shared.notify.notify();
        std::future::poll_fn(|cx| self.poll_drain(cx.waker())).await
    }

    /// Like [`drain`](Self::drain), blocking up to `timeout`; `Ok(false)`
    /// if it passed first.
    ///
    /// # Errors
    /// As [`drain`](Self::drain).
    pub fn drain_blocking(&self, timeout: Duration) -> Result<bool> {
        self.stream.shared.drain_requested.store(true, SeqCst);
        self.stream.shared.notify.notify();
        block_on_with_timeout(timeout, |cx| self.poll_drain(cx.waker()))
            .transpose()
            .map(|done| done.is_some())
    }

    fn poll_drain(&self, waker: &Waker) -> Poll<Result<()>> {
        let mut st = self.stream.shared.state.lock();
        if st.idle && st.input.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = self.stream.dead(&mut st) {
            return Poll::Ready(Err(e));
        }
        st.drainer = Some(waker.clone());
        Poll::Pending
    }

    /// The next event, waiting for one. Ends with `None` once the stream is
    /// closed and no event is left. Cancel safe.
    pub async fn next_event(&self) -> Option<Event> {
        self.stream.next_event().await
    }

    /// An event if one is queued.
    #[must_use]
    pub fn try_next_event(&self) -> Option<Event> {
        self.stream.try_next_event()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.stream.stats()
    }

    /// Stops the stream (queued audio is dropped; [`drain`](Self::drain)
    /// first to hear it), joins its thread, and returns the final counters.
    /// Idempotent.
    ///
    /// # Errors
    /// [`Error::Thread`] if the stream thread had panicked.
    pub fn close(&self) -> Result<Stats> {
        self.stream.close()
    }
}

fn check_even(pcm16: &[u8]) -> Result<()> {
    if pcm16.len().is_multiple_of(2) {
        Ok(())
    } else {
        Err(Error::OddPcm16Length { len: pcm16.len() })
    }
}
