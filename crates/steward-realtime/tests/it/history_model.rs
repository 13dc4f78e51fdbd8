//! The bounded history against a simple model: random pushes, edits and
//! removals of every kind of item, with both bounds small enough to bite.
//! After every step the items, their order, the count of dropped items and
//! each answer (`update`/`remove` found the item or not) are the model's.
//!
//! The model weighs an item by the text it holds (ids, names and texts),
//! drops the oldest first while either bound is passed, and with a dropped
//! item any tool outputs that lead the history after it (an output without
//! its call means nothing to the model of the service).

use std::collections::VecDeque;

use proptest::prelude::*;
use steward_realtime::{History, HistoryItem};

const MAX_ITEMS: usize = 6;
const MAX_BYTES: usize = 120;

#[derive(Debug, Clone)]
enum Op {
    /// Kind 0..4 (user, assistant, call, output), id, text length.
    Push(u8, u8, usize),
    /// A message id (even: user, odd: assistant) and its new text length.
    Update(u8, usize),
    /// A message id, as for `Update`.
    Remove(u8),
}

fn message_id(n: u8) -> String {
    if n.is_multiple_of(2) {
        format!("u{n}")
    } else {
        format!("a{n}")
    }
}

fn item(kind: u8, id: u8, len: usize) -> HistoryItem {
    let text = "x".repeat(len);
    match kind {
        0 => HistoryItem::User {
            item_id: format!("u{}", id * 2),
            text: Some(text),
        },
        1 => HistoryItem::Assistant {
            item_id: format!("a{}", id * 2 + 1),
            text,
            heard: None,
        },
        2 => HistoryItem::FunctionCall {
            call_id: format!("c{id}"),
            name: "recall".into(),
            arguments: text,
        },
        _ => HistoryItem::FunctionOutput {
            call_id: format!("c{id}"),
            output: text,
        },
    }
}

/// The weight of an item, written out independently of the crate.
fn weight(item: &HistoryItem) -> usize {
    match item {
        HistoryItem::User { item_id, text } => item_id.len() + text.as_deref().map_or(0, str::len),
        HistoryItem::Assistant { item_id, text, .. } => item_id.len() + text.len(),
        HistoryItem::FunctionCall {
            call_id,
            name,
            arguments,
        } => call_id.len() + name.len() + arguments.len(),
        HistoryItem::FunctionOutput { call_id, output } => call_id.len() + output.len(),
        other => unreachable!("the model makes no {other:?}"),
    }
}

fn id_of(item: &HistoryItem) -> Option<&str> {
    match item {
        HistoryItem::User { item_id, .. } | HistoryItem::Assistant { item_id, .. } => Some(item_id),
        _ => None,
    }
}

#[derive(Default)]
struct Model {
    items: VecDeque<HistoryItem>,
    dropped: u64,
}

impl Model {
    fn trim(&mut self) {
        let over = |m: &Model| {
            m.items.len() > MAX_ITEMS || m.items.iter().map(weight).sum::<usize>() > MAX_BYTES
        };
        while over(self) {
            self.items.pop_front();
            self.dropped += 1;
            while matches!(self.items.front(), Some(HistoryItem::FunctionOutput { .. })) {
                self.items.pop_front();
                self.dropped += 1;
            }
        }
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.items.iter().rposition(|i| id_of(i) == Some(id))
    }

    fn push(&mut self, item: HistoryItem) {
        if id_of(&item).is_some_and(|id| self.find(id).is_some()) {
            return;
        }
        self.items.push_back(item);
        self.trim();
    }

    fn update(&mut self, id: &str, len: usize) -> bool {
        let Some(at) = self.find(id) else {
            return false;
        };
        let text = "y".repeat(len);
        match &mut self.items[at] {
            HistoryItem::User { text: t, .. } => *t = Some(text),
            HistoryItem::Assistant { text: t, .. } => *t = text,
            _ => {}
        }
        self.trim();
        true
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(at) = self.find(id) else {
            return false;
        };
        self.items.remove(at);
        true
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, 0u8..4, 0usize..60).prop_map(|(k, id, len)| Op::Push(k, id, len)),
        1 => (0u8..8, 0usize..80).prop_map(|(id, len)| Op::Update(id, len)),
        1 => (0u8..8).prop_map(Op::Remove),
    ]
}

proptest! {
    #[test]
    fn the_history_keeps_what_the_model_keeps(ops in prop::collection::vec(op(), 1..60)) {
        let mut history = History::new(MAX_ITEMS, MAX_BYTES);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Push(kind, id, len) => {
                    history.push(item(kind, id, len));
                    model.push(item(kind, id, len));
                }
                Op::Update(id, len) => {
                    let id = message_id(id);
                    let text = "y".repeat(len);
                    let found = history.update(&id, |h| match h {
                        HistoryItem::User { text: t, .. } => *t = Some(text),
                        HistoryItem::Assistant { text: t, .. } => *t = text,
                        _ => {}
                    });
                    prop_assert_eq!(found, model.update(&id, len), "update {}", id);
                }
                Op::Remove(id) => {
                    let id = message_id(id);
                    prop_assert_eq!(history.remove(&id), model.remove(&id), "remove {}", id);
                }
            }
            let got: Vec<&HistoryItem> = history.items().collect();
            let want: Vec<&HistoryItem> = model.items.iter().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(history.len(), model.items.len());
            prop_assert_eq!(history.is_empty(), model.items.is_empty());
            prop_assert_eq!(history.dropped(), model.dropped);
        }
    }
}
