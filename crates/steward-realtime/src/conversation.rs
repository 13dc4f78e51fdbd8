//! The conversation state machine: server events and local decisions in,
//! client events out. No I/O and no clock, so every interleaving can be
//! tested against a model.
//!
//! Playout positions are frames (24 kHz) in the coordinate of
//! [`Playout::played_frames`](crate::Playout::played_frames): a cursor
//! says where the next written frame will play, each answer item remembers
//! where its runs of audio were written (a service may interleave the audio
//! of two items), and the share of an item that was played is, over its
//! runs, the played position less each run's start, clamped to the run.

use std::collections::VecDeque;

use serde_json::{Value, json};
use steward_ws::realtime::{self, ClientEvent, ResponseCancel, ServerEvent};

use crate::bounded::{BoundedMap, Evicted};
use crate::config::{BYTES_PER_MS, SAMPLE_RATE};
use crate::error::{ServerError, ServerErrorCode};
use crate::history::{History, HistoryItem};
use crate::stats::RealtimeStats;

mod decision;

use decision::played;
pub use decision::{BargeIn, Step, TruncationCheck};

/// Answer items whose playout is tracked (the newest).
const OUTPUTS_KEPT: usize = 64;
/// Truncations awaiting the service's word; tool calls waiting for a name.
const PENDING_KEPT: usize = 64;
/// Bytes of ids those truncations hold.
const PENDING_BYTES: usize = 64 << 10;
/// Bytes of arguments the tool calls waiting for a name hold (one call's
/// arguments reach the 16 MiB message limit; a larger one is kept alone).
const UNNAMED_BYTES: usize = 32 << 20;
/// Items we created that the service has not confirmed yet.
const CREATED_KEPT: usize = 256;
/// Bytes of text those items hold.
const CREATED_BYTES: usize = 8 << 20;

/// What the application hears about the conversation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RealtimeEvent {
    /// A session is configured and its history replayed (the first one
    /// too, with nothing replayed).
    SessionReady {
        /// Sessions so far, this one included.
        session: u64,
        /// Why it started: `"start"`, `"renewal"`, `"reconnect"`, `"fresh"`.
        reason: &'static str,
        /// History items replayed into it.
        replayed: u64,
    },
    /// The model asks for a tool; answer with
    /// [`RealtimeSession::tool_output`](crate::RealtimeSession::tool_output).
    ToolCall {
        /// The id to answer with.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON text.
        arguments: String,
    },
    /// The user's turn was transcribed.
    UserTranscript {
        /// The item.
        item_id: String,
        /// The text.
        text: String,
    },
    /// The user started speaking.
    SpeechStarted,
    /// The user stopped speaking.
    SpeechStopped,
    /// The user talked over an answer: playback was cleared.
    BargeIn {
        /// The `audio_end_ms` sent in the truncation, if one was sent.
        truncated_ms: Option<u64>,
        /// Whether a response was cancelled.
        cancelled: bool,
    },
    /// A response ended.
    ResponseDone {
        /// `completed`, `cancelled`, `failed`, `incomplete`.
        status: String,
    },
    /// The service sent an `error` event.
    ServerError(ServerError),
    /// The link was lost; the session reconnects and replays.
    LinkLost {
        /// Why, as text.
        reason: String,
    },
}

/// The audio of one answer item.
#[derive(Debug, Clone)]
struct Output {
    item_id: String,
    content_index: u32,
    /// Which service session it belongs to.
    session: u64,
    received: u64,
    /// Frames of it the played position has passed (played for good).
    passed: u64,
    /// Its other written audio: (playout position of the first frame,
    /// frames) of each run written back to back.
    runs: Vec<(u64, u64)>,
    /// Cut short (or never played): later audio is discarded.
    interrupted: bool,
    /// Its response is done: no more audio may come.
    done: bool,
    response_id: Option<String>,
}

impl Output {
    fn played(&self, played_now: u64) -> u64 {
        played(self.passed, &self.runs, played_now)
    }
}

