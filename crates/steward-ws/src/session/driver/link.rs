//! One connection's loop ([`Driver::run_link`]): writing, reading,
//! heartbeat, the drain and the close handshake, until the link ends.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::sync::oneshot;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Bytes, error::CapacityError};

use super::Driver;
use crate::error::Direction;
use crate::session::{Command, Outgoing, Ticket, Ws, bump};
use crate::{Error, Message, ShutdownMode};

/// Reads and discards until the peer closes the TCP connection. The protocol
/// layer stops reading after an error, but dropping a socket with unread data
/// makes the kernel send a reset, which can destroy our close frame before
/// the peer reads it.
async fn linger(ws: &mut Ws) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = ws.get_mut().read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Why one connection's loop stopped.
pub(super) enum LinkEnd {
    /// The link failed; the session may reconnect.
    Lost {
        reason: Error,
        undelivered: Vec<Message>,
    },
    /// `shutdown` was called and is answered.
    Shutdown,
    /// Every handle is gone and the queue was written.
    HandlesGone,
}

/// What one poll of the connection found.
enum Step {
    Shutdown(ShutdownMode, oneshot::Sender<Vec<Message>>),
    Lost(Error),
    Dead,
    Drained,
    HandlesGone,
}

/// Where `shutdown` waits for the undelivered messages.
type Reply = oneshot::Sender<Vec<Message>>;

type TicketWait = Pin<Box<dyn Future<Output = Option<Ticket>> + Send>>;

/// Per-connection state.
struct Link {
    ws: Ws,
    ping: Interval,
    /// Fires `pong_timeout` after a ping; armed while `deadline_mark` is set.
    deadline: Pin<Box<Sleep>>,
    /// `frames_rx` when the armed ping was due.
    deadline_mark: Option<u64>,
    frames_rx: u64,
    ping_due: bool,
    /// Payload and send time of the latest ping, for the RTT.
    last_ping: Option<(u64, Instant)>,
    /// A message handed to the socket whose flush has not completed.
    in_flight: Option<Outgoing>,
    flushing: bool,
    /// A message read while the inbound queue was full, and the wait for room.
    pending_in: Option<(Message, TicketWait)>,
    peer_close: Option<(u16, String)>,
    /// Set by `shutdown(Drain)` (with its reply) or when the last handle
    /// goes (none): the deadline of the drain.
    draining: Option<(Pin<Box<Sleep>>, Option<Reply>)>,
}

impl Driver {
    pub(super) async fn run_link(&mut self, ws: Ws) -> LinkEnd {
        let interval = self.config().ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut link = Link {
            ws,
            ping,
            deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
            deadline_mark: None,
            frames_rx: 0,
            ping_due: false,
            last_ping: None,
            in_flight: None,
            flushing: false,
            pending_in: None,
            peer_close: None,
            draining: None,
        };
        loop {
            let step = poll_fn(|cx| self.poll_step(&mut link, cx)).await;
            match step {
                Step::Shutdown(ShutdownMode::Drain, reply) => {
                    self.shared.closed.store(true, Relaxed);
                    let timeout = self.config().drain_timeout;
                    link.draining = Some((Box::pin(tokio::time::sleep(timeout)), Some(reply)));
                }
                Step::Shutdown(ShutdownMode::Abandon, reply) => {
                    let undelivered = self.close_link(&mut link).await;
                    let _ = reply.send(undelivered);
                    return LinkEnd::Shutdown;
                }
                Step::Drained => {
                    let undelivered = self.close_link(&mut link).await;
                    match link.draining.take() {
                        Some((_, Some(reply))) => {
                            let _ = reply.send(undelivered);
                            return LinkEnd::Shutdown;
                        }
                        // The drain after the last handle: nobody to answer.
                        _ => return LinkEnd::HandlesGone,
                    }
                }
                Step::HandlesGone => {
                    self.close_link(&mut link).await;
                    return LinkEnd::HandlesGone;
                }
                Step::Dead => {
                    bump(&self.shared.counters.dead_peers, 1);
                    let reason = Error::DeadPeer {
                        url: self.url(),
                        timeout: self.config().pong_timeout,
                    };
                    return self.lost(link, reason);
                }
                Step::Lost(reason) => {
                    if let Error::MessageTooLarge { .. } = reason {
                        bump(&self.shared.counters.oversize_incoming, 1);
                        // Tell the peer why (1009), but do not wait long for it.
                        let frame = CloseFrame {
                            code: CloseCode::Size,
                            reason: "message too big".into(),
                        };
                        let timeout = self.config().close_timeout;
                        let _ = tokio::time::timeout(timeout, async {
                            if link.ws.close(Some(frame)).await.is_ok() {
                                linger(&mut link.ws).await;
                            }
                        })
                        .await;
                    }
                    return self.lost(link, reason);
                }
            }
        }
    }

