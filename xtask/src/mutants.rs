//! `cargo xtask mutants`: cargo-mutants over the parts whose logic a wrong
//! test would let slip (the pool, the tracker, the store's core, the
//! realtime state machine), with the share of viable mutants the tests
//! catch per part, and the goal of 85 % each.
//!
//! A mutant that times out counts as caught (the tests noticed: they hung);
//! an unviable one (does not build) counts as neither. Mutants that cannot
//! change behaviour (a performance shortcut, a hash's bit mixing) are left
//! out in `.cargo/mutants.toml`, each with its reason, so that a missed
//! mutant always means a missing test.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::summary::RunInfo;
use crate::{cargo, root, run};

const HELP: &str = "\
cargo xtask mutants [PART...] [--list] [--jobs N] [--shard K/N] [--resume]

  PART     pool, tracker, store, realtime (default: all four)
  --list   list the mutants only, run nothing
  --jobs N mutants built and tested at once (default 1); many mutants
           hang until their timeout, so 2 is about twice as fast on
           2 cores
  --shard K/N  every N-th mutant only (round-robin from the K-th, 0-based):
           a sample whose score estimates the part's, for parts too large
           to run whole in one sitting; the summary says which shard
  --resume test only what the part's earlier runs left (missed, timed
           out or not reached yet) and score all of them together: a
           part too large for one sitting is run whole over several.
           Refused when the checkout is not the commit (clean) the
           earlier runs tested

Writes target/mutants/<part>/ (cargo-mutants' own output) and
target/mutants/summary.json; fails when a part catches under 85 %.
";

/// The version installed when cargo-mutants is missing: pinned, so that the
/// mutants (and the score) do not change under us.
const CARGO_MUTANTS: &str = "27.1.0";

/// The test runner, pinned alike. cargo-mutants runs the tests with nextest
/// stopped at the first failure: a caught mutant then costs the tests up to
/// its first failing one, not the whole suite (the store's takes 25 s, most
/// of it one power-cut test), which makes the store's 830 mutants a run of
/// hours instead of most of a day. nextest runs no doctests; they are
/// examples, not where the parts' logic is checked.
const CARGO_NEXTEST: &str = "0.9.143";

/// Least share of viable mutants each part's tests must catch.
const GOAL: f64 = 0.85;

/// One part: a package and, where only its core is meant, the files.
struct Part {
    name: &'static str,
    package: &'static str,
    files: &'static [&'static str],
}

const PARTS: &[Part] = &[
    Part {
        name: "pool",
        package: "steward-pool",
        files: &[],
    },
    Part {
        name: "tracker",
        package: "steward-tracker",
        files: &[],
    },
    Part {
        name: "store",
        package: "steward-store",
        files: &[
            "crates/steward-store/src/store.rs",
            "crates/steward-store/src/store/**",
            "crates/steward-store/src/log.rs",
            "crates/steward-store/src/expiry.rs",
            "crates/steward-store/src/json.rs",
        ],
    },
    Part {
        name: "realtime",
        package: "steward-realtime",
        files: &[
            "crates/steward-realtime/src/conversation.rs",
            "crates/steward-realtime/src/conversation/**",
            "crates/steward-realtime/src/history.rs",
        ],
    },
];

pub(crate) fn run_mutants(args: &[String]) -> Result<()> {
    let mut list = false;
    let mut jobs = "1".to_string();
    let mut shard: Option<String> = None;
    let mut resume = false;
    let mut chosen: Vec<&Part> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => list = true,
            "--resume" => resume = true,
            "--jobs" => {
                jobs = args
                    .next()
                    .filter(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
                    .with_context(|| format!("--jobs needs a count\n\n{HELP}"))?
                    .clone();
            }
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            "--shard" => {
                shard = Some(
                    args.next()
                        .filter(|s| valid_shard(s))
                        .with_context(|| format!("--shard needs K/N with K < N\n\n{HELP}"))?
                        .clone(),
                );
            }
            name => chosen.push(
                PARTS
                    .iter()
                    .find(|p| p.name == name)
                    .with_context(|| format!("unknown part `{name}`\n\n{HELP}"))?,
            ),
        }
    }
    if chosen.is_empty() {
        chosen = PARTS.iter().collect();
    }
    ensure_tools()?;
    let out = crate::bench::target_dir().join("mutants");
    let mut rows = Vec::new();
    for part in chosen {
        let mut cmd = cargo();
        // Each job builds in its own copy of the tree: a target directory
        // shared through the environment would let one job's build replace
        // the binary another job is about to test, and a mutant be judged by
        // another's tests (which is how a run of two jobs once went wrong).
        cmd.env_remove("CARGO_TARGET_DIR");
        cmd.args(["mutants", "--package", part.package]);
        cmd.args([
            "--test-tool",
            "nextest",
            "--cargo-test-arg=--max-fail=1:immediate",
        ]);
        // .config/nextest.toml: the tests that take seconds go last.
        cmd.env("NEXTEST_PROFILE", "mutants");
        for file in part.files {
            cmd.args(["--file", file]);
        }
        if let Some(shard) = &shard {
            cmd.args(["--shard", shard, "--sharding", "round-robin"]);
        }
        if list {
            run(cmd.arg("--list"))?;
            continue;
        }
        let dir = out.join(part.name);
        // cargo-mutants creates its output folder but not the parents.
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        if resume {
            keep_earlier_run(&dir)?;
            // cargo-mutants leaves out what its last output caught or
            // found unviable.
            cmd.arg("--iterate");
        } else {
            start_afresh(&dir)?;
        }
        // cargo-mutants exits non-zero when a mutant is missed: the score
        // below decides, so its status is only reported.
        let shown = crate::shell_line(&cmd);
        let status = cmd
            .args(["--jobs", &jobs, "--timeout-multiplier", "3", "--output"])
            .arg(&dir)
            .current_dir(root())
            .status()
            .with_context(|| format!("cannot start {shown}"))?;
        eprintln!("xtask mutants: {} finished with {status}", part.name);
        let mut row = score(part.name, &dir)?;
        row["shard"] = json!(shard.as_deref().unwrap_or("all"));
        row["commit"] = json!(tested_commit(&dir)?);
        rows.push(row);
    }
    if list {
        return Ok(());
    }
    let summary = json!({ "goal": GOAL, "parts": rows });
    std::fs::create_dir_all(&out)?;
    let path = out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    print_rows(&rows);
    let below: Vec<&str> = rows
        .iter()
        .filter(|r| r["score"].as_f64().unwrap_or(0.0) < GOAL)
        .filter_map(|r| r["part"].as_str())
        .collect();
    if !below.is_empty() {
        bail!("under the {:.0} % goal: {}", GOAL * 100.0, below.join(", "));
    }
    Ok(())
}

