//! `cargo xtask bench`: runs the criterion benches and writes
//! `target/bench/summary.json`.
//!
//! Convention for bench authors: inside one criterion group, a function whose
//! id starts with `steward` is ours and every other function is a baseline
//! measured in the same run (`raw_deadpool`, `bb8`, `mutex_hashmap`, ...).
//! Set `Throughput::Elements(n)` on the group when one iteration does `n`
//! operations. Each (ours, baseline) pair becomes one summary entry
//! `{"name", "ours_per_s", "baseline", "baseline_per_s", "ratio"}` where
//! `ratio = ours_per_s / baseline_per_s` (above 1 means we are faster).
//! Figures that are not timings (bytes per resource, say) are written by the
//! bench itself as a JSON array of entries to `target/bench/extra/*.json`;
//! they are merged into the summary by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::root;

/// `cargo xtask bench cpu`: a whole assistant session's CPU (see `cpu.rs`).
const CPU: &str = "cpu";

/// The bench names `cargo xtask bench NAME` accepts, and their bench
/// targets in the `steward-bench` package (`benches/`).
const BENCHES: &[(&str, &[&str])] = &[
    ("store", &["store", "redis"]),
    ("pool", &["pool"]),
    ("tracker", &["tracker", "memory"]),
    ("monitor", &["monitor"]),
    ("ws", &["ws"]),
    ("audio", &["audio"]),
    ("realtime", &["realtime"]),
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            n if n == CPU || BENCHES.iter().any(|(b, _)| *b == n) => names.push(n.to_string()),
            other => bail!(
                "unknown bench `{other}`; known: {}",
                BENCHES
                    .iter()
                    .map(|(b, _)| *b)
                    .chain([CPU])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    if names.is_empty() {
        names = BENCHES.iter().map(|(b, _)| b.to_string()).collect();
        names.push(CPU.to_string());
    }
    let target = target_dir();
    for name in &names {
        if name == CPU {
            crate::cpu::run(&target, quick)?;
            continue;
        }
        let targets = BENCHES
            .iter()
            .find(|(b, _)| b == name)
            .map(|(_, t)| *t)
            .context("bench name checked above")?;
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["bench", "-p", "steward-bench"]);
        for t in targets {
            cmd.args(["--bench", t]);
        }
        cmd.arg("--");
        if quick {
            cmd.arg("--quick");
        }
        // Benches write their extra figures here.
        cmd.env("STEWARD_BENCH_DIR", target.join("bench"));
        crate::run(&mut cmd)?;
    }
    let summary = summarize(&target)?;
    let out = target.join("bench/summary.json");
    std::fs::create_dir_all(target.join("bench"))?;
    std::fs::write(&out, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    print_table(&summary);
    eprintln!("xtask bench: wrote {}", out.display());
    Ok(())
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// One measured function of a criterion group.
struct Measure {
    function: String,
    per_s: f64,
    ns_per_iter: f64,
}

/// Reads every `target/criterion/**/new/benchmark.json` and pairs ours with
/// the baselines of the same group.
pub(crate) fn summarize(target: &Path) -> Result<Value> {
    let mut groups: BTreeMap<String, Vec<Measure>> = BTreeMap::new();
    let mut files = Vec::new();
    find_files(&target.join("criterion"), "benchmark.json", &mut files);
    for file in files {
        let Some(dir) = file.parent() else { continue };
        if dir.file_name().is_none_or(|n| n != "new") {
            continue;
        }
        let (Ok(bench), Ok(est)) = (read_json(&file), read_json(&dir.join("estimates.json")))
        else {
            continue;
        };
        let Some(ns) = est["mean"]["point_estimate"]
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
        let per_s = elements / (ns * 1e-9);
        groups.entry(group).or_default().push(Measure {
            function,
            per_s,
            ns_per_iter: ns,
        });
    }
    let mut entries: BTreeMap<String, Value> = BTreeMap::new();
    for (group, measures) in &groups {
        let (ours, baselines): (Vec<&Measure>, Vec<&Measure>) = measures
            .iter()
            .partition(|m| m.function.starts_with("steward"));
        for o in &ours {
            let base_name = if ours.len() == 1 {
                group.clone()
            } else {
                format!("{group}/{}", o.function)
            };
            if baselines.is_empty() {
                entries.insert(
                    base_name.clone(),
                    json!({"name": base_name, "ours_per_s": round(o.per_s),
                           "ours_ns_per_iter": round(o.ns_per_iter),
                           "baseline": null, "baseline_per_s": null, "ratio": null}),
                );
            }
            for b in &baselines {
                let name = if baselines.len() == 1 {
                    base_name.clone()
                } else {
                    format!("{base_name} vs {}", b.function)
                };
                entries.insert(
                    name.clone(),
                    json!({"name": name, "ours_per_s": round(o.per_s),
                           "ours_ns_per_iter": round(o.ns_per_iter),
                           "baseline": b.function, "baseline_per_s": round(b.per_s),
                           "ratio": (o.per_s / b.per_s * 1000.0).round() / 1000.0}),
                );
            }
        }
    }
    let mut extra = Vec::new();
    find_files(&target.join("bench/extra"), ".json", &mut extra);
    for file in extra {
        let Ok(Value::Array(items)) = read_json(&file) else {
            eprintln!(
                "xtask bench: {} is not a JSON array, ignored",
                file.display()
            );
            continue;
        };
        for item in items {
            if let Some(name) = item["name"].as_str() {
                entries.insert(name.to_string(), item);
            }
        }
    }
    Ok(Value::Array(entries.into_values().collect()))
}

fn round(x: f64) -> f64 {
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

fn print_table(summary: &Value) {
    let Some(items) = summary.as_array() else {
        return;
    };
    for item in items {
        let ratio = item["ratio"]
            .as_f64()
            .map(|r| format!("{r:.2}x"))
            .unwrap_or_default();
        println!(
            "{:<60} {:>14} /s  vs {:<16} {:>14} /s  {}",
            item["name"].as_str().unwrap_or_default(),
            item["ours_per_s"],
            item["baseline"].as_str().unwrap_or("-"),
            item["baseline_per_s"],
            ratio
        );
    }
}

#[cfg(test)]
mod tests {
    use super::BENCHES;

    /// A bench target that no `cargo xtask bench NAME` runs would never
    /// reach the summary; a name without a target would fail to run.
    #[test]
    fn every_bench_target_is_run_by_a_name() {
        let meta = crate::metadata(&["--no-deps"]).expect("cargo metadata");
        let package = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == "steward-bench")
            .expect("the steward-bench package is a workspace member");
        let mut targets: Vec<&str> = package["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.contains(&"bench".into()))
            })
            .filter_map(|t| t["name"].as_str())
            .collect();
        let mut named: Vec<&str> = BENCHES
            .iter()
            .flat_map(|(_, t)| t.iter().copied())
            .collect();
        targets.sort_unstable();
        named.sort_unstable();
        assert_eq!(targets, named, "benches/Cargo.toml against xtask's BENCHES");
    }
}
