//! `Session`: the application's handle, and the one I/O task that owns the socket.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use serde::Serialize;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Bytes, error::CapacityError};
use tracing::Instrument;

use crate::client::ClientInner;
use crate::error::Direction;
use crate::events::{EventSender, Events, Overflow, WeakEvents, event_queue};
use crate::shed::{Shed, ShedFloor, Sheddable, plan};
use crate::tls::Transport;
use crate::{Error, Event, Message, ShutdownMode};

type Ws = WebSocketStream<Transport>;

/// Counters shared by the handles and the I/O task.
#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    reconnects: AtomicU64,
    disconnects: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    pings_sent: AtomicU64,
    pongs_received: AtomicU64,
    /// Microseconds + 1; 0 means "no pong yet".
    last_rtt_us: AtomicU64,
    dead_peers: AtomicU64,
    oversize_outgoing: AtomicU64,
    oversize_incoming: AtomicU64,
    events_dropped: AtomicU64,
    events_coalesced: AtomicU64,
    undelivered_dropped_messages: AtomicU64,
    undelivered_dropped_bytes: AtomicU64,
    flaps: AtomicU64,
    shed_outbound_messages: AtomicU64,
    shed_outbound_bytes: AtomicU64,
    shed_inbound_messages: AtomicU64,
    shed_inbound_bytes: AtomicU64,
    link_gone: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Relaxed);
}

/// A snapshot of a session's counters (plain data, serde).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// A connection is up right now.
    pub connected: bool,
    /// Connections made, the first one included.
    pub connections: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// Links lost (not counting shutdowns).
    pub disconnects: u64,
    /// Messages fully written to the socket.
    pub messages_sent: u64,
    /// Payload bytes of those messages.
    pub bytes_sent: u64,
    /// Data messages received and queued for the application.
    pub messages_received: u64,
    /// Payload bytes of those messages.
    pub bytes_received: u64,
    /// Pings sent by the heartbeat.
    pub pings_sent: u64,
    /// Pongs that answered our latest ping.
    pub pongs_received: u64,
    /// Round trip of the latest answered ping, in microseconds.
    pub last_rtt_us: Option<u64>,
    /// Links declared dead by the heartbeat.
    pub dead_peers: u64,
    /// Outgoing messages refused as too large.
    pub oversize_outgoing: u64,
    /// Incoming messages refused as too large (each closed the link with 1009).
    pub oversize_incoming: u64,
    /// Messages waiting in the outbound queue.
    pub outbound_queued_messages: u64,
    /// Bytes waiting in the outbound queue (a message larger than the byte
    /// limit counts as the limit).
    pub outbound_queued_bytes: u64,
    /// Messages waiting for the application in the inbound queue.
    pub inbound_queued_messages: u64,
    /// Bytes waiting in the inbound queue.
    pub inbound_queued_bytes: u64,
    /// `Reconnecting` events dropped because the event queue was full
    /// (lifecycle events never are).
    pub events_dropped: u64,
    /// `Disconnected` events folded into an earlier one because the event
    /// queue was full (their undelivered messages kept, in order).
    pub events_coalesced: u64,
    /// Undelivered messages dropped from unread events beyond
    /// [`ClientConfig::event_queue_bytes`](crate::ClientConfig::event_queue_bytes), oldest first.
    pub undelivered_dropped_messages: u64,
    /// Payload bytes of those messages.
    pub undelivered_dropped_bytes: u64,
    /// Links lost before they were up for
    /// [`ReconnectConfig::healthy_after`](crate::ReconnectConfig::healthy_after):
    /// each counted as a failed attempt, so the backoff grows.
    pub flaps: u64,
    /// Outbound messages dropped by [`Session::shed_queued`] (never written).
    pub shed_outbound_messages: u64,
    /// Payload bytes of those messages.
    pub shed_outbound_bytes: u64,
    /// Inbound messages dropped by [`Session::shed_queued`] (never read).
    pub shed_inbound_messages: u64,
    /// Payload bytes of those messages.
    pub shed_inbound_bytes: u64,
    /// Messages sent with [`Session::send_on`] / [`Session::try_send_on`]
    /// whose link was gone: refused at the call, or (when the link was lost
    /// between the call and the write) dropped by the I/O task instead of
    /// going out on the next link.
    pub link_gone: u64,
}

