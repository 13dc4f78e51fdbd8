//! The monitor task with a scripted source: handler order, failures, panics,
//! timeouts, re-notification, cooldown, events, shutdown and drop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_monitor::{
    Error, Event, FakeSource, Level, Monitor, MonitorConfig, Outcome, Reason, Sample,
};
use tokio::sync::broadcast;

const LIMIT: u64 = 1000 << 20;
const DAY: Duration = Duration::from_secs(86_400);

fn at(share_percent: u64) -> Sample {
    Sample::with_rss(LIMIT / 100 * share_percent, LIMIT)
}

/// Moderate at 60 %, critical at 80 %, no background ticks unless asked.
fn config() -> MonitorConfig {
    let mut c = MonitorConfig::default();
    c.interval = DAY;
    c.cooldown = Duration::from_secs(10);
    c.critical_renotify = Duration::from_secs(30);
    c.handler_timeout = Duration::from_secs(1);
    c.thresholds.moderate.fraction = Some(0.6);
    c.thresholds.critical.fraction = Some(0.8);
    c
}

fn start(config: MonitorConfig) -> (Monitor, FakeSource) {
    let fake = FakeSource::new(at(10));
    let monitor = Monitor::builder()
        .config(config)
        .source(fake.clone())
        .build()
        .expect("build");
    (monitor, fake)
}

type Log = Arc<Mutex<Vec<String>>>;

fn logger(monitor: &Monitor, log: &Log, level: Level, priority: i32, name: &'static str) {
    let log = Arc::clone(log);
    monitor
        .on(level, priority, name, move |ctx| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(format!("{name}@{}", ctx.level));
                Ok(1000)
            }
        })
        .expect("register");
}

fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn handlers_run_in_priority_order_for_their_levels() {
    let (monitor, fake) = start(config());
    let log: Log = Arc::default();
    logger(&monitor, &log, Level::Critical, 0, "crit-first");
    logger(&monitor, &log, Level::Moderate, 5, "mod-late");
    logger(&monitor, &log, Level::Moderate, -3, "mod-early");
    logger(&monitor, &log, Level::Moderate, 5, "mod-late-2");

    let listed: Vec<(String, i32)> = monitor
        .handlers()
        .into_iter()
        .map(|h| (h.name, h.priority))
        .collect();
    assert_eq!(
        listed,
        [
            ("mod-early".to_owned(), -3),
            ("crit-first".to_owned(), 0),
            ("mod-late".to_owned(), 5),
            ("mod-late-2".to_owned(), 5)
        ]
    );

    fake.set(at(65));
    let report = monitor.check_now().await.expect("check");
    assert_eq!(report.level, Level::Moderate);
    assert_eq!(report.reason, Some(Reason::Rising));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "mod-early@moderate",
            "mod-late@moderate",
            "mod-late-2@moderate"
        ]
    );
    log.lock().unwrap().clear();

    // Critical runs the moderate handlers too, all by priority.
    fake.set(at(90));
    let report = monitor.check_now().await.expect("check");
    assert_eq!(report.change, Some((Level::Moderate, Level::Critical)));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "mod-early@critical",
            "crit-first@critical",
            "mod-late@critical",
            "mod-late-2@critical"
        ]
    );
    assert_eq!(
        report.handlers.iter().map(|h| h.freed_bytes).sum::<u64>(),
        4000
    );
    let stats = monitor.stats();
    assert_eq!(
        (
            stats.handler_runs,
            stats.freed_bytes_reported,
            stats.notifications
        ),
        (7, 7000, 2)
    );
    assert_eq!(monitor.level(), Level::Critical);
}

