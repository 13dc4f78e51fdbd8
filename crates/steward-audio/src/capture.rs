//! Capture: device audio to PCM16 24 kHz mono chunks.
//!
//! Path: the audio callback downmixes to mono `f32` at the device rate and
//! pushes it into a one-second lock-free ring (no allocation, no lock). The
//! stream's own thread, woken by the callback once the ring holds the rest
//! of the next chunk, drains the ring, resamples,
//! converts to PCM16 and cuts chunks into a bounded queue; when that queue is
//! full the OLDEST chunk is dropped and counted, so a slow reader always gets
//! the freshest audio. (The callback cannot drop the oldest audio itself: the
//! ring's read end belongs to the consumer. If the stream thread ever stalls
//! for a whole second, the callback drops the newest frames and counts them
//! in [`Stats::ring_overrun_frames`].)

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use cpal::traits::{DeviceTrait as _, StreamTrait as _};
use parking_lot::Mutex;

use crate::config::{AudioConfig, AudioHost, DeviceFormat, SampleFormat};
use crate::convert::{CaptureConverter, PcmSample, mix_frame};
use crate::error::{Error, Result};
use crate::stats::{Counters, Stats, bump};
use crate::stream::{
    Direction, ErrorSink, Event, IDLE_WAKE, LogLimiter, Notify, Opened, Presence, Pump, Side,
    Status, StreamHandle, block_on_with_timeout, callback_hook, drain_errors, find_device,
    open_host, pick_format, stream_config, stream_device,
};

/// State shared by the handle and the stream thread.
#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    reader: Option<Waker>,
    status: Status,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    counters: Arc<Counters>,
    /// Wakes the stream thread.
    notify: Arc<Notify>,
    /// Frames in the ring at which the callback wakes the stream thread:
    /// what the next chunk still needs (set by the thread).
    wake_frames: AtomicUsize,
}

impl Side for Shared {
    const DIRECTION: Direction = Direction::Input;
    type State = State;
    type Pump = CapturePump;

    fn new(_config: &AudioConfig, notify: Arc<Notify>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            counters: Arc::new(Counters::default()),
            notify,
            wake_frames: AtomicUsize::new(1),
        }
    }

    fn setup(config: AudioConfig, shared: Arc<Self>) -> Result<(CapturePump, Opened)> {
        setup(config, shared)
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
        state.chunks.iter().map(|c| c.len() as u64 / 2).sum()
    }
}

/// A running capture stream: device audio in, PCM16LE mono chunks at
/// [`AudioConfig::sample_rate`] out.
///
/// How audio moves: the audio callback downmixes to mono `f32` at the
/// device rate and pushes it into a one-second lock-free ring (no
/// allocation, no lock, no wait). The stream's own thread, woken by the
/// callback once the ring holds what the next chunk needs (about once a
/// chunk), drains the ring, resamples, converts to PCM16 and cuts chunks into a bounded
/// queue ([`AudioConfig::capture_queue_ms`]). When the reader falls behind
/// and the queue is full, the OLDEST chunk is dropped and counted in
/// [`Stats::overflow_frames`], so a slow reader always gets the freshest
/// audio. (The callback itself cannot drop the oldest audio: the ring's read
/// end belongs to the other thread. Should that thread stall for a whole
/// second, the callback drops the newest frames and counts them in
/// [`Stats::ring_overrun_frames`].)
///
/// Dropping it (or [`close`](Self::close)) stops the device stream and
/// joins its thread before returning.
///
/// Sharing: every method also exists with `&self` ([`recv_chunk`](Self::recv_chunk),
/// [`try_recv_chunk`](Self::try_recv_chunk), [`recv_chunk_blocking`](Self::recv_chunk_blocking),
/// [`shed_queued`](Self::shed_queued)), so a `Capture` can sit in an `Arc`
/// that a memory-pressure handler also holds. The queue's lock is never
/// taken by the audio callback. Read from one task at a time: a second
/// concurrent reader takes over the wake-up of the first.
///
/// ```no_run
/// # async fn run() -> steward_audio::Result<()> {
/// use steward_audio::{Capture, pcm16_to_base64};
/// let mut mic = Capture::builder().device("default").build()?;
/// loop {
///     let chunk = mic.next_chunk().await?; // 20 ms of PCM16 at 24 kHz
///     let _event = pcm16_to_base64(&chunk); // for input_audio_buffer.append
/// #   break;
/// }
/// println!("{:?}", mic.close()?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Capture {
    stream: StreamHandle<Shared>,
}

