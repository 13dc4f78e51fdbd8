//! steward-store benches: durable upserts per second (1 and 64 writers)
//! against a whole-file JSON rewrite (the Python assistant's way, with
//! fsync + rename) and SQLite in WAL mode with `synchronous=FULL`; reads
//! against a `Mutex<HashMap>`;
//! `len()`/`stats()` with expired entries against copying the live map.
//!
//! Function ids starting with `steward` are ours; the others are baselines
//! measured in the same run (see the xtask bench convention).

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use steward_store::Store;

const WRITERS: usize = 64;

/// A ~100-byte value that differs on every call.
fn value(counter: &AtomicU64) -> Value {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    json!(format!(
        "value number {n:020} padded to about one hundred bytes .............................."
    ))
}

fn initial_map(keys: usize) -> Map<String, Value> {
    let c = AtomicU64::new(0);
    (0..keys)
        .map(|i| (format!("key{i:05}"), value(&c)))
        .collect()
}

fn key(i: u64, keys: usize) -> String {
    format!("key{:05}", (i.wrapping_mul(2_654_435_761)) % keys as u64)
}

/// The Python assistant's write path, done right: whole file to a temp
/// file, fsync, rename, fsync of the directory.
struct WholeFile {
    path: PathBuf,
    tmp: PathBuf,
    map: Map<String, Value>,
}

impl WholeFile {
    fn upsert(&mut self, k: String, v: Value) {
        self.map.insert(k, v);
        let text = steward_store::to_python_json(&self.map);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&self.tmp).expect("create");
            f.write_all(text.as_bytes()).expect("write");
            f.sync_all().expect("fsync");
        }
        std::fs::rename(&self.tmp, &self.path).expect("rename");
        let dir = self.path.parent().expect("dir");
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("dir fsync");
    }
}

fn sqlite(dir: &Path, keys: usize) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("bench.sqlite")).expect("sqlite");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute(
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        [],
    )
    .expect("table");
    let tx = conn.unchecked_transaction().expect("tx");
    for (k, v) in initial_map(keys) {
        tx.execute("INSERT INTO kv VALUES (?1, ?2)", (k, v.to_string()))
            .expect("insert");
    }
    tx.commit().expect("commit");
    conn
}

const SQLITE_UPSERT: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2) \
     ON CONFLICT(key) DO UPDATE SET value = excluded.value";

fn open_store(dir: &Path, keys: usize) -> Store {
    let path = dir.join("memory.json");
    steward_store::write_snapshot(&path, &initial_map(keys)).expect("snapshot");
    Store::open(&path).expect("open")
}

/// `iters` upserts spread over `writers` threads; returns the wall time.
fn run_writers(store: &Store, writers: usize, iters: u64, keys: usize, c: &AtomicU64) -> Duration {
    let per = iters.div_ceil(writers as u64);
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        for w in 0..writers {
            let (store, barrier) = (store.clone(), &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..per {
                    let n = w as u64 * 1_000_003 + i;
                    store
                        .upsert_blocking(&key(n, keys), value(c))
                        .expect("upsert");
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every writer before returning.
        start
    })
    .elapsed()
    .mul_f64(iters as f64 / (per * writers as u64) as f64)
}

fn upserts_1writer(c: &mut Criterion, keys: usize) {
    let name = format!("store/upsert_{}k_1writer", keys / 1000);
    let mut g = c.benchmark_group(&name);
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    let counter = AtomicU64::new(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path(), keys);
    let mut i = 0u64;
    g.bench_function("steward", |b| {
        b.iter(|| {
            i += 1;
            store
                .upsert_blocking(&key(i, keys), value(&counter))
                .expect("upsert")
        })
    });
    drop(store);
    let mut whole = WholeFile {
        path: dir.path().join("whole.json"),
        tmp: dir.path().join("whole.json.tmp"),
        map: initial_map(keys),
    };
    g.bench_function("whole_file_rewrite", |b| {
        b.iter(|| {
            i += 1;
            whole.upsert(key(i, keys), value(&counter))
        })
    });
    let conn = sqlite(dir.path(), keys);
    let mut stmt = conn.prepare(SQLITE_UPSERT).expect("prepare");
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| {
            i += 1;
            stmt.execute((key(i, keys), value(&counter).to_string()))
                .expect("upsert")
        })
    });
    g.finish();
}

