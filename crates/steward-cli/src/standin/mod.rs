//! A **stand-in** for the realtime model service: a small local WebSocket
//! server that speaks enough of the realtime protocol to drive every code
//! path of an assistant, with no network and no model. It is not the model
//! service and does not pretend to understand speech: its answers are a
//! generated tone, a canned transcript and scripted tool calls.
//!
//! What it speaks (JSON text events tagged by `type`):
//!
//! - on connect: `session.created`;
//! - `session.update` → `session.updated` (the settings echoed);
//! - `input_audio_buffer.append` (base64 PCM16 24 kHz mono) is buffered, up
//!   to [`StandinConfig::max_buffer_bytes`] per connection (beyond it the
//!   audio is refused with an `error` event and counted);
//! - `input_audio_buffer.commit` → `input_audio_buffer.committed` and, as
//!   with the service's turn detection on (the default), at once (with turn
//!   detection set to `null` in `session.update`, on the next
//!   `response.create`, as the service does): `response.created`,
//!   `response.output_audio.delta` chunks of a sine tone
//!   (half as long as the committed audio, or
//!   [`StandinConfig::reply_audio_ms`]), `response.output_audio.done`,
//!   `response.output_audio_transcript.delta` / `.done`, a function call
//!   when the turn asks for one (`response.function_call_arguments.done`),
//!   then `response.done`;
//! - `conversation.item.create` of a text message `remember KEY: VALUE`,
//!   `recall KEY` or `forget KEY` → the next response calls that tool;
//! - `conversation.item.create` of a `function_call_output`, then
//!   `response.create` → a short spoken answer;
//! - `input_audio_buffer.clear` → `input_audio_buffer.cleared`.
//!
//! Pure-audio turns follow a script so that silence still exercises every
//! tool: with `remember_every = N`, audio turn `n` (from 1) calls
//! `remember {"key": "turn_n"}` when `n % N == 0`, `recall` of that key on
//! the next turn, and `forget` of the previous round's key when
//! `n % N == 2` (N ≥ 3), so at most two `turn_*` keys live at once.
//!
//! Limits: messages and frames above [`StandinConfig::max_frame_bytes`]
//! close the connection with code 1009 (counted as refused), at most
//! [`StandinConfig::max_connections`] at once.
//!
//! For reconnect tests and soak runs it can drop its connections without a
//! close frame, as a crashed service would: on demand
//! ([`Standin::drop_connections`]) or after every
//! [`StandinConfig::drop_every`] audio turns.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steward_cli::Error> {
//! use steward_cli::standin::{Standin, StandinConfig};
//!
//! let standin = Standin::start(StandinConfig::default()).await?;
//! assert!(standin.url().starts_with("ws://127.0.0.1:"));
//! assert_eq!(standin.stats().sessions, 0);
//! standin.close().await;
//! # Ok(())
//! # }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward::ws::realtime::{
    self, ClientEvent, Delta, ErrorDetail, ErrorEvent, FunctionCallArgumentsDone, ResponseEvent,
    ServerEvent, SessionConfig, SessionEvent,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::Error;