impl Stats {
    /// The latest round-trip time, if a pong has come back.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt_us.map(Duration::from_micros)
    }
}

/// A queue bound in messages and bytes, enforced with two semaphores; the
/// permits travel with the message and are released when it leaves the queue.
#[derive(Clone)]
struct Budget {
    messages: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_messages: usize,
    max_bytes: usize,
}

/// The permits of one queued message.
struct Ticket {
    _message: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl Budget {
    fn new(max_messages: usize, max_bytes: usize) -> Self {
        // Semaphores count in u32 permits per acquire and cap the total.
        let max_messages = max_messages.clamp(1, Semaphore::MAX_PERMITS);
        let max_bytes = max_bytes.clamp(1, u32::MAX as usize);
        Self {
            messages: Arc::new(Semaphore::new(max_messages)),
            bytes: Arc::new(Semaphore::new(max_bytes)),
            max_messages,
            max_bytes,
        }
    }

    /// A message larger than the byte limit costs the whole limit: it passes
    /// alone when the queue is empty.
    fn cost(&self, len: usize) -> u32 {
        u32::try_from(len.min(self.max_bytes)).unwrap_or(u32::MAX)
    }

    fn try_take(&self, len: usize) -> Option<Ticket> {
        let bytes = self
            .bytes
            .clone()
            .try_acquire_many_owned(self.cost(len))
            .ok()?;
        let message = self.messages.clone().try_acquire_owned().ok()?;
        Some(Ticket {
            _message: message,
            _bytes: bytes,
        })
    }

    /// Waits for room; `None` once the queue is closed.
    async fn take(self, len: usize) -> Option<Ticket> {
        let bytes = self
            .bytes
            .clone()
            .acquire_many_owned(self.cost(len))
            .await
            .ok()?;
        let message = self.messages.clone().acquire_owned().await.ok()?;
        Some(Ticket {
            _message: message,
            _bytes: bytes,
        })
    }

    fn close(&self) {
        self.messages.close();
        self.bytes.close();
    }

    fn queued(&self) -> (u64, u64) {
        let m = self.max_messages - self.messages.available_permits().min(self.max_messages);
        let b = self.max_bytes - self.bytes.available_permits().min(self.max_bytes);
        (m as u64, b as u64)
    }
}

struct Shared {
    client: Arc<ClientInner>,
    counters: Counters,
    /// Set by `shutdown` and when the I/O task ends: no new messages.
    closed: AtomicBool,
    connected: AtomicBool,
    /// The number of the link that is up (as in `Event::Connected`); 0 while down.
    link: AtomicU64,
    outbound: Budget,
    inbound: Budget,
}

impl Shared {
    fn url(&self) -> &str {
        &self.client.url
    }

    fn closed_error(&self, message: Option<Message>) -> Error {
        Error::Closed {
            url: self.url().to_string(),
            message,
        }
    }
}

struct Outgoing {
    wire: tungstenite::Message,
    len: usize,
    /// Written only on this link (`send_on`); `None`: on whichever link is up.
    link: Option<u64>,
    _ticket: Ticket,
}

impl Outgoing {
    fn into_message(self) -> Option<Message> {
        Message::from_wire(self.wire)
    }
}

type Incoming = (Message, Ticket);

/// The application's end of the inbound queue. Shedding drains the channel
/// into `backlog` (the channel cannot drop from its middle); readers take
/// the backlog first, so the order stays that of arrival.
struct Inbox {
    backlog: VecDeque<Incoming>,
    rx: mpsc::UnboundedReceiver<Incoming>,
}

impl Inbox {
    /// Cancel safe: the channel's `recv` is.
    async fn recv(&mut self) -> Option<Incoming> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        self.rx.recv().await
    }

    fn try_recv(&mut self) -> Option<Incoming> {
        self.backlog.pop_front().or_else(|| self.rx.try_recv().ok())
    }
}