/// Builds a [`Capture`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CaptureBuilder {
    config: AudioConfig,
}

impl CaptureBuilder {
    /// Starts from `config` (its input fields).
    pub fn config(mut self, config: AudioConfig) -> Self {
        self.config = config;
        self
    }

    /// Records from the device with this name (see [`list_devices`](crate::list_devices)).
    pub fn device(mut self, name: impl Into<String>) -> Self {
        self.config.input_device = Some(name.into());
        self
    }

    /// Uses this audio host (default: [`AudioHost::Default`]).
    pub fn host(mut self, host: AudioHost) -> Self {
        self.config.host = host;
        self
    }

    /// Duration of each chunk handed out.
    pub fn chunk_duration(mut self, d: Duration) -> Self {
        self.config.set_chunk_duration(d);
        self
    }

    /// Captured audio kept for a slow reader before the oldest is dropped.
    pub fn queue(mut self, d: Duration) -> Self {
        let ms = d.as_millis().clamp(1, 600_000);
        self.config.capture_queue_ms = u32::try_from(ms).unwrap_or(600_000);
        self
    }

    /// Forces the device-side rate, channels and sample type.
    pub fn device_format(mut self, rate: u32, channels: u16, format: SampleFormat) -> Self {
        self.config.device_sample_rate = Some(rate);
        self.config.device_channels = Some(channels);
        self.config.device_sample_format = Some(format);
        self
    }

    /// Opens the stream and starts it.
    ///
    /// # Errors
    /// See [`Capture::open`].
    pub fn build(self) -> Result<Capture> {
        Capture::open(&self.config)
    }
}

/// The callback's state: everything preallocated.
struct InputCallback {
    producer: rtrb::Producer<f32>,
    channels: usize,
    counters: Arc<Counters>,
    shared: Arc<Shared>,
}

impl InputCallback {
    /// Runs on the audio thread: no allocation, no lock, no wait.
    #[inline]
    fn on_data<T: PcmSample>(&mut self, data: &[T]) {
        let _scope = callback_hook::Scope::enter();
        let frames = data.len() / self.channels;
        bump(&self.counters.callbacks, 1);
        bump(&self.counters.frames_in, frames);
        let n = frames.min(self.producer.slots());
        if n < frames {
            bump(&self.counters.ring_overrun_frames, frames - n);
        }
        if n == 0 {
            return;
        }
        if let Ok(chunk) = self.producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(data.chunks_exact(self.channels).map(mix_frame));
        }
        // The next chunk is complete: wake the thread (an atomic swap, a
        // futex wake at most; no lock, no allocation).
        let filled = self.producer.buffer().capacity() - self.producer.slots();
        if filled >= self.shared.wake_frames.load(Ordering::Relaxed) {
            self.shared.notify.notify();
        }
    }
}

/// The stream thread's state.
struct CapturePump {
    // Field order matters: the stream drops first, stopping callbacks.
    // `None` once the device is lost: nothing moves after that.
    stream: Option<cpal::Stream>,
    presence: Presence,
    consumer: rtrb::Consumer<f32>,
    errors: rtrb::Consumer<cpal::Error>,
    log: LogLimiter,
    converter: CaptureConverter,
    partial: Vec<u8>,
    chunk_bytes: usize,
    chunk_frames: usize,
    max_chunks: usize,
    /// The most `wake_frames` may be: half the ring.
    max_wake: usize,
    shared: Arc<Shared>,
    device: String,
}

