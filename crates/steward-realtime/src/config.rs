//! `RealtimeConfig`: plain serde data for one conversation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use steward_ws::realtime::{ClientEvent, SessionConfig, SessionUpdate};
use steward_ws::{Client, ClientBuilder, ReconnectConfig};

use crate::Error;

/// PCM16 mono at 24 kHz, the API's `audio/pcm` format: frames per second.
pub const SAMPLE_RATE: u64 = 24_000;
/// Bytes per millisecond of PCM16 mono 24 kHz audio.
pub const BYTES_PER_MS: u64 = 48;

/// Which names of the protocol to speak: the GA API (default) or the beta.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Api {
    /// The generally available API (`session.type = "realtime"`,
    /// `session.audio.input.turn_detection`, ...).
    #[default]
    Ga,
    /// The beta API (`input_audio_format`, top-level `turn_detection`, ...).
    Beta,
}

/// Who decides when the user's turn ends.
///
/// The settings of the server's detectors are passed through unchanged
/// (`threshold`, `prefix_padding_ms`, `silence_duration_ms`, `eagerness`,
/// `create_response`, `interrupt_response`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TurnDetection {
    /// The service's voice activity detector (the default).
    ServerVad(Map<String, Value>),
    /// The service's semantic detector.
    SemanticVad(Map<String, Value>),
    /// Turn detection off: the caller commits turns
    /// ([`RealtimeSession::commit`](crate::RealtimeSession::commit)).
    Manual,
}

impl Default for TurnDetection {
    fn default() -> Self {
        TurnDetection::ServerVad(Map::new())
    }
}

impl TurnDetection {
    /// The JSON the session expects (`null` for manual turns).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let with_type = |kind: &str, settings: &Map<String, Value>| {
            let mut map = settings.clone();
            map.insert("type".into(), Value::String(kind.into()));
            Value::Object(map)
        };
        match self {
            TurnDetection::ServerVad(s) => with_type("server_vad", s),
            TurnDetection::SemanticVad(s) => with_type("semantic_vad", s),
            TurnDetection::Manual => Value::Null,
        }
    }

    /// True when the caller commits turns.
    #[must_use]
    pub fn is_manual(&self) -> bool {
        matches!(self, TurnDetection::Manual)
    }
}

/// The settings of one realtime conversation: plain serde data. Durations
/// are whole milliseconds when serialised.
///
/// ```
/// let c: steward_realtime::RealtimeConfig =
///     serde_json::from_str(r#"{"turn_detection": {"type": "manual"}, "max_session_ms": 1800000}"#)
///         .unwrap();
/// assert!(c.turn_detection.is_manual());
/// assert_eq!(c.max_session, std::time::Duration::from_secs(30 * 60));
/// assert_eq!(c.renew_margin, std::time::Duration::from_secs(5 * 60));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RealtimeConfig {
    /// Protocol names. Default GA.
    pub api: Api,
    /// System instructions.
    pub instructions: Option<String>,
    /// Voice name.
    pub voice: Option<String>,
    /// Tool (function) definitions, as JSON.
    pub tools: Vec<Value>,
    /// Turn detection. Default `server_vad` with the service's settings.
    pub turn_detection: TurnDetection,
    /// The transcription model for the user's audio (the history replays
    /// user turns as their transcripts). `None` turns it off.
    pub input_transcription: Option<String>,
    /// Other session settings, merged into `session` as they are.
    pub session_extra: Map<String, Value>,
    /// The longest the service keeps a session (60 min on the GA API, 30
    /// on the beta).
    #[serde(
        rename = "max_session_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub max_session: Duration,
    /// Renew this long before the session would end. Default 5 min.
    #[serde(
        rename = "renew_margin_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub renew_margin: Duration,
    /// Renew sessions before they end. Default on.
    pub renew: bool,
    /// A silent link is declared dead after this long (the WebSocket
    /// heartbeat's interval and timeout are each half of it). Default 3 s.
    #[serde(
        rename = "dead_link_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub dead_link: Duration,
    /// History items kept for replay (oldest go first). Default 200.
    pub history_items: usize,
    /// History text kept for replay, in bytes. Default 256 KiB.
    pub history_bytes: usize,
    /// User audio held while the link is down or a session is switched, in
    /// ms; older held audio is dropped (counted). Default 10 s.
    pub held_audio_ms: u64,
    /// Model audio waiting for the playout, in ms; beyond it new audio is
    /// dropped (counted). Default 120 s.
    pub play_queue_ms: u64,
    /// Events kept for the application. When full, transcripts, speech,
    /// barge-in, response and error events are dropped (counted in
    /// `RealtimeStats::events_dropped`); tool calls evict those first;
    /// `SessionReady` and `LinkLost` are never dropped. Default 256.
    pub event_queue: usize,
    /// Bytes of text (tool-call arguments, transcripts, messages) the
    /// events kept for the application may hold, the same way. Default
    /// 32 MiB (a tool call's arguments reach the 16 MiB message limit).
    pub event_queue_bytes: usize,
    /// Text (tool outputs, user messages) waiting for the session task, in
    /// bytes: one more is refused with [`Error::QueueFull`] and counted in
    /// `RealtimeStats::texts_refused` (a lone one of any size passes).
    /// Their count is bounded too: the command queue holds 1,024 commands,
    /// and a caller waits for room. Default 32 MiB.
    pub text_queue_bytes: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            api: Api::Ga,
            instructions: None,
            voice: None,
            tools: Vec::new(),
            turn_detection: TurnDetection::default(),
            input_transcription: Some("gpt-4o-mini-transcribe".into()),
            session_extra: Map::new(),
            max_session: Duration::from_secs(60 * 60),
            renew_margin: Duration::from_secs(5 * 60),
            renew: true,
            dead_link: Duration::from_secs(3),
            history_items: 200,
            history_bytes: 256 * 1024,
            held_audio_ms: 10_000,
            play_queue_ms: 120_000,
            event_queue: 256,
            event_queue_bytes: 32 << 20,
            text_queue_bytes: 32 << 20,
        }
    }
}

