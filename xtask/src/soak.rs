//! `cargo xtask soak [--duration 1h] [--sessions N] [--drop-every T]
//! [--session-limit L] [--poll P] [--warmup W] [--max-growth-kib-per-hour G]
//! [--heap]`:
//! a long assistant run against the local stand-in, with RSS recorded every
//! second.
//!
//! Builds the release binary, runs `steward assistant --talk --duration D
//! --sessions N --drop-every T --standin-session-limit L --soak-dir
//! <target>/soak --report <target>/soak/report.json`: generated talking
//! whose bursts often start while an answer plays (barge-ins), the stand-in
//! drops the connection after every T answered turns (reconnects with
//! replay) and ends each session after L (renewals before it), on top of the
//! conversations cycled N times; answers play on the default output (the
//! sound server's null sink on a machine without a sound card). Then prints
//! and writes `<target>/soak/summary.json`: RSS and its anonymous part
//! (heap, stacks) after the warm-up and at the end, and their **growth per
//! hour after the warm-up as a Theil–Sen slope** (the median of the
//! pairwise slopes, so spikes and a step do not decide it) with its 95 %
//! rank-based confidence interval, turns, reconnects and sessions. The
//! series is thinned first to one point per `max(1 s, span / 600)` (the
//! median of each stretch), which bounds the pairs and the
//! autocorrelation the interval ignores. The task fails when the
//! anonymous growth (RSS when the report has no anonymous series) exceeds
//! `--max-growth-kib-per-hour` (default 256, the goal). `rss.csv` and
//! `rss.png` are beside it; the figures come from `rss.csv`, which has every
//! poll's sample (the report keeps a bounded, evenly thinned series).
//! Where the C allocator is glibc, its view is summarised too, the same
//! way: the bytes it has in use (the heap: a leak grows them) and the freed
//! bytes it keeps instead of returning them (retention, fragmentation).
//!
//! With more than 10 sessions the summary also compares the RSS after the
//! first 10 (the median of the samples taken while the 11th ran) with the
//! RSS while the last one ran, and the task fails when it grew by more than
//! 1 MiB; such a run is judged by that alone (its slope is reported, not
//! judged): `cargo xtask soak --sessions 1000 --duration 12m --poll 200ms`
//! is the 1,000-sessions check.
//!
//! `--allocator` builds and runs the binary as shipped (jemalloc) or with
//! glibc, trimmed every minute or not, so that their retention can be
//! compared on the same load; each run copies its binary into its folder.
//!
//! `--heap` builds the binary with feature `dhat-heap` (dhat as the global
//! allocator; see `heap.rs` of steward-cli) and has it start the heap
//! profiler at the end of the warm-up and write it a few seconds before the
//! run ends, before anything is closed: `dhat-heap.json` then holds, per
//! allocation site, the blocks allocated after the warm-up and still live
//! at the end of the run, which `heap-growth.txt` lists, largest first.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{cargo, run, setup};

// A byte-for-byte copy of steward-monitor's `theil_sen.rs` (std only): the
// task runner stays light instead of building the monitor and its
// dependencies, and the tidy test `theil_sen_copy_is_identical` keeps the
// figure it prints and the monitor's the same.
#[allow(dead_code, unreachable_pub)]
mod theil_sen;

mod allocator;
mod options;
use options::Options;

/// The longest default warm-up excluded from the growth figure.
const WARMUP_MAX_S: f64 = 600.0;
/// Most points the slope is estimated over (after thinning).
const MAX_POINTS: f64 = 600.0;
/// z of a two-sided 95 % interval.
const Z95: f64 = 1.959_964;
/// How long before the run's end the heap profile is written.
const HEAP_WRITE_MARGIN_S: f64 = 3.0;
/// Sessions after which the session check takes its baseline.
const BASELINE_SESSIONS: u64 = 10;
/// Most the RSS may grow from the baseline to the last session.
const MAX_SESSIONS_GROWTH: f64 = 1024.0 * 1024.0;

