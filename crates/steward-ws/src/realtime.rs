//! Realtime-API event codec: typed client and server events, raw JSON for the rest.
//!
//! Events are JSON objects tagged by `"type"`. The events an assistant sends
//! and handles are typed; **any other event is kept as raw JSON**
//! ([`ServerEvent::Other`], [`ClientEvent::Other`]) and survives a round trip
//! unchanged — parsing never fails on valid JSON. Fields we do not type are
//! kept in each struct's `extra` map and written back. An event whose type we
//! know but whose fields do not fit (the API changed) is kept as `Other` too,
//! so a new API version never breaks a running session; look for `Other` in
//! logs. Explicit `null`s of optional fields are read as absent.
//!
//! Audio deltas and transcript deltas exist under their GA names
//! (`response.output_audio.delta`, `response.output_audio_transcript.delta`)
//! and their beta names (`response.audio.delta`,
//! `response.audio_transcript.delta`); both are typed, and
//! [`ServerEvent::audio_delta`] / [`ServerEvent::transcript_delta`] cover both.
//!
//! ```
//! use steward_ws::realtime::{self, ClientEvent, ServerEvent};
//!
//! let up = ClientEvent::append_pcm16(&[0, 1, -1, i16::MAX]);
//! let json = up.to_json().unwrap();
//! assert!(json.starts_with(r#"{"type":"input_audio_buffer.append""#));
//!
//! let down = ServerEvent::parse(
//!     r#"{"type":"response.audio.delta","response_id":"r1","delta":"AAABAA=="}"#,
//! ).unwrap();
//! let delta = down.audio_delta().unwrap();
//! assert_eq!(realtime::decode_pcm16(&delta.delta).unwrap(), vec![0, 1]);
//!
//! let unknown = ServerEvent::parse(r#"{"type":"brand.new","x":[1,2]}"#).unwrap();
//! assert_eq!(unknown.event_type(), "brand.new");
//! assert_eq!(unknown.to_json().unwrap(), r#"{"type":"brand.new","x":[1,2]}"#);
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Message};

/// Fields we do not type, kept in order and written back.
pub type Extra = Map<String, Value>;

// ---------------------------------------------------------------------------
// Client events.

/// An event the assistant sends to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ClientEvent {
    /// `session.update`.
    #[serde(rename = "session.update")]
    SessionUpdate(SessionUpdate),
    /// `input_audio_buffer.append`: base64 PCM16 audio (up to 15 MiB per event).
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend(InputAudioBufferAppend),
    /// `input_audio_buffer.commit`.
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit(Plain),
    /// `input_audio_buffer.clear`.
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear(Plain),
    /// `conversation.item.create`.
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate(ConversationItemCreate),
    /// `response.create`.
    #[serde(rename = "response.create")]
    ResponseCreate(ResponseCreate),
    /// `response.cancel`.
    #[serde(rename = "response.cancel")]
    ResponseCancel(ResponseCancel),
    /// Any other event, as raw JSON.
    #[serde(untagged)]
    Other(Value),
}

