//! What capture and playback share: device lookup, format choice, the
//! stream thread, backend error plumbing, events and waiting.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait as _, HostTrait as _};
use serde::{Deserialize, Serialize};

use crate::config::{AudioConfig, DeviceFormat, DeviceInfo, FormatRange, SampleFormat};
use crate::error::{Error, Result};
use crate::stats::{Counters, bump};

/// How often a stream's thread moves audio between the ring buffer and the
/// async side. The callback never waits for it: the rings absorb the gap.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Events kept for `next_event` before the oldest is dropped.
const EVENT_QUEUE: usize = 64;

/// Backend errors the error callback can park before the stream thread
/// collects them (more are counted, not stored).
const ERROR_RING: usize = 32;

/// Something that happened to a stream, delivered by `next_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// The device disappeared (unplugged, server gone): the stream is dead;
    /// open a new one.
    DeviceLost {
        /// The device's name.
        device: String,
        /// What the backend said.
        message: String,
    },
    /// The backend reported a non-fatal error (an xrun, say).
    StreamError {
        /// The device's name.
        device: String,
        /// What the backend said.
        message: String,
        /// How many times in a row it said so (repeats are folded).
        count: u64,
    },
}

/// Capture or playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Input,
    Output,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// State both directions keep under the handle's lock.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) events: VecDeque<Event>,
    pub(crate) event_waker: Option<Waker>,
    pub(crate) last_error: Option<String>,
    /// Set when the device is lost: the stream is finished.
    pub(crate) lost: Option<String>,
    /// The stream thread has ended.
    pub(crate) finished: bool,
}

impl Status {
    pub(crate) fn push_event(&mut self, event: Event) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(event);
        if let Some(w) = self.event_waker.take() {
            w.wake();
        }
    }

    /// Why the stream can no longer move audio, if it cannot.
    pub(crate) fn dead(&self, device: &str) -> Option<Error> {
        if let Some(message) = &self.lost {
            return Some(Error::DeviceLost {
                device: device.to_string(),
                message: message.clone(),
            });
        }
        self.finished.then(|| Error::Closed {
            device: device.to_string(),
        })
    }
}

/// The error callback's end: moves the backend error into a ring (no
/// allocation, no lock) and counts it.
pub(crate) struct ErrorSink {
    producer: rtrb::Producer<cpal::Error>,
    counters: Arc<Counters>,
}

impl ErrorSink {
    pub(crate) fn new(counters: Arc<Counters>) -> (Self, rtrb::Consumer<cpal::Error>) {
        let (producer, consumer) = rtrb::RingBuffer::new(ERROR_RING);
        (Self { producer, counters }, consumer)
    }

    pub(crate) fn record(&mut self, err: cpal::Error) {
        bump(&self.counters.errors, 1);
        // Full: the thread is behind; the count above still tells.
        let _ = self.producer.push(err);
    }
}

/// Takes the parked backend errors (stream thread) and logs them, folding
/// repeats of one message into one event: some backends report the same
/// transient error thousands of times (the ALSA PulseAudio plugin returns
/// EIO while its stream starts up).
pub(crate) fn drain_errors(
    errors: &mut rtrb::Consumer<cpal::Error>,
    device: &str,
    log: &mut LogLimiter,
) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    while let Ok(err) = errors.pop() {
        let message = err.to_string();
        let lost = matches!(
            err.kind(),
            cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated
        );
        if let Some(Event::StreamError {
            message: last,
            count,
            ..
        }) = out.last_mut()
            && !lost
            && *last == message
        {
            *count += 1;
            continue;
        }
        if lost {
            tracing::error!(device, error = %message, "audio device lost");
            out.push(Event::DeviceLost {
                device: device.to_string(),
                message,
            });
        } else {
            log.warn(device, &message);
            out.push(Event::StreamError {
                device: device.to_string(),
                message,
                count: 1,
            });
        }
    }
    out
}

