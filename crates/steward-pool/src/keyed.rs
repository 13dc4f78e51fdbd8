//! A pool of sub-pools, one per key, under a per-key and a global cap.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use crate::core::Global;
use crate::{
    CloseReason, Error, KeyedManager, KeyedPoolConfig, Manager, Pool, PoolConfig, Pooled,
    QueueMode, Refused, Result, Stats,
};

/// Adapts a [`KeyedManager`] to one key's sub-pool. Built by
/// [`KeyedPool`]; it appears in the guard type [`KeyedPooled`].
pub struct KeyAdapter<K, M> {
    key: K,
    manager: Arc<M>,
}

impl<K, M> fmt::Debug for KeyAdapter<K, M>
where
    K: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAdapter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<K, M> Manager for KeyAdapter<K, M>
where
    K: Send + Sync + 'static,
    M: KeyedManager<K>,
{
    type Object = M::Object;
    type Error = M::Error;

    fn create(&self) -> impl Future<Output = std::result::Result<M::Object, M::Error>> + Send {
        self.manager.create(&self.key)
    }

    fn recycle(
        &self,
        obj: &mut M::Object,
    ) -> impl Future<Output = std::result::Result<(), M::Error>> + Send {
        self.manager.recycle(&self.key, obj)
    }

    fn close(&self, obj: &mut M::Object, reason: CloseReason) {
        self.manager.close(&self.key, obj, reason);
    }
}

/// The guard a [`KeyedPool`] hands out.
pub type KeyedPooled<K, M> = Pooled<KeyAdapter<K, M>>;

type Sub<K, M> = Pool<KeyAdapter<K, M>>;

/// A snapshot of a keyed pool. `#[non_exhaustive]`: outside this crate
/// build one with `KeyedStats::default()` and assign fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyedStats {
    /// The global cap (0 once closed).
    pub max_total: usize,
    /// Keys with a sub-pool right now.
    pub keys: usize,
    /// All sub-pools together, including the counters of sub-pools already
    /// dropped; `max_size` is the per-key cap.
    pub total: Stats,
    /// Each live sub-pool, by the key's `Debug` form.
    pub per_key: BTreeMap<String, Stats>,
}

struct KeyedInner<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    manager: Arc<M>,
    config: KeyedPoolConfig,
    global: Arc<Global>,
    pools: RwLock<HashMap<K, Sub<K, M>>>,
    /// Counters of sub-pools dropped because they were empty.
    retired: Mutex<Option<Stats>>,
    reaper: Mutex<Option<AbortHandle>>,
}

impl<K, M> Drop for KeyedInner<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    fn drop(&mut self) {
        if let Some(r) = self.reaper.lock().take() {
            r.abort();
        }
    }
}

/// A keyed pool: a sub-pool per key (say a URL) with a per-key cap
/// (`per_key.max_size`) and a global cap (`max_total`) across keys. When the
/// global cap is reached, an idle object of another key is closed to make
/// room before anyone waits; sub-pools with nothing in them are dropped.
///
/// A cheap-clone handle; one reaper task serves every key.
pub struct KeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    inner: Arc<KeyedInner<K, M>>,
}

impl<K, M> Clone for KeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// A handle that does not keep its keyed pool alive (see
/// [`KeyedPool::downgrade`]).
pub struct WeakKeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    inner: Weak<KeyedInner<K, M>>,
}

impl<K, M> Clone for WeakKeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, M> fmt::Debug for WeakKeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakKeyedPool")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish_non_exhaustive()
    }
}

impl<K, M> WeakKeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    /// The keyed pool, while a [`KeyedPool`] handle (or what keeps it,
    /// such as a checked-out object) still exists.
    pub fn upgrade(&self) -> Option<KeyedPool<K, M>> {
        self.inner.upgrade().map(|inner| KeyedPool { inner })
    }
}

impl<K, M> KeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    /// A handle that does not keep the keyed pool alive.
    pub fn downgrade(&self) -> WeakKeyedPool<K, M> {
        WeakKeyedPool {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

impl<K, M> fmt::Debug for KeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPool")
            .field("name", &self.inner.config.per_key.name)
            .field("max_total", &self.inner.config.max_total)
            .finish_non_exhaustive()
    }
}

/// Builds a [`KeyedPool`]: start from [`KeyedPool::builder`], set what you
/// need, then [`KeyedPoolBuilder::build`]. The per-key setters set
/// [`KeyedPoolConfig::per_key`], the settings of every sub-pool.
#[must_use = "a builder does nothing until `build` is called"]
pub struct KeyedPoolBuilder<K, M> {
    manager: M,
    config: KeyedPoolConfig,
    /// The key type is fixed by the pool the builder makes.
    key: PhantomData<fn() -> K>,
}

impl<K, M> fmt::Debug for KeyedPoolBuilder<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPoolBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A setter of one field of every sub-pool's settings.
macro_rules! per_key_setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.per_key.$name = value;
            self
        }
    };
}