impl CapturePump {
    /// Tells the callback how many ring frames complete the next chunk.
    fn set_wake(&self) {
        let missing = self.chunk_bytes.saturating_sub(self.partial.len()) / 2;
        let frames = self
            .converter
            .input_needed(missing.max(1))
            .min(self.max_wake);
        self.shared.wake_frames.store(frames, Ordering::Relaxed);
    }
}

impl Pump for CapturePump {
    fn tick(&mut self) -> Duration {
        if self.stream.is_none() {
            return IDLE_WAKE;
        }
        self.move_audio();
        self.presence.until_next()
    }
}

impl CapturePump {
    fn move_audio(&mut self) {
        let mut events = Vec::new();
        if !self.errors.is_empty() {
            events = drain_errors(&mut self.errors, &self.device, &mut self.log);
        }
        events.extend(self.presence.check());
        if !events.is_empty() {
            let mut st = self.shared.state.lock();
            if st.status.apply(events) {
                if let Some(w) = st.reader.take() {
                    w.wake();
                }
                drop(st);
                // Lost: stop recording (a server may have moved the stream
                // to another device); readers get what is queued, then the loss.
                self.stream = None;
                return;
            }
        }
        let available = self.consumer.slots();
        if available == 0 {
            return;
        }
        if let Ok(chunk) = self.consumer.read_chunk(available) {
            let (a, b) = chunk.as_slices();
            self.converter.push_mono(a, &mut self.partial);
            self.converter.push_mono(b, &mut self.partial);
            chunk.commit_all();
        }
        if self.partial.len() < self.chunk_bytes {
            self.set_wake();
            return;
        }
        let mut ready = Vec::new();
        while self.partial.len() >= self.chunk_bytes {
            ready.push(self.partial.drain(..self.chunk_bytes).collect::<Vec<u8>>());
        }
        self.set_wake();
        bump(
            &self.shared.counters.frames_out,
            ready.len() * self.chunk_frames,
        );
        let mut st = self.shared.state.lock();
        for chunk in ready {
            if st.chunks.len() >= self.max_chunks {
                st.chunks.pop_front();
                bump(&self.shared.counters.overflow_frames, self.chunk_frames);
            }
            st.chunks.push_back(chunk);
        }
        if let Some(w) = st.reader.take() {
            w.wake();
        }
    }
}

impl Drop for CapturePump {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.status.finished = true;
        if let Some(w) = st.reader.take() {
            w.wake();
        }
        if let Some(w) = st.status.event_waker.take() {
            w.wake();
        }
    }
}

fn build_input<T>(
    device: &cpal::Device,
    name: &str,
    cfg: cpal::StreamConfig,
    mut cb: InputCallback,
    mut errs: ErrorSink,
) -> Result<cpal::Stream>
where
    T: PcmSample + cpal::SizedSample,
{
    device
        .build_input_stream::<T, _, _>(
            cfg,
            move |data: &[T], _: &cpal::InputCallbackInfo| cb.on_data(data),
            move |e| errs.record(e),
            None,
        )
        .map_err(|e| Error::backend(name, "open the input stream", &e))
}