/// Logs a repeated stream error at most once a second, with the number of
/// repeats left out meanwhile.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    last: String,
    at: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new() -> Self {
        Self {
            last: String::new(),
            at: None,
            suppressed: 0,
        }
    }

    fn warn(&mut self, device: &str, message: &str) {
        let now = Instant::now();
        let recent = self
            .at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
        if recent && self.last == message {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            device,
            error = %message,
            repeats_not_logged = self.suppressed,
            "audio stream error"
        );
        message.clone_into(&mut self.last);
        self.at = Some(now);
        self.suppressed = 0;
    }
}

impl Status {
    /// Records drained errors; returns whether the device is now lost.
    pub(crate) fn apply(&mut self, events: Vec<Event>) -> bool {
        for event in events {
            match &event {
                Event::DeviceLost { message, .. } => {
                    self.last_error = Some(message.clone());
                    self.lost = Some(message.clone());
                }
                Event::StreamError { message, .. } => self.last_error = Some(message.clone()),
            }
            self.push_event(event);
        }
        self.lost.is_some()
    }
}

pub(crate) fn host() -> cpal::Host {
    cpal::default_host()
}

fn device_name(d: &cpal::Device) -> String {
    match d.id() {
        Ok(id) => id.id().to_string(),
        Err(_) => d.to_string(),
    }
}

fn description(d: &cpal::Device) -> Option<String> {
    d.description().ok().map(|desc| desc.name().to_string())
}

/// Every device of the default audio host.
///
/// # Errors
/// [`Error::HostUnavailable`] or [`Error::Backend`] when the backend cannot enumerate.
pub fn list_devices() -> Result<Vec<DeviceInfo>> {
    let host = host();
    let default_in = host.default_input_device().map(|d| device_name(&d));
    let default_out = host.default_output_device().map(|d| device_name(&d));
    let devices = host
        .devices()
        .map_err(|e| Error::backend("*", "list the devices", &e))?;
    Ok(devices
        .map(|d| {
            let name = device_name(&d);
            let description = description(&d).filter(|desc| *desc != name);
            DeviceInfo {
                is_default_input: default_in.as_deref() == Some(name.as_str()),
                is_default_output: default_out.as_deref() == Some(name.as_str()),
                supports_input: d.supports_input(),
                supports_output: d.supports_output(),
                description,
                name,
            }
        })
        .collect())
}

/// Finds a device by name: exact id, then exact description, then a unique
/// case-insensitive substring of either.
pub(crate) fn find_device(
    host: &cpal::Host,
    dir: Direction,
    name: Option<&str>,
) -> Result<(cpal::Device, String)> {
    let not_found = |name: &str, available: Vec<String>| Error::DeviceNotFound {
        direction: dir.as_str(),
        name: name.to_string(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    };
    let Some(name) = name else {
        let dev = match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return dev
            .map(|d| {
                let n = device_name(&d);
                (d, n)
            })
            .ok_or_else(|| not_found("default", Vec::new()));
    };
    let devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|e| Error::backend(name, "list the devices", &e))?
        .filter(|d| match dir {
            Direction::Input => d.supports_input(),
            Direction::Output => d.supports_output(),
        })
        .collect();
    let names: Vec<(String, Option<String>)> = devices
        .iter()
        .map(|d| (device_name(d), description(d)))
        .collect();
    let lower = name.to_lowercase();
    let pick = names
        .iter()
        .position(|(id, _)| id == name)
        .or_else(|| {
            names
                .iter()
                .position(|(_, desc)| desc.as_deref() == Some(name))
        })
        .or_else(|| {
            let hits: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, (id, desc))| {
                    id.to_lowercase().contains(&lower)
                        || desc
                            .as_ref()
                            .is_some_and(|d| d.to_lowercase().contains(&lower))
                })
                .map(|(i, _)| i)
                .collect();
            (hits.len() == 1).then(|| hits[0])
        });
    match pick {
        Some(i) => {
            let id = names[i].0.clone();
            let dev = devices
                .into_iter()
                .nth(i)
                .ok_or_else(|| not_found(name, Vec::new()))?;
            Ok((dev, id))
        }
        None => Err(not_found(
            name,
            names.into_iter().map(|(id, _)| id).collect(),
        )),
    }
}

