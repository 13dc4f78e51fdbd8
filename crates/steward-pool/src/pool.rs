//! The pool handle, its builder and the checkout guard.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use deadpool::managed::{PoolError, Timeouts};

use crate::core::{Adapter, AdapterError, Count, Entry, Global, Live, Shared, with_deadline};
use crate::stats::Counters;
use crate::{CloseReason, Error, Manager, PoolConfig, QueueMode, Refused, Result, Stats};

type DeadPool<M> = deadpool::managed::Pool<Adapter<M>>;
type DeadObject<M> = deadpool::managed::Object<Adapter<M>>;

/// deadpool's non-blocking checkout (a zero wait is a plain `try_acquire`).
const NO_WAIT: Timeouts = Timeouts {
    wait: Some(Duration::ZERO),
    create: None,
    recycle: None,
};
/// One wait in this many is timed for the wait-time histogram (and counts
/// this many times there).
const WAIT_SAMPLE: u64 = 8;
/// deadpool's blocking checkout; our own timer bounds it.
const BLOCK: Timeouts = Timeouts::new();

pub(crate) struct Inner<M: Manager> {
    pub(crate) shared: Arc<Shared<M>>,
    pool: DeadPool<M>,
    /// Serializes `resize` and `close`.
    admin: Mutex<()>,
    reaper: Mutex<Option<AbortHandle>>,
}

impl<M: Manager> Drop for Inner<M> {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.lock().take() {
            r.abort();
        }
        // Close what is idle so the close hook runs and counters settle.
        self.close_idle(CloseReason::Closed, usize::MAX, |_, _| true);
    }
}

impl<M: Manager> Inner<M> {
    /// Idle objects: in deadpool's queue plus staged (a moment's view).
    fn idle(&self) -> usize {
        self.pool.status().available + self.shared.staged.lock().len()
    }

    /// Closes up to `limit` idle objects `pick` selects, least recently
    /// used first (staged objects before deadpool's queue). Returns how many.
    fn close_idle(
        &self,
        reason: CloseReason,
        limit: usize,
        mut pick: impl FnMut(&M::Object, &ObjectInfo) -> bool,
    ) -> usize {
        let now = Instant::now();
        let s = &*self.shared;
        s.lv.note(now);
        if limit == 0 {
            return 0;
        }
        let mut closed = 0;
        let doomed: Vec<Entry<M::Object>> = {
            let mut staged = s.staged.lock();
            let mut keep = std::collections::VecDeque::with_capacity(staged.len());
            let mut doomed = Vec::new();
            // Oldest first: staged objects are pushed at the back.
            while let Some(e) = staged.pop_front() {
                if closed < limit && pick(&e.obj, &ObjectInfo::of(&e, now)) {
                    closed += 1;
                    doomed.push(e);
                } else {
                    keep.push_back(e);
                }
            }
            *staged = keep;
            doomed
        };
        for e in doomed {
            s.discard(e, reason);
        }
        if closed < limit {
            // deadpool's queue: both modes return objects at the back, so
            // the front holds the least recently used.
            let result = self.pool.retain(|e, _| {
                if closed < limit && pick(&e.obj, &ObjectInfo::of(e, now)) {
                    closed += 1;
                    e.set_reason(reason);
                    false
                } else {
                    true
                }
            });
            // The objects were closed (and counted) in the adapter's `detach`.
            drop(result);
        }
        if closed > 0 {
            tracing::debug!(pool = %s.name, closed, ?reason, "closed idle objects");
        }
        closed
    }
}

/// What the pool knows about an idle object, for `retain` predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// Time since it was created (or added).
    pub age: Duration,
    /// Time since it was last returned.
    pub idle: Duration,
}

impl ObjectInfo {
    fn of<T>(e: &Entry<T>, now: Instant) -> Self {
        Self {
            age: now.saturating_duration_since(e.created),
            idle: now.saturating_duration_since(e.last_used()),
        }
    }
}

