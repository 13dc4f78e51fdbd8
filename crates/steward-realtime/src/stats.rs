//! Counters as plain serde data, and latency summaries.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward_ws::realtime::RateLimit;

/// Latency samples kept for the quantiles (the newest).
const SAMPLES: usize = 4096;

/// p50/p99 of a latency, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Samples in all.
    pub count: u64,
    /// Median of the kept samples.
    pub p50_us: Option<u64>,
    /// 95th percentile of the kept samples.
    pub p95_us: Option<u64>,
    /// 99th percentile of the kept samples.
    pub p99_us: Option<u64>,
    /// Largest sample ever.
    pub max_us: Option<u64>,
}

/// A bounded set of latency samples.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latencies {
    samples: VecDeque<u64>,
    count: u64,
    max: u64,
}

impl Latencies {
    pub(crate) fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(us);
        self.count += 1;
        self.max = self.max.max(us);
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        if self.samples.is_empty() {
            return LatencySummary::default();
        }
        let mut sorted: Vec<u64> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| {
            let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted.get(i).copied()
        };
        LatencySummary {
            count: self.count,
            p50_us: at(0.5),
            p95_us: at(0.95),
            p99_us: at(0.99),
            max_us: Some(self.max),
        }
    }
}

/// What one conversation did, measured: plain serde data.
///
/// Audio up balances: `audio_in_bytes = audio_sent_bytes +
/// audio_dropped_bytes + audio_held_bytes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RealtimeStats {
    /// Sessions at the service (the first, renewals and fresh ones after a
    /// session was lost for good).
    pub sessions: u64,
    /// Planned renewals done (a new session before the old one ended).
    pub renewals: u64,
    /// Reconnects of a lost link (each followed by a replay).
    pub reconnects: u64,
    /// Sessions that ended unplanned (`session_expired`, link given up).
    pub sessions_lost: u64,
    /// Replays sent (renewals and reconnects).
    pub replays: u64,
    /// History items sent in those replays.
    pub items_replayed: u64,
    /// From the loss of a link (or the start of a renewal) to the history
    /// replayed on the new session.
    pub reconnect_replay: LatencySummary,
    /// Committed user turns.
    pub turns: u64,
    /// Manual commits sent (each answered by a committed turn).
    pub commits_sent: u64,
    /// Responses done.
    pub responses: u64,
    /// Of those, cancelled (by us or by the service's turn detection).
    pub responses_cancelled: u64,
    /// User speech onsets (`speech_started` or a local onset).
    pub speech_onsets: u64,
    /// Onsets while an answer was playing or being made.
    pub barge_ins: u64,
    /// From the onset's arrival to the first silent sample the playout
    /// wrote.
    pub barge_in_latency: LatencySummary,
    /// `response.cancel` sent.
    pub cancels_sent: u64,
    /// `conversation.item.truncate` sent.
    pub truncations_sent: u64,
    /// Of those, refused by the service.
    pub truncations_rejected: u64,
    /// Audio of a truncated item played after its `audio_end_ms` was taken,
    /// until the clear reached the playout (at most the callback running at
    /// the onset), per truncation: what the service was not told was heard.
    pub truncation_lag: LatencySummary,
    /// Truncations whose `audio_end_ms` claimed more than was played when
    /// the clear took effect (an invariant: always 0).
    pub truncations_beyond_heard: u64,
    /// `conversation.item.delete` sent for answers of which nothing was played.
    pub items_deleted: u64,
    /// Tool calls the model made.
    pub tool_calls: u64,
    /// Bad input from the service by kind (`bad_audio_delta`,
    /// `unknown_item`, `out_of_order`, `undecodable`): each event skipped.
    pub protocol_errors: BTreeMap<String, u64>,
    /// `error` events from the service by code.
    pub server_errors: BTreeMap<String, u64>,
    /// The latest `rate_limits.updated`.
    pub rate_limits: Vec<RateLimit>,
    /// User audio handed to the session, in bytes of PCM16.
    pub audio_in_bytes: u64,
    /// Of it, handed to the link.
    pub audio_sent_bytes: u64,
    /// Of it, dropped (hold limit, queue full).
    pub audio_dropped_bytes: u64,
    /// Of it, held for the link now.
    pub audio_held_bytes: u64,
    /// Model audio received, in bytes of PCM16.
    pub audio_received_bytes: u64,
    /// Of it, handed to the playout.
    pub audio_played_bytes: u64,
    /// Of it, dropped unplayed: the rest of an answer the user talked over
    /// (cleared or never written), or beyond the play queue.
    pub audio_discarded_bytes: u64,
    /// Model audio waiting for the playout now.
    pub audio_queued_bytes: u64,
    /// Items in the history now.
    pub history_items: u64,
    /// History items dropped to stay within its bounds.
    pub history_dropped: u64,
    /// Entries the conversation's bookkeeping evicted, oldest first, to
    /// stay within its bounds (tool calls waiting for their name,
    /// truncations waiting for the service's word, items we created
    /// waiting for its echo): a service that never answers cannot grow it.
    pub entries_evicted: u64,
    /// Tool calls among `events_dropped`: the application left the event
    /// queue full of them (each logged as an error).
    pub tool_calls_dropped: u64,
    /// `LinkLost` events folded into an earlier one while the event queue
    /// was full.
    pub events_coalesced: u64,
    /// Events for the application dropped because it did not read them.
    pub events_dropped: u64,
    /// Tool outputs and user messages refused with `Error::QueueFull`:
    /// the text waiting for the session task reached
    /// `RealtimeConfig::text_queue_bytes`.
    pub texts_refused: u64,
    /// Client events not sent: the link they were decided for was lost
    /// first (they name the old server session's items, so they must not
    /// reach the next one), or the outbound queue was full.
    pub events_unsent: u64,
}

impl RealtimeStats {
    /// Whether the user-audio books balance.
    #[must_use]
    pub fn audio_balances(&self) -> bool {
        self.audio_in_bytes
            == self.audio_sent_bytes + self.audio_dropped_bytes + self.audio_held_bytes
    }

    /// All bad input counted, of every kind.
    #[must_use]
    pub fn protocol_errors_total(&self) -> u64 {
        self.protocol_errors.values().sum()
    }

    pub(crate) fn protocol_error(&mut self, kind: &str) {
        *self.protocol_errors.entry(kind.to_string()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_samples() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, Some(51_000));
        assert_eq!(s.p99_us, Some(99_000));
        assert_eq!(s.max_us, Some(100_000));
        assert_eq!(Latencies::default().summary().p50_us, None);
    }
}
