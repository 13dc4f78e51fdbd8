//! steward-realtime against the stand-in on real sockets, with real
//! playback streams on the null sink: barge-ins at random points of
//! answers, renewals whose replays the stand-in checks, frozen and dropped
//! links, and a server that sends bad audio deltas.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steward::audio::{AudioConfig, Playback};
use steward::realtime::{Playout, RealtimeConfig, RealtimeSession, RealtimeStats, TurnDetection};
use steward_cli::standin::{Standin, StandinConfig};

use crate::common::{HANG_GUARD, child, eventually, in_child, require_sound_server, runtime};

/// A loud 300 Hz tone: the stand-in's energy VAD hears speech.
fn burst(ms: u64) -> Vec<u8> {
    let frames = ms * 24;
    (0..frames)
        .flat_map(|i| {
            let s = (i as f64 * std::f64::consts::TAU * 300.0 / 24_000.0).sin() * 10_000.0;
            (s as i16).to_le_bytes()
        })
        .collect()
}

fn silence(ms: u64) -> Vec<u8> {
    vec![0; (ms * 48) as usize]
}

/// A user turn: speech, then enough silence for the VAD to end the turn.
fn say(session: &RealtimeSession, ms: u64) {
    session.send_audio(burst(ms));
    session.send_audio(silence(300));
}

fn realtime_config() -> RealtimeConfig {
    let mut c = RealtimeConfig::default();
    let settings = json!({"silence_duration_ms": 200, "prefix_padding_ms": 100});
    c.turn_detection = TurnDetection::ServerVad(settings.as_object().cloned().unwrap_or_default());
    c
}

async fn connect(
    url: &str,
    config: RealtimeConfig,
    playout: Option<Arc<Playback>>,
) -> RealtimeSession {
    let client = config.client_builder(url).build().expect("client");
    let mut builder = RealtimeSession::builder(client).config(config);
    if let Some(p) = playout {
        builder = builder.playout(p as Arc<dyn Playout>);
    }
    builder.connect().await.expect("connect to the stand-in")
}

