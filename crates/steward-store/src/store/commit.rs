//! Group commit: the queued requests, the slot each caller waits on, and
//! the leadership that turns queued writes into one batch per round (a
//! blocking caller on its own thread, else the writer thread).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use super::Shared;
use crate::error::{Error, Result};

/// One queued write, already validated and encoded by the caller.
pub(super) enum WriteOp {
    Create(String, Value, Vec<u8>),
    Update(String, Value, Vec<u8>),
    Upsert(String, Value, Vec<u8>),
    /// Upsert that expires this many ms after it is committed.
    UpsertTtl(String, Value, Vec<u8>, u64),
    Delete(String),
    Reset,
}

impl WriteOp {
    pub(super) fn cost(&self) -> usize {
        match self {
            WriteOp::Create(k, _, j) | WriteOp::Update(k, _, j) | WriteOp::Upsert(k, _, j) => {
                k.len() + j.len() + 9
            }
            WriteOp::UpsertTtl(k, _, j, _) => 2 * k.len() + j.len() + 22,
            WriteOp::Delete(k) => k.len() + 5,
            WriteOp::Reset => 1,
        }
    }

    /// The key written (empty for reset).
    pub(super) fn key(&self) -> &str {
        match self {
            WriteOp::Create(k, ..)
            | WriteOp::Update(k, ..)
            | WriteOp::Upsert(k, ..)
            | WriteOp::UpsertTtl(k, ..)
            | WriteOp::Delete(k) => k,
            WriteOp::Reset => "",
        }
    }
}

pub(super) enum Kind {
    Write(WriteOp),
    Compact,
    /// Sweep expired entries; the count goes into the cell.
    Sweep(Arc<AtomicU64>),
    Close,
}

pub(super) struct Request {
    pub(super) kind: Kind,
    pub(super) reply: Reply,
}

/// The writer's end of a [`Slot`]. If it is dropped unanswered (the writer
/// thread is unwinding from a bug), the waiter gets an error instead of
/// waiting forever.
pub(super) struct Reply {
    pub(super) slot: Option<Arc<Slot>>,
    pub(super) path: PathBuf,
}

impl Reply {
    pub(super) fn complete(mut self, result: Result<bool>) {
        if let Some(slot) = self.slot.take() {
            slot.complete(result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Err(Error::Closed {
                path: std::mem::take(&mut self.path),
            }));
        }
    }
}

/// Where the writer thread leaves one request's result, for a blocked
/// thread (condvar) or a future (waker).
#[derive(Default)]
pub(super) struct Slot {
    pub(super) state: Mutex<SlotState>,
    pub(super) ready: Condvar,
}

#[derive(Default)]
pub(super) struct SlotState {
    pub(super) result: Option<Result<bool>>,
    pub(super) waker: Option<Waker>,
}

impl Slot {
    pub(super) fn complete(&self, result: Result<bool>) {
        let waker = {
            let mut s = self.state.lock();
            s.result = Some(result);
            s.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.state.lock().result.is_some()
    }

    pub(super) fn wait(&self) -> Result<bool> {
        let mut s = self.state.lock();
        loop {
            if let Some(r) = s.result.take() {
                return r;
            }
            self.ready.wait(&mut s);
        }
    }
}

/// The result of a write ([`Store::upsert`](crate::Store::upsert) and the
/// other async writes): resolves once the write is durable.
///
/// The write is queued when the method is called, not when this is first
/// polled. Cancel safety: dropping it, even un-polled, does not cancel the
/// write, which still completes (or fails) in the background; you only lose
/// its result, so an error goes unseen. Await it (or use the method's
/// `_blocking` form) to know the write is durable.
#[must_use = "the write is queued already; await this to know it is durable (or see its error)"]
pub struct WriteFuture {
    pub(super) slot: Arc<Slot>,
}

impl std::fmt::Debug for WriteFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFuture").finish_non_exhaustive()
    }
}

impl Future for WriteFuture {
    type Output = Result<bool>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.state.lock();
        if let Some(r) = s.result.take() {
            return Poll::Ready(r);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

pub(super) fn ready(result: Result<bool>) -> WriteFuture {
    let slot = Arc::new(Slot::default());
    slot.complete(result);
    WriteFuture { slot }
}

/// Leads group commits until the queue is empty, or — for a blocking
/// caller (`own`) — until its own request is answered, then hands the rest
/// to the writer thread so no caller leads for long.
pub(super) fn lead_commits(shared: &Shared, own: Option<&Slot>) {
    loop {
        let requests = {
            let mut q = shared.queue.lock();
            if q.requests.is_empty() || q.closed {
                q.leader = false;
                return;
            }
            if own.is_some_and(Slot::is_done) {
                q.thread_wanted = true;
                drop(q);
                shared.wake.notify_all();
                return;
            }
            q.queued_bytes = 0;
            q.refusing = false;
            std::mem::take(&mut q.requests)
        };
        let closed = shared.writer.lock().handle(shared, requests);
        if closed {
            shared.queue.lock().leader = false;
            shared.wake.notify_all();
            return;
        }
    }
}

/// The writer thread: leads when an async caller (or a blocking leader
/// handing over) asks it to; exits when the store is closed or dropped.
pub(super) fn writer_thread(shared: &Shared) {
    loop {
        {
            let mut q = shared.queue.lock();
            while !q.thread_wanted && !q.closed && !q.shutdown {
                shared.wake.wait(&mut q);
            }
            if !q.thread_wanted {
                return;
            }
            q.thread_wanted = false;
        }
        lead_commits(shared, None);
    }
}
