//! The conversation so far, shared by a stand-in's connections, and the
//! check of a new connection's replayed history against it.
//!
//! Every connection publishes its conversation as it changes (user
//! messages with their text or transcript, assistant messages with what
//! was heard of them, function calls and their outputs); the last one
//! published is "the latest conversation". A new connection that starts
//! with `conversation.item.create` events (a `session.update` may come
//! first) while a latest conversation exists replays it: when the first
//! other event arrives, its items must equal the last K items of the latest
//! conversation, K the number replayed (a client may bound its history):
//!
//! - a user item as `{"type":"message","role":"user","content":[{"type":"input_text","text":T}]}`
//!   with T its text (for audio turns, the transcript the stand-in gave);
//! - an assistant item as `{"type":"message","role":"assistant","content":[{"type":"output_text","text":T}]}`
//!   (or `"text"`, the beta name) with T its transcript; for an item the
//!   client truncated, T must be a prefix of the transcript no longer than
//!   the heard part rounded up to the end of its word (the heard part is the
//!   transcript cut in proportion `audio_end_ms / audio ms`);
//! - `function_call` (`call_id`, `name`, `arguments`) and
//!   `function_call_output` (`call_id`, `output`) exactly.
//!
//! System messages in a replay are not compared. Assistant items of which
//! nothing was heard (cancelled before any audio, or truncated at 0 ms) are
//! not part of the conversation. At most [`MAX_KEPT`] items are kept; a
//! longer replay is compared on its last [`MAX_KEPT`] items.

use serde_json::Value;

/// Items of the latest conversation kept for the comparison.
pub(super) const MAX_KEPT: usize = 512;

/// One item of a conversation as a replay must reproduce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    User {
        text: String,
    },
    Assistant {
        transcript: String,
        /// The heard part, when the item was truncated.
        heard: Option<String>,
    },
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    FunctionOutput {
        call_id: String,
        output: String,
    },
}

/// The latest conversation published by any connection.
#[derive(Debug, Default)]
pub(super) struct Latest {
    entries: Vec<Entry>,
    /// Entries the conversation has had, including those no longer kept.
    total: usize,
}

impl Latest {
    /// Replaces the latest conversation with `entries` (the last of
    /// `total`), keeping at most [`MAX_KEPT`].
    pub(super) fn publish(&mut self, entries: Vec<Entry>, total: usize) {
        let skip = entries.len().saturating_sub(MAX_KEPT);
        self.entries = entries;
        self.entries.drain(..skip);
        self.total = total.max(self.entries.len());
    }

    /// Whether there is a conversation to replay.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Compares a replay with the latest conversation.
    ///
    /// # Errors
    /// The first difference, for the log.
    pub(super) fn check(&self, replayed: &[Value]) -> Result<(), String> {
        let items: Vec<(usize, &Value)> = replayed
            .iter()
            .enumerate()
            .filter(|(_, item)| !is_system(item))
            .collect();
        let kept = &self.entries;
        let (items, kept) = if items.len() <= kept.len() {
            (&items[..], &kept[kept.len() - items.len()..])
        } else if self.total > kept.len() {
            // The latest conversation is longer than what is kept: compare
            // the replay's tail.
            (&items[items.len() - kept.len()..], &kept[..])
        } else {
            return Err(format!(
                "{} items replayed, the conversation has {}",
                items.len(),
                kept.len()
            ));
        };
        for ((index, item), entry) in items.iter().zip(kept) {
            if let Err(why) = matches(entry, item) {
                return Err(format!("replayed item {index}: {why}"));
            }
        }
        Ok(())
    }
}

fn is_system(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("message")
        && item.get("role").and_then(Value::as_str) == Some("system")
}

/// Whether a replayed item reproduces `entry`; why not otherwise.
fn matches(entry: &Entry, item: &Value) -> Result<(), String> {
    let field = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
    let kind = field("type");
    let role = field("role");
    let differs = |what: &str, want: &str, got: &str| {
        Err(format!(
            "{what} {:?} where the conversation has {:?}",
            clip(got),
            clip(want)
        ))
    };
    match entry {
        Entry::User { text } => {
            if kind != "message" || role != "user" {
                return differs("a", "user message", &format!("{kind} {role}"));
            }
            let got = message_text(item, &["input_text", "text"]);
            if got != *text {
                return differs("user text", text, &got);
            }
        }
        Entry::Assistant { transcript, heard } => {
            if kind != "message" || role != "assistant" {
                return differs("a", "assistant message", &format!("{kind} {role}"));
            }
            let got = message_text(item, &["output_text", "text"]);
            let ok = match heard {
                None => got == *transcript,
                Some(heard) => {
                    transcript.starts_with(&got) && got.len() <= word_end(transcript, heard.len())
                }
            };
            if !ok {
                let want = heard.as_deref().unwrap_or(transcript);
                return differs("assistant text", want, &got);
            }
        }
        Entry::FunctionCall {
            call_id,
            name,
            arguments,
        } => {
            if kind != "function_call" {
                return differs("a", "function_call", kind);
            }
            for (what, want) in [
                ("call_id", call_id),
                ("name", name),
                ("arguments", arguments),
            ] {
                if field(what) != want {
                    return differs(what, want, field(what));
                }
            }
        }
        Entry::FunctionOutput { call_id, output } => {
            if kind != "function_call_output" {
                return differs("a", "function_call_output", kind);
            }
            for (what, want) in [("call_id", call_id), ("output", output)] {
                if field(what) != want {
                    return differs(what, want, field(what));
                }
            }
        }
    }
    Ok(())
}

