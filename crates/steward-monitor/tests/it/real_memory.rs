//! The Python design's memory test, done right: real memory, real sampler,
//! real `malloc_trim`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_monitor::{Event, Level, Monitor, MonitorConfig, Outcome, SystemSource};
use tokio::time::timeout;

const MIB: u64 = 1 << 20;
const BALLAST: usize = 200 << 20;
/// Below glibc's mmap threshold, so the ballast lives on the heap and only
/// goes back to the OS through trimming.
const CHUNK: usize = 64 << 10;
const HANG_GUARD: Duration = Duration::from_secs(60);

// The RSS lock is held across awaits on purpose: the whole test is one
// measurement, and it is only ever taken by test threads, never by tasks.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_memory_rises_is_freed_and_falls() {
    let _rss = crate::rss_lock();
    let mut probe = SystemSource::new().expect("system source");
    let rss0 = probe.read_memory().expect("rss").rss_bytes;

    // Allocate and touch every byte (non-zero fill).
    let chunks: Vec<Vec<u8>> = (0..BALLAST / CHUNK)
        .map(|i| vec![u8::try_from(i % 250).unwrap() + 1; CHUNK])
        .collect();
    let rss1 = probe.read_memory().expect("rss").rss_bytes;
    assert!(
        rss1 >= rss0 + 150 * MIB,
        "allocation not resident: {rss0} -> {rss1}"
    );
    let held = Arc::new(Mutex::new(Some(chunks)));

    // Thresholds relative to the measured RSS: the ballast alone is critical,
    // and the level falls once most of it is gone, with room for what other
    // tests running in this process allocate meanwhile.
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_millis(50);
    config.cooldown = Duration::from_millis(300);
    config.critical_renotify = Duration::from_secs(3600);
    config.handler_timeout = Duration::from_secs(30);
    config.malloc_trim = true;
    config.thresholds.moderate.fraction = None;
    config.thresholds.critical.fraction = None;
    config.thresholds.moderate.bytes = Some(rss0 + 96 * MIB);
    config.thresholds.critical.bytes = Some(rss0 + 144 * MIB);
    let monitor = Monitor::builder().config(config).build().expect("monitor");
    let mut events = monitor.subscribe();
    let mut level = monitor.watch_level();
    let ballast = Arc::clone(&held);
    monitor
        .on(Level::Moderate, 0, "ballast", move |ctx| {
            let ballast = Arc::clone(&ballast);
            async move {
                assert!(ctx.sample.rss_bytes >= rss0 + 96 * MIB);
                let freed = ballast
                    .lock()
                    .unwrap()
                    .take()
                    .map_or(0, |c| c.len() * CHUNK);
                Ok(freed as u64)
            }
        })
        .expect("register");

    timeout(HANG_GUARD, level.wait_for(|l| *l == Level::Critical))
        .await
        .expect("level rose to critical")
        .expect("monitor alive");

    // The handler frees the ballast, then malloc_trim runs.
    let mut ballast_report = None;
    let mut trim_report = None;
    while trim_report.is_none() {
        let event = timeout(HANG_GUARD, events.recv())
            .await
            .expect("events")
            .expect("open");
        if let Event::HandlerRan(report) = event {
            match report.name.as_str() {
                "ballast" => ballast_report = Some(report),
                "malloc_trim" => trim_report = Some(report),
                _ => {}
            }
        }
    }
    let ballast_report = ballast_report.expect("ballast handler ran first");
    assert_eq!(ballast_report.outcome, Outcome::Ok);
    assert_eq!(ballast_report.freed_bytes, BALLAST as u64);
    assert_eq!(ballast_report.level, Level::Critical);
    assert!(held.lock().unwrap().is_none());

    // RSS really dropped, measured by the real sampler.
    let rss2 = probe.read_memory().expect("rss").rss_bytes;
    assert!(
        rss2 + 150 * MIB <= rss1,
        "RSS did not drop: before {} MiB, after {} MiB (trim measured {} MiB)",
        rss1 / MIB,
        rss2 / MIB,
        trim_report.map_or(0, |r| r.freed_bytes) / MIB
    );

    // And the level falls, one step per cooldown.
    let fell = timeout(HANG_GUARD, level.wait_for(|l| *l == Level::None)).await;
    assert!(
        fell.is_ok(),
        "level did not fall: rss0 {} MiB, rss1 {} MiB, rss2 {} MiB, now {} MiB, stats {:?}",
        rss0 / MIB,
        rss1 / MIB,
        rss2 / MIB,
        probe.read_memory().expect("rss").rss_bytes / MIB,
        monitor.stats()
    );
    let mut falls = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::LevelChanged { from, to, .. } = event {
            falls.push((from, to));
        }
    }
    assert_eq!(
        falls,
        [
            (Level::Critical, Level::Moderate),
            (Level::Moderate, Level::None)
        ]
    );
    let stats = monitor.stats();
    assert!(stats.malloc_trims >= 1);
    assert_eq!(stats.level, Level::None);
    monitor.shutdown().await;
    assert!(!monitor.is_running());
}

