//! `cargo xtask soak [--duration 1h] [--sessions N] [--drop-every T]
//! [--session-limit L]`: a long assistant run against the local stand-in,
//! with RSS recorded every second.
//!
//! Builds the release binary, runs `steward assistant --talk --duration D
//! --sessions N --drop-every T --standin-session-limit L --soak-dir
//! <target>/soak --report <target>/soak/report.json`: generated talking
//! whose bursts often start while an answer plays (barge-ins), the stand-in
//! drops the connection after every T answered turns (reconnects with
//! replay) and ends each session after L (renewals before it), on top of the
//! conversations cycled N times; answers play on the default output (the
//! sound server's null sink on a machine without a sound card). Then prints
//! and writes
//! `<target>/soak/summary.json`: RSS after the warm-up (the first 10 % of
//! the run, at most 60 s), RSS at the end, the growth in bytes and in % per
//! hour, turns, reconnects and sessions. `rss.csv` and `rss.png` are beside
//! it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{cargo, root, run, setup};

const HELP: &str = "\
cargo xtask soak [--duration 1h] [--sessions N] [--drop-every T] [--session-limit L]

  --duration D       how long (humantime: 60s, 10m, 1h); default 1h
  --sessions N       conversations over the duration (fresh connections); default 6
  --drop-every T     the stand-in drops the link after every T turns (0: never); default 50
  --session-limit L  the stand-in ends each session after L (renewed before); default 4m
";

/// Longest warm-up excluded from the growth figure.
const WARMUP_MAX_S: f64 = 60.0;

pub(crate) fn run_soak(args: &[String]) -> Result<()> {
    let mut duration = "1h".to_string();
    let mut sessions = "6".to_string();
    let mut drop_every = "50".to_string();
    let mut session_limit = "4m".to_string();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--duration" => duration = it.next().context("--duration needs a value")?.clone(),
            "--sessions" => sessions = it.next().context("--sessions needs a value")?.clone(),
            "--drop-every" => {
                drop_every = it.next().context("--drop-every needs a value")?.clone();
            }
            "--session-limit" => {
                session_limit = it.next().context("--session-limit needs a value")?.clone();
            }
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n\n{HELP}"),
        }
    }
    sessions
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("--sessions must be a positive number, not {sessions:?}"))?;
    drop_every
        .parse::<u32>()
        .with_context(|| format!("--drop-every must be a number, not {drop_every:?}"))?;

    setup()?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "steward-cli",
        "--bin",
        "steward",
    ]))?;
    let target = target_dir();
    let dir = target.join("soak");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let report_path = dir.join("report.json");
    let binary = target.join("release").join("steward");
    run(std::process::Command::new(&binary)
        .args([
            "assistant",
            "--talk",
            "--duration",
            &duration,
            "--sessions",
            &sessions,
            "--drop-every",
            &drop_every,
            "--standin-session-limit",
            &session_limit,
        ])
        .arg("--soak-dir")
        .arg(&dir)
        .arg("--report")
        .arg(&report_path)
        .arg("--memory")
        .arg(dir.join("memory.json")))?;

    let text = std::fs::read_to_string(&report_path)
        .with_context(|| format!("cannot read {}", report_path.display()))?;
    let report: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", report_path.display()))?;
    let summary = summarize(&report)?;
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    print_summary(&summary);
    eprintln!(
        "soak: {} (rss.csv, rss.png, report.json beside it)",
        path.display()
    );
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The median of the RSS samples with `from <= t < to` (`None` if none).
fn median_between(samples: &[(f64, f64)], from: f64, to: f64) -> Option<f64> {
    let mut window: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, rss)| *rss)
        .collect();
    if window.is_empty() {
        return None;
    }
    window.sort_by(f64::total_cmp);
    Some(window[window.len() / 2])
}

/// Growth of one series after the warm-up.
struct Growth {
    after_warmup: f64,
    at_end: f64,
    peak: f64,
    pct_per_hour: f64,
}

/// `(seconds, bytes)` pairs of a report field (empty when absent).
fn series(report: &Value, field: &str) -> Vec<(f64, f64)> {
    report[field].as_array().map_or_else(Vec::new, |samples| {
        samples
            .iter()
            .filter_map(|s| Some((s.get(0)?.as_f64()?, s.get(1)?.as_f64()?)))
            .collect()
    })
}

fn growth(samples: &[(f64, f64)], warmup: f64, window: f64) -> Option<Growth> {
    let (first, last) = (samples.first()?, samples.last()?);
    let start_at = first.0 + warmup;
    // Medians over short windows, so one noisy sample does not decide.
    let after_warmup = median_between(samples, start_at, start_at + window).unwrap_or(first.1);
    let at_end = median_between(samples, last.0 - window, f64::INFINITY).unwrap_or(last.1);
    let measured_s = (last.0 - start_at).max(1.0);
    let pct_per_hour = if after_warmup > 0.0 {
        (at_end - after_warmup) / after_warmup * 100.0 * 3600.0 / measured_s
    } else {
        0.0
    };
    Some(Growth {
        after_warmup,
        at_end,
        peak: samples.iter().map(|s| s.1).fold(0.0, f64::max),
        pct_per_hour: (pct_per_hour * 100.0).round() / 100.0,
    })
}