/// Reads what the device supports and picks the format to open.
pub(crate) fn pick_format(
    device: &cpal::Device,
    name: &str,
    dir: Direction,
    config: &AudioConfig,
) -> Result<DeviceFormat> {
    let (ranges, default) = match dir {
        Direction::Input => (
            device
                .supported_input_configs()
                .map(|it| it.collect::<Vec<_>>()),
            device.default_input_config().ok(),
        ),
        Direction::Output => (
            device
                .supported_output_configs()
                .map(|it| it.collect::<Vec<_>>()),
            device.default_output_config().ok(),
        ),
    };
    let ranges = ranges.map_err(|e| Error::backend(name, "read the supported formats", &e))?;
    let ours: Vec<FormatRange> = ranges
        .iter()
        .filter_map(|r| {
            Some(FormatRange {
                channels: r.channels(),
                min_sample_rate: r.min_sample_rate(),
                max_sample_rate: r.max_sample_rate(),
                sample_format: SampleFormat::from_cpal(r.sample_format())?,
            })
        })
        .collect();
    let default = default.and_then(|d| {
        Some(DeviceFormat {
            sample_rate: d.sample_rate(),
            channels: d.channels(),
            sample_format: SampleFormat::from_cpal(d.sample_format())?,
        })
    });
    crate::config::choose_format(&ours, default, config).ok_or_else(|| Error::UnsupportedConfig {
        device: name.to_string(),
        direction: dir.as_str(),
        message: format!(
            "asked for rate {:?}, channels {:?}, format {:?}; the device offers {}",
            config.device_sample_rate,
            config.device_channels,
            config.device_sample_format,
            if ours.is_empty() {
                "nothing this crate can drive".to_string()
            } else {
                summarize_ranges(&ours)
            }
        ),
    })
}

/// `f32 1-32ch 1-384000 Hz; i16 ...`: one entry per sample type.
fn summarize_ranges(ranges: &[FormatRange]) -> String {
    let mut parts = Vec::new();
    for f in SampleFormat::PREFERENCE {
        let of: Vec<&FormatRange> = ranges.iter().filter(|r| r.sample_format == f).collect();
        let (Some(ch_min), Some(ch_max)) = (
            of.iter().map(|r| r.channels).min(),
            of.iter().map(|r| r.channels).max(),
        ) else {
            continue;
        };
        let lo = of.iter().map(|r| r.min_sample_rate).min().unwrap_or(0);
        let hi = of.iter().map(|r| r.max_sample_rate).max().unwrap_or(0);
        parts.push(format!("{f} {ch_min}-{ch_max}ch {lo}-{hi} Hz"));
    }
    parts.join("; ")
}

pub(crate) fn stream_config(format: DeviceFormat, config: &AudioConfig) -> cpal::StreamConfig {
    cpal::StreamConfig {
        channels: format.channels,
        sample_rate: format.sample_rate,
        buffer_size: config
            .device_buffer_frames
            .map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed),
    }
}

/// The stream's own thread: it builds and owns the backend stream (which
/// may not be `Send`), moves audio every [`TICK`], and drops the stream when
/// its handle closes. Dropping the control sender wakes it at once.
#[derive(Debug)]
pub(crate) struct Worker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What a stream thread does each tick; built on the thread itself.
pub(crate) trait Pump {
    fn tick(&mut self);
}

