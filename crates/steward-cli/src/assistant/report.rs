//! What the assistant shows: the one-line [`Status`], the final
//! [`Report`] (both plain serde data whose `Display` is the text) and the
//! memory growth they carry.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward::monitor::Level;
use steward::realtime::{LatencySummary, RealtimeStats};

use super::tools::ToolCounts;
use crate::standin::StandinStats;

/// The live status: what the one-line status shows. `Display` is the line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// Time since the start, in ms.
    pub elapsed_ms: u64,
    /// Memory pressure level.
    pub level: Level,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// The monitor's leak trend: growth of the anonymous memory per hour
    /// over its window after the warm-up; `None` until it has one.
    #[serde(default)]
    pub growth_bytes_per_hour: Option<i64>,
    /// Whether the monitor's `Growing` signal is raised.
    #[serde(default)]
    pub growing: bool,
    /// Sessions in the pool (open) and checked out.
    pub pool_size: usize,
    /// Sessions checked out of the pool.
    pub pool_in_use: usize,
    /// Live tracked resources.
    pub tracker_live: u64,
    /// Bytes of live tracked resources.
    pub tracker_bytes: u64,
    /// Whether the WebSocket link is up.
    pub ws_connected: bool,
    /// Last heartbeat round trip, in µs.
    pub ws_rtt_us: Option<u64>,
    /// Which session this is (from 1).
    pub session: u32,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Playback underruns so far.
    pub underruns: u64,
    /// Audio overflows so far: capture frames dropped, plus playback deltas
    /// dropped because the writer lagged.
    pub overflows: u64,
    /// Audio streams reopened on the default device after theirs was lost.
    #[serde(default)]
    pub audio_reopens: u64,
    /// Committed turns.
    pub turns: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Barge-ins (the user talked over an answer).
    pub barge_ins: u64,
    /// 99th percentile of the barge-in latency, in µs.
    pub barge_in_p99_us: Option<u64>,
    /// Sessions renewed before the service ended them.
    pub renewals: u64,
    /// Bad input from the service, skipped.
    pub protocol_errors: u64,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rtt = match self.ws_rtt_us {
            Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
            None => "-".into(),
        };
        write!(
            f,
            "[{:>5.0}s] level {} | rss {} growth {} | pool {}/{} | tracker {} live {} | ws {} #{} rtt {} reconnects {} renewals {} | audio under {} over {} reopens {} | turns {} | barge-ins {} p99 {} | tools {} | bad events {}",
            self.elapsed_ms as f64 / 1000.0,
            self.level,
            mib(self.rss_bytes),
            growth_text(self.growth_bytes_per_hour, self.growing),
            self.pool_in_use,
            self.pool_size,
            self.tracker_live,
            human_bytes(self.tracker_bytes),
            if self.ws_connected { "up" } else { "down" },
            self.session,
            rtt,
            self.reconnects,
            self.renewals,
            self.underruns,
            self.overflows,
            self.audio_reopens,
            self.turns,
            self.barge_ins,
            self.barge_in_p99_us.map_or_else(
                || "-".to_string(),
                |us| format!("{:.1} ms", us as f64 / 1000.0)
            ),
            self.tool_calls,
            self.protocol_errors,
        )
    }
}

/// A growth rate as `+12.3 KiB/h` (`GROWING` appended while the signal is
/// raised), or `-` before the monitor has a slope.
fn growth_text(bytes_per_hour: Option<i64>, growing: bool) -> String {
    let Some(rate) = bytes_per_hour else {
        return "-".into();
    };
    let rate = rate as f64;
    let text = if rate.abs() < 1024.0 * 1024.0 {
        format!("{:+.1} KiB/h", rate / 1024.0)
    } else {
        format!("{:+.2} MiB/h", rate / (1024.0 * 1024.0))
    };
    if growing { text + " GROWING" } else { text }
}

/// The monitor's leak trend at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryGrowth {
    /// Where the estimate was: `warming_up`, `collecting`, `ready`, `off`.
    pub phase: String,
    /// Growth of the anonymous memory per hour over the monitor's window
    /// (a Theil–Sen slope); `None` when the run ended before it had one
    /// (the warm-up is 10 min by default).
    pub bytes_per_hour: Option<i64>,
    /// Whether the `Growing` signal was raised at the end.
    pub growing: bool,
    /// `Growing` signals raised during the run.
    pub raised: u64,
    /// While raised: the tracked kinds that grew since the warm-up,
    /// `(kind, bytes)`, largest first.
    pub kinds_grown: Vec<(String, i64)>,
}

impl MemoryGrowth {
    pub(super) fn of(growth: &steward::GrowthHealth) -> Self {
        let phase = serde_json::to_value(growth.phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            phase,
            bytes_per_hour: growth.bytes_per_hour,
            growing: growth.growing,
            raised: growth.raised,
            kinds_grown: growth.signal.as_ref().map_or_else(Vec::new, |s| {
                s.kinds
                    .iter()
                    .filter(|k| k.bytes_change > 0)
                    .map(|k| (k.kind.clone(), k.bytes_change))
                    .collect()
            }),
        }
    }
}

