//! Arbitrary `key=value&...` pairs written as an AJAM `/mxml` body: always well-formed XML that
//! reads back to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| astmanproxy_handlers::fuzzing::check_mxml(data));
