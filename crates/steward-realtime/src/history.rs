//! The bounded conversation history, kept for replay into a new session.
//!
//! Only what was heard stays: an assistant answer cut short by the user
//! keeps the part of its transcript that matches the share of its audio
//! that was played (cut back to a word boundary), and an answer of which
//! nothing was played is removed.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::json;
use steward_ws::realtime::{ClientEvent, ConversationItemCreate};

/// One item of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryItem {
    /// What the user said (its transcript) or typed.
    User {
        /// The service's item id.
        item_id: String,
        /// The transcript; `None` until it arrives.
        text: Option<String>,
    },
    /// What the assistant said.
    Assistant {
        /// The service's item id.
        item_id: String,
        /// The transcript so far.
        text: String,
        /// When cut short: the played and the received audio, in ms; the
        /// text kept is the played share.
        heard: Option<(u64, u64)>,
    },
    /// A tool call the model made.
    FunctionCall {
        /// The call id.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON text.
        arguments: String,
    },
    /// The answer to a tool call.
    FunctionOutput {
        /// The call id.
        call_id: String,
        /// The output text.
        output: String,
    },
}

impl HistoryItem {
    pub(crate) fn bytes(&self) -> usize {
        match self {
            HistoryItem::User { item_id, text } => {
                item_id.len() + text.as_ref().map_or(0, String::len)
            }
            HistoryItem::Assistant { item_id, text, .. } => item_id.len() + text.len(),
            HistoryItem::FunctionCall {
                call_id,
                name,
                arguments,
            } => call_id.len() + name.len() + arguments.len(),
            HistoryItem::FunctionOutput { call_id, output } => call_id.len() + output.len(),
        }
    }

    fn item_id(&self) -> Option<&str> {
        match self {
            HistoryItem::User { item_id, .. } | HistoryItem::Assistant { item_id, .. } => {
                Some(item_id)
            }
            _ => None,
        }
    }

    /// The text replayed for a message item (the heard share of an answer).
    #[must_use]
    pub fn replay_text(&self) -> Option<String> {
        match self {
            HistoryItem::User { text, .. } => text.clone(),
            HistoryItem::Assistant { text, heard, .. } => Some(match heard {
                None => text.clone(),
                Some((played, received)) => heard_prefix(text, *played, *received),
            }),
            _ => None,
        }
    }

    /// The `conversation.item.create` that replays it; `None` for a user
    /// turn whose transcript never came.
    #[must_use]
    pub fn replay_event(&self) -> Option<ClientEvent> {
        let item = match self {
            HistoryItem::User { .. } => json!({
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": self.replay_text()?}],
            }),
            HistoryItem::Assistant { .. } => json!({
                "type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": self.replay_text()?}],
            }),
            HistoryItem::FunctionCall {
                call_id,
                name,
                arguments,
            } => json!({
                "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            }),
            HistoryItem::FunctionOutput { call_id, output } => json!({
                "type": "function_call_output", "call_id": call_id, "output": output,
            }),
        };
        Some(ClientEvent::ConversationItemCreate(
            ConversationItemCreate {
                item,
                ..ConversationItemCreate::default()
            },
        ))
    }
}

/// The share `played / received` of `text`, cut back to a word boundary.
#[must_use]
pub fn heard_prefix(text: &str, played: u64, received: u64) -> String {
    if received == 0 || played == 0 {
        return String::new();
    }
    if played >= received {
        return text.to_string();
    }
    let chars = text.chars().count() as u64;
    let keep = usize::try_from(chars * played / received).unwrap_or(usize::MAX);
    let cut: String = text.chars().take(keep).collect();
    if keep >= text.chars().count() {
        return cut;
    }
    // The next character decides whether the cut splits a word.
    let next = text.chars().nth(keep);
    if next.is_some_and(char::is_whitespace) {
        return cut.trim_end().to_string();
    }
    match cut.rfind(char::is_whitespace) {
        Some(space) => cut[..space].trim_end().to_string(),
        None => String::new(),
    }
}

/// The bounded history: items in conversation order, oldest dropped first.
#[derive(Debug, Clone, Default)]
pub struct History {
    items: VecDeque<HistoryItem>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    dropped: u64,
}