/// Bytes as KiB below one MiB, MiB above.
fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        mib(bytes)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What a run did, measured: plain serde data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// How long it ran, in ms.
    pub duration_ms: u64,
    /// The service it talked to (without query string).
    pub url: String,
    /// Whether that was the in-process stand-in.
    pub standin: bool,
    /// Committed turns (acknowledged by the service).
    pub turns: u64,
    /// Responses completed (`response.done`).
    pub responses: u64,
    /// Input audio captured, in bytes of PCM16.
    pub audio_bytes_captured: u64,
    /// Input audio handed to the session and not handed back.
    pub audio_bytes_sent: u64,
    /// Input audio that could not be delivered (queue full, link down too
    /// long, handed back undelivered after a disconnect).
    pub audio_bytes_dropped: u64,
    /// Input audio still waiting to be sent when the run ended.
    pub audio_bytes_pending: u64,
    /// Of the dropped audio: what the session shed from its queue under
    /// memory pressure.
    pub audio_bytes_shed: u64,
    /// Output audio received, in bytes of PCM16.
    pub audio_bytes_received: u64,
    /// Output audio handed to the playback stream.
    pub audio_bytes_played: u64,
    /// Output audio dropped because playback lagged (or was off/failed).
    pub audio_bytes_play_dropped: u64,
    /// Tool calls by name.
    pub tool_calls: ToolCounts,
    /// Reconnects (links re-established by steward-ws).
    pub reconnects: u64,
    /// Sessions opened (from the pool).
    pub sessions: u64,
    /// Playback underruns.
    pub underruns: u64,
    /// Audio overflows (capture frames dropped + playback deltas dropped).
    pub overflows: u64,
    /// The output device played to at the end (after any reopening).
    #[serde(default)]
    pub playback_device: Option<String>,
    /// The audio host it ran on.
    #[serde(default)]
    pub playback_host: Option<steward::audio::AudioHost>,
    /// The input device captured from at the end (device input only).
    #[serde(default)]
    pub capture_device: Option<String>,
    /// The audio host it ran on.
    #[serde(default)]
    pub capture_host: Option<steward::audio::AudioHost>,
    /// Audio streams reopened on the default device after theirs was lost
    /// (the lost device's stream is closed, the run goes on).
    #[serde(default)]
    pub audio_reopens: u64,
    /// RSS at the start, in bytes.
    pub rss_start: u64,
    /// RSS at the end, in bytes.
    pub rss_end: u64,
    /// Highest RSS sampled, in bytes.
    pub rss_peak: u64,
    /// The monitor's leak trend at the end: growth per hour after its
    /// warm-up and the `Growing` signal.
    #[serde(default)]
    pub memory_growth: MemoryGrowth,
    /// RSS samples: (seconds since start, bytes); at most 512, evenly
    /// spaced over the run (the soak's `rss.csv` has every poll's).
    pub rss_samples: Vec<(f64, u64)>,
    /// Samples of the anonymous part of RSS (heap, stacks), where a leak
    /// shows: (seconds since start, bytes), as `rss_samples`. Empty where
    /// unknown.
    pub rss_anon_samples: Vec<(f64, u64)>,
    /// Threads of the process at the start (Linux).
    pub threads_start: Option<u64>,
    /// Threads of the process at the end, after everything closed (Linux).
    pub threads_end: Option<u64>,
    /// Open file descriptors at the start (Linux).
    pub fds_start: Option<u64>,
    /// Open file descriptors at the end, after everything closed (Linux).
    pub fds_end: Option<u64>,
    /// `error` events from the service.
    pub server_errors: u64,
    /// Barge-ins: the user talked over an answer.
    pub barge_ins: u64,
    /// From the onset to the first silent sample played.
    pub barge_in_latency: LatencySummary,
    /// `conversation.item.truncate` sent.
    pub truncations_sent: u64,
    /// Of those, refused by the service.
    pub truncations_rejected: u64,
    /// Sessions renewed before the service ended them.
    pub renewals: u64,
    /// History items replayed into new sessions.
    pub items_replayed: u64,
    /// From a lost link (or a renewal's start) to the history replayed.
    pub reconnect_replay: LatencySummary,
    /// Bad input from the service by kind, each event skipped.
    pub protocol_errors: std::collections::BTreeMap<String, u64>,
    /// The conversation's own counters, every session added up.
    pub realtime: RealtimeStats,
    /// The stand-in's counters, when it ran in-process.
    pub standin_stats: Option<StandinStats>,
    /// The final `Steward::health()` snapshot, as JSON.
    pub health: Value,
    /// Errors, word for word (the first few).
    pub errors: Vec<String>,
    /// Errors beyond those kept.
    pub errors_not_kept: u64,
    /// Links lost (each one reconnected, or given up on).
    #[serde(default)]
    pub links_lost: u64,
    /// Of those, links lost before they were healthy: a flapping service
    /// or proxy (each also an error).
    #[serde(default)]
    pub link_flaps: u64,
    /// Status lines dropped because stdout was not being read.
    #[serde(default)]
    pub status_lines_dropped: u64,
}

