//! The one snapshot of every part.

use serde::Serialize;
use steward_monitor::{Level, Sample};

/// Everything the steward knows, as plain serde data: what `/health` serves
/// as JSON and `/metrics` renders for Prometheus.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Milliseconds since the steward was built.
    pub uptime_ms: u64,
    /// The reported memory pressure level.
    pub level: Level,
    /// Whether the monitor task still runs.
    pub running: bool,
    /// The monitor's last sample (RSS, limit, PSI), if one was taken.
    pub sample: Option<Sample>,
    /// The monitor's counters.
    pub monitor: steward_monitor::Stats,
    /// The leak trend: growth per hour after the warm-up, the `Growing`
    /// signal and the tracked kinds that grew with it.
    pub growth: crate::growth::GrowthHealth,
    /// What the wiring's cleanup handlers did.
    pub cleanup: CleanupStats,
    /// Metrics of every pool under the wiring.
    #[cfg(feature = "pool")]
    pub pools: Vec<steward_pool::Metrics>,
    /// The tracker's snapshot, when a tracker was handed in.
    #[cfg(feature = "tracker")]
    pub tracker: Option<steward_tracker::Snapshot>,
    /// The store's stats, when a store was handed in.
    #[cfg(feature = "store")]
    pub store: Option<StoreHealth>,
    /// Where the backend handed to
    /// [`StewardBuilder::backend`](crate::StewardBuilder::backend) keeps
    /// the memory: a URL as the backend shows it (no password), a file by
    /// its name only.
    #[cfg(feature = "store")]
    pub memory: Option<String>,
    /// The open WebSocket sessions under the wiring.
    #[cfg(feature = "ws")]
    pub ws: Vec<crate::ws_part::WsHealth>,
    /// The realtime conversations under the wiring (closed ones leave).
    #[cfg(feature = "realtime")]
    pub realtime: Vec<crate::realtime_part::RealtimeHealth>,
    /// The playback streams under the wiring.
    #[cfg(feature = "audio")]
    pub audio: Vec<crate::audio_part::AudioHealth>,
    /// The capture streams under the wiring.
    #[cfg(feature = "audio")]
    pub capture: Vec<crate::audio_part::AudioHealth>,
    /// The HTTP endpoint's connections, when it was asked for.
    #[cfg(feature = "http")]
    pub http: Option<HttpHealth>,
}

/// The HTTP endpoint's connections since the start.
#[cfg(feature = "http")]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HttpHealth {
    /// Connections being served now.
    pub open_connections: u64,
    /// Connections served (taken within `HttpConfig::max_connections`).
    pub accepted: u64,
    /// Connections refused because `max_connections` were open.
    pub refused: u64,
    /// Connections closed by a read, write or header timeout.
    pub timed_out: u64,
    /// Connections closed because they reached `max_connection_age`.
    pub aged_out: u64,
}

/// What the wiring's cleanup handlers did since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CleanupStats {
    /// Cleanup rounds at `Moderate`.
    pub moderate_rounds: u64,
    /// Cleanup rounds at `Critical` (re-notifications included).
    pub critical_rounds: u64,
    /// Idle pool objects closed by `reap_idle` (idle timeout or lifetime).
    pub pool_objects_reaped: u64,
    /// Idle pool objects closed by `shrink_to_min_idle`.
    pub pool_objects_shrunk: u64,
    /// Store compactions (log folded into the snapshot).
    pub store_compactions: u64,
    /// Store compactions that failed.
    pub store_compaction_failures: u64,
    /// Expired TTL entries the store sweep removed for good.
    pub store_expired_swept: u64,
    /// Stale reports made by the tracker handler.
    pub stale_reports: u64,
    /// Stale resources in the last report.
    pub stale_resources: u64,
    /// The longest idle resources of the last report.
    #[cfg(feature = "tracker")]
    pub stale: Vec<steward_tracker::ResourceInfo>,
    /// `malloc_trim` calls at `Critical`.
    pub malloc_trims: u64,
    /// Sum of the RSS drops measured around them, in bytes.
    pub malloc_trim_freed_bytes: u64,
    /// Queued WebSocket messages dropped beyond their floor at `Critical`
    /// (both ways, every session).
    #[cfg(feature = "ws")]
    pub ws_shed_messages: u64,
    /// Their payload bytes.
    #[cfg(feature = "ws")]
    pub ws_shed_bytes: u64,
    /// Queued audio frames (PCM16 rate) dropped beyond their floor at
    /// `Critical` (playback and capture). For playback this is what the
    /// handler asked for; the streams' `shed_frames` count what went.
    #[cfg(feature = "audio")]
    pub audio_shed_frames: u64,
}

/// A store's file and counters.
#[cfg(feature = "store")]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// The snapshot's file name (not the whole path).
    pub file: String,
    /// Its counters.
    pub stats: steward_store::Stats,
}

/// A backend's location fit for `/health`: a URL as the backend shows it
/// (no password), a file path by its name only (no paths on the endpoint).
#[cfg(feature = "store")]
pub(crate) fn memory_shown(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    std::path::Path::new(location)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(feature = "store")]
impl StoreHealth {
    pub(crate) fn of(store: &steward_store::Store) -> Self {
        let file = store
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            file,
            stats: store.stats(),
        }
    }
}
