//! WebSocket sessions (feature `ws`): held weakly, tracked as `ws.session`
//! by their queued bytes, shed to their floor at `Critical`; their stats
//! join [`Health`] and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use steward_ws::{Session, WeakSession};

use super::Tracker;
use super::entry::PartEntry;
use crate::health::Health;
use crate::metrics::{Out, f, per_row, unique};
use crate::{Steward, StewardBuilder};

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
    fn new(name: &str, session: &WeakSession, tracker: Option<&Tracker>) -> Self {
        let entry = PartEntry::new(
            WS_SESSION_KIND,
            name,
            queued_bytes(&session.stats()),
            tracker,
        );
        Self {
            name: name.to_owned(),
            session: session.clone(),
            entry,
        }
    }

    /// Shut down, gave up, or ended after its owner dropped it.
    fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Drops queued audio beyond the session's floor (its
    /// `ClientConfig::shed_floor`), both ways; the tracker entry shrinks with it.
    async fn shed(&self) -> steward_ws::Shed {
        let shed = self.session.shed_queued().await;
        let stats = self.session.stats();
        let traffic = stats.messages_sent.saturating_add(stats.messages_received);
        self.entry.refresh(queued_bytes(&stats), traffic);
        shed
    }

    /// The session's stats; refreshes its tracker entry on the way (size =
    /// bytes queued either way, touched when messages moved).
    fn health(&self) -> WsHealth {
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

/// How long the shed waits for one session's I/O task.
const WS_SHED_WAIT: Duration = Duration::from_secs(1);

/// The sessions under the wiring and what the shed dropped.
#[derive(Default)]
pub(crate) struct WsParts {
    list: Mutex<Vec<Arc<WsPart>>>,
    shed_messages: AtomicU64,
    shed_bytes: AtomicU64,
}

impl WsParts {
    pub(crate) fn add(&self, name: &str, session: &WeakSession, tracker: Option<&Tracker>) {
        let part = WsPart::new(name, session, tracker);
        self.list.lock().push(Arc::new(part));
    }

    pub(crate) fn len(&self) -> usize {
        self.list.lock().len()
    }

    /// The open sessions; closed ones are let go here (their tracker
    /// entries with them).
    fn live(&self) -> Vec<Arc<WsPart>> {
        let mut sessions = self.list.lock();
        sessions.retain(|s| !s.is_closed());
        sessions.clone()
    }

    /// Refreshes every session's tracker entry.
    #[cfg(feature = "tracker")]
    pub(crate) fn refresh(&self) {
        for session in self.live() {
            let _ = session.health();
        }
    }

    /// Drops queued messages beyond each session's floor; payload bytes
    /// dropped.
    pub(crate) async fn shed(&self) -> u64 {
        let (mut messages, mut bytes) = (0u64, 0u64);
        for session in self.live() {
            // A session busy closing answers late: skip it, shed the others.
            let Ok(shed) = tokio::time::timeout(WS_SHED_WAIT, session.shed()).await else {
                tracing::debug!("a WebSocket session did not answer the shed in time");
                continue;
            };
            messages = messages.saturating_add(shed.messages());
            bytes = bytes.saturating_add(shed.bytes());
            // Counted as it goes: a timeout midway keeps what was done.
            self.shed_messages.fetch_add(shed.messages(), Relaxed);
            self.shed_bytes.fetch_add(shed.bytes(), Relaxed);
        }
        if messages > 0 {
            tracing::warn!(
                messages,
                bytes,
                "critical pressure: WebSocket queues shed to their floor"
            );
        }
        bytes
    }

    /// The sessions' stats (refreshing their tracker entries) and the
    /// shed's counts.
    pub(crate) fn health(&self, h: &mut Health) {
        h.ws = self.live().iter().map(|s| s.health()).collect();
        h.cleanup.ws_shed_messages = self.shed_messages.load(Relaxed);
        h.cleanup.ws_shed_bytes = self.shed_bytes.load(Relaxed);
    }
}

impl StewardBuilder {
    /// The session's stats join [`Health`] under `name`, and (with a
    /// tracker) it is tracked as `ws.session` while open, sized by the bytes
    /// it has queued. Held weakly: once you drop your last handle the
    /// session ends as it would without the steward (queued messages
    /// written for at most its drain timeout, no reconnecting) and leaves
    /// the wiring. More sessions can be added later with
    /// [`Steward::add_ws_session`].
    pub fn ws_session(mut self, name: &str, session: &Session) -> Self {
        self.parts.ws.push((name.to_owned(), session.downgrade()));
        self
    }
}

impl Steward {
    /// Puts a WebSocket session under the wiring (see
    /// [`StewardBuilder::ws_session`]), held weakly; it leaves once closed.
    pub fn add_ws_session(&self, name: &str, session: &Session) {
        let parts = self.parts();
        parts.ws.add(name, &session.downgrade(), parts.tracker());
        self.ensure_shed();
    }
}

/// The `steward_ws_*` families: one row per session.
pub(crate) fn metrics(o: &mut Out, h: &Health) {
    shed_metrics(o, h);
    if h.ws.is_empty() {
        return;
    }
    let names = unique(h.ws.iter().map(|w| w.name.clone()));
    let rows: Vec<(&str, &steward_ws::Stats)> = names
        .iter()
        .map(String::as_str)
        .zip(h.ws.iter().map(|w| &w.stats))
        .collect();
    type Get = fn(&steward_ws::Stats) -> u64;
    let families: &[(&str, &str, &str, Get)] = &[
        (
            "steward_ws_connected",
            "gauge",
            "1 while the session's link is up.",
            |s| u64::from(s.connected),
        ),
        (
            "steward_ws_reconnects_total",
            "counter",
            "Successful reconnects.",
            |s| s.reconnects,
        ),
        (
            "steward_ws_disconnects_total",
            "counter",
            "Links lost.",
            |s| s.disconnects,
        ),
        (
            "steward_ws_dead_peers_total",
            "counter",
            "Links declared dead by the heartbeat.",
            |s| s.dead_peers,
        ),
        (
            "steward_ws_messages_sent_total",
            "counter",
            "Messages written to the socket.",
            |s| s.messages_sent,
        ),
        (
            "steward_ws_messages_received_total",
            "counter",
            "Data messages received.",
            |s| s.messages_received,
        ),
        (
            "steward_ws_bytes_sent_total",
            "counter",
            "Payload bytes sent.",
            |s| s.bytes_sent,
        ),
        (
            "steward_ws_events_dropped_total",
            "counter",
            "Reconnecting events dropped because the event queue was full.",
            |s| s.events_dropped,
        ),
        (
            "steward_ws_events_coalesced_total",
            "counter",
            "Disconnected events folded into an earlier one while the event queue was full.",
            |s| s.events_coalesced,
        ),
        (
            "steward_ws_undelivered_dropped_bytes_total",
            "counter",
            "Undelivered messages' bytes dropped from unread events beyond the event queue's byte bound.",
            |s| s.undelivered_dropped_bytes,
        ),
        (
            "steward_ws_undelivered_dropped_messages_total",
            "counter",
            "Undelivered messages dropped from unread events beyond the event queue's byte bound.",
            |s| s.undelivered_dropped_messages,
        ),
        (
            "steward_ws_link_gone_total",
            "counter",
            "Messages for one link refused or dropped because that link was gone.",
            |s| s.link_gone,
        ),
    ];
    per_row(o, "session", &rows, families);
    o.family(
        "steward_ws_rtt_seconds",
        "gauge",
        "Round trip of the latest answered ping.",
    );
    for (session, s) in &rows {
        if let Some(us) = s.last_rtt_us {
            o.sample(
                "steward_ws_rtt_seconds",
                &[("session", session)],
                f(us) / 1e6,
            );
        }
    }
    type Directions = fn(&steward_ws::Stats) -> [u64; 2];
    let by_direction: [(&str, &str, &str, Directions); 3] = [
        (
            "steward_ws_queued_bytes",
            "gauge",
            "Bytes waiting in the session's queues, by direction.",
            |s| [s.outbound_queued_bytes, s.inbound_queued_bytes],
        ),
        (
            "steward_ws_shed_messages_total",
            "counter",
            "Queued messages dropped beyond the floor (memory pressure), by direction.",
            |s| [s.shed_outbound_messages, s.shed_inbound_messages],
        ),
        (
            "steward_ws_shed_bytes_total",
            "counter",
            "Payload bytes of those messages, by direction.",
            |s| [s.shed_outbound_bytes, s.shed_inbound_bytes],
        ),
    ];
    for (name, kind, help, get) in by_direction {
        o.family(name, kind, help);
        for (session, s) in &rows {
            let [outbound, inbound] = get(s);
            o.sample(
                name,
                &[("session", session), ("direction", "outbound")],
                f(outbound),
            );
            o.sample(
                name,
                &[("session", session), ("direction", "inbound")],
                f(inbound),
            );
        }
    }
}

/// What the shed handler dropped, every session together.
fn shed_metrics(o: &mut Out, h: &Health) {
    o.single(
        "steward_cleanup_ws_shed_messages_total",
        "counter",
        "Queued WebSocket messages dropped beyond their floor under critical pressure.",
        f(h.cleanup.ws_shed_messages),
    );
    o.single(
        "steward_cleanup_ws_shed_bytes_total",
        "counter",
        "Payload bytes of those messages.",
        f(h.cleanup.ws_shed_bytes),
    );
}
