//! What capture and playback share: device lookup, format choice, the
//! stream thread, backend error plumbing, events and waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait as _, HostTrait as _};
use serde::{Deserialize, Serialize};

use crate::config::{AudioConfig, AudioHost, DeviceFormat, DeviceInfo, FormatRange, SampleFormat};
use crate::error::{Error, Result};
use crate::stats::{Counters, bump};

/// The longest a stream's thread sleeps with nothing to do. It moves audio
/// when it is woken ([`Notify`]): by the audio callback once there is work
/// (a chunk's worth captured, room in the playback ring with audio waiting,
/// a clear applied, the ring run dry), by the handle (a write, a clear, a
/// shed, a drain, close) and by the error callback. Deadlines of its own
/// (a device presence check, the playback resampler's idle flush) shorten
/// the sleep. The callback never waits for it: the rings absorb the gap.
pub(crate) const IDLE_WAKE: Duration = Duration::from_millis(500);

/// Events kept for `next_event` before the oldest is dropped.
const EVENT_QUEUE: usize = 64;

/// Backend errors the error callback can park before the stream thread
/// collects them (more are counted, not stored).
const ERROR_RING: usize = 32;

/// Something that happened to a stream, delivered by `next_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// The device disappeared (unplugged, its module unloaded, the server
    /// gone): the stream has stopped. `reopen()` (same device, once it is
    /// back) or `reopen_on_default()` (the new default device) when the
    /// caller decides to. On PulseAudio, which moves such a stream to
    /// another device, the stream notices within half a second that its
    /// own device is gone.
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
    notify: Arc<Notify>,
}

impl ErrorSink {
    pub(crate) fn new(
        counters: Arc<Counters>,
        notify: Arc<Notify>,
    ) -> (Self, rtrb::Consumer<cpal::Error>) {
        let (producer, consumer) = rtrb::RingBuffer::new(ERROR_RING);
        (
            Self {
                producer,
                counters,
                notify,
            },
            consumer,
        )
    }

    pub(crate) fn record(&mut self, err: cpal::Error) {
        bump(&self.counters.errors, 1);
        // Full: the thread is behind; the count above still tells.
        let _ = self.producer.push(err);
        self.notify.notify();
    }
}

/// Wakes a stream's thread: a flag and the thread's park token. Lock- and
/// allocation-free, so the audio callback may call it: [`notify`] is an
/// atomic swap, plus a futex wake only when the thread is asleep and no
/// wake-up is pending yet.
///
/// [`notify`]: Notify::notify
#[derive(Debug, Default)]
pub(crate) struct Notify {
    /// A wake-up is pending: the thread has not yet looked since it was set.
    pending: AtomicBool,
    /// The handle asked the thread to end.
    stop: AtomicBool,
    /// The stream thread, once it runs.
    thread: OnceLock<std::thread::Thread>,
}