pub(crate) fn run_soak(args: &[String]) -> Result<()> {
    let Some(Options {
        duration,
        sessions,
        drop_every,
        session_limit,
        poll,
        warmup_s,
        max_growth_kib,
        heap,
        out,
        allocator,
    }) = Options::parse(args)?
    else {
        return Ok(());
    };

    setup()?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "steward-cli",
        "--bin",
        "steward",
    ]);
    build.args(allocator.build_args());
    if heap {
        build.args(["--features", "dhat-heap"]);
    }
    run(&mut build)?;
    let target = crate::bench::target_dir();
    let dir = out.unwrap_or_else(|| target.join("soak"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The run's own copy of the binary: a soak beside it may build another
    // allocator into target/release meanwhile.
    let binary = dir.join("steward");
    let built = target.join("release").join("steward");
    std::fs::copy(&built, &binary)
        .with_context(|| format!("cannot copy {} to {}", built.display(), binary.display()))?;
    let report_path = dir.join("report.json");
    let heap_path = dir.join("dhat-heap.json");
    if heap {
        // A stale profile must not pass for this run's.
        let _ = std::fs::remove_file(&heap_path);
    }
    let mut assistant = std::process::Command::new(&binary);
    allocator.apply(&mut assistant);
    if heap {
        // The warm-up the summary will use, known before the run from
        // the duration asked for.
        let total = humantime_secs(&duration)
            .with_context(|| format!("--duration must be like 60s, 10m, 1h, not {duration:?}"))?;
        let start_after = warmup_s.unwrap_or_else(|| default_warmup(total));
        // The run's clock starts a little after the process's: written
        // this much before, the profile sees the whole run and no teardown.
        let write_at = (total - HEAP_WRITE_MARGIN_S).max(start_after);
        assistant
            .env("STEWARD_DHAT_FILE", &heap_path)
            .env("STEWARD_DHAT_AFTER_S", format!("{start_after}"))
            .env("STEWARD_DHAT_UNTIL_S", format!("{write_at}"));
    }
    run(assistant
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
            "--poll",
            &poll,
        ])
        .args(allocator.assistant_args())
        .arg("--soak-dir")
        .arg(&dir)
        .arg("--report")
        .arg(&report_path)
        .arg("--memory")
        .arg(dir.join("memory.json")))?;

    let text = std::fs::read_to_string(&report_path)
        .with_context(|| format!("cannot read {}", report_path.display()))?;
    let mut report: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", report_path.display()))?;
    let csv_path = dir.join("rss.csv");
    let text = std::fs::read_to_string(&csv_path)
        .with_context(|| format!("cannot read {}", csv_path.display()))?;
    let rows = parse_csv(&text).with_context(|| format!("in {}", csv_path.display()))?;
    report["rss_samples"] = rows.iter().map(|r| json!([r.seconds, r.rss])).collect();
    report["rss_anon_samples"] = rows
        .iter()
        .filter(|r| r.anon > 0.0)
        .map(|r| json!([r.seconds, r.anon]))
        .collect();
    // Where the allocator's view is known (glibc): its bytes in use (the
    // heap; a leak grows it) and free (kept by the allocator, not returned).
    // Under jemalloc glibc serves only the C libraries: its view would
    // pass for the heap's without being it.
    let known: Vec<&CsvRow> = rows
        .iter()
        .filter(|r| r.heap_in_use > 0.0 && allocator.is_glibc())
        .collect();
    report["heap_in_use_samples"] = known
        .iter()
        .map(|r| json!([r.seconds, r.heap_in_use]))
        .collect();
    report["heap_free_samples"] = known
        .iter()
        .map(|r| json!([r.seconds, r.heap_free]))
        .collect();
    let mut summary = summarize(&report, warmup_s, max_growth_kib * 1024.0)?;
    summary["sessions_check"] = sessions_check(&rows)?;
    summary["allocator"] = json!(format!("{allocator:?}").to_lowercase());
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    print_summary(&summary);
    eprintln!(
        "soak: {} (rss.csv, rss.png, report.json beside it)",
        path.display()
    );
    if heap {
        let text = std::fs::read_to_string(&heap_path).with_context(|| {
            format!(
                "cannot read {} (did the heap profiler start?)",
                heap_path.display()
            )
        })?;
        let profile: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", heap_path.display()))?;
        let listing = crate::heap::growth_report(&profile, 25)?;
        let out = dir.join("heap-growth.txt");
        std::fs::write(&out, &listing)
            .with_context(|| format!("cannot write {}", out.display()))?;
        print!(
            "{}",
            listing.lines().take(12).collect::<Vec<_>>().join("\n") + "\n"
        );
        eprintln!("soak: {} (dhat-heap.json beside it)", out.display());
    }
    let check = &summary["sessions_check"];
    if check["within_goal"] == Value::Bool(false) {
        bail!(
            "RSS while session {} ran was {} bytes above RSS after the first {BASELINE_SESSIONS}, more than the goal of {MAX_SESSIONS_GROWTH} bytes",
            check["last_session"],
            check["growth_bytes"]
        );
    }
    // A run of many short sessions (the 1,000-sessions check, minutes
    // long) is judged by the sessions goal: a per-hour slope over a few
    // minutes says little, and the summary still reports it.
    if check.is_null() && summary["growth_within_goal"] == Value::Bool(false) {
        bail!(
            "{} grew {} bytes/h after the warm-up (95 % interval {}), above the goal of {} KiB/h",
            summary["growth_series"].as_str().unwrap_or("memory"),
            summary["growth_bytes_per_hour"],
            summary["growth_ci95_bytes_per_hour"],
            max_growth_kib
        );
    }
    Ok(())
}