/// One conversation's state across sessions.
#[derive(Debug)]
pub struct Conversation {
    history: History,
    response: Option<String>,
    speaking: bool,
    outputs: VecDeque<Output>,
    cursor: u64,
    session: u64,
    /// Truncations sent and not yet confirmed: event id → item id.
    pending: BoundedMap<String>,
    /// Tool calls whose name comes only with `response.done`.
    unnamed_calls: BoundedMap<String>,
    /// Items we created, entered in the history when the service echoes
    /// them (its order, not ours): tool outputs by call id, user texts by
    /// item id.
    created: BoundedMap<HistoryItem>,
    /// A `response.create` waits for the response in progress to end.
    response_wanted: bool,
    /// The response a barge-in cancelled, until it is done: an answer item
    /// it still adds was never heard.
    cancelled: Option<String>,
    next_id: u64,
    stats: RealtimeStats,
}

fn frames_to_ms(frames: u64) -> u64 {
    frames * 1000 / SAMPLE_RATE
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = v;
    for key in path {
        at = at.get(*key)?;
    }
    at.as_str()
}

impl Conversation {
    /// A new conversation with a history of at most `items` / `bytes`.
    #[must_use]
    pub fn new(history_items: usize, history_bytes: usize) -> Self {
        Self {
            history: History::new(history_items, history_bytes),
            response: None,
            speaking: false,
            outputs: VecDeque::new(),
            cursor: 0,
            session: 0,
            pending: BoundedMap::new(PENDING_KEPT, PENDING_BYTES),
            unnamed_calls: BoundedMap::new(PENDING_KEPT, UNNAMED_BYTES),
            created: BoundedMap::new(CREATED_KEPT, CREATED_BYTES),
            response_wanted: false,
            cancelled: None,
            next_id: 0,
            stats: RealtimeStats::default(),
        }
    }

    /// The history.
    #[must_use]
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The counters this state machine keeps.
    #[must_use]
    pub fn stats(&self) -> &RealtimeStats {
        &self.stats
    }

    /// For the driver's own counters.
    pub(crate) fn stats_mut(&mut self) -> &mut RealtimeStats {
        &mut self.stats
    }

    /// A response is in progress.
    #[must_use]
    pub fn responding(&self) -> bool {
        self.response.is_some()
    }

    /// The user is speaking (between `speech_started` and `speech_stopped`).
    #[must_use]
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// No response in progress and the user not speaking: a session may
    /// be switched here.
    #[must_use]
    pub fn at_turn_boundary(&self) -> bool {
        !self.responding() && !self.speaking
    }

    /// Written audio is still waiting to be played at `played_now`.
    #[must_use]
    pub fn playing(&self, played_now: u64) -> bool {
        played_now < self.cursor
    }

    /// A new service session starts (renewal or reconnect): what the old
    /// one had in progress is gone; its answers' audio may still play but
    /// can no longer be truncated there.
    pub fn new_session(&mut self) {
        self.session += 1;
        self.response = None;
        self.speaking = false;
        self.pending.clear();
        self.unnamed_calls.clear();
        self.created.clear();
        self.response_wanted = false;
        self.cancelled = None;
        for o in &mut self.outputs {
            o.done = true;
        }
    }

    fn event_id(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("steward_{what}_{}", self.next_id)
    }

    fn output(&mut self, item_id: &str) -> Option<&mut Output> {
        self.outputs
            .iter_mut()
            .rev()
            .find(|o| o.item_id == item_id && o.session == self.session)
    }

