//! The event queue's policy against a simple model: arbitrary sequences of
//! pushes (in the order a link's life makes them) and pops, checked event
//! by event, counter by counter.

use proptest::prelude::*;

use super::{EventSender, Events, Overflow, event_queue};
use crate::{Error, Event, Message};

/// An event as the model sees it: comparable, with its messages as text.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Connected(u64),
    Disconnected(String, Vec<String>),
    Reconnecting(u32),
    GaveUp(u32, Vec<String>),
    Closed,
}

impl V {
    fn of(event: &Event) -> V {
        let texts = |m: &[Message]| {
            m.iter()
                .map(|m| m.as_text().unwrap_or("?").into())
                .collect()
        };
        match event {
            Event::Connected { connection } => V::Connected(*connection),
            Event::Disconnected {
                reason,
                undelivered,
            } => {
                let reason = match reason {
                    Error::ConnectionLost { url } => url.clone(),
                    other => other.to_string(),
                };
                V::Disconnected(reason, texts(undelivered))
            }
            Event::Reconnecting { attempt, .. } => V::Reconnecting(*attempt),
            Event::GaveUp {
                attempts,
                undelivered,
                ..
            } => V::GaveUp(*attempts, texts(undelivered)),
            Event::Closed => V::Closed,
        }
    }

    fn event(&self) -> Event {
        let messages = |m: &[String]| m.iter().map(|t| Message::text(t.as_str())).collect();
        match self {
            V::Connected(connection) => Event::Connected {
                connection: *connection,
            },
            V::Disconnected(url, m) => Event::Disconnected {
                reason: Error::ConnectionLost { url: url.clone() },
                undelivered: messages(m),
            },
            V::Reconnecting(attempt) => Event::Reconnecting {
                attempt: *attempt,
                delay: std::time::Duration::ZERO,
            },
            V::GaveUp(attempts, m) => Event::GaveUp {
                attempts: *attempts,
                last_error: None,
                undelivered: messages(m),
            },
            V::Closed => Event::Closed,
        }
    }

    fn messages_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            V::Disconnected(_, m) | V::GaveUp(_, m) => Some(m),
            _ => None,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            V::Disconnected(_, m) | V::GaveUp(_, m) => m.iter().map(String::len).sum(),
            _ => 0,
        }
    }

    /// The number of the step that pushed it (`Closed` has none).
    fn id(&self) -> Option<u64> {
        match self {
            V::Connected(id) => Some(*id),
            V::Reconnecting(id) | V::GaveUp(id, _) => Some(u64::from(*id)),
            V::Disconnected(reason, _) => reason.strip_prefix('r')?.parse().ok(),
            V::Closed => None,
        }
    }

    fn lifecycle(&self) -> bool {
        !matches!(self, V::Reconnecting(_))
    }
}

/// The policy as the module docs say it, on a plain vector.
struct Model {
    queue: Vec<V>,
    capacity: usize,
    max_bytes: usize,
    overflowing: bool,
}

impl Model {
    fn bytes(&self) -> usize {
        self.queue.iter().map(V::bytes).sum()
    }

    fn push(&mut self, v: V) -> Overflow {
        let mut o = Overflow::default();
        if self.queue.len() < self.capacity {
            self.queue.push(v);
        } else if !v.lifecycle() {
            o.dropped = 1;
        } else if let Some(at) = self.queue.iter().position(|q| !q.lifecycle()) {
            self.queue.remove(at);
            o.dropped = 1;
            self.queue.push(v);
        } else if let (
            V::Disconnected(reason, m),
            [.., V::Disconnected(older, kept), V::Connected(_)],
        ) = (&v, self.queue.as_mut_slice())
        {
            older.clone_from(reason);
            kept.extend(m.iter().cloned());
            self.queue.pop();
            o.coalesced = 1;
        } else {
            self.queue.push(v);
        }
        // The oldest undelivered messages go first, one by one.
        while self.bytes() > self.max_bytes {
            let Some(m) = self
                .queue
                .iter_mut()
                .find_map(|q| q.messages_mut().filter(|m| !m.is_empty()))
            else {
                break;
            };
            let gone = m.remove(0);
            o.messages += 1;
            o.bytes += gone.len() as u64;
        }
        if o.dropped + o.coalesced + o.messages > 0 && !self.overflowing {
            self.overflowing = true;
            o.first_in_burst = true;
        }
        o
    }

