//! The queue of [`RealtimeEvent`]s for the application: bounded in events
//! and in bytes of text, with room kept for what must not be lost.
//!
//! When full, a new transcript, speech, barge-in, response or error event
//! is dropped; a tool call first evicts the oldest such event (the model
//! waits for its answer), and is dropped only when the queue holds nothing
//! else; `SessionReady` and `LinkLost` are never dropped: they evict the
//! oldest droppable event, or a `LinkLost` after a queued `LinkLost,
//! SessionReady` pair folds into it (the later reason; the next
//! `SessionReady` numbers the sessions), or they take reserved room (at
//! most two beyond the bound: the next loss folds again).

use std::collections::VecDeque;

use steward_ws::mailbox::{self, Bounds};

use crate::conversation::RealtimeEvent;

/// What one push gave up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Overflow {
    /// Events dropped (the new one or an older one), tool calls included.
    pub(super) dropped: u64,
    /// Of those, tool calls.
    pub(super) calls_dropped: u64,
    /// `LinkLost` events folded into an earlier one.
    pub(super) coalesced: u64,
    /// The first loss since the queue last had room: log it.
    pub(super) first_in_burst: bool,
}

/// The bounds of the application's event queue.
pub(super) struct EventBounds {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    /// Losses since the queue last had room (one warning per burst).
    overflowing: bool,
}

impl Bounds for EventBounds {
    type Item = RealtimeEvent;
    type Overflow = Overflow;

    fn push(&mut self, events: &mut VecDeque<RealtimeEvent>, event: RealtimeEvent) -> Overflow {
        let mut overflow = push(self, events, event);
        if overflow.dropped + overflow.coalesced > 0 && !self.overflowing {
            self.overflowing = true;
            overflow.first_in_burst = true;
        }
        overflow
    }

    fn popped(&mut self, event: &RealtimeEvent, left: usize) {
        self.bytes -= weight(event);
        if left < self.capacity {
            self.overflowing = false;
        }
    }
}

/// The driver's end.
pub(super) type EventSender = mailbox::Sender<EventBounds>;
/// The handle's end.
pub(super) type EventReceiver = mailbox::Receiver<EventBounds>;

/// A queue of at most `capacity` events and `max_bytes` of their text (an
/// event larger than that passes alone), room for lifecycle events aside.
pub(super) fn event_queue(capacity: usize, max_bytes: usize) -> (EventSender, EventReceiver) {
    mailbox::channel(EventBounds {
        capacity: capacity.max(1),
        max_bytes,
        bytes: 0,
        overflowing: false,
    })
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// May be dropped when the queue is full.
    Data,
    /// Evicts data; dropped only when nothing else can go.
    Call,
    /// Never dropped.
    Lifecycle,
}

fn class(event: &RealtimeEvent) -> Class {
    match event {
        RealtimeEvent::SessionReady { .. } | RealtimeEvent::LinkLost { .. } => Class::Lifecycle,
        RealtimeEvent::ToolCall { .. } => Class::Call,
        _ => Class::Data,
    }
}

/// The text an event holds, in bytes.
fn weight(event: &RealtimeEvent) -> usize {
    match event {
        RealtimeEvent::ToolCall {
            call_id,
            name,
            arguments,
        } => call_id.len() + name.len() + arguments.len(),
        RealtimeEvent::UserTranscript { item_id, text } => item_id.len() + text.len(),
        RealtimeEvent::ResponseDone { status } => status.len(),
        RealtimeEvent::ServerError(e) => e.message.len(),
        RealtimeEvent::LinkLost { reason } => reason.len(),
        _ => 0,
    }
}

fn full(b: &EventBounds, events: &VecDeque<RealtimeEvent>, adding: usize) -> bool {
    !events.is_empty() && (events.len() >= b.capacity || b.bytes + adding > b.max_bytes)
}