/// PCM16 mono at 24 kHz: bytes per millisecond.
const BYTES_PER_MS: u64 = 48;
/// How long a connection may take for its WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `close` waits for connections to say goodbye before aborting them.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// The stand-in's settings: plain serde data.
///
/// ```
/// let c: steward_cli::standin::StandinConfig =
///     serde_json::from_str(r#"{"reply_audio_ms": 200}"#).unwrap();
/// assert_eq!(c.reply_audio_ms, 200);
/// assert_eq!(c.remember_every, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StandinConfig {
    /// Where to listen. Default `127.0.0.1:0` (any free port).
    pub addr: SocketAddr,
    /// Length of each spoken answer in ms; `0` (the default) answers an
    /// audio turn with half as much audio as it committed (100 ms to 10 s)
    /// and other responses with 300 ms.
    pub reply_audio_ms: u32,
    /// Every this many pure-audio turns the model asks to remember
    /// `turn_<n>` (and then recalls and forgets it, see the module docs).
    /// `0` turns the script off. Default 3.
    pub remember_every: u32,
    /// Audio per `response.output_audio.delta`, in ms. Default 100.
    pub delta_ms: u32,
    /// Pitch of the generated tone, in Hz. Default 440.
    pub tone_hz: u32,
    /// Largest message or frame accepted, in bytes; bigger ones close the
    /// connection with 1009. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Input audio buffered per connection until a commit, in bytes.
    /// Default 16 MiB (about 5.8 minutes).
    pub max_buffer_bytes: usize,
    /// Connections served at once; more are refused. Default 64.
    pub max_connections: usize,
    /// Drop the connection abruptly (no close frame, as a crashed service
    /// would) right after answering every this many audio turns, so that
    /// soak runs exercise reconnects. `0` (the default) never drops.
    pub drop_every: u32,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            reply_audio_ms: 0,
            remember_every: 3,
            delta_ms: 100,
            tone_hz: 440,
            max_frame_bytes: 1 << 20,
            max_buffer_bytes: 16 << 20,
            max_connections: 64,
            drop_every: 0,
        }
    }
}

impl StandinConfig {
    fn validate(&self) -> Result<(), Error> {
        let check = |ok: bool, field: &'static str, message: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::Config {
                    field,
                    message: message.to_string(),
                })
            }
        };
        check(
            (1..=10_000).contains(&self.delta_ms),
            "delta_ms",
            "must be between 1 and 10000",
        )?;
        check(
            self.reply_audio_ms <= 60_000,
            "reply_audio_ms",
            "must be at most 60000",
        )?;
        check(
            self.tone_hz > 0 && self.tone_hz < 12_000,
            "tone_hz",
            "must be between 1 and 11999",
        )?;
        check(
            self.max_frame_bytes >= 1024,
            "max_frame_bytes",
            "must be at least 1024",
        )?;
        check(
            self.max_connections > 0,
            "max_connections",
            "must be at least 1",
        )
    }
}

/// The stand-in's counters: plain serde data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StandinStats {
    /// WebSocket sessions accepted so far.
    pub sessions: u64,
    /// Sessions open now.
    pub active_sessions: u64,
    /// Connections refused (too many at once, or a failed handshake).
    pub refused_connections: u64,
    /// Committed turns (audio commits).
    pub turns: u64,
    /// Responses sent (`response.done`).
    pub responses: u64,
    /// Text requests received (`remember …`, `recall …`, `forget …`).
    pub text_requests: u64,
    /// Input audio received, in bytes of PCM16.
    pub audio_bytes_in: u64,
    /// Input audio refused because the connection's buffer was full.
    pub audio_bytes_refused: u64,
    /// Output audio sent, in bytes of PCM16.
    pub audio_bytes_out: u64,
    /// Audio delta events sent.
    pub audio_deltas: u64,
    /// Function calls asked for.
    pub function_calls: u64,
    /// Function call outputs received.
    pub function_outputs: u64,
    /// Messages or frames over the limit (the connection was closed with 1009).
    pub refused_frames: u64,
    /// `error` events sent (bad JSON, unknown events, empty commits, …).
    pub errors_sent: u64,
    /// Connections dropped on purpose (`drop_every`, `drop_connections`).
    pub dropped_connections: u64,
}

