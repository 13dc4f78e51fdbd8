//! Pools (feature `pool`): idle objects are reaped at `Moderate` and the
//! pools shrink to `min_idle` at `Critical`; their stats, the wait-time
//! histogram included, join [`Health`] and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use steward_monitor::{Level, Monitor};
use steward_pool::{KeyedManager, KeyedPool, Manager, Pool, Stats, WeakKeyedPool, WeakPool};

use super::{Parts, as_u64, on};
use crate::error::Error;
use crate::health::Health;
use crate::metrics::{Out, f, unique};
use crate::{Steward, StewardBuilder};

/// Handler names, as listed by [`Monitor::handlers`] and in reports.
const POOLS_REAP: &str = "steward.pools.reap_idle";
const POOLS_SHRINK: &str = "steward.pools.shrink_to_min_idle";

/// A pool of any manager type, as the wiring sees it: held weakly, so a
/// pool its owner dropped goes (its idle objects with it) and leaves.
pub(crate) trait PoolPart: Send + Sync {
    fn reap_idle(&self) -> usize;
    fn shrink_to_min_idle(&self) -> usize;
    /// `None` once the pool is gone.
    fn stats(&self) -> Option<Stats>;
    fn is_closed(&self) -> bool;
}

impl<M: Manager> PoolPart for WeakPool<M> {
    fn reap_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.reap_idle())
    }

    fn shrink_to_min_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.shrink_to_min_idle())
    }

    fn stats(&self) -> Option<Stats> {
        self.upgrade().map(|p| p.stats())
    }

    fn is_closed(&self) -> bool {
        self.upgrade().is_none_or(|p| p.is_closed())
    }
}

impl<K, M> PoolPart for WeakKeyedPool<K, M>
where
    K: Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    fn reap_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.reap_idle())
    }

    fn shrink_to_min_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.shrink_to_min_idle())
    }

    /// All keys together; `max_size` is the per-key cap.
    fn stats(&self) -> Option<Stats> {
        self.upgrade().map(|p| p.stats().total)
    }

    fn is_closed(&self) -> bool {
        // The global cap reads 0 once the keyed pool is closed.
        self.upgrade().is_none_or(|p| p.stats().max_total == 0)
    }
}

/// The pools under the wiring and what their handlers closed.
pub(crate) struct Pools {
    list: Mutex<Vec<Arc<dyn PoolPart>>>,
    reaped: AtomicU64,
    shrunk: AtomicU64,
}

impl Pools {
    pub(crate) fn new(pools: Vec<Arc<dyn PoolPart>>) -> Self {
        Self {
            list: Mutex::new(pools),
            reaped: AtomicU64::new(0),
            shrunk: AtomicU64::new(0),
        }
    }

    fn add(&self, pool: Arc<dyn PoolPart>) {
        self.list.lock().push(pool);
    }

    /// The live pools; closed ones are let go here.
    fn live(&self) -> Vec<Arc<dyn PoolPart>> {
        let mut pools = self.list.lock();
        pools.retain(|p| !p.is_closed());
        pools.clone()
    }

    pub(crate) fn health(&self, h: &mut Health) {
        h.pools = self.live().iter().filter_map(|pool| pool.stats()).collect();
        h.cleanup.pool_objects_reaped = self.reaped.load(Relaxed);
        h.cleanup.pool_objects_shrunk = self.shrunk.load(Relaxed);
    }
}

/// Reaping is cheap in-memory work: it runs first at `Moderate`; the
/// shrink runs first at `Critical`.
pub(crate) fn register(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
    on(
        monitor,
        parts,
        Level::Moderate,
        0,
        POOLS_REAP,
        |p, _| async move {
            let closed: usize = p.pools.live().iter().map(|pool| pool.reap_idle()).sum();
            p.pools.reaped.fetch_add(as_u64(closed), Relaxed);
            Ok(0)
        },
    )?;
    on(
        monitor,
        parts,
        Level::Critical,
        10,
        POOLS_SHRINK,
        |p, _| async move {
            let pools = p.pools.live();
            let closed: usize = pools.iter().map(|pool| pool.shrink_to_min_idle()).sum();
            p.pools.shrunk.fetch_add(as_u64(closed), Relaxed);
            Ok(0)
        },
    )
}

type Get = fn(&Stats) -> u64;