fn setup(config: AudioConfig, shared: Arc<Shared>) -> Result<(CapturePump, Opened)> {
    let (host, host_kind) = open_host(config.host)?;
    let (device, name) = find_device(&host, Direction::Input, config.input_device.as_deref())?;
    let (format, buffers) = pick_format(&device, &name, Direction::Input, &config)?;
    let device = stream_device(host_kind, device, &name, Direction::Input)?;
    drop(host);
    let converter = CaptureConverter::new(format.sample_rate, format.channels, config.sample_rate)?;
    // One second of mono audio at the device rate.
    let ring = format.sample_rate.max(1_000) as usize;
    let (producer, consumer) = rtrb::RingBuffer::new(ring);
    let max_wake = ring / 2;
    // Before the first callback: a whole chunk.
    shared.wake_frames.store(
        converter
            .input_needed(config.chunk_frames as usize)
            .min(max_wake),
        Ordering::Relaxed,
    );
    let cb = InputCallback {
        producer,
        channels: usize::from(format.channels.max(1)),
        counters: Arc::clone(&shared.counters),
        shared: Arc::clone(&shared),
    };
    let (errs, errors) = ErrorSink::new(Arc::clone(&shared.counters), Arc::clone(&shared.notify));
    let cfg = stream_config(format, buffers, Direction::Input, &config);
    let opened = Opened::new(format, name.clone(), host_kind, &cfg);
    let stream = match format.sample_format {
        SampleFormat::I8 => build_input::<i8>(&device, &name, cfg, cb, errs),
        SampleFormat::I16 => build_input::<i16>(&device, &name, cfg, cb, errs),
        SampleFormat::I32 => build_input::<i32>(&device, &name, cfg, cb, errs),
        SampleFormat::U8 => build_input::<u8>(&device, &name, cfg, cb, errs),
        SampleFormat::U16 => build_input::<u16>(&device, &name, cfg, cb, errs),
        SampleFormat::U32 => build_input::<u32>(&device, &name, cfg, cb, errs),
        SampleFormat::F32 => build_input::<f32>(&device, &name, cfg, cb, errs),
        SampleFormat::F64 => build_input::<f64>(&device, &name, cfg, cb, errs),
    }?;
    stream
        .play()
        .map_err(|e| Error::backend(&name, "start the input stream", &e))?;
    let chunk_frames = config.chunk_frames as usize;
    let queue_frames = config.ms_to_frames(config.capture_queue_ms);
    tracing::info!(
        device = %name,
        host = %host_kind,
        rate = format.sample_rate,
        channels = format.channels,
        sample_format = %format.sample_format,
        buffer_frames = ?opened.buffer_frames,
        "capture started"
    );
    Ok((
        CapturePump {
            stream: Some(stream),
            presence: Presence::new(host_kind, &name, Direction::Input),
            consumer,
            errors,
            log: LogLimiter::new(),
            converter,
            partial: Vec::with_capacity(config.chunk_bytes() * 4),
            chunk_bytes: config.chunk_bytes(),
            chunk_frames,
            max_chunks: queue_frames.div_ceil(chunk_frames).max(1),
            max_wake,
            shared,
            device: name,
        },
        opened,
    ))
}

impl Capture {
    /// A builder starting from [`AudioConfig::default`].
    pub fn builder() -> CaptureBuilder {
        CaptureBuilder::default()
    }

    /// Opens `config.input_device` (default: the default input), starts it,
    /// and returns once audio can flow.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], [`Error::DeviceNotFound`],
    /// [`Error::UnsupportedConfig`], [`Error::HostUnavailable`] or
    /// [`Error::Backend`] naming the device.
    pub fn open(config: &AudioConfig) -> Result<Self> {
        StreamHandle::open(config).map(|stream| Self { stream })
    }

    /// Closes this stream and opens a new one with its configuration: the
    /// same host and device name (or the default input device). For a lost
    /// device that came back, or after a [`Event::DeviceLost`] when the
    /// configuration names no device: the default then is the new one.
    /// Counters start again from zero.
    ///
    /// # Errors
    /// As [`open`](Self::open); the old stream is closed either way.
    pub fn reopen(&self) -> Result<Self> {
        self.stream.reopen(false).map(|stream| Self { stream })
    }

    /// Like [`reopen`](Self::reopen), but on the host's current default
    /// input device whatever the configuration names: where to go when the
    /// named device is gone for good.
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

