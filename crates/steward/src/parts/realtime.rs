//! Realtime conversations (feature `realtime`): a view of each one's
//! counters joins [`Health`] and `/metrics` (counters, latency summaries
//! with their quantiles, errors by kind and code).

use parking_lot::Mutex;
use serde::Serialize;
use steward_realtime::{LatencySummary, RealtimeSession, RealtimeStats, RealtimeStatsHandle};

use crate::Steward;
use crate::health::Health;
use crate::metrics::{Out, f, per_row, unique};

/// One conversation as the wiring holds it: a view of its counters only
/// (it keeps the session itself alive no longer than its owner does).
struct RealtimePart {
    name: String,
    handle: RealtimeStatsHandle,
}

impl RealtimePart {
    fn new(name: &str, handle: RealtimeStatsHandle) -> Self {
        Self {
            name: name.to_owned(),
            handle,
        }
    }

    fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    fn health(&self) -> RealtimeHealth {
        RealtimeHealth {
            name: self.name.clone(),
            stats: self.handle.stats(),
        }
    }
}

/// A realtime conversation's name and counters (barge-ins and their
/// latency, truncations, renewals, replays, protocol errors by kind, rate
/// limits).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RealtimeHealth {
    /// The name it was added under.
    pub name: String,
    /// Its counters.
    pub stats: RealtimeStats,
}

/// The conversations under the wiring.
#[derive(Default)]
pub(crate) struct RealtimeParts {
    list: Mutex<Vec<RealtimePart>>,
}

impl RealtimeParts {
    /// The open conversations' counters; closed ones leave here.
    pub(crate) fn health(&self, h: &mut Health) {
        let mut parts = self.list.lock();
        parts.retain(|r| !r.is_closed());
        h.realtime = parts.iter().map(RealtimePart::health).collect();
    }
}

impl Steward {
    /// Puts a realtime conversation's counters in [`Health`] and `/metrics`
    /// (barge-ins and their latency, truncations, renewals, replays,
    /// protocol errors by kind, rate limits). Only a view of the counters is
    /// kept: the session lives as long as its owner keeps it; once closed it
    /// leaves the health.
    pub fn add_realtime(&self, name: &str, session: &RealtimeSession) {
        let part = RealtimePart::new(name, session.stats_handle());
        self.parts().realtime.list.lock().push(part);
    }
}

