//! Test managers that count live objects themselves (by object drop), so
//! the caps are proved independently of the pool's own counters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use steward_pool::{CloseReason, KeyedManager, Manager};

/// Locks, ignoring poisoning (a failed test thread must not hide the cause).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Live-object bookkeeping shared by a manager and its objects.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) live: AtomicUsize,
    pub(crate) max_seen: AtomicUsize,
    pub(crate) created: AtomicU64,
    /// The largest number of live objects allowed right now (0: unchecked).
    pub(crate) cap_view: AtomicUsize,
    /// Set when a creation went over `cap_view`.
    pub(crate) overflow: AtomicBool,
}

impl Tally {
    fn born(self: &Arc<Self>) -> Obj {
        let id = self.created.fetch_add(1, SeqCst);
        let now = self.live.fetch_add(1, SeqCst) + 1;
        self.max_seen.fetch_max(now, SeqCst);
        let cap = self.cap_view.load(SeqCst);
        if cap != 0 && now > cap {
            self.overflow.store(true, SeqCst);
        }
        Obj {
            id,
            uses: 0,
            tally: self.clone(),
            counted: true,
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(SeqCst)
    }
}

/// A pooled test object; decrements its tally when dropped.
pub(crate) struct Obj {
    pub(crate) id: u64,
    pub(crate) uses: u64,
    tally: Arc<Tally>,
    /// Still in its tally's live count (see [`Obj::leave_tally`]).
    counted: bool,
}

impl Obj {
    /// Leaves the live count now, before the object is dropped: for an
    /// object about to be taken out of the pool, whose place the pool gives
    /// back at once (a taken object is the holder's, not under the cap).
    pub(crate) fn leave_tally(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.tally.live.fetch_sub(1, SeqCst);
        }
    }
}

impl std::fmt::Debug for Obj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Obj({})", self.id)
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.leave_tally();
    }
}

/// The test managers' error.
#[derive(Debug)]
pub(crate) struct Broke(pub(crate) u64);

impl std::fmt::Display for Broke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "object {} broke", self.0)
    }
}

impl std::error::Error for Broke {}

/// A manager whose creates can be slowed (to cancel inside them) or made to
/// fail, and whose health check fails for chosen ids.
#[derive(Clone, Default)]
pub(crate) struct Counting {
    pub(crate) tally: Arc<Tally>,
    /// Each create sleeps this long (Tokio time).
    pub(crate) create_delay: Arc<Mutex<Duration>>,
    pub(crate) fail_creates: Arc<AtomicBool>,
    /// Each health check sleeps this long (Tokio time).
    pub(crate) recycle_delay: Arc<Mutex<Duration>>,
    /// Health checks of these ids fail.
    pub(crate) broken: Arc<Mutex<HashSet<u64>>>,
    pub(crate) close_reasons: Arc<Mutex<Vec<CloseReason>>>,
    /// Every close the pool asked for: the object's id and the reason.
    pub(crate) closes: Arc<Mutex<Vec<(u64, CloseReason)>>>,
}

impl Counting {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An object made outside the pool (for `add`).
    pub(crate) fn make(&self) -> Obj {
        self.tally.born()
    }

    pub(crate) fn live(&self) -> usize {
        self.tally.live()
    }

    pub(crate) fn set_delay(&self, d: Duration) {
        *lock(&self.create_delay) = d;
    }

    pub(crate) fn break_id(&self, id: u64) {
        lock(&self.broken).insert(id);
    }

    pub(crate) fn reasons(&self) -> Vec<CloseReason> {
        lock(&self.close_reasons).clone()
    }

    /// The closes since the last call, in order.
    pub(crate) fn take_closes(&self) -> Vec<(u64, CloseReason)> {
        std::mem::take(&mut *lock(&self.closes))
    }
}

impl Manager for Counting {
    type Object = Obj;
    type Error = Broke;

    async fn create(&self) -> Result<Obj, Broke> {
        if self.fail_creates.load(SeqCst) {
            return Err(Broke(u64::MAX));
        }
        let delay = *lock(&self.create_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(self.tally.born())
    }

    async fn recycle(&self, obj: &mut Obj) -> Result<(), Broke> {
        let delay = *lock(&self.recycle_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        obj.uses += 1;
        if lock(&self.broken).contains(&obj.id) {
            return Err(Broke(obj.id));
        }
        Ok(())
    }

    fn close(&self, obj: &mut Obj, reason: CloseReason) {
        lock(&self.close_reasons).push(reason);
        lock(&self.closes).push((obj.id, reason));
    }
}

/// A keyed manager counting live objects per key and overall.
#[derive(Clone, Default)]
pub(crate) struct KeyedCounting {
    pub(crate) total: Arc<Tally>,
    pub(crate) per_key: Arc<Mutex<HashMap<u32, Arc<Tally>>>>,
    pub(crate) create_delay: Arc<Mutex<Duration>>,
    pub(crate) fail_creates: Arc<AtomicBool>,
    /// Every close the pool asked for: the key and the reason.
    pub(crate) closes: Arc<Mutex<Vec<(u32, CloseReason)>>>,
}

/// A keyed object: counted in its key's tally and in the global one.
pub(crate) struct KObj {
    pub(crate) key: u32,
    _in_key: Obj,
    _in_total: Obj,
}

impl KeyedCounting {
    pub(crate) fn key_tally(&self, key: u32) -> Arc<Tally> {
        lock(&self.per_key).entry(key).or_default().clone()
    }
}

impl KeyedManager<u32> for KeyedCounting {
    type Object = KObj;
    type Error = Broke;

    async fn create(&self, key: &u32) -> Result<KObj, Broke> {
        if self.fail_creates.load(SeqCst) {
            return Err(Broke(u64::from(*key)));
        }
        let delay = *lock(&self.create_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(KObj {
            key: *key,
            _in_key: self.key_tally(*key).born(),
            _in_total: self.total.born(),
        })
    }

    fn close(&self, key: &u32, _: &mut KObj, reason: CloseReason) {
        lock(&self.closes).push((*key, reason));
    }
}

/// Hang guard for awaits that must finish (generous: the machine is loaded).
pub(crate) async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(60), f).await {
        Ok(v) => v,
        Err(_) => panic!("hang guard: {what} did not finish"),
    }
}
