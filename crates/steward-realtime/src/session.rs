//! `RealtimeSession`: the handle, and the one task that drives the
//! conversation over steward-ws links.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;
use steward_ws::{Client, Session};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::Error;
use crate::config::{BYTES_PER_MS, RealtimeConfig};
use crate::conversation::RealtimeEvent;
use crate::history::HistoryItem;
use crate::playout::Playout;
use crate::stats::RealtimeStats;

mod driver;
mod events;

use driver::Driver;

/// Commands waiting for the session task (audio chunks included; their
/// bytes are bounded too, see [`RealtimeSession::send_audio`]).
const COMMANDS: usize = 1024;

enum Command {
    Audio(Vec<u8>),
    Commit(oneshot::Sender<bool>),
    BargeIn(Instant),
    ToolOutput {
        call_id: String,
        output: String,
        held: HeldText,
    },
    UserText(String, HeldText),
    Renew,
    History(oneshot::Sender<Vec<HistoryItem>>),
    Close(oneshot::Sender<RealtimeStats>),
}

/// What the handle reads without asking the task.
#[derive(Default)]
struct Shared {
    stats: Mutex<RealtimeStats>,
    session: Mutex<Option<Session>>,
    connected: AtomicBool,
    /// The task has ended.
    closed: AtomicBool,
    /// Audio refused because the command queue was full, in bytes.
    refused: Mutex<u64>,
    /// Audio in the command queue, in bytes (the task takes it off).
    queued_audio: AtomicU64,
    /// Audio is being refused (one warning per burst).
    refusing: AtomicBool,
    /// Text (tool outputs, user messages) in the command queue, in bytes.
    queued_text: AtomicU64,
    /// Tool outputs and user messages refused for `text_queue_bytes`.
    texts_refused: AtomicU64,
    /// Text is being refused (one warning per burst).
    refusing_text: AtomicBool,
}

impl Shared {
    fn stats(&self) -> RealtimeStats {
        let mut s = self.stats.lock().clone();
        let refused = *self.refused.lock();
        s.audio_in_bytes += refused;
        s.audio_dropped_bytes += refused;
        s.texts_refused = self.texts_refused.load(Relaxed);
        s
    }
}

/// The bytes of text a command holds in the queue, given back when the
/// command is dropped: taken by the task, or never queued (the session
/// closed, the caller's future dropped while waiting for room).
struct HeldText {
    shared: Arc<Shared>,
    bytes: u64,
}

impl Drop for HeldText {
    fn drop(&mut self) {
        self.shared.queued_text.fetch_sub(self.bytes, Relaxed);
    }
}

/// A cheap, cloneable view of a session's counters, for exporters (the
/// steward facade's health and metrics). It keeps nothing alive but the
/// counters.
#[derive(Clone)]
pub struct RealtimeStatsHandle(Arc<Shared>);

impl std::fmt::Debug for RealtimeStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeStatsHandle")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl RealtimeStatsHandle {
    /// The counters now (see [`RealtimeSession::stats`]).
    #[must_use]
    pub fn stats(&self) -> RealtimeStats {
        self.0.stats()
    }

    /// Whether the session has closed (its task ended).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Relaxed)
    }
}

/// One realtime conversation that outlives its sessions.
///
/// Audio goes up with [`send_audio`](Self::send_audio); the model's audio is
/// written to the [`Playout`]; the application reads [`RealtimeEvent`]s
/// (tool calls above all) with [`next_event`](Self::next_event) and answers
/// with [`tool_output`](Self::tool_output). Barge-in, renewal, reconnect and
/// replay happen inside; [`stats`](Self::stats) says how they went.
///
/// Cancel safety: every `async` method is cancel safe; a command whose
/// future is dropped before it was queued is not sent.
pub struct RealtimeSession {
    commands: mpsc::Sender<Command>,
    events: events::EventReceiver,
    shared: Arc<Shared>,
    /// Most audio the command queue holds, in bytes.
    audio_limit: u64,
    /// Most text the command queue holds, in bytes.
    text_limit: u64,
    task: Mutex<Option<JoinHandle<RealtimeStats>>>,
}

