//! Barge-in latency and reconnect-plus-replay time of steward-realtime
//! against the local stand-in, with a real playback stream (the sound
//! server's null sink), each next to the obvious alternative measured in
//! the same run:
//!
//! - **barge-in latency**: from the onset's arrival to the first silent
//!   sample the playback callback wrote (`Playout::clear`), against
//!   stopping the writes and letting what is queued play out (what an
//!   assistant without a clear does);
//! - **reconnect + replay**: from the loss of the link to the history
//!   replayed on the new one, against a bare steward-ws reconnect (no
//!   session set-up, no replay).
//!
//! Not a criterion bench: each sample is one real-time event. Writes
//! `$STEWARD_BENCH_DIR/extra/realtime.json` for `cargo xtask bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use steward::audio::{AudioConfig, Playback};
use steward::realtime::{Playout, RealtimeConfig, RealtimeSession, TurnDetection};
use steward::ws::{Client, Event};
use steward_cli::standin::{Standin, StandinConfig};

fn burst(ms: u64) -> Vec<u8> {
    (0..ms * 24)
        .flat_map(|i| {
            let s = (i as f64 * std::f64::consts::TAU * 300.0 / 24_000.0).sin() * 10_000.0;
            (s as i16).to_le_bytes()
        })
        .collect()
}

fn say(session: &RealtimeSession) {
    session.send_audio(burst(300));
    session.send_audio(vec![0; 300 * 48]);
}

fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len().saturating_sub(1)) as f64 * q).round() as usize;
    samples.get(i).copied().unwrap_or(f64::NAN)
}

