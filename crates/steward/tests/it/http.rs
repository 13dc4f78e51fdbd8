//! The `/health` and `/metrics` endpoint, scraped over 127.0.0.1 with a raw
//! HTTP/1.1 client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use steward::pool::Pool;
use steward::store::Store;
use steward::tracker::Tracker;
use steward::{Error, Steward};
use steward_test_support::prometheus::{self, Series};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Buffers, eventually, pressure};

const WEIRD_POOL: &str = "we\"ird\\pool\nname";
const WEIRD_KIND: &str = "kind \"quoted\"";

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One request on a fresh connection (`Connection: close`).
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("reply within the hang guard")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect::<BTreeMap<_, _>>();
    // HEAD announces the length of a body it does not send.
    if let Some(len) = headers.get("content-length")
        && method != "HEAD"
    {
        assert_eq!(body.len(), len.parse::<usize>().unwrap(), "whole body read");
    }
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn parts() -> (
    Steward,
    Pool<steward::TrackedManager<Buffers>>,
    Store,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("memory.json")).unwrap();
    store.upsert("user_name", "Ada").await.unwrap();
    let tracker = Tracker::new();
    let _kept = tracker.track_id("session-1", WEIRD_KIND, 10).unwrap();
    let steward = Steward::builder()
        .config(pressure(false, Duration::from_millis(50)))
        .tracker(tracker)
        .store(store.clone())
        .http("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let pool = Pool::builder(
        steward
            .tracked_manager(Buffers, "pool.buffer", 4096)
            .unwrap(),
    )
    .name(WEIRD_POOL)
    .reaper_interval(None)
    .build()
    .unwrap();
    steward.add_pool(&pool);
    drop(pool.get().await.unwrap());
    (steward, pool, store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served_then_shutdown_leaves_nothing() {
    let (steward, pool, store, _dir) = parts().await;
    let addr = steward.http_addr().unwrap();
    assert_ne!(addr.port(), 0);
    eventually("a moderate round", || {
        steward.health().cleanup.moderate_rounds >= 1
    })
    .await;

    let health = request(addr, "GET", "/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(json["level"], "moderate");
    assert_eq!(json["pools"][0]["name"], WEIRD_POOL);
    assert_eq!(json["store"]["stats"]["keys"], 1);
    assert!(json["monitor"]["samples"].as_u64().unwrap() >= 1);
    assert!(json["tracker"]["totals"]["live_count"].as_u64().unwrap() >= 2);

    let metrics = request(addr, "GET", "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let series = check_exposition(&metrics.body);
    let value = |name: &str, labels: &[(&str, &str)]| {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        series[&(name.to_owned(), labels)]
    };
    assert_eq!(value("steward_memory_pressure_level", &[]), 1.0);
    assert_eq!(
        value(
            "steward_pool_objects",
            &[("pool", WEIRD_POOL), ("state", "idle")]
        ),
        1.0
    );
    assert_eq!(
        value("steward_pool_created_total", &[("pool", WEIRD_POOL)]),
        1.0
    );
    assert_eq!(
        value("steward_tracker_live_resources", &[("kind", WEIRD_KIND)]),
        1.0
    );
    assert_eq!(
        value("steward_store_keys", &[("store", "memory.json")]),
        1.0
    );
    assert!(value("steward_process_resident_memory_bytes", &[]) > 0.0);
    assert!(value("steward_cleanup_moderate_rounds_total", &[]) >= 1.0);

    assert_eq!(request(addr, "GET", "/nope").await.status, 404);
    let post = request(addr, "POST", "/health").await;
    assert_eq!(
        (post.status, post.headers["allow"].as_str()),
        (405, "GET, HEAD")
    );
    let head = request(addr, "HEAD", "/metrics").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert!(head.headers["content-length"].parse::<usize>().unwrap() > 0);

    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), steward.shutdown())
        .await
        .expect("shutdown within the hang guard");
    let mut buf = [0_u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf))
        .await
        .expect("the idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a reply");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port stops accepting"
    );
    // Nothing left on this runtime: no server, connection or monitor task.
    let runtime = tokio::runtime::Handle::current();
    eventually("every task to end", || {
        runtime.metrics().num_alive_tasks() == 0
    })
    .await;

    pool.close();
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_the_endpoint() {
    let (steward, pool, store, _dir) = parts().await;
    let addr = steward.http_addr().unwrap();
    assert_eq!(request(addr, "GET", "/health").await.status, 200);
    drop(steward);
    let runtime = tokio::runtime::Handle::current();
    eventually("every task to end", || {
        runtime.metrics().num_alive_tasks() == 0
    })
    .await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port stops accepting"
    );
    pool.close();
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_taken_address_fails_build() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Steward::builder().http(addr).build().unwrap_err();
    assert!(
        matches!(err, Error::Bind { addr: a, .. } if a == addr),
        "{err}"
    );
    assert!(err.to_string().contains(&addr.to_string()));
}

