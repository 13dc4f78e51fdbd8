//! Model-based property test: random interleavings of server events (JSON
//! texts, parsed as the session parses them) and local actions (audio
//! written to a simulated playout, the device playing it, barge-ins,
//! renewals, tool outputs, typed messages) against a simple model of what
//! the conversation must decide, checked after every step.
//!
//! The simulated playout is what a real device is: a FIFO queue of written
//! frames with a played position that only moves over frames written, a
//! bounded capacity (audio that does not fit waits in the driver's queue, as
//! in the session), and a clear that takes effect up to one callback period
//! after the barge-in read the position. The model knows exactly which
//! frames of which item the device played.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use proptest::prelude::*;
use serde_json::{Value, json};
use steward_realtime::{
    BargeIn, Conversation, HistoryItem, RealtimeEvent, RealtimeStats, ServerErrorCode,
};
use steward_ws::realtime::{ClientEvent, RateLimit, encode_audio};

use crate::events::{self as ev, feed, ms};

/// Distinct answer items per case: below the crate's window of tracked
/// items (64), so the model need not know which it forgets.
const MAX_ITEMS: usize = 60;
/// The history's byte bound, far above what a case writes: its item bound
/// is what the cases vary.
const HISTORY_BYTES: usize = 1 << 20;
const WORDS: [&str; 8] = [
    "hello ",
    "there ",
    "the ",
    "weather ",
    "is ",
    "fine ",
    "ünïcode ",
    "日本語 ",
];
const STATUSES: [&str; 4] = ["completed", "cancelled", "failed", "incomplete"];

// ---------------------------------------------------------------------------
// Operations.

#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The i-th (mod count) of the things of that kind seen so far.
    Known(u8),
    /// An id the service never sent.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum Payload {
    Frames(u16),
    /// An odd number of bytes: `2k + 1`.
    Odd(u16),
    BadBase64,
}

#[derive(Debug, Clone, Copy)]
enum RespPick {
    Current,
    Absent,
    Stale,
}

#[derive(Debug, Clone, Copy)]
enum DoneId {
    Current,
    Other,
    Absent,
}

#[derive(Debug, Clone, Copy)]
enum ErrorKind {
    /// An error whose `event_id` is a truncate we sent (i-th).
    AnswersTruncate(u8, bool),
    /// The service's "already shorter" message, no event id.
    TooShort,
    SessionExpired,
    RateLimit,
    /// Answers a cancel (an expected race).
    CancelNotActive,
    NoCode,
    OtherCode,
}

#[derive(Debug, Clone)]
enum Op {
    ResponseCreated {
        no_id: bool,
    },
    ItemAdded {
        dup: Option<u8>,
        response: RespPick,
        assistant: bool,
    },
    Audio {
        pick: Pick,
        payload: Payload,
        beta: bool,
    },
    TranscriptDelta {
        pick: Pick,
        word: u8,
        beta: bool,
    },
    TranscriptDone {
        pick: Pick,
        more: bool,
    },
    ResponseDone {
        which: DoneId,
        status: u8,
        name_calls: bool,
    },
    SpeechStarted {
        race: u16,
    },
    SpeechStopped,
    Committed {
        dup: Option<u8>,
    },
    Transcription {
        pick: Pick,
        word: u8,
    },
    FunctionArgs {
        named: bool,
    },
    Error(ErrorKind),
    Truncated {
        pick: u8,
    },
    RateLimits {
        remaining: u16,
    },
    SessionCreated {
        expires_at: Option<u32>,
    },
    UnknownEvent,
    /// The device plays this many frames (at most what is queued).
    Play {
        frames: u32,
    },
    /// The caller's own detector heard the user.
    LocalOnset {
        race: u16,
    },
    NewSession,
    ToolOutput {
        pick: Pick,
    },
    UserText {
        word: u8,
    },
    /// The service echoes an item (one we created, or another).
    Echo {
        pick: Pick,
        beta: bool,
    },
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![8 => any::<u8>().prop_map(Pick::Known), 1 => Just(Pick::Unknown)]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        12 => (1u16..4800).prop_map(Payload::Frames),
        1 => Just(Payload::Frames(0)),
        1 => (0u16..100).prop_map(Payload::Odd),
        1 => Just(Payload::BadBase64),
    ]
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        3 => (any::<u8>(), any::<bool>()).prop_map(|(i, m)| ErrorKind::AnswersTruncate(i, m)),
        1 => Just(ErrorKind::TooShort),
        1 => Just(ErrorKind::SessionExpired),
        1 => Just(ErrorKind::RateLimit),
        1 => Just(ErrorKind::CancelNotActive),
        1 => Just(ErrorKind::NoCode),
        1 => Just(ErrorKind::OtherCode),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8).prop_map(|x| Op::ResponseCreated { no_id: x == 0 }),
        5 => (
            prop::option::weighted(0.15, any::<u8>()),
            prop_oneof![8 => Just(RespPick::Current), 1 => Just(RespPick::Absent), 1 => Just(RespPick::Stale)],
            prop::bool::weighted(0.9),
        )
            .prop_map(|(dup, response, assistant)| Op::ItemAdded { dup, response, assistant }),
        30 => (pick(), payload(), prop::bool::weighted(0.2))
            .prop_map(|(pick, payload, beta)| Op::Audio { pick, payload, beta }),
        8 => (pick(), any::<u8>(), any::<bool>())
            .prop_map(|(pick, word, beta)| Op::TranscriptDelta { pick, word, beta }),
        2 => (pick(), any::<bool>()).prop_map(|(pick, more)| Op::TranscriptDone { pick, more }),
        4 => (
            prop_oneof![6 => Just(DoneId::Current), 1 => Just(DoneId::Other), 1 => Just(DoneId::Absent)],
            0u8..4,
            prop::bool::weighted(0.7),
        )
            .prop_map(|(which, status, name_calls)| Op::ResponseDone { which, status, name_calls }),
        5 => any::<u16>().prop_map(|race| Op::SpeechStarted { race }),
        3 => Just(Op::SpeechStopped),
        3 => prop::option::weighted(0.1, any::<u8>()).prop_map(|dup| Op::Committed { dup }),
        2 => (pick(), any::<u8>()).prop_map(|(pick, word)| Op::Transcription { pick, word }),
        2 => any::<bool>().prop_map(|named| Op::FunctionArgs { named }),
        3 => error_kind().prop_map(Op::Error),
        1 => any::<u8>().prop_map(|pick| Op::Truncated { pick }),
        1 => any::<u16>().prop_map(|remaining| Op::RateLimits { remaining }),
        1 => prop::option::of(any::<u32>()).prop_map(|expires_at| Op::SessionCreated { expires_at }),
        1 => Just(Op::UnknownEvent),
        20 => (0u32..12_000).prop_map(|frames| Op::Play { frames }),
        2 => any::<u16>().prop_map(|race| Op::LocalOnset { race }),
        1 => Just(Op::NewSession),
        2 => pick().prop_map(|pick| Op::ToolOutput { pick }),
        1 => any::<u8>().prop_map(|word| Op::UserText { word }),
        3 => (pick(), any::<bool>()).prop_map(|(pick, beta)| Op::Echo { pick, beta }),
    ]
}

