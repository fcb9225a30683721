//! Any text frame from a shopper: a client event or a precise protocol error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mibot::protocol::parse_client_event(text);
    }
});
