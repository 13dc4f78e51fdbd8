//! Fuzzes the snapshot reader (Python-format `memory.json`) and checks that
//! whatever it accepts is written back in a form it reads identically.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    steward_store::fuzzing::snapshot(data);
});
