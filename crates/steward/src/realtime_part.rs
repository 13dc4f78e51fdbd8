//! Realtime conversations under the wiring: their counters join
//! [`crate::Health`] and `/metrics`.

use serde::Serialize;
use steward_realtime::{RealtimeStats, RealtimeStatsHandle};

/// One conversation as the wiring holds it: a view of its counters only
/// (it keeps the session itself alive no longer than its owner does).
pub(crate) struct RealtimePart {
    name: String,
    handle: RealtimeStatsHandle,
}

impl RealtimePart {
    pub(crate) fn new(name: &str, handle: RealtimeStatsHandle) -> Self {
        Self {
            name: name.to_owned(),
            handle,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub(crate) fn health(&self) -> RealtimeHealth {
        RealtimeHealth {
            name: self.name.clone(),
            stats: self.handle.stats(),
        }
    }
}

/// A realtime conversation's name and counters (barge-ins and their
/// latency, truncations, renewals, replays, protocol errors by kind, rate
/// limits).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RealtimeHealth {
    /// The name it was added under.
    pub name: String,
    /// Its counters.
    pub stats: RealtimeStats,
}
