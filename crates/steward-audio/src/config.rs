//! Plain-data configuration and the types describing devices and streams.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The rate the realtime API speaks: 24 kHz.
pub const DEFAULT_SAMPLE_RATE: u32 = 24_000;

/// How capture and playback streams are set up. Plain data: load it from a
/// file, change a field, pass it to [`Capture::open`](crate::Capture::open)
/// or [`Playback::open`](crate::Playback::open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AudioConfig {
    /// The audio host (sound system) to use. Default: PipeWire if compiled
    /// in (feature `pipewire`) and reachable, then PulseAudio's native
    /// client, then ALSA (a logged warning says why). See [`AudioHost`].
    pub host: AudioHost,
    /// Rate of the PCM16 mono audio this crate hands out and accepts (Hz).
    pub sample_rate: u32,
    /// Frames per captured chunk at `sample_rate` (480 = 20 ms at 24 kHz).
    pub chunk_frames: u32,
    /// Input device name (`None`: the default input device). See
    /// [`list_devices`](crate::list_devices) for names.
    pub input_device: Option<String>,
    /// Output device name (`None`: the default output device).
    pub output_device: Option<String>,
    /// Device-side rate to ask for. `None`: `sample_rate` if the device
    /// supports it (no resampling), else the device's default.
    pub device_sample_rate: Option<u32>,
    /// Device-side channel count to ask for. `None`: mono if supported, else
    /// the device's default.
    pub device_channels: Option<u16>,
    /// Device-side sample type to ask for. `None`: the best one offered.
    pub device_sample_format: Option<SampleFormat>,
    /// Device buffer (period) size in frames, both directions; wins over
    /// `input_buffer_ms` and `output_buffer_ms`.
    pub device_buffer_frames: Option<u32>,
    /// Capture: the device buffer (one callback's worth of audio) in ms,
    /// asked of the host as a fixed size in device frames when it supports
    /// one. Default 20 ms. `None`: the host's default (PulseAudio's record
    /// fragment is about two seconds: audio would arrive in lumps).
    pub input_buffer_ms: Option<u32>,
    /// Playback: the device buffer (one callback period) in ms, asked of
    /// the host as a fixed size in device frames when it supports one
    /// (PulseAudio then targets two periods of latency). Default 20 ms: a
    /// barge-in `clear()` is heard within about that. `None`: the host's
    /// default (PulseAudio's is about two seconds).
    pub output_buffer_ms: Option<u32>,
    /// Captured audio kept for the reader, in ms; when full the OLDEST
    /// chunk is dropped and counted in [`Stats::overflow_frames`](crate::Stats).
    pub capture_queue_ms: u32,
    /// Playback audio accepted ahead of the device, in ms; `write` waits
    /// (and `try_write` refuses) beyond it.
    pub playback_queue_ms: u32,
    /// What `shed_queued` keeps under memory pressure, in ms: the newest
    /// queued audio up to this much stays, older audio is dropped and
    /// counted in [`Stats::shed_frames`](crate::Stats). Default 500 ms.
    pub shed_floor_ms: u32,
}

/// The default playback buffer: 20 ms.
pub const DEFAULT_OUTPUT_BUFFER_MS: u32 = 20;

/// The default capture buffer: 20 ms.
pub const DEFAULT_INPUT_BUFFER_MS: u32 = 20;

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            host: AudioHost::Default,
            sample_rate: DEFAULT_SAMPLE_RATE,
            chunk_frames: 480,
            input_device: None,
            output_device: None,
            device_sample_rate: None,
            device_channels: None,
            device_sample_format: None,
            device_buffer_frames: None,
            input_buffer_ms: Some(DEFAULT_INPUT_BUFFER_MS),
            output_buffer_ms: Some(DEFAULT_OUTPUT_BUFFER_MS),
            capture_queue_ms: 2_000,
            playback_queue_ms: 2_000,
            shed_floor_ms: 500,
        }
    }
}