/// A generic async pool on deadpool with a real size limit, lifetimes,
/// idle expiry, `min_idle`, a background reaper and counters
/// ([`Pool::stats`]).
///
/// A cheap-clone handle: clones share one pool. The pool (and its reaper)
/// goes away when the last handle and the last checked-out object are
/// dropped; idle objects are then closed with [`CloseReason::Closed`].
pub struct Pool<M: Manager> {
    pub(crate) inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// A handle that does not keep its pool alive (see [`Pool::downgrade`]):
/// for a supervisor that looks after pools it does not own.
pub struct WeakPool<M: Manager> {
    inner: Weak<Inner<M>>,
}

impl<M: Manager> Clone for WeakPool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Manager> std::fmt::Debug for WeakPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakPool")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish_non_exhaustive()
    }
}

impl<M: Manager> WeakPool<M> {
    /// The pool, while a [`Pool`] handle or a checked-out object still
    /// keeps it.
    pub fn upgrade(&self) -> Option<Pool<M>> {
        self.inner.upgrade().map(|inner| Pool { inner })
    }
}

impl<M: Manager> Pool<M> {
    /// A handle that does not keep the pool alive: when every [`Pool`]
    /// handle and checked-out object is gone the pool goes as usual, and
    /// [`WeakPool::upgrade`] says `None`.
    pub fn downgrade(&self) -> WeakPool<M> {
        WeakPool {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.shared.name)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Builds a [`Pool`]: start from [`Pool::builder`], set what you need,
/// then [`PoolBuilder::build`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder<M: Manager> {
    manager: M,
    config: PoolConfig,
}

impl<M: Manager> fmt::Debug for PoolBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl<M: Manager> PoolBuilder<M> {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    /// A name for logs, errors and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    setter!(/// Most live objects (idle + in use).
        max_size: usize);
    setter!(/// How long `get` waits for a slot (`None`: forever).
        wait_timeout: Option<Duration>);
    setter!(/// Bound on the manager's `create`.
        create_timeout: Option<Duration>);
    setter!(/// Bound on the manager's `recycle`.
        recycle_timeout: Option<Duration>);
    setter!(/// Objects older than this are closed.
        max_lifetime: Option<Duration>);
    setter!(/// Idle objects unused this long are closed by the reaper.
        idle_timeout: Option<Duration>);
    setter!(/// Idle objects the reaper keeps ready.
        min_idle: usize);
    setter!(/// How often the reaper runs (`None`: no reaper task).
        reaper_interval: Option<Duration>);
    setter!(/// Run the manager's `recycle` on checkout.
        health_check: bool);
    setter!(/// Skip the health check for objects returned this recently.
        recent_window: Duration);
    setter!(/// Which idle object a checkout takes.
        queue_mode: QueueMode);

    /// Builds the pool and, when `reaper_interval` is set, starts its reaper
    /// on the current Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] when the limits do not fit together, or a reaper is
    /// asked for outside a Tokio runtime.
    pub fn build(self) -> Result<Pool<M>, M::Error> {
        let reaper = self.config.reaper_interval;
        Pool::from_parts(self.manager, &self.config, None, reaper)
    }
}

impl<M: Manager> Pool<M> {
    /// A builder with [`PoolConfig::default`] settings.
    pub fn builder(manager: M) -> PoolBuilder<M> {
        PoolBuilder {
            manager,
            config: PoolConfig::default(),
        }
    }

