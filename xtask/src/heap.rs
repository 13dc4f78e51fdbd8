//! The heap growth listing of `cargo xtask soak --heap`, from the profile
//! dhat writes (`dhat-heap.json`, DHAT's JSON format: per program point
//! `pps[]` the bytes and blocks at the end `eb`/`ebk`, in total `tb`/`tbk`,
//! and the stack `fs`, indices into the frame table `ftbl`).
//!
//! The assistant starts the profiler at the end of the warm-up and writes
//! it a few seconds before the run ends, so blocks allocated before are not
//! seen, and what is live at the end of the run was allocated after the
//! warm-up and not freed while the run went on: the sites whose live bytes
//! grew. A site that keeps one object per session (the current
//! session's buffers) shows a few blocks; a leak shows blocks piling up, in
//! proportion to the run.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

/// Frames of the allocator, the profiler and the standard library's
/// allocation plumbing, skipped when naming a site.
const PLUMBING: &[&str] = &[
    "[root]",
    "dhat::",
    "(dhat-",
    "alloc/src/",
    "core/src/alloc",
    "__rust_alloc",
    "__rust_realloc",
    "hashbrown-",
    // The standard library's frames as a release build names them
    // (relative to the library's own folder).
    "(src/raw_vec/",
    "(src/vec/",
    "(src/string",
    "(src/boxed",
    "(src/fmt/",
    "(sync/mpsc/",
    "(sync/mpmc/",
    "(core/src/",
];

/// The `top` program points with the most bytes live at the end, one
/// block of text each: live bytes and blocks, what they allocated in all
/// since the profiler started, and the first frames outside the allocation
/// plumbing.
pub(crate) fn growth_report(profile: &Value, top: usize) -> Result<String> {
    let pps = profile["pps"]
        .as_array()
        .context("the heap profile has no `pps` (program points)")?;
    let frames = profile["ftbl"]
        .as_array()
        .context("the heap profile has no `ftbl` (frame table)")?;
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut live: Vec<&Value> = pps.iter().filter(|pp| n(&pp["eb"]) > 0).collect();
    live.sort_by_key(|pp| std::cmp::Reverse(n(&pp["eb"])));
    let total_bytes: u64 = live.iter().map(|pp| n(&pp["eb"])).sum();
    let total_blocks: u64 = live.iter().map(|pp| n(&pp["ebk"])).sum();
    let mut out = String::new();
    writeln!(
        out,
        "heap growth after the warm-up: {total_bytes} bytes in {total_blocks} blocks allocated after it and live at the end, at {} sites",
        live.len()
    )?;
    for (rank, pp) in live.iter().take(top).enumerate() {
        writeln!(
            out,
            "\n#{} {} bytes in {} blocks live at the end (allocated since the warm-up: {} bytes in {} blocks)",
            rank + 1,
            n(&pp["eb"]),
            n(&pp["ebk"]),
            n(&pp["tb"]),
            n(&pp["tbk"])
        )?;
        let stack = pp["fs"].as_array().map_or(&[][..], Vec::as_slice);
        let named = stack
            .iter()
            .filter_map(|i| frames.get(usize::try_from(i.as_u64()?).ok()?)?.as_str())
            .filter(|f| !PLUMBING.iter().any(|p| f.contains(p)))
            .take(6);
        for frame in named {
            writeln!(out, "    {frame}")?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sites_are_listed_by_live_bytes_without_the_plumbing() {
        let profile = json!({
            "dhatFileVersion": 2,
            "pps": [
                {"tb": 100, "tbk": 10, "eb": 0, "ebk": 0, "fs": [1, 2]},
                {"tb": 900, "tbk": 9, "eb": 600, "ebk": 6, "fs": [1, 5, 3, 4]},
                {"tb": 50, "tbk": 1, "eb": 50, "ebk": 1, "fs": [2]}
            ],
            "ftbl": [
                "[root]",
                "0x1: alloc (dhat-0.3.3/src/lib.rs:1176:9)",
                "0x5: alloc_impl (alloc/src/alloc.rs:312:9)",
                "0x2: steward_cli::assistant::run::tick (crates/steward-cli/src/assistant/run.rs:10:5)",
                "0x3: steward_realtime::history::History::push (crates/steward-realtime/src/history.rs:40:9)",
                "0x4: steward_realtime::session::run (crates/steward-realtime/src/session.rs:99:1)"
            ]
        });
        let text = growth_report(&profile, 10).expect("report");
        assert!(
            text.starts_with("heap growth after the warm-up: 650 bytes in 7 blocks"),
            "{text}"
        );
        let first = text.find("History::push").expect("the largest site");
        let second = text.find("#2 50 bytes").expect("the second site");
        assert!(first < second, "{text}");
        assert!(!text.contains("dhat-0.3.3"), "{text}");
        assert!(!text.contains("alloc_impl"), "{text}");
        assert!(growth_report(&json!({}), 3).is_err());
    }
}
