//! Arbitrary bytes into the AMI decoder, split at a point and with limits taken from the input;
//! every decoded message must survive encode -> decode unchanged. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    astmanproxy_handlers::fuzzing::check_decode(data);
});
