//! A queue from one task to its readers whose bounds a policy keeps: the
//! session's [`Events`](crate::Events) and steward-realtime's events for
//! the application. The policy decides, per item, what a full queue gives
//! up (so lifecycle events can be kept while others are dropped); the
//! mailbox does the waiting, the waking and the end.
//!
//! The sender holds the queue weakly: once every reader is gone, items go
//! nowhere. Dropping the sender ends the queue: readers get `None` once it
//! is empty.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::Notify;

/// What a [`Sender`] does with a new item: the queue's bounds.
pub trait Bounds: Send + 'static {
    /// What is queued.
    type Item: Send + 'static;
    /// What one push gave up; `Default` means nothing.
    type Overflow: Default;

    /// Queues `item` into `items` (oldest first), giving up what the
    /// bounds require.
    fn push(&mut self, items: &mut VecDeque<Self::Item>, item: Self::Item) -> Self::Overflow;

    /// A reader took `item`; `left` items remain.
    fn popped(&mut self, item: &Self::Item, left: usize);
}

struct State<B: Bounds> {
    items: VecDeque<B::Item>,
    bounds: B,
    closed: bool,
}

struct Shared<B: Bounds> {
    state: Mutex<State<B>>,
    ready: Notify,
}

impl<B: Bounds> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        // Nothing panics while holding it but a policy's bug; the queue
        // itself stays whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The readers' end. Cheap to clone; clones share one queue, so each item
/// goes to one reader.
pub struct Receiver<B: Bounds> {
    shared: Arc<Shared<B>>,
}

impl<B: Bounds> Clone for Receiver<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A [`Receiver`] that does not keep the queue.
pub struct WeakReceiver<B: Bounds> {
    shared: Weak<Shared<B>>,
}

impl<B: Bounds> Clone for WeakReceiver<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Weak::clone(&self.shared),
        }
    }
}

/// The producing task's end.
pub struct Sender<B: Bounds> {
    shared: Weak<Shared<B>>,
}

/// A new empty queue kept by `bounds`.
pub fn channel<B: Bounds>(bounds: B) -> (Sender<B>, Receiver<B>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bounds,
            closed: false,
        }),
        ready: Notify::new(),
    });
    let sender = Sender {
        shared: Arc::downgrade(&shared),
    };
    (sender, Receiver { shared })
}

impl<B: Bounds> Receiver<B> {
    /// The next item; `None` once the sender is gone and the queue empty.
    /// Cancel safe.
    pub async fn recv(&self) -> Option<B::Item> {
        loop {
            let ready = self.shared.ready.notified();
            tokio::pin!(ready);
            // Registered before looking, so a push in between is not missed.
            ready.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if let Some(item) = pop(&mut state) {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// The next item if one is waiting.
    pub fn try_recv(&self) -> Option<B::Item> {
        pop(&mut self.shared.lock())
    }

    /// A handle that does not keep the queue.
    pub fn downgrade(&self) -> WeakReceiver<B> {
        WeakReceiver {
            shared: Arc::downgrade(&self.shared),
        }
    }
}

impl<B: Bounds> WeakReceiver<B> {
    /// The receiver, while one exists somewhere.
    pub fn upgrade(&self) -> Option<Receiver<B>> {
        Some(Receiver {
            shared: self.shared.upgrade()?,
        })
    }
}

fn pop<B: Bounds>(state: &mut State<B>) -> Option<B::Item> {
    let item = state.items.pop_front()?;
    let left = state.items.len();
    state.bounds.popped(&item, left);
    Some(item)
}

impl<B: Bounds> Sender<B> {
    /// Queues `item` as the bounds allow; returns what they gave up
    /// (nothing when no reader is left: the item goes nowhere).
    pub fn send(&self, item: B::Item) -> B::Overflow {
        let Some(shared) = self.shared.upgrade() else {
            return B::Overflow::default();
        };
        let overflow = {
            let state = &mut *shared.lock();
            state.bounds.push(&mut state.items, item)
        };
        shared.ready.notify_waiters();
        overflow
    }
}

impl<B: Bounds> Drop for Sender<B> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().closed = true;
            shared.ready.notify_waiters();
        }
    }
}
