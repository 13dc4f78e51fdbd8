//! steward keeps long-running realtime AI assistants healthy.
//!
//! This facade re-exports the focused crates behind features, so a user can
//! depend on `steward` alone or pick single crates:
//!
//! | feature | crate | what it gives |
//! |---|---|---|
//! | `store` (default) | [`steward-store`](store) | crash-safe persistent memory, `memory.json` compatible |
//! | `redis` | `steward-store/redis` | the store's Redis backend |
//! | `pool` | `steward-pool` | a generic async pool on deadpool |
//! | `tracker` | `steward-tracker` | live resources, budgets, leak reports |
//! | `monitor` | `steward-monitor` | memory pressure levels and cleanup, **plus the wiring below** |
//! | `ws` | `steward-ws` | robust WebSocket sessions (system root certificates for `wss://`) |
//! | `ws-pool` | `steward-ws/pool` | WebSocket sessions pooled with `steward-pool` |
//! | `ws-webpki-roots` | `steward-ws/webpki-roots` | Mozilla's root certificates compiled in too |
//! | `audio` | `steward-audio` | capture and playback on cpal |
//! | `audio-pipewire` | `steward-audio/pipewire` | the PipeWire audio host |
//! | `realtime` | `steward-realtime` | one realtime conversation over `ws` |
//! | `http` | (hyper) | `/health` JSON and `/metrics` Prometheus endpoint for the wiring |
//! | `full` | `store`, `pool`, `tracker`, `monitor`, `ws`, `audio`, `realtime`, `http` | |
//!
//! Enabling a feature never changes default behaviour: it only makes another
//! module (and, with `monitor`, the wiring types) available.
//!
//! ```
//! # #[cfg(feature = "store")]
//! assert_eq!(steward::store::NAME, "steward-store");
//! ```
//!
//! # The wiring (feature `monitor`)
//!
//! `Steward::builder()` takes the parts to look after and starts the
//! memory monitor with cleanup handlers connected to them:
//!
//! - at `Moderate`: pools reap idle objects (idle timeout, lifetime), the
//!   store drops expired TTL entries for good and compacts its log into
//!   `memory.json`, the tracker reports
//!   resources idle longer than `StewardConfig::stale_after`;
//! - at `Critical` (which also runs the moderate handlers): pools shrink to
//!   `min_idle`, queued WebSocket messages and audio beyond their floor are
//!   dropped and counted (`ws`, `audio`), then freed heap goes back to the
//!   OS (`malloc_trim`, glibc).
//!
//! `Steward::tracked_manager` wraps a pool manager so that pooled objects
//! are tracked without the user writing it. `Steward::health` is one serde
//! snapshot of every part; with feature `http`, `/health` serves it as JSON
//! and `/metrics` as Prometheus text.
//!
//! ```
//! # #[cfg(all(feature = "monitor", feature = "store", feature = "tracker"))]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use steward::{Steward, monitor::Level, store::Store, tracker::Tracker};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("memory.json"))?;
//! store.upsert("user_name", "Ada").await?; // in the log until compacted
//!
//! let mut config = steward::StewardConfig::default();
//! // Thresholds so low that this process is under moderate pressure.
//! config.monitor.thresholds.moderate.fraction = None;
//! config.monitor.thresholds.moderate.bytes = Some(1);
//! config.monitor.thresholds.critical.fraction = None;
//!
//! let steward = Steward::builder()
//!     .config(config)
//!     .store(store.clone())
//!     .tracker(Tracker::new())
//!     .build()?;
//! let report = steward.monitor().check_now().await?;
//! assert_eq!(report.level, Level::Moderate);
//!
//! let health = steward.health();
//! assert_eq!(health.cleanup.store_compactions, 1); // log folded into memory.json
//! assert!(std::fs::read_to_string(dir.path().join("memory.json"))?.contains("Ada"));
//! assert!(steward.metrics_text().contains("steward_memory_pressure_level 1"));
//! println!("{}", serde_json::to_string_pretty(&health)?);
//!
//! steward.shutdown().await;
//! store.close().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! With `ws`, sessions handed in (`StewardBuilder::ws_session`, held
//! weakly: a session its owner dropped ends as it would alone) join the
//! snapshot (link state, RTT, queues, reconnects, shed messages) and are
//! tracked as `ws.session` while open; at `Critical` each drops queued
//! audio beyond its floor (`ClientConfig::shed_floor`: the newest 256
//! messages / 256 KiB by default; session events and control frames stay).
//! With `audio`, playback and capture streams handed in
//! (`StewardBuilder::playback`, `StewardBuilder::capture`, held weakly)
//! join the snapshot (underruns or overflows, queued audio, device state),
//! their queued audio is tracked as `audio.playback` / `audio.capture`, and
//! at `Critical` each keeps only the newest `AudioConfig::shed_floor_ms`
//! (500 ms by default). Counts land in `CleanupStats` and in each part's
//! stats.
//!
//! The HTTP endpoint has no authentication and the snapshot names tracked
//! resources (counters, sizes and names, never memory contents: no store
//! keys or values, no queued messages or audio). `build` refuses a
//! non-loopback address unless `HttpConfig::allow_remote` is set; put it
//! behind your own proxy for that. Each connection has header, read and
//! write timeouts and a maximum age, and at most
//! `HttpConfig::max_connections` are served at once (more are refused).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The one URL redaction of steward (passwords, tokens in the query).
#[doc(inline)]
pub use steward_redact as redact;