/// Whether shedding may drop a queued wire message (control frames: never).
fn wire_sheddable(wire: &tungstenite::Message, kind: Sheddable) -> bool {
    match wire {
        tungstenite::Message::Text(t) => kind.text(t.as_str()),
        tungstenite::Message::Binary(_) => true,
        _ => false,
    }
}

fn message_sheddable(message: &Message, kind: Sheddable) -> bool {
    match message {
        Message::Text(t) => kind.text(t),
        Message::Binary(_) => true,
    }
}

/// Keeps the queue's items that `plan` keeps; returns (messages, bytes) dropped.
fn shed_queue<T>(
    queue: &mut VecDeque<T>,
    floor: &ShedFloor,
    describe: impl Fn(&T) -> (usize, bool),
) -> (u64, u64) {
    let items: Vec<(usize, bool)> = queue.iter().map(&describe).collect();
    let keep = plan(&items, floor);
    if keep.iter().all(|&k| k) {
        return (0, 0);
    }
    let mut kept = VecDeque::with_capacity(queue.len());
    let (mut messages, mut bytes) = (0u64, 0u64);
    for (item, k) in queue.drain(..).zip(keep) {
        if k {
            kept.push_back(item);
        } else {
            messages += 1;
            bytes += describe(&item).0 as u64;
            // The item's ticket goes with it: room for new messages.
        }
    }
    *queue = kept;
    (messages, bytes)
}

enum Command {
    Shutdown {
        mode: ShutdownMode,
        reply: oneshot::Sender<Vec<Message>>,
    },
    /// Drop queued outbound messages beyond the floor; answers (messages, bytes).
    Shed {
        floor: ShedFloor,
        reply: oneshot::Sender<(u64, u64)>,
    },
}

/// The application's handle on one logical WebSocket session that survives
/// reconnects. Cheap to clone; the session ends when [`shutdown`](Self::shutdown)
/// is called or when the last clone is dropped: queued messages are then
/// written for at most [`ClientConfig::drain_timeout`](crate::ClientConfig::drain_timeout)
/// and the link closed with code 1000; a link that is down, or lost after
/// that, is not reconnected (nobody is left to use it). A [`WeakSession`]
/// does not keep it going.
///
/// # What "sent" means
/// A message is *sent* once every byte of its frame has been accepted by the
/// operating system's socket (`Stats::messages_sent`). Whether the peer got
/// it cannot be known; if the link fails later, it is gone. Messages still in
/// the queue, or whose write did not complete, when the link fails are handed
/// back in [`Event::Disconnected`] and never resent by the session.
///
/// # Cancel safety
/// `recv` and `Events::recv` are cancel safe. `send` is not: if its future is
/// dropped while waiting for room, the message is dropped with it (use
/// `try_send` to keep it). `shed_queued` may be dropped at any point: what it
/// already dropped stays dropped and counted in [`Stats`], the rest is not done.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    out_tx: mpsc::UnboundedSender<Outgoing>,
    in_rx: Arc<Mutex<Inbox>>,
    cmd_tx: mpsc::Sender<Command>,
    events: Events,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.shared.url())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// A handle that does not keep its session going: counters, state and
/// sheds while the session lives, nothing once every [`Session`] clone is
/// gone (for a supervisor that watches sessions it does not own).
#[derive(Clone)]
pub struct WeakSession {
    shared: Arc<Shared>,
    out_tx: mpsc::WeakUnboundedSender<Outgoing>,
    in_rx: std::sync::Weak<Mutex<Inbox>>,
    cmd_tx: mpsc::WeakSender<Command>,
    events: WeakEvents,
}

impl std::fmt::Debug for WeakSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakSession")
            .field("url", &self.shared.url())
            .field("alive", &self.is_alive())
            .finish_non_exhaustive()
    }
}

impl WeakSession {
    /// A full handle, while a [`Session`] clone still exists somewhere.
    pub fn upgrade(&self) -> Option<Session> {
        Some(Session {
            shared: Arc::clone(&self.shared),
            out_tx: self.out_tx.upgrade()?,
            in_rx: self.in_rx.upgrade()?,
            cmd_tx: self.cmd_tx.upgrade()?,
            events: self.events.upgrade()?,
        })
    }

