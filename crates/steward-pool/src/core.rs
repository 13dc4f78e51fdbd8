//! The shared state of one pool and the adapter that plugs our [`Manager`]
//! into `deadpool::managed`.
//!
//! deadpool's semaphore stays the fast, fair gate of checkouts, but it cannot
//! really shrink (its `resize` keeps the permits of objects that do not exist
//! yet). So every creation also reserves a place in our live count (`Live`)
//! against our limit first: live objects never exceed `cap` whatever the
//! interleaving of cancels and resizes. A checkout that got one of those
//! extra permits finds no room, and waits for an object to come back
//! (`AdapterError::AtCap`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stats::Counters;
use crate::{CloseReason, Error, Manager, PoolConfig};

use Ordering::{Relaxed, SeqCst};

/// Every this many returns of one object, the return reads the real clock
/// (the others use the pool's coarse clock): keeps the coarse clock fresh in
/// busy pools without the reaper.
pub(crate) const EXACT_EVERY: u32 = 16;

/// One pooled object with the timestamps our expiry needs (deadpool's own
/// metrics use the std clock, which Tokio's paused time cannot move).
pub(crate) struct Entry<T> {
    pub(crate) obj: T,
    pub(crate) created: Instant,
    /// When it came back last, on the pool's coarse clock (nanoseconds
    /// since the pool's base): integers keep the hot path cheap.
    last_used_ns: u64,
    /// When its lifetime ends, same clock (`u64::MAX`: never).
    expires_ns: u64,
    /// Why the pool is closing it: set right before it leaves the pool.
    reason: AtomicU8,
    /// Detached by its holder rather than closed.
    pub(crate) taken: bool,
    /// Returns so far; every [`EXACT_EVERY`]th reads the real clock.
    uses: u32,
    /// Its place in the live count, given back when the entry is dropped:
    /// after `obj` (fields drop in order), so the count never runs ahead of
    /// the objects that really exist.
    pub(crate) token: LiveToken,
}

impl<T> Entry<T> {
    pub(crate) fn new(obj: T, now: Instant, token: LiveToken) -> Self {
        Self {
            obj,
            created: now,
            last_used_ns: token.0.ns(now),
            expires_ns: token
                .0
                .max_lifetime
                .map_or(u64::MAX, |l| token.0.ns(now).saturating_add(nanos(l))),
            reason: AtomicU8::new(CloseReason::Broken.index() as u8),
            taken: false,
            uses: 0,
            token,
        }
    }

    pub(crate) fn set_reason(&self, reason: CloseReason) {
        self.reason.store(reason.index() as u8, Relaxed);
    }

    /// When it came back last (the coarse clock's reading then).
    pub(crate) fn last_used(&self) -> Instant {
        self.token.0.base + Duration::from_nanos(self.last_used_ns)
    }

    pub(crate) fn reason(&self) -> CloseReason {
        CloseReason::from_index(self.reason.load(Relaxed))
    }
}

/// Runs `fut`, bounded by `limit`; `None` when the limit passed.
///
/// Polls once before arming a timer: most health checks (and many creates)
/// finish at once, and a timer costs a clock read and a timer-wheel entry.
pub(crate) async fn with_timeout<F: Future>(limit: Option<Duration>, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        return Some(out);
    }
    match limit {
        None => Some(fut.await),
        Some(d) => race(fut, Box::pin(tokio::time::sleep(d))).await,
    }
}

/// `fut` or the timer, whichever is first. The timer is boxed so that the
/// futures embedding this one (every checkout's) stay small.
async fn race<F: Future>(
    mut fut: std::pin::Pin<&mut F>,
    mut timer: std::pin::Pin<Box<tokio::time::Sleep>>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `fut` until `deadline`; `None` when it passed. Polls once before
/// arming a timer, like [`with_timeout`].
pub(crate) async fn with_deadline<F: Future>(
    deadline: Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        return Some(out);
    }
    match deadline {
        None => Some(fut.await),
        Some(d) => race(fut, Box::pin(tokio::time::sleep_until(d))).await,
    }
}

/// Increments a counter for as long as it lives (waiters, retriers).
pub(crate) struct Count<'a>(&'a AtomicUsize);

impl<'a> Count<'a> {
    pub(crate) fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, SeqCst);
        Self(c)
    }
}

