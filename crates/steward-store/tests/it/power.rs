//! Simulated power loss. `SimDisk` (a fake: this machine cannot cut its
//! own power) keeps every file's unsynced writes apart from its durable
//! bytes and every directory change (create, rename, remove, a new
//! folder) apart from the durable entries (durable once their directory
//! was fsynced; a folder whose entry is lost takes all below it). A
//! workload runs, counting I/O calls; then for every call k it runs again
//! with the power cut at k (that call and all later ones fail), and from
//! the state left "reboots" in each of these ways, reopens the store from
//! what survived and checks it against the model:
//!
//! - `Strict`: only fsynced data and fsynced directory entries survive;
//! - `Entries`: every directory change survives (a journal commit wrote
//!   them) but unsynced data does not;
//! - `Torn`: every change survives and each file's unsynced writes too,
//!   except the last one, cut at its first 512-byte sector boundary;
//! - `Everything`: all of it survives (what a killed process leaves);
//! - `Prefix(n)`: the first n unsynced directory changes survive (a
//!   journal that commits in order), unsynced data does not;
//! - `LastOnly`: of the unsynced directory changes only the last one
//!   survives (a file system that reorders them).
//!
//! A second test leaves out one fsync call site at a time (the disk
//! reports success and does nothing) and shows the first test's checks
//! then fail, for each site that matters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use steward_store::{Disk, DiskFile, LockHold, ManualClock, Meta, Perms, Site, Store};

use crate::workload::{Model, START_MS, Step, run_step, workloads};

const SECTOR: u64 = 512;

/// What survives a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reboot {
    Strict,
    Entries,
    Torn,
    Everything,
    Prefix(usize),
    LastOnly,
}

/// The reboots worth trying after a cut with `pending` unsynced
/// directory changes.
fn reboots(pending: usize) -> Vec<Reboot> {
    let mut out = vec![
        Reboot::Strict,
        Reboot::Entries,
        Reboot::Torn,
        Reboot::Everything,
    ];
    out.extend((1..pending).map(Reboot::Prefix));
    if pending >= 2 {
        out.push(Reboot::LastOnly);
    }
    out
}

/// A directory change not yet made durable.
#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf, u64),
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Link(p, ino) => {
                entries.insert(p.clone(), *ino);
            }
            DirOp::Unlink(p) => {
                entries.remove(p);
            }
            DirOp::Rename(from, to, ino) => {
                entries.remove(from);
                entries.insert(to.clone(), *ino);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Write {
    At(u64, Vec<u8>),
    Len(u64),
}

fn apply(bytes: &mut Vec<u8>, w: &Write) {
    match w {
        Write::At(at, data) => {
            let (at, end) = (*at as usize, *at as usize + data.len());
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[at..end].copy_from_slice(data);
        }
        Write::Len(len) => bytes.resize(*len as usize, 0),
    }
}

impl DirOp {
    /// The directory whose fsync makes this change durable (a rename
    /// stays in one directory: the store renames only beside the file).
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Link(p, _) | DirOp::Unlink(p) | DirOp::Rename(_, p, _) => p.parent(),
        }
    }
}

/// Whether `p` is one of the folders outside the simulation, which always
/// exist: the memory's folder of most tests, the folder the folder test
/// creates its memory's folders in, and their ancestors.
fn outside(p: &Path) -> bool {
    [path(), folders::root().join("memory.json")]
        .iter()
        .any(|m| m.parent().is_some_and(|d| d.starts_with(p)))
}

#[derive(Debug, Default, Clone)]
struct Inode {
    durable: Vec<u8>,
    /// Writes since the last fsync, in order.
    pending: Vec<Write>,
    mode: u32,
    /// A folder (its entries are the paths below it).
    dir: bool,
}

impl Inode {
    fn current(&self) -> Vec<u8> {
        let mut b = self.durable.clone();
        for w in &self.pending {
            apply(&mut b, w);
        }
        b
    }

