//! One connection's protocol state: turns client events into the server
//! events to send back. No I/O: the caller hands in the time and sends
//! what [`Conversation::poll`] returns, so it is easy to reason about.
//! Responses stream from `response.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use steward::ws::realtime::{self, ClientEvent};
use tokio::time::Instant;

use super::history::{self, Entry};
use super::response::{Plan, Streaming};
use super::session::{duration_text, initial_session, merge, set_path};
use super::tools::ToolCall;
use super::vad::{self, Detection, Vad, VadEvent, VadSettings};
use super::{Api, BYTES_PER_MS, Shared};

/// Items kept per connection (for truncation and the published
/// conversation); older ones are forgotten.
const MAX_RECORDS: usize = 1024;
/// Items a replay may bring before the oldest are forgotten.
const MAX_REPLAYED: usize = 4 * history::MAX_KEPT;
/// Input audio kept while server VAD hears no speech.
const IDLE_KEEP_MS: u64 = 60_000;
/// The service's smallest commit.
const MIN_COMMIT_MS: u64 = 100;

/// A conversation item as the stand-in keeps it.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) id: String,
    pub(super) body: Body,
}

#[derive(Debug)]
pub(super) enum Body {
    User {
        text: String,
    },
    System,
    Assistant {
        /// The whole answer's transcript.
        planned: String,
        /// The whole answer's audio; 0 for a text message.
        planned_ms: u64,
        /// Audio sent so far.
        sent_ms: u64,
        /// Where the client truncated it.
        heard_ms: Option<u64>,
        done: bool,
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

impl Body {
    /// The item as a replay must reproduce it, if it is part of the
    /// conversation.
    fn entry(&self) -> Option<Entry> {
        match self {
            Body::User { text } => Some(Entry::User { text: text.clone() }),
            Body::System => None,
            Body::Assistant {
                planned,
                planned_ms,
                sent_ms,
                heard_ms,
                done,
            } => {
                if !done {
                    return None;
                }
                let transcript = if *planned_ms == 0 {
                    planned.clone()
                } else {
                    history::prefix(planned, *sent_ms, *planned_ms)
                };
                let heard = heard_ms.map(|ms| history::prefix(planned, ms, *planned_ms));
                if heard.as_deref().unwrap_or(&transcript).is_empty() {
                    return None; // nothing of it was heard
                }
                Some(Entry::Assistant { transcript, heard })
            }
            Body::FunctionCall {
                call_id,
                name,
                arguments,
            } => Some(Entry::FunctionCall {
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            }),
            Body::FunctionOutput { call_id, output } => Some(Entry::FunctionOutput {
                call_id: call_id.clone(),
                output: output.clone(),
            }),
        }
    }
}

/// Whether this connection is replaying a history.
#[derive(Debug)]
enum Replay {
    /// Nothing but `session.update` so far.
    Undecided,
    /// Items replayed so far (the newest [`MAX_REPLAYED`]) and their count.
    Open(Vec<Value>, u64),
    Closed,
}

pub(super) struct Conversation {
    pub(super) session: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) api: Api,
    /// The time of the event being handled.
    pub(super) now: Instant,
    next_id: u64,
    /// Events to send, in order.
    pub(super) out: Vec<String>,
    /// The client event being handled, for errors.
    client_event_id: Option<String>,
    session_json: Value,
    detection: Detection,
    /// Uncommitted input audio; `buffer[0]` is byte `buffer_start` of the
    /// connection's input.
    buffer: Vec<u8>,
    buffer_start: u64,
    input_bytes: u64,
    vad: Vad,
    /// The user item the speech in progress becomes.
    speech_item: Option<String>,
    pub(super) audio_turns: u64,
    /// The latest audio turn's number over every connection of the
    /// stand-in (`drop_every` counts these: a renewal's new connection
    /// does not start the count again).
    stand_in_turn: u64,
    pub(super) records: VecDeque<Record>,
    records_dropped: usize,
    pub(super) last_item_id: Option<String>,
    pending_tool: Option<ToolCall>,
    last_output: Option<String>,
    /// A committed audio turn waiting for `response.create` (its input ms).
    unanswered: Option<u64>,
    pub(super) active: Option<Streaming>,
    pub(super) queued: VecDeque<Plan>,
    /// Tone phase, continued across deltas.
    pub(super) phase: f64,
    /// Audio deltas sent on this connection.
    pub(super) deltas: u64,
    replay: Replay,
    /// Set once the connection should go away (after an answer is whole).
    pub(super) drop_now: bool,
}

impl Conversation {
    pub(super) fn new(session: u64, shared: Arc<Shared>) -> Self {
        let api = shared.config.api;
        let limit_s = match (shared.config.session_limit_ms, api) {
            (0, Api::Ga) => 3600,
            (0, Api::Beta) => 1800,
            (ms, _) => ms.div_ceil(1000),
        };
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut this = Self {
            session,
            shared,
            api,
            now: Instant::now(),
            next_id: 0,
            out: Vec::new(),
            client_event_id: None,
            session_json: Value::Null,
            detection: Detection::Vad(VadSettings::default()),
            buffer: Vec::new(),
            buffer_start: 0,
            input_bytes: 0,
            vad: Vad::default(),
            speech_item: None,
            audio_turns: 0,
            stand_in_turn: 0,
            records: VecDeque::new(),
            records_dropped: 0,
            last_item_id: None,
            pending_tool: None,
            last_output: None,
            unanswered: None,
            active: None,
            queued: VecDeque::new(),
            phase: 0.0,
            deltas: 0,
            replay: Replay::Undecided,
            drop_now: false,
        };
        let id = this.id("sess");
        this.session_json = initial_session(api, &id, unix + limit_s);
        this
    }

