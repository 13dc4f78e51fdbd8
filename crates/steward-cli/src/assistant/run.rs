//! The session task: audio from the input to the realtime conversation,
//! tool calls to the memory, the status every poll, the report at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use steward::Steward;
use steward::audio::Capture;
use steward::realtime::{
    LatencySummary, RealtimeConfig, RealtimeEvent, RealtimeSession, RealtimeStats,
};
use steward::store::Backend;
use steward::ws::Client;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::devices::Speaker;
use super::input::{Chunk, Source};
use super::{AssistantConfig, Report, Shared, Status, procfs, soak, tools};
use crate::Error;
use crate::error::redact_url;
use crate::standin::Standin;

/// Errors kept word for word in the report (the rest are only counted).
const MAX_ERRORS_KEPT: usize = 50;
/// After a WAV input ends with no duration set: how long to wait for the
/// last answers.
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// The session task's state.
pub(super) struct Run {
    pub(super) config: AssistantConfig,
    pub(super) realtime: RealtimeConfig,
    pub(super) started: Instant,
    pub(super) url: String,
    pub(super) standin: Option<Standin>,
    /// The memory the tools use (a file store or a Redis namespace).
    pub(super) store: Arc<dyn Backend>,
    pub(super) steward: Steward,
    pub(super) client: Client,
    pub(super) source: Option<Source>,
    /// A capture whose device was lost and could not be reopened yet.
    pub(super) lost_capture: Option<Arc<Capture>>,
    /// The playout the conversation writes to (the stream under it is
    /// reopened when its device is lost).
    pub(super) playback: Option<Arc<Speaker>>,
    pub(super) shared: Arc<Shared>,
    pub(super) rt: Option<RealtimeSession>,
    /// Counters of the conversations already closed (`--sessions` cycles).
    pub(super) closed: RealtimeStats,
    /// Audio captured while no conversation was open (counted as dropped).
    pub(super) orphan_audio: u64,
    /// Tool answers sent (each asks for a response).
    pub(super) tool_outputs: u64,
    /// Manual commits sent in this conversation (each answered).
    pub(super) commits: u64,
    pub(super) csv: Option<soak::CsvWriter>,
    pub(super) rows: soak::Rows,
    pub(super) report: Report,
    pub(super) session_index: u32,
    pub(super) last_error_log: Option<Instant>,
    /// Flaps of the current steward-ws session already reported.
    pub(super) flaps_seen: u64,
}

async fn next_chunk(source: &mut Option<Source>) -> Result<Chunk, Error> {
    match source {
        Some(source) => source.next().await,
        None => std::future::pending().await,
    }
}

async fn next_event(rt: Option<&RealtimeSession>) -> Option<RealtimeEvent> {
    match rt {
        Some(rt) => rt.next_event().await,
        None => std::future::pending().await,
    }
}

impl Run {
    /// Opens a conversation (the first, or the next `--sessions` part).
    pub(super) async fn open(&mut self) -> Result<(), Error> {
        let mut builder =
            RealtimeSession::builder(self.client.clone()).config(self.realtime.clone());
        if let Some(p) = &self.playback {
            builder = builder.playout(Arc::clone(p) as Arc<dyn steward::realtime::Playout>);
        }
        let rt = builder.connect().await.map_err(|e| Error::Realtime {
            url: redact_url(&self.url),
            source: e,
        })?;
        self.session_index += 1;
        self.steward
            .add_realtime(&format!("conversation-{}", self.session_index), &rt);
        if let Some(ws) = rt.ws_session() {
            self.steward
                .add_ws_session(&format!("realtime-{}", self.session_index), &ws);
        }
        tracing::info!(session = self.session_index, "conversation open");
        if self.session_index == 1 {
            for text in &self.config.say {
                rt.user_text(text.clone())
                    .await
                    .map_err(|e| Error::Realtime {
                        url: redact_url(&self.url),
                        source: e,
                    })?;
            }
        }
        self.rt = Some(rt);
        self.flaps_seen = 0;
        Ok(())
    }

    async fn close_conversation(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        let stats = rt.close().await;
        add_stats(&mut self.closed, &stats);
    }

