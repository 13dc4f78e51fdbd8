//! The wiring: one handle that owns the memory monitor and connects it to
//! the parts the user handed in.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use steward_monitor::{
    BoxError, CleanupContext, Level, Monitor, MonitorBuilder, MonitorConfig, SampleSource,
};

use crate::error::Error;
use crate::health::{CleanupStats, Health};
use crate::http_config::{HttpConfig, millis};

/// The wiring's settings: plain data. Durations are milliseconds when
/// serialised.
///
/// ```
/// let config: steward::StewardConfig = serde_json::from_str(
///     r#"{"stale_after_ms": 60000, "monitor": {"interval_ms": 500}}"#,
/// ).unwrap();
/// assert_eq!(config.stale_after.as_secs(), 60);
/// assert!(config.trim_on_critical);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StewardConfig {
    /// The memory monitor's settings (interval, thresholds, cooldowns).
    pub monitor: MonitorConfig,
    /// At `Moderate`, the tracker reports resources untouched for this long.
    /// Default 5 minutes.
    #[serde(rename = "stale_after_ms", with = "millis")]
    pub stale_after: Duration,
    /// How many stale resources [`Health`] keeps (longest idle first).
    /// Default 16.
    pub stale_report_max: usize,
    /// At `Critical`, after the other handlers, return freed heap to the OS
    /// with glibc's `malloc_trim(0)` (a no-op where glibc is not the C
    /// library). Default on. Unlike the monitor's own `malloc_trim` setting
    /// (every level), this trims at `Critical` only.
    pub trim_on_critical: bool,
    /// Where the HTTP endpoint listens (`/health` JSON, `/metrics`
    /// Prometheus text). `None` (the default) serves nothing. Needs the
    /// `http` feature; without it a set address is refused by `build`. A
    /// non-loopback address is refused unless [`HttpConfig::allow_remote`].
    pub http_addr: Option<std::net::SocketAddr>,
    /// The HTTP endpoint's limits (connections, timeouts) and whether it
    /// may listen beyond loopback.
    pub http: HttpConfig,
}

impl Default for StewardConfig {
    fn default() -> Self {
        Self {
            monitor: MonitorConfig::default(),
            stale_after: Duration::from_secs(300),
            stale_report_max: 16,
            trim_on_critical: true,
            http_addr: None,
            http: HttpConfig::default(),
        }
    }
}

/// A pool of any manager type, as the wiring sees it: held weakly, so a
/// pool its owner dropped goes (its idle objects with it) and leaves.
#[cfg(feature = "pool")]
pub(crate) trait PoolPart: Send + Sync {
    fn reap_idle(&self) -> usize;
    fn shrink_to_min_idle(&self) -> usize;
    /// `None` once the pool is gone.
    fn metrics(&self) -> Option<steward_pool::Metrics>;
    fn is_closed(&self) -> bool;
}

#[cfg(feature = "pool")]
impl<M: steward_pool::Manager> PoolPart for steward_pool::WeakPool<M> {
    fn reap_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.reap_idle())
    }

    fn shrink_to_min_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.shrink_to_min_idle())
    }

    fn metrics(&self) -> Option<steward_pool::Metrics> {
        self.upgrade().map(|p| p.metrics())
    }

    fn is_closed(&self) -> bool {
        self.upgrade().is_none_or(|p| p.is_closed())
    }
}

#[cfg(feature = "pool")]
impl<K, M> PoolPart for steward_pool::WeakKeyedPool<K, M>
where
    K: Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync + 'static,
    M: steward_pool::KeyedManager<K>,
{
    fn reap_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.reap_idle())
    }

    fn shrink_to_min_idle(&self) -> usize {
        self.upgrade().map_or(0, |p| p.shrink_to_min_idle())
    }

    /// All keys together; `max_size` is the per-key cap.
    fn metrics(&self) -> Option<steward_pool::Metrics> {
        self.upgrade().map(|p| p.metrics().total)
    }

    fn is_closed(&self) -> bool {
        // The global cap reads 0 once the keyed pool is closed.
        self.upgrade().is_none_or(|p| p.metrics().max_total == 0)
    }
}

/// Cleanup counters, bumped by the handlers.
#[derive(Default)]
struct Counters {
    moderate_rounds: AtomicU64,
    critical_rounds: AtomicU64,
    pool_objects_reaped: AtomicU64,
    pool_objects_shrunk: AtomicU64,
    store_compactions: AtomicU64,
    store_compaction_failures: AtomicU64,
    store_expired_swept: AtomicU64,
    stale_reports: AtomicU64,
    stale_resources: AtomicU64,
    malloc_trims: AtomicU64,
    malloc_trim_freed_bytes: AtomicU64,
    #[cfg(feature = "ws")]
    ws_shed_messages: AtomicU64,
    #[cfg(feature = "ws")]
    ws_shed_bytes: AtomicU64,
    #[cfg(feature = "audio")]
    audio_shed_frames: AtomicU64,
}

#[cfg(feature = "audio")]
type StreamParts<S> = Mutex<Vec<Arc<crate::audio_part::StreamPart<S>>>>;

