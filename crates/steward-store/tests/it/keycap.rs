//! The cap on the number of keys: a write that would create one more is
//! refused with a typed error and changes nothing, in memory and on disk;
//! replacing and deleting still work; expired entries do not count.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steward_store::{Error, ManualClock, RedisStore, Store};

use crate::redis_server::RedisServer;
use crate::{block_on, temp_store};

fn refused(r: steward_store::Result<bool>, key: &str, limit: usize) {
    match r {
        Err(Error::TooManyKeys {
            key: k, limit: l, ..
        }) => assert_eq!((k.as_str(), l), (key, limit)),
        other => panic!("{key}: expected TooManyKeys, got {other:?}"),
    }
}

#[test]
fn a_file_store_at_its_cap_refuses_new_keys_and_keeps_nothing_of_them() {
    let (_dir, path) = temp_store();
    let store = Store::builder(&path).max_keys(3).build().unwrap();
    for k in ["a", "b", "c"] {
        assert!(store.create_blocking(k, 1).unwrap());
    }
    refused(store.upsert_blocking("d", 1), "d", 3);
    refused(store.create_blocking("e", 1), "e", 3);
    let e = store.upsert_blocking("d", 1).unwrap_err();
    assert!(
        e.to_string().contains(&path.display().to_string()) && e.to_string().contains("\"d\""),
        "the error names the store and the key: {e}"
    );
    // Replacing is not creating; a delete makes room.
    assert!(!store.upsert_blocking("a", 2).unwrap());
    assert!(store.update_blocking("b", 2).unwrap());
    assert!(store.delete_blocking("c").unwrap());
    assert!(store.upsert_blocking("d", 1).unwrap());
    assert_eq!(store.list_keys(), ["a", "b", "d"]);
    assert_eq!(store.stats().keys_refused, 3);
    drop(store);
    // Nothing of a refused write reached the log.
    let store = Store::builder(&path).max_keys(3).build().unwrap();
    assert_eq!(store.list_keys(), ["a", "b", "d"]);
    assert_eq!(store.get("e"), None);
}

#[test]
fn one_batch_admits_exactly_up_to_the_cap() {
    let (_dir, path) = temp_store();
    let store = Store::builder(&path).max_keys(5).build().unwrap();
    // Queued without waiting: they commit together (a batch or a few).
    let writes: Vec<_> = (0..12).map(|i| store.upsert(&format!("k{i}"), i)).collect();
    let results: Vec<_> = writes.into_iter().map(block_on).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(true) | Err(Error::TooManyKeys { limit: 5, .. })))
    );
    assert_eq!(store.len(), 5);
    assert_eq!(store.stats().keys_refused, 7);
}

#[test]
fn expired_entries_do_not_count() {
    let (_dir, path) = temp_store();
    let clock = ManualClock::new(1_000_000);
    let store = Store::builder(&path)
        .max_keys(2)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    store.upsert_blocking("kept", 1).unwrap();
    store
        .upsert_with_ttl_blocking("brief", 1, Duration::from_secs(1))
        .unwrap();
    refused(store.upsert_blocking("new", 1), "new", 2);
    clock.advance(Duration::from_secs(2));
    assert!(store.upsert_blocking("new", json!({"x": 1})).unwrap());
    assert_eq!(store.list_keys(), ["kept", "new"]);
}

#[test]
fn a_zero_cap_is_a_config_error() {
    let (_dir, path) = temp_store();
    let e = Store::builder(&path).max_keys(0).build().unwrap_err();
    assert!(e.to_string().contains("max_keys"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_namespace_at_its_cap_refuses_new_keys() {
    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .namespace("capped")
        .max_keys(2)
        .build()
        .await
        .unwrap();
    assert!(store.create("a", 1).await.unwrap());
    assert!(store.upsert("b", 1).await.unwrap());
    refused(store.upsert("c", 1).await, "c", 2);
    refused(store.create("c", 1).await, "c", 2);
    assert!(!store.upsert("a", 2).await.unwrap());
    assert_eq!(store.list_keys().await.unwrap(), ["a", "b"]);
    assert_eq!(store.get("c").await.unwrap(), None);
    // Another namespace has its own count.
    let other = RedisStore::builder(server.url())
        .namespace("other")
        .max_keys(2)
        .build()
        .await
        .unwrap();
    assert!(other.upsert("c", 1).await.unwrap());
    assert!(store.delete("a").await.unwrap());
    assert!(store.upsert("c", 1).await.unwrap());
    assert_eq!(store.stats().keys_refused, 2);
    let e = store.upsert("d", 1).await.unwrap_err();
    assert!(e.to_string().contains("ns=capped"), "{e}");
}
