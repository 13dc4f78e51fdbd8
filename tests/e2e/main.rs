//! End-to-end tests of steward across its crates: the runnable assistant
//! (`steward_cli::assistant`) against the stand-in realtime server
//! (`steward_cli::standin`), with real files (fsync), real sockets on
//! 127.0.0.1, real sound-server streams (the PulseAudio null sink and
//! source) and real child processes.
//!
//! Every test runs its body in a child process (an ignored `child_*` test of
//! this binary, see `steward_test_support::child`): thread, descriptor and RSS
//! counts then see that body alone, under nextest and plain `cargo test`
//! alike, and the stand-in can be SIGKILLed without killing the test.

mod common;
mod http;
mod pressure;
mod realtime;
mod server_kill;
mod session;
mod soak;