/// What the cleanup handlers act on. Never holds the monitor: a handler
/// holding a monitor handle would keep its task alive forever.
pub(crate) struct Parts {
    config: StewardConfig,
    #[cfg(feature = "store")]
    pub(crate) store: Option<steward_store::Store>,
    #[cfg(feature = "store")]
    pub(crate) backend: Option<Arc<dyn steward_store::Backend>>,
    #[cfg(feature = "tracker")]
    pub(crate) tracker: Option<steward_tracker::Tracker>,
    #[cfg(feature = "pool")]
    pools: Mutex<Vec<Arc<dyn PoolPart>>>,
    #[cfg(feature = "ws")]
    ws: Mutex<Vec<Arc<crate::ws_part::WsPart>>>,
    #[cfg(feature = "realtime")]
    realtime: Mutex<Vec<crate::realtime_part::RealtimePart>>,
    #[cfg(feature = "audio")]
    playbacks: StreamParts<steward_audio::Playback>,
    #[cfg(feature = "audio")]
    captures: StreamParts<steward_audio::Capture>,
    counters: Counters,
    /// The last stale report, longest idle first.
    #[cfg(feature = "tracker")]
    last_stale: Mutex<Vec<steward_tracker::ResourceInfo>>,
    /// Log size right after our last compaction: no new write, no compaction.
    #[cfg(feature = "store")]
    log_after_compaction: AtomicU64,
    /// RSS reader for the trim's measured drop.
    rss: Mutex<Option<steward_monitor::SystemSource>>,
    /// The shed handler is registered with the first session or stream,
    /// so the features alone change nothing.
    #[cfg(any(feature = "ws", feature = "audio"))]
    shed_registered: std::sync::atomic::AtomicBool,
    /// The `Growing` signal with the tracked kinds, kept by the growth task.
    pub(crate) growth: crate::growth::GrowthState,
}

impl Parts {
    #[cfg(feature = "ws")]
    fn add_ws(&self, name: &str, session: &steward_ws::WeakSession) {
        let part = crate::ws_part::WsPart::new(
            name,
            session,
            #[cfg(feature = "tracker")]
            self.tracker.as_ref(),
        );
        self.ws.lock().push(Arc::new(part));
    }

    /// The live pools; closed ones are let go here.
    #[cfg(feature = "pool")]
    fn pools(&self) -> Vec<Arc<dyn PoolPart>> {
        let mut pools = self.pools.lock();
        pools.retain(|p| !p.is_closed());
        pools.clone()
    }

    /// The open WebSocket sessions; closed ones are let go here (their
    /// tracker entries with them).
    #[cfg(feature = "ws")]
    fn ws(&self) -> Vec<Arc<crate::ws_part::WsPart>> {
        let mut sessions = self.ws.lock();
        sessions.retain(|s| !s.is_closed());
        sessions.clone()
    }

    /// The live playback streams; dropped ones are let go here.
    #[cfg(feature = "audio")]
    fn playbacks(&self) -> Vec<Arc<crate::audio_part::StreamPart<steward_audio::Playback>>> {
        live(&self.playbacks)
    }

    /// The live capture streams; dropped ones are let go here.
    #[cfg(feature = "audio")]
    fn captures(&self) -> Vec<Arc<crate::audio_part::StreamPart<steward_audio::Capture>>> {
        live(&self.captures)
    }

    #[cfg(feature = "audio")]
    fn add_playback(&self, name: &str, playback: &Arc<steward_audio::Playback>) {
        self.playbacks.lock().push(self.stream_part(name, playback));
    }

    #[cfg(feature = "audio")]
    fn add_capture(&self, name: &str, capture: &Arc<steward_audio::Capture>) {
        self.captures.lock().push(self.stream_part(name, capture));
    }

    #[cfg(feature = "audio")]
    fn stream_part<S: crate::audio_part::Stream>(
        &self,
        name: &str,
        stream: &Arc<S>,
    ) -> Arc<crate::audio_part::StreamPart<S>> {
        Arc::new(crate::audio_part::StreamPart::new(
            name,
            stream,
            #[cfg(feature = "tracker")]
            self.tracker.as_ref(),
        ))
    }

    fn rss_bytes(&self) -> Option<u64> {
        let mut rss = self.rss.lock();
        rss.as_mut()?.read_memory().ok().map(|m| m.rss_bytes)
    }
}

/// The streams still alive; those whose last `Arc` was dropped leave.
#[cfg(feature = "audio")]
fn live<S: crate::audio_part::Stream>(
    streams: &StreamParts<S>,
) -> Vec<Arc<crate::audio_part::StreamPart<S>>> {
    let mut streams = streams.lock();
    streams.retain(|s| !s.is_gone());
    streams.clone()
}

/// The handle of the wiring. Cheap to clone; clones share everything.
///
/// The monitor task and the HTTP endpoint stop on [`Steward::shutdown`] or
/// when the last handle is dropped. The parts handed in stay the caller's:
/// shutdown neither closes nor flushes them. Pools, WebSocket sessions and
/// audio streams are held weakly (one its owner dropped goes as it would
/// without the steward). The store and the tracker are held strongly:
/// `Steward::store` and `Steward::tracker` lend them out and
/// `Steward::tracked_manager` tracks with the tracker, so a store's
/// writer thread runs until the store is closed or its last handle, the
/// steward's included, is dropped.
#[derive(Clone)]
pub struct Steward {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    monitor: Monitor,
    parts: Arc<Parts>,
    started: Instant,
    /// The task following the trend's events; aborted on shutdown or drop.
    growth: Mutex<Option<crate::growth::Watch>>,
    #[cfg(feature = "http")]
    http: Mutex<Option<crate::http::Server>>,
    #[cfg(feature = "http")]
    http_addr: Option<std::net::SocketAddr>,
    /// The endpoint's connection counters (kept after shutdown).
    #[cfg(feature = "http")]
    http_counters: Option<Arc<crate::http::Counters>>,
}

