//! The assistant: the binary end to end, and the library against a
//! stand-in that drops its connections mid-session.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use steward_cli::assistant::{Assistant, AssistantConfig, Input};
use steward_cli::standin::{Standin, StandinConfig};

const PATIENCE: Duration = Duration::from_secs(30);

/// One second of a 300 Hz tone, 16 kHz stereo (so it must be converted).
fn write_wav(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..16_000 {
        let s = ((f64::from(i) * std::f64::consts::TAU * 300.0 / 16_000.0).sin() * 8000.0) as i16;
        w.write_sample(s).expect("left");
        w.write_sample(s).expect("right");
    }
    w.finalize().expect("finalize");
}

#[test]
fn the_assistant_command_runs_a_wav_session_and_remembers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("hello.wav");
    write_wav(&wav);
    let memory = dir.path().join("memory.json");
    let report = dir.path().join("report.json");
    let soak = dir.path().join("soak");
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("assistant")
        .arg("--input")
        .arg(&wav)
        .args([
            "--duration",
            "3s",
            "--turn-detection",
            "manual",
            "--turn",
            "500ms",
            "--remember-every",
            "1",
        ])
        .arg("--memory")
        .arg(&memory)
        .arg("--report")
        .arg(&report)
        .arg("--soak-dir")
        .arg(&soak)
        .output()
        .expect("run steward assistant");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // The live status line (plain lines: stdout is not a terminal) and the report.
    assert!(
        stdout.contains("level none") || stdout.contains("level moderate"),
        "{stdout}"
    );
    assert!(stdout.contains("local stand-in"), "{stdout}");

    // memory.json: a plain JSON object, as the Python assistant reads it.
    let text = std::fs::read_to_string(&memory).expect("memory.json");
    let map: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("a JSON object");
    assert!(map.contains_key("turn_1"), "{text}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).expect("report"))
        .expect("report JSON");
    assert!(report["turns"].as_u64().expect("turns") >= 2, "{report}");
    assert!(report["audio_bytes_received"].as_u64().expect("received") > 0);
    assert!(report["tool_calls"]["remember"].as_u64().expect("remember") >= 1);
    let captured = report["audio_bytes_captured"].as_u64().expect("captured");
    let sum = [
        "audio_bytes_sent",
        "audio_bytes_dropped",
        "audio_bytes_pending",
    ]
    .iter()
    .map(|k| report[*k].as_u64().expect("a count"))
    .sum::<u64>();
    assert_eq!(captured, sum, "{report}");

    let csv = std::fs::read_to_string(soak.join("rss.csv")).expect("rss.csv");
    assert!(csv.starts_with("seconds,rss_bytes,level,session"));
    assert!(csv.lines().count() >= 3, "{csv}");
    let png = std::fs::read(soak.join("rss.png")).expect("rss.png");
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn without_a_duration_a_wav_session_ends_after_the_last_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("hello.wav");
    write_wav(&wav);
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("assistant")
        .arg("--input")
        .arg(&wav)
        .args([
            "--turn-detection",
            "manual",
            "--turn",
            "400ms",
            "--quiet",
            "--no-playback",
        ])
        .arg("--memory")
        .arg(dir.path().join("memory.json"))
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run steward assistant");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).expect("report"))
        .expect("report JSON");
    // One second of audio: 400 ms turns, the rest committed at the end, and
    // every turn answered before it ended.
    let turns = report["turns"].as_u64().expect("turns");
    assert!(turns >= 2, "{report}");
    assert!(
        report["responses"].as_u64().expect("responses") >= turns,
        "{report}"
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
}

#[test]
fn a_bad_wav_is_a_one_line_error_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("broken.wav");
    std::fs::write(&wav, b"RIFF but not really").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("assistant")
        .arg("--input")
        .arg(&wav)
        .arg("--memory")
        .arg(dir.path().join("memory.json"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.wav"), "{stderr}");
}

pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `path` from the endpoint; the whole response.
pub(crate) fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_drops_mid_session_and_the_books_still_balance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut standin_config = StandinConfig::default();
    standin_config.remember_every = 1;
    standin_config.reply_audio_ms = 50;
    let standin = Standin::start(standin_config).await.expect("standin");

    let mut config = AssistantConfig::default();
    config.url = Some(standin.url());
    config.input = Input::Silence;
    config.playback = false;
    config.memory = dir.path().join("memory.json");
    config.turn_ms = 200;
    config.realtime.turn_detection = steward::realtime::TurnDetection::Manual;
    config.poll_ms = 50;
    config.http_addr = Some("127.0.0.1:0".parse().expect("addr"));
    let assistant = Assistant::start(config).await.expect("start");
    assert!(assistant.standin_url().is_none());
    let addr = assistant.http_addr().expect("endpoint");

    until("two turns", || assistant.status().turns >= 2).await;
    let metrics = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .expect("get");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("steward_memory_pressure_level"),
        "{metrics}"
    );

    standin.drop_connections();
    until("a reconnect", || assistant.status().reconnects >= 1).await;
    let turns_before = assistant.status().turns;
    until("a turn after the reconnect", || {
        assistant.status().turns > turns_before
    })
    .await;
    assert_eq!(assistant.health().ws.len(), 1);

    assistant.stop();
    let report = tokio::time::timeout(PATIENCE, assistant.wait())
        .await
        .expect("ends in time")
        .expect("report");
    assert!(report.reconnects >= 1, "{report}");
    assert!(report.audio_balances(), "{report}");
    assert_eq!(report.sessions, 1);
    assert!(report.tool_calls.remember >= 2, "{report}");
    assert_eq!(report.tool_calls.failed, 0, "{report}");
    assert_eq!(standin.stats().sessions, 2);
    let memory = std::fs::read_to_string(dir.path().join("memory.json")).expect("memory");
    let map: serde_json::Map<String, Value> = serde_json::from_str(&memory).expect("object");
    assert!(map.keys().any(|k| k.starts_with("turn_")), "{memory}");
    standin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_cycle_over_the_duration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = AssistantConfig::default();
    config.input = Input::Silence;
    config.playback = false;
    config.memory = dir.path().join("memory.json");
    config.duration = Some(Duration::from_millis(1500));
    config.sessions = 3;
    config.turn_ms = 200;
    config.realtime.turn_detection = steward::realtime::TurnDetection::Manual;
    config.poll_ms = 50;
    let assistant = Assistant::start(config).await.expect("start");
    let report = tokio::time::timeout(PATIENCE, assistant.wait())
        .await
        .expect("ends in time")
        .expect("report");
    assert_eq!(report.sessions, 3, "{report}");
    assert_eq!(report.standin_stats.as_ref().expect("stand-in").sessions, 3);
    assert!(report.audio_balances(), "{report}");
    assert!(report.rss_samples.len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standin_that_drops_every_few_turns_is_reconnected_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = AssistantConfig::default();
    config.input = Input::Silence;
    config.playback = false;
    config.memory = dir.path().join("memory.json");
    config.turn_ms = 200;
    config.realtime.turn_detection = steward::realtime::TurnDetection::Manual;
    config.poll_ms = 50;
    config.standin.drop_every = 2;
    config.standin.reply_audio_ms = 40;
    let assistant = Assistant::start(config).await.expect("start");
    until("two reconnects", || assistant.status().reconnects >= 2).await;
    assistant.stop();
    let report = tokio::time::timeout(PATIENCE, assistant.wait())
        .await
        .expect("ends in time")
        .expect("report");
    assert!(report.reconnects >= 2, "{report}");
    assert!(report.audio_balances(), "{report}");
    let standin = report.standin_stats.expect("stand-in stats");
    assert!(standin.dropped_connections >= 2);
    // One connection per reconnect, plus the first (and maybe one being
    // made as the run stopped).
    assert!(standin.sessions > report.reconnects, "{standin:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_is_an_error_and_nothing_is_left_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut config = AssistantConfig::default();
    config.url = Some(format!("ws://127.0.0.1:{port}/v1/realtime"));
    config.input = Input::Silence;
    config.playback = false;
    config.memory = dir.path().join("memory.json");
    config.http_addr = Some("127.0.0.1:0".parse().expect("addr"));
    let err = Assistant::start(config).await.expect_err("nothing listens");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    // The memory file was closed: another process-level open succeeds.
    let store = steward::store::Store::open(dir.path().join("memory.json")).expect("reopen");
    store.close().await.expect("close");
}

/// The endpoint listens beyond loopback only when told to.
#[test]
fn http_beyond_loopback_needs_http_allow_remote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["assistant", "--silence", "--no-playback", "--quiet"])
            .args(["--duration", "1s", "--http", "0.0.0.0:0"])
            .args(extra)
            .arg("--memory")
            .arg(dir.path().join("memory.json"))
            .output()
            .expect("run steward assistant")
    };
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_ne!(refused.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("0.0.0.0"), "names the address: {stderr}");
    let allowed = run(&["--http-allow-remote"]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
}

