//! TTL entries on a clock that moves both ways, against a plain model:
//! `len()`, `stats().keys`, `list_keys()`, `iter()` and `to_map()` count and
//! list exactly the live entries whatever expired (the store counts them
//! from its expiry index, not by copying the map).

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use steward_store::{ManualClock, Store};

#[derive(Debug, Clone)]
enum Op {
    Upsert(u8, i64),
    UpsertTtl(u8, i64, u64),
    Delete(u8),
    Advance(u64),
    Back(u64),
    Sweep,
    Compact,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, any::<i64>()).prop_map(|(k, v)| Op::Upsert(k, v)),
        6 => (0u8..8, any::<i64>(), 1u64..40).prop_map(|(k, v, t)| Op::UpsertTtl(k, v, t)),
        2 => (0u8..8).prop_map(Op::Delete),
        5 => (0u64..30).prop_map(Op::Advance),
        1 => (0u64..30).prop_map(Op::Back),
        1 => Just(Op::Sweep),
        1 => Just(Op::Compact),
        1 => Just(Op::Reset),
    ]
}

/// Entries in order with their deadline; one is live while `now < deadline`.
#[derive(Default)]
struct Model(Vec<(String, Value, Option<u64>)>);

impl Model {
    fn live(&self, now: u64) -> Vec<(String, Value)> {
        self.0
            .iter()
            .filter(|(_, _, d)| d.is_none_or(|d| now < d))
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect()
    }

    fn set(&mut self, k: String, v: Value, deadline: Option<u64>, now: u64) {
        match self.0.iter().position(|(key, ..)| *key == k) {
            // An expired entry is re-added last.
            Some(i) if self.0[i].2.is_some_and(|d| now >= d) => {
                self.0.remove(i);
                self.0.push((k, v, deadline));
            }
            Some(i) => self.0[i] = (k, v, deadline),
            None => self.0.push((k, v, deadline)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn live_counts_and_lists_follow_the_clock(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let store = Store::builder(dir.path().join("memory.json"))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let mut model = Model::default();
        let mut now = 1_000u64;
        for op in ops {
            match op {
                Op::Upsert(k, v) => {
                    store.upsert_blocking(&format!("k{k}"), v).unwrap();
                    model.set(format!("k{k}"), json!(v), None, now);
                }
                Op::UpsertTtl(k, v, t) => {
                    store.upsert_with_ttl_blocking(&format!("k{k}"), v, Duration::from_millis(t)).unwrap();
                    model.set(format!("k{k}"), json!(v), Some(now + t), now);
                }
                Op::Delete(k) => {
                    let k = format!("k{k}");
                    store.delete_blocking(&k).unwrap();
                    let live = model.live(now);
                    if live.iter().any(|(key, _)| *key == k) {
                        model.0.retain(|(key, ..)| *key != k);
                    }
                }
                Op::Advance(ms) => now += ms,
                Op::Back(ms) => now = now.saturating_sub(ms).max(1_000),
                Op::Sweep => {
                    store.sweep_expired_blocking().unwrap();
                    model.0.retain(|(_, _, d)| d.is_none_or(|d| now < d));
                }
                Op::Compact => {
                    store.compact_blocking().unwrap();
                    model.0.retain(|(_, _, d)| d.is_none_or(|d| now < d));
                }
                Op::Reset => {
                    store.reset_blocking().unwrap();
                    model.0.clear();
                }
            }
            clock.set_ms(now);
            let live = model.live(now);
            let keys: Vec<String> = live.iter().map(|(k, _)| k.clone()).collect();
            prop_assert_eq!(store.len(), live.len());
            prop_assert_eq!(store.stats().keys, live.len());
            prop_assert_eq!(store.list_keys(), keys);
            prop_assert_eq!(store.iter().collect::<Vec<_>>(), live.clone());
            prop_assert_eq!(store.to_map().into_iter().collect::<Vec<_>>(), live);
        }
    }
}
