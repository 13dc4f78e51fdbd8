//! The one I/O task of a session: it owns the socket, writes the
//! outbound queue, reads into the inbound one, pings, reconnects with
//! backoff, and answers the handles' commands ([`Driver`]).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Command, Incoming, Outgoing, Shared, Ws, bump, shed_queue, wire_sheddable};
use crate::events::{EventSender, Overflow};
use crate::shed::ShedFloor;
use crate::{Event, Message};

mod link;

use link::LinkEnd;

pub(super) struct Driver {
    shared: Arc<Shared>,
    out_rx: mpsc::UnboundedReceiver<Outgoing>,
    /// Outbound messages taken off `out_rx` by a shed, written before the
    /// channel's (they are older).
    backlog: VecDeque<Outgoing>,
    out_closed: bool,
    in_tx: mpsc::UnboundedSender<Incoming>,
    cmd_rx: mpsc::Receiver<Command>,
    cmd_closed: bool,
    ev_tx: EventSender,
    ping_seq: u64,
    /// Consecutive failures: failed connects and links lost before they
    /// were healthy. Reset by a link that stayed up for `healthy_after`.
    streak: u32,
}

impl Driver {
    /// The task for a session whose handles talk to it through these
    /// channels; [`run`](Self::run) drives it.
    pub(super) fn new(
        shared: Arc<Shared>,
        out_rx: mpsc::UnboundedReceiver<Outgoing>,
        in_tx: mpsc::UnboundedSender<Incoming>,
        cmd_rx: mpsc::Receiver<Command>,
        ev_tx: EventSender,
    ) -> Self {
        Self {
            shared,
            out_rx,
            backlog: VecDeque::new(),
            out_closed: false,
            in_tx,
            cmd_rx,
            cmd_closed: false,
            ev_tx,
            ping_seq: 0,
            streak: 0,
        }
    }

    fn config(&self) -> &crate::ClientConfig {
        &self.shared.client.config
    }

    fn url(&self) -> String {
        self.shared.url().to_string()
    }

    /// Queues an event; what a full queue gave up is counted and, once per
    /// burst, logged.
    fn emit(&self, event: Event) {
        let lost = self.ev_tx.send(event);
        if lost == Overflow::default() {
            return;
        }
        let c = &self.shared.counters;
        bump(&c.events_dropped, lost.dropped);
        bump(&c.events_coalesced, lost.coalesced);
        bump(&c.undelivered_dropped_messages, lost.messages);
        bump(&c.undelivered_dropped_bytes, lost.bytes);
        if lost.first_in_burst {
            tracing::warn!(
                reconnecting_dropped = lost.dropped,
                disconnects_folded = lost.coalesced,
                undelivered_dropped = lost.messages,
                undelivered_dropped_bytes = lost.bytes,
                "event queue full: nobody reads the events (counted in the stats, logged once until it has room)"
            );
        }
    }

    pub(super) async fn run(mut self, ws: Ws) {
        bump(&self.shared.counters.connections, 1);
        self.emit(Event::Connected { connection: 1 });
        tracing::info!("connected");
        let mut ws = ws;
        loop {
            let number = self.shared.counters.connections.load(Relaxed);
            self.shared.link.store(number, Relaxed);
            self.shared.connected.store(true, Relaxed);
            let up_since = Instant::now();
            let end = self.run_link(ws).await;
            self.shared.connected.store(false, Relaxed);
            self.shared.link.store(0, Relaxed);
            let (reason, undelivered) = match end {
                LinkEnd::Shutdown | LinkEnd::HandlesGone => break,
                LinkEnd::Lost {
                    reason,
                    undelivered,
                } => (reason, undelivered),
            };
            bump(&self.shared.counters.disconnects, 1);
            tracing::warn!(error = %reason, undelivered = undelivered.len(), "link lost");
            self.judge_link(up_since.elapsed());
            self.emit(Event::Disconnected {
                reason,
                undelivered,
            });
            match self.reconnect().await {
                Some(next) => ws = next,
                None => break,
            }
        }
        self.finish();
        self.emit(Event::Closed);
        tracing::info!("session closed");
    }

    /// Stops accepting messages; returns those still queued.
    fn close_queue(&mut self) -> Vec<Message> {
        self.shared.closed.store(true, Relaxed);
        self.shared.outbound.close();
        self.out_rx.close();
        self.take_queued()
    }

