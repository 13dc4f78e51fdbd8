//! `cargo xtask bench cpu`: what a whole voice session costs the machine.
//!
//! Runs the release `steward assistant` for 20 s (5 s with `--quick`) three
//! times, capturing from and playing to the sound server's null devices:
//! on the default audio host, pinned to ALSA (the path through ALSA's
//! PulseAudio plugin, for comparison), and with `--silence --no-playback`
//! (no audio device at all). Each run's CPU time (user + system, read as
//! the children's times of this process before and after waiting for it)
//! is divided by its wall time: the fraction of one core. The stream error
//! counters and the output latency come from the run's report (its final
//! health snapshot). Written to `target/bench/extra/assistant_cpu.json`,
//! merged into `target/bench/summary.json`. Goal: at most 3 % of a core
//! with audio.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::root;

/// The budget with audio, as a fraction of one core.
const GOAL: f64 = 0.03;

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
    let runs: [(&str, &[&str]); 3] = [
        ("audio", &[]),
        ("audio_alsa", &["--audio-host", "alsa"]),
        ("no_audio", &["--silence", "--no-playback"]),
    ];
    let mut entries = Vec::new();
    for (label, extra) in runs {
        let report = dir.join(format!("{label}.json"));
        let memory = dir.join("memory.json");
        let _ = std::fs::remove_file(&memory);
        let _ = std::fs::remove_file(&report);
        let mut cmd = Command::new(&exe);
        // Turns every 2 s, as in the README's first command: answers are
        // played, not only silence.
        let duration = format!("{secs}s");
        cmd.args([
            "assistant",
            "--quiet",
            "--turn",
            "2s",
            "--duration",
            &duration,
        ])
        .arg("--memory")
        .arg(&memory)
        .arg("--report")
        .arg(&report)
        .args(extra)
        .current_dir(root())
        .stdout(Stdio::null());
        eprintln!("$ {cmd:?}");
        let before = children_ticks()?;
        let started = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let wall = started.elapsed().as_secs_f64();
        let after = children_ticks()?;
        if !status.success() {
            bail!("the {label} session failed with {status}");
        }
        #[allow(clippy::cast_precision_loss)]
        let cpu = after.saturating_sub(before) as f64 / tick;
        let fraction = cpu / wall;
        let text = std::fs::read_to_string(&report)
            .with_context(|| format!("reading {}", report.display()))?;
        let report: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", report.display()))?;
        let streams = |kind: &str| -> Vec<Value> {
            report["health"][kind]
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
            "session_s": secs,
            "wall_s": round3(wall),
            "cpu_s": round3(cpu),
            "core_fraction": round3(fraction),
            "goal_core_fraction": if label == "no_audio" { Value::Null } else { json!(GOAL) },
            "host": host,
            "playback_errors": sum(&playback, "errors"),
            "capture_errors": sum(&capture, "errors"),
            "underruns": sum(&playback, "underruns"),
            "capture_overflow_frames": sum(&capture, "overflow_frames"),
            "device_lost": playback.iter().chain(&capture).any(|s| s["device_lost"].as_bool() == Some(true)),
            "output_latency_us": playback.iter().find_map(|s| s["output_latency_us"].as_u64()),
            "output_buffer_frames": playback.iter().find_map(|s| s["buffer_frames"].as_u64()),
            "audio_bytes_played": report["audio_bytes_played"],
        });
        eprintln!(
            "xtask bench cpu: {name}: {:.1} % of a core ({cpu:.2} s CPU in {wall:.1} s), host {host}",
            fraction * 100.0
        );
        entries.push(entry);
    }
    let out = target.join("bench/extra");
    std::fs::create_dir_all(&out)?;
    let path = out.join("assistant_cpu.json");
    std::fs::write(&path, serde_json::to_string_pretty(&entries)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
