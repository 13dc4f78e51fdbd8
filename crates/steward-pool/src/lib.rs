//! A generic async object pool built on deadpool.
//!
//! This crate is under construction.
//!
//! ```
//! assert_eq!(steward_pool::NAME, "steward-pool");
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The crate's name, until the real API lands.
pub const NAME: &str = "steward-pool";
