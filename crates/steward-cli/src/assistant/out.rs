//! Standard output off the runtime: one thread writes what the assistant
//! prints, so a stdout nobody reads (a full pipe) stalls that thread only,
//! never a runtime worker. Status lines go through a small bounded queue
//! and are dropped, counted, when it is full.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Status lines waiting for the writer; beyond that they are dropped.
const QUEUE: usize = 4;

enum Line {
    /// Written as is (a status line is replaced by the next one anyway).
    Status(String),
    /// Written, then acknowledged.
    Final(String, mpsc::Sender<()>),
}

struct Writer {
    tx: Mutex<Option<SyncSender<Line>>>,
    dropped: AtomicU64,
}

fn writer() -> &'static Writer {
    static WRITER: OnceLock<Writer> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("steward-stdout".into())
            .spawn(move || write_lines(&rx));
        if let Err(error) = &spawned {
            tracing::warn!(%error, "no stdout writer thread: status lines are dropped");
        }
        Writer {
            tx: Mutex::new(spawned.ok().map(|_| tx)),
            dropped: AtomicU64::new(0),
        }
    })
}

fn write_lines(rx: &Receiver<Line>) {
    let mut out = std::io::stdout();
    while let Ok(line) = rx.recv() {
        let (text, ack) = match line {
            Line::Status(text) => (text, None),
            Line::Final(text, ack) => (text, Some(ack)),
        };
        // Blocks while nobody reads; only this thread waits.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

fn sender() -> Option<SyncSender<Line>> {
    writer().tx.lock().ok().and_then(|tx| tx.clone())
}

/// Starts the writer thread (once per process, it lives as long as the
/// process): the assistant calls it before it counts its threads, so the
/// writer is part of the baseline and not a thread left behind.
pub(crate) fn start() {
    let _ = writer();
}

/// Queues a status line; drops it (counted) when the writer lags.
pub(crate) fn status(text: String) {
    let sent = sender().map(|tx| tx.try_send(Line::Status(text)));
    if !matches!(sent, Some(Ok(()))) {
        let dropped = writer().dropped.fetch_add(1, Relaxed) + 1;
        if dropped == 1 || matches!(sent, Some(Err(TrySendError::Disconnected(_)))) {
            tracing::warn!(dropped, "stdout is not being read: status lines dropped");
        }
    }
}

/// Status lines dropped because stdout was not being read.
#[must_use]
pub fn status_lines_dropped() -> u64 {
    writer().dropped.load(Relaxed)
}

/// Writes `text` to stdout after the status lines before it, waiting at
/// most `patience`; false if stdout did not take it in that time (nobody
/// reads it), in which case the caller goes on without it.
#[must_use]
pub fn print_within(text: String, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    let Some(tx) = sender() else { return false };
    let (ack, acked) = mpsc::channel();
    let mut line = Line::Final(text, ack);
    loop {
        match tx.try_send(line) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                line = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return false,
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    acked.recv_timeout(left).is_ok()
}
