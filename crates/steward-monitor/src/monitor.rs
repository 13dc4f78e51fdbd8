//! The monitor: a tokio task that samples, classifies and runs cleanup
//! handlers, and the cheap-clone handle that owns it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use crate::config::MonitorConfig;
use crate::error::{BoxError, Error};
use crate::level::{Level, LevelMachine, Reason};
use crate::sample::Sample;
use crate::source::{SampleSource, SystemSource};
use crate::trend::{GrowthChange, TrendMachine};

mod report;
mod scheduled;

pub use report::{CheckReport, Event, HandlerId, HandlerInfo, HandlerReport, Outcome, Stats};

/// What a cleanup handler is told.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CleanupContext {
    /// The pressure level being notified.
    pub level: Level,
    /// The level the handler was registered for (at most `level`).
    pub handler_level: Level,
    /// Rising, or a critical re-notification.
    pub reason: Reason,
    /// The sample that triggered the cleanup.
    pub sample: Sample,
    /// How long the handler may run before it is cancelled.
    pub timeout: Duration,
}

impl CleanupContext {
    /// A context as the monitor makes it, to call a handler in a unit test.
    #[must_use]
    pub fn new(level: Level, reason: Reason, sample: Sample, timeout: Duration) -> Self {
        Self {
            level,
            handler_level: level,
            reason,
            sample,
            timeout,
        }
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send>>;
type HandlerFn = Arc<dyn Fn(CleanupContext) -> HandlerFuture + Send + Sync>;

struct HandlerEntry {
    id: u64,
    level: Level,
    priority: i32,
    name: Arc<str>,
    run: HandlerFn,
}

/// Builds a [`Monitor`].
#[must_use]
pub struct MonitorBuilder {
    config: MonitorConfig,
    source: Option<Box<dyn SampleSource>>,
}

impl std::fmt::Debug for MonitorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorBuilder")
            .field("config", &self.config)
            .field("source", &self.source.as_ref().map(|s| s.name().to_owned()))
            .finish()
    }
}

impl MonitorBuilder {
    /// Default config, the real [`SystemSource`].
    pub fn new() -> Self {
        Self {
            config: MonitorConfig::default(),
            source: None,
        }
    }

    /// Replaces the whole config.
    pub fn config(mut self, config: MonitorConfig) -> Self {
        self.config = config;
        self
    }

    /// Samples from `source` instead of the real process.
    pub fn source(mut self, source: impl SampleSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Validates the config and starts the monitor's task on the current
    /// tokio runtime. The first background check happens one interval after
    /// start (so handlers can be registered first); call
    /// [`Monitor::check_now`] for an immediate one.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], [`Error::NoRuntime`], or the system
    /// source's error when it cannot sample this process.
    pub fn build(self) -> Result<Monitor, Error> {
        self.config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let source = match self.source {
            Some(source) => source,
            None => Box::new(SystemSource::new()?),
        };
        let config = self.config;
        let (level_tx, _) = watch::channel(Level::None);
        let (events, _) = broadcast::channel(config.event_capacity);
        let (stopped, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            machine: tokio::sync::Mutex::new(LevelMachine::new(
                config.cooldown,
                config.critical_renotify,
            )),
            source: Mutex::new(source),
            handlers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            level_tx,
            events,
            stats: Mutex::new(Stats::default()),
            stopped,
            closing: AtomicBool::new(false),
            failed_in_a_row: AtomicU64::new(0),
            rss: Mutex::new(RssProbe::new()),
            trend: Mutex::new(TrendMachine::new(config.trend.clone())),
            config,
        });
        let (stop, stop_rx) = watch::channel(false);
        // Made here, not in the task: a task dropped before its first poll
        // (runtime shut down) still marks the monitor stopped.
        let guard = StoppedGuard(Arc::clone(&shared));
        let task: JoinHandle<()> = runtime.spawn(run(guard, stop_rx));
        // The task is watched through `stopped`, not joined.
        drop(task);
        Ok(Monitor {
            handle: Arc::new(Handle { shared, stop }),
        })
    }
}

impl Default for MonitorBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The memory monitor: a cheap-clone handle to a background task.
///
/// The task stops on [`Monitor::shutdown`] or when the last handle is
/// dropped. Handlers must not hold a `Monitor` clone themselves: that would
/// keep the task alive forever.
#[derive(Clone)]
pub struct Monitor {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("level", &self.level())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

/// Owned by the handles only: dropping it drops `stop`, which wakes and ends
/// the task.
struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Monitor {
    /// A builder with the default config and the real system source.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::new()
    }

