//! Integration tests of steward-realtime's conversation state machine (no
//! network): a model-based property test under any interleaving of server
//! events and local actions, the barge-in scenarios a reviewer looks for,
//! and the history kept for replay.

mod barge_in;
mod bookkeeping;
mod config;
mod events;
mod history;
mod history_model;
mod link;
mod model;
mod queues;