    /// True while a [`Session`] clone exists (the owner still holds it).
    pub fn is_alive(&self) -> bool {
        self.cmd_tx.strong_count() > 0
    }

    /// The URL (without query string).
    pub fn url(&self) -> &str {
        self.shared.url()
    }

    /// True once the session no longer accepts messages (shut down, gave
    /// up, or ended when its last handle went).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Relaxed)
    }

    /// A snapshot of the counters (they stay readable after the end).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// [`Session::shed_queued`] while the session has an owner; nothing
    /// (an empty [`Shed`]) once it has none.
    pub async fn shed_queued(&self) -> Shed {
        match self.upgrade() {
            Some(session) => session.shed_queued().await,
            None => Shed::default(),
        }
    }
}

impl Session {
    /// A handle that does not keep the session going (see [`WeakSession`]).
    pub fn downgrade(&self) -> WeakSession {
        WeakSession {
            shared: Arc::clone(&self.shared),
            out_tx: self.out_tx.downgrade(),
            in_rx: Arc::downgrade(&self.in_rx),
            cmd_tx: self.cmd_tx.downgrade(),
            events: self.events.downgrade(),
        }
    }

    pub(crate) fn start(client: Arc<ClientInner>, ws: Ws) -> Self {
        let c = &client.config;
        let shared = Arc::new(Shared {
            outbound: Budget::new(c.outbound_queue_messages, c.outbound_queue_bytes),
            inbound: Budget::new(c.inbound_queue_messages, c.inbound_queue_bytes),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            connected: AtomicBool::new(true),
            link: AtomicU64::new(1),
            client: client.clone(),
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (ev_tx, events) = event_queue(c.event_queue, c.event_queue_bytes);
        let driver = Driver {
            shared: shared.clone(),
            out_rx,
            backlog: VecDeque::new(),
            out_closed: false,
            in_tx,
            cmd_rx,
            cmd_closed: false,
            ev_tx,
            ping_seq: 0,
            streak: 0,
        };
        let span = tracing::info_span!("ws_session", url = %client.url);
        tokio::spawn(driver.run(ws).instrument(span));
        Self {
            shared,
            out_tx,
            in_rx: Arc::new(Mutex::new(Inbox {
                backlog: VecDeque::new(),
                rx: in_rx,
            })),
            cmd_tx,
            events,
        }
    }

    /// The URL (without query string).
    pub fn url(&self) -> &str {
        self.shared.url()
    }

    /// True while a connection is up.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Relaxed)
    }

    /// True once the session no longer accepts messages (shut down, or gave up).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Relaxed)
    }

    /// The event stream. Clones share one queue.
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    fn check_size(&self, message: &Message) -> Result<(), Error> {
        let limit = self.shared.client.config.max_message_size;
        if message.len() > limit {
            bump(&self.shared.counters.oversize_outgoing, 1);
            return Err(Error::MessageTooLarge {
                url: self.shared.url().to_string(),
                direction: Direction::Outgoing,
                size: message.len(),
                limit,
            });
        }
        Ok(())
    }

