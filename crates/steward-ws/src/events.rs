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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::Notify;

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

struct State {
    events: VecDeque<Event>,
    /// Payload bytes of the undelivered messages in `events`.
    bytes: usize,
    /// The session's task has ended: nothing more comes.
    closed: bool,
    /// Losses since the queue last had room (one warning per burst).
    overflowing: bool,
}

struct Queue {
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
    max_bytes: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still has whole data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session's events, in order (see [`Event`]). Cheap to clone; clones
/// share one queue, so each event goes to one reader.
#[derive(Clone)]
pub struct Events {
    queue: Arc<Queue>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// The I/O task's end. Holds the queue weakly: once every [`Events`] (and
/// so every session handle) is gone, events go nowhere. Dropping it ends
/// the queue: readers get `None` once it is empty.
pub(crate) struct EventSender {
    queue: Weak<Queue>,
}

/// A new queue of at most `capacity` events and `max_bytes` of undelivered
/// messages (lifecycle events aside, see the module docs).
pub(crate) fn event_queue(capacity: usize, max_bytes: usize) -> (EventSender, Events) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            events: VecDeque::new(),
            bytes: 0,
            closed: false,
            overflowing: false,
        }),
        ready: Notify::new(),
        capacity: capacity.max(1),
        max_bytes,
    });
    let sender = EventSender {
        queue: Arc::downgrade(&queue),
    };
    (sender, Events { queue })
}

impl Events {
    /// The next event; `None` once the session has ended and every event was read.
    /// Cancel safe.
    pub async fn recv(&self) -> Option<Event> {
        loop {
            let ready = self.queue.ready.notified();
            tokio::pin!(ready);
            // Registered before looking, so a push in between is not missed.
            ready.as_mut().enable();
            {
                let mut state = self.queue.lock();
                if let Some(event) = pop(&mut state, self.queue.capacity) {
                    return Some(event);
                }
                if state.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        pop(&mut self.queue.lock(), self.queue.capacity)
    }

    pub(crate) fn downgrade(&self) -> WeakEvents {
        WeakEvents {
            queue: Arc::downgrade(&self.queue),
        }
    }
}

/// An [`Events`] that does not keep the queue.
#[derive(Clone)]
pub(crate) struct WeakEvents {
    queue: Weak<Queue>,
}

impl WeakEvents {
    pub(crate) fn upgrade(&self) -> Option<Events> {
        Some(Events {
            queue: self.queue.upgrade()?,
        })
    }
}

fn pop(state: &mut State, capacity: usize) -> Option<Event> {
    let event = state.events.pop_front()?;
    state.bytes -= undelivered_bytes(&event);
    if state.events.len() < capacity {
        state.overflowing = false;
    }
    Some(event)
}

impl EventSender {
    /// Queues `event` (see the module docs for what a full queue gives up).
    pub(crate) fn send(&self, event: Event) -> Overflow {
        let Some(queue) = self.queue.upgrade() else {
            // Nobody can read it.
            return Overflow::default();
        };
        let mut overflow = {
            let mut state = queue.lock();
            let mut overflow = push(&mut state, event, queue.capacity);
            trim_bytes(&mut state, queue.max_bytes, &mut overflow);
            if overflow.lost_any() && !state.overflowing {
                state.overflowing = true;
                overflow.first_in_burst = true;
            }
            overflow
        };
        queue.ready.notify_waiters();
        overflow.first_in_burst &= overflow.lost_any();
        overflow
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.upgrade() {
            queue.lock().closed = true;
            queue.ready.notify_waiters();
        }
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

fn push(state: &mut State, event: Event, capacity: usize) -> Overflow {
    let mut overflow = Overflow::default();
    if state.events.len() >= capacity {
        if droppable(&event) {
            overflow.dropped = 1;
            return overflow;
        }
        if let Some(at) = state.events.iter().position(droppable) {
            state.events.remove(at);
            overflow.dropped = 1;
        } else if let Some(event) = coalesce(state, event, &mut overflow) {
            // Nothing to fold into: room is reserved for it.
            state.bytes += undelivered_bytes(&event);
            state.events.push_back(event);
            return overflow;
        } else {
            return overflow;
        }
    }
    state.bytes += undelivered_bytes(&event);
    state.events.push_back(event);
    overflow
}

/// Folds a `Disconnected` into a queued `Disconnected, Connected` pair at
/// the end; hands the event back when it cannot.
fn coalesce(state: &mut State, event: Event, overflow: &mut Overflow) -> Option<Event> {
    let n = state.events.len();
    if n < 2 || !matches!(state.events[n - 1], Event::Connected { .. }) {
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
    }) = state.events.get_mut(n - 2)
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
    state.events.pop_back();
    state.bytes += added;
    overflow.coalesced = 1;
    None
}

/// Drops the oldest undelivered messages until the queue holds at most
/// `max_bytes` of them.
fn trim_bytes(state: &mut State, max_bytes: usize, overflow: &mut Overflow) {
    let mut excess = state.bytes.saturating_sub(max_bytes);
    for event in &mut state.events {
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
        state.bytes -= freed;
        excess = excess.saturating_sub(freed);
    }
}