#[test]
fn a_remember_beyond_max_keys_is_a_tool_error_the_model_sees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = dir.path().join("memory.json");
    std::fs::write(&memory, "{\n  \"a\": 1,\n  \"b\": 2\n}").expect("memory.json");
    let report = dir.path().join("report.json");
    let run = |max_keys: &str| {
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .env("RUST_LOG", "warn")
            .args([
                "-v",
                "assistant",
                "--silence",
                "--quiet",
                "--duration",
                "3s",
            ])
            .args(["--remember-every", "0", "--say", "remember c: blue"])
            .args(["--max-keys", max_keys])
            .arg("--memory")
            .arg(&memory)
            .arg("--report")
            .arg(&report)
            .output()
            .expect("run steward assistant")
    };
    let out = run("2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).expect("report"))
        .expect("report JSON");
    // The model asked, the tool failed and its answer went back.
    assert_eq!(report["tool_calls"]["failed"], 1, "{report}");
    assert_eq!(report["tool_calls"]["remember"], 0, "{report}");
    assert!(
        report["standin_stats"]["function_outputs"].as_u64() >= Some(1),
        "{report}"
    );
    assert!(
        stderr.contains("tool call failed") && stderr.contains("the memory is full (2 keys)"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&memory).expect("memory.json");
    let map: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("a JSON object");
    assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b"], "{text}");

    // No cap at all is refused before anything runs.
    let out = run("0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("max_keys"), "{stderr}");
}

/// The model's audio waiting for the speaker is bounded by
/// `play_queue_ms` (it was once a channel of 64 messages of any size): an
/// answer far longer than it, sent at once, is partly discarded and
/// counted, never queued whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_sent_at_once_waits_for_the_speaker_only_up_to_the_play_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut standin_config = StandinConfig::default();
    standin_config.remember_every = 0;
    standin_config.reply_audio_ms = 20_000;
    standin_config.reply_speed = 0.0;
    let standin = Standin::start(standin_config).await.expect("standin");

    let mut config = AssistantConfig::default();
    config.url = Some(standin.url());
    config.input = Input::Silence;
    config.memory = dir.path().join("memory.json");
    config.say = vec!["tell me a long story".into()];
    config.realtime.play_queue_ms = 1_000;
    config.poll_ms = 50;
    let assistant = Assistant::start(config).await.expect("start");
    let received = |a: &Assistant| a.health().realtime.first().map(|r| r.stats.clone());
    until("the whole answer received", || {
        received(&assistant).is_some_and(|s| s.audio_received_bytes >= 20_000 * 48)
    })
    .await;
    let stats = received(&assistant).expect("the conversation");
    assistant.stop();
    let report = tokio::time::timeout(PATIENCE, assistant.wait())
        .await
        .expect("ends in time")
        .expect("report");
    // At most 1 s waits in the queue (and what the speaker's own queue
    // and the time since took): most of the 20 s is discarded.
    assert!(stats.audio_queued_bytes <= 1_000 * 48, "{stats:?}");
    assert!(report.audio_bytes_play_dropped >= 10_000 * 48, "{report}");
    standin.close().await;
}