    /// The number of the link that is up now, as in
    /// [`Event::Connected`]; `None` while the session is between links.
    /// Pass it to [`send_on`](Self::send_on) for messages that only make
    /// sense to the peer of this link.
    pub fn connection(&self) -> Option<u64> {
        match self.shared.link.load(Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    fn enqueue(&self, message: Message, link: Option<u64>, ticket: Ticket) -> Result<(), Error> {
        let len = message.len();
        let out = Outgoing {
            wire: message.into_wire(),
            len,
            link,
            _ticket: ticket,
        };
        self.out_tx.send(out).map_err(|e| {
            let message = e.0.into_message();
            self.shared.closed_error(message)
        })
    }

    /// Queues a message, waiting while the outbound queue is full
    /// (backpressure). While the link is down, messages queue for the next
    /// connection.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] (nothing queued), [`Error::Closed`] with the
    /// message handed back.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.send_scoped(None, message.into()).await
    }

    /// Like [`send`](Self::send), for a message meant for the peer of link
    /// `connection` only (one that names its server-side state, such as an
    /// item id): refused when that link is no longer up, and never written
    /// to a later link. If the link is lost after the message was queued,
    /// the message is handed back in [`Event::Disconnected`] or, when the
    /// loss races the queueing, dropped and counted in
    /// [`Stats::link_gone`]. Use [`connection`](Self::connection) or the
    /// number of the latest [`Event::Connected`].
    ///
    /// # Errors
    /// As [`send`](Self::send), and [`Error::LinkGone`] with the message.
    pub async fn send_on(&self, connection: u64, message: impl Into<Message>) -> Result<(), Error> {
        self.send_scoped(Some(connection), message.into()).await
    }

    async fn send_scoped(&self, link: Option<u64>, message: Message) -> Result<(), Error> {
        let message = self.admit(link, message)?;
        let Some(ticket) = self.shared.outbound.clone().take(message.len()).await else {
            return Err(self.shared.closed_error(Some(message)));
        };
        // The link may have gone while we waited for room.
        let message = self.admit(link, message)?;
        self.enqueue(message, link, ticket)
    }

    /// Queues a message if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`] or [`Error::Closed`] with the message handed back,
    /// [`Error::MessageTooLarge`].
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.try_send_scoped(None, message.into())
    }

    /// [`send_on`](Self::send_on) without waiting: queues the message for
    /// link `connection` if that link is up and there is room now.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), and [`Error::LinkGone`] with the message.
    pub fn try_send_on(&self, connection: u64, message: impl Into<Message>) -> Result<(), Error> {
        self.try_send_scoped(Some(connection), message.into())
    }

    fn try_send_scoped(&self, link: Option<u64>, message: Message) -> Result<(), Error> {
        let message = self.admit(link, message)?;
        let Some(ticket) = self.shared.outbound.try_take(message.len()) else {
            let c = &self.shared.client.config;
            return Err(Error::Full {
                url: self.shared.url().to_string(),
                limit_messages: c.outbound_queue_messages,
                limit_bytes: c.outbound_queue_bytes,
                message,
            });
        };
        self.enqueue(message, link, ticket)
    }

    /// The checks before queueing: size, session open, and the link a
    /// scoped message is meant for still up.
    fn admit(&self, link: Option<u64>, message: Message) -> Result<Message, Error> {
        self.check_size(&message)?;
        if self.shared.closed.load(Relaxed) {
            return Err(self.shared.closed_error(Some(message)));
        }
        match link {
            Some(n) if self.shared.link.load(Relaxed) != n => {
                bump(&self.shared.counters.link_gone, 1);
                Err(Error::LinkGone {
                    url: self.shared.url().to_string(),
                    connection: n,
                    message,
                })
            }
            _ => Ok(message),
        }
    }

