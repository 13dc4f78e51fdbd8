//! `RealtimeSession`: the handle, and the one task that drives the
//! conversation over steward-ws links.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use steward_ws::realtime::{self, ClientEvent, ServerEvent};
use steward_ws::{Client, Event, Events, Message, Session, ShutdownMode};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::Error;
use crate::config::{BYTES_PER_MS, RealtimeConfig, SAMPLE_RATE};
use crate::conversation::{Conversation, RealtimeEvent, Step, TruncationCheck};
use crate::history::HistoryItem;
use crate::playout::Playout;
use crate::stats::{Latencies, RealtimeStats};

/// Commands waiting for the session task (audio chunks included).
const COMMANDS: usize = 1024;
/// Events waiting for the application.
const EVENTS: usize = 256;
/// The realtime API refuses commits of less than 100 ms of audio.
const MIN_COMMIT_BYTES: u64 = 100 * BYTES_PER_MS;
/// How often the task looks at the playout while audio or a clear waits.
const BUSY_TICK: Duration = Duration::from_millis(5);
/// How often it looks otherwise (renewal, stats).
const IDLE_TICK: Duration = Duration::from_millis(100);
/// A clear the callback has not applied by then is not measured.
const CLEAR_PATIENCE: Duration = Duration::from_secs(2);
/// Wait before a fresh session after one was lost for good.
const FRESH_DELAY: Duration = Duration::from_millis(500);

enum Command {
    Audio(Vec<u8>),
    Commit(oneshot::Sender<bool>),
    BargeIn(Instant),
    ToolOutput { call_id: String, output: String },
    UserText(String),
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
}

