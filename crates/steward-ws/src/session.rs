//! `Session`: the application's handle; the one I/O task that owns the
//! socket is in [`driver`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tracing::Instrument;

mod driver;
mod stats;

use driver::Driver;
pub use stats::Stats;
use stats::{Counters, bump};

use crate::connect::Connector;
use crate::error::Direction;
use crate::events::{Events, WeakEvents, event_queue};
use crate::shed::{Shed, ShedFloor, Sheddable, plan};
use crate::tls::Transport;
use crate::{Error, Message, ShutdownMode};

type Ws = WebSocketStream<Transport>;

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
    client: Arc<Connector>,
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
/// back in [`Event::Disconnected`](crate::Event::Disconnected) and never resent by the session.
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

    pub(crate) fn start(client: Arc<Connector>, ws: Ws) -> Self {
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
        let driver = Driver::new(shared.clone(), out_rx, in_tx, cmd_rx, ev_tx);
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
    /// [`Event::Connected`](crate::Event::Connected); `None` while the session is between links.
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
    /// the message is handed back in [`Event::Disconnected`](crate::Event::Disconnected) or, when the
    /// loss races the queueing, dropped and counted in
    /// [`Stats::link_gone`]. Use [`connection`](Self::connection) or the
    /// number of the latest [`Event::Connected`](crate::Event::Connected).
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