impl Report {
    /// Copies the conversation's counters into the report's fields.
    pub(super) fn fill_realtime(&mut self, rt: &RealtimeStats) {
        self.turns = rt.turns;
        self.responses = rt.responses;
        self.reconnects = rt.reconnects;
        self.sessions = rt.sessions;
        self.audio_bytes_captured = rt.audio_in_bytes;
        self.audio_bytes_sent = rt.audio_sent_bytes;
        self.audio_bytes_dropped = rt.audio_dropped_bytes;
        self.audio_bytes_pending = rt.audio_held_bytes;
        self.audio_bytes_received = rt.audio_received_bytes;
        self.audio_bytes_played = rt.audio_played_bytes;
        self.audio_bytes_play_dropped = rt.audio_discarded_bytes;
        self.server_errors = rt.server_errors.values().sum();
        self.barge_ins = rt.barge_ins;
        self.barge_in_latency = rt.barge_in_latency;
        self.truncations_sent = rt.truncations_sent;
        self.truncations_rejected = rt.truncations_rejected;
        self.renewals = rt.renewals;
        self.items_replayed = rt.items_replayed;
        self.reconnect_replay = rt.reconnect_replay;
        self.protocol_errors.clone_from(&rt.protocol_errors);
        self.realtime = rt.clone();
    }

    /// Whether the audio books balance: captured = sent + dropped + pending.
    #[must_use]
    pub fn audio_balances(&self) -> bool {
        self.audio_bytes_captured
            == self.audio_bytes_sent + self.audio_bytes_dropped + self.audio_bytes_pending
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        writeln!(
            f,
            "steward assistant: {:.1} s against {}{}",
            self.duration_ms as f64 / 1000.0,
            self.url,
            if self.standin {
                " (local stand-in)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  turns {}, responses {}, sessions {}, reconnects {}, renewals {}, items replayed {}",
            self.turns,
            self.responses,
            self.sessions,
            self.reconnects,
            self.renewals,
            self.items_replayed
        )?;
        let ms = |us: Option<u64>| {
            us.map_or("-".to_string(), |us| {
                format!("{:.1} ms", us as f64 / 1000.0)
            })
        };
        writeln!(
            f,
            "  barge-ins {} (latency p50 {}, p99 {}), truncations sent {} rejected {} (lag p99 {}); reconnect+replay p50 {} p99 {}",
            self.barge_ins,
            ms(self.barge_in_latency.p50_us),
            ms(self.barge_in_latency.p99_us),
            self.truncations_sent,
            self.truncations_rejected,
            ms(self.realtime.truncation_lag.p99_us),
            ms(self.reconnect_replay.p50_us),
            ms(self.reconnect_replay.p99_us),
        )?;
        let bad: Vec<String> = self
            .protocol_errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            f,
            "  protocol errors: {}",
            if bad.is_empty() {
                "none".to_string()
            } else {
                bad.join(", ")
            }
        )?;
        writeln!(
            f,
            "  audio up: captured {} = sent {} + dropped {} (shed {}) + pending {} bytes",
            self.audio_bytes_captured,
            self.audio_bytes_sent,
            self.audio_bytes_dropped,
            self.audio_bytes_shed,
            self.audio_bytes_pending
        )?;
        writeln!(
            f,
            "  audio down: received {}, played {}, dropped {} bytes; underruns {}, overflows {}",
            self.audio_bytes_received,
            self.audio_bytes_played,
            self.audio_bytes_play_dropped,
            self.underruns,
            self.overflows
        )?;
        let device = |d: &Option<String>, h: Option<steward::audio::AudioHost>| match (d, h) {
            (Some(d), Some(h)) => format!("{d} ({h})"),
            _ => "none".to_string(),
        };
        writeln!(
            f,
            "  audio devices: playback {}, capture {}; reopened {} after a lost device",
            device(&self.playback_device, self.playback_host),
            device(&self.capture_device, self.capture_host),
            self.audio_reopens
        )?;
        let t = &self.tool_calls;
        writeln!(
            f,
            "  tools: remember {}, recall {}, forget {}, failed {}",
            t.remember, t.recall, t.forget, t.failed
        )?;
        writeln!(
            f,
            "  rss: start {}, end {}, peak {}; growth {} ({}, {} Growing signals)",
            mib(self.rss_start),
            mib(self.rss_end),
            mib(self.rss_peak),
            growth_text(
                self.memory_growth.bytes_per_hour,
                self.memory_growth.growing
            ),
            self.memory_growth.phase.replace('_', " "),
            self.memory_growth.raised
        )?;
        writeln!(
            f,
            "  threads {} -> {}, fds {} -> {}",
            opt(self.threads_start),
            opt(self.threads_end),
            opt(self.fds_start),
            opt(self.fds_end)
        )?;
        write!(
            f,
            "  server errors {}, errors {}, links lost {} (flapping {})",
            self.server_errors,
            self.errors.len() as u64 + self.errors_not_kept,
            self.links_lost,
            self.link_flaps
        )?;
        for e in self.errors.iter().take(5) {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}
