//! Server events as the service writes them (JSON texts), and helpers to
//! read the client events the conversation sends.

use serde_json::{Value, json};
use steward_realtime::{Conversation, Step};
use steward_ws::realtime::{ClientEvent, ServerEvent, encode_audio};

/// PCM16 mono at 24 kHz.
pub(crate) const RATE: u64 = 24_000;

/// Whole milliseconds in `frames` (rounded down).
pub(crate) fn ms(frames: u64) -> u64 {
    frames * 1000 / RATE
}

/// Frames in `ms` milliseconds.
pub(crate) fn frames(ms: u64) -> u64 {
    ms * RATE / 1000
}

/// Parses `v` as the service's text and hands it to the conversation.
pub(crate) fn feed(conv: &mut Conversation, v: &Value) -> Step {
    let text = v.to_string();
    let event = ServerEvent::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    conv.on_server(&event)
}

pub(crate) fn response_created(id: Option<&str>) -> Value {
    let mut response =
        json!({"object": "realtime.response", "status": "in_progress", "output": []});
    if let Some(id) = id {
        response["id"] = json!(id);
    }
    json!({"type": "response.created", "event_id": "ev_rc", "response": response})
}

pub(crate) fn item_added(
    response_id: Option<&str>,
    item_id: &str,
    assistant_message: bool,
) -> Value {
    let item = if assistant_message {
        json!({"id": item_id, "object": "realtime.item", "type": "message",
               "role": "assistant", "status": "in_progress", "content": []})
    } else {
        json!({"id": item_id, "object": "realtime.item", "type": "function_call",
               "status": "in_progress", "call_id": "c_x", "name": "lookup", "arguments": ""})
    };
    let mut v = json!({"type": "response.output_item.added", "event_id": "ev_ia",
                       "output_index": 0, "item": item});
    if let Some(r) = response_id {
        v["response_id"] = json!(r);
    }
    v
}

/// An audio delta with a base64 payload as given.
pub(crate) fn audio_delta_b64(item_id: &str, b64: &str, beta: bool) -> Value {
    let kind = if beta {
        "response.audio.delta"
    } else {
        "response.output_audio.delta"
    };
    json!({"type": kind, "event_id": "ev_ad", "response_id": "r?", "item_id": item_id,
           "output_index": 0, "content_index": 0, "delta": b64})
}

/// `n` frames of PCM16 (a recognisable pattern).
pub(crate) fn pcm(n: u64) -> Vec<u8> {
    (0..n * 2).map(|i| (i % 251) as u8).collect()
}

/// An audio delta of `n` valid frames.
pub(crate) fn audio(item_id: &str, n: u64) -> Value {
    audio_delta_b64(item_id, &encode_audio(&pcm(n)), false)
}

pub(crate) fn transcript_delta(item_id: &str, text: &str, beta: bool) -> Value {
    let kind = if beta {
        "response.audio_transcript.delta"
    } else {
        "response.output_audio_transcript.delta"
    };
    json!({"type": kind, "event_id": "ev_td", "response_id": "r?", "item_id": item_id,
           "output_index": 0, "content_index": 0, "delta": text})
}

pub(crate) fn transcript_done(item_id: &str, text: &str) -> Value {
    json!({"type": "response.output_audio_transcript.done", "event_id": "ev_tdd",
           "response_id": "r?", "item_id": item_id, "output_index": 0, "content_index": 0,
           "transcript": text})
}

/// `response.done`; `calls` are (call_id, name) function-call items of its output.
pub(crate) fn response_done(id: Option<&str>, status: &str, calls: &[(String, String)]) -> Value {
    let mut output: Vec<Value> = calls
        .iter()
        .map(|(call_id, name)| {
            json!({"id": format!("item_{call_id}"), "type": "function_call",
                   "call_id": call_id, "name": name, "arguments": "{}"})
        })
        .collect();
    output.push(json!({"id": "item_msg", "type": "message", "role": "assistant"}));
    let mut response = json!({"object": "realtime.response", "status": status, "output": output});
    if let Some(id) = id {
        response["id"] = json!(id);
    }
    json!({"type": "response.done", "event_id": "ev_rd", "response": response})
}

