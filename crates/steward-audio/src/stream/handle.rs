//! The handle [`Capture`](crate::Capture) and [`Playback`](crate::Playback)
//! both wrap: the stream thread, what its setup reported, the configuration,
//! and what does not depend on the direction (reopening, events, the common
//! part of the stats, close). Each side says what differs through [`Side`].

use std::sync::Arc;
use std::task::Poll;

use parking_lot::Mutex;

use super::{Direction, Event, Notify, Opened, Pump, Status, Worker};
use crate::config::{AudioConfig, AudioHost, DeviceFormat};
use crate::error::{Error, Result};
use crate::stats::{Counters, Stats};

/// What a direction's state shared by the handle and the stream thread
/// provides to [`StreamHandle`].
pub(crate) trait Side: Send + Sync + Sized + 'static {
    /// Capture or playback.
    const DIRECTION: Direction;
    /// What sits under the handle's lock.
    type State;
    /// The stream thread's state, built on that thread.
    type Pump: Pump;

    /// The shared state for a stream about to open with `config` (already
    /// validated); `notify` wakes its thread.
    fn new(config: &AudioConfig, notify: Arc<Notify>) -> Self;

    /// Opens the backend stream on the stream thread.
    fn setup(config: AudioConfig, shared: Arc<Self>) -> Result<(Self::Pump, Opened)>;

    /// The handle's lock.
    fn state(&self) -> &Mutex<Self::State>;

    /// The status kept under that lock.
    fn status(state: &mut Self::State) -> &mut Status;

    /// The stream's counters.
    fn counters(&self) -> &Counters;

    /// Frames (PCM16 rate) waiting, for [`Stats::queued_frames`].
    fn queued_frames(&self, state: &Self::State) -> u64;
}

/// A running stream of either direction.
#[derive(Debug)]
pub(crate) struct StreamHandle<S> {
    pub(crate) shared: Arc<S>,
    worker: Mutex<Worker>,
    pub(crate) opened: Opened,
    pub(crate) config: AudioConfig,
}

impl<S: Side> StreamHandle<S> {
    /// Validates `config`, spawns the stream thread and waits until its
    /// setup has the backend stream running (or failed).
    pub(crate) fn open(config: &AudioConfig) -> Result<Self> {
        config.validate()?;
        let notify = Arc::new(Notify::default());
        let shared = Arc::new(S::new(config, Arc::clone(&notify)));
        let hint = S::DIRECTION.device(config).unwrap_or("default");
        let thread = format!("steward-audio-{}", S::DIRECTION.stream_kind());
        let cfg = config.clone();
        let sh = Arc::clone(&shared);
        let (worker, opened) = Worker::spawn(&thread, hint, notify, move || S::setup(cfg, sh))?;
        Ok(Self {
            shared,
            worker: Mutex::new(worker),
            opened,
            config: config.clone(),
        })
    }

    /// Closes this stream and opens a new one with its configuration, on
    /// the default device when `on_default`; the new one counts one reopen
    /// more.
    pub(crate) fn reopen(&self, on_default: bool) -> Result<Self> {
        let _ = self.close();
        let mut config = self.config.clone();
        if on_default {
            *S::DIRECTION.device_mut(&mut config) = None;
        }
        let mut reopened = Self::open(&config)?;
        reopened.opened.reopens = self.opened.reopens + 1;
        Ok(reopened)
    }

    pub(crate) fn device(&self) -> &str {
        &self.opened.device
    }

    pub(crate) fn host(&self) -> AudioHost {
        self.opened.host
    }

    pub(crate) fn device_format(&self) -> DeviceFormat {
        self.opened.format
    }

    pub(crate) fn config(&self) -> &AudioConfig {
        &self.config
    }

    /// Why the stream can no longer move audio, if it cannot.
    pub(crate) fn dead(&self, state: &mut S::State) -> Option<Error> {
        S::status(state).dead(&self.opened.device)
    }

    pub(crate) async fn next_event(&self) -> Option<Event> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared.state().lock();
            let status = S::status(&mut st);
            if let Some(e) = status.events.pop_front() {
                return Poll::Ready(Some(e));
            }
            if status.finished {
                return Poll::Ready(None);
            }
            status.event_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub(crate) fn try_next_event(&self) -> Option<Event> {
        S::status(&mut self.shared.state().lock())
            .events
            .pop_front()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut s = self.opened.stats();
        self.shared.counters().fill(&mut s, self.config.sample_rate);
        let mut st = self.shared.state().lock();
        s.queued_frames = self.shared.queued_frames(&st);
        let status = S::status(&mut st);
        s.last_error.clone_from(&status.last_error);
        s.device_lost = status.lost.is_some();
        s
    }

    pub(crate) fn close(&self) -> Result<Stats> {
        let ok = self.worker.lock().stop();
        let stats = self.stats();
        let kind = S::DIRECTION.stream_kind();
        tracing::info!(device = %self.opened.device, frames = stats.frames_out, "{kind} closed");
        if ok {
            Ok(stats)
        } else {
            Err(Error::Thread {
                device: self.opened.device.clone(),
                message: format!("the {kind} thread panicked"),
            })
        }
    }
}
