//! Memory pressure from the real monitor runs the cleanup on real parts.

use std::time::Duration;

use steward::monitor::{Level, Outcome};
use steward::pool::{Error as PoolError, Pool};
use steward::store::Store;
use steward::tracker::{Budget, Tracker};
use steward::{Error, Steward, StewardConfig, TrackedError, TrackedManager};

use crate::common::{Buffers, eventually, pressure};

const KIND: &str = "pool.buffer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderate_pressure_reaps_compacts_and_reports_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.json");
    let store = Store::open(&path).unwrap();
    for (k, v) in [("user_name", "Ada"), ("city", "Lyon"), ("coffee", "strong")] {
        store.upsert(k, v).await.unwrap();
    }
    assert!(store.stats().log_bytes > 0);
    assert_eq!(store.stats().compactions, 0);
    let on_disk_before = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(!on_disk_before.contains("Lyon"), "written to the log only");

    let tracker = Tracker::new();
    let session = tracker.track("ws.session", 100).unwrap();
    let manager = TrackedManager::new(Buffers, tracker.clone(), KIND, 4096);
    let pool = Pool::builder(manager)
        .name("buffers")
        .max_size(8)
        .idle_timeout(Some(Duration::from_millis(1)))
        .reaper_interval(None)
        .build()
        .unwrap();
    let held: Vec<_> = [
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    ]
    .into();
    drop(held);
    assert_eq!(pool.stats().idle, 3);
    assert_eq!(tracker.kind(KIND).unwrap().totals.live_count, 3);
    tokio::time::sleep(Duration::from_millis(20)).await; // past the idle timeout

    // The background task samples the real process every 50 ms.
    let steward = Steward::builder()
        .config(pressure(false, Duration::from_millis(50)))
        .store(store.clone())
        .tracker(tracker.clone())
        .pool(&pool)
        .build()
        .unwrap();
    eventually("a moderate cleanup round", || {
        steward.health().cleanup.moderate_rounds >= 1 && steward.health().cleanup.stale_reports >= 1
    })
    .await;

    let h = steward.health();
    assert_eq!(h.level, Level::Moderate);
    assert_eq!(
        h.monitor.handler_failures + h.monitor.handler_panics + h.monitor.handler_timeouts,
        0
    );
    // Pool: the three idle objects were reaped, and the tracker saw them go.
    assert_eq!(h.cleanup.pool_objects_reaped, 3);
    assert_eq!(h.pools.len(), 1);
    assert_eq!((h.pools[0].idle, h.pools[0].closed.idle), (0, 3));
    let tracked = h.tracker.as_ref().unwrap();
    let kind = tracked.kinds.iter().find(|k| k.kind == KIND).unwrap();
    assert_eq!(
        (
            kind.totals.live_count,
            kind.totals.tracked_count,
            kind.totals.released_count
        ),
        (0, 3, 3)
    );
    // Store: the log was folded into memory.json.
    let store_health = h.store.as_ref().unwrap();
    assert_eq!(store_health.file, "memory.json");
    assert!(store_health.stats.compactions >= 1);
    assert_eq!(h.cleanup.store_compactions, 1);
    let on_disk = std::fs::read_to_string(&path).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(parsed["city"], "Lyon");
    assert_eq!(parsed["coffee"], "strong");
    // Tracker: the untouched session is reported stale.
    assert!(h.cleanup.stale_resources >= 1);
    assert!(h.cleanup.stale.iter().any(|r| r.kind == "ws.session"));
    // No critical work at moderate pressure.
    assert_eq!(
        (
            h.cleanup.critical_rounds,
            h.cleanup.pool_objects_shrunk,
            h.cleanup.malloc_trims
        ),
        (0, 0, 0)
    );
    // The snapshot is plain serde data.
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["level"], "moderate");
    assert_eq!(json["pools"][0]["name"], "buffers");

    drop(session);
    steward.shutdown().await;
    assert!(!steward.monitor().is_running());
    assert!(!steward.health().running);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_pressure_shrinks_pools_to_min_idle_and_trims() {
    let tracker = Tracker::new();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("memory.json")).unwrap();
    store.upsert("k", 1).await.unwrap();
    // Sampling in the background only once a day: rounds run on check_now.
    let steward = Steward::builder()
        .config(pressure(true, Duration::from_secs(86_400)))
        .tracker(tracker.clone())
        .store(store.clone())
        .build()
        .unwrap();
    let manager = steward.tracked_manager(Buffers, KIND, 4096).unwrap();
    let pool = Pool::builder(manager)
        .name("buffers")
        .max_size(8)
        .min_idle(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .reaper_interval(None)
        .build()
        .unwrap();
    steward.add_pool(&pool);
    let held: Vec<_> = futures_all(&pool, 4).await;
    drop(held);
    assert_eq!(pool.stats().idle, 4);

    let report = steward.monitor().check_now().await.unwrap();
    assert_eq!(report.level, Level::Critical);
    let names: Vec<&str> = report.handlers.iter().map(|r| r.name.as_str()).collect();
    let mut expected = vec![
        "steward.rounds",
        "steward.pools.reap_idle",
        "steward.pools.shrink_to_min_idle",
        "steward.store.sweep_expired",
        "steward.store.compact",
        "steward.tracker.stale",
    ];
    if steward::monitor::MALLOC_TRIM_SUPPORTED {
        expected.push("steward.malloc_trim");
    }
    assert_eq!(
        names, expected,
        "handlers run cheapest first, the trim last"
    );
    assert!(report.handlers.iter().all(|r| r.outcome == Outcome::Ok));

    let h = steward.health();
    assert_eq!(h.level, Level::Critical);
    assert_eq!(h.cleanup.critical_rounds, 1);
    assert_eq!(h.cleanup.pool_objects_shrunk, 3);
    assert_eq!(h.cleanup.pool_objects_reaped, 0, "no idle timeout set");
    assert_eq!((h.pools[0].idle, h.pools[0].closed.shrink), (1, 3));
    assert_eq!(tracker.kind(KIND).unwrap().totals.live_count, 1);
    let trims = u64::from(steward::monitor::MALLOC_TRIM_SUPPORTED);
    assert_eq!(h.cleanup.malloc_trims, trims);
    assert_eq!(h.cleanup.store_compactions, 1);

    // A critical re-notification with nothing new written: no second
    // compaction, but the round and the trim run again. Past the 1 ms
    // re-notify interval on the monitor's real clock (not a synchronisation).
    tokio::time::sleep(Duration::from_millis(10)).await;
    let again = steward.monitor().check_now().await.unwrap();
    assert!(!again.handlers.is_empty(), "critical re-notifies");
    let h = steward.health();
    assert_eq!(h.cleanup.critical_rounds, 2);
    assert_eq!(h.cleanup.store_compactions, 1);
    assert_eq!(h.cleanup.malloc_trims, 2 * trims);
    // After a write it compacts again.
    store.upsert("k", 2).await.unwrap();
    // Past the re-notify interval again.
    tokio::time::sleep(Duration::from_millis(10)).await;
    steward.monitor().check_now().await.unwrap();
    assert_eq!(steward.health().cleanup.store_compactions, 2);

    // A closed pool leaves the wiring.
    pool.close();
    assert!(steward.health().pools.is_empty());
    steward.shutdown().await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressure_sweeps_expired_entries_before_compacting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.json");
    let clock = steward::store::ManualClock::new(1_000_000);
    let store = Store::builder(&path)
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    store.upsert("user_name", "Ada").await.unwrap();
    store
        .upsert_with_ttl("weather", "rain", Duration::from_secs(60))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(store.get("weather"), None, "invisible once expired");
    let steward = Steward::builder()
        .config(pressure(true, Duration::from_secs(86_400)))
        .store(store.clone())
        .build()
        .unwrap();

    steward.monitor().check_now().await.unwrap();
    let h = steward.health();
    assert_eq!(h.cleanup.store_expired_swept, 1);
    assert_eq!(h.cleanup.store_compactions, 1);
    // The compaction after the sweep wrote a snapshot without the entry.
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk, serde_json::json!({"user_name": "Ada"}));
    assert!(
        steward
            .metrics_text()
            .contains("steward_cleanup_store_expired_swept_total 1")
    );

    // Nothing left to sweep: the counter stays.
    steward.monitor().check_now().await.unwrap();
    assert_eq!(steward.health().cleanup.store_expired_swept, 1);
    steward.shutdown().await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressure_sweeps_any_backend_handed_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.json");
    let clock = steward::store::ManualClock::new(1_000_000);
    let store = Store::builder(&path)
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    store
        .upsert_with_ttl("weather", "rain", Duration::from_secs(60))
        .await
        .unwrap();
    store.upsert("user_name", "Ada").await.unwrap();
    clock.advance(Duration::from_secs(61));
    // Through the trait only, as a Redis namespace would come.
    let backend: std::sync::Arc<dyn steward::store::Backend> = std::sync::Arc::new(store.clone());
    let steward = Steward::builder()
        .config(pressure(true, Duration::from_secs(86_400)))
        .backend(backend)
        .build()
        .unwrap();
    // A file's name only, as for the file store: no paths on /health.
    assert_eq!(steward.health().memory.as_deref(), Some("memory.json"));

    steward.monitor().check_now().await.unwrap();
    let h = steward.health();
    assert_eq!(h.cleanup.store_expired_swept, 1);
    // A backend is swept, not compacted (that is the file store's own).
    assert_eq!(h.cleanup.store_compactions, 0);
    // Nothing left to sweep: the counter stays.
    steward.monitor().check_now().await.unwrap();
    assert_eq!(steward.health().cleanup.store_expired_swept, 1);
    steward.shutdown().await;
    store.close().await.unwrap();
}

