//! The traits a user implements to teach a pool how to make and check objects.

use std::future::Future;

use serde::{Deserialize, Serialize};

/// Why the pool closed an object. Passed to [`Manager::close`] and counted in
/// [`crate::Stats::closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseReason {
    /// The health check ([`Manager::recycle`]) failed or timed out, or the
    /// holder discarded it with [`crate::Pooled::discard`].
    Broken,
    /// It stayed idle longer than `idle_timeout`.
    IdleTimeout,
    /// It lived longer than `max_lifetime`.
    Lifetime,
    /// The pool was resized below the number of live objects, or shrunk to
    /// `min_idle` on request.
    Shrink,
    /// The pool was closed or dropped.
    Closed,
    /// A keyed pool closed it to make room for another key under the global cap.
    Evicted,
    /// A `retain` predicate rejected it.
    Removed,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 7] = [
        CloseReason::Broken,
        CloseReason::IdleTimeout,
        CloseReason::Lifetime,
        CloseReason::Shrink,
        CloseReason::Closed,
        CloseReason::Evicted,
        CloseReason::Removed,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            CloseReason::Broken => 0,
            CloseReason::IdleTimeout => 1,
            CloseReason::Lifetime => 2,
            CloseReason::Shrink => 3,
            CloseReason::Closed => 4,
            CloseReason::Evicted => 5,
            CloseReason::Removed => 6,
        }
    }

    pub(crate) fn from_index(i: u8) -> CloseReason {
        Self::ALL
            .get(usize::from(i))
            .copied()
            .unwrap_or(CloseReason::Closed)
    }
}

/// Creates, checks and closes the objects of a [`crate::Pool`].
///
/// Only `create` is required. Errors come back to the caller of
/// [`crate::Pool::get`] typed, inside [`crate::Error::Create`].
pub trait Manager: Send + Sync + 'static {
    /// The pooled object (a connection, a client, ...).
    type Object: Send + 'static;
    /// The error `create` and `recycle` return.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Makes a new object. Bounded by the pool's create timeout.
    fn create(&self) -> impl Future<Output = Result<Self::Object, Self::Error>> + Send;

    /// Health check run when an idle object is checked out (unless it was
    /// used within the pool's `recent_window`). An error closes the object
    /// with [`CloseReason::Broken`] and the pool tries the next one or creates
    /// a new one: the caller never sees this error. Bounded by the pool's
    /// recycle timeout. The default accepts every object.
    fn recycle(
        &self,
        obj: &mut Self::Object,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = obj;
        std::future::ready(Ok(()))
    }

    /// Called once for every object the pool closes, right before it is
    /// dropped (not for objects detached with [`crate::Pooled::take`]).
    ///
    /// It may run while the pool holds an internal lock: keep it short and do
    /// not call back into the pool from here. The default does nothing.
    fn close(&self, obj: &mut Self::Object, reason: CloseReason) {
        let _ = (obj, reason);
    }
}

/// Like [`Manager`], for a [`crate::KeyedPool`]: every call names the key
/// (a URL, a host, a tenant) the object belongs to.
pub trait KeyedManager<K>: Send + Sync + 'static {
    /// The pooled object.
    type Object: Send + 'static;
    /// The error `create` and `recycle` return.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Makes a new object for `key`.
    fn create(&self, key: &K) -> impl Future<Output = Result<Self::Object, Self::Error>> + Send;

    /// Health check on checkout; see [`Manager::recycle`].
    fn recycle(
        &self,
        key: &K,
        obj: &mut Self::Object,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (key, obj);
        std::future::ready(Ok(()))
    }

    /// Close hook; see [`Manager::close`].
    fn close(&self, key: &K, obj: &mut Self::Object, reason: CloseReason) {
        let _ = (key, obj, reason);
    }
}
