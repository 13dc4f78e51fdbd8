//! The session's event queue: bounded in events and in the bytes of the
//! undelivered messages it holds, and lifecycle events are never dropped.
//!
//! `Reconnecting` is the only event that may be dropped (the next one, or
//! the `Connected` / `GaveUp` that follows, says as much). When the queue
//! is full, a lifecycle event (`Connected`, `Disconnected`, `GaveUp`,
//! `Closed`) first evicts the oldest queued `Reconnecting`; failing that,
//! a `Disconnected` after a queued `Disconnected, Connected` pair is folded
//! into it (one `Disconnected`: the newer reason, the undelivered messages
//! of both in order; the `Connected` between them goes, the next one's
//! number says how many links there were). Otherwise the event is queued
//! beyond the bound: that happens at most a few times in a row (the next
//! `Disconnected` folds again), so the queue stays within `capacity + 3`.
//! Undelivered messages beyond the byte bound are dropped, oldest first:
//! counted in `Stats` and logged, never silently.

use std::collections::VecDeque;

use crate::mailbox::{self, Bounds};
use crate::{Event, Message};

/// What one push had to give up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow {
    /// `Reconnecting` events dropped (the new one, or a queued one).
    pub(crate) dropped: u64,
    /// `Disconnected` events folded into an older one.
    pub(crate) coalesced: u64,
    /// Undelivered messages dropped for the byte bound.
    pub(crate) messages: u64,
    /// Their payload bytes.
    pub(crate) bytes: u64,
    /// This is the first loss since the queue last had room: log it.
    pub(crate) first_in_burst: bool,
}

impl Overflow {
    fn lost_any(&self) -> bool {
        self.dropped + self.coalesced + self.messages > 0
    }
}

/// The bounds of a session's event queue.
pub(crate) struct EventBounds {
    capacity: usize,
    max_bytes: usize,
    /// Payload bytes of the undelivered messages queued.
    bytes: usize,
    /// Losses since the queue last had room (one warning per burst).
    overflowing: bool,
}

impl Bounds for EventBounds {
    type Item = Event;
    type Overflow = Overflow;

    fn push(&mut self, events: &mut VecDeque<Event>, event: Event) -> Overflow {
        let mut overflow = push(events, &mut self.bytes, event, self.capacity);
        trim_bytes(events, &mut self.bytes, self.max_bytes, &mut overflow);
        if overflow.lost_any() && !self.overflowing {
            self.overflowing = true;
            overflow.first_in_burst = true;
        }
        overflow
    }

    fn popped(&mut self, event: &Event, left: usize) {
        self.bytes -= undelivered_bytes(event);
        if left < self.capacity {
            self.overflowing = false;
        }
    }
}

/// The I/O task's end (see [`mailbox::Sender`]).
pub(crate) type EventSender = mailbox::Sender<EventBounds>;

/// The session's events, in order (see [`Event`]). Cheap to clone; clones
/// share one queue, so each event goes to one reader.
#[derive(Clone)]
pub struct Events {
    rx: mailbox::Receiver<EventBounds>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// A new queue of at most `capacity` events and `max_bytes` of undelivered
/// messages (lifecycle events aside, see the module docs).
pub(crate) fn event_queue(capacity: usize, max_bytes: usize) -> (EventSender, Events) {
    let (tx, rx) = mailbox::channel(EventBounds {
        capacity: capacity.max(1),
        max_bytes,
        bytes: 0,
        overflowing: false,
    });
    (tx, Events { rx })
}

impl Events {
    /// The next event; `None` once the session has ended and every event was read.
    /// Cancel safe.
    pub async fn recv(&self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv()
    }

    pub(crate) fn downgrade(&self) -> WeakEvents {
        WeakEvents(self.rx.downgrade())
    }
}

/// An [`Events`] that does not keep the queue.
#[derive(Clone)]
pub(crate) struct WeakEvents(mailbox::WeakReceiver<EventBounds>);

impl WeakEvents {
    pub(crate) fn upgrade(&self) -> Option<Events> {
        Some(Events {
            rx: self.0.upgrade()?,
        })
    }
}

/// `Reconnecting` only: every other event says where the link is.
fn droppable(event: &Event) -> bool {
    matches!(event, Event::Reconnecting { .. })
}

fn undelivered(event: &Event) -> Option<&[Message]> {
    match event {
        Event::Disconnected { undelivered, .. } | Event::GaveUp { undelivered, .. } => {
            Some(undelivered)
        }
        _ => None,
    }
}

fn undelivered_bytes(event: &Event) -> usize {
    undelivered(event).map_or(0, |m| m.iter().map(Message::len).sum())
}

fn push(
    events: &mut VecDeque<Event>,
    bytes: &mut usize,
    event: Event,
    capacity: usize,
) -> Overflow {
    let mut overflow = Overflow::default();
    let event = if events.len() < capacity {
        event
    } else if droppable(&event) {
        overflow.dropped = 1;
        return overflow;
    } else if let Some(at) = events.iter().position(droppable) {
        events.remove(at);
        overflow.dropped = 1;
        event
    } else {
        match coalesce(events, bytes, event, &mut overflow) {
            // Nothing to fold into: room is reserved for it.
            Some(event) => event,
            None => return overflow,
        }
    };
    *bytes += undelivered_bytes(&event);
    events.push_back(event);
    overflow
}

/// Folds a `Disconnected` into a queued `Disconnected, Connected` pair at
/// the end; hands the event back when it cannot.
fn coalesce(
    events: &mut VecDeque<Event>,
    bytes: &mut usize,
    event: Event,
    overflow: &mut Overflow,
) -> Option<Event> {
    let n = events.len();
    if n < 2 || !matches!(events[n - 1], Event::Connected { .. }) {
        return Some(event);
    }
    let Event::Disconnected {
        reason,
        undelivered,
    } = event
    else {
        return Some(event);
    };
    let Some(Event::Disconnected {
        reason: older_reason,
        undelivered: older,
    }) = events.get_mut(n - 2)
    else {
        return Some(Event::Disconnected {
            reason,
            undelivered,
        });
    };
    tracing::debug!(earlier = %older_reason, later = %reason, "link losses folded into one event");
    *older_reason = reason;
    let added: usize = undelivered.iter().map(Message::len).sum();
    older.extend(undelivered);
    // The `Connected` between the two losses.
    events.pop_back();
    *bytes += added;
    overflow.coalesced = 1;
    None
}

/// Drops the oldest undelivered messages until the queue holds at most
/// `max_bytes` of them.
fn trim_bytes(
    events: &mut VecDeque<Event>,
    bytes: &mut usize,
    max_bytes: usize,
    overflow: &mut Overflow,
) {
    let mut excess = bytes.saturating_sub(max_bytes);
    for event in events {
        if excess == 0 {
            return;
        }
        let (Event::Disconnected { undelivered, .. } | Event::GaveUp { undelivered, .. }) = event
        else {
            continue;
        };
        let (mut n, mut freed) = (0, 0);
        while n < undelivered.len() && freed < excess {
            freed += undelivered[n].len();
            n += 1;
        }
        undelivered.drain(..n);
        overflow.messages += n as u64;
        overflow.bytes += freed as u64;
        *bytes -= freed;
        excess = excess.saturating_sub(freed);
    }
}

#[cfg(test)]
mod model;