impl Shared {
    fn stats(&self) -> RealtimeStats {
        let mut s = self.stats.lock().clone();
        let refused = *self.refused.lock();
        s.audio_in_bytes += refused;
        s.audio_dropped_bytes += refused;
        s
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
    events: tokio::sync::Mutex<mpsc::Receiver<RealtimeEvent>>,
    shared: Arc<Shared>,
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
        let (events_tx, events) = mpsc::channel(EVENTS);
        let shared = Arc::new(Shared::default());
        let span = tracing::info_span!("realtime_session");
        let mut driver = Driver {
            conv: Conversation::new(self.config.history_items, self.config.history_bytes),
            client: self.client,
            config: self.config,
            playout: self.playout,
            link: None,
            connecting: None,
            commands: rx,
            events: events_tx,
            shared: Arc::clone(&shared),
            held: VecDeque::new(),
            held_bytes: 0,
            play: VecDeque::new(),
            play_bytes: 0,
            clears: Vec::new(),
            barge_latency: Latencies::default(),
            truncation_lag: Latencies::default(),
            replay_latency: Latencies::default(),
            lost_at: None,
            renew_requested: false,
            playout_failed: false,
            retiring: Vec::new(),
        };
        driver.adopt(session, "start", Instant::now());
        let task = tokio::spawn(driver.run().instrument(span));
        Ok(RealtimeSession {
            commands,
            events: tokio::sync::Mutex::new(events),
            shared,
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
    /// when the task is behind by a whole queue the chunk is dropped and
    /// counted in [`RealtimeStats::audio_dropped_bytes`].
    pub fn send_audio(&self, pcm16: Vec<u8>) {
        let n = pcm16.len() as u64;
        if self.commands.try_send(Command::Audio(pcm16)).is_err() {
            *self.shared.refused.lock() += n;
        }
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| Error::Closed)
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

    /// Answers a tool call and asks for the next response.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn tool_output(
        &self,
        call_id: impl Into<String>,
        output: impl Into<String>,
    ) -> Result<(), Error> {
        self.command(Command::ToolOutput {
            call_id: call_id.into(),
            output: output.into(),
        })
        .await
    }

    /// Sends a typed user message and asks for a response.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn user_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.command(Command::UserText(text.into())).await
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
        self.events.lock().await.recv().await
    }

    /// An event if one is waiting.
    #[must_use]
    pub fn try_next_event(&self) -> Option<RealtimeEvent> {
        self.events.try_lock().ok()?.try_recv().ok()
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

/// One link: a steward-ws session (which reconnects by itself).
struct Link {
    session: Session,
    events: Events,
    up: bool,
    connected_at: Instant,
    /// The service's `expires_at`, as time from `connected_at`.
    expires_in: Option<Duration>,
    /// Audio appended since the last commit (manual turns).
    appended: u64,
}

struct Connecting {
    task: JoinHandle<Result<Session, steward_ws::Error>>,
    reason: &'static str,
    started: Instant,
}

struct Driver {
    conv: Conversation,
    client: Client,
    config: RealtimeConfig,
    playout: Option<Arc<dyn Playout>>,
    link: Option<Link>,
    connecting: Option<Connecting>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<RealtimeEvent>,
    shared: Arc<Shared>,
    /// User audio waiting for the link, oldest first.
    held: VecDeque<Vec<u8>>,
    held_bytes: u64,
    /// Model audio waiting for the playout: (item id, PCM16).
    play: VecDeque<(String, Vec<u8>)>,
    play_bytes: u64,
    /// Clears not yet seen applied by the callback: (generation, onset,
    /// the truncations sent with it).
    clears: Vec<(u64, Instant, Vec<TruncationCheck>)>,
    barge_latency: Latencies,
    truncation_lag: Latencies,
    replay_latency: Latencies,
    /// When the current link was lost (or a renewal began).
    lost_at: Option<Instant>,
    renew_requested: bool,
    playout_failed: bool,
    /// Old sessions closing after a switch.
    retiring: Vec<JoinHandle<()>>,
}

async fn next_message(session: Option<Session>) -> Option<Option<Message>> {
    match session {
        Some(s) => Some(s.recv().await),
        None => std::future::pending().await,
    }
}

async fn next_event(events: Option<Events>) -> Option<Event> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

async fn connected(
    connecting: &mut Option<Connecting>,
) -> (Result<Session, String>, &'static str, Instant) {
    let Some(c) = connecting else {
        return std::future::pending().await;
    };
    let result = match (&mut c.task).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (reason, started) = (c.reason, c.started);
    *connecting = None;
    (result, reason, started)
}

impl Driver {
    async fn run(mut self) -> RealtimeStats {
        let mut next_tick = tokio::time::Instant::now();
        loop {
            let session = self.link.as_ref().map(|l| l.session.clone());
            let events = self.link.as_ref().map(|l| l.events.clone());
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => break,
                    Some(Command::Close(reply)) => {
                        let stats = self.close().await;
                        let _ = reply.send(stats.clone());
                        return stats;
                    }
                    Some(c) => self.command(c),
                },
                message = next_message(session) => match message {
                    Some(Some(m)) => self.server_message(&m),
                    _ => self.link_gone("the session ended"),
                },
                event = next_event(events) => match event {
                    Some(e) => self.link_event(e),
                    None => self.link_gone("the session ended"),
                },
                (result, reason, started) = connected(&mut self.connecting) => {
                    self.new_link(result, reason, started);
                }
                () = tokio::time::sleep_until(next_tick) => {
                    self.tick();
                    let busy = !self.play.is_empty() || !self.clears.is_empty();
                    next_tick = tokio::time::Instant::now() + if busy { BUSY_TICK } else { IDLE_TICK };
                }
            }
        }
        // Every handle is gone: nobody reads the result.
        self.close().await
    }

    // -- commands ---------------------------------------------------------

    fn command(&mut self, command: Command) {
        match command {
            Command::Audio(pcm) => self.audio_up(pcm),
            Command::Commit(reply) => {
                let sent = self.commit();
                let _ = reply.send(sent);
            }
            Command::BargeIn(at) => self.barge_in(at),
            Command::ToolOutput { call_id, output } => {
                let events = self.conv.tool_output(&call_id, &output);
                self.send_all(events);
            }
            Command::UserText(text) => {
                let events = self.conv.user_text(&text);
                self.send_all(events);
            }
            Command::Renew => self.renew_requested = true,
            Command::History(reply) => {
                let _ = reply.send(self.conv.history().items().cloned().collect());
            }
            Command::Close(_) => {}
        }
    }

    fn audio_up(&mut self, pcm: Vec<u8>) {
        let n = pcm.len() as u64;
        self.conv.stats_mut().audio_in_bytes += n;
        self.held_bytes += n;
        self.held.push_back(pcm);
        self.flush_held();
        let max = self.config.held_audio_ms * BYTES_PER_MS;
        while self.held_bytes > max {
            let Some(old) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= old.len() as u64;
            self.conv.stats_mut().audio_dropped_bytes += old.len() as u64;
        }
    }

    /// Sends held audio while the link is up and no session switch is on.
    fn flush_held(&mut self) {
        if self
            .connecting
            .as_ref()
            .is_some_and(|c| c.reason == "renewal")
        {
            return;
        }
        let Some(link) = &mut self.link else { return };
        if !link.up {
            return;
        }
        while let Some(pcm) = self.held.pop_front() {
            let n = pcm.len() as u64;
            let message = ClientEvent::InputAudioBufferAppend(realtime::InputAudioBufferAppend {
                audio: realtime::encode_audio(&pcm),
                ..Default::default()
            })
            .to_message();
            let Ok(message) = message else {
                self.held_bytes -= n;
                self.conv.stats_mut().audio_dropped_bytes += n;
                continue;
            };
            match link.session.try_send(message) {
                Ok(()) => {
                    self.held_bytes -= n;
                    link.appended += n;
                    self.conv.stats_mut().audio_sent_bytes += n;
                }
                Err(_) => {
                    // The queue is the limit (or the link just went): keep it.
                    self.held.push_front(pcm);
                    break;
                }
            }
        }
    }

    fn commit(&mut self) -> bool {
        let Some(link) = &mut self.link else {
            return false;
        };
        if link.appended < MIN_COMMIT_BYTES || !link.up {
            return false;
        }
        link.appended = 0;
        self.conv.stats_mut().commits_sent += 1;
        let commit = ClientEvent::InputAudioBufferCommit(realtime::Plain::default());
        self.send_all(vec![commit, ClientEvent::response_create()]);
        true
    }

    fn send_all(&mut self, events: Vec<ClientEvent>) {
        let Some(link) = &self.link else {
            tracing::debug!(events = events.len(), "no link: events not sent");
            return;
        };
        for event in events {
            let sent = event.to_message().and_then(|m| link.session.try_send(m));
            if let Err(e) = sent {
                tracing::debug!(error = %e, event = event.event_type(), "event not sent");
            }
        }
    }

    fn notify(&mut self, event: RealtimeEvent) {
        if self.events.try_send(event).is_err() {
            self.conv.stats_mut().events_dropped += 1;
        }
    }

    // -- from the service -----------------------------------------------------

    fn server_message(&mut self, message: &Message) {
        let event = match ServerEvent::from_message(message) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable event skipped");
                self.conv.stats_mut().protocol_error("undecodable");
                return;
            }
        };
        let arrived = Instant::now();
        let step = self.conv.on_server(&event);
        self.apply(step, arrived);
        // Turns and responses are what callers wait on: fresh at once.
        if matches!(
            event,
            ServerEvent::ResponseDone(_) | ServerEvent::SpeechStarted(_) | ServerEvent::Other(_)
        ) {
            self.publish();
        }
    }

    fn apply(&mut self, step: Step, arrived: Instant) {
        let Step {
            play,
            barge_in,
            send,
            notice,
            expired,
            created,
        } = step;
        if barge_in {
            self.barge_in(arrived);
        }
        if let Some((item, pcm)) = play {
            self.queue_play(item, pcm);
        }
        self.send_all(send);
        if let Some(expires_at) = created
            && let Some(link) = &mut self.link
        {
            link.expires_in = expires_at.and_then(|at| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
                Some(Duration::from_secs(at).saturating_sub(now) + link.connected_at.elapsed())
            });
        }
        if expired {
            tracing::warn!("the service ended the session (session_expired): reconnecting");
            self.conv.stats_mut().sessions_lost += 1;
        }
        if let Some(n) = notice {
            if let RealtimeEvent::ServerError(e) = &n {
                tracing::debug!(code = e.code.as_str(), message = %e.message, "service error event");
            }
            self.notify(n);
        }
    }

    // -- barge-in -------------------------------------------------------------

    fn barge_in(&mut self, onset: Instant) {
        let played = self.playout.as_ref().map_or(0, |p| p.played_frames());
        let mut decision = self.conv.barge_in(played);
        // A clear still pending is applied with this one: measure those
        // that are done first, so the next reading is theirs alone.
        self.measure_clears();
        if decision.clear
            && let Some(p) = &self.playout
        {
            let generation = p.clear();
            let checks = std::mem::take(&mut decision.checks);
            self.clears.push((generation, onset, checks));
        }
        if decision.happened {
            let dropped = std::mem::take(&mut self.play);
            self.play_bytes = 0;
            let bytes: u64 = dropped.iter().map(|(_, pcm)| pcm.len() as u64).sum();
            self.conv.discarded(bytes);
            tracing::debug!(
                truncated_ms = ?decision.truncated_ms,
                cancelled = decision.cancelled,
                "barge-in"
            );
            let event = RealtimeEvent::BargeIn {
                truncated_ms: decision.truncated_ms,
                cancelled: decision.cancelled,
            };
            self.send_all(decision.send);
            self.notify(event);
        }
    }

    // -- playout --------------------------------------------------------------

    fn queue_play(&mut self, item: String, pcm: Vec<u8>) {
        let n = pcm.len() as u64;
        if self.playout.is_none()
            || self.playout_failed
            || self.play_bytes + n > self.config.play_queue_ms * BYTES_PER_MS
        {
            self.conv.discarded(n);
            return;
        }
        self.play_bytes += n;
        self.play.push_back((item, pcm));
        self.pump_playout();
    }

    fn pump_playout(&mut self) {
        let Some(playout) = self.playout.clone() else {
            return;
        };
        while let Some((item, pcm)) = self.play.front_mut() {
            if pcm.is_empty() {
                self.play.pop_front();
                continue;
            }
            let played = playout.played_frames();
            match playout.try_write(pcm) {
                Ok(0) => break,
                Ok(n) => {
                    let n = n.min(pcm.len());
                    pcm.drain(..n);
                    let done = pcm.is_empty();
                    let item = item.clone();
                    self.play_bytes -= n as u64;
                    self.conv.written(&item, n as u64 / 2, played);
                    if done {
                        self.play.pop_front();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the playout failed: answers are no longer played");
                    self.playout_failed = true;
                    let bytes = self.play_bytes;
                    self.play.clear();
                    self.play_bytes = 0;
                    self.conv.discarded(bytes);
                    break;
                }
            }
        }
    }

    fn measure_clears(&mut self) {
        let Some(playout) = &self.playout else {
            self.clears.clear();
            return;
        };
        let applied = playout.last_cleared();
        let now = Instant::now();
        let mut beyond = 0;
        self.clears
            .retain(|(generation, onset, checks)| match applied {
                Some(c) if c.generation >= *generation => {
                    // Only the clear that was asked for says when it took
                    // effect (a later one: some time before that, unknown)
                    // and where this truncation's item stopped.
                    if c.generation == *generation {
                        self.barge_latency
                            .record(c.at.saturating_duration_since(*onset));
                    }
                    if let (true, Some(played)) = (c.generation == *generation, c.played_frames) {
                        for check in checks.iter() {
                            let heard = check.heard_frames(played);
                            let sent = check.sent_frames();
                            beyond += u64::from(sent > heard);
                            self.truncation_lag
                                .record(frames_to_duration(heard.saturating_sub(sent)));
                        }
                    }
                    false
                }
                _ => now.duration_since(*onset) < CLEAR_PATIENCE,
            });
        self.conv.stats_mut().truncations_beyond_heard += beyond;
    }

    // -- links ----------------------------------------------------------------

    /// Puts a freshly connected steward-ws session under the conversation:
    /// configures it and replays the history.
    fn adopt(&mut self, session: Session, reason: &'static str, started: Instant) {
        let old = self.link.replace(Link {
            events: session.events(),
            session: session.clone(),
            up: true,
            connected_at: Instant::now(),
            expires_in: None,
            appended: 0,
        });
        if let Some(old) = old {
            // Queued messages are written, then the old session closes;
            // `close` waits for it, so nothing outlives the conversation.
            self.retiring.push(tokio::spawn(async move {
                let _ = old.session.shutdown(ShutdownMode::Drain).await;
            }));
        }
        *self.shared.session.lock() = Some(session);
        self.conv.stats_mut().sessions += 1;
        self.configure(reason, started);
    }

    /// Sends `session.update` and the replay on the current link.
    fn configure(&mut self, reason: &'static str, started: Instant) {
        if reason != "start" {
            self.conv.new_session();
        }
        let mut events = vec![self.config.session_update()];
        let replay = if reason == "start" {
            Vec::new()
        } else {
            self.conv.replay()
        };
        let replayed = replay.len() as u64;
        events.extend(replay);
        self.send_all(events);
        let stats = self.conv.stats_mut();
        if reason != "start" {
            stats.replays += 1;
            stats.items_replayed += replayed;
            self.replay_latency.record(started.elapsed());
        }
        let session = stats.sessions;
        tracing::info!(session, reason, replayed, "realtime session ready");
        self.lost_at = None;
        self.shared.connected.store(true, Relaxed);
        self.notify(RealtimeEvent::SessionReady {
            session,
            reason,
            replayed,
        });
        self.flush_held();
        self.publish();
    }

    fn link_event(&mut self, event: Event) {
        match event {
            Event::Connected { connection } if connection > 1 => {
                if let Some(link) = &mut self.link {
                    link.up = true;
                    link.connected_at = Instant::now();
                    link.expires_in = None;
                    link.appended = 0;
                }
                self.conv.stats_mut().reconnects += 1;
                let started = self.lost_at.unwrap_or_else(Instant::now);
                self.configure("reconnect", started);
            }
            Event::Disconnected {
                reason,
                undelivered,
            } => {
                tracing::warn!(error = %reason, undelivered = undelivered.len(), "realtime link lost");
                if let Some(link) = &mut self.link {
                    link.up = false;
                }
                self.shared.connected.store(false, Relaxed);
                self.lost_at.get_or_insert_with(Instant::now);
                self.take_back(&undelivered);
                self.notify(RealtimeEvent::LinkLost {
                    reason: reason.to_string(),
                });
            }
            Event::GaveUp { undelivered, .. } => {
                self.take_back(&undelivered);
                self.link_gone("gave up reconnecting");
            }
            _ => {}
        }
    }

    /// Appends that never reached the socket go back to the front of the
    /// held audio, in order: a reconnect loses no user audio.
    fn take_back(&mut self, undelivered: &[Message]) {
        for message in undelivered.iter().rev() {
            let Some(pcm) = append_pcm(message) else {
                continue;
            };
            let n = pcm.len() as u64;
            let stats = self.conv.stats_mut();
            stats.audio_sent_bytes = stats.audio_sent_bytes.saturating_sub(n);
            self.held_bytes += n;
            self.held.push_front(pcm);
        }
    }

    /// The link is gone for good: a fresh session follows.
    fn link_gone(&mut self, why: &str) {
        let Some(link) = self.link.take() else { return };
        tracing::warn!(why, "realtime session lost: a fresh one follows");
        self.shared.connected.store(false, Relaxed);
        *self.shared.session.lock() = None;
        self.conv.stats_mut().sessions_lost += 1;
        self.lost_at.get_or_insert_with(Instant::now);
        drop(link);
        self.start_connect("fresh", FRESH_DELAY);
    }

    fn start_connect(&mut self, reason: &'static str, delay: Duration) {
        if self.connecting.is_some() {
            return;
        }
        let client = self.client.clone();
        let started = self.lost_at.unwrap_or_else(Instant::now);
        self.connecting = Some(Connecting {
            task: tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                client.connect().await
            }),
            reason,
            started,
        });
    }

    fn new_link(
        &mut self,
        result: Result<Session, String>,
        reason: &'static str,
        started: Instant,
    ) {
        match result {
            Ok(session) => {
                if reason == "renewal" {
                    self.conv.stats_mut().renewals += 1;
                    self.renew_requested = false;
                }
                self.adopt(session, reason, started);
            }
            Err(e) => {
                tracing::warn!(error = %e, reason, "realtime connect failed");
                if self.link.is_none() {
                    self.start_connect("fresh", FRESH_DELAY * 4);
                } else {
                    // A failed renewal: try again at the next boundary.
                    self.flush_held();
                }
            }
        }
    }

    fn renewal_due(&self) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        if self.connecting.is_some() || !link.up || !self.conv.at_turn_boundary() {
            return false;
        }
        if self.renew_requested {
            return true;
        }
        self.config.renew
            && self
                .config
                .renew_in(link.connected_at.elapsed(), link.expires_in)
                .is_zero()
    }

    fn tick(&mut self) {
        self.retiring.retain(|t| !t.is_finished());
        self.pump_playout();
        self.measure_clears();
        self.flush_held();
        if self.renewal_due() {
            tracing::info!("renewing the realtime session at a turn boundary");
            self.lost_at = Some(Instant::now());
            self.start_connect("renewal", Duration::ZERO);
        }
        self.publish();
    }

    fn publish(&mut self) {
        let mut s = self.conv.stats().clone();
        s.audio_held_bytes = self.held_bytes;
        s.audio_queued_bytes = self.play_bytes;
        s.barge_in_latency = self.barge_latency.summary();
        s.truncation_lag = self.truncation_lag.summary();
        s.reconnect_replay = self.replay_latency.summary();
        s.history_items = self.conv.history().len() as u64;
        s.history_dropped = self.conv.history().dropped();
        *self.shared.stats.lock() = s;
    }

    async fn close(&mut self) -> RealtimeStats {
        // Audio still in the command queue counts as held (never sent).
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Audio(pcm) = command {
                self.conv.stats_mut().audio_in_bytes += pcm.len() as u64;
                self.held_bytes += pcm.len() as u64;
            }
        }
        if let Some(c) = self.connecting.take() {
            c.task.abort();
        }
        if let Some(link) = self.link.take() {
            let unsent = link.session.shutdown(ShutdownMode::Drain).await;
            self.take_back(&unsent);
        }
        for old in std::mem::take(&mut self.retiring) {
            let _ = old.await;
        }
        self.shared.connected.store(false, Relaxed);
        *self.shared.session.lock() = None;
        self.measure_clears();
        let discarded = self.play_bytes;
        self.play.clear();
        self.play_bytes = 0;
        self.conv.discarded(discarded);
        self.publish();
        self.shared.closed.store(true, Relaxed);
        let stats = self.shared.stats.lock().clone();
        tracing::info!(
            sessions = stats.sessions,
            barge_ins = stats.barge_ins,
            renewals = stats.renewals,
            reconnects = stats.reconnects,
            "realtime session closed"
        );
        stats
    }
}

/// The PCM16 bytes of an `input_audio_buffer.append` message.
fn append_pcm(message: &Message) -> Option<Vec<u8>> {
    let text = message.as_text()?;
    if !text.contains("input_audio_buffer.append") {
        return None;
    }
    match ClientEvent::parse(text).ok()? {
        ClientEvent::InputAudioBufferAppend(a) => realtime::decode_audio(&a.audio).ok(),
        _ => None,
    }
}

/// 24 kHz frames as a duration.
fn frames_to_duration(frames: u64) -> Duration {
    Duration::from_micros(frames.saturating_mul(1_000_000) / SAMPLE_RATE)
}
