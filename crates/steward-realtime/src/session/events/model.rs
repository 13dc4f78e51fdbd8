//! The application's event queue against a simple model: arbitrary
//! sequences of pushes (in the order a conversation makes them) and pops,
//! checked event by event, counter by counter.

use proptest::prelude::*;

use super::{EventReceiver, Overflow, event_queue};
use crate::conversation::RealtimeEvent;

fn lifecycle(e: &RealtimeEvent) -> bool {
    matches!(
        e,
        RealtimeEvent::SessionReady { .. } | RealtimeEvent::LinkLost { .. }
    )
}

fn is_call(e: &RealtimeEvent) -> bool {
    matches!(e, RealtimeEvent::ToolCall { .. })
}

/// The text an event holds (the events made here).
fn text_bytes(e: &RealtimeEvent) -> usize {
    match e {
        RealtimeEvent::ToolCall {
            call_id,
            name,
            arguments,
        } => call_id.len() + name.len() + arguments.len(),
        RealtimeEvent::UserTranscript { item_id, text } => item_id.len() + text.len(),
        RealtimeEvent::ResponseDone { status } => status.len(),
        RealtimeEvent::LinkLost { reason } => reason.len(),
        _ => 0,
    }
}

/// The number of the step that pushed it (speech events have none).
fn id(e: &RealtimeEvent) -> Option<u64> {
    let num = |s: &str| s.get(1..)?.parse().ok();
    match e {
        RealtimeEvent::SessionReady { session, .. } => Some(*session),
        RealtimeEvent::LinkLost { reason } => num(reason),
        RealtimeEvent::ToolCall { call_id, .. } => num(call_id),
        RealtimeEvent::UserTranscript { item_id, .. } => num(item_id),
        RealtimeEvent::ResponseDone { status } => num(status),
        _ => None,
    }
}

/// The policy as the module docs say it, on a plain vector.
struct Model {
    queue: Vec<RealtimeEvent>,
    capacity: usize,
    max_bytes: usize,
    overflowing: bool,
}

impl Model {
    fn bytes(&self) -> usize {
        self.queue.iter().map(text_bytes).sum()
    }

    fn full(&self, adding: usize) -> bool {
        !self.queue.is_empty()
            && (self.queue.len() >= self.capacity || self.bytes() + adding > self.max_bytes)
    }

    fn push(&mut self, e: RealtimeEvent) -> Overflow {
        let mut o = Overflow::default();
        let adding = text_bytes(&e);
        // Tool calls and lifecycle events evict the oldest other events.
        if is_call(&e) || lifecycle(&e) {
            while self.full(adding) {
                let Some(at) = self.queue.iter().position(|q| !is_call(q) && !lifecycle(q)) else {
                    break;
                };
                self.queue.remove(at);
                o.dropped += 1;
            }
        }
        if self.full(adding) {
            if !lifecycle(&e) {
                o.dropped += 1;
                o.calls_dropped += u64::from(is_call(&e));
                return self.burst(o);
            }
            if self.fold(&e, &mut o) {
                return self.burst(o);
            }
            // Reserved room.
        }
        self.queue.push(e);
        self.burst(o)
    }

    /// One warning per burst of losses.
    fn burst(&mut self, mut o: Overflow) -> Overflow {
        if o.dropped + o.coalesced > 0 && !self.overflowing {
            self.overflowing = true;
            o.first_in_burst = true;
        }
        o
    }

    /// A `LinkLost` after a queued `LinkLost, SessionReady` takes the
    /// older one's place.
    fn fold(&mut self, e: &RealtimeEvent, o: &mut Overflow) -> bool {
        let RealtimeEvent::LinkLost { reason } = e else {
            return false;
        };
        let [
            ..,
            RealtimeEvent::LinkLost { reason: older },
            RealtimeEvent::SessionReady { .. },
        ] = self.queue.as_mut_slice()
        else {
            return false;
        };
        older.clone_from(reason);
        self.queue.pop();
        o.coalesced = 1;
        true
    }

