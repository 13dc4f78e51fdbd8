//! Writes queued by the async methods are bounded: with the writer held in
//! an fsync, the queue takes `max_queued_writes` and refuses the rest at
//! once with a typed error; nothing of a refused write is applied.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use steward_store::{Error, Store};

use crate::faults::{Call, FaultDisk};
use crate::{block_on, temp_store};

#[test]
fn async_writes_beyond_the_queue_bound_are_refused_while_the_writer_is_busy() {
    let (_dir, path) = temp_store();
    // The first log fsync tells the test it started and waits for its word.
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
    let store = Store::builder(&path)
        .disk(Arc::new(disk))
        .max_queued(4, 1 << 20)
        .build()
        .unwrap();
    let first = store.upsert("k0", 0);
    entered.recv().unwrap();
    let queued: Vec<_> = (1..=10)
        .map(|i| store.upsert(&format!("k{i}"), i))
        .collect();
    release.send(()).unwrap();
    assert!(block_on(first).unwrap());
    let results: Vec<_> = queued.into_iter().map(block_on).collect();
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
