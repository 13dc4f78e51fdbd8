//! The Redis backend against a real `redis-server`: namespaces, many
//! processes, a server killed and restarted under writes, TTL entries and
//! change subscriptions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use steward_store::{Change, Error, RedisStore, Subscription};

use crate::child;
use crate::redis_server::RedisServer;

pub(crate) async fn open(server: &RedisServer, ns: &str) -> RedisStore {
    RedisStore::builder(server.url())
        .namespace(ns)
        .pool_size(4)
        .build()
        .await
        .expect("open redis store")
}

/// The next change, or a panic after a generous wait.
pub(crate) async fn next_change(sub: &mut Subscription) -> (String, Change) {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a change within 30 s")
        .expect("subscription open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_semantics_as_the_file_store() {
    let server = RedisServer::start();
    let s = open(&server, "basic").await;
    assert!(s.create("user_name", "Ada").await.unwrap());
    assert!(!s.create("user_name", "Bob").await.unwrap());
    assert!(s.upsert("coffee", 0.75).await.unwrap());
    assert!(!s.upsert("coffee", 1).await.unwrap());
    assert!(s.set_as("reminders", &vec!["dentist"]).await.unwrap());
    assert!(!s.update("missing", 1).await.unwrap());
    assert!(s.update("user_name", "Ada L.").await.unwrap());
    assert_eq!(s.get("user_name").await.unwrap(), Some(json!("Ada L.")));
    assert_eq!(
        s.get_as::<Vec<String>>("reminders").await.unwrap().unwrap(),
        ["dentist"]
    );
    assert_eq!(
        s.list_keys().await.unwrap(),
        ["user_name", "coffee", "reminders"]
    );
    assert_eq!(
        s.render_prompt(&["user_*"]).await.unwrap(),
        "<memory>\n<item key=\"user_name\">Ada L.</item>\n</memory>"
    );
    // Delete and re-add: the key goes last.
    assert!(s.delete("user_name").await.unwrap());
    assert!(!s.delete("user_name").await.unwrap());
    s.upsert("user_name", "Eve").await.unwrap();
    assert_eq!(
        s.list_keys().await.unwrap(),
        ["coffee", "reminders", "user_name"]
    );
    // The limits are the file store's.
    assert!(matches!(
        s.upsert(&"k".repeat(5000), 1).await,
        Err(Error::KeyTooLarge { .. })
    ));
    // Typed errors name the server, never a password.
    let e = s.get_as::<u32>("user_name").await.unwrap_err();
    assert!(matches!(e, Error::Json { .. }), "{e}");
    s.reset().await.unwrap();
    assert_eq!(s.len().await.unwrap(), 0);
    let stats = s.stats();
    assert!(stats.writes >= 7 && stats.unchanged >= 3, "{stats:?}");
    assert!(stats.pool.created >= 1);
    s.close().await.unwrap();
    assert!(matches!(
        s.upsert("a", 1).await,
        Err(Error::RedisClosed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_and_bad_urls_are_typed() {
    let server = RedisServer::start();
    let port = server.port();
    drop(server);
    let e = RedisStore::builder(format!("redis://:hunter2@127.0.0.1:{port}/0"))
        .retry_for(Duration::from_millis(300))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RedisUnavailable { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let e = RedisStore::builder("redis://:hunter2@127.0.0.1:1/0?ns=")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BadUrl { .. }), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = RedisStore::builder("redis://:hunter2@127.0.0.1:1/zero")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BadUrl { .. }), "{e}");
    assert!(e.to_string().contains("\"zero\" is not a number"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = RedisStore::builder("redis://127.0.0.1:1/0")
        .batches_in_flight(0)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated() {
    let server = RedisServer::start();
    let alice = open(&server, "alice").await;
    // The namespace from the URL, through the generic opener.
    let bob = steward_store::open_backend(&server.url_ns("bob"))
        .await
        .unwrap();
    assert!(bob.location().ends_with("?ns=bob"), "{}", bob.location());
    alice.upsert("user_name", "Alice").await.unwrap();
    assert!(bob.create("user_name", json!("Bob")).await.unwrap());
    assert_eq!(alice.get("user_name").await.unwrap(), Some(json!("Alice")));
    assert_eq!(bob.get("user_name").await.unwrap(), Some(json!("Bob")));
    bob.upsert("only_bob", json!(1)).await.unwrap();
    assert_eq!(alice.list_keys().await.unwrap(), ["user_name"]);
    bob.reset().await.unwrap();
    assert_eq!(alice.len().await.unwrap(), 1);
    assert_eq!(bob.len().await.unwrap(), 0);
}

#[test]
fn many_processes_write_one_namespace() {
    let server = RedisServer::start();
    let url = server.url_ns("shared");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Process A (this one) watches what the children (B...) write.
    let (store, mut sub) = rt.block_on(async {
        let s = RedisStore::builder(url.as_str()).build().await.unwrap();
        let sub = s.subscribe("p*").await.unwrap();
        (s, sub)
    });
    const CHILDREN: usize = 6;
    let children: Vec<_> = (0..CHILDREN)
        .map(|id| child::spawn(&format!("redis-writer={id}"), Path::new(&url), None))
        .collect();
    let mut winners: HashMap<usize, Vec<usize>> = HashMap::new();
    let (mut writes, mut scripts) = (0, 0);
    for (id, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines = child::protocol(&text);
        assert!(
            lines.contains(&"done"),
            "child {id} did not finish:\n{text}"
        );
        for l in lines {
            if let Some(j) = l.strip_prefix("won ") {
                winners.entry(j.parse().unwrap()).or_default().push(id);
            }
            if let Some(b) = l.strip_prefix("batches ") {
                let (w, s) = b.split_once(' ').unwrap();
                writes += w.parse::<u64>().unwrap();
                scripts += s.parse::<u64>().unwrap();
            }
        }
    }
    // The children's concurrent writers shared script runs: the races and
    // the no-lost-update checks below held with batches in play.
    assert!(
        scripts < writes,
        "{writes} writes in {scripts} scripts: nothing was batched"
    );
    rt.block_on(async {
        // No lost update: every child's every key is there.
        for id in 0..CHILDREN {
            for i in 0..child::REDIS_KEYS_PER_CHILD {
                assert_eq!(
                    store.get(&format!("p{id}_{i}")).await.unwrap(),
                    Some(json!({ "id": id, "i": i }))
                );
            }
        }
        // Each create race had exactly one winner, and its value stands.
        for j in 0..child::REDIS_RACES {
            let w = winners.get(&j).cloned().unwrap_or_default();
            assert_eq!(w.len(), 1, "race {j} winners {w:?}");
            assert_eq!(
                store.get(&format!("race_{j}")).await.unwrap(),
                Some(json!(w[0]))
            );
        }
        assert_eq!(
            store.len().await.unwrap(),
            CHILDREN * child::REDIS_KEYS_PER_CHILD + child::REDIS_RACES
        );
        // Process A saw every write of the others, once, in order per key.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..CHILDREN * child::REDIS_KEYS_PER_CHILD {
            let (k, c) = next_change(&mut sub).await;
            assert!(matches!(c, Change::Set(_)), "{k}: {c:?}");
            *seen.entry(k).or_default() += 1;
        }
        assert_eq!(seen.len(), CHILDREN * child::REDIS_KEYS_PER_CHILD);
        assert!(seen.values().all(|&n| n == 1));
        assert_eq!(sub.try_next(), None);
        assert_eq!(sub.dropped(), 0);
    });
}

/// A write's outcome as the writer saw it.
#[derive(Debug)]
enum Outcome {
    Acked(u64),
    Unknown(u64),
    NotApplied(u64),
}

#[test]
fn server_killed_and_restarted_during_writes() {
    let mut server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = server.url_ns("crash");
    // A patient writer (rides out the restart) and an impatient one (gives
    // up fast, so it must report Unknown or NotApplied while the server is
    // down, never success).
    let patient = rt.block_on(async {
        RedisStore::builder(url.as_str())
            .retry_for(Duration::from_secs(60))
            .batches_in_flight(1)
            .build()
            .await
            .unwrap()
    });
    let impatient = rt.block_on(async {
        RedisStore::builder(url.as_str())
            .retry_for(Duration::from_millis(50))
            .dedupe_writes(false)
            .build()
            .await
            .unwrap()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let spawn_writer = |store: RedisStore, prefix: &'static str| {
        let stop = Arc::clone(&stop);
        rt.spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = store.upsert(&format!("{prefix}{i}"), json!(i)).await;
                outcomes.push(match r {
                    Ok(true) => Outcome::Acked(i),
                    Ok(false) => panic!("{prefix}{i} was new"),
                    Err(Error::RedisWriteUnknown { .. }) => Outcome::Unknown(i),
                    Err(Error::RedisWriteNotApplied { .. }) => Outcome::NotApplied(i),
                    Err(e) => panic!("unexpected error {e}"),
                });
                i += 1;
                if i.is_multiple_of(4) {
                    tokio::task::yield_now().await;
                }
            }
            outcomes
        })
    };
    // Three writers per store; the patient store sends one batch at a
    // time, so its writers' writes queue and share batches, which must
    // fail and be resent as a whole.
    let p: Vec<_> = ["pa", "pb", "pc"]
        .into_iter()
        .map(|prefix| (prefix, spawn_writer(patient.clone(), prefix)))
        .collect();
    let q: Vec<_> = ["qa", "qb", "qc"]
        .into_iter()
        .map(|prefix| (prefix, spawn_writer(impatient.clone(), prefix)))
        .collect();
    let acked_before = |store: &RedisStore| store.stats().writes;
    wait_until(|| acked_before(&patient) >= 50 && acked_before(&impatient) >= 50);
    server.kill();
    // Writes pile up against a dead server for a moment (real time on
    // purpose, not a synchronisation: the waits around it are on counts).
    std::thread::sleep(Duration::from_millis(300));
    let during = impatient.stats();
    server.restart();
    let p_mark = patient.stats().writes;
    wait_until(|| {
        patient.stats().writes >= p_mark + 50 && impatient.stats().writes >= during.writes + 50
    });
    stop.store(true, Ordering::Relaxed);
    let outcomes = |writers: Vec<(&'static str, tokio::task::JoinHandle<Vec<Outcome>>)>| {
        writers
            .into_iter()
            .map(|(prefix, w)| (prefix, rt.block_on(w).unwrap()))
            .collect::<Vec<_>>()
    };
    let p_out = outcomes(p);
    let q_out = outcomes(q);
    // The impatient writer noticed the outage; the patient one rode it out.
    assert!(
        q_out
            .iter()
            .flat_map(|(_, o)| o)
            .any(|o| matches!(o, Outcome::Unknown(_) | Outcome::NotApplied(_))),
        "impatient writers never failed"
    );
    for (prefix, o) in &p_out {
        assert!(
            o.iter().all(|o| matches!(o, Outcome::Acked(_))),
            "patient writer {prefix} failed: {:?}",
            o.iter().find(|o| !matches!(o, Outcome::Acked(_)))
        );
    }
    assert!(patient.stats().retries > 0);
    let p_stats = patient.stats();
    assert!(
        p_stats.batches < p_stats.writes,
        "the patient writers never shared a batch: {p_stats:?}"
    );
    rt.block_on(async {
        // Every acknowledged write survived the kill (appendfsync always);
        // a NotApplied write is really absent.
        let fresh = RedisStore::builder(url.as_str()).build().await.unwrap();
        for (prefix, outcomes) in p_out.iter().chain(&q_out) {
            for o in outcomes {
                match o {
                    Outcome::Acked(i) => assert_eq!(
                        fresh.get(&format!("{prefix}{i}")).await.unwrap(),
                        Some(json!(i)),
                        "acknowledged {prefix}{i} lost"
                    ),
                    Outcome::NotApplied(i) => assert_eq!(
                        fresh.get(&format!("{prefix}{i}")).await.unwrap(),
                        None,
                        "{prefix}{i} reported not applied but is there"
                    ),
                    Outcome::Unknown(i) => {
                        // Either way is fine; it must just be readable.
                        let _ = fresh.get(&format!("{prefix}{i}")).await.unwrap();
                    }
                }
            }
        }
    });
}

/// Polls `cond` (no timing assertion: only a generous upper bound).
fn wait_until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_entries_expire_natively() {
    let server = RedisServer::start();
    let s = open(&server, "ttl").await;
    let other = open(&server, "ttl").await;
    let mut sub = other.subscribe("*").await.unwrap();
    s.upsert("keep", 1).await.unwrap();
    assert!(
        s.upsert_with_ttl("fact", "sunny", Duration::from_millis(200))
            .await
            .unwrap()
    );
    s.upsert("after", 2).await.unwrap();
    // Listed with the time it has left (at most what was asked).
    let with_ttl = s.entries_with_ttl().await.unwrap();
    if let Some(fact) = with_ttl.iter().find(|e| e.key == "fact") {
        assert!(fact.ttl.is_some_and(|t| t <= Duration::from_millis(200)));
    }
    assert!(
        with_ttl
            .iter()
            .filter(|e| e.key != "fact")
            .all(|e| e.ttl.is_none())
    );
    // Until it expires the entry is an ordinary one (in order).
    let keys = s.list_keys().await.unwrap();
    assert!(
        keys == ["keep", "fact", "after"] || keys == ["keep", "after"],
        "{keys:?}"
    );
    // Once expired it is invisible everywhere at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("fact").await.unwrap().is_some() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.list_keys().await.unwrap(), ["keep", "after"]);
    assert_eq!(s.len().await.unwrap(), 2);
    assert_eq!(
        s.render_prompt(&["*"]).await.unwrap(),
        "<memory>\n<item key=\"keep\">1</item>\n<item key=\"after\">2</item>\n</memory>"
    );
    assert_eq!(
        s.sweep_expired().await.unwrap(),
        0,
        "already tidied by the reads"
    );
    // Re-adding it puts it last; a plain upsert makes it permanent.
    assert!(
        s.upsert_with_ttl("fact", "rain", Duration::from_secs(3600))
            .await
            .unwrap()
    );
    let hour = s.entries_with_ttl().await.unwrap();
    let left = hour[2].ttl.expect("fact has a TTL");
    assert!(left <= Duration::from_secs(3600) && left > Duration::from_secs(3000));
    assert!(!s.upsert("fact", "rain").await.unwrap());
    assert_eq!(s.list_keys().await.unwrap(), ["keep", "after", "fact"]);
    assert_eq!(s.entries_with_ttl().await.unwrap()[2].ttl, None);
    // The other handle saw: set keep, set fact, set after, expired fact
    // (exactly once), set fact, set fact.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next_change(&mut sub).await);
    }
    assert_eq!(
        got,
        [
            ("keep".into(), Change::Set(json!(1))),
            ("fact".into(), Change::Set(json!("sunny"))),
            ("after".into(), Change::Set(json!(2))),
            ("fact".into(), Change::Expired),
            ("fact".into(), Change::Set(json!("rain"))),
            ("fact".into(), Change::Set(json!("rain"))),
        ]
    );
    assert_eq!(sub.try_next(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_deliver_every_change_once_in_order() {
    let server = RedisServer::start();
    let writer = open(&server, "subs").await;
    let reader = open(&server, "subs").await;
    let mut all = reader.subscribe("*").await.unwrap();
    let mut users = reader.subscribe("user_*").await.unwrap();
    let elsewhere = open(&server, "elsewhere").await;
    elsewhere.upsert("user_x", 1).await.unwrap();
    let mut expect = Vec::new();
    for i in 0..50 {
        let k = format!("user_{}", i % 5);
        match i % 7 {
            0 => {
                if writer.delete(&k).await.unwrap() {
                    expect.push((k, Change::Deleted));
                }
            }
            3 => {
                if writer.create(&k, i).await.unwrap() {
                    expect.push((k, Change::Set(json!(i))));
                }
            }
            _ => {
                writer.upsert(&k, json!({ "i": i })).await.unwrap();
                expect.push((k, Change::Set(json!({ "i": i }))));
            }
        }
    }
    writer.upsert("other", true).await.unwrap();
    writer.reset().await.unwrap();
    let mut got_users = Vec::new();
    for _ in 0..expect.len() + 1 {
        got_users.push(next_change(&mut users).await);
    }
    let mut expect_users = expect.clone();
    expect_users.push((String::new(), Change::Reset));
    assert_eq!(got_users, expect_users);
    let mut expect_all = expect;
    expect_all.push(("other".into(), Change::Set(json!(true))));
    expect_all.push((String::new(), Change::Reset));
    let mut got_all = Vec::new();
    for _ in 0..expect_all.len() {
        got_all.push(next_change(&mut all).await);
    }
    assert_eq!(got_all, expect_all);
    assert_eq!(all.try_next(), None);
    // Closing the store ends its subscriptions.
    reader.close().await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), all.next())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_are_announced_without_a_touch_when_the_server_tells() {
    let server = RedisServer::start_with(&["--notify-keyspace-events", "Ex"]);
    let s = open(&server, "announce").await;
    let watcher = open(&server, "announce").await;
    let mut sub = watcher.subscribe("*").await.unwrap();
    let mut sub2 = watcher.subscribe("fact").await.unwrap();
    s.upsert("keep", 1).await.unwrap();
    s.upsert_with_ttl("fact", "sunny", Duration::from_millis(100))
        .await
        .unwrap();
    // Nobody reads or lists: the server's expiry alone brings the change,
    // once, although two subscriptions each had the entry tidied.
    assert_eq!(next_change(&mut sub).await.0, "keep");
    assert_eq!(
        next_change(&mut sub).await,
        ("fact".to_string(), Change::Set(json!("sunny")))
    );
    assert_eq!(
        next_change(&mut sub).await,
        ("fact".to_string(), Change::Expired)
    );
    assert_eq!(
        next_change(&mut sub2).await,
        ("fact".to_string(), Change::Set(json!("sunny")))
    );
    assert_eq!(
        next_change(&mut sub2).await,
        ("fact".to_string(), Change::Expired)
    );
    // Silence can only be shown by letting time pass: a second
    // announcement would come within this.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.try_next(), None, "expired announced twice");
    // The order index was tidied too: nothing left to sweep.
    assert_eq!(s.sweep_expired().await.unwrap(), 0);
    assert_eq!(s.list_keys().await.unwrap(), ["keep"]);
}