    /// The counters of every conversation so far, the open one included.
    fn realtime_stats(&self) -> RealtimeStats {
        let mut total = self.closed.clone();
        if let Some(rt) = &self.rt {
            add_stats(&mut total, &rt.stats());
        }
        total.audio_in_bytes += self.orphan_audio;
        total.audio_dropped_bytes += self.orphan_audio;
        total
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<Report, Error> {
        let span = tracing::info_span!("assistant", url = %redact_url(&self.url));
        let _enter = span.enter();
        let mut poll = tokio::time::interval(Duration::from_millis(self.config.poll_ms));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let turn = Duration::from_millis(u64::from(self.config.turn_ms));
        let mut turns = tokio::time::interval_at(tokio::time::Instant::now() + turn, turn);
        turns.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let manual = self.realtime.turn_detection.is_manual();
        let deadline = self
            .config
            .duration
            .map(|d| tokio::time::Instant::now() + d);
        let segment = match (self.config.duration, self.config.sessions) {
            (Some(d), n) if n > 1 => Some(d / n),
            _ => None,
        };
        let mut next_cycle = segment.map(|s| tokio::time::Instant::now() + s);
        let mut finish_by: Option<tokio::time::Instant> = None;
        let forever = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);

        loop {
            if let Some(by) = finish_by
                && (self.settled() || tokio::time::Instant::now() >= by)
            {
                break;
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        tracing::info!("stop requested");
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline.unwrap_or(forever)) => {
                    tracing::info!("duration reached");
                    break;
                }
                () = tokio::time::sleep_until(next_cycle.unwrap_or(forever)) => {
                    // On a grid from the start: counted from each open,
                    // the opens' time added up and the last session fell
                    // past the end (999 of 1,000 in a 12 min run).
                    next_cycle = next_cycle.zip(segment).map(|(at, s)| at + s);
                    if self.session_index < self.config.sessions {
                        tracing::info!(from = self.session_index, "cycling the conversation");
                        self.close_conversation().await;
                        if let Err(e) = self.open().await {
                            self.error(e.to_string());
                        }
                    }
                }
                _ = poll.tick() => self.poll().await,
                _ = turns.tick(), if manual => self.commit().await,
                chunk = next_chunk(&mut self.source) => {
                    match chunk {
                        Ok(Chunk::Audio(pcm)) => self.audio(pcm),
                        // Reopened on the default input (or retried each poll).
                        Err(_) if self.capture_lost() => self.recover_devices().await,
                        Ok(Chunk::End) => {
                            if manual {
                                self.commit().await;
                            }
                            if deadline.is_none() {
                                // Nothing more to say: wait for the answers, then end.
                                finish_by = Some(tokio::time::Instant::now() + FINISH_GRACE);
                                if let Some(source) = self.source.take() {
                                    super::off_runtime(move || source.close()).await;
                                }
                            }
                        }
                        Err(e) => {
                            self.error(format!("input: {e}"));
                            if let Some(source) = self.source.take() {
                                super::off_runtime(move || source.close()).await;
                            }
                        }
                    }
                }
                event = next_event(self.rt.as_ref()) => self.event(event).await,
            }
        }
        self.finish().await
    }

    /// True once every committed turn and tool answer has had its response
    /// and the user is not speaking: the end of a WAV-driven run.
    fn settled(&self) -> bool {
        let s = self.realtime_stats();
        s.responses >= s.turns.max(self.commits) + self.tool_outputs
    }

    fn audio(&mut self, pcm: Vec<u8>) {
        match &self.rt {
            Some(rt) => rt.send_audio(pcm),
            None => self.orphan_audio += pcm.len() as u64,
        }
    }

    async fn commit(&mut self) {
        let Some(rt) = &self.rt else { return };
        match rt.commit().await {
            Ok(true) => self.commits += 1,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "commit not sent"),
        }
    }

    async fn event(&mut self, event: Option<RealtimeEvent>) {
        let Some(event) = event else {
            // The conversation's task ended: take a fresh one next poll.
            self.close_conversation().await;
            return;
        };
        match event {
            RealtimeEvent::ToolCall {
                call_id,
                name,
                arguments,
            } => {
                let output =
                    tools::run(&*self.store, &name, &arguments, &mut self.report.tool_calls).await;
                let Some(rt) = &self.rt else { return };
                match rt.tool_output(call_id, output).await {
                    Ok(()) => self.tool_outputs += 1,
                    Err(e) => self.error(format!("tool answer not sent: {e}")),
                }
            }
            RealtimeEvent::ServerError(e) => {
                // Expected races and ends the conversation recovers from:
                // an empty commit after a reconnect, a cancel the service's
                // own turn detection beat us to, a session that reached its
                // limit before a turn boundary came (reconnected, replayed).
                let benign = matches!(
                    e.code,
                    steward::realtime::ServerErrorCode::InputAudioBufferCommitEmpty
                        | steward::realtime::ServerErrorCode::ResponseCancelNotActive
                        | steward::realtime::ServerErrorCode::SessionExpired
                );
                if !benign {
                    self.error(format!("service: {}", e.message));
                }
            }
            // A renewal or a fresh session is a new steward-ws session (a
            // reconnect keeps the same one); closed ones leave the health.
            RealtimeEvent::SessionReady { reason, .. }
                if reason == "renewal" || reason == "fresh" =>
            {
                if let Some(ws) = self.rt.as_ref().and_then(RealtimeSession::ws_session) {
                    self.steward
                        .add_ws_session(&format!("realtime-{}-{reason}", self.session_index), &ws);
                }
                self.flaps_seen = 0;
            }
            RealtimeEvent::LinkLost { reason } => self.link_lost(&reason),
            _ => {}
        }
    }

    /// Counts a lost link; one lost before it was healthy (a flap, which
    /// steward-ws counts and backs off from) is also an error.
    fn link_lost(&mut self, reason: &str) {
        self.report.links_lost += 1;
        let flaps = self
            .rt
            .as_ref()
            .and_then(RealtimeSession::ws_session)
            .map_or(0, |ws| ws.stats().flaps);
        let new = flaps.saturating_sub(self.flaps_seen);
        if new > 0 {
            self.flaps_seen = flaps;
            self.report.link_flaps += new;
            self.error(format!(
                "link flapping (lost before it was healthy): {reason}"
            ));
        }
    }

    // -- housekeeping -------------------------------------------------------

    pub(super) async fn poll(&mut self) {
        if self.rt.is_none()
            && let Err(e) = self.open().await
        {
            self.error(e.to_string());
        }
        self.recover_devices().await;
        let health = self.steward.health();
        let rss = procfs::rss_bytes()
            .or_else(|| health.sample.as_ref().map(|s| s.rss_bytes))
            .unwrap_or(0);
        let elapsed = self.started.elapsed();
        let seconds = elapsed.as_secs_f64();
        self.report.rss_peak = self.report.rss_peak.max(rss);
        // The report's sample lists are made from the (bounded) rows at the end.
        let anon = procfs::rss_anon_bytes();
        let row = soak::Row {
            seconds,
            rss_bytes: rss,
            level: health.level,
            session: self.session_index,
            rss_anon_bytes: anon.unwrap_or(0),
            heap: steward::monitor::malloc_info(),
        };
        if let Some(csv) = &mut self.csv
            && let Err(e) = csv.push(&row)
        {
            self.error(e.to_string());
            self.csv = None;
        }
        self.rows.push(row);

        let rt = self.realtime_stats();
        let underruns = self.playback.as_ref().map_or(0, |p| p.underruns());
        let ws = self.rt.as_ref().and_then(RealtimeSession::ws_session);
        let link = ws.as_ref().map(steward::ws::Session::stats);
        let status = Status {
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            level: health.level,
            rss_bytes: rss,
            growth_bytes_per_hour: health.growth.bytes_per_hour,
            growing: health.growth.growing,
            pool_size: usize::from(self.rt.is_some()),
            pool_in_use: usize::from(self.rt.is_some()),
            tracker_live: health.tracker.as_ref().map_or(0, |t| t.totals.live_count),
            tracker_bytes: health.tracker.as_ref().map_or(0, |t| t.totals.live_bytes),
            ws_connected: self.rt.as_ref().is_some_and(RealtimeSession::is_connected),
            ws_rtt_us: link.as_ref().and_then(|s| s.last_rtt_us),
            session: self.session_index,
            reconnects: rt.reconnects,
            underruns,
            overflows: self.overflows(&rt),
            audio_reopens: self.report.audio_reopens,
            turns: rt.turns,
            tool_calls: self.report.tool_calls.total(),
            barge_ins: rt.barge_ins,
            barge_in_p99_us: rt.barge_in_latency.p99_us,
            renewals: rt.renewals,
            protocol_errors: rt.protocol_errors_total(),
        };
        if self.config.status_line {
            super::print_status(&status);
        }
        *self.shared.status.lock() = status;
    }

    fn overflows(&self, rt: &RealtimeStats) -> u64 {
        let capture = self.source.as_ref().map_or(0, Source::overflow_frames);
        capture + rt.audio_dropped_bytes / 2
    }

    pub(super) fn error(&mut self, message: String) {
        // Rate-limit the log, keep the first few word for word.
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            tracing::warn!(%message, "assistant error");
            self.last_error_log = Some(now);
        }
        if self.report.errors.len() < MAX_ERRORS_KEPT {
            self.report.errors.push(message);
        } else {
            self.report.errors_not_kept += 1;
        }
    }

    /// Closes everything in order and completes the report.
    pub(super) async fn finish(mut self) -> Result<Report, Error> {
        if self.config.status_line {
            super::finish_status_line();
        }
        self.close_conversation().await;
        let rt = self.realtime_stats();
        self.report.fill_realtime(&rt);
        self.report.overflows = self.overflows(&rt);

        // Let what is queued play out briefly before closing the stream.
        if let Some(speaker) = self.playback.take() {
            self.report.underruns = speaker.underruns();
            let playback = speaker.current();
            self.report.playback_device = Some(playback.device().to_string());
            self.report.playback_host = Some(playback.host());
            let _ = tokio::time::timeout(Duration::from_secs(2), playback.drain()).await;
            if let Some(Err(e)) = super::off_runtime(move || playback.close()).await {
                self.error(format!("playback close: {e}"));
            }
        }
        if let Some(c) = self.source.as_ref().and_then(Source::capture) {
            self.report.capture_device = Some(c.device().to_string());
            self.report.capture_host = Some(c.host());
        }
        if let Some(source) = self.source.take() {
            super::off_runtime(move || source.close()).await;
        }

        let health = self.steward.health();
        self.report.memory_growth = super::MemoryGrowth::of(&health.growth);
        self.report.health = serde_json::to_value(health).unwrap_or(Value::Null);
        self.steward.shutdown().await;
        let closed = self.store.close().await;
        if let Some(standin) = self.standin.take() {
            self.report.standin = true;
            self.report.standin_stats = Some(standin.stats());
            standin.close().await;
        }
        self.report.duration_ms =
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.report.status_lines_dropped = super::status_lines_dropped();
        let rss_end = procfs::rss_bytes().unwrap_or(0);
        self.report.rss_end = rss_end;
        self.report.rss_peak = self.report.rss_peak.max(rss_end);

        let rows = self.rows.as_slice();
        self.report.rss_samples = rows.iter().map(|r| (r.seconds, r.rss_bytes)).collect();
        self.report.rss_anon_samples = rows
            .iter()
            .filter(|r| r.rss_anon_bytes > 0)
            .map(|r| (r.seconds, r.rss_anon_bytes))
            .collect();
        if let Some(dir) = &self.config.soak_dir {
            let title = format!(
                "steward assistant: RSS over {:.0} s, {} sessions",
                self.report.duration_ms as f64 / 1000.0,
                self.report.sessions
            );
            let rows = std::mem::replace(&mut self.rows, soak::Rows::new(0)).into_vec();
            let path = dir.join("rss.png");
            match super::off_runtime(move || soak::plot(&path, &rows, &title)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => self.error(e.to_string()),
                None => self.error("the plot thread panicked".into()),
            }
        }
        let mut report = std::mem::take(&mut self.report);
        let memory = PathBuf::from(super::memory_shown(&self.config.memory));
        // Every handle goes here (steward, store, streams), so the end
        // counts see only what outlives the assistant.
        drop(self);
        report.threads_end = procfs::threads();
        report.fds_end = procfs::fds();
        closed.map_err(|source| Error::Store {
            path: memory,
            source,
        })?;
        Ok(report)
    }
}

