//! The write path: writes queue, a leader slot sends what is queued as
//! one script run (group commit), a lost connection resends the batch
//! under its record so nothing is applied twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::redis::{ErrorKind, RedisError, ServerErrorKind};
use steward_pool::Pooled;

use super::scripts::WRITE_SCRIPT;
use super::{Inner, RedisStore, backoff};
use crate::error::{Error, Result};

/// Which write the script does.
#[derive(Clone, Copy)]
pub(super) enum Mode {
    Create,
    Update,
    Upsert,
    Delete,
    Reset,
}

impl Mode {
    pub(super) fn code(self) -> &'static str {
        match self {
            Mode::Create => "c",
            Mode::Update => "u",
            Mode::Upsert => "s",
            Mode::Delete => "d",
            Mode::Reset => "r",
        }
    }

    /// The caller's answer from the script's (0 unchanged, 1 replaced or
    /// removed, 2 added).
    pub(super) fn answer(self, r: i64) -> bool {
        match self {
            Mode::Create | Mode::Upsert => r == 2,
            Mode::Update | Mode::Delete | Mode::Reset => r == 1,
        }
    }
}

/// Most writes one batch carries, and most bytes of values beyond its
/// first write: a batch is one script run, and the server serves no one
/// else meanwhile.
pub(super) const BATCH_WRITES: usize = 64;
pub(super) const BATCH_BYTES: usize = 256 * 1024;

/// One write, as the script takes it.
pub(super) struct WriteOp {
    pub(super) mode: Mode,
    pub(super) key: String,
    pub(super) json: Vec<u8>,
    pub(super) ttl_ms: u64,
}

/// A write waiting for a batch, and where its answer goes.
pub(super) struct Queued {
    pub(super) id: u64,
    pub(super) op: WriteOp,
    pub(super) answer: tokio::sync::oneshot::Sender<Result<i64>>,
}

/// Writes waiting to be sent, oldest first.
#[derive(Default)]
pub(super) struct WriteQueue {
    pub(super) waiting: std::collections::VecDeque<Queued>,
    pub(super) next_id: u64,
}

impl WriteQueue {
    pub(super) fn push(
        &mut self,
        op: WriteOp,
        answer: tokio::sync::oneshot::Sender<Result<i64>>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Queued { id, op, answer });
        id
    }

    /// The oldest writes, up to one batch's limits (at least one).
    pub(super) fn take(&mut self) -> Vec<Queued> {
        let (mut n, mut bytes) = (0, 0);
        for q in &self.waiting {
            bytes += q.op.json.len() + q.op.key.len();
            if n == BATCH_WRITES || (n > 0 && bytes > BATCH_BYTES) {
                break;
            }
            n += 1;
        }
        self.waiting.drain(..n).collect()
    }
}

/// Takes a cancelled caller's write back out of the queue, so it is never
/// sent after its caller gave up waiting for a leader slot.
pub(super) struct Unqueue<'a> {
    inner: &'a Inner,
    id: u64,
    /// Still queued, as far as this caller knows.
    armed: bool,
}

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.lock_queue().waiting.retain(|q| q.id != self.id);
        }
    }
}

/// A leader slot held by a caller sending its own write: handed on when
/// dropped — by a cancelled caller too — so writes queued behind it are
/// always sent.
pub(super) struct Slot<'a> {
    store: &'a RedisStore,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.store.hand_off(permit);
        }
    }
}

/// The script's refusal of a write beyond [`RedisConfig::max_keys`].
pub(super) const TOO_MANY_KEYS: &str = "TOO_MANY_KEYS";

/// One write's answer from a batch reply: the script's code, or the
/// server's refusal of that write.
pub(super) type Answer = std::result::Result<i64, String>;

