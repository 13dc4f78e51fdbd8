//! The crate's error type.

use std::sync::Arc;
use std::time::Duration;

/// The crate's result: `E` is the manager's error, as in [`Error<E>`].
///
/// There is no default for `E`: every pool's error carries its own
/// manager's error type, so no one type would fit as the default (a
/// `Pool<M>` returns `Result<_, M::Error>`).
pub type Result<T, E> = std::result::Result<T, Error<E>>;

/// Everything that can go wrong with a pool. `E` is the manager's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// The pool is at `max_size` and the caller asked not to wait
    /// ([`crate::Pool::try_get`], [`crate::Pool::add`]).
    #[error("pool `{pool}` is full ({max_size} objects)")]
    Full {
        /// The pool's name.
        pool: Arc<str>,
        /// Its size limit at the time.
        max_size: usize,
    },
    /// No object became free within the wait timeout.
    #[error("timed out after {waited:?} waiting for an object of pool `{pool}`")]
    WaitTimeout {
        /// The pool's name.
        pool: Arc<str>,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The manager's `create` did not finish within the create timeout.
    #[error("creating an object for pool `{pool}` timed out after {timeout:?}")]
    CreateTimeout {
        /// The pool's name.
        pool: Arc<str>,
        /// The create timeout.
        timeout: Duration,
    },
    /// The manager's `create` failed.
    #[error("creating an object for pool `{pool}` failed")]
    Create {
        /// The pool's name.
        pool: Arc<str>,
        /// The manager's error.
        #[source]
        source: E,
    },
    /// The pool was closed.
    #[error("pool `{pool}` is closed")]
    Closed {
        /// The pool's name.
        pool: Arc<str>,
    },
    /// The configuration cannot work.
    #[error("invalid configuration for pool `{pool}`: {reason}")]
    Config {
        /// The pool's name.
        pool: Arc<str>,
        /// What is wrong.
        reason: String,
    },
}

/// An object [`crate::Pool::add`] refused, handed back with the reason.
/// Its message names the pool; the reason is its source (not repeated in
/// the message, so a chain printed link by link shows it once).
#[derive(thiserror::Error)]
#[error("pool `{}` refused the added object", pool_of(.error))]
pub struct Refused<T, E> {
    /// The object, still owned by the caller.
    pub object: T,
    /// Why it was refused ([`Error::Full`] or [`Error::Closed`]).
    #[source]
    pub error: Error<E>,
}

/// The pool an error is about (every variant names it).
fn pool_of<E>(error: &Error<E>) -> &str {
    match error {
        Error::Full { pool, .. }
        | Error::WaitTimeout { pool, .. }
        | Error::CreateTimeout { pool, .. }
        | Error::Create { pool, .. }
        | Error::Closed { pool }
        | Error::Config { pool, .. } => pool,
    }
}

impl<T, E: std::fmt::Debug> std::fmt::Debug for Refused<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The object itself may not be Debug (or may hold secrets): leave it out.
        f.debug_struct("Refused")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}
