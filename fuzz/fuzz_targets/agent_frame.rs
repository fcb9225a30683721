//! Any text frame from an agent's console: a command or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = serde_json::from_str::<mibot::escalation::AgentCommand>(text);
    }
});