    pub(crate) fn from_parts(
        manager: M,
        config: &PoolConfig,
        global: Option<Arc<Global>>,
        reaper: Option<Duration>,
    ) -> Result<Self, M::Error> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        if let Some(reason) = config.problem() {
            return Err(Error::Config { pool: name, reason });
        }
        let runtime = match reaper {
            Some(_) => match tokio::runtime::Handle::try_current() {
                Ok(h) => Some(h),
                Err(_) => {
                    return Err(Error::Config {
                        pool: name,
                        reason: "the reaper needs a Tokio runtime: build the pool inside one or set reaper_interval to None".into(),
                    });
                }
            },
            None => None,
        };
        let shared = Arc::new(Shared::new(manager, config, global));
        let mode = match config.queue_mode {
            QueueMode::Lifo => deadpool::managed::QueueMode::Lifo,
            QueueMode::Fifo => deadpool::managed::QueueMode::Fifo,
        };
        let pool = deadpool::managed::Pool::builder(Adapter(shared.clone()))
            .max_size(config.max_size)
            .queue_mode(mode)
            .build()
            .map_err(|e| Error::Config {
                pool: name.clone(),
                reason: e.to_string(),
            })?;
        let inner = Arc::new(Inner {
            shared,
            pool,
            admin: Mutex::new(()),
            reaper: Mutex::new(None),
        });
        if let (Some(every), Some(rt)) = (reaper, runtime) {
            let handle = rt.spawn(reaper_loop(Arc::downgrade(&inner), every));
            *inner.reaper.lock() = Some(handle.abort_handle());
        }
        Ok(Self { inner })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.inner.shared.manager
    }

    /// Checks out an object, waiting up to the configured wait timeout for a
    /// free slot.
    ///
    /// Cancel safety: dropping the future at any point gives back the slot
    /// and any object it was creating or checking; nothing leaks.
    ///
    /// # Errors
    /// [`Error::WaitTimeout`], [`Error::Closed`], [`Error::Create`],
    /// [`Error::CreateTimeout`].
    pub async fn get(&self) -> Result<Pooled<M>, M::Error> {
        let wait = self.inner.shared.t.wait_timeout;
        self.checkout(wait, false).await
    }

    /// Like [`Pool::get`] with another wait timeout (`None`: forever).
    /// Cancel safe like [`Pool::get`].
    ///
    /// # Errors
    /// As [`Pool::get`].
    pub async fn get_timeout(&self, wait: Option<Duration>) -> Result<Pooled<M>, M::Error> {
        self.checkout(wait, false).await
    }

    /// Checks out an object without waiting: [`Error::Full`] at once when
    /// every object is in use and no more may be made. It may still create
    /// an object (bounded by the create timeout). Cancel safe like
    /// [`Pool::get`].
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::Closed`], [`Error::Create`],
    /// [`Error::CreateTimeout`].
    pub async fn try_get(&self) -> Result<Pooled<M>, M::Error> {
        self.checkout(None, true).await
    }

    async fn checkout(&self, wait: Option<Duration>, no_wait: bool) -> Result<Pooled<M>, M::Error> {
        // Fast path: a free permit, no timer armed.
        match self.inner.pool.timeout_get(&NO_WAIT).await {
            Ok(obj) => return Ok(Pooled { obj: Some(obj) }),
            Err(e) => self.must_wait(e)?,
        }
        if no_wait {
            return Err(self.full_or_closed());
        }
        Box::pin(self.wait_checkout(wait)).await
    }

    /// `Ok` when deadpool's error means "wait and retry", the caller's
    /// error otherwise.
    fn must_wait(&self, e: PoolError<AdapterError<M::Error>>) -> Result<(), M::Error> {
        let pool = self.inner.shared.name.clone();
        match e {
            PoolError::Timeout(_) | PoolError::Backend(AdapterError::AtCap) => Ok(()),
            PoolError::Backend(a) => Err(a.into_error(&pool)),
            // Closed; and what we configure out (deadpool timeouts that need
            // a runtime, hooks) cannot happen: reported as closed too.
            _ => Err(Error::Closed { pool }),
        }
    }

    /// The slow path: wait for a permit (deadpool's fair queue), or, when
    /// live objects are at our cap (after a shrink), for one to come back.
    async fn wait_checkout(&self, wait: Option<Duration>) -> Result<Pooled<M>, M::Error> {
        let s = &*self.inner.shared;
        let n = s
            .counters
            .wait_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A clock read costs as much as a checkout here: time one wait in
        // `WAIT_SAMPLE` for the histogram (plus every wait with a deadline).
        let sampled = n.is_multiple_of(WAIT_SAMPLE);
        let start = (sampled || wait.is_some()).then(Instant::now);
        let deadline = wait.zip(start).map(|(w, t)| t + w);
        let outcome = loop {
            match with_deadline(deadline, self.inner.pool.timeout_get(&BLOCK)).await {
                Some(Ok(obj)) => break Ok(Pooled { obj: Some(obj) }),
                Some(Err(e)) => {
                    if let Err(e) = self.must_wait(e) {
                        break Err(e);
                    }
                }
                None => break Err(self.wait_timed_out(start)),
            }
            // At our cap: register for returns and closes, look once more
            // (one may have come back meanwhile), then sleep.
            let _retrying = Count::new(&s.lv.retriers);
            let mut changed = pin!(s.lv.changed.notified());
            changed.as_mut().enable();
            match self.inner.pool.timeout_get(&NO_WAIT).await {
                Ok(obj) => break Ok(Pooled { obj: Some(obj) }),
                Err(e) => {
                    if let Err(e) = self.must_wait(e) {
                        break Err(e);
                    }
                }
            }
            if with_deadline(deadline, changed).await.is_none() {
                break Err(self.wait_timed_out(start));
            }
        };
        if let Some(t) = start.filter(|_| sampled) {
            s.counters.waited(t.elapsed(), WAIT_SAMPLE);
        }
        outcome
    }

    fn full_or_closed(&self) -> Error<M::Error> {
        let s = &*self.inner.shared;
        let pool = s.name.clone();
        if s.is_closed() {
            Error::Closed { pool }
        } else {
            Error::Full {
                pool,
                max_size: s.max_size.load(SeqCst),
            }
        }
    }

    fn wait_timed_out(&self, start: Option<Instant>) -> Error<M::Error> {
        let s = &*self.inner.shared;
        let waited = start.map(|t| t.elapsed()).unwrap_or_default();
        Counters::bump(&s.counters.wait_timeouts);
        tracing::warn!(pool = %s.name, ?waited, "timed out waiting for a pooled object");
        Error::WaitTimeout {
            pool: s.name.clone(),
            waited,
        }
    }

    /// Adds an object created outside the pool, as idle. Expired idle
    /// objects are closed first; then it is refused with [`Error::Full`] if
    /// the pool is still at `max_size` (nothing is added, the object comes
    /// back in [`Refused`]).
    ///
    /// # Errors
    /// [`Error::Full`] or [`Error::Closed`], with the object.
    pub fn add(&self, object: M::Object) -> std::result::Result<(), Refused<M::Object, M::Error>> {
        let s = &*self.inner.shared;
        if !s.is_closed() {
            self.reap_idle();
        }
        let Some(reservation) = s.try_reserve() else {
            return Err(Refused {
                object,
                error: self.full_or_closed(),
            });
        };
        Counters::bump(&s.counters.added);
        let now = Instant::now();
        s.lv.note(now);
        let entry = Entry::new(object, now, reservation.into_token());
        s.staged.lock().push_back(entry);
        s.wake_retriers();
        Ok(())
    }

    /// Changes `max_size`. Growing lets waiters in at once. Shrinking closes
    /// idle objects over the new limit now and objects in use when they come
    /// back; no new object is created until the live count is under the
    /// limit.
    ///
    /// # Errors
    /// [`Error::Config`] for 0 or below `min_idle`, [`Error::Closed`].
    pub fn resize(&self, max_size: usize) -> Result<(), M::Error> {
        let s = &*self.inner.shared;
        if max_size == 0 || max_size < s.t.min_idle {
            return Err(Error::Config {
                pool: s.name.clone(),
                reason: format!("cannot resize to {max_size} (min_idle is {})", s.t.min_idle),
            });
        }
        let _admin = self.inner.admin.lock();
        if s.is_closed() {
            return Err(Error::Closed {
                pool: s.name.clone(),
            });
        }
        let old = s.max_size.swap(max_size, SeqCst);
        s.lv.cap.store(max_size, SeqCst);
        if max_size < old {
            // Close idle objects over the limit ourselves first (deadpool's
            // resize drops them without telling the manager).
            let excess = s.live().saturating_sub(max_size);
            self.inner
                .close_idle(CloseReason::Shrink, excess, |_, _| true);
        }
        // deadpool's permits follow (a shrink may leave some: our live count
        // still holds the line).
        self.inner.pool.resize(max_size);
        s.lv.changed.notify_waiters();
        tracing::info!(pool = %s.name, old, new = max_size, "pool resized");
        Ok(())
    }

    /// Closes every idle object the predicate rejects; returns how many.
    /// Safe to call while other tasks check out, return or read metrics.
    /// The predicate runs under the pool's queue lock: it must not call back
    /// into this pool.
    pub fn retain(&self, mut keep: impl FnMut(&M::Object, &ObjectInfo) -> bool) -> usize {
        self.inner
            .close_idle(CloseReason::Removed, usize::MAX, |o, i| !keep(o, i))
    }

    /// Closes idle objects past `max_lifetime`, then idle objects past
    /// `idle_timeout` (least recently used first, keeping `min_idle`).
    /// Returns how many it closed. The reaper calls this every interval.
    pub fn reap_idle(&self) -> usize {
        let s = &*self.inner.shared;
        let mut closed = 0;
        if let Some(l) = s.t.max_lifetime {
            closed += self
                .inner
                .close_idle(CloseReason::Lifetime, usize::MAX, |_, i| i.age >= l);
        }
        if let Some(t) = s.t.idle_timeout {
            let budget = self.inner.idle().saturating_sub(s.t.min_idle);
            closed += self
                .inner
                .close_idle(CloseReason::IdleTimeout, budget, |_, i| i.idle >= t);
        }
        closed
    }

    /// Closes idle objects beyond `min_idle`, least recently used first
    /// (for memory pressure). Returns how many it closed.
    pub fn shrink_to_min_idle(&self) -> usize {
        let s = &*self.inner.shared;
        let excess = self.inner.idle().saturating_sub(s.t.min_idle);
        self.inner
            .close_idle(CloseReason::Shrink, excess, |_, _| true)
    }

    /// Creates objects until `min_idle` are idle (within `max_size`).
    /// Returns how many it created. The reaper calls this every interval.
    ///
    /// Cancel safety: objects made before the cancel stay idle in the pool;
    /// the place of the one being created is given back.
    ///
    /// # Errors
    /// The manager's create error or timeout; objects made before it stay.
    pub async fn top_up(&self) -> Result<usize, M::Error> {
        let s = &*self.inner.shared;
        let mut made = 0;
        while !s.is_closed() && self.inner.idle() < s.t.min_idle {
            let Some(reservation) = s.try_reserve() else {
                break;
            };
            let entry = s
                .create_entry(reservation)
                .await
                .map_err(|e| e.into_error(&s.name))?;
            s.staged.lock().push_back(entry);
            s.wake_retriers();
            made += 1;
        }
        Ok(made)
    }

    /// Closes the pool: new and waiting checkouts fail with
    /// [`Error::Closed`], idle objects are closed now, objects in use when
    /// they come back. Stops the reaper. Idempotent.
    pub fn close(&self) {
        let s = &*self.inner.shared;
        {
            let _admin = self.inner.admin.lock();
            if s.lv.closed.swap(true, SeqCst) {
                return;
            }
            s.lv.cap.store(0, SeqCst);
        }
        if let Some(r) = self.inner.reaper.lock().take() {
            r.abort();
        }
        let closed = self
            .inner
            .close_idle(CloseReason::Closed, usize::MAX, |_, _| true);
        // Fails deadpool's waiters with `Closed`.
        self.inner.pool.close();
        s.lv.changed.notify_waiters();
        tracing::info!(pool = %s.name, closed, "pool closed");
    }

    /// Whether [`Pool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// A snapshot of sizes and counters.
    pub fn stats(&self) -> Stats {
        let s = &*self.inner.shared;
        let c = &s.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let status = self.inner.pool.status();
        let staged = s.staged.lock().len();
        let in_use = status.size.saturating_sub(status.available);
        Stats {
            name: s.name.to_string(),
            max_size: if s.is_closed() {
                0
            } else {
                s.max_size.load(SeqCst)
            },
            size: s.live(),
            idle: status.available + staged,
            in_use,
            waiters: status.waiting + s.lv.retriers.load(SeqCst),
            created: load(&c.created),
            recycled: load(&c.recycled),
            added: load(&c.added),
            taken: load(&c.taken),
            closed: c.closed_counts(),
            create_errors: load(&c.create_errors),
            wait_count: load(&c.wait_count),
            wait_timeouts: load(&c.wait_timeouts),
            wait_time: c.wait_buckets(),
            wait_time_sum: Duration::from_micros(load(&c.wait_sum_us)),
        }
    }

    /// One reaper pass: expire, then top up to `min_idle`.
    pub(crate) async fn maintain(&self) {
        let closed = self.reap_idle();
        let made = match self.top_up().await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(pool = %self.name(), %error, "reaper could not top up to min_idle");
                0
            }
        };
        if closed + made > 0 {
            tracing::debug!(pool = %self.name(), closed, made, "reaper pass");
        }
    }

    /// Whether nothing lives in this pool and nobody but the owner holds it.
    pub(crate) fn is_unused(&self) -> bool {
        Arc::strong_count(&self.inner) == 1 && self.inner.shared.live() == 0
    }

    /// Closes one idle object (least recently used) for another key.
    pub(crate) fn evict_one(&self) -> bool {
        self.inner.close_idle(CloseReason::Evicted, 1, |_, _| true) == 1
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.inner.idle()
    }
}