/// The later summary's quantiles win; counts add up, the largest stays.
fn add_latency(total: &mut LatencySummary, s: &LatencySummary) {
    if s.count == 0 {
        return;
    }
    let count = total.count + s.count;
    let max = total.max_us.max(s.max_us);
    *total = *s;
    total.count = count;
    total.max_us = max;
}

/// Adds the counts of `s` to `total` (latency summaries: see
/// [`add_latency`]).
fn add_stats(total: &mut RealtimeStats, s: &RealtimeStats) {
    macro_rules! add {
        ($($f:ident),*) => { $( total.$f += s.$f; )* };
    }
    add!(
        sessions,
        renewals,
        reconnects,
        sessions_lost,
        replays,
        items_replayed,
        turns,
        commits_sent,
        responses,
        responses_cancelled,
        speech_onsets,
        barge_ins,
        cancels_sent,
        truncations_sent,
        truncations_rejected,
        truncations_beyond_heard,
        items_deleted,
        tool_calls,
        audio_in_bytes,
        audio_sent_bytes,
        audio_dropped_bytes,
        audio_held_bytes,
        audio_received_bytes,
        audio_played_bytes,
        audio_discarded_bytes,
        audio_queued_bytes,
        history_dropped,
        events_dropped,
        events_unsent
    );
    for (k, v) in &s.protocol_errors {
        *total.protocol_errors.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &s.server_errors {
        *total.server_errors.entry(k.clone()).or_default() += v;
    }
    add_latency(&mut total.barge_in_latency, &s.barge_in_latency);
    add_latency(&mut total.truncation_lag, &s.truncation_lag);
    add_latency(&mut total.reconnect_replay, &s.reconnect_replay);
    if !s.rate_limits.is_empty() {
        total.rate_limits.clone_from(&s.rate_limits);
    }
    total.history_items = s.history_items;
}
