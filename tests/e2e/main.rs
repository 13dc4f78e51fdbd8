//! End-to-end tests of steward across its crates: the runnable assistant
//! against the stand-in realtime server, with real files, sockets, sound
//! server streams and child processes.
