//! Integration tests of steward-ws against real servers on 127.0.0.1: a
//! tokio-tungstenite server in the test and the independent Python
//! `websockets` peer (`peer.py`, run from the project's venv).

mod codec;
mod common;
mod config;
mod events;
mod limits;
mod link;
mod owner;
#[cfg(feature = "pool")]
mod pool;
mod reconnect;
mod secrets;
mod shed;
mod tls;
