//! The stand-in's server VAD: energy in 20 ms frames of the appended
//! PCM16 24 kHz audio, no model.
//!
//! A frame is speech when its RMS is at least `threshold × 0.1` of full
//! scale (the default threshold 0.5 means RMS ≥ 0.05, about −26 dBFS;
//! threshold 1.0 means RMS ≥ 0.1). Speech starts at the first speech
//! frame; `audio_start_ms` goes back `prefix_padding_ms` before it (not
//! before the buffered audio). Speech stops once `silence_duration_ms` of
//! frames in a row are not speech; `audio_end_ms` is the end of the last of
//! those frames, so it includes the silence, as the service's does.
//!
//! `semantic_vad` is the same energy VAD with a silence that depends on its
//! `eagerness`: `high` 250 ms, `medium` and `auto` 500 ms, `low` 1000 ms.

use serde_json::{Map, Value, json};

/// Length of one VAD frame.
pub(super) const FRAME_MS: u64 = 20;
/// PCM16 mono 24 kHz bytes in one frame.
const FRAME_BYTES: usize = 960;
/// RMS (as a fraction of full scale) per unit of `threshold`.
const LEVEL_PER_THRESHOLD: f64 = 0.1;

/// Turn detection as a session sets it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Detection {
    /// `null`: the client commits and asks for responses itself.
    Manual,
    /// `server_vad` or `semantic_vad`.
    Vad(VadSettings),
}

/// The settings the stand-in's VAD uses.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct VadSettings {
    pub(super) threshold: f64,
    pub(super) prefix_padding_ms: u64,
    pub(super) silence_duration_ms: u64,
    pub(super) create_response: bool,
    pub(super) interrupt_response: bool,
}

impl Default for VadSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            create_response: true,
            interrupt_response: true,
        }
    }
}

impl VadSettings {
    /// RMS level (fraction of full scale) at which a frame is speech.
    pub(super) fn level(&self) -> f64 {
        self.threshold * LEVEL_PER_THRESHOLD
    }
}

/// The service's default turn detection (`server_vad` with its defaults),
/// as JSON.
pub(super) fn default_json() -> Value {
    json!({
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": true,
        "interrupt_response": true,
        "idle_timeout_ms": null,
    })
}

/// Reads a `turn_detection` value (`null` or an object) and gives it back
/// with the defaults of its type filled in, as the service echoes it.
///
/// # Errors
/// A message for the `error` event when the value is not valid.
pub(super) fn parse(value: &Value) -> Result<(Detection, Value), String> {
    let Some(map) = value.as_object() else {
        return if value.is_null() {
            Ok((Detection::Manual, Value::Null))
        } else {
            Err("turn_detection must be an object or null".into())
        };
    };
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("server_vad");
    let flag = |name: &str| -> Result<bool, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("turn_detection.{name} must be a boolean")),
        }
    };
    let mut settings = VadSettings {
        create_response: flag("create_response")?,
        interrupt_response: flag("interrupt_response")?,
        ..VadSettings::default()
    };
    let mut echo = Map::new();
    echo.insert("type".into(), Value::String(kind.into()));
    match kind {
        "server_vad" => {
            if let Some(t) = number(map, "threshold")? {
                if !(0.0..=1.0).contains(&t) {
                    return Err(format!(
                        "turn_detection.threshold must be between 0 and 1, got {t}"
                    ));
                }
                settings.threshold = t;
            }
            if let Some(ms) = millis(map, "prefix_padding_ms")? {
                settings.prefix_padding_ms = ms;
            }
            if let Some(ms) = millis(map, "silence_duration_ms")? {
                settings.silence_duration_ms = ms;
            }
            echo.insert("threshold".into(), json!(settings.threshold));
            echo.insert(
                "prefix_padding_ms".into(),
                json!(settings.prefix_padding_ms),
            );
            echo.insert(
                "silence_duration_ms".into(),
                json!(settings.silence_duration_ms),
            );
            echo.insert(
                "idle_timeout_ms".into(),
                map.get("idle_timeout_ms").cloned().unwrap_or(Value::Null),
            );
        }
        "semantic_vad" => {
            let eagerness = match map.get("eagerness") {
                None | Some(Value::Null) => "auto",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return Err("turn_detection.eagerness must be a string".into()),
            };
            settings.silence_duration_ms = match eagerness {
                "high" => 250,
                "medium" | "auto" => 500,
                "low" => 1000,
                other => {
                    return Err(format!(
                        "turn_detection.eagerness must be low, medium, high or auto, got {:?}",
                        other.chars().take(32).collect::<String>()
                    ));
                }
            };
            echo.insert("eagerness".into(), json!(eagerness));
        }
        other => {
            return Err(format!(
                "turn_detection.type must be server_vad or semantic_vad, got {:?}",
                other.chars().take(32).collect::<String>()
            ));
        }
    }
    echo.insert("create_response".into(), json!(settings.create_response));
    echo.insert(
        "interrupt_response".into(),
        json!(settings.interrupt_response),
    );
    Ok((Detection::Vad(settings), Value::Object(echo)))
}

fn number(map: &Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("turn_detection.{name} must be a number")),
    }
}

fn millis(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(ms) if ms <= 60_000 => Ok(Some(ms)),
            _ => Err(format!(
                "turn_detection.{name} must be a whole number of ms up to 60000"
            )),
        },
    }
}

/// What the VAD saw in the audio just pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VadEvent {
    /// Speech started; ms from the start of the connection's input audio,
    /// the prefix padding included.
    Started { audio_start_ms: u64, onset_ms: u64 },
    /// Speech stopped; ms from the start of the connection's input audio,
    /// the silence included.
    Stopped { audio_end_ms: u64 },
}

