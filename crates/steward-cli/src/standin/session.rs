//! The session object: how `session.created` shows it, how a
//! `session.update` merges into it, and how the session limit is worded.

use serde_json::{Map, Value, json};

use super::Api;
use super::vad;

/// The session as `session.created` shows it.
pub(super) fn initial_session(api: Api, id: &str, expires_at: u64) -> Value {
    let pcm = json!({"type": "audio/pcm", "rate": 24000});
    match api {
        Api::Ga => json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": id,
            "model": "steward-standin",
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "audio": {
                "input": {"format": pcm, "turn_detection": vad::default_json()},
                "output": {"format": pcm, "voice": "tone", "speed": 1.0},
            },
            "expires_at": expires_at,
        }),
        Api::Beta => json!({
            "object": "realtime.session",
            "id": id,
            "model": "steward-standin",
            "modalities": ["audio", "text"],
            "instructions": "",
            "voice": "tone",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "turn_detection": vad::default_json(),
            "tools": [],
            "tool_choice": "auto",
            "expires_at": expires_at,
        }),
    }
}

/// Merges `update` into `target`: objects key by key, anything else
/// replaced.
pub(super) fn merge(target: &mut Value, update: Value) {
    match (target, update) {
        (Value::Object(target), Value::Object(update)) => {
            for (key, value) in update {
                match target.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value);
                    }
                    _ => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (target, update) => *target = update,
    }
}

/// Sets `target[path[0]][path[1]]...`, making objects on the way.
pub(super) fn set_path(target: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *target = value;
        return;
    };
    let mut at = target;
    for key in parents {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else { return };
        at = map
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    if let Value::Object(map) = at {
        map.insert((*last).to_string(), value);
    }
}

/// "60 minutes", "1 minute", "30 seconds", "1500 milliseconds".
pub(super) fn duration_text(ms: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if ms >= 60_000 && ms.is_multiple_of(60_000) {
        plural(ms / 60_000, "minute")
    } else if ms.is_multiple_of(1000) {
        plural(ms / 1000, "second")
    } else {
        plural(ms, "millisecond")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merging_keeps_what_an_update_does_not_mention() {
        let mut session = json!({"audio": {"input": {"format": "x", "turn_detection": {"type": "server_vad"}}}, "voice": "a"});
        merge(
            &mut session,
            json!({"audio": {"input": {"format": "y"}}, "instructions": "hi"}),
        );
        assert_eq!(session["audio"]["input"]["format"], "y");
        assert_eq!(
            session["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );
        assert_eq!(
            (session["voice"].as_str(), session["instructions"].as_str()),
            (Some("a"), Some("hi"))
        );
        set_path(
            &mut session,
            &["audio", "input", "turn_detection"],
            Value::Null,
        );
        assert!(session["audio"]["input"]["turn_detection"].is_null());
        let mut empty = Value::Null;
        set_path(&mut empty, &["a", "b"], json!(1));
        assert_eq!(empty, json!({"a": {"b": 1}}));
    }

    #[test]
    fn limits_read_as_the_service_words_them() {
        assert_eq!(duration_text(3_600_000), "60 minutes");
        assert_eq!(duration_text(60_000), "1 minute");
        assert_eq!(duration_text(30_000), "30 seconds");
        assert_eq!(duration_text(1_500), "1500 milliseconds");
    }
}
