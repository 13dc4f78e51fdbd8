//! SIGKILL a real writer process at random moments; every acknowledged
//! write must be there and the store must always open.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use rand::RngExt;
use steward_store::Store;

use crate::child::{crash_key, spawn, unique_key};
use crate::temp_store;

fn trials() -> usize {
    std::env::var("STEWARD_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let (_d, path) = temp_store();
    let mut rng = rand::rng();
    // Highest acknowledged i per (thread, key), and every acknowledged unique key.
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut unique: Vec<String> = Vec::new();
    let mut total_acks = 0usize;
    for trial in 0..trials() {
        let mut child = spawn(&format!("crash={}", trial * 10_000_000), &path, None);
        let stdout = child.stdout.take().expect("stdout");
        // Only `@` lines are the child's; the test harness prints too.
        let mut lines = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix('@').map(str::to_string));
        // Sometimes kill while the child is still opening (recovering).
        let early = rng.random_bool(0.2);
        if !early {
            let first = lines.next().unwrap_or_default();
            assert_eq!(
                first, "ready",
                "trial {trial}: child could not open the store"
            );
        }
        // The kill's moment, not a synchronisation: anywhere in the writes.
        std::thread::sleep(Duration::from_micros(rng.random_range(0..60_000)));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        for line in lines {
            let mut parts = line.split(' ');
            match parts.next() {
                Some("ack") => {}
                Some("ready") => continue,
                _ => panic!("trial {trial}: child said {line:?}"),
            }
            let t: usize = parts.next().and_then(|p| p.parse().ok()).expect("t");
            let i: usize = parts.next().and_then(|p| p.parse().ok()).expect("i");
            total_acks += 1;
            let best = acked.entry(crash_key(t, i)).or_insert(0);
            *best = (*best).max(i as u64);
            if i.is_multiple_of(7) {
                unique.push(unique_key(t, i));
            }
        }
        // The next trial goes on from whatever state this one left.
        let store = Store::open(&path)
            .unwrap_or_else(|e| panic!("trial {trial}: store does not open after SIGKILL: {e}"));
        for (key, i) in &acked {
            let v = store
                .get(key)
                .unwrap_or_else(|| panic!("trial {trial}: acknowledged key {key} lost"));
            let got = v["i"].as_u64().expect("i");
            assert!(
                got >= *i,
                "trial {trial}: {key} went back from {i} to {got}"
            );
        }
        for key in &unique {
            assert!(
                store.contains_key(key),
                "trial {trial}: acknowledged {key} lost"
            );
        }
    }
    eprintln!(
        "crash test: {} trials, {total_acks} acknowledged writes checked",
        trials()
    );
    assert!(total_acks > 0, "no child ever acknowledged a write");
}