impl std::fmt::Debug for RealtimeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSession")
            .field("connected", &self.shared.connected.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// Builds a [`RealtimeSession`].
#[must_use]
pub struct RealtimeSessionBuilder {
    client: Client,
    config: RealtimeConfig,
    playout: Option<Arc<dyn Playout>>,
}

impl std::fmt::Debug for RealtimeSessionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSessionBuilder")
            .field("config", &self.config)
            .field("playout", &self.playout.is_some())
            .finish_non_exhaustive()
    }
}

impl RealtimeSessionBuilder {
    /// The conversation's settings.
    pub fn config(mut self, config: RealtimeConfig) -> Self {
        self.config = config;
        self
    }

    /// Where the model's audio plays. Without one, audio is received and
    /// counted but not played, and barge-ins only cancel.
    pub fn playout(mut self, playout: Arc<dyn Playout>) -> Self {
        self.playout = Some(playout);
        self
    }

    /// Connects the first session, configures it and starts the task.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad setting, [`Error::Link`] when the first
    /// connection fails.
    pub async fn connect(self) -> Result<RealtimeSession, Error> {
        self.config.validate()?;
        let session = self
            .client
            .connect()
            .await
            .map_err(|source| Error::Link { source })?;
        let (commands, rx) = mpsc::channel(COMMANDS);
        let (events_tx, events) =
            events::event_queue(self.config.event_queue, self.config.event_queue_bytes);
        let audio_limit = self.config.held_audio_ms * BYTES_PER_MS;
        let text_limit = u64::try_from(self.config.text_queue_bytes).unwrap_or(u64::MAX);
        let shared = Arc::new(Shared::default());
        let span = tracing::info_span!("realtime_session");
        let mut driver = Driver::new(
            self.client,
            self.config,
            self.playout,
            rx,
            events_tx,
            Arc::clone(&shared),
        );
        driver.adopt(session, "start", Instant::now());
        let task = tokio::spawn(driver.run().instrument(span));
        Ok(RealtimeSession {
            commands,
            events,
            shared,
            audio_limit,
            text_limit,
            task: Mutex::new(Some(task)),
        })
    }
}

impl RealtimeSession {
    /// A builder on a steward-ws client (see
    /// [`RealtimeConfig::client_builder`] for one with the heartbeat and
    /// reconnect settings this crate expects).
    pub fn builder(client: Client) -> RealtimeSessionBuilder {
        RealtimeSessionBuilder {
            client,
            config: RealtimeConfig::default(),
            playout: None,
        }
    }

