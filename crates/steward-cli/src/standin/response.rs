//! Responses, streamed: the head events at once, the audio deltas paced at
//! `reply_speed` × real time, then the tail (transcript, done events, an
//! optional function call, `response.done`), or the cancelled tail.

use std::time::Duration;

use serde_json::{Value, json};
use steward::ws::realtime;
use tokio::time::Instant;

use super::Api;
use super::conversation::{Body, Conversation};
use super::history;
use super::tools::ToolCall;

/// What a response will say.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) audio_ms: u64,
    pub(super) spoken: String,
    pub(super) tool: Option<ToolCall>,
    /// Drop the connection once this response ended (`drop_every`).
    pub(super) drop_after: bool,
}

/// The response in progress.
#[derive(Debug)]
pub(super) struct Streaming {
    pub(super) id: String,
    item_id: String,
    previous_item_id: Option<String>,
    plan: Plan,
    start: Instant,
    sent_ms: u64,
}

/// Responses waiting for the one in progress (server VAD with
/// `interrupt_response: false`); more are dropped.
const MAX_QUEUED: usize = 4;

impl Api {
    fn audio_delta(self) -> &'static str {
        match self {
            Api::Ga => "response.output_audio.delta",
            Api::Beta => "response.audio.delta",
        }
    }

    fn audio_done(self) -> &'static str {
        match self {
            Api::Ga => "response.output_audio.done",
            Api::Beta => "response.audio.done",
        }
    }

    fn transcript_delta(self) -> &'static str {
        match self {
            Api::Ga => "response.output_audio_transcript.delta",
            Api::Beta => "response.audio_transcript.delta",
        }
    }

    fn transcript_done(self) -> &'static str {
        match self {
            Api::Ga => "response.output_audio_transcript.done",
            Api::Beta => "response.audio_transcript.done",
        }
    }

    /// The content type of spoken output.
    fn audio_part(self) -> &'static str {
        match self {
            Api::Ga => "output_audio",
            Api::Beta => "audio",
        }
    }

    fn modalities(self) -> (&'static str, Value) {
        match self {
            Api::Ga => ("output_modalities", json!(["audio"])),
            Api::Beta => ("modalities", json!(["audio", "text"])),
        }
    }
}

impl Conversation {
    /// Starts `plan` now, or after the response in progress.
    pub(super) fn start_response(&mut self, plan: Plan) {
        if self.active.is_some() {
            if self.queued.len() >= MAX_QUEUED {
                tracing::warn!("stand-in: too many responses waiting, the oldest is dropped");
                self.queued.pop_front();
            }
            self.queued.push_back(plan);
            return;
        }
        let id = self.id("resp");
        let item_id = self.id("item");
        let (modalities, values) = self.api.modalities();
        let mut response = json!({
            "id": id, "object": "realtime.response", "status": "in_progress",
            "status_details": null, "output": [], "usage": null,
        });
        if let Some(map) = response.as_object_mut() {
            map.insert(modalities.into(), values);
        }
        self.emit(json!({"type": "response.created", "response": response}));
        let item = json!({
            "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
            "status": "in_progress", "content": [],
        });
        self.emit(json!({"type": "response.output_item.added", "response_id": id, "output_index": 0, "item": item}));
        let previous = self.last_item_id.clone();
        self.push_record(
            item_id.clone(),
            Body::Assistant {
                planned: plan.spoken.clone(),
                planned_ms: plan.audio_ms,
                sent_ms: 0,
                heard_ms: None,
                done: false,
            },
        );
        self.emit_item(previous.clone(), item, None);
        let part = json!({"type": self.api.audio_part(), "transcript": ""});
        self.emit(json!({
            "type": "response.content_part.added", "response_id": id, "item_id": item_id,
            "output_index": 0, "content_index": 0, "part": part,
        }));
        tracing::debug!(response = %id, audio_ms = plan.audio_ms, "stand-in: response started");
        self.active = Some(Streaming {
            id,
            item_id,
            previous_item_id: previous,
            plan,
            start: self.now,
            sent_ms: 0,
        });
    }

