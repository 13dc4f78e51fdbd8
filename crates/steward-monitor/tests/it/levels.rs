//! The level state machine and thresholds, against scripted sequences and a
//! simple model.

use std::time::Duration;

use proptest::prelude::*;
use steward_monitor::{
    Level, LevelMachine, LevelThresholds, MonitorConfig, Reason, Sample, Thresholds,
};
use tokio::time::Instant;

fn level_of(n: u8) -> Level {
    match n % 3 {
        0 => Level::None,
        1 => Level::Moderate,
        _ => Level::Critical,
    }
}

/// One observed step, for the checks over history.
#[derive(Debug, Clone, Copy)]
struct Seen {
    t: Duration,
    raw: Level,
    before: Level,
    after: Level,
    notify: Option<Reason>,
}

fn run(cooldown: Duration, renotify: Duration, script: &[(u8, u64)]) -> Vec<Seen> {
    let start = Instant::now();
    let mut machine = LevelMachine::new(cooldown, renotify);
    let mut t = Duration::ZERO;
    let mut seen = Vec::new();
    for &(raw, dt_ms) in script {
        t += Duration::from_millis(dt_ms);
        let raw = level_of(raw);
        let before = machine.level();
        let step = machine.step(raw, start + t);
        assert_eq!(step.level, machine.level());
        assert_eq!(
            step.change,
            (before != step.level).then_some((before, step.level)),
            "change reported iff the level moved"
        );
        seen.push(Seen {
            t,
            raw,
            before,
            after: step.level,
            notify: step.notify,
        });
    }
    seen
}

fn script() -> impl Strategy<Value = Vec<(u8, u64)>> {
    // Mostly short gaps, sometimes long ones; runs of equal levels happen
    // often enough with three values.
    prop::collection::vec((0u8..3, prop_oneof![0u64..400, 0u64..5000]), 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
    ))]

    /// Rises at once and notify; falls one level at a time, only after the
    /// raw level stayed below for a whole cooldown since the last change;
    /// falls as soon as that holds; never reports below the raw level.
    #[test]
    fn prop_hysteresis(cooldown_ms in 0u64..3000, renotify_ms in 1u64..3000, script in script()) {
        let cooldown = Duration::from_millis(cooldown_ms);
        let seen = run(cooldown, Duration::from_millis(renotify_ms), &script);
        let mut last_change: Option<usize> = None;
        for (i, s) in seen.iter().enumerate() {
            prop_assert!(s.after >= s.raw, "reported {:?} below raw {:?} at {i}", s.after, s.raw);
            if s.raw > s.before {
                prop_assert_eq!(s.after, s.raw, "rise not reported at once at {}", i);
                prop_assert_eq!(s.notify, Some(Reason::Rising));
            } else {
                prop_assert_ne!(s.notify, Some(Reason::Rising));
            }
            // The earliest sample of the current run below `before`, not
            // before the last change.
            let floor = last_change.unwrap_or(0);
            let run_start = (floor..=i).rev().take_while(|&j| seen[j].raw < s.before).last();
            let cooled = run_start.is_some_and(|j| s.t - seen[j].t >= cooldown)
                && s.raw < s.before;
            if s.after < s.before {
                prop_assert_eq!(s.after, s.before.below(), "skipped a level at {}", i);
                prop_assert!(cooled, "fell without a full cooldown at {i}: {seen:?}");
                if let Some(c) = last_change {
                    prop_assert!(s.t - seen[c].t >= cooldown, "held less than a cooldown at {i}");
                }
            } else if s.raw <= s.before {
                prop_assert!(!cooled, "cooled down but did not fall at {i}: {seen:?}");
            }
            if s.after != s.before {
                last_change = Some(i);
            }
        }
    }

    /// While raw and reported are both Critical, re-notify exactly when the
    /// interval since the last notification has passed; never otherwise.
    #[test]
    fn prop_critical_renotify(renotify_ms in 1u64..3000, script in script()) {
        let renotify = Duration::from_millis(renotify_ms);
        let seen = run(Duration::from_millis(1000), renotify, &script);
        let mut last_notify: Option<Duration> = None;
        for (i, s) in seen.iter().enumerate() {
            let steady_critical = s.raw == Level::Critical && s.before == Level::Critical;
            if steady_critical {
                let due = last_notify.is_none_or(|t| s.t - t >= renotify);
                prop_assert_eq!(s.notify, due.then_some(Reason::Renotify), "at {}", i);
            } else if s.raw <= s.before {
                prop_assert_eq!(s.notify, None, "notified without a rise at {}", i);
            }
            if s.notify.is_some() {
                last_notify = Some(s.t);
            }
        }
    }

    /// The raw level is the highest level whose criteria the sample meets.
    #[test]
    fn prop_thresholds_honoured(
        rss in 0u64..(64 << 30),
        limit in 1u64..(64 << 30),
        m_frac in prop::option::of(0.01f64..1.0),
        c_extra in 0.0f64..0.5,
        m_bytes in prop::option::of(1u64..(64 << 30)),
        c_bytes_extra in prop::option::of(0u64..(8 << 30)),
        psi_some in prop::option::of(0.0f64..100.0),
        m_psi in prop::option::of(0.1f64..100.0),
    ) {
        let c_frac = m_frac.map(|m| (m + c_extra).min(1.0));
        let c_bytes = m_bytes.zip(c_bytes_extra).map(|(m, e)| m + e);
        // `#[non_exhaustive]`: built by assignment, as a user must.
        let mut thresholds = Thresholds::default();
        thresholds.moderate = LevelThresholds::default();
        thresholds.moderate.fraction = m_frac;
        thresholds.moderate.bytes = m_bytes;
        thresholds.moderate.psi_some_avg10 = m_psi;
        thresholds.critical = LevelThresholds::default();
        thresholds.critical.fraction = c_frac;
        thresholds.critical.bytes = c_bytes;
        prop_assert!(thresholds.validate().is_ok());
        let mut sample = Sample::with_rss(rss, limit);
        sample.psi = psi_some.map(|avg10| {
            let mut psi = steward_monitor::parse::Psi::default();
            psi.some.avg10 = avg10;
            psi
        });
        // The model: plain comparisons, written out.
        let share = rss as f64 / limit as f64;
        let crit = c_frac.is_some_and(|f| share >= f) || c_bytes.is_some_and(|b| rss >= b);
        let moderate = m_frac.is_some_and(|f| share >= f)
            || m_bytes.is_some_and(|b| rss >= b)
            || m_psi.zip(psi_some).is_some_and(|(t, v)| v >= t);
        let expected = if crit { Level::Critical } else if moderate { Level::Moderate } else { Level::None };
        prop_assert_eq!(thresholds.classify(&sample), expected);
    }
}

