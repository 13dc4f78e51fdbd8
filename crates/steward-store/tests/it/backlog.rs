//! Writes queued by the async methods are bounded: with the writer held in
//! an fsync, the queue takes `max_queued_writes` and refuses the rest at
//! once with a typed error; nothing of a refused write is applied. The
//! writes waiting behind it are committed in batches of at most
//! `max_batch_bytes`.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use steward_store::{Error, Store, StoreBuilder, StoreConfig, WriteFuture};

use crate::faults::{Call, FaultDisk};
use crate::{block_on, temp_store};

/// A store whose first log fsync waits for the test's word: the writes
/// queued meanwhile are committed together once it is given.
fn held_store(builder: StoreBuilder) -> (Store, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let gate = Mutex::new(Some((entered_tx, released)));
    let disk = FaultDisk::new(move |_, call, p: &Path| {
        let is_log = p.to_string_lossy().ends_with(".log");
        if call == Call::SyncData
            && is_log
            && let Some((entered, released)) = gate.lock().unwrap().take()
        {
            entered.send(()).unwrap();
            released.recv().unwrap();
        }
        false
    });
    let store = builder.disk(Arc::new(disk)).build().unwrap();
    (store, entered, release)
}

/// Waits until the held first write is in its fsync. The bound is no timing
/// assertion: a write refused before its fsync (a bug) fails the test here
/// instead of hanging it.
fn reached_fsync(entered: &mpsc::Receiver<()>) {
    entered
        .recv_timeout(Duration::from_secs(60))
        .expect("the first write never reached its log fsync");
}

/// Writes `k0` (2 + 1 + 9 bytes in the log), held in its fsync, lets
/// `queue` queue async writes behind it, lets it go, and returns the
/// queued writes' results.
fn behind_a_held_write(
    builder: StoreBuilder,
    queue: impl FnOnce(&Store) -> Vec<WriteFuture>,
) -> (Store, Vec<steward_store::Result<bool>>) {
    let (store, entered, release) = held_store(builder);
    let first = store.upsert("k0", 0);
    reached_fsync(&entered);
    let queued = queue(&store);
    release.send(()).unwrap();
    assert!(block_on(first).unwrap());
    let results = queued.into_iter().map(block_on).collect();
    (store, results)
}

/// Three async writes of 11 bytes each (`"a"`..`"c"` set to a digit: key
/// 1 + JSON 1 + 9).
fn three(store: &Store) -> Vec<WriteFuture> {
    ["a", "b", "c"]
        .iter()
        .zip(1..)
        .map(|(k, v)| store.upsert(k, v))
        .collect()
}

/// The batches (first write's included) and the largest one when the three
/// writes queue under `max_batch_bytes`.
fn batches_under(max_batch_bytes: usize) -> (u64, u64) {
    let (_dir, path) = temp_store();
    let mut config = StoreConfig::default();
    config.max_batch_bytes = max_batch_bytes;
    let (store, results) = behind_a_held_write(Store::builder(&path).config(config), three);
    for r in results {
        assert!(r.unwrap());
    }
    assert_eq!(store.len(), 4);
    let stats = store.stats();
    (stats.batches, stats.largest_batch)
}

#[test]
fn a_batch_takes_writes_up_to_max_batch_bytes_exactly() {
    // Two of the three fill 22 bytes exactly: one batch of two, then one.
    assert_eq!(batches_under(22), (3, 2));
    // A byte less and each goes alone.
    assert_eq!(batches_under(21), (4, 1));
    // Room for all three: one batch.
    assert_eq!(batches_under(33), (2, 3));
}