/// How a whole batch failed.
pub(super) enum BatchError {
    /// The store was closed.
    Closed,
    /// The server refused the script before it ran: nothing was written.
    Refused(Arc<RedisError>),
    /// Retries were spent; `maybe_sent` if the batch may have run.
    GaveUp {
        maybe_sent: bool,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl BatchError {
    fn gave_up(maybe_sent: bool, last: RedisErrorOr) -> BatchError {
        let source: Arc<dyn std::error::Error + Send + Sync> = match last {
            RedisErrorOr::Redis(e) => Arc::new(e),
            RedisErrorOr::Other(e) => Arc::new(e),
        };
        BatchError::GaveUp { maybe_sent, source }
    }

    /// The writes may or may not have been applied, for `why`.
    fn unknown(why: &'static str) -> BatchError {
        BatchError::GaveUp {
            maybe_sent: true,
            source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(why)),
        }
    }
}

/// The script ran but its reply does not fit the batch.
pub(super) const SHORT_REPLY: &str = "the server's reply does not match the writes sent";

/// A batch reply: an array of codes and `E<message>` refusals, or (when the
/// record shows the batch already ran) the recorded codes, comma-separated,
/// `-1` for a refusal.
pub(super) fn parse_answers(
    reply: ::redis::Value,
    writes: usize,
) -> std::result::Result<Vec<Answer>, BatchError> {
    let answers: Vec<Answer> = match reply {
        ::redis::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                ::redis::Value::Int(n) => Ok(n),
                ::redis::Value::BulkString(b) => {
                    Err(String::from_utf8_lossy(b.strip_prefix(b"E").unwrap_or(&b)).into_owned())
                }
                other => Err(format!("unexpected answer {other:?}")),
            })
            .collect(),
        ::redis::Value::BulkString(b) => String::from_utf8_lossy(&b)
            .split(',')
            .map(|code| match code.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n),
                _ => Err("the server refused this write when it was first sent".to_string()),
            })
            .collect(),
        _ => return Err(BatchError::unknown(SHORT_REPLY)),
    };
    if answers.len() != writes {
        return Err(BatchError::unknown(SHORT_REPLY));
    }
    Ok(answers)
}

/// How a failed request ended.
pub(super) enum Failure {
    /// The server answered with an error: the script did not run (or wrote
    /// nothing). Not retried.
    Refused(RedisError),
    /// The server answered "not now" (loading, try again): nothing ran.
    Busy(RedisError),
    /// The connection failed after the request may have been sent.
    Lost(RedisError),
}

pub(super) fn classify(e: RedisError) -> Failure {
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown,
        ) => Failure::Busy(e),
        ErrorKind::Server(_) | ErrorKind::Extension => Failure::Refused(e),
        _ => Failure::Lost(e),
    }
}

/// An error from the client, or one of ours (pool, closed).
pub(super) enum RedisErrorOr {
    Redis(RedisError),
    Other(Error),
}

impl RedisStore {
    /// Queues one write and waits for its answer (group commit). A caller
    /// that finds a free leader slot sends what is queued — usually just
    /// its own write, sent from here with no task hop; otherwise a task
    /// with a slot sends it in the next batch, together with every write
    /// that queued meanwhile, so concurrent writers share script runs and
    /// round trips. Slots are few (see [`RedisConfig::batches_in_flight`]):
    /// the server runs scripts one at a time anyway, and writes that wait
    /// make the batches that save its time.
    pub(super) async fn write(&self, op: WriteOp) -> Result<bool> {
        self.check_open()?;
        let inner = &*self.inner;
        let mode = op.mode;
        let key = op.key.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut queued = Unqueue {
            inner,
            id: inner.lock_queue().push(op, tx),
            armed: true,
        };
        if let Ok(permit) = Arc::clone(&inner.leaders).try_acquire_owned() {
            let batch = inner.lock_queue().take();
            if batch.is_empty() {
                // A draining task took this write meanwhile.
                queued.armed = false;
                self.hand_off(permit);
            } else if batch.len() == 1 && batch[0].id == queued.id {
                // Alone: cancelling this call cancels only this write, and
                // the slot still passes to whatever queued meanwhile.
                queued.armed = false;
                let slot = Slot {
                    store: self,
                    permit: Some(permit),
                };
                self.run_batch(batch).await;
                drop(slot);
            } else {
                // Other callers' writes: a task of their own, so
                // cancelling this call cannot strand them.
                self.spawn_drain(batch, permit);
            }
        }
        let answer = rx.await;
        queued.armed = false;
        match answer {
            Ok(r) => r.map(|r| mode.answer(r)),
            // Only when the runtime shuts down under a running batch.
            Err(_) => Err(self.batch_error(
                &key,
                &BatchError::unknown("the write's batch ended before its answer"),
            )),
        }
    }