impl Notify {
    /// Has the thread look for work as soon as it can.
    #[inline]
    pub(crate) fn notify(&self) {
        if !self.pending.swap(true, Ordering::AcqRel)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    /// Sleeps (the stream thread) until notified, stopped or `timeout`
    /// passes; returns `false` once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        if !self.pending.load(Ordering::Acquire) && !self.stopped() {
            std::thread::park_timeout(timeout);
        }
        // Cleared before the tick that follows: a notify during it wakes
        // the next wait at once.
        self.pending.store(false, Ordering::Release);
        !self.stopped()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
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

/// Where the native PulseAudio client looks for its server: said in errors.
const PULSE_LOOKUP: &str = "the native PulseAudio client looks for the server socket at $PULSE_SERVER (unix:PATH), $PULSE_RUNTIME_PATH/pulse/native and $XDG_RUNTIME_DIR/pulse/native";

fn unavailable(host: AudioHost, message: String) -> Error {
    Error::HostUnavailable {
        message: format!("{host}: {message}"),
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn open_exact(host: AudioHost) -> Result<Arc<cpal::Host>> {
    let id = match host {
        AudioHost::Alsa => cpal::HostId::Alsa,
        AudioHost::PulseAudio => {
            // Without a socket, connecting would only fail after a timeout.
            if !cpal::available_hosts().contains(&cpal::HostId::PulseAudio) {
                return Err(unavailable(
                    host,
                    format!("no server socket found ({PULSE_LOOKUP})"),
                ));
            }
            cpal::HostId::PulseAudio
        }
        #[cfg(feature = "pipewire")]
        AudioHost::PipeWire => {
            if !cpal::available_hosts().contains(&cpal::HostId::PipeWire) {
                return Err(unavailable(
                    host,
                    "no PipeWire server socket found".to_string(),
                ));
            }
            cpal::HostId::PipeWire
        }
        _ => {
            return Err(unavailable(host, "not available in this build".to_string()));
        }
    };
    if id == cpal::HostId::PulseAudio {
        return shared_pulse_host();
    }
    cpal::host_from_id(id)
        .map(Arc::new)
        .map_err(|e| unavailable(host, e.to_string()))
}

/// The process's one connection to the PulseAudio server for finding
/// devices and formats, opened with the first stream that needs it and
/// kept: the client library parks a thread and three descriptors per
/// connection, and one dropped without a last request in flight may stay
/// parked for the life of the process (so a failed lookup must not cost a
/// connection). Checked with a request on every use; a dead one (the
/// server went away) is replaced. Streams get connections of their own
/// ([`stream_device`]).
#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn shared_pulse_host() -> Result<Arc<cpal::Host>> {
    pulse_devices().map(|(h, _)| h)
}

/// The shared connection and the server's devices, listed through it.
#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn pulse_devices() -> Result<(Arc<cpal::Host>, Vec<cpal::Device>)> {
    static PULSE: parking_lot::Mutex<Option<Arc<cpal::Host>>> = parking_lot::Mutex::new(None);
    let mut cached = PULSE.lock();
    if let Some(h) = cached.as_ref() {
        match h.devices() {
            Ok(d) => return Ok((Arc::clone(h), d.collect())),
            Err(e) => {
                tracing::info!(error = %e, "the PulseAudio connection is gone: reconnecting");
                *cached = None;
            }
        }
    }
    if !cpal::available_hosts().contains(&cpal::HostId::PulseAudio) {
        return Err(unavailable(
            AudioHost::PulseAudio,
            format!("no server socket found ({PULSE_LOOKUP})"),
        ));
    }
    let h = cpal::host_from_id(cpal::HostId::PulseAudio)
        .map(Arc::new)
        .map_err(|e| unavailable(AudioHost::PulseAudio, e.to_string()))?;
    let devices = h
        .devices()
        .map_err(|e| unavailable(AudioHost::PulseAudio, e.to_string()))?
        .collect();
    *cached = Some(Arc::clone(&h));
    Ok((h, devices))
}

/// How often a PulseAudio stream checks that its device still exists.
const PRESENCE_CHECK: Duration = Duration::from_millis(500);

/// Watches that a stream's device still exists. PulseAudio moves a stream
/// whose device goes away (unplugged, its module unloaded) to the default
/// device instead of ending it, and the native client does not pass the
/// move on: for a stream opened on that device, this is the device lost.
/// One request on the shared connection per check, from the stream thread.
#[derive(Debug)]
pub(crate) struct Presence {
    host: AudioHost,
    device: String,
    dir: Direction,
    next: Instant,
}

impl Presence {
    pub(crate) fn new(host: AudioHost, device: &str, dir: Direction) -> Self {
        Self {
            host,
            device: device.to_string(),
            dir,
            next: Instant::now() + PRESENCE_CHECK,
        }
    }

    /// How long until the next check is due ([`IDLE_WAKE`] when this host
    /// needs none).
    pub(crate) fn until_next(&self) -> Duration {
        if self.host != AudioHost::PulseAudio {
            return IDLE_WAKE;
        }
        self.next.saturating_duration_since(Instant::now())
    }

    /// `Some(why)` once the device is gone (checked at most every
    /// [`PRESENCE_CHECK`]); the backend's own errors report the rest.
    pub(crate) fn check(&mut self) -> Option<Event> {
        let now = Instant::now();
        if self.host != AudioHost::PulseAudio || now < self.next {
            return None;
        }
        self.next = now + PRESENCE_CHECK;
        let message = match self.present() {
            Ok(true) => return None,
            Ok(false) => format!(
                "the sound server no longer has this {} device (removed or unplugged)",
                self.dir.as_str()
            ),
            Err(e) => e.to_string(),
        };
        tracing::error!(device = %self.device, error = %message, "audio device lost");
        Some(Event::DeviceLost {
            device: self.device.clone(),
            message,
        })
    }

    #[cfg(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    fn present(&self) -> Result<bool> {
        let (_, devices) = pulse_devices()?;
        Ok(devices.iter().any(|d| {
            let right_way = match self.dir {
                Direction::Input => d.supports_input(),
                Direction::Output => d.supports_output(),
            };
            right_way && device_name(d) == self.device
        }))
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "netbsd"
    )))]
    fn present(&self) -> Result<bool> {
        Ok(true)
    }
}

