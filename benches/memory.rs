//! Tracker memory per live resource, measured with a counting global
//! allocator (heap bytes requested, without the allocator's own overhead).
//! Writes `$STEWARD_BENCH_DIR/extra/tracker.json` (default `target/bench`).

use std::alloc::System;
use std::path::PathBuf;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use steward_tracker::{Tracked, Tracker};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KINDS: [&str; 4] = ["ws_conn", "audio_buf", "pool_conn", "session"];

/// Net heap bytes the tracker holds per live resource with `n` live.
fn bytes_per_resource(n: usize) -> f64 {
    let tracker = Tracker::new();
    // Register the kinds first: they are per tracker, not per resource.
    for kind in KINDS {
        drop(tracker.track(kind, 1).unwrap());
    }
    // The guards are the caller's memory: their vector is allocated outside
    // the measured region (each guard is `size_of::<Tracked>()` inline).
    let mut guards: Vec<Tracked> = Vec::with_capacity(n);
    let region = Region::new(GLOBAL);
    for i in 0..n {
        guards.push(tracker.track(KINDS[i % KINDS.len()], 4096).unwrap());
    }
    let change = region.change();
    let net = change.bytes_allocated as f64 - change.bytes_deallocated as f64
        + change.bytes_reallocated as f64;
    drop(guards);
    net / n as f64
}

fn main() {
    let sizes = [10_000usize, 100_000, 1_000_000];
    let figures: Vec<f64> = sizes.iter().map(|n| bytes_per_resource(*n)).collect();
    let worst = figures.iter().copied().fold(0.0_f64, f64::max);
    for (n, b) in sizes.iter().zip(&figures) {
        println!("tracker/bytes_per_live_resource n={n}: {b:.1} B");
    }
    let guard = std::mem::size_of::<Tracked>();
    println!("tracker/guard_size: {guard} B (inline in the owner)");
    let entry = serde_json::json!([{
        "name": "tracker/bytes_per_live_resource",
        "bytes": (worst * 10.0).round() / 10.0,
        "by_live_count": sizes.iter().zip(&figures)
            .map(|(n, b)| serde_json::json!({"live": n, "bytes": (b * 10.0).round() / 10.0}))
            .collect::<Vec<_>>(),
        "target_max": 128,
        "guard_bytes": guard,
        "ours_per_s": null, "baseline": null, "baseline_per_s": null, "ratio": null,
        // The largest of the three sizes, each one measurement.
        "statistic": "max_over_live_counts",
    }]);
    let dir = std::env::var_os("STEWARD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench"))
        .join("extra");
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("tracker.json"), entry.to_string() + "\n"))
    {
        eprintln!("cannot write {}: {e}", dir.display());
        std::process::exit(1);
    }
}