    /// When the next audio delta is due, if a response is streaming.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.active.as_ref().map(|s| self.due(s))
    }

    fn due(&self, s: &Streaming) -> Instant {
        let speed = self.shared.config.reply_speed;
        if speed <= 0.0 {
            return s.start;
        }
        s.start + Duration::from_secs_f64(s.sent_ms as f64 / speed / 1000.0)
    }

    /// The events due by `now`, in order.
    pub(super) fn poll(&mut self, now: Instant) -> Vec<String> {
        self.now = now;
        while let Some(s) = &self.active {
            if s.sent_ms < s.plan.audio_ms {
                if self.due(s) > now {
                    break;
                }
                self.send_delta();
            } else {
                self.finish_response(None);
            }
        }
        std::mem::take(&mut self.out)
    }

    fn send_delta(&mut self) {
        let delta_ms = u64::from(self.shared.config.delta_ms);
        let Some(s) = &self.active else { return };
        let ms = delta_ms.min(s.plan.audio_ms - s.sent_ms);
        let (response_id, item_id) = (s.id.clone(), s.item_id.clone());
        let pcm = self.tone(ms);
        self.deltas += 1;
        self.shared.count(|c| &c.audio_deltas);
        self.shared.add(|c| &c.audio_bytes_out, pcm.len() as u64);
        let every = u64::from(self.shared.config.bad_delta_every);
        let delta = if every > 0 && self.deltas.is_multiple_of(every) {
            // Alternately an odd byte count and base64 that does not decode.
            self.shared.count(|c| &c.bad_deltas);
            if (self.deltas / every) % 2 == 1 {
                realtime::encode_audio(&pcm[..pcm.len().saturating_sub(1)])
            } else {
                let good = realtime::encode_audio(&pcm);
                format!("*{}", good.get(1..).unwrap_or_default())
            }
        } else {
            realtime::encode_audio(&pcm)
        };
        let kind = self.api.audio_delta();
        self.emit(json!({
            "type": kind, "response_id": response_id, "item_id": item_id,
            "output_index": 0, "content_index": 0, "delta": delta,
        }));
        if let Some(s) = &mut self.active {
            s.sent_ms += ms;
        }
        if let Some(record) = self.record_mut(&item_id)
            && let Body::Assistant { sent_ms, .. } = &mut record.body
        {
            *sent_ms += ms;
        }
    }

    /// Ends the response in progress: completed (`cancelled` is `None`) or
    /// cancelled for that reason.
    pub(super) fn finish_response(&mut self, cancelled: Option<&str>) {
        let Some(s) = self.active.take() else { return };
        let Streaming {
            id,
            item_id,
            previous_item_id,
            plan,
            sent_ms,
            ..
        } = s;
        let transcript = match cancelled {
            None => plan.spoken.clone(),
            Some(_) => history::prefix(&plan.spoken, sent_ms, plan.audio_ms),
        };
        let at = |kind: &str| json!({"type": kind, "response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0});
        self.emit(at(self.api.audio_done()));
        if !transcript.is_empty() {
            let mut delta = at(self.api.transcript_delta());
            delta["delta"] = json!(transcript);
            self.emit(delta);
        }
        let mut done = at(self.api.transcript_done());
        done["transcript"] = json!(transcript);
        self.emit(done);
        let part = json!({"type": self.api.audio_part(), "transcript": transcript});
        let mut part_done = at("response.content_part.done");
        part_done["part"] = part.clone();
        self.emit(part_done);
        let item = json!({
            "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
            "status": if cancelled.is_some() { "incomplete" } else { "completed" },
            "content": [part],
        });
        self.emit(json!({"type": "response.output_item.done", "response_id": id, "output_index": 0, "item": item}));
        if self.api == Api::Ga {
            self.emit(json!({"type": "conversation.item.done", "previous_item_id": previous_item_id, "item": item}));
        }
        if let Some(record) = self.record_mut(&item_id)
            && let Body::Assistant { done, .. } = &mut record.body
        {
            *done = true;
        }
        let mut output = vec![item];
        if cancelled.is_none()
            && let Some(tool) = &plan.tool
        {
            output.push(self.function_call(&id, tool));
        }
        let status = if cancelled.is_some() {
            "cancelled"
        } else {
            "completed"
        };
        let details = cancelled.map(|reason| json!({"type": "cancelled", "reason": reason}));
        let (modalities, values) = self.api.modalities();
        let mut response = json!({
            "id": id, "object": "realtime.response", "status": status,
            "status_details": details, "output": output,
            "usage": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0},
        });
        if let Some(map) = response.as_object_mut() {
            map.insert(modalities.into(), values);
        }
        self.emit(json!({"type": "response.done", "response": response}));
        self.shared.count(|c| &c.responses);
        if let Some(reason) = cancelled {
            self.shared.count(|c| &c.cancels);
            tracing::debug!(response = %id, reason, sent_ms, "stand-in: response cancelled");
        }
        self.publish();
        if plan.drop_after {
            self.drop_now = true;
        }
        if cancelled.is_none()
            && let Some(next) = self.queued.pop_front()
        {
            self.start_response(next);
        }
    }

    /// The function call item of response `response_id`: its events, and
    /// the item for `response.done`.
    fn function_call(&mut self, response_id: &str, tool: &ToolCall) -> Value {
        let call_id = self.id("call");
        let item_id = self.id("item");
        let arguments = tool.arguments().to_string();
        self.shared.count(|c| &c.function_calls);
        let item = |status: &str, arguments: &str| {
            json!({
                "id": item_id, "object": "realtime.item", "type": "function_call", "status": status,
                "name": tool.name(), "call_id": call_id, "arguments": arguments,
            })
        };
        let added = item("in_progress", "");
        let done = item("completed", &arguments);
        self.emit(json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 1, "item": added}));
        let previous = self.last_item_id.clone();
        self.push_record(
            item_id.clone(),
            Body::FunctionCall {
                call_id: call_id.clone(),
                name: tool.name().into(),
                arguments: arguments.clone(),
            },
        );
        match self.api {
            Api::Ga => self.emit(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": added})),
            Api::Beta => self.emit(json!({"type": "conversation.item.created", "previous_item_id": previous, "item": added})),
        }
        let at = |kind: &str| json!({"type": kind, "response_id": response_id, "item_id": item_id, "output_index": 1, "call_id": call_id});
        let mut delta = at("response.function_call_arguments.delta");
        delta["delta"] = json!(arguments);
        self.emit(delta);
        let mut args_done = at("response.function_call_arguments.done");
        args_done["name"] = json!(tool.name());
        args_done["arguments"] = json!(arguments);
        self.emit(args_done);
        self.emit(json!({"type": "response.output_item.done", "response_id": response_id, "output_index": 1, "item": done}));
        if self.api == Api::Ga {
            self.emit(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": done}));
        }
        done
    }

    /// `ms` of a sine tone as PCM16LE at 24 kHz, continuing the phase.
    fn tone(&mut self, ms: u64) -> Vec<u8> {
        let frames = usize::try_from(ms * 24).unwrap_or(0);
        let step = std::f64::consts::TAU * f64::from(self.shared.config.tone_hz) / 24_000.0;
        let mut pcm = Vec::with_capacity(frames * 2);
        for _ in 0..frames {
            let sample = (self.phase.sin() * 0.2 * f64::from(i16::MAX)) as i16;
            pcm.extend_from_slice(&sample.to_le_bytes());
            self.phase = (self.phase + step) % std::f64::consts::TAU;
        }
        pcm
    }
}
