//! Throughput of track+drop against a `Mutex<HashMap>` doing the same
//! bookkeeping (with the tracker's own id hasher and its way of finding a
//! kind), and the cost of `touch()`.
//!
//! Each tracker holds 10 000 live resources of four kinds while measured;
//! every thread keeps a ring of 64 live guards, so an operation tracks a new
//! resource and drops the one tracked 64 operations earlier.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::panic::Location;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steward_tracker::{Tracked, Tracker};

const KINDS: [&str; 4] = ["ws_conn", "audio_buf", "pool_conn", "session"];
const OPS_PER_ITER: u64 = 1_000;
const PREFILL: usize = 10_000;
const RING: usize = 64;

/// What the baseline keeps per resource: what the tracker keeps.
#[allow(dead_code)] // Written for honesty of the bookkeeping, never read.
struct Record {
    /// The kind's place in the book's table (the tracker keeps an index too).
    kind: usize,
    size: u64,
    created_ms: u64,
    last_used_ms: u64,
    site: &'static Location<'static>,
}

#[derive(Default)]
struct KindTotals {
    live_count: u64,
    live_bytes: u64,
    peak_count: u64,
    peak_bytes: u64,
    tracked_count: u64,
    tracked_bytes: u64,
}

/// The tracker's hasher for its own sequential ids (a copy: it is private
/// to the crate), so the baseline's map hashes no slower or faster than the
/// tracker's does (std's default is SipHash, slower than what the tracker
/// pays).
#[derive(Clone, Copy, Default)]
struct IdHash;

/// The low bits of a hash that are the id itself.
const ID_BITS: u64 = (1 << 48) - 1;

#[derive(Default)]
struct IdHasher(u64);

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing: the product's high bits mix every bit of the
        // id. (A fold of the 128-bit product's high half into it changed
        // only bits that the id then replaces, for ids below 2^48.)
        let mixed = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed & !ID_BITS) | (self.0 & ID_BITS)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

#[derive(Default)]
struct Book {
    map: HashMap<u64, Record, IdHash>,
    /// Per-kind totals found by name in a small table, as the tracker finds
    /// its kinds (no string hashing on either side).
    kinds: Vec<(&'static str, KindTotals)>,
    next_id: u64,
    live_count: u64,
    live_bytes: u64,
    peak_count: u64,
    peak_bytes: u64,
}

/// The straightforward design: one mutex around a map and its totals.
#[derive(Clone)]
struct MutexTracker {
    book: Arc<Mutex<Book>>,
    epoch: coarsetime::Instant,
}

struct MutexGuard {
    book: Arc<Mutex<Book>>,
    id: u64,
}

impl MutexTracker {
    fn new() -> Self {
        Self {
            book: Arc::default(),
            epoch: coarsetime::Instant::now_without_cache_update(),
        }
    }

    #[track_caller]
    fn track(&self, kind: &'static str, size: u64) -> MutexGuard {
        let site = Location::caller();
        let now = coarsetime::Instant::now_without_cache_update()
            .duration_since(self.epoch)
            .as_millis();
        let mut book = self.book.lock().unwrap();
        let book = &mut *book;
        let at = match book.kinds.iter().position(|(name, _)| *name == kind) {
            Some(at) => at,
            None => {
                book.kinds.push((kind, KindTotals::default()));
                book.kinds.len() - 1
            }
        };
        book.next_id += 1;
        let id = book.next_id;
        book.map.insert(
            id,
            Record {
                kind: at,
                size,
                created_ms: now,
                last_used_ms: now,
                site,
            },
        );
        let k = &mut book.kinds[at].1;
        k.live_count += 1;
        k.live_bytes += size;
        k.tracked_count += 1;
        k.tracked_bytes += size;
        k.peak_count = k.peak_count.max(k.live_count);
        k.peak_bytes = k.peak_bytes.max(k.live_bytes);
        book.live_count += 1;
        book.live_bytes += size;
        book.peak_count = book.peak_count.max(book.live_count);
        book.peak_bytes = book.peak_bytes.max(book.live_bytes);
        MutexGuard {
            book: Arc::clone(&self.book),
            id,
        }
    }
}

impl Drop for MutexGuard {
    fn drop(&mut self) {
        let mut book = self.book.lock().unwrap();
        if let Some(r) = book.map.remove(&self.id) {
            book.live_count -= 1;
            book.live_bytes -= r.size;
            if let Some((_, k)) = book.kinds.get_mut(r.kind) {
                k.live_count -= 1;
                k.live_bytes -= r.size;
            }
        }
    }
}

/// Runs `work(thread, ops)` on `threads` threads at once and returns the
/// wall time from the common start to the last finish.
fn run_threads<F>(threads: usize, iters: u64, work: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let ops = iters * OPS_PER_ITER / threads as u64;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let work = &work;
                s.spawn(move || {
                    barrier.wait();
                    work(t, ops);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

fn steward_ops(tracker: &Tracker, thread: usize, ops: u64) {
    let mut ring: Vec<Option<Tracked>> = (0..RING).map(|_| None).collect();
    for i in 0..ops as usize {
        let kind = KINDS[(i + thread) % KINDS.len()];
        let guard = tracker.track(kind, 256 + (i as u64 & 1023)).unwrap();
        // Replacing the slot drops the guard tracked RING operations ago.
        ring[i % RING] = Some(black_box(guard));
    }
}

fn mutex_ops(tracker: &MutexTracker, thread: usize, ops: u64) {
    let mut ring: Vec<Option<MutexGuard>> = (0..RING).map(|_| None).collect();
    for i in 0..ops as usize {
        let kind = KINDS[(i + thread) % KINDS.len()];
        let guard = tracker.track(kind, 256 + (i as u64 & 1023));
        ring[i % RING] = Some(black_box(guard));
    }
}

fn track_drop(c: &mut Criterion) {
    for threads in [1usize, 2] {
        let name = if threads == 1 {
            "tracker/track_drop_1thread".to_string()
        } else {
            format!("tracker/track_drop_{threads}threads")
        };
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(OPS_PER_ITER));
        group.sample_size(20);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(6));

        let tracker = Tracker::new();
        let _live: Vec<Tracked> = (0..PREFILL)
            .map(|i| tracker.track(KINDS[i % KINDS.len()], 4096).unwrap())
            .collect();
        group.bench_function("steward", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |t, ops| steward_ops(&tracker, t, ops))
            })
        });

        let baseline = MutexTracker::new();
        let _live: Vec<MutexGuard> = (0..PREFILL)
            .map(|i| baseline.track(KINDS[i % KINDS.len()], 4096))
            .collect();
        group.bench_function("mutex_hashmap", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |t, ops| mutex_ops(&baseline, t, ops))
            })
        });
        group.finish();
    }
}

fn touch(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracker/touch");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let tracker = Tracker::new();
    let guard = tracker.track("ws_conn", 4096).unwrap();
    group.bench_function("steward", |b| b.iter(|| black_box(&guard).touch()));
    group.finish();
}

criterion_group!(benches, track_drop, touch);
criterion_main!(benches);