/// One line of `rss.csv`.
struct CsvRow {
    seconds: f64,
    rss: f64,
    session: u64,
    /// 0 where unknown.
    anon: f64,
    /// What the C allocator holds in use and free (0 where unknown).
    heap_in_use: f64,
    heap_free: f64,
}

/// The CSV's columns.
const CSV_HEADER: &str =
    "seconds,rss_bytes,level,session,rss_anon_bytes,heap_in_use_bytes,heap_free_bytes";

/// The lines of `rss.csv` ([`CSV_HEADER`]).
fn parse_csv(text: &str) -> Result<Vec<CsvRow>> {
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, h)| h) != Some(CSV_HEADER) {
        bail!("line 1 is not the header `{CSV_HEADER}`");
    }
    lines
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            let number = |at: usize| -> Result<f64> {
                fields
                    .get(at)
                    .and_then(|f| f.parse().ok())
                    .with_context(|| {
                        format!("line {}: field {} is not a number: {line:?}", i + 1, at + 1)
                    })
            };
            Ok(CsvRow {
                seconds: number(0)?,
                rss: number(1)?,
                session: number(3)? as u64,
                anon: number(4)?,
                heap_in_use: number(5)?,
                heap_free: number(6)?,
            })
        })
        .collect()
}

/// With more than [`BASELINE_SESSIONS`] sessions: the median RSS (and
/// anonymous part) of the samples taken while the next one ran, after the
/// first ones closed, against the same while the last one ran; `null` with
/// fewer.
fn sessions_check(rows: &[CsvRow]) -> Result<Value> {
    let last = rows.iter().map(|r| r.session).max().unwrap_or(0);
    if last <= BASELINE_SESSIONS {
        return Ok(Value::Null);
    }
    let median_in = |session: u64, field: fn(&CsvRow) -> f64| {
        let mut values: Vec<f64> = rows
            .iter()
            .filter(|r| r.session == session)
            .map(field)
            .collect();
        theil_sen::median(&mut values)
    };
    let baseline = BASELINE_SESSIONS + 1;
    let (Some(before), Some(after)) = (median_in(baseline, |r| r.rss), median_in(last, |r| r.rss))
    else {
        bail!(
            "no RSS sample while session {baseline} or {last} ran: poll more often (--poll) or make the sessions longer"
        );
    };
    let anon = median_in(baseline, |r| r.anon).zip(median_in(last, |r| r.anon));
    let growth = after - before;
    Ok(json!({
        "baseline_session": baseline,
        "last_session": last,
        "rss_baseline_bytes": before.round() as i64,
        "rss_last_bytes": after.round() as i64,
        "growth_bytes": growth.round() as i64,
        "anon_baseline_bytes": anon.map(|(b, _)| b.round() as i64),
        "anon_last_bytes": anon.map(|(_, a)| a.round() as i64),
        "anon_growth_bytes": anon.map(|(b, a)| (a - b).round() as i64),
        "goal_bytes": MAX_SESSIONS_GROWTH as i64,
        "within_goal": growth <= MAX_SESSIONS_GROWTH,
    }))
}

