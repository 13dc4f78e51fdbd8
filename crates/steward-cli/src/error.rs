//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong while running the stand-in or the assistant. Each
/// message names the thing involved (address, URL, file, device).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stand-in could not listen on its address.
    #[error("stand-in server: cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A WAV input could not be opened or read.
    #[error("input {path}: {message}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
        /// The decoder's error, when there is one.
        #[source]
        source: Option<hound::Error>,
    },
    /// The memory store failed (open, write, close). A damaged file's
    /// message names the command that salvages it.
    #[error("memory store {path}{}", repair_hint(.path, .source))]
    Store {
        /// The memory file.
        path: PathBuf,
        /// Why.
        #[source]
        source: steward::store::Error,
    },
    /// An audio device could not be opened or failed.
    #[error("audio {what}")]
    Audio {
        /// Which stream (`capture`, `playback`) and device.
        what: String,
        /// Why.
        #[source]
        source: steward::audio::Error,
    },
    /// The WebSocket session to the model service failed.
    #[error("realtime session {url}")]
    Ws {
        /// The URL, without its query string.
        url: String,
        /// Why.
        #[source]
        source: steward::ws::Error,
    },
    /// The realtime conversation could not start (first connection).
    #[error("realtime service at {url}")]
    Realtime {
        /// The URL, without user info or query string.
        url: String,
        /// What steward-realtime said.
        #[source]
        source: steward::realtime::Error,
    },
    /// The steward wiring (monitor, HTTP endpoint) could not start.
    #[error("steward wiring")]
    Steward(#[source] steward::Error),
    /// A soak file (`rss.csv`, `rss.png`, a report) could not be written.
    #[error("soak file {path}: {message}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
        /// The I/O error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The configuration is not usable.
    #[error("invalid configuration: {field}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A task of the assistant panicked or was cancelled.
    #[error("assistant task {name} failed: {message}")]
    Task {
        /// The task.
        name: &'static str,
        /// The panic message, as far as known.
        message: String,
    },
}

/// What to run about a damaged memory file.
fn repair_hint(path: &std::path::Path, source: &steward::store::Error) -> String {
    if !source.is_damage() {
        return String::new();
    }
    format!(
        " is damaged (`steward store repair {}` salvages what can be read)",
        path.display()
    )
}

/// The one URL redaction (no user info, no query), for messages, spans,
/// reports and `Debug`.
pub(crate) use steward::redact::redact_url;

/// Serde helper: an optional URL written as [`redact_url`] shows it.
pub(crate) fn serialize_redacted<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact_url(url)),
        None => s.serialize_none(),
    }
}