impl History {
    /// An empty history keeping at most `max_items` items and `max_bytes`.
    #[must_use]
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            max_items: max_items.max(1),
            max_bytes: max_bytes.max(1),
            ..Self::default()
        }
    }

    /// The items, oldest first.
    pub fn items(&self) -> impl Iterator<Item = &HistoryItem> {
        self.items.iter()
    }

    /// How many items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items dropped to stay within the bounds.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Adds an item at the end (an item id already present is not added twice).
    pub fn push(&mut self, item: HistoryItem) {
        if let Some(id) = item.item_id()
            && self.position(id).is_some()
        {
            return;
        }
        self.bytes += item.bytes();
        self.items.push_back(item);
        self.trim();
    }

    fn position(&self, item_id: &str) -> Option<usize> {
        self.items
            .iter()
            .rposition(|i| i.item_id() == Some(item_id))
    }

    /// Edits the message item `item_id` in place; false if it is not there.
    pub fn update(&mut self, item_id: &str, edit: impl FnOnce(&mut HistoryItem)) -> bool {
        let Some(at) = self.position(item_id) else {
            return false;
        };
        let item = &mut self.items[at];
        self.bytes -= item.bytes();
        edit(item);
        self.bytes += item.bytes();
        self.trim();
        true
    }

    /// Removes the message item `item_id`; false if it is not there.
    pub fn remove(&mut self, item_id: &str) -> bool {
        let Some(at) = self.position(item_id) else {
            return false;
        };
        if let Some(item) = self.items.remove(at) {
            self.bytes -= item.bytes();
        }
        true
    }

    fn trim(&mut self) {
        while self.items.len() > self.max_items || self.bytes > self.max_bytes {
            let Some(old) = self.items.pop_front() else {
                break;
            };
            self.bytes -= old.bytes();
            self.dropped += 1;
            // A tool output without its call means nothing to the model.
            while let Some(HistoryItem::FunctionOutput { .. }) = self.items.front() {
                if let Some(orphan) = self.items.pop_front() {
                    self.bytes -= orphan.bytes();
                    self.dropped += 1;
                }
            }
        }
    }

    /// The events that replay the history into a new session, in order.
    /// A tool output whose call is not before it (dropped by the bounds
    /// while other items came between them, or never seen) is left out:
    /// the service refuses it.
    #[must_use]
    pub fn replay(&self) -> Vec<ClientEvent> {
        let mut calls = HashSet::new();
        self.items
            .iter()
            .filter(|item| match item {
                HistoryItem::FunctionCall { call_id, .. } => {
                    calls.insert(call_id.as_str());
                    true
                }
                HistoryItem::FunctionOutput { call_id, .. } => calls.contains(call_id.as_str()),
                _ => true,
            })
            .filter_map(HistoryItem::replay_event)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heard_prefix_ends_on_a_word() {
        let t = "I heard 1200 ms of audio in turn 3.";
        assert_eq!(heard_prefix(t, 0, 100), "");
        assert_eq!(heard_prefix(t, 100, 100), t);
        let half = heard_prefix(t, 50, 100);
        assert!(t.starts_with(&half), "{half:?}");
        assert!(half.len() <= t.len() / 2, "{half:?}");
        assert_eq!(half, "I heard 1200 ms");
        assert_eq!(heard_prefix("word", 1, 2), "");
    }

    #[test]
    fn bounds_drop_the_oldest_and_orphaned_outputs() {
        let mut h = History::new(3, 1 << 20);
        h.push(HistoryItem::FunctionCall {
            call_id: "c1".into(),
            name: "recall".into(),
            arguments: "{}".into(),
        });
        h.push(HistoryItem::FunctionOutput {
            call_id: "c1".into(),
            output: "x".into(),
        });
        h.push(HistoryItem::User {
            item_id: "u1".into(),
            text: Some("hi".into()),
        });
        h.push(HistoryItem::Assistant {
            item_id: "a1".into(),
            text: "hello".into(),
            heard: None,
        });
        assert_eq!(h.len(), 2, "{:?}", h.items().collect::<Vec<_>>());
        assert_eq!(h.dropped(), 2);
        assert_eq!(h.replay().len(), 2);
    }
}
