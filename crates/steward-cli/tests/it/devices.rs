//! The assistant when an audio device goes away under it, on the real
//! sound server: a null sink (or source) of the test's own is unloaded
//! while the session runs. The assistant reopens the stream on the default
//! device, counts one reopening (report, status, health, `/metrics`) and
//! goes on; no panic, no hang.

use std::time::Duration;

use steward::audio::AudioHost;
use steward_cli::assistant::{Assistant, AssistantConfig, Input, Report};
use steward_test_support::sound::{OwnNullDevice, require_sound_server};

use crate::assistant::{http_get, until};

const PATIENCE: Duration = Duration::from_secs(30);

fn config(dir: &tempfile::TempDir) -> AssistantConfig {
    let mut config = AssistantConfig::default();
    config.audio_host = AudioHost::PulseAudio;
    config.memory = dir.path().join("memory.json");
    config.poll_ms = 50;
    config.http_addr = Some("127.0.0.1:0".parse().expect("addr"));
    config
}

async fn finish(assistant: Assistant) -> Report {
    assistant.stop();
    tokio::time::timeout(PATIENCE, assistant.wait())
        .await
        .expect("ends in time")
        .expect("report")
}

/// `/metrics` of the running assistant.
async fn metrics(assistant: &Assistant) -> String {
    let addr = assistant.http_addr().expect("endpoint");
    tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .expect("get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_output_device_is_reopened_on_the_default_and_counted() {
    require_sound_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = OwnNullDevice::sink("assistant_out");
    let mut config = config(&dir);
    // Answers come by the stand-in's voice detection: audio keeps playing.
    config.input = Input::Talk;
    config.output_device = Some(sink.name.clone());
    let assistant = Assistant::start(config).await.expect("start");
    let speaker = |a: &Assistant| a.health().audio.first().map(|s| s.stats.clone());
    let first = speaker(&assistant).expect("the speaker is in the health");
    assert_eq!(first.device, sink.name);
    assert_eq!(first.host, Some(AudioHost::PulseAudio));
    until("an answer played on the test's sink", || {
        speaker(&assistant).is_some_and(|s| s.device == sink.name && s.frames_out > 0)
    })
    .await;

    sink.unload();
    until("the output reopened", || {
        assistant.status().audio_reopens >= 1
    })
    .await;
    let now = speaker(&assistant).expect("the reopened speaker is in the health");
    assert_ne!(now.device, sink.name, "{now:?}");
    assert_eq!(now.reopens, 1, "{now:?}");
    assert!(!now.device_lost, "{now:?}");
    // It goes on: answers play on the default output.
    until("an answer played on the default output", || {
        speaker(&assistant).is_some_and(|s| s.device != sink.name && s.frames_out > 0)
    })
    .await;
    let turns = assistant.status().turns;
    until("another turn", || assistant.status().turns > turns).await;
    let text = metrics(&assistant).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("steward_audio_reopens_total{")
                && l.contains("host=\"pulseaudio\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    assert!(assistant.status().to_string().contains("reopens 1"));

    let report = finish(assistant).await;
    assert_eq!(report.audio_reopens, 1, "{report}");
    assert_eq!(
        report.playback_host,
        Some(AudioHost::PulseAudio),
        "{report}"
    );
    assert_ne!(report.playback_device.as_deref(), Some(sink.name.as_str()));
    assert!(report.audio_balances(), "{report}");
    assert!(report.to_string().contains("reopened 1"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_input_device_is_reopened_on_the_default_and_counted() {
    require_sound_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = OwnNullDevice::source("assistant_in");
    let mut config = config(&dir);
    config.input = Input::Device;
    config.input_device = Some(source.name.clone());
    config.playback = false;
    config.turn_ms = 200;
    config.realtime.turn_detection = steward::realtime::TurnDetection::Manual;
    let assistant = Assistant::start(config).await.expect("start");
    let microphone = |a: &Assistant| a.health().capture.first().map(|s| s.stats.clone());
    let first = microphone(&assistant).expect("the microphone is in the health");
    assert_eq!(first.device, source.name);
    assert_eq!(first.host, Some(AudioHost::PulseAudio));
    until("a turn", || assistant.status().turns >= 1).await;

    source.unload();
    until("the input reopened", || {
        assistant.status().audio_reopens >= 1
    })
    .await;
    let now = microphone(&assistant).expect("the reopened microphone is in the health");
    assert_ne!(now.device, source.name, "{now:?}");
    assert_eq!(now.reopens, 1, "{now:?}");
    // It goes on: audio is captured from the default input.
    until("audio captured from the default input", || {
        microphone(&assistant).is_some_and(|s| s.device != source.name && s.frames_out > 0)
    })
    .await;
    let turns = assistant.status().turns;
    until("another turn", || assistant.status().turns > turns).await;

    let report = finish(assistant).await;
    assert_eq!(report.audio_reopens, 1, "{report}");
    assert_eq!(report.capture_host, Some(AudioHost::PulseAudio), "{report}");
    assert_ne!(report.capture_device.as_deref(), Some(source.name.as_str()));
    assert!(report.audio_balances(), "{report}");
}
