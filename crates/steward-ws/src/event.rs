//! [`Event`]: what happened to a session's link.

use std::time::Duration;

use crate::{Error, Message};

/// What happened to the link, delivered in order through
/// [`Session::events`](crate::Session::events).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection is up (the first one or after a reconnect).
    Connected {
        /// How many connections this session has made so far, this one included.
        connection: u64,
    },
    /// The link went down. The session will reconnect unless reconnecting is
    /// disabled or it gives up.
    Disconnected {
        /// Why the link went down.
        reason: Error,
        /// Messages that were queued but never fully written to the socket, in
        /// the order they were sent. They are not resent: a new connection
        /// usually means a new server-side session, so the application decides.
        undelivered: Vec<Message>,
    },
    /// The session waits `delay` and then makes reconnect attempt `attempt` (from 1).
    Reconnecting {
        /// The attempt number, from 1: consecutive failures so far plus one
        /// (links lost before they were healthy count as failures, see
        /// [`ReconnectConfig`](crate::ReconnectConfig)).
        attempt: u32,
        /// The backoff delay before this attempt (with jitter).
        delay: Duration,
    },
    /// Reconnecting failed for good; the session is closed.
    GaveUp {
        /// Consecutive failed attempts, flaps included (0 when reconnecting
        /// is disabled).
        attempts: u32,
        /// The error of the last attempt (`None` when reconnecting is disabled).
        last_error: Option<Error>,
        /// Messages queued while reconnecting, never sent.
        undelivered: Vec<Message>,
    },
    /// The session was shut down (by `shutdown` or because every handle was dropped).
    Closed,
}
