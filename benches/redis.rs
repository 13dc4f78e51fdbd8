//! steward-store Redis backend: upserts per second with 1 and 64 concurrent
//! writers, against the raw client (redis-rs, not through our pool) doing
//! the plain equivalent in the same run, on one multiplexed connection that
//! every writer clones: redis-rs pipelines the commands of concurrent
//! writers on it, as our store groups theirs into one script run:
//!
//! - `raw_set`: `SET value-key json` (a bare cache write);
//! - `raw_set_hset`: `SET value-key json` and `HSET index key 1` as one
//!   atomic step (a value plus an index), a two-line script run by its
//!   SHA (`EVALSHA`), as any client with a cached script does;
//! - `raw_script_set`: the same `SET` from a one-line script
//!   (`EVALSHA`): the cheapest write the server runs as a script, the
//!   floor under any atomic check-and-write done server-side.
//!
//! `steward` is `RedisStore::upsert`: a Lua script that also keeps the
//! insertion order, publishes the change and records the write's answer for
//! retries after a lost connection. A lone writer sends one script per
//! write; with 64 writers, the writes that queue while the store's few
//! batches are in flight go together in one script run (group commit).
//!
//! After the criterion groups, `interleaved` measures the same pairs in 60
//! alternating rounds and records the ratio of their total rates in
//! `target/bench/summary.json` (`..._interleaved vs ...`): on a shared
//! machine that figure moves less from run to run. The single writer is
//! measured twice that way: on the two-worker runtime of the criterion
//! groups, and on a current-thread runtime (`..._current_thread_...`),
//! where a lone round trip does not depend on which worker wakes up.
//!
//! The bench starts its own redis-server (the tests' fixture) with
//! `appendfsync everysec`: with `always` every variant waits for the same
//! disk flush and the ratio would measure the disk, not the client.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use steward_store::RedisStore;
use steward_test_support::redis_server;

const WRITERS: usize = 64;
const KEYS: u64 = 1_000;

/// A ~100-byte value that differs on every call.
fn value(counter: &AtomicU64) -> Value {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    json!(format!(
        "value number {n:020} padded to about one hundred bytes .............................."
    ))
}

fn key(i: u64) -> String {
    format!("key{:05}", i.wrapping_mul(2_654_435_761) % KEYS)
}

/// Every variant, by its criterion id; ours first.
const VARIANTS: [(&str, Variant); 4] = [
    ("steward", Variant::Steward),
    ("raw_set", Variant::RawSet),
    ("raw_set_hset", Variant::RawSetHset),
    ("raw_script_set", Variant::RawScriptSet),
];

/// One write of each variant.
#[derive(Clone, Copy)]
enum Variant {
    Steward,
    RawSet,
    RawSetHset,
    RawScriptSet,
}

/// What the variants write through: our store, and a raw redis-rs
/// connection to the same server (its driver task lives on the runtime
/// that opened it).
#[derive(Clone)]
struct Target {
    store: RedisStore,
    raw: MultiplexedConnection,
}

async fn write_one(t: &Target, variant: Variant, i: u64, counter: &AtomicU64) {
    let k = key(i);
    let v = value(counter);
    if matches!(variant, Variant::Steward) {
        t.store.upsert(&k, v).await.expect("upsert");
        return;
    }
    // The same JSON encoding the store does, then the raw command on the
    // shared multiplexed connection.
    let json = serde_json::to_vec(&v).expect("json");
    let vkey = format!("raw:{{bench}}:v:{k}");
    let [set_hset, script_set] = SHAS.get().expect("scripts loaded");
    let (name, args): (&str, &[&[u8]]) = match variant {
        Variant::RawSetHset => (
            "EVALSHA",
            &[
                set_hset,
                b"2",
                vkey.as_bytes(),
                b"raw:{bench}:index",
                &json,
                k.as_bytes(),
            ],
        ),
        Variant::RawScriptSet => ("EVALSHA", &[script_set, b"1", vkey.as_bytes(), &json]),
        _ => ("SET", &[vkey.as_bytes(), &json]),
    };
    let mut cmd = redis::cmd(name);
    for a in args {
        cmd.arg(*a);
    }
    let mut conn = t.raw.clone();
    cmd.query_async::<redis::Value>(&mut conn)
        .await
        .expect(name);
}

/// `SET` + `HSET` as one atomic step: a two-command script, run as one
/// command like the store's writes.
const RAW_SET_HSET: &str =
    "redis.call('SET', KEYS[1], ARGV[1]); redis.call('HSET', KEYS[2], ARGV[2], 1)";

/// `SET` alone, as a script.
const RAW_SCRIPT_SET: &str = "redis.call('SET', KEYS[1], ARGV[1])";

/// The SHAs of `RAW_SET_HSET` and `RAW_SCRIPT_SET`, from `SCRIPT LOAD` once
/// before the runs.
static SHAS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();

