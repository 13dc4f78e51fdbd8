//! Power cuts during `write_snapshot`: at every I/O call, every reboot,
//! `memory.json` holds the old map or the new one; once it returned, the
//! new one.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use steward_store::ManualClock;

use super::{Found, Reboot, SimDisk, State, open, path, reboots};
use crate::workload::START_MS;

fn old_map() -> Map<String, Value> {
    json!({"a": 1, "b": [2]})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn new_map() -> Map<String, Value> {
    json!({"c": "new", "a": {"nested": true}})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// A simulated disk holding the old `memory.json`, durably, that leaves
/// out the fsync at `skip`.
fn disk_with_old(skip: Option<&(String, u32)>) -> SimDisk {
    let disk = SimDisk::default();
    steward_store::write_snapshot_on(&disk, &path(), &old_map()).expect("the old memory");
    let mut s = disk.state();
    for inode in s.inodes.values_mut() {
        inode.sync();
    }
    s.durable_entries = s.entries.clone();
    s.dir_ops.clear();
    s.steps = 0;
    s.sites.clear();
    s.skip = skip.cloned();
    drop(s);
    disk
}

/// Reboots a copy of `state` as `how` says; the map the memory opens
/// with.
fn survivor(state: &State, how: Reboot) -> Result<Map<String, Value>, String> {
    let mut state = state.clone();
    state.cut_at = None;
    state.reboot(how);
    let disk = SimDisk(Arc::new(Mutex::new(state)));
    let store = open(&disk, &ManualClock::new(START_MS))
        .map_err(|e| format!("does not open: {}", e.chain()))?;
    Ok(store.to_map())
}

/// `write_snapshot` of the new map over the old one with the power cut at
/// each I/O call in turn (and at the end), the fsync at `skip` left out:
/// the cut points checked, the failures, the fsync sites reached.
pub(super) fn explore_write_snapshot(skip: Option<&(String, u32)>, stop_at_first: bool) -> Found {
    let (old, new) = (old_map(), new_map());
    let mut failures = Vec::new();
    let dry = disk_with_old(skip);
    steward_store::write_snapshot_on(&dry, &path(), &new).expect("write_snapshot");
    let (calls, sites) = {
        let s = dry.state();
        (s.steps, s.sites.clone())
    };
    // Returned: a power cut now keeps the new map, whatever the reboot.
    let end = dry.state().clone();
    let mut points = 0;
    for how in reboots(end.dir_ops.len()) {
        points += 1;
        match survivor(&end, how) {
            Ok(m) if m == new => {}
            other => failures.push(format!("write_snapshot returned, {how:?}: {other:?}")),
        }
    }
    for k in 0..calls {
        if stop_at_first && !failures.is_empty() {
            break;
        }
        let disk = disk_with_old(skip);
        disk.state().cut_at = Some(k);
        let _ = steward_store::write_snapshot_on(&disk, &path(), &new);
        let state = disk.state().clone();
        for how in reboots(state.dir_ops.len()) {
            points += 1;
            match survivor(&state, how) {
                Ok(m) if m == old || m == new => {}
                other => failures.push(format!(
                    "write_snapshot: cut at call {k}, {how:?}: {other:?}"
                )),
            }
        }
    }
    (points, failures, sites)
}

/// Power cut at every I/O call of `write_snapshot`, every reboot: the old
/// memory or the new one, and the new one once it returned.
#[test]
fn a_power_cut_during_write_snapshot_leaves_the_old_map_or_the_new_one() {
    let (points, failures, _) = explore_write_snapshot(None, false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("write_snapshot: {points} cut points checked");
}
