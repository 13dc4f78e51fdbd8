//! Fault injection on the real disk: the store's file I/O goes through
//! `FaultDisk`, the real `StdDisk` (real files, real fsync) that fails one
//! chosen call. A failure at every I/O step of every workload, then a
//! reopen: every acknowledged write is there, an unacknowledged one only
//! if its outcome was reported unknown.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use steward_store::{
    Disk, DiskFile, Error, LockHold, ManualClock, Meta, Perms, Site, StdDisk, Store,
};

use crate::temp_store;
use crate::workload::{Model, START_MS, Step, run_step, workloads};

/// The kinds of call a `Disk` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Read,
    Create,
    Open,
    Rename,
    Remove,
    SyncDir,
    Metadata,
    Lock,
    Exists,
    CreateDir,
    WriteAt,
    SetLen,
    Size,
    SyncData,
    SyncAll,
}

impl Call {
    /// The error a failing call of this kind gets: EMFILE for opening
    /// (a process that leaks descriptors), ENOSPC for writing, EIO else.
    fn error(self) -> std::io::Error {
        let code = match self {
            Call::Create | Call::Open | Call::Lock => 24,
            Call::WriteAt => 28,
            _ => 5,
        };
        std::io::Error::from_raw_os_error(code)
    }
}

type Rule = dyn Fn(u64, Call, &Path) -> bool + Send + Sync;

/// The real disk, failing the calls `rule` picks (by step number, kind
/// and path) without making them.
#[derive(Clone)]
pub(crate) struct FaultDisk(Arc<Inner>);

struct Inner {
    steps: AtomicU64,
    rule: Box<Rule>,
    calls: Mutex<Vec<(Call, PathBuf)>>,
}

impl std::fmt::Debug for FaultDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultDisk")
    }
}

impl FaultDisk {
    pub(crate) fn new(rule: impl Fn(u64, Call, &Path) -> bool + Send + Sync + 'static) -> Self {
        FaultDisk(Arc::new(Inner {
            steps: AtomicU64::new(0),
            rule: Box::new(rule),
            calls: Mutex::new(Vec::new()),
        }))
    }

    /// The calls made so far, in order.
    pub(crate) fn calls(&self) -> Vec<(Call, PathBuf)> {
        self.0.calls.lock().unwrap().clone()
    }
}

impl Inner {
    fn step(&self, call: Call, path: &Path) -> std::io::Result<()> {
        let n = self.steps.fetch_add(1, Ordering::SeqCst);
        self.calls.lock().unwrap().push((call, path.to_path_buf()));
        if (self.rule)(n, call, path) {
            return Err(call.error());
        }
        Ok(())
    }
}

impl Disk for FaultDisk {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.0.step(Call::Read, path)?;
        StdDisk.read(path)
    }

    fn create(&self, path: &Path, perms: Perms) -> std::io::Result<Box<dyn DiskFile>> {
        self.0.step(Call::Create, path)?;
        let file = StdDisk.create(path, perms)?;
        Ok(Box::new(FaultFile(
            Arc::clone(&self.0),
            path.to_path_buf(),
            file,
        )))
    }

    fn open(&self, path: &Path) -> std::io::Result<Box<dyn DiskFile>> {
        self.0.step(Call::Open, path)?;
        let file = StdDisk.open(path)?;
        Ok(Box::new(FaultFile(
            Arc::clone(&self.0),
            path.to_path_buf(),
            file,
        )))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.step(Call::Rename, from)?;
        StdDisk.rename(from, to)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.0.step(Call::Remove, path)?;
        StdDisk.remove(path)
    }

    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.0.step(Call::Exists, path)?;
        StdDisk.exists(path)
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.0.step(Call::CreateDir, path)?;
        StdDisk.create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path, site: Site) -> std::io::Result<()> {
        self.0.step(Call::SyncDir, dir)?;
        StdDisk.sync_dir(dir, site)
    }

    fn metadata(&self, path: &Path) -> std::io::Result<Meta> {
        self.0.step(Call::Metadata, path)?;
        StdDisk.metadata(path)
    }

    fn lock(&self, path: &Path, perms: Perms) -> std::io::Result<Option<LockHold>> {
        self.0.step(Call::Lock, path)?;
        StdDisk.lock(path, perms)
    }
}