fn config() -> RealtimeConfig {
    let mut c = RealtimeConfig::default();
    let settings = json!({"silence_duration_ms": 200, "prefix_padding_ms": 100});
    c.turn_detection = TurnDetection::ServerVad(settings.as_object().cloned().unwrap_or_default());
    c
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Ours: barge-ins through steward-realtime; its own latency figures.
async fn barge_ins(url: &str, n: u64) -> Result<(f64, f64, u64)> {
    let playback = Arc::new(Playback::open(&AudioConfig::default())?);
    let c = config();
    let client = c.client_builder(url).build()?;
    let session = RealtimeSession::builder(client)
        .config(c)
        .playout(Arc::clone(&playback) as Arc<dyn Playout>)
        .connect()
        .await?;
    say(&session);
    let mut i = 0;
    while session.stats().barge_ins < n && i < n * 3 {
        i += 1;
        let written = session.stats().audio_played_bytes;
        wait_for("an answer", || session.stats().audio_played_bytes > written).await?;
        tokio::time::sleep(Duration::from_millis(150 + (i * 37) % 400)).await;
        say(&session);
    }
    let stats = session.close().await;
    let _ = playback.close();
    let l = stats.barge_in_latency;
    Ok((
        l.p50_us.unwrap_or(0) as f64,
        l.p99_us.unwrap_or(0) as f64,
        l.count,
    ))
}

/// The alternative: stop writing at the onset and let the queue play out;
/// the latency is until the device has played everything written.
async fn play_out(n: usize) -> Result<Vec<f64>> {
    let playback = Playback::open(&AudioConfig::default())?;
    let mut samples = Vec::new();
    for i in 0..n {
        // An answer arriving faster than real time: 800 ms queued at once.
        let written = playback.played_frames() + 800 * 24;
        let mut pcm = burst(800);
        while !pcm.is_empty() {
            let n = playback.try_write(&pcm)?;
            pcm.drain(..n);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(150 + (i as u64 * 37) % 400)).await;
        let onset = Instant::now();
        wait_for("the queue to play out", || {
            playback.played_frames() >= written
        })
        .await?;
        samples.push(onset.elapsed().as_micros() as f64);
    }
    let _ = playback.close();
    Ok(samples)
}

/// Ours: drops the link `n` times; the session's reconnect-and-replay figures.
async fn reconnects(standin: &Standin, n: u64) -> Result<(f64, f64, u64)> {
    let c = config();
    let client = c.client_builder(standin.url()).build()?;
    let session = RealtimeSession::builder(client).config(c).connect().await?;
    // Some history to replay.
    for _ in 0..4 {
        say(&session);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for k in 1..=n {
        standin.drop_connections();
        wait_for("a reconnect", || session.stats().replays >= k).await?;
    }
    let stats = session.close().await;
    let r = stats.reconnect_replay;
    Ok((
        r.p50_us.unwrap_or(0) as f64,
        r.p95_us.unwrap_or(0) as f64,
        r.count,
    ))
}

/// The alternative: a bare steward-ws session's reconnect.
async fn bare_reconnects(standin: &Standin, n: usize) -> Result<Vec<f64>> {
    let c = config();
    let client: Client = c.client_builder(standin.url()).build()?;
    let session = client.connect().await?;
    let events = session.events();
    let mut samples = Vec::new();
    for _ in 0..n {
        standin.drop_connections();
        let mut lost = None;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
                .await
                .context("no event")?
                .context("session closed")?;
            match event {
                Event::Disconnected { .. } => lost = Some(Instant::now()),
                Event::Connected { connection } if connection > 1 => {
                    let from = lost.unwrap_or_else(Instant::now);
                    samples.push(from.elapsed().as_micros() as f64);
                    break;
                }
                _ => {}
            }
        }
    }
    let _ = session.shutdown(steward::ws::ShutdownMode::Abandon).await;
    Ok(samples)
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (barge_n, drop_n) = if quick { (40, 10) } else { (200, 40) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let entries: Vec<Value> = rt.block_on(async {
        let mut sc = StandinConfig::default();
        sc.reply_audio_ms = 800;
        sc.remember_every = 0;
        let standin = Standin::start(sc).await?;
        let (p50, p99, count) = barge_ins(&standin.url(), barge_n).await?;
        let mut naive = play_out(barge_n as usize / 4).await?;
        let (n50, n99) = (quantile(&mut naive, 0.5), quantile(&mut naive, 0.99));
        let (r50, r95, rcount) = reconnects(&standin, drop_n).await?;
        let mut bare = bare_reconnects(&standin, drop_n as usize).await?;
        let (b50, b95) = (quantile(&mut bare, 0.5), quantile(&mut bare, 0.95));
        standin.close().await;
        println!(
            "barge-in latency: ours p50 {:.1} ms p99 {:.1} ms ({count} barge-ins); play-out p50 {:.1} ms p99 {:.1} ms",
            p50 / 1000.0,
            p99 / 1000.0,
            n50 / 1000.0,
            n99 / 1000.0
        );
        println!(
            "reconnect + replay: ours p50 {:.1} ms p95 {:.1} ms ({rcount}); bare reconnect p50 {:.1} ms p95 {:.1} ms",
            r50 / 1000.0,
            r95 / 1000.0,
            b50 / 1000.0,
            b95 / 1000.0
        );
        anyhow::Ok(vec![
            json!({
                "name": "realtime barge-in latency (onset to first silent sample)",
                "ours_p50_us": p50, "ours_p99_us": p99, "samples": count,
                "baseline": "stop writing, queued audio plays out",
                "baseline_p50_us": n50, "baseline_p99_us": n99,
                // Above 1: ours is that many times quicker (at the median).
                "ratio": ((n50 / p50.max(1.0)) * 1000.0).round() / 1000.0,
                "statistic": "median",
            }),
            json!({
                "name": "realtime reconnect + replay (link lost to history replayed)",
                "ours_p50_us": r50, "ours_p95_us": r95, "samples": rcount,
                "baseline": "bare steward-ws reconnect (no set-up, no replay)",
                "baseline_p50_us": b50, "baseline_p95_us": b95,
                // Below 1: what set-up and replay cost on top of the reconnect.
                "ratio": ((b50 / r50.max(1.0)) * 1000.0).round() / 1000.0,
                "statistic": "median",
            }),
        ])
    })?;
    if let Some(dir) = std::env::var_os("STEWARD_BENCH_DIR") {
        let dir = std::path::PathBuf::from(dir).join("extra");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("realtime.json"),
            serde_json::to_string_pretty(&Value::Array(entries))? + "\n",
        )?;
    }
    Ok(())
}