impl RealtimeConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, message: &str| {
            Err(Error::Config {
                field,
                message: message.into(),
            })
        };
        if self.max_session < Duration::from_secs(1) {
            return bad("max_session", "must be at least 1 s");
        }
        if self.renew_margin >= self.max_session {
            return bad("renew_margin", "must be shorter than max_session");
        }
        if self.dead_link < Duration::from_millis(100) {
            return bad("dead_link", "must be at least 100 ms");
        }
        if self.history_items == 0 || self.history_bytes == 0 {
            return bad("history_items", "the history must hold something");
        }
        if self.play_queue_ms == 0 {
            return bad("play_queue_ms", "must be more than zero");
        }
        if self.event_queue == 0 || self.event_queue_bytes == 0 {
            return bad("event_queue", "must hold something");
        }
        if self.text_queue_bytes == 0 {
            return bad("text_queue_bytes", "must be more than zero");
        }
        Ok(())
    }

    /// When to renew a session that connected `connected_for` ago and that
    /// lasts `expires_in` from its connection, by the service's word:
    /// `min(expires_in, max_session)` less the margin, as time from now.
    /// The margin is at most a quarter of the session, so a short session
    /// (a stand-in's limit) is not renewed over and over.
    #[must_use]
    pub fn renew_in(&self, connected_for: Duration, expires_in: Option<Duration>) -> Duration {
        let total = expires_in.map_or(self.max_session, |e| e.min(self.max_session));
        let margin = self.renew_margin.min(total / 4);
        total.saturating_sub(margin).saturating_sub(connected_for)
    }

    /// A steward-ws client builder for `url` with what a realtime link
    /// needs: a heartbeat that finds a dead link within
    /// [`dead_link`](Self::dead_link), prompt reconnects (100 ms doubling to
    /// 2 s, never giving up: the conversation replays on every new link).
    pub fn client_builder(&self, url: impl Into<String>) -> ClientBuilder {
        let half = self.dead_link / 2;
        let mut reconnect = ReconnectConfig::default();
        reconnect.enabled = true;
        reconnect.max_attempts = None;
        reconnect.initial_delay = Duration::from_millis(100);
        reconnect.max_delay = Duration::from_secs(2);
        Client::builder(url)
            .heartbeat(half, half)
            .connect_timeout(Duration::from_secs(10))
            .reconnect(reconnect)
    }

    /// The `session.update` that configures a new session.
    #[must_use]
    pub fn session_update(&self) -> ClientEvent {
        let mut extra = Map::new();
        let detection = self.turn_detection.to_json();
        let transcription = self
            .input_transcription
            .as_ref()
            .map(|model| json!({ "model": model }));
        let kind = match self.api {
            Api::Ga => {
                let mut input = json!({
                    "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                    "turn_detection": detection,
                });
                if let Some(t) = transcription {
                    input["transcription"] = t;
                }
                let mut output = json!({"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}});
                if let Some(v) = &self.voice {
                    output["voice"] = Value::String(v.clone());
                }
                extra.insert("audio".into(), json!({"input": input, "output": output}));
                Some("realtime".to_string())
            }
            Api::Beta => {
                extra.insert("input_audio_format".into(), "pcm16".into());
                extra.insert("output_audio_format".into(), "pcm16".into());
                extra.insert("turn_detection".into(), detection);
                if let Some(t) = transcription {
                    extra.insert("input_audio_transcription".into(), t);
                }
                None
            }
        };
        for (k, v) in &self.session_extra {
            extra.insert(k.clone(), v.clone());
        }
        ClientEvent::SessionUpdate(SessionUpdate {
            session: SessionConfig {
                kind,
                instructions: self.instructions.clone(),
                voice: match self.api {
                    Api::Beta => self.voice.clone(),
                    Api::Ga => None,
                },
                tools: (!self.tools.is_empty()).then(|| self.tools.clone()),
                extra,
                ..SessionConfig::default()
            },
            ..SessionUpdate::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_a_margin_before_the_earlier_end() {
        let c = RealtimeConfig::default();
        let min = Duration::from_secs(60);
        assert_eq!(c.renew_in(Duration::ZERO, None), 55 * min);
        assert_eq!(c.renew_in(10 * min, None), 45 * min);
        assert_eq!(c.renew_in(Duration::ZERO, Some(30 * min)), 25 * min);
        assert_eq!(c.renew_in(58 * min, None), Duration::ZERO);
        // A 20 s session is renewed after 15 s, not at once.
        let secs = Duration::from_secs;
        assert_eq!(c.renew_in(Duration::ZERO, Some(secs(20))), secs(15));
    }

    #[test]
    fn ga_and_beta_updates_put_turn_detection_where_each_expects_it() {
        let mut c = RealtimeConfig {
            turn_detection: TurnDetection::Manual,
            ..RealtimeConfig::default()
        };
        let ga = c.session_update().to_json().expect("json");
        let v: Value = serde_json::from_str(&ga).expect("parse");
        assert_eq!(v["session"]["type"], "realtime");
        assert!(v["session"]["audio"]["input"]["turn_detection"].is_null());
        c.api = Api::Beta;
        c.turn_detection = TurnDetection::default();
        let beta: Value =
            serde_json::from_str(&c.session_update().to_json().expect("json")).expect("parse");
        assert_eq!(beta["session"]["turn_detection"]["type"], "server_vad");
        assert_eq!(beta["session"]["input_audio_format"], "pcm16");
    }
}