    fn pop(&mut self) -> Option<RealtimeEvent> {
        if self.queue.is_empty() {
            return None;
        }
        let e = self.queue.remove(0);
        if self.queue.len() < self.capacity {
            self.overflowing = false;
        }
        Some(e)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Pop,
    /// The conversation's next event (what it may be depends on whether
    /// the link is up), with the size of its text.
    Step(u8, usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        2 => Just(Op::Pop),
        5 => (any::<u8>(), 0usize..300).prop_map(|(c, n)| Op::Step(c, n)),
    ];
    proptest::collection::vec(op, 0..120)
}

/// Turns a step into the next event of a conversation: ready, events and
/// tool calls, the link lost, ready again. While the link is down only
/// local events come (a local speech onset), never the service's.
struct Life {
    up: bool,
    next_id: u64,
}

impl Life {
    fn step(&mut self, choice: u8, n: usize) -> RealtimeEvent {
        self.next_id += 1;
        let id = self.next_id;
        let text = "x".repeat(n);
        match (self.up, choice % 8) {
            (true, 0) => {
                self.up = false;
                RealtimeEvent::LinkLost {
                    reason: format!("r{id}"),
                }
            }
            (false, c) if c % 3 == 0 => {
                self.up = true;
                ready(id)
            }
            (false, _) => RealtimeEvent::SpeechStarted,
            (_, 1 | 2) => RealtimeEvent::ToolCall {
                call_id: format!("c{id}"),
                name: "remember".into(),
                arguments: text,
            },
            (_, 3) => RealtimeEvent::UserTranscript {
                item_id: format!("i{id}"),
                text,
            },
            (_, 4) => RealtimeEvent::ResponseDone {
                status: format!("s{id}"),
            },
            (_, 5) => RealtimeEvent::SpeechStarted,
            _ => RealtimeEvent::SpeechStopped,
        }
    }
}

fn ready(session: u64) -> RealtimeEvent {
    RealtimeEvent::SessionReady {
        session,
        reason: "reconnect",
        replayed: 0,
    }
}

fn drain(rx: &EventReceiver) -> Vec<RealtimeEvent> {
    std::iter::from_fn(|| rx.try_recv()).collect()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_application_queue_keeps_its_policy(
        capacity in 1usize..6,
        max_bytes in 1usize..1000,
        ops in ops(),
    ) {
        let (tx, rx) = event_queue(capacity, max_bytes);
        let mut model = Model { queue: Vec::new(), capacity, max_bytes, overflowing: false };
        let mut life = Life { up: true, next_id: 1 };
        let mut pushed = vec![ready(1)];
        prop_assert_eq!(tx.send(ready(1)), model.push(ready(1)));
        let (mut popped, mut coalesced) = (Vec::new(), 0);
        for op in ops {
            match op {
                Op::Pop => {
                    let got = rx.try_recv();
                    prop_assert_eq!(&got, &model.pop());
                    popped.extend(got);
                }
                Op::Step(choice, n) => {
                    let e = life.step(choice, n);
                    pushed.push(e.clone());
                    let o = tx.send(e.clone());
                    prop_assert_eq!(o, model.push(e));
                    coalesced += o.coalesced;
                    // At most two lifecycle events beyond the count; the
                    // text beyond the bytes only in one event alone.
                    prop_assert!(model.queue.len() <= capacity + 2, "{:?}", model.queue);
                    let others: Vec<&RealtimeEvent> =
                        model.queue.iter().filter(|e| !lifecycle(e)).collect();
                    let text: usize = others.iter().map(|e| text_bytes(e)).sum();
                    prop_assert!(text <= max_bytes || others.len() == 1, "{:?}", others);
                }
            }
        }
        let rest = drain(&rx);
        prop_assert_eq!(&rest, &model.queue);
        popped.extend(rest);
        // `SessionReady` and `LinkLost` are never lost: each fold takes a
        // `LinkLost` and the `SessionReady` before it into an earlier one.
        let count = |es: &[RealtimeEvent]| es.iter().filter(|e| lifecycle(e)).count() as u64;
        prop_assert_eq!(count(&pushed), count(&popped) + 2 * coalesced);
        // In order (a fold carries the later loss's number into the
        // earlier's place, which only the dropped `SessionReady` stood
        // between).
        let ids: Vec<u64> = popped.iter().filter_map(id).collect();
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "{:?}", popped);
    }
}
