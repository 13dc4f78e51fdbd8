//! Get + return throughput of steward-pool against raw deadpool and bb8, all
//! with the same no-op manager, plus the keyed pool's overhead.
//!
//! Function ids starting with `steward` are ours; the others are baselines
//! measured in the same run (see `xtask/src/bench.rs`).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use steward_pool::{KeyedManager, KeyedPool, Manager, Pool};

/// Pool size for every contender.
const MAX: usize = 8;
/// Tasks in the contended group.
const TASKS: u64 = 16;

struct Noop;

impl Manager for Noop {
    type Object = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
}

impl KeyedManager<u32> for Noop {
    type Object = u64;
    type Error = Infallible;
    async fn create(&self, _key: &u32) -> Result<u64, Infallible> {
        Ok(0)
    }
}

struct DeadNoop;

impl deadpool::managed::Manager for DeadNoop {
    type Type = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

struct Bb8Noop;

impl bb8::ManageConnection for Bb8Noop {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// Our pool with the default configuration (health check on checkout,
/// lifetime and idle expiry on), minus the reaper task.
fn steward_pool() -> Pool<Noop> {
    Pool::builder(Noop)
        .max_size(MAX)
        .reaper_interval(None)
        .build()
        .expect("valid config")
}

/// Our pool with the expiry features off: the same work raw deadpool does.
fn steward_lean() -> Pool<Noop> {
    Pool::builder(Noop)
        .max_size(MAX)
        .max_lifetime(None)
        .idle_timeout(None)
        .reaper_interval(None)
        .build()
        .expect("valid config")
}

fn deadpool_pool() -> deadpool::managed::Pool<DeadNoop> {
    deadpool::managed::Pool::builder(DeadNoop)
        .max_size(MAX)
        .build()
        .expect("valid config")
}

async fn bb8_pool() -> bb8::Pool<Bb8Noop> {
    bb8::Pool::builder()
        .max_size(MAX as u32)
        .build(Bb8Noop)
        .await
        .expect("valid config")
}

fn keyed_pool() -> KeyedPool<u32, Noop> {
    KeyedPool::builder(Noop)
        .max_size(MAX)
        .reaper_interval(None)
        .max_total(4 * MAX)
        .build()
        .expect("valid config")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Times `iters` get+return cycles on one task.
macro_rules! one_task {
    ($rt:expr, $iters:expr, $get:expr) => {{
        $rt.block_on(async {
            let start = Instant::now();
            for _ in 0..$iters {
                let o = $get.await.expect("checkout");
                black_box(&*o);
                drop(o);
            }
            start.elapsed()
        })
    }};
}

/// Times `TASKS` tasks doing `iters` get+return cycles each.
macro_rules! many_tasks {
    ($rt:expr, $iters:expr, $pool:expr, |$p:ident| $get:expr) => {{
        $rt.block_on(async {
            let start = Instant::now();
            let mut handles = Vec::with_capacity(TASKS as usize);
            for _ in 0..TASKS {
                let $p = $pool.clone();
                handles.push(tokio::spawn(async move {
                    for _ in 0..$iters {
                        let o = $get.await.expect("checkout");
                        black_box(&*o);
                        drop(o);
                        // Let the other tasks in, as real work would.
                        tokio::task::yield_now().await;
                    }
                }));
            }
            for h in handles {
                h.await.expect("task");
            }
            start.elapsed()
        })
    }};
}

/// Keeps a full run of this file well under three minutes.
fn tune(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
}

fn get_return_1task(c: &mut Criterion) {
    let rt = current_thread();
    let mut g = c.benchmark_group("pool/get_return_1task");
    tune(&mut g);
    g.throughput(Throughput::Elements(1));
    let ours = rt.block_on(async { steward_pool() });
    g.bench_function("steward", |b| {
        b.iter_custom(|n| one_task!(rt, n, ours.get()))
    });
    let lean = rt.block_on(async { steward_lean() });
    g.bench_function("steward_no_expiry", |b| {
        b.iter_custom(|n| one_task!(rt, n, lean.get()))
    });
    let dp = deadpool_pool();
    g.bench_function("raw_deadpool", |b| {
        b.iter_custom(|n| one_task!(rt, n, dp.get()))
    });
    let bb = rt.block_on(bb8_pool());
    g.bench_function("bb8", |b| b.iter_custom(|n| one_task!(rt, n, bb.get())));
    g.finish();
}

fn get_return_16tasks(c: &mut Criterion) {
    let rt = multi_thread();
    let mut g = c.benchmark_group("pool/get_return_16tasks");
    tune(&mut g);
    g.throughput(Throughput::Elements(TASKS));
    let ours = rt.block_on(async { steward_pool() });
    g.bench_function("steward", |b| {
        b.iter_custom(|n| many_tasks!(rt, n, ours, |p| p.get()))
    });
    let lean = rt.block_on(async { steward_lean() });
    g.bench_function("steward_no_expiry", |b| {
        b.iter_custom(|n| many_tasks!(rt, n, lean, |p| p.get()))
    });
    let dp = deadpool_pool();
    g.bench_function("raw_deadpool", |b| {
        b.iter_custom(|n| many_tasks!(rt, n, dp, |p| p.get()))
    });
    let bb = rt.block_on(bb8_pool());
    g.bench_function("bb8", |b| {
        b.iter_custom(|n| many_tasks!(rt, n, bb, |p| p.get()))
    });
    g.finish();
}

fn keyed_get(c: &mut Criterion) {
    let rt = current_thread();
    let mut g = c.benchmark_group("pool/keyed_get");
    tune(&mut g);
    g.throughput(Throughput::Elements(1));
    let keyed = rt.block_on(async { keyed_pool() });
    g.bench_function("steward_keyed", |b| {
        b.iter_custom(|n| one_task!(rt, n, keyed.get(&7)))
    });
    // The baseline is our own unkeyed pool: the ratio is the keyed overhead.
    let plain = rt.block_on(async { steward_pool() });
    g.bench_function("unkeyed_pool", |b| {
        b.iter_custom(|n| one_task!(rt, n, plain.get()))
    });
    g.finish();
}

/// The median of `v` (the upper one of an even count); NaN for none.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

criterion_group!(benches, get_return_1task, get_return_16tasks, keyed_get);

/// Median per-cycle times over N rounds with the contenders interleaved
/// round by round: on a loaded machine this is steadier than criterion's
/// one-after-the-other groups (and the median, like the summary's criterion
/// entries, not the best round). Written to
/// `$STEWARD_BENCH_DIR/extra/pool.json`.
fn interleaved(rounds: u32) {
    let rt = current_thread();
    let ours = rt.block_on(async { steward_pool() });
    let lean = rt.block_on(async { steward_lean() });
    let dp = deadpool_pool();
    let bb = rt.block_on(bb8_pool());
    let n = 100_000u64;
    let mut one: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        one[0].push(one_task!(rt, n, ours.get()).as_nanos() as f64 / n as f64);
        one[1].push(one_task!(rt, n, lean.get()).as_nanos() as f64 / n as f64);
        one[2].push(one_task!(rt, n, dp.get()).as_nanos() as f64 / n as f64);
        one[3].push(one_task!(rt, n, bb.get()).as_nanos() as f64 / n as f64);
    }
    let one = one.map(median);
    let mt = multi_thread();
    let ours = mt.block_on(async { steward_pool() });
    let dp = deadpool_pool();
    let bb = mt.block_on(bb8_pool());
    let per = 10_000u64;
    let ops = (per * TASKS) as f64;
    let mut many: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        many[0].push(many_tasks!(mt, per, ours, |p| p.get()).as_nanos() as f64 / ops);
        many[1].push(many_tasks!(mt, per, dp, |p| p.get()).as_nanos() as f64 / ops);
        many[2].push(many_tasks!(mt, per, bb, |p| p.get()).as_nanos() as f64 / ops);
    }
    let many = many.map(median);
    let entry = |name: &str, ours: f64, base: &str, theirs: f64| {
        serde_json::json!({
            "name": name,
            "ours_per_s": (1e9 / ours).round(),
            "baseline_per_s": (1e9 / theirs).round(),
            "ours_ns_per_op": ours.round(),
            "baseline": base,
            "baseline_ns_per_op": theirs.round(),
            "ratio": ((theirs / ours) * 1000.0).round() / 1000.0,
            "statistic": "median",
            "rounds": rounds,
        })
    };
    let figures = serde_json::json!([
        entry(
            "pool/interleaved_1task/steward vs raw_deadpool",
            one[0],
            "raw_deadpool",
            one[2]
        ),
        entry(
            "pool/interleaved_1task/steward vs bb8",
            one[0],
            "bb8",
            one[3]
        ),
        entry(
            "pool/interleaved_1task/steward_no_expiry vs raw_deadpool",
            one[1],
            "raw_deadpool",
            one[2]
        ),
        entry(
            "pool/interleaved_1task/steward_no_expiry vs bb8",
            one[1],
            "bb8",
            one[3]
        ),
        entry(
            "pool/interleaved_16tasks/steward vs raw_deadpool",
            many[0],
            "raw_deadpool",
            many[1]
        ),
        entry(
            "pool/interleaved_16tasks/steward vs bb8",
            many[0],
            "bb8",
            many[2]
        ),
    ]);
    println!("interleaved median of {rounds} (ns/op): {figures}");
    let dir = std::env::var_os("STEWARD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/bench"))
        .join("extra");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("pool.json"), figures.to_string()));
    if let Err(e) = written {
        eprintln!("pool bench: cannot write {}: {e}", dir.display());
    }
}

fn main() {
    benches();
    let quick = std::env::args().any(|a| a == "--quick");
    interleaved(if quick { 3 } else { 10 });
    Criterion::default().configure_from_args().final_summary();
}
