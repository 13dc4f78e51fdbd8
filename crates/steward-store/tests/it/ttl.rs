//! TTL entries and change subscriptions on the file store, with a manual
//! clock (no sleeping on the wall clock).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steward_store::{Backend, Change, ManualClock, Store};

const T0: u64 = 1_700_000_000_000;

fn open(path: &std::path::Path, clock: &ManualClock) -> Store {
    Store::builder(path)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

#[test]
fn expired_entries_are_invisible_at_once_and_swept() {
    let (_d, path) = crate::temp_store();
    let clock = ManualClock::new(T0);
    let store = open(&path, &clock);
    let mut sub = store.subscribe("*");
    store.upsert_blocking("keep", 1).unwrap();
    assert!(
        store
            .upsert_with_ttl_blocking("fact", "sunny", Duration::from_secs(1))
            .unwrap()
    );
    store.upsert_blocking("after", 2).unwrap();
    clock.advance(Duration::from_millis(999));
    assert_eq!(store.get("fact"), Some(json!("sunny")));
    assert_eq!(store.list_keys(), ["keep", "fact", "after"]);
    clock.advance(Duration::from_millis(1));
    // Every read path hides it at once.
    assert_eq!(store.get("fact"), None);
    assert!(!store.contains_key("fact"));
    assert_eq!(store.get_as::<String>("fact").unwrap(), None);
    assert_eq!(store.list_keys(), ["keep", "after"]);
    assert_eq!(store.len(), 2);
    assert_eq!(store.iter().count(), 2);
    assert!(!store.to_map().contains_key("fact"));
    assert!(!store.render_prompt(&["*"]).contains("fact"));
    assert!(!store.update_blocking("fact", "x").unwrap());
    assert_eq!(store.stats().ttl_entries, 1);
    // Swept for good, once, and told to subscribers.
    assert_eq!(store.sweep_expired_blocking().unwrap(), 1);
    assert_eq!(store.sweep_expired_blocking().unwrap(), 0);
    assert_eq!(store.stats().ttl_entries, 0);
    assert_eq!(store.stats().expired, 1);
    let got: Vec<_> = std::iter::from_fn(|| sub.try_next()).collect();
    assert_eq!(
        got,
        [
            ("keep".into(), Change::Set(json!(1))),
            ("fact".into(), Change::Set(json!("sunny"))),
            ("after".into(), Change::Set(json!(2))),
            ("fact".into(), Change::Expired),
        ]
    );
    drop(store);
    let store = open(&path, &clock);
    assert_eq!(store.list_keys(), ["keep", "after"]);
}

#[test]
fn an_expired_key_comes_back_last_and_a_plain_write_makes_it_permanent() {
    let (_d, path) = crate::temp_store();
    let clock = ManualClock::new(T0);
    let store = open(&path, &clock);
    store
        .upsert_with_ttl_blocking("a", 1, Duration::from_millis(10))
        .unwrap();
    store.upsert_blocking("b", 2).unwrap();
    clock.advance(Duration::from_millis(10));
    // Expired counts as absent: create succeeds and the key goes last.
    assert!(store.create_blocking("a", 3).unwrap());
    assert_eq!(store.list_keys(), ["b", "a"]);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(store.get("a"), Some(json!(3)));
    store
        .upsert_with_ttl_blocking("b", 4, Duration::from_millis(5))
        .unwrap();
    assert!(!store.upsert_blocking("b", 5).unwrap());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(store.get("b"), Some(json!(5)));
    // Replay agrees with memory (order and values).
    drop(store);
    let store = open(&path, &clock);
    assert_eq!(store.list_keys(), ["b", "a"]);
    assert_eq!(
        store.to_map(),
        serde_json::from_value(json!({"b": 5, "a": 3})).unwrap()
    );
}

#[test]
fn expiries_survive_reopen_and_compaction_and_memory_json_stays_plain() {
    let (dir, path) = crate::temp_store();
    let clock = ManualClock::new(T0);
    let store = open(&path, &clock);
    store.upsert_blocking("name", "Ada").unwrap();
    store
        .upsert_with_ttl_blocking("weather", "rain", Duration::from_secs(60))
        .unwrap();
    // Through the log only.
    drop(store);
    let store = open(&path, &clock);
    assert_eq!(store.get("weather"), Some(json!("rain")));
    // Through the snapshot and its sidecar.
    store.close_blocking().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\n  \"name\": \"Ada\",\n  \"weather\": \"rain\"\n}"
    );
    let sidecar = std::fs::read_to_string(dir.path().join("memory.json.ttl")).unwrap();
    let rain = crc32fast::hash(b"\"rain\"");
    assert_eq!(sidecar, format!("{{\"weather\":[{},{rain}]}}", T0 + 60_000));
    let store = open(&path, &clock);
    assert_eq!(store.get("weather"), Some(json!("rain")));
    clock.advance(Duration::from_secs(60));
    assert_eq!(store.get("weather"), None);
    // A compaction after the expiry drops it from memory.json.
    store.close_blocking().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\n  \"name\": \"Ada\"\n}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("memory.json.ttl")).unwrap(),
        "{}"
    );
}