#[test]
fn critical_to_none_takes_two_cooldowns() {
    let cooldown = Duration::from_secs(10);
    let start = Instant::now();
    let mut m = LevelMachine::new(cooldown, Duration::from_secs(60));
    assert_eq!(m.step(Level::Critical, start).notify, Some(Reason::Rising));
    let mut levels = Vec::new();
    for s in 1..=30 {
        levels.push(m.step(Level::None, start + Duration::from_secs(s)).level);
    }
    // Below since t=1 s: Moderate at 11 s, None at 21 s.
    assert_eq!(levels[9], Level::Critical);
    assert_eq!(levels[10], Level::Moderate);
    assert_eq!(levels[19], Level::Moderate);
    assert_eq!(levels[20], Level::None);
    // A blip back up restarts the cooldown and rises at once.
    let t = start + Duration::from_secs(40);
    assert_eq!(
        m.step(Level::Moderate, t).change,
        Some((Level::None, Level::Moderate))
    );
    assert_eq!(
        m.step(Level::None, t + Duration::from_secs(5)).level,
        Level::Moderate
    );
    assert_eq!(
        m.step(Level::Moderate, t + Duration::from_secs(9)).level,
        Level::Moderate
    );
    assert_eq!(
        m.step(Level::None, t + Duration::from_secs(16)).level,
        Level::Moderate
    );
    assert_eq!(
        m.step(Level::None, t + Duration::from_secs(26)).level,
        Level::None
    );
}

#[test]
fn config_out_of_range_is_refused_with_units() {
    let mut config = MonitorConfig::default();
    assert!(config.validate().is_ok());

    // The Python design's mistake: a percentage where a fraction is meant.
    config.thresholds.moderate.fraction = Some(80.0);
    let err = config
        .validate()
        .expect_err("80 is not a fraction")
        .to_string();
    assert!(
        err.contains("moderate.fraction") && err.contains("0.8 means 80 %"),
        "{err}"
    );

    config = MonitorConfig::default();
    config.thresholds.critical.fraction = Some(0.5);
    let err = config
        .validate()
        .expect_err("critical below moderate")
        .to_string();
    assert!(err.contains("critical.fraction"), "{err}");

    config = MonitorConfig::default();
    config.thresholds.critical.psi_full_avg10 = Some(150.0);
    let err = config.validate().expect_err("PSI over 100").to_string();
    assert!(
        err.contains("critical.psi_full_avg10") && err.contains("percentage"),
        "{err}"
    );

    for bad in [f64::NAN, 0.0, -0.1, 1.01] {
        let mut c = MonitorConfig::default();
        c.thresholds.moderate.fraction = Some(bad);
        assert!(c.validate().is_err(), "{bad} accepted");
    }

    config = MonitorConfig::default();
    config.interval = Duration::ZERO;
    assert!(
        config
            .validate()
            .expect_err("zero")
            .to_string()
            .contains("interval_ms")
    );

    config = MonitorConfig::default();
    config.interval = Duration::from_secs(u64::MAX);
    assert!(
        config
            .validate()
            .expect_err("too long")
            .to_string()
            .contains("one day")
    );

    config = MonitorConfig::default();
    config.event_capacity = usize::MAX;
    assert!(
        config
            .validate()
            .expect_err("too big")
            .to_string()
            .contains("event_capacity")
    );

    config = MonitorConfig::default();
    config.thresholds.moderate.bytes = Some(0);
    assert!(config.validate().is_err());

    // Building refuses it too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut c = MonitorConfig::default();
        c.thresholds.moderate.fraction = Some(70.0);
        let err = steward_monitor::Monitor::builder()
            .config(c)
            .build()
            .expect_err("refused");
        assert!(
            matches!(err, steward_monitor::Error::InvalidConfig { .. }),
            "{err}"
        );
    });
}

#[test]
fn config_serde_round_trip_in_milliseconds() {
    let mut config = MonitorConfig::default();
    config.interval = Duration::from_millis(250);
    config.thresholds.critical.bytes = Some(1 << 30);
    let json = serde_json::to_value(&config).expect("serialise");
    assert_eq!(json["interval_ms"], 250);
    assert_eq!(json["thresholds"]["critical"]["bytes"], 1u64 << 30);
    let back: MonitorConfig = serde_json::from_value(json).expect("deserialise");
    assert_eq!(back, config);
    assert!(
        serde_json::from_str::<MonitorConfig>(r#"{"interval": 5}"#).is_err(),
        "unknown field"
    );
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    let err = steward_monitor::Monitor::builder()
        .build()
        .expect_err("no runtime");
    assert!(matches!(err, steward_monitor::Error::NoRuntime), "{err}");
}