/// Per case: the history's item bound, the playout's capacity (frames) and
/// its callback period (frames).
fn setup() -> impl Strategy<Value = (usize, u64, u64)> {
    (
        2usize..40,
        prop_oneof![Just(u64::MAX / 4), 2_400u64..48_000],
        prop_oneof![Just(0u64), Just(240), Just(480), Just(1024)],
    )
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Debug)]
struct MItem {
    id: String,
    session: u64,
    response: Option<String>,
    /// Frames received (valid deltas taken).
    received: u64,
    /// Frames the device played (exactly).
    played: u64,
    interrupted: bool,
    done: bool,
    truncated: bool,
}

#[derive(Debug)]
struct Model {
    session: u64,
    response: Option<String>,
    speaking: bool,
    items: Vec<MItem>,
    history: VecDeque<HistoryItem>,
    history_max: usize,
    /// Written, not yet played: (item index, frames).
    queue: VecDeque<(usize, u64)>,
    /// The device's played position (frames).
    position: u64,
    /// Received audio the driver could not write yet: (item index, frames).
    waiting: VecDeque<(usize, u64)>,
    capacity: u64,
    period: u64,
    /// Truncations sent in this session and not answered: event id → item.
    pending: HashMap<String, String>,
    /// Every truncation sent: (event id, item id, audio_end_ms).
    truncates: Vec<(String, String, u64)>,
    cancels: Vec<String>,
    /// Tool calls whose name is still to come: (call id, arguments).
    unnamed: Vec<(String, String)>,
    calls: Vec<String>,
    users: Vec<String>,
    responses_seen: Vec<String>,
    /// Items we created, awaiting the service's echo: (key, the item sent,
    /// its history entry). The key is the call id of a tool output, the
    /// item id of a message.
    created: Vec<(String, Value, HistoryItem)>,
    /// A `response.create` waits for the response in progress.
    response_wanted: bool,
    /// The response a barge-in cancelled, until it is done.
    cancelled: Option<String>,
    next: u64,
    stats: RealtimeStats,
    /// Every event id the conversation ever used.
    event_ids: HashSet<String>,
}

fn message_id(h: &HistoryItem) -> Option<&str> {
    match h {
        HistoryItem::User { item_id, .. } | HistoryItem::Assistant { item_id, .. } => Some(item_id),
        _ => None,
    }
}

