//! Arbitrary text into the 1.x configuration and users parsers. Never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = astmanproxy::config::Config::parse(text, Path::new("fuzz.conf"));
        let _ = astmanproxy::config::Users::parse(text, Path::new("fuzz.users"));
    }
});
