//! The facade's error type.

use std::net::SocketAddr;

/// Everything that can go wrong while building or running the wiring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`crate::StewardBuilder::build`] was called outside a tokio runtime.
    #[error("the steward needs a tokio runtime: call `StewardBuilder::build` from inside one")]
    NoRuntime,
    /// The memory monitor could not be built (invalid config, no sampler).
    #[error("starting the memory monitor failed")]
    Monitor(#[source] steward_monitor::Error),
    /// A cleanup handler could not be registered with the monitor.
    #[error("registering cleanup handler `{name}` with the memory monitor failed")]
    Handler {
        /// The handler's name.
        name: &'static str,
        /// The monitor's error.
        #[source]
        source: steward_monitor::Error,
    },
    /// The HTTP endpoint could not listen on its address.
    #[cfg(feature = "http")]
    #[error("binding the health endpoint to {addr} failed")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A setting of [`crate::StewardConfig`] cannot work.
    #[error("invalid steward config `{field}`: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

// Only the `http` variant uses it; keep the import quiet without the feature.
#[cfg(not(feature = "http"))]
const _: Option<SocketAddr> = None;

/// Why a [`crate::TrackedManager`] could not make an object.
#[cfg(all(feature = "monitor", feature = "pool", feature = "tracker"))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackedError<E> {
    /// The wrapped manager's `create` or `recycle` failed.
    #[error("the pool's manager failed")]
    Manager(#[source] E),
    /// The tracker refused a new object (a hard budget of its kind).
    #[error("the tracker refused a new pooled object of kind `{kind}`")]
    Tracker {
        /// The tracker kind of the pool's objects.
        kind: String,
        /// The tracker's error.
        #[source]
        source: steward_tracker::Error,
    },
}