#[derive(Default)]
struct Counters {
    sessions: AtomicU64,
    active_sessions: AtomicU64,
    refused_connections: AtomicU64,
    turns: AtomicU64,
    responses: AtomicU64,
    text_requests: AtomicU64,
    audio_bytes_in: AtomicU64,
    audio_bytes_refused: AtomicU64,
    audio_bytes_out: AtomicU64,
    audio_deltas: AtomicU64,
    function_calls: AtomicU64,
    function_outputs: AtomicU64,
    refused_frames: AtomicU64,
    errors_sent: AtomicU64,
    dropped_connections: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> StandinStats {
        StandinStats {
            sessions: self.sessions.load(Relaxed),
            active_sessions: self.active_sessions.load(Relaxed),
            refused_connections: self.refused_connections.load(Relaxed),
            turns: self.turns.load(Relaxed),
            responses: self.responses.load(Relaxed),
            text_requests: self.text_requests.load(Relaxed),
            audio_bytes_in: self.audio_bytes_in.load(Relaxed),
            audio_bytes_refused: self.audio_bytes_refused.load(Relaxed),
            audio_bytes_out: self.audio_bytes_out.load(Relaxed),
            audio_deltas: self.audio_deltas.load(Relaxed),
            function_calls: self.function_calls.load(Relaxed),
            function_outputs: self.function_outputs.load(Relaxed),
            refused_frames: self.refused_frames.load(Relaxed),
            errors_sent: self.errors_sent.load(Relaxed),
            dropped_connections: self.dropped_connections.load(Relaxed),
        }
    }
}

/// A running stand-in server. Dropping it stops accepting and closes its
/// connections in the background; [`close`](Standin::close) does the same
/// and waits.
#[derive(Debug)]
pub struct Standin {
    addr: SocketAddr,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    kill: watch::Sender<u64>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl Standin {
    /// Binds `config.addr` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad setting, [`Error::Bind`] when the address
    /// cannot be bound.
    pub async fn start(config: StandinConfig) -> Result<Standin, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        let counters = Arc::new(Counters::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (kill, kill_rx) = watch::channel(0_u64);
        tracing::info!(%addr, "stand-in realtime server listening (a local stand-in, not the model service)");
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(config),
            Arc::clone(&counters),
            shutdown_rx,
            kill_rx,
        ));
        Ok(Standin {
            addr,
            counters,
            shutdown,
            kill,
            task: Mutex::new(Some(task)),
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to connect to: `ws://127.0.0.1:PORT/v1/realtime`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> StandinStats {
        self.counters.snapshot()
    }

    /// Drops every open connection at once, without a close handshake (as a
    /// crashed or restarted service would), and keeps accepting new ones.
    /// For reconnect tests and soak runs.
    pub fn drop_connections(&self) {
        self.kill.send_modify(|generation| *generation += 1);
        tracing::info!(addr = %self.addr, "stand-in dropped its connections");
    }

    /// Stops accepting, closes every connection with code 1001 (going
    /// away), and waits for them (a few seconds at most). Cancel safe: the
    /// stop is requested on the first poll.
    pub async fn close(self) {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        tracing::info!(addr = %self.addr, stats = ?self.counters.snapshot(), "stand-in closed");
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<StandinConfig>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
    kill: watch::Receiver<u64>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                if connections.len() >= config.max_connections {
                    counters.refused_connections.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, "stand-in: too many connections, refused");
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                connections.spawn(serve(
                    tcp,
                    Arc::clone(&config),
                    Arc::clone(&counters),
                    shutdown.clone(),
                    kill.clone(),
                ));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Connections see the shutdown themselves; give them a moment to say
    // goodbye, then abort the rest.
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_GRACE, all_done).await.is_err() {
        connections.shutdown().await;
    }
}

/// Decrements the active count however a connection ends.
struct Active(Arc<Counters>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active_sessions.fetch_sub(1, Relaxed);
    }
}

async fn serve(
    tcp: TcpStream,
    config: Arc<StandinConfig>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
    mut kill: watch::Receiver<u64>,
) {
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes));
    let handshake = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config));
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            counters.refused_connections.fetch_add(1, Relaxed);
            tracing::debug!(error = %e, "stand-in: handshake failed");
            return;
        }
        Err(_) => {
            counters.refused_connections.fetch_add(1, Relaxed);
            return;
        }
    };
    let session = counters.sessions.fetch_add(1, Relaxed) + 1;
    counters.active_sessions.fetch_add(1, Relaxed);
    let _active = Active(Arc::clone(&counters));
    kill.mark_unchanged();
    let span = tracing::info_span!("standin_session", session);
    let _enter = span.enter();
    tracing::debug!("stand-in session opened");
    let (mut sink, mut stream) = ws.split();
    let mut conn = Conversation::new(session, &config, Arc::clone(&counters));
    if send_all(&mut sink, conn.greeting()).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    let frame = CloseFrame { code: CloseCode::Away, reason: "stand-in closing".into() };
                    let _ = sink.send(WsMessage::Close(Some(frame))).await;
                    break;
                }
            }
            _ = kill.changed() => {
                // Abrupt: no close frame, the socket just goes away.
                counters.dropped_connections.fetch_add(1, Relaxed);
                break;
            }
            incoming = stream.next() => {
                let Some(incoming) = incoming else { break };
                match incoming {
                    Ok(WsMessage::Text(text)) => {
                        let out = conn.handle(text.as_str());
                        if send_all(&mut sink, out).await.is_err() {
                            break;
                        }
                        if conn.drop_now {
                            counters.dropped_connections.fetch_add(1, Relaxed);
                            tracing::info!("stand-in drops the connection (drop_every)");
                            break;
                        }
                    }
                    Ok(WsMessage::Binary(_)) => {
                        let out = vec![conn.error("invalid_request_error", "binary frames are not part of the protocol")];
                        if send_all(&mut sink, out).await.is_err() {
                            break;
                        }
                    }
                    Ok(WsMessage::Close(_)) => break,
                    Ok(_) => {} // pings are answered by tungstenite
                    Err(tokio_tungstenite::tungstenite::Error::Capacity(e)) => {
                        counters.refused_frames.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, "stand-in: oversized message refused");
                        let frame = CloseFrame { code: CloseCode::Size, reason: "message too big".into() };
                        let _ = sink.send(WsMessage::Close(Some(frame))).await;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "stand-in: connection lost");
                        break;
                    }
                }
            }
        }
    }
    tracing::debug!("stand-in session ended");
}