/// An event with no fields of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plain {
    /// Optional client-chosen id, echoed in errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `session.update`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionUpdate {
    /// Optional client-chosen id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The session settings to change.
    pub session: SessionConfig,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The session settings an assistant usually sets; the rest (audio formats,
/// turn detection, ... which differ between API versions) stay in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Session type (`"realtime"` in the GA API).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Voice name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Tool (function) definitions, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// Other settings, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `input_audio_buffer.append`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputAudioBufferAppend {
    /// Optional client-chosen id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Base64 audio in the session's input format (PCM16 LE by default).
    pub audio: String,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `conversation.item.create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemCreate {
    /// Optional client-chosen id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Insert after this item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_item_id: Option<String>,
    /// The item (message, function_call_output, ...), as JSON.
    pub item: Value,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseCreate {
    /// Optional client-chosen id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Per-response settings, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.cancel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseCancel {
    /// Optional client-chosen id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The response to cancel (default: the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ClientEvent {
    /// `input_audio_buffer.append` of PCM16 samples (little-endian, base64).
    pub fn append_pcm16(samples: &[i16]) -> Self {
        ClientEvent::InputAudioBufferAppend(InputAudioBufferAppend {
            audio: encode_pcm16(samples),
            ..Default::default()
        })
    }

    /// `conversation.item.create` carrying a function call's output.
    pub fn function_call_output(call_id: impl Into<String>, output: impl Into<String>) -> Self {
        let item = serde_json::json!({
            "type": "function_call_output",
            "call_id": call_id.into(),
            "output": output.into(),
        });
        ClientEvent::ConversationItemCreate(ConversationItemCreate {
            item,
            ..Default::default()
        })
    }

    /// `response.create` with default settings.
    pub fn response_create() -> Self {
        ClientEvent::ResponseCreate(ResponseCreate::default())
    }

    /// Parses one client event (useful for servers and tests). Never fails on
    /// valid JSON: unknown events come back as [`ClientEvent::Other`].
    ///
    /// # Errors
    /// [`Error::Codec`] when `text` is not JSON.
    pub fn parse(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|source| Error::Codec {
            event_type: sniff_type(text),
            action: "decode",
            source,
        })
    }

    /// The event's `type`.
    pub fn event_type(&self) -> &str {
        match self {
            ClientEvent::SessionUpdate(_) => "session.update",
            ClientEvent::InputAudioBufferAppend(_) => "input_audio_buffer.append",
            ClientEvent::InputAudioBufferCommit(_) => "input_audio_buffer.commit",
            ClientEvent::InputAudioBufferClear(_) => "input_audio_buffer.clear",
            ClientEvent::ConversationItemCreate(_) => "conversation.item.create",
            ClientEvent::ResponseCreate(_) => "response.create",
            ClientEvent::ResponseCancel(_) => "response.cancel",
            ClientEvent::Other(v) => raw_type(v),
        }
    }

    /// The JSON text.
    ///
    /// # Errors
    /// [`Error::Codec`] (only for `Other` values that are not valid JSON
    /// numbers, which serde_json cannot produce).
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(|source| Error::Codec {
            event_type: self.event_type().to_string(),
            action: "encode",
            source,
        })
    }

    /// The event as a text [`Message`] ready for [`Session::send`](crate::Session::send).
    ///
    /// # Errors
    /// As [`to_json`](Self::to_json).
    pub fn to_message(&self) -> Result<Message, Error> {
        self.to_json().map(Message::Text)
    }
}

// ---------------------------------------------------------------------------
// Server events.

/// An event the model sends to the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ServerEvent {
    /// `error`.
    #[serde(rename = "error")]
    Error(ErrorEvent),
    /// `session.created`.
    #[serde(rename = "session.created")]
    SessionCreated(SessionEvent),
    /// `session.updated`.
    #[serde(rename = "session.updated")]
    SessionUpdated(SessionEvent),
    /// `input_audio_buffer.speech_started`: the user started talking (barge-in).
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted(SpeechEvent),
    /// `input_audio_buffer.speech_stopped`.
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped(SpeechEvent),
    /// `response.created`.
    #[serde(rename = "response.created")]
    ResponseCreated(ResponseEvent),
    /// `response.done`.
    #[serde(rename = "response.done")]
    ResponseDone(ResponseEvent),
    /// `response.output_audio.delta` (GA name).
    #[serde(rename = "response.output_audio.delta")]
    OutputAudioDelta(Delta),
    /// `response.audio.delta` (beta name).
    #[serde(rename = "response.audio.delta")]
    AudioDelta(Delta),
    /// `response.output_audio_transcript.delta` (GA name).
    #[serde(rename = "response.output_audio_transcript.delta")]
    OutputAudioTranscriptDelta(Delta),
    /// `response.audio_transcript.delta` (beta name).
    #[serde(rename = "response.audio_transcript.delta")]
    AudioTranscriptDelta(Delta),
    /// `response.function_call_arguments.done`: a tool call is complete.
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone(FunctionCallArgumentsDone),
    /// `rate_limits.updated`.
    #[serde(rename = "rate_limits.updated")]
    RateLimitsUpdated(RateLimitsUpdated),
    /// Any other event, as raw JSON.
    #[serde(untagged)]
    Other(Value),
}

/// `error`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// What went wrong.
    pub error: ErrorDetail,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The body of an `error` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Error class (`invalid_request_error`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// The offending parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The client event that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `session.created` / `session.updated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The session as the server sees it.
    pub session: SessionConfig,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `input_audio_buffer.speech_started` / `speech_stopped`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeechEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Start (speech_started) of the speech in the input buffer, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_start_ms: Option<u64>,
    /// End (speech_stopped) of the speech in the input buffer, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_end_ms: Option<u64>,
    /// The user item the speech becomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.created` / `response.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The response object (id, status, output, usage), as JSON.
    pub response: Value,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ResponseEvent {
    /// The response's `id`.
    pub fn response_id(&self) -> Option<&str> {
        self.response.get("id").and_then(Value::as_str)
    }

    /// The response's `status` (`completed`, `cancelled`, `failed`, ...).
    pub fn status(&self) -> Option<&str> {
        self.response.get("status").and_then(Value::as_str)
    }
}

/// An audio or transcript delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Server event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The response this belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// The item this belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// Output index within the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_index: Option<u32>,
    /// Content index within the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_index: Option<u32>,
    /// Base64 audio (audio deltas) or text (transcript deltas).
    pub delta: String,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Delta {
    /// Decodes an audio delta as PCM16 samples.
    ///
    /// # Errors
    /// [`Error::Audio`] for bad base64 or an odd byte count.
    pub fn pcm16(&self) -> Result<Vec<i16>, Error> {
        decode_pcm16(&self.delta)
    }
}

/// `response.function_call_arguments.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallArgumentsDone {
    /// Server event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The response this belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// The function-call item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// Output index within the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_index: Option<u32>,
    /// The id to answer with [`ClientEvent::function_call_output`].
    pub call_id: String,
    /// The function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The arguments, a JSON text.
    pub arguments: String,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `rate_limits.updated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitsUpdated {
    /// Server event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The limits.
    pub rate_limits: Vec<RateLimit>,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One rate limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// `requests` or `tokens`.
    pub name: String,
    /// The limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// Seconds until the limit resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_seconds: Option<f64>,
    /// Other fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ServerEvent {
    /// Parses one server event. Never fails on valid JSON: unknown (or
    /// unexpectedly shaped) events come back as [`ServerEvent::Other`].
    ///
    /// # Errors
    /// [`Error::Codec`] when `text` is not JSON.
    pub fn parse(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|source| Error::Codec {
            event_type: sniff_type(text),
            action: "decode",
            source,
        })
    }

    /// Parses a received [`Message`] (text or UTF-8 binary).
    ///
    /// # Errors
    /// As [`parse`](Self::parse); binary that is not UTF-8 is not JSON.
    pub fn from_message(message: &Message) -> Result<Self, Error> {
        serde_json::from_slice(message.as_bytes()).map_err(|source| Error::Codec {
            event_type: "?".into(),
            action: "decode",
            source,
        })
    }

    /// The event's `type` (empty for an `Other` value without one).
    pub fn event_type(&self) -> &str {
        match self {
            ServerEvent::Error(_) => "error",
            ServerEvent::SessionCreated(_) => "session.created",
            ServerEvent::SessionUpdated(_) => "session.updated",
            ServerEvent::SpeechStarted(_) => "input_audio_buffer.speech_started",
            ServerEvent::SpeechStopped(_) => "input_audio_buffer.speech_stopped",
            ServerEvent::ResponseCreated(_) => "response.created",
            ServerEvent::ResponseDone(_) => "response.done",
            ServerEvent::OutputAudioDelta(_) => "response.output_audio.delta",
            ServerEvent::AudioDelta(_) => "response.audio.delta",
            ServerEvent::OutputAudioTranscriptDelta(_) => "response.output_audio_transcript.delta",
            ServerEvent::AudioTranscriptDelta(_) => "response.audio_transcript.delta",
            ServerEvent::FunctionCallArgumentsDone(_) => "response.function_call_arguments.done",
            ServerEvent::RateLimitsUpdated(_) => "rate_limits.updated",
            ServerEvent::Other(v) => raw_type(v),
        }
    }

    /// The audio delta, under its GA or beta name.
    pub fn audio_delta(&self) -> Option<&Delta> {
        match self {
            ServerEvent::OutputAudioDelta(d) | ServerEvent::AudioDelta(d) => Some(d),
            _ => None,
        }
    }

    /// The audio transcript delta, under its GA or beta name.
    pub fn transcript_delta(&self) -> Option<&Delta> {
        match self {
            ServerEvent::OutputAudioTranscriptDelta(d) | ServerEvent::AudioTranscriptDelta(d) => {
                Some(d)
            }
            _ => None,
        }
    }

    /// The JSON text.
    ///
    /// # Errors
    /// [`Error::Codec`] (not expected for values built by this crate).
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(|source| Error::Codec {
            event_type: self.event_type().to_string(),
            action: "encode",
            source,
        })
    }
}

fn raw_type(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The `type` of a text that failed to parse, for the error message.
fn sniff_type(text: &str) -> String {
    let Some(start) = text.find(r#""type""#) else {
        return "?".into();
    };
    let rest = &text[start + 6..];
    let rest = rest.trim_start().trim_start_matches(':').trim_start();
    let Some(rest) = rest.strip_prefix('"') else {
        return "?".into();
    };
    let name: String = rest.chars().take_while(|c| *c != '"').take(64).collect();
    if name.is_empty() { "?".into() } else { name }
}

// ---------------------------------------------------------------------------
// Audio payloads.

/// Base64 of raw bytes (standard alphabet, padded), as the API expects.
pub fn encode_audio(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Bytes of a base64 payload.
///
/// # Errors
/// [`Error::Audio`] for bad base64.
pub fn decode_audio(b64: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(b64).map_err(|e| Error::Audio {
        what: format!("{} base64 characters do not decode", b64.len()),
        source: Some(Box::new(e)),
    })
}

/// Base64 of PCM16 samples, little-endian (the API's `pcm16` format).
pub fn encode_pcm16(samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    encode_audio(&bytes)
}

/// PCM16 samples (little-endian) of a base64 payload.
///
/// # Errors
/// [`Error::Audio`] for bad base64 or an odd number of bytes.
pub fn decode_pcm16(b64: &str) -> Result<Vec<i16>, Error> {
    let bytes = decode_audio(b64)?;
    if bytes.len() % 2 != 0 {
        return Err(Error::Audio {
            what: format!(
                "{} bytes is not a whole number of PCM16 samples",
                bytes.len()
            ),
            source: None,
        });
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_type_with_wrong_shape_is_kept_raw() {
        let text = r#"{"type":"response.audio.delta","delta":42}"#;
        let event = ServerEvent::parse(text).unwrap();
        assert!(matches!(event, ServerEvent::Other(_)), "{event:?}");
        assert_eq!(event.to_json().unwrap(), text);
    }

    #[test]
    fn unknown_fields_are_kept() {
        let text = r#"{"type":"response.output_audio.delta","delta":"AA==","new_field":{"a":1}}"#;
        let event = ServerEvent::parse(text).unwrap();
        let ServerEvent::OutputAudioDelta(d) = &event else {
            panic!("{event:?}")
        };
        assert_eq!(d.extra["new_field"]["a"], 1);
        assert_eq!(event.to_json().unwrap(), text);
    }

    #[test]
    fn not_json_names_the_type() {
        let err = ServerEvent::parse(r#"{"type": "session.created", oops"#).unwrap_err();
        assert!(err.to_string().contains("session.created"), "{err}");
    }

    #[test]
    fn odd_pcm16_is_refused() {
        let err = decode_pcm16(&encode_audio(&[1, 2, 3])).unwrap_err();
        assert!(err.to_string().contains("3 bytes"), "{err}");
    }
}
