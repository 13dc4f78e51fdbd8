//! Power cuts during `repair`: at every I/O call, every reboot, the damaged
//! files are never lost and the memory ends up repaired or as it was.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_store::{Disk, ManualClock, Store};

use super::{Found, Reboot, SimDisk, State, open, path, reboots};
use crate::workload::START_MS;

/// `memory.json` as the Python assistant's crash mid-write leaves it.
const CUT_OFF: &[u8] = b"{\n  \"a\": 1,\n  \"b\": [\n    2\n  ],\n  \"c\": tr";

/// A damaged memory's files, and what the repaired memory holds.
struct Damaged {
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Keys, in order.
    kept: Vec<&'static str>,
    /// The TTL entries among them.
    ttl: Vec<&'static str>,
}

impl Damaged {
    /// A simulated disk holding the damaged files, durably, that leaves
    /// out the fsync at `skip`.
    fn disk(&self, skip: Option<&(String, u32)>) -> SimDisk {
        let disk = SimDisk::default();
        {
            let mut s = disk.state();
            s.skip = skip.cloned();
            for (p, bytes) in &self.files {
                let ino = s.create(p, 0o600);
                s.inodes.get_mut(&ino).expect("inode").durable = bytes.clone();
            }
            s.durable_entries = s.entries.clone();
            s.dir_ops.clear();
        }
        disk
    }

    /// Whether every damaged file is still in its place, unchanged.
    fn untouched(&self, disk: &SimDisk) -> bool {
        self.files
            .iter()
            .all(|(p, bytes)| disk.read(p).ok().as_ref() == Some(bytes))
    }

    /// The memory as the repair must leave it: its keys in order, the TTL
    /// ones still expiring.
    fn check_repaired(&self, store: &Store) -> Result<(), String> {
        let entries = store.entries_with_ttl();
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        let ttl: Vec<&str> = entries
            .iter()
            .filter(|e| e.ttl.is_some())
            .map(|e| e.key.as_str())
            .collect();
        if keys != self.kept || ttl != self.ttl {
            return Err(format!("holds {keys:?}, TTL entries {ttl:?}"));
        }
        Ok(())
    }
}

/// Only a cut-off `memory.json`.
fn cut_off_snapshot() -> Damaged {
    Damaged {
        files: vec![(path(), CUT_OFF.to_vec())],
        kept: vec!["a", "b"],
        ttl: vec![],
    }
}

/// A memory with an expiry file and a log whose first batch is damaged
/// (a record in the middle: it does not open). Made by a real store in a
/// temporary folder: `a`, and `b` with a TTL, compacted into the snapshot
/// and its expiry file; then `x` (the damaged batch) and `t` with a TTL
/// in the log.
fn damaged_log_with_ttl() -> Damaged {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("memory.json");
    let clock = ManualClock::new(START_MS);
    let hour = Duration::from_secs(3600);
    let store = Store::builder(&real)
        .clock(Arc::new(clock))
        .build()
        .expect("open");
    store.upsert_blocking("a", 1).expect("a");
    store
        .upsert_with_ttl_blocking("b", vec![2], hour)
        .expect("b");
    store.compact_blocking().expect("compact");
    store.upsert_blocking("x", 0).expect("x");
    let first_end = store.stats().log_bytes as usize;
    store.upsert_with_ttl_blocking("t", 3, hour).expect("t");
    let log_end = store.stats().log_bytes as usize;
    drop(store);
    let read = |suffix: &str| {
        std::fs::read(format!("{}{suffix}", real.display())).expect("a file of the memory")
    };
    let mut log = read(".log");
    // The preallocated zeros are not part of the memory.
    log.truncate(log_end);
    log[first_end - 1] ^= 0x55;
    let beside = |suffix: &str| PathBuf::from(format!("{}{suffix}", path().display()));
    Damaged {
        files: vec![
            (path(), read("")),
            (beside(".ttl"), read(".ttl")),
            (beside(".log"), log),
        ],
        kept: vec!["a", "b", "t"],
        ttl: vec!["b", "t"],
    }
}