    /// The next message from the peer; `None` once the session has ended and
    /// the inbound queue is empty. Cancel safe.
    pub async fn recv(&self) -> Option<Message> {
        let (message, _ticket) = self.in_rx.lock().await.recv().await?;
        Some(message)
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Option<Message> {
        let (message, _ticket) = self.in_rx.try_lock().ok()?.try_recv()?;
        Some(message)
    }

    /// Ends the session: `Drain` writes the queued messages first (up to the
    /// drain timeout), `Abandon` does not. Then the close handshake (code
    /// 1000, up to the close timeout). Returns the messages that were not
    /// sent. Calling it again, or after the session ended, returns an empty list.
    pub async fn shutdown(&self, mode: ShutdownMode) -> Vec<Message> {
        self.shared.closed.store(true, Relaxed);
        let (reply, answer) = oneshot::channel();
        if self
            .cmd_tx
            .send(Command::Shutdown { mode, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Memory pressure: drops queued messages beyond the configured floor
    /// ([`ClientConfig::shed_floor`](crate::ClientConfig::shed_floor)), both
    /// ways. See [`shed_queued_to`](Self::shed_queued_to).
    pub async fn shed_queued(&self) -> Shed {
        let floor = self.shared.client.config.shed_floor.clone();
        self.shed_queued_to(&floor).await
    }

    /// Memory pressure: drops the oldest sheddable messages (audio, by
    /// default) of the outbound queue (not yet written) and of the inbound
    /// queue (not yet read) so that each keeps at most `floor`; other
    /// messages stay, and the order of what stays is unchanged. Counted in
    /// [`Stats`] (`shed_*`) and logged. The session goes on as before.
    ///
    /// The message being written when this runs, and one read from the
    /// socket while the inbound queue was full, are not queued and stay. The
    /// inbound queue is skipped while a reader waits in `recv` (it is then
    /// being emptied anyway). Returns what was dropped.
    ///
    /// Cancel safe in the sense that nothing is lost by dropping the future:
    /// what it dropped is counted, what it did not reach stays queued.
    pub async fn shed_queued_to(&self, floor: &ShedFloor) -> Shed {
        let (inbound_messages, inbound_bytes) = self.shed_inbound(floor);
        let (reply, answer) = oneshot::channel();
        let command = Command::Shed {
            floor: floor.clone(),
            reply,
        };
        let (outbound_messages, outbound_bytes) = match self.cmd_tx.send(command).await {
            Ok(()) => answer.await.unwrap_or_default(),
            // The session has ended: nothing is queued any more.
            Err(_) => (0, 0),
        };
        Shed {
            outbound_messages,
            outbound_bytes,
            inbound_messages,
            inbound_bytes,
        }
    }

    fn shed_inbound(&self, floor: &ShedFloor) -> (u64, u64) {
        let Ok(mut inbox) = self.in_rx.try_lock() else {
            return (0, 0);
        };
        let inbox = &mut *inbox;
        while let Ok(item) = inbox.rx.try_recv() {
            inbox.backlog.push_back(item);
        }
        let kind = floor.sheddable;
        let (messages, bytes) = shed_queue(&mut inbox.backlog, floor, |(m, _)| {
            (m.len(), message_sheddable(m, kind))
        });
        if messages > 0 {
            let c = &self.shared.counters;
            bump(&c.shed_inbound_messages, messages);
            bump(&c.shed_inbound_bytes, bytes);
            tracing::info!(
                url = %self.shared.url(),
                messages,
                bytes,
                "inbound messages beyond the floor dropped"
            );
        }
        (messages, bytes)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Shared {
    fn stats(&self) -> Stats {
        let c = &self.counters;
        let (out_m, out_b) = self.outbound.queued();
        let (in_m, in_b) = self.inbound.queued();
        let rtt = c.last_rtt_us.load(Relaxed);
        Stats {
            connected: self.connected.load(Relaxed),
            connections: c.connections.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            disconnects: c.disconnects.load(Relaxed),
            messages_sent: c.messages_sent.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            messages_received: c.messages_received.load(Relaxed),
            bytes_received: c.bytes_received.load(Relaxed),
            pings_sent: c.pings_sent.load(Relaxed),
            pongs_received: c.pongs_received.load(Relaxed),
            last_rtt_us: rtt.checked_sub(1),
            dead_peers: c.dead_peers.load(Relaxed),
            oversize_outgoing: c.oversize_outgoing.load(Relaxed),
            oversize_incoming: c.oversize_incoming.load(Relaxed),
            outbound_queued_messages: out_m,
            outbound_queued_bytes: out_b,
            inbound_queued_messages: in_m,
            inbound_queued_bytes: in_b,
            events_dropped: c.events_dropped.load(Relaxed),
            events_coalesced: c.events_coalesced.load(Relaxed),
            undelivered_dropped_messages: c.undelivered_dropped_messages.load(Relaxed),
            undelivered_dropped_bytes: c.undelivered_dropped_bytes.load(Relaxed),
            flaps: c.flaps.load(Relaxed),
            shed_outbound_messages: c.shed_outbound_messages.load(Relaxed),
            shed_outbound_bytes: c.shed_outbound_bytes.load(Relaxed),
            shed_inbound_messages: c.shed_inbound_messages.load(Relaxed),
            shed_inbound_bytes: c.shed_inbound_bytes.load(Relaxed),
            link_gone: c.link_gone.load(Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------
// The I/O task.

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
enum LinkEnd {
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

struct Driver {
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

    async fn run(mut self, ws: Ws) {
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

    async fn run_link(&mut self, ws: Ws) -> LinkEnd {
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