/// What the HTTP endpoint serves, from the steward it holds weakly.
#[cfg(feature = "http")]
impl crate::http::Source for Inner {
    fn health(self: Arc<Self>) -> Health {
        Steward { inner: self }.health()
    }

    fn metrics_text(self: Arc<Self>) -> String {
        Steward { inner: self }.metrics_text()
    }
}

impl std::fmt::Debug for Steward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steward")
            .field("monitor", &self.inner.monitor)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Steward`]: hand in the parts to look after, then `build`.
#[must_use]
pub struct StewardBuilder {
    config: StewardConfig,
    monitor: MonitorBuilder,
    #[cfg(feature = "store")]
    store: Option<steward_store::Store>,
    #[cfg(feature = "store")]
    backend: Option<Arc<dyn steward_store::Backend>>,
    #[cfg(feature = "tracker")]
    tracker: Option<steward_tracker::Tracker>,
    #[cfg(feature = "pool")]
    pools: Vec<Arc<dyn PoolPart>>,
    #[cfg(feature = "ws")]
    ws: Vec<(String, steward_ws::WeakSession)>,
    #[cfg(feature = "audio")]
    playbacks: Vec<(String, Arc<steward_audio::Playback>)>,
    #[cfg(feature = "audio")]
    captures: Vec<(String, Arc<steward_audio::Capture>)>,
}

impl std::fmt::Debug for StewardBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StewardBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for StewardBuilder {
    fn default() -> Self {
        Self {
            config: StewardConfig::default(),
            monitor: Monitor::builder(),
            #[cfg(feature = "store")]
            store: None,
            #[cfg(feature = "store")]
            backend: None,
            #[cfg(feature = "tracker")]
            tracker: None,
            #[cfg(feature = "pool")]
            pools: Vec::new(),
            #[cfg(feature = "ws")]
            ws: Vec::new(),
            #[cfg(feature = "audio")]
            playbacks: Vec::new(),
            #[cfg(feature = "audio")]
            captures: Vec::new(),
        }
    }
}

impl StewardBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: StewardConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the monitor's settings.
    pub fn monitor_config(mut self, config: MonitorConfig) -> Self {
        self.config.monitor = config;
        self
    }

    /// Samples from `source` instead of the real process (a
    /// [`steward_monitor::FakeSource`] in tests).
    pub fn source(mut self, source: impl SampleSource) -> Self {
        self.monitor = self.monitor.source(source);
        self
    }

    /// See [`StewardConfig::stale_after`].
    pub fn stale_after(mut self, idle_for: Duration) -> Self {
        self.config.stale_after = idle_for;
        self
    }

    /// See [`StewardConfig::trim_on_critical`].
    pub fn trim_on_critical(mut self, yes: bool) -> Self {
        self.config.trim_on_critical = yes;
        self
    }

    /// Serves `/health` and `/metrics` on `addr` (`127.0.0.1:0` picks a free
    /// port; [`Steward::http_addr`] tells which). A non-loopback address
    /// needs [`HttpConfig::allow_remote`]; the limits are
    /// [`StewardConfig::http`].
    #[cfg(feature = "http")]
    pub fn http(mut self, addr: std::net::SocketAddr) -> Self {
        self.config.http_addr = Some(addr);
        self
    }

    /// Replaces the HTTP endpoint's limits (see [`HttpConfig`]).
    #[cfg(feature = "http")]
    pub fn http_config(mut self, config: HttpConfig) -> Self {
        self.config.http = config;
        self
    }

    /// The store compacts at `Moderate` and its stats join [`Health`].
    #[cfg(feature = "store")]
    pub fn store(mut self, store: steward_store::Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Any store [`Backend`](steward_store::Backend) (a Redis namespace,
    /// say): its expired entries are swept at `Moderate` (counted with the
    /// file store's in `store_expired_swept`) and its location joins
    /// [`Health`] (`memory`). A file [`Store`](steward_store::Store) is
    /// better handed to [`store`](Self::store), which also compacts it.
    #[cfg(feature = "store")]
    pub fn backend(mut self, backend: Arc<dyn steward_store::Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The tracker reports stale resources at `Moderate`, its snapshot joins
    /// [`Health`], and [`Steward::tracked_manager`] tracks pooled objects
    /// with it.
    #[cfg(feature = "tracker")]
    pub fn tracker(mut self, tracker: steward_tracker::Tracker) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// The pool reaps idle objects at `Moderate`, shrinks to `min_idle` at
    /// `Critical`, and its metrics join [`Health`]. Held weakly: a pool you
    /// drop goes as it would without the steward (its idle objects closed)
    /// and leaves the wiring. More pools can be added later with
    /// [`Steward::add_pool`].
    #[cfg(feature = "pool")]
    pub fn pool<M: steward_pool::Manager>(mut self, pool: &steward_pool::Pool<M>) -> Self {
        self.pools.push(Arc::new(pool.downgrade()));
        self
    }

    /// The session's stats join [`Health`] under `name`, and (with a
    /// tracker) it is tracked as `ws.session` while open, sized by the bytes
    /// it has queued. Held weakly: once you drop your last handle the
    /// session ends as it would without the steward (queued messages
    /// written for at most its drain timeout, no reconnecting) and leaves
    /// the wiring. More sessions can be added later with
    /// [`Steward::add_ws_session`].
    #[cfg(feature = "ws")]
    pub fn ws_session(mut self, name: &str, session: &steward_ws::Session) -> Self {
        self.ws.push((name.to_owned(), session.downgrade()));
        self
    }

    /// Like [`StewardBuilder::pool`], for a keyed pool: every key's
    /// sub-pool reaps and shrinks; [`Health`] shows all keys together.
    #[cfg(feature = "pool")]
    pub fn keyed_pool<K, M>(mut self, pool: &steward_pool::KeyedPool<K, M>) -> Self
    where
        K: Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync + 'static,
        M: steward_pool::KeyedManager<K>,
    {
        self.pools.push(Arc::new(pool.downgrade()));
        self
    }

    /// The playback stream's stats join [`Health`] under `name`, and (with a
    /// tracker) its queued audio is tracked as `audio.playback`. The steward
    /// holds it weakly: dropping your last `Arc` closes the device as usual
    /// and the stream leaves the wiring. More can be added later with
    /// [`Steward::add_playback`].
    #[cfg(feature = "audio")]
    pub fn playback(mut self, name: &str, playback: &Arc<steward_audio::Playback>) -> Self {
        self.playbacks.push((name.to_owned(), Arc::clone(playback)));
        self
    }

    /// The capture stream's stats join [`Health::capture`] under `name`,
    /// (with a tracker) its queued chunks are tracked as `audio.capture`,
    /// and at `Critical` it keeps only the newest
    /// `AudioConfig::shed_floor_ms` of them. Held weakly like playback; read
    /// it through the shared-reference methods (`Capture::recv_chunk`).
    /// More can be added later with [`Steward::add_capture`].
    #[cfg(feature = "audio")]
    pub fn capture(mut self, name: &str, capture: &Arc<steward_audio::Capture>) -> Self {
        self.captures.push((name.to_owned(), Arc::clone(capture)));
        self
    }

    /// Starts the monitor, registers the cleanup handlers and, when an
    /// address is set, the HTTP endpoint. Call it inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] outside a runtime, [`Error::Monitor`] for an
    /// invalid monitor config, [`Error::InvalidConfig`] (a non-loopback
    /// HTTP address without [`HttpConfig::allow_remote`], no connection
    /// allowed, a zero timeout), `Error::Bind` (feature `http`) when the
    /// address is taken.
    pub fn build(self) -> Result<Steward, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        #[cfg(not(feature = "http"))]
        if self.config.http_addr.is_some() {
            return Err(Error::InvalidConfig {
                field: "http_addr",
                reason: "the HTTP endpoint needs the `http` feature of steward".into(),
            });
        }
        #[cfg(feature = "http")]
        if let Some(addr) = self.config.http_addr {
            crate::http::check(addr, &self.config.http)?;
        }
        let monitor = self
            .monitor
            .config(self.config.monitor.clone())
            .build()
            .map_err(Error::Monitor)?;
        let parts = Arc::new(Parts {
            config: self.config.clone(),
            #[cfg(feature = "store")]
            store: self.store,
            #[cfg(feature = "store")]
            backend: self.backend,
            #[cfg(feature = "tracker")]
            tracker: self.tracker,
            #[cfg(feature = "pool")]
            pools: Mutex::new(self.pools),
            #[cfg(feature = "ws")]
            ws: Mutex::new(Vec::new()),
            #[cfg(feature = "realtime")]
            realtime: Mutex::new(Vec::new()),
            #[cfg(feature = "audio")]
            playbacks: Mutex::new(Vec::new()),
            #[cfg(feature = "audio")]
            captures: Mutex::new(Vec::new()),
            counters: Counters::default(),
            #[cfg(feature = "tracker")]
            last_stale: Mutex::new(Vec::new()),
            #[cfg(feature = "store")]
            log_after_compaction: AtomicU64::new(0),
            #[cfg(any(feature = "ws", feature = "audio"))]
            shed_registered: std::sync::atomic::AtomicBool::new(false),
            // Only the trim measures RSS; no files opened without it.
            rss: Mutex::new(
                self.config
                    .trim_on_critical
                    .then(steward_monitor::SystemSource::new)
                    .and_then(Result::ok),
            ),
            growth: crate::growth::GrowthState::default(),
        });
        #[cfg(feature = "ws")]
        for (name, session) in &self.ws {
            parts.add_ws(name, session);
        }
        #[cfg(feature = "audio")]
        for (name, playback) in &self.playbacks {
            parts.add_playback(name, playback);
        }
        #[cfg(feature = "audio")]
        for (name, capture) in &self.captures {
            parts.add_capture(name, capture);
        }
        #[cfg(any(feature = "ws", feature = "audio"))]
        let buffers: usize = 0;
        #[cfg(feature = "ws")]
        let buffers = buffers + self.ws.len();
        #[cfg(feature = "audio")]
        let buffers = buffers + self.playbacks.len() + self.captures.len();
        // The builder's strong handles go now: the wiring holds streams weakly.
        #[cfg(feature = "audio")]
        drop((self.playbacks, self.captures));
        register_handlers(&monitor, &parts)?;
        let growth = monitor
            .config()
            .trend
            .enabled
            .then(|| crate::growth::watch(&monitor, &parts));
        #[cfg(any(feature = "ws", feature = "audio"))]
        if buffers > 0 {
            register_shed(&monitor, &parts)?;
        }
        #[cfg(feature = "http")]
        let http_config = self.config.http.clone();
        #[cfg(feature = "http")]
        let listener = match self.config.http_addr {
            Some(addr) => Some(crate::http::bind(addr)?),
            None => None,
        };
        let inner = Arc::<Inner>::new_cyclic(|_weak| {
            #[cfg(feature = "http")]
            let (http, http_addr, http_counters) = match listener {
                Some((listener, addr)) => {
                    let server = crate::http::Server::start(listener, _weak.clone(), http_config);
                    let counters = server.counters();
                    (Some(server), Some(addr), Some(counters))
                }
                None => (None, None, None),
            };
            Inner {
                monitor,
                parts,
                started: Instant::now(),
                growth: Mutex::new(growth),
                #[cfg(feature = "http")]
                http: Mutex::new(http),
                #[cfg(feature = "http")]
                http_addr,
                #[cfg(feature = "http")]
                http_counters,
            }
        });
        tracing::info!(handlers = inner.monitor.handlers().len(), "steward started");
        Ok(Steward { inner })
    }
}

/// Handler names, as listed by [`Monitor::handlers`] and in reports.
#[cfg(feature = "pool")]
const POOLS_REAP: &str = "steward.pools.reap_idle";
#[cfg(feature = "pool")]
const POOLS_SHRINK: &str = "steward.pools.shrink_to_min_idle";
#[cfg(feature = "store")]
const STORE_COMPACT: &str = "steward.store.compact";
#[cfg(feature = "store")]
const STORE_SWEEP: &str = "steward.store.sweep_expired";
#[cfg(feature = "tracker")]
const TRACKER_STALE: &str = "steward.tracker.stale";
#[cfg(any(feature = "ws", feature = "audio"))]
const BUFFERS_SHED: &str = "steward.buffers.shed";
const ROUND_COUNT: &str = "steward.rounds";
const MALLOC_TRIM: &str = "steward.malloc_trim";

/// Registers one handler that gets a clone of `parts`.
fn on<F, Fut>(
    monitor: &Monitor,
    parts: &Arc<Parts>,
    level: Level,
    priority: i32,
    name: &'static str,
    run: F,
) -> Result<(), Error>
where
    F: Fn(Arc<Parts>, CleanupContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, BoxError>> + Send + 'static,
{
    let parts = Arc::clone(parts);
    monitor
        .on(level, priority, name, move |ctx| {
            run(Arc::clone(&parts), ctx)
        })
        .map(drop)
        .map_err(|source| Error::Handler { name, source })
}

/// The cleanup the issue asks for. Moderate handlers also run at Critical
/// (the monitor runs every handler up to the level), smallest priority
/// first: cheap in-memory work, then disk, then reporting, then the trim.
fn register_handlers(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
    on(
        monitor,
        parts,
        Level::Moderate,
        -100,
        ROUND_COUNT,
        |p, ctx| async move {
            let counter = if ctx.level >= Level::Critical {
                &p.counters.critical_rounds
            } else {
                &p.counters.moderate_rounds
            };
            counter.fetch_add(1, Relaxed);
            Ok(0)
        },
    )?;
    #[cfg(feature = "pool")]
    {
        on(
            monitor,
            parts,
            Level::Moderate,
            0,
            POOLS_REAP,
            |p, _| async move {
                let closed: usize = p.pools().iter().map(|pool| pool.reap_idle()).sum();
                p.counters
                    .pool_objects_reaped
                    .fetch_add(as_u64(closed), Relaxed);
                Ok(0)
            },
        )?;
        on(
            monitor,
            parts,
            Level::Critical,
            10,
            POOLS_SHRINK,
            |p, _| async move {
                let closed: usize = p.pools().iter().map(|pool| pool.shrink_to_min_idle()).sum();
                p.counters
                    .pool_objects_shrunk
                    .fetch_add(as_u64(closed), Relaxed);
                Ok(0)
            },
        )?;
    }
    #[cfg(feature = "store")]
    if parts.store.is_some() || parts.backend.is_some() {
        // Expired TTL entries go first, so the compaction that follows
        // writes a snapshot without them.
        on(monitor, parts, Level::Moderate, 90, STORE_SWEEP, |p, _| {
            sweep_store(p)
        })?;
    }
    #[cfg(feature = "store")]
    if parts.store.is_some() {
        on(
            monitor,
            parts,
            Level::Moderate,
            100,
            STORE_COMPACT,
            |p, _| compact_store(p),
        )?;
    }
    #[cfg(feature = "tracker")]
    if parts.tracker.is_some() {
        on(
            monitor,
            parts,
            Level::Moderate,
            200,
            TRACKER_STALE,
            |p, _| async move {
                report_stale(&p);
                Ok(0)
            },
        )?;
    }
    if parts.config.trim_on_critical && steward_monitor::MALLOC_TRIM_SUPPORTED {
        on(
            monitor,
            parts,
            Level::Critical,
            i32::MAX,
            MALLOC_TRIM,
            |p, _| trim(p),
        )?;
    }
    Ok(())
}

#[cfg(any(feature = "pool", feature = "tracker"))]
fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// How long the shed handler waits for one WebSocket session's I/O task.
#[cfg(feature = "ws")]
const WS_SHED_WAIT: Duration = Duration::from_secs(1);

/// Registers the shed handler once (with the first session or stream).
#[cfg(any(feature = "ws", feature = "audio"))]
fn register_shed(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
    if parts.shed_registered.swap(true, Relaxed) {
        return Ok(());
    }
    on(monitor, parts, Level::Critical, 20, BUFFERS_SHED, |p, _| {
        shed_buffers(p)
    })
}

/// Drops queued WebSocket messages and audio beyond each part's floor;
/// returns the bytes dropped (payload bytes, PCM16 bytes) as freed.
#[cfg(any(feature = "ws", feature = "audio"))]
async fn shed_buffers(p: Arc<Parts>) -> Result<u64, BoxError> {
    let mut freed = 0u64;
    #[cfg(feature = "ws")]
    {
        let (mut messages, mut bytes) = (0u64, 0u64);
        for session in p.ws() {
            // A session busy closing answers late: skip it, shed the others.
            let Ok(shed) = tokio::time::timeout(WS_SHED_WAIT, session.shed()).await else {
                tracing::debug!("a WebSocket session did not answer the shed in time");
                continue;
            };
            messages = messages.saturating_add(shed.messages());
            bytes = bytes.saturating_add(shed.bytes());
            // Counted as it goes: a timeout midway keeps what was done.
            p.counters
                .ws_shed_messages
                .fetch_add(shed.messages(), Relaxed);
            p.counters.ws_shed_bytes.fetch_add(shed.bytes(), Relaxed);
        }
        freed = freed.saturating_add(bytes);
        if messages > 0 {
            tracing::warn!(
                messages,
                bytes,
                "critical pressure: WebSocket queues shed to their floor"
            );
        }
    }
    #[cfg(feature = "audio")]
    {
        let frames: usize = p.playbacks().iter().map(|s| s.shed()).sum::<usize>()
            + p.captures().iter().map(|s| s.shed()).sum::<usize>();
        let frames = u64::try_from(frames).unwrap_or(u64::MAX);
        p.counters.audio_shed_frames.fetch_add(frames, Relaxed);
        freed = freed.saturating_add(frames.saturating_mul(2));
        if frames > 0 {
            tracing::warn!(
                frames,
                "critical pressure: audio queues shed to their floor"
            );
        }
    }
    Ok(freed)
}

/// Removes expired TTL entries for good (they are invisible already; this
/// frees their memory). Disk work happens on the store's writer thread.
#[cfg(feature = "store")]
async fn sweep_store(p: Arc<Parts>) -> Result<u64, BoxError> {
    let mut swept = 0;
    if let Some(store) = p.store.as_ref() {
        swept += store.sweep_expired_async().await?;
    }
    if let Some(backend) = p.backend.as_ref() {
        swept += backend.sweep_expired().await?;
    }
    p.counters
        .store_expired_swept
        .fetch_add(u64::try_from(swept).unwrap_or(u64::MAX), Relaxed);
    Ok(0)
}

/// Folds the store's log into its snapshot, when something was written
/// since the last time. Disk work happens on the store's writer thread.
#[cfg(feature = "store")]
async fn compact_store(p: Arc<Parts>) -> Result<u64, BoxError> {
    let Some(store) = p.store.as_ref() else {
        return Ok(0);
    };
    let log_bytes = store.stats().log_bytes;
    if log_bytes == 0 || log_bytes == p.log_after_compaction.load(Relaxed) {
        return Ok(0);
    }
    match store.compact_async().await {
        Ok(_) => {
            p.counters.store_compactions.fetch_add(1, Relaxed);
            p.log_after_compaction
                .store(store.stats().log_bytes, Relaxed);
            Ok(0)
        }
        Err(e) => {
            p.counters.store_compaction_failures.fetch_add(1, Relaxed);
            Err(Box::new(e))
        }
    }
}

/// Lists resources idle past `stale_after`, keeps the longest idle for
/// [`Health`] and logs a summary (kinds and counts, no names or metadata:
/// those may be user data).
#[cfg(feature = "tracker")]
fn report_stale(p: &Parts) {
    let Some(tracker) = p.tracker.as_ref() else {
        return;
    };
    // Sessions with traffic since the last look are not stale.
    #[cfg(feature = "ws")]
    for session in p.ws() {
        let _ = session.health();
    }
    #[cfg(feature = "audio")]
    for stream in p.playbacks() {
        let _ = stream.health();
    }
    #[cfg(feature = "audio")]
    for stream in p.captures() {
        let _ = stream.health();
    }
    let mut stale = tracker.stale(p.config.stale_after);
    let count = as_u64(stale.len());
    p.counters.stale_reports.fetch_add(1, Relaxed);
    p.counters.stale_resources.store(count, Relaxed);
    if count > 0 {
        let bytes: u64 = stale.iter().map(|r| r.size_bytes).sum();
        let oldest_idle_ms = stale.first().map_or(0, |r| r.idle_ms);
        tracing::warn!(
            count,
            bytes,
            oldest_idle_ms,
            "stale resources under memory pressure"
        );
    }
    stale.truncate(p.config.stale_report_max);
    *p.last_stale.lock() = stale;
}

/// `malloc_trim(0)` off the runtime's threads, with the RSS drop measured.
async fn trim(p: Arc<Parts>) -> Result<u64, BoxError> {
    let before = p.rss_bytes();
    tokio::task::spawn_blocking(steward_monitor::malloc_trim).await?;
    let after = p.rss_bytes();
    let freed = match (before, after) {
        (Some(b), Some(a)) => b.saturating_sub(a),
        _ => 0,
    };
    p.counters.malloc_trims.fetch_add(1, Relaxed);
    p.counters.malloc_trim_freed_bytes.fetch_add(freed, Relaxed);
    Ok(freed)
}

impl Steward {
    /// A builder with the default config, the real process sampler and no
    /// parts.
    pub fn builder() -> StewardBuilder {
        StewardBuilder::default()
    }

    /// The memory monitor (to subscribe to events, watch the level, or
    /// register more handlers; a handler must not hold a `Steward`).
    #[must_use]
    pub fn monitor(&self) -> &Monitor {
        &self.inner.monitor
    }

    /// The store handed in.
    #[cfg(feature = "store")]
    #[must_use]
    pub fn store(&self) -> Option<&steward_store::Store> {
        self.inner.parts.store.as_ref()
    }

    /// The tracker handed in.
    #[cfg(feature = "tracker")]
    #[must_use]
    pub fn tracker(&self) -> Option<&steward_tracker::Tracker> {
        self.inner.parts.tracker.as_ref()
    }

    /// Puts a pool under the wiring (see [`StewardBuilder::pool`]), held
    /// weakly: it leaves once closed or dropped.
    #[cfg(feature = "pool")]
    pub fn add_pool<M: steward_pool::Manager>(&self, pool: &steward_pool::Pool<M>) {
        self.inner
            .parts
            .pools
            .lock()
            .push(Arc::new(pool.downgrade()));
    }

    /// Puts a keyed pool under the wiring (see [`StewardBuilder::keyed_pool`]).
    #[cfg(feature = "pool")]
    pub fn add_keyed_pool<K, M>(&self, pool: &steward_pool::KeyedPool<K, M>)
    where
        K: Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync + 'static,
        M: steward_pool::KeyedManager<K>,
    {
        self.inner
            .parts
            .pools
            .lock()
            .push(Arc::new(pool.downgrade()));
    }

    /// Puts a playback stream under the wiring (see
    /// [`StewardBuilder::playback`]).
    #[cfg(feature = "audio")]
    pub fn add_playback(&self, name: &str, playback: &Arc<steward_audio::Playback>) {
        self.inner.parts.add_playback(name, playback);
        self.ensure_shed();
    }

    /// Puts a capture stream under the wiring (see
    /// [`StewardBuilder::capture`]).
    #[cfg(feature = "audio")]
    pub fn add_capture(&self, name: &str, capture: &Arc<steward_audio::Capture>) {
        self.inner.parts.add_capture(name, capture);
        self.ensure_shed();
    }

    /// The shed handler, from the first session or stream on. A refusal
    /// (the monitor has stopped) is logged: there is nothing to shed for.
    #[cfg(any(feature = "ws", feature = "audio"))]
    fn ensure_shed(&self) {
        if let Err(error) = register_shed(&self.inner.monitor, &self.inner.parts) {
            tracing::warn!(%error, "the buffer shed handler could not be registered");
        }
    }

    /// Puts a WebSocket session under the wiring (see
    /// [`StewardBuilder::ws_session`]), held weakly; it leaves once closed.
    #[cfg(feature = "ws")]
    pub fn add_ws_session(&self, name: &str, session: &steward_ws::Session) {
        self.inner.parts.add_ws(name, &session.downgrade());
        self.ensure_shed();
    }

    /// Puts a realtime conversation's counters in [`Health`] and `/metrics`
    /// (barge-ins and their latency, truncations, renewals, replays,
    /// protocol errors by kind, rate limits). Only a view of the counters is
    /// kept: the session lives as long as its owner keeps it; once closed it
    /// leaves the health.
    #[cfg(feature = "realtime")]
    pub fn add_realtime(&self, name: &str, session: &steward_realtime::RealtimeSession) {
        let part = crate::realtime_part::RealtimePart::new(name, session.stats_handle());
        self.inner.parts.realtime.lock().push(part);
    }

    /// Wraps a pool manager so that every object it makes is tracked by this
    /// steward's tracker as `kind`, `size_bytes` each. `None` when no tracker
    /// was handed in.
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # struct Conn;
    /// # impl steward::pool::Manager for Conn {
    /// #     type Object = Vec<u8>;
    /// #     type Error = Infallible;
    /// #     async fn create(&self) -> Result<Vec<u8>, Infallible> { Ok(vec![0; 64]) }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use steward::{Steward, pool::Pool, tracker::Tracker};
    ///
    /// let steward = Steward::builder().tracker(Tracker::new()).build()?;
    /// let manager = steward.tracked_manager(Conn, "conn", 64).expect("a tracker");
    /// let pool = Pool::builder(manager).max_size(4).build()?;
    /// steward.add_pool(&pool);
    /// let conn = pool.get().await?;
    /// assert_eq!(conn.len(), 64); // derefs through to the object
    /// assert_eq!(steward.tracker().unwrap().totals().live_count, 1);
    /// # drop(conn);
    /// steward.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[cfg(all(feature = "pool", feature = "tracker"))]
    #[must_use]
    pub fn tracked_manager<M: steward_pool::Manager>(
        &self,
        manager: M,
        kind: &str,
        size_bytes: u64,
    ) -> Option<crate::TrackedManager<M>> {
        let tracker = self.inner.parts.tracker.clone()?;
        Some(crate::TrackedManager::new(
            manager, tracker, kind, size_bytes,
        ))
    }

    /// One snapshot of every part: monitor level, sample and counters,
    /// cleanup counters, pool metrics, tracker snapshot and store stats.
    #[must_use]
    pub fn health(&self) -> Health {
        let p = &self.inner.parts;
        let c = &p.counters;
        let monitor = self.inner.monitor.stats();
        // Before the tracker snapshot: this refreshes the sessions' entries.
        #[cfg(feature = "ws")]
        let ws = p.ws().iter().map(|s| s.health()).collect();
        #[cfg(feature = "realtime")]
        let realtime = {
            let mut parts = p.realtime.lock();
            parts.retain(|r| !r.is_closed());
            parts
                .iter()
                .map(crate::realtime_part::RealtimePart::health)
                .collect()
        };
        #[cfg(feature = "audio")]
        let audio = p.playbacks().iter().filter_map(|s| s.health()).collect();
        #[cfg(feature = "audio")]
        let capture = p.captures().iter().filter_map(|s| s.health()).collect();
        Health {
            unix_ms: unix_ms(),
            uptime_ms: u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            level: self.inner.monitor.level(),
            running: self.inner.monitor.is_running(),
            sample: monitor.last_sample.clone(),
            growth: p.growth.health(&monitor.trend),
            monitor,
            cleanup: CleanupStats {
                moderate_rounds: c.moderate_rounds.load(Relaxed),
                critical_rounds: c.critical_rounds.load(Relaxed),
                pool_objects_reaped: c.pool_objects_reaped.load(Relaxed),
                pool_objects_shrunk: c.pool_objects_shrunk.load(Relaxed),
                store_compactions: c.store_compactions.load(Relaxed),
                store_compaction_failures: c.store_compaction_failures.load(Relaxed),
                store_expired_swept: c.store_expired_swept.load(Relaxed),
                stale_reports: c.stale_reports.load(Relaxed),
                stale_resources: c.stale_resources.load(Relaxed),
                #[cfg(feature = "tracker")]
                stale: p.last_stale.lock().clone(),
                malloc_trims: c.malloc_trims.load(Relaxed),
                malloc_trim_freed_bytes: c.malloc_trim_freed_bytes.load(Relaxed),
                #[cfg(feature = "ws")]
                ws_shed_messages: c.ws_shed_messages.load(Relaxed),
                #[cfg(feature = "ws")]
                ws_shed_bytes: c.ws_shed_bytes.load(Relaxed),
                #[cfg(feature = "audio")]
                audio_shed_frames: c.audio_shed_frames.load(Relaxed),
            },
            #[cfg(feature = "pool")]
            pools: p.pools().iter().filter_map(|pool| pool.metrics()).collect(),
            #[cfg(feature = "tracker")]
            tracker: p.tracker.as_ref().map(steward_tracker::Tracker::snapshot),
            #[cfg(feature = "store")]
            store: p.store.as_ref().map(crate::health::StoreHealth::of),
            #[cfg(feature = "store")]
            memory: p
                .backend
                .as_ref()
                .map(|b| crate::health::memory_shown(&b.location())),
            #[cfg(feature = "ws")]
            ws,
            #[cfg(feature = "realtime")]
            realtime,
            #[cfg(feature = "audio")]
            audio,
            #[cfg(feature = "audio")]
            capture,
            #[cfg(feature = "http")]
            http: self
                .inner
                .http_counters
                .as_deref()
                .map(crate::http::Counters::health),
        }
    }

    /// [`Steward::health`] in the Prometheus text exposition format (what
    /// `/metrics` serves).
    #[must_use]
    pub fn metrics_text(&self) -> String {
        crate::prometheus::render(&self.health())
    }

    /// Where the HTTP endpoint listens, when it was asked for.
    #[cfg(feature = "http")]
    #[must_use]
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.http_addr
    }

    /// Stops the HTTP endpoint (open connections finish their request, for
    /// at most a few seconds) and the monitor, and waits for both.
    /// Idempotent. The parts handed in stay open: close the store yourself.
    ///
    /// Cancel safety: the stop is requested on the first poll; dropping the
    /// future afterwards only skips the wait.
    pub async fn shutdown(&self) {
        #[cfg(feature = "http")]
        {
            let server = self.inner.http.lock().take();
            if let Some(server) = server {
                server.shutdown().await;
            }
        }
        let growth = self.inner.growth.lock().take();
        if let Some(growth) = growth {
            growth.stop().await;
        }
        self.inner.monitor.shutdown().await;
        tracing::info!("steward stopped");
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