#[cfg(feature = "store")]
#[doc(inline)]
pub use steward_store as store;

#[cfg(feature = "pool")]
#[doc(inline)]
pub use steward_pool as pool;

#[cfg(feature = "tracker")]
#[doc(inline)]
pub use steward_tracker as tracker;

#[cfg(feature = "monitor")]
#[doc(inline)]
pub use steward_monitor as monitor;

#[cfg(feature = "ws")]
#[doc(inline)]
pub use steward_ws as ws;

#[cfg(feature = "audio")]
#[doc(inline)]
pub use steward_audio as audio;
#[cfg(feature = "realtime")]
#[doc(inline)]
pub use steward_realtime as realtime;

#[cfg(feature = "monitor")]
mod error;
#[cfg(feature = "monitor")]
mod growth;
#[cfg(feature = "monitor")]
mod health;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "monitor")]
mod http_config;
#[cfg(feature = "monitor")]
mod metrics;
#[cfg(feature = "monitor")]
mod parts;
#[cfg(feature = "monitor")]
mod steward;
#[cfg(all(feature = "monitor", feature = "pool", feature = "tracker"))]
mod tracked;

#[cfg(feature = "monitor")]
pub use error::Error;
#[cfg(all(feature = "monitor", feature = "pool", feature = "tracker"))]
pub use error::TrackedError;
#[cfg(feature = "monitor")]
pub use growth::{GrowingSignal, GrowthHealth, KindGrowth};
#[cfg(feature = "http")]
pub use health::HttpHealth;
#[cfg(feature = "monitor")]
pub use health::{CleanupStats, Health};
#[cfg(feature = "monitor")]
pub use http_config::HttpConfig;
#[cfg(all(feature = "monitor", feature = "audio"))]
pub use parts::audio::{AUDIO_CAPTURE_KIND, AUDIO_PLAYBACK_KIND, AudioHealth};
#[cfg(all(feature = "monitor", feature = "realtime"))]
pub use parts::realtime::RealtimeHealth;
#[cfg(all(feature = "monitor", feature = "store"))]
pub use parts::store::StoreHealth;
#[cfg(all(feature = "monitor", feature = "ws"))]
pub use parts::ws::{WS_SESSION_KIND, WsHealth};
#[cfg(feature = "monitor")]
pub use steward::{Steward, StewardBuilder, StewardConfig};
#[cfg(all(feature = "monitor", feature = "pool", feature = "tracker"))]
pub use tracked::{TrackedManager, TrackedObject};
