//! The fuzz property (`astmanproxy_handlers::fuzzing::check_decode`) on nasty hand-written
//! inputs and on every recorded Asterisk stream, so it runs in the normal test suite.

use std::path::PathBuf;

use astmanproxy_handlers::fuzzing::check_decode;

#[test]
fn nasty_inputs() {
    let long_line = vec![b'x'; 100_000];
    let inputs: Vec<&[u8]> = vec![
        b"",
        b"\r",
        b"\n\n\n",
        b":",
        b"\xff\xff\xff:\r\n\r\n",
        b"\x01\x01\x00Response: Follows\r\nPrivilege: Command\r\nraw output\n",
        b"\x01\x01\x01Response: Follows\r\nActionID: 1\r\n--END COMMAND--\r\n\r\n",
        b"\x00\x00\x00A: b\rc\r\n\r\n",
        b"\x00\x00\x00\xc3\x28: \xa0\xa1\r\n\r\n",
        b"\x10\x10\x10Key:value\nKey2:  spaced\n\n\x00\x00",
        b"\x00\x00\x00Event: X\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        &long_line,
    ];
    for input in inputs {
        check_decode(input);
    }
}

#[test]
fn every_recorded_stream() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/raw");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        // Generous limits (first bytes 0xff), whole stream, with and without Command framing.
        for prefix in [[0xff, 0xff, 0xff], [0xff, 0xfe, 0xff]] {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&data);
            check_decode(&input);
        }
        n += 1;
    }
    assert!(n >= 60, "{n} streams");
}

#[test]
fn mxml_bodies_stay_well_formed() {
    for input in [
        &b""[..],
        b"=",
        b"&&&",
        b"Action=Ping&ActionID=<x>&'\"=&amp;",
        b"9lives=\x01\x02\x1f&Output=a&Output=b&output-2=c",
        b"\xff\xfe=\xc3\x28&key=]]>&<!--=-->",
        b"Message=\r\nInjected: yes",
        "Note=a\u{FFFE}b\u{FFFF}".as_bytes(),
    ] {
        astmanproxy_handlers::fuzzing::check_mxml(input);
    }
}

/// Bytes pass through unchanged (`fuzzing::check_raw_value`, also the `raw_value` fuzz target):
/// the values of the issue, then arbitrary bytes.
#[test]
fn raw_values_round_trip() {
    use astmanproxy_handlers::fuzzing::check_raw_value;
    // charset byte, key length, key, value.
    for charset in [0u8, 1] {
        for (key, value) in [
            (&b"ActionID2"[..], &b"\xff\xfe\xc3("[..]),
            (b"CallerIDName", b"\xe9t\xe9"),
            (b"Caller\xe9", b" \xe9t\xe9  "),
            (b"Exten", b"plain"),
            (b"Exten", b""),
            (b"Exten", b"\xc3\xa9t\xc3\xa9 and \xe9"),
        ] {
            let mut input = vec![charset, key.len() as u8];
            input.extend_from_slice(key);
            input.extend_from_slice(value);
            check_raw_value(&input);
        }
    }
}

mod raw_value_property {
    use astmanproxy_handlers::fuzzing::check_raw_value;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Any value without CR or LF (arbitrary bytes, invalid UTF-8 included) round-trips
        /// through decode and standard encode unchanged.
        #[test]
        fn any_value_round_trips(charset in 0u8..2, key in prop::collection::vec(any::<u8>(), 0..12),
                                 value in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut input = vec![charset, key.len() as u8];
            input.extend_from_slice(&key);
            input.extend_from_slice(&value);
            check_raw_value(&input);
        }

        /// The same with values made mostly of bytes >= 0x80 (Latin-1 text, broken UTF-8).
        #[test]
        fn high_bytes_round_trip(charset in 0u8..2, value in prop::collection::vec(0x80u8..=0xff, 1..32)) {
            let mut input = vec![charset, 4];
            input.extend_from_slice(b"Name");
            input.extend_from_slice(&value);
            check_raw_value(&input);
        }
    }
}