/// The VAD's state over one connection's input audio.
#[derive(Debug, Default)]
pub(super) struct Vad {
    /// Bytes of an unfinished frame.
    partial: Vec<u8>,
    /// Input audio consumed in whole frames, in ms.
    frames_ms: u64,
    /// While speaking: ms of non-speech frames in a row.
    silent_ms: Option<u64>,
}

impl Vad {
    /// A VAD whose first frame starts `ms` into the connection's input.
    pub(super) fn starting_at(ms: u64) -> Vad {
        Vad {
            frames_ms: ms,
            ..Vad::default()
        }
    }

    /// Feeds appended audio; events go to `out` in order.
    pub(super) fn push(&mut self, settings: &VadSettings, mut pcm: &[u8], out: &mut Vec<VadEvent>) {
        if !self.partial.is_empty() {
            let take = (FRAME_BYTES - self.partial.len()).min(pcm.len());
            self.partial.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.partial.len() == FRAME_BYTES {
                let frame = std::mem::take(&mut self.partial);
                self.frame(settings, &frame, out);
            }
        }
        let mut frames = pcm.chunks_exact(FRAME_BYTES);
        for frame in &mut frames {
            self.frame(settings, frame, out);
        }
        self.partial.extend_from_slice(frames.remainder());
    }

    fn frame(&mut self, settings: &VadSettings, frame: &[u8], out: &mut Vec<VadEvent>) {
        let start = self.frames_ms;
        self.frames_ms += FRAME_MS;
        let speech = rms(frame) >= settings.level();
        match (&mut self.silent_ms, speech) {
            (None, true) => {
                self.silent_ms = Some(0);
                out.push(VadEvent::Started {
                    audio_start_ms: start.saturating_sub(settings.prefix_padding_ms),
                    onset_ms: start,
                });
            }
            (None, false) => {}
            (Some(silent), true) => *silent = 0,
            (Some(silent), false) => {
                *silent += FRAME_MS;
                if *silent >= settings.silence_duration_ms.max(FRAME_MS) {
                    self.silent_ms = None;
                    out.push(VadEvent::Stopped {
                        audio_end_ms: self.frames_ms,
                    });
                }
            }
        }
    }

    /// Forgets speech in progress (the buffer was committed or cleared).
    pub(super) fn reset(&mut self) {
        self.silent_ms = None;
    }

    /// Whether speech is in progress.
    pub(super) fn speaking(&self) -> bool {
        self.silent_ms.is_some()
    }
}

/// RMS of PCM16LE samples as a fraction of full scale.
pub(super) fn rms(pcm: &[u8]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0_u32;
    for pair in pcm.chunks_exact(2) {
        let s = f64::from(i16::from_le_bytes([pair[0], pair[1]])) / 32_768.0;
        sum += s * s;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        (sum / f64::from(n)).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: u64, amplitude: f64) -> Vec<u8> {
        (0..ms * 24)
            .flat_map(|i| {
                let s = (i as f64 * 0.07).sin() * amplitude * 32_767.0;
                (s as i16).to_le_bytes()
            })
            .collect()
    }

    fn run(settings: &VadSettings, chunks: &[Vec<u8>]) -> Vec<VadEvent> {
        let mut vad = Vad::default();
        let mut out = Vec::new();
        for chunk in chunks {
            vad.push(settings, chunk, &mut out);
        }
        out
    }

    #[test]
    fn a_loud_burst_starts_and_stops_with_padding_and_silence() {
        let s = VadSettings::default();
        // 1 s silence, 600 ms of a tone at RMS ~0.21, 1 s silence, in
        // odd-sized chunks.
        let mut audio = tone(1000, 0.0);
        audio.extend(tone(600, 0.3));
        audio.extend(tone(1000, 0.0));
        let chunks: Vec<Vec<u8>> = audio.chunks(1234).map(<[u8]>::to_vec).collect();
        let events = run(&s, &chunks);
        assert_eq!(
            events,
            [
                VadEvent::Started {
                    audio_start_ms: 700,
                    onset_ms: 1000
                },
                VadEvent::Stopped { audio_end_ms: 2100 }
            ]
        );
    }

    #[test]
    fn quiet_audio_and_silence_are_not_speech() {
        let s = VadSettings::default();
        let events = run(&s, &[tone(2000, 0.0), tone(2000, 0.05)]);
        assert!(events.is_empty(), "{events:?}");
        // A lower threshold hears the quiet tone (RMS ~0.035 ≥ 0.02).
        let low = VadSettings {
            threshold: 0.2,
            ..VadSettings::default()
        };
        assert_eq!(run(&low, &[tone(2000, 0.05)]).len(), 1);
    }

    #[test]
    fn settings_parse_with_defaults_and_refuse_bad_values() {
        let (d, echo) = parse(&json!({"type": "server_vad", "threshold": 0.3})).unwrap();
        let Detection::Vad(s) = d else {
            panic!("{d:?}")
        };
        assert_eq!(s.threshold, 0.3);
        assert_eq!(s.silence_duration_ms, 500);
        assert_eq!(echo["prefix_padding_ms"], 300);
        assert_eq!(echo["interrupt_response"], true);
        assert_eq!(parse(&Value::Null).unwrap().0, Detection::Manual);
        let (d, _) =
            parse(&json!({"type": "semantic_vad", "eagerness": "high", "create_response": false}))
                .unwrap();
        let Detection::Vad(s) = d else {
            panic!("{d:?}")
        };
        assert_eq!((s.silence_duration_ms, s.create_response), (250, false));
        assert!(parse(&json!({"type": "server_vad", "threshold": 3})).is_err());
        assert!(parse(&json!({"type": "push_to_talk"})).is_err());
        assert!(parse(&json!({"silence_duration_ms": -1})).is_err());
        assert!(parse(&json!("server_vad")).is_err());
    }
}