#[tokio::test(start_paused = true)]
async fn failing_panicking_and_slow_handlers_do_not_stop_the_monitor() {
    let (monitor, fake) = start(config());
    let mut events = monitor.subscribe();
    let log: Log = Arc::default();
    monitor
        .on(Level::Moderate, 0, "fails", |_| async {
            Err(std::io::Error::other("cache locked").into())
        })
        .expect("register");
    monitor
        .on(Level::Moderate, 1, "panics", |_| async {
            panic!("boom in handler")
        })
        .expect("register");
    monitor
        .on(
            Level::Moderate,
            2,
            "panics-sync",
            |_| -> std::future::Ready<_> { panic!("boom before the future") },
        )
        .expect("register");
    monitor
        .on(Level::Moderate, 3, "hangs", |_| async {
            tokio::time::sleep(DAY).await;
            Ok(1)
        })
        .expect("register");
    logger(&monitor, &log, Level::Moderate, 4, "fine");

    fake.set(at(70));
    let report = monitor.check_now().await.expect("check");
    let outcomes: Vec<_> = report
        .handlers
        .iter()
        .map(|h| (h.name.as_str(), h.outcome.clone()))
        .collect();
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert!(
        matches!(&outcomes[0], ("fails", Outcome::Failed { error }) if error.contains("cache locked"))
    );
    assert!(
        matches!(&outcomes[1], ("panics", Outcome::Panicked { message }) if message.contains("boom in handler"))
    );
    assert!(
        matches!(&outcomes[2], ("panics-sync", Outcome::Panicked { message }) if message.contains("before the future"))
    );
    assert_eq!(outcomes[3], ("hangs", Outcome::TimedOut));
    assert_eq!(outcomes[4], ("fine", Outcome::Ok));
    assert_eq!(*log.lock().unwrap(), ["fine@moderate"]);

    let stats = monitor.stats();
    assert_eq!(
        (
            stats.handler_failures,
            stats.handler_panics,
            stats.handler_timeouts,
            stats.handler_runs
        ),
        (1, 2, 1, 5)
    );
    let ran = drain(&mut events)
        .into_iter()
        .filter(|e| matches!(e, Event::HandlerRan(_)))
        .count();
    assert_eq!(ran, 5);
    // Still working afterwards.
    fake.set(at(90));
    assert_eq!(
        monitor.check_now().await.expect("check").level,
        Level::Critical
    );
    assert!(monitor.is_running());
}

