//! Process memory pressure levels and cleanup handlers.
//!
//! The monitor samples this process (RSS, virtual size), the limit it lives
//! under (the smaller of its memory cgroup's limit, v1 or v2, and physical
//! memory), the memory available to the system and PSI memory pressure; it
//! turns samples into a pressure [`Level`] with hysteresis and runs the
//! cleanup handlers registered for that level. In the spirit of Chromium's
//! memory pressure monitor, Android's `onTrimMemory` and systemd-oomd.
//!
//! - **Sampling** ([`SystemSource`]): on Linux `/proc/self/statm` is kept
//!   open and re-read with one `pread` (well under a microsecond); the cgroup,
//!   `/proc/meminfo` and PSI files likewise. Elsewhere `sysinfo`, refreshing
//!   only this process's memory and the RAM figures.
//! - **Levels** ([`Thresholds`], [`LevelMachine`]): thresholds as a fraction
//!   (0.0–1.0) of the limit, absolute RSS bytes, and optionally PSI `avg10`
//!   percentages. Rises are reported at once; falls one level at a time, each
//!   after a cooldown; while `Critical` the critical handlers run again every
//!   `critical_renotify`.
//! - **Cleanup** ([`Monitor::on`]): async handlers per level with a priority,
//!   each under a timeout; a failing, panicking or slow handler is logged,
//!   counted and reported, and the monitor carries on. Optionally
//!   [`malloc_trim`] afterwards (glibc).
//! - **Leak trend** ([`TrendMachine`], [`TrendConfig`]): after a warm-up,
//!   the growth rate of the anonymous resident memory over a sliding window
//!   as a Theil–Sen slope ([`theil_sen`]: spikes and steps do not make a
//!   trend), in bytes per hour in [`Stats::trend`]; [`Event::Growing`] when
//!   it stays above a configured rate for a configured time,
//!   [`Event::GrowthCleared`] with hysteresis. Bounded cost: at most
//!   `capacity` points (default 120) in the window.
//! - **Observing**: the level on a `watch` channel ([`Monitor::watch_level`]),
//!   [`Event`]s on a broadcast channel ([`Monitor::subscribe`]) and in
//!   `tracing`; [`Stats`] and [`Sample`] are plain serde structs.
//!
//! The monitor is a tokio task; [`Monitor::shutdown`] or dropping the last
//! handle stops it.
//!
//! ```
//! use std::time::Duration;
//! use steward_monitor::{FakeSource, Level, Monitor, MonitorConfig, Sample};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steward_monitor::Error> {
//! let mut config = MonitorConfig::default();
//! config.thresholds.moderate.fraction = Some(0.6);
//! config.thresholds.critical.fraction = Some(0.9);
//! config.cooldown = Duration::ZERO;
//!
//! // Scripted samples; `Monitor::builder().build()` samples the real process.
//! let fake = FakeSource::new(Sample::with_rss(10 << 20, 100 << 20));
//! let monitor = Monitor::builder().config(config).source(fake.clone()).build()?;
//! monitor.on(Level::Moderate, 0, "drop-caches", |ctx| async move {
//!     assert!(ctx.level >= Level::Moderate);
//!     Ok(4 << 20) // bytes freed, an estimate
//! })?;
//!
//! fake.set(Sample::with_rss(70 << 20, 100 << 20));
//! let report = monitor.check_now().await?;
//! assert_eq!(report.level, Level::Moderate);
//! assert_eq!(report.handlers[0].freed_bytes, 4 << 20);
//!
//! fake.set(Sample::with_rss(20 << 20, 100 << 20));
//! assert_eq!(monitor.check_now().await?.level, Level::None);
//! monitor.shutdown().await;
//! assert!(!monitor.is_running());
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod config;
mod error;
mod level;
#[cfg(target_os = "linux")]
mod linux;
mod monitor;
pub mod parse;
mod sample;
mod source;
pub mod theil_sen;
mod trend;
mod trim;

pub use config::MonitorConfig;
pub use error::{BoxError, Error};
pub use level::{Level, LevelMachine, LevelThresholds, Reason, Step, Thresholds};
#[cfg(target_os = "linux")]
pub use linux::read_cgroup_memory;
pub use monitor::{
    CheckReport, CleanupContext, Event, HandlerId, HandlerInfo, HandlerReport, Monitor,
    MonitorBuilder, Outcome, Stats,
};
pub use sample::{CgroupMemory, LimitSource, Sample};
pub use source::{FakeSource, ProcessMemory, SampleSource, SystemSource};
pub use trend::{
    GrowthChange, Trend, TrendConfig, TrendMachine, TrendMetric, TrendPhase, TrendStep,
};
pub use trim::{MallocInfo, SUPPORTED as MALLOC_TRIM_SUPPORTED, malloc_info, malloc_trim};