impl Drop for Count<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// The global cap of a keyed pool, shared by all its sub-pools.
pub(crate) struct Global {
    pub(crate) live: AtomicUsize,
    pub(crate) cap: AtomicUsize,
    pub(crate) waiters: AtomicUsize,
    pub(crate) notify: Notify,
    pub(crate) closed: AtomicBool,
    /// Closes one idle object of some key; true when it did.
    #[allow(clippy::type_complexity)]
    pub(crate) evict: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Global {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            live: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap),
            waiters: AtomicUsize::new(0),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            evict: OnceLock::new(),
        }
    }

    pub(crate) fn try_reserve(&self) -> bool {
        let cap = self.cap.load(Relaxed);
        self.live
            .fetch_update(SeqCst, SeqCst, |l| (l < cap).then_some(l + 1))
            .is_ok()
    }

    pub(crate) fn release(&self) {
        self.live.fetch_sub(1, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            self.notify.notify_one();
        }
    }

    fn evict(&self) -> bool {
        self.evict.get().is_some_and(|f| f())
    }
}

/// The live count and limits of one pool (non-generic, so every entry can
/// reach it through its token without the pool handle).
pub(crate) struct Live {
    /// The limit in force: `max_size`, or 0 once closed.
    pub(crate) cap: AtomicUsize,
    pub(crate) closed: AtomicBool,
    pub(crate) max_lifetime: Option<Duration>,
    /// Whether a return needs the clock (idle stamps, lifetime).
    pub(crate) clock_on_return: bool,
    /// The pool's coarse clock: the latest time any of its operations read
    /// (reaper passes, creates, adds, checkouts with a recent window, every
    /// few returns), as nanoseconds since `base`. Checkouts and returns judge
    /// expiry by it: a clock read costs as much as a whole checkout on some
    /// machines.
    base: Instant,
    recent: AtomicU64,
    /// Live objects (idle, in use, staged) plus places reserved for creates.
    pub(crate) count: AtomicUsize,
    pub(crate) global: Option<Arc<Global>>,
    /// Callers holding a slot that wait for an object to come back.
    pub(crate) retriers: AtomicUsize,
    pub(crate) changed: Notify,
}

impl Live {
    /// Gives back a reservation or a live object's place.
    pub(crate) fn release(&self) {
        self.count.fetch_sub(1, SeqCst);
        if let Some(g) = &self.global {
            g.release();
        }
        self.wake_retriers();
    }

    /// `t` on the coarse clock's scale.
    pub(crate) fn ns(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.base))
    }

    /// Advances the coarse clock to `now` (never backwards); returns `now`
    /// on its scale.
    #[inline]
    pub(crate) fn note(&self, now: Instant) -> u64 {
        let n = self.ns(now);
        if n > self.recent.load(Relaxed) {
            self.recent.store(n, Relaxed);
        }
        n
    }

    /// The coarse clock's reading, on its own scale: at most "now", as of
    /// the pool's last activity.
    #[inline]
    pub(crate) fn recent_ns(&self) -> u64 {
        self.recent.load(Relaxed)
    }

    /// Wakes checkouts that wait for an object to come back.
    #[inline]
    pub(crate) fn wake_retriers(&self) {
        if self.retriers.load(SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    /// What to do with an object coming back: `None` keeps it (stamped),
    /// `Some(reason)` closes it.
    #[inline]
    pub(crate) fn verdict_on_return<T>(e: &mut Entry<T>) -> Option<CloseReason> {
        let lv = &*e.token.0;
        if lv.count.load(SeqCst) > lv.cap.load(SeqCst) {
            let closed = lv.closed.load(SeqCst);
            return Some(if closed {
                CloseReason::Closed
            } else {
                CloseReason::Shrink
            });
        }
        if let Some(g) = &lv.global
            && g.waiters.load(SeqCst) > 0
        {
            // Another key waits for room under the global cap.
            return Some(CloseReason::Evicted);
        }
        if !lv.clock_on_return {
            return None;
        }
        e.uses = e.uses.wrapping_add(1);
        let now = if e.uses.is_multiple_of(EXACT_EVERY) {
            lv.note(Instant::now())
        } else {
            lv.recent_ns()
        };
        if now >= e.expires_ns {
            return Some(CloseReason::Lifetime);
        }
        e.last_used_ns = now;
        None
    }

    /// The place an entry holds in this count.
    pub(crate) fn of<T>(e: &Entry<T>) -> &Live {
        &e.token.0
    }

    /// A handle on the count (to wake checkouts after a return).
    pub(crate) fn handle<T>(e: &Entry<T>) -> Arc<Live> {
        e.token.0.clone()
    }
}

/// One place in the live count, released on drop.
pub(crate) struct LiveToken(Arc<Live>);

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Settings copied out of [`PoolConfig`] for the hot path.
pub(crate) struct Timing {
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) create_timeout: Option<Duration>,
    pub(crate) recycle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) min_idle: usize,
    pub(crate) health_check: bool,
    pub(crate) recent_window: Duration,
    /// Whether a checkout reads the clock (for the recent window).
    clock_on_checkout: bool,
}