fn push(
    b: &mut EventBounds,
    events: &mut VecDeque<RealtimeEvent>,
    event: RealtimeEvent,
) -> Overflow {
    let mut overflow = Overflow::default();
    let adding = weight(&event);
    let class = class(&event);
    // Make room by evicting the oldest data events (a tool call or a
    // lifecycle event is worth more).
    while class > Class::Data && full(b, events, adding) {
        let Some(at) = events.iter().position(|e| self::class(e) == Class::Data) else {
            break;
        };
        if let Some(old) = events.remove(at) {
            b.bytes -= weight(&old);
            count_drop(&mut overflow, &old);
        }
    }
    if full(b, events, adding) {
        match class {
            Class::Lifecycle => {
                if fold(b, events, &event) {
                    overflow.coalesced = 1;
                    return overflow;
                }
                // Reserved room.
            }
            Class::Call | Class::Data => {
                count_drop(&mut overflow, &event);
                return overflow;
            }
        }
    }
    b.bytes += adding;
    events.push_back(event);
    overflow
}

fn count_drop(overflow: &mut Overflow, event: &RealtimeEvent) {
    overflow.dropped += 1;
    if matches!(event, RealtimeEvent::ToolCall { .. }) {
        overflow.calls_dropped += 1;
        tracing::error!(
            call = ?event,
            "a tool call was dropped: the application does not read the events"
        );
    }
}

/// A `LinkLost` after a queued `LinkLost, SessionReady` pair takes the
/// older one's place (its reason replaces the older one's; the ready
/// between them goes).
fn fold(b: &mut EventBounds, events: &mut VecDeque<RealtimeEvent>, event: &RealtimeEvent) -> bool {
    let RealtimeEvent::LinkLost { reason } = event else {
        return false;
    };
    let n = events.len();
    if n < 2 || !matches!(events[n - 1], RealtimeEvent::SessionReady { .. }) {
        return false;
    }
    let Some(RealtimeEvent::LinkLost { reason: older }) = events.get_mut(n - 2) else {
        return false;
    };
    let (was, now) = (older.len(), reason.len());
    older.clone_from(reason);
    events.pop_back();
    b.bytes = b.bytes + now - was;
    true
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(session: u64) -> RealtimeEvent {
        RealtimeEvent::SessionReady {
            session,
            reason: "reconnect",
            replayed: 0,
        }
    }

    fn lost(why: &str) -> RealtimeEvent {
        RealtimeEvent::LinkLost { reason: why.into() }
    }

    fn call(id: &str) -> RealtimeEvent {
        RealtimeEvent::ToolCall {
            call_id: id.into(),
            name: "remember".into(),
            arguments: "{}".into(),
        }
    }

    fn drain(rx: &EventReceiver) -> Vec<RealtimeEvent> {
        std::iter::from_fn(|| rx.try_recv()).collect()
    }

    #[test]
    fn data_makes_room_for_calls_and_lifecycle_events() {
        let (tx, rx) = event_queue(3, 1 << 20);
        assert_eq!(tx.send(ready(1)), Overflow::default());
        tx.send(RealtimeEvent::SpeechStarted);
        tx.send(RealtimeEvent::SpeechStopped);
        let o = tx.send(call("a"));
        assert_eq!((o.dropped, o.first_in_burst), (1, true));
        let o = tx.send(RealtimeEvent::SpeechStarted);
        assert_eq!((o.dropped, o.first_in_burst), (1, false));
        let o = tx.send(lost("x"));
        assert_eq!(o.dropped, 1, "the last data event goes");
        assert_eq!(drain(&rx), [ready(1), call("a"), lost("x")]);
    }

    #[test]
    fn lifecycle_events_fold_or_take_reserved_room() {
        let (tx, rx) = event_queue(2, 1 << 20);
        tx.send(call("a"));
        tx.send(lost("one"));
        assert_eq!(tx.send(ready(2)), Overflow::default(), "reserved room");
        let o = tx.send(lost("two"));
        assert_eq!(o.coalesced, 1);
        tx.send(ready(3));
        let o = tx.send(call("b"));
        assert_eq!((o.dropped, o.calls_dropped), (1, 1));
        assert_eq!(drain(&rx), [call("a"), lost("two"), ready(3)]);
        drop(tx);
        assert_eq!(block_on(rx.recv()), None);
    }

    #[test]
    fn bytes_are_bounded_but_a_large_event_passes_alone() {
        let (tx, rx) = event_queue(100, 10);
        let big = RealtimeEvent::UserTranscript {
            item_id: "i".into(),
            text: "x".repeat(50),
        };
        assert_eq!(tx.send(big.clone()), Overflow::default());
        assert_eq!(tx.send(big.clone()).dropped, 1);
        assert_eq!(drain(&rx), [big]);
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }
}
