//! What capture and playback share: events, backend error plumbing and
//! the stream thread's wake-up here; device lookup and format choice in
//! [`device`], the thread itself and blocking waits in [`worker`], the
//! handle both public stream types wrap in [`handle`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::AudioConfig;
use crate::error::Error;
use crate::stats::{Counters, bump};

mod device;
mod handle;
mod worker;

pub(crate) use device::{
    Presence, find_device, open_host, pick_format, stream_config, stream_device,
};
pub use device::{list_devices, list_host_devices};
pub(crate) use handle::{Side, StreamHandle};
#[cfg(feature = "test-hooks")]
pub use worker::callback_hook;
#[cfg(not(feature = "test-hooks"))]
pub(crate) use worker::callback_hook;
pub(crate) use worker::{Opened, Pump, Worker, block_on_with_timeout};

/// The longest a stream's thread sleeps with nothing to do. It moves audio
/// when it is woken ([`Notify`]): by the audio callback once there is work
/// (a chunk's worth captured, room in the playback ring with audio waiting,
/// a clear applied, the ring run dry), by the handle (a write, a clear, a
/// shed, a drain, close) and by the error callback. Deadlines of its own
/// (a device presence check, the playback resampler's idle flush) shorten
/// the sleep. The callback never waits for it: the rings absorb the gap.
pub(crate) const IDLE_WAKE: Duration = Duration::from_millis(500);

/// Events kept for `next_event` before the oldest is dropped.
const EVENT_QUEUE: usize = 64;

/// Backend errors the error callback can park before the stream thread
/// collects them (more are counted, not stored).
const ERROR_RING: usize = 32;

/// Something that happened to a stream, delivered by `next_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// The device disappeared (unplugged, its module unloaded, the server
    /// gone): the stream has stopped. `reopen()` (same device, once it is
    /// back) or `reopen_on_default()` (the new default device) when the
    /// caller decides to. On PulseAudio, which moves such a stream to
    /// another device, the stream notices within half a second that its
    /// own device is gone.
    DeviceLost {
        /// The device's name.
        device: String,
        /// What the backend said.
        message: String,
    },
    /// The backend reported a non-fatal error (an xrun, say).
    StreamError {
        /// The device's name.
        device: String,
        /// What the backend said.
        message: String,
        /// How many times in a row it said so (repeats are folded).
        count: u64,
    },
}

/// Capture or playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Input,
    Output,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }

    /// What a stream of this direction is called in logs and thread names.
    pub(crate) fn stream_kind(self) -> &'static str {
        match self {
            Self::Input => "capture",
            Self::Output => "playback",
        }
    }

    /// The device `config` names for this direction.
    pub(crate) fn device(self, config: &AudioConfig) -> Option<&str> {
        match self {
            Self::Input => config.input_device.as_deref(),
            Self::Output => config.output_device.as_deref(),
        }
    }

    /// `config`'s device field for this direction.
    pub(crate) fn device_mut(self, config: &mut AudioConfig) -> &mut Option<String> {
        match self {
            Self::Input => &mut config.input_device,
            Self::Output => &mut config.output_device,
        }
    }
}

/// State both directions keep under the handle's lock.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) events: VecDeque<Event>,
    pub(crate) event_waker: Option<Waker>,
    pub(crate) last_error: Option<String>,
    /// Set when the device is lost: the stream is finished.
    pub(crate) lost: Option<String>,
    /// The stream thread has ended.
    pub(crate) finished: bool,
}

impl Status {
    pub(crate) fn push_event(&mut self, event: Event) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(event);
        if let Some(w) = self.event_waker.take() {
            w.wake();
        }
    }

    /// Why the stream can no longer move audio, if it cannot.
    pub(crate) fn dead(&self, device: &str) -> Option<Error> {
        if let Some(message) = &self.lost {
            return Some(Error::DeviceLost {
                device: device.to_string(),
                message: message.clone(),
            });
        }
        self.finished.then(|| Error::Closed {
            device: device.to_string(),
        })
    }
}

/// The error callback's end: moves the backend error into a ring (no
/// allocation, no lock) and counts it.
pub(crate) struct ErrorSink {
    producer: rtrb::Producer<cpal::Error>,
    counters: Arc<Counters>,
    notify: Arc<Notify>,
}

impl ErrorSink {
    pub(crate) fn new(
        counters: Arc<Counters>,
        notify: Arc<Notify>,
    ) -> (Self, rtrb::Consumer<cpal::Error>) {
        let (producer, consumer) = rtrb::RingBuffer::new(ERROR_RING);
        (
            Self {
                producer,
                counters,
                notify,
            },
            consumer,
        )
    }

    pub(crate) fn record(&mut self, err: cpal::Error) {
        bump(&self.counters.errors, 1);
        // Full: the thread is behind; the count above still tells.
        let _ = self.producer.push(err);
        self.notify.notify();
    }
}