    fn lost(&mut self, link: Link, reason: Error) -> LinkEnd {
        let mut undelivered: Vec<Message> = link
            .in_flight
            .and_then(Outgoing::into_message)
            .into_iter()
            .collect();
        undelivered.extend(self.take_queued());
        LinkEnd::Lost {
            reason,
            undelivered,
        }
    }

    /// Ends the link with close code 1000: stops the queue, writes what is in
    /// flight, waits for the peer's close up to the close timeout. Returns the
    /// messages that were not sent.
    async fn close_link(&mut self, link: &mut Link) -> Vec<Message> {
        let mut undelivered = self.close_queue();
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let timeout = self.config().close_timeout;
        let shared = self.shared.clone();
        let in_flight = link.in_flight.take();
        let closed = tokio::time::timeout(timeout, async {
            // Sending the close frame flushes the message in flight before it.
            link.ws.close(Some(frame)).await?;
            if let Some(out) = &in_flight {
                bump(&shared.counters.messages_sent, 1);
                bump(&shared.counters.bytes_sent, out.len as u64);
            }
            // Wait for the peer's close frame; late data is dropped.
            while let Some(item) = futures_util::StreamExt::next(&mut link.ws).await {
                item?;
            }
            Ok::<(), tungstenite::Error>(())
        })
        .await;
        let in_flight_done = match closed {
            Ok(Ok(())) => {
                tracing::debug!("closed with 1000");
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "close handshake failed");
                false
            }
            Err(_) => {
                tracing::debug!(?timeout, "close handshake timed out");
                false
            }
        };
        if !in_flight_done && let Some(out) = in_flight {
            undelivered.splice(0..0, out.into_message());
        }
        undelivered
    }

    fn map_error(&self, e: tungstenite::Error) -> Error {
        match e {
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                Error::MessageTooLarge {
                    url: self.url(),
                    direction: Direction::Incoming,
                    size,
                    limit: max_size,
                }
            }
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                Error::ConnectionLost { url: self.url() }
            }
            tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ) => Error::ConnectionLost { url: self.url() },
            other => Error::Io {
                url: self.url(),
                source: Box::new(other),
            },
        }
    }

    /// One pass over everything the link waits for. Returns `Pending` only
    /// when nothing can make progress (every source registered the waker).
    fn poll_step(&mut self, link: &mut Link, cx: &mut Context<'_>) -> Poll<Step> {
        // Once the read side said Pending (its waker is registered) it is not
        // polled again in this pass: each read attempt costs the protocol
        // layer a buffer fill, and it cannot have changed meanwhile.
        let mut read_pending = false;
        loop {
            let mut progress = false;

            if !self.cmd_closed {
                match self.cmd_rx.poll_recv(cx) {
                    Poll::Ready(Some(Command::Shutdown { mode, reply })) => {
                        return Poll::Ready(Step::Shutdown(mode, reply));
                    }
                    Poll::Ready(Some(Command::Shed { floor, reply })) => {
                        let _ = reply.send(self.shed_outbound(&floor));
                        progress = true;
                    }
                    // Every handle is gone; `out_rx` ends too once drained,
                    // which may take at most the drain timeout.
                    Poll::Ready(None) => {
                        self.cmd_closed = true;
                        if link.draining.is_none() {
                            let timeout = self.config().drain_timeout;
                            link.draining = Some((Box::pin(tokio::time::sleep(timeout)), None));
                        }
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }

            if let Some((deadline, _)) = &mut link.draining
                && deadline.as_mut().poll(cx).is_ready()
            {
                tracing::warn!("drain timeout: the rest of the queue is handed back");
                return Poll::Ready(Step::Drained);
            }

            // Heartbeat: a ping is due each interval; the peer must answer
            // (with anything) within the pong timeout. Time spent not reading
            // because the application is slow does not count as silence.
            if let Some(mark) = link.deadline_mark
                && link.deadline.as_mut().poll(cx).is_ready()
            {
                link.deadline_mark = None;
                if link.frames_rx == mark && link.pending_in.is_none() {
                    return Poll::Ready(Step::Dead);
                }
            }
            if let Poll::Ready(due) = link.ping.poll_tick(cx) {
                link.ping_due = true;
                if link.deadline_mark.is_none() {
                    // From when the ping was due, even if a long write delays it.
                    let at = due + self.config().pong_timeout;
                    link.deadline.as_mut().reset(at);
                    link.deadline_mark = Some(link.frames_rx);
                }
                progress = true;
            }

            if let Some((message, wait)) = &mut link.pending_in
                && let Poll::Ready(ticket) = wait.as_mut().poll(cx)
            {
                let message = std::mem::replace(message, Message::Binary(Vec::new()));
                link.pending_in = None;
                if let Some(ticket) = ticket {
                    self.deliver(message, ticket);
                }
                progress = true;
            }

            // Write side: finish the flush in progress, then a due ping, then
            // the next queued message.
            if link.flushing {
                match Pin::new(&mut link.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        link.flushing = false;
                        if let Some(out) = link.in_flight.take() {
                            bump(&self.shared.counters.messages_sent, 1);
                            bump(&self.shared.counters.bytes_sent, out.len as u64);
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Step::Lost(self.map_error(e))),
                    Poll::Pending => {}
                }
            }
            let mut queue_empty = false;
            if !link.flushing {
                if link.ping_due {
                    match Pin::new(&mut link.ws).poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            self.ping_seq += 1;
                            let payload = Bytes::copy_from_slice(&self.ping_seq.to_be_bytes());
                            if let Err(e) = Pin::new(&mut link.ws)
                                .start_send(tungstenite::Message::Ping(payload))
                            {
                                return Poll::Ready(Step::Lost(self.map_error(e)));
                            }
                            bump(&self.shared.counters.pings_sent, 1);
                            link.last_ping = Some((self.ping_seq, Instant::now()));
                            link.ping_due = false;
                            link.flushing = true;
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Step::Lost(self.map_error(e))),
                        Poll::Pending => {}
                    }
                } else if self.out_closed {
                    queue_empty = true;
                } else {
                    match Pin::new(&mut link.ws).poll_ready(cx) {
                        Poll::Ready(Ok(())) => match self.poll_next_out(cx) {
                            Poll::Ready(Some(out)) if self.stale(&out) => {
                                self.drop_stale(out);
                                progress = true;
                            }
                            Poll::Ready(Some(out)) => {
                                if let Err(e) = Pin::new(&mut link.ws).start_send(out.wire.clone())
                                {
                                    link.in_flight = Some(out);
                                    return Poll::Ready(Step::Lost(self.map_error(e)));
                                }
                                link.in_flight = Some(out);
                                link.flushing = true;
                                progress = true;
                            }
                            Poll::Ready(None) => {
                                self.out_closed = true;
                                progress = true;
                            }
                            Poll::Pending => queue_empty = true,
                        },
                        Poll::Ready(Err(e)) => return Poll::Ready(Step::Lost(self.map_error(e))),
                        Poll::Pending => {}
                    }
                }
            }
            if queue_empty && !link.flushing && !link.ping_due {
                if self.out_closed && self.cmd_closed {
                    return Poll::Ready(Step::HandlesGone);
                }
                if link.draining.is_some() {
                    return Poll::Ready(Step::Drained);
                }
            }

            // Read side, paused while a message waits for room in the inbound queue.
            if link.pending_in.is_none() && !read_pending {
                match Pin::new(&mut link.ws).poll_next(cx) {
                    Poll::Ready(Some(Ok(msg))) => {
                        link.frames_rx += 1;
                        self.on_frame(link, msg);
                        progress = true;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Step::Lost(self.map_error(e))),
                    Poll::Ready(None) => {
                        let reason = match link.peer_close.take() {
                            Some((code, reason)) => Error::ClosedByPeer {
                                url: self.url(),
                                code,
                                reason,
                            },
                            None => Error::ConnectionLost { url: self.url() },
                        };
                        return Poll::Ready(Step::Lost(reason));
                    }
                    Poll::Pending => read_pending = true,
                }
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn on_frame(&mut self, link: &mut Link, msg: tungstenite::Message) {
        match msg {
            tungstenite::Message::Pong(payload) => {
                if let Some((seq, sent_at)) = link.last_ping
                    && payload.as_ref() == seq.to_be_bytes()
                {
                    let rtt = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.shared
                        .counters
                        .last_rtt_us
                        .store(rtt.saturating_add(1), Relaxed);
                    bump(&self.shared.counters.pongs_received, 1);
                }
            }
            tungstenite::Message::Close(frame) => {
                link.peer_close = Some(match frame {
                    Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                    None => (1005, String::new()),
                });
            }
            // Pings are answered by the protocol layer on the next read or write.
            tungstenite::Message::Ping(_) | tungstenite::Message::Frame(_) => {}
            data => {
                let Some(message) = Message::from_wire(data) else {
                    return;
                };
                let len = message.len();
                match self.shared.inbound.try_take(len) {
                    Some(ticket) => self.deliver(message, ticket),
                    None => {
                        let wait: TicketWait = Box::pin(self.shared.inbound.clone().take(len));
                        link.pending_in = Some((message, wait));
                    }
                }
            }
        }
    }

    fn deliver(&mut self, message: Message, ticket: Ticket) {
        bump(&self.shared.counters.messages_received, 1);
        bump(&self.shared.counters.bytes_received, message.len() as u64);
        // If every receiving handle is gone the message has nowhere to go.
        let _ = self.in_tx.send((message, ticket));
    }
}