struct FaultFile(Arc<Inner>, PathBuf, Box<dyn DiskFile>);

impl std::fmt::Debug for FaultFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultFile({})", self.1.display())
    }
}

impl DiskFile for FaultFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.0.step(Call::WriteAt, &self.1)?;
        self.2.write_at(offset, bytes)
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.0.step(Call::SetLen, &self.1)?;
        self.2.set_len(len)
    }

    fn size(&self) -> std::io::Result<u64> {
        self.0.step(Call::Size, &self.1)?;
        self.2.size()
    }

    fn sync_data(&mut self, site: Site) -> std::io::Result<()> {
        self.0.step(Call::SyncData, &self.1)?;
        self.2.sync_data(site)
    }

    fn sync_all(&mut self, site: Site) -> std::io::Result<()> {
        self.0.step(Call::SyncAll, &self.1)?;
        self.2.sync_all(site)
    }
}

/// Opens the store at `path` on `disk`; a failing open is tried once more
/// (every fault here is one call).
fn open(path: &Path, clock: &ManualClock, disk: &FaultDisk) -> Result<Store, Error> {
    let build = || {
        Store::builder(path)
            .clock(Arc::new(clock.clone()))
            .disk(Arc::new(disk.clone()))
            .build()
    };
    build().or_else(|_| build())
}

/// Runs `steps` on a fresh memory with the I/O call numbered `fail_at`
/// failing, reopens on the plain disk and checks against the model.
/// Returns the calls made (for the dry run) and the acknowledged writes.
fn run(steps: &[Step], fail_at: Option<u64>) -> Result<(Vec<(Call, PathBuf)>, usize), String> {
    let (_d, path) = temp_store();
    let clock = ManualClock::new(START_MS);
    let disk = FaultDisk::new(move |n, _, _| Some(n) == fail_at);
    let mut model = Model::default();
    let mut store = open(&path, &clock, &disk).map_err(|e| format!("open: {e}"))?;
    for step in steps {
        match step {
            Step::Reopen | Step::CutAfterDirSync(_) | Step::CloseReopen => {
                // The real disk cannot lose power: a cut is a plain reopen.
                if let Step::CutAfterDirSync(syncs) = step {
                    assert!(*syncs > 0);
                }
                if matches!(step, Step::CloseReopen) {
                    let _ = store.close_blocking();
                }
                drop(store);
                store = open(&path, &clock, &disk).map_err(|e| format!("reopen: {e}"))?;
            }
            _ => {
                let now = clock.now_ms_for_test();
                let result = run_step(&store, &clock, step);
                model.record(step, &result, now);
            }
        }
    }
    drop(store);
    let again = Store::builder(&path)
        .clock(Arc::new(clock.clone()))
        .build()
        .map_err(|e| format!("final open: {e}"))?;
    model.check(&again, clock.now_ms_for_test())?;
    Ok((disk.calls(), model.acked))
}

/// Reads a `ManualClock` (the `Clock` trait's method, named for clarity).
trait NowForTest {
    fn now_ms_for_test(&self) -> u64;
}

impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> u64 {
        steward_store::Clock::now_ms(self)
    }
}

