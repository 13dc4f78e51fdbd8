//! The wiring: one handle that owns the memory monitor and connects it to
//! the parts the user handed in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use steward_monitor::{BoxError, Level, Monitor, MonitorBuilder, MonitorConfig, SampleSource};

use crate::error::Error;
use crate::health::{CleanupStats, Health};
use crate::http_config::HttpConfig;
use crate::parts::{Parts, Pending, on};

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
    #[serde(
        rename = "stale_after_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
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

/// The monitor's own part: cleanup rounds and the trim at `Critical`.
pub(crate) struct MonitorPart {
    moderate_rounds: AtomicU64,
    critical_rounds: AtomicU64,
    malloc_trims: AtomicU64,
    malloc_trim_freed_bytes: AtomicU64,
    /// RSS reader for the trim's measured drop.
    rss: Mutex<Option<steward_monitor::SystemSource>>,
}

impl MonitorPart {
    pub(crate) fn new(trim_on_critical: bool) -> Self {
        Self {
            moderate_rounds: AtomicU64::new(0),
            critical_rounds: AtomicU64::new(0),
            malloc_trims: AtomicU64::new(0),
            malloc_trim_freed_bytes: AtomicU64::new(0),
            // Only the trim measures RSS; no files opened without it.
            rss: Mutex::new(
                trim_on_critical
                    .then(steward_monitor::SystemSource::new)
                    .and_then(Result::ok),
            ),
        }
    }

    fn rss_bytes(&self) -> Option<u64> {
        let mut rss = self.rss.lock();
        rss.as_mut()?.read_memory().ok().map(|m| m.rss_bytes)
    }

    /// The rounds and trims; every part fills its own counters.
    fn cleanup(&self) -> CleanupStats {
        CleanupStats {
            moderate_rounds: self.moderate_rounds.load(Relaxed),
            critical_rounds: self.critical_rounds.load(Relaxed),
            malloc_trims: self.malloc_trims.load(Relaxed),
            malloc_trim_freed_bytes: self.malloc_trim_freed_bytes.load(Relaxed),
            ..CleanupStats::default()
        }
    }
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
    /// What each part collected (see the `parts` modules).
    pub(crate) parts: Pending,
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
            parts: Pending::default(),
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
        let parts = Arc::new(Parts::new(self.config.clone(), self.parts));
        register_handlers(&monitor, &parts)?;
        let growth = monitor
            .config()
            .trend
            .enabled
            .then(|| crate::growth::watch(&monitor, &parts));
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
const ROUND_COUNT: &str = "steward.rounds";
const MALLOC_TRIM: &str = "steward.malloc_trim";

/// The cleanup the issue asks for. Moderate handlers also run at Critical
/// (the monitor runs every handler up to the level), smallest priority
/// first: cheap in-memory work, then disk, then reporting, then the trim.
/// The rounds count first; each part registers its own handlers.
fn register_handlers(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
    on(
        monitor,
        parts,
        Level::Moderate,
        -100,
        ROUND_COUNT,
        |p, ctx| async move {
            let counter = if ctx.level >= Level::Critical {
                &p.monitor.critical_rounds
            } else {
                &p.monitor.moderate_rounds
            };
            counter.fetch_add(1, Relaxed);
            Ok(0)
        },
    )?;
    Parts::register(monitor, parts)?;
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

/// `malloc_trim(0)` off the runtime's threads, with the RSS drop measured.
async fn trim(p: Arc<Parts>) -> Result<u64, BoxError> {
    let m = &p.monitor;
    let before = m.rss_bytes();
    tokio::task::spawn_blocking(steward_monitor::malloc_trim).await?;
    let after = m.rss_bytes();
    let freed = match (before, after) {
        (Some(b), Some(a)) => b.saturating_sub(a),
        _ => 0,
    };
    m.malloc_trims.fetch_add(1, Relaxed);
    m.malloc_trim_freed_bytes.fetch_add(freed, Relaxed);
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

    /// The parts under the wiring (for their methods on `Steward`).
    #[cfg_attr(
        not(any(
            feature = "store",
            feature = "pool",
            feature = "tracker",
            feature = "ws",
            feature = "audio",
            feature = "realtime"
        )),
        allow(dead_code)
    )]
    pub(crate) fn parts(&self) -> &Arc<Parts> {
        &self.inner.parts
    }

    /// One snapshot of every part: monitor level, sample and counters,
    /// cleanup counters, pool metrics, tracker snapshot and store stats.
    #[must_use]
    pub fn health(&self) -> Health {
        let p = &self.inner.parts;
        let monitor = self.inner.monitor.stats();
        let mut health = Health::new(
            self.inner.monitor.level(),
            self.inner.monitor.is_running(),
            p.growth.health(&monitor.trend),
            monitor,
            p.monitor.cleanup(),
        );
        health.uptime_ms =
            u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        p.health(&mut health);
        #[cfg(feature = "http")]
        {
            health.http = self
                .inner
                .http_counters
                .as_deref()
                .map(crate::http::Counters::health);
        }
        health
    }

    /// [`Steward::health`] in the Prometheus text exposition format (what
    /// `/metrics` serves).
    #[must_use]
    pub fn metrics_text(&self) -> String {
        crate::metrics::render(&self.health())
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
