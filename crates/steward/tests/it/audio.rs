//! A real playback stream (the default device: the sound server's null
//! sink set up by the setup script) under the wiring.

use std::sync::Arc;
use std::time::Duration;

use steward::audio::Playback;
use steward::tracker::Tracker;
use steward::{AUDIO_PLAYBACK_KIND, Steward};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_is_reported_and_tracked_until_dropped() {
    let playback = Arc::new(
        Playback::builder()
            .queue(Duration::from_secs(5))
            .build()
            .expect("a playback device: run scripts/setup.sh for the null sink"),
    );
    let tracker = Tracker::new();
    let steward = Steward::builder()
        .tracker(tracker.clone())
        .playback("speaker", &playback)
        .build()
        .unwrap();
    // Two seconds of silence at 24 kHz, PCM16: queued far faster than played.
    let pcm = vec![0_u8; 24_000 * 2 * 2];
    let taken = playback.try_write(&pcm).unwrap();
    assert!(taken > 0);

    let h = steward.health();
    assert_eq!(h.audio.len(), 1);
    assert_eq!(h.audio[0].name, "speaker");
    assert_eq!(h.audio[0].stats.frames_in, (taken / 2) as u64);
    // The host it runs on is in the health snapshot (and its JSON).
    assert_eq!(
        h.audio[0].stats.host,
        Some(steward::audio::AudioHost::PulseAudio)
    );
    let kind = tracker.kind(AUDIO_PLAYBACK_KIND).unwrap();
    assert_eq!(kind.totals.live_count, 1);
    assert_eq!(
        kind.totals.live_bytes,
        h.audio[0].stats.queued_frames * 2,
        "sized by its queue"
    );
    assert!(
        steward
            .metrics_text()
            .contains("steward_audio_frames_in_total{stream=\"speaker\",host=\"pulseaudio\"}"),
        "{}",
        steward.metrics_text()
    );

    // The steward holds it weakly: dropping ours closes it and it leaves.
    drop(playback);
    assert!(steward.health().audio.is_empty());
    assert_eq!(
        tracker.kind(AUDIO_PLAYBACK_KIND).unwrap().totals.live_count,
        0
    );
    steward.shutdown().await;
}