impl<K, M> KeyedPoolBuilder<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    /// Replaces the whole configuration.
    pub fn config(mut self, config: KeyedPoolConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the settings of every sub-pool.
    pub fn per_key(mut self, per_key: PoolConfig) -> Self {
        self.config.per_key = per_key;
        self
    }

    /// Most live objects across all keys.
    pub fn max_total(mut self, max_total: usize) -> Self {
        self.config.max_total = max_total;
        self
    }

    /// A name for logs, errors and metrics (sub-pools add their key).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.per_key.name = name.into();
        self
    }

    per_key_setter!(/// Most live objects of one key (the per-key cap).
        max_size: usize);
    per_key_setter!(/// How long `get` waits for a slot (`None`: forever).
        wait_timeout: Option<Duration>);
    per_key_setter!(/// Bound on the manager's `create`.
        create_timeout: Option<Duration>);
    per_key_setter!(/// Bound on the manager's `recycle`.
        recycle_timeout: Option<Duration>);
    per_key_setter!(/// Objects older than this are closed.
        max_lifetime: Option<Duration>);
    per_key_setter!(/// Idle objects unused this long are closed by the reaper.
        idle_timeout: Option<Duration>);
    per_key_setter!(/// Idle objects the reaper keeps ready, per key.
        min_idle: usize);
    per_key_setter!(/// How often the one reaper runs (`None`: no reaper task).
        reaper_interval: Option<Duration>);
    per_key_setter!(/// Run the manager's `recycle` on checkout.
        health_check: bool);
    per_key_setter!(/// Skip the health check for objects returned this recently.
        recent_window: Duration);
    per_key_setter!(/// Which idle object a checkout takes.
        queue_mode: QueueMode);

    /// Builds the keyed pool and, when `reaper_interval` is set, starts its
    /// reaper on the current Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for impossible limits or a reaper outside a Tokio
    /// runtime.
    pub fn build(self) -> Result<KeyedPool<K, M>, M::Error> {
        KeyedPool::from_config(self.manager, self.config)
    }
}