impl Timing {
    fn new(c: &PoolConfig) -> Self {
        let window = c.health_check && !c.recent_window.is_zero();
        Self {
            wait_timeout: c.wait_timeout,
            create_timeout: c.create_timeout,
            recycle_timeout: c.recycle_timeout,
            max_lifetime: c.max_lifetime,
            idle_timeout: c.idle_timeout,
            min_idle: c.min_idle,
            health_check: c.health_check,
            recent_window: c.recent_window,
            clock_on_checkout: window,
        }
    }
}

fn timing_clock_on_return(c: &PoolConfig) -> bool {
    let window = c.health_check && !c.recent_window.is_zero();
    c.max_lifetime.is_some() || c.idle_timeout.is_some() || window
}

/// Why the adapter could not hand deadpool an object.
#[derive(Debug)]
pub(crate) enum AdapterError<E> {
    Create(E),
    CreateTimeout(Duration),
    /// Live objects are at the cap although the caller holds a slot: an
    /// object is on its way back (or over the cap after a shrink). Retry.
    AtCap,
    /// Waited for room under a keyed pool's global cap until the timeout.
    GlobalTimeout(Duration),
    Closed,
}

impl<E> AdapterError<E> {
    pub(crate) fn into_error(self, pool: &Arc<str>) -> Error<E> {
        let pool = pool.clone();
        match self {
            AdapterError::Create(source) => Error::Create { pool, source },
            AdapterError::CreateTimeout(timeout) => Error::CreateTimeout { pool, timeout },
            AdapterError::GlobalTimeout(waited) => Error::WaitTimeout { pool, waited },
            AdapterError::AtCap | AdapterError::Closed => Error::Closed { pool },
        }
    }
}