    /// Sends `first`, then batches of whatever queued meanwhile, until the
    /// queue is empty.
    async fn drain(self, first: Vec<Queued>, permit: tokio::sync::OwnedSemaphorePermit) {
        let mut batch = first;
        while !batch.is_empty() {
            self.run_batch(batch).await;
            batch = self.inner.lock_queue().take();
        }
        self.hand_off(permit);
    }

    /// Gives up a leader slot, or hands it to a draining task if writes are
    /// queued. A writer that queued just before the slot came free found
    /// no slot and relies on this check to be sent.
    fn hand_off(&self, mut permit: tokio::sync::OwnedSemaphorePermit) {
        let inner = &*self.inner;
        if inner.lock_queue().waiting.is_empty() {
            drop(permit);
            if inner.lock_queue().waiting.is_empty() {
                return;
            }
            match Arc::clone(&inner.leaders).try_acquire_owned() {
                Ok(p) => permit = p,
                // Another holder will drain.
                Err(_) => return,
            }
        }
        let batch = inner.lock_queue().take();
        self.spawn_drain(batch, permit);
    }

    fn spawn_drain(&self, batch: Vec<Queued>, permit: tokio::sync::OwnedSemaphorePermit) {
        // No runtime means it is shutting down: the queued callers are gone.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(self.clone().drain(batch, permit));
        }
    }

    /// Sends one batch and hands every write its answer.
    async fn run_batch(&self, batch: Vec<Queued>) {
        let (ops, senders): (Vec<WriteOp>, Vec<_>) =
            batch.into_iter().map(|q| (q.op, q.answer)).unzip();
        // A span, as a batch may ride out a server restart (retry_for).
        let span = tracing::debug_span!("redis_write_batch", writes = ops.len());
        let outcome = tracing::Instrument::instrument(self.send_batch(&ops), span).await;
        let results: Vec<Result<i64>> = match outcome {
            // `parse_answers` checked there is one answer per write.
            Ok(answers) => ops
                .iter()
                .zip(answers)
                .map(|(op, a)| self.write_result(&op.key, a))
                .collect(),
            Err(e) => ops
                .iter()
                .map(|op| Err(self.batch_error(&op.key, &e)))
                .collect(),
        };
        for (tx, r) in senders.into_iter().zip(results) {
            // The caller may be gone (cancelled); its write stands anyway.
            let _ = tx.send(r);
        }
    }

    /// One write's answer from a batch that ran, counted.
    pub(super) fn write_result(&self, key: &str, answer: Answer) -> Result<i64> {
        let counters = &self.inner.counters;
        match answer {
            Ok(r) => {
                let c = if r != 0 {
                    &counters.writes
                } else {
                    &counters.unchanged
                };
                c.fetch_add(1, Ordering::Relaxed);
                Ok(r)
            }
            Err(message) if message == TOO_MANY_KEYS => {
                let total = counters.keys_refused.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    key,
                    total,
                    limit = self.inner.config.max_keys,
                    "write refused: the namespace holds its key cap"
                );
                Err(crate::limits::refusal(
                    self.inner.location.clone(),
                    key,
                    self.inner.config.max_keys,
                ))
            }
            Err(message) => {
                counters.write_not_applied.fetch_add(1, Ordering::Relaxed);
                Err(Error::RedisWriteNotApplied {
                    server: self.inner.server.to_string(),
                    key: key.to_string(),
                    source: message.into(),
                })
            }
        }
    }

    /// Runs one batch's script. Retries while the batch certainly did not
    /// run (no connection, server loading) and — thanks to the op record —
    /// also after a lost connection, until [`RedisConfig::retry_for`].
    pub(super) async fn send_batch(
        &self,
        ops: &[WriteOp],
    ) -> std::result::Result<Vec<Answer>, BatchError> {
        let inner = &*self.inner;
        let k = &inner.keys;
        let number = format!("{:x}", inner.op_counter.fetch_add(1, Ordering::Relaxed));
        let dedupe = inner.config.dedupe_writes;
        let record_ms = if dedupe {
            (inner.config.retry_for * 2 + Duration::from_secs(30)).as_millis() as u64
        } else {
            0
        };
        let value_keys: Vec<Vec<u8>> = ops.iter().map(|o| k.value(&o.key)).collect();
        let invocation = |record: &str| {
            let mut inv = WRITE_SCRIPT.prepare_invoke();
            inv.key(&k.order).key(&k.seq).key(record);
            for v in &value_keys {
                inv.key(v);
            }
            inv.arg(&k.channel)
                .arg(&k.value_prefix)
                .arg(record_ms)
                .arg(&number)
                .arg(inner.config.max_keys);
            for o in ops {
                inv.arg(o.mode.code())
                    .arg(&o.key)
                    .arg(&o.json)
                    .arg(o.ttl_ms);
            }
            inv
        };
        let deadline = Instant::now() + inner.config.retry_for;
        // After a lost connection every resend names that connection's
        // record, where the first send (if it ran, or runs late) answers.
        let mut lost_record: Option<Arc<str>> = None;
        let mut maybe_sent = false;
        let mut attempt = 0u32;
        loop {
            let last: RedisErrorOr = match inner.pool.get().await {
                Err(e) => RedisErrorOr::Other(self.pool_error(e)),
                Ok(mut conn) => match invocation(lost_record.as_deref().unwrap_or(&conn.record))
                    .invoke_async::<::redis::Value>(&mut conn.conn)
                    .await
                {
                    Ok(reply) => {
                        inner.counters.batches.fetch_add(1, Ordering::Relaxed);
                        return parse_answers(reply, ops.len());
                    }
                    Err(e) => match classify(e) {
                        Failure::Refused(e) => return Err(BatchError::Refused(Arc::new(e))),
                        Failure::Busy(e) => RedisErrorOr::Redis(e),
                        Failure::Lost(e) => {
                            maybe_sent = true;
                            if lost_record.is_none() {
                                lost_record = Some(Arc::clone(&conn.record));
                            }
                            Pooled::discard(conn);
                            if !dedupe {
                                // Resending could apply it twice.
                                return Err(BatchError::gave_up(true, RedisErrorOr::Redis(e)));
                            }
                            RedisErrorOr::Redis(e)
                        }
                    },
                },
            };
            if matches!(last, RedisErrorOr::Other(Error::RedisClosed { .. })) {
                return Err(BatchError::Closed);
            }
            if Instant::now() >= deadline {
                return Err(BatchError::gave_up(maybe_sent, last));
            }
            attempt += 1;
            inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                server = %inner.server,
                writes = ops.len(),
                attempt,
                maybe_sent,
                "retrying a write"
            );
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// The error one write of a failed batch reports.
    pub(super) fn batch_error(&self, key: &str, e: &BatchError) -> Error {
        let inner = &*self.inner;
        let server = inner.server.to_string();
        let key = key.to_string();
        let (maybe_sent, source): (bool, Box<dyn std::error::Error + Send + Sync>) = match e {
            BatchError::Closed => {
                return Error::RedisClosed {
                    location: inner.location.clone(),
                };
            }
            BatchError::Refused(e) => (false, Box::new(Arc::clone(e))),
            BatchError::GaveUp { maybe_sent, source } => {
                tracing::warn!(server = %server, key = %key, maybe_sent, error = %source, "giving up a write");
                (*maybe_sent, Box::new(Arc::clone(source)))
            }
        };
        if maybe_sent {
            inner.counters.write_unknown.fetch_add(1, Ordering::Relaxed);
            Error::RedisWriteUnknown {
                server,
                key,
                source,
            }
        } else {
            inner
                .counters
                .write_not_applied
                .fetch_add(1, Ordering::Relaxed);
            Error::RedisWriteNotApplied {
                server,
                key,
                source,
            }
        }
    }
}