pub(crate) fn speech_started() -> Value {
    json!({"type": "input_audio_buffer.speech_started", "event_id": "ev_ss",
           "audio_start_ms": 1000, "item_id": "u_next"})
}

pub(crate) fn speech_stopped() -> Value {
    json!({"type": "input_audio_buffer.speech_stopped", "event_id": "ev_sp",
           "audio_end_ms": 2000, "item_id": "u_next"})
}

pub(crate) fn committed(item_id: &str) -> Value {
    json!({"type": "input_audio_buffer.committed", "event_id": "ev_cm",
           "previous_item_id": null, "item_id": item_id})
}

pub(crate) fn transcription(item_id: &str, text: &str) -> Value {
    json!({"type": "conversation.item.input_audio_transcription.completed",
           "event_id": "ev_tr", "item_id": item_id, "content_index": 0, "transcript": text})
}

pub(crate) fn function_args_done(call_id: &str, name: Option<&str>, arguments: &str) -> Value {
    let mut v = json!({"type": "response.function_call_arguments.done", "event_id": "ev_fa",
                       "response_id": "r?", "item_id": format!("item_{call_id}"),
                       "output_index": 0, "call_id": call_id, "arguments": arguments});
    if let Some(n) = name {
        v["name"] = json!(n);
    }
    v
}

pub(crate) fn error(code: Option<&str>, message: &str, event_id: Option<&str>) -> Value {
    let mut e = json!({"type": "invalid_request_error", "message": message, "param": null});
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    if let Some(id) = event_id {
        e["event_id"] = json!(id);
    }
    json!({"type": "error", "event_id": "ev_err", "error": e})
}

/// The service's message when a truncation reaches past the item's audio.
pub(crate) const TOO_SHORT: &str = "Audio content of 2650ms is already shorter than 9100ms";

pub(crate) fn truncated(item_id: &str, audio_end_ms: u64) -> Value {
    json!({"type": "conversation.item.truncated", "event_id": "ev_tc", "item_id": item_id,
           "content_index": 0, "audio_end_ms": audio_end_ms})
}

pub(crate) fn rate_limits(remaining: u64) -> Value {
    json!({"type": "rate_limits.updated", "event_id": "ev_rl", "rate_limits": [
        {"name": "requests", "limit": 1000, "remaining": remaining, "reset_seconds": 1.5},
        {"name": "tokens", "limit": 50000, "remaining": remaining * 7, "reset_seconds": 0.25},
    ]})
}

pub(crate) fn session_created(expires_at: Option<u64>) -> Value {
    let mut session = json!({"id": "sess_1", "object": "realtime.session", "type": "realtime"});
    if let Some(at) = expires_at {
        session["expires_at"] = json!(at);
    }
    json!({"type": "session.created", "event_id": "ev_sc", "session": session})
}

/// A client event as JSON.
pub(crate) fn json_of(e: &ClientEvent) -> Value {
    serde_json::from_str(&e.to_json().expect("encodes")).expect("JSON")
}

/// The client events of one type, as JSON.
pub(crate) fn of_kind(sent: &[ClientEvent], t: &str) -> Vec<Value> {
    sent.iter()
        .map(json_of)
        .filter(|v| v["type"] == t)
        .collect()
}

/// The service's echo of an item we created (`conversation.item.added`, or
/// the beta's `conversation.item.created`), with the id it gave the item.
pub(crate) fn item_echo(item: &Value, service_id: &str, beta: bool) -> Value {
    let kind = if beta {
        "conversation.item.created"
    } else {
        "conversation.item.added"
    };
    let mut item = item.clone();
    if item.get("id").is_none() {
        item["id"] = json!(service_id);
    }
    json!({"type": kind, "event_id": "ev_echo", "previous_item_id": null, "item": item})
}
