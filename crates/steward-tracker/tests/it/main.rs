//! Integration tests of steward-tracker: a model-based property test,
//! concurrency, budgets, stale and leak reports, and lifecycle edge cases.

mod budgets;
mod concurrency;
mod contract;
mod lifecycle;
mod model;
mod reports;

use std::sync::{Arc, Mutex};

use steward_tracker::{Event, Subscription, Tracker};

/// Collects every event a tracker emits.
pub(crate) struct Events {
    seen: Arc<Mutex<Vec<Event>>>,
    _sub: Subscription,
}

impl Events {
    pub(crate) fn on(tracker: &Tracker) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let sub = tracker.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
        Self { seen, _sub: sub }
    }

    pub(crate) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}