    /// Registers a cleanup handler for `level` (`Moderate` or `Critical`).
    ///
    /// On a notification at level `L`, every handler registered for a level
    /// up to `L` runs (critical pressure also runs the moderate handlers),
    /// one after the other, **smallest `priority` first** (ties in
    /// registration order), each under the handler timeout. The handler
    /// returns an estimate of the bytes it freed. A failing, panicking or
    /// timed-out handler is logged and counted; the others still run.
    ///
    /// A handler must not call [`Monitor::check_now`] (it would wait for the
    /// check it runs in) nor keep a `Monitor` clone (the task would never
    /// stop); it gets the level and the sample in its [`CleanupContext`].
    ///
    /// # Errors
    /// [`Error::HandlerLevel`] for `Level::None`; [`Error::Shutdown`] after
    /// shutdown.
    pub fn on<F, Fut>(
        &self,
        level: Level,
        priority: i32,
        name: impl Into<String>,
        handler: F,
    ) -> Result<HandlerId, Error>
    where
        F: Fn(CleanupContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u64, BoxError>> + Send + 'static,
    {
        let name: String = name.into();
        if level == Level::None {
            return Err(Error::HandlerLevel { name });
        }
        let shared = &self.handle.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let run: HandlerFn = Arc::new(move |ctx| Box::pin(handler(ctx)) as HandlerFuture);
        shared.handlers.lock().push(HandlerEntry {
            id,
            level,
            priority,
            name: name.into(),
            run,
        });
        Ok(HandlerId(id))
    }

    /// Removes a handler; `false` when it was not registered.
    pub fn remove(&self, id: HandlerId) -> bool {
        let mut handlers = self.handle.shared.handlers.lock();
        let before = handlers.len();
        handlers.retain(|h| h.id != id.0);
        handlers.len() != before
    }

    /// The registered handlers, in the order they run at `Critical`.
    #[must_use]
    pub fn handlers(&self) -> Vec<HandlerInfo> {
        let mut list: Vec<HandlerInfo> = self
            .handle
            .shared
            .handlers
            .lock()
            .iter()
            .map(|h| HandlerInfo {
                id: HandlerId(h.id),
                name: h.name.to_string(),
                level: h.level,
                priority: h.priority,
            })
            .collect();
        list.sort_by_key(|h| (h.priority, h.id.0));
        list
    }

    /// The reported level.
    #[must_use]
    pub fn level(&self) -> Level {
        *self.handle.shared.level_tx.borrow()
    }

    /// The reported level, as a watch channel.
    #[must_use]
    pub fn watch_level(&self) -> watch::Receiver<Level> {
        self.handle.shared.level_tx.subscribe()
    }

    /// Level changes and handler runs, as a broadcast channel.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.handle.shared.events.subscribe()
    }

    /// The config in force.
    #[must_use]
    pub fn config(&self) -> &MonitorConfig {
        &self.handle.shared.config
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.handle.shared.stats.lock().clone()
    }

    /// The last sample taken, if any.
    #[must_use]
    pub fn last_sample(&self) -> Option<Sample> {
        self.handle.shared.stats.lock().last_sample.clone()
    }

    /// Takes a sample now, without classifying it or running handlers.
    ///
    /// # Errors
    /// The source's error.
    pub fn sample_now(&self) -> Result<Sample, Error> {
        self.handle.shared.sample()
    }

    /// Samples, classifies and runs the handlers if due, now. Checks are
    /// serialised with the background task's.
    ///
    /// Cancel safety: dropping the future cancels the handler running at that
    /// moment and skips the rest; the level state has already advanced.
    ///
    /// # Errors
    /// The source's error; [`Error::Shutdown`] after shutdown.
    pub async fn check_now(&self) -> Result<CheckReport, Error> {
        self.handle.shared.check().await
    }

    /// Whether the background task still runs.
    #[must_use]
    pub fn is_running(&self) -> bool {
        !*self.handle.shared.stopped.borrow()
    }

