//! Random operation sequences, including close/reopen, against a plain
//! ordered map (a Vec of pairs).

use proptest::prelude::*;
use serde_json::{Value, json};
use steward_store::Store;

#[derive(Debug, Clone)]
enum Op {
    Create(u8, i64),
    Update(u8, i64),
    Upsert(u8, i64),
    Delete(u8),
    Reset,
    Compact,
    Close,
    DropAndReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Op::Create(k, v)),
        3 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Op::Update(k, v)),
        6 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Op::Upsert(k, v)),
        3 => (0u8..6).prop_map(Op::Delete),
        1 => Just(Op::Reset),
        1 => Just(Op::Compact),
        1 => Just(Op::Close),
        1 => Just(Op::DropAndReopen),
    ]
}

/// The model: insertion-ordered pairs with the Python dict's semantics.
#[derive(Default)]
struct Model(Vec<(String, Value)>);

impl Model {
    fn find(&self, k: &str) -> Option<usize> {
        self.0.iter().position(|(key, _)| key == k)
    }
}

fn key(k: u8) -> String {
    // Awkward keys on purpose: empty, spaces, non-ASCII.
    ["", "a", "my key", "1abc", "café", "😀"][k as usize % 6].to_string()
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_store_matches_ordered_map(ops in proptest::collection::vec(op(), 1..40)) {
        let (_d, path) = crate::temp_store();
        let mut store = Store::builder(&path).compact_log_bytes(512).build().unwrap();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Create(k, v) => {
                    let k = key(k);
                    let expect = model.find(&k).is_none();
                    if expect {
                        model.0.push((k.clone(), json!(v)));
                    }
                    prop_assert_eq!(store.create(&k, v).unwrap(), expect);
                }
                Op::Update(k, v) => {
                    let k = key(k);
                    let pos = model.find(&k);
                    if let Some(i) = pos {
                        model.0[i].1 = json!(v);
                    }
                    prop_assert_eq!(store.update(&k, v).unwrap(), pos.is_some());
                }
                Op::Upsert(k, v) => {
                    let k = key(k);
                    let pos = model.find(&k);
                    match pos {
                        Some(i) => model.0[i].1 = json!(v),
                        None => model.0.push((k.clone(), json!(v))),
                    }
                    prop_assert_eq!(store.upsert(&k, v).unwrap(), pos.is_none());
                }
                Op::Delete(k) => {
                    let k = key(k);
                    let pos = model.find(&k);
                    if let Some(i) = pos {
                        model.0.remove(i);
                    }
                    prop_assert_eq!(store.delete(&k).unwrap(), pos.is_some());
                }
                Op::Reset => {
                    model.0.clear();
                    store.reset().unwrap();
                }
                Op::Compact => {
                    store.compact().unwrap();
                }
                Op::Close => {
                    store.close().unwrap();
                    store = Store::builder(&path).compact_log_bytes(512).build().unwrap();
                }
                Op::DropAndReopen => {
                    drop(store);
                    store = Store::builder(&path).compact_log_bytes(512).build().unwrap();
                }
            }
            let keys: Vec<String> = model.0.iter().map(|(k, _)| k.clone()).collect();
            prop_assert_eq!(store.list_keys(), keys);
            for (k, v) in &model.0 {
                prop_assert_eq!(store.read(k), Some(v.clone()));
            }
        }
        store.close().unwrap();
        // What is on disk is exactly the model, in Python's format.
        let map: serde_json::Map<String, Value> = model.0.into_iter().collect();
        prop_assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            steward_store::to_python_json(&map)
        );
    }
}