impl Model {
    fn new(history_max: usize, capacity: u64, period: u64) -> Self {
        Self {
            session: 0,
            response: None,
            speaking: false,
            items: Vec::new(),
            history: VecDeque::new(),
            history_max,
            queue: VecDeque::new(),
            position: 0,
            waiting: VecDeque::new(),
            capacity,
            period,
            pending: HashMap::new(),
            truncates: Vec::new(),
            cancels: Vec::new(),
            unnamed: Vec::new(),
            calls: Vec::new(),
            users: Vec::new(),
            responses_seen: Vec::new(),
            created: Vec::new(),
            response_wanted: false,
            cancelled: None,
            next: 0,
            stats: RealtimeStats::default(),
            event_ids: HashSet::new(),
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn error(&mut self, kind: &str) {
        *self.stats.protocol_errors.entry(kind.into()).or_default() += 1;
    }

    fn queued(&self) -> u64 {
        self.queue.iter().map(|(_, f)| f).sum()
    }

    // -- the history, as documented: oldest dropped first (and a tool
    // output left at the front with it), a message id never twice.

    fn h_pos(&self, id: &str) -> Option<usize> {
        self.history.iter().rposition(|h| message_id(h) == Some(id))
    }

    fn h_push(&mut self, item: HistoryItem) {
        if let Some(id) = message_id(&item)
            && self.h_pos(id).is_some()
        {
            return;
        }
        self.history.push_back(item);
        while self.history.len() > self.history_max {
            self.history.pop_front();
            while let Some(HistoryItem::FunctionOutput { .. }) = self.history.front() {
                self.history.pop_front();
            }
        }
    }

    fn h_remove(&mut self, id: &str) {
        if let Some(at) = self.h_pos(id) {
            self.history.remove(at);
        }
    }

    fn h_assistant(&mut self, id: &str) -> Option<(&mut String, &mut Option<(u64, u64)>)> {
        let at = self.h_pos(id)?;
        match &mut self.history[at] {
            HistoryItem::Assistant { text, heard, .. } => Some((text, heard)),
            _ => None,
        }
    }

    /// An answer item the conversation tracks in this session.
    fn current_item(&self, id: &str) -> Option<usize> {
        self.items
            .iter()
            .rposition(|i| i.id == id && i.session == self.session)
    }

    /// A `response.create` now, or when the response in progress is done.
    fn want_response(&mut self) -> Vec<ClientEvent> {
        if self.response.is_some() {
            self.response_wanted = true;
            return Vec::new();
        }
        vec![ClientEvent::response_create()]
    }

    fn remember(&mut self, key: String, item: Value, entry: HistoryItem) {
        self.created.retain(|c| c.0 != key);
        self.created.push((key, item, entry));
    }

    fn item_id(&self, pick: Pick) -> String {
        match pick {
            Pick::Known(i) if !self.items.is_empty() => {
                self.items[usize::from(i) % self.items.len()].id.clone()
            }
            _ => "a_ghost".into(),
        }
    }

    fn user_id(&self, pick: Pick) -> String {
        match pick {
            Pick::Known(i) if !self.users.is_empty() => {
                self.users[usize::from(i) % self.users.len()].clone()
            }
            _ => "u_ghost".into(),
        }
    }

    fn call_id(&self, pick: Pick) -> String {
        match pick {
            Pick::Known(i) if !self.calls.is_empty() => {
                self.calls[usize::from(i) % self.calls.len()].clone()
            }
            _ => "c_ghost".into(),
        }
    }
}

// ---------------------------------------------------------------------------
// One run: the conversation and the model side by side.

struct Run {
    conv: Conversation,
    m: Model,
}

impl Run {
    fn tool_call(&mut self, call_id: &str, name: &str, arguments: &str) {
        self.m.stats.tool_calls += 1;
        self.m.h_push(HistoryItem::FunctionCall {
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
        });
    }

    /// Hands waiting audio to the playout as far as it has room, as the
    /// session's pump does (the position read before each write).
    fn pump(&mut self) {
        while let Some(&(idx, frames)) = self.m.waiting.front() {
            let room = self.m.capacity.saturating_sub(self.m.queued());
            let take = room.min(frames);
            if take == 0 {
                break;
            }
            self.conv
                .written(&self.m.items[idx].id, take, self.m.position);
            self.m.stats.audio_played_bytes += take * 2;
            self.m.queue.push_back((idx, take));
            if take == frames {
                self.m.waiting.pop_front();
            } else if let Some(front) = self.m.waiting.front_mut() {
                front.1 -= take;
            }
        }
    }

    /// The device plays up to `n` frames.
    fn play(&mut self, n: u64) {
        let mut n = n.min(self.m.queued());
        while n > 0 {
            let Some(front) = self.m.queue.front_mut() else {
                break;
            };
            let t = n.min(front.1);
            self.m.items[front.0].played += t;
            self.m.position += t;
            front.1 -= t;
            n -= t;
            if front.1 == 0 {
                self.m.queue.pop_front();
            }
        }
        self.pump();
    }

    fn audio(&mut self, pick: Pick, payload: Payload, beta: bool) -> Result<(), TestCaseError> {
        let id = self.m.item_id(pick);
        let (b64, bytes) = match payload {
            Payload::Frames(f) => {
                let pcm = ev::pcm(u64::from(f));
                (encode_audio(&pcm), Some(pcm))
            }
            Payload::Odd(k) => (encode_audio(&vec![7u8; usize::from(k) * 2 + 1]), None),
            Payload::BadBase64 => ("%%not base64!!".to_string(), None),
        };
        let step = feed(&mut self.conv, &ev::audio_delta_b64(&id, &b64, beta));
        prop_assert!(step.send.is_empty() && !step.barge_in && step.notice.is_none());
        let Some(pcm) = bytes else {
            self.m.error("bad_audio_delta");
            prop_assert!(step.play.is_none(), "a bad delta was played");
            return Ok(());
        };
        let Some(idx) = self.m.current_item(&id) else {
            self.m.error("unknown_item");
            prop_assert!(step.play.is_none(), "audio of an unknown item was played");
            return Ok(());
        };
        let item = &self.m.items[idx];
        if item.done && !item.interrupted {
            self.m.error("out_of_order");
            prop_assert!(
                step.play.is_none(),
                "audio after its response was done was played"
            );
            return Ok(());
        }
        let n = pcm.len() as u64;
        let item = &mut self.m.items[idx];
        item.received += n / 2;
        let (interrupted, received) = (item.interrupted, item.received);
        self.m.stats.audio_received_bytes += n;
        if interrupted {
            prop_assert!(
                step.play.is_none(),
                "audio of {id}, which the user talked over, was played"
            );
            self.m.stats.audio_discarded_bytes += n;
            if let Some((_, Some((_, r)))) = self.m.h_assistant(&id) {
                *r = ms(received);
            }
            return Ok(());
        }
        if n == 0 {
            // Nothing to play: asking the driver to play an empty chunk
            // stalls its play queue (a playout takes 0 bytes of it).
            prop_assert!(step.play.is_none(), "an empty delta was handed to play");
            return Ok(());
        }
        prop_assert_eq!(step.play, Some((id, pcm)));
        self.m.waiting.push_back((idx, n / 2));
        self.pump();
        Ok(())
    }

    /// A barge-in with the device at its position; the clear takes effect
    /// `race` (up to one callback period) frames later.
    fn barge_in(&mut self, race: u16) -> Result<(), TestCaseError> {
        let at = self.m.position;
        let playing = self.m.queued() > 0;
        prop_assert_eq!(self.conv.playing(at), playing);
        let m = &mut self.m;
        m.stats.speech_onsets += 1;
        let happened = playing || m.response.is_some();
        let mut want: Vec<Value> = Vec::new();
        let mut truncated_ms = None;
        let mut cut = Vec::new();
        if happened {
            m.stats.barge_ins += 1;
            if let Some(r) = &m.response {
                m.cancelled = Some(r.clone());
                let mut cancel = json!({"type": "response.cancel"});
                if !r.is_empty() {
                    cancel["response_id"] = json!(r);
                }
                want.push(cancel);
                m.stats.cancels_sent += 1;
            }
            for idx in 0..m.items.len() {
                let item = &m.items[idx];
                if item.interrupted || (item.done && item.played >= item.received) {
                    continue;
                }
                let (id, played_ms, received_ms) =
                    (item.id.clone(), ms(item.played), ms(item.received));
                let current = item.session == m.session;
                let open = !item.done;
                m.items[idx].interrupted = true;
                cut.push(idx);
                if played_ms == 0 {
                    m.h_remove(&id);
                    if current {
                        want.push(json!({"type": "conversation.item.delete", "item_id": id}));
                        m.stats.items_deleted += 1;
                    }
                    continue;
                }
                if let Some((_, heard)) = m.h_assistant(&id) {
                    *heard = Some((played_ms, received_ms));
                }
                // Cut short, or still being made (the service may hold more
                // of it than arrived): the service keeps what was heard.
                if current && (played_ms < received_ms || open) {
                    want.push(json!({"type": "conversation.item.truncate", "item_id": id,
                                     "content_index": 0, "audio_end_ms": played_ms}));
                    m.stats.truncations_sent += 1;
                    truncated_ms = Some(played_ms);
                }
            }
        }
        let got: BargeIn = self.conv.barge_in(at);
        prop_assert_eq!(
            got.clear,
            playing,
            "clear iff written audio was not yet played"
        );
        prop_assert_eq!(got.happened, happened);
        prop_assert_eq!(got.cancelled, self.m.response.is_some() && happened);
        prop_assert_eq!(got.truncated_ms, truncated_ms);
        let sent: Vec<Value> = got.send.iter().map(ev::json_of).collect();
        prop_assert_eq!(sent.len(), want.len(), "sent {:?}, want {:?}", sent, want);
        for (s, w) in sent.iter().zip(&want) {
            let id = s["event_id"].as_str().unwrap_or_default().to_string();
            prop_assert!(!id.is_empty(), "{} without an event id", s);
            prop_assert!(self.m.event_ids.insert(id.clone()), "event id {} twice", id);
            let mut s = s.clone();
            s.as_object_mut().map(|o| o.remove("event_id"));
            prop_assert_eq!(&s, w);
            match w["type"].as_str() {
                Some("conversation.item.truncate") => {
                    let item = w["item_id"].as_str().unwrap_or_default().to_string();
                    let end = w["audio_end_ms"].as_u64().unwrap_or_default();
                    self.m.pending.insert(id.clone(), item.clone());
                    self.m.truncates.push((id, item, end));
                }
                Some("response.cancel") => self.m.cancels.push(id),
                _ => {}
            }
        }
        if got.clear {
            // The callback that was running still plays its period.
            let race = u64::from(race) % (self.m.period + 1);
            let mut left = race.min(self.m.queued());
            while left > 0 {
                let Some(front) = self.m.queue.front_mut() else {
                    break;
                };
                let t = left.min(front.1);
                self.m.items[front.0].played += t;
                self.m.position += t;
                front.1 -= t;
                left -= t;
                if front.1 == 0 {
                    self.m.queue.pop_front();
                }
            }
            self.m.queue.clear();
        }
        if got.happened {
            // The driver drops what it had not written yet.
            let frames: u64 = self.m.waiting.drain(..).map(|(_, f)| f).sum();
            self.conv.discarded(frames * 2);
            self.m.stats.audio_discarded_bytes += frames * 2;
        }
        // Every truncation: this session's item, more than nothing, within
        // its audio, at the played share (one callback period of slack).
        let period_ms = self.m.period.div_ceil(ev::RATE / 1000);
        for s in &sent {
            if s["type"] != "conversation.item.truncate" {
                continue;
            }
            let id = s["item_id"].as_str().unwrap_or_default();
            let end = s["audio_end_ms"].as_u64().unwrap_or_default();
            let idx = self.m.current_item(id);
            prop_assert!(idx.is_some(), "truncate of {} from another session", id);
            let item = &mut self.m.items[idx.unwrap_or_default()];
            prop_assert!(!item.truncated, "{} truncated twice", id);
            item.truncated = true;
            let heard = ms(item.played);
            prop_assert!(
                end > 0 && end <= ms(item.received),
                "{}: {} of {} received",
                id,
                end,
                ms(item.received)
            );
            prop_assert!(
                end <= heard + 1 && heard <= end + 1 + period_ms,
                "{}: audio_end_ms {} but {} ms were played",
                id,
                end,
                heard
            );
        }
        for idx in cut {
            let id = &self.m.items[idx].id;
            prop_assert!(
                self.m.queue.iter().all(|(i, _)| *i != idx),
                "{} still queued after a clear",
                id
            );
        }
        Ok(())
    }

    fn new_session(&mut self) {
        self.conv.new_session();
        let m = &mut self.m;
        m.session += 1;
        m.response = None;
        m.speaking = false;
        m.pending.clear();
        m.unnamed.clear();
        m.created.clear();
        m.response_wanted = false;
        m.cancelled = None;
        for i in &mut m.items {
            i.done = true;
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::ResponseCreated { no_id } => {
                let id = (!no_id).then(|| self.m.fresh("r"));
                let step = feed(&mut self.conv, &ev::response_created(id.as_deref()));
                prop_assert!(step.play.is_none() && step.send.is_empty() && step.notice.is_none());
                if self.m.response.is_some() {
                    self.m.error("out_of_order");
                }
                let id = id.unwrap_or_default();
                self.m.responses_seen.push(id.clone());
                self.m.response = Some(id);
            }
            Op::ItemAdded {
                dup,
                response,
                assistant,
            } => {
                let current: Vec<String> = self
                    .m
                    .items
                    .iter()
                    .filter(|i| i.session == self.m.session)
                    .map(|i| i.id.clone())
                    .collect();
                let dup = match dup {
                    Some(i) if !current.is_empty() => {
                        Some(current[usize::from(i) % current.len()].clone())
                    }
                    _ => None,
                };
                let response = match response {
                    RespPick::Current => self.m.response.clone(),
                    RespPick::Absent => None,
                    RespPick::Stale => self.m.responses_seen.first().cloned(),
                };
                let fresh = dup.is_none();
                let assistant = assistant && (!fresh || self.m.items.len() < MAX_ITEMS);
                let id = dup.unwrap_or_else(|| self.m.fresh(if assistant { "a" } else { "fc" }));
                let step = feed(
                    &mut self.conv,
                    &ev::item_added(response.as_deref(), &id, assistant),
                );
                prop_assert!(step.play.is_none() && step.notice.is_none());
                // An item of the response a barge-in cancelled crossed the
                // cancel: never played, deleted at the service.
                let late = assistant && fresh && response.is_some() && response == self.m.cancelled;
                if late {
                    let sent: Vec<Value> = step.send.iter().map(ev::json_of).collect();
                    prop_assert_eq!(sent.len(), 1, "{:?}", sent);
                    let mut s = sent[0].clone();
                    let eid = s["event_id"].as_str().unwrap_or_default().to_string();
                    prop_assert!(
                        self.m.event_ids.insert(eid.clone()),
                        "event id {} twice",
                        eid
                    );
                    s.as_object_mut().map(|o| o.remove("event_id"));
                    prop_assert_eq!(
                        s,
                        json!({"type": "conversation.item.delete", "item_id": id})
                    );
                    self.m.stats.items_deleted += 1;
                    self.m.items.push(MItem {
                        id: id.clone(),
                        session: self.m.session,
                        response,
                        received: 0,
                        played: 0,
                        interrupted: true,
                        done: false,
                        truncated: false,
                    });
                    return Ok(());
                }
                prop_assert!(step.send.is_empty());
                if assistant && fresh {
                    self.m.items.push(MItem {
                        id: id.clone(),
                        session: self.m.session,
                        response,
                        received: 0,
                        played: 0,
                        interrupted: false,
                        done: false,
                        truncated: false,
                    });
                    self.m.h_push(HistoryItem::Assistant {
                        item_id: id,
                        text: String::new(),
                        heard: None,
                    });
                }
            }
            Op::Audio {
                pick,
                payload,
                beta,
            } => self.audio(pick, payload, beta)?,
            Op::TranscriptDelta { pick, word, beta } => {
                let id = self.m.item_id(pick);
                let w = WORDS[usize::from(word) % WORDS.len()];
                let step = feed(&mut self.conv, &ev::transcript_delta(&id, w, beta));
                prop_assert!(step.play.is_none() && step.send.is_empty());
                if let Some((text, _)) = self.m.h_assistant(&id) {
                    text.push_str(w);
                } else if self.m.h_pos(&id).is_none() && self.m.current_item(&id).is_none() {
                    // Text of an answer we know (cut, or beyond the history's
                    // bound) is no fault of the service.
                    self.m.error("unknown_item");
                }
            }
            Op::TranscriptDone { pick, more } => {
                let id = self.m.item_id(pick);
                let mut text = match self.m.h_assistant(&id) {
                    Some((t, _)) => t.clone(),
                    None => String::new(),
                };
                if more {
                    text.push_str("and more words");
                }
                feed(&mut self.conv, &ev::transcript_done(&id, &text));
                if let Some((t, _)) = self.m.h_assistant(&id) {
                    *t = text;
                }
            }
            Op::ResponseDone {
                which,
                status,
                name_calls,
            } => {
                let id = match which {
                    DoneId::Current => Some(self.m.response.clone().unwrap_or("r_none".into())),
                    DoneId::Other => Some("r_other".to_string()),
                    DoneId::Absent => None,
                };
                let status = STATUSES[usize::from(status)];
                let calls: Vec<(String, String)> = if name_calls {
                    self.m
                        .unnamed
                        .iter()
                        .map(|(c, _)| (c.clone(), format!("tool_{c}")))
                        .collect()
                } else {
                    Vec::new()
                };
                let step = feed(
                    &mut self.conv,
                    &ev::response_done(id.as_deref(), status, &calls),
                );
                prop_assert!(step.play.is_none());
                // A response asked for meanwhile is asked for now.
                let want = if std::mem::take(&mut self.m.response_wanted) {
                    vec![ClientEvent::response_create()]
                } else {
                    Vec::new()
                };
                prop_assert_eq!(&step.send, &want);
                let id = id.unwrap_or_default();
                match &self.m.response {
                    Some(r) if *r == id || id.is_empty() => {}
                    _ => self.m.error("out_of_order"),
                }
                self.m.response = None;
                self.m.cancelled = None;
                self.m.stats.responses += 1;
                if status == "cancelled" {
                    self.m.stats.responses_cancelled += 1;
                }
                for i in &mut self.m.items {
                    if i.response.as_deref() == Some(id.as_str()) {
                        i.done = true;
                    }
                }
                for (call, name) in &calls {
                    let at = self.m.unnamed.iter().position(|(c, _)| c == call);
                    let (_, args) = self.m.unnamed.remove(at.unwrap_or_default());
                    self.tool_call(call, name, &args);
                }
                match (calls.last(), step.notice) {
                    (
                        Some((call, name)),
                        Some(RealtimeEvent::ToolCall {
                            call_id, name: n, ..
                        }),
                    ) => {
                        prop_assert_eq!(call, &call_id);
                        prop_assert_eq!(name, &n);
                    }
                    (None, Some(RealtimeEvent::ResponseDone { status: s })) => {
                        prop_assert_eq!(s, status);
                    }
                    (_, n) => prop_assert!(false, "response.done gave {:?}", n),
                }
            }
            Op::SpeechStarted { race } => {
                let step = feed(&mut self.conv, &ev::speech_started());
                prop_assert!(step.barge_in && step.play.is_none() && step.send.is_empty());
                prop_assert_eq!(step.notice, Some(RealtimeEvent::SpeechStarted));
                self.m.speaking = true;
                self.barge_in(race)?;
            }
            Op::SpeechStopped => {
                let step = feed(&mut self.conv, &ev::speech_stopped());
                prop_assert!(!step.barge_in);
                prop_assert_eq!(step.notice, Some(RealtimeEvent::SpeechStopped));
                if !self.m.speaking {
                    self.m.error("out_of_order");
                }
                self.m.speaking = false;
            }
            Op::Committed { dup } => {
                let id = match dup {
                    Some(i) if !self.m.users.is_empty() => {
                        self.m.users[usize::from(i) % self.m.users.len()].clone()
                    }
                    _ => self.m.fresh("u"),
                };
                let step = feed(&mut self.conv, &ev::committed(&id));
                prop_assert!(step.play.is_none() && step.send.is_empty() && !step.barge_in);
                self.m.stats.turns += 1;
                if !self.m.users.contains(&id) {
                    self.m.users.push(id.clone());
                }
                self.m.h_push(HistoryItem::User {
                    item_id: id,
                    text: None,
                });
            }
            Op::Transcription { pick, word } => {
                let id = self.m.user_id(pick);
                let text = WORDS[usize::from(word) % WORDS.len()].trim().to_string();
                let step = feed(&mut self.conv, &ev::transcription(&id, &text));
                match self.m.h_pos(&id) {
                    Some(at) => {
                        if let HistoryItem::User { text: t, .. } = &mut self.m.history[at] {
                            *t = Some(text.clone());
                        }
                        prop_assert_eq!(
                            step.notice,
                            Some(RealtimeEvent::UserTranscript { item_id: id, text })
                        );
                    }
                    None => {
                        self.m.error("unknown_item");
                        prop_assert!(step.notice.is_none());
                    }
                }
            }
            Op::FunctionArgs { named } => {
                let call = self.m.fresh("c");
                let name = format!("tool_{call}");
                let args = format!(r#"{{"n":{}}}"#, self.m.next);
                let step = feed(
                    &mut self.conv,
                    &ev::function_args_done(&call, named.then_some(name.as_str()), &args),
                );
                self.m.calls.push(call.clone());
                if named {
                    self.tool_call(&call, &name, &args);
                    prop_assert_eq!(
                        step.notice,
                        Some(RealtimeEvent::ToolCall {
                            call_id: call,
                            name,
                            arguments: args
                        })
                    );
                } else {
                    self.m.unnamed.push((call, args));
                    prop_assert!(step.notice.is_none());
                }
            }
            Op::Error(kind) => {
                let (code, message, event_id): (Option<&str>, &str, Option<String>) = match kind {
                    ErrorKind::AnswersTruncate(i, shorter) if !self.m.truncates.is_empty() => {
                        let t = &self.m.truncates[usize::from(i) % self.m.truncates.len()];
                        let message = if shorter {
                            ev::TOO_SHORT
                        } else {
                            "Item not found"
                        };
                        (Some("invalid_value"), message, Some(t.0.clone()))
                    }
                    ErrorKind::AnswersTruncate(..) | ErrorKind::NoCode => {
                        (None, "Something went wrong", None)
                    }
                    ErrorKind::TooShort => (Some("invalid_value"), ev::TOO_SHORT, None),
                    ErrorKind::SessionExpired => (
                        Some("session_expired"),
                        "Your session hit the maximum duration of 60 minutes.",
                        None,
                    ),
                    ErrorKind::RateLimit => (Some("rate_limit_exceeded"), "Slow down", None),
                    ErrorKind::CancelNotActive => (
                        Some("response_cancel_not_active"),
                        "Cancellation failed: no active response found",
                        self.m.cancels.last().cloned(),
                    ),
                    ErrorKind::OtherCode => (Some("some_new_code"), "New", None),
                };
                let step = feed(
                    &mut self.conv,
                    &ev::error(code, message, event_id.as_deref()),
                );
                prop_assert!(step.play.is_none() && step.send.is_empty());
                let code_str = code.unwrap_or("none");
                *self
                    .m
                    .stats
                    .server_errors
                    .entry(code_str.into())
                    .or_default() += 1;
                let answers = event_id
                    .as_ref()
                    .and_then(|id| self.m.pending.remove(id))
                    .is_some();
                if answers || message.contains("already shorter than") {
                    self.m.stats.truncations_rejected += 1;
                }
                prop_assert_eq!(step.expired, code == Some("session_expired"));
                match step.notice {
                    Some(RealtimeEvent::ServerError(e)) => {
                        prop_assert_eq!(e.code, ServerErrorCode::parse(code));
                        prop_assert_eq!(e.event_id, event_id);
                        prop_assert_eq!(e.message, message);
                    }
                    n => prop_assert!(false, "an error event gave {:?}", n),
                }
                if step.expired {
                    // The session reconnects: a new service session.
                    self.new_session();
                }
            }
            Op::Truncated { pick } => {
                if self.m.truncates.is_empty() {
                    return Ok(());
                }
                let (_, item, end) =
                    self.m.truncates[usize::from(pick) % self.m.truncates.len()].clone();
                feed(&mut self.conv, &ev::truncated(&item, end));
                self.m.pending.retain(|_, i| *i != item);
            }
            Op::RateLimits { remaining } => {
                let v = ev::rate_limits(u64::from(remaining));
                let step = feed(&mut self.conv, &v);
                prop_assert!(step.notice.is_none());
                let limits: Vec<RateLimit> = serde_json::from_value(v["rate_limits"].clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.m.stats.rate_limits = limits;
            }
            Op::SessionCreated { expires_at } => {
                let at = expires_at.map(u64::from);
                let step = feed(&mut self.conv, &ev::session_created(at));
                prop_assert_eq!(step.created, Some(at));
            }
            Op::UnknownEvent => {
                let step = feed(
                    &mut self.conv,
                    &json!({"type": "response.content_part.added", "item_id": "a1"}),
                );
                prop_assert!(step.play.is_none() && step.send.is_empty() && step.notice.is_none());
            }
            Op::Play { frames } => self.play(u64::from(frames)),
            Op::LocalOnset { race } => self.barge_in(race)?,
            Op::NewSession => {
                self.new_session();
                prop_assert!(
                    self.conv.at_turn_boundary(),
                    "a new session starts at a boundary"
                );
            }
            Op::ToolOutput { pick } => {
                let call = self.m.call_id(pick);
                let out = self.conv.tool_output(&call, r#"{"ok":true}"#);
                let mut want = vec![ClientEvent::function_call_output(&call, r#"{"ok":true}"#)];
                want.extend(self.m.want_response());
                prop_assert_eq!(&out, &want);
                let entry = HistoryItem::FunctionOutput {
                    call_id: call.clone(),
                    output: r#"{"ok":true}"#.into(),
                };
                self.m
                    .remember(call, ev::json_of(&out[0])["item"].clone(), entry);
            }
            Op::UserText { word } => {
                let text = WORDS[usize::from(word) % WORDS.len()].trim().to_string();
                let out = self.conv.user_text(&text);
                let create = ev::json_of(&out[0]);
                prop_assert_eq!(&create["type"], "conversation.item.create");
                prop_assert_eq!(&create["item"]["role"], "user");
                prop_assert_eq!(&create["item"]["content"][0]["text"], &json!(text));
                prop_assert_eq!(&out[1..], &self.m.want_response()[..]);
                let id = create["item"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                prop_assert!(!id.is_empty() && self.m.h_pos(&id).is_none());
                prop_assert!(self.m.event_ids.insert(id.clone()), "item id {} twice", id);
                let entry = HistoryItem::User {
                    item_id: id.clone(),
                    text: Some(text),
                };
                self.m.remember(id, create["item"].clone(), entry);
            }
            Op::Echo { pick, beta } => {
                let (item, key) = match pick {
                    Pick::Known(i) if !self.m.created.is_empty() => {
                        let (key, item, _) = &self.m.created[usize::from(i) % self.m.created.len()];
                        (item.clone(), Some(key.clone()))
                    }
                    // An item the service made: a user turn or an answer.
                    _ => (
                        json!({"type": "message", "role": "user", "content": []}),
                        None,
                    ),
                };
                let service_id = self.m.fresh("item_");
                let step = feed(&mut self.conv, &ev::item_echo(&item, &service_id, beta));
                prop_assert!(step.play.is_none() && step.send.is_empty() && step.notice.is_none());
                // Echoed: it enters the history now, in the service's order.
                if let Some(at) = key.and_then(|k| self.m.created.iter().position(|c| c.0 == k)) {
                    let (_, _, entry) = self.m.created.remove(at);
                    self.m.h_push(entry);
                }
            }
        }
        self.check()
    }

    /// What must hold after every step.
    fn check(&self) -> Result<(), TestCaseError> {
        let (conv, m) = (&self.conv, &self.m);
        prop_assert_eq!(conv.stats(), &m.stats);
        prop_assert_eq!(conv.responding(), m.response.is_some());
        prop_assert_eq!(conv.speaking(), m.speaking);
        prop_assert_eq!(conv.at_turn_boundary(), m.response.is_none() && !m.speaking);
        prop_assert_eq!(conv.playing(m.position), m.queued() > 0);

        // The history: exactly the model's, within its bound.
        let history: Vec<&HistoryItem> = conv.history().items().collect();
        prop_assert!(history.len() <= m.history_max);
        prop_assert_eq!(history.len(), conv.history().len());
        let want: Vec<&HistoryItem> = m.history.iter().collect();
        prop_assert_eq!(&history, &want);

        // An answer cut short replays at most its heard share of the text.
        for h in &history {
            if let HistoryItem::Assistant {
                text,
                heard: Some((played, received)),
                ..
            } = h
            {
                prop_assert!(played <= received && *played > 0);
                let kept = h.replay_text().unwrap_or_default();
                prop_assert!(
                    text.starts_with(&kept),
                    "{:?} is not a prefix of {:?}",
                    kept,
                    text
                );
                let share = text.chars().count() as u64 * played / received;
                prop_assert!(kept.chars().count() as u64 <= share);
            }
        }

        // The replay: one event per replayable item, and never a tool output
        // without its call before it.
        let replay = conv.replay();
        prop_assert_eq!(&replay, &conv.history().replay());
        let mut calls = BTreeSet::new();
        for e in &replay {
            let v = ev::json_of(e);
            prop_assert_eq!(&v["type"], "conversation.item.create");
            let item = &v["item"];
            match item["type"].as_str() {
                Some("function_call") => {
                    calls.insert(item["call_id"].as_str().unwrap_or_default().to_string());
                }
                Some("function_call_output") => {
                    let call = item["call_id"].as_str().unwrap_or_default();
                    prop_assert!(
                        calls.contains(call),
                        "the replay has the output of {} without its call",
                        call
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    })]

    /// Any interleaving of server events and local actions: the decisions,
    /// the counters and the history match the model after every step.
    #[test]
    fn prop_conversation_matches_the_model(
        (history_max, capacity, period) in setup(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let mut run = Run {
            conv: Conversation::new(history_max, HISTORY_BYTES),
            m: Model::new(history_max, capacity, period),
        };
        run.check()?;
        for op in &ops {
            run.step(op)?;
        }
    }
}
