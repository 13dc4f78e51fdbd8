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
    /// Stats of every pool under the wiring.
    #[cfg(feature = "pool")]
    pub pools: Vec<steward_pool::Stats>,
    /// The tracker's snapshot, when a tracker was handed in.
    #[cfg(feature = "tracker")]
    pub tracker: Option<steward_tracker::Snapshot>,
    /// The store's stats, when a store was handed in.
    #[cfg(feature = "store")]
    pub store: Option<crate::parts::store::StoreHealth>,
    /// Where the backend handed to
    /// [`StewardBuilder::backend`](crate::StewardBuilder::backend) keeps
    /// the memory: a URL as the backend shows it (no password), a file by
    /// its name only.
    #[cfg(feature = "store")]
    pub memory: Option<String>,
    /// The open WebSocket sessions under the wiring.
    #[cfg(feature = "ws")]
    pub ws: Vec<crate::parts::ws::WsHealth>,
    /// The realtime conversations under the wiring (closed ones leave).
    #[cfg(feature = "realtime")]
    pub realtime: Vec<crate::parts::realtime::RealtimeHealth>,
    /// The playback streams under the wiring.
    #[cfg(feature = "audio")]
    pub audio: Vec<crate::parts::audio::AudioHealth>,
    /// The capture streams under the wiring.
    #[cfg(feature = "audio")]
    pub capture: Vec<crate::parts::audio::AudioHealth>,
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

impl Health {
    /// The steward's own sections; every part's section empty, for the
    /// parts to fill.
    pub(crate) fn new(
        level: Level,
        running: bool,
        growth: crate::growth::GrowthHealth,
        monitor: steward_monitor::Stats,
        cleanup: CleanupStats,
    ) -> Self {
        Self {
            unix_ms: unix_ms(),
            uptime_ms: 0,
            level,
            running,
            sample: monitor.last_sample.clone(),
            monitor,
            growth,
            cleanup,
            #[cfg(feature = "pool")]
            pools: Vec::new(),
            #[cfg(feature = "tracker")]
            tracker: None,
            #[cfg(feature = "store")]
            store: None,
            #[cfg(feature = "store")]
            memory: None,
            #[cfg(feature = "ws")]
            ws: Vec::new(),
            #[cfg(feature = "realtime")]
            realtime: Vec::new(),
            #[cfg(feature = "audio")]
            audio: Vec::new(),
            #[cfg(feature = "audio")]
            capture: Vec::new(),
            #[cfg(feature = "http")]
            http: None,
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