/// Runs `iters` writes with `writers` concurrent tasks; the time they took.
fn run(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    variant: Variant,
    writers: usize,
    iters: u64,
    counter: &Arc<AtomicU64>,
) -> Duration {
    let per = iters.div_ceil(writers as u64);
    let total = per * writers as u64;
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..writers as u64)
            .map(|w| {
                let (target, counter) = (target.clone(), Arc::clone(counter));
                tokio::spawn(async move {
                    for i in 0..per {
                        write_one(&target, variant, w * 1_000_003 + i, &counter).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer task");
        }
        start.elapsed()
    });
    elapsed.mul_f64(iters as f64 / total as f64)
}

fn group(c: &mut Criterion, rt: &tokio::runtime::Runtime, target: &Target, writers: usize) {
    let name = if writers == 1 {
        "store/redis_upsert_1_writer".to_string()
    } else {
        format!("store/redis_upsert_{writers}_writers")
    };
    let mut g = c.benchmark_group(&name);
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    let counter = Arc::new(AtomicU64::new(0));
    for (id, variant) in VARIANTS {
        g.bench_function(id, |b| {
            b.iter_custom(|iters| run(rt, target, variant, writers, iters, &counter))
        });
    }
    g.finish();
}

/// A shared machine changes speed from second to second, and criterion
/// measures one function after the other: a single writer's round trips
/// are the most exposed. This runs every variant in alternating rounds
/// (rotating which goes first), so each sees the same machine, and records
/// the ratios of their total rates in the summary's format as `<name> vs
/// <baseline>`. (Not a median of per-round ratios: a single writer's rounds
/// are bimodal on a two-worker runtime, and such a median strayed far from
/// the totals.)
fn interleaved(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    name: &str,
    writers: usize,
    rounds: usize,
    extra: &mut Vec<Value>,
) {
    let counter = Arc::new(AtomicU64::new(0));
    let per_round = if writers == 1 { 200 } else { 3_000 };
    let mut took = [Duration::ZERO; VARIANTS.len()];
    for round in 0..rounds {
        for k in 0..VARIANTS.len() {
            let v = (round + k) % VARIANTS.len();
            took[v] += run(rt, target, VARIANTS[v].1, writers, per_round, &counter);
        }
    }
    let per_s = |d: Duration| (per_round * rounds as u64) as f64 / d.as_secs_f64().max(1e-9);
    let ours = per_s(took[0]);
    for (v, (baseline, _)) in VARIANTS.iter().enumerate().skip(1) {
        let base = per_s(took[v]);
        extra.push(json!({
            "name": format!("{name} vs {baseline}"),
            "ours_per_s": ours.round(),
            "baseline": baseline,
            "baseline_per_s": base.round(),
            "ratio": (ours / base * 1000.0).round() / 1000.0,
            "statistic": "total_rate_over_alternating_rounds",
            "rounds": rounds,
        }));
    }
}

/// A runtime, and the bench's store and raw connection opened on it.
fn open(
    rt: &mut tokio::runtime::Builder,
    server: &redis_server::RedisServer,
) -> (tokio::runtime::Runtime, Target) {
    let rt = rt.enable_all().build().expect("runtime");
    let target = rt.block_on(async {
        let store = RedisStore::open(&server.url(), "bench")
            .await
            .expect("redis store");
        let raw = redis::Client::open(server.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection");
        Target { store, raw }
    });
    (rt, target)
}

fn benches(c: &mut Criterion) {
    let server = redis_server::RedisServer::start_with(&["--appendfsync", "everysec"]);
    let (rt, target) = open(
        tokio::runtime::Builder::new_multi_thread().worker_threads(2),
        &server,
    );
    let store = target.store.clone();
    rt.block_on(async {
        let mut conn = store.pool().get().await.expect("pooled connection");
        let mut shas = Vec::new();
        for script in [RAW_SET_HSET, RAW_SCRIPT_SET] {
            let sha = conn
                .command("SCRIPT", &[b"LOAD", script.as_bytes()])
                .await
                .expect("SCRIPT LOAD")
                .expect("a SHA");
            shas.push(sha);
        }
        let shas: [Vec<u8>; 2] = shas.try_into().expect("two scripts");
        SHAS.set(shas).expect("loaded once");
    });
    // Fill the key space so every variant replaces existing keys.
    rt.block_on(async {
        let counter = AtomicU64::new(0);
        for i in 0..KEYS * 4 {
            write_one(&target, Variant::Steward, i, &counter).await;
            write_one(&target, Variant::RawSetHset, i, &counter).await;
        }
    });
    group(c, &rt, &target, 1);
    group(c, &rt, &target, WRITERS);
    let rounds = if std::env::args().any(|a| a == "--quick") {
        5
    } else {
        60
    };
    let mut extra = Vec::new();
    let name = "store/redis_upsert_1_writer_interleaved";
    interleaved(&rt, &target, name, 1, rounds, &mut extra);
    let name = format!("store/redis_upsert_{WRITERS}_writers_interleaved");
    interleaved(&rt, &target, &name, WRITERS, rounds, &mut extra);
    // A store of its own: a pooled connection's driver task lives on the
    // runtime that opened it.
    let (ct, ct_target) = open(&mut tokio::runtime::Builder::new_current_thread(), &server);
    let name = "store/redis_upsert_1_writer_current_thread_interleaved";
    interleaved(&ct, &ct_target, name, 1, rounds, &mut extra);
    ct.block_on(ct_target.store.close()).expect("close");
    for e in &extra {
        eprintln!("redis bench: {e}");
    }
    common::write_extra("steward-store-redis.json", extra);
    let stats = store.stats();
    eprintln!(
        "redis bench: {} writes in {} scripts, {} retries, pool {:?}",
        stats.writes + stats.unchanged,
        stats.batches,
        stats.retries,
        stats.pool
    );
    // Where the server's time goes, per command (the profile behind the
    // ratios): the script against plain SET.
    rt.block_on(async {
        let mut conn = store.pool().get().await.expect("pooled connection");
        if let Ok(Some(info)) = conn.command("INFO", &[b"commandstats"]).await {
            let text = String::from_utf8_lossy(&info).into_owned();
            for line in text.lines().filter(|l| l.starts_with("cmdstat_")) {
                eprintln!("redis bench: {line}");
            }
        }
    });
    rt.block_on(store.close()).expect("close");
    drop(server);
}

criterion_group!(redis_benches, benches);
criterion_main!(redis_benches);