    /// Hands user audio (PCM16 mono 24 kHz) to the session. Never waits:
    /// when the task is behind by a whole queue (1024 commands, or
    /// [`RealtimeConfig::held_audio_ms`] of audio) the chunk is dropped,
    /// counted in [`RealtimeStats::audio_dropped_bytes`] and logged once
    /// per burst.
    pub fn send_audio(&self, pcm16: Vec<u8>) {
        let n = pcm16.len() as u64;
        let queued = self.shared.queued_audio.fetch_add(n, Relaxed);
        // A chunk larger than the bound passes alone.
        let room = queued == 0 || queued + n <= self.audio_limit;
        if room && self.commands.try_send(Command::Audio(pcm16)).is_ok() {
            self.shared.refusing.store(false, Relaxed);
            return;
        }
        self.shared.queued_audio.fetch_sub(n, Relaxed);
        *self.shared.refused.lock() += n;
        if !self.shared.refusing.swap(true, Relaxed) {
            tracing::warn!(
                queued_bytes = queued,
                limit_bytes = self.audio_limit,
                "the session task is behind: user audio dropped (counted in audio_dropped_bytes)"
            );
        }
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| Error::Closed)
    }

    /// Counts `bytes` of text into the command queue, or refuses them when
    /// the text already waiting would go beyond the bound (a lone text of
    /// any size passes, as a chunk of audio does).
    fn hold_text(&self, what: &'static str, bytes: u64) -> Result<HeldText, Error> {
        let queued = self.shared.queued_text.fetch_add(bytes, Relaxed);
        let held = HeldText {
            shared: Arc::clone(&self.shared),
            bytes,
        };
        if queued == 0 || queued.saturating_add(bytes) <= self.text_limit {
            self.shared.refusing_text.store(false, Relaxed);
            return Ok(held);
        }
        drop(held);
        self.shared.texts_refused.fetch_add(1, Relaxed);
        if !self.shared.refusing_text.swap(true, Relaxed) {
            tracing::warn!(
                what,
                bytes,
                queued_bytes = queued,
                limit_bytes = self.text_limit,
                "the session task is behind: text refused (counted in texts_refused)"
            );
        }
        Err(Error::QueueFull {
            what,
            bytes,
            queued_bytes: queued,
            limit_bytes: self.text_limit,
        })
    }

    /// Manual turns: commits the audio sent since the last commit and asks
    /// for a response. `Ok(false)` when nothing was committed (less than
    /// 100 ms of audio since the last commit, or the link is down).
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn commit(&self) -> Result<bool, Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Commit(tx)).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The caller's own voice detector heard the user start: barge in as on
    /// the service's `speech_started`. Latency counts from this call.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn barge_in(&self) -> Result<(), Error> {
        self.command(Command::BargeIn(Instant::now())).await
    }

    /// Answers a tool call and asks for the next response. Waits while
    /// the command queue is full (1,024 commands).
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::QueueFull`] when the text waiting for
    /// the task would go beyond [`RealtimeConfig::text_queue_bytes`].
    pub async fn tool_output(
        &self,
        call_id: impl Into<String>,
        output: impl Into<String>,
    ) -> Result<(), Error> {
        let (call_id, output) = (call_id.into(), output.into());
        let bytes = (call_id.len() + output.len()) as u64;
        let held = self.hold_text("tool output", bytes)?;
        self.command(Command::ToolOutput {
            call_id,
            output,
            held,
        })
        .await
    }

    /// Sends a typed user message and asks for a response. Waits while
    /// the command queue is full (1,024 commands).
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::QueueFull`] as for
    /// [`tool_output`](Self::tool_output).
    pub async fn user_text(&self, text: impl Into<String>) -> Result<(), Error> {
        let text = text.into();
        let held = self.hold_text("user message", text.len() as u64)?;
        self.command(Command::UserText(text, held)).await
    }

    /// Renews the session at the next turn boundary, whatever its age.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn renew(&self) -> Result<(), Error> {
        self.command(Command::Renew).await
    }

    /// The conversation history as kept for replay.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn history(&self) -> Result<Vec<HistoryItem>, Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::History(tx)).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The next event; `None` once the session is closed and none is left.
    pub async fn next_event(&self) -> Option<RealtimeEvent> {
        self.events.recv().await
    }

    /// An event if one is waiting.
    #[must_use]
    pub fn try_next_event(&self) -> Option<RealtimeEvent> {
        self.events.try_recv()
    }

    /// The counters (refreshed every 100 ms and on every session change).
    #[must_use]
    pub fn stats(&self) -> RealtimeStats {
        self.shared.stats()
    }

    /// A cloneable view of the counters that outlives nothing else.
    #[must_use]
    pub fn stats_handle(&self) -> RealtimeStatsHandle {
        RealtimeStatsHandle(Arc::clone(&self.shared))
    }

    /// Whether the current link is up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Relaxed)
    }

    /// The steward-ws session carrying the conversation now (it changes on
    /// renewal), e.g. to register it for shedding.
    #[must_use]
    pub fn ws_session(&self) -> Option<Session> {
        self.shared.session.lock().clone()
    }

    /// Closes the link (queued messages written first, bounded by the
    /// client's drain timeout), ends the task and returns the final counters.
    /// Idempotent.
    pub async fn close(&self) -> RealtimeStats {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).await.is_ok()
            && let Ok(stats) = rx.await
        {
            *self.shared.stats.lock() = stats;
        }
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.stats()
    }
}