/// The reaper: holds only a weak reference, so dropping the last handle
/// ends it (and `Inner::drop` aborts it at once).
async fn reaper_loop<M: Manager>(pool: Weak<Inner<M>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once, when the pool was just built: skip it.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        Pool { inner }.maintain().await;
    }
}

/// A checked-out object. Derefs to the object; goes back to the pool on
/// drop (or is closed if it expired, the pool shrank or closed).
///
/// The guard does not keep the pool alive: an object returned after the
/// last pool handle is gone is dropped without the close hook.
#[must_use = "dropping the guard returns the object at once"]
pub struct Pooled<M: Manager> {
    obj: Option<DeadObject<M>>,
}

const PRESENT: &str = "pooled object present until the guard is consumed";

impl<M: Manager> Pooled<M> {
    fn entry(&self) -> &Entry<M::Object> {
        // Present from checkout until `drop`/`take`, which consume the guard.
        self.obj.as_deref().expect(PRESENT)
    }

    fn entry_mut(&mut self) -> &mut Entry<M::Object> {
        self.obj.as_deref_mut().expect(PRESENT)
    }

    /// Detaches the object from the pool for good: its place is freed and
    /// the close hook is not called.
    pub fn take(mut this: Self) -> M::Object {
        let mut obj = this.obj.take().expect(PRESENT);
        obj.taken = true;
        let Entry { obj, token, .. } = deadpool::managed::Object::take(obj);
        // The object has left: free its live place.
        drop(token);
        obj
    }

