//! Arbitrary text as an XML (`<AsteriskManagerInput>`) or JSON action. Never panics; whatever
//! parses is a message that encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for parsed in [
        astmanproxy_handlers::xml::decode_input(&text).ok(),
        astmanproxy_handlers::json::decode_input(&text).ok(),
    ]
    .into_iter()
    .flatten()
    {
        let mut out = bytes::BytesMut::new();
        astmanproxy_handlers::standard::encode(&parsed, &mut out);
        astmanproxy_handlers::xml::encode(&parsed, &mut out);
        astmanproxy_handlers::json::encode(&parsed, &mut out);
        astmanproxy_handlers::csv::encode(&parsed, &mut out);
    }
});
