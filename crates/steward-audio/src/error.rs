//! The crate's one error type.

/// Everything that can go wrong in steward-audio.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No audio host could be reached (no sound server, no ALSA).
    #[error(
        "no audio host reachable ({message}); start a sound server (for example a PulseAudio daemon with a null sink and source) and retry"
    )]
    HostUnavailable {
        /// What the audio backend said.
        message: String,
    },
    /// No device with this name (or no default device of this direction).
    #[error("no {direction} audio device named `{name}`; available: {available}")]
    DeviceNotFound {
        /// `input` or `output`.
        direction: &'static str,
        /// The name asked for (`default` for the default device).
        name: String,
        /// The names that exist, comma separated.
        available: String,
    },
    /// The device offers no configuration this crate can drive.
    #[error("audio device `{device}` has no usable {direction} configuration: {message}")]
    UnsupportedConfig {
        /// The device's name.
        device: String,
        /// `input` or `output`.
        direction: &'static str,
        /// What is missing.
        message: String,
    },
    /// The audio backend refused an operation on a device.
    #[error("audio backend failed to {action} on device `{device}`{hint}")]
    Backend {
        /// The device's name.
        device: String,
        /// What we were doing (`open the input stream`, `start the stream`, ...).
        action: &'static str,
        /// What to check, when we can tell (empty otherwise).
        hint: &'static str,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// The configuration is not valid.
    #[error("invalid audio configuration: `{field}` {message}")]
    InvalidConfig {
        /// The offending field of [`AudioConfig`](crate::AudioConfig).
        field: &'static str,
        /// Why it is refused.
        message: String,
    },
    /// A resampler could not be built for these rates.
    #[error("cannot resample from {from} Hz to {to} Hz: {message}")]
    Resampler {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// What the resampler said.
        message: String,
    },
    /// The data is not PCM16: an odd number of bytes.
    #[error("PCM16 data must have an even number of bytes, got {len}")]
    OddPcm16Length {
        /// The byte count received.
        len: usize,
    },
    /// A base64 string could not be decoded.
    #[error("invalid base64 audio payload ({len} characters)")]
    Base64 {
        /// Length of the rejected string.
        len: usize,
        /// The decoder's error.
        #[source]
        source: BackendError,
    },
    /// The device disappeared while the stream was running.
    #[error("audio device `{device}` was lost: {message}")]
    DeviceLost {
        /// The device's name.
        device: String,
        /// What the backend reported.
        message: String,
    },
    /// The stream was closed (by `close()`, or its thread stopped).
    #[error("audio stream on device `{device}` is closed")]
    Closed {
        /// The device's name.
        device: String,
    },
    /// The stream's thread could not be started or died.
    #[error("audio stream thread for device `{device}` failed: {message}")]
    Thread {
        /// The device's name.
        device: String,
        /// What happened.
        message: String,
    },
}

/// An error reported by a dependency (the audio backend, the base64
/// decoder), kept opaque so their types stay out of this crate's API.
#[derive(Debug, Clone)]
pub struct BackendError {
    message: String,
}

impl BackendError {
    pub(crate) fn from_display(err: &impl std::fmt::Display) -> Self {
        Self {
            message: err.to_string(),
        }
    }

    /// The dependency's message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn backend(device: &str, action: &'static str, err: &cpal::Error) -> Self {
        if err.kind() == cpal::ErrorKind::HostUnavailable {
            return Self::HostUnavailable {
                message: err.to_string(),
            };
        }
        // A missing device is most often a sound server that is not running.
        let hint = if err.kind() == cpal::ErrorKind::DeviceNotAvailable {
            " (is the device present and the sound server, such as PulseAudio, running?)"
        } else {
            ""
        };
        Self::Backend {
            device: device.to_string(),
            action,
            hint,
            source: BackendError::from_display(err),
        }
    }
}
