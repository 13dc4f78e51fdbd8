//! The leak trend through the facade: the monitor's slope and `Growing`
//! signal in `Health` and `/metrics`, with the tracker's kinds attached.
//!
//! The memory figure comes from the monitor's `FakeSource` (a fake: a
//! scripted leak of 8 MiB/h, since a real process cannot be made to leak
//! for an hour in a test); the tracker is real. Time is tokio's paused
//! clock, so the hour passes in milliseconds.

use std::time::Duration;

use steward::Steward;
use steward::monitor::{FakeSource, MonitorConfig, Sample, TrendPhase};
use steward::tracker::Tracker;

const MIB: u64 = 1 << 20;

fn leaked(minutes: u64) -> Sample {
    // 8 MiB/h on top of 200 MiB, as anonymous memory.
    let anon = 200 * MIB + minutes * 8 * MIB / 60;
    let mut sample = Sample::with_rss(anon + 50 * MIB, 64 << 30);
    sample.anon_bytes = Some(anon);
    sample
}

#[tokio::test(start_paused = true)]
async fn growing_is_shown_with_the_kind_that_grew() {
    let fake = FakeSource::new(leaked(0));
    let tracker = Tracker::new();
    let mut monitor = MonitorConfig::default();
    monitor.interval = Duration::from_secs(2);
    let steward = Steward::builder()
        .monitor_config(monitor)
        .source(fake.clone())
        .tracker(tracker.clone())
        .build()
        .expect("steward");
    let steady: Vec<_> = (0..2)
        .map(|_| tracker.track("steady.conn", 4096).expect("track"))
        .collect();
    let mut leaky = Vec::new();
    let mut raised_at = None;
    for minute in 1..=75u64 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        fake.set(leaked(minute));
        leaky.push(tracker.track("leaky.buffer", 64 << 10).expect("track"));
        let health = steward.health();
        if minute == 30 {
            assert_eq!(health.growth.phase, TrendPhase::Ready);
            assert!(!health.growth.growing);
            assert!(health.growth.signal.is_none());
            let text = steward.metrics_text();
            assert!(text.contains("\nsteward_memory_growing 0\n"), "{text}");
            assert!(
                text.contains("\nsteward_memory_growth_bytes_per_hour "),
                "{text}"
            );
        }
        if health.growth.growing && raised_at.is_none() {
            raised_at = Some(minute);
        }
    }
    // The monitor's bound with its defaults: 10 + 15 + 30 min and change.
    let raised_at = raised_at.expect("Growing raised");
    assert!((55..=57).contains(&raised_at), "{raised_at}");

    let health = steward.health();
    let g = &health.growth;
    assert!(g.growing);
    assert_eq!(g.raised, 1);
    let rate = g.bytes_per_hour.expect("a slope");
    assert!(rate.abs_diff(8 << 20) < 1 << 20, "{rate}");
    let signal = g.signal.as_ref().expect("the signal");
    assert_eq!(signal.kinds[0].kind, "leaky.buffer", "{signal:?}");
    // Tracked from minute 1 on, the baseline taken at the end of the
    // warm-up (minute 10): some 45 buffers more when it was raised.
    let leaky_kind = &signal.kinds[0];
    assert!(
        (40..=50).contains(&leaky_kind.count_change),
        "{leaky_kind:?}"
    );
    assert_eq!(
        leaky_kind.bytes_change,
        leaky_kind.count_change * (64 << 10)
    );
    let steady_kind = signal
        .kinds
        .iter()
        .find(|k| k.kind == "steady.conn")
        .expect("steady");
    assert_eq!((steady_kind.count_change, steady_kind.live_count), (0, 2));

    let text = steward.metrics_text();
    assert!(text.contains("\nsteward_memory_growing 1\n"), "{text}");
    assert!(
        text.contains("\nsteward_memory_growing_signals_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("steward_memory_growing_kind_bytes_change{kind=\"leaky.buffer\"} "),
        "{text}"
    );
    let json = serde_json::to_value(&health).expect("json");
    assert_eq!(json["growth"]["signal"]["kinds"][0]["kind"], "leaky.buffer");
    drop((steady, leaky));
    steward.shutdown().await;
}

/// The value of an unlabelled series in the exposition text.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_trims_are_exported() {
    let mut monitor = MonitorConfig::default();
    // No check in the test's life: only the schedule trims.
    monitor.interval = Duration::from_secs(3600);
    monitor.trim_every = Some(Duration::from_millis(20));
    let steward = Steward::builder()
        .monitor_config(monitor)
        .source(FakeSource::new(leaked(0)))
        .build()
        .expect("steward");
    let name = "steward_monitor_scheduled_trims_total";
    if steward::monitor::MALLOC_TRIM_SUPPORTED {
        tokio::time::timeout(Duration::from_secs(60), async {
            while series(&steward.metrics_text(), name).unwrap_or(0.0) < 2.0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("two scheduled trims exported");
    } else {
        assert_eq!(series(&steward.metrics_text(), name), Some(0.0));
    }
    let text = steward.metrics_text();
    assert!(
        series(&text, "steward_monitor_malloc_trims_total") >= series(&text, name),
        "{text}"
    );
    steward.shutdown().await;
}
