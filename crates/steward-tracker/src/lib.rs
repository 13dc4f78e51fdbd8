//! Live resources with RAII guards, per-kind totals, budgets, stale and leak
//! reports.
//!
//! A long-running process must be able to answer "what is holding memory
//! right now, since when, and who made it?". A [`Tracker`] keeps one small
//! record per live resource: its kind, size, creation time and site, the
//! last time it was used, and optional name and metadata. Resources are
//! tracked either by a scope ([`Tracker::track`] returns a [`Tracked`] guard
//! that releases on drop) or by the caller's key ([`Tracker::track_id`] /
//! [`Tracker::release_id`]), where double releases and unknown keys are
//! reported and never underflow a total.
//!
//! Per kind and overall it counts live resources and bytes, their peaks and
//! the totals ever tracked and released. Per-kind [`Budget`]s emit an
//! [`Event`] when a soft limit is crossed and refuse with
//! [`Error::OverBudget`] past a hard one. [`Tracker::snapshot`],
//! [`Tracker::stale`] and [`Tracker::check_leaks`] are what a memory
//! monitor's cleanup handlers act on.
//!
//! ```
//! use std::time::Duration;
//! use steward_tracker::{Budget, Error, Event, ManualClock, Tracker};
//!
//! let clock = ManualClock::new();
//! let tracker = Tracker::builder()
//!     .clock(clock.clone())
//!     .budget("audio_buf", Budget::new().with_soft_bytes(1_000).with_hard_bytes(4_096))
//!     .leak_after(Duration::from_secs(60))
//!     .build()?;
//!
//! let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let sink = events.clone();
//! let _sub = tracker.subscribe(move |e: &Event| sink.lock().unwrap().push(e.clone()));
//!
//! let mut buf = tracker.track("audio_buf", 512)?.with_name("mic");
//! buf.resize(2_048)?; // crosses the soft budget: one event
//! assert!(matches!(tracker.track("audio_buf", 4_000), Err(Error::OverBudget { .. })));
//!
//! tracker.track_id("session-42", "ws_conn", 64)?;
//! clock.advance(Duration::from_secs(90));
//! buf.touch();
//! let stale = tracker.stale(Duration::from_secs(30));
//! assert_eq!(stale.len(), 1); // the session, not the touched buffer
//! assert_eq!(tracker.check_leaks().len(), 2); // both are older than 60 s
//! assert!(tracker.check_leaks().is_empty()); // reported once
//!
//! let totals = tracker.totals();
//! assert_eq!((totals.live_count, totals.live_bytes), (2, 2_048 + 64));
//! drop(buf);
//! tracker.release_id("session-42")?;
//! assert!(tracker.release_id("session-42").is_err()); // double release: reported
//! assert_eq!(tracker.totals().live_bytes, 0);
//! assert_eq!(tracker.snapshot().totals.peak_bytes, 2_048 + 64);
//! // Soft budget exceeded, 2 leaks, soft budget recovered, unknown id.
//! assert_eq!(events.lock().unwrap().len(), 5);
//! # Ok::<(), Error>(())
//! ```
//!
//! # Costs
//!
//! `touch()` is one relaxed atomic store of a coarse monotonic clock read (a
//! few ns, no lock). `track` and dropping a guard touch a sharded map and a
//! handful of per-kind atomics. A live resource costs about 100 bytes of
//! tracker memory (the record plus its map slot); metadata only when set.
//! The coarse clock has a resolution of a few milliseconds.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod builder;
mod clock;
mod config;
mod error;
mod id_hash;
mod kinds;
mod record;
mod report;
mod tracker;

pub use builder::TrackerBuilder;
pub use clock::ManualClock;
pub use config::{Budget, TrackerConfig};
pub use error::{Error, Result};
pub use report::{Event, KindStats, ResourceInfo, Snapshot, Totals};
pub use tracker::{LeakWatcher, MAX_SIZE, ResourceId, Subscription, Tracked, Tracker};

/// Most kinds one tracker holds.
pub const MAX_KINDS: usize = kinds::MAX_KINDS;
