//! Snapshots, stale lists and leak reports, on a manual clock.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_tracker::{Budget, Event, ManualClock, Snapshot, Tracker, TrackerConfig};

use crate::Events;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn stale_lists_resources_idle_for_long_enough_longest_first() {
    let clock = ManualClock::new();
    let tracker = Tracker::builder().clock(clock.clone()).build().unwrap();
    let a = tracker.track("a", 1).unwrap();
    clock.advance(secs(10));
    let b = tracker.track("b", 2).unwrap();
    tracker.track_id("c", "c", 3).unwrap();
    clock.advance(secs(10)); // a idle 20 s, b and c idle 10 s
    let ids = |v: Vec<steward_tracker::ResourceInfo>| {
        v.into_iter()
            .map(|r| (r.kind, r.idle.as_millis()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(tracker.stale(secs(10))),
        vec![
            ("a".into(), 20_000),
            ("b".into(), 10_000),
            ("c".into(), 10_000)
        ]
    );
    assert_eq!(ids(tracker.stale(secs(15))), vec![("a".into(), 20_000)]);
    assert_eq!((a.age(), a.idle()), (secs(20), secs(20)));
    a.touch();
    tracker.touch_id("c").unwrap();
    clock.advance(secs(5));
    assert_eq!((a.age(), a.idle()), (secs(25), secs(5)));
    assert_eq!(ids(tracker.stale(secs(15))), vec![("b".into(), 15_000)]);
    assert!(tracker.stale(secs(16)).is_empty());
    // Ages keep counting from creation, not from the last touch.
    let s = tracker.stale(Duration::ZERO);
    let a_info = s.iter().find(|r| r.kind == "a").unwrap();
    assert_eq!((a_info.age, a_info.idle), (secs(25), secs(5)));
    drop(b);
    assert!(tracker.stale(secs(6)).is_empty());
}

#[test]
fn stale_works_on_the_real_clock() {
    let tracker = Tracker::new();
    let _g = tracker.track("real", 1).unwrap();
    // The real clock is what this test is about: 40 ms pass, at least.
    std::thread::sleep(Duration::from_millis(40));
    let stale = tracker.stale(Duration::from_millis(20));
    assert_eq!(stale.len(), 1);
    assert!(stale[0].idle >= Duration::from_millis(20), "{stale:?}");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn leaks_are_reported_once_with_kind_size_age_and_site() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let clock = ManualClock::new();
    let tracker = Tracker::builder()
        .clock(clock.clone())
        .leak_after(secs(60))
        .build()
        .unwrap();
    let events = Events::on(&tracker);
    let line = line!() + 1;
    let mic = tracker.track("audio_buf", 4_096).unwrap();
    let mic = mic.with_name("mic").with_meta("device", "null_source");
    let short_lived = tracker.track("audio_buf", 1).unwrap();
    clock.advance(secs(30));
    let session_line = line!() + 1;
    tracker.track_id("session-7", "ws_conn", 64).unwrap();
    drop(short_lived);
    clock.advance(secs(29));
    assert!(tracker.check_leaks().is_empty(), "nothing is 60 s old yet");

    clock.advance(secs(2));
    let leaks = tracker.check_leaks();
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    let leak = &leaks[0];
    assert_eq!(leak.id, mic.id().get());
    assert_eq!(leak.kind, "audio_buf");
    assert_eq!(leak.size_bytes, 4_096);
    assert_eq!(leak.age, secs(61));
    assert_eq!(leak.name.as_deref(), Some("mic"));
    assert_eq!(
        leak.metadata.get("device").map(String::as_str),
        Some("null_source")
    );
    assert!(
        leak.site.ends_with(&format!("reports.rs:{line}")),
        "{}",
        leak.site
    );
    assert_eq!(
        events.take(),
        vec![Event::Leak {
            resource: leak.clone()
        }]
    );
    assert!(tracker.check_leaks().is_empty(), "reported once");
    assert!(events.take().is_empty());

    clock.advance(secs(30));
    let leaks = tracker.check_leaks();
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0].key.as_deref(), Some("session-7"));
    assert_eq!((leaks[0].age, leaks[0].size_bytes), (secs(61), 64));
    assert!(leaks[0].site.ends_with(&format!(":{session_line}")));
    assert!(tracker.check_leaks().is_empty());
    assert_eq!(tracker.snapshot().leaks_reported, 2);

    let log = captured.text();
    assert_eq!(log.matches("leak age").count(), 2, "{log}");
    assert!(
        log.contains("kind=audio_buf") && log.contains("size_bytes=4096"),
        "{log}"
    );
    assert!(
        log.contains("age_ms=61000") && log.contains(&format!("reports.rs:{line}")),
        "{log}"
    );

    // Turning leak reports off reports nothing more.
    tracker.set_leak_after(None);
    clock.advance(secs(1_000));
    let _new = tracker.track("x", 1).unwrap();
    assert!(tracker.check_leaks().is_empty());
}