    /// Handles one event from the service.
    pub fn on_server(&mut self, event: &ServerEvent) -> Step {
        let mut step = Step::default();
        if let Some(delta) = event.audio_delta() {
            self.audio_delta(delta, &mut step);
            return step;
        }
        if let Some(delta) = event.transcript_delta() {
            let item = delta.item_id.clone().unwrap_or_default();
            let text = delta.delta.clone();
            let found = self.history.update(&item, |h| {
                if let HistoryItem::Assistant { text: t, .. } = h {
                    t.push_str(&text);
                }
            });
            // An answer removed as unheard is known, just not kept.
            if !found && self.output(&item).is_none() {
                self.stats.protocol_error("unknown_item");
            }
            return step;
        }
        match event {
            ServerEvent::SessionCreated(created) => {
                let expires = created
                    .session
                    .extra
                    .get("expires_at")
                    .and_then(Value::as_u64);
                step.created = Some(expires);
            }
            ServerEvent::SpeechStarted(_) => {
                self.speaking = true;
                step.barge_in = true;
                step.notice = Some(RealtimeEvent::SpeechStarted);
            }
            ServerEvent::SpeechStopped(_) => {
                if !self.speaking {
                    self.stats.protocol_error("out_of_order");
                }
                self.speaking = false;
                step.notice = Some(RealtimeEvent::SpeechStopped);
            }
            ServerEvent::ResponseCreated(r) => {
                if self.response.is_some() {
                    self.stats.protocol_error("out_of_order");
                }
                self.response = Some(r.response_id().unwrap_or_default().to_string());
            }
            ServerEvent::ResponseDone(r) => self.response_done(&r.response, &mut step),
            ServerEvent::FunctionCallArgumentsDone(call) => match &call.name {
                Some(name) => {
                    step.notice = Some(self.tool_call(&call.call_id, name, &call.arguments));
                }
                None => {
                    let size = call.call_id.len() + call.arguments.len();
                    let evicted = self.unnamed_calls.insert(
                        call.call_id.clone(),
                        call.arguments.clone(),
                        size,
                    );
                    self.evicted("tool calls waiting for their name", evicted);
                }
            },
            ServerEvent::Error(e) => self.server_error(&e.error, &mut step),
            ServerEvent::RateLimitsUpdated(r) => {
                self.stats.rate_limits.clone_from(&r.rate_limits);
            }
            ServerEvent::Other(v) => self.other(v, &mut step),
            _ => {}
        }
        step
    }

    fn audio_delta(&mut self, delta: &realtime::Delta, step: &mut Step) {
        let item_id = delta.item_id.clone().unwrap_or_default();
        let pcm = match realtime::decode_audio(&delta.delta) {
            Ok(b) if b.len() % 2 == 0 => b,
            _ => {
                self.stats.protocol_error("bad_audio_delta");
                return;
            }
        };
        let content_index = delta.content_index.unwrap_or(0);
        let n = pcm.len() as u64;
        let Some(out) = self.output(&item_id) else {
            self.stats.protocol_error("unknown_item");
            return;
        };
        if out.done && !out.interrupted {
            self.stats.protocol_error("out_of_order");
            return;
        }
        out.content_index = content_index;
        out.received += n / 2;
        let (interrupted, received) = (out.interrupted, out.received);
        self.stats.audio_received_bytes += n;
        if interrupted {
            // The user talked over it: what still comes is not played, but
            // it counts in the share of the text that was heard.
            self.stats.audio_discarded_bytes += n;
            let received_ms = frames_to_ms(received);
            self.history.update(&item_id, |h| {
                if let HistoryItem::Assistant {
                    heard: Some((_, r)),
                    ..
                } = h
                {
                    *r = received_ms;
                }
            });
            return;
        }
        // Nothing to play: a playout takes 0 bytes of an empty chunk, and
        // the driver's play queue would wait behind it for good.
        if pcm.is_empty() {
            return;
        }
        step.play = Some((item_id, pcm));
    }

