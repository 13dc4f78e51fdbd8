//! Pooled objects tracked by the tracker without the user writing it.

use std::ops::{Deref, DerefMut};

use steward_pool::{CloseReason, Manager};
use steward_tracker::{Tracked, Tracker};

use crate::Steward;
use crate::error::TrackedError;

impl Steward {
    /// Wraps a pool manager so that every object it makes is tracked by this
    /// steward's tracker as `kind`, `size_bytes` each. `None` when no tracker
    /// was handed in.
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # struct Conn;
    /// # impl steward::pool::Manager for Conn {
    /// #     type Object = Vec<u8>;
    /// #     type Error = Infallible;
    /// #     async fn create(&self) -> Result<Vec<u8>, Infallible> { Ok(vec![0; 64]) }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use steward::{Steward, pool::Pool, tracker::Tracker};
    ///
    /// let steward = Steward::builder().tracker(Tracker::new()).build()?;
    /// let manager = steward.tracked_manager(Conn, "conn", 64).expect("a tracker");
    /// let pool = Pool::builder(manager).max_size(4).build()?;
    /// steward.add_pool(&pool);
    /// let conn = pool.get().await?;
    /// assert_eq!(conn.len(), 64); // derefs through to the object
    /// assert_eq!(steward.tracker().unwrap().totals().live_count, 1);
    /// # drop(conn);
    /// steward.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn tracked_manager<M: steward_pool::Manager>(
        &self,
        manager: M,
        kind: &str,
        size_bytes: u64,
    ) -> Option<TrackedManager<M>> {
        let tracker = self.tracker()?.clone();
        Some(TrackedManager::new(manager, tracker, kind, size_bytes))
    }
}

/// A pool [`Manager`] that registers every object it creates with a
/// [`Tracker`] (kind and size given at construction) and releases it when
/// the pool closes the object, or when a detached object is dropped.
///
/// A checkout that runs the health check (`recycle`) marks the object used,
/// so idle pooled objects are what [`Tracker::stale`] reports. The tracker
/// entry is made *before* the wrapped `create` runs: a kind over its hard
/// budget refuses the object without paying for it.
///
/// Made by [`crate::Steward::tracked_manager`] or [`TrackedManager::new`].
#[derive(Debug)]
pub struct TrackedManager<M> {
    inner: M,
    tracker: Tracker,
    kind: String,
    size_bytes: u64,
}

impl<M: Manager> TrackedManager<M> {
    /// Wraps `inner`; its objects are tracked as `kind`, each counted as
    /// `size_bytes` (an estimate of what one object holds).
    pub fn new(inner: M, tracker: Tracker, kind: impl Into<String>, size_bytes: u64) -> Self {
        Self {
            inner,
            tracker,
            kind: kind.into(),
            size_bytes,
        }
    }

    /// The wrapped manager.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The tracker kind of the objects.
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

/// A pooled object with its tracker entry. Derefs to the object; the entry
/// is released when this is dropped.
#[derive(Debug)]
pub struct TrackedObject<T> {
    object: T,
    guard: Tracked,
}

impl<T> TrackedObject<T> {
    /// The tracker entry (to touch, resize or name it).
    pub fn tracked(&self) -> &Tracked {
        &self.guard
    }

    /// Releases the tracker entry and returns the bare object.
    pub fn into_inner(self) -> T {
        self.guard.release();
        self.object
    }
}

impl<T> Deref for TrackedObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T> DerefMut for TrackedObject<T> {
    fn deref_mut(&mut self) -> &mut T {
        // Mutable access is use: cheap (one relaxed store).
        self.guard.touch();
        &mut self.object
    }
}

impl<M: Manager> Manager for TrackedManager<M> {
    type Object = TrackedObject<M::Object>;
    type Error = TrackedError<M::Error>;

    async fn create(&self) -> Result<Self::Object, Self::Error> {
        let guard = self
            .tracker
            .track(&self.kind, self.size_bytes)
            .map_err(|source| TrackedError::Tracker {
                kind: self.kind.clone(),
                source,
            })?;
        // A failed create drops `guard`, releasing the entry.
        let object = self.inner.create().await.map_err(TrackedError::Manager)?;
        guard.touch();
        Ok(TrackedObject { object, guard })
    }

    async fn recycle(&self, obj: &mut Self::Object) -> Result<(), Self::Error> {
        obj.guard.touch();
        self.inner
            .recycle(&mut obj.object)
            .await
            .map_err(TrackedError::Manager)
    }

    fn close(&self, obj: &mut Self::Object, reason: CloseReason) {
        self.inner.close(&mut obj.object, reason);
    }
}
