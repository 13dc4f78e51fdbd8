//! The leak trend: the Theil–Sen estimator against a naive model, injected
//! leaks detected within the bound the crate docs state, flat series with
//! spikes and steps that raise nothing, hysteresis, and a real process
//! growing its heap.
//!
//! Time is tokio's paused clock: checks run with `advance` + `check_now`,
//! so hours of samples take milliseconds and nothing depends on the wall
//! clock.

use std::time::Duration;

use proptest::prelude::*;
use steward_monitor::{
    Error, Event, GrowthChange, Monitor, MonitorConfig, Sample, SampleSource, TrendConfig,
    TrendMachine, TrendMetric, TrendPhase, theil_sen,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
const MIN: Duration = Duration::from_secs(60);

/// The model: every pairwise slope with distinct x, sorted, the middle one
/// (mean of the two middle ones for an even count).
fn naive_theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::new();
    for i in 0..points.len() {
        for j in 0..points.len() {
            let (a, b) = (points[i], points[j]);
            if b.0 > a.0 {
                let s = (b.1 - a.1) / (b.0 - a.0);
                if s.is_finite() {
                    slopes.push(s);
                }
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let n = slopes.len();
    Some(if n % 2 == 1 {
        slopes[n / 2]
    } else {
        let (lo, hi) = (slopes[n / 2 - 1], slopes[n / 2]);
        lo + (hi - lo) / 2.0
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
    ))]

    /// The library's Theil–Sen (selection, not a sort) is the model's,
    /// duplicate x included; its interval holds it.
    #[test]
    fn prop_theil_sen_is_the_median_of_pairwise_slopes(
        points in prop::collection::vec((0u32..200, -1_000_000i64..1_000_000), 0..60),
    ) {
        let points: Vec<(f64, f64)> = points
            .into_iter()
            .map(|(x, y)| (f64::from(x), y as f64))
            .collect();
        let fast = theil_sen::slope(&points);
        let model = naive_theil_sen(&points);
        prop_assert_eq!(fast, model);
        if let Some(e) = theil_sen::estimate(&points, 1.96) {
            prop_assert_eq!(Some(e.slope), model);
            prop_assert!(e.low <= e.slope && e.slope <= e.high, "{:?}", e);
        }
    }

    /// Fed samples at least `window / capacity` apart (so the window keeps
    /// every one), the machine's slope is the naive Theil–Sen slope over all
    /// samples of the last `window` after the warm-up, in bytes per hour;
    /// none before the samples span half the window.
    #[test]
    fn prop_window_slope_is_the_naive_slope_over_the_window(
        warmup_s in 0u64..100,
        window_s in 20u64..400,
        capacity in 4usize..40,
        gaps in prop::collection::vec(0u64..60_000, 1..150),
        values in prop::collection::vec(0u64..(64 << 20), 150),
    ) {
        let mut config = TrendConfig::default();
        config.warmup = Duration::from_secs(warmup_s);
        config.window = Duration::from_secs(window_s);
        config.capacity = capacity;
        let spacing = config.spacing();
        let mut machine = TrendMachine::new(config.clone());
        let mut now = Instant::now();
        let mut seen: Vec<(Instant, u64)> = Vec::new();
        let mut first = None;
        for (gap, bytes) in gaps.iter().zip(&values) {
            // Strictly more than the spacing: at most `capacity` in a window.
            now += spacing + Duration::from_millis(1 + *gap);
            let step = machine.observe(now, *bytes);
            let first = *first.get_or_insert(now);
            if now.duration_since(first) >= config.warmup {
                seen.push((now, *bytes));
            }
            let in_window: Vec<(Instant, u64)> = seen
                .iter()
                .copied()
                .filter(|(at, _)| now.duration_since(*at) <= config.window)
                .collect();
            let kept: Vec<(Instant, u64)> = machine.points().collect();
            prop_assert_eq!(&kept, &in_window);
            let span = match (in_window.first(), in_window.last()) {
                (Some(a), Some(b)) => b.0.duration_since(a.0),
                _ => Duration::ZERO,
            };
            let expected = if in_window.len() >= 3 && span >= config.window / 2 {
                let origin = in_window[0].0;
                let xy: Vec<(f64, f64)> = in_window
                    .iter()
                    .map(|(at, b)| (at.duration_since(origin).as_secs_f64() / 3600.0, *b as f64))
                    .collect();
                naive_theil_sen(&xy)
            } else {
                None
            };
            match (machine.slope(), expected) {
                (Some(a), Some(b)) => prop_assert!(close(a, b), "{} vs {}", a, b),
                (a, b) => prop_assert_eq!(a, b),
            }
            prop_assert_eq!(step.trend.phase == TrendPhase::Ready, expected.is_some());
        }
    }

    /// Fed samples at any pace, the window never holds more than its
    /// capacity, only points of the last `window`, at least `window /
    /// capacity` apart, and its slope is the model's over those points.
    #[test]
    fn prop_window_is_bounded_and_thinned(
        window_s in 1u64..200,
        capacity in 4usize..30,
        gaps in prop::collection::vec(0u64..20_000, 1..300),
    ) {
        let mut config = TrendConfig::default();
        config.warmup = Duration::ZERO;
        config.window = Duration::from_secs(window_s);
        config.capacity = capacity;
        let mut machine = TrendMachine::new(config.clone());
        let mut now = Instant::now();
        for (i, gap) in gaps.iter().enumerate() {
            now += Duration::from_millis(*gap);
            machine.observe(now, (i as u64 * 7919) % 1000);
            let kept: Vec<(Instant, u64)> = machine.points().collect();
            prop_assert!(kept.len() <= capacity);
            for pair in kept.windows(2) {
                prop_assert!(pair[1].0.duration_since(pair[0].0) >= config.spacing());
            }
            prop_assert!(kept.iter().all(|(at, _)| now.duration_since(*at) <= config.window));
            if let Some(slope) = machine.slope() {
                let origin = kept[0].0;
                let xy: Vec<(f64, f64)> = kept
                    .iter()
                    .map(|(at, b)| (at.duration_since(origin).as_secs_f64() / 3600.0, *b as f64))
                    .collect();
                let model = naive_theil_sen(&xy).expect("a slope");
                prop_assert!(close(slope, model), "{} vs {}", slope, model);
            }
        }
    }
}

/// A **fake** sample source for the leak tests, not a measurement: the
/// memory figure is made up from tokio's (paused) clock, `base + rate ×
/// elapsed` plus deterministic noise, spikes and steps. The real source is
/// tested in `real_process_growth_is_raised`.
struct FakeLeak {
    start: Instant,
    base: f64,
    /// Bytes per hour, from `leak_from` on.
    rate: f64,
    leak_from: Duration,
    /// And flat again from here.
    leak_until: Duration,
    /// Uniform noise in `[-noise, noise]` bytes.
    noise: f64,
    /// Every `spike_every`-th sample is `spike` bytes off (0: never).
    spike_every: u64,
    spike: f64,
    /// `(from, bytes)`: lasting steps.
    steps: Vec<(Duration, f64)>,
    taken: u64,
    rng: u64,
}

impl FakeLeak {
    fn new(rate_bytes_per_hour: f64) -> Self {
        Self {
            start: Instant::now(),
            base: 300.0 * MIB,
            rate: rate_bytes_per_hour,
            leak_from: Duration::ZERO,
            leak_until: Duration::MAX,
            noise: 128.0 * KIB,
            spike_every: 0,
            spike: 0.0,
            steps: Vec::new(),
            taken: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// xorshift64*: a fixed sequence, uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (x as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

impl SampleSource for FakeLeak {
    fn sample(&mut self) -> Result<Sample, Error> {
        self.taken += 1;
        let elapsed = Instant::now().duration_since(self.start);
        let leaking = elapsed.min(self.leak_until).saturating_sub(self.leak_from);
        let mut bytes = self.base + self.rate * leaking.as_secs_f64() / 3600.0;
        bytes += self.noise * self.unit();
        if self.spike_every > 0 && self.taken.is_multiple_of(self.spike_every) {
            bytes += self.spike;
        }
        for (from, step) in &self.steps {
            if elapsed >= *from {
                bytes += step;
            }
        }
        let mut sample = Sample::with_rss((bytes.max(0.0) * 1.2) as u64, 64 << 30);
        sample.anon_bytes = Some(bytes.max(0.0) as u64);
        Ok(sample)
    }

    fn name(&self) -> &str {
        "fake-leak"
    }
}

const INTERVAL: Duration = Duration::from_secs(2);

/// Default trend settings, checks only when told (`interval` one day).
fn monitor(source: FakeLeak) -> Monitor {
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_secs(86_400);
    Monitor::builder()
        .config(config)
        .source(source)
        .build()
        .expect("monitor")
}

#[derive(Debug, Default)]
struct Run {
    raised_at: Vec<Duration>,
    cleared_at: Vec<Duration>,
    max_rate: i64,
}

/// Checks every 2 s of paused time for `total`, recording when `Growing`
/// was raised and cleared (from the events, cross-checked with the stats).
async fn drive(monitor: &Monitor, total: Duration) -> Run {
    let mut events = monitor.subscribe();
    let start = Instant::now();
    let mut run = Run::default();
    let mut growing = false;
    while Instant::now().duration_since(start) < total {
        tokio::time::advance(INTERVAL).await;
        monitor.check_now().await.expect("check");
        let at = Instant::now().duration_since(start);
        let trend = monitor.stats().trend;
        assert_eq!(trend.metric, TrendMetric::Anon);
        if let Some(rate) = trend.bytes_per_hour {
            run.max_rate = run.max_rate.max(rate);
        }
        loop {
            match events.try_recv() {
                Ok(Event::Growing { trend, .. }) => {
                    assert!(!growing && trend.growing);
                    growing = true;
                    run.raised_at.push(at);
                }
                Ok(Event::GrowthCleared { trend }) => {
                    assert!(growing && !trend.growing);
                    growing = false;
                    run.cleared_at.push(at);
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(e) => panic!("events: {e}"),
            }
        }
        assert_eq!(trend.growing, growing);
    }
    run
}

/// The bound of the crate docs for a leak running from the start.
fn bound_from_start(t: &TrendConfig) -> Duration {
    t.warmup + t.window / 2 + t.spacing() + t.growing_for + INTERVAL
}

#[tokio::test(start_paused = true)]
async fn leaks_from_the_start_are_raised_within_the_bound() {
    let t = TrendConfig::default();
    // 2x, 4x and 16x the growing rate (1 MiB/h), with noise, spikes of
    // +40 MiB one sample in 37 and a lasting +3 MiB step after an hour.
    for rate in [2.0 * MIB, 4.0 * MIB, 16.0 * MIB] {
        let mut leak = FakeLeak::new(rate);
        leak.spike_every = 37;
        leak.spike = 40.0 * MIB;
        leak.steps.push((Duration::from_secs(3600), 3.0 * MIB));
        let monitor = monitor(leak);
        let run = drive(&monitor, 2 * Duration::from_secs(3600)).await;
        let first = *run
            .raised_at
            .first()
            .unwrap_or_else(|| panic!("a leak of {} KiB/h was not raised: {run:?}", rate / KIB));
        // Never before a slope exists and has stayed up for growing_for.
        assert!(
            first >= t.warmup + t.window / 2 + t.growing_for,
            "{first:?}"
        );
        assert!(
            first <= bound_from_start(&t),
            "{} KiB/h: {first:?}",
            rate / KIB
        );
        assert_eq!(run.raised_at.len(), 1, "raised once and kept: {run:?}");
        assert!(run.cleared_at.is_empty(), "{run:?}");
        let trend = monitor.stats().trend;
        let estimate = trend.bytes_per_hour.expect("a slope") as f64;
        assert!(
            (estimate - rate).abs() < 0.25 * rate,
            "estimate {estimate} for a leak of {rate}"
        );
        assert_eq!(trend.raised, 1);
        monitor.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_leak_starting_late_is_raised_within_a_window_and_cleared_after_it_stops() {
    let t = TrendConfig::default();
    let mut leak = FakeLeak::new(4.0 * MIB);
    leak.leak_from = 45 * MIN;
    leak.leak_until = 45 * MIN + Duration::from_secs(2 * 3600);
    leak.spike_every = 53;
    leak.spike = -20.0 * MIB;
    let monitor = monitor(leak);
    let run = drive(&monitor, 5 * Duration::from_secs(3600)).await;
    let raised = *run.raised_at.first().expect("raised");
    assert!(raised > 45 * MIN, "{run:?}");
    assert!(
        raised <= 45 * MIN + t.window + t.growing_for + INTERVAL,
        "{run:?}"
    );
    // Once flat again, cleared within a window and clear_for, then quiet.
    let stopped = 45 * MIN + Duration::from_secs(2 * 3600);
    assert_eq!(run.cleared_at.len(), 1, "{run:?}");
    let cleared = run.cleared_at[0];
    assert!(cleared > stopped, "{run:?}");
    assert!(
        cleared <= stopped + t.window + t.clear_for + INTERVAL,
        "{run:?}"
    );
    assert_eq!(run.raised_at.len(), 1, "{run:?}");
    monitor.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn flat_memory_with_spikes_and_steps_raises_nothing() {
    let t = TrendConfig::default();
    // 6 h flat: noise, spikes up one sample in 29 (+64 MiB), steps up and
    // down (a cache filling, a buffer given back), a large warm-up rise.
    let mut flat = FakeLeak::new(0.0);
    flat.noise = 256.0 * KIB;
    flat.spike_every = 29;
    flat.spike = 64.0 * MIB;
    flat.steps = vec![
        (2 * MIN, 80.0 * MIB),
        (5 * MIN, 40.0 * MIB),
        (60 * MIN, 8.0 * MIB),
        (150 * MIN, -8.0 * MIB),
        (200 * MIN, 16.0 * MIB),
        (300 * MIN, 2.0 * MIB),
    ];
    let monitor = monitor(flat);
    let run = drive(&monitor, 6 * Duration::from_secs(3600)).await;
    assert!(run.raised_at.is_empty(), "{run:?}");
    let trend = monitor.stats().trend;
    assert_eq!(trend.phase, TrendPhase::Ready);
    assert_eq!(trend.raised, 0);
    assert!(trend.points <= t.capacity);
    monitor.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_leak_below_the_rate_is_published_but_not_raised() {
    // 256 KiB/h: a quarter of the growing rate.
    let mut leak = FakeLeak::new(256.0 * KIB);
    leak.noise = 32.0 * KIB;
    let monitor = monitor(leak);
    let run = drive(&monitor, 3 * Duration::from_secs(3600)).await;
    assert!(run.raised_at.is_empty(), "{run:?}");
    let rate = monitor.stats().trend.bytes_per_hour.expect("a slope") as f64;
    assert!((rate - 256.0 * KIB).abs() < 64.0 * KIB, "{rate}");
    monitor.shutdown().await;
}

#[test]
fn trend_config_is_validated_and_serde() {
    let mut config = MonitorConfig::default();
    config.trend.capacity = 2;
    assert!(config.validate().is_err());
    config.trend = TrendConfig::default();
    config.trend.clear_bytes_per_hour = 2 << 20;
    let err = config.validate().expect_err("clear above growing");
    assert!(
        err.to_string().contains("trend.clear_bytes_per_hour"),
        "{err}"
    );
    let json = serde_json::to_string(&TrendConfig::default()).expect("json");
    assert!(json.contains(r#""warmup_ms":600000"#), "{json}");
    let back: TrendConfig = serde_json::from_str(&json).expect("back");
    assert_eq!(back, TrendConfig::default());
    let off: MonitorConfig =
        serde_json::from_str(r#"{"trend": {"enabled": false}}"#).expect("parse");
    let mut machine = TrendMachine::new(off.trend);
    let step = machine.observe(Instant::now(), 1);
    assert_eq!(step.trend.phase, TrendPhase::Off);
    assert_eq!(step.change, None);
}

#[test]
fn hysteresis_needs_the_rate_held_both_ways() {
    let mut config = TrendConfig::default();
    config.warmup = Duration::ZERO;
    config.window = Duration::from_secs(600);
    config.capacity = 10;
    config.growing_bytes_per_hour = 1000;
    config.clear_bytes_per_hour = 500;
    config.growing_for = Duration::from_secs(120);
    config.clear_for = Duration::from_secs(120);
    let mut m = TrendMachine::new(config);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut bytes = 1_000_000u64;
    let mut changes = Vec::new();
    // 6000 bytes/h (100 per minute) for 20 min, then flat.
    for minute in 0..60u64 {
        if minute < 20 {
            bytes += 100;
        }
        if let Some(c) = m.observe(at(minute * 60), bytes).change {
            changes.push((minute, c));
        }
    }
    // Published at 5 min (half the window), raised 2 min later; the window
    // is flat again from minute 30 on, cleared 2 min after the slope fell
    // below 500/h.
    assert_eq!(changes[0], (7, GrowthChange::Raised));
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[1].1, GrowthChange::Cleared);
    assert!((22..=32).contains(&changes[1].0), "{changes:?}");
}

/// Real memory: this process grows its heap at a steady pace under a
/// monitor on the real sampler with a short window; `Growing` comes with
/// the anonymous figure and a rate above the configured one.
// The RSS lock is held across awaits on purpose (see real_memory.rs).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_process_growth_is_raised() {
    let _rss = crate::rss_lock();
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_millis(20);
    config.trend = TrendConfig::default();
    config.trend.warmup = Duration::ZERO;
    config.trend.window = Duration::from_millis(1500);
    config.trend.capacity = 50;
    // 2 GiB/h is 0.6 MB/s; the test grows about 25 MB/s.
    config.trend.growing_bytes_per_hour = 2 << 30;
    config.trend.clear_bytes_per_hour = 1 << 30;
    config.trend.growing_for = Duration::from_millis(200);
    config.trend.clear_for = Duration::from_millis(200);
    let monitor = Monitor::builder().config(config).build().expect("monitor");
    let mut events = monitor.subscribe();
    let mut ballast: Vec<Vec<u8>> = Vec::new();
    let mut raised = None;
    // At most 320 chunks of 256 KiB (80 MiB, about 3 s) before giving up.
    for i in 0..320u32 {
        ballast.push(vec![u8::try_from(i % 250).unwrap_or(0) + 1; 256 << 10]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        while let Ok(event) = events.try_recv() {
            if let Event::Growing { trend, sample } = event {
                raised = Some((trend, sample));
            }
        }
        if raised.is_some() {
            break;
        }
    }
    let (trend, sample) = raised.unwrap_or_else(|| {
        panic!(
            "no Growing after {} MiB: {:?}",
            ballast.len() / 4,
            monitor.stats().trend
        )
    });
    assert!(trend.growing);
    let rate = trend.bytes_per_hour.expect("a slope");
    assert!(rate >= 2 << 30, "{rate}");
    if cfg!(target_os = "linux") {
        assert_eq!(trend.metric, TrendMetric::Anon);
        assert!(sample.anon_bytes.is_some_and(|a| a <= sample.rss_bytes));
    }
    drop(ballast);
    monitor.shutdown().await;
}