/// A tiny deterministic generator (xorshift) for the barge-in points.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One conversation that talks over `target` answers at random points.
async fn barge_in_over_answers(url: String, target: u64, seed: u64) -> (RealtimeStats, u64) {
    let playback =
        Arc::new(Playback::open(&AudioConfig::default()).expect("playback on the null sink"));
    let session = connect(&url, realtime_config(), Some(Arc::clone(&playback))).await;
    let mut rng = Rng(seed | 1);
    say(&session, 300);
    let mut cycles = 0;
    while session.stats().barge_ins < target && cycles < target * 3 {
        cycles += 1;
        let written = session.stats().audio_played_bytes;
        // The next answer starts playing...
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while session.stats().audio_played_bytes == written {
            if tokio::time::Instant::now() > deadline {
                // No answer came (the burst fell after the last one ended
                // and its turn is still open): speak again.
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // ...and the user talks over it somewhere in its 800 ms (a random
        // moment on purpose, not a synchronisation).
        tokio::time::sleep(Duration::from_millis(rng.below(760))).await;
        say(&session, 200 + rng.below(200));
    }
    // Let the last answer arrive, then close. Not a synchronisation:
    // nothing asserted depends on whether it did (closing mid-answer is fine).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = session.close().await;
    let period_us = callback_period_us(&playback.stats());
    let _ = playback.close();
    (stats, period_us)
}

/// The mean length of the playback callback's buffer, in µs.
fn callback_period_us(stats: &steward::audio::Stats) -> u64 {
    let rate = stats.format.map_or(48_000, |f| u64::from(f.sample_rate));
    let frames = (stats.frames_out + stats.silence_frames) / stats.callbacks.max(1);
    frames * 1_000_000 / rate.max(1)
}

in_child!(five_hundred_barge_ins_and_no_rejected_truncation => child_barge_ins);

#[test]
#[ignore = "run in a child process by the test above"]
fn child_barge_ins() {
    if !child() {
        return;
    }
    require_sound_server();
    runtime().block_on(async {
        let standin = Standin::start({
            let mut c = StandinConfig::default();
            c.reply_audio_ms = 800;
            c.remember_every = 0;
            c
        })
        .await
        .expect("stand-in");
        let url = standin.url();
        // Three conversations at once, each on its own playback stream.
        let runs: Vec<_> = (1..=3_u64)
            .map(|i| tokio::spawn(barge_in_over_answers(url.clone(), 170, i * 7919)))
            .collect();
        let mut all = Vec::new();
        let mut periods = Vec::new();
        for run in runs {
            let (stats, period_us) = run.await.expect("conversation task");
            all.push(stats);
            periods.push(period_us);
        }
        let server = standin.stats();
        standin.close().await;
        let barge_ins: u64 = all.iter().map(|s| s.barge_ins).sum();
        let sent: u64 = all.iter().map(|s| s.truncations_sent).sum();
        let rejected: u64 = all.iter().map(|s| s.truncations_rejected).sum();
        for (s, period_us) in all.iter().zip(&periods) {
            println!(
                "barge-ins {} truncations {} cancels {} deleted {} latency p50 {:?} µs p99 {:?} µs max {:?} µs; \
                 truncation lag p50 {:?} µs p99 {:?} µs max {:?} µs (callback period {period_us} µs); protocol errors {:?}",
                s.barge_ins,
                s.truncations_sent,
                s.cancels_sent,
                s.items_deleted,
                s.barge_in_latency.p50_us,
                s.barge_in_latency.p99_us,
                s.barge_in_latency.max_us,
                s.truncation_lag.p50_us,
                s.truncation_lag.p99_us,
                s.truncation_lag.max_us,
                s.protocol_errors
            );
            // audio_end_ms never claims more than was played, and falls
            // short of it by at most the callback that was running at the
            // onset (plus the millisecond it is rounded down to).
            assert_eq!(s.truncations_beyond_heard, 0, "{s:?}");
            // Checked: each truncation sent with a clear (one whose answer
            // had all played while more was coming needed none).
            assert!(s.truncation_lag.count > 0, "{s:?}");
            assert!(s.truncation_lag.count <= s.truncations_sent, "{s:?}");
            // The lag is audio that kept playing while the clear travelled
            // to the callback: about one callback period (printed above),
            // more when the machine is loaded. Asserted is only what cannot
            // depend on the load: never more than a whole 800 ms answer.
            let lag = s.truncation_lag.max_us.unwrap_or(0);
            assert!(lag <= 800_000, "lag {lag} µs, period {period_us} µs: {s:?}");
            assert_eq!(s.protocol_errors_total(), 0, "{s:?}");
            // The only error a barge-in may meet: the service's own turn
            // detection cancelled first.
            assert!(
                s.server_errors.keys().all(|k| k == "response_cancel_not_active"),
                "{s:?}"
            );
            assert!(s.barge_in_latency.count > 0, "{s:?}");
        }
        println!("stand-in: {server:?}");
        assert!(barge_ins >= 500, "{barge_ins} barge-ins");
        assert!(sent >= 250, "{sent} truncations for {barge_ins} barge-ins");
        assert_eq!(rejected, 0, "{all:?}");
        assert_eq!(server.truncations_rejected, 0, "{server:?}");
        assert_eq!(server.truncations_ok, sent, "{server:?}");
        let deleted: u64 = all.iter().map(|s| s.items_deleted).sum();
        assert_eq!(server.items_deleted, deleted, "{server:?}");
    });
}

in_child!(renewals_replay_the_history_and_lose_no_audio => child_renewals);

#[test]
#[ignore = "run in a child process by the test above"]
fn child_renewals() {
    if !child() {
        return;
    }
    runtime().block_on(async {
        // Sessions the service ends after 4 s: renewed after 3 s, at a turn
        // boundary, with the history replayed.
        let standin = Standin::start({
            let mut c = StandinConfig::default();
            c.session_limit_ms = 4_000;
            c.reply_audio_ms = 200;
            c.remember_every = 2;
            c
        })
        .await
        .expect("stand-in");
        let session = connect(&standin.url(), realtime_config(), None).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(11);
        while tokio::time::Instant::now() < deadline {
            say(&session, 300);
            // Answer tool calls as an assistant would.
            while let Some(event) = session.try_next_event() {
                if let steward::realtime::RealtimeEvent::ToolCall { call_id, .. } = event {
                    session
                        .tool_output(call_id, "ok")
                        .await
                        .expect("tool output");
                }
            }
            // Paces the turns until the deadline (sessions end every 4 s).
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let history = session.history().await.expect("history");
        let stats = session.close().await;
        let server = standin.stats();
        standin.close().await;
        println!("{stats:?}\nstand-in: {server:?}");
        assert!(stats.renewals >= 2, "{stats:?}");
        assert_eq!(
            stats.sessions_lost, 0,
            "renewed before the limit: {stats:?}"
        );
        assert!(server.replays >= 2, "{server:?}");
        assert_eq!(server.replays, server.replays_matched, "{server:?}");
        assert_eq!(server.replay_mismatches, 0, "{server:?}");
        assert!(stats.items_replayed > 0 && history.len() > 2, "{stats:?}");
        // No user audio lost: every byte handed over reached the service.
        assert!(stats.audio_balances(), "{stats:?}");
        assert_eq!(stats.audio_dropped_bytes, 0, "{stats:?}");
        assert_eq!(
            server.audio_bytes_in, stats.audio_sent_bytes,
            "{server:?} {stats:?}"
        );
    });
}

in_child!(a_frozen_and_a_dropped_link_recover_with_the_history => child_bad_links);

#[test]
#[ignore = "run in a child process by the test above"]
fn child_bad_links() {
    if !child() {
        return;
    }
    runtime().block_on(async {
        let standin = Standin::start({
            let mut c = StandinConfig::default();
            c.reply_audio_ms = 200;
            c.remember_every = 0;
            c.freeze_after_ms = 2_500;
            c
        })
        .await
        .expect("stand-in");
        let session = connect(&standin.url(), realtime_config(), None).await;
        say(&session, 300);
        eventually("two answered turns", || session.stats().responses >= 1).await;
        say(&session, 300);
        eventually("the history", || session.stats().history_items >= 3).await;
        let before = session.history().await.expect("history").len();
        // The stand-in freezes 2.5 s after the connection opened: the
        // heartbeat finds it within 3 s and the link comes back.
        let lost = tokio::time::Instant::now();
        eventually("a reconnect after the freeze", || {
            session.stats().reconnects >= 1
        })
        .await;
        let detected_in = lost.elapsed();
        println!("frozen link recovered {detected_in:?} after the freeze check began");
        assert!(detected_in < HANG_GUARD);
        // Dropped without a close frame.
        standin.drop_connections();
        eventually("a reconnect after the drop", || {
            session.stats().reconnects >= 2
        })
        .await;
        say(&session, 300);
        eventually("an answer after the reconnects", || {
            session.stats().responses >= 3
        })
        .await;
        let after = session.history().await.expect("history");
        let stats = session.close().await;
        let server = standin.stats();
        standin.close().await;
        println!("{stats:?}\nstand-in: {server:?}");
        assert!(
            after.len() >= before,
            "history kept: {before} -> {}",
            after.len()
        );
        assert!(stats.replays >= 2, "{stats:?}");
        assert!(
            server.replays >= 2 && server.replays == server.replays_matched,
            "{server:?}"
        );
        assert!(stats.reconnect_replay.count >= 2, "{stats:?}");
        assert!(stats.audio_balances(), "{stats:?}");
    });
}

in_child!(bad_deltas_are_skipped_and_playback_goes_on => child_bad_deltas);

#[test]
#[ignore = "run in a child process by the test above"]
fn child_bad_deltas() {
    if !child() {
        return;
    }
    require_sound_server();
    runtime().block_on(async {
        let standin = Standin::start({
            let mut c = StandinConfig::default();
            c.reply_audio_ms = 600;
            c.remember_every = 0;
            c.bad_delta_every = 2;
            c
        })
        .await
        .expect("stand-in");
        let playback = Arc::new(Playback::open(&AudioConfig::default()).expect("playback"));
        let session = connect(
            &standin.url(),
            realtime_config(),
            Some(Arc::clone(&playback)),
        )
        .await;
        for _ in 0..3 {
            say(&session, 300);
            // Paces the turns (each answer plays 600 ms); the answers are
            // waited for below.
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
        eventually("three answers", || session.stats().responses >= 3).await;
        let first = session.stats();
        say(&session, 300);
        eventually("a fourth answer played", || {
            session.stats().audio_played_bytes > first.audio_played_bytes
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(3), playback.drain()).await;
        let stats = session.close().await;
        let played = playback.stats().frames_out;
        let _ = playback.close();
        standin.close().await;
        println!("{stats:?}; device frames played {played}");
        assert!(
            stats
                .protocol_errors
                .get("bad_audio_delta")
                .copied()
                .unwrap_or(0)
                >= 3,
            "{stats:?}"
        );
        assert!(stats.audio_played_bytes > 0 && played > 0, "{stats:?}");
        assert!(!playback.stats().device_lost);
    });
}