/// `K/N` with `K < N`, both integers (cargo-mutants' shards count from 0).
fn valid_shard(text: &str) -> bool {
    let Some((k, n)) = text.split_once('/') else {
        return false;
    };
    matches!((k.parse::<u32>(), n.parse::<u32>()), (Ok(k), Ok(n)) if k < n)
}

fn ensure_tools() -> Result<()> {
    for (tool, version) in [("mutants", CARGO_MUTANTS), ("nextest", CARGO_NEXTEST)] {
        if !crate::has_cargo_tool(tool) {
            let package = format!("cargo-{tool}");
            run(cargo().args(["install", "--locked", &package, "--version", version]))?;
        }
    }
    Ok(())
}

/// The commit a part's runs test, written by the first of them.
const COMMIT_FILE: &str = "commit";
/// Earlier runs' `outcomes.json`, numbered in order, for `--resume`.
const RUNS_DIR: &str = "runs";

/// `HEAD`, or `None` when tracked files differ from it (no commit names
/// what was tested).
fn clean_head() -> Option<String> {
    let run = RunInfo::now(&root(), false);
    (!run.dirty && run.commit != "unknown").then_some(run.commit)
}

fn tested_commit(dir: &Path) -> Result<String> {
    let path = dir.join(COMMIT_FILE);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// A new run: earlier runs' outcomes go, the commit tested is recorded.
fn start_afresh(dir: &Path) -> Result<()> {
    let runs = dir.join(RUNS_DIR);
    if runs.exists() {
        std::fs::remove_dir_all(&runs)
            .with_context(|| format!("cannot remove {}", runs.display()))?;
    }
    let commit = clean_head().unwrap_or_else(|| "uncommitted changes".into());
    std::fs::write(dir.join(COMMIT_FILE), commit)?;
    Ok(())
}

/// Keeps the last run's outcomes beside the earlier ones (cargo-mutants
/// replaces its output), once the checkout is the commit they tested.
fn keep_earlier_run(dir: &Path) -> Result<()> {
    let head = clean_head().context("--resume needs a clean checkout: commit first")?;
    let tested = tested_commit(dir).context("--resume needs an earlier run")?;
    if tested != head {
        bail!("the earlier runs tested {tested}, the checkout is {head}: run without --resume");
    }
    let last = dir.join("mutants.out/outcomes.json");
    if !last.exists() {
        return Ok(());
    }
    let runs = dir.join(RUNS_DIR);
    std::fs::create_dir_all(&runs)?;
    let n = std::fs::read_dir(&runs)?.count();
    let kept = runs.join(format!("{n:03}.json"));
    std::fs::copy(&last, &kept).with_context(|| format!("cannot keep {}", kept.display()))?;
    Ok(())
}

/// One part's counts over its runs (earlier ones first, then the last),
/// its score and the mutants the tests missed.
fn score(part: &str, dir: &Path) -> Result<Value> {
    let runs = dir.join(RUNS_DIR);
    let mut files: Vec<_> = match std::fs::read_dir(&runs) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?,
        // No earlier run kept: the last one alone.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", runs.display())),
    };
    files.sort();
    files.push(dir.join("mutants.out/outcomes.json"));
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        docs.push(doc);
    }
    Ok(tally(part, &docs))
}

