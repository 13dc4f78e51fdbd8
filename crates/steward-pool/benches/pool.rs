//! Get + return throughput of steward-pool against raw deadpool and bb8, all
//! with the same no-op manager, plus the keyed pool's overhead.
//!
//! Function ids starting with `steward` are ours; the others are baselines
//! measured in the same run (see `xtask/src/bench.rs`).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steward_pool::{KeyedManager, KeyedPool, KeyedPoolConfig, Manager, Pool, PoolConfig};

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
    KeyedPool::new(
        Noop,
        KeyedPoolConfig {
            per_key: PoolConfig {
                max_size: MAX,
                reaper_interval: None,
                ..PoolConfig::default()
            },
            max_total: 4 * MAX,
        },
    )
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

criterion_group!(benches, get_return_1task, get_return_16tasks, keyed_get);
criterion_main!(benches);