    fn pop(&mut self) -> Option<V> {
        if self.queue.is_empty() {
            return None;
        }
        let v = self.queue.remove(0);
        if self.queue.len() < self.capacity {
            self.overflowing = false;
        }
        Some(v)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Pop,
    /// The link's next step (what it may be depends on where it is), with
    /// the sizes of the messages it leaves undelivered.
    Step(u8, Vec<usize>),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        2 => Just(Op::Pop),
        5 => (any::<u8>(), proptest::collection::vec(1usize..120, 0..4))
            .prop_map(|(c, sizes)| Op::Step(c, sizes)),
    ];
    proptest::collection::vec(op, 0..120)
}

/// Where the link is: what may come next.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    Up,
    Down,
    Ended,
}

/// Turns a step into the next event of a link's life: up, lost,
/// reconnecting a few times, up again or given up; closed at any time.
struct Life {
    link: Link,
    next_id: u64,
}

impl Life {
    fn step(&mut self, choice: u8, sizes: &[usize]) -> Option<V> {
        self.next_id += 1;
        let id = self.next_id;
        let messages = || {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| format!("{id}.{i}:{}", "x".repeat(n)))
                .collect()
        };
        let (link, v) = match (self.link, choice % 16) {
            (Link::Ended, _) => return None,
            (_, 0) => (Link::Ended, V::Closed),
            (Link::Up, _) => (Link::Down, V::Disconnected(format!("r{id}"), messages())),
            (Link::Down, 1) => (Link::Ended, V::GaveUp(id as u32, messages())),
            (Link::Down, c) if c % 3 == 0 => (Link::Up, V::Connected(id)),
            (Link::Down, _) => (Link::Down, V::Reconnecting(id as u32)),
        };
        self.link = link;
        Some(v)
    }
}

fn drain(rx: &Events) -> Vec<V> {
    std::iter::from_fn(|| rx.try_recv())
        .map(|e| V::of(&e))
        .collect()
}

fn send(tx: &EventSender, v: &V) -> Overflow {
    tx.send(v.event())
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
    fn the_event_queue_keeps_its_policy(
        capacity in 1usize..6,
        max_bytes in 0usize..600,
        ops in ops(),
    ) {
        let (tx, rx) = event_queue(capacity, max_bytes);
        let mut model = Model { queue: Vec::new(), capacity, max_bytes, overflowing: false };
        let mut life = Life { link: Link::Up, next_id: 1 };
        let first = V::Connected(1);
        let mut pushed = vec![first.clone()];
        prop_assert_eq!(send(&tx, &first), model.push(first));
        let (mut popped, mut coalesced, mut lost) = (Vec::new(), 0, 0);
        for op in ops {
            match op {
                Op::Pop => {
                    let got = rx.try_recv().map(|e| V::of(&e));
                    prop_assert_eq!(&got, &model.pop());
                    popped.extend(got);
                }
                Op::Step(choice, sizes) => {
                    let Some(v) = life.step(choice, &sizes) else { continue };
                    pushed.push(v.clone());
                    let o = send(&tx, &v);
                    prop_assert_eq!(o, model.push(v));
                    coalesced += o.coalesced;
                    lost += o.messages;
                    // The bounds: a few lifecycle events beyond the count,
                    // never a byte beyond the bound.
                    prop_assert!(model.queue.len() <= capacity + 3, "{:?}", model.queue);
                    prop_assert!(model.bytes() <= max_bytes);
                }
            }
        }
        let rest = drain(&rx);
        prop_assert_eq!(&rest, &model.queue);
        popped.extend(rest);
        // Lifecycle events are never lost: each fold takes a `Disconnected`
        // and the `Connected` before it into an earlier `Disconnected`.
        let lifecycle = |vs: &[V]| vs.iter().filter(|v| v.lifecycle()).count() as u64;
        prop_assert_eq!(lifecycle(&pushed), lifecycle(&popped) + 2 * coalesced);
        // Every undelivered message is delivered or counted as dropped.
        let messages = |vs: &[V]| {
            vs.iter().map(|v| v.clone().messages_mut().map_or(0, |m| m.len() as u64)).sum::<u64>()
        };
        prop_assert_eq!(messages(&pushed), messages(&popped) + lost);
        // In order: what is delivered keeps the order it was pushed in (a
        // fold carries the later loss's number into the earlier's place,
        // which only the dropped `Connected` stood between).
        let ids: Vec<u64> = popped.iter().filter_map(V::id).collect();
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "{:?}", popped);
    }
}