/// Everything a pool's parts share: the manager, limits, counters, and the
/// objects added from outside or created ahead of demand (`staged`: idle
/// objects deadpool hands out through `create` once its own queue is empty).
pub(crate) struct Shared<M: Manager> {
    pub(crate) name: Arc<str>,
    pub(crate) manager: M,
    pub(crate) t: Timing,
    /// The configured limit.
    pub(crate) max_size: AtomicUsize,
    pub(crate) lv: Arc<Live>,
    pub(crate) staged: Mutex<VecDeque<Entry<M::Object>>>,
    pub(crate) counters: Counters,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, config: &PoolConfig, global: Option<Arc<Global>>) -> Self {
        Self {
            name: Arc::from(config.name.as_str()),
            manager,
            t: Timing::new(config),
            max_size: AtomicUsize::new(config.max_size),
            lv: Arc::new(Live {
                cap: AtomicUsize::new(config.max_size),
                closed: AtomicBool::new(false),
                max_lifetime: config.max_lifetime,
                clock_on_return: timing_clock_on_return(config),
                base: Instant::now(),
                recent: AtomicU64::new(0),
                count: AtomicUsize::new(0),
                global,
                retriers: AtomicUsize::new(0),
                changed: Notify::new(),
            }),
            staged: Mutex::new(VecDeque::new()),
            counters: Counters::default(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lv.closed.load(SeqCst)
    }

    #[inline]
    pub(crate) fn wake_retriers(&self) {
        self.lv.wake_retriers();
    }

    pub(crate) fn live(&self) -> usize {
        self.lv.count.load(SeqCst)
    }

    /// Reserves room for one more live object under this pool's cap.
    pub(crate) fn reserve_live(&self) -> bool {
        let cap = self.lv.cap.load(SeqCst);
        self.lv
            .count
            .fetch_update(SeqCst, SeqCst, |l| (l < cap).then_some(l + 1))
            .is_ok()
    }

    /// Accounting and the close hook for an object leaving the pool.
    pub(crate) fn on_leave(&self, entry: &mut Entry<M::Object>) {
        if entry.taken {
            Counters::bump(&self.counters.taken);
        } else {
            let reason = entry.reason();
            self.counters.closed(reason);
            tracing::debug!(pool = %self.name, ?reason, "pooled object closed");
            self.manager.close(&mut entry.obj, reason);
        }
        // The live place is given back when the entry (its token) drops.
    }

    /// Closes an object that is not inside deadpool (staged or new).
    pub(crate) fn discard(&self, mut entry: Entry<M::Object>, reason: CloseReason) {
        entry.set_reason(reason);
        self.on_leave(&mut entry);
        drop(entry);
    }

    /// Checks an idle object before it is handed out: lifetime, then the
    /// health check (skipped when it was returned within `recent_window`).
    /// On `false` the entry carries the reason to close it.
    pub(crate) async fn check_out(&self, e: &mut Entry<M::Object>) -> bool {
        let t = &self.t;
        let mut check = t.health_check;
        // Lifetime by the coarse clock unless the window needs the real one.
        let now = if t.clock_on_checkout {
            self.lv.note(Instant::now())
        } else {
            self.lv.recent_ns()
        };
        if now >= e.expires_ns {
            e.set_reason(CloseReason::Lifetime);
            return false;
        }
        if t.clock_on_checkout
            && check
            && now.saturating_sub(e.last_used_ns) < nanos(t.recent_window)
        {
            check = false;
        }
        if check {
            match with_timeout(t.recycle_timeout, self.manager.recycle(&mut e.obj)).await {
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    tracing::debug!(pool = %self.name, %error, "health check failed");
                    e.set_reason(CloseReason::Broken);
                    return false;
                }
                None => {
                    tracing::warn!(pool = %self.name, timeout = ?t.recycle_timeout, "health check timed out");
                    e.set_reason(CloseReason::Broken);
                    return false;
                }
            }
        }
        true
    }

    /// Calls the manager's `create`, bounded by the create timeout. The
    /// caller has reserved the live place; it is given back on failure.
    /// Runs in the live place `r` reserved (given back on failure or cancel).
    pub(crate) async fn create_entry(
        &self,
        r: Reservation<'_, M>,
    ) -> Result<Entry<M::Object>, AdapterError<M::Error>> {
        match with_timeout(self.t.create_timeout, self.manager.create()).await {
            Some(Ok(obj)) => {
                Counters::bump(&self.counters.created);
                tracing::debug!(pool = %self.name, "pooled object created");
                let now = Instant::now();
                self.lv.note(now);
                Ok(Entry::new(obj, now, r.into_token()))
            }
            Some(Err(error)) => {
                Counters::bump(&self.counters.create_errors);
                tracing::warn!(pool = %self.name, %error, "creating a pooled object failed");
                Err(AdapterError::Create(error))
            }
            None => {
                let limit = self.t.create_timeout.unwrap_or_default();
                Counters::bump(&self.counters.create_errors);
                tracing::warn!(pool = %self.name, timeout = ?limit, "creating a pooled object timed out");
                Err(AdapterError::CreateTimeout(limit))
            }
        }
    }

    /// Reserves a place under the keyed pool's global cap: at once if free,
    /// else by evicting an idle object of some key, else by waiting.
    async fn reserve_global(&self, g: &Global) -> Result<(), AdapterError<M::Error>> {
        if g.try_reserve() {
            return Ok(());
        }
        let wait = self.t.wait_timeout;
        let start = Instant::now();
        let _waiting = Count::new(&g.waiters);
        loop {
            let mut n = pin!(g.notify.notified());
            n.as_mut().enable();
            if g.closed.load(SeqCst) || self.is_closed() {
                return Err(AdapterError::Closed);
            }
            if g.try_reserve() {
                return Ok(());
            }
            if g.evict() {
                continue;
            }
            match wait {
                None => n.await,
                Some(d) => {
                    let left = d.saturating_sub(start.elapsed());
                    if tokio::time::timeout(left, n).await.is_err() {
                        if g.try_reserve() {
                            return Ok(());
                        }
                        tracing::warn!(pool = %self.name, waited = ?d, "timed out under the global cap");
                        Counters::bump(&self.counters.wait_timeouts);
                        return Err(AdapterError::GlobalTimeout(d));
                    }
                }
            }
        }
    }

    /// Reserves a live place (and a global one for keyed pools, waiting
    /// or evicting for it).
    pub(crate) async fn reserve(&self) -> Result<Reservation<'_, M>, AdapterError<M::Error>> {
        if !self.reserve_live() {
            return Err(AdapterError::AtCap);
        }
        let Some(g) = &self.lv.global else {
            return Ok(Reservation::new(self));
        };
        let local = LocalOnly(Some(self));
        self.reserve_global(g).await?;
        std::mem::forget(local);
        Ok(Reservation::new(self))
    }

    /// Like [`Shared::reserve`] but never waits nor evicts.
    pub(crate) fn try_reserve(&self) -> Option<Reservation<'_, M>> {
        if !self.reserve_live() {
            return None;
        }
        if let Some(g) = &self.lv.global
            && !g.try_reserve()
        {
            drop(LocalOnly(Some(self)));
            return None;
        }
        Some(Reservation::new(self))
    }
}