    fn take_queued(&mut self) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .backlog
            .drain(..)
            .filter_map(Outgoing::into_message)
            .collect();
        while let Ok(o) = self.out_rx.try_recv() {
            out.extend(o.into_message());
        }
        out
    }

    fn finish(&mut self) {
        let left = self.close_queue();
        if !left.is_empty() {
            tracing::warn!(
                messages = left.len(),
                "session ended with messages nobody can take back"
            );
        }
        self.shared.inbound.close();
    }

    /// A link that was up for `healthy_after` resets the failure streak; a
    /// shorter one is a flap: counted, logged, and the streak goes on.
    fn judge_link(&mut self, lived: Duration) {
        let healthy_after = self.config().reconnect.healthy_after;
        if lived >= healthy_after {
            self.streak = 0;
            return;
        }
        let flaps = self.shared.counters.flaps.fetch_add(1, Relaxed) + 1;
        tracing::warn!(
            ?lived,
            ?healthy_after,
            flaps,
            failures = self.streak,
            "link lost before it was healthy: the peer is flapping, the backoff goes on growing"
        );
    }

    /// Backoff, attempts, events. `None` when the session must end: also
    /// when every handle is gone, as nobody is left to use a new link.
    async fn reconnect(&mut self) -> Option<Ws> {
        if self.cmd_closed {
            let undelivered = self.close_queue();
            tracing::warn!(
                undelivered = undelivered.len(),
                "link lost after every handle was dropped: not reconnecting"
            );
            return None;
        }
        let policy = self.config().reconnect.clone();
        if !policy.enabled {
            let undelivered = self.close_queue();
            self.emit(Event::GaveUp {
                attempts: 0,
                last_error: None,
                undelivered,
            });
            return None;
        }
        let mut last_error = None;
        loop {
            if policy.max_attempts.is_some_and(|max| self.streak >= max) {
                break;
            }
            self.streak += 1;
            let attempt = self.streak;
            let delay = policy.delay(attempt, rand::random::<f64>());
            tracing::info!(attempt, ?delay, "reconnecting");
            self.emit(Event::Reconnecting { attempt, delay });
            self.wait_or_command(tokio::time::sleep(delay)).await?;
            let client = self.shared.client.clone();
            match self.wait_or_command(client.open()).await {
                None => return None,
                Some(Ok(ws)) => {
                    bump(&self.shared.counters.reconnects, 1);
                    let n = self.shared.counters.connections.fetch_add(1, Relaxed) + 1;
                    tracing::info!(attempt, "reconnected");
                    self.emit(Event::Connected { connection: n });
                    return Some(ws);
                }
                Some(Err(e)) => {
                    tracing::warn!(attempt, error = %e, "reconnect attempt failed");
                    let permanent = e.is_permanent();
                    last_error = Some(e);
                    if permanent {
                        break;
                    }
                }
            }
        }
        let undelivered = self.close_queue();
        let attempts = self.streak;
        tracing::error!(attempts, "giving up reconnecting");
        self.emit(Event::GaveUp {
            attempts,
            last_error,
            undelivered,
        });
        None
    }

    /// Runs `fut` unless a shutdown arrives (answered here) or every handle
    /// is dropped; `None` then. Sheds are answered on the way.
    async fn wait_or_command<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                cmd = self.cmd_rx.recv(), if !self.cmd_closed => {
                    match cmd {
                        Some(Command::Shutdown { reply, .. }) => {
                            let undelivered = self.close_queue();
                            let _ = reply.send(undelivered);
                        }
                        Some(Command::Shed { floor, reply }) => {
                            let _ = reply.send(self.shed_outbound(&floor));
                            continue;
                        }
                        None => self.cmd_closed = true,
                    }
                    return None;
                }
            }
        }
    }

    /// Drops outbound messages beyond the floor. The channel cannot drop
    /// from its middle, so its content moves to `backlog` first.
    fn shed_outbound(&mut self, floor: &ShedFloor) -> (u64, u64) {
        while let Ok(out) = self.out_rx.try_recv() {
            self.backlog.push_back(out);
        }
        let kind = floor.sheddable;
        let (messages, bytes) = shed_queue(&mut self.backlog, floor, |o| {
            (o.len, wire_sheddable(&o.wire, kind))
        });
        if messages > 0 {
            let c = &self.shared.counters;
            bump(&c.shed_outbound_messages, messages);
            bump(&c.shed_outbound_bytes, bytes);
            tracing::info!(
                messages,
                bytes,
                "outbound messages beyond the floor dropped"
            );
        }
        (messages, bytes)
    }

    /// A message meant for a link other than the one up now: queued in a
    /// race with that link's loss, after its queue was handed back.
    fn stale(&self, out: &Outgoing) -> bool {
        out.link
            .is_some_and(|n| n != self.shared.link.load(Relaxed))
    }

    fn drop_stale(&self, out: Outgoing) {
        bump(&self.shared.counters.link_gone, 1);
        tracing::debug!(
            meant_for = out.link,
            bytes = out.len,
            "message for a lost link dropped, not written to the next one"
        );
    }

    /// The next message to write: the backlog first (older), then the channel.
    fn poll_next_out(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        match self.backlog.pop_front() {
            Some(out) => Poll::Ready(Some(out)),
            None => self.out_rx.poll_recv(cx),
        }
    }
}
