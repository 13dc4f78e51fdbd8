//! Fuzzes the log reader: whole files (header, frames, torn tails) and,
//! behind a valid header and checksum, the operation decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    steward_store::fuzzing::log(data);
    steward_store::fuzzing::log_payload(data);
});