    fn sync(&mut self) {
        for w in std::mem::take(&mut self.pending) {
            apply(&mut self.durable, &w);
        }
    }

    /// The bytes a reboot of kind `how` leaves.
    fn survivor(&self, how: Reboot) -> Vec<u8> {
        let mut b = self.durable.clone();
        let keep = match how {
            Reboot::Torn => self.pending.len().saturating_sub(1),
            Reboot::Everything => self.pending.len(),
            _ => 0,
        };
        for w in &self.pending[..keep] {
            apply(&mut b, w);
        }
        if how == Reboot::Torn
            && let Some(Write::At(at, data)) = self.pending.last()
        {
            // The sectors before the first boundary inside the write.
            let boundary = (at / SECTOR + 1) * SECTOR;
            let cut = boundary.saturating_sub(*at) as usize;
            if cut < data.len() {
                apply(&mut b, &Write::At(*at, data[..cut].to_vec()));
            }
        }
        b
    }
}

#[derive(Debug, Default, Clone)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    entries: BTreeMap<PathBuf, u64>,
    durable_entries: BTreeMap<PathBuf, u64>,
    /// Directory changes since the last directory fsync, in order.
    dir_ops: Vec<DirOp>,
    steps: u64,
    /// The call with this number and every later one fail: the power is off.
    cut_at: Option<u64>,
    off: bool,
    /// Cut the power right after this many more directory fsyncs.
    cut_after_dir_syncs: Option<usize>,
    /// That cut happened (the workload reboots and goes on).
    asked_cut: bool,
    /// The next directory fsync fails and does nothing.
    fail_next_dir_sync: bool,
    /// The fsync at this call site is left out (reports success).
    skip: Option<(String, u32)>,
    /// Every fsync call site seen.
    sites: BTreeSet<(String, u32)>,
}

fn eio() -> std::io::Error {
    std::io::Error::from_raw_os_error(5)
}

fn not_found() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::NotFound)
}

impl State {
    /// Counts a call; fails it if the power is (now) off.
    fn step(&mut self) -> std::io::Result<()> {
        let n = self.steps;
        self.steps += 1;
        if self.cut_at == Some(n) {
            self.off = true;
        }
        if self.off { Err(eio()) } else { Ok(()) }
    }

    /// Whether the fsync at `site` really happens.
    fn syncs(&mut self, site: Site) -> bool {
        let key = (site.file().to_string(), site.line());
        let skipped = self.skip.as_ref() == Some(&key);
        if !self.sites.contains(&key) {
            self.sites.insert(key);
        }
        !skipped
    }

    /// Whether `p` is a folder.
    fn is_dir(&self, p: &Path) -> bool {
        outside(p) || self.entries.get(p).is_some_and(|ino| self.inodes[ino].dir)
    }

    /// `NotFound` unless `p`'s folder exists (as creating a file needs).
    fn parent_is_dir(&self, p: &Path) -> std::io::Result<()> {
        match p.parent() {
            Some(d) if self.is_dir(d) => Ok(()),
            _ => Err(not_found()),
        }
    }

    fn inode(&mut self, path: &Path) -> std::io::Result<&mut Inode> {
        let ino = *self.entries.get(path).ok_or_else(not_found)?;
        Ok(self.inodes.get_mut(&ino).expect("entry without inode"))
    }

