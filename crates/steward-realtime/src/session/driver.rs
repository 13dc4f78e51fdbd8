//! The one task that drives a conversation: commands from the handles,
//! events from the service, the playout, and the links (renewal, replay).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use steward_ws::realtime::{self, ClientEvent, ServerEvent};
use steward_ws::{Client, Event, Events, Message, Session, ShutdownMode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::events::{EventSender, Overflow};
use super::{Command, Shared};
use crate::config::{BYTES_PER_MS, RealtimeConfig, SAMPLE_RATE};
use crate::conversation::{Conversation, RealtimeEvent, Step, TruncationCheck};
use crate::playout::Playout;
use crate::stats::{Latencies, RealtimeStats};

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

/// One link: a steward-ws session (which reconnects by itself).
struct Link {
    session: Session,
    events: Events,
    /// The steward-ws link number the conversation last saw come up: events
    /// decided for it (they name its items) are sent on it or not at all.
    connection: u64,
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

pub(super) struct Driver {
    conv: Conversation,
    client: Client,
    config: RealtimeConfig,
    playout: Option<Arc<dyn Playout>>,
    link: Option<Link>,
    connecting: Option<Connecting>,
    commands: mpsc::Receiver<Command>,
    events: EventSender,
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
    /// A driver with no link yet: [`adopt`](Self::adopt) the first one.
    pub(super) fn new(
        client: Client,
        config: RealtimeConfig,
        playout: Option<Arc<dyn Playout>>,
        commands: mpsc::Receiver<Command>,
        events: EventSender,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            conv: Conversation::new(config.history_items, config.history_bytes),
            client,
            config,
            playout,
            link: None,
            connecting: None,
            commands,
            events,
            shared,
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
        }
    }

    pub(super) async fn run(mut self) -> RealtimeStats {
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
            // The text's bytes leave the queue's count as the command goes.
            Command::ToolOutput {
                call_id,
                output,
                held: _held,
            } => {
                let events = self.conv.tool_output(&call_id, &output);
                self.send_all(events);
            }
            Command::UserText(text, _held) => {
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
        self.shared.queued_audio.fetch_sub(n, Relaxed);
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
            match link.session.try_send_on(link.connection, message) {
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
        let mut unsent = 0;
        for event in events {
            let sent = event
                .to_message()
                .and_then(|m| link.session.try_send_on(link.connection, m));
            if let Err(e) = sent {
                unsent += 1;
                tracing::debug!(error = %e, event = event.event_type(), "event not sent");
            }
        }
        self.conv.stats_mut().events_unsent += unsent;
    }

    /// Queues an event for the application; what a full queue gave up is
    /// counted and, once per burst, logged.
    fn notify(&mut self, event: RealtimeEvent) {
        let lost = self.events.send(event);
        if lost == Overflow::default() {
            return;
        }
        let stats = self.conv.stats_mut();
        stats.events_dropped += lost.dropped;
        stats.tool_calls_dropped += lost.calls_dropped;
        stats.events_coalesced += lost.coalesced;
        if lost.first_in_burst {
            tracing::warn!(
                dropped = lost.dropped,
                folded = lost.coalesced,
                "the event queue is full: the application does not read the events"
            );
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
    pub(super) fn adopt(&mut self, session: Session, reason: &'static str, started: Instant) {
        let old = self.link.replace(Link {
            events: session.events(),
            session: session.clone(),
            // A fresh steward-ws session: its first link.
            connection: 1,
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
            Event::Connected { connection: 1 } => {}
            Event::Connected { connection } => {
                if let Some(link) = &mut self.link {
                    link.connection = connection;
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
                self.shared
                    .queued_audio
                    .fetch_sub(pcm.len() as u64, Relaxed);
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
