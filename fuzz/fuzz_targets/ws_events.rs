//! Fuzz the realtime-API event parser: any bytes must parse or fail cleanly,
//! whatever parses must write back and parse again, and a typed event must
//! come back identical. (Raw `Other` values may be normalized by the first
//! parse, e.g. duplicate keys collapse, so only their re-parse is checked.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_ws::Message;
use steward_ws::realtime::{ClientEvent, ServerEvent, decode_pcm16};

fuzz_target!(|data: &[u8]| {
    let message = Message::binary(data.to_vec());
    if let Ok(event) = ServerEvent::from_message(&message) {
        let text = event.to_json().expect("a parsed event serializes");
        let again = ServerEvent::parse(&text).expect("our own output parses");
        if !matches!(event, ServerEvent::Other(_)) {
            assert_eq!(again, event);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(event) = ClientEvent::parse(text) {
            let json = event.to_json().expect("a parsed event serializes");
            let again = ClientEvent::parse(&json).expect("our own output parses");
            if !matches!(event, ClientEvent::Other(_)) {
                assert_eq!(again, event);
            }
        }
        let _ = decode_pcm16(text);
    }
});
