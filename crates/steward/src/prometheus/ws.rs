//! The WebSocket sessions' families (feature `ws`): link state, traffic,
//! heartbeat, and every overflow counter of their queues.

use super::{Out, f, unique};
use crate::health::Health;

/// The `steward_ws_*` families: one row per session.
pub(super) fn render(o: &mut Out, h: &Health) {
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

/// One family: name, type, help, and how to read its value from a row.
pub(super) type Family<'a, S> = (&'a str, &'a str, &'a str, fn(&S) -> u64);

/// Counter and gauge families with one sample per labelled row (a
/// slice, so adding a family needs no length kept in step). The realtime
/// families use it too (feature `realtime` implies `ws`).
pub(super) fn per_row<S>(
    o: &mut Out,
    label: &str,
    rows: &[(&str, &S)],
    families: &[Family<'_, S>],
) {
    for (name, kind, help, get) in families {
        o.family(name, kind, help);
        for (row, s) in rows {
            o.sample(name, &[(label, row)], f(get(s)));
        }
    }
}