/// Wakes a stream's thread: a flag and the thread's park token. Lock- and
/// allocation-free, so the audio callback may call it: [`notify`] is an
/// atomic swap, plus a futex wake only when the thread is asleep and no
/// wake-up is pending yet.
///
/// [`notify`]: Notify::notify
#[derive(Debug, Default)]
pub(crate) struct Notify {
    /// A wake-up is pending: the thread has not yet looked since it was set.
    pending: AtomicBool,
    /// The handle asked the thread to end.
    stop: AtomicBool,
    /// The stream thread, once it runs.
    thread: OnceLock<std::thread::Thread>,
}

impl Notify {
    /// Has the thread look for work as soon as it can.
    #[inline]
    pub(crate) fn notify(&self) {
        if !self.pending.swap(true, Ordering::AcqRel)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    /// Sleeps (the stream thread) until notified, stopped or `timeout`
    /// passes; returns `false` once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        if !self.pending.load(Ordering::Acquire) && !self.stopped() {
            std::thread::park_timeout(timeout);
        }
        // Cleared before the tick that follows: a notify during it wakes
        // the next wait at once.
        self.pending.store(false, Ordering::Release);
        !self.stopped()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// Takes the parked backend errors (stream thread) and logs them, folding
/// repeats of one message into one event: some backends report the same
/// transient error thousands of times (the ALSA PulseAudio plugin returns
/// EIO while its stream starts up).
pub(crate) fn drain_errors(
    errors: &mut rtrb::Consumer<cpal::Error>,
    device: &str,
    log: &mut LogLimiter,
) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    while let Ok(err) = errors.pop() {
        let message = err.to_string();
        let lost = matches!(
            err.kind(),
            cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated
        );
        if let Some(Event::StreamError {
            message: last,
            count,
            ..
        }) = out.last_mut()
            && !lost
            && *last == message
        {
            *count += 1;
            continue;
        }
        if lost {
            tracing::error!(device, error = %message, "audio device lost");
            out.push(Event::DeviceLost {
                device: device.to_string(),
                message,
            });
        } else {
            log.warn(device, &message);
            out.push(Event::StreamError {
                device: device.to_string(),
                message,
                count: 1,
            });
        }
    }
    out
}

/// Logs a repeated stream error at most once a second, with the number of
/// repeats left out meanwhile.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    last: String,
    at: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new() -> Self {
        Self {
            last: String::new(),
            at: None,
            suppressed: 0,
        }
    }

    fn warn(&mut self, device: &str, message: &str) {
        let now = Instant::now();
        let recent = self
            .at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
        if recent && self.last == message {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            device,
            error = %message,
            repeats_not_logged = self.suppressed,
            "audio stream error"
        );
        message.clone_into(&mut self.last);
        self.at = Some(now);
        self.suppressed = 0;
    }
}

impl Status {
    /// Records drained errors; returns whether the device is now lost.
    pub(crate) fn apply(&mut self, events: Vec<Event>) -> bool {
        for event in events {
            match &event {
                Event::DeviceLost { message, .. } => {
                    self.last_error = Some(message.clone());
                    self.lost = Some(message.clone());
                }
                Event::StreamError { message, .. } => self.last_error = Some(message.clone()),
            }
            self.push_event(event);
        }
        self.lost.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_errors_fold_and_a_lost_device_is_terminal() {
        let counters = Arc::new(Counters::default());
        let (mut sink, mut parked) =
            ErrorSink::new(Arc::clone(&counters), Arc::new(Notify::default()));
        for _ in 0..5 {
            sink.record(cpal::Error::with_message(cpal::ErrorKind::Xrun, "xrun"));
        }
        sink.record(cpal::Error::new(cpal::ErrorKind::DeviceNotAvailable));
        // More than the ring holds: counted, not stored, nothing blocks.
        for _ in 0..100 {
            sink.record(cpal::Error::new(cpal::ErrorKind::Other));
        }
        assert_eq!(
            counters.errors.load(std::sync::atomic::Ordering::Relaxed),
            106
        );
        let events = drain_errors(&mut parked, "dev", &mut LogLimiter::new());
        assert!(events.len() == 3, "{events:?}");
        assert!(matches!(&events[0], Event::StreamError { count: 5, .. }));
        assert!(matches!(&events[1], Event::DeviceLost { device, .. } if device == "dev"));
        let mut status = Status::default();
        assert!(status.apply(events));
        assert!(matches!(status.dead("dev"), Some(Error::DeviceLost { .. })));
        assert_eq!(status.events.len(), 3);
    }

    #[test]
    fn the_event_queue_is_bounded() {
        let mut status = Status::default();
        for i in 0..(EVENT_QUEUE as u64 + 10) {
            status.push_event(Event::StreamError {
                device: "d".into(),
                message: "m".into(),
                count: i,
            });
        }
        assert_eq!(status.events.len(), EVENT_QUEUE);
        // The oldest went first.
        assert!(matches!(
            status.events.front(),
            Some(Event::StreamError { count: 10, .. })
        ));
    }
}