impl AudioConfig {
    /// Checks every field; the stream constructors call this.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: &str| {
            Err(Error::InvalidConfig {
                field,
                message: message.to_string(),
            })
        };
        if !(1_000..=384_000).contains(&self.sample_rate) {
            return bad("sample_rate", "must be within 1000..=384000 Hz");
        }
        if self.chunk_frames == 0 || self.chunk_frames > self.sample_rate * 10 {
            return bad("chunk_frames", "must be within 1 frame and 10 seconds");
        }
        if let Some(rate) = self.device_sample_rate
            && !(1_000..=768_000).contains(&rate)
        {
            return bad("device_sample_rate", "must be within 1000..=768000 Hz");
        }
        if let Some(ch) = self.device_channels
            && !(1..=64).contains(&ch)
        {
            return bad("device_channels", "must be within 1..=64");
        }
        if self.device_buffer_frames == Some(0) {
            return bad("device_buffer_frames", "must be above zero");
        }
        if let Some(ms) = self.output_buffer_ms
            && !(1..=2_000).contains(&ms)
        {
            return bad("output_buffer_ms", "must be within 1..=2000 ms");
        }
        if let Some(ms) = self.input_buffer_ms
            && !(1..=2_000).contains(&ms)
        {
            return bad("input_buffer_ms", "must be within 1..=2000 ms");
        }
        if self.host == AudioHost::PipeWire && !AudioHost::PIPEWIRE_COMPILED {
            return bad(
                "host",
                "is `pipewire`, but this build has no PipeWire support (steward-audio feature `pipewire`)",
            );
        }
        if !(1..=600_000).contains(&self.capture_queue_ms) {
            return bad("capture_queue_ms", "must be within 1..=600000 ms");
        }
        if !(1..=600_000).contains(&self.playback_queue_ms) {
            return bad("playback_queue_ms", "must be within 1..=600000 ms");
        }
        Ok(())
    }

    /// The duration of one captured chunk.
    #[must_use]
    pub fn chunk_duration(&self) -> Duration {
        frames_to_duration(u64::from(self.chunk_frames), self.sample_rate)
    }

    /// Sets `chunk_frames` from a duration (rounded to whole frames, at least one).
    pub fn set_chunk_duration(&mut self, d: Duration) {
        let frames = (d.as_secs_f64() * f64::from(self.sample_rate)).round();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let frames = frames.clamp(1.0, f64::from(u32::MAX)) as u32;
        self.chunk_frames = frames;
    }

    /// Bytes in one captured chunk (PCM16 mono).
    #[must_use]
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_frames as usize * 2
    }

    /// Frames at `sample_rate` in `d` (rounded down).
    pub(crate) fn duration_to_frames(&self, d: Duration) -> usize {
        let frames = d.as_micros().saturating_mul(u128::from(self.sample_rate)) / 1_000_000;
        usize::try_from(frames).unwrap_or(usize::MAX)
    }

    pub(crate) fn ms_to_frames(&self, ms: u32) -> usize {
        (u64::from(ms) * u64::from(self.sample_rate) / 1_000) as usize
    }
}

/// The audio host (sound system) a stream runs on. Serialised in
/// snake case: `default`, `alsa`, `pulseaudio`, `pipewire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AudioHost {
    /// The best one reachable: PipeWire if compiled in (feature `pipewire`)
    /// and its server answers, then PulseAudio's native client, then ALSA.
    /// Falling back to ALSA is logged as a warning with the reasons. Only
    /// in configurations: a running stream reports the host it chose.
    #[default]
    Default,
    /// ALSA (on a desktop, through ALSA's PulseAudio or PipeWire plugin).
    Alsa,
    /// The native PulseAudio protocol client (no system library); also
    /// talks to PipeWire's PulseAudio server. It finds the server through
    /// `PULSE_SERVER` (`unix:PATH`) or `XDG_RUNTIME_DIR/pulse/native`.
    #[serde(rename = "pulseaudio")]
    PulseAudio,
    /// PipeWire's own client (feature `pipewire`).
    #[serde(rename = "pipewire")]
    PipeWire,
}