#[tokio::test(start_paused = true)]
async fn critical_renotifies_at_the_interval_and_falls_after_cooldowns() {
    let (monitor, fake) = start(config());
    let log: Log = Arc::default();
    logger(&monitor, &log, Level::Critical, 0, "crit");
    fake.set(at(95));
    assert_eq!(
        monitor.check_now().await.expect("check").reason,
        Some(Reason::Rising)
    );
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(monitor.check_now().await.expect("check").reason, None);
    tokio::time::advance(Duration::from_secs(11)).await;
    let again = monitor.check_now().await.expect("check");
    assert_eq!(again.reason, Some(Reason::Renotify));
    assert_eq!(again.handlers.len(), 1);
    assert_eq!(log.lock().unwrap().len(), 2);
    assert_eq!(monitor.stats().renotifications, 1);

    // Pressure gone: Critical, then Moderate after 10 s, None after 10 more.
    let mut level = monitor.watch_level();
    fake.set(at(5));
    assert_eq!(
        monitor.check_now().await.expect("check").level,
        Level::Critical
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let r = monitor.check_now().await.expect("check");
    assert_eq!(r.change, Some((Level::Critical, Level::Moderate)));
    assert!(r.handlers.is_empty(), "falling does not run handlers");
    assert_eq!(*level.borrow_and_update(), Level::Moderate);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        monitor.check_now().await.expect("check").level,
        Level::Moderate
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(monitor.check_now().await.expect("check").level, Level::None);
    assert!(level.has_changed().expect("open"));
    assert_eq!(*level.borrow_and_update(), Level::None);
    assert_eq!(monitor.stats().level_changes, 3);
}

#[tokio::test(start_paused = true)]
async fn background_task_samples_on_its_own() {
    let mut c = config();
    c.interval = Duration::from_secs(2);
    c.cooldown = Duration::from_secs(6);
    let (monitor, fake) = start(c);
    let mut events = monitor.subscribe();
    let mut level = monitor.watch_level();
    let log: Log = Arc::default();
    logger(&monitor, &log, Level::Moderate, 0, "m");

    fake.set(at(70));
    let risen_at = tokio::time::Instant::now();
    tokio::time::timeout(DAY, level.wait_for(|l| *l == Level::Moderate))
        .await
        .expect("rose")
        .expect("open");
    let rose = risen_at.elapsed();
    assert!(
        rose <= Duration::from_secs(2),
        "first tick is one interval after start: {rose:?}"
    );

    fake.set(at(10));
    let fall_from = tokio::time::Instant::now();
    tokio::time::timeout(DAY, level.wait_for(|l| *l == Level::None))
        .await
        .expect("fell")
        .expect("open");
    // Paused clock: this is logical time, not a timing race.
    assert!(fall_from.elapsed() >= Duration::from_secs(6));

    let kinds: Vec<String> = drain(&mut events)
        .iter()
        .map(|e| match e {
            Event::LevelChanged { from, to, .. } => format!("{from}->{to}"),
            Event::HandlerRan(r) => format!("ran {}", r.name),
            Event::SampleFailed { .. } => "failed".into(),
            _ => "other".into(),
        })
        .collect();
    assert_eq!(kinds, ["none->moderate", "ran m", "moderate->none"]);
    assert!(fake.taken() >= 4);
    assert!(monitor.stats().checks >= 4);
}

#[tokio::test(start_paused = true)]
async fn sample_errors_are_counted_and_broadcast() {
    let (monitor, fake) = start(config());
    let mut events = monitor.subscribe();
    fake.push_error("statm vanished");
    let err = monitor.check_now().await.expect_err("fails");
    assert!(matches!(err, Error::Source { .. }), "{err}");
    assert!(
        std::error::Error::source(&err).is_some_and(|s| s.to_string().contains("statm vanished"))
    );
    assert!(
        matches!(&drain(&mut events)[..], [Event::SampleFailed { error }] if error.contains("statm vanished"))
    );
    assert_eq!(monitor.stats().sample_errors, 1);
    assert_eq!(
        monitor.check_now().await.expect("next one works").level,
        Level::None
    );
    assert_eq!(
        monitor.sample_now().expect("sample").rss_bytes,
        at(10).rss_bytes
    );
    assert_eq!(monitor.stats().samples, 3);
}

#[tokio::test(start_paused = true)]
async fn registration_rules_and_removal() {
    let (monitor, fake) = start(config());
    let err = monitor
        .on(Level::None, 0, "never", |_| async { Ok(0) })
        .expect_err("refused");
    assert!(err.to_string().contains("never"), "{err}");
    let log: Log = Arc::default();
    logger(&monitor, &log, Level::Moderate, 0, "stays");
    let gone = monitor
        .on(Level::Moderate, 0, "gone", |_| async { Ok(0) })
        .expect("register");
    assert!(monitor.remove(gone));
    assert!(!monitor.remove(gone));
    fake.set(at(70));
    let report = monitor.check_now().await.expect("check");
    assert_eq!(report.handlers.len(), 1);
    assert_eq!(report.handlers[0].name, "stays");
}

#[tokio::test(start_paused = true)]
async fn malloc_trim_runs_after_the_handlers_when_enabled() {
    let mut c = config();
    c.malloc_trim = true;
    let (monitor, fake) = start(c);
    fake.set(at(70));
    let report = monitor.check_now().await.expect("check");
    let names: Vec<&str> = report.handlers.iter().map(|h| h.name.as_str()).collect();
    if steward_monitor::MALLOC_TRIM_SUPPORTED {
        assert_eq!(names, ["malloc_trim"]);
        assert_eq!(monitor.stats().malloc_trims, 1);
    } else {
        assert!(names.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn events_and_stats_serialise() {
    let (monitor, fake) = start(config());
    let mut events = monitor.subscribe();
    logger(&monitor, &Log::default(), Level::Moderate, 0, "m");
    fake.set(at(70));
    monitor.check_now().await.expect("check");
    let json: Vec<serde_json::Value> = drain(&mut events)
        .iter()
        .map(|e| serde_json::to_value(e).expect("event"))
        .collect();
    assert_eq!(json[0]["kind"], "level_changed");
    assert_eq!(json[0]["to"], "moderate");
    assert_eq!(json[1]["kind"], "handler_ran");
    assert_eq!(json[1]["outcome"]["kind"], "ok");
    let stats = serde_json::to_value(monitor.stats()).expect("stats");
    assert_eq!(stats["level"], "moderate");
    assert_eq!(stats["last_sample"]["rss_bytes"], at(70).rss_bytes);
}

#[tokio::test]
async fn shutdown_stops_the_task_and_refuses_work() {
    let (monitor, _fake) = start(config());
    let clone = monitor.clone();
    assert!(monitor.is_running());
    monitor.shutdown().await;
    assert!(!clone.is_running());
    clone.shutdown().await; // idempotent
    assert!(matches!(clone.check_now().await, Err(Error::Shutdown)));
    assert!(matches!(
        clone.on(Level::Moderate, 0, "late", |_| async { Ok(0) }),
        Err(Error::Shutdown)
    ));
}

#[tokio::test]
async fn shutdown_cancels_a_running_handler() {
    let mut c = config();
    c.interval = Duration::from_millis(10);
    c.handler_timeout = DAY;
    let (monitor, fake) = start(c);
    let (entered_tx, mut entered) = tokio::sync::mpsc::channel::<()>(1);
    let sentinel = Arc::new(());
    let held = Arc::downgrade(&sentinel);
    monitor
        .on(Level::Moderate, 0, "stuck", move |_| {
            let entered_tx = entered_tx.clone();
            let sentinel = Arc::clone(&sentinel);
            async move {
                let _ = entered_tx.send(()).await;
                std::future::pending::<()>().await;
                drop(sentinel);
                Ok(0)
            }
        })
        .expect("register");
    fake.set(at(70));
    tokio::time::timeout(Duration::from_secs(30), entered.recv())
        .await
        .expect("handler started");
    tokio::time::timeout(Duration::from_secs(30), monitor.shutdown())
        .await
        .expect("shutdown ends");
    assert!(!monitor.is_running());
    // The handler's future was dropped (aborted), not left running.
    drop(monitor);
    wait_until_dropped(&held).await;
}

#[tokio::test]
async fn dropping_the_last_handle_ends_the_task() {
    let (monitor, _fake) = start(config());
    let sentinel = Arc::new(());
    let watch = Arc::downgrade(&sentinel);
    monitor
        .on(Level::Moderate, 0, "holds-sentinel", move |_| {
            let _keep = Arc::clone(&sentinel);
            async { Ok(0) }
        })
        .expect("register");
    let clone = monitor.clone();
    drop(monitor);
    tokio::task::yield_now().await;
    assert!(watch.upgrade().is_some(), "a clone still owns the task");
    assert!(clone.is_running());
    drop(clone);
    // The task owns the handlers: they go when the task has ended.
    wait_until_dropped(&watch).await;
}

async fn wait_until_dropped(weak: &std::sync::Weak<()>) {
    // Generous hang guard on a loaded machine; ends as soon as it holds.
    for _ in 0..3000 {
        if weak.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the monitor task is still alive");
}

#[test]
fn runtime_shutdown_marks_the_monitor_stopped() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let monitor = rt.block_on(async { start(config()).0 });
    assert!(monitor.is_running());
    drop(rt);
    assert!(!monitor.is_running());
}

mod props {
    use proptest::prelude::*;

    use super::*;
    use steward_monitor::{LevelMachine, Thresholds};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128)
        ))]

        /// The monitor's checks agree with the pure parts: thresholds say the
        /// raw level, the state machine says the level and when handlers run,
        /// and exactly the handlers up to that level run.
        #[test]
        fn prop_monitor_follows_the_model(
            cooldown_ms in 0u64..2000,
            renotify_ms in 1u64..2000,
            script in prop::collection::vec((0u64..100, 0u64..1500), 1..40),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = config();
                c.cooldown = Duration::from_millis(cooldown_ms);
                c.critical_renotify = Duration::from_millis(renotify_ms);
                let thresholds: Thresholds = c.thresholds;
                let (monitor, fake) = start(c);
                let log: Log = Arc::default();
                logger(&monitor, &log, Level::Moderate, 1, "m");
                logger(&monitor, &log, Level::Critical, 0, "c");
                let mut model = LevelMachine::new(
                    Duration::from_millis(cooldown_ms),
                    Duration::from_millis(renotify_ms),
                );
                let mut runs = 0;
                for &(share, dt) in &script {
                    tokio::time::advance(Duration::from_millis(dt)).await;
                    let sample = at(share);
                    fake.set(sample.clone());
                    let raw = thresholds.classify(&sample);
                    let step = model.step(raw, tokio::time::Instant::now());
                    let report = monitor.check_now().await.expect("check");
                    prop_assert_eq!(report.raw_level, raw);
                    prop_assert_eq!(report.level, step.level);
                    prop_assert_eq!(report.change, step.change);
                    prop_assert_eq!(report.reason, step.notify);
                    let expected = match (step.notify, step.level) {
                        (None, _) => 0,
                        (Some(_), Level::Critical) => 2,
                        (Some(_), _) => 1,
                    };
                    prop_assert_eq!(report.handlers.len(), expected);
                    runs += expected;
                    prop_assert_eq!(monitor.level(), step.level);
                }
                prop_assert_eq!(log.lock().unwrap().len(), runs);
                prop_assert_eq!(monitor.stats().handler_runs, runs as u64);
                monitor.shutdown().await;
                Ok(())
            })?;
        }
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Monitor>();
    check::<Event>();
    check::<steward_monitor::Stats>();
    check::<Sample>();
    check::<steward_monitor::SystemSource>();
    check::<FakeSource>();
    check::<Error>();
}
