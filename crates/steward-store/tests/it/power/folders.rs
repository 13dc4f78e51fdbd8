//! Power cuts while opening a memory whose folder and its parent are
//! missing, and writing to it: the new folders' entries are durable once
//! their parents are synced, so every acknowledged write survives.

use std::path::PathBuf;

use serde_json::json;

use super::{Found, explore_workload};
use crate::workload::Step::{self, *};

/// The folder that exists; the memory goes two new folders below it.
pub(super) fn root() -> PathBuf {
    std::env::temp_dir().join("steward-simulated-folders")
}

/// `<root>/a/b/memory.json`, with `a` and `b` missing at first.
fn nested() -> PathBuf {
    root().join("a").join("b").join("memory.json")
}

/// Writes (acknowledged only once durable) right after the folders were
/// made, a reopen, and more writes.
fn steps() -> Vec<Step> {
    vec![
        Upsert("a", json!(1)),
        Create("b", json!({"x": [1, 2]})),
        Ttl("t", json!("rain"), 3600),
        Reopen,
        Update("a", json!(2)),
        Delete("b"),
    ]
}

/// Every cut point of [`steps`] on the memory in new folders, each with
/// every reboot, the fsync at `skip` left out.
pub(super) fn explore_new_folders(skip: Option<&(String, u32)>, stop_at_first: bool) -> Found {
    explore_workload(
        "a memory in new folders",
        &nested(),
        &steps(),
        skip,
        stop_at_first,
    )
}

/// Power cut at every I/O call of opening a memory at `<root>/a/b` with
/// `a` and `b` missing, its writes and a reopen: after every reboot it
/// opens with every acknowledged write, nothing unacknowledged half there.
#[test]
fn a_power_cut_after_opening_in_new_folders_loses_no_acknowledged_write() {
    let start = std::time::Instant::now();
    let (points, failures, sites) = explore_new_folders(None, false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let folder_sites = sites.iter().filter(|s| s.0.ends_with("folder.rs")).count();
    eprintln!(
        "new folders: {points} cut points checked in {:?}, {folder_sites} folder fsync sites",
        start.elapsed()
    );
    assert_eq!(folder_sites, 2, "{sites:?}");
    assert!(points > 100, "only {points} cut points");
}