/// The figures that matter from the assistant's report. RSS includes code
/// and libraries paged in as new paths run; its anonymous part (heap,
/// stacks) is where a leak would show, so both are summarised.
pub(crate) fn summarize(report: &Value) -> Result<Value> {
    let samples = series(report, "rss_samples");
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("the report has no RSS samples");
    };
    let span = (last.0 - first.0).max(0.0);
    let warmup = (span * 0.1).min(WARMUP_MAX_S);
    let window = (span * 0.02).clamp(3.0, 60.0);
    let rss = growth(&samples, warmup, window).context("no RSS samples")?;
    let anon = growth(&series(report, "rss_anon_samples"), warmup, window);
    let anon_field = |f: fn(&Growth) -> f64| anon.as_ref().map(|g| f(g) as i64);
    Ok(json!({
        "duration_s": report["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        "samples": samples.len(),
        "warmup_s": warmup,
        "rss_after_warmup_bytes": rss.after_warmup as u64,
        "rss_end_bytes": rss.at_end as u64,
        "rss_peak_bytes": rss.peak as u64,
        "rss_growth_bytes": (rss.at_end - rss.after_warmup) as i64,
        "rss_growth_pct_per_hour": rss.pct_per_hour,
        "anon_after_warmup_bytes": anon_field(|g| g.after_warmup),
        "anon_end_bytes": anon_field(|g| g.at_end),
        "anon_growth_bytes": anon_field(|g| g.at_end - g.after_warmup),
        "anon_growth_pct_per_hour": anon.as_ref().map(|g| g.pct_per_hour),
        "turns": report["turns"],
        "responses": report["responses"],
        "sessions": report["sessions"],
        "reconnects": report["reconnects"],
        "renewals": report["renewals"],
        "items_replayed": report["items_replayed"],
        "barge_ins": report["barge_ins"],
        "barge_in_latency": report["barge_in_latency"],
        "truncations_sent": report["truncations_sent"],
        "truncations_rejected": report["truncations_rejected"],
        "reconnect_replay": report["reconnect_replay"],
        "protocol_errors": report["protocol_errors"],
        "tool_calls": report["tool_calls"],
        "audio_bytes_captured": report["audio_bytes_captured"],
        "audio_bytes_dropped": report["audio_bytes_dropped"],
        "underruns": report["underruns"],
        "overflows": report["overflows"],
        "threads": [report["threads_start"], report["threads_end"]],
        "fds": [report["fds_start"], report["fds_end"]],
        "errors": report["errors"].as_array().map_or(0, Vec::len),
    }))
}

fn print_summary(s: &Value) {
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / (1024.0 * 1024.0);
    println!(
        "soak: {:.0} s, {} RSS samples",
        s["duration_s"].as_f64().unwrap_or(0.0),
        s["samples"]
    );
    println!(
        "  RSS after warm-up ({:.0} s): {:.2} MiB; at end: {:.2} MiB; peak {:.2} MiB",
        s["warmup_s"].as_f64().unwrap_or(0.0),
        mib(&s["rss_after_warmup_bytes"]),
        mib(&s["rss_end_bytes"]),
        mib(&s["rss_peak_bytes"])
    );
    println!(
        "  growth: {} bytes ({} %/h)",
        s["rss_growth_bytes"], s["rss_growth_pct_per_hour"]
    );
    if !s["anon_end_bytes"].is_null() {
        println!(
            "  anonymous part (heap, stacks): {:.2} MiB after warm-up, {:.2} MiB at end, growth {} bytes ({} %/h)",
            mib(&s["anon_after_warmup_bytes"]),
            mib(&s["anon_end_bytes"]),
            s["anon_growth_bytes"],
            s["anon_growth_pct_per_hour"]
        );
    }
    println!(
        "  turns {}, responses {}, sessions {}, reconnects {}, errors {}",
        s["turns"], s["responses"], s["sessions"], s["reconnects"], s["errors"]
    );
    let ms = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_string(), |us| format!("{:.1} ms", us / 1000.0))
    };
    println!(
        "  barge-ins {} (latency p50 {}, p99 {}), truncations {} (rejected {}), renewals {}, items replayed {}, reconnect+replay p95 {}",
        s["barge_ins"],
        ms(&s["barge_in_latency"]["p50_us"]),
        ms(&s["barge_in_latency"]["p99_us"]),
        s["truncations_sent"],
        s["truncations_rejected"],
        s["renewals"],
        s["items_replayed"],
        ms(&s["reconnect_replay"]["p95_us"])
    );
    println!("  threads {}, fds {}", s["threads"], s["fds"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_measured_after_the_warmup() {
        // 100 s: 10 MiB during a 10 s warm-up, then 20 MiB growing to 21 MiB.
        let mib = 1024.0 * 1024.0;
        let samples: Vec<Value> = (0..=100)
            .map(|t| {
                let t = f64::from(t);
                let rss = if t < 10.0 {
                    10.0 * mib
                } else {
                    20.0 * mib + (t - 10.0) / 90.0 * mib
                };
                json!([t, rss as u64])
            })
            .collect();
        let anon: Vec<Value> = (0..=100).map(|t| json!([t, 4 * 1024 * 1024])).collect();
        let report = json!({"rss_samples": samples, "rss_anon_samples": anon, "duration_ms": 100_000, "turns": 5});
        let s = summarize(&report).expect("summary");
        assert_eq!(s["warmup_s"], 10.0);
        let after = s["rss_after_warmup_bytes"].as_f64().expect("after") / mib;
        let end = s["rss_end_bytes"].as_f64().expect("end") / mib;
        assert!((20.0..20.1).contains(&after), "{after}");
        assert!((20.9..=21.0).contains(&end), "{end}");
        let pct = s["rss_growth_pct_per_hour"].as_f64().expect("pct");
        assert!(pct > 100.0, "{pct}"); // ~5 % in 90 s is ~200 %/h
        assert_eq!(s["turns"], 5);
        assert_eq!(s["anon_growth_bytes"], 0);
        assert_eq!(s["anon_end_bytes"], 4 * 1024 * 1024);
    }

    #[test]
    fn a_report_without_samples_is_an_error() {
        assert!(summarize(&json!({"rss_samples": []})).is_err());
        assert!(summarize(&json!({})).is_err());
    }
}