/// Seconds in `1h`, `10m`, `90s`, `2h30m` (the forms the soak takes).
fn humantime_secs(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut number = String::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        number.clear();
        number.push_str(&rest[..digits]);
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let scale = match unit {
            "h" | "hour" | "hours" => 3600.0,
            "m" | "min" | "mins" => 60.0,
            "s" | "sec" | "secs" | "" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * scale;
    }
    (total > 0.0).then_some(total)
}

/// The warm-up left out of the growth: 10 min, at most a fifth of the run.
fn default_warmup(span_s: f64) -> f64 {
    (span_s * 0.2).min(WARMUP_MAX_S)
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

/// One series after the warm-up.
struct Growth {
    after_warmup: f64,
    at_end: f64,
    peak: f64,
    /// Theil–Sen slope with its 95 % interval, bytes per hour.
    slope: theil_sen::Estimate,
    points: usize,
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

/// The samples from `from` on, one point per `step` seconds: the median
/// time and the median bytes of each stretch (a spike does not move it).
fn thin(samples: &[(f64, f64)], from: f64, step: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut times = Vec::new();
    let mut values = Vec::new();
    let mut bucket_end = from + step;
    let mut flush = |times: &mut Vec<f64>, values: &mut Vec<f64>| {
        if let (Some(t), Some(v)) = (
            theil_sen::median(times.as_mut_slice()),
            theil_sen::median(values.as_mut_slice()),
        ) {
            out.push((t, v));
        }
        times.clear();
        values.clear();
    };
    for &(t, v) in samples.iter().filter(|(t, _)| *t >= from) {
        while t >= bucket_end {
            flush(&mut times, &mut values);
            bucket_end += step;
        }
        times.push(t);
        values.push(v);
    }
    flush(&mut times, &mut values);
    out
}

fn growth(samples: &[(f64, f64)], warmup: f64, window: f64) -> Option<Growth> {
    let (first, last) = (samples.first()?, samples.last()?);
    let start_at = first.0 + warmup;
    // Medians over short windows, so one noisy sample does not decide.
    let after_warmup = median_between(samples, start_at, start_at + window).unwrap_or(first.1);
    let at_end = median_between(samples, last.0 - window, f64::INFINITY).unwrap_or(last.1);
    let step = ((last.0 - start_at) / MAX_POINTS).max(1.0);
    // Hours and bytes: the slope is bytes per hour.
    let points: Vec<(f64, f64)> = thin(samples, start_at, step)
        .into_iter()
        .map(|(t, v)| ((t - start_at) / 3600.0, v))
        .collect();
    let slope = theil_sen::estimate(&points, Z95)?;
    Some(Growth {
        after_warmup,
        at_end,
        peak: samples.iter().map(|s| s.1).fold(0.0, f64::max),
        slope,
        points: points.len(),
    })
}

/// The figures that matter from the assistant's report. RSS includes code
/// and libraries paged in as new paths run; its anonymous part (heap,
/// stacks) is where a leak would show, so both are summarised and the goal
/// (`max_growth`, bytes per hour) applies to the anonymous part. `warmup`:
/// seconds left out (default: [`default_warmup`] of the run).
pub(crate) fn summarize(report: &Value, warmup: Option<f64>, max_growth: f64) -> Result<Value> {
    let samples = series(report, "rss_samples");
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("the report has no RSS samples");
    };
    let span = (last.0 - first.0).max(0.0);
    let warmup = warmup.unwrap_or_else(|| default_warmup(span));
    let window = (span * 0.02).clamp(3.0, 60.0);
    let rss = growth(&samples, warmup, window)
        .context("fewer than two RSS samples after the warm-up: run longer or shorten --warmup")?;
    let anon = growth(&series(report, "rss_anon_samples"), warmup, window);
    let in_use = growth(&series(report, "heap_in_use_samples"), warmup, window);
    let free = growth(&series(report, "heap_free_samples"), warmup, window);
    let anon_field = |f: fn(&Growth) -> f64| anon.as_ref().map(|g| f(g).round() as i64);
    let goal = anon.as_ref().map_or(("rss", &rss), |a| ("anon", a));
    let rounded = |e: &theil_sen::Estimate| {
        json!({
            "slope": e.slope.round() as i64,
            "ci95": [e.low.round() as i64, e.high.round() as i64],
        })
    };
    let mut summary = json!({
        "duration_s": report["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        "samples": samples.len(),
        "warmup_s": warmup,
        "slope_points": goal.1.points,
        "growth_series": goal.0,
        "growth_bytes_per_hour": goal.1.slope.slope.round() as i64,
        "growth_ci95_bytes_per_hour": [goal.1.slope.low.round() as i64, goal.1.slope.high.round() as i64],
        "growth_goal_bytes_per_hour": max_growth.round() as i64,
        "growth_within_goal": goal.1.slope.slope <= max_growth,
        "rss_after_warmup_bytes": rss.after_warmup as u64,
        "rss_end_bytes": rss.at_end as u64,
        "rss_peak_bytes": rss.peak as u64,
        "rss_growth_bytes_per_hour": rounded(&rss.slope),
        "anon_after_warmup_bytes": anon_field(|g| g.after_warmup),
        "anon_end_bytes": anon_field(|g| g.at_end),
        "anon_growth_bytes_per_hour": anon.as_ref().map(|g| rounded(&g.slope)),
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
        "memory_growth": report["memory_growth"],
        "threads": [report["threads_start"], report["threads_end"]],
        "fds": [report["fds_start"], report["fds_end"]],
        "errors": report["errors"].as_array().map_or(0, Vec::len),
    });
    // The allocator's view, where known (in a second step: one json! of
    // everything is beyond the macro's recursion limit).
    let allocator = json!({
        "heap_in_use_after_warmup_bytes": in_use.as_ref().map(|g| g.after_warmup.round() as i64),
        "heap_in_use_end_bytes": in_use.as_ref().map(|g| g.at_end.round() as i64),
        "heap_in_use_growth_bytes_per_hour": in_use.as_ref().map(|g| rounded(&g.slope)),
        "heap_free_after_warmup_bytes": free.as_ref().map(|g| g.after_warmup.round() as i64),
        "heap_free_end_bytes": free.as_ref().map(|g| g.at_end.round() as i64),
        "heap_free_growth_bytes_per_hour": free.as_ref().map(|g| rounded(&g.slope)),
    });
    if let (Value::Object(summary), Value::Object(allocator)) = (&mut summary, allocator) {
        summary.extend(allocator);
    }
    Ok(summary)
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
    let kib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1024.0;
    let slope = |g: &Value| {
        format!(
            "{:+.1} KiB/h (95 % {:+.1} .. {:+.1})",
            kib(&g["slope"]),
            kib(&g["ci95"][0]),
            kib(&g["ci95"][1])
        )
    };
    println!(
        "  RSS growth after warm-up (Theil–Sen over {} points): {}",
        s["slope_points"],
        slope(&s["rss_growth_bytes_per_hour"])
    );
    if !s["anon_end_bytes"].is_null() {
        println!(
            "  anonymous part (heap, stacks): {:.2} MiB after warm-up, {:.2} MiB at end, growth {}",
            mib(&s["anon_after_warmup_bytes"]),
            mib(&s["anon_end_bytes"]),
            slope(&s["anon_growth_bytes_per_hour"])
        );
    }
    if !s["heap_in_use_end_bytes"].is_null() {
        println!(
            "  allocator: in use (the heap) {:.2} -> {:.2} MiB, growth {}; free but kept {:.2} -> {:.2} MiB, growth {}",
            mib(&s["heap_in_use_after_warmup_bytes"]),
            mib(&s["heap_in_use_end_bytes"]),
            slope(&s["heap_in_use_growth_bytes_per_hour"]),
            mib(&s["heap_free_after_warmup_bytes"]),
            mib(&s["heap_free_end_bytes"]),
            slope(&s["heap_free_growth_bytes_per_hour"])
        );
    }
    println!(
        "  goal: {} growth at most {:.0} KiB/h: {}",
        s["growth_series"].as_str().unwrap_or("?"),
        kib(&s["growth_goal_bytes_per_hour"]),
        if s["growth_within_goal"] == Value::Bool(true) {
            "met"
        } else {
            "EXCEEDED"
        }
    );
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
    let check = &s["sessions_check"];
    if !check.is_null() {
        println!(
            "  sessions: RSS {:.2} MiB while session {} ran, {:.2} MiB while session {} ran: {:+.0} KiB (anonymous {:+.0} KiB); goal at most {:.0} KiB: {}",
            mib(&check["rss_baseline_bytes"]),
            check["baseline_session"],
            mib(&check["rss_last_bytes"]),
            check["last_session"],
            kib(&check["growth_bytes"]),
            kib(&check["anon_growth_bytes"]),
            kib(&check["goal_bytes"]),
            if check["within_goal"] == Value::Bool(true) {
                "met"
            } else {
                "EXCEEDED"
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// `(t, bytes)` every second for `secs`, from `f`.
    fn samples(secs: u32, f: impl Fn(f64) -> f64) -> Vec<Value> {
        (0..=secs)
            .map(|t| json!([t, f(f64::from(t)) as u64]))
            .collect()
    }

    #[test]
    fn growth_is_a_robust_slope_after_the_warmup() {
        // 1 h: 10 MiB during a 10 min warm-up, then 20 MiB growing 1 MiB/h,
        // with a spike of +30 MiB every 50 s and a drop to 15 MiB at the very
        // end that first-minus-last would take for shrinking.
        let rss = samples(3600, |t| {
            if t < 600.0 {
                10.0 * MIB
            } else if t > 3590.0 {
                15.0 * MIB
            } else if (t as u32).is_multiple_of(50) {
                50.0 * MIB
            } else {
                20.0 * MIB + (t - 600.0) / 3600.0 * MIB
            }
        });
        // The anonymous part: 512 KiB/h plus a saw of +-64 KiB.
        let anon = samples(3600, |t| {
            let saw = if (t as u32) % 7 < 3 { 64.0 } else { -64.0 } * 1024.0;
            4.0 * MIB + t / 3600.0 * 0.5 * MIB + saw
        });
        // The allocator: the heap in use flat, its free part growing 300 KiB/h.
        let in_use = samples(3600, |_| 3.0 * MIB);
        let free = samples(3600, |t| MIB + t / 3600.0 * 300.0 * 1024.0);
        let report = json!({"rss_samples": rss, "rss_anon_samples": anon, "duration_ms": 3_600_000, "turns": 5,
            "heap_in_use_samples": in_use, "heap_free_samples": free});
        let s = summarize(&report, None, 256.0 * 1024.0).expect("summary");
        assert_eq!(s["warmup_s"], 600.0);
        let rss_slope = s["rss_growth_bytes_per_hour"]["slope"]
            .as_f64()
            .expect("slope")
            / MIB;
        assert!((0.95..1.05).contains(&rss_slope), "{rss_slope}");
        let ci = &s["rss_growth_bytes_per_hour"]["ci95"];
        let (low, high) = (
            ci[0].as_f64().expect("low") / MIB,
            ci[1].as_f64().expect("high") / MIB,
        );
        assert!(
            low <= 1.0 && 1.0 <= high && high - low < 0.2,
            "{low} .. {high}"
        );
        assert_eq!(s["growth_series"], "anon");
        let anon_slope = s["growth_bytes_per_hour"].as_f64().expect("slope") / MIB;
        assert!((0.45..0.55).contains(&anon_slope), "{anon_slope}");
        assert_eq!(s["growth_within_goal"], false);
        assert_eq!(s["growth_goal_bytes_per_hour"], 262_144);
        assert_eq!(s["heap_in_use_growth_bytes_per_hour"]["slope"], 0);
        let free_slope = s["heap_free_growth_bytes_per_hour"]["slope"]
            .as_f64()
            .expect("slope")
            / 1024.0;
        assert!((299.0..301.0).contains(&free_slope), "{free_slope}");
        assert_eq!(s["turns"], 5);
        // A goal above it is met.
        let s = summarize(&report, None, 1024.0 * 1024.0).expect("summary");
        assert_eq!(s["growth_within_goal"], true);
    }

    #[test]
    fn a_flat_series_is_within_the_goal_and_its_interval_holds_zero() {
        let anon = samples(1800, |t| {
            8.0 * MIB
                + if (t as u32).is_multiple_of(2) {
                    4096.0
                } else {
                    0.0
                }
        });
        let rss = samples(1800, |_| 16.0 * MIB);
        let report = json!({"rss_samples": rss, "rss_anon_samples": anon});
        let s = summarize(&report, Some(60.0), 256.0 * 1024.0).expect("summary");
        assert_eq!(s["warmup_s"], 60.0);
        assert_eq!(s["growth_within_goal"], true);
        let ci = &s["growth_ci95_bytes_per_hour"];
        assert!(
            ci[0].as_f64() <= Some(0.0) && Some(0.0) <= ci[1].as_f64(),
            "{ci}"
        );
        assert!(s["slope_points"].as_u64() <= Some(MAX_POINTS as u64));
    }

    #[test]
    fn a_report_without_samples_is_an_error() {
        assert!(summarize(&json!({"rss_samples": []}), None, 0.0).is_err());
        assert!(summarize(&json!({}), None, 0.0).is_err());
        // Everything inside the warm-up: nothing to estimate.
        let rss = samples(10, |_| MIB);
        assert!(summarize(&json!({"rss_samples": rss}), Some(60.0), 0.0).is_err());
    }

    #[test]
    fn the_sessions_check_compares_the_11th_session_with_the_last() {
        let mut text = format!("{CSV_HEADER}\n");
        // Sessions 1..=30, two samples each; RSS steps up 100 KiB a session.
        for i in 0..60_u32 {
            let session = i / 2 + 1;
            let rss = 10 * 1024 * 1024 + session * 100 * 1024 + i % 2;
            text += &format!("{}.000,{rss},none,{session},{},0,0\n", i, rss / 2);
        }
        let rows = parse_csv(&text).expect("csv");
        assert_eq!(rows.len(), 60);
        let check = sessions_check(&rows).expect("check");
        assert_eq!(check["baseline_session"], 11);
        assert_eq!(check["last_session"], 30);
        // 19 sessions of 100 KiB: above 1 MiB.
        assert_eq!(check["growth_bytes"], 19 * 100 * 1024);
        assert_eq!(check["within_goal"], false);
        assert_eq!(check["anon_growth_bytes"], 19 * 50 * 1024);
        // Ten sessions or fewer: no check.
        assert_eq!(sessions_check(&rows[..20]).expect("check"), Value::Null);
        // A bad line is named.
        let err = parse_csv(&format!("{CSV_HEADER}\n1,2,none,x,4,5,6\n"))
            .err()
            .expect("refused");
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert!(parse_csv("t,rss\n").is_err());
    }

    #[test]
    fn durations_and_thinning() {
        assert_eq!(humantime_secs("1h"), Some(3600.0));
        assert_eq!(humantime_secs("2m30s"), Some(150.0));
        assert_eq!(humantime_secs("90"), Some(90.0));
        assert_eq!(humantime_secs("1 fortnight"), None);
        assert_eq!(humantime_secs(""), None);
        let points: Vec<(f64, f64)> = (0..10).map(|t| (f64::from(t), f64::from(t * t))).collect();
        // Stretches of 4 s from t = 2: [2, 6), [6, 10).
        assert_eq!(thin(&points, 2.0, 4.0), vec![(3.5, 12.5), (7.5, 56.5)]);
    }
}