impl AudioHost {
    /// Every choice, in the order of [`as_str`](Self::as_str).
    pub const ALL: [AudioHost; 4] = [
        AudioHost::Default,
        AudioHost::Alsa,
        AudioHost::PulseAudio,
        AudioHost::PipeWire,
    ];

    /// Whether this build can use PipeWire (feature `pipewire`).
    pub const PIPEWIRE_COMPILED: bool = cfg!(feature = "pipewire");

    /// The name used in configurations, flags, health and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Alsa => "alsa",
            Self::PulseAudio => "pulseaudio",
            Self::PipeWire => "pipewire",
        }
    }
}

impl std::fmt::Display for AudioHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AudioHost {
    type Err = Error;

    /// Parses `default`, `alsa`, `pulseaudio` (or `pulse`) and `pipewire`,
    /// ignoring case.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "pulse" {
            return Ok(Self::PulseAudio);
        }
        Self::ALL
            .into_iter()
            .find(|h| h.as_str() == lower)
            .ok_or_else(|| Error::InvalidConfig {
                field: "host",
                message: format!(
                    "`{s}` is not an audio host; expected one of default, alsa, pulseaudio, pipewire"
                ),
            })
    }
}

pub(crate) fn frames_to_duration(frames: u64, rate: u32) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_precision_loss)]
    Duration::from_secs_f64(frames as f64 / f64::from(rate))
}

/// A device's sample type (our mirror of the backend's list; the formats
/// this crate can drive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SampleFormat {
    /// Signed 8-bit.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Unsigned 32-bit.
    U32,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
}

impl SampleFormat {
    /// Preference order when the device offers several: float first (no
    /// quantisation), then the widest integers.
    pub(crate) const PREFERENCE: [SampleFormat; 8] = [
        SampleFormat::F32,
        SampleFormat::I16,
        SampleFormat::I32,
        SampleFormat::F64,
        SampleFormat::U16,
        SampleFormat::U32,
        SampleFormat::I8,
        SampleFormat::U8,
    ];

    pub(crate) fn from_cpal(f: cpal::SampleFormat) -> Option<Self> {
        Some(match f {
            cpal::SampleFormat::I8 => Self::I8,
            cpal::SampleFormat::I16 => Self::I16,
            cpal::SampleFormat::I32 => Self::I32,
            cpal::SampleFormat::U8 => Self::U8,
            cpal::SampleFormat::U16 => Self::U16,
            cpal::SampleFormat::U32 => Self::U32,
            cpal::SampleFormat::F32 => Self::F32,
            cpal::SampleFormat::F64 => Self::F64,
            _ => return None,
        })
    }

    fn rank(self) -> usize {
        Self::PREFERENCE
            .iter()
            .position(|f| *f == self)
            .unwrap_or(usize::MAX)
    }
}

impl std::fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::U32 => "u32",
            Self::F32 => "f32",
            Self::F64 => "f64",
        };
        f.write_str(s)
    }
}

/// The format a stream actually runs at on the device side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeviceFormat {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Sample type.
    pub sample_format: SampleFormat,
}

/// A supported range of device configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FormatRange {
    /// Channels.
    pub channels: u16,
    /// Lowest rate.
    pub min_sample_rate: u32,
    /// Highest rate.
    pub max_sample_rate: u32,
    /// Sample type.
    pub sample_format: SampleFormat,
}

/// One audio device, as [`list_devices`](crate::list_devices) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// The name to pass in [`AudioConfig`] (the host's device id: a sink or
    /// source name such as `alsa_output.pci-0000_00_1f.3.analog-stereo` on
    /// PulseAudio, `default`, `pulse`, `null` or `hw:CARD=0,DEV=0` on ALSA).
    pub name: String,
    /// A human-readable description, when the backend has one.
    pub description: Option<String>,
    /// Can record.
    pub supports_input: bool,
    /// Can play.
    pub supports_output: bool,
    /// Is the default input device.
    pub is_default_input: bool,
    /// Is the default output device.
    pub is_default_output: bool,
}

