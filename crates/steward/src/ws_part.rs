//! WebSocket sessions under the wiring: their stats join [`crate::Health`]
//! and each session is tracked by the tracker without the user writing it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use steward_ws::Session;

/// Tracker kind of a WebSocket session.
pub const WS_SESSION_KIND: &str = "ws.session";

/// One session as the wiring holds it.
pub(crate) struct WsPart {
    name: String,
    session: Session,
    #[cfg(feature = "tracker")]
    tracked: parking_lot::Mutex<Option<steward_tracker::Tracked>>,
    /// Messages moved at the last look: traffic since then touches the entry.
    last_traffic: AtomicU64,
}

impl WsPart {
    pub(crate) fn new(
        name: &str,
        session: &Session,
        #[cfg(feature = "tracker")] tracker: Option<&steward_tracker::Tracker>,
    ) -> Self {
        #[cfg(feature = "tracker")]
        let tracked = tracker.and_then(|t| {
            let stats = session.stats();
            match t.track(WS_SESSION_KIND, queued_bytes(&stats)) {
                Ok(guard) => Some(guard.with_name(name)),
                Err(error) => {
                    tracing::warn!(%error, session = name, "the tracker refused a WebSocket session");
                    None
                }
            }
        });
        Self {
            name: name.to_owned(),
            session: session.clone(),
            #[cfg(feature = "tracker")]
            tracked: parking_lot::Mutex::new(tracked),
            last_traffic: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// The session's stats; refreshes its tracker entry on the way (size =
    /// bytes queued either way, touched when messages moved).
    pub(crate) fn health(&self) -> WsHealth {
        let stats = self.session.stats();
        let traffic = stats.messages_sent.saturating_add(stats.messages_received);
        let moved = self.last_traffic.swap(traffic, Relaxed) != traffic;
        #[cfg(feature = "tracker")]
        if let Some(guard) = self.tracked.lock().as_mut() {
            // Over a budget: keep the old size, the tracker reports it.
            let _ = guard.resize(queued_bytes(&stats));
            if moved {
                guard.touch();
            }
        }
        #[cfg(not(feature = "tracker"))]
        let _ = moved;
        WsHealth {
            name: self.name.clone(),
            stats,
        }
    }
}

#[cfg(feature = "tracker")]
fn queued_bytes(stats: &steward_ws::Stats) -> u64 {
    stats
        .outbound_queued_bytes
        .saturating_add(stats.inbound_queued_bytes)
}

/// A WebSocket session's name and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WsHealth {
    /// The name it was added under.
    pub name: String,
    /// Its counters (connection state, RTT, queues, reconnects).
    pub stats: steward_ws::Stats,
}