/// What glibc keeps after the process freed it (every other block of
/// 64 MiB: holes between live blocks, which no free() hands back) goes
/// back to the OS on the schedule alone, with no pressure level reached.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_trim_returns_what_the_allocator_kept() {
    let _rss = crate::rss_lock();
    if !steward_monitor::MALLOC_TRIM_SUPPORTED {
        return;
    }
    let mut probe = SystemSource::new().expect("system source");
    let chunks: Vec<Vec<u8>> = (0..(64 << 20) / CHUNK)
        .map(|i| vec![u8::try_from(i % 250).unwrap() + 1; CHUNK])
        .collect();
    let live: Vec<Vec<u8>> = chunks
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| (i % 2 == 1).then_some(c))
        .collect();
    let kept = probe.read_memory().expect("rss").rss_bytes;

    let mut config = MonitorConfig::default();
    // No check in this test's life: only the schedule can trim.
    config.interval = Duration::from_secs(3600);
    config.trim_every = Some(Duration::from_millis(50));
    let monitor = Monitor::builder().config(config).build().expect("monitor");
    timeout(HANG_GUARD, async {
        while monitor.stats().scheduled_trims < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("two scheduled trims");
    let stats = monitor.stats();
    let now = probe.read_memory().expect("rss").rss_bytes;
    assert_eq!(stats.checks, 0, "{stats:?}");
    assert!(
        // Measured around each trim (milliseconds): other tests of this
        // process allocating meanwhile move the RSS between `kept` and
        // `now`, rarely the trims' own figures.
        stats.malloc_trim_freed_bytes >= 16 * MIB,
        "kept {} MiB, now {} MiB, trims freed {} MiB",
        kept / MIB,
        now / MIB,
        stats.malloc_trim_freed_bytes / MIB
    );
    drop(live);
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trim_runs_unless_scheduled_or_asked_for() {
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_millis(10);
    let monitor = Monitor::builder().config(config).build().expect("monitor");
    timeout(HANG_GUARD, async {
        while monitor.stats().checks < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("twenty checks");
    let stats = monitor.stats();
    assert_eq!((stats.malloc_trims, stats.scheduled_trims), (0, 0));
    monitor.shutdown().await;
}

#[test]
fn the_trim_schedule_is_milliseconds_or_null() {
    let c: MonitorConfig = serde_json::from_str(r#"{"trim_every_ms": 60000}"#).expect("config");
    assert_eq!(c.trim_every, Some(Duration::from_secs(60)));
    let c: MonitorConfig = serde_json::from_str(r#"{"trim_every_ms": null}"#).expect("config");
    assert_eq!(c.trim_every, None);
    let shown = serde_json::to_value(MonitorConfig::default()).expect("json");
    assert_eq!(shown["trim_every_ms"], serde_json::Value::Null);
}
