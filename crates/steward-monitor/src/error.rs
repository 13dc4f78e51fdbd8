//! The crate's one error type.

use std::path::PathBuf;

/// A boxed error, as returned by cleanup handlers and custom sample sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `steward-monitor`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range; the message explains the units.
    #[error("invalid monitor config: `{field}` = {value}: {reason}")]
    InvalidConfig {
        /// The offending field, e.g. `moderate.fraction`.
        field: &'static str,
        /// The value as given.
        value: String,
        /// Why it is refused and what the units are.
        reason: String,
    },
    /// A file of the kernel could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the kernel did not have the expected format.
    #[error("cannot parse {}: {what}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// `sysinfo` could not provide what was asked.
    #[error("sysinfo cannot {what}")]
    Sysinfo {
        /// What was asked.
        what: &'static str,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A sample source failed (custom sources and the fake source use this).
    #[error("sample source `{source_name}` failed")]
    Source {
        /// The source's name.
        source_name: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The monitor was built outside a tokio runtime.
    #[error("the memory monitor must be started inside a tokio runtime (it spawns its task)")]
    NoRuntime,
    /// The monitor has been shut down.
    #[error("the memory monitor is shut down")]
    Shutdown,
    /// Cleanup handlers are registered for `Moderate` or `Critical` only.
    #[error(
        "cleanup handler `{name}` is registered for level `none`; handlers run on pressure, \
         register it for `moderate` or `critical`"
    )]
    HandlerLevel {
        /// The handler's name.
        name: String,
    },
}

impl Error {
    /// Wraps a custom source's failure.
    pub fn source_failed(source_name: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Source {
            source_name: source_name.into(),
            source: source.into(),
        }
    }

    pub(crate) fn invalid(
        field: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidConfig {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
