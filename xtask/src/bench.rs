//! `cargo xtask bench`: runs the criterion benches and writes
//! `target/bench/summary.json`.
//!
//! Convention for bench authors: inside one criterion group, a function whose
//! id starts with `steward` is ours and every other function is a baseline
//! measured in the same run (`raw_deadpool`, `bb8`, `mutex_hashmap`, ...).
//! Set `Throughput::Elements(n)` on the group when one iteration does `n`
//! operations. Each (ours, baseline) pair becomes one summary entry
//! `{"name", "statistic", "ours_per_s", "baseline", "baseline_per_s",
//! "ratio"}` where `ratio = ours_per_s / baseline_per_s` (above 1 means we
//! are faster), both from the median of criterion's estimates of this run.
//! Figures that are not criterion timings (bytes per resource, interleaved
//! rounds, say) are written by the bench itself as a JSON array of entries
//! to `target/bench/extra/*.json`, each naming its `statistic`; they are
//! merged into the summary by name. The summary records the commit, UTC
//! time and mode (`quick` or `full`) and leaves out results older than the
//! run (see `bench/summary.rs`).

pub(crate) mod summary;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

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
    // Results written before this moment are an earlier run's: left out.
    let info = summary::RunInfo::now(&root(), quick);
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
    let summary = summary::summarize(&target, &info)?;
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

fn print_table(summary: &Value) {
    let Some(items) = summary["entries"].as_array() else {
        return;
    };
    println!(
        "commit {} ({}) at {}, {} mode, {} of criterion's estimates",
        summary["commit"].as_str().unwrap_or("?"),
        if summary["dirty"] == true {
            "with local changes"
        } else {
            "clean"
        },
        summary["time_utc"].as_str().unwrap_or("?"),
        summary["mode"].as_str().unwrap_or("?"),
        summary["statistic"].as_str().unwrap_or("?"),
    );
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