async fn futures_all<M: steward::pool::Manager>(
    pool: &Pool<M>,
    n: usize,
) -> Vec<steward::pool::Pooled<M>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(pool.get().await.unwrap());
    }
    out
}

#[tokio::test]
async fn tracked_manager_obeys_hard_budgets_and_releases_detached_objects() {
    let tracker = Tracker::builder()
        .budget(KIND, Budget::new().with_hard_count(2))
        .build()
        .unwrap();
    let steward = Steward::builder().tracker(tracker.clone()).build().unwrap();
    let pool = Pool::builder(steward.tracked_manager(Buffers, KIND, 4096).unwrap())
        .max_size(4)
        .reaper_interval(None)
        .build()
        .unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    assert_eq!(a.len(), 4096);
    let refused = pool.get().await.unwrap_err();
    match &refused {
        PoolError::Create {
            source: TrackedError::Tracker { kind, .. },
            ..
        } => assert_eq!(kind, KIND),
        other => panic!("expected a tracker refusal, got {other:?}"),
    }
    assert_eq!(tracker.kind(KIND).unwrap().rejected, 1);
    assert_eq!(pool.stats().create_errors, 1);
    // A detached object leaves the tracker when its wrapper is unwrapped.
    let bare: Vec<u8> = steward::pool::Pooled::take(a).into_inner();
    assert_eq!(bare.len(), 4096);
    assert_eq!(tracker.totals().live_count, 1);
    drop(b);
    pool.close();
    assert_eq!(tracker.totals().live_count, 0);
    steward.shutdown().await;
}