#[test]
fn subscriptions_see_every_change_once_in_order_across_handles() {
    let (_d, path) = crate::temp_store();
    let store = Store::open(&path).unwrap();
    let mut users = store.subscribe("user_*");
    let mut small = store.subscribe_with_capacity("*", 3);
    let writer = store.clone();
    let t = std::thread::spawn(move || {
        for i in 0..100 {
            writer
                .upsert_blocking(&format!("user_{}", i % 7), i)
                .unwrap();
            if i % 10 == 0 {
                writer.delete_blocking(&format!("user_{}", i % 7)).unwrap();
            }
        }
        writer.upsert_blocking("other", 1).unwrap();
        writer.reset_blocking().unwrap();
    });
    t.join().unwrap();
    let mut expect = Vec::new();
    for i in 0..100 {
        let k = format!("user_{}", i % 7);
        expect.push((k.clone(), Change::Set(json!(i))));
        if i % 10 == 0 {
            expect.push((k, Change::Deleted));
        }
    }
    expect.push((String::new(), Change::Reset));
    let got: Vec<_> = std::iter::from_fn(|| users.next_blocking(Duration::from_secs(30)))
        .take(expect.len())
        .collect();
    assert_eq!(got, expect);
    assert_eq!(users.dropped(), 0);
    // A slow consumer's buffer is bounded: the rest is counted, not kept.
    assert_eq!(std::iter::from_fn(|| small.try_next()).count(), 3);
    assert_eq!(small.dropped(), expect.len() as u64 + 1 - 3);
    // Closing ends the subscriptions.
    store.close_blocking().unwrap();
    assert!(users.is_closed());
    assert_eq!(users.next_blocking(Duration::from_secs(30)), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_through_the_seam() {
    let (_d, path) = crate::temp_store();
    let b: Box<dyn Backend> = steward_store::open_backend(path.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        b.location(),
        path.display().to_string(),
        "named by its file"
    );
    let mut sub = b.subscribe("*").await.unwrap();
    assert!(b.create("k", json!(1)).await.unwrap());
    assert!(
        b.upsert_with_ttl("t", json!(2), Duration::from_secs(3600))
            .await
            .unwrap()
    );
    assert_eq!(b.sweep_expired().await.unwrap(), 0);
    assert_eq!(b.list_keys().await.unwrap(), ["k", "t"]);
    assert_eq!(
        b.render_prompt(&["k".to_string()]).await.unwrap(),
        "<memory>\n<item key=\"k\">1</item>\n</memory>"
    );
    assert_eq!(sub.next().await, Some(("k".into(), Change::Set(json!(1)))));
    b.close().await.unwrap();
}

#[test]
fn entries_list_the_time_left_and_load_hides_what_expired() {
    let (_d, path) = crate::temp_store();
    // The store's clock is the real one here: `load_with_ttl` reads the
    // files from outside and judges by the system clock.
    let store = Store::open(&path).unwrap();
    store.upsert_blocking("keep", 1).unwrap();
    store
        .upsert_with_ttl_blocking("soon", "gone", Duration::from_millis(1))
        .unwrap();
    store
        .upsert_with_ttl_blocking("later", "here", Duration::from_secs(3600))
        .unwrap();
    // Real time on purpose (see above): the 1 ms TTL lapses.
    std::thread::sleep(Duration::from_millis(20));
    let entries = store.entries_with_ttl();
    let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["keep", "later"]);
    assert_eq!(entries[0].ttl, None);
    let left = entries[1].ttl.expect("later keeps its TTL");
    assert!(left <= Duration::from_secs(3600) && left > Duration::from_secs(3000));
    // Read from outside while the store is open: the same view.
    let outside = steward_store::load_with_ttl(&path).unwrap();
    assert_eq!(
        outside.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["keep", "later"]
    );
    assert!(outside[1].ttl.is_some_and(|t| t <= left));
    let map = steward_store::load(&path).unwrap();
    assert!(!map.contains_key("soon"), "load shows an expired entry");
    assert_eq!(map.len(), 2);
}