fn upserts_64writers(c: &mut Criterion, keys: usize, extra: &Mutex<Vec<Value>>) {
    let name = format!("store/upsert_{}k_64writers", keys / 1000);
    let mut g = c.benchmark_group(&name);
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    let counter = AtomicU64::new(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path(), keys);
    g.bench_function("steward_64_writers", |b| {
        b.iter_custom(|iters| run_writers(&store, WRITERS, iters, keys, &counter))
    });
    let st = store.stats();
    if let Some(avg) = (st.batches > 0).then(|| st.writes as f64 / st.batches as f64) {
        extra.lock().expect("extra").push(json!({
            "name": format!("{name}/writes_per_fsync"),
            "statistic": "mean",
            "value": (avg * 10.0).round() / 10.0,
            "largest_batch": st.largest_batch,
        }));
    }
    g.bench_function("one_writer", |b| {
        b.iter_custom(|iters| run_writers(&store, 1, iters, keys, &counter))
    });
    drop(store);
    // The whole-file baseline with 64 writers: they can only take turns.
    let whole = Mutex::new(WholeFile {
        path: dir.path().join("whole.json"),
        tmp: dir.path().join("whole.json.tmp"),
        map: initial_map(keys),
    });
    g.bench_function("whole_file_rewrite_64_writers", |b| {
        b.iter_custom(|iters| {
            contended(iters, keys, &counter, |k, v| {
                whole.lock().expect("lock").upsert(k, v)
            })
        })
    });
    // SQLite with 64 writers: one connection behind a mutex, each upsert its
    // own durable commit (WAL, synchronous=FULL) as each of ours is when
    // `upsert` returns. SQLite lets one writer in at a time; a connection
    // per writer would only add its busy handler's sleeps.
    let lite = Mutex::new(sqlite(dir.path(), keys));
    g.bench_function("sqlite_wal_full_64_writers", |b| {
        b.iter_custom(|iters| {
            contended(iters, keys, &counter, |k, v| {
                let conn = lite.lock().expect("lock");
                let mut stmt = conn.prepare_cached(SQLITE_UPSERT).expect("prepare");
                stmt.execute((k, v.to_string())).expect("upsert");
            })
        })
    });
    g.finish();
}

/// `iters` upserts by `upsert` from [`WRITERS`] threads at once; the wall
/// time, scaled to `iters`.
fn contended(
    iters: u64,
    keys: usize,
    counter: &AtomicU64,
    upsert: impl Fn(String, Value) + Sync,
) -> Duration {
    let per = iters.div_ceil(WRITERS as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WRITERS as u64 {
            let upsert = &upsert;
            s.spawn(move || {
                for i in 0..per {
                    upsert(key(w * 1_000_003 + i, keys), value(counter));
                }
            });
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * WRITERS as u64) as f64)
}

fn reads(c: &mut Criterion) {
    let keys = 10_000;
    let mut g = c.benchmark_group("store/read_10k");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path(), keys);
    let names: Vec<String> = (0..1024).map(|i| key(i, keys)).collect();
    let mut i = 0usize;
    g.bench_function("steward", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(store.get(&names[i]))
        })
    });
    let map: Mutex<HashMap<String, Value>> = Mutex::new(initial_map(keys).into_iter().collect());
    g.bench_function("mutex_hashmap", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(map.lock().expect("lock").get(&names[i]).cloned())
        })
    });
    g.finish();
}