    /// The next chunk: `chunk_frames` PCM16LE mono samples at `sample_rate`.
    ///
    /// Cancel safe: a chunk leaves the queue only when this returns it.
    ///
    /// # Errors
    /// [`Error::DeviceLost`] or [`Error::Closed`] once the queued chunks are gone.
    pub async fn next_chunk(&mut self) -> Result<Vec<u8>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx.waker())).await
    }

    /// A queued chunk if there is one, without waiting.
    ///
    /// # Errors
    /// As [`next_chunk`](Self::next_chunk).
    pub fn try_next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        self.try_recv_chunk()
    }

    /// Blocks this thread for the next chunk, up to `timeout` (`Ok(None)`
    /// when it passes). For callers without an async runtime.
    ///
    /// # Errors
    /// As [`next_chunk`](Self::next_chunk).
    pub fn next_chunk_blocking(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        self.recv_chunk_blocking(timeout)
    }

    fn poll_chunk(&self, waker: &Waker) -> Poll<Result<Vec<u8>>> {
        let mut st = self.stream.shared.state.lock();
        if let Some(c) = st.chunks.pop_front() {
            return Poll::Ready(Ok(c));
        }
        if let Some(e) = self.stream.dead(&mut st) {
            return Poll::Ready(Err(e));
        }
        st.reader = Some(waker.clone());
        Poll::Pending
    }

    /// [`next_chunk`](Self::next_chunk) through a shared reference (for a
    /// `Capture` in an `Arc`). Cancel safe.
    ///
    /// # Errors
    /// As [`next_chunk`](Self::next_chunk).
    pub async fn recv_chunk(&self) -> Result<Vec<u8>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx.waker())).await
    }

    /// [`try_next_chunk`](Self::try_next_chunk) through a shared reference.
    ///
    /// # Errors
    /// As [`next_chunk`](Self::next_chunk).
    pub fn try_recv_chunk(&self) -> Result<Option<Vec<u8>>> {
        let mut st = self.stream.shared.state.lock();
        if let Some(c) = st.chunks.pop_front() {
            return Ok(Some(c));
        }
        match self.stream.dead(&mut st) {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// [`next_chunk_blocking`](Self::next_chunk_blocking) through a shared reference.
    ///
    /// # Errors
    /// As [`next_chunk`](Self::next_chunk).
    pub fn recv_chunk_blocking(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        block_on_with_timeout(timeout, |cx| self.poll_chunk(cx.waker())).transpose()
    }

    /// Drops every queued chunk (say, after the assistant stopped listening);
    /// returns how many frames were dropped. Not counted as overflow.
    pub fn discard_queued(&mut self) -> usize {
        self.discard()
    }

    /// [`discard_queued`](Self::discard_queued) through a shared reference.
    pub fn discard(&self) -> usize {
        let mut st = self.stream.shared.state.lock();
        let frames = st.chunks.iter().map(|c| c.len() / 2).sum();
        st.chunks.clear();
        frames
    }

    /// Memory pressure: keeps the newest [`AudioConfig::shed_floor_ms`] of
    /// queued chunks. See [`shed_queued_to`](Self::shed_queued_to).
    pub fn shed_queued(&self) -> usize {
        let floor = Duration::from_millis(u64::from(self.stream.config.shed_floor_ms));
        self.shed_queued_to(floor)
    }

    /// Memory pressure: drops the oldest queued chunks until at most `keep`
    /// of audio is left (whole chunks), counted in [`Stats::shed_frames`]
    /// and logged; returns the frames dropped. The reader then gets the
    /// newest audio, as after an overflow. Takes the queue's lock (never
    /// taken by the audio callback) for a moment.
    pub fn shed_queued_to(&self, keep: Duration) -> usize {
        let keep = self.stream.config.duration_to_frames(keep);
        let mut st = self.stream.shared.state.lock();
        let mut queued: usize = st.chunks.iter().map(|c| c.len() / 2).sum();
        let mut frames = 0;
        while queued > keep {
            let Some(chunk) = st.chunks.pop_front() else {
                break;
            };
            queued -= chunk.len() / 2;
            frames += chunk.len() / 2;
        }
        drop(st);
        if frames > 0 {
            bump(&self.stream.shared.counters.shed_frames, frames);
            tracing::info!(
                device = %self.stream.opened.device,
                frames,
                keep_frames = keep,
                "captured audio beyond the floor dropped"
            );
        }
        frames
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

    /// Stops the stream, joins its thread, and returns the final counters.
    /// Idempotent; reads after it drain what is queued, then return
    /// [`Error::Closed`].
    ///
    /// # Errors
    /// [`Error::Thread`] if the stream thread had panicked.
    pub fn close(&self) -> Result<Stats> {
        self.stream.close()
    }
}
