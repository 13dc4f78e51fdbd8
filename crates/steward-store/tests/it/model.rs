//! Random operation sequences, including close/reopen, against a plain
//! ordered map (a Vec of pairs), on both backends through the `Backend`
//! seam: the file store and the Redis backend (a real server).

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value, json};
use steward_store::{Backend, RedisStore, Store};

use crate::redis_server::RedisServer;

#[derive(Debug, Clone)]
enum Op {
    Create(u8, i64),
    Update(u8, i64),
    Upsert(u8, i64),
    /// Upsert with a TTL far longer than the test: an ordinary upsert for
    /// the model, a TTL entry (log record / PX key) for the store.
    UpsertTtl(u8, i64),
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
        2 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Op::UpsertTtl(k, v)),
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
    config_with(48)
}

/// `PROPTEST_CASES` if set (`cargo xtask proptest` raises it), else `default`.
fn config_with(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// How a backend is opened again for `Close` / `DropAndReopen`, and what
/// `Compact` means for it.
trait Fixture {
    fn open(&self) -> Box<dyn Backend>;
    /// Compacts (file) or does nothing (Redis).
    fn compact(&self);
}

/// The file store: keeps a clone of the open store for `Compact`, let go
/// before reopening (so a drop really releases the lock).
struct FileFixture {
    path: std::path::PathBuf,
    current: std::cell::RefCell<Option<Store>>,
}

impl Fixture for FileFixture {
    fn open(&self) -> Box<dyn Backend> {
        drop(self.current.borrow_mut().take());
        let store = Store::builder(&self.path)
            .compact_log_bytes(512)
            .build()
            .unwrap();
        *self.current.borrow_mut() = Some(store.clone());
        Box::new(store)
    }
    fn compact(&self) {
        if let Some(s) = &*self.current.borrow() {
            s.compact_blocking().unwrap();
        }
    }
}

struct RedisFixture {
    url: String,
    rt: tokio::runtime::Handle,
}

impl Fixture for RedisFixture {
    fn open(&self) -> Box<dyn Backend> {
        let url = self.url.clone();
        Box::new(
            self.rt
                .block_on(async move { RedisStore::builder(url).pool_size(2).build().await })
                .unwrap(),
        )
    }
    fn compact(&self) {}
}

/// Runs `ops` on a backend and the model side by side; every answer and
/// the full ordered contents must agree after each step.
fn run_model(
    rt: &tokio::runtime::Runtime,
    fx: &dyn Fixture,
    ops: Vec<Op>,
) -> Result<Vec<(String, Value)>, TestCaseError> {
    let mut store = fx.open();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Create(k, v) => {
                let k = key(k);
                let expect = model.find(&k).is_none();
                if expect {
                    model.0.push((k.clone(), json!(v)));
                }
                prop_assert_eq!(rt.block_on(store.create(&k, json!(v))).unwrap(), expect);
            }
            Op::Update(k, v) => {
                let k = key(k);
                let pos = model.find(&k);
                if let Some(i) = pos {
                    model.0[i].1 = json!(v);
                }
                prop_assert_eq!(
                    rt.block_on(store.update(&k, json!(v))).unwrap(),
                    pos.is_some()
                );
            }
            Op::Upsert(k, v) => {
                let k = key(k);
                let pos = model.find(&k);
                match pos {
                    Some(i) => model.0[i].1 = json!(v),
                    None => model.0.push((k.clone(), json!(v))),
                }
                prop_assert_eq!(
                    rt.block_on(store.upsert(&k, json!(v))).unwrap(),
                    pos.is_none()
                );
            }
            Op::UpsertTtl(k, v) => {
                let k = key(k);
                let pos = model.find(&k);
                match pos {
                    Some(i) => model.0[i].1 = json!(v),
                    None => model.0.push((k.clone(), json!(v))),
                }
                let ttl = std::time::Duration::from_secs(24 * 3600);
                prop_assert_eq!(
                    rt.block_on(store.upsert_with_ttl(&k, json!(v), ttl))
                        .unwrap(),
                    pos.is_none()
                );
            }
            Op::Delete(k) => {
                let k = key(k);
                let pos = model.find(&k);
                if let Some(i) = pos {
                    model.0.remove(i);
                }
                prop_assert_eq!(rt.block_on(store.delete(&k)).unwrap(), pos.is_some());
            }
            Op::Reset => {
                model.0.clear();
                rt.block_on(store.reset()).unwrap();
            }
            Op::Compact => fx.compact(),
            Op::Close => {
                rt.block_on(store.close()).unwrap();
                store = fx.open();
            }
            Op::DropAndReopen => {
                drop(store);
                store = fx.open();
            }
        }
        let keys: Vec<String> = model.0.iter().map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(rt.block_on(store.list_keys()).unwrap(), keys);
        prop_assert_eq!(rt.block_on(store.entries()).unwrap(), model.0.clone());
        prop_assert_eq!(rt.block_on(store.len()).unwrap(), model.0.len());
        for (k, v) in &model.0 {
            prop_assert_eq!(rt.block_on(store.get(k)).unwrap(), Some(v.clone()));
        }
    }
    rt.block_on(store.close()).unwrap();
    Ok(model.0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_store_matches_ordered_map(ops in proptest::collection::vec(op(), 1..40)) {
        let (_d, path) = crate::temp_store();
        let rt = runtime();
        let fx = FileFixture { path: path.clone(), current: Default::default() };
        let model = run_model(&rt, &fx, ops)?;
        drop(fx);
        // What is on disk is exactly the model, in Python's format.
        let map: serde_json::Map<String, Value> = model.into_iter().collect();
        prop_assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            steward_store::to_python_json(&map)
        );
    }
}

/// The same operations against one namespace per case of a real Redis
/// server. Fewer cases by default (each step is a few round trips);
/// `PROPTEST_CASES` raises them.
#[test]
fn prop_redis_matches_ordered_map() {
    let server = RedisServer::start();
    // The connections' driver tasks must run while the fixture blocks on
    // a handle: a worker thread, not a current-thread runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cases = AtomicUsize::new(0);
    let mut cfg = config_with(16);
    // No source file to keep regressions beside (this is not the macro).
    cfg.failure_persistence = None;
    let mut runner = TestRunner::new(cfg);
    let strategy = proptest::collection::vec(op(), 1..40);
    let result = runner.run(&strategy, |ops| {
        let n = cases.fetch_add(1, Ordering::Relaxed);
        let fx = RedisFixture {
            url: server.url_ns(&format!("model{n}")),
            rt: rt.handle().clone(),
        };
        let model = run_model(&rt, &fx, ops)?;
        // Another client (a fresh handle) sees exactly the model.
        let again = fx.open();
        prop_assert_eq!(rt.block_on(again.entries()).unwrap(), model);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