    fn create(&mut self, path: &Path, mode: u32) -> u64 {
        if let Some(&ino) = self.entries.get(path) {
            let inode = self.inodes.get_mut(&ino).expect("inode");
            inode.pending.push(Write::Len(0));
            inode.mode = mode;
            return ino;
        }
        let ino = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            ino,
            Inode {
                mode,
                ..Inode::default()
            },
        );
        self.entries.insert(path.to_path_buf(), ino);
        self.dir_ops.push(DirOp::Link(path.to_path_buf(), ino));
        ino
    }

    /// Power back on after a cut: what `how` says survived becomes the
    /// whole (durable) state.
    fn reboot(&mut self, how: Reboot) {
        let mut entries = self.durable_entries.clone();
        let ops = match how {
            Reboot::Strict => &[][..],
            Reboot::Prefix(n) => &self.dir_ops[..n.min(self.dir_ops.len())],
            Reboot::LastOnly => &self.dir_ops[self.dir_ops.len().saturating_sub(1)..],
            _ => &self.dir_ops[..],
        };
        for op in ops {
            op.apply(&mut entries);
        }
        // An entry in a folder that did not survive is gone with it
        // (parents sort before their children).
        let mut kept = BTreeMap::new();
        for (p, ino) in entries {
            let parent_ok = p
                .parent()
                .is_some_and(|d| outside(d) || kept.get(d).is_some_and(|i| self.inodes[i].dir));
            if parent_ok {
                kept.insert(p, ino);
            }
        }
        let entries = kept;
        let inodes = entries
            .values()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|ino| {
                let old = &self.inodes[ino];
                let inode = Inode {
                    durable: old.survivor(how),
                    pending: Vec::new(),
                    mode: old.mode,
                    dir: old.dir,
                };
                (*ino, inode)
            })
            .collect();
        self.inodes = inodes;
        self.durable_entries = entries.clone();
        self.entries = entries;
        self.dir_ops.clear();
        self.cut_after_dir_syncs = None;
        self.fail_next_dir_sync = false;
        self.asked_cut = false;
        self.off = false;
    }
}

#[derive(Debug, Clone, Default)]
struct SimDisk(Arc<Mutex<State>>);

impl SimDisk {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Disk for SimDisk {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let mut s = self.state();
        s.step()?;
        Ok(s.inode(path)?.current())
    }

    fn create(&self, path: &Path, perms: Perms) -> std::io::Result<Box<dyn DiskFile>> {
        let mut s = self.state();
        s.step()?;
        s.parent_is_dir(path)?;
        let ino = s.create(path, perms.mode);
        Ok(Box::new(SimFile(self.clone(), ino)))
    }

