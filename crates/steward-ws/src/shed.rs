//! Shedding queued messages beyond a floor (what a memory-pressure handler
//! asks for): the floor, what may be dropped, and the plan.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// How much of each queue [`Session::shed_queued`](crate::Session::shed_queued)
/// keeps. Plain data (serde); part of [`ClientConfig`](crate::ClientConfig).
///
/// Each queue (outbound and inbound, separately) keeps its newest sheddable
/// messages while they fit in both `keep_messages` and `keep_bytes`; every
/// older sheddable message is dropped (the oldest audio goes first).
/// Messages that are not sheddable (see [`Sheddable`]) always stay and do not
/// count toward the floor. Control frames (ping, pong, close) are never
/// queued, so shedding never touches them.
///
/// Defaults: the newest 256 messages / 256 KiB (about 4 s of 24 kHz PCM16
/// audio in realtime-API append events) of audio per queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ShedFloor {
    /// Sheddable messages kept per queue, newest first. Default 256.
    pub keep_messages: usize,
    /// Payload bytes of sheddable messages kept per queue. Default 256 KiB.
    pub keep_bytes: usize,
    /// Which messages may be dropped. Default [`Sheddable::Audio`].
    pub sheddable: Sheddable,
}

impl Default for ShedFloor {
    fn default() -> Self {
        Self {
            keep_messages: 256,
            keep_bytes: 256 * 1024,
            sheddable: Sheddable::Audio,
        }
    }
}

impl ShedFloor {
    /// A floor of `keep_messages` / `keep_bytes` for the default kind of
    /// message ([`Sheddable::Audio`]).
    #[must_use]
    pub fn new(keep_messages: usize, keep_bytes: usize) -> Self {
        Self {
            keep_messages,
            keep_bytes,
            sheddable: Sheddable::Audio,
        }
    }

    /// The same floor for another kind of message.
    #[must_use]
    pub fn with_sheddable(mut self, sheddable: Sheddable) -> Self {
        self.sheddable = sheddable;
        self
    }
}

/// Which queued messages shedding may drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Sheddable {
    /// Audio only: binary messages, and the realtime API's audio events
    /// (`input_audio_buffer.append`, `response.output_audio.delta`,
    /// `response.audio.delta`). Every other text message (session updates,
    /// commits, tool calls, transcripts) stays: an assistant can lose a
    /// moment of sound, not a turn of the conversation.
    #[default]
    Audio,
    /// Every data message, text or binary.
    All,
}

/// The realtime API's audio events, by `type`.
const AUDIO_EVENTS: [&str; 3] = [
    "input_audio_buffer.append",
    "response.output_audio.delta",
    "response.audio.delta",
];

/// Just the event's `type`; the rest of the object is skipped unparsed.
#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
}

impl Sheddable {
    /// Whether a text message may be dropped. Parsing costs a pass over the
    /// text, which only happens while shedding.
    pub(crate) fn text(self, text: &str) -> bool {
        match self {
            Sheddable::All => true,
            Sheddable::Audio => serde_json::from_str::<EventType<'_>>(text)
                .is_ok_and(|e| AUDIO_EVENTS.contains(&e.kind.as_ref())),
        }
    }
}

/// What one call of [`Session::shed_queued`](crate::Session::shed_queued)
/// dropped. Plain data (serde).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Shed {
    /// Messages dropped from the outbound queue (never written).
    pub outbound_messages: u64,
    /// Their payload bytes.
    pub outbound_bytes: u64,
    /// Messages dropped from the inbound queue (never read by the application).
    pub inbound_messages: u64,
    /// Their payload bytes.
    pub inbound_bytes: u64,
}

impl Shed {
    /// Messages dropped, both ways.
    #[must_use]
    pub fn messages(&self) -> u64 {
        self.outbound_messages.saturating_add(self.inbound_messages)
    }

    /// Bytes dropped, both ways.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.outbound_bytes.saturating_add(self.inbound_bytes)
    }
}

/// Which messages of a queue to keep. `items` are `(payload bytes,
/// sheddable)`, oldest first; the answer has one flag per item, `true` to
/// keep. The newest sheddable messages stay while they fit in the floor; the
/// first one that does not fit is dropped with every older sheddable one, so
/// what remains is always the newest audio, without holes.
pub(crate) fn plan(items: &[(usize, bool)], floor: &ShedFloor) -> Vec<bool> {
    let mut keep = vec![true; items.len()];
    let mut messages = 0usize;
    let mut bytes = 0usize;
    let mut full = false;
    for (i, &(len, sheddable)) in items.iter().enumerate().rev() {
        if !sheddable {
            continue;
        }
        if !full {
            let fits =
                messages < floor.keep_messages && bytes.saturating_add(len) <= floor.keep_bytes;
            if fits {
                messages += 1;
                bytes += len;
                continue;
            }
            full = true;
        }
        keep[i] = false;
    }
    keep
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The model: the kept sheddable messages are the longest run of the
    /// newest ones whose totals fit; nothing else is dropped.
    fn model(items: &[(usize, bool)], floor: &ShedFloor) -> Vec<bool> {
        let sheddable: Vec<usize> = (0..items.len()).filter(|&i| items[i].1).collect();
        let mut kept_from = sheddable.len();
        for start in (0..sheddable.len()).rev() {
            let tail = &sheddable[start..];
            let bytes: usize = tail.iter().map(|&i| items[i].0).sum();
            if tail.len() <= floor.keep_messages && bytes <= floor.keep_bytes {
                kept_from = start;
            } else {
                break;
            }
        }
        let dropped = &sheddable[..kept_from];
        (0..items.len()).map(|i| !dropped.contains(&i)).collect()
    }

    proptest! {
        #[test]
        fn plan_matches_the_model(
            items in proptest::collection::vec((0usize..5000, any::<bool>()), 0..64),
            keep_messages in 0usize..40,
            keep_bytes in 0usize..40_000,
        ) {
            let floor = ShedFloor::new(keep_messages, keep_bytes);
            let keep = plan(&items, &floor);
            prop_assert_eq!(&keep, &model(&items, &floor));
            // Never drops a message that is not sheddable; stays within the floor.
            let mut kept_messages = 0;
            let mut kept_bytes = 0;
            for (&(len, sheddable), &k) in items.iter().zip(&keep) {
                prop_assert!(k || sheddable);
                if k && sheddable {
                    kept_messages += 1;
                    kept_bytes += len;
                }
            }
            prop_assert!(kept_messages <= keep_messages);
            prop_assert!(kept_bytes <= keep_bytes);
        }
    }

    #[test]
    fn audio_events_are_sheddable_and_the_rest_is_not() {
        let audio = Sheddable::Audio;
        assert!(audio.text(r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#));
        assert!(audio.text(r#"{"delta":"AAAA","type":"response.output_audio.delta"}"#));
        assert!(audio.text(r#"{"type":"response.audio.delta","delta":""}"#));
        assert!(!audio.text(r#"{"type":"input_audio_buffer.commit"}"#));
        assert!(!audio.text(r#"{"type":"response.audio_transcript.delta","delta":"hi"}"#));
        assert!(!audio.text("not json"));
        assert!(!audio.text(r#"{"type":7}"#));
        assert!(Sheddable::All.text("not json"));
    }

    #[test]
    fn floor_serde_form() {
        let floor: ShedFloor =
            serde_json::from_str(r#"{"keep_bytes": 1024, "sheddable": "all"}"#).unwrap();
        assert_eq!(floor.keep_bytes, 1024);
        assert_eq!(floor.keep_messages, 256);
        assert_eq!(floor.sheddable, Sheddable::All);
    }
}
