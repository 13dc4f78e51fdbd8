//! steward keeps long-running realtime AI assistants healthy.
//!
//! This facade re-exports the focused crates behind features, so a user can
//! depend on `steward` alone or pick single crates:
//!
//! | feature | crate | what it gives |
//! |---|---|---|
//! | `store` (default) | [`steward-store`](store) | crash-safe persistent memory, `memory.json` compatible |
//! | `pool` | `steward-pool` | a generic async pool on deadpool |
//! | `tracker` | `steward-tracker` | live resources, budgets, leak reports |
//! | `monitor` | `steward-monitor` | memory pressure levels and cleanup |
//! | `ws` | `steward-ws` | robust WebSocket sessions |
//! | `audio` | `steward-audio` | capture and playback on cpal |
//!
//! Enabling a feature never changes default behaviour: it only makes another
//! module available.
//!
//! ```
//! # #[cfg(feature = "store")]
//! assert_eq!(steward::store::NAME, "steward-store");
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

#[cfg(feature = "store")]
#[doc(inline)]
pub use steward_store as store;

#[cfg(feature = "pool")]
#[doc(inline)]
pub use steward_pool as pool;

#[cfg(feature = "tracker")]
#[doc(inline)]
pub use steward_tracker as tracker;

#[cfg(feature = "monitor")]
#[doc(inline)]
pub use steward_monitor as monitor;

#[cfg(feature = "ws")]
#[doc(inline)]
pub use steward_ws as ws;

#[cfg(feature = "audio")]
#[doc(inline)]
pub use steward_audio as audio;