impl<K, M> KeyedPool<K, M>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    /// A builder with [`KeyedPoolConfig::default`] settings.
    pub fn builder(manager: M) -> KeyedPoolBuilder<K, M> {
        KeyedPoolBuilder {
            manager,
            config: KeyedPoolConfig::default(),
            key: PhantomData,
        }
    }

    /// Builds a keyed pool; starts its reaper when
    /// `config.per_key.reaper_interval` is set.
    fn from_config(manager: M, config: KeyedPoolConfig) -> Result<Self, M::Error> {
        let name: Arc<str> = Arc::from(config.per_key.name.as_str());
        let problem = config.per_key.problem().or_else(|| {
            (config.max_total == 0).then(|| "max_total must be at least 1".to_string())
        });
        if let Some(reason) = problem {
            return Err(Error::Config { pool: name, reason });
        }
        let runtime = match config.per_key.reaper_interval {
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| Error::Config {
                pool: name.clone(),
                reason: "the reaper needs a Tokio runtime: build the pool inside one or set reaper_interval to None".into(),
            })?),
            None => None,
        };
        let global = Arc::new(Global::new(config.max_total));
        let inner = Arc::new(KeyedInner {
            manager: Arc::new(manager),
            global: global.clone(),
            config,
            pools: RwLock::new(HashMap::new()),
            retired: Mutex::new(None),
            reaper: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let evict: Box<dyn Fn() -> bool + Send + Sync> = Box::new(move || {
            weak.upgrade()
                .is_some_and(|k| KeyedPool { inner: k }.evict_one())
        });
        let _ = global.evict.set(evict);
        if let (Some(every), Some(rt)) = (inner.config.per_key.reaper_interval, runtime) {
            let handle = rt.spawn(keyed_reaper(Arc::downgrade(&inner), every));
            *inner.reaper.lock() = Some(handle.abort_handle());
        }
        Ok(Self { inner })
    }

    /// The sub-pool of `key`, made on first use.
    fn sub(&self, key: &K) -> Result<Sub<K, M>, M::Error> {
        if let Some(p) = self.inner.pools.read().get(key) {
            return Ok(p.clone());
        }
        let mut pools = self.inner.pools.write();
        if self.inner.global.closed.load(SeqCst) {
            return Err(Error::Closed {
                pool: Arc::from(self.inner.config.per_key.name.as_str()),
            });
        }
        if let Some(p) = pools.get(key) {
            return Ok(p.clone());
        }
        let mut config = self.inner.config.per_key.clone();
        config.name = format!("{}[{key:?}]", config.name);
        let adapter = KeyAdapter {
            key: key.clone(),
            manager: self.inner.manager.clone(),
        };
        let pool = Pool::from_parts(adapter, &config, Some(self.inner.global.clone()), None)?;
        pools.insert(key.clone(), pool.clone());
        Ok(pool)
    }

    /// Checks out an object for `key`; see [`Pool::get`]. The wait timeout
    /// also bounds waiting for room under the global cap. Cancel safe like
    /// [`Pool::get`]: nothing leaks, per key or under the global cap.
    ///
    /// # Errors
    /// As [`Pool::get`].
    pub async fn get(&self, key: &K) -> Result<KeyedPooled<K, M>, M::Error> {
        self.sub(key)?.get().await
    }

    /// Checks out an object for `key` without waiting for a per-key slot;
    /// see [`Pool::try_get`]. Cancel safe like [`Pool::get`].
    ///
    /// # Errors
    /// As [`Pool::try_get`].
    pub async fn try_get(&self, key: &K) -> Result<KeyedPooled<K, M>, M::Error> {
        self.sub(key)?.try_get().await
    }

    /// Adds an object made outside the pool for `key`; refused with
    /// [`Error::Full`] when the key or the whole pool is at its cap.
    ///
    /// # Errors
    /// [`Error::Full`] or [`Error::Closed`], with the object.
    pub fn add(
        &self,
        key: &K,
        object: M::Object,
    ) -> std::result::Result<(), Refused<M::Object, M::Error>> {
        match self.sub(key) {
            Ok(p) => p.add(object),
            Err(error) => Err(Refused { object, error }),
        }
    }

    fn snapshot(&self) -> Vec<(K, Sub<K, M>)> {
        self.inner
            .pools
            .read()
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    /// Closes one idle object, from the key with the most idle objects.
    fn evict_one(&self) -> bool {
        let victim = self
            .snapshot()
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p.idle_count() > 0)
            .max_by_key(|p| p.idle_count());
        victim.is_some_and(|p| p.evict_one())
    }

    /// Drops sub-pools with no objects and no users, keeping their counters.
    fn prune(&self) {
        let mut pools = self.inner.pools.write();
        let mut retired = self.inner.retired.lock();
        pools.retain(|_, p| {
            if !p.is_unused() {
                return true;
            }
            let m = p.stats();
            match retired.as_mut() {
                Some(r) => r.merge(&m),
                None => {
                    let mut r = m;
                    r.size = 0;
                    r.idle = 0;
                    r.in_use = 0;
                    r.waiters = 0;
                    *retired = Some(r);
                }
            }
            false
        });
    }

    /// Expires idle objects in every sub-pool (see [`Pool::reap_idle`]) and
    /// drops empty sub-pools. Returns how many objects it closed.
    pub fn reap_idle(&self) -> usize {
        let closed = self.snapshot().iter().map(|(_, p)| p.reap_idle()).sum();
        self.prune();
        closed
    }

    /// Closes idle objects beyond `min_idle` in every sub-pool and drops empty
    /// sub-pools. Returns how many objects it closed.
    pub fn shrink_to_min_idle(&self) -> usize {
        let closed = self
            .snapshot()
            .iter()
            .map(|(_, p)| p.shrink_to_min_idle())
            .sum();
        self.prune();
        closed
    }

    /// Closes idle objects the predicate rejects, in every sub-pool.
    pub fn retain(&self, mut keep: impl FnMut(&K, &M::Object) -> bool) -> usize {
        let closed = self
            .snapshot()
            .iter()
            .map(|(k, p)| p.retain(|o, _| keep(k, o)))
            .sum();
        self.prune();
        closed
    }

    /// Closes every sub-pool; see [`Pool::close`].
    pub fn close(&self) {
        {
            let _pools = self.inner.pools.write();
            self.inner.global.closed.store(true, SeqCst);
            self.inner.global.cap.store(0, SeqCst);
        }
        self.inner.global.notify.notify_waiters();
        if let Some(r) = self.inner.reaper.lock().take() {
            r.abort();
        }
        for (_, p) in self.snapshot() {
            p.close();
        }
    }

    /// Live objects across all keys.
    pub fn size(&self) -> usize {
        self.inner.global.live.load(SeqCst)
    }

    /// A snapshot: totals and one entry per key.
    pub fn stats(&self) -> KeyedStats {
        let pools = self.snapshot();
        let mut total = self.inner.retired.lock().clone().unwrap_or_default();
        total.name = self.inner.config.per_key.name.clone();
        total.max_size = self.inner.config.per_key.max_size;
        let mut per_key = BTreeMap::new();
        for (k, p) in &pools {
            let m = p.stats();
            total.merge(&m);
            per_key.insert(format!("{k:?}"), m);
        }
        let closed = self.inner.global.closed.load(SeqCst);
        KeyedStats {
            max_total: if closed {
                0
            } else {
                self.inner.config.max_total
            },
            keys: pools.len(),
            total,
            per_key,
        }
    }

    /// The number of keys with a sub-pool.
    pub fn keys(&self) -> usize {
        self.inner.pools.read().len()
    }

    /// The keyed reaper's pass.
    async fn maintain(&self) {
        for (_, p) in self.snapshot() {
            p.maintain().await;
        }
        self.prune();
    }
}

async fn keyed_reaper<K, M>(pool: Weak<KeyedInner<K, M>>, every: Duration)
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    M: KeyedManager<K>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once, when nothing can be idle yet: skip it.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        KeyedPool { inner }.maintain().await;
    }
}
