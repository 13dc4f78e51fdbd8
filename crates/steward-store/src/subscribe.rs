//! Change subscriptions: a bounded queue per subscriber, filled by the file
//! store's committing writer or by the Redis backend's pub/sub task.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
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

/// Default bytes a subscription buffers (keys, and values as compact JSON)
/// before it drops new changes: sixteen values of the file store's largest
/// size. The count alone would let 4,096 such values (4 GiB) wait for a
/// consumer that reads nothing.
pub const DEFAULT_SUBSCRIPTION_BYTES: usize = 16 << 20;

/// A subscription's counters, as a plain snapshot
/// ([`Subscription::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Changes handed to the consumer.
    pub delivered: u64,
    /// Changes missed, every cause: the sum of the three below.
    pub dropped: u64,
    /// Of those, dropped because the buffer held its count of changes.
    pub dropped_over_count: u64,
    /// Of those, dropped because the buffer held its bytes.
    pub dropped_over_bytes: u64,
    /// Of those, lost in a gap of the producer (a lost Redis pub/sub
    /// connection), each gap counted once however many it hid.
    pub gaps: u64,
    /// Bytes of the changes dropped for either bound.
    pub dropped_bytes: u64,
    /// Changes waiting for the consumer now.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// The most bytes ever waiting at once.
    pub peak_queued_bytes: usize,
}

/// One buffered change and the bytes it counts for.
struct Queued {
    key: String,
    change: Change,
    bytes: usize,
}

struct State {
    items: VecDeque<Queued>,
    max_bytes: usize,
    stats: SubscriptionStats,
    closed: bool,
    waker: Option<Waker>,
}

impl State {
    fn pop(&mut self) -> Option<(String, Change)> {
        let q = self.items.pop_front()?;
        self.stats.delivered += 1;
        self.stats.queued = self.items.len();
        self.stats.queued_bytes -= q.bytes;
        Some((q.key, q.change))
    }
}

/// The shared queue between a producer and one [`Subscription`].
pub(crate) struct SubQueue {
    pattern: String,
    capacity: usize,
    state: Mutex<State>,
    ready: Condvar,
}

/// The bytes a change counts for: its key, and its value as compact JSON
/// (the measure of the stores' value limits).
fn change_bytes(key: &str, change: &Change) -> usize {
    key.len()
        + match change {
            Change::Set(value) => json_len(value),
            Change::Deleted | Change::Expired | Change::Reset => 0,
        }
}

fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Neither the counter nor a `Value` can fail to serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl SubQueue {
    pub(crate) fn new(pattern: &str, capacity: usize) -> Arc<Self> {
        Arc::new(SubQueue {
            pattern: pattern.to_string(),
            capacity: capacity.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                max_bytes: DEFAULT_SUBSCRIPTION_BYTES,
                stats: SubscriptionStats::default(),
                closed: false,
                waker: None,
            }),
            ready: Condvar::new(),
        })
    }

    /// Sets the byte bound (see [`Subscription::set_max_bytes`]).
    pub(crate) fn set_max_bytes(&self, max_bytes: usize) {
        self.state.lock().max_bytes = max_bytes;
    }

    /// Whether this subscription wants `key`'s change.
    pub(crate) fn wants(&self, key: &str, change: &Change) -> bool {
        matches!(change, Change::Reset) || pattern_matches(&self.pattern, key)
    }

    /// Queues a change (if the pattern matches); a queue at its count or
    /// byte bound drops it and counts the drop instead of growing. A change
    /// larger than the byte bound passes when nothing else waits, so a
    /// consumer that keeps up gets values of any size.
    pub(crate) fn push(&self, key: &str, change: &Change) {
        if !self.wants(key, change) {
            return;
        }
        let bytes = change_bytes(key, change);
        let waker = {
            let mut s = self.state.lock();
            if s.closed {
                return;
            }
            let over_count = s.items.len() >= self.capacity;
            let over_bytes = !s.items.is_empty() && s.stats.queued_bytes + bytes > s.max_bytes;
            if over_count || over_bytes {
                let stats = &mut s.stats;
                stats.dropped += 1;
                stats.dropped_bytes += bytes as u64;
                if over_count {
                    stats.dropped_over_count += 1;
                } else {
                    stats.dropped_over_bytes += 1;
                }
                return;
            }
            s.items.push_back(Queued {
                key: key.to_string(),
                change: change.clone(),
                bytes,
            });
            let stats = &mut s.stats;
            stats.queued += 1;
            stats.queued_bytes += bytes;
            stats.peak_queued_bytes = stats.peak_queued_bytes.max(stats.queued_bytes);
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
        let stats = &mut self.state.lock().stats;
        stats.dropped += 1;
        stats.gaps += 1;
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
/// bounded in changes (its capacity, [`DEFAULT_SUBSCRIPTION_CAPACITY`]) and
/// in bytes ([`set_max_bytes`](Self::set_max_bytes),
/// [`DEFAULT_SUBSCRIPTION_BYTES`]): when the consumer falls behind by
/// either, new changes are dropped and counted by
/// [`dropped`](Self::dropped) and [`stats`](Self::stats) rather than using
/// unbounded memory; re-read the store when that count moves.
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
            if let Some(item) = s.pop() {
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
        self.queue.state.lock().pop()
    }

    /// Blocks the thread up to `timeout` for the next change (for code
    /// outside async). `None` on timeout or once closed and drained.
    pub fn next_blocking(&mut self, timeout: Duration) -> Option<(String, Change)> {
        let deadline = Instant::now() + timeout;
        let mut s = self.queue.state.lock();
        loop {
            if let Some(item) = s.pop() {
                return Some(item);
            }
            if s.closed || self.queue.ready.wait_until(&mut s, deadline).timed_out() {
                return s.pop();
            }
        }
    }

    /// Changes missed: dropped because the buffer was full (in changes or
    /// bytes), or lost in a gap of the producer.
    pub fn dropped(&self) -> u64 {
        self.stats().dropped
    }

    /// Changes handed to the consumer so far.
    pub fn delivered(&self) -> u64 {
        self.stats().delivered
    }

    /// The counters now: delivered, dropped by cause, what waits.
    pub fn stats(&self) -> SubscriptionStats {
        self.queue.state.lock().stats
    }

    /// Bounds the bytes this subscription buffers (keys, and values as
    /// compact JSON; default [`DEFAULT_SUBSCRIPTION_BYTES`]): a change that
    /// would take the buffer beyond it is dropped and counted in
    /// [`SubscriptionStats::dropped_over_bytes`], except when nothing else
    /// waits (a value of any size reaches a consumer that keeps up).
    /// Applies to changes arriving from now on; what waits stays.
    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.queue.set_max_bytes(max_bytes);
    }

    /// Whether the producer ended (the store closed); buffered changes can
    /// still be taken.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}
