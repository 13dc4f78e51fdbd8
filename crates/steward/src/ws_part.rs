//! WebSocket sessions under the wiring: their stats join [`crate::Health`]
//! and each session is tracked by the tracker without the user writing it.

use serde::Serialize;
use steward_ws::WeakSession;

use crate::part_entry::PartEntry;

/// Tracker kind of a WebSocket session.
pub const WS_SESSION_KIND: &str = "ws.session";

/// One session as the wiring holds it: weakly, so a session its owner
/// dropped ends as it would without the wiring (and then leaves it).
pub(crate) struct WsPart {
    name: String,
    session: WeakSession,
    /// Tracked by queued bytes; traffic (messages moved) touches the entry.
    entry: PartEntry,
}

impl WsPart {
    pub(crate) fn new(
        name: &str,
        session: &WeakSession,
        #[cfg(feature = "tracker")] tracker: Option<&steward_tracker::Tracker>,
    ) -> Self {
        let entry = PartEntry::new(
            WS_SESSION_KIND,
            name,
            queued_bytes(&session.stats()),
            #[cfg(feature = "tracker")]
            tracker,
        );
        Self {
            name: name.to_owned(),
            session: session.clone(),
            entry,
        }
    }

    /// Shut down, gave up, or ended after its owner dropped it.
    pub(crate) fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Drops queued audio beyond the session's floor (its
    /// `ClientConfig::shed_floor`), both ways; the tracker entry shrinks with it.
    pub(crate) async fn shed(&self) -> steward_ws::Shed {
        let shed = self.session.shed_queued().await;
        let stats = self.session.stats();
        let traffic = stats.messages_sent.saturating_add(stats.messages_received);
        self.entry.refresh(queued_bytes(&stats), traffic);
        shed
    }

    /// The session's stats; refreshes its tracker entry on the way (size =
    /// bytes queued either way, touched when messages moved).
    pub(crate) fn health(&self) -> WsHealth {
        let stats = self.session.stats();
        let traffic = stats.messages_sent.saturating_add(stats.messages_received);
        self.entry.refresh(queued_bytes(&stats), traffic);
        WsHealth {
            name: self.name.clone(),
            stats,
        }
    }
}

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