impl Worker {
    /// Spawns the thread, runs `setup` on it and waits for its verdict.
    pub(crate) fn spawn<S, P>(
        thread_name: &str,
        device_hint: &str,
        setup: S,
    ) -> Result<(Self, DeviceFormat, String)>
    where
        S: FnOnce() -> Result<(P, DeviceFormat, String)> + Send + 'static,
        P: Pump,
    {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (thread_label, device_label) = (thread_name.to_string(), device_hint.to_string());
        let (init_tx, init_rx) = mpsc::channel::<Result<(DeviceFormat, String)>>();
        let thread = std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                // One span for the stream's whole life: its logs carry it.
                let span = tracing::info_span!("audio_stream", thread = %thread_label, device = %device_label);
                let _entered = span.enter();
                let (mut pump, format, name) = match setup() {
                    Ok(ok) => ok,
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                        return;
                    }
                };
                let _ = init_tx.send(Ok((format, name)));
                // Runs until the handle drops the sender (or sends).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(TICK) {
                    pump.tick();
                }
                // The pump owns the backend stream: dropping it here stops
                // the stream and joins the backend's thread.
                drop(pump);
            })
            .map_err(|e| Error::Thread {
                device: device_hint.to_string(),
                message: e.to_string(),
            })?;
        let mut worker = Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match init_rx.recv() {
            Ok(Ok((format, name))) => Ok((worker, format, name)),
            Ok(Err(e)) => {
                worker.stop();
                Err(e)
            }
            Err(_) => {
                worker.stop();
                Err(Error::Thread {
                    device: device_hint.to_string(),
                    message: "the stream thread ended during setup".into(),
                })
            }
        }
    }

    /// Stops the thread and joins it. Idempotent.
    pub(crate) fn stop(&mut self) -> bool {
        self.stop.take();
        match self.thread.take() {
            Some(t) => t.join().is_ok(),
            None => true,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Test hook: lets a test binary observe the audio callbacks (to count
/// allocations made on them). Not part of the API.
#[doc(hidden)]
pub mod callback_hook {
    use std::sync::OnceLock;

    /// Called on entry to and exit from every audio callback.
    #[derive(Debug, Clone, Copy)]
    pub struct Hooks {
        /// Entry.
        pub enter: fn(),
        /// Exit.
        pub exit: fn(),
    }

    static HOOKS: OnceLock<Hooks> = OnceLock::new();

    /// Installs the hooks once per process; `false` if some already were.
    pub fn install(hooks: Hooks) -> bool {
        HOOKS.set(hooks).is_ok()
    }

    /// Runs `enter` now and `exit` on drop.
    pub(crate) struct Scope(Option<&'static Hooks>);

    impl Scope {
        #[inline]
        pub(crate) fn enter() -> Self {
            let hooks = HOOKS.get();
            if let Some(h) = hooks {
                (h.enter)();
            }
            Self(hooks)
        }
    }

    impl Drop for Scope {
        #[inline]
        fn drop(&mut self) {
            if let Some(h) = self.0 {
                (h.exit)();
            }
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this thread until it is ready or `timeout` passes.
pub(crate) fn block_on_with_timeout<T>(
    timeout: Duration,
    mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_errors_fold_and_a_lost_device_is_terminal() {
        let counters = Arc::new(Counters::default());
        let (mut sink, mut parked) = ErrorSink::new(Arc::clone(&counters));
        for _ in 0..5 {
            sink.record(cpal::Error::with_message(cpal::ErrorKind::Xrun, "xrun"));
        }
        sink.record(cpal::Error::new(cpal::ErrorKind::DeviceNotAvailable));
        // More than the ring holds: counted, not stored, nothing blocks.
        for _ in 0..100 {
            sink.record(cpal::Error::new(cpal::ErrorKind::Other));
        }
        assert_eq!(
            counters.errors.load(std::sync::atomic::Ordering::Relaxed),
            106
        );
        let events = drain_errors(&mut parked, "dev", &mut LogLimiter::new());
        assert!(events.len() == 3, "{events:?}");
        assert!(matches!(&events[0], Event::StreamError { count: 5, .. }));
        assert!(matches!(&events[1], Event::DeviceLost { device, .. } if device == "dev"));
        let mut status = Status::default();
        assert!(status.apply(events));
        assert!(matches!(status.dead("dev"), Some(Error::DeviceLost { .. })));
        assert_eq!(status.events.len(), 3);
    }

    #[test]
    fn the_event_queue_is_bounded() {
        let mut status = Status::default();
        for i in 0..(EVENT_QUEUE as u64 + 10) {
            status.push_event(Event::StreamError {
                device: "d".into(),
                message: "m".into(),
                count: i,
            });
        }
        assert_eq!(status.events.len(), EVENT_QUEUE);
        // The oldest went first.
        assert!(matches!(
            status.events.front(),
            Some(Event::StreamError { count: 10, .. })
        ));
    }
}
