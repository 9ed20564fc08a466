//! Arbitrary bytes as a header's key and value (charset and key length taken from the first two
//! bytes): any value without CR or LF comes out of decode then standard encode byte for byte,
//! its text is the charset's reading, and XML, JSON and CSV output stay valid UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    astmanproxy_handlers::fuzzing::check_raw_value(data);
});
