//! Change subscriptions over a dedicated pub/sub connection, and the
//! server's expiry announcements.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ::redis::RedisError;
use futures_util::StreamExt;

use super::{RedisStore, backoff};
use crate::error::{Error, Result};
use crate::subscribe::{Change, SubQueue, Subscription};

impl RedisStore {
    /// Subscribes to the namespace's changes of keys matching `pattern`,
    /// over a dedicated pub/sub connection: changes made by any client
    /// (any process) after this returns are delivered, once each and in
    /// order. A lost pub/sub connection is re-established in the background;
    /// changes published meanwhile are missed and counted by
    /// [`Subscription::dropped`] (at least one per gap).
    ///
    /// [`Change::Expired`] comes as soon as the server expires the entry if
    /// the server announces expiries (`notify-keyspace-events Ex`: the
    /// subscription listens for them and has the entry tidied); otherwise
    /// when any client next touches the entry, lists the entries, or calls
    /// [`RedisStore::sweep_expired`].
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.check_open()?;
        if self.announces_expiries().await == Some(false) {
            tracing::info!(
                server = %self.inner.server,
                "the server does not announce expiries (notify-keyspace-events Ex): \
                 expiry changes arrive when an expired entry is next touched"
            );
        }
        let queue = SubQueue::new(pattern, self.inner.config.subscription_capacity);
        let stream = self.open_pubsub().await?;
        self.inner.hub.add(&queue);
        let task = tokio::spawn(pump(self.clone(), Arc::clone(&queue), stream));
        Ok(Subscription::new(
            queue,
            Some(Box::new(AbortOnDrop(task.abort_handle()))),
        ))
    }

    /// The store key of `redis_key` if it is one of this namespace's values.
    fn own_key(&self, redis_key: &[u8]) -> Option<String> {
        let key = redis_key.strip_prefix(self.inner.keys.value_prefix.as_bytes())?;
        std::str::from_utf8(key).ok().map(str::to_string)
    }

    /// The server expired `key`'s value: read it, so the read script drops
    /// it from the order index and publishes [`Change::Expired`] — once,
    /// whichever client gets there first.
    async fn notice_expired(&self, key: &str) {
        if let Err(e) = self.read_script("g", key).await {
            tracing::debug!(server = %self.inner.server, key, error = %e.chain(), "noticing an expiry failed");
        }
    }

    /// Whether the server announces expiries (`notify-keyspace-events`
    /// with `E` and `x`, or `A`); `None` if it will not say (`CONFIG` may
    /// be forbidden to this user).
    async fn announces_expiries(&self) -> Option<bool> {
        let reply = self
            .read_request("config", "", |mut conn| async move {
                ::redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            })
            .await
            .ok()?;
        let flags = reply.get(1)?;
        Some(flags.contains('E') && (flags.contains('x') || flags.contains('A')))
    }

    async fn open_pubsub(&self) -> Result<::redis::aio::PubSubStream> {
        let inner = &*self.inner;
        let fail = |e: RedisError| Error::RedisUnavailable {
            server: inner.server.to_string(),
            source: Box::new(e),
        };
        let connect = async {
            let mut ps = inner.client.get_async_pubsub().await.map_err(fail)?;
            ps.subscribe(&inner.keys.channel).await.map_err(fail)?;
            ps.subscribe(&inner.keys.expired).await.map_err(fail)?;
            Ok(ps.into_on_message())
        };
        match tokio::time::timeout(inner.config.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(Error::RedisUnavailable {
                server: inner.server.to_string(),
                source: "subscribing timed out".into(),
            }),
        }
    }
}

pub(super) struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decodes one published change: `<op><key length>:<key><value json>`.
pub(super) fn decode_change(payload: &[u8]) -> Option<(String, Change)> {
    let (&op, rest) = payload.split_first()?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let rest = &rest[colon + 1..];
    let key = std::str::from_utf8(rest.get(..len)?).ok()?.to_string();
    let body = &rest[len..];
    let change = match op {
        b'S' => Change::Set(serde_json::from_slice(body).ok()?),
        b'D' => Change::Deleted,
        b'X' => Change::Expired,
        b'R' => Change::Reset,
        _ => return None,
    };
    Some((key, change))
}

/// Moves published changes into the subscription's queue, reconnecting
/// when the pub/sub connection is lost, until the store is closed.
pub(super) async fn pump(
    store: RedisStore,
    queue: Arc<SubQueue>,
    mut stream: ::redis::aio::PubSubStream,
) {
    let mut attempt = 0u32;
    loop {
        while let Some(msg) = stream.next().await {
            attempt = 0;
            if msg.get_channel_name() == store.inner.keys.expired {
                // Other namespaces' expiries come too; ours are noticed in a
                // task, so a slow server does not hold up the changes.
                if let Some(key) = store.own_key(msg.get_payload_bytes()) {
                    let store = store.clone();
                    tokio::spawn(async move { store.notice_expired(&key).await });
                }
                continue;
            }
            match decode_change(msg.get_payload_bytes()) {
                Some((k, c)) => queue.push(&k, &c),
                None => tracing::warn!(server = %store.inner.server, "undecodable change message"),
            }
        }
        if store.inner.closed.load(Ordering::Acquire) {
            queue.close();
            return;
        }
        store
            .inner
            .counters
            .subscription_gaps
            .fetch_add(1, Ordering::Relaxed);
        queue.note_gap();
        loop {
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
            if store.inner.closed.load(Ordering::Acquire) {
                queue.close();
                return;
            }
            match store.open_pubsub().await {
                Ok(s) => {
                    stream = s;
                    break;
                }
                Err(e) => tracing::debug!(error = %e.chain(), "re-subscribing failed"),
            }
        }
    }
}