/// The strict check of the Prometheus text format 0.0.4 (HELP and TYPE
/// once per family and before its samples, valid names, escaped label
/// values, numeric values, no duplicate series, a family's samples
/// together); fails the test with the first violation.
pub(crate) fn check_exposition(text: &str) -> Series {
    prometheus::check_exposition(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A steward serving only the endpoint on 127.0.0.1, with `limits` applied.
fn endpoint(limits: impl FnOnce(&mut steward::HttpConfig)) -> (Steward, SocketAddr) {
    let mut config = steward::StewardConfig::default();
    limits(&mut config.http);
    let steward = Steward::builder()
        .config(config)
        .http("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let addr = steward.http_addr().unwrap();
    (steward, addr)
}

/// Connects with a small receive buffer, so a client that never reads
/// stops the server's writes after a few answers.
async fn reluctant_client(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_pipeline_and_never_read_do_not_hold_the_endpoint() {
    let (steward, addr) = endpoint(|http| {
        http.write_timeout = Duration::from_millis(300);
        http.read_timeout = Duration::from_secs(2);
    });

    // 80 clients pipeline requests for as long as the server takes them and
    // never read an answer; each ends when the server cuts it.
    let pipelined = "GET /metrics HTTP/1.1\r\nHost: steward\r\n\r\n".repeat(64);
    let mut hogs = tokio::task::JoinSet::new();
    for _ in 0..80 {
        let mut stream = reluctant_client(addr).await;
        let pipelined = pipelined.clone();
        hogs.spawn(async move { while stream.write_all(pipelined.as_bytes()).await.is_ok() {} });
    }

    // A fresh client still gets its answer; while every slot is held it is
    // refused with a 503 and tries again.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match request(addr, "GET", "/health").await.status {
                200 => break,
                503 => tokio::time::sleep(Duration::from_millis(50)).await,
                other => panic!("unexpected status {other}"),
            }
        }
    })
    .await
    .expect("/health answered within the hang guard");

    // Every stuck client is cut and the count comes back down.
    tokio::time::timeout(Duration::from_secs(60), async {
        while hogs.join_next().await.is_some() {}
    })
    .await
    .expect("every pipelining client cut within the hang guard");
    eventually("no connection left open", || {
        steward
            .health()
            .http
            .is_some_and(|h| h.open_connections == 0)
    })
    .await;
    let http = steward.health().http.unwrap();
    assert!(http.timed_out >= 1, "{http:?}");
    assert!(
        http.accepted + http.refused >= 81,
        "every connection counted: {http:?}"
    );
    let series = check_exposition(&steward.metrics_text());
    let none: BTreeMap<String, String> = BTreeMap::new();
    assert_eq!(
        series[&("steward_http_connections".to_owned(), none.clone())],
        0.0
    );
    assert!(series[&("steward_http_connections_timed_out_total".to_owned(), none)] >= 1.0);
    steward.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused() {
    let (steward, addr) = endpoint(|http| http.max_connections = 2);
    let open = |n| {
        let steward = steward.clone();
        move || {
            steward
                .health()
                .http
                .is_some_and(|h| h.open_connections == n)
        }
    };
    let idle = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    eventually("two idle connections served", open(2)).await;
    let busy = request(addr, "GET", "/health").await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.headers["connection"], "close");
    drop(idle);
    eventually("the idle connections closed", open(0)).await;
    assert_eq!(request(addr, "GET", "/health").await.status, 200);
    let http = steward.health().http.unwrap();
    assert_eq!((http.refused, http.accepted), (1, 3), "{http:?}");
    steward.shutdown().await;
}

#[tokio::test]
async fn a_remote_address_needs_allow_remote() {
    let err = Steward::builder()
        .http("0.0.0.0:0".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "http_addr",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0.0.0.0:0"), "{err}");

    let mut config = steward::StewardConfig::default();
    config.http.allow_remote = true;
    let steward = Steward::builder()
        .config(config)
        .http("0.0.0.0:0".parse().unwrap())
        .build()
        .unwrap();
    assert!(steward.http_addr().unwrap().ip().is_unspecified());
    steward.shutdown().await;

    let config: steward::StewardConfig =
        serde_json::from_str(r#"{"http": {"max_connections": 0}}"#).unwrap();
    let err = Steward::builder()
        .config(config)
        .http("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("http.max_connections"), "{err}");
}