    fn response_done(&mut self, response: &Value, step: &mut Step) {
        let id = response
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match &self.response {
            Some(current) if current == id || id.is_empty() => {}
            _ => self.stats.protocol_error("out_of_order"),
        }
        self.response = None;
        self.cancelled = None;
        self.stats.responses += 1;
        if std::mem::take(&mut self.response_wanted) {
            step.send.push(ClientEvent::response_create());
        }
        let status = response
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("completed")
            .to_string();
        if status == "cancelled" {
            self.stats.responses_cancelled += 1;
        }
        for o in &mut self.outputs {
            if o.response_id.as_deref() == Some(id) {
                o.done = true;
            }
        }
        // Calls whose name only comes now.
        if let Some(output) = response.get("output").and_then(Value::as_array) {
            for item in output {
                let (Some(call_id), Some(name)) = (
                    item.get("call_id").and_then(Value::as_str),
                    item.get("name").and_then(Value::as_str),
                ) else {
                    continue;
                };
                if let Some(arguments) = self.unnamed_calls.remove(call_id) {
                    step.notice = Some(self.tool_call(call_id, name, &arguments));
                }
            }
        }
        if step.notice.is_none() {
            step.notice = Some(RealtimeEvent::ResponseDone { status });
        }
    }

    fn tool_call(&mut self, call_id: &str, name: &str, arguments: &str) -> RealtimeEvent {
        self.stats.tool_calls += 1;
        self.history.push(HistoryItem::FunctionCall {
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
        });
        RealtimeEvent::ToolCall {
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn server_error(&mut self, detail: &realtime::ErrorDetail, step: &mut Step) {
        let code = ServerErrorCode::parse(detail.code.as_deref());
        *self
            .stats
            .server_errors
            .entry(code.as_str().to_string())
            .or_default() += 1;
        let truncation = detail
            .event_id
            .as_ref()
            .and_then(|id| self.pending.remove(id))
            .is_some()
            || detail.message.contains("already shorter than");
        if truncation {
            self.stats.truncations_rejected += 1;
        }
        if code == ServerErrorCode::SessionExpired {
            step.expired = true;
        }
        step.notice = Some(RealtimeEvent::ServerError(ServerError {
            code,
            kind: detail.kind.clone(),
            message: detail.message.chars().take(512).collect(),
            event_id: detail.event_id.clone(),
        }));
    }

    fn other(&mut self, v: &Value, step: &mut Step) {
        let kind = str_at(v, &["type"]).unwrap_or_default();
        match kind {
            "input_audio_buffer.committed" => {
                self.stats.turns += 1;
                if let Some(item_id) = str_at(v, &["item_id"]) {
                    self.history.push(HistoryItem::User {
                        item_id: item_id.into(),
                        text: None,
                    });
                }
            }
            "conversation.item.input_audio_transcription.completed" => {
                let (Some(item_id), Some(text)) =
                    (str_at(v, &["item_id"]), str_at(v, &["transcript"]))
                else {
                    return;
                };
                let found = self.history.update(item_id, |h| {
                    if let HistoryItem::User { text: t, .. } = h {
                        *t = Some(text.to_string());
                    }
                });
                if !found {
                    self.stats.protocol_error("unknown_item");
                    return;
                }
                step.notice = Some(RealtimeEvent::UserTranscript {
                    item_id: item_id.into(),
                    text: text.into(),
                });
            }
            "response.output_item.added" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                let is_answer = str_at(item, &["type"]) == Some("message")
                    && str_at(item, &["role"]) == Some("assistant");
                let Some(item_id) = str_at(item, &["id"]).filter(|_| is_answer) else {
                    return;
                };
                self.answer_item(item_id, str_at(v, &["response_id"]), step);
            }
            "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
                let (Some(item_id), Some(text)) =
                    (str_at(v, &["item_id"]), str_at(v, &["transcript"]))
                else {
                    return;
                };
                self.history.update(item_id, |h| {
                    if let HistoryItem::Assistant { text: t, .. } = h {
                        *t = text.to_string();
                    }
                });
            }
            "conversation.item.added" | "conversation.item.created" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                let key = match str_at(item, &["type"]) {
                    Some("function_call_output") => str_at(item, &["call_id"]),
                    Some("message") => str_at(item, &["id"]),
                    _ => None,
                };
                if let Some(entry) = key.and_then(|k| self.created.remove(k)) {
                    self.history.push(entry);
                }
            }
            "conversation.item.truncated" => {
                if let Some(item_id) = str_at(v, &["item_id"]) {
                    self.pending.retain(|item| item != item_id);
                }
            }
            _ => {}
        }
    }

    fn answer_item(&mut self, item_id: &str, response_id: Option<&str>, step: &mut Step) {
        if self.output(item_id).is_some() {
            return;
        }
        if self.outputs.len() == OUTPUTS_KEPT {
            self.outputs.pop_front();
        }
        // The cancel crossed this item on the wire: nothing of it is
        // played, and it leaves the service's conversation too.
        let late = response_id.is_some() && self.cancelled.as_deref() == response_id;
        if late {
            self.outputs.push_back(Output {
                item_id: item_id.into(),
                content_index: 0,
                session: self.session,
                received: 0,
                passed: 0,
                runs: Vec::new(),
                interrupted: true,
                done: false,
                response_id: response_id.map(str::to_string),
            });
            step.send.push(self.delete_event(item_id));
            return;
        }
        self.outputs.push_back(Output {
            item_id: item_id.into(),
            content_index: 0,
            session: self.session,
            received: 0,
            passed: 0,
            runs: Vec::new(),
            interrupted: false,
            done: false,
            response_id: response_id.map(str::to_string),
        });
        self.history.push(HistoryItem::Assistant {
            item_id: item_id.into(),
            text: String::new(),
            heard: None,
        });
    }

    /// `frames` of `item_id`'s audio were handed to the playout, whose
    /// position was `played_now`.
    pub fn written(&mut self, item_id: &str, frames: u64, played_now: u64) {
        // Caught up: everything written before has played.
        self.cursor = self.cursor.max(played_now);
        let cursor = self.cursor;
        self.stats.audio_played_bytes += frames * 2;
        if let Some(out) = self.outputs.iter_mut().rev().find(|o| o.item_id == item_id) {
            match out.runs.last_mut() {
                Some((start, n)) if *start + *n == cursor => *n += frames,
                _ => out.runs.push((cursor, frames)),
            }
            // Runs the position has passed need no place of their own.
            out.runs.retain(|&(start, n)| {
                let passed = start + n <= played_now;
                if passed {
                    out.passed += n;
                }
                !passed
            });
        }
        self.cursor += frames;
    }

    /// The user started speaking (the service's `speech_started`, or a local
    /// onset), with the playout at `played_now`: decides what to clear,
    /// cancel, truncate and delete. Counts the onset.
    pub fn barge_in(&mut self, played_now: u64) -> BargeIn {
        self.stats.speech_onsets += 1;
        let playing = self.playing(played_now);
        let mut result = BargeIn {
            clear: playing,
            ..BargeIn::default()
        };
        if !playing && !self.responding() {
            return result;
        }
        result.happened = true;
        self.stats.barge_ins += 1;
        if let Some(id) = self.response.clone() {
            self.cancelled = Some(id.clone());
            let event_id = self.event_id("cancel");
            result
                .send
                .push(ClientEvent::ResponseCancel(ResponseCancel {
                    event_id: Some(event_id),
                    response_id: (!id.is_empty()).then_some(id),
                    ..ResponseCancel::default()
                }));
            result.cancelled = true;
            self.stats.cancels_sent += 1;
        }
        let session = self.session;
        let cut: Vec<Output> = self
            .outputs
            .iter_mut()
            // Not cut already, and not played to its end.
            .filter(|o| !(o.interrupted || o.done && o.played(played_now) >= o.received))
            .map(|o| {
                o.interrupted = true;
                o.clone()
            })
            .collect();
        for o in cut {
            let (item_id, content_index, done) = (o.item_id.clone(), o.content_index, o.done);
            let played_ms = frames_to_ms(o.played(played_now));
            let received_ms = frames_to_ms(o.received);
            let current = o.session == session;
            // Only what was heard stays in the history.
            if played_ms == 0 {
                self.history.remove(&item_id);
                if current {
                    let event = self.delete_event(&item_id);
                    result.send.push(event);
                }
                continue;
            }
            self.history.update(&item_id, |h| {
                if let HistoryItem::Assistant { heard, .. } = h {
                    *heard = Some((played_ms, received_ms));
                }
            });
            // All that arrived was played: nothing to cut, unless the answer
            // is still being made (the service holds more than arrived).
            if !current || (played_ms >= received_ms && done) {
                continue;
            }
            let event_id = self.event_id("truncate");
            let size = event_id.len() + item_id.len();
            let evicted = self.pending.insert(event_id.clone(), item_id.clone(), size);
            self.evicted("truncations waiting for the service's word", evicted);
            result.send.push(ClientEvent::Other(json!({
                "type": "conversation.item.truncate",
                "event_id": event_id,
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": played_ms,
            })));
            result.truncated_ms = Some(played_ms);
            result.checks.push(TruncationCheck {
                sent_frames: played_ms * SAMPLE_RATE / 1000,
                passed: o.passed,
                runs: o.runs,
            });
            self.stats.truncations_sent += 1;
        }
        // The playout is cleared: what comes next plays from here.
        self.cursor = played_now;
        result
    }

    /// `conversation.item.delete` of an answer nobody heard (counted).
    fn delete_event(&mut self, item_id: &str) -> ClientEvent {
        self.stats.items_deleted += 1;
        let event_id = self.event_id("delete");
        ClientEvent::Other(json!({
            "type": "conversation.item.delete",
            "event_id": event_id,
            "item_id": item_id,
        }))
    }

    /// Answers a tool call: the output item, and a `response.create` now
    /// or, while a response is in progress, when it is done (the service
    /// refuses a second one). The output enters the history when the service
    /// confirms it (`conversation.item.added`).
    pub fn tool_output(&mut self, call_id: &str, output: &str) -> Vec<ClientEvent> {
        self.remember_created(
            call_id.into(),
            HistoryItem::FunctionOutput {
                call_id: call_id.into(),
                output: output.into(),
            },
        );
        let mut events = vec![ClientEvent::function_call_output(call_id, output)];
        events.extend(self.want_response());
        events
    }

    /// A typed user message and a response (see
    /// [`tool_output`](Self::tool_output) for when each happens).
    pub fn user_text(&mut self, text: &str) -> Vec<ClientEvent> {
        let item_id = self.event_id("user");
        self.remember_created(
            item_id.clone(),
            HistoryItem::User {
                item_id: item_id.clone(),
                text: Some(text.into()),
            },
        );
        let item = json!({
            "id": item_id, "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}],
        });
        let mut events = vec![ClientEvent::ConversationItemCreate(
            realtime::ConversationItemCreate {
                item,
                ..Default::default()
            },
        )];
        events.extend(self.want_response());
        events
    }

    /// Keeps the map of unconfirmed items bounded (a service that never
    /// echoes must not grow it).
    fn remember_created(&mut self, key: String, item: HistoryItem) {
        let size = key.len() + item.bytes();
        let evicted = self.created.insert(key, item, size);
        self.evicted("created items waiting for the service's echo", evicted);
    }

    /// Counts what a bounded map evicted; warns once per burst.
    fn evicted(&mut self, what: &'static str, evicted: Evicted) {
        self.stats.entries_evicted += evicted.entries;
        if evicted.first_in_burst {
            tracing::warn!(
                what,
                evicted = evicted.entries,
                "the service leaves too much unanswered: the oldest entries are forgotten"
            );
        }
    }

    fn want_response(&mut self) -> Option<ClientEvent> {
        if self.responding() {
            self.response_wanted = true;
            return None;
        }
        Some(ClientEvent::response_create())
    }

    /// The events that replay the history into a new session.
    #[must_use]
    pub fn replay(&self) -> Vec<ClientEvent> {
        self.history.replay()
    }

    /// Audio of an answer dropped before the playout (the play queue was
    /// cleared or full).
    pub fn discarded(&mut self, bytes: u64) {
        self.stats.audio_discarded_bytes += bytes;
    }

    /// Milliseconds of PCM16 24 kHz audio in `bytes`.
    #[must_use]
    pub fn bytes_to_ms(bytes: u64) -> u64 {
        bytes / BYTES_PER_MS
    }
}