#[test]
fn build_outside_a_runtime_is_an_error() {
    let err = Steward::builder().build().unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err}");
}

#[tokio::test]
async fn invalid_monitor_config_is_refused() {
    let mut config = StewardConfig::default();
    config.monitor.interval = Duration::ZERO;
    let err = Steward::builder().config(config).build().unwrap_err();
    assert!(matches!(err, Error::Monitor(_)), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn no_pressure_no_cleanup_and_shutdown_is_idempotent() {
    let mut config = StewardConfig::default();
    // Thresholds no process reaches.
    config.monitor.thresholds.moderate.fraction = Some(1.0);
    config.monitor.thresholds.critical.fraction = Some(1.0);
    let steward = Steward::builder().config(config).build().unwrap();
    let report = steward.monitor().check_now().await.unwrap();
    assert_eq!(report.level, Level::None);
    assert!(report.handlers.is_empty());
    let h = steward.health();
    assert!(h.sample.as_ref().unwrap().rss_bytes > 0, "a real sample");
    assert_eq!(h.cleanup, steward::CleanupStats::default());
    let clone = steward.clone();
    steward.shutdown().await;
    clone.shutdown().await;
    assert!(!clone.monitor().is_running());
}

struct PerKey;

impl steward::pool::KeyedManager<String> for PerKey {
    type Object = Vec<u8>;
    type Error = std::convert::Infallible;

    async fn create(&self, key: &String) -> Result<Vec<u8>, Self::Error> {
        Ok(key.as_bytes().to_vec())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_pools_reap_every_key() {
    use steward::pool::{KeyedPool, KeyedPoolConfig};
    let mut config = KeyedPoolConfig::default();
    config.per_key.name = "per-host".into();
    config.per_key.idle_timeout = Some(Duration::from_millis(1));
    config.per_key.reaper_interval = None;
    config.max_total = 8;
    let pool = KeyedPool::builder(PerKey).config(config).build().unwrap();
    for key in ["a", "b", "c"] {
        drop(pool.get(&key.to_owned()).await.unwrap());
    }
    assert_eq!(pool.stats().total.idle, 3);
    tokio::time::sleep(Duration::from_millis(20)).await; // past the idle timeout
    let steward = Steward::builder()
        .config(pressure(false, Duration::from_secs(86_400)))
        .keyed_pool(&pool)
        .build()
        .unwrap();
    assert_eq!(
        steward.monitor().check_now().await.unwrap().level,
        Level::Moderate
    );
    let h = steward.health();
    assert_eq!(h.cleanup.pool_objects_reaped, 3);
    assert_eq!(
        (
            h.pools[0].name.as_str(),
            h.pools[0].idle,
            h.pools[0].closed.idle
        ),
        ("per-host", 0, 3)
    );
    pool.close();
    assert!(
        steward.health().pools.is_empty(),
        "a closed keyed pool leaves"
    );
    steward.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_its_owner_dropped_goes_with_its_objects() {
    let tracker = Tracker::new();
    let steward = Steward::builder()
        .config(pressure(false, Duration::from_secs(3600)))
        .tracker(tracker.clone())
        .build()
        .unwrap();
    let manager = steward.tracked_manager(Buffers, "pool.buffer", 4096);
    let pool = Pool::builder(manager.unwrap())
        .reaper_interval(None)
        .build()
        .unwrap();
    steward.add_pool(&pool);
    drop(pool.get().await.unwrap());
    assert_eq!(steward.health().pools.len(), 1);
    assert_eq!(tracker.kind("pool.buffer").unwrap().totals.live_count, 1);

    // The owner lets go: the idle object is closed and the pool leaves.
    drop(pool);
    eventually("the pool's idle object to be closed", || {
        tracker
            .kind("pool.buffer")
            .is_none_or(|k| k.totals.live_count == 0)
    })
    .await;
    assert!(steward.health().pools.is_empty());
    steward.shutdown().await;
}
