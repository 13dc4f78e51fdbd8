//! Fuzzes the tolerant readers `steward store repair` salvages damaged
//! files with (snapshot, expiry file, log): no panic, lost ranges in order
//! and inside the input, kept entries round-trip, and a file the strict
//! reader accepts loses nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    steward_store::fuzzing::repair(data);
});
