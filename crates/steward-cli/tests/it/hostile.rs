//! The binary against hostile peers and careless surroundings: a service
//! that accepts and drops at once, secrets at every log level, a stdout
//! nobody reads.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use steward::realtime::RealtimeConfig;
use tokio::net::TcpListener;

/// A WebSocket server on 127.0.0.1 that completes the handshake and drops
/// the connection at once; counts the connections it accepted.
async fn flapping_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(ws);
            }
        }
    });
    (format!("ws://{addr}/v1/realtime"), accepted)
}

/// `steward assistant` with silence in and no playback, a report in `dir`.
fn assistant(dir: &Path, url: Option<&str>, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward"));
    cmd.arg("assistant")
        .args(["--silence", "--no-playback"])
        .arg("--memory")
        .arg(dir.join("memory.json"))
        .arg("--report")
        .arg(dir.join("report.json"))
        .args(extra);
    if let Some(url) = url {
        cmd.args(["--url", url]);
    }
    cmd
}

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report JSON")
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_service_is_backed_off_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, accepted) = flapping_server().await;
    let started = Instant::now();
    let mut cmd = assistant(
        dir.path(),
        Some(&url),
        &["--duration", "4s", "--quiet", "--turn-detection", "manual"],
    );
    cmd.env_remove("OPENAI_API_KEY");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run steward assistant");
    let window = started.elapsed();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");

    // The most connections the run could make with a growing backoff: the
    // first, then one per attempt whose shortest delay (full jitter) fits
    // in the time it ran. Starting again at attempt 1 after every connect
    // would make dozens.
    let policy = RealtimeConfig::default()
        .client_builder(url.as_str())
        .build()
        .expect("client")
        .config()
        .reconnect
        .clone();
    let mut bound = 1u64;
    let mut spent = Duration::ZERO;
    for attempt in 1.. {
        spent += policy.delay(attempt, 1.0);
        if spent > window {
            break;
        }
        bound += 1;
    }
    let seen = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        seen <= bound,
        "{seen} connections in {window:?}, at most {bound} with a growing backoff"
    );

    let report = report(dir.path());
    let flaps = report["link_flaps"].as_u64().expect("link_flaps");
    assert!(flaps >= 1, "{report:#}");
    assert!(report["links_lost"].as_u64().expect("links_lost") >= flaps);
    let errors = report["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("flapping"))),
        "{report:#}"
    );
    assert!(text.contains("flapping"), "{text}");
}

/// A key no log line, report or message may hold.
const KEY: &str = "sk-steward-test-4f1c9e0b7a2d";

/// Runs `steward -v assistant` at `RUST_LOG=trace` with `KEY` in the
/// environment; the output, stdout and stderr together.
fn traced(dir: &Path, url: &str) -> Output {
    let mut cmd = assistant(
        dir,
        Some(url),
        &[
            "--duration",
            "3s",
            "--turn-detection",
            "manual",
            "--turn",
            "500ms",
        ],
    );
    cmd.arg("-v")
        .env("RUST_LOG", "trace")
        .env("OPENAI_API_KEY", KEY)
        .output()
        .expect("run steward assistant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_is_in_no_log_line_at_trace_level_nor_in_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let standin = steward_cli::standin::Standin::start(Default::default())
        .await
        .expect("stand-in");
    let url = standin.url();
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || traced(&path, &url))
        .await
        .expect("join");
    standin.close().await;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // It did log at trace level, protocol libraries included.
    assert!(text.contains("TRACE"), "{text}");
    assert!(!text.contains(KEY), "the key is in the output");
    let report = report(dir.path());
    assert!(report["turns"].as_u64().expect("turns") >= 1, "{report:#}");
    assert!(
        !report.to_string().contains(KEY),
        "the key is in the report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_in_no_log_line_error_or_report() {
    let standin = steward_cli::standin::Standin::start(Default::default())
        .await
        .expect("stand-in");
    let port = standin
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next().and_then(|p| p.parse::<u16>().ok()));
    let port = port.expect("the stand-in's port");
    for password in [
        "hunter2",
        "hun/ter2",
        "hun?ter2#x",
        "hun@ter2",
        "h/u?n#t@er2",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("ws://bob:{password}@127.0.0.1:{port}/v1/realtime?model=m&k=qkey");
        let path = dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || traced(&path, &url))
            .await
            .expect("join");
        let text = output_text(&out);
        // Refused as a bad URL, or run: either way the password never shows.
        assert!(
            !text.contains("ter2") && !text.contains("qkey"),
            "{password}: {text}"
        );
        assert!(text.contains("***@127.0.0.1"), "{password}: {text}");
        if out.status.code() == Some(0) {
            let report = report(dir.path());
            let json = report.to_string();
            assert!(!json.contains("ter2") && !json.contains("qkey"), "{json}");
        }
    }
    standin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_nobody_reads_does_not_freeze_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A status line every 10 ms fills a pipe's 64 KiB within a few seconds.
    let mut child = assistant(
        dir.path(),
        None,
        &[
            "--duration",
            "6s",
            "--poll",
            "10ms",
            "--turn-detection",
            "manual",
            "--turn",
            "500ms",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start steward assistant");
    // Held, never read.
    let _stdout = child.stdout.take().expect("stdout");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hang guard: the assistant did not finish with its stdout unread");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0));
    let report = report(dir.path());
    assert!(report["turns"].as_u64().expect("turns") >= 2, "{report:#}");
    assert!(
        report["status_lines_dropped"].as_u64().expect("dropped") > 0,
        "{report:#}"
    );
}