    fn open(&self, path: &Path) -> std::io::Result<Box<dyn DiskFile>> {
        let mut s = self.state();
        s.step()?;
        let ino = *s.entries.get(path).ok_or_else(not_found)?;
        Ok(Box::new(SimFile(self.clone(), ino)))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut s = self.state();
        s.step()?;
        s.parent_is_dir(to)?;
        let ino = s.entries.remove(from).ok_or_else(not_found)?;
        s.entries.insert(to.to_path_buf(), ino);
        s.dir_ops
            .push(DirOp::Rename(from.to_path_buf(), to.to_path_buf(), ino));
        Ok(())
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut s = self.state();
        s.step()?;
        s.entries.remove(path).ok_or_else(not_found)?;
        s.dir_ops.push(DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        let mut s = self.state();
        s.step()?;
        Ok(outside(path) || s.entries.contains_key(path))
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let mut s = self.state();
        s.step()?;
        let mut new: Vec<&Path> = path.ancestors().take_while(|p| !outside(p)).collect();
        new.reverse();
        for p in new {
            if s.is_dir(p) {
                continue;
            }
            if s.entries.contains_key(p) {
                return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
            }
            let ino = s.next_inode;
            s.next_inode += 1;
            let folder = Inode {
                dir: true,
                mode: 0o700,
                ..Inode::default()
            };
            s.inodes.insert(ino, folder);
            s.entries.insert(p.to_path_buf(), ino);
            s.dir_ops.push(DirOp::Link(p.to_path_buf(), ino));
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path, site: Site) -> std::io::Result<()> {
        let mut s = self.state();
        s.step()?;
        if std::mem::take(&mut s.fail_next_dir_sync) {
            return Err(eio());
        }
        if !s.is_dir(dir) {
            return Err(not_found());
        }
        if s.syncs(site) {
            // This folder's changes become durable, in order; the other
            // folders' stay pending.
            let (mine, others) = std::mem::take(&mut s.dir_ops)
                .into_iter()
                .partition::<Vec<_>, _>(|op| op.dir() == Some(dir));
            for op in &mine {
                op.apply(&mut s.durable_entries);
            }
            s.dir_ops = others;
        }
        if let Some(n) = s.cut_after_dir_syncs.as_mut() {
            *n -= 1;
            if *n == 0 {
                s.off = true;
                s.asked_cut = true;
            }
        }
        Ok(())
    }

    fn metadata(&self, path: &Path) -> std::io::Result<Meta> {
        let mut s = self.state();
        s.step()?;
        let inode = s.inode(path)?;
        Ok(Meta {
            len: inode.current().len() as u64,
            mode: inode.mode,
            uid: 0,
            gid: 0,
        })
    }

    fn lock(&self, path: &Path, perms: Perms) -> std::io::Result<Option<LockHold>> {
        let mut s = self.state();
        s.step()?;
        s.parent_is_dir(path)?;
        if !s.entries.contains_key(path) {
            s.create(path, perms.mode);
        }
        Ok(Some(Box::new(())))
    }
}

#[derive(Debug)]
struct SimFile(SimDisk, u64);

impl SimFile {
    fn with<R>(&self, f: impl FnOnce(&mut Inode) -> R) -> std::io::Result<R> {
        let mut s = self.0.state();
        s.step()?;
        Ok(f(s.inodes.get_mut(&self.1).expect("inode")))
    }
}

impl DiskFile for SimFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.with(|i| i.pending.push(Write::At(offset, bytes.to_vec())))
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.with(|i| i.pending.push(Write::Len(len)))
    }

    fn size(&self) -> std::io::Result<u64> {
        self.with(|i| i.current().len() as u64)
    }

    fn sync_data(&mut self, site: Site) -> std::io::Result<()> {
        self.sync_all(site)
    }

    fn sync_all(&mut self, site: Site) -> std::io::Result<()> {
        let mut s = self.0.state();
        s.step()?;
        if s.syncs(site) {
            s.inodes.get_mut(&self.1).expect("inode").sync();
        }
        Ok(())
    }
}

/// The memory's path inside the simulated disk. Its folder is outside
/// the simulation (always there).
fn path() -> PathBuf {
    std::env::temp_dir()
        .join("steward-simulated-disk")
        .join("memory.json")
}

fn open(disk: &SimDisk, clock: &ManualClock) -> steward_store::Result<Store> {
    open_at(&path(), disk, clock)
}

fn open_at(at: &Path, disk: &SimDisk, clock: &ManualClock) -> steward_store::Result<Store> {
    Store::builder(at)
        .clock(Arc::new(clock.clone()))
        .disk(Arc::new(disk.clone()))
        .build()
}

fn now(clock: &ManualClock) -> u64 {
    steward_store::Clock::now_ms(clock)
}

/// A workload run up to its end or its power cut: the disk as the cut
/// left it, and what the model allows.
struct Cut {
    /// The memory's path.
    at: PathBuf,
    state: State,
    model: Model,
    clock: ManualClock,
}

