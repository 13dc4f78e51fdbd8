//! `cargo xtask bench cpu`: what a whole voice session costs the machine.
//!
//! Runs the release `steward assistant` for 20 s (5 s with `--quick`) four
//! times against the in-process stand-in: talking (`--talk`: turns end by
//! the stand-in's voice detection, answers play, barge-ins happen) with
//! playback on the default audio host; capturing from the sound server's
//! null source with playback (a turn committed every 2 s, so answers play
//! too); talking again pinned to ALSA (the path through ALSA's PulseAudio
//! plugin, for comparison); and with `--silence --no-playback` (no audio
//! device at all). Each run's CPU time (user + system, read as the
//! children's times of this process before and after waiting for it) is
//! divided by its wall time: the fraction of one core. The stream counters
//! (errors, underruns, overflow, device loss, output latency, the host) are
//! scraped from the session's own `/health` endpoint (`--http
//! 127.0.0.1:0`) near the end, while the streams are still live; the
//! conversation's counters come from its report. Written to
//! `target/bench/extra/assistant_cpu.json`, merged into
//! `target/bench/summary.json`. Goal: at most 3 % of a core with audio.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::root;

/// The budget with audio, as a fraction of one core.
const GOAL: f64 = 0.03;

/// What the endpoint's address line starts with (steward-cli prints it).
const SERVING: &str = "serving http://";

/// One measured session: its label, its extra arguments, and whether the
/// budget applies to it.
struct Session {
    label: &'static str,
    args: &'static [&'static str],
    budgeted: bool,
}

const SESSIONS: &[Session] = &[
    Session {
        label: "audio",
        args: &["--talk"],
        budgeted: true,
    },
    Session {
        label: "audio_capture",
        args: &["--turn-detection", "manual", "--turn", "2s"],
        budgeted: true,
    },
    Session {
        label: "audio_alsa",
        args: &["--talk", "--audio-host", "alsa"],
        budgeted: false,
    },
    Session {
        label: "no_audio",
        args: &["--silence", "--no-playback"],
        budgeted: false,
    },
];