#[test]
fn snapshot_lists_largest_and_oldest_and_round_trips_through_json() {
    let clock = ManualClock::new();
    let mut config = TrackerConfig::default();
    config.top_n = 2;
    let tracker = Tracker::builder()
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let a = tracker.track("k1", 10).unwrap();
    clock.advance(secs(1));
    let b = tracker.track("k2", 30).unwrap();
    clock.advance(secs(1));
    let c = tracker.track("k1", 20).unwrap();
    tracker.track_id("d", "k2", 30).unwrap();
    clock.advance(secs(1));

    let snap = tracker.snapshot();
    let sizes: Vec<u64> = snap.largest.iter().map(|r| r.size_bytes).collect();
    assert_eq!(sizes, vec![30, 30]);
    assert_eq!(
        snap.largest[0].id,
        b.id().get(),
        "equal sizes: older id first"
    );
    let oldest: Vec<u64> = snap.oldest.iter().map(|r| r.id).collect();
    assert_eq!(oldest, vec![a.id().get(), b.id().get()]);
    assert_eq!(snap.oldest[0].age, secs(3));
    assert_eq!(snap.at, secs(3));
    assert_eq!(snap.totals.live_count, 4);
    assert_eq!(snap.totals.live_bytes, 90);
    let kinds: Vec<(&str, u64)> = snap
        .kinds
        .iter()
        .map(|k| (k.kind.as_str(), k.totals.live_bytes))
        .collect();
    assert_eq!(kinds, vec![("k1", 30), ("k2", 60)]);

    let json = serde_json::to_string(&snap).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    assert!(json.contains("\"live_bytes\":90"), "{json}");
    // Durations stay integers of milliseconds under `_ms` names.
    assert!(json.contains("\"at_ms\":3000"), "{json}");
    assert!(json.contains("\"age_ms\":3000,\"idle_ms\":3000"), "{json}");

    drop((a, c));
    let snap = tracker.snapshot();
    assert_eq!(snap.largest.len(), 2);
    assert_eq!(snap.totals.peak_bytes, 90);
    assert_eq!(snap.totals.released_bytes, 30);
}

#[test]
fn config_is_plain_serde_data() {
    let json = r#"{"top_n": 3, "leak_after_ms": 5000, "budgets": {"ws": {"hard_count": 8}}}"#;
    let config: TrackerConfig = serde_json::from_str(json).unwrap();
    assert_eq!(config.budgets["ws"].hard_count, Some(8));
    assert_eq!(config.leak_after, Some(Duration::from_secs(5)));
    let tracker = Tracker::builder().config(config).build().unwrap();
    assert_eq!(tracker.kind("ws").unwrap().budget.hard_count, Some(8));
    let defaults: TrackerConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, TrackerConfig::default());
}

#[test]
fn config_serializes_the_leak_age_as_milliseconds() {
    // The documented defaults, field by field.
    let defaults = TrackerConfig::default();
    assert_eq!(
        serde_json::to_value(&defaults).unwrap(),
        serde_json::json!({"top_n": 10, "leak_after_ms": null, "budgets": {}})
    );
    let mut config = TrackerConfig::default();
    config.leak_after = Some(Duration::from_millis(90_500));
    config.budgets.insert(
        "ws".into(),
        Budget::new().with_soft_bytes(10).with_hard_count(3),
    );
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "top_n": 10,
            "leak_after_ms": 90_500,
            "budgets": {"ws": {"soft_bytes": 10, "hard_bytes": null, "hard_count": 3}},
        })
    );
    let back: TrackerConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);
    let off: TrackerConfig = serde_json::from_str(r#"{"leak_after_ms": null}"#).unwrap();
    assert_eq!(off.leak_after, None);

    for bad in [
        // The old `{"secs", "nanos"}` form, under either name.
        r#"{"leak_after_ms": {"secs": 60, "nanos": 0}}"#,
        r#"{"leak_after": {"secs": 60, "nanos": 0}}"#,
        // Not an integer of milliseconds.
        r#"{"leak_after_ms": "60s"}"#,
        // Misspelt settings, at the top and inside a budget.
        r#"{"top": 3}"#,
        r#"{"budgets": {"ws": {"hard_bytez": 8}}}"#,
    ] {
        let got = serde_json::from_str::<TrackerConfig>(bad);
        assert!(got.is_err(), "{bad} was accepted: {got:?}");
    }
}

#[test]
fn leak_watcher_reports_in_the_background_once_and_stops() {
    let clock = ManualClock::new();
    let tracker = Tracker::builder()
        .clock(clock.clone())
        .leak_after(secs(60))
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let _sub = tracker.subscribe(move |e| {
        if let Event::Leak { resource } = e {
            let _ = tx.lock().unwrap().send(resource.id);
        }
    });
    let g = tracker.track("conn", 1).unwrap();
    let watcher = tracker
        .spawn_leak_watcher(Duration::from_millis(2))
        .unwrap();
    clock.advance(secs(61));
    // Generous hang guard: the watcher checks every 2 ms.
    let id = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(id, g.id().get());
    drop(watcher); // joins the thread
    assert_eq!(tracker.snapshot().leaks_reported, 1, "reported once");
    assert!(rx.try_recv().is_err());
    // A watcher of a tracker that closes stops by itself.
    let watcher = tracker
        .spawn_leak_watcher(Duration::from_millis(1))
        .unwrap();
    drop(tracker);
    drop(watcher);
    drop(g);
}
