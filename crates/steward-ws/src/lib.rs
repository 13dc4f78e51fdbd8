//! Robust WebSocket sessions for realtime model APIs.
//!
//! This crate is under construction.
//!
//! ```
//! assert_eq!(steward_ws::NAME, "steward-ws");
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The crate's name, until the real API lands.
pub const NAME: &str = "steward-ws";
