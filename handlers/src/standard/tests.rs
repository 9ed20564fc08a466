use bytes::BytesMut;

use super::*;

fn decode_all(dec: &mut AmiDecoder, input: &[u8]) -> Vec<Message> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(m) = dec.decode(&mut buf).unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn tolerant_input_bare_lf_and_no_space() {
    let mut dec = AmiDecoder::default();
    let msgs = decode_all(&mut dec, b"\r\n\naction:login\nUsername: admin\r\nSecret:x\nOutput:   indented\n\n");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].action(), Some("login"));
    assert_eq!(msgs[0].get("username"), Some("admin"));
    assert_eq!(msgs[0].get("Secret"), Some("x"));
    assert_eq!(msgs[0].get("Output"), Some("  indented"));
}

#[test]
fn empty_values_and_repeats_survive() {
    let mut dec = AmiDecoder::default();
    let msgs = decode_all(&mut dec, b"Response: Success\r\nOutput: a\r\nOutput: \r\nOutput: b\r\n\r\n");
    assert_eq!(msgs[0].get_all("Output").collect::<Vec<_>>(), ["a", "", "b"]);
    let bytes = encode_to_bytes(&msgs[0]);
    assert_eq!(&bytes[..], b"Response: Success\r\nOutput: a\r\nOutput: \r\nOutput: b\r\n\r\n");
}

const FOLLOWS: &[u8] = b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n\
Name: value looking line\n\nsecond: line\n--END COMMAND--\r\n\r\nEvent: Next\r\n\r\n";

#[test]
fn follows_framing_only_when_announced() {
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let msgs = decode_all(&mut dec, FOLLOWS);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].action_id(), Some("c1"));
    assert_eq!(msgs[0].body().unwrap(), ["Name: value looking line", "", "second: line"]);
    assert_eq!(msgs[1].event(), Some("Next"));
    // Round trip keeps the framing.
    let again = decode_all(
        &mut {
            let mut d = AmiDecoder::default();
            d.expect_command_output();
            d
        },
        &encode_to_bytes(&msgs[0]),
    );
    assert_eq!(again[0], msgs[0]);
}

#[test]
fn end_command_glued_to_last_line() {
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let msgs = decode_all(&mut dec, b"Response: Follows\r\nPrivilege: Command\r\nlast line--END COMMAND--\r\n\r\n");
    assert_eq!(msgs[0].body().unwrap(), ["last line"]);
}

#[test]
fn follows_in_a_value_never_switches_mode() {
    // astmanproxy 1.x bug B10: a caller ID that reads "Response: Follows".
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let input = b"Event: Newchannel\r\nCallerIDName: Response: Follows\r\n\r\nEvent: Hangup\r\n\r\n";
    let msgs = decode_all(&mut dec, input);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].get("CallerIDName"), Some("Response: Follows"));
}

#[test]
fn unannounced_follows_is_plain() {
    let mut dec = AmiDecoder::default();
    let msgs = decode_all(&mut dec, b"Response: Follows\r\nActionID: 1\r\n\r\nEvent: X\r\n\r\n");
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].body().is_none());
}

#[test]
fn line_too_long_is_typed() {
    let mut dec = AmiDecoder::new(Limits { max_line: 16, ..Limits::default() });
    let mut buf = BytesMut::from(&b"Action: Pinggggggggggggggggggggggggg"[..]);
    let err = dec.decode(&mut buf).unwrap_err();
    assert_eq!(err, DecodeError::LineTooLong { limit: 16 });
    assert!(!err.can_continue());
}

#[test]
fn too_many_headers_skips_message_and_continues() {
    let mut dec = AmiDecoder::new(Limits { max_headers: 2, ..Limits::default() });
    let mut buf = BytesMut::from(&b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\nAction: Ping\r\n\r\n"[..]);
    let err = dec.decode(&mut buf).unwrap_err();
    assert!(err.can_continue());
    let m = dec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(m.action(), Some("Ping"));
}

#[test]
fn message_too_large_skips_message() {
    let mut dec = AmiDecoder::new(Limits { max_message: 20, ..Limits::default() });
    let mut buf = BytesMut::from(&b"Aaaaaa: 1111111111\r\nB: 2\r\n\r\nX: y\r\n\r\n"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap_err(), DecodeError::MessageTooLarge { limit: 20 });
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap().get("X"), Some("y"));
}

#[test]
fn eof_inside_message_is_truncated_clean_eof_is_none() {
    let mut dec = AmiDecoder::default();
    let mut buf = BytesMut::from(&b"Action: Ping\r\n"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert_eq!(dec.decode_eof(&mut buf).unwrap_err(), DecodeError::Truncated);
    assert_eq!(dec.decode_eof(&mut BytesMut::new()).unwrap(), None);
}

#[test]
fn banner_line() {
    let mut dec = AmiDecoder::default();
    let mut buf = BytesMut::from(&b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n\r\n"[..]);
    assert_eq!(dec.decode_line(&mut buf).unwrap().as_deref(), Some("Asterisk Call Manager/11.0.0"));
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap().response(), Some("Success"));
}

#[test]
fn encode_neutralises_line_breaks_in_values() {
    let m = Message::new().with("Event", "X").with("CallerIDName", "evil\r\n\r\nAction: Hangup");
    let bytes = encode_to_bytes(&m);
    assert_eq!(&bytes[..], b"Event: X\r\nCallerIDName: evil    Action: Hangup\r\n\r\n");
}

#[test]
fn byte_at_a_time_equals_whole() {
    let mut whole = AmiDecoder::default();
    whole.expect_command_output();
    let expected = decode_all(&mut whole, FOLLOWS);
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in FOLLOWS {
        buf.extend_from_slice(&[*b]);
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn bytes_that_are_not_utf8_are_kept_and_read_by_the_charset() {
    let input = b"Event: Newchannel\r\nCallerIDName: \xe9t\xe9\r\nActionID: \xff\xfe\xc3(\r\n\r\n";
    for (charset, name) in [(Charset::Latin1, "\u{e9}t\u{e9}"), (Charset::Utf8Lossy, "\u{fffd}t\u{fffd}")] {
        let mut dec = AmiDecoder::new(Limits { charset, ..Limits::default() });
        let msgs = decode_all(&mut dec, input);
        assert_eq!(msgs[0].get("CallerIDName"), Some(name));
        assert_eq!(msgs[0].get_bytes("calleridname"), Some(&b"\xe9t\xe9"[..]));
        assert_eq!(&encode_to_bytes(&msgs[0])[..], input);
    }
    // Raw CLI lines of a Follows body are text, read by the same rule.
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let msgs = decode_all(&mut dec, b"Response: Follows\r\nPrivilege: Command\r\n\xe9t\xe9\n--END COMMAND--\r\n\r\n");
    assert_eq!(msgs[0].body().unwrap(), ["\u{e9}t\u{e9}"]);
}
