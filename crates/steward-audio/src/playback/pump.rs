//! The playback stream's thread: takes written audio from the queue,
//! resamples it into the ring the callback reads, applies clears, sheds
//! and drains, and opens the backend stream ([`setup`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait as _, StreamTrait as _};

use super::Shared;
use super::callback::{OutputCallback, SEGMENT_RING, Segment};
use crate::config::{AudioConfig, SampleFormat};
use crate::convert::{PcmSample, PlaybackConverter};
use crate::error::{Error, Result};
use crate::stats::bump;
use crate::stream::{
    Direction, ErrorSink, IDLE_WAKE, LogLimiter, Opened, Presence, Pump, drain_errors, find_device,
    open_host, pick_format, stream_config, stream_device,
};

/// After the writer pauses this long, the resampler's held-back tail is
/// pushed out (padded with silence) so the end of an utterance is heard.
const IDLE_FLUSH: Duration = Duration::from_millis(40);

/// The stream thread's state.
pub(super) struct PlaybackPump {
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

pub(super) fn setup(config: AudioConfig, shared: Arc<Shared>) -> Result<(PlaybackPump, Opened)> {
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
    let cb = OutputCallback::new(
        consumer,
        seg_consumer,
        usize::from(format.channels.max(1)),
        Arc::clone(&shared),
        // Half the ring: woken about every 100 ms while audio plays.
        ring_capacity / 2,
    );
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
