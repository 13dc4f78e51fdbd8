//! Integration tests of steward-store: real files, real fsync, real child
//! processes and real `python3`.

mod backlog;
mod basic;
mod child;
mod concurrency;
mod config;
mod crash;
mod damage;
mod expiry_model;
mod faults;
mod folder;
mod fuzz_inputs;
mod jsongen;
mod keycap;

mod model;
mod modes;
mod power;
mod prompt_xml;
mod python;
mod redis_backend;
mod redis_batches;
mod redis_replace;
mod redis_tls;
mod repair;
mod subscription_bytes;
mod ttl;
mod workload;

use std::path::{Path, PathBuf};

// The real `redis-server` the Redis tests run against.
use steward_test_support::redis_server;

/// A fresh directory and the snapshot path inside it.
pub(crate) fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("memory.json");
    (dir, path)
}

pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs a future to its end on a runtime of its own (tests of the async
/// methods from plain threads).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(f)
}
