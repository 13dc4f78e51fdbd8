//! `target/bench/summary.json`: what one `cargo xtask bench` run measured,
//! with the commit, time and mode it ran at.
//!
//! Criterion entries use the median of criterion's estimates (its
//! `estimates.json`, `median.point_estimate`) for ours and for the baseline
//! alike, so every ratio compares medians of the same run. Figures a bench
//! writes itself (`target/bench/extra/*.json`) name their own statistic in
//! a `statistic` field (`"unstated"` when they do not). Anything older than
//! the run's start (a criterion folder or an extra file left by an earlier
//! run, of a bench this run did not measure) is dropped, not merged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// The statistic of criterion's estimates the summary uses.
const STATISTIC: &str = "median";

/// What identifies one run of the benches.
pub(crate) struct RunInfo {
    /// `git rev-parse HEAD`, or `"unknown"` outside a git checkout.
    pub(crate) commit: String,
    /// Whether tracked files differed from that commit.
    pub(crate) dirty: bool,
    /// When the run started; results written before it are stale.
    pub(crate) started: SystemTime,
    /// Criterion's `--quick` mode.
    pub(crate) quick: bool,
}

impl RunInfo {
    /// The run starting now in the checkout at `root`.
    pub(crate) fn now(root: &Path, quick: bool) -> Self {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        Self {
            commit: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
            started: SystemTime::now(),
            quick,
        }
    }
}

/// One measured function of a criterion group.
struct Measure {
    function: String,
    per_s: f64,
    ns_per_iter: f64,
}

/// Reads this run's criterion results and extra figures under `target`
/// into the summary object.
pub(crate) fn summarize(target: &Path, run: &RunInfo) -> Result<Value> {
    let mut stale = 0usize;
    let groups = criterion_groups(&target.join("criterion"), run.started, &mut stale);
    let mut entries = pair(&groups);
    let mut extra = Vec::new();
    find_files(&target.join("bench/extra"), ".json", &mut extra);
    for file in extra {
        if !fresh(&file, run.started) {
            stale += 1;
            continue;
        }
        let Ok(Value::Array(items)) = read_json(&file) else {
            eprintln!(
                "xtask bench: {} is not a JSON array, ignored",
                file.display()
            );
            continue;
        };
        for mut item in items {
            let Some(name) = item["name"].as_str().map(str::to_string) else {
                continue;
            };
            if let Some(fields) = item.as_object_mut() {
                fields
                    .entry("statistic")
                    .or_insert_with(|| Value::from("unstated"));
            }
            entries.insert(name, item);
        }
    }
    if stale > 0 {
        eprintln!("xtask bench: left out {stale} results older than this run");
    }
    Ok(json!({
        "commit": run.commit,
        "dirty": run.dirty,
        "time_utc": utc(run.started),
        "mode": if run.quick { "quick" } else { "full" },
        "statistic": STATISTIC,
        "stale_results_dropped": stale,
        "entries": entries.into_values().collect::<Vec<_>>(),
    }))
}

/// This run's `criterion/**/new/benchmark.json`, with the median of each
/// function's estimates, by group; counts the stale ones in `stale`.
fn criterion_groups(
    dir: &Path,
    started: SystemTime,
    stale: &mut usize,
) -> BTreeMap<String, Vec<Measure>> {
    let mut groups: BTreeMap<String, Vec<Measure>> = BTreeMap::new();
    let mut files = Vec::new();
    find_files(dir, "benchmark.json", &mut files);
    for file in files {
        let Some(dir) = file.parent() else { continue };
        if dir.file_name().is_none_or(|n| n != "new") {
            continue;
        }
        let estimates = dir.join("estimates.json");
        if !fresh(&estimates, started) {
            *stale += 1;
            continue;
        }
        let (Ok(bench), Ok(est)) = (read_json(&file), read_json(&estimates)) else {
            continue;
        };
        let Some(ns) = est[STATISTIC]["point_estimate"]
            .as_f64()
            .filter(|ns| *ns > 0.0)
        else {
            continue;
        };
        let elements = bench["throughput"]["Elements"].as_f64().unwrap_or(1.0);
        let group = bench["group_id"].as_str().unwrap_or_default().to_string();
        let function = bench["function_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        groups.entry(group).or_default().push(Measure {
            function,
            per_s: elements / (ns * 1e-9),
            ns_per_iter: ns,
        });
    }
    groups
}

/// Pairs ours (function ids starting with `steward`) with every baseline of
/// the same group; ours alone when a group has no baseline.
fn pair(groups: &BTreeMap<String, Vec<Measure>>) -> BTreeMap<String, Value> {
    let mut entries = BTreeMap::new();
    for (group, measures) in groups {
        let (ours, baselines): (Vec<&Measure>, Vec<&Measure>) = measures
            .iter()
            .partition(|m| m.function.starts_with("steward"));
        for o in &ours {
            let base_name = if ours.len() == 1 {
                group.clone()
            } else {
                format!("{group}/{}", o.function)
            };
            let entry = |name: &str, b: Option<&Measure>| {
                json!({"name": name, "statistic": STATISTIC,
                       "ours_per_s": round(o.per_s),
                       "ours_ns_per_iter": round(o.ns_per_iter),
                       "baseline": b.map(|b| &b.function),
                       "baseline_per_s": b.map(|b| round(b.per_s)),
                       "baseline_ns_per_iter": b.map(|b| round(b.ns_per_iter)),
                       "ratio": b.map(|b| (o.per_s / b.per_s * 1000.0).round() / 1000.0)})
            };
            if baselines.is_empty() {
                entries.insert(base_name.clone(), entry(&base_name, None));
            }
            for b in &baselines {
                let name = if baselines.len() == 1 {
                    base_name.clone()
                } else {
                    format!("{base_name} vs {}", b.function)
                };
                entries.insert(name.clone(), entry(&name, Some(b)));
            }
        }
    }
    entries
}

/// Whether `file` was written at or after `started` (a missing file or
/// time is not fresh).
fn fresh(file: &Path, started: SystemTime) -> bool {
    std::fs::metadata(file)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= started)
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

pub(crate) fn round(x: f64) -> f64 {
    if x >= 100.0 {
        x.round()
    } else {
        (x * 1000.0).round() / 1000.0
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn find_files(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_files(&path, suffix, out);
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests;