/// The `steward_realtime_*` families: one row per conversation.
pub(crate) fn metrics(o: &mut Out, h: &Health) {
    if h.realtime.is_empty() {
        return;
    }
    let names = unique(h.realtime.iter().map(|r| r.name.clone()));
    let rows: Vec<(&str, &RealtimeStats)> = names
        .iter()
        .map(String::as_str)
        .zip(h.realtime.iter().map(|r| &r.stats))
        .collect();
    type Get = fn(&RealtimeStats) -> u64;
    let families: &[(&str, &str, &str, Get)] = &[
        (
            "steward_realtime_sessions_total",
            "counter",
            "Sessions at the service (first, renewals, fresh).",
            |s| s.sessions,
        ),
        (
            "steward_realtime_renewals_total",
            "counter",
            "Sessions renewed before the service ended them.",
            |s| s.renewals,
        ),
        (
            "steward_realtime_reconnects_total",
            "counter",
            "Lost links reconnected (each followed by a replay).",
            |s| s.reconnects,
        ),
        (
            "steward_realtime_items_replayed_total",
            "counter",
            "History items replayed into new sessions.",
            |s| s.items_replayed,
        ),
        (
            "steward_realtime_turns_total",
            "counter",
            "Committed user turns.",
            |s| s.turns,
        ),
        (
            "steward_realtime_responses_total",
            "counter",
            "Responses done.",
            |s| s.responses,
        ),
        (
            "steward_realtime_barge_ins_total",
            "counter",
            "Times the user talked over an answer.",
            |s| s.barge_ins,
        ),
        (
            "steward_realtime_truncations_sent_total",
            "counter",
            "conversation.item.truncate sent.",
            |s| s.truncations_sent,
        ),
        (
            "steward_realtime_truncations_rejected_total",
            "counter",
            "Truncations the service refused.",
            |s| s.truncations_rejected,
        ),
        (
            "steward_realtime_truncations_beyond_heard_total",
            "counter",
            "Truncations that claimed more audio than was played (always 0).",
            |s| s.truncations_beyond_heard,
        ),
        (
            "steward_realtime_events_unsent_total",
            "counter",
            "Client events not sent: their link was lost first, or the queue was full.",
            |s| s.events_unsent,
        ),
        (
            "steward_realtime_events_dropped_total",
            "counter",
            "Events for the application dropped because it did not read them.",
            |s| s.events_dropped,
        ),
        (
            "steward_realtime_tool_calls_dropped_total",
            "counter",
            "Tool calls dropped from a full event queue.",
            |s| s.tool_calls_dropped,
        ),
        (
            "steward_realtime_entries_evicted_total",
            "counter",
            "Bookkeeping entries (unnamed tool calls, pending truncations, unechoed items) evicted, oldest first.",
            |s| s.entries_evicted,
        ),
        (
            "steward_realtime_texts_refused_total",
            "counter",
            "Tool outputs and user messages refused: the text waiting for the session task was at its byte bound.",
            |s| s.texts_refused,
        ),
        (
            "steward_realtime_tool_calls_total",
            "counter",
            "Tool calls the model made.",
            |s| s.tool_calls,
        ),
        (
            "steward_realtime_audio_dropped_bytes_total",
            "counter",
            "User audio dropped (hold limit, queue full).",
            |s| s.audio_dropped_bytes,
        ),
        (
            "steward_realtime_audio_held_bytes",
            "gauge",
            "User audio held for the link now.",
            |s| s.audio_held_bytes,
        ),
    ];
    per_row(o, "session", &rows, families);
    type Lat = fn(&RealtimeStats) -> LatencySummary;
    let latencies: [(&str, &str, Lat); 3] = [
        (
            "steward_realtime_barge_in_latency_seconds",
            "From a speech onset to the first silent sample the playback wrote.",
            |s| s.barge_in_latency,
        ),
        (
            "steward_realtime_truncation_lag_seconds",
            "Audio of a truncated item played after its audio_end_ms was taken.",
            |s| s.truncation_lag,
        ),
        (
            "steward_realtime_reconnect_replay_seconds",
            "From a lost link (or a renewal's start) to the history replayed.",
            |s| s.reconnect_replay,
        ),
    ];
    for (name, help, get) in latencies {
        o.family(name, "summary", help);
        let count = format!("{name}_count");
        for (session, s) in &rows {
            let l = get(s);
            for (q, v) in [("0.5", l.p50_us), ("0.95", l.p95_us), ("0.99", l.p99_us)] {
                if let Some(us) = v {
                    o.sample(name, &[("session", session), ("quantile", q)], f(us) / 1e6);
                }
            }
            o.sample(&count, &[("session", session)], f(l.count));
        }
    }
    o.family(
        "steward_realtime_protocol_errors_total",
        "counter",
        "Bad events from the service, skipped, by kind.",
    );
    for (session, s) in &rows {
        for (kind, n) in &s.protocol_errors {
            o.sample(
                "steward_realtime_protocol_errors_total",
                &[("session", session), ("kind", kind)],
                f(*n),
            );
        }
    }
    o.family(
        "steward_realtime_server_errors_total",
        "counter",
        "error events from the service, by code.",
    );
    for (session, s) in &rows {
        for (code, n) in &s.server_errors {
            o.sample(
                "steward_realtime_server_errors_total",
                &[("session", session), ("code", code)],
                f(*n),
            );
        }
    }
    o.family(
        "steward_realtime_rate_limit_remaining",
        "gauge",
        "What the latest rate_limits.updated left, by limit.",
    );
    for (session, s) in &rows {
        for limit in &s.rate_limits {
            if let Some(left) = limit.remaining {
                o.sample(
                    "steward_realtime_rate_limit_remaining",
                    &[("session", session), ("limit", &limit.name)],
                    f(left),
                );
            }
        }
    }
}