/// Runs `steps` on the memory at `at` with the power cut at call `cut_at`
/// (if any; without one, the power goes at the end).
fn run(at: &Path, steps: &[Step], cut_at: Option<u64>, skip: Option<&(String, u32)>) -> Cut {
    let disk = SimDisk::default();
    {
        let mut s = disk.state();
        s.cut_at = cut_at;
        s.skip = skip.cloned();
    }
    let clock = ManualClock::new(START_MS);
    let mut model = Model::default();
    let mut store = open_at(at, &disk, &clock).ok();
    for step in steps {
        if disk.state().off {
            break;
        }
        let Some(s) = store.as_ref() else { break };
        match step {
            Step::Reopen | Step::CloseReopen => {
                if matches!(step, Step::CloseReopen) {
                    let _ = s.close_blocking();
                }
                drop(store.take());
                store = open_at(at, &disk, &clock).ok();
            }
            Step::CutAfterDirSync(n) => disk.state().cut_after_dir_syncs = Some(*n),
            Step::FailNextDirSync => disk.state().fail_next_dir_sync = true,
            _ => {
                let when = now(&clock);
                let result = run_step(s, &clock, step);
                model.record(step, &result, when);
                // A cut this workload asked for: reboot strictly and go on.
                let asked = disk.state().asked_cut;
                if asked {
                    drop(store.take());
                    disk.state().reboot(Reboot::Strict);
                    store = open_at(at, &disk, &clock).ok();
                }
            }
        }
    }
    drop(store);
    let state = disk.state().clone();
    Cut {
        at: at.to_path_buf(),
        state,
        model,
        clock,
    }
}

impl Cut {
    /// Reboots a copy of the disk in the way `how` says, reopens the store
    /// and checks it; returns the fsync sites seen.
    fn check(&self, how: Reboot) -> Result<BTreeSet<(String, u32)>, String> {
        let mut state = self.state.clone();
        state.cut_at = None;
        state.reboot(how);
        let disk = SimDisk(Arc::new(Mutex::new(state)));
        let again = open_at(&self.at, &disk, &self.clock)
            .map_err(|e| format!("does not open: {}", e.chain()))?;
        self.model.check(&again, now(&self.clock))?;
        drop(again);
        let sites = std::mem::take(&mut disk.state().sites);
        Ok(sites)
    }
}

/// What exploring found: cut points, failures, fsync sites reached.
type Found = (usize, Vec<String>, BTreeSet<(String, u32)>);

/// The cut points 0..`calls` taken by worker `w` of 2: their reboots
/// checked, failures and sites gathered.
fn explore_part(
    name: &str,
    at: &Path,
    steps: &[Step],
    calls: u64,
    w: u64,
    skip: Option<&(String, u32)>,
    stop_at_first: bool,
) -> Found {
    let (mut points, mut out, mut seen) = (0, Vec::new(), BTreeSet::new());
    for k in (w..calls).step_by(2) {
        let cut = run(at, steps, Some(k), skip);
        for how in reboots(cut.state.dir_ops.len()) {
            points += 1;
            match cut.check(how) {
                Ok(s) => seen.extend(s),
                Err(e) => {
                    out.push(format!("{name}: cut at call {k}, {how:?}: {e}"));
                    if stop_at_first {
                        return (points, out, seen);
                    }
                }
            }
        }
    }
    (points, out, seen)
}

/// Every cut point of every workload, each with every reboot; the first
/// failure found (or all of them).
fn explore(skip: Option<&(String, u32)>, stop_at_first: bool) -> Found {
    let (mut points, mut failures, mut sites) = (0, Vec::new(), BTreeSet::new());
    for (name, steps) in workloads() {
        let (p, f, s) = explore_workload(name, &path(), &steps, skip, stop_at_first);
        points += p;
        failures.extend(f);
        sites.extend(s);
        if stop_at_first && !failures.is_empty() {
            break;
        }
    }
    (points, failures, sites)
}