pub(crate) fn run(target: &Path, quick: bool) -> Result<()> {
    crate::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "build",
            "--release",
            "-p",
            "steward-cli",
        ]),
    )?;
    let exe = target.join("release/steward");
    let secs = if quick { 5 } else { 20 };
    let dir = target.join("bench/cpu");
    std::fs::create_dir_all(&dir)?;
    let tick = clock_ticks();
    let mut entries = Vec::new();
    for session in SESSIONS {
        entries.push(measure(&exe, &dir, session, secs, tick)?);
    }
    let out = target.join("bench/extra");
    std::fs::create_dir_all(&out)?;
    let path = out.join("assistant_cpu.json");
    std::fs::write(&path, serde_json::to_string_pretty(&entries)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs one session and returns its summary entry.
fn measure(exe: &Path, dir: &Path, session: &Session, secs: u64, tick: f64) -> Result<Value> {
    let label = session.label;
    let report = dir.join(format!("{label}.json"));
    let memory = dir.join("memory.json");
    let _ = std::fs::remove_file(&memory);
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(exe);
    let duration = format!("{secs}s");
    cmd.args([
        "assistant",
        "--quiet",
        "--duration",
        &duration,
        "--http",
        "127.0.0.1:0",
    ])
    .arg("--memory")
    .arg(&memory)
    .arg("--report")
    .arg(&report)
    .args(session.args)
    .current_dir(root())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    eprintln!("$ {}", crate::shell_line(&cmd));
    let before = children_ticks()?;
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let addr = endpoint(&mut child);
    // Near the end, while the streams are live (a second before the
    // duration passes: the session started a little after the process).
    let scrape_at = Duration::from_secs(secs.saturating_sub(2).max(1));
    let live = match addr {
        Some(addr) => {
            std::thread::sleep(scrape_at.saturating_sub(started.elapsed()));
            scrape_health(addr)
                .with_context(|| format!("scraping http://{addr}/health"))
                .map(|h| (h, started.elapsed()))
        }
        None => Err(anyhow::anyhow!("the session never said where it serves")),
    };
    let status = child.wait()?;
    let wall = started.elapsed().as_secs_f64();
    let after = children_ticks()?;
    if !status.success() {
        bail!("the {label} session failed with {status}");
    }
    let (health, scraped) = live?;
    #[allow(clippy::cast_precision_loss)]
    let cpu = after.saturating_sub(before) as f64 / tick;
    let fraction = cpu / wall;
    let text = std::fs::read_to_string(&report)
        .with_context(|| format!("reading {}", report.display()))?;
    let report: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", report.display()))?;
    let streams = |kind: &str| -> Vec<Value> {
        health[kind]
            .as_array()
            .map(|a| a.iter().map(|s| s["stats"].clone()).collect())
            .unwrap_or_default()
    };
    let (playback, capture) = (streams("audio"), streams("capture"));
    let sum =
        |v: &[Value], field: &str| -> u64 { v.iter().filter_map(|s| s[field].as_u64()).sum() };
    let host = playback
        .iter()
        .chain(&capture)
        .find_map(|s| s["host"].as_str())
        .unwrap_or("none")
        .to_string();
    let name = format!("assistant_cpu/{label}");
    let entry = json!({
        "name": name,
        "args": session.args,
        "session_s": secs,
        "wall_s": round3(wall),
        "cpu_s": round3(cpu),
        "core_fraction": round3(fraction),
        "goal_core_fraction": if session.budgeted { json!(GOAL) } else { Value::Null },
        "host": host,
        "counters_scraped_at_s": round3(scraped.as_secs_f64()),
        "playback_streams": playback.len(),
        "capture_streams": capture.len(),
        "playback_errors": sum(&playback, "errors"),
        "capture_errors": sum(&capture, "errors"),
        "last_error": playback.iter().chain(&capture).find_map(|s| s["last_error"].as_str()),
        "underruns": sum(&playback, "underruns"),
        "capture_overflow_frames": sum(&capture, "overflow_frames"),
        "capture_ring_overrun_frames": sum(&capture, "ring_overrun_frames"),
        "device_lost": playback.iter().chain(&capture).any(|s| s["device_lost"].as_bool() == Some(true)),
        "output_latency_us": playback.iter().find_map(|s| s["output_latency_us"].as_u64()),
        "output_buffer_frames": playback.iter().find_map(|s| s["buffer_frames"].as_u64()),
        "turns": report["turns"],
        "responses": report["responses"],
        "barge_ins": report["barge_ins"],
        "audio_bytes_played": report["audio_bytes_played"],
    });
    eprintln!(
        "xtask bench cpu: {name}: {:.1} % of a core ({cpu:.2} s CPU in {wall:.1} s), host {host}, \
         errors {}+{} at {:.0} s",
        fraction * 100.0,
        entry["playback_errors"],
        entry["capture_errors"],
        scraped.as_secs_f64(),
    );
    Ok(entry)
}

/// Forwards the child's stderr to ours and returns the address its
/// endpoint serves on, once it said so (`None` if it ended first or took
/// over 30 s).
fn endpoint(child: &mut std::process::Child) -> Option<SocketAddr> {
    let stderr = child.stderr.take()?;
    let (tx, rx) = mpsc::channel();
    // Lives until the child closes its stderr (it ends).
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split_once(SERVING).map(|(_, r)| r) {
                let addr = rest.split('/').next().and_then(|a| a.parse().ok());
                let _ = tx.send(addr);
            }
            eprintln!("{line}");
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).ok().flatten()
}

/// `GET /health` over plain HTTP/1.1, the body parsed as JSON.
fn scrape_health(addr: SocketAddr) -> Result<Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of the response head")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    serde_json::from_str(body).context("the body is not JSON")
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 where it cannot say).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system time of this process's waited-for children, in clock
/// ticks (`cutime` + `cstime` of /proc/self/stat).
fn children_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name, which may hold spaces: state is field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no command name in /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("field {n} of /proc/self/stat"))
    };
    Ok(field(16)? + field(17)?)
}