/// Every I/O call of every workload fails once in turn (failing rename,
/// directory fsync, fdatasync, fsync, write, open with EMFILE ...); the
/// memory reopened afterwards holds every acknowledged write, and an
/// unacknowledged one (a reset too) only if it was reported unknown.
#[test]
fn a_failure_at_any_io_step_loses_no_acknowledged_write() {
    let mut points = 0;
    for (name, steps) in workloads() {
        let (calls, _) = run(&steps, None).unwrap_or_else(|e| panic!("{name}, no fault: {e}"));
        let failures: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2u64)
                .map(|w| {
                    let (steps, calls) = (&steps, &calls);
                    s.spawn(move || {
                        (w..calls.len() as u64)
                            .step_by(2)
                            .filter_map(|k| {
                                run(steps, Some(k)).err().map(|e| {
                                    let (call, path) = &calls[k as usize];
                                    format!(
                                        "{name}: {call:?} {} (step {k}) failing: {e}",
                                        path.display()
                                    )
                                })
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        points += calls.len();
    }
    eprintln!("fault injection: {points} failing calls, each followed by a checked reopen");
    assert!(points > 300, "only {points} I/O steps");
}

/// A compaction that fails after its snapshot rename (the directory
/// fsync, the expiry or log rename, the reopening of the log with EMFILE)
/// poisons the store: the next write is refused naming the log, instead
/// of being acknowledged into a log the next open drops. The reopen
/// finishes the compaction and has everything.
#[test]
fn a_compaction_failing_after_its_snapshot_rename_poisons_the_store() {
    let cases: [(&str, Call, &str); 4] = [
        ("directory fsync", Call::SyncDir, ""),
        ("expiry file rename", Call::Rename, "memory.json.ttl.tmp"),
        ("log rename", Call::Rename, "memory.json.log.tmp"),
        ("log reopen (EMFILE)", Call::Open, "memory.json.log"),
    ];
    for (what, kind, name) in cases {
        let (_d, path) = temp_store();
        let armed = Arc::new(AtomicU64::new(0));
        let trigger = Arc::clone(&armed);
        // 1: armed; 2: the snapshot was renamed, fail the next such call; 3: failed.
        let disk = FaultDisk::new(move |_, call, p| {
            let state = trigger.load(Ordering::SeqCst);
            if state == 1 && call == Call::Rename && p.ends_with("memory.json.tmp") {
                trigger.store(2, Ordering::SeqCst);
                return false;
            }
            let hit = call == kind && (name.is_empty() || p.ends_with(name));
            hit && state == 2 && {
                trigger.store(3, Ordering::SeqCst);
                true
            }
        });
        let clock = ManualClock::new(START_MS);
        let store = open(&path, &clock, &disk).unwrap();
        store.upsert_blocking("a", 1).unwrap();
        store
            .upsert_with_ttl_blocking("t", 2, std::time::Duration::from_secs(3600))
            .unwrap();
        let disk_calls_before = disk.calls().len();
        armed.store(1, Ordering::SeqCst);
        let e = store.compact_blocking().unwrap_err();
        assert_eq!(armed.load(Ordering::SeqCst), 3, "{what}: fault not reached");
        let renamed = disk.calls()[disk_calls_before..]
            .iter()
            .any(|(c, p)| *c == Call::Rename && p.ends_with("memory.json.tmp"));
        assert!(renamed, "{what}: failed before the snapshot rename: {e}");
        match store.upsert_blocking("b", 3) {
            Err(Error::Poisoned { path: p }) => {
                assert_eq!(p, store.log_path(), "{what}");
            }
            other => panic!("{what}: write after a half-done compaction: {other:?}"),
        }
        drop(store);
        let again = Store::builder(&path)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        assert_eq!(again.get("a"), Some(serde_json::json!(1)), "{what}");
        let ttl = again.entries_with_ttl();
        assert!(
            ttl.iter().any(|e| e.key == "t" && e.ttl.is_some()),
            "{what}: {ttl:?}"
        );
        assert!(!again.contains_key("b"), "{what}");
        // The reopened store goes on normally.
        again.upsert_blocking("c", 4).unwrap();
        again.compact_blocking().unwrap();
    }
}

/// A disk whose log fdatasync fails once armed (EIO), for the
/// "outcome unknown" test.
pub(crate) fn failing_log_sync(armed: Arc<std::sync::atomic::AtomicBool>) -> FaultDisk {
    FaultDisk::new(move |_, call, path| {
        call == Call::SyncData && path.ends_with("memory.json.log") && armed.load(Ordering::SeqCst)
    })
}