    /// Closes the object instead of returning it (say it broke while in use).
    pub fn discard(mut this: Self) {
        if let Some(obj) = this.obj.take() {
            obj.set_reason(CloseReason::Broken);
            drop(deadpool::managed::Object::take(obj));
        }
    }

    /// Age and idle time of the object (idle: since its previous return).
    pub fn info(this: &Self) -> ObjectInfo {
        ObjectInfo::of(this.entry(), Instant::now())
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        let Some(mut obj) = self.obj.take() else {
            return;
        };
        if let Some(reason) = Live::verdict_on_return(&mut obj) {
            obj.set_reason(reason);
            drop(deadpool::managed::Object::take(obj));
            return;
        }
        // Checkouts waiting at the cap need a nudge once it is back in the
        // queue (rare: only after a shrink).
        let nudge = (Live::of(&obj).retriers.load(SeqCst) > 0).then(|| Live::handle(&obj));
        drop(obj);
        if let Some(live) = nudge {
            live.wake_retriers();
        }
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Object;
    fn deref(&self) -> &M::Object {
        &self.entry().obj
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Object {
        &mut self.entry_mut().obj
    }
}

impl<M: Manager> fmt::Debug for Pooled<M>
where
    M::Object: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("object", &self.entry().obj)
            .finish()
    }
}