/// After a cut in `repair` and a reboot: the damaged bytes are still
/// somewhere (in place or in a dated copy beside them) and the memory
/// either still refuses to open as before or opens repaired; and `repair`
/// run again finishes the job.
fn check_repair(damaged: &Damaged, state: &State, how: Reboot) -> Result<(), String> {
    let mut state = state.clone();
    state.cut_at = None;
    state.reboot(how);
    let disk = SimDisk(Arc::new(Mutex::new(state)));
    let read = |p: &Path| disk.read(p).ok();
    let files = disk.state().entries.keys().cloned().collect::<Vec<_>>();
    for (original, bytes) in &damaged.files {
        if !files.iter().any(|p| read(p).as_ref() == Some(bytes)) {
            return Err(format!(
                "the damaged {original:?} is gone (files: {files:?})"
            ));
        }
    }
    let clock = ManualClock::new(START_MS);
    match open(&disk, &clock) {
        Ok(s) => damaged.check_repaired(&s)?,
        Err(steward_store::Error::Corrupt { .. }) if damaged.untouched(&disk) => {}
        Err(e) => return Err(format!("does not open: {}", e.chain())),
    }
    let again = steward_store::repair_on(&disk, &path(), START_MS)
        .map_err(|e| format!("repair again: {}", e.chain()))?;
    let s = open(&disk, &clock).map_err(|e| format!("after repair again: {}", e.chain()))?;
    damaged
        .check_repaired(&s)
        .map_err(|e| format!("after repair again ({again}): {e}"))
}

/// Repairs `damaged` with the power cut at each I/O call in turn (and
/// the fsync at `skip` left out) and checks every reboot: the cut points
/// checked, the failures, the fsync sites reached.
fn explore_repair(damaged: &Damaged, skip: Option<&(String, u32)>, stop_at_first: bool) -> Found {
    let (mut points, mut failures) = (0, Vec::new());
    let dry = damaged.disk(skip);
    let done = steward_store::repair_on(&dry, &path(), START_MS)
        .map_err(|e| e.chain().to_string())
        .and_then(|_| {
            let repaired = open(&dry, &ManualClock::new(START_MS)).map_err(|e| e.chain())?;
            damaged.check_repaired(&repaired)
        });
    if let Err(e) = done {
        failures.push(format!("repair without a cut: {e}"));
    }
    let sites = dry.state().sites.clone();
    let calls = dry.state().steps;
    for k in 0..calls {
        if stop_at_first && !failures.is_empty() {
            break;
        }
        let disk = damaged.disk(skip);
        disk.state().cut_at = Some(k);
        let _ = steward_store::repair_on(&disk, &path(), START_MS);
        let state = disk.state().clone();
        for how in reboots(state.dir_ops.len()) {
            points += 1;
            if let Err(e) = check_repair(damaged, &state, how) {
                failures.push(format!("repair: cut at call {k}, {how:?}: {e}"));
            }
        }
    }
    (points, failures, sites)
}

/// Both damaged memories repaired under every cut (see
/// [`explore_repair`]), for the fsync test.
pub(super) fn explore_repairs(skip: Option<&(String, u32)>, stop_at_first: bool) -> Found {
    let (mut points, mut failures, mut sites) = (0, Vec::new(), Default::default());
    for damaged in [cut_off_snapshot(), damaged_log_with_ttl()] {
        let (p, f, s) = explore_repair(&damaged, skip, stop_at_first);
        points += p;
        failures.extend(f);
        sites = s.union(&sites).cloned().collect();
    }
    (points, failures, sites)
}

/// Power cut at every I/O call of `repair` on a memory.json cut off
/// mid-write, every reboot: the damaged file is never lost and the memory
/// ends up repaired or as it was.
#[test]
fn a_power_cut_during_repair_loses_neither_the_original_nor_the_repair() {
    let (points, failures, _) = explore_repair(&cut_off_snapshot(), None, false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("repair: {points} cut points checked");
}

/// The same with a log and an expiry file beside the snapshot: the fresh
/// memory's files go into place in the compaction's order (the new log's
/// name durable before the snapshot rename; the expiry file's rename
/// durable before the log's), so no reboot finds the new snapshot beside
/// the damaged log, or the TTL entries made permanent.
#[test]
fn a_power_cut_during_repair_of_a_log_and_expiry_file_keeps_every_ttl() {
    let (points, failures, _) = explore_repair(&damaged_log_with_ttl(), None, false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("repair with a log and expiries: {points} cut points checked");
}