    pub(super) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_s{}_{}", self.session, self.next_id)
    }

    /// Queues a server event (its `event_id` added).
    pub(super) fn emit(&mut self, mut event: Value) {
        let id = self.id("event");
        if let Some(map) = event.as_object_mut() {
            map.insert("event_id".into(), Value::String(id));
        }
        self.out.push(event.to_string());
    }

    /// Queues an `error` event of type `invalid_request_error`.
    pub(super) fn error(&mut self, code: &str, message: &str, param: Option<&str>) {
        self.shared.count(|c| &c.errors_sent);
        tracing::debug!(code, message, "stand-in: error event");
        let client_event = self.client_event_id.clone();
        self.emit(json!({
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": param,
                "event_id": client_event,
            },
        }));
    }

    pub(super) fn greeting(&mut self) {
        let session = self.session_json.clone();
        self.emit(json!({"type": "session.created", "session": session}));
    }

    /// What is still due, then the `session_expired` error sent at the
    /// session limit.
    pub(super) fn expire(&mut self) -> Vec<String> {
        self.shared.count(|c| &c.sessions_expired);
        self.client_event_id = None;
        let limit = duration_text(self.shared.config.session_limit_ms);
        self.emit(json!({
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "session_expired",
                "message": format!("Your session hit the maximum duration of {limit}."),
                "param": null,
                "event_id": null,
            },
        }));
        self.shared.count(|c| &c.errors_sent);
        std::mem::take(&mut self.out)
    }

    pub(super) fn binary(&mut self) {
        self.client_event_id = None;
        self.error(
            "invalid_request_error",
            "binary frames are not part of the protocol",
            None,
        );
    }

    /// The connection ended: a replay still open is checked now.
    pub(super) fn end(&mut self) {
        if matches!(self.replay, Replay::Open(..)) {
            self.finish_replay();
        }
    }

    pub(super) fn handle(&mut self, text: &str, now: Instant) {
        self.now = now;
        let event = match ClientEvent::parse(text) {
            Ok(event) => event,
            Err(_) => {
                self.client_event_id = None;
                return self.error("invalid_json", "the event is not JSON", None);
            }
        };
        self.client_event_id = client_event_id(&event);
        self.replay_step(&event);
        match event {
            ClientEvent::SessionUpdate(update) => self.session_update(update.session),
            ClientEvent::InputAudioBufferAppend(append) => self.append(&append.audio),
            ClientEvent::InputAudioBufferCommit(_) => self.commit(),
            ClientEvent::InputAudioBufferClear(_) => {
                self.buffer = Vec::new();
                self.buffer_start = self.input_bytes;
                self.vad.reset();
                self.speech_item = None;
                self.emit(json!({"type": "input_audio_buffer.cleared"}));
            }
            ClientEvent::ConversationItemCreate(create) => self.item_create(create.item),
            ClientEvent::ResponseCreate(_) => self.response_create(),
            ClientEvent::ResponseCancel(cancel) => self.response_cancel(cancel.response_id),
            ClientEvent::Other(value) => {
                let kind = value
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match kind {
                    "conversation.item.truncate" => self.truncate(&value),
                    "conversation.item.delete" => self.item_delete(&value),
                    "" => self.error("invalid_request_error", "the event has no type", None),
                    known if KNOWN.contains(&known) => {
                        let message = format!("malformed {known} event");
                        self.error("invalid_value", &message, None);
                    }
                    other => {
                        let message = format!("unknown event type {:?}", clip(other, 64));
                        self.error("unknown_event", &message, None);
                    }
                }
            }
            other => {
                let message = format!("unsupported event type {:?}", other.event_type());
                self.error("unknown_event", &message, None);
            }
        }
    }

    // -- session ---------------------------------------------------------------

    fn session_update(&mut self, update: steward::ws::realtime::SessionConfig) {
        let Ok(Value::Object(mut update)) = serde_json::to_value(update) else {
            return self.error(
                "invalid_value",
                "session must be an object",
                Some("session"),
            );
        };
        let ga = update
            .get_mut("audio")
            .and_then(|a| a.get_mut("input"))
            .and_then(Value::as_object_mut)
            .and_then(|input| input.remove("turn_detection"));
        let beta = update.remove("turn_detection");
        let detection = match ga.or(beta).map(|td| vad::parse(&td)) {
            None => None,
            Some(Ok(parsed)) => Some(parsed),
            Some(Err(message)) => {
                let param = match self.api {
                    Api::Ga => "session.audio.input.turn_detection",
                    Api::Beta => "session.turn_detection",
                };
                return self.error("invalid_value", &message, Some(param));
            }
        };
        for fixed in ["id", "object", "expires_at", "model"] {
            update.remove(fixed);
        }
        merge(&mut self.session_json, Value::Object(update));
        if let Some((detection, echo)) = detection {
            let path: &[&str] = match self.api {
                Api::Ga => &["audio", "input", "turn_detection"],
                Api::Beta => &["turn_detection"],
            };
            set_path(&mut self.session_json, path, echo);
            if detection != self.detection {
                // The VAD starts listening from here.
                self.vad = Vad::starting_at(self.input_bytes / BYTES_PER_MS);
                self.speech_item = None;
                self.detection = detection;
            }
        }
        let session = self.session_json.clone();
        self.emit(json!({"type": "session.updated", "session": session}));
    }

    // -- input audio -------------------------------------------------------------

    fn append(&mut self, audio: &str) {
        let Ok(bytes) = realtime::decode_audio(audio) else {
            return self.error("invalid_audio", "audio is not base64", Some("audio"));
        };
        let n = bytes.len() as u64;
        if self.buffer.len() + bytes.len() > self.shared.config.max_buffer_bytes {
            self.shared.add(|c| &c.audio_bytes_refused, n);
            return self.error(
                "input_audio_buffer_full",
                "the input audio buffer is full: commit or clear it",
                None,
            );
        }
        self.shared.add(|c| &c.audio_bytes_in, n);
        self.buffer.extend_from_slice(&bytes);
        self.input_bytes += n;
        let Detection::Vad(settings) = &self.detection else {
            return;
        };
        let settings = settings.clone();
        let mut events = Vec::new();
        self.vad.push(&settings, &bytes, &mut events);
        for event in events {
            match event {
                VadEvent::Started {
                    audio_start_ms,
                    onset_ms,
                } => self.speech_started(&settings, audio_start_ms, onset_ms),
                VadEvent::Stopped { audio_end_ms } => self.speech_stopped(&settings, audio_end_ms),
            }
        }
        if !self.vad.speaking() {
            // Idle: no need to keep hours of silence (a manual commit takes
            // what is left).
            let keep =
                (settings.prefix_padding_ms + vad::FRAME_MS).max(IDLE_KEEP_MS) * BYTES_PER_MS;
            self.drop_input_before(self.input_bytes.saturating_sub(keep));
        }
    }

    /// Forgets buffered input audio before byte `at` of the connection's input.
    fn drop_input_before(&mut self, at: u64) {
        let cut = at.saturating_sub(self.buffer_start) & !1;
        let cut = usize::try_from(cut)
            .unwrap_or(usize::MAX)
            .min(self.buffer.len());
        if cut > 0 {
            self.buffer.drain(..cut);
            self.buffer_start += cut as u64;
        }
    }

    fn speech_started(&mut self, settings: &VadSettings, audio_start_ms: u64, onset_ms: u64) {
        self.shared.count(|c| &c.speech_started);
        self.drop_input_before(audio_start_ms * BYTES_PER_MS);
        let audio_start_ms = audio_start_ms.max(self.buffer_start / BYTES_PER_MS);
        let item_id = self.id("item");
        self.speech_item = Some(item_id.clone());
        tracing::debug!(audio_start_ms, onset_ms, "stand-in: speech started");
        self.emit(json!({
            "type": "input_audio_buffer.speech_started",
            "audio_start_ms": audio_start_ms,
            "item_id": item_id,
        }));
        if let Some(active) = &self.active {
            self.shared.count(|c| &c.barge_ins);
            tracing::debug!(response = %active.id, "stand-in: barge-in");
            if settings.interrupt_response {
                self.queued.clear();
                self.finish_response(Some("turn_detected"));
            }
        }
    }

    fn speech_stopped(&mut self, settings: &VadSettings, audio_end_ms: u64) {
        let item_id = match self.speech_item.take() {
            Some(id) => id,
            None => self.id("item"),
        };
        self.emit(json!({
            "type": "input_audio_buffer.speech_stopped",
            "audio_end_ms": audio_end_ms,
            "item_id": item_id,
        }));
        let end = audio_end_ms * BYTES_PER_MS;
        let take = usize::try_from(end.saturating_sub(self.buffer_start) & !1)
            .unwrap_or(usize::MAX)
            .min(self.buffer.len());
        self.buffer.drain(..take);
        self.buffer_start += take as u64;
        self.commit_turn(
            item_id,
            take as u64 / BYTES_PER_MS,
            settings.create_response,
        );
    }

    fn commit(&mut self) {
        let ms = self.buffer.len() as u64 / BYTES_PER_MS;
        if ms < MIN_COMMIT_MS {
            let message = format!(
                "Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms of audio, but buffer only has {:.2}ms of audio.",
                self.buffer.len() as f64 / BYTES_PER_MS as f64
            );
            return self.error("input_audio_buffer_commit_empty", &message, None);
        }
        self.buffer = Vec::new();
        self.buffer_start = self.input_bytes;
        self.vad.reset();
        let item_id = match self.speech_item.take() {
            Some(id) => id,
            None => self.id("item"),
        };
        let respond = match &self.detection {
            Detection::Vad(settings) => settings.create_response,
            Detection::Manual => false,
        };
        self.commit_turn(item_id, ms, respond);
    }

    /// A committed audio turn: the user item, its transcript, and the
    /// answer now (`respond`) or on `response.create`.
    fn commit_turn(&mut self, item_id: String, ms: u64, respond: bool) {
        self.stand_in_turn = self.shared.counters.turns.fetch_add(1, Relaxed) + 1;
        self.audio_turns += 1;
        let previous = self.last_item_id.clone();
        self.emit(json!({
            "type": "input_audio_buffer.committed",
            "previous_item_id": previous,
            "item_id": item_id,
        }));
        let transcript = format!("user turn {} ({ms} ms)", self.audio_turns);
        let item = |transcript: Value| {
            json!({
                "id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": transcript}],
            })
        };
        let added = item(Value::Null);
        let done = item(Value::String(transcript.clone()));
        self.push_record(
            item_id.clone(),
            Body::User {
                text: transcript.clone(),
            },
        );
        self.emit_item(previous, added, Some(done));
        self.emit(json!({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": transcript,
            "usage": {"type": "duration", "seconds": ms as f64 / 1000.0},
        }));
        if respond {
            let plan = self.turn_plan(ms);
            self.start_response(plan);
        } else {
            self.unanswered = Some(ms);
        }
    }

    // -- items -------------------------------------------------------------------

    /// Announces an item: `conversation.item.added` and `.done` (GA), or
    /// `conversation.item.created` (beta).
    pub(super) fn emit_item(
        &mut self,
        previous: Option<String>,
        added: Value,
        done: Option<Value>,
    ) {
        match self.api {
            Api::Ga => {
                self.emit(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": added}));
                if let Some(done) = done {
                    self.emit(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": done}));
                }
            }
            Api::Beta => {
                let item = done.unwrap_or(added);
                self.emit(json!({"type": "conversation.item.created", "previous_item_id": previous, "item": item}));
            }
        }
    }

    /// Adds an item to the conversation and publishes it.
    pub(super) fn push_record(&mut self, id: String, body: Body) {
        self.last_item_id = Some(id.clone());
        self.records.push_back(Record { id, body });
        while self.records.len() > MAX_RECORDS {
            self.records.pop_front();
            self.records_dropped += 1;
        }
        self.publish();
    }

    /// `conversation.item.delete {item_id}` → `conversation.item.deleted`;
    /// an unknown id is an error, as at the service.
    fn item_delete(&mut self, event: &Value) {
        let Some(item_id) = event.get("item_id").and_then(Value::as_str) else {
            return self.error(
                "missing_required_parameter",
                "Missing required parameter: 'item_id'.",
                Some("item_id"),
            );
        };
        let item_id = clip(item_id, 128);
        let Some(at) = self.records.iter().rposition(|r| r.id == item_id) else {
            let message =
                format!("Error deleting item: the item with id '{item_id}' does not exist.");
            return self.error("item_delete_invalid_item_id", &message, Some("item_id"));
        };
        self.records.remove(at);
        if self.last_item_id.as_deref() == Some(item_id.as_str()) {
            self.last_item_id = self.records.back().map(|r| r.id.clone());
        }
        self.shared.count(|c| &c.items_deleted);
        self.emit(json!({"type": "conversation.item.deleted", "item_id": item_id}));
        self.publish();
    }

    pub(super) fn record_mut(&mut self, id: &str) -> Option<&mut Record> {
        self.records.iter_mut().rev().find(|r| r.id == id)
    }

    /// Makes this connection's conversation the latest one (not while a
    /// replay is still coming in).
    pub(super) fn publish(&mut self) {
        if matches!(self.replay, Replay::Open(..)) {
            return;
        }
        let entries: Vec<Entry> = self.records.iter().filter_map(|r| r.body.entry()).collect();
        let total = entries.len() + self.records_dropped;
        self.shared.latest.lock().publish(entries, total);
    }

    fn item_create(&mut self, mut item: Value) {
        let replaying = matches!(self.replay, Replay::Open(..));
        let field = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let kind = field("type");
        let body = match kind.as_str() {
            "message" => match field("role").as_str() {
                "user" => {
                    let text = history::message_text(&item, &["input_text", "text"]);
                    if !replaying {
                        match ToolCall::parse(&text) {
                            Some(tool) => {
                                self.shared.count(|c| &c.text_requests);
                                self.pending_tool = Some(tool);
                            }
                            None => {
                                tracing::debug!(text = %clip(&text, 64), "stand-in: plain text message");
                            }
                        }
                    }
                    Body::User { text }
                }
                "assistant" => Body::Assistant {
                    planned: history::message_text(&item, &["output_text", "text"]),
                    planned_ms: 0,
                    sent_ms: 0,
                    heard_ms: None,
                    done: true,
                },
                "system" => Body::System,
                other => {
                    let message = format!("unsupported message role {:?}", clip(other, 64));
                    return self.error("invalid_value", &message, Some("item.role"));
                }
            },
            "function_call" => Body::FunctionCall {
                call_id: field("call_id"),
                name: field("name"),
                arguments: field("arguments"),
            },
            "function_call_output" => {
                let output = field("output");
                if !replaying {
                    self.shared.count(|c| &c.function_outputs);
                    self.last_output = Some(output.clone());
                }
                Body::FunctionOutput {
                    call_id: field("call_id"),
                    output,
                }
            }
            other => {
                let message = format!("unsupported item type {:?}", clip(other, 64));
                return self.error("invalid_value", &message, Some("item.type"));
            }
        };
        if let Replay::Open(items, count) = &mut self.replay {
            items.push(item.clone());
            *count += 1;
            if items.len() > MAX_REPLAYED {
                items.drain(..MAX_REPLAYED / 2);
            }
        }
        let id = match item.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() && id.len() <= 64 => id.to_string(),
            _ => self.id("item"),
        };
        if let Some(map) = item.as_object_mut() {
            map.insert("id".into(), Value::String(id.clone()));
            map.insert("object".into(), json!("realtime.item"));
            map.insert("status".into(), json!("completed"));
        }
        let previous = self.last_item_id.clone();
        self.push_record(id, body);
        self.emit_item(previous, item.clone(), Some(item));
    }

    fn truncate(&mut self, event: &Value) {
        let Some(item_id) = event.get("item_id").and_then(Value::as_str) else {
            self.shared.count(|c| &c.truncations_rejected);
            return self.error(
                "missing_required_parameter",
                "Missing required parameter: 'item_id'.",
                Some("item_id"),
            );
        };
        let item_id = clip(item_id, 128);
        let content_index = event.get("content_index").and_then(Value::as_u64);
        let audio_end_ms = event.get("audio_end_ms").and_then(Value::as_u64);
        let Some(record) = self.record_mut(&item_id) else {
            self.shared.count(|c| &c.truncations_rejected);
            let message =
                format!("Error truncating item: the item with id '{item_id}' does not exist.");
            return self.error("item_truncate_invalid_item_id", &message, Some("item_id"));
        };
        let audio_ms = match &record.body {
            Body::Assistant {
                planned_ms,
                sent_ms,
                heard_ms,
                ..
            } if *planned_ms > 0 && *sent_ms > 0 => heard_ms.unwrap_or(*sent_ms),
            _ => {
                self.shared.count(|c| &c.truncations_rejected);
                return self.error(
                    "unsupported_content_type",
                    "Only model output audio messages can be truncated",
                    None,
                );
            }
        };
        let (Some(0), Some(end)) = (content_index, audio_end_ms) else {
            self.shared.count(|c| &c.truncations_rejected);
            let (message, param) = match (content_index, audio_end_ms) {
                (Some(0), _) => (
                    "audio_end_ms must be a whole number of ms".to_string(),
                    "audio_end_ms",
                ),
                (index, _) => (
                    format!(
                        "Invalid content_index: {}; the item has one content part (0)",
                        index.map_or("missing".into(), |i| i.to_string())
                    ),
                    "content_index",
                ),
            };
            return self.error("invalid_value", &message, Some(param));
        };
        if end > audio_ms {
            self.shared.count(|c| &c.truncations_rejected);
            let message = format!("Audio content of {audio_ms}ms is already shorter than {end}ms");
            return self.error("invalid_value", &message, None);
        }
        if let Body::Assistant { heard_ms, .. } = &mut record.body {
            *heard_ms = Some(end);
        }
        self.shared.count(|c| &c.truncations_ok);
        self.publish();
        self.emit(json!({
            "type": "conversation.item.truncated",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": end,
        }));
    }

    // -- responses -----------------------------------------------------------------

    fn response_create(&mut self) {
        if let Some(active) = &self.active {
            let message = format!(
                "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                active.id
            );
            return self.error("conversation_already_has_active_response", &message, None);
        }
        let plan = match self.unanswered.take() {
            Some(input_ms) => self.turn_plan(input_ms),
            None => self.text_plan(),
        };
        self.start_response(plan);
    }

    fn response_cancel(&mut self, response_id: Option<String>) {
        let Some(active) = &self.active else {
            return self.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                None,
            );
        };
        if let Some(id) = response_id
            && id != active.id
        {
            let message = format!(
                "Cancellation failed: no active response with id '{}'",
                clip(&id, 64)
            );
            return self.error("response_cancel_not_active", &message, Some("response_id"));
        }
        self.finish_response(Some("client_cancelled"));
    }

    /// The answer to committed audio turn (the latest) of `input_ms`.
    fn turn_plan(&mut self, input_ms: u64) -> Plan {
        let config = &self.shared.config;
        let audio_ms = if config.reply_audio_ms > 0 {
            u64::from(config.reply_audio_ms)
        } else {
            (input_ms / 2).clamp(100, 10_000)
        };
        let tool = self
            .pending_tool
            .take()
            .or_else(|| ToolCall::scripted(self.audio_turns, config.remember_every));
        let drop_after = config.drop_every > 0
            && self
                .stand_in_turn
                .is_multiple_of(u64::from(config.drop_every));
        Plan {
            audio_ms,
            spoken: format!(
                "I heard {input_ms} ms of audio in turn {}.",
                self.audio_turns
            ),
            tool,
            drop_after,
        }
    }

    /// The answer to text or to a tool's output.
    fn text_plan(&mut self) -> Plan {
        let spoken = match self.last_output.take() {
            Some(output) => format!("Done: {}", clip(&output, 80)),
            None => "Okay.".to_string(),
        };
        let reply = self.shared.config.reply_audio_ms;
        Plan {
            audio_ms: if reply > 0 { u64::from(reply) } else { 300 },
            spoken,
            tool: self.pending_tool.take(),
            drop_after: false,
        }
    }

    // -- replay ------------------------------------------------------------------

    /// Tracks whether the connection replays a history; checks it when the
    /// replay ends.
    fn replay_step(&mut self, event: &ClientEvent) {
        let create = matches!(event, ClientEvent::ConversationItemCreate(_));
        let update = matches!(event, ClientEvent::SessionUpdate(_));
        match &self.replay {
            Replay::Undecided if update => {}
            Replay::Undecided if create && !self.shared.latest.lock().is_empty() => {
                self.replay = Replay::Open(Vec::new(), 0);
            }
            Replay::Undecided => self.replay = Replay::Closed,
            Replay::Open(..) if create || update => {}
            Replay::Open(..) => self.finish_replay(),
            Replay::Closed => {}
        }
    }

    fn finish_replay(&mut self) {
        let Replay::Open(items, count) = std::mem::replace(&mut self.replay, Replay::Closed) else {
            return;
        };
        self.shared.count(|c| &c.replays);
        self.shared.add(|c| &c.replayed_items, count);
        let result = self.shared.latest.lock().check(&items);
        match result {
            Ok(()) => {
                self.shared.count(|c| &c.replays_matched);
                tracing::info!(
                    items = count,
                    "stand-in: the replayed history matches the conversation so far"
                );
            }
            Err(difference) => {
                self.shared.count(|c| &c.replay_mismatches);
                tracing::warn!(items = count, %difference, "stand-in: the replayed history differs from the conversation so far");
            }
        }
        self.publish();
    }
}

/// Client event types the codec types; one that arrives as raw JSON did
/// not fit its shape.
const KNOWN: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
];

fn client_event_id(event: &ClientEvent) -> Option<String> {
    let id = match event {
        ClientEvent::SessionUpdate(e) => e.event_id.as_deref(),
        ClientEvent::InputAudioBufferAppend(e) => e.event_id.as_deref(),
        ClientEvent::InputAudioBufferCommit(e) | ClientEvent::InputAudioBufferClear(e) => {
            e.event_id.as_deref()
        }
        ClientEvent::ConversationItemCreate(e) => e.event_id.as_deref(),
        ClientEvent::ResponseCreate(e) => e.event_id.as_deref(),
        ClientEvent::ResponseCancel(e) => e.event_id.as_deref(),
        ClientEvent::Other(v) => v.get("event_id").and_then(Value::as_str),
        _ => None,
    };
    id.map(|id| clip(id, 128))
}

/// At most `max` characters of `s` (for logs and short answers).
pub(super) fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
