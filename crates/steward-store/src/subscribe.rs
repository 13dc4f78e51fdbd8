//! Change subscriptions: a bounded queue per subscriber, filled by the file
//! store's committing writer or by the Redis backend's pub/sub task.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use crate::prompt::pattern_matches;

/// What happened to a key, as seen by a [`Subscription`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// The key was created, updated or upserted; this is its new value.
    Set(Value),
    /// The key was deleted.
    Deleted,
    /// The key's time to live ran out and its removal was noticed (by a
    /// read, a write, [`sweep_expired`](crate::Backend::sweep_expired) or a
    /// compaction), so this comes some time after the expiry instant, once.
    Expired,
    /// Every key was removed. Delivered to every subscription whatever its
    /// pattern, with an empty key.
    Reset,
}

/// Default number of changes a subscription buffers before it drops new
/// ones (see [`Subscription::dropped`]).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 4096;

struct State {
    items: VecDeque<(String, Change)>,
    closed: bool,
    waker: Option<Waker>,
}

/// The shared queue between a producer and one [`Subscription`].
pub(crate) struct SubQueue {
    pattern: String,
    capacity: usize,
    state: Mutex<State>,
    ready: Condvar,
    dropped: AtomicU64,
    delivered: AtomicU64,
}

impl SubQueue {
    pub(crate) fn new(pattern: &str, capacity: usize) -> Arc<Self> {
        Arc::new(SubQueue {
            pattern: pattern.to_string(),
            capacity: capacity.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                waker: None,
            }),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        })
    }

    /// Whether this subscription wants `key`'s change.
    pub(crate) fn wants(&self, key: &str, change: &Change) -> bool {
        matches!(change, Change::Reset) || pattern_matches(&self.pattern, key)
    }

    /// Queues a change (if the pattern matches); a full queue drops it and
    /// counts the drop instead of growing.
    pub(crate) fn push(&self, key: &str, change: &Change) {
        if !self.wants(key, change) {
            return;
        }
        let waker = {
            let mut s = self.state.lock();
            if s.closed {
                return;
            }
            if s.items.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            s.items.push_back((key.to_string(), change.clone()));
            s.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// No more changes will come (the store closed or the producer ended).
    pub(crate) fn close(&self) {
        let waker = {
            let mut s = self.state.lock();
            s.closed = true;
            s.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Changes were missed (a lost connection): counted as one drop.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn note_gap(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

/// The subscribers of one file store: the writer publishes to each live one.
#[derive(Default)]
pub(crate) struct Hub {
    subs: Mutex<Vec<Weak<SubQueue>>>,
}

impl Hub {
    pub(crate) fn add(&self, q: &Arc<SubQueue>) {
        let mut subs = self.subs.lock();
        subs.retain(|w| w.strong_count() > 0);
        subs.push(Arc::downgrade(q));
    }

    /// Whether anyone listens (so the writer can skip building changes).
    pub(crate) fn is_empty(&self) -> bool {
        self.subs.lock().is_empty()
    }

    pub(crate) fn publish(&self, changes: &[(String, Change)]) {
        if changes.is_empty() {
            return;
        }
        let live: Vec<Arc<SubQueue>> = {
            let mut subs = self.subs.lock();
            subs.retain(|w| w.strong_count() > 0);
            subs.iter().filter_map(Weak::upgrade).collect()
        };
        for q in live {
            for (k, c) in changes {
                q.push(k, c);
            }
        }
    }

    pub(crate) fn close(&self) {
        let subs = std::mem::take(&mut *self.subs.lock());
        for q in subs.iter().filter_map(Weak::upgrade) {
            q.close();
        }
    }
}

/// A stream of `(key, change)` for the keys matching a pattern (the
/// [`pattern_matches`](crate::pattern_matches) syntax: `*` matches any run
/// of characters), from [`Backend::subscribe`](crate::Backend::subscribe),
/// [`Store::subscribe`](crate::Store::subscribe) or `RedisStore::subscribe`.
///
/// Every change made after `subscribe` returned is delivered once, in the
/// order the store applied them (so in order per key). The buffer is
/// bounded: when the consumer falls behind by more than its capacity, new
/// changes are dropped and counted by [`dropped`](Self::dropped) rather than
/// using unbounded memory; re-read the store when that count moves.
///
/// Dropping it unsubscribes. Cancel safety: [`next`](Self::next) may be
/// cancelled at any await point without losing a change.
pub struct Subscription {
    queue: Arc<SubQueue>,
    /// Ends the producer task (Redis) when the subscription goes.
    _guard: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.queue.pattern)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(queue: Arc<SubQueue>, guard: Option<Box<dyn Send + Sync>>) -> Self {
        Subscription {
            queue,
            _guard: guard,
        }
    }

    /// The pattern this subscription matches.
    pub fn pattern(&self) -> &str {
        &self.queue.pattern
    }

    /// The next change; `None` once the store was closed (or the producer
    /// ended) and everything buffered was taken.
    pub async fn next(&mut self) -> Option<(String, Change)> {
        poll_fn(|cx| {
            let mut s = self.queue.state.lock();
            if let Some(item) = s.items.pop_front() {
                self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                return Poll::Ready(Some(item));
            }
            if s.closed {
                return Poll::Ready(None);
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The next change if one is buffered, without waiting.
    pub fn try_next(&mut self) -> Option<(String, Change)> {
        let item = self.queue.state.lock().items.pop_front();
        if item.is_some() {
            self.queue.delivered.fetch_add(1, Ordering::Relaxed);
        }
        item
    }

    /// Blocks the thread up to `timeout` for the next change (for code
    /// outside async). `None` on timeout or once closed and drained.
    pub fn next_blocking(&mut self, timeout: Duration) -> Option<(String, Change)> {
        let deadline = Instant::now() + timeout;
        let mut s = self.queue.state.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                return Some(item);
            }
            if s.closed || self.queue.ready.wait_until(&mut s, deadline).timed_out() {
                let item = s.items.pop_front();
                if item.is_some() {
                    self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                }
                return item;
            }
        }
    }

    /// Changes dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Changes handed to the consumer so far.
    pub fn delivered(&self) -> u64 {
        self.queue.delivered.load(Ordering::Relaxed)
    }

    /// Whether the producer ended (the store closed); buffered changes can
    /// still be taken.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}
