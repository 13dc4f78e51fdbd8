//! Finding hosts and devices and choosing a device format: what capture and
//! playback do before a stream runs, and the presence check while it runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait as _, HostTrait as _};

use super::{Direction, Event, IDLE_WAKE};
use crate::config::{AudioConfig, AudioHost, DeviceFormat, DeviceInfo, FormatRange, SampleFormat};
use crate::error::{Error, Result};

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