    /// Stops the background task and waits until it has ended (a running
    /// handler is cancelled). Idempotent.
    ///
    /// Cancel safety: the stop is requested on the first poll; dropping the
    /// future afterwards only skips the wait.
    pub async fn shutdown(&self) {
        let shared = &self.handle.shared;
        shared.closing.store(true, Ordering::Release);
        self.handle.stop.send_replace(true);
        let mut stopped = shared.stopped.subscribe();
        // Err means the sender is gone, which cannot happen while we hold
        // `shared`; either way the task is over.
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// What the task and the handles share.
struct Shared {
    config: MonitorConfig,
    source: Mutex<Box<dyn SampleSource>>,
    /// Also serialises checks: held across a whole check.
    machine: tokio::sync::Mutex<LevelMachine>,
    handlers: Mutex<Vec<HandlerEntry>>,
    next_id: AtomicU64,
    level_tx: watch::Sender<Level>,
    events: broadcast::Sender<Event>,
    stats: Mutex<Stats>,
    stopped: watch::Sender<bool>,
    closing: AtomicBool,
    /// Consecutive failed samples.
    failed_in_a_row: AtomicU64,
    rss: Mutex<RssProbe>,
    /// Fed by checks only (under the `machine` lock, so in order).
    trend: Mutex<TrendMachine>,
}

impl Shared {
    fn sample(&self) -> Result<Sample, Error> {
        let result = self.source.lock().sample();
        let mut stats = self.stats.lock();
        stats.samples += 1;
        match result {
            Ok(sample) => {
                stats.last_sample = Some(sample.clone());
                drop(stats);
                let failed = self.failed_in_a_row.swap(0, Ordering::Relaxed);
                if failed > 0 {
                    tracing::info!(failed, "memory monitor: sampling works again");
                }
                Ok(sample)
            }
            Err(error) => {
                stats.sample_errors += 1;
                drop(stats);
                let message = error_chain(&error);
                // A broken source fails every interval: warn once per streak.
                if self.failed_in_a_row.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %message, "memory monitor: sample failed");
                } else {
                    tracing::debug!(error = %message, "memory monitor: sample failed again");
                }
                let _ = self.events.send(Event::SampleFailed { error: message });
                Err(error)
            }
        }
    }

