//! The stream's own thread ([`Worker`], driven by a [`Pump`]), what its
//! setup reports ([`Opened`]), the callback test hook and blocking waits.

use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{IDLE_WAKE, Notify};
use crate::config::{AudioHost, DeviceFormat};
use crate::error::{Error, Result};

/// What a stream thread's setup reports once the backend stream runs.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    pub(crate) format: DeviceFormat,
    pub(crate) device: String,
    pub(crate) host: AudioHost,
    /// The fixed buffer asked for, in device frames (`None`: host default).
    pub(crate) buffer_frames: Option<u32>,
    /// How many reopens led to this stream (see [`Stats::reopens`]).
    ///
    /// [`Stats::reopens`]: crate::Stats::reopens
    pub(crate) reopens: u64,
}

impl Opened {
    pub(crate) fn new(
        format: DeviceFormat,
        device: String,
        host: AudioHost,
        cfg: &cpal::StreamConfig,
    ) -> Self {
        let buffer_frames = match cfg.buffer_size {
            cpal::BufferSize::Fixed(n) => Some(n),
            _ => None,
        };
        Self {
            format,
            device,
            host,
            buffer_frames,
            reopens: 0,
        }
    }

    /// The stats fields this fixes.
    pub(crate) fn stats(&self) -> crate::stats::Stats {
        crate::stats::Stats {
            device: self.device.clone(),
            host: Some(self.host),
            format: Some(self.format),
            buffer_frames: self.buffer_frames,
            reopens: self.reopens,
            ..crate::stats::Stats::default()
        }
    }
}

/// The stream's own thread: it builds and owns the backend stream (which
/// may not be `Send`), moves audio when woken (see [`IDLE_WAKE`]), and
/// drops the stream when its handle closes, which wakes it at once.
#[derive(Debug)]
pub(crate) struct Worker {
    notify: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// What a stream thread does when woken; built on the thread itself.
pub(crate) trait Pump {
    /// Moves what there is to move; returns how long the thread may sleep
    /// at most before the next call (a deadline of the pump's own), when
    /// nothing wakes it earlier.
    fn tick(&mut self) -> Duration;
}

impl Worker {
    /// Spawns the thread, runs `setup` on it and waits for its verdict.
    /// `notify` wakes the thread; setup hands it to the callbacks.
    pub(crate) fn spawn<S, P>(
        thread_name: &str,
        device_hint: &str,
        notify: Arc<Notify>,
        setup: S,
    ) -> Result<(Self, Opened)>
    where
        S: FnOnce() -> Result<(P, Opened)> + Send + 'static,
        P: Pump,
    {
        let (thread_label, device_label) = (thread_name.to_string(), device_hint.to_string());
        let (init_tx, init_rx) = mpsc::channel::<Result<Opened>>();
        let wake = Arc::clone(&notify);
        let thread = std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                // One span for the stream's whole life: its logs carry it.
                let span = tracing::info_span!("audio_stream", thread = %thread_label, device = %device_label);
                let _entered = span.enter();
                // Before the callbacks can run: a notify finds the thread.
                let _ = wake.thread.set(std::thread::current());
                let (mut pump, opened) = match setup() {
                    Ok(ok) => ok,
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                        return;
                    }
                };
                let _ = init_tx.send(Ok(opened));
                // Runs until the handle stops it.
                let mut sleep = Duration::ZERO;
                while wake.wait(sleep) {
                    sleep = pump.tick().min(IDLE_WAKE);
                }
                // The pump owns the backend stream: dropping it here stops
                // the stream and joins the backend's thread.
                drop(pump);
            })
            .map_err(|e| Error::Thread {
                device: device_hint.to_string(),
                message: e.to_string(),
            })?;
        let mut worker = Self {
            notify,
            thread: Some(thread),
        };
        match init_rx.recv() {
            Ok(Ok(opened)) => Ok((worker, opened)),
            Ok(Err(e)) => {
                worker.stop();
                Err(e)
            }
            Err(_) => {
                worker.stop();
                Err(Error::Thread {
                    device: device_hint.to_string(),
                    message: "the stream thread ended during setup".into(),
                })
            }
        }
    }

    /// Stops the thread and joins it. Idempotent.
    pub(crate) fn stop(&mut self) -> bool {
        self.notify.stop();
        match self.thread.take() {
            Some(t) => t.join().is_ok(),
            None => true,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Test hook, with the `test-hooks` feature only (tests only, never on by
/// default): lets a test binary observe the audio callbacks (to count
/// allocations made on them). Not part of the API.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod callback_hook {
    use std::sync::OnceLock;

    /// Called on entry to and exit from every audio callback.
    #[derive(Debug, Clone, Copy)]
    pub struct Hooks {
        /// Entry.
        pub enter: fn(),
        /// Exit.
        pub exit: fn(),
    }

    static HOOKS: OnceLock<Hooks> = OnceLock::new();

    /// Installs the hooks once per process; `false` if some already were.
    pub fn install(hooks: Hooks) -> bool {
        HOOKS.set(hooks).is_ok()
    }

    /// Runs `enter` now and `exit` on drop.
    pub(crate) struct Scope(Option<&'static Hooks>);

    impl Scope {
        #[inline]
        pub(crate) fn enter() -> Self {
            let hooks = HOOKS.get();
            if let Some(h) = hooks {
                (h.enter)();
            }
            Self(hooks)
        }
    }

    impl Drop for Scope {
        #[inline]
        fn drop(&mut self) {
            if let Some(h) = self.0 {
                (h.exit)();
            }
        }
    }
}

/// Without `test-hooks` nobody can install hooks, so the callbacks' scope
/// marker is nothing at all: no lookup on the real-time path.
#[cfg(not(feature = "test-hooks"))]
pub(crate) mod callback_hook {
    /// Marks an audio callback; does nothing.
    pub(crate) struct Scope;

    impl Scope {
        #[inline]
        pub(crate) fn enter() -> Self {
            Self
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this thread until it is ready or `timeout` passes.
pub(crate) fn block_on_with_timeout<T>(
    timeout: Duration,
    mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}
