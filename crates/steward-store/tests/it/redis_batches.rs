//! The Redis backend's write path against a real `redis-server`: a write
//! resent after a lost connection is applied once, even when its first send
//! runs late; queued writes go as one batch, each with its own answer; a
//! cancelled caller strands no one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use steward_store::{Change, Error, RedisStore, Subscription};

use crate::redis_backend::{next_change, open};
use crate::redis_server::RedisServer;

/// A TCP relay on 127.0.0.1 in front of the server. While stalled, bytes
/// that clients send on connections opened *before* the stall reach the
/// server only after `delay` (the network holding a request back);
/// connections opened later pass straight through.
struct SlowLink {
    port: u16,
    opened: Arc<std::sync::atomic::AtomicUsize>,
    stalled_below: Arc<std::sync::atomic::AtomicUsize>,
    /// Chunks held back, and those of them since written to the server.
    held: Arc<std::sync::atomic::AtomicUsize>,
    landed: Arc<std::sync::atomic::AtomicUsize>,
}

impl SlowLink {
    fn new(server_port: u16, delay: Duration) -> SlowLink {
        use std::sync::atomic::AtomicUsize;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let opened = Arc::new(AtomicUsize::new(0));
        let stalled_below = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let landed = Arc::new(AtomicUsize::new(0));
        let (o, s) = (Arc::clone(&opened), Arc::clone(&stalled_below));
        let (h, l) = (Arc::clone(&held), Arc::clone(&landed));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                    return;
                };
                let index = o.fetch_add(1, Ordering::SeqCst);
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let s = Arc::clone(&s);
                let counts = (Arc::clone(&h), Arc::clone(&l));
                std::thread::spawn(move || {
                    relay(
                        client,
                        upstream,
                        || s.load(Ordering::SeqCst) > index,
                        delay,
                        Some(counts),
                    )
                });
                std::thread::spawn(move || relay(u2, c2, || false, delay, None));
            }
        });
        SlowLink {
            port,
            opened,
            stalled_below,
            held,
            landed,
        }
    }

    fn url(&self, ns: &str) -> String {
        format!("redis://127.0.0.1:{}/0?ns={ns}", self.port)
    }

    /// Holds back what the connections open now send from here on.
    fn stall_open_connections(&self) {
        self.stalled_below
            .store(self.opened.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, sleeping `delay` before each chunk while
/// `stalled()`; the chunk is delivered even if `from` has closed meanwhile.
/// `counts` (held, landed) counts the held-back chunks and those written on.
fn relay(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    stalled: impl Fn() -> bool,
    delay: Duration,
    counts: Option<(
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    )>,
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let held = stalled();
        if held {
            if let Some((h, _)) = &counts {
                h.fetch_add(1, Ordering::SeqCst);
            }
            // The simulated network delay, not a synchronisation.
            std::thread::sleep(delay);
        }
        let written = to.write_all(&buf[..n]);
        if held && let Some((_, l)) = &counts {
            l.fetch_add(1, Ordering::SeqCst);
        }
        if written.is_err() {
            break;
        }
    }
    to.shutdown(std::net::Shutdown::Write).ok();
}

/// A store on one connection through `link` that gives up on a reply
/// after 150 ms (and resends for up to 20 s).
async fn impatient_store(link: &SlowLink, ns: &str, batches_in_flight: usize) -> RedisStore {
    RedisStore::builder(link.url(ns))
        .pool_size(1)
        .batches_in_flight(batches_in_flight)
        .response_timeout(Duration::from_millis(150))
        .retry_for(Duration::from_secs(20))
        .build()
        .await
        .unwrap()
}

/// Waits until every send held back by the link has been written to the
/// server, then writes a marker and returns the changes before it: every
/// one is a change the server really made. The marker goes out after the
/// late send sits in the server's socket, so the server reads it first.
async fn changes_once_the_held_back_send_landed(
    link: &SlowLink,
    store: &RedisStore,
    sub: &mut Subscription,
) -> Vec<(String, Change)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = link.held.load(Ordering::SeqCst);
        if held > 0 && link.landed.load(Ordering::SeqCst) == held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hang guard: the held-back send never landed ({held} held)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.upsert("marker", true).await.unwrap();
    let mut got = Vec::new();
    loop {
        let (k, c) = next_change(sub).await;
        if k == "marker" {
            return got;
        }
        got.push((k, c));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_write_is_applied_once_even_when_the_first_send_runs_late() {
    let server = RedisServer::start();
    let link = SlowLink::new(server.port(), Duration::from_millis(1500));
    let store = impatient_store(&link, "late", 4).await;
    let watcher = open(&server, "late").await;
    let mut sub = watcher.subscribe("*").await.unwrap();
    assert!(store.upsert("k", 1).await.unwrap());
    // The next write's first send is held back 1.5 s; the client gives up
    // on it after 150 ms and resends on a new connection, which answers
    // at once. Then the first send reaches the server: it must answer from
    // the record, not apply the write a second time.
    link.stall_open_connections();
    assert!(!store.upsert("k", 2).await.unwrap(), "k existed");
    let resends = store.stats().retries;
    assert!(resends >= 1, "the write was never resent");
    assert!(store.create("fresh", 3).await.unwrap());
    let got = changes_once_the_held_back_send_landed(&link, &store, &mut sub).await;
    assert_eq!(
        got,
        [
            ("k".to_string(), Change::Set(json!(1))),
            ("k".to_string(), Change::Set(json!(2))),
            ("fresh".to_string(), Change::Set(json!(3))),
        ],
        "a write was applied twice"
    );
    assert_eq!(watcher.get("k").await.unwrap(), Some(json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_applied_once_even_when_its_first_send_runs_late() {
    let server = RedisServer::start();
    let link = SlowLink::new(server.port(), Duration::from_millis(1500));
    let store = impatient_store(&link, "late_batch", 1).await;
    let watcher = open(&server, "late_batch").await;
    let mut sub = watcher.subscribe("*").await.unwrap();
    assert!(store.upsert("b0", 0).await.unwrap());
    // Queue four writes behind a slot holder that never gets the one
    // connection (held here), then cancel the holder: the slot passes to
    // a task that sends the four as one batch.
    let raw = store.pool().get().await.unwrap();
    let holder = slot_holder(&store, "holder").await;
    let mut batch = Vec::new();
    for i in 0..4 {
        let s = store.clone();
        batch.push(tokio::spawn(async move {
            s.upsert(&format!("b{i}"), i + 10).await
        }));
        // One at a time, so the batch's order is known.
        until_queued(&store, i + 1).await;
    }
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    // The batch goes out on the held connection, which the network now
    // holds back 1.5 s: the client gives up on it after 150 ms and resends
    // the batch on a new connection; then the first send lands late.
    link.stall_open_connections();
    drop(raw);
    let answers: Vec<bool> = {
        let mut v = Vec::new();
        for b in batch {
            v.push(b.await.unwrap().unwrap());
        }
        v
    };
    assert_eq!(
        answers,
        [false, true, true, true],
        "b0 existed, b1..b3 are new"
    );
    assert!(store.stats().retries >= 1, "the batch was never resent");
    let got = changes_once_the_held_back_send_landed(&link, &store, &mut sub).await;
    let mut want = vec![("b0".to_string(), Change::Set(json!(0)))];
    for i in 0..4 {
        want.push((format!("b{i}"), Change::Set(json!(i + 10))));
    }
    assert_eq!(got, want, "a batch was applied twice (or a write lost)");
    assert_eq!(watcher.get("holder").await.unwrap(), None);
    assert_eq!(
        watcher.list_keys().await.unwrap(),
        ["b0", "b1", "b2", "b3", "marker"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_records_take_one_key_per_connection_not_one_per_write() {
    let server = RedisServer::start();
    let store = open(&server, "records").await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    store.upsert(&format!("w{w}"), i).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.stats().writes, 800);
    // 8 values, the order index, the sequence, and at most one record per
    // pooled connection (4): not 800 records.
    let keys: usize = server
        .command("DBSIZE")
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!((11..=14).contains(&keys), "{keys} keys on the server");
}

/// A store whose one leader slot and one connection the test can hold:
/// while the test holds the connection, the first write waits for it and
/// every later write queues behind it.
async fn one_slot_store(server: &RedisServer, ns: &str) -> RedisStore {
    RedisStore::builder(server.url())
        .namespace(ns)
        .pool_size(1)
        .batches_in_flight(1)
        .build()
        .await
        .unwrap()
}

/// Spawns `upsert(key, 0)` and waits until it has taken a leader slot: it
/// then waits for the connection the caller holds (a one-connection store,
/// so it shows as the pool's one waiter), and later writes queue behind it.
async fn slot_holder(
    store: &RedisStore,
    key: &'static str,
) -> tokio::task::JoinHandle<Result<bool, Error>> {
    let s = store.clone();
    let holder = tokio::spawn(async move { s.upsert(key, 0).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.pool().stats().waiters != 1 {
        assert!(Instant::now() < deadline, "{:?}", store.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    holder
}

/// Polls until `n` writes wait in the queue.
async fn until_queued(store: &RedisStore, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.stats().queued_writes != n {
        assert!(Instant::now() < deadline, "{:?}", store.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_go_as_one_batch_and_each_gets_its_own_answer() {
    let server = RedisServer::start();
    let store = one_slot_store(&server, "batch").await;
    let watcher = open(&server, "batch").await;
    let mut sub = watcher.subscribe("*").await.unwrap();
    // A value key of the wrong type: the server refuses that one write.
    let mut raw = store.pool().get().await.unwrap();
    raw.command("HSET", &[b"steward:{batch}:v:wrong", b"f", b"1"])
        .await
        .unwrap();
    let before = store.stats().batches;
    let first = slot_holder(&store, "first").await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = store.clone();
        tasks.push(tokio::spawn(
            async move { ("race", s.create("race", i).await) },
        ));
    }
    for i in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            ("fresh", s.upsert(&format!("k{i}"), i).await)
        }));
    }
    for i in 0..5 {
        let s = store.clone();
        tasks.push(tokio::spawn(
            async move { ("same", s.upsert("same", i).await) },
        ));
    }
    tasks.push(tokio::spawn({
        let s = store.clone();
        async move { ("wrong", s.upsert("wrong", 1).await) }
    }));
    until_queued(&store, tasks.len() as u64).await;
    drop(raw);
    assert!(first.await.unwrap().unwrap());
    let mut added: HashMap<&str, usize> = HashMap::new();
    for t in tasks {
        let (what, r) = t.await.unwrap();
        match what {
            "wrong" => {
                let e = r.unwrap_err();
                assert!(matches!(e, Error::RedisWriteNotApplied { .. }), "{e}");
                assert!(e.to_string().contains("wrong"), "{e}");
            }
            _ => *added.entry(what).or_default() += usize::from(r.unwrap()),
        }
    }
    assert_eq!(added["race"], 1, "create races have one winner");
    assert_eq!(added["fresh"], 20);
    assert_eq!(
        added["same"], 1,
        "one upsert added the key, four replaced it"
    );
    // `first` alone, then the 36 that queued behind it in one script run.
    assert_eq!(store.stats().batches - before, 2, "{:?}", store.stats());
    assert_eq!(store.len().await.unwrap(), 1 + 1 + 20 + 1);
    // Every applied write published once: 1 + 1 + 20 + 5, and nothing for
    // the refused one or the nine losing creates: 27 changes, then the
    // marker written after them all (no quiet period to time).
    for _ in 0..27 {
        let (key, _) = next_change(&mut sub).await;
        assert_ne!(key, "marker");
    }
    store.upsert("marker", true).await.unwrap();
    assert_eq!(
        next_change(&mut sub).await.0,
        "marker",
        "more than 27 changes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cancelled_while_queued_is_never_sent() {
    let server = RedisServer::start();
    let store = one_slot_store(&server, "cancel").await;
    let raw = store.pool().get().await.unwrap();
    let first = slot_holder(&store, "first").await;
    let cancelled = tokio::spawn({
        let s = store.clone();
        async move { s.upsert("cancelled", 1).await }
    });
    until_queued(&store, 1).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    until_queued(&store, 0).await;
    drop(raw);
    assert!(first.await.unwrap().unwrap());
    assert!(store.upsert("after", 2).await.unwrap());
    assert_eq!(store.get("cancelled").await.unwrap(), None);
    assert_eq!(store.list_keys().await.unwrap(), ["first", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_caller_that_holds_the_slot_strands_no_one() {
    let server = RedisServer::start();
    let store = one_slot_store(&server, "handoff").await;
    let raw = store.pool().get().await.unwrap();
    let leader = slot_holder(&store, "leader").await;
    let queued: Vec<_> = (0..3)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.upsert(&format!("q{i}"), i).await })
        })
        .collect();
    until_queued(&store, 3).await;
    // The slot holder gives up before it ever had a connection.
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    drop(raw);
    for q in queued {
        let r = tokio::time::timeout(Duration::from_secs(30), q).await;
        assert!(r.expect("a queued write was stranded").unwrap().unwrap());
    }
    assert_eq!(store.get("leader").await.unwrap(), None);
    assert_eq!(store.len().await.unwrap(), 3);
}