/// Every cut point of one workload on the memory at `at`, each with every
/// reboot (and the power off at its end).
fn explore_workload(
    name: &str,
    at: &Path,
    steps: &[Step],
    skip: Option<&(String, u32)>,
    stop_at_first: bool,
) -> Found {
    let (mut points, mut failures, mut sites) = (0, Vec::new(), BTreeSet::new());
    let end = run(at, steps, None, skip);
    sites.extend(end.state.sites.iter().cloned());
    if let Err(e) = end.check(Reboot::Strict) {
        failures.push(format!("{name}, power off at the end: {e}"));
        if stop_at_first {
            return (points, failures, sites);
        }
    }
    let calls = end.state.steps;
    let parts: Vec<Found> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| s.spawn(move || explore_part(name, at, steps, calls, w, skip, stop_at_first)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (p, f, s) in parts {
        points += p;
        failures.extend(f);
        sites.extend(s);
    }
    (points, failures, sites)
}

/// The exploration without any fsync left out, run once for both tests.
fn full() -> &'static Found {
    static FULL: std::sync::OnceLock<Found> = std::sync::OnceLock::new();
    FULL.get_or_init(|| explore(None, false))
}

/// Power cut at every I/O call of writes, TTL writes, deletes, reset,
/// compactions, sweeps, close and the recovery after a cut (a roll-forward
/// included): after every kind of reboot the store opens, every
/// acknowledged write is there and nothing unacknowledged is half there.
#[test]
fn a_power_cut_at_any_io_call_loses_no_acknowledged_write() {
    let (points, failures, _) = full();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("power loss: {points} cut points checked");
    assert!(*points > 1000, "only {points} cut points");
}

/// Whether the source says the fsync at `site` is not needed for
/// durability: a comment above its statement (up to the previous one).
fn marked_redundant(site: &(String, u32)) -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(&site.0)).unwrap_or_default();
    let above: Vec<&str> = text.lines().take(site.1 as usize - 1).collect();
    above
        .iter()
        .rev()
        .map(|l| l.trim_end())
        .take_while(|l| !l.ends_with(';') && !l.ends_with('{') && !l.ends_with('}'))
        .any(|l| l.to_lowercase().contains("not needed for durability"))
}

/// Leaving out any one fsync that durability depends on makes a power
/// test fail (printed as `site -> first failing check`): the store's
/// workloads, `repair`, `write_snapshot` and opening a memory whose
/// folders are missing, each run with the fsyncs it
/// reaches left out in turn. The fsyncs whose removal no check notices
/// are exactly those the source marks "not needed for durability", with
/// the reason.
#[test]
fn every_fsync_that_durability_needs_is_caught_when_left_out() {
    let (_, _, store_sites) = full();
    let (_, _, repair_sites) = repair::explore_repairs(None, false);
    let (_, _, snapshot_sites) = snapshot::explore_write_snapshot(None, false);
    let (_, _, folder_sites) = folders::explore_new_folders(None, false);
    assert!(store_sites.len() >= 10, "{store_sites:?}");
    let sites: BTreeSet<&(String, u32)> = store_sites
        .iter()
        .chain(&repair_sites)
        .chain(&snapshot_sites)
        .chain(&folder_sites)
        .collect();
    let mut wrong = Vec::new();
    for site in sites {
        let mut failures = Vec::new();
        if store_sites.contains(site) {
            failures = explore(Some(site), true).1;
        }
        if failures.is_empty() && repair_sites.contains(site) {
            failures = repair::explore_repairs(Some(site), true).1;
        }
        if failures.is_empty() && snapshot_sites.contains(site) {
            failures = snapshot::explore_write_snapshot(Some(site), true).1;
        }
        if failures.is_empty() && folder_sites.contains(site) {
            failures = folders::explore_new_folders(Some(site), true).1;
        }
        let name = format!("{}:{}", site.0, site.1);
        let redundant = marked_redundant(site);
        match failures.first() {
            Some(f) => eprintln!("fsync {name} left out -> {}", f.lines().next().unwrap_or(f)),
            None => {
                eprintln!("fsync {name} left out -> no check fails (marked redundant: {redundant})")
            }
        }
        if failures.is_empty() != redundant {
            wrong.push(name);
        }
    }
    assert!(
        wrong.is_empty(),
        "fsyncs left out unnoticed but not marked redundant, or marked but noticed: {wrong:?}"
    );
}

mod folders;
mod repair;
mod snapshot;