/// Each mutant's last outcome over `docs` (cargo-mutants' `outcomes.json`,
/// oldest first), counted.
fn tally(part: &str, docs: &[Value]) -> Value {
    let mut last: std::collections::BTreeMap<String, &str> = std::collections::BTreeMap::new();
    for doc in docs {
        for outcome in doc["outcomes"].as_array().into_iter().flatten() {
            if outcome["scenario"]["Mutant"].is_object() {
                last.insert(
                    mutant_name(&outcome["scenario"]),
                    outcome["summary"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    let (mut caught, mut missed, mut timeout, mut unviable) = (0u64, 0u64, 0u64, 0u64);
    let mut missed_names = Vec::new();
    for (name, summary) in last {
        match summary {
            "CaughtMutant" => caught += 1,
            "Timeout" => timeout += 1,
            "Unviable" => unviable += 1,
            "MissedMutant" => {
                missed += 1;
                missed_names.push(name);
            }
            _ => {}
        }
    }
    let viable = caught + missed + timeout;
    // No viable mutant: nothing to catch, and nothing was missed.
    let score = if viable == 0 {
        1.0
    } else {
        (caught + timeout) as f64 / viable as f64
    };
    json!({
        "part": part,
        "caught": caught,
        "timeout": timeout,
        "missed": missed,
        "unviable": unviable,
        "score": (score * 1000.0).round() / 1000.0,
        "missed_mutants": missed_names,
    })
}

/// `file:line:col: description` of one mutant, as cargo-mutants prints it.
fn mutant_name(scenario: &Value) -> String {
    let m = &scenario["Mutant"];
    m["name"]
        .as_str()
        .map_or_else(|| m.to_string(), str::to_string)
}

fn print_rows(rows: &[Value]) {
    eprintln!("part        caught  timeout  missed  unviable  score   shard");
    for r in rows {
        eprintln!(
            "{:<10} {:>7} {:>8} {:>7} {:>9}  {:.1} %  {}",
            r["part"].as_str().unwrap_or(""),
            r["caught"],
            r["timeout"],
            r["missed"],
            r["unviable"],
            r["score"].as_f64().unwrap_or(0.0) * 100.0,
            r["shard"].as_str().unwrap_or("all")
        );
        for m in r["missed_mutants"].as_array().into_iter().flatten() {
            eprintln!("    missed: {}", m.as_str().unwrap_or(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome of the mutant on `line`.
    fn outcome(summary: &str, line: u32) -> Value {
        json!({
            "summary": summary,
            "scenario": {"Mutant": {"name": format!("src/a.rs:{line}:9: replace > with >= in f")}},
        })
    }

    #[test]
    fn timeouts_count_as_caught_and_unviable_as_neither() {
        let doc = json!({"outcomes": [
            {"summary": "Success", "scenario": "Baseline"},
            outcome("CaughtMutant", 1), outcome("CaughtMutant", 2), outcome("Timeout", 3),
            outcome("MissedMutant", 7), outcome("Unviable", 5),
        ]});
        let row = tally("x", &[doc]);
        assert_eq!(row["caught"], 2);
        assert_eq!(row["timeout"], 1);
        assert_eq!(row["missed"], 1);
        assert_eq!(row["unviable"], 1);
        assert_eq!(row["score"], 0.75);
        assert_eq!(
            row["missed_mutants"][0],
            "src/a.rs:7:9: replace > with >= in f"
        );
    }

    /// Runs resumed: each mutant counts once, by its last outcome (a missed
    /// one the next run's tests catch is caught; one only an earlier run
    /// reached keeps that run's outcome).
    #[test]
    fn resumed_runs_count_each_mutant_by_its_last_outcome() {
        let first = json!({"outcomes": [
            {"summary": "Success", "scenario": "Baseline"},
            outcome("CaughtMutant", 1), outcome("MissedMutant", 2), outcome("Timeout", 3),
        ]});
        let second = json!({"outcomes": [
            {"summary": "Success", "scenario": "Baseline"},
            outcome("CaughtMutant", 2), outcome("MissedMutant", 3), outcome("Unviable", 4),
        ]});
        let row = tally("x", &[first, second]);
        assert_eq!(
            (
                row["caught"].clone(),
                row["timeout"].clone(),
                row["missed"].clone()
            ),
            (json!(2), json!(0), json!(1))
        );
        assert_eq!(row["unviable"], 1);
        assert_eq!(
            row["missed_mutants"][0],
            "src/a.rs:3:9: replace > with >= in f"
        );
    }

    #[test]
    fn a_shard_is_k_of_n_counted_from_zero() {
        assert!(valid_shard("0/4"));
        assert!(valid_shard("3/4"));
        for bad in ["4/4", "1", "a/4", "1/0", "-1/4", ""] {
            assert!(!valid_shard(bad), "{bad}");
        }
    }

    #[test]
    fn a_part_with_no_viable_mutant_scores_full() {
        let row = tally("x", &[json!({"outcomes": [outcome("Unviable", 1)]})]);
        assert_eq!(row["score"], 1.0);
    }

    #[test]
    fn every_part_names_files_that_exist() {
        for part in PARTS {
            for file in part.files {
                let plain = file.trim_end_matches("/**");
                assert!(root().join(plain).exists(), "{}: {file} is gone", part.name);
            }
        }
    }
}
