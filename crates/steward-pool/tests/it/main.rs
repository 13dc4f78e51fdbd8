//! Integration tests of steward-pool: regressions of peer bugs, the Python
//! lifecycle case, expiry under paused time, a model-based property test, a
//! multi-thread stress test and a pool of real TCP connections.

mod common;
mod config;
mod expiry;
mod keyed;
mod lifecycle;
mod model;
mod regressions;
mod stress;
mod tcp;