/// The text parts of a message item of the given content types, joined
/// with a space.
pub(super) fn message_text(item: &Value, types: &[&str]) -> String {
    let Some(parts) = item.get("content").and_then(Value::as_array) else {
        return String::new();
    };
    parts
        .iter()
        .filter(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| types.contains(&t))
        })
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The byte index where the word around `at` ends in `text` (`at` if it
/// already is a word end).
fn word_end(text: &str, at: usize) -> usize {
    let Some(rest) = text.get(at..) else {
        return text.len();
    };
    at + rest.find(char::is_whitespace).unwrap_or(rest.len())
}

/// The first `num / den` of `text`, by characters (all of it when `den` is 0).
pub(super) fn prefix(text: &str, num: u64, den: u64) -> String {
    if den == 0 || num >= den {
        return text.to_string();
    }
    let chars = text.chars().count() as u64;
    let keep = usize::try_from(chars * num / den).unwrap_or(usize::MAX);
    text.chars().take(keep).collect()
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(t: &str) -> Value {
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]})
    }

    fn assistant(t: &str) -> Value {
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": t}]})
    }

    fn latest() -> Latest {
        let mut l = Latest::default();
        l.publish(
            vec![
                Entry::User { text: "hi".into() },
                Entry::Assistant {
                    transcript: "I heard 1000 ms of audio".into(),
                    heard: Some("I heard 10".into()),
                },
                Entry::FunctionCall {
                    call_id: "c1".into(),
                    name: "recall".into(),
                    arguments: "{}".into(),
                },
                Entry::FunctionOutput {
                    call_id: "c1".into(),
                    output: "ok".into(),
                },
            ],
            4,
        );
        l
    }

    #[test]
    fn a_bounded_replay_matches_the_tail() {
        let l = latest();
        let call =
            json!({"type": "function_call", "call_id": "c1", "name": "recall", "arguments": "{}"});
        let out = json!({"type": "function_call_output", "call_id": "c1", "output": "ok"});
        assert_eq!(l.check(std::slice::from_ref(&out)), Ok(()));
        assert_eq!(l.check(&[call.clone(), out.clone()]), Ok(()));
        // The truncated transcript: any prefix up to the end of the heard word.
        for t in ["I heard 10", "I heard 1000", "I heard", ""] {
            let replay = [user("hi"), assistant(t), call.clone(), out.clone()];
            assert_eq!(l.check(&replay), Ok(()), "{t:?}");
        }
        for t in ["I heard 1000 ms", "I said 10"] {
            let replay = [assistant(t), call.clone(), out.clone()];
            assert!(l.check(&replay).is_err(), "{t:?}");
        }
        let system = json!({"type": "message", "role": "system", "content": [{"type": "input_text", "text": "x"}]});
        assert_eq!(l.check(&[system, out.clone()]), Ok(()));
    }

    #[test]
    fn differences_are_named() {
        let l = latest();
        let wrong = json!({"type": "function_call_output", "call_id": "c2", "output": "ok"});
        let err = l.check(&[wrong]).unwrap_err();
        assert!(err.contains("call_id") && err.contains("c2"), "{err}");
        let err = l
            .check(&[user("hi"), user("hi"), user("hi"), user("hi"), user("hi")])
            .unwrap_err();
        assert!(err.contains("5 items replayed"), "{err}");
    }

    #[test]
    fn prefixes_are_proportional_by_characters() {
        assert_eq!(prefix("abcdef", 1, 2), "abc");
        assert_eq!(prefix("abcdef", 0, 2), "");
        assert_eq!(prefix("abcdef", 3, 0), "abcdef");
        assert_eq!(prefix("äöü", 2, 3), "äö");
        assert_eq!(word_end("I heard 1000", 9), 12);
        assert_eq!(word_end("I heard 1000", 7), 7);
        assert_eq!(word_end("I heard", 99), 7);
    }
}
