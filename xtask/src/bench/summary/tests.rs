//! The summarizer against small criterion-like trees of real files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{RunInfo, summarize, utc};

/// A fresh folder under the system's temp dir, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-bench-summary-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn write(&self, rel: &str, value: &Value, mtime: SystemTime) {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, value.to_string()).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
    }

    /// One criterion function: `mean` and `median` ns per iteration.
    fn function(&self, group: &str, function: &str, mean: f64, median: f64, at: SystemTime) {
        let dir = format!("criterion/{group}/{function}/new");
        let est = |ns: f64| json!({"point_estimate": ns, "standard_error": 1.0});
        self.write(
            &format!("{dir}/estimates.json"),
            &json!({"mean": est(mean), "median": est(median), "std_dev": est(1.0)}),
            at,
        );
        self.write(
            &format!("{dir}/benchmark.json"),
            &json!({"group_id": group, "function_id": function,
                    "throughput": {"Elements": 10}}),
            at,
        );
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_at(started: SystemTime, quick: bool) -> RunInfo {
    RunInfo {
        commit: "0123abcd".into(),
        dirty: false,
        started,
        quick,
    }
}

fn entry<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {summary:#}"))
}

#[test]
fn ratios_compare_medians_not_means() {
    let tree = Tree::new();
    let started = SystemTime::now() - Duration::from_secs(60);
    // Means say the baseline is twice as fast; medians say ours is.
    tree.function("g", "steward", 4_000.0, 1_000.0, SystemTime::now());
    tree.function("g", "baseline", 2_000.0, 2_000.0, SystemTime::now());
    let s = summarize(tree.path(), &run_at(started, false)).expect("summary");
    let e = entry(&s, "g");
    assert_eq!(e["statistic"], "median");
    assert_eq!(e["ours_ns_per_iter"], 1_000.0);
    assert_eq!(e["baseline_ns_per_iter"], 2_000.0);
    // 10 elements per iteration: 10 per µs.
    assert_eq!(e["ours_per_s"], 10_000_000.0);
    assert_eq!(e["ratio"], 2.0);
    assert_eq!(s["statistic"], "median");
}

#[test]
fn results_older_than_the_run_are_dropped() {
    let tree = Tree::new();
    let started = SystemTime::now() - Duration::from_secs(60);
    let earlier = started - Duration::from_secs(3600);
    tree.function("fresh", "steward", 100.0, 100.0, SystemTime::now());
    tree.function("fresh", "base", 200.0, 200.0, SystemTime::now());
    // A group an earlier run measured: both functions are stale.
    tree.function("old", "steward", 100.0, 100.0, earlier);
    tree.function("old", "base", 200.0, 200.0, earlier);
    // A group where only the baseline was re-run: ours is stale, so the
    // baseline has nobody to pair with and no ratio is made.
    tree.function("half", "steward", 100.0, 100.0, earlier);
    tree.function("half", "base", 200.0, 200.0, SystemTime::now());
    tree.write(
        "bench/extra/old.json",
        &json!([{"name": "old figure", "value": 1}]),
        earlier,
    );
    tree.write(
        "bench/extra/new.json",
        &json!([{"name": "plain figure", "value": 2},
                {"name": "named", "ratio": 1.5, "statistic": "p50"}]),
        SystemTime::now(),
    );
    let s = summarize(tree.path(), &run_at(started, true)).expect("summary");
    let names: Vec<&str> = s["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["fresh", "named", "plain figure"]);
    assert_eq!(s["stale_results_dropped"], 4);
    assert_eq!(entry(&s, "plain figure")["statistic"], "unstated");
    assert_eq!(entry(&s, "named")["statistic"], "p50");
}

#[test]
fn the_summary_says_which_run_it_is() {
    let tree = Tree::new();
    let started = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let s = summarize(tree.path(), &run_at(started, true)).expect("summary");
    assert_eq!(s["commit"], "0123abcd");
    assert_eq!(s["dirty"], false);
    assert_eq!(s["mode"], "quick");
    assert_eq!(s["time_utc"], "2001-09-09T01:46:40Z");
    assert_eq!(s["entries"], json!([]));
    let s = summarize(tree.path(), &run_at(started, false)).expect("summary");
    assert_eq!(s["mode"], "full");
}

#[test]
fn utc_dates() {
    let at = |s: u64| utc(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
}

#[test]
fn the_run_info_of_this_checkout_names_a_commit() {
    let run = RunInfo::now(&crate::root(), true);
    assert!(
        run.commit.len() == 40 && run.commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "commit {}",
        run.commit
    );
}