#[test]
fn async_writes_beyond_the_queue_bound_are_refused_while_the_writer_is_busy() {
    let (_dir, path) = temp_store();
    let (store, results) = behind_a_held_write(Store::builder(&path).max_queued(4, 1 << 20), |s| {
        (1..=10).map(|i| s.upsert(&format!("k{i}"), i)).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 4, "{results:?}");
    for r in &results[4..] {
        match r {
            Err(e @ Error::QueueFull { writes: 4, .. }) => {
                assert!(e.to_string().contains("memory.json"), "{e}");
            }
            other => panic!("expected QueueFull, got {other:?}"),
        }
    }
    assert_eq!(store.len(), 5);
    assert_eq!(store.get("k5"), None);
    assert_eq!(store.stats().queue_full, 6);
    // Blocking writes are not refused.
    assert!(store.upsert_blocking("blocking", 1).unwrap());
}

/// The queue's bound in bytes: with the writer held, writes of 11 bytes
/// each (key 1 + JSON 1 + 9) queue up to 30 bytes, the third is refused
/// naming the bytes queued, and the queue takes writes again once drained.
#[test]
fn async_writes_beyond_the_queued_bytes_are_refused() {
    let (_dir, path) = temp_store();
    let (store, results) = behind_a_held_write(Store::builder(&path).max_queued(100, 30), three);
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    match &results[2] {
        Err(Error::QueueFull {
            writes: 2,
            bytes: 22,
            ..
        }) => {}
        other => panic!("expected QueueFull at 22 bytes, got {other:?}"),
    }
    assert_eq!(store.get("c"), None);
    assert!(
        block_on(store.upsert("c", 3)).unwrap(),
        "drained: taken again"
    );
}

/// What the queue's bound (and a batch's) counts for a write is what its
/// records take in the log, for every kind of write: read from the refusal
/// of a write queued behind it, and from the log's growth.
#[test]
fn a_write_counts_the_bytes_its_log_records_take() {
    type Write = fn(&Store) -> WriteFuture;
    let cases: [(&str, Write); 6] = [
        ("upsert", |s| s.upsert("name", "Ada")),
        ("create", |s| s.create("name", "Ada")),
        ("update", |s| s.update("k0", json!([1, 2, 3]))),
        ("upsert with a TTL", |s| {
            s.upsert_with_ttl("session", true, Duration::from_secs(60))
        }),
        ("delete", |s| s.delete("k0")),
        ("reset", |s| s.reset()),
    ];
    for (what, write) in cases {
        let (_dir, path) = temp_store();
        let mut header = 0;
        let (store, results) = behind_a_held_write(Store::builder(&path).max_queued(100, 1), |s| {
            // The held first write counts its frame only once synced.
            header = s.stats().log_bytes;
            vec![write(s), s.upsert("probe", 0)]
        });
        assert!(*results[0].as_ref().unwrap(), "{what}");
        let cost = match &results[1] {
            Err(Error::QueueFull {
                writes: 1, bytes, ..
            }) => *bytes as u64,
            other => panic!("{what}: expected QueueFull, got {other:?}"),
        };
        let two_frames = store.stats().log_bytes - header;
        // A frame's own bytes, from one more of a known write (key 1 +
        // JSON 1 + 9); `k0` set to 0 is 2 + 1 + 9.
        store.upsert_blocking("z", 1).unwrap();
        let frame = store.stats().log_bytes - header - two_frames - 11;
        assert_eq!(two_frames, (frame + 12) + (frame + cost), "{what}");
    }
}

/// A disk that panics in the writer thread's fsync (a bug in a user's
/// `Disk`) fails the async writes waiting on that thread with an error
/// instead of leaving them waiting forever.
#[test]
fn a_writer_thread_that_panics_fails_its_waiters() {
    let (_dir, path) = temp_store();
    let disk = FaultDisk::new(|_, call, p: &Path| {
        let is_log = p.to_string_lossy().ends_with(".log");
        assert!(!(call == Call::SyncData && is_log), "a disk bug");
        false
    });
    let store = Store::builder(&path).disk(Arc::new(disk)).build().unwrap();
    let write = store.upsert("k", 1);
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || done.send(block_on(write)));
    let result = result
        .recv_timeout(Duration::from_secs(60))
        .expect("the write's waiter was left waiting");
    assert!(matches!(result, Err(Error::Closed { .. })), "{result:?}");
}

/// Within one batch the key cap counts only the writes that add a key:
/// replacing a key twice and adding one fill a cap of two, the next new
/// key is refused.
#[test]
fn the_key_cap_counts_only_new_keys_within_a_batch() {
    let (_dir, path) = temp_store();
    let (store, results) = behind_a_held_write(Store::builder(&path).max_keys(2), |s| {
        vec![
            s.upsert("k0", 1),
            s.upsert("k0", 2),
            s.upsert("b", 1),
            s.upsert("c", 1),
        ]
    });
    assert!(results[..3].iter().all(|r| r.is_ok()), "{results:?}");
    assert!(
        matches!(results[3], Err(Error::TooManyKeys { .. })),
        "{results:?}"
    );
    assert_eq!(store.stats().batches, 2, "the four went in one batch");
    assert_eq!(store.list_keys(), ["k0", "b"]);
}

/// Writes to one key within one batch each see the ones before them, as
/// they would one by one: a second create finds the key, a delete removes
/// it for the next, an update then finds nothing (and one that changed
/// nothing leaves the key as it was).
#[test]
fn writes_within_a_batch_see_the_ones_before_them() {
    let (_dir, path) = temp_store();
    let (store, results) = behind_a_held_write(Store::builder(&path), |s| {
        vec![
            s.create("a", 1),
            s.create("a", 2),
            s.delete("a"),
            s.delete("a"),
            s.update("a", 3),
            s.upsert("a", 4),
            // A write that changed nothing leaves the key as it was.
            s.update("b", 1),
            s.create("b", 2),
        ]
    });
    let answers: Vec<bool> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        answers,
        [true, false, true, false, false, true, false, true]
    );
    assert_eq!(store.stats().batches, 2, "the eight went in one batch");
    assert_eq!(store.get("a"), Some(json!(4)));
}