/// The `steward_pool_*` families, one row per pool.
pub(crate) fn metrics(o: &mut Out, h: &Health) {
    if h.pools.is_empty() {
        return;
    }
    let names = unique(h.pools.iter().map(|m| m.name.clone()));
    let rows: Vec<(&str, &Stats)> = names.iter().map(String::as_str).zip(&h.pools).collect();
    let gauges: &[(&str, &str, &str, Get)] = &[
        (
            "steward_pool_max_size",
            "gauge",
            "The pool's size limit (0 once closed).",
            |m| as_u64(m.max_size),
        ),
        (
            "steward_pool_waiters",
            "gauge",
            "Callers waiting for an object.",
            |m| as_u64(m.waiters),
        ),
    ];
    crate::metrics::per_row(o, "pool", &rows, gauges);
    o.family(
        "steward_pool_objects",
        "gauge",
        "Live objects of the pool, by state.",
    );
    for (pool, m) in &rows {
        for (state, n) in [("idle", m.idle), ("in_use", m.in_use)] {
            let labels = [("pool", *pool), ("state", state)];
            o.sample("steward_pool_objects", &labels, f(as_u64(n)));
        }
    }
    let counters: &[(&str, &str, &str, Get)] = &[
        (
            "steward_pool_created_total",
            "counter",
            "Objects the manager created.",
            |m| m.created,
        ),
        (
            "steward_pool_recycled_total",
            "counter",
            "Checkouts that reused an idle object.",
            |m| m.recycled,
        ),
        (
            "steward_pool_create_errors_total",
            "counter",
            "Failed or timed-out creates.",
            |m| m.create_errors,
        ),
        (
            "steward_pool_waits_total",
            "counter",
            "Checkouts that had to wait.",
            |m| m.wait_count,
        ),
        (
            "steward_pool_wait_timeouts_total",
            "counter",
            "Waits that gave up at the timeout.",
            |m| m.wait_timeouts,
        ),
    ];
    crate::metrics::per_row(o, "pool", &rows, counters);
    closed(o, &rows);
    wait_histogram(o, &rows);
}

/// `steward_pool_closed_total`, by reason.
fn closed(o: &mut Out, rows: &[(&str, &Stats)]) {
    let name = "steward_pool_closed_total";
    o.family(name, "counter", "Objects closed, by reason.");
    for (pool, m) in rows {
        let c = &m.closed;
        let reasons = [
            ("broken", c.broken),
            ("idle", c.idle),
            ("lifetime", c.lifetime),
            ("shrink", c.shrink),
            ("closed", c.closed),
            ("evicted", c.evicted),
            ("removed", c.removed),
        ];
        for (reason, v) in reasons {
            o.sample(name, &[("pool", pool), ("reason", reason)], f(v));
        }
    }
}

/// `steward_pool_wait_seconds`: the pool's wait-time buckets as a
/// Prometheus histogram (cumulative `_bucket`s, `_sum`, `_count`). The pool
/// times one wait in 8 and counts it 8 times, so `_count` is about
/// `steward_pool_waits_total`, not equal to it.
fn wait_histogram(o: &mut Out, rows: &[(&str, &Stats)]) {
    let name = "steward_pool_wait_seconds";
    o.family(
        name,
        "histogram",
        "How long checkouts waited for an object (one wait in 8 timed, counted 8 times).",
    );
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for (pool, m) in rows {
        let mut cumulative = 0u64;
        for b in &m.wait_time {
            cumulative = cumulative.saturating_add(b.count);
            // The last bucket has no bound: it is `+Inf`, written below.
            if let Some(bound) = b.le {
                let le = crate::metrics::number(seconds(bound));
                o.sample(&bucket, &[("pool", pool), ("le", &le)], f(cumulative));
            }
        }
        o.sample(&bucket, &[("pool", pool), ("le", "+Inf")], f(cumulative));
        o.sample(&sum, &[("pool", pool)], seconds(m.wait_time_sum));
        o.sample(&count, &[("pool", pool)], f(cumulative));
    }
}

/// A wait time in seconds, computed from whole microseconds (the pool's
/// resolution) as one division, so a bound prints as `0.0001`, not as a
/// sum of rounded parts.
fn seconds(d: std::time::Duration) -> f64 {
    f(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)) / 1e6
}

impl StewardBuilder {
    /// The pool reaps idle objects at `Moderate`, shrinks to `min_idle` at
    /// `Critical`, and its stats join [`Health`]. Held weakly: a pool you
    /// drop goes as it would without the steward (its idle objects closed)
    /// and leaves the wiring. More pools can be added later with
    /// [`Steward::add_pool`].
    pub fn pool<M: Manager>(mut self, pool: &Pool<M>) -> Self {
        self.parts.pools.push(Arc::new(pool.downgrade()));
        self
    }

    /// Like [`StewardBuilder::pool`], for a keyed pool: every key's
    /// sub-pool reaps and shrinks; [`Health`] shows all keys together.
    pub fn keyed_pool<K, M>(mut self, pool: &KeyedPool<K, M>) -> Self
    where
        K: Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync + 'static,
        M: KeyedManager<K>,
    {
        self.parts.pools.push(Arc::new(pool.downgrade()));
        self
    }
}

impl Steward {
    /// Puts a pool under the wiring (see [`StewardBuilder::pool`]), held
    /// weakly: it leaves once closed or dropped.
    pub fn add_pool<M: Manager>(&self, pool: &Pool<M>) {
        self.parts().pools.add(Arc::new(pool.downgrade()));
    }

    /// Puts a keyed pool under the wiring (see [`StewardBuilder::keyed_pool`]).
    pub fn add_keyed_pool<K, M>(&self, pool: &KeyedPool<K, M>)
    where
        K: Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync + 'static,
        M: KeyedManager<K>,
    {
        self.parts().pools.add(Arc::new(pool.downgrade()));
    }
}