async fn send_all<S>(sink: &mut S, events: Vec<String>) -> Result<(), ()>
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    for text in events {
        sink.feed(WsMessage::text(text)).await.map_err(|_| ())?;
    }
    sink.flush().await.map_err(|_| ())
}

/// A tool call the stand-in's "model" asks for.
#[derive(Clone, Debug, PartialEq)]
enum ToolCall {
    Remember { key: String, value: String },
    Recall { key: String },
    Forget { key: String },
}

impl ToolCall {
    fn name(&self) -> &'static str {
        match self {
            ToolCall::Remember { .. } => "remember",
            ToolCall::Recall { .. } => "recall",
            ToolCall::Forget { .. } => "forget",
        }
    }

    fn arguments(&self) -> Value {
        match self {
            ToolCall::Remember { key, value } => json!({"key": key, "value": value}),
            ToolCall::Recall { key } | ToolCall::Forget { key } => json!({"key": key}),
        }
    }

    /// `remember KEY: VALUE` (or `KEY = VALUE`, or `KEY VALUE`), `recall KEY`,
    /// `forget KEY`; the command word in any case.
    fn parse(text: &str) -> Option<ToolCall> {
        let text = text.trim();
        let (verb, rest) = text.split_once(char::is_whitespace)?;
        let rest = rest.trim();
        if rest.is_empty() {
            return None;
        }
        match verb.to_ascii_lowercase().as_str() {
            "remember" => {
                let (key, value) = rest
                    .split_once(':')
                    .or_else(|| rest.split_once('='))
                    .or_else(|| rest.split_once(char::is_whitespace))?;
                let (key, value) = (key.trim(), value.trim());
                (!key.is_empty()).then(|| ToolCall::Remember {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            }
            "recall" => Some(ToolCall::Recall {
                key: rest.to_string(),
            }),
            "forget" => Some(ToolCall::Forget {
                key: rest.to_string(),
            }),
            _ => None,
        }
    }

    /// The scripted call for pure-audio turn `n` (from 1), see the module docs.
    fn scripted(n: u64, every: u32) -> Option<ToolCall> {
        let every = u64::from(every);
        if every == 0 || n == 0 {
            return None;
        }
        let phase = n % every;
        if phase == 0 {
            return Some(ToolCall::Remember {
                key: format!("turn_{n}"),
                value: format!("remembered at audio turn {n}"),
            });
        }
        if every >= 2 && phase == 1 && n > every {
            return Some(ToolCall::Recall {
                key: format!("turn_{}", n - 1),
            });
        }
        if every >= 3 && phase == 2 && n > 2 * every {
            return Some(ToolCall::Forget {
                key: format!("turn_{}", n - 2 - every),
            });
        }
        None
    }
}

/// One connection's conversation state; turns client events into the
/// server events to send back. No I/O, so it is easy to reason about.
struct Conversation {
    session: u64,
    reply_audio_ms: u32,
    remember_every: u32,
    drop_every: u32,
    /// Set once the connection should go away (after the answer is sent).
    drop_now: bool,
    delta_ms: u32,
    tone_hz: f64,
    max_buffer_bytes: usize,
    counters: Arc<Counters>,
    buffer: Vec<u8>,
    audio_turns: u64,
    next_id: u64,
    pending: Option<ToolCall>,
    last_output: Option<String>,
    /// Answer a commit at once (server turn detection on, the default), or
    /// wait for `response.create` (turn detection off).
    auto_respond: bool,
    /// A committed audio turn waiting for `response.create` (its input ms).
    unanswered: Option<u64>,
    phase: f64,
    session_config: SessionConfig,
}

impl Conversation {
    fn new(session: u64, config: &StandinConfig, counters: Arc<Counters>) -> Self {
        Self {
            session,
            reply_audio_ms: config.reply_audio_ms,
            remember_every: config.remember_every,
            drop_every: config.drop_every,
            drop_now: false,
            delta_ms: config.delta_ms,
            tone_hz: f64::from(config.tone_hz),
            max_buffer_bytes: config.max_buffer_bytes,
            counters,
            buffer: Vec::new(),
            audio_turns: 0,
            next_id: 0,
            pending: None,
            last_output: None,
            auto_respond: true,
            unanswered: None,
            phase: 0.0,
            session_config: SessionConfig {
                kind: Some("realtime".into()),
                model: Some("steward-standin".into()),
                voice: Some("tone".into()),
                ..SessionConfig::default()
            },
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_s{}_{}", self.session, self.next_id)
    }

    fn encode(&mut self, event: &ServerEvent) -> String {
        // Our own typed events always encode; an empty object would only
        // show up as an unknown event at the client.
        event.to_json().unwrap_or_else(|_| "{}".into())
    }

    fn greeting(&mut self) -> Vec<String> {
        let event = ServerEvent::SessionCreated(SessionEvent {
            event_id: Some(self.id("event")),
            session: self.session_config.clone(),
            ..SessionEvent::default()
        });
        vec![self.encode(&event)]
    }

    fn error(&mut self, code: &str, message: &str) -> String {
        self.counters.errors_sent.fetch_add(1, Relaxed);
        let event = ServerEvent::Error(ErrorEvent {
            event_id: Some(self.id("event")),
            error: ErrorDetail {
                kind: Some("invalid_request_error".into()),
                code: Some(code.into()),
                message: message.into(),
                ..ErrorDetail::default()
            },
            ..ErrorEvent::default()
        });
        self.encode(&event)
    }

    fn raw(&mut self, mut value: Value) -> String {
        if let Some(map) = value.as_object_mut() {
            map.insert("event_id".into(), Value::String(self.id("event")));
        }
        value.to_string()
    }

    fn handle(&mut self, text: &str) -> Vec<String> {
        let event = match ClientEvent::parse(text) {
            Ok(event) => event,
            Err(_) => return vec![self.error("invalid_json", "the event is not JSON")],
        };
        match event {
            ClientEvent::SessionUpdate(update) => self.session_update(update.session),
            ClientEvent::InputAudioBufferAppend(append) => self.append(&append.audio),
            ClientEvent::InputAudioBufferCommit(_) => self.commit(),
            ClientEvent::InputAudioBufferClear(_) => {
                self.buffer = Vec::new();
                vec![self.raw(json!({"type": "input_audio_buffer.cleared"}))]
            }
            ClientEvent::ConversationItemCreate(create) => self.item(&create.item),
            ClientEvent::ResponseCreate(_) => {
                if let Some(input_ms) = self.unanswered.take() {
                    return self.turn_response(input_ms);
                }
                let tool = self.pending.take();
                let spoken = match self.last_output.take() {
                    Some(output) => format!("Done: {}", clip(&output, 80)),
                    None => "Okay.".to_string(),
                };
                let ms = if self.reply_audio_ms > 0 {
                    self.reply_audio_ms
                } else {
                    300
                };
                self.response(ms, &spoken, tool)
            }
            ClientEvent::ResponseCancel(_) => Vec::new(), // responses are sent whole at once
            other => {
                let message = format!("unknown event type {:?}", clip(other.event_type(), 64));
                vec![self.error("unknown_event", &message)]
            }
        }
    }

    fn session_update(&mut self, update: SessionConfig) -> Vec<String> {
        if let Some(auto) = auto_respond(&update.extra) {
            self.auto_respond = auto;
        }
        let merged = SessionConfig {
            kind: update.kind.or(self.session_config.kind.take()),
            model: self.session_config.model.take(),
            instructions: update
                .instructions
                .or(self.session_config.instructions.take()),
            voice: update.voice.or(self.session_config.voice.take()),
            tools: update.tools.or(self.session_config.tools.take()),
            extra: update.extra,
        };
        self.session_config = merged;
        let event = ServerEvent::SessionUpdated(SessionEvent {
            event_id: Some(self.id("event")),
            session: self.session_config.clone(),
            ..SessionEvent::default()
        });
        vec![self.encode(&event)]
    }

    fn append(&mut self, audio: &str) -> Vec<String> {
        let Ok(bytes) = realtime::decode_audio(audio) else {
            return vec![self.error("invalid_audio", "audio is not base64")];
        };
        let n = bytes.len() as u64;
        if self.buffer.len() + bytes.len() > self.max_buffer_bytes {
            self.counters.audio_bytes_refused.fetch_add(n, Relaxed);
            return vec![self.error(
                "input_audio_buffer_full",
                "the input audio buffer is full: commit or clear it",
            )];
        }
        self.counters.audio_bytes_in.fetch_add(n, Relaxed);
        self.buffer.extend_from_slice(&bytes);
        Vec::new()
    }

    fn commit(&mut self) -> Vec<String> {
        if self.buffer.is_empty() {
            return vec![self.error(
                "input_audio_buffer_commit_empty",
                "the input audio buffer is empty",
            )];
        }
        let input_ms = self.buffer.len() as u64 / BYTES_PER_MS;
        self.buffer = Vec::new();
        self.counters.turns.fetch_add(1, Relaxed);
        self.audio_turns += 1;
        let item_id = self.id("item");
        let mut out = vec![self.raw(json!({
            "type": "input_audio_buffer.committed",
            "previous_item_id": null,
            "item_id": item_id,
        }))];
        if self.auto_respond {
            out.extend(self.turn_response(input_ms));
        } else {
            // Turn detection is off: the client asks with response.create.
            self.unanswered = Some(input_ms);
        }
        out
    }

    /// The answer to the last committed audio turn.
    fn turn_response(&mut self, input_ms: u64) -> Vec<String> {
        let ms = if self.reply_audio_ms > 0 {
            self.reply_audio_ms
        } else {
            u32::try_from((input_ms / 2).clamp(100, 10_000)).unwrap_or(10_000)
        };
        let tool = self
            .pending
            .take()
            .or_else(|| ToolCall::scripted(self.audio_turns, self.remember_every));
        let spoken = format!(
            "I heard {input_ms} ms of audio in turn {}.",
            self.audio_turns
        );
        let out = self.response(ms, &spoken, tool);
        if self.drop_every > 0 && self.audio_turns.is_multiple_of(u64::from(self.drop_every)) {
            self.drop_now = true;
        }
        out
    }

    fn item(&mut self, item: &Value) -> Vec<String> {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "message" => {
                let text = message_text(item);
                match ToolCall::parse(&text) {
                    Some(tool) => {
                        self.counters.text_requests.fetch_add(1, Relaxed);
                        self.pending = Some(tool);
                    }
                    None => {
                        tracing::debug!(text = %clip(&text, 64), "stand-in: plain text message")
                    }
                }
            }
            "function_call_output" => {
                self.counters.function_outputs.fetch_add(1, Relaxed);
                let output = item
                    .get("output")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.last_output = Some(output.to_string());
            }
            _ => {
                let message = format!("unsupported item type {:?}", clip(kind, 64));
                return vec![self.error("invalid_item", &message)];
            }
        }
        let item_id = self.id("item");
        vec![self.raw(json!({
            "type": "conversation.item.created",
            "previous_item_id": null,
            "item": {"id": item_id, "type": kind, "status": "completed"},
        }))]
    }

    /// A whole response: created, audio deltas, transcript, an optional
    /// function call, done.
    fn response(&mut self, audio_ms: u32, spoken: &str, tool: Option<ToolCall>) -> Vec<String> {
        let response_id = self.id("resp");
        let item_id = self.id("item");
        let mut out = Vec::new();
        let created = ServerEvent::ResponseCreated(ResponseEvent {
            event_id: Some(self.id("event")),
            response: json!({"id": response_id, "object": "realtime.response", "status": "in_progress", "output": []}),
            ..ResponseEvent::default()
        });
        out.push(self.encode(&created));

        let delta = |this: &mut Self, text: String| Delta {
            event_id: Some(this.id("event")),
            response_id: Some(response_id.clone()),
            item_id: Some(item_id.clone()),
            output_index: Some(0),
            content_index: Some(0),
            delta: text,
            ..Delta::default()
        };
        let mut left = audio_ms;
        while left > 0 {
            let ms = left.min(self.delta_ms);
            left -= ms;
            let pcm = self.tone(ms);
            self.counters.audio_deltas.fetch_add(1, Relaxed);
            self.counters
                .audio_bytes_out
                .fetch_add(pcm.len() as u64, Relaxed);
            let d = delta(self, realtime::encode_audio(&pcm));
            out.push(self.encode(&ServerEvent::OutputAudioDelta(d)));
        }
        out.push(self.raw(json!({"type": "response.output_audio.done", "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0})));
        let d = delta(self, spoken.to_string());
        out.push(self.encode(&ServerEvent::OutputAudioTranscriptDelta(d)));
        out.push(self.raw(json!({"type": "response.output_audio_transcript.done", "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "transcript": spoken})));

        let mut output = vec![json!({
            "id": item_id, "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_audio", "transcript": spoken}],
        })];
        if let Some(tool) = tool {
            let call_id = self.id("call");
            let call_item = self.id("item");
            let arguments = tool.arguments().to_string();
            self.counters.function_calls.fetch_add(1, Relaxed);
            let done = ServerEvent::FunctionCallArgumentsDone(FunctionCallArgumentsDone {
                event_id: Some(self.id("event")),
                response_id: Some(response_id.clone()),
                item_id: Some(call_item.clone()),
                output_index: Some(1),
                call_id: call_id.clone(),
                name: Some(tool.name().into()),
                arguments: arguments.clone(),
                ..FunctionCallArgumentsDone::default()
            });
            out.push(self.encode(&done));
            output.push(json!({
                "id": call_item, "type": "function_call", "status": "completed",
                "name": tool.name(), "call_id": call_id, "arguments": arguments,
            }));
        }
        self.counters.responses.fetch_add(1, Relaxed);
        let done = ServerEvent::ResponseDone(ResponseEvent {
            event_id: Some(self.id("event")),
            response: json!({"id": response_id, "object": "realtime.response", "status": "completed", "output": output}),
            ..ResponseEvent::default()
        });
        out.push(self.encode(&done));
        out
    }

    /// `ms` of a sine tone as PCM16LE at 24 kHz, continuing the phase.
    fn tone(&mut self, ms: u32) -> Vec<u8> {
        let frames = ms as usize * 24;
        let step = std::f64::consts::TAU * self.tone_hz / 24_000.0;
        let mut pcm = Vec::with_capacity(frames * 2);
        for _ in 0..frames {
            let sample = (self.phase.sin() * 0.2 * f64::from(i16::MAX)) as i16;
            pcm.extend_from_slice(&sample.to_le_bytes());
            self.phase = (self.phase + step) % std::f64::consts::TAU;
        }
        pcm
    }
}

/// Whether a `session.update` turns automatic answers on or off: turn
/// detection `null` (GA `audio.input.turn_detection`, or beta
/// `turn_detection`) means the client commits and asks itself; an object
/// answers unless its `create_response` is false. `None`: not mentioned.
fn auto_respond(extra: &serde_json::Map<String, Value>) -> Option<bool> {
    let detection = extra
        .get("audio")
        .and_then(|a| a.get("input"))
        .and_then(|i| i.get("turn_detection"))
        .or_else(|| extra.get("turn_detection"))?;
    Some(match detection {
        Value::Null => false,
        other => other.get("create_response").and_then(Value::as_bool) != Some(false),
    })
}

/// The text of a message item: its `input_text`/`text` parts joined.
fn message_text(item: &Value) -> String {
    let Some(parts) = item.get("content").and_then(Value::as_array) else {
        return String::new();
    };
    parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `max` characters of `s` (for logs and short answers).
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_requests_parse() {
        assert_eq!(
            ToolCall::parse("remember favourite_color: blue"),
            Some(ToolCall::Remember {
                key: "favourite_color".into(),
                value: "blue".into()
            })
        );
        assert_eq!(
            ToolCall::parse("Recall favourite_color"),
            Some(ToolCall::Recall {
                key: "favourite_color".into()
            })
        );
        assert_eq!(
            ToolCall::parse("forget  x "),
            Some(ToolCall::Forget { key: "x".into() })
        );
        assert_eq!(ToolCall::parse("remember"), None);
        assert_eq!(ToolCall::parse("hello there"), None);
    }

    #[test]
    fn turn_detection_settings_switch_automatic_answers() {
        let map = |v: Value| v.as_object().cloned().unwrap_or_default();
        let ga_off = map(json!({"audio": {"input": {"turn_detection": null}}}));
        assert_eq!(auto_respond(&ga_off), Some(false));
        let beta_off = map(json!({"turn_detection": null}));
        assert_eq!(auto_respond(&beta_off), Some(false));
        let vad = map(json!({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}}));
        assert_eq!(auto_respond(&vad), Some(true));
        let quiet =
            map(json!({"turn_detection": {"type": "server_vad", "create_response": false}}));
        assert_eq!(auto_respond(&quiet), Some(false));
        assert_eq!(auto_respond(&map(json!({"voice": "x"}))), None);
    }

    #[test]
    fn the_script_keeps_at_most_two_turn_keys() {
        let mut live = std::collections::BTreeSet::new();
        let mut calls = [0_u32; 3];
        for n in 1..=300 {
            match ToolCall::scripted(n, 3) {
                Some(ToolCall::Remember { key, .. }) => {
                    calls[0] += 1;
                    live.insert(key);
                }
                Some(ToolCall::Recall { key }) => {
                    calls[1] += 1;
                    assert!(live.contains(&key), "turn {n} recalls {key}");
                }
                Some(ToolCall::Forget { key }) => {
                    calls[2] += 1;
                    assert!(live.remove(&key), "turn {n} forgets {key}");
                }
                None => {}
            }
            assert!(live.len() <= 2, "turn {n}: {live:?}");
        }
        assert!(calls.iter().all(|&c| c > 90), "{calls:?}");
    }
}
