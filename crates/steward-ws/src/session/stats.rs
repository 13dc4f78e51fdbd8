//! A session's counters: the atomics the handles and the I/O task bump,
//! and the [`Stats`] snapshot taken from them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use super::Shared;

/// Counters shared by the handles and the I/O task.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) connections: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) disconnects: AtomicU64,
    pub(super) messages_sent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) messages_received: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) pings_sent: AtomicU64,
    pub(super) pongs_received: AtomicU64,
    /// Microseconds + 1; 0 means "no pong yet".
    pub(super) last_rtt_us: AtomicU64,
    pub(super) dead_peers: AtomicU64,
    pub(super) oversize_outgoing: AtomicU64,
    pub(super) oversize_incoming: AtomicU64,
    pub(super) events_dropped: AtomicU64,
    pub(super) events_coalesced: AtomicU64,
    pub(super) undelivered_dropped_messages: AtomicU64,
    pub(super) undelivered_dropped_bytes: AtomicU64,
    pub(super) flaps: AtomicU64,
    pub(super) shed_outbound_messages: AtomicU64,
    pub(super) shed_outbound_bytes: AtomicU64,
    pub(super) shed_inbound_messages: AtomicU64,
    pub(super) shed_inbound_bytes: AtomicU64,
    pub(super) link_gone: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Relaxed);
}

/// A snapshot of a session's counters (plain data, serde).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// A connection is up right now.
    pub connected: bool,
    /// Connections made, the first one included.
    pub connections: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// Links lost (not counting shutdowns).
    pub disconnects: u64,
    /// Messages fully written to the socket.
    pub messages_sent: u64,
    /// Payload bytes of those messages.
    pub bytes_sent: u64,
    /// Data messages received and queued for the application.
    pub messages_received: u64,
    /// Payload bytes of those messages.
    pub bytes_received: u64,
    /// Pings sent by the heartbeat.
    pub pings_sent: u64,
    /// Pongs that answered our latest ping.
    pub pongs_received: u64,
    /// Round trip of the latest answered ping, in microseconds.
    pub last_rtt_us: Option<u64>,
    /// Links declared dead by the heartbeat.
    pub dead_peers: u64,
    /// Outgoing messages refused as too large.
    pub oversize_outgoing: u64,
    /// Incoming messages refused as too large (each closed the link with 1009).
    pub oversize_incoming: u64,
    /// Messages waiting in the outbound queue.
    pub outbound_queued_messages: u64,
    /// Bytes waiting in the outbound queue (a message larger than the byte
    /// limit counts as the limit).
    pub outbound_queued_bytes: u64,
    /// Messages waiting for the application in the inbound queue.
    pub inbound_queued_messages: u64,
    /// Bytes waiting in the inbound queue.
    pub inbound_queued_bytes: u64,
    /// `Reconnecting` events dropped because the event queue was full
    /// (lifecycle events never are).
    pub events_dropped: u64,
    /// `Disconnected` events folded into an earlier one because the event
    /// queue was full (their undelivered messages kept, in order).
    pub events_coalesced: u64,
    /// Undelivered messages dropped from unread events beyond
    /// [`ClientConfig::event_queue_bytes`](crate::ClientConfig::event_queue_bytes), oldest first.
    pub undelivered_dropped_messages: u64,
    /// Payload bytes of those messages.
    pub undelivered_dropped_bytes: u64,
    /// Links lost before they were up for
    /// [`ReconnectConfig::healthy_after`](crate::ReconnectConfig::healthy_after):
    /// each counted as a failed attempt, so the backoff grows.
    pub flaps: u64,
    /// Outbound messages dropped by [`Session::shed_queued`](crate::Session::shed_queued) (never written).
    pub shed_outbound_messages: u64,
    /// Payload bytes of those messages.
    pub shed_outbound_bytes: u64,
    /// Inbound messages dropped by [`Session::shed_queued`](crate::Session::shed_queued) (never read).
    pub shed_inbound_messages: u64,
    /// Payload bytes of those messages.
    pub shed_inbound_bytes: u64,
    /// Messages sent with [`Session::send_on`](crate::Session::send_on) / [`Session::try_send_on`](crate::Session::try_send_on)
    /// whose link was gone: refused at the call, or (when the link was lost
    /// between the call and the write) dropped by the I/O task instead of
    /// going out on the next link.
    pub link_gone: u64,
}

impl Stats {
    /// The latest round-trip time, if a pong has come back.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt_us.map(Duration::from_micros)
    }
}

impl Shared {
    pub(super) fn stats(&self) -> Stats {
        let c = &self.counters;
        let (out_m, out_b) = self.outbound.queued();
        let (in_m, in_b) = self.inbound.queued();
        let rtt = c.last_rtt_us.load(Relaxed);
        Stats {
            connected: self.connected.load(Relaxed),
            connections: c.connections.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            disconnects: c.disconnects.load(Relaxed),
            messages_sent: c.messages_sent.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            messages_received: c.messages_received.load(Relaxed),
            bytes_received: c.bytes_received.load(Relaxed),
            pings_sent: c.pings_sent.load(Relaxed),
            pongs_received: c.pongs_received.load(Relaxed),
            last_rtt_us: rtt.checked_sub(1),
            dead_peers: c.dead_peers.load(Relaxed),
            oversize_outgoing: c.oversize_outgoing.load(Relaxed),
            oversize_incoming: c.oversize_incoming.load(Relaxed),
            outbound_queued_messages: out_m,
            outbound_queued_bytes: out_b,
            inbound_queued_messages: in_m,
            inbound_queued_bytes: in_b,
            events_dropped: c.events_dropped.load(Relaxed),
            events_coalesced: c.events_coalesced.load(Relaxed),
            undelivered_dropped_messages: c.undelivered_dropped_messages.load(Relaxed),
            undelivered_dropped_bytes: c.undelivered_dropped_bytes.load(Relaxed),
            flaps: c.flaps.load(Relaxed),
            shed_outbound_messages: c.shed_outbound_messages.load(Relaxed),
            shed_outbound_bytes: c.shed_outbound_bytes.load(Relaxed),
            shed_inbound_messages: c.shed_inbound_messages.load(Relaxed),
            shed_inbound_bytes: c.shed_inbound_bytes.load(Relaxed),
            link_gone: c.link_gone.load(Relaxed),
        }
    }
}
