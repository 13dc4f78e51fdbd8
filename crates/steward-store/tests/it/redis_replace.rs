//! `RedisStore::replace_all` against a real `redis-server`: every entry
//! checked before anything is sent, then the namespace replaced in order,
//! TTL entries with their time, subscribers told.

use std::time::Duration;

use serde_json::{Value, json};
use steward_store::{Change, Entry, Error, RedisStore};

use crate::redis_server::RedisServer;

fn entry(key: &str, value: Value, ttl: Option<Duration>) -> Entry {
    Entry::new(key, value, ttl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_all_checks_every_entry_then_replaces_the_namespace() {
    let server = RedisServer::start();
    let s = RedisStore::builder(server.url())
        .namespace("replace")
        .max_value_bytes(64)
        .max_keys(3)
        .build()
        .await
        .unwrap();
    s.upsert("old", 1).await.unwrap();
    let big = entry("big", json!("x".repeat(100)), None);
    let e = s
        .replace_all(&[entry("a", json!(1), None), big])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ValueTooLarge { .. }), "{e}");
    let four: Vec<Entry> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| entry(k, json!(0), None))
        .collect();
    let e = s.replace_all(&four).await.unwrap_err();
    assert!(matches!(e, Error::TooManyKeys { limit: 3, .. }), "{e}");
    assert_eq!(
        s.list_keys().await.unwrap(),
        ["old"],
        "refused: nothing sent"
    );

    let mut sub = s.subscribe("*").await.unwrap();
    let hour = Duration::from_secs(3600);
    let held = s
        .replace_all(&[
            entry("b", json!(2), None),
            entry("a", json!([1]), Some(hour)),
        ])
        .await
        .unwrap();
    assert_eq!(held, 1);
    let after = s.entries_with_ttl().await.unwrap();
    let keys: Vec<&str> = after.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["b", "a"]);
    assert_eq!(after[0].ttl, None);
    let left = after[1].ttl.expect("a keeps its TTL");
    assert!(left <= hour && left > hour / 2, "{left:?}");
    let mut changes = Vec::new();
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(30), sub.next()).await;
        changes.push(next.expect("a change within 30 s").expect("open"));
    }
    assert_eq!(
        changes,
        [
            (String::new(), Change::Reset),
            ("b".to_string(), Change::Set(json!(2))),
            ("a".to_string(), Change::Set(json!([1]))),
        ]
    );
}