    async fn check(&self) -> Result<CheckReport, Error> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let mut machine = self.machine.lock().await;
        // Shutdown may have come while we waited for another check.
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let sample = self.sample()?;
        let raw_level = self.config.thresholds.classify(&sample);
        let now = Instant::now();
        let step = machine.step(raw_level, now);
        let (trend_bytes, metric) = sample.trend_bytes();
        let trend_step = self.trend.lock().observe(now, trend_bytes);
        let mut trend = trend_step.trend;
        trend.metric = metric;
        {
            let mut stats = self.stats.lock();
            stats.trend = trend.clone();
            stats.checks += 1;
            stats.raw_level = raw_level;
            stats.level = step.level;
            if step.change.is_some() {
                stats.level_changes += 1;
            }
            if let Some(reason) = step.notify {
                stats.notifications += 1;
                if reason == Reason::Renotify {
                    stats.renotifications += 1;
                }
            }
        }
        if let Some((from, to)) = step.change {
            let (rss, limit) = (sample.rss_bytes, sample.limit_bytes);
            if to == Level::Critical {
                tracing::warn!(%from, %to, rss, limit, "memory pressure level changed");
            } else {
                tracing::info!(%from, %to, rss, limit, "memory pressure level changed");
            }
            // The event first: whoever wakes on the watch finds it queued.
            let _ = self.events.send(Event::LevelChanged {
                from,
                to,
                sample: Box::new(sample.clone()),
            });
            self.level_tx.send_replace(to);
        }
        match trend_step.change {
            Some(GrowthChange::Raised) => {
                tracing::warn!(
                    bytes_per_hour = trend.bytes_per_hour,
                    threshold = trend.growing_bytes_per_hour,
                    ?metric,
                    bytes = trend_bytes,
                    "memory keeps growing"
                );
                let _ = self.events.send(Event::Growing {
                    trend,
                    sample: Box::new(sample.clone()),
                });
            }
            Some(GrowthChange::Cleared) => {
                tracing::info!(
                    bytes_per_hour = trend.bytes_per_hour,
                    "memory growth stopped"
                );
                let _ = self.events.send(Event::GrowthCleared { trend });
            }
            None => {}
        }
        let handlers = match step.notify {
            Some(reason) => {
                let span = tracing::info_span!("memory_cleanup", level = %step.level, ?reason);
                self.run_handlers(step.level, reason, &sample)
                    .instrument(span)
                    .await
            }
            None => Vec::new(),
        };
        drop(machine);
        Ok(CheckReport {
            sample,
            raw_level,
            level: step.level,
            change: step.change,
            reason: step.notify,
            handlers,
        })
    }

    async fn run_handlers(
        &self,
        level: Level,
        reason: Reason,
        sample: &Sample,
    ) -> Vec<HandlerReport> {
        let mut due: Vec<(u64, i32, Level, Arc<str>, HandlerFn)> = self
            .handlers
            .lock()
            .iter()
            .filter(|h| h.level <= level)
            .map(|h| (h.id, h.priority, h.level, h.name.clone(), h.run.clone()))
            .collect();
        due.sort_by_key(|(id, priority, ..)| (*priority, *id));
        let mut reports = Vec::with_capacity(due.len() + 1);
        for (_, _, handler_level, name, run) in due {
            let ctx = CleanupContext {
                level,
                handler_level,
                reason,
                sample: sample.clone(),
                timeout: self.config.handler_timeout,
            };
            let report = self.run_one(&name, run, ctx).await;
            reports.push(report);
        }
        if self.config.malloc_trim
            && let Some(report) = self.trim(level, reason).await
        {
            reports.push(report);
        }
        reports
    }

    async fn run_one(&self, name: &str, run: HandlerFn, ctx: CleanupContext) -> HandlerReport {
        let (level, handler_level, reason) = (ctx.level, ctx.handler_level, ctx.reason);
        let started = Instant::now();
        // Spawned so that a panic (even one raised before the first await)
        // surfaces as a JoinError instead of unwinding through the monitor,
        // and so that the timeout can abort it.
        let mut task = AbortOnDrop(tokio::spawn(async move { run(ctx).await }));
        let joined = tokio::time::timeout(self.config.handler_timeout, &mut task.0).await;
        let (outcome, freed_bytes) = match joined {
            Ok(Ok(Ok(freed))) => (Outcome::Ok, freed),
            Ok(Ok(Err(error))) => (
                Outcome::Failed {
                    error: error_chain(error.as_ref()),
                },
                0,
            ),
            Ok(Err(join_error)) => (
                Outcome::Panicked {
                    message: panic_message(join_error),
                },
                0,
            ),
            Err(_elapsed) => {
                task.0.abort();
                (Outcome::TimedOut, 0)
            }
        };
        let duration = started.elapsed();
        self.record(&outcome, freed_bytes);
        match &outcome {
            Outcome::Ok => {
                tracing::debug!(
                    handler = name,
                    freed_bytes,
                    ?duration,
                    "cleanup handler ran"
                );
            }
            other => {
                tracing::warn!(handler = name, outcome = ?other, ?duration, "cleanup handler did not succeed");
            }
        }
        let report = HandlerReport {
            name: name.to_owned(),
            handler_level,
            level,
            reason,
            outcome,
            freed_bytes,
            duration_us: micros(duration),
        };
        let _ = self.events.send(Event::HandlerRan(report.clone()));
        report
    }

    fn record(&self, outcome: &Outcome, freed_bytes: u64) {
        let mut stats = self.stats.lock();
        stats.handler_runs += 1;
        stats.freed_bytes_reported = stats.freed_bytes_reported.saturating_add(freed_bytes);
        match outcome {
            Outcome::Ok => {}
            Outcome::Failed { .. } => stats.handler_failures += 1,
            Outcome::Panicked { .. } => stats.handler_panics += 1,
            Outcome::TimedOut => stats.handler_timeouts += 1,
        }
    }
}

/// The background loop. Ends when a stop is requested or the last handle is
/// dropped (the stop sender goes away), also in the middle of a check.
async fn run(stopped: StoppedGuard, mut stop: watch::Receiver<bool>) {
    let shared = &stopped.0;
    let interval = shared.config.interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut trims = scheduled::Trims::new(shared.config.trim_every);
    tracing::debug!(?interval, "memory monitor started");
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = trims.due() => {
                shared.scheduled_trim().await;
                continue;
            }
            _ = ticker.tick() => {}
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            // Errors are counted, logged and broadcast inside.
            _ = shared.check() => {}
        }
    }
    tracing::debug!("memory monitor stopped");
}

/// Marks the task as stopped however it ends (stop, handle dropped, runtime
/// shut down).
struct StoppedGuard(Arc<Shared>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.0.closing.store(true, Ordering::Release);
        self.0.stopped.send_replace(true);
    }
}

/// Aborts a spawned handler if the check is cancelled while it runs.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The RSS probe `malloc_trim` is measured with, whatever the sample source.
struct RssProbe {
    #[cfg(target_os = "linux")]
    inner: crate::linux::RssProbe,
}

impl RssProbe {
    fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            inner: crate::linux::RssProbe::new(),
        }
    }

    #[allow(clippy::unused_self)]
    fn rss(&mut self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        return self.inner.rss();
        #[cfg(not(target_os = "linux"))]
        None
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn panic_message(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return "cancelled".into();
    }
    let payload = error.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// `error: source: source...` on one line.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