/// Picks the device-side config: exact request if given, else the target
/// rate and mono when supported (no conversion at all), else the default.
pub(crate) fn choose_format(
    ranges: &[FormatRange],
    default: Option<DeviceFormat>,
    config: &AudioConfig,
) -> Option<DeviceFormat> {
    let want_rate = config.device_sample_rate;
    let want_ch = config.device_channels;
    let want_fmt = config.device_sample_format;
    let fits = |r: &FormatRange, rate: u32| {
        (r.min_sample_rate..=r.max_sample_rate).contains(&rate)
            && want_ch.is_none_or(|c| c == r.channels)
            && want_fmt.is_none_or(|f| f == r.sample_format)
    };
    // Rates to try, best first.
    let mut rates = Vec::with_capacity(3);
    match want_rate {
        Some(r) => rates.push(r),
        None => {
            rates.push(config.sample_rate);
            if let Some(d) = default {
                rates.push(d.sample_rate);
            }
            rates.extend([48_000, 44_100]);
        }
    }
    for rate in rates {
        let best = ranges.iter().filter(|r| fits(r, rate)).min_by_key(|r| {
            // Fewer channels first (mono means no mixing), then format preference.
            (
                if want_ch.is_none() { r.channels } else { 0 },
                r.sample_format.rank(),
            )
        });
        if let Some(r) = best {
            return Some(DeviceFormat {
                sample_rate: rate,
                channels: r.channels,
                sample_format: r.sample_format,
            });
        }
    }
    // Nothing matched exactly: take the default if it satisfies every request.
    default.filter(|d| {
        want_rate.is_none_or(|r| r == d.sample_rate)
            && want_ch.is_none_or(|c| c == d.channels)
            && want_fmt.is_none_or(|f| f == d.sample_format)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(channels: u16, fmt: SampleFormat) -> FormatRange {
        FormatRange {
            channels,
            min_sample_rate: 8_000,
            max_sample_rate: 96_000,
            sample_format: fmt,
        }
    }

    const DEFAULT: DeviceFormat = DeviceFormat {
        sample_rate: 48_000,
        channels: 2,
        sample_format: SampleFormat::F32,
    };

    #[test]
    fn prefers_the_target_rate_mono_and_float() {
        let ranges = [
            range(2, SampleFormat::I16),
            range(1, SampleFormat::I16),
            range(1, SampleFormat::F32),
        ];
        let got = choose_format(&ranges, Some(DEFAULT), &AudioConfig::default()).unwrap();
        assert_eq!(got.sample_rate, 24_000);
        assert_eq!(got.channels, 1);
        assert_eq!(got.sample_format, SampleFormat::F32);
    }

    #[test]
    fn honours_explicit_requests_or_refuses() {
        let ranges = [range(2, SampleFormat::I16), range(1, SampleFormat::F32)];
        let config = AudioConfig {
            device_sample_rate: Some(44_100),
            device_channels: Some(2),
            ..AudioConfig::default()
        };
        let got = choose_format(&ranges, Some(DEFAULT), &config).unwrap();
        assert_eq!(
            (got.sample_rate, got.channels, got.sample_format),
            (44_100, 2, SampleFormat::I16)
        );
        let config = AudioConfig {
            device_sample_format: Some(SampleFormat::U8),
            ..AudioConfig::default()
        };
        assert_eq!(choose_format(&ranges, Some(DEFAULT), &config), None);
    }

    #[test]
    fn falls_back_to_the_device_rate_when_the_target_is_unsupported() {
        let ranges = [FormatRange {
            channels: 2,
            min_sample_rate: 44_100,
            max_sample_rate: 48_000,
            sample_format: SampleFormat::I16,
        }];
        let got = choose_format(&ranges, Some(DEFAULT), &AudioConfig::default()).unwrap();
        assert_eq!(got.sample_rate, 48_000);
    }

    #[test]
    fn validate_names_the_field() {
        let config = AudioConfig {
            device_channels: Some(0),
            ..AudioConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("device_channels"), "{err}");
        let mut config = AudioConfig::default();
        config.set_chunk_duration(Duration::from_millis(40));
        assert_eq!(config.chunk_frames, 960);
        assert_eq!(config.chunk_duration(), Duration::from_millis(40));
    }
}
