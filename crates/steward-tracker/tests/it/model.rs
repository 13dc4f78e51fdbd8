//! Random operations against a simple model: after every step the totals,
//! per-kind counters, high-water marks, events and stale lists agree.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use steward_tracker::{Budget, Error, Event, ManualClock, Totals, Tracked, Tracker};

use crate::Events;

const KINDS: [&str; 4] = ["a", "b", "soft", "hard"];
const SOFT: u64 = 15_000;
const HARD_BYTES: u64 = 20_000;
const HARD_COUNT: u64 = 3;

#[derive(Debug, Clone)]
enum Op {
    Track { kind: usize, size: u64 },
    Drop(Index),
    Touch(Index),
    Resize(Index, u64),
    TrackId { key: u8, kind: usize, size: u64 },
    ReleaseId(u8),
    TouchId(u8),
    ResizeId(u8, u64),
    Advance(u64),
    Stale(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let size = 0u64..12_000;
    prop_oneof![
        4 => (0..KINDS.len(), size.clone()).prop_map(|(kind, size)| Op::Track { kind, size }),
        3 => any::<Index>().prop_map(Op::Drop),
        2 => any::<Index>().prop_map(Op::Touch),
        2 => (any::<Index>(), size.clone()).prop_map(|(i, s)| Op::Resize(i, s)),
        3 => (0u8..6, 0..KINDS.len(), size.clone())
            .prop_map(|(key, kind, size)| Op::TrackId { key, kind, size }),
        2 => (0u8..6).prop_map(Op::ReleaseId),
        1 => (0u8..6).prop_map(Op::TouchId),
        1 => (0u8..6, size).prop_map(|(k, s)| Op::ResizeId(k, s)),
        2 => (0u64..5_000).prop_map(Op::Advance),
        1 => (0u64..8_000).prop_map(Op::Stale),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Res {
    id: u64,
    kind: usize,
    size: u64,
    last_used: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    live_count: u64,
    live_bytes: u64,
    peak_count: u64,
    peak_bytes: u64,
    tracked_count: u64,
    tracked_bytes: u64,
}

impl Count {
    fn add(&mut self, count: u64, bytes: u64) {
        self.live_count += count;
        self.live_bytes += bytes;
        self.tracked_count += count;
        self.tracked_bytes += bytes;
        self.peak_count = self.peak_count.max(self.live_count);
        self.peak_bytes = self.peak_bytes.max(self.live_bytes);
    }
    fn sub(&mut self, count: u64, bytes: u64) {
        self.live_count -= count;
        self.live_bytes -= bytes;
    }
    fn totals(&self) -> Totals {
        // `Totals` is `#[non_exhaustive]`: built by assignment.
        let mut t = Totals::default();
        t.live_count = self.live_count;
        t.live_bytes = self.live_bytes;
        t.peak_count = self.peak_count;
        t.peak_bytes = self.peak_bytes;
        t.tracked_count = self.tracked_count;
        t.tracked_bytes = self.tracked_bytes;
        t.released_count = self.tracked_count - self.live_count;
        t.released_bytes = self.tracked_bytes - self.live_bytes;
        t
    }
}

#[derive(Default)]
struct Model {
    now: u64,
    guards: Vec<Res>,
    keyed: BTreeMap<u8, Res>,
    kinds: [Count; 4],
    global: Count,
    over_soft: bool,
    soft_events: Vec<bool>,
    unknown: u64,
    rejected: u64,
}

impl Model {
    /// Whether the hard budget allows `count` more resources and `bytes` more.
    fn admits(&self, kind: usize, count: u64, bytes: u64) -> bool {
        if KINDS[kind] != "hard" {
            return true;
        }
        let k = &self.kinds[kind];
        k.live_count + count <= HARD_COUNT && k.live_bytes + bytes <= HARD_BYTES
    }

    fn add(&mut self, kind: usize, count: u64, bytes: u64) {
        self.kinds[kind].add(count, bytes);
        self.global.add(count, bytes);
        self.check_soft(kind);
    }

    fn sub(&mut self, kind: usize, count: u64, bytes: u64) {
        self.kinds[kind].sub(count, bytes);
        self.global.sub(count, bytes);
        self.check_soft(kind);
    }

    fn check_soft(&mut self, kind: usize) {
        if KINDS[kind] != "soft" {
            return;
        }
        let over = self.kinds[kind].live_bytes > SOFT;
        if over != self.over_soft {
            self.over_soft = over;
            self.soft_events.push(over);
        }
    }

    fn resize(&mut self, res: &mut Res, size: u64) -> bool {
        if size > res.size {
            if !self.admits(res.kind, 0, size - res.size) {
                self.rejected += 1;
                return false;
            }
            self.add(res.kind, 0, size - res.size);
        } else {
            self.sub(res.kind, 0, res.size - size);
        }
        res.size = size;
        true
    }
}

fn check(tracker: &Tracker, model: &Model, events: &Events, seen_soft: &mut Vec<bool>) {
    assert_eq!(tracker.totals(), model.global.totals(), "global totals");
    for (i, kind) in KINDS.iter().enumerate() {
        let expected = model.kinds[i].totals();
        let got = tracker.kind(kind).map(|k| k.totals).unwrap_or_default();
        assert_eq!(got, expected, "totals of kind {kind}");
    }
    assert_eq!(tracker.len(), model.guards.len() + model.keyed.len());
    for e in events.take() {
        match e {
            Event::SoftBudgetExceeded { kind, .. } => {
                assert_eq!(kind, "soft");
                seen_soft.push(true);
            }
            Event::SoftBudgetRecovered { kind, .. } => {
                assert_eq!(kind, "soft");
                seen_soft.push(false);
            }
            Event::UnknownId { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(*seen_soft, model.soft_events, "soft budget events");
    let snap = tracker.snapshot();
    assert_eq!(snap.unknown_ids, model.unknown);
    assert_eq!(snap.rejected, model.rejected);
}

fn run(ops: Vec<Op>) {
    let clock = ManualClock::new();
    let tracker = Tracker::builder()
        .clock(clock.clone())
        .budget("soft", Budget::new().with_soft_bytes(SOFT))
        .budget(
            "hard",
            Budget::new()
                .with_hard_bytes(HARD_BYTES)
                .with_hard_count(HARD_COUNT),
        )
        .build()
        .unwrap();
    let events = Events::on(&tracker);
    let mut model = Model::default();
    let mut guards: Vec<Tracked> = Vec::new();
    let mut seen_soft = Vec::new();
    for op in ops {
        match op {
            Op::Track { kind, size } => {
                let got = tracker.track(KINDS[kind], size);
                if model.admits(kind, 1, size) {
                    let g = got.unwrap();
                    model.guards.push(Res {
                        id: g.id().get(),
                        kind,
                        size,
                        last_used: model.now,
                    });
                    model.add(kind, 1, size);
                    guards.push(g);
                } else {
                    model.rejected += 1;
                    assert!(matches!(got, Err(Error::OverBudget { .. })), "{got:?}");
                }
            }
            Op::Drop(i) if !guards.is_empty() => {
                let i = i.index(guards.len());
                drop(guards.swap_remove(i));
                let res = model.guards.swap_remove(i);
                model.sub(res.kind, 1, res.size);
            }
            Op::Touch(i) if !guards.is_empty() => {
                let i = i.index(guards.len());
                guards[i].touch();
                model.guards[i].last_used = model.now;
            }
            Op::Resize(i, size) if !guards.is_empty() => {
                let i = i.index(guards.len());
                let mut res = model.guards[i];
                let ok = model.resize(&mut res, size);
                model.guards[i] = res;
                let got = guards[i].resize(size);
                assert_eq!(got.is_ok(), ok, "{got:?}");
                assert_eq!(guards[i].size(), res.size);
            }
            Op::Drop(_) | Op::Touch(_) | Op::Resize(..) => {}
            Op::TrackId { key, kind, size } => {
                let got = tracker.track_id(&format!("k{key}"), KINDS[kind], size);
                if model.keyed.contains_key(&key) {
                    assert!(matches!(got, Err(Error::DuplicateId { .. })), "{got:?}");
                } else if model.admits(kind, 1, size) {
                    let id = got.unwrap().get();
                    model.keyed.insert(
                        key,
                        Res {
                            id,
                            kind,
                            size,
                            last_used: model.now,
                        },
                    );
                    model.add(kind, 1, size);
                } else {
                    model.rejected += 1;
                    assert!(matches!(got, Err(Error::OverBudget { .. })), "{got:?}");
                }
            }
            Op::ReleaseId(key) => {
                let got = tracker.release_id(&format!("k{key}"));
                match model.keyed.remove(&key) {
                    Some(res) => {
                        got.unwrap();
                        model.sub(res.kind, 1, res.size);
                    }
                    None => {
                        model.unknown += 1;
                        assert!(matches!(got, Err(Error::UnknownId { .. })), "{got:?}");
                    }
                }
            }
            Op::TouchId(key) => {
                let got = tracker.touch_id(&format!("k{key}"));
                let now = model.now;
                match model.keyed.get_mut(&key) {
                    Some(res) => {
                        got.unwrap();
                        res.last_used = now;
                    }
                    None => {
                        model.unknown += 1;
                        assert!(got.is_err());
                    }
                }
            }
            Op::ResizeId(key, size) => {
                let got = tracker.resize_id(&format!("k{key}"), size);
                match model.keyed.get(&key).copied() {
                    Some(mut res) => {
                        let ok = model.resize(&mut res, size);
                        model.keyed.insert(key, res);
                        assert_eq!(got.is_ok(), ok, "{got:?}");
                    }
                    None => {
                        model.unknown += 1;
                        assert!(matches!(got, Err(Error::UnknownId { .. })), "{got:?}");
                    }
                }
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(ms));
                model.now += ms;
            }
            Op::Stale(idle) => {
                let mut got: Vec<(u64, u64)> = tracker
                    .stale(Duration::from_millis(idle))
                    .iter()
                    .map(|r| (r.id, u64::try_from(r.idle.as_millis()).unwrap()))
                    .collect();
                let mut expected: Vec<(u64, u64)> = model
                    .guards
                    .iter()
                    .chain(model.keyed.values())
                    .filter(|r| model.now - r.last_used >= idle)
                    .map(|r| (r.id, model.now - r.last_used))
                    .collect();
                got.sort_unstable();
                expected.sort_unstable();
                assert_eq!(got, expected, "stale({idle} ms)");
            }
        }
        check(&tracker, &model, &events, &mut seen_soft);
    }
    // Dropping everything brings every live counter back to zero.
    drop(guards);
    for key in model.keyed.keys() {
        tracker.release_id(&format!("k{key}")).unwrap();
    }
    let totals = tracker.totals();
    assert_eq!((totals.live_count, totals.live_bytes), (0, 0));
    assert_eq!(totals.peak_bytes, model.global.peak_bytes);
}

// The default config honours `PROPTEST_CASES` (256 otherwise).
proptest! {
    #[test]
    fn prop_ops_match_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
