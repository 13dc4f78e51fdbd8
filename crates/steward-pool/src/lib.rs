//! A generic async object pool built on `deadpool`'s managed pool, with what
//! its users keep asking for: a size limit that really shrinks, maximum
//! lifetime, idle timeout, `min_idle`, a background reaper, a health check
//! that can be skipped for recently used objects, `add` for objects made
//! elsewhere, keyed pools with a global cap, and a serde snapshot of its
//! counters ([`Stats`]).
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use steward_pool::{Manager, Pool, Pooled};
//!
//! struct Counter;
//!
//! impl Manager for Counter {
//!     type Object = u32;
//!     type Error = Infallible;
//!     async fn create(&self) -> Result<u32, Infallible> {
//!         Ok(0)
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let pool = Pool::builder(Counter)
//!     .max_size(2)
//!     .idle_timeout(Some(Duration::from_secs(60)))
//!     .build()?;
//! let mut a = pool.get().await?;
//! *a += 1;
//! let b = pool.get().await?;
//! // Both slots are taken: `try_get` says so at once.
//! assert!(matches!(pool.try_get().await, Err(steward_pool::Error::Full { .. })));
//! drop(b);
//! let taken: u32 = Pooled::take(a); // detached: the pool forgets it
//! assert_eq!(taken, 1);
//! let m = pool.stats();
//! assert_eq!((m.size, m.idle, m.created, m.taken), (1, 1, 2, 1));
//! pool.close();
//! # steward_pool::Result::<(), Infallible>::Ok(())
//! # }).unwrap();
//! ```
//!
//! # Guarantees
//! - Live objects never exceed `max_size` (per key and `max_total` for
//!   keyed pools), also under cancellation and `resize`.
//! - A cancelled `get` leaks nothing; a returned object wakes a waiter.
//! - Objects in constant use still expire by `max_lifetime`: it is checked
//!   on return, on checkout and by the reaper.
//! - The reaper holds only a weak reference: dropping the last handle or
//!   calling `close` stops it.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod config;
mod core;
mod error;
mod keyed;
mod manager;
mod pool;
mod stats;

pub use config::{KeyedPoolConfig, PoolConfig, QueueMode};
pub use error::{Error, Refused, Result};
pub use keyed::{KeyAdapter, KeyedPool, KeyedPoolBuilder, KeyedPooled, KeyedStats, WeakKeyedPool};
pub use manager::{CloseReason, KeyedManager, Manager};
pub use pool::{ObjectInfo, Pool, PoolBuilder, Pooled, WeakPool};
pub use stats::{ClosedCounts, Stats, WAIT_BUCKETS_US, WaitBucket};