/// `len()` and `stats()` with 100k keys of which half have expired
/// (unswept), against the way they worked before: a copy of the live
/// entries, then its length (the copy found the expired keys in a hash
/// set here; the old code searched a list, slower still).
fn len_with_expired(c: &mut Criterion) {
    let keys = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = steward_store::ManualClock::new(1_000_000);
    // No compaction: it would drop the expired entries this measures.
    let store = Store::builder(dir.path().join("memory.json"))
        .clock(std::sync::Arc::new(clock.clone()))
        .compact_log_bytes(u64::MAX)
        .compact_on_close(false)
        .build()
        .expect("open");
    let map = initial_map(keys);
    let writes: Vec<_> = map
        .iter()
        .enumerate()
        .map(|(i, (k, v))| match i % 2 {
            0 => store.upsert_with_ttl(k, v.clone(), Duration::from_secs(1)),
            _ => store.upsert(k, v.clone()),
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for w in writes {
            w.await.expect("write");
        }
    });
    clock.advance(Duration::from_secs(2));
    assert_eq!(store.len(), keys / 2);
    let now = 1_002_000u64;
    let expires: HashMap<String, u64> = map
        .keys()
        .step_by(2)
        .map(|k| (k.clone(), 1_001_000))
        .collect();
    let mut g = c.benchmark_group("store/len_100k_half_expired");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("steward_len", |b| b.iter(|| black_box(store.len())));
    g.bench_function("steward_stats", |b| b.iter(|| black_box(store.stats())));
    g.sample_size(10);
    g.bench_function("clone_the_live_map", |b| {
        b.iter(|| {
            let doomed: std::collections::HashSet<&str> = expires
                .iter()
                .filter(|&(_, &t)| now >= t)
                .map(|(k, _)| k.as_str())
                .collect();
            let live: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !doomed.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            black_box(live.len())
        })
    });
    g.finish();
    let stats = store.stats();
    assert_eq!((stats.keys, stats.ttl_entries), (keys / 2, keys / 2));
}

/// The disk of a shared machine changes speed from second to second, and
/// criterion measures one function after the other. This measures the three
/// single-writer contenders in alternating rounds, so each sees the same
/// disk, and records the ratios in the summary's format.
fn interleaved(keys: usize, rounds: usize, extra: &Mutex<Vec<Value>>) {
    let counter = AtomicU64::new(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path(), keys);
    let conn = sqlite(dir.path(), keys);
    let mut stmt = conn.prepare(SQLITE_UPSERT).expect("prepare");
    let mut whole = WholeFile {
        path: dir.path().join("whole.json"),
        tmp: dir.path().join("whole.json.tmp"),
        map: initial_map(keys),
    };
    let (mut ours, mut lite, mut file) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (n_fast, n_slow) = (100u32, 4u32);
    let mut i = 0u64;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..n_fast {
            i += 1;
            store
                .upsert_blocking(&key(i, keys), value(&counter))
                .expect("upsert");
        }
        ours += t.elapsed();
        let t = Instant::now();
        for _ in 0..n_fast {
            i += 1;
            stmt.execute((key(i, keys), value(&counter).to_string()))
                .expect("upsert");
        }
        lite += t.elapsed();
        let t = Instant::now();
        for _ in 0..n_slow {
            i += 1;
            whole.upsert(key(i, keys), value(&counter));
        }
        file += t.elapsed();
    }
    let per_s = |n: u32, d: Duration| f64::from(n) * rounds as f64 / d.as_secs_f64().max(1e-9);
    let ours_per_s = per_s(n_fast, ours);
    let group = format!("store/upsert_{}k_1writer_interleaved", keys / 1000);
    for (baseline, base_per_s) in [
        ("sqlite_wal_full", per_s(n_fast, lite)),
        ("whole_file_rewrite", per_s(n_slow, file)),
    ] {
        extra.lock().expect("extra").push(json!({
            "name": format!("{group} vs {baseline}"),
            "ours_per_s": ours_per_s.round(),
            "baseline": baseline,
            "baseline_per_s": (base_per_s * 10.0).round() / 10.0,
            "ratio": (ours_per_s / base_per_s * 100.0).round() / 100.0,
            "statistic": "total_rate_over_alternating_rounds",
        }));
    }
}

fn benches(c: &mut Criterion) {
    let extra = Mutex::new(Vec::new());
    upserts_1writer(c, 1_000);
    upserts_1writer(c, 10_000);
    upserts_64writers(c, 1_000, &extra);
    upserts_64writers(c, 10_000, &extra);
    reads(c);
    len_with_expired(c);
    let rounds = if std::env::args().any(|a| a == "--quick") {
        3
    } else {
        10
    };
    interleaved(1_000, rounds, &extra);
    interleaved(10_000, rounds, &extra);
    let map = initial_map(10_000);
    extra.lock().expect("extra").push(json!({
        "name": "store/snapshot_bytes_10k_keys",
        "statistic": "exact",
        "value": steward_store::to_python_json(&map).len(),
    }));
    common::write_extra("steward-store.json", extra.into_inner().unwrap_or_default());
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);