/// Opens the host `want` names; for [`AudioHost::Default`], the first that
/// answers of PipeWire (if compiled in), PulseAudio and ALSA. Returns the
/// host and which one it is.
#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
pub(crate) fn open_host(want: AudioHost) -> Result<(Arc<cpal::Host>, AudioHost)> {
    if want != AudioHost::Default {
        return open_exact(want).map(|h| (h, want));
    }
    let mut reasons = Vec::new();
    let native: &[AudioHost] = if AudioHost::PIPEWIRE_COMPILED {
        &[AudioHost::PipeWire, AudioHost::PulseAudio]
    } else {
        &[AudioHost::PulseAudio]
    };
    for &candidate in native {
        match open_exact(candidate) {
            Ok(h) => return Ok((h, candidate)),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    tracing::warn!(
        reason = %reasons.join("; "),
        "no native sound server reachable: falling back to ALSA (its PulseAudio plugin costs far more CPU)"
    );
    open_exact(AudioHost::Alsa).map(|h| (h, AudioHost::Alsa))
}

/// The device to build the stream on. A PulseAudio stream gets a connection
/// of its own, which it closes when it stops: the protocol client puts
/// every playback stream of a connection in one sync group, and the server
/// refuses a second one there. Opened only once the shared connection found
/// the device and its format, so what fails here is rare.
#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
pub(crate) fn stream_device(
    kind: AudioHost,
    device: cpal::Device,
    name: &str,
    dir: Direction,
) -> Result<cpal::Device> {
    if kind != AudioHost::PulseAudio {
        return Ok(device);
    }
    drop(device);
    let own = cpal::host_from_id(cpal::HostId::PulseAudio)
        .map_err(|e| unavailable(kind, e.to_string()))?;
    find_device(&own, dir, Some(name)).map(|(d, _)| d)
}

/// Other systems: the device as found.
#[cfg(not(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
pub(crate) fn stream_device(
    _kind: AudioHost,
    device: cpal::Device,
    _name: &str,
    _dir: Direction,
) -> Result<cpal::Device> {
    Ok(device)
}

/// Other systems: the platform's own host, whatever `want` says.
#[cfg(not(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
pub(crate) fn open_host(want: AudioHost) -> Result<(Arc<cpal::Host>, AudioHost)> {
    match want {
        AudioHost::Default => Ok((Arc::new(cpal::default_host()), AudioHost::Default)),
        other => Err(unavailable(other, "only on Linux and the BSDs".to_string())),
    }
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

/// Every device of the default audio host ([`AudioHost::Default`]).
///
/// # Errors
/// [`Error::HostUnavailable`] or [`Error::Backend`] when the backend cannot enumerate.
pub fn list_devices() -> Result<Vec<DeviceInfo>> {
    list_host_devices(AudioHost::Default)
}

/// Every device of the audio host `host`.
///
/// # Errors
/// [`Error::HostUnavailable`] or [`Error::Backend`] when the backend cannot enumerate.
pub fn list_host_devices(host: AudioHost) -> Result<Vec<DeviceInfo>> {
    let (host, _) = open_host(host)?;
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

/// The device buffer sizes (frames) a format allows, when the host says.
pub(crate) type BufferRange = Option<(u32, u32)>;

/// Reads what the device supports and picks the format to open, with the
/// buffer sizes allowed at that format.
pub(crate) fn pick_format(
    device: &cpal::Device,
    name: &str,
    dir: Direction,
    config: &AudioConfig,
) -> Result<(DeviceFormat, BufferRange)> {
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
    let buffer_range = |f: &DeviceFormat| {
        ranges
            .iter()
            .filter(|r| {
                r.channels() == f.channels
                    && SampleFormat::from_cpal(r.sample_format()) == Some(f.sample_format)
                    && (r.min_sample_rate()..=r.max_sample_rate()).contains(&f.sample_rate)
            })
            .find_map(|r| match *r.buffer_size() {
                cpal::SupportedBufferSize::Range { min, max } => Some((min, max)),
                _ => None,
            })
    };
    let chosen = crate::config::choose_format(&ours, default, config);
    chosen
        .map(|f| (f, buffer_range(&f)))
        .ok_or_else(|| Error::UnsupportedConfig {
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

/// The backend stream's configuration: the format, and the buffer size
/// (`device_buffer_frames`, else `input_buffer_ms` or `output_buffer_ms`,
/// within what the host allows; the host's default when it allows no fixed
/// size).
pub(crate) fn stream_config(
    format: DeviceFormat,
    range: BufferRange,
    dir: Direction,
    config: &AudioConfig,
) -> cpal::StreamConfig {
    let ms = match dir {
        Direction::Output => config.output_buffer_ms,
        Direction::Input => config.input_buffer_ms,
    };
    let wanted = config.device_buffer_frames.or(ms.map(|ms| {
        let frames = u64::from(ms) * u64::from(format.sample_rate) / 1_000;
        u32::try_from(frames.max(1)).unwrap_or(u32::MAX)
    }));
    let buffer_size = match (wanted, range) {
        (Some(frames), Some((min, max))) if min <= max => {
            cpal::BufferSize::Fixed(frames.clamp(min.max(1), max))
        }
        // An explicit frame count goes as asked; the host judges it.
        (Some(frames), _) if config.device_buffer_frames.is_some() => {
            cpal::BufferSize::Fixed(frames)
        }
        _ => cpal::BufferSize::Default,
    };
    cpal::StreamConfig {
        channels: format.channels,
        sample_rate: format.sample_rate,
        buffer_size,
    }
}

/// What a stream thread's setup reports once the backend stream runs.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    pub(crate) format: DeviceFormat,
    pub(crate) device: String,
    pub(crate) host: AudioHost,
    /// The fixed buffer asked for, in device frames (`None`: host default).
    pub(crate) buffer_frames: Option<u32>,
    /// How many reopens led to this stream (see [`Stats::reopens`]).
    ///
    /// [`Stats::reopens`]: crate::Stats::reopens
    pub(crate) reopens: u64,
}

impl Opened {
    pub(crate) fn new(
        format: DeviceFormat,
        device: String,
        host: AudioHost,
        cfg: &cpal::StreamConfig,
    ) -> Self {
        let buffer_frames = match cfg.buffer_size {
            cpal::BufferSize::Fixed(n) => Some(n),
            _ => None,
        };
        Self {
            format,
            device,
            host,
            buffer_frames,
            reopens: 0,
        }
    }

    /// The stats fields this fixes.
    pub(crate) fn stats(&self) -> crate::stats::Stats {
        crate::stats::Stats {
            device: self.device.clone(),
            host: Some(self.host),
            format: Some(self.format),
            buffer_frames: self.buffer_frames,
            reopens: self.reopens,
            ..crate::stats::Stats::default()
        }
    }
}

/// The stream's own thread: it builds and owns the backend stream (which
/// may not be `Send`), moves audio when woken (see [`IDLE_WAKE`]), and
/// drops the stream when its handle closes, which wakes it at once.
#[derive(Debug)]
pub(crate) struct Worker {
    notify: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// What a stream thread does when woken; built on the thread itself.
pub(crate) trait Pump {
    /// Moves what there is to move; returns how long the thread may sleep
    /// at most before the next call (a deadline of the pump's own), when
    /// nothing wakes it earlier.
    fn tick(&mut self) -> Duration;
}

impl Worker {
    /// Spawns the thread, runs `setup` on it and waits for its verdict.
    /// `notify` wakes the thread; setup hands it to the callbacks.
    pub(crate) fn spawn<S, P>(
        thread_name: &str,
        device_hint: &str,
        notify: Arc<Notify>,
        setup: S,
    ) -> Result<(Self, Opened)>
    where
        S: FnOnce() -> Result<(P, Opened)> + Send + 'static,
        P: Pump,
    {
        let (thread_label, device_label) = (thread_name.to_string(), device_hint.to_string());
        let (init_tx, init_rx) = mpsc::channel::<Result<Opened>>();
        let wake = Arc::clone(&notify);
        let thread = std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                // One span for the stream's whole life: its logs carry it.
                let span = tracing::info_span!("audio_stream", thread = %thread_label, device = %device_label);
                let _entered = span.enter();
                // Before the callbacks can run: a notify finds the thread.
                let _ = wake.thread.set(std::thread::current());
                let (mut pump, opened) = match setup() {
                    Ok(ok) => ok,
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                        return;
                    }
                };
                let _ = init_tx.send(Ok(opened));
                // Runs until the handle stops it.
                let mut sleep = Duration::ZERO;
                while wake.wait(sleep) {
                    sleep = pump.tick().min(IDLE_WAKE);
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
            notify,
            thread: Some(thread),
        };
        match init_rx.recv() {
            Ok(Ok(opened)) => Ok((worker, opened)),
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
        self.notify.stop();
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
        let (mut sink, mut parked) =
            ErrorSink::new(Arc::clone(&counters), Arc::new(Notify::default()));
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
