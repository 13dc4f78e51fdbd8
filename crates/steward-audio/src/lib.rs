//! Audio capture and playback for a realtime voice assistant that never leak
//! and never block.
//!
//! - [`Capture`] records from an input device and hands out PCM16
//!   little-endian mono chunks at 24 kHz (configurable), whatever the device
//!   gives (any sample type, rate or channel count).
//! - [`Playback`] accepts the same and plays it, with backpressure, and
//!   [`Playback::clear`] for barge-in. [`Playback::played_frames`] tells
//!   exactly how much of what was written has been played (the resampler's
//!   padding not counted), and [`Playback::last_cleared`] when a clear
//!   reached the device callback and where playback stood then: what a
//!   barge-in needs to truncate the answer the user heard.
//! - The audio callbacks never allocate, lock or block: they talk to the
//!   stream's own thread through bounded lock-free ring buffers. Capture
//!   overflow drops the oldest audio and counts it; playback underrun plays
//!   silence and counts it ([`Stats`]).
//! - Under memory pressure, `shed_queued` keeps the newest
//!   [`AudioConfig::shed_floor_ms`] of queued audio on either kind of stream
//!   and drops the older part, counted in [`Stats::shed_frames`]; the
//!   playback callback takes its share through an atomic, lock-free.
//!   [`Capture`] reads through `&self` too, so it can be shared in an `Arc`.
//! - Each stream owns one thread that builds, owns and drops the backend
//!   stream; [`Capture::close`], [`Playback::close`] and `Drop` stop it and
//!   join the thread. Backend errors become [`Event`]s, never panics.
//! - [`AudioConfig::host`] picks the sound system ([`AudioHost`]): by
//!   default PipeWire (feature `pipewire`) when its server answers, then
//!   cpal's native PulseAudio client (a protocol client, no system
//!   library; it finds the server through `PULSE_SERVER` or
//!   `XDG_RUNTIME_DIR/pulse/native`), then ALSA, with a logged warning
//!   saying why. [`Stats::host`] says which one runs. The native client
//!   costs a fraction of ALSA's PulseAudio plugin, whose start-up errors
//!   make cpal's ALSA worker spin.
//! - Device buffers are 20 ms both ways by default
//!   ([`AudioConfig::output_buffer_ms`], [`AudioConfig::input_buffer_ms`]);
//!   the output latency the host reports is in [`Stats::output_latency_us`].
//! - A lost device (unplugged, its module unloaded, the server gone) is an
//!   [`Event::DeviceLost`]; the stream stops, and `reopen()` or
//!   `reopen_on_default()` open a new one when the caller asks (counted in
//!   [`Stats::reopens`]). PulseAudio moves such a stream to another device
//!   instead of ending it: a stream checks twice a second that its own
//!   device is still there.
//! - [`convert`] holds the conversions, resampling (rubato) and the base64
//!   helpers for the realtime API; they need no sound card.
//!
//! ```
//! use steward_audio::{AudioConfig, base64_to_pcm16, pcm16_to_base64};
//!
//! // The realtime API carries PCM16 as base64.
//! let pcm = [0x01, 0x00, 0xff, 0x7f];
//! let b64 = pcm16_to_base64(&pcm);
//! assert_eq!(base64_to_pcm16(&b64)?, pcm);
//!
//! // 20 ms chunks at 24 kHz by default.
//! let config = AudioConfig::default();
//! assert_eq!(config.chunk_bytes(), 960);
//!
//! // With a sound server running, recording and playing look like this:
//! # fn record(config: &AudioConfig) -> steward_audio::Result<()> {
//! use std::time::Duration;
//! use steward_audio::{Capture, Playback};
//! let mut mic = Capture::open(config)?;
//! let speaker = Playback::open(config)?;
//! if let Some(chunk) = mic.next_chunk_blocking(Duration::from_secs(1))? {
//!     speaker.write_blocking(&chunk, Duration::from_secs(1))?;
//! }
//! speaker.clear(); // the user started talking
//! mic.close()?;
//! speaker.close()?;
//! # Ok(()) }
//! # let _ = record;
//! # Ok::<(), steward_audio::Error>(())
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod capture;
mod config;
pub mod convert;
mod error;
mod playback;
mod stats;
mod stream;

pub use capture::{Capture, CaptureBuilder};
pub use config::{
    AudioConfig, AudioHost, DEFAULT_INPUT_BUFFER_MS, DEFAULT_OUTPUT_BUFFER_MS, DEFAULT_SAMPLE_RATE,
    DeviceFormat, DeviceInfo, FormatRange, SampleFormat,
};
pub use convert::{base64_to_pcm16, pcm16_to_base64};
pub use error::{BackendError, Error, Result};
pub use playback::{Cleared, Playback, PlaybackBuilder};
pub use stats::Stats;
pub use stream::{Event, list_devices, list_host_devices};

/// Tests only (feature `test-hooks`): observe the audio callbacks.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use stream::callback_hook;