/// A reserved live place (local and global), given back on drop unless it
/// became a live object's [`LiveToken`].
pub(crate) struct Reservation<'a, M: Manager> {
    shared: &'a Shared<M>,
    armed: bool,
}

impl<'a, M: Manager> Reservation<'a, M> {
    fn new(shared: &'a Shared<M>) -> Self {
        Self {
            shared,
            armed: true,
        }
    }

    /// The reserved place, now held by a live object.
    pub(crate) fn into_token(mut self) -> LiveToken {
        self.armed = false;
        LiveToken(self.shared.lv.clone())
    }
}

impl<M: Manager> Drop for Reservation<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lv.release();
        }
    }
}

/// A local reservation whose global half is still pending.
struct LocalOnly<'a, M: Manager>(Option<&'a Shared<M>>);

impl<M: Manager> Drop for LocalOnly<'_, M> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.lv.count.fetch_sub(1, SeqCst);
            s.wake_retriers();
        }
    }
}

/// A staged entry being checked; closed if the check is cancelled.
struct Checking<'a, M: Manager> {
    shared: &'a Shared<M>,
    entry: Option<Entry<M::Object>>,
}

impl<M: Manager> Drop for Checking<'_, M> {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            self.shared.discard(e, CloseReason::Broken);
        }
    }
}

/// Plugs a [`Manager`] into deadpool.
pub(crate) struct Adapter<M: Manager>(pub(crate) Arc<Shared<M>>);

impl<M: Manager> deadpool::managed::Manager for Adapter<M> {
    type Type = Entry<M::Object>;
    type Error = AdapterError<M::Error>;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        // Boxed: creates are rare, and a small future here keeps every
        // checkout's future (which embeds this one) small.
        Box::pin(self.create_slow()).await
    }

    async fn recycle(
        &self,
        entry: &mut Self::Type,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        if self.0.check_out(entry).await {
            Counters::bump(&self.0.counters.recycled);
            Ok(())
        } else {
            Err(deadpool::managed::RecycleError::message(""))
        }
    }

    fn detach(&self, entry: &mut Self::Type) {
        self.0.on_leave(entry);
    }
}

impl<M: Manager> Adapter<M> {
    async fn create_slow(&self) -> Result<Entry<M::Object>, AdapterError<M::Error>> {
        let s = &*self.0;
        // Idle objects added from outside or created ahead of demand first.
        loop {
            let next = s.staged.lock().pop_back();
            let Some(entry) = next else { break };
            let mut checking = Checking {
                shared: s,
                entry: Some(entry),
            };
            let ok = match checking.entry.as_mut() {
                Some(e) => s.check_out(e).await,
                None => false,
            };
            let Some(entry) = checking.entry.take() else {
                continue;
            };
            if ok {
                Counters::bump(&s.counters.recycled);
                return Ok(entry);
            }
            let reason = entry.reason();
            s.discard(entry, reason);
        }
        let reservation = s.reserve().await?;
        s.create_entry(reservation).await
    }
}
