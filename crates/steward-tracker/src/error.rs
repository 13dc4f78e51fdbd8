//! The crate's one error type.

use std::sync::Arc;

/// What can go wrong while tracking resources.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hard budget refused a new resource or a resize. Nothing was
    /// tracked or changed.
    #[error(
        "kind `{kind}` is over its hard budget: {live} {unit} live + {requested} requested > limit {limit} {unit}"
    )]
    OverBudget {
        /// The kind whose budget refused.
        kind: String,
        /// `"bytes"` or `"resources"`: which limit refused.
        unit: &'static str,
        /// What was live of that unit when the request came.
        live: u64,
        /// What the request would have added.
        requested: u64,
        /// The hard limit.
        limit: u64,
    },
    /// A by-id operation named a key that is not tracked: it never was, or
    /// it was released already (a double release).
    #[error("resource `{key}` is not tracked (never tracked, or released already)")]
    UnknownId {
        /// The key the caller passed.
        key: String,
    },
    /// `track_id` was called with a key that is live already.
    #[error("resource `{key}` is tracked already")]
    DuplicateId {
        /// The key the caller passed.
        key: String,
    },
    /// The tracker holds a fixed number of kinds (they are meant to be a
    /// small vocabulary such as `ws_conn` or `audio_buf`).
    #[error("cannot register kind `{kind}`: the tracker holds at most {max} kinds")]
    TooManyKinds {
        /// The kind that did not fit.
        kind: String,
        /// The maximum number of kinds.
        max: usize,
    },
    /// A budget or configuration value makes no sense.
    #[error("invalid budget for kind `{kind}`: {reason}")]
    InvalidBudget {
        /// The kind the budget was for.
        kind: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A background thread could not be started.
    #[error("cannot start the {what} thread")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// The crate's result: `E` is [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;
