//! Integration tests of the steward facade: the wiring with real parts (the
//! real process sampler, real deadpool pools, real store files with fsync,
//! a real tracker) and the HTTP endpoint over 127.0.0.1.

#[cfg(all(feature = "monitor", feature = "tracker", feature = "audio"))]
mod audio;
#[cfg(all(
    feature = "monitor",
    feature = "pool",
    feature = "tracker",
    feature = "store"
))]
mod common;
#[cfg(feature = "monitor")]
mod config;
#[cfg(all(feature = "monitor", feature = "tracker"))]
mod growth;
#[cfg(all(
    feature = "http",
    feature = "pool",
    feature = "tracker",
    feature = "store"
))]
mod http;
#[cfg(all(
    feature = "monitor",
    feature = "pool",
    feature = "tracker",
    feature = "store"
))]
mod pool_metrics;
#[cfg(all(
    feature = "monitor",
    feature = "pool",
    feature = "tracker",
    feature = "store",
    feature = "ws",
    feature = "audio"
))]
mod shed;
#[cfg(all(
    feature = "monitor",
    feature = "pool",
    feature = "tracker",
    feature = "store"
))]
mod wiring;
#[cfg(all(feature = "monitor", feature = "tracker", feature = "ws"))]
mod ws;
